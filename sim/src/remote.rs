//! The remote driver: the simulated fleet runs against a real, running `trundle-dispatcher` over gRPC. Every
//! robot is a real robot-agent session ([`robot_agent::session::run`]) on a kinematic body in scaled time, shops
//! place and mark orders through `OrderService`, and customers type their PINs at the door, exactly as in the
//! field; only the bodies are simulated. The dispatcher keeps its own clock, so its deadlines and ETAs are in real
//! time while the bodies move `time_scale` times faster.
//!
//! Unlike the lockstep driver this one is not deterministic (real threads, real network, real clocks); it
//! answers "does the real server deliver this day?", the lockstep driver answers "what happens, exactly?".

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleet_core::map::MapGraph;
use fleet_core::robot::RobotModel;
use fleet_core::{LatLon, NodeId, OrderId, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use robot_agent::agent::Agent;
use robot_agent::platform::KinematicPlatform;
use robot_agent::session::{self, Customers, SessionConfig};
use tonic::Request;
use tonic::transport::Channel;
use trundle_proto::pb;
use trundle_proto::pb::ops_service_client::OpsServiceClient;
use trundle_proto::pb::order_service_client::OrderServiceClient;

use crate::Error;

/// What to run against the dispatcher.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// For example `http://127.0.0.1:50051`.
    pub endpoint: String,
    pub operator_token: String,
    pub robots: usize,
    pub shops: usize,
    pub orders: usize,
    /// Mean real seconds between two orders (exponential gaps).
    pub order_gap_s: f64,
    /// Simulated seconds per real second for the bodies.
    pub time_scale: f64,
    pub seed: u64,
    /// Prefix of every shop and robot id, so runs against one dispatcher do not collide.
    pub prefix: String,
    /// Real time allowed for every order to end.
    pub timeout: Duration,
}

/// What happened, as the dispatcher reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteReport {
    pub placed: usize,
    /// Refused at placement, by reason.
    pub refused: BTreeMap<String, usize>,
    pub delivered: usize,
    pub failed: usize,
    pub returned: usize,
    pub cancelled: usize,
    /// Not in a terminal state when the run ended.
    pub open: usize,
    pub wall_s: f64,
}

fn authed<T>(msg: T, token: &str) -> Result<Request<T>, Error> {
    let mut r = Request::new(msg);
    let v = format!("Bearer {token}").parse().map_err(|_| Error::RemoteSetup("token is not ASCII".into()))?;
    r.metadata_mut().insert("authorization", v);
    Ok(r)
}

