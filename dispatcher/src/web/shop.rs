//! The shop's endpoints: its own shop, quotes, placing, today's orders live, ready, cancel, a new customer
//! link, and history as CSV. Each goes through `OrderService` with the session's token.

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use trundle_proto::convert;
use trundle_proto::pb;
use trundle_proto::pb::order_service_server::OrderService;

use super::{ApiError, Web, authed, body, dto, event, now_ms, ok, sse};
use crate::service::orders::OrderApi;

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/api/shop", get(my_shop))
        .route("/api/quote", post(quote))
        .route("/api/orders", post(place).get(list))
        .route("/api/orders.csv", get(csv))
        .route("/api/orders/{id}/ready", post(ready))
        .route("/api/orders/{id}/cancel", post(cancel))
        .route("/api/orders/{id}/link", post(new_link))
        .route("/api/events", get(events))
}

fn api(w: &Web) -> OrderApi {
    OrderApi(w.ctx.clone())
}

async fn my_shop(State(w): State<Web>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (_, shop) = w.shop_session(&headers, false)?;
    let found = w
        .ctx
        .core
        .query(move |d| d.shop(&shop).map(|s| (s.id.to_string(), s.name.clone(), s.place.pos)))
        .await
        .map_err(tonic::Status::from)?;
    let (id, name, pos) =
        found.ok_or_else(|| ApiError::new(axum::http::StatusCode::NOT_FOUND, "NOT_FOUND", "shop not found"))?;
    Ok(ok(json!({ "id": id, "name": name, "pos": { "lat": pos.lat(), "lon": pos.lon() }, "now": now_ms() })))
}

async fn quote(
    State(w): State<Web>,
    headers: HeaderMap,
    b: Result<axum::Json<dto::Delivery>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (s, _) = w.shop_session(&headers, true)?;
    let d = body(b)?;
    let r = api(&w).quote(authed(&s, pb::QuoteRequest { delivery: Some(d.to_wire()) })).await?.into_inner();
    let q = r.quote.unwrap_or_default();
    Ok(ok(json!({ "quote": dto::Quote::from(&q), "now": now_ms() })))
}

async fn place(
    State(w): State<Web>,
    headers: HeaderMap,
    b: Result<axum::Json<dto::Place>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (s, _) = w.shop_session(&headers, true)?;
    let p = body(b)?;
    let req = pb::PlaceOrderRequest { idempotency_key: p.idempotency_key, delivery: Some(p.delivery.to_wire()) };
    let r = api(&w).place_order(authed(&s, req)).await?.into_inner();
    let order = r.order.unwrap_or_default();
    Ok(ok(json!({
        "order": dto::Order::from(&order),
        "quote": r.quote.as_ref().map(dto::Quote::from),
        "replayed": r.replayed,
        "link": link(&r.tracking_secret),
    })))
}

/// The customer's page for a tracking secret (a path on this port; the page shows the full address).
fn link(secret: &str) -> Option<String> {
    (!secret.is_empty()).then(|| format!("/t/{secret}"))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(default)]
    closed: bool,
}

/// The shop's orders, newest first: open ones, and closed ones too with `?closed=true` (at most 1,000).
async fn list(State(w): State<Web>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let (s, _) = w.shop_session(&headers, false)?;
    let orders = list_orders(&w, &s, q.closed).await?;
    Ok(ok(json!({ "orders": orders, "now": now_ms() })))
}

async fn list_orders(w: &Web, s: &super::Session, closed: bool) -> Result<Vec<dto::Order>, ApiError> {
    let req = pb::ListOrdersRequest { include_closed: closed, limit: 1000, page_token: String::new() };
    let r = api(w).list_orders(authed(s, req)).await?.into_inner();
    Ok(r.orders.iter().map(dto::Order::from).collect())
}

