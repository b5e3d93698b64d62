//! The load generator behind `trundle-bench load`: N robot sessions streaming state at 1 Hz while shops place
//! orders at a fixed arrival rate, mark them ready, read each back and watch some of them, against a real
//! dispatcher (the bench starts it in its process on its own runtime and threads, on a temp dir).
//!
//! The robots are protocol-level robots, not simulated bodies: each acknowledges every mission update and
//! finishes one released step per second (a drive, a pickup, a hand-over), so orders flow through their whole
//! life and plans stay as short as a working fleet's, at a fraction of a simulated body's cost.
//!
//! Arrivals are open-loop: each request has a scheduled send time and its latency is counted from that time,
//! so a slow server cannot hide its slowness by slowing the generator down (no coordinated omission). At the
//! end every acknowledged order is read back: an acknowledged order that cannot be found is lost.
//!
//! With service areas ([`Target`] per area) each area gets its own robots, shops and arrival rate: shops and
//! drop-offs inside the area's polygon, registered with the area's leader; shops then place through the router
//! and robots open their sessions at the router, which sends each to its area's leader (the robot follows the
//! `trundle-leader` answer as the agent does).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleet_core::map::MapGraph;
use fleet_core::{LatLon, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use trundle_proto::pb;
use trundle_proto::pb::ops_service_client::OpsServiceClient;
use trundle_proto::pb::order_service_client::OrderServiceClient;
use trundle_proto::pb::robot_service_client::RobotServiceClient;

/// What to generate.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub robots: usize,
    pub shops: usize,
    pub orders_per_s: f64,
    pub seconds: f64,
    /// One in this many placed orders is watched (a `WatchOrder` stream held to the end).
    pub watch_every: usize,
    pub seed: u64,
}

/// One dispatcher (or one service area) to load.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where shops and robots are registered (the area's leader).
    pub ops_endpoint: String,
    pub operator_token: String,
    /// Where shops place and read orders (the leader itself, or the router).
    pub shop_endpoint: String,
    /// Where robots open their sessions (the leader itself, or the router, which redirects).
    pub robot_endpoint: String,
    /// The area's polygon: shops, robots and drop-offs are drawn inside it.
    pub area: Option<fleet_core::area::ServiceArea>,
    /// Prefix of shop and robot ids, distinct per area.
    pub prefix: String,
}

/// Latencies of one RPC, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies(pub Vec<f64>);

impl Latencies {
    pub fn percentile(&self, q: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() - 1) as f64 * q).round() as usize]
    }
}

/// What the run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub latencies: BTreeMap<&'static str, Latencies>,
    /// Calls that failed, by RPC and status code.
    pub errors: BTreeMap<String, usize>,
    /// Orders the dispatcher turned down for a business reason (no robot could make the deadline).
    pub refused: usize,
    /// The refusals by reason (`google.rpc.ErrorInfo` reason).
    pub refused_by_reason: BTreeMap<String, usize>,
    pub placed: usize,
    /// Orders delivered by the end (the robots finish a step a second).
    pub delivered: usize,
    /// Acknowledged orders not found afterwards. Must be zero.
    pub lost: usize,
    pub state_reports: u64,
    pub sessions_up: usize,
    pub wall_s: f64,
}

#[derive(Default)]
struct Shared {
    lat: BTreeMap<&'static str, Latencies>,
    errors: BTreeMap<String, usize>,
    refused: usize,
    refused_by_reason: BTreeMap<String, usize>,
    placed: Vec<(usize, String)>,
}

pub(crate) fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    if let Ok(v) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

fn wire(p: LatLon) -> pb::LatLon {
    pb::LatLon { lat: p.lat(), lon: p.lon() }
}

