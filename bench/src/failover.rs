//! `trundle-bench failover`: how long a service area on etcd is without a leader when its leader dies, and what
//! is lost. Two `trundle-dispatcher` processes of one area on a local 3-member etcd cluster (one leading, one
//! standing by); three shop clients place orders without pause (each acknowledged order cancelled at once, so the
//! robots' plans never fill); the leader is killed with SIGKILL `--kills` times, and comes back as the standby.
//!
//! Failover time is measured as the issue defines it: from the old leader's last acknowledged PlaceOrder to the
//! new leader's first. At the end every acknowledged order is read back: lost is an acknowledged order missing or
//! changed, duplicated an order the clients never had acknowledged (a retried key that made a second order).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use trundle_proto::pb;

use crate::load::authed;
use crate::{Out, machine};

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// Leader kills.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// The area leader's lease (the dispatchers' --lease-ttl-s).
    #[arg(long, default_value_t = 3)]
    lease_ttl_s: i64,
    /// The dispatcher binary; by default the `trundle-dispatcher` next to this one (`cargo build --release`).
    #[arg(long)]
    dispatcher_bin: Option<PathBuf>,
    #[arg(long, default_value = "data/monaco.osm.pbf")]
    map: PathBuf,
    #[arg(long)]
    json: bool,
}

/// One dispatcher process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The port of whichever dispatcher answers health checks (a standby binds none).
async fn leader(ports: &[u16]) -> anyhow::Result<(u16, Channel)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        for &p in ports {
            if let Ok(ch) = Channel::from_shared(format!("http://127.0.0.1:{p}"))?.connect().await {
                let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
                if h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok() {
                    return Ok((p, ch));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("no dispatcher leads the area after 60 s")
}

/// Opens a hand-driven session for a robot that never moves; kept open while the sender lives.
async fn robot_online(ch: Channel, token: &str) -> tokio::sync::mpsc::Sender<pb::RobotMessage> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let hello = pb::RobotMessage {
        msg: Some(pb::robot_message::Msg::Hello(pb::Hello {
            factsheet: Some(pb::Factsheet {
                model: "bench".into(),
                compartments: 4,
                max_payload_grams: 50_000,
                max_speed_mps: 1.6,
                battery_capacity_wh: 1000.0,
            }),
            ..Default::default()
        })),
    };
    let _ = tx.send(hello).await;
    let mut client = pb::robot_service_client::RobotServiceClient::new(ch);
    if let Ok(r) = client.session(authed(tokio_stream::wrappers::ReceiverStream::new(rx), token)).await {
        let mut inbound = r.into_inner();
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
    }
    tx
}

fn request(k: usize, base_s: i64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        idempotency_key: format!("k{k}"),
        delivery: Some(pb::Delivery {
            dropoff: Some(pb::LatLon { lat: 43.7405 + (k % 7) as f64 * 0.0004, lon: 7.4290 + (k % 5) as f64 * 0.0004 }),
            parcel: Some(pb::Parcel { weight_grams: 500, compartments: 1 }),
            ready_at: None,
            deliver_by: Some(prost_types::Timestamp { seconds: base_s + 6 * 3600, nanos: 0 }),
        }),
    }
}