/// Every order of the shop as CSV, newest first, for a spreadsheet.
async fn csv(State(w): State<Web>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (s, shop) = w.shop_session(&headers, false)?;
    let mut out = String::from(
        "order_id,status,created_at,ready_at,deliver_by,delivered_at,robot,weight_g,compartments,dropoff_lat,dropoff_lon,reason\n",
    );
    let mut page_token = String::new();
    loop {
        let req = pb::ListOrdersRequest { include_closed: true, limit: 1000, page_token };
        let r = api(&w).list_orders(authed(&s, req)).await?.into_inner();
        for o in r.orders.iter().map(dto::Order::from) {
            let row = [
                o.id,
                o.status.to_owned(),
                iso(o.created_at),
                iso(o.ready_at),
                iso(o.deliver_by),
                iso(o.delivered_at),
                o.robot,
                o.weight_g.to_string(),
                o.compartments.to_string(),
                o.dropoff.map(|p| format!("{:.6}", p.lat)).unwrap_or_default(),
                o.dropoff.map(|p| format!("{:.6}", p.lon)).unwrap_or_default(),
                o.reason,
            ];
            let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    let mut res = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"trundle-{shop}-orders.csv\"")) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

/// One CSV cell: quoted when it must be, and a leading `=`, `+`, `-` or `@` defused so a spreadsheet does not
/// run it as a formula.
pub fn csv_cell(c: &str) -> String {
    let c = if c.starts_with(['=', '+', '-', '@']) { format!("'{c}") } else { c.to_owned() };
    if c.contains([',', '"', '\n', '\r']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c }
}

/// Unix milliseconds as an ISO 8601 UTC time (`2026-12-07T10:04:05Z`); empty for none.
pub fn iso(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return String::new() };
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

async fn ready(State(w): State<Web>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (s, _) = w.shop_session(&headers, true)?;
    let o = api(&w).mark_ready(authed(&s, pb::MarkReadyRequest { order_id: id })).await?.into_inner();
    Ok(ok(json!({ "order": dto::Order::from(&o) })))
}

async fn cancel(State(w): State<Web>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (s, _) = w.shop_session(&headers, true)?;
    let o = api(&w).cancel_order(authed(&s, pb::CancelOrderRequest { order_id: id })).await?.into_inner();
    Ok(ok(json!({ "order": dto::Order::from(&o) })))
}

async fn new_link(State(w): State<Web>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (s, _) = w.shop_session(&headers, true)?;
    let r = api(&w).new_tracking_link(authed(&s, pb::NewTrackingLinkRequest { order_id: id })).await?.into_inner();
    Ok(ok(json!({ "order_id": r.order_id, "link": link(&r.tracking_secret) })))
}

/// The shop's orders live: a `snapshot` event (open orders and those closed in the last day), then an `order`
/// event per changed order, at most twice a second per order. Ends when the session ends or its token is
/// revoked; after a lag it sends a fresh snapshot.
async fn events(State(w): State<Web>, headers: HeaderMap) -> Result<super::EventStream, ApiError> {
    let (s, shop) = w.shop_session(&headers, false)?;
    // Subscribe before the snapshot, so no change falls between the two.
    let mut changes = w.ctx.core.subscribe_orders();
    let first = today(list_orders(&w, &s, true).await?);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let core = w.ctx.core.clone();
    tokio::spawn(async move {
        if tx.send(event("snapshot", &json!({ "orders": first, "now": now_ms() }))).await.is_err() {
            return;
        }
        let mut pending: std::collections::BTreeMap<String, dto::Order> = Default::default();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                c = changes.recv() => match c {
                    Ok(o) if o.shop == shop => {
                        let o = dto::Order::from(&convert::order_to_wire(&o));
                        pending.insert(o.id.clone(), o);
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        pending.clear();
                        let Ok(orders) = list_orders(&w, &s, true).await else { return };
                        let snap = json!({ "orders": today(orders), "now": now_ms() });
                        if tx.send(event("snapshot", &snap)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if w.session(&headers).is_err() {
                        let _ = tx.send(event("ended", &json!({ "reason": "signed out" }))).await;
                        return;
                    }
                    for (_, o) in std::mem::take(&mut pending) {
                        if tx.send(event("order", &json!({ "order": o, "now": now_ms() }))).await.is_err() {
                            return;
                        }
                    }
                }
                () = tx.closed() => return,
                () = core.closed() => return,
            }
        }
    });
    Ok(sse(rx))
}

/// Open orders and those closed in the last 24 hours.
fn today(orders: Vec<dto::Order>) -> Vec<dto::Order> {
    let since = now_ms() - 24 * 3600 * 1000;
    orders.into_iter().filter(|o| !dto::is_terminal_name(o.status) || o.updated_at.unwrap_or(0) >= since).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("-1+2,3"), "\"'-1+2,3\"");
    }

    #[test]
    fn iso_times_are_utc_calendar_times() {
        assert_eq!(iso(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(iso(Some(951_782_400_000)), "2000-02-29T00:00:00Z");
        assert_eq!(iso(Some(1_796_601_845_000)), "2026-12-07T00:04:05Z");
        assert_eq!(iso(None), "");
    }
}
