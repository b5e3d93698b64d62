//! The customer's tracking link, `/t/<secret>`: the one order whose link hash matches, shown without any shop,
//! robot or other order data. A replaced link finds nothing; a closed order's link shows its end for an hour
//! and then answers 410 Gone.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use trundle_proto::convert;

use super::{ApiError, Web, dto, event, now_ms, ok, sse};
use crate::auth::hash_hex;

/// How long a closed order's link still shows how it ended.
const AFTER_CLOSE_MS: i64 = 3600 * 1000;

pub fn routes() -> Router<Web> {
    Router::new().route("/api/track/{secret}", get(tracked)).route("/api/track/{secret}/events", get(events))
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no delivery has this tracking link; ask the shop for a new one")
}

/// The hash of a well-formed secret (32 lowercase hex digits); anything else finds nothing.
fn link_hash(secret: &str) -> Result<String, ApiError> {
    if secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(hash_hex(secret))
    } else {
        Err(not_found())
    }
}

/// The order behind a link as the customer may see it, or why not.
async fn lookup(w: &Web, hash: String) -> Result<dto::Tracked, ApiError> {
    let o = w
        .ctx
        .core
        .query(move |d| d.order_by_link(&hash).map(convert::order_to_wire))
        .await
        .map_err(tonic::Status::from)?
        .ok_or_else(not_found)?;
    if dto::is_terminal(o.status) && dto::ms(o.updated_at.as_ref()).unwrap_or(0) + AFTER_CLOSE_MS < now_ms() {
        return Err(ApiError::new(StatusCode::GONE, "LINK_EXPIRED", "this delivery is over and its link has expired"));
    }
    Ok(dto::Tracked::from(&o))
}

async fn tracked(State(w): State<Web>, Path(secret): Path<String>) -> Result<Response, ApiError> {
    let t = lookup(&w, link_hash(&secret)?).await?;
    Ok(ok(json!({ "order": t, "now": now_ms() })))
}

/// The order now, then each change at most once a second, until it closes or its link is replaced.
async fn events(State(w): State<Web>, Path(secret): Path<String>) -> Result<super::EventStream, ApiError> {
    let hash = link_hash(&secret)?;
    let mut changes = w.ctx.core.subscribe_orders();
    let first = lookup(&w, hash.clone()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let core = w.ctx.core.clone();
    tokio::spawn(async move {
        let done = dto::is_terminal_name(first.status);
        if tx.send(event("order", &json!({ "order": first, "now": now_ms() }))).await.is_err() || done {
            return;
        }
        let mut pending: Option<dto::Tracked> = None;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                c = changes.recv() => match c {
                    Ok(o) if o.link_hash.as_deref() == Some(hash.as_str()) => {
                        pending = Some(dto::Tracked::from(&convert::order_to_wire(&o)));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => match lookup(&w, hash.clone()).await {
                        Ok(t) => pending = Some(t),
                        Err(_) => {
                            let _ = tx.send(event("ended", &json!({ "reason": "link ended" }))).await;
                            return;
                        }
                    },
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if let Some(t) = pending.take() {
                        let done = dto::is_terminal_name(t.status);
                        if tx.send(event("order", &json!({ "order": t, "now": now_ms() }))).await.is_err() || done {
                            return;
                        }
                    }
                    // A replaced link stops at once.
                    let h = hash.clone();
                    if !matches!(core.query(move |d| d.order_by_link(&h).is_some()).await, Ok(true)) {
                        let _ = tx.send(event("ended", &json!({ "reason": "link ended" }))).await;
                        return;
                    }
                }
                () = tx.closed() => return,
                () = core.closed() => return,
            }
        }
    });
    Ok(sse(rx))
}