fn in_secs(s: u64) -> prost_types::Timestamp {
    let d = (SystemTime::now() + Duration::from_secs(s)).duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

fn record(shared: &Mutex<Shared>, rpc: &'static str, since: Instant, result: Result<(), Status>) {
    let ms = since.elapsed().as_secs_f64() * 1e3;
    if let Ok(mut s) = shared.lock() {
        s.lat.entry(rpc).or_default().0.push(ms);
        if let Err(st) = result {
            *s.errors.entry(format!("{rpc} {:?}", st.code())).or_default() += 1;
        }
    }
}

async fn connect(endpoint: &str) -> Result<Channel, String> {
    Channel::from_shared(endpoint.to_owned())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {e}"))
}

/// Runs the load against every target at once (each with `cfg`'s robots, shops and rate) on `map`; one report
/// for all.
pub async fn run(map: Arc<MapGraph>, targets: &[Target], cfg: &LoadConfig) -> Result<LoadReport, String> {
    let runs: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let cfg = LoadConfig { seed: cfg.seed.wrapping_add(i as u64 * 1_000_003), ..cfg.clone() };
            let (map, t) = (map.clone(), t.clone());
            tokio::spawn(async move { run_one(&map, &t, &cfg).await })
        })
        .collect();
    let mut all = LoadReport::default();
    for r in runs {
        let r = r.await.map_err(|e| e.to_string())??;
        for (rpc, l) in r.latencies {
            all.latencies.entry(rpc).or_default().0.extend(l.0);
        }
        for (k, v) in r.errors {
            *all.errors.entry(k).or_default() += v;
        }
        for (k, v) in r.refused_by_reason {
            *all.refused_by_reason.entry(k).or_default() += v;
        }
        all.refused += r.refused;
        all.placed += r.placed;
        all.delivered += r.delivered;
        all.lost += r.lost;
        all.state_reports += r.state_reports;
        all.sessions_up += r.sessions_up;
        all.wall_s = all.wall_s.max(r.wall_s);
    }
    Ok(all)
}

/// Opens a robot's session at `endpoint`, following an entry point's answer to its area's leader.
async fn open_session(
    endpoint: &str,
    token: &str,
    hello: pb::RobotMessage,
) -> Result<(tokio::sync::mpsc::Sender<pb::RobotMessage>, tonic::Streaming<pb::DispatcherMessage>), Status> {
    let mut at = endpoint.to_owned();
    for _ in 0..3 {
        let ch = connect(&at).await.map_err(Status::unavailable)?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tx.send(hello.clone()).await.map_err(|_| Status::internal("session queue"))?;
        match RobotServiceClient::new(ch).session(authed(tokio_stream::wrappers::ReceiverStream::new(rx), token)).await
        {
            Ok(r) => return Ok((tx, r.into_inner())),
            Err(st) => match st.metadata().get(trundle_proto::areas::LEADER_METADATA).and_then(|v| v.to_str().ok()) {
                Some(leader) => at = format!("http://{leader}"),
                None => return Err(st),
            },
        }
    }
    Err(Status::unavailable("redirected too often"))
}

