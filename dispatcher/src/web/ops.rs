//! The operator's endpoints: the live fleet (robots, shops, open orders, alerts, closed sidewalks, today's
//! figures), pause and resume, close and open a sidewalk, acknowledge an alert, re-assign an order, register
//! shops and robots, issue tokens. Changes go through `OpsService` with the session's token.
//!
//! The live view is one feed shared by every open dashboard: while anyone watches, one task reads the fleet from
//! the core once a second and each dashboard's stream sends that same text, so twenty dashboards cost the core
//! what one does.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use trundle_proto::convert;
use trundle_proto::pb;
use trundle_proto::pb::ops_service_server::OpsService;

use super::{ApiError, Web, authed, body, dto, event, now_ms, ok, sse};
use crate::core::CoreHandle;
use crate::service::ops::{OpsApi, alert_to_wire};

/// How often the shared feed reads the fleet.
const FEED_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/api/ops/fleet", get(fleet))
        .route("/api/ops/events", get(events))
        .route("/api/ops/robots", post(register_robot))
        .route("/api/ops/robots/{id}/pause", post(pause))
        .route("/api/ops/robots/{id}/resume", post(resume))
        .route("/api/ops/shops", post(register_shop))
        .route("/api/ops/edges/close", post(close_edge))
        .route("/api/ops/edges/open", post(open_edge))
        .route("/api/ops/alerts/{id}/ack", post(ack))
        .route("/api/ops/orders/{id}/reassign", post(reassign))
        .route("/api/ops/tokens", post(issue_token))
}

fn api(w: &Web) -> OpsApi {
    OpsApi(w.ctx.clone())
}

/// The fleet as the dashboard draws it, read on the core's thread and serialised off it. Robots and orders are
/// in a compact form (positions as [lat, lon], no per-stop plans): at 1,000 robots and 2,000 open orders a full
/// order and robot each made one event 850 KiB.
#[derive(serde::Serialize)]
struct Fleet {
    now: i64,
    robots: Vec<FeedRobot>,
    shops: Vec<dto::Shop>,
    orders: Vec<FeedOrder>,
    alerts: Vec<dto::Alert>,
    /// Closed sidewalks as node index pairs (indices into `/api/map`'s nodes).
    closed: Vec<[u32; 2]>,
    today: Today,
}

/// The last 24 hours' orders.
#[derive(serde::Serialize, Default)]
struct Today {
    placed: u64,
    delivered: u64,
    delivered_on_time: u64,
    cancelled_or_failed: u64,
    open: u64,
}

fn pair(p: Option<dto::Ll>) -> Option<[f64; 2]> {
    p.map(|p| [(p.lat * 1e6).round() / 1e6, (p.lon * 1e6).round() / 1e6])
}

#[derive(serde::Serialize)]
struct FeedRobot {
    id: String,
    name: String,
    state: &'static str,
    pos: Option<[f64; 2]>,
    battery: f64,
    paused: bool,
    fault: String,
    on_board: Vec<String>,
    stops: usize,
}

impl From<&pb::Robot> for FeedRobot {
    fn from(r: &pb::Robot) -> Self {
        let d = dto::Robot::from(r);
        FeedRobot {
            state: d.state,
            pos: pair(d.pos),
            battery: (d.battery_pct * 10.0).round() / 10.0,
            paused: d.paused,
            stops: d.planned_orders.len(),
            on_board: d.on_board,
            fault: d.fault,
            name: d.name,
            id: d.id,
        }
    }
}

#[derive(serde::Serialize)]
struct FeedOrder {
    id: String,
    shop: String,
    status: &'static str,
    robot: String,
    dropoff: Option<[f64; 2]>,
    eta: Option<i64>,
    due: Option<i64>,
    late: bool,
}

impl From<&pb::Order> for FeedOrder {
    fn from(o: &pb::Order) -> Self {
        let d = dto::Order::from(o);
        FeedOrder {
            status: d.status,
            dropoff: pair(d.dropoff),
            eta: d.eta_dropoff,
            due: d.deliver_by,
            late: d.delayed_at.is_some(),
            id: d.id,
            shop: d.shop,
            robot: d.robot,
        }
    }
}

