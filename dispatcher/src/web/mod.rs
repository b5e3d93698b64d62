//! The browser side of the dispatcher, on its HTTP port (`--http ADDR`): a page for shops (`/shop`), a tracking
//! page for customers (`/t/<secret>`), a dashboard for operators (`/ops`), and the JSON and Server-Sent-Events
//! endpoints under `/api` they use.
//!
//! Every call that reads or changes orders, robots or shops goes through the gRPC services' own code
//! ([`crate::service`]) with the signed-in caller's token, so shop scoping, validation, limits and error
//! reasons are the same as over gRPC. The pages and scripts are files of this crate embedded in the binary; they
//! load nothing from elsewhere (no CDN, no map tiles): the map is drawn from the dispatcher's own graph.

pub mod dto;
mod ops;
pub mod session;
mod shop;
mod track;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;
use tonic::Status;

use crate::service::Ctx;
use crate::store::Principal;
use session::{Session, Sessions};

/// A request body larger than this is refused (413) before it is read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct Web {
    ctx: Ctx,
    sessions: Arc<Sessions>,
    /// Set when the port serves TLS: cookies are then marked Secure.
    secure: bool,
    map: Arc<tokio::sync::OnceCell<(String, bytes::Bytes)>>,
    fleet: Arc<ops::FleetFeed>,
}

/// The pages, assets and API, on the services' context.
pub fn router(ctx: Ctx, secure: bool) -> Router {
    let web = Web {
        ctx,
        sessions: Arc::new(Sessions::default()),
        secure,
        map: Arc::default(),
        fleet: Arc::new(ops::FleetFeed::default()),
    };
    Router::new()
        .route("/", get(|| async { page(Page::SignIn) }))
        .route("/shop", get(|| async { page(Page::Shop) }))
        .route("/ops", get(|| async { page(Page::Ops) }))
        .route("/t/{secret}", get(|| async { page(Page::Track) }))
        .route("/static/{file}", get(asset))
        .route("/api/session", post(sign_in).get(who).delete(sign_out))
        .route("/api/map", get(map))
        .merge(shop::routes())
        .merge(track::routes())
        .merge(ops::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such page or endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(web)
}

/// Headers on every answer: a strict content policy (only this origin's scripts, styles and connections; no
/// framing), no MIME sniffing, no referrer (a tracking link's secret must not leak to another site), and no
/// caching of API answers.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             media-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// An error answer: `{"error": message, "code": reason, "field": ..., "details": {...}}` with a status that
/// says whose fault it was.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    field: Option<String>,
    details: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), field: None, details: Default::default() }
    }

    fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "sign in first")
    }

    fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "INVALID_FIELD", message);
        e.field = Some(field.into());
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "code": self.code });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        if !self.details.is_empty() {
            body["details"] = serde_json::Value::Object(self.details);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// A gRPC status as the HTTP answer a browser expects; the message and reason are the service's own.
impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        use tonic::Code;
        use tonic_types::StatusExt;
        let status = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let info = s.get_details_error_info();
        let code = info.as_ref().map_or_else(|| format!("{:?}", s.code()).to_uppercase(), |i| i.reason.clone());
        let mut e = ApiError::new(status, &code, s.message());
        e.field = s.get_details_bad_request().and_then(|b| b.field_violations.first().map(|v| v.field.clone()));
        if let Some(i) = info {
            e.details = i.metadata.into_iter().map(|(k, v)| (k, json!(v))).collect();
        }
        e
    }
}

/// A JSON body, or a 4xx that says what was wrong with it (bad JSON, a wrong field, too large, not JSON).
pub fn body<T>(b: Result<axum::Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match b {
        Ok(axum::Json(v)) => Ok(v),
        Err(r) => {
            let status = r.status();
            let code = match status {
                StatusCode::PAYLOAD_TOO_LARGE => "BODY_TOO_LARGE",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "NOT_JSON",
                _ => "BAD_JSON",
            };
            let msg = match status {
                StatusCode::PAYLOAD_TOO_LARGE => format!("the body is over {MAX_BODY_BYTES} bytes"),
                _ => r.body_text(),
            };
            Err(ApiError::new(status, code, msg))
        }
    }
}