async fn run_one(map: &MapGraph, target: &Target, cfg: &LoadConfig) -> Result<LoadReport, String> {
    let operator_token = target.operator_token.as_str();
    let mut ops = OpsServiceClient::new(connect(&target.ops_endpoint).await?);
    let channel = connect(&target.shop_endpoint).await?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let n = map.node_count() as u32;
    let centre = match &target.area {
        Some(a) => {
            let k = a.outline.len().max(1) as f64;
            let (lat, lon) = a.outline.iter().fold((0.0, 0.0), |(la, lo), p| (la + p.lat() / k, lo + p.lon() / k));
            LatLon::new(lat, lon).map_err(|e| e.to_string())?
        }
        None => map.origin(),
    };
    let area = target.area.clone();
    let near = |rng: &mut ChaCha8Rng, radius: f64| -> LatLon {
        for _ in 0..100_000 {
            if let Some(p) = map.pos(NodeId(rng.random_range(0..n.max(1))))
                && p.distance_m(centre) < radius
                && area.as_ref().is_none_or(|a| a.contains(p))
            {
                return p;
            }
        }
        centre
    };

    let mut shops = Vec::new();
    for i in 0..cfg.shops {
        let at = near(&mut rng, 1_000.0);
        let req = pb::RegisterShopRequest {
            shop_id: format!("{}shop-{i:03}", target.prefix),
            name: format!("Shop {i}"),
            location: Some(wire(at)),
        };
        let token = loop {
            match ops.register_shop(authed(req.clone(), operator_token)).await {
                Ok(r) => break r.into_inner().token,
                // Setup outruns the operator's call rate: back off as any client should.
                Err(st) if st.code() == Code::ResourceExhausted => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(st) => return Err(st.to_string()),
            }
        };
        shops.push((at, token));
    }
    let mut robot_tokens = Vec::new();
    for i in 0..cfg.robots {
        let at = near(&mut rng, 1_500.0);
        let req = pb::RegisterRobotRequest {
            robot_id: format!("{}robot-{i:04}", target.prefix),
            name: format!("Robot {i}"),
            depot: Some(wire(at)),
        };
        let token = loop {
            match ops.register_robot(authed(req.clone(), operator_token)).await {
                Ok(r) => break r.into_inner().token,
                Err(st) if st.code() == Code::ResourceExhausted => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(st) => return Err(st.to_string()),
            }
        };
        robot_tokens.push((at, token));
    }

    let shared = Arc::new(Mutex::new(Shared::default()));
    // A watch, not a Notify: a task busy when the stop comes still sees it at its next select.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let states = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let up = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Robot sessions: hello, then a state report every second; everything the dispatcher sends is read.
    let mut sessions = Vec::new();
    for (i, (at, token)) in robot_tokens.into_iter().enumerate() {
        let endpoint = target.robot_endpoint.clone();
        let (stop, states, up, shared) = (stop.clone(), states.clone(), up.clone(), shared.clone());
        // Spread the first reports over the first second, as real robots are not in step.
        let offset = Duration::from_millis((i as u64 * 997) % 1000);
        sessions.push(tokio::spawn(async move {
            let hello = pb::RobotMessage {
                msg: Some(pb::robot_message::Msg::Hello(pb::Hello {
                    factsheet: Some(pb::Factsheet {
                        model: "load".into(),
                        compartments: 2,
                        max_payload_grams: 20_000,
                        max_speed_mps: 1.6,
                        battery_capacity_wh: 1000.0,
                    }),
                    robot_id: String::new(),
                    ..Default::default()
                })),
            };
            let t0 = Instant::now();
            let resp = open_session(&endpoint, &token, hello).await;
            record(&shared, "Session open", t0, resp.as_ref().map(|_| ()).map_err(Clone::clone));
            let Ok((tx, mut inbound)) = resp else { return };
            up.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            // Released steps not yet finished, in order, and the highest seq finished.
            let (mut released, mut done_through): (Vec<u32>, u32) = (Vec::new(), 0);
            loop {
                let mut stop = stop.clone();
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                    m = inbound.next() => {
                        let m = match m {
                            Some(Ok(m)) => m,
                            // The server ended the session before the run did: a failure the report counts.
                            other => {
                                let why = match other {
                                    Some(Err(st)) => format!("Session ended {:?}", st.code()),
                                    _ => "Session ended by the server".to_owned(),
                                };
                                if let Ok(mut s) = shared.lock() {
                                    *s.errors.entry(why).or_default() += 1;
                                }
                                break;
                            }
                        };
                        if let Some(pb::dispatcher_message::Msg::Mission(u)) = m.msg {
                            released = u.steps.iter().filter(|s| s.released && s.seq > done_through).map(|s| s.seq).collect();
                            let ack = pb::RobotMessage {
                                msg: Some(pb::robot_message::Msg::Ack(pb::MissionAck { update_id: u.update_id })),
                            };
                            if tx.send(ack).await.is_err() {
                                break;
                            }
                        }
                        continue;
                    }
                }
                if !released.is_empty() {
                    let seq = released.remove(0);
                    done_through = done_through.max(seq);
                    let finished = pb::RobotMessage {
                        msg: Some(pb::robot_message::Msg::Event(pb::RobotEvent {
                            event: Some(pb::robot_event::Event::StepFinished(pb::StepResult {
                                seq,
                                outcome: pb::StepOutcome::Done as i32,
                                detail: String::new(),
                            })),
                        })),
                    };
                    if tx.send(finished).await.is_err() {
                        break;
                    }
                }
                let state = pb::RobotMessage {
                    msg: Some(pb::robot_message::Msg::State(pb::RobotState {
                        position: Some(wire(at)),
                        battery_pct: 90.0,
                        ..Default::default()
                    })),
                };
                if tx.send(state).await.is_err() {
                    if let Ok(mut s) = shared.lock() {
                        *s.errors.entry("Session state".into()).or_default() += 1;
                    }
                    break;
                }
                states.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(tx);
        }));
    }
    // Let the sessions come up before orders start.
    for _ in 0..200 {
        if up.load(std::sync::atomic::Ordering::Relaxed) >= cfg.robots {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Shops: open-loop arrivals at the fixed rate, each order read back a second later, some watched.
    let started = Instant::now();
    let total = (cfg.orders_per_s * cfg.seconds).round() as usize;
    let gap = Duration::from_secs_f64(1.0 / cfg.orders_per_s.max(1e-3));
    let mut order_tasks = Vec::with_capacity(total);
    let clients: Vec<OrderServiceClient<Channel>> =
        (0..cfg.shops).map(|_| OrderServiceClient::new(channel.clone())).collect();
    for k in 0..total {
        let due = started + gap * k as u32;
        tokio::time::sleep_until(due.into()).await;
        let s = k % cfg.shops;
        let (shop_at, token) = shops[s].clone();
        let mut client = clients[s].clone();
        let to = loop {
            let p = near(&mut rng, 1_500.0);
            if p.distance_m(shop_at) < 1_200.0 {
                break p;
            }
        };
        let (shared, stop) = (shared.clone(), stop.clone());
        let watch = cfg.watch_every > 0 && k % cfg.watch_every == 0;
        order_tasks.push(tokio::spawn(async move {
            let req = pb::PlaceOrderRequest {
                idempotency_key: format!("load-{k}"),
                delivery: Some(pb::Delivery {
                    dropoff: Some(wire(to)),
                    parcel: Some(pb::Parcel { weight_grams: 1_000, compartments: 1 }),
                    ready_at: None,
                    deliver_by: Some(in_secs(6 * 3600)),
                }),
            };
            let r = client.place_order(authed(req, &token)).await;
            let id = match r {
                Ok(r) => {
                    record(&shared, "PlaceOrder", due, Ok(()));
                    r.into_inner().order.map(|o| o.order_id)
                }
                // A refusal (the fleet cannot fit the order) is an answer, not an error.
                Err(st) if st.code() == Code::FailedPrecondition && reason(&st) != "FAILED_PRECONDITION" => {
                    record(&shared, "PlaceOrder", due, Ok(()));
                    if let Ok(mut s) = shared.lock() {
                        s.refused += 1;
                        *s.refused_by_reason.entry(reason(&st)).or_default() += 1;
                    }
                    None
                }
                Err(st) => {
                    record(&shared, "PlaceOrder", due, Err(st));
                    None
                }
            };
            let Some(id) = id else { return };
            if let Ok(mut sh) = shared.lock() {
                sh.placed.push((s, id.clone()));
            }
            let t0 = Instant::now();
            let r = client.mark_ready(authed(pb::MarkReadyRequest { order_id: id.clone() }, &token)).await;
            record(&shared, "MarkReady", t0, r.map(|_| ()));
            let read_at = Instant::now() + Duration::from_secs(1);
            tokio::time::sleep_until(read_at.into()).await;
            let r = client.get_order(authed(pb::GetOrderRequest { order_id: id.clone() }, &token)).await;
            record(&shared, "GetOrder", read_at, r.map(|_| ()));
            if watch {
                let t0 = Instant::now();
                match client.watch_order(authed(pb::WatchOrderRequest { order_id: id }, &token)).await {
                    Ok(stream) => {
                        record(&shared, "WatchOrder open", t0, Ok(()));
                        let mut stream = stream.into_inner();
                        loop {
                            let mut stop = stop.clone();
                            tokio::select! {
                                m = stream.next() => if !matches!(m, Some(Ok(_))) { break },
                                _ = stop.changed() => break,
                            }
                        }
                    }
                    Err(st) => record(&shared, "WatchOrder open", t0, Err(st)),
                }
            }
        }));
    }
    // Let the last reads finish, then stop the sessions and the watchers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    for t in order_tasks {
        let _ = t.await;
    }
    for t in sessions {
        let _ = t.await;
    }
    let wall_s = started.elapsed().as_secs_f64();

    // Nothing acknowledged may be lost.
    let (placed, mut report) = {
        let s = shared.lock().map_err(|_| "poisoned".to_owned())?;
        let report = LoadReport {
            latencies: s.lat.clone(),
            errors: s.errors.clone(),
            refused: s.refused,
            refused_by_reason: s.refused_by_reason.clone(),
            placed: s.placed.len(),
            delivered: 0,
            lost: 0,
            state_reports: states.load(std::sync::atomic::Ordering::Relaxed),
            sessions_up: up.load(std::sync::atomic::Ordering::Relaxed),
            wall_s,
        };
        (s.placed.clone(), report)
    };
    // Each shop lists its orders (a page at a time) and every acknowledged one must be there.
    let mut listed: Vec<std::collections::BTreeSet<String>> = vec![Default::default(); cfg.shops];
    for (s, (_, token)) in shops.iter().enumerate() {
        let mut client = clients[s].clone();
        let mut page = String::new();
        loop {
            let req = pb::ListOrdersRequest { include_closed: true, limit: 1000, page_token: page.clone() };
            let r = match client.list_orders(authed(req, token)).await {
                Ok(r) => r.into_inner(),
                Err(st) if st.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(st) => return Err(format!("listing orders: {st}")),
            };
            report.delivered += r.orders.iter().filter(|o| o.status() == pb::OrderStatus::Delivered).count();
            listed[s].extend(r.orders.into_iter().map(|o| o.order_id));
            if r.next_page_token.is_empty() {
                break;
            }
            page = r.next_page_token;
        }
    }
    report.lost = placed.iter().filter(|(s, id)| !listed[*s].contains(id.as_str())).count();
    Ok(report)
}

/// The stable reason of a status (`google.rpc.ErrorInfo`), empty when it carries none.
fn reason(st: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    st.get_details_error_info().map(|i| i.reason).unwrap_or_default()
}