pub fn failover_bench(a: FailoverArgs) -> anyhow::Result<()> {
    let bin = match &a.dispatcher_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("trundle-dispatcher"),
    };
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it (cargo build --release -p dispatcher) or pass --dispatcher-bin",
        bin.display()
    );
    let dir = tempfile::tempdir()?;
    let cluster = dispatcher::etcd::LocalCluster::start(3, &dir.path().join("etcd"))
        .map_err(|e| anyhow::anyhow!("no etcd to fail over on: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut out = Out { json: a.json, rows: Vec::new() };
    rt.block_on(run(&a, &bin, &cluster.url(), dir.path(), &mut out))
}

async fn run(
    a: &FailoverArgs,
    bin: &std::path::Path,
    url: &str,
    dir: &std::path::Path,
    out: &mut Out,
) -> anyhow::Result<()> {
    let ports = [free_port()?, free_port()?];
    let data = [dir.join("d0"), dir.join("d1")];
    let spawn = |i: usize| -> anyhow::Result<Proc> {
        let child = Command::new(bin)
            .args(["--listen", &format!("127.0.0.1:{}", ports[i]), "--advertise", &format!("127.0.0.1:{}", ports[i])])
            .arg("--data")
            .arg(&data[i])
            .args(["--store", url, "--area", "bench", "--lease-ttl-s", &a.lease_ttl_s.to_string(), "--no-improve"])
            .arg("--map")
            .arg(&a.map)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Proc(child))
    };
    let mut procs = [Some(spawn(0)?), None];
    let (_, ch) = leader(&ports[..1]).await?;
    procs[1] = Some(spawn(1)?);
    let op = std::fs::read_to_string(dispatcher::server::operator_token_path(&data[0]))?.trim().to_owned();
    let mut ops = pb::ops_service_client::OpsServiceClient::new(ch.clone());
    let at = Some(pb::LatLon { lat: 43.7393, lon: 7.4274 });
    let shop_req = pb::RegisterShopRequest { shop_id: "bakery".into(), name: "Bakery".into(), location: at };
    let shop = ops.register_shop(authed(shop_req, &op)).await?.into_inner().token;
    let mut robot_tokens = Vec::new();
    for i in 0..3 {
        let req = pb::RegisterRobotRequest { robot_id: format!("r{i}"), name: String::new(), depot: at };
        robot_tokens.push(ops.register_robot(authed(req, &op)).await?.into_inner().token);
    }

    let base_s = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    // Acknowledged orders by key: the order, the port of the dispatcher that acknowledged it, and when.
    type Acked = BTreeMap<usize, (pb::Order, u16, Instant)>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let next = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (acked, next, stop, shop) = (acked.clone(), next.clone(), stop.clone(), shop.clone());
        clients.push(tokio::spawn(async move {
            let mut key = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || key.is_some() {
                let k = *key.get_or_insert_with(|| {
                    let mut n = next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    *n += 1;
                    *n
                });
                let Ok((port, ch)) = leader(&ports).await else { return };
                let mut orders = pb::order_service_client::OrderServiceClient::new(ch);
                match orders.place_order(authed(request(k, base_s), &shop)).await {
                    Ok(r) => {
                        let Some(o) = r.into_inner().order else { return };
                        let id = o.order_id.clone();
                        if let Ok(mut m) = acked.lock() {
                            m.insert(k, (o, port, Instant::now()));
                        }
                        key = None;
                        loop {
                            let Ok((_, ch)) = leader(&ports).await else { return };
                            let mut c = pb::order_service_client::OrderServiceClient::new(ch);
                            match c.cancel_order(authed(pb::CancelOrderRequest { order_id: id.clone() }, &shop)).await {
                                Ok(_) => break,
                                Err(s) if s.code() == Code::FailedPrecondition => break,
                                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                            }
                        }
                    }
                    // Unknown outcome or no robot with the new leader yet: the same key again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }));
    }

    let count = |port: Option<u16>, after: Option<Instant>| -> (usize, Option<Instant>, Option<Instant>) {
        let m = acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let of: Vec<Instant> = m
            .values()
            .filter(|(_, p, t)| port.is_none_or(|x| *p == x) && after.is_none_or(|a| *t > a))
            .map(|(_, _, t)| *t)
            .collect();
        (m.len(), of.iter().min().copied(), of.iter().max().copied())
    };
    let mut failovers = Vec::new();
    let mut robots = Vec::new();
    for kill in 0..a.kills {
        let (port, ch) = leader(&ports).await?;
        if robots.is_empty() {
            for t in &robot_tokens {
                robots.push(robot_online(ch.clone(), t).await);
            }
        }
        let before = count(None, None).0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(None, None).0 < before + 5 {
            anyhow::ensure!(Instant::now() < deadline, "kill {kill}: orders stopped flowing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let i = ports.iter().position(|p| *p == port).context("one of ours")?;
        procs[i] = None;
        let killed_at = Instant::now();
        robots.clear();
        let last_old = count(Some(port), None).2;
        let deadline = Instant::now() + Duration::from_secs(60);
        let first_new = loop {
            let (new_port, ch) = leader(&ports).await?;
            if new_port != port {
                if robots.is_empty() {
                    for t in &robot_tokens {
                        robots.push(robot_online(ch.clone(), t).await);
                    }
                }
                if let Some(t) = count(Some(new_port), Some(killed_at)).1 {
                    break t;
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "kill {kill}: no acknowledgement from a new leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(last) = last_old {
            let s = first_new.duration_since(last).as_secs_f64();
            failovers.push(s);
            out.emit(json!({"bench": "failover", "kill": kill, "failover_s": (s * 1000.0).round() / 1000.0}));
        }
        procs[i] = Some(spawn(i)?);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }

    let (_, ch) = leader(&ports).await?;
    let mut orders = pb::order_service_client::OrderServiceClient::new(ch);
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = pb::ListOrdersRequest { include_closed: true, limit: 1000, page_token };
        let r = orders.list_orders(authed(req, &shop)).await?.into_inner();
        all.extend(r.orders);
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    let acked = acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let by_id: BTreeMap<&str, &pb::Order> = all.iter().map(|o| (o.order_id.as_str(), o)).collect();
    let lost = acked
        .values()
        .filter(|(o, _, _)| {
            by_id
                .get(o.order_id.as_str())
                .is_none_or(|now| (&now.dropoff, &now.deliver_by, &now.pin) != (&o.dropoff, &o.deliver_by, &o.pin))
        })
        .count();
    let acked_ids: std::collections::BTreeSet<&str> = acked.values().map(|(o, _, _)| o.order_id.as_str()).collect();
    let duplicated = all.iter().filter(|o| !acked_ids.contains(o.order_id.as_str())).count();
    failovers.sort_by(f64::total_cmp);
    let r2 = |v: f64| (v * 100.0).round() / 100.0;
    out.emit(json!({"bench": "failover", "measure": "summary", "kills": failovers.len(),
        "median_s": r2(failovers.get(failovers.len() / 2).copied().unwrap_or(f64::NAN)),
        "worst_s": r2(failovers.last().copied().unwrap_or(f64::NAN)),
        "orders": acked.len(), "lost": lost, "duplicated": duplicated, "lease_ttl_s": a.lease_ttl_s,
        "standby_poll_ms": 200, "machine": machine()}));
    Ok(())
}