async fn read_fleet(core: &CoreHandle) -> Result<String, crate::Error> {
    let since = fleet_core::Timestamp((now_ms() - 24 * 3600 * 1000).max(0) as u64);
    let (robots, shops, orders, alerts, closed, today) = core
        .query(move |d| {
            let robots: Vec<pb::Robot> = d.robots().map(convert::robot_to_wire).collect();
            let shops: Vec<pb::Shop> = d.shops().map(convert::shop_to_wire).collect();
            let orders: Vec<pb::Order> =
                d.orders().filter(|o| !o.status.is_terminal()).map(convert::order_to_wire).collect();
            let alerts: Vec<pb::Alert> = d.open_alerts().map(alert_to_wire).collect();
            let closed: Vec<[u32; 2]> =
                d.map().closed_edges().filter(|(a, b)| a.0 < b.0).map(|(a, b)| [a.0, b.0]).collect();
            let mut t = Today::default();
            for o in d.orders().filter(|o| o.created_at >= since) {
                t.placed += 1;
                match o.status {
                    fleet_core::order::OrderStatus::Delivered => {
                        t.delivered += 1;
                        if o.delivered_at.is_some_and(|at| at <= o.request.deliver_by) {
                            t.delivered_on_time += 1;
                        }
                    }
                    s if s.is_terminal() => t.cancelled_or_failed += 1,
                    _ => t.open += 1,
                }
            }
            (robots, shops, orders, alerts, closed, t)
        })
        .await?;
    let f = Fleet {
        now: now_ms(),
        robots: robots.iter().map(FeedRobot::from).collect(),
        shops: shops.iter().map(dto::Shop::from).collect(),
        orders: orders.iter().map(FeedOrder::from).collect(),
        alerts: alerts.iter().map(dto::Alert::from).collect(),
        closed,
        today,
    };
    Ok(serde_json::to_string(&f).unwrap_or_default())
}

/// The shared live feed: started by the first watcher, stopped when the last one leaves.
#[derive(Default)]
pub struct FleetFeed {
    tx: Mutex<Option<watch::Sender<Arc<String>>>>,
}

impl FleetFeed {
    fn subscribe(&self, core: &CoreHandle) -> watch::Receiver<Arc<String>> {
        let mut slot = self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(Arc::new(String::new()));
        *slot = Some(tx.clone());
        let core = core.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FEED_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if tx.receiver_count() == 0 {
                    return;
                }
                match read_fleet(&core).await {
                    Ok(text) => tx.send_replace(Arc::new(text)),
                    Err(_) => return,
                };
            }
        });
        rx
    }
}

async fn fleet(State(w): State<Web>, headers: HeaderMap) -> Result<Response, ApiError> {
    w.operator_session(&headers, false)?;
    let text = read_fleet(&w.ctx.core).await.map_err(tonic::Status::from)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response())
}

use axum::response::IntoResponse;

/// `fleet` events, about once a second, each the whole fleet (as `/api/ops/fleet`). Ends with the session.
async fn events(State(w): State<Web>, headers: HeaderMap) -> Result<super::EventStream, ApiError> {
    w.operator_session(&headers, false)?;
    let mut feed = w.fleet.subscribe(&w.ctx.core);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = feed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if w.operator_session(&headers, false).is_err() {
                        let _ = tx.send(event("ended", &json!({ "reason": "signed out" }))).await;
                        return;
                    }
                    let text = feed.borrow_and_update().clone();
                    let ev = axum::response::sse::Event::default().event("fleet").data(text.as_str());
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    Ok(sse(rx))
}

async fn pause(State(w): State<Web>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s = w.operator_session(&headers, true)?;
    let r = api(&w).pause_robot(authed(&s, pb::RobotRequest { robot_id: id })).await?.into_inner();
    Ok(ok(json!({ "robot": dto::Robot::from(&r) })))
}