pub fn ok<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

impl Web {
    /// The caller's live session: its cookie names one and its token is still valid.
    fn session(&self, headers: &HeaderMap) -> Result<Session, ApiError> {
        let s = self.sessions.get(headers).ok_or_else(ApiError::unauthenticated)?;
        if !self.ctx.auth.is_valid(&crate::auth::hash_hex(&s.token)) {
            self.sessions.close_token(&crate::auth::hash_hex(&s.token));
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "the sign-in token was revoked"));
        }
        Ok(s)
    }

    /// As [`Web::session`], for a state-changing call: it must also carry the session's CSRF token.
    fn session_csrf(&self, headers: &HeaderMap) -> Result<Session, ApiError> {
        let s = self.session(headers)?;
        let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if !session::csrf_matches(&s, given) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "CSRF",
                "missing or wrong X-CSRF-Token header; reload the page",
            ));
        }
        Ok(s)
    }

    fn shop_session(&self, headers: &HeaderMap, changes: bool) -> Result<(Session, fleet_core::ShopId), ApiError> {
        let s = if changes { self.session_csrf(headers)? } else { self.session(headers)? };
        match &s.principal {
            Principal::Shop(id) => {
                let id = id.clone();
                Ok((s, id))
            }
            _ => Err(ApiError::new(StatusCode::FORBIDDEN, "WRONG_ROLE", "this needs a shop's sign-in")),
        }
    }

    fn operator_session(&self, headers: &HeaderMap, changes: bool) -> Result<Session, ApiError> {
        let s = if changes { self.session_csrf(headers)? } else { self.session(headers)? };
        match &s.principal {
            Principal::Operator => Ok(s),
            _ => Err(ApiError::new(StatusCode::FORBIDDEN, "WRONG_ROLE", "this needs an operator's sign-in")),
        }
    }
}

/// A gRPC request carrying the session's token, for the services' own code.
pub fn authed<T>(s: &Session, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {}", s.token).parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

fn role_of(p: &Principal) -> (&'static str, String) {
    match p {
        Principal::Shop(s) => ("shop", s.to_string()),
        Principal::Robot(r) => ("robot", r.to_string()),
        Principal::Operator => ("operator", String::new()),
    }
}

/// Signs in with a bearer token: a shop or operator token opens a session; robot tokens are for robots only.
async fn sign_in(State(w): State<Web>, b: Result<axum::Json<SignIn>, JsonRejection>) -> Result<Response, ApiError> {
    let SignIn { token } = body(b)?;
    let token = token.trim().to_owned();
    let mut md = tonic::metadata::MetadataMap::new();
    let header = format!("Bearer {token}").parse().map_err(|_| ApiError::bad_field("token", "not a token"))?;
    md.insert("authorization", header);
    let principal = w.ctx.auth.principal(&md).map_err(|e| ApiError::from(Status::from(e)))?;
    if let Principal::Robot(_) = principal {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "WRONG_ROLE", "robot tokens cannot sign in to the web pages"));
    }
    let (role, subject) = role_of(&principal);
    let (id, csrf) = w.sessions.open(token, principal).ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_SESSIONS", "too many sessions; try again later")
    })?;
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session::COOKIE,
        session::IDLE.as_secs(),
        if w.secure { "; Secure" } else { "" }
    );
    let mut res = ok(json!({ "role": role, "subject": subject, "csrf": csrf }));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

async fn who(State(w): State<Web>, headers: HeaderMap) -> Result<Response, ApiError> {
    let s = w.session(&headers)?;
    let (role, subject) = role_of(&s.principal);
    Ok(ok(json!({ "role": role, "subject": subject, "csrf": s.csrf })))
}