fn wire(p: LatLon) -> pb::LatLon {
    pb::LatLon { lat: p.lat(), lon: p.lon() }
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn in_secs(s: u64) -> prost_types::Timestamp {
    let t = SystemTime::now() + Duration::from_secs(s);
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// Runs the fleet and the shops against the dispatcher until every order has ended or the timeout passes.
pub async fn run(map: &MapGraph, cfg: &RemoteConfig) -> Result<RemoteReport, Error> {
    if cfg.robots == 0 || cfg.shops == 0 || !(cfg.time_scale.is_finite() && cfg.time_scale > 0.0) {
        return Err(Error::RemoteSetup("robots, shops and time scale must be positive".into()));
    }
    let started = Instant::now();
    let channel = Channel::from_shared(cfg.endpoint.clone())
        .map_err(|e| Error::Connect(cfg.endpoint.clone(), e.to_string()))?
        .connect()
        .await
        .map_err(|e| Error::Connect(cfg.endpoint.clone(), e.to_string()))?;
    let mut ops = OpsServiceClient::new(channel.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let n = map.node_count() as u32;
    let centre = map.origin();
    let near_centre = |rng: &mut ChaCha8Rng, radius: f64| -> Result<LatLon, Error> {
        for _ in 0..100_000 {
            if let Some(p) = map.pos(NodeId(rng.random_range(0..n.max(1))))
                && p.distance_m(centre) < radius
            {
                return Ok(p);
            }
        }
        Err(Error::RemoteSetup("no map node near the centre".into()))
    };

    // Shops, then robots parked at them.
    let mut shops = Vec::new();
    for i in 0..cfg.shops {
        let at = near_centre(&mut rng, 800.0)?;
        let id = format!("{}shop-{i:03}", cfg.prefix);
        let req = pb::RegisterShopRequest { shop_id: id.clone(), name: format!("Shop {i}"), location: Some(wire(at)) };
        let token = ops
            .register_shop(authed(req, &cfg.operator_token)?)
            .await
            .map_err(|s| Error::Refused("a shop", s))?
            .into_inner()
            .token;
        shops.push((at, OrderServiceClient::new(channel.clone()), token));
    }
    let customers: Customers = Arc::new(Mutex::new(BTreeMap::new()));
    let mut sessions = Vec::new();
    for i in 0..cfg.robots {
        let depot = shops[i % shops.len()].0;
        let id = format!("{}robot-{i:03}", cfg.prefix);
        let req =
            pb::RegisterRobotRequest { robot_id: id.clone(), name: format!("Robot {i}"), depot: Some(wire(depot)) };
        let token = ops
            .register_robot(authed(req, &cfg.operator_token)?)
            .await
            .map_err(|s| Error::Refused("a robot", s))?
            .into_inner()
            .token;
        let mut sc = SessionConfig::new(cfg.endpoint.clone(), token);
        sc.robot_id = Some(id);
        sc.time_scale = cfg.time_scale;
        sc.poll_every = Duration::from_millis(50);
        sc.state_every = Duration::from_millis(250);
        let platform = KinematicPlatform::new(depot, Timestamp(wall_ms()));
        let (keypad_tx, keypad) = tokio::sync::mpsc::channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let c = customers.clone();
        let task = tokio::spawn(async move {
            // The keypad stays open for the session's life; customers come through `c`.
            let _keypad = keypad_tx;
            session::run(sc, Agent::new(RobotModel::default()), platform, keypad, Some(c), async {
                let _ = stop_rx.await;
            })
            .await
        });
        sessions.push((stop_tx, task));
    }

    // Orders: exponential gaps, each to a customer within 1.2 km of its shop, ready at once.
    let mut report = RemoteReport::default();
    let mut placed: Vec<(usize, String)> = Vec::new();
    for k in 0..cfg.orders {
        let gap = -(1.0 - rng.random::<f64>()).ln() * cfg.order_gap_s;
        tokio::time::sleep(Duration::from_secs_f64(gap.min(60.0))).await;
        let s = rng.random_range(0..shops.len());
        let to = loop {
            let p = near_centre(&mut rng, 1_500.0)?;
            if p.distance_m(shops[s].0) < 1_200.0 {
                break p;
            }
        };
        let req = pb::PlaceOrderRequest {
            idempotency_key: format!("{}order-{k}", cfg.prefix),
            delivery: Some(pb::Delivery {
                dropoff: Some(wire(to)),
                parcel: Some(pb::Parcel { weight_grams: rng.random_range(200..8_000), compartments: 1 }),
                ready_at: None,
                deliver_by: Some(in_secs(2 * 3600)),
            }),
        };
        let (_, client, token) = &mut shops[s];
        // Robots need a moment to connect before the first order can be assigned.
        let mut tries = 0;
        let answer = loop {
            match client.place_order(authed(req.clone(), token)?).await {
                Err(st) if reason(&st) == "NO_ROBOT_AVAILABLE" && tries < 200 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        };
        match answer {
            Ok(r) => {
                let Some(o) = r.into_inner().order else { continue };
                if let Ok(id) = OrderId::parse(&o.order_id)
                    && let Ok(mut c) = customers.lock()
                {
                    c.insert(id, o.pin.clone());
                }
                client
                    .mark_ready(authed(pb::MarkReadyRequest { order_id: o.order_id.clone() }, token)?)
                    .await
                    .map_err(|st| Error::Refused("marking an order ready", st))?;
                placed.push((s, o.order_id));
                report.placed += 1;
            }
            Err(st) => *report.refused.entry(st.message().to_owned()).or_default() += 1,
        }
    }

    // Wait until every placed order has ended, or the time is up.
    loop {
        let (mut delivered, mut failed, mut returned, mut cancelled, mut open) = (0, 0, 0, 0, 0);
        for (s, id) in &placed {
            let (_, client, token) = &mut shops[*s];
            let o = client
                .get_order(authed(pb::GetOrderRequest { order_id: id.clone() }, token)?)
                .await
                .map_err(|st| Error::Refused("reading an order", st))?
                .into_inner();
            match o.status() {
                pb::OrderStatus::Delivered => delivered += 1,
                pb::OrderStatus::Failed => failed += 1,
                pb::OrderStatus::Returned => returned += 1,
                pb::OrderStatus::Cancelled => cancelled += 1,
                _ => open += 1,
            }
        }
        (report.delivered, report.failed, report.returned, report.cancelled, report.open) =
            (delivered, failed, returned, cancelled, open);
        if open == 0 || started.elapsed() > cfg.timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (stop, task) in sessions {
        let _ = stop.send(());
        let _ = task.await;
    }
    report.wall_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The stable reason of a status (`google.rpc.ErrorInfo`), empty when it carries none.
fn reason(st: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    st.get_details_error_info().map(|i| i.reason).unwrap_or_default()
}