async fn resume(State(w): State<Web>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s = w.operator_session(&headers, true)?;
    let r = api(&w).resume_robot(authed(&s, pb::RobotRequest { robot_id: id })).await?.into_inner();
    Ok(ok(json!({ "robot": dto::Robot::from(&r) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edge {
    from: u32,
    to: u32,
}

async fn close_edge(
    State(w): State<Web>,
    headers: HeaderMap,
    b: Result<axum::Json<Edge>, JsonRejection>,
) -> Result<Response, ApiError> {
    let s = w.operator_session(&headers, true)?;
    let e = body(b)?;
    api(&w).close_edge(authed(&s, pb::EdgeRequest { from_node: e.from, to_node: e.to })).await?;
    Ok(ok(json!({ "closed": [e.from, e.to] })))
}

async fn open_edge(
    State(w): State<Web>,
    headers: HeaderMap,
    b: Result<axum::Json<Edge>, JsonRejection>,
) -> Result<Response, ApiError> {
    let s = w.operator_session(&headers, true)?;
    let e = body(b)?;
    api(&w).open_edge(authed(&s, pb::EdgeRequest { from_node: e.from, to_node: e.to })).await?;
    Ok(ok(json!({ "opened": [e.from, e.to] })))
}

async fn ack(State(w): State<Web>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s = w.operator_session(&headers, true)?;
    let alert_id: u64 =
        id.parse().map_err(|_| ApiError::bad_field("alert_id", format!("{id:?} is not an alert id")))?;
    api(&w).ack_alert(authed(&s, pb::AckAlertRequest { alert_id })).await?;
    Ok(ok(json!({ "acknowledged": alert_id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reassign {
    robot: String,
}

async fn reassign(
    State(w): State<Web>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<axum::Json<Reassign>, JsonRejection>,
) -> Result<Response, ApiError> {
    let s = w.operator_session(&headers, true)?;
    let r = body(b)?;
    let o = api(&w).reassign_order(authed(&s, pb::ReassignOrderRequest { order_id: id, robot_id: r.robot })).await?;
    Ok(ok(json!({ "order": dto::Order::from(o.get_ref()) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    id: String,
    #[serde(default)]
    name: String,
    lat: f64,
    lon: f64,
}

async fn register_shop(
    State(w): State<Web>,
    headers: HeaderMap,
    b: Result<axum::Json<Register>, JsonRejection>,
) -> Result<Response, ApiError> {
    let s = w.operator_session(&headers, true)?;
    let r = body(b)?;
    let req =
        pb::RegisterShopRequest { shop_id: r.id, name: r.name, location: Some(pb::LatLon { lat: r.lat, lon: r.lon }) };
    let out = api(&w).register_shop(authed(&s, req)).await?.into_inner();
    Ok(ok(json!({ "shop": out.shop.as_ref().map(dto::Shop::from), "token": out.token })))
}

async fn register_robot(
    State(w): State<Web>,
    headers: HeaderMap,
    b: Result<axum::Json<Register>, JsonRejection>,
) -> Result<Response, ApiError> {
    let s = w.operator_session(&headers, true)?;
    let r = body(b)?;
    let req =
        pb::RegisterRobotRequest { robot_id: r.id, name: r.name, depot: Some(pb::LatLon { lat: r.lat, lon: r.lon }) };
    let out = api(&w).register_robot(authed(&s, req)).await?.into_inner();
    Ok(ok(json!({ "robot": out.robot.as_ref().map(dto::Robot::from), "token": out.token })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueToken {
    /// shop, robot or operator.
    role: String,
    #[serde(default)]
    subject: String,
}

async fn issue_token(
    State(w): State<Web>,
    headers: HeaderMap,
    b: Result<axum::Json<IssueToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    let s = w.operator_session(&headers, true)?;
    let r = body(b)?;
    let role = match r.role.as_str() {
        "shop" => pb::Role::Shop,
        "robot" => pb::Role::Robot,
        "operator" => pb::Role::Operator,
        other => return Err(ApiError::bad_field("role", format!("{other:?} is not shop, robot or operator"))),
    };
    let out = api(&w).issue_token(authed(&s, pb::IssueTokenRequest { role: role as i32, subject: r.subject })).await?;
    Ok(ok(json!({ "token": out.get_ref().token })))
}