async fn sign_out(State(w): State<Web>, headers: HeaderMap) -> Result<Response, ApiError> {
    w.session_csrf(&headers)?;
    w.sessions.close(&headers);
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        session::COOKIE,
        if w.secure { "; Secure" } else { "" }
    );
    let mut res = ok(json!({ "signed_out": true }));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

/// The walkable graph, compact: `nodes` as [lat, lon, lat, lon, ...] (1e-6 degrees), `edges` as node index
/// pairs [a, b, a, b, ...], each way once. Built once per map and served with its fingerprint as the ETag.
async fn map(State(w): State<Web>, headers: HeaderMap) -> Result<Response, ApiError> {
    let fingerprint = w.ctx.core.query(|d| d.map().fingerprint()).await.map_err(Status::from)?;
    let cached = w.map.get().filter(|(f, _)| *f == fingerprint).cloned();
    let (f, bytes) = match cached {
        Some(c) => c,
        None => {
            let body = w.ctx.core.query(map_json).await.map_err(Status::from)?;
            let entry = (fingerprint.clone(), bytes::Bytes::from(body));
            // A second map (after a swap) is served uncached until a restart; the first is the common case.
            let _ = w.map.set(entry.clone());
            entry
        }
    };
    let etag = format!("\"{f}\"");
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let mut res = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(res)
}

fn map_json(d: &fleet_core::dispatcher::Dispatcher) -> String {
    use std::fmt::Write as _;
    let m = d.map();
    let mut s = String::with_capacity(m.node_count() * 24 + m.edge_count() * 8);
    let _ = write!(s, "{{\"fingerprint\":\"{}\",\"nodes\":[", m.fingerprint());
    for i in 0..m.node_count() {
        if let Some(p) = m.pos(fleet_core::NodeId(i as u32)) {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(s, "{sep}{:.6},{:.6}", p.lat(), p.lon());
        }
    }
    s.push_str("],\"edges\":[");
    let mut first = true;
    for (a, b, _) in m.edges() {
        // Each way once: a two-way sidewalk is two directed edges.
        if a.0 < b.0 || !m.adjacent(b, a) {
            let sep = if first { "" } else { "," };
            first = false;
            let _ = write!(s, "{sep}{},{}", a.0, b.0);
        }
    }
    s.push_str("]}");
    s
}

enum Page {
    SignIn,
    Shop,
    Ops,
    Track,
}

fn page(p: Page) -> Response {
    let (script, title) = match p {
        Page::SignIn => ("signin.js", "Trundle"),
        Page::Shop => ("shop.js", "Trundle: shop"),
        Page::Ops => ("ops.js", "Trundle: operations"),
        Page::Track => ("track.js", "Trundle: your delivery"),
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script type=\"module\" src=\"/static/{script}\"></script></head>\
         <body><main id=\"app\" aria-live=\"polite\"></main>\
         <noscript>This page needs JavaScript.</noscript></body></html>\n"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], html).into_response()
}

/// The embedded files: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.css", "text/css; charset=utf-8", include_bytes!("assets/app.css")),
    ("common.js", "text/javascript; charset=utf-8", include_bytes!("assets/common.js")),
    ("i18n.js", "text/javascript; charset=utf-8", include_bytes!("assets/i18n.js")),
    ("map.js", "text/javascript; charset=utf-8", include_bytes!("assets/map.js")),
    ("signin.js", "text/javascript; charset=utf-8", include_bytes!("assets/signin.js")),
    ("shop.js", "text/javascript; charset=utf-8", include_bytes!("assets/shop.js")),
    ("track.js", "text/javascript; charset=utf-8", include_bytes!("assets/track.js")),
    ("ops.js", "text/javascript; charset=utf-8", include_bytes!("assets/ops.js")),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == file) {
        Some((_, ty, bytes)) => {
            ([(header::CONTENT_TYPE, *ty), (header::CACHE_CONTROL, "no-cache")], *bytes).into_response()
        }
        None => ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no file {file}")).into_response(),
    }
}

/// Server-Sent Events: each item a named event with a JSON payload.
pub type EventStream = axum::response::sse::Sse<
    axum::response::sse::KeepAliveStream<
        tokio_stream::wrappers::ReceiverStream<Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
>;

pub fn sse(
    rx: tokio::sync::mpsc::Receiver<Result<axum::response::sse::Event, std::convert::Infallible>>,
) -> EventStream {
    axum::response::sse::Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(axum::response::sse::KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}

pub fn event(name: &str, data: &impl Serialize) -> Result<axum::response::sse::Event, std::convert::Infallible> {
    Ok(axum::response::sse::Event::default().event(name).data(serde_json::to_string(data).unwrap_or_default()))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The keys of one language's block in i18n.js (`"key": "text",` lines between `code: {` and `},`).
    fn catalogue(code: &str) -> Vec<(String, String)> {
        let src = include_str!("assets/i18n.js");
        let start = src.find(&format!("\n  {code}: {{\n")).expect("the language's block");
        let block = &src[start..];
        let end = block.find("\n  },\n").expect("its end");
        block[..end]
            .lines()
            .filter_map(|l| {
                let l = l.trim().strip_prefix('"')?;
                let (k, v) = l.split_once("\": ")?;
                Some((k.to_owned(), v.trim_end_matches(',').trim_matches('"').to_owned()))
            })
            .collect()
    }

    /// Every string is in both languages, Korean strings are Korean, and every key a page asks for exists.
    #[test]
    fn the_catalogue_is_complete_in_english_and_korean() {
        let en = catalogue("en");
        let ko = catalogue("ko");
        assert!(en.len() > 100, "{}", en.len());
        let en_keys: BTreeSet<&str> = en.iter().map(|(k, _)| k.as_str()).collect();
        let ko_keys: BTreeSet<&str> = ko.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(en_keys, ko_keys, "the same keys in both languages");
        let hangul = |s: &str| s.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c));
        let untranslated: Vec<&str> = ko
            .iter()
            .filter(|(k, v)| !v.is_empty() && !hangul(v) && !["app.name", "ops.id"].contains(&k.as_str()))
            .map(|(k, _)| k.as_str())
            .collect();
        assert!(untranslated.is_empty(), "Korean strings without Korean: {untranslated:?}");
        // Keys used as t("...") in the pages (dynamic ones, status.* and state.*, are covered by their prefix).
        for (name, _, bytes) in super::ASSETS.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            let src = std::str::from_utf8(bytes).expect("utf-8");
            for (at, _) in src.match_indices("t(\"") {
                // `t(` itself, not the end of another name (`get("Content-Type")`).
                if src[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                    continue;
                }
                let key = src[at + 3..].split('"').next().unwrap_or_default();
                if key.ends_with('.') {
                    assert!(en_keys.iter().any(|k| k.starts_with(key)), "{name}: prefix {key}");
                } else {
                    assert!(en_keys.contains(key), "{name} asks for {key:?}, which is not in the catalogue");
                }
            }
        }
        for s in ["PENDING", "ASSIGNED", "TO_PICKUP", "AT_PICKUP", "IN_TRANSIT", "AT_DROPOFF", "DELIVERED", "CANCELLED"]
        {
            assert!(en_keys.contains(format!("status.{s}").as_str()), "{s}");
        }
        for s in ["offline", "faulted", "paused", "charging", "working", "idle"] {
            assert!(en_keys.contains(format!("state.{s}").as_str()), "{s}");
        }
    }

    /// Every page's script and every file a page imports is embedded.
    #[test]
    fn every_imported_file_is_embedded() {
        let names: BTreeSet<&str> = super::ASSETS.iter().map(|(n, _, _)| *n).collect();
        for (name, _, bytes) in super::ASSETS {
            let src = std::str::from_utf8(bytes).expect("utf-8");
            for part in src.split("\"/static/").skip(1) {
                let file = part.split('"').next().unwrap_or_default();
                assert!(names.contains(file), "{name} imports {file}, which is not embedded");
            }
        }
    }
}
