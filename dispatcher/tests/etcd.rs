//! The etcd store on a real 3-member etcd cluster on loopback (Debian's `etcd-server`; `.ci/run` installs it;
//! each test starts its own cluster in a temp dir and stops it by its processes' handles).
//!
//! - The store keeps records and tokens, and fences: a leader whose lease ended writes nothing, however late its
//!   write arrives, and the next leader holds a larger fencing token and finds everything acknowledged.
//! - A leader paused past its lease writes nothing when it resumes, and stops.
//! - etcd members die: with one gone the area writes on; without a quorum nothing is acknowledged and the leader
//!   steps down; with the members back a new leader has everything acknowledged.
//! - The router: a shop talks only to `trundle-router`, which sends its calls to the area's leader and, across a
//!   failover, to the next one.
//! - Failover: two `trundle-dispatcher` processes of one area, one leading and one standing by; the leader is
//!   killed with SIGKILL while clients place orders (`TRUNDLE_FAILOVER_CYCLES` times, default 20), a standby takes
//!   over from the store each time, every acknowledged order exists exactly once with its content, and real
//!   agents that know only the router (which sends them to each new leader) then deliver every order.
//! - Two areas: a robot handed over from one to the other while the other fails over, found again through the
//!   router, delivers there; orders outside a shop's area are refused.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatcher::etcd::{EtcdConfig, EtcdStore, LocalCluster};
use dispatcher::store::{Principal, Store, TokenEntry};
use fleet_core::dispatcher::{Meta, Record};
use fleet_core::host::RecordKey;
use tonic::transport::Channel;
use tonic::{Code, Request};
use trundle_proto::pb;
use trundle_proto::prost_types::Timestamp;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A 3-member etcd cluster on loopback in a temp dir; its processes are killed when it is dropped.
struct Etcd {
    cluster: LocalCluster,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = LocalCluster::start(3, dir.path())
            .unwrap_or_else(|e| panic!("these tests need etcd ({e}); .ci/run installs it"));
        Etcd { cluster, _dir: dir }
    }

    fn url(&self) -> String {
        self.cluster.url()
    }
}

fn config(etcd: &Etcd, area: &str) -> EtcdConfig {
    EtcdConfig::parse(&etcd.url(), area).expect("valid")
}

/// Leads `area` on a thread of its own (leading blocks while another leads).
fn lead_in_background(cfg: EtcdConfig, holder: &'static str) -> std::thread::JoinHandle<EtcdStore> {
    std::thread::spawn(move || EtcdStore::lead(cfg, holder).expect("leads"))
}

#[test]
fn the_etcd_store_keeps_records_and_fences_a_stale_leader() {
    let etcd = Etcd::start();
    let first = lead_in_background(config(&etcd, "t1"), "first").join().expect("first leads");
    let meta = |seq| (RecordKey::Meta, Record::Meta(Meta { next_order_seq: seq, ..Meta::default() }));
    first.write(&[meta(40)]).expect("writes");
    // One group may hold two records of a key: the last stands (etcd refuses a transaction that puts a key twice).
    first.write(&[meta(41), meta(42)]).expect("writes");
    first.put_token(&TokenEntry { hash_hex: "ab".into(), principal: Principal::Operator }).expect("token");
    assert_eq!(first.load().expect("loads"), vec![meta(42).1]);

    // A standby waits while the first leads.
    let second = lead_in_background(config(&etcd, "t1"), "second");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!second.is_finished(), "a second leader while the first's lease lives");
    // Another area is independent.
    let other = lead_in_background(config(&etcd, "t2"), "other").join().expect("leads its own area");
    assert!(other.load().expect("loads").is_empty());

    // The first's lease ends behind its back (as when it is paused past its TTL): the second takes over, and the
    // first's late write is refused by etcd even though it has not noticed.
    revoke(&etcd, first.leadership().lease);
    let second = second.join().expect("second leads");
    assert!(second.leadership().token > first.leadership().token, "fencing tokens rise");
    let late = first.write(&[meta(99)]).expect_err("a stale leader's write is refused");
    assert!(late.to_string().contains("another dispatcher now leads"), "{late}");
    assert_eq!(
        second.load().expect("loads"),
        vec![meta(42).1],
        "the new leader sees what was acknowledged, not the late write"
    );
    assert_eq!(second.load_tokens().expect("tokens").len(), 1);
    second.write(&[meta(43)]).expect("the new leader writes");
    second.delete_tokens(&["ab".into()]).expect("deletes");
    assert!(second.load_tokens().expect("tokens").is_empty());
    // Resigning hands the area over at once.
    let third = lead_in_background(config(&etcd, "t1"), "third");
    second.resign();
    let third = third.join().expect("third leads");
    assert_eq!(third.load().expect("loads"), vec![meta(43).1]);
}

/// Revokes a lease directly in etcd.
fn revoke(etcd: &Etcd, lease: i64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let ch = Channel::from_shared(format!("http://{}", etcd.cluster.clients[0]))
            .expect("url")
            .connect()
            .await
            .expect("connects");
        trundle_proto::etcd::lease_client::LeaseClient::new(ch)
            .lease_revoke(trundle_proto::etcd::LeaseRevokeRequest { id: lease })
            .await
            .expect("revoked");
    });
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    r
}

/// A dispatcher process of area `north` on `port`; killed when dropped.
struct Dispatcher {
    child: Child,
}

impl Dispatcher {
    fn spawn(etcd: &Etcd, port: u16, data: &std::path::Path) -> Dispatcher {
        Self::spawn_in(etcd, port, data, "north", None)
    }

    /// A dispatcher of `area`, with the areas file `areas` if given.
    fn spawn_in(
        etcd: &Etcd,
        port: u16,
        data: &std::path::Path,
        area: &str,
        areas: Option<&std::path::Path>,
    ) -> Dispatcher {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trundle-dispatcher"));
        if let Some(a) = areas {
            cmd.arg("--areas").arg(a);
        }
        let child = cmd
            .args(["--listen", &format!("127.0.0.1:{port}"), "--advertise", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .args(["--store", &etcd.url(), "--area", area, "--lease-ttl-s", "3", "--no-improve"])
            .arg("--map")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/monaco.osm.pbf"))
            .env("RUST_LOG", std::env::var("TRUNDLE_FAILOVER_RUST_LOG").unwrap_or_else(|_| "warn".into()))
            // `TRUNDLE_FAILOVER_LOG=FILE` keeps what the dispatchers print (their log goes to stdout).
            .stdout(match std::env::var_os("TRUNDLE_FAILOVER_LOG") {
                Some(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_or_else(|_| Stdio::null(), Stdio::from),
                None => Stdio::null(),
            })
            .stderr(Stdio::null())
            .spawn()
            .expect("the dispatcher starts");
        Dispatcher { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The port of whichever dispatcher answers health checks now (a standby binds no port).
async fn leader(ports: &[u16], within: Duration) -> (u16, Channel) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for &p in ports {
            if let Ok(ch) = Channel::from_shared(format!("http://127.0.0.1:{p}")).expect("url").connect().await {
                let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
                if h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok() {
                    return (p, ch);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no dispatcher leads the area");
}

/// Keeps one robot online (it never moves) through a hand-driven session on `ch`; also returns the fencing token
/// its welcome carried (0 when the session did not open).
async fn robot_online(ch: Channel, token: &str) -> (tokio::sync::mpsc::Sender<pb::RobotMessage>, u64) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let hello = pb::RobotMessage {
        msg: Some(pb::robot_message::Msg::Hello(pb::Hello {
            factsheet: Some(pb::Factsheet {
                model: "test".into(),
                compartments: 4,
                max_payload_grams: 50_000,
                max_speed_mps: 1.6,
                battery_capacity_wh: 1000.0,
            }),
            ..Default::default()
        })),
    };
    tx.send(hello).await.expect("queue");
    let mut client = pb::robot_service_client::RobotServiceClient::new(ch);
    let mut fencing = 0;
    if let Ok(r) = client.session(authed(tokio_stream::wrappers::ReceiverStream::new(rx), token)).await {
        let mut inbound = r.into_inner();
        if let Ok(Some(pb::DispatcherMessage { msg: Some(pb::dispatcher_message::Msg::Welcome(w)) })) =
            inbound.message().await
        {
            fencing = w.fencing_token;
        }
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
    }
    (tx, fencing)
}

/// Registers shop `bakery` and robot `r1` through the leader on `ch`, whose data dir holds the operator token;
/// their tokens.
async fn shop_and_robot(ch: Channel, leader_data: &std::path::Path) -> (String, String) {
    let op = std::fs::read_to_string(dispatcher::server::operator_token_path(leader_data)).expect("operator token");
    let op = op.trim().to_owned();
    let mut ops = pb::ops_service_client::OpsServiceClient::new(ch);
    let shop = ops
        .register_shop(authed(
            pb::RegisterShopRequest {
                shop_id: "bakery".into(),
                name: "Bakery".into(),
                location: Some(pb::LatLon { lat: 43.7393, lon: 7.4274 }),
            },
            &op,
        ))
        .await
        .expect("shop")
        .into_inner()
        .token;
    let req = pb::RegisterRobotRequest {
        robot_id: "r1".into(),
        name: String::new(),
        depot: Some(pb::LatLon { lat: 43.7393, lon: 7.4274 }),
    };
    let robot = ops.register_robot(authed(req, &op)).await.expect("robot").into_inner().token;
    (shop, robot)
}

/// An acknowledged order, the port of the dispatcher that acknowledged it, and when.
type Acked = (pb::Order, u16, Instant);

fn request(k: usize, base_s: i64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        idempotency_key: format!("k{k}"),
        delivery: Some(pb::Delivery {
            dropoff: Some(pb::LatLon { lat: 43.7405 + (k % 7) as f64 * 0.0004, lon: 7.4290 + (k % 5) as f64 * 0.0004 }),
            parcel: Some(pb::Parcel { weight_grams: 500, compartments: 1 }),
            ready_at: None,
            // A day ahead: the agents drive in scaled time while the dispatcher plans in real time, so a robot's
            // plan holds many orders before it reaches this.
            deliver_by: Some(Timestamp { seconds: base_s + 24 * 3600, nanos: 0 }),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_leader_is_killed_and_nothing_acknowledged_is_lost() {
    let cycles: usize = std::env::var("TRUNDLE_FAILOVER_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let etcd = Etcd::start();
    let dirs = [tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir")];
    let ports = [free_port(), free_port()];
    let mut procs: Vec<Option<Dispatcher>> = vec![Some(Dispatcher::spawn(&etcd, ports[0], dirs[0].path())), None];
    let (_, ch) = leader(&ports[..1], Duration::from_secs(60)).await;
    procs[1] = Some(Dispatcher::spawn(&etcd, ports[1], dirs[1].path()));
    let router_port = free_port();
    let router = dispatcher::router::Router::new(&dispatcher::etcd::EtcdConfig::endpoints(&etcd.url()).expect("urls"))
        .expect("router");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", router_port)).await.expect("binds");
    tokio::spawn(dispatcher::router::serve(router, listener, std::future::pending()));
    // Shop `bakery`; ten real agents that know only the router, which deliver every order (`r1` and nine more);
    // and robot `watch`, paused away from the shop (it takes no work), whose hand-driven session reads each
    // leader's fencing token.
    let (shop, first) = shop_and_robot(ch.clone(), dirs[0].path()).await;
    let op = std::fs::read_to_string(dispatcher::server::operator_token_path(dirs[0].path())).expect("operator token");
    let mut ops = pb::ops_service_client::OpsServiceClient::new(ch.clone());
    let customers: robot_agent::session::Customers = Arc::default();
    agent_with(format!("http://127.0.0.1:{router_port}"), first, CASINO, customers.clone());
    for i in 2..11 {
        let req = pb::RegisterRobotRequest { robot_id: format!("r{i}"), name: String::new(), depot: at(CASINO) };
        let token = ops.register_robot(authed(req, op.trim())).await.expect("robot").into_inner().token;
        agent_with(format!("http://127.0.0.1:{router_port}"), token, CASINO, customers.clone());
    }
    let req = pb::RegisterRobotRequest { robot_id: "watch".into(), name: String::new(), depot: at(PRINCESSE_GRACE) };
    let watcher = ops.register_robot(authed(req, op.trim())).await.expect("robot").into_inner().token;
    ops.pause_robot(authed(pb::RobotRequest { robot_id: "watch".into() }, op.trim())).await.expect("paused");
    let robot_tokens = vec![watcher];

    let base_s = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()) as i64;
    // Acknowledged orders by key, and which dispatcher answered each when.
    let acked: Arc<Mutex<BTreeMap<usize, Acked>>> = Arc::default();
    let next = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (acked, next, stop, shop) = (acked.clone(), next.clone(), stop.clone(), shop.clone());
        let customers = customers.clone();
        clients.push(tokio::spawn(async move {
            let mut key = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || key.is_some() {
                let k = *key.get_or_insert_with(|| {
                    let mut n = next.lock().expect("lock");
                    *n += 1;
                    *n
                });
                let (port, ch) = leader(&ports, Duration::from_secs(60)).await;
                let mut orders = pb::order_service_client::OrderServiceClient::new(ch);
                match orders.place_order(authed(request(k, base_s), &shop)).await {
                    Ok(r) => {
                        let o = r.into_inner().order.expect("order");
                        let id = o.order_id.clone();
                        customers
                            .lock()
                            .expect("lock")
                            .insert(fleet_core::OrderId::parse(&id).expect("valid"), o.pin.clone());
                        acked.lock().expect("lock").insert(k, (o, port, Instant::now()));
                        key = None;
                        // Packed at once. A ready whose answer was lost is sent again (ready twice is no error).
                        loop {
                            let (_, ch) = leader(&ports, Duration::from_secs(60)).await;
                            let mut c = pb::order_service_client::OrderServiceClient::new(ch);
                            match c.mark_ready(authed(pb::MarkReadyRequest { order_id: id.clone() }, &shop)).await {
                                Ok(_) => break,
                                Err(s) if s.code() == Code::FailedPrecondition => break,
                                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                            }
                        }
                        // About two orders a second in all, which the ten robots deliver about as they come.
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                    }
                    // The server went away mid-call (the outcome is unknown: the same key again), or no robot
                    // has said hello to the new leader yet.
                    Err(s)
                        if matches!(
                            s.code(),
                            Code::Unavailable
                                | Code::Unknown
                                | Code::Cancelled
                                | Code::FailedPrecondition
                                | Code::Internal
                                | Code::ResourceExhausted
                        ) =>
                    {
                        if std::env::var_os("TRUNDLE_FAILOVER_LOG").is_some() {
                            eprintln!("k{k} on {port}: {:?} {}", s.code(), s.message());
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(s) => panic!("key k{k}: {s:?}"),
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }));
    }

    let mut failovers = Vec::new();
    // The robots' sessions with the current leader (held open until it is killed).
    let mut robots = Vec::new();
    let mut last_token = 0u64;
    for cycle in 0..cycles {
        let (port, ch) = leader(&ports, Duration::from_secs(60)).await;
        if robots.is_empty() {
            for t in &robot_tokens {
                let (tx, fencing) = robot_online(ch.clone(), t).await;
                last_token = fencing;
                robots.push(tx);
            }
        }
        // Let some orders through this leader, then kill it.
        let before = acked.lock().expect("lock").len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().expect("lock").len() < before + 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(acked.lock().expect("lock").len() >= before + 3, "cycle {cycle}: orders stopped flowing");
        let i = ports.iter().position(|p| *p == port).expect("one of ours");
        procs[i].as_mut().expect("running").kill();
        let killed_at = Instant::now();
        robots.clear();
        let mut new_token = 0;
        // The next leader's first acknowledgement.
        let last_old = acked.lock().expect("lock").values().filter(|(_, p, _)| *p == port).map(|(_, _, t)| *t).max();
        let deadline = Instant::now() + Duration::from_secs(60);
        let first_new = loop {
            let (new_port, ch) = leader(&ports, Duration::from_secs(60)).await;
            if new_port != port {
                // Robots reconnect to the new leader so that orders can be placed.
                if robots.is_empty() {
                    for t in &robot_tokens {
                        let (tx, fencing) = robot_online(ch.clone(), t).await;
                        // Each new leader welcomes robots with a larger fencing token than the last.
                        assert!(fencing > last_token, "cycle {cycle}: token {fencing} after {last_token}");
                        new_token = fencing;
                        robots.push(tx);
                    }
                }
                let first = acked
                    .lock()
                    .expect("lock")
                    .values()
                    .filter(|(_, p, t)| *p == new_port && *t > killed_at)
                    .map(|(_, _, t)| *t)
                    .min();
                if let Some(t) = first {
                    break t;
                }
            }
            assert!(Instant::now() < deadline, "cycle {cycle}: no acknowledgement from a new leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(last) = last_old {
            failovers.push(first_new.duration_since(last).as_secs_f64());
        }
        if new_token > 0 {
            last_token = new_token;
        }
        // The killed one comes back as the standby.
        procs[i] = Some(Dispatcher::spawn(&etcd, ports[i], dirs[i].path()));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }

    let (_, ch) = leader(&ports, Duration::from_secs(60)).await;
    let mut orders = pb::order_service_client::OrderServiceClient::new(ch);
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = orders
            .list_orders(authed(pb::ListOrdersRequest { include_closed: true, limit: 1000, page_token }, &shop))
            .await
            .expect("lists")
            .into_inner();
        all.extend(r.orders);
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    {
        let acked = acked.lock().expect("lock");
        let by_id: BTreeMap<&str, &pb::Order> = all.iter().map(|o| (o.order_id.as_str(), o)).collect();
        assert_eq!(by_id.len(), all.len(), "no order listed twice");
        for (k, (o, _, _)) in acked.iter() {
            let now =
                by_id.get(o.order_id.as_str()).unwrap_or_else(|| panic!("acknowledged k{k} ({}) is lost", o.order_id));
            assert_eq!((&now.dropoff, &now.deliver_by, &now.pin), (&o.dropoff, &o.deliver_by, &o.pin), "k{k}");
        }
        assert_eq!(all.len(), acked.len(), "every order was acknowledged once: no retried key made a second order");
    }

    // The real agents, following the router across every failover, deliver every order.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let open = loop {
        let (_, ch) = leader(&ports, Duration::from_secs(60)).await;
        let mut orders = pb::order_service_client::OrderServiceClient::new(ch);
        let req = pb::ListOrdersRequest { include_closed: false, limit: 1000, page_token: String::new() };
        let open = match orders.list_orders(authed(req, &shop)).await {
            Ok(r) => r.into_inner().orders,
            Err(_) => continue,
        };
        if open.is_empty() || Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(open.is_empty(), "not delivered: {:?}", open.iter().map(|o| (&o.order_id, o.status())).collect::<Vec<_>>());
    let (_, ch) = leader(&ports, Duration::from_secs(60)).await;
    let mut orders = pb::order_service_client::OrderServiceClient::new(ch);
    let mut delivered = 0;
    let mut page_token = String::new();
    loop {
        let req = pb::ListOrdersRequest { include_closed: true, limit: 1000, page_token };
        let r = orders.list_orders(authed(req, &shop)).await.expect("lists").into_inner();
        for o in &r.orders {
            assert_eq!(o.status(), pb::OrderStatus::Delivered, "{} ended {:?}", o.order_id, o.status());
            delivered += 1;
        }
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    assert_eq!(delivered, all.len());
    println!("every order delivered {:.0} s after the last kill", started.elapsed().as_secs_f64());
    failovers.sort_by(f64::total_cmp);
    println!(
        "{} failovers: last acknowledgement of the old leader to first of the new: median {:.2} s, worst {:.2} s; {} orders",
        failovers.len(),
        failovers.get(failovers.len() / 2).copied().unwrap_or(f64::NAN),
        failovers.last().copied().unwrap_or(f64::NAN),
        all.len()
    );
}

/// A leader paused (SIGSTOP) past its lease: the standby takes over; when the old leader resumes, a call it
/// takes in before noticing is refused (its write is fenced off by etcd), the order it was asked to place does not
/// exist, and it stops serving on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_that_resumes_writes_nothing() {
    let etcd = Etcd::start();
    let dirs = [tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir")];
    let ports = [free_port(), free_port()];
    let mut a = Dispatcher::spawn(&etcd, ports[0], dirs[0].path());
    let (_, ch) = leader(&ports[..1], Duration::from_secs(60)).await;
    let mut b = Dispatcher::spawn(&etcd, ports[1], dirs[1].path());
    let (shop, robot) = shop_and_robot(ch.clone(), dirs[0].path()).await;
    let (_a_robot, a_token) = robot_online(ch.clone(), &robot).await;
    let base_s = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()) as i64;
    let mut on_a = pb::order_service_client::OrderServiceClient::new(ch.clone());
    let mut placed = None;
    for _ in 0..100 {
        match on_a.place_order(authed(request(1, base_s), &shop)).await {
            Ok(r) => {
                placed = r.into_inner().order;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let placed = placed.expect("placed on the first leader");

    // Pause the leader past its 3 s lease: the standby takes the area.
    let signal = |sig: &str, pid: u32| {
        assert!(Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill runs").success());
    };
    signal("-STOP", a.child.id());
    let (port, ch_b) = leader(&ports[1..], Duration::from_secs(30)).await;
    assert_eq!(port, ports[1]);
    let (_b_robot, b_token) = robot_online(ch_b.clone(), &robot).await;
    assert!(b_token > a_token, "the new leader's token {b_token} is above the old one's {a_token}");

    // Resume the old leader and ask it, at once, to place another order: it must not be acknowledged.
    signal("-CONT", a.child.id());
    let late = tokio::time::timeout(Duration::from_secs(15), on_a.place_order(authed(request(2, base_s), &shop))).await;
    assert!(!matches!(late, Ok(Ok(_))), "a paused ex-leader acknowledged an order: {late:?}");
    // Refused by etcd's fence (or by its own, when it noticed the lapsed lease first); a closed connection is a
    // refusal too.
    if let Ok(Err(s)) = &late
        && s.code() == Code::Unavailable
        && s.message().starts_with("storage failed")
    {
        assert!(s.message().contains("now leads") || s.message().contains("may have lapsed"), "{s:?}");
    }
    println!("the resumed ex-leader answered: {late:?}");
    // It stops on its own once it sees it lost the area.
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.child.try_wait().expect("status").is_none() {
        assert!(Instant::now() < deadline, "the ex-leader kept running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new leader has the first order and not the second.
    let mut on_b = pb::order_service_client::OrderServiceClient::new(ch_b);
    let all = on_b
        .list_orders(authed(
            pb::ListOrdersRequest { include_closed: true, limit: 1000, page_token: String::new() },
            &shop,
        ))
        .await
        .expect("lists")
        .into_inner()
        .orders;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].order_id, placed.order_id);
    b.kill();
}

/// etcd members die under the area: with one member gone the area keeps writing; with two gone (no quorum) a
/// write is reported as failed or unknown, never acknowledged, and the leader steps down; once the members are
/// back a new leader takes the area with every acknowledged write.
#[test]
fn losing_etcd_members_loses_nothing_acknowledged() {
    let mut etcd = Etcd::start();
    let meta = |seq| (RecordKey::Meta, Record::Meta(Meta { next_order_seq: seq, ..Meta::default() }));
    let shop = |i: u32| {
        let s = fleet_core::dispatcher::Shop {
            id: fleet_core::ShopId::parse(&format!("s{i}")).expect("id"),
            name: format!("Shop {i}"),
            place: fleet_core::order::Place {
                pos: fleet_core::LatLon::new(43.7393, 7.4274).expect("valid"),
                node: fleet_core::NodeId(0),
            },
        };
        let r = Record::Shop(s);
        (RecordKey::of(&r), r)
    };
    let first = lead_in_background(config(&etcd, "m"), "first").join().expect("leads");
    first.write(&[meta(1), shop(1)]).expect("writes");
    // One member of three gone: quorum holds, writes go on (possibly after etcd elects a new leader).
    etcd.cluster.kill(0);
    first.write(&[shop(2)]).expect("writes with two members of three");
    // A second gone: no quorum. The write is not acknowledged, and the leader stops writing.
    etcd.cluster.kill(1);
    let lost = first.write(&[shop(3)]);
    assert!(lost.is_err(), "acknowledged without a quorum");
    let why = lost.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(why.contains("unknown") || why.contains("refused") || why.contains("lapsed"), "{why}");
    assert!(!first.leadership().is_live(), "the leader stepped down");
    assert!(first.write(&[shop(4)]).is_err(), "a leader that stepped down writes nothing");
    // The members come back; a new leader takes the area with everything acknowledged.
    etcd.cluster.restart(0).expect("restarts");
    etcd.cluster.restart(1).expect("restarts");
    let second = lead_in_background(config(&etcd, "m"), "second").join().expect("leads again");
    let records = second.load().expect("loads");
    for want in [meta(1).1, shop(1).1, shop(2).1] {
        assert!(records.contains(&want), "lost {want:?}");
    }
    assert!(!records.contains(&shop(4).1));
}

/// A shop that talks only to the router keeps placing orders across a failover of its area.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_follows_the_area_leader_across_a_failover() {
    let etcd = Etcd::start();
    let dirs = [tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir")];
    let ports = [free_port(), free_port()];
    let mut a = Dispatcher::spawn(&etcd, ports[0], dirs[0].path());
    let (_, ch) = leader(&ports[..1], Duration::from_secs(60)).await;
    let _b = Dispatcher::spawn(&etcd, ports[1], dirs[1].path());
    let router_port = free_port();
    let router = dispatcher::router::Router::new(&dispatcher::etcd::EtcdConfig::endpoints(&etcd.url()).expect("urls"))
        .expect("router");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", router_port)).await.expect("binds");
    tokio::spawn(dispatcher::router::serve(router, listener, std::future::pending()));

    let (shop, robot) = shop_and_robot(ch.clone(), dirs[0].path()).await;
    let (mut session, _) = robot_online(ch.clone(), &robot).await;

    let (_, via) = leader(&[router_port], Duration::from_secs(30)).await;
    let mut shop_client = pb::order_service_client::OrderServiceClient::new(via);
    let unknown = shop_client.list_orders(authed(pb::ListOrdersRequest::default(), "trd_unknown")).await;
    assert_eq!(unknown.expect_err("refused").code(), Code::Unauthenticated);
    let base_s = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()) as i64;
    let mut acked = Vec::new();
    for k in 0..10 {
        if k == 5 {
            // The leader dies; the robot finds the next one; the shop's client notices nothing but a slower call.
            a.kill();
            let (_, ch_b) = leader(&ports[1..], Duration::from_secs(30)).await;
            session = robot_online(ch_b, &robot).await.0;
        }
        let mut placed = None;
        for _ in 0..200 {
            match shop_client.place_order(authed(request(k, base_s), &shop)).await {
                Ok(r) => {
                    placed = r.into_inner().order;
                    break;
                }
                // The new leader has not heard from the robot yet.
                Err(s) if s.code() == Code::FailedPrecondition => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(s) => panic!("order {k} through the router: {s:?}"),
            }
        }
        let o = placed.expect("placed through the router");
        // Cancelled at once so the parked robot's plan never fills.
        shop_client
            .cancel_order(authed(pb::CancelOrderRequest { order_id: o.order_id.clone() }, &shop))
            .await
            .expect("cancelled through the router");
        acked.push(o);
    }
    drop(session);
    let all = shop_client
        .list_orders(authed(
            pb::ListOrdersRequest { include_closed: true, limit: 1000, page_token: String::new() },
            &shop,
        ))
        .await
        .expect("lists through the router")
        .into_inner()
        .orders;
    assert_eq!(all.len(), acked.len(), "{all:?}");
    for o in &acked {
        assert!(all.iter().any(|x| x.order_id == o.order_id && x.dropoff == o.dropoff), "{} lost", o.order_id);
    }
}

/// Monaco cut in two at latitude 43.737: `north` (the casino) and `south` (the port).
const AREAS: &str = r#"{"type":"FeatureCollection","features":[
  {"type":"Feature","properties":{"name":"north"},"geometry":{"type":"Polygon",
   "coordinates":[[[7.40,43.737],[7.45,43.737],[7.45,43.76],[7.40,43.76],[7.40,43.737]]]}},
  {"type":"Feature","properties":{"name":"south"},"geometry":{"type":"Polygon",
   "coordinates":[[[7.40,43.72],[7.45,43.72],[7.45,43.737],[7.40,43.737],[7.40,43.72]]]}}]}"#;
const CASINO: (f64, f64) = (43.7393, 7.4274);
const PRINCESSE_GRACE: (f64, f64) = (43.7405, 7.4315);
const PORT: (f64, f64) = (43.7350, 7.4230);
const CONDAMINE: (f64, f64) = (43.7360, 7.4195);

fn at(p: (f64, f64)) -> Option<pb::LatLon> {
    Some(pb::LatLon { lat: p.0, lon: p.1 })
}

fn order_to(key: &str, to: (f64, f64), base_s: i64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        idempotency_key: key.into(),
        delivery: Some(pb::Delivery {
            dropoff: at(to),
            parcel: Some(pb::Parcel { weight_grams: 500, compartments: 1 }),
            ready_at: None,
            deliver_by: Some(Timestamp { seconds: base_s + 6 * 3600, nanos: 0 }),
        }),
    }
}

/// A real agent on a kinematic body in scaled time, whose only address is `entry` (the router); customers
/// who know their PINs.
fn agent(entry: String, token: String, start: (f64, f64)) -> robot_agent::session::Customers {
    let customers: robot_agent::session::Customers = Arc::default();
    agent_with(entry, token, start, customers.clone());
    customers
}

/// As [`agent`], with customers shared with other agents.
fn agent_with(entry: String, token: String, start: (f64, f64), customers: robot_agent::session::Customers) {
    use robot_agent::session::{self, SessionConfig};
    let mut cfg = SessionConfig::new(entry, token);
    cfg.time_scale = 120.0;
    cfg.poll_every = Duration::from_millis(50);
    cfg.state_every = Duration::from_millis(250);
    cfg.backoff_max = Duration::from_secs(1);
    let now = fleet_core::Timestamp(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64,
    );
    let platform =
        robot_agent::platform::KinematicPlatform::new(fleet_core::LatLon::new(start.0, start.1).expect("valid"), now);
    let agent = robot_agent::agent::Agent::new(fleet_core::robot::RobotModel::default());
    let (keypad_tx, keypad) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let _keypad = keypad_tx;
        let r = session::run(cfg, agent, platform, keypad, Some(customers), std::future::pending()).await;
        panic!("the agent stopped: {r:?}");
    });
}

/// Places through the router, again while the fleet is not there yet (no robot online in the area, or the
/// area between leaders); the placed order.
async fn place_until_placed(
    shops: &mut pb::order_service_client::OrderServiceClient<Channel>,
    req: pb::PlaceOrderRequest,
    token: &str,
    within: Duration,
) -> pb::Order {
    let deadline = Instant::now() + within;
    loop {
        match shops.place_order(authed(req.clone(), token)).await {
            Ok(r) => return r.into_inner().order.expect("an order"),
            Err(s) if Instant::now() < deadline && matches!(s.code(), Code::FailedPrecondition | Code::Unavailable) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("not placed: {s:?}"),
        }
    }
}

/// Marks the order ready and waits until it is delivered (the customer knows the PIN).
async fn deliver(
    shops: &mut pb::order_service_client::OrderServiceClient<Channel>,
    customers: &robot_agent::session::Customers,
    o: &pb::Order,
    token: &str,
) -> pb::Order {
    customers
        .lock()
        .expect("not poisoned")
        .insert(fleet_core::OrderId::parse(&o.order_id).expect("valid"), o.pin.clone());
    shops.mark_ready(authed(pb::MarkReadyRequest { order_id: o.order_id.clone() }, token)).await.expect("ready");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = shops.get_order(authed(pb::GetOrderRequest { order_id: o.order_id.clone() }, token)).await;
        if let Ok(now) = now.map(tonic::Response::into_inner)
            && now.status == pb::OrderStatus::Delivered as i32
        {
            return now;
        }
        assert!(Instant::now() < deadline, "order {} not delivered", o.order_id);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn robots_of(ch: Channel, op: &str) -> Vec<String> {
    let mut ops = pb::ops_service_client::OpsServiceClient::new(ch);
    let list = ops.list_robots(authed(pb::ListRobotsRequest {}, op)).await.expect("lists").into_inner().robots;
    list.into_iter().map(|r| r.robot_id).collect()
}

fn operator_token(data: &std::path::Path) -> String {
    std::fs::read_to_string(dispatcher::server::operator_token_path(data)).expect("operator token").trim().to_owned()
}

/// Two areas, north and south, each with its shop; south has a leader and a standby. A robot of the north,
/// reached only through the router, delivers a northern order; it is handed over to the south, whose leader is
/// killed at once; the standby takes the south over and takes the robot up from the hand-off record, and the
/// robot (following the router) delivers a southern order there. Orders outside a shop's area are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_is_handed_over_between_two_areas_while_one_fails_over() {
    let etcd = Etcd::start();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().expect("dir")).collect();
    let areas = dirs[3].path().join("areas.geojson");
    std::fs::write(&areas, AREAS).expect("written");
    let ports = [free_port(), free_port(), free_port()];
    let _north = Dispatcher::spawn_in(&etcd, ports[0], dirs[0].path(), "north", Some(&areas));
    let (_, north) = leader(&ports[..1], Duration::from_secs(60)).await;
    let mut south_a = Dispatcher::spawn_in(&etcd, ports[1], dirs[1].path(), "south", Some(&areas));
    let (_, south) = leader(&ports[1..2], Duration::from_secs(60)).await;
    let _south_b = Dispatcher::spawn_in(&etcd, ports[2], dirs[2].path(), "south", Some(&areas));
    let router_port = free_port();
    let router = dispatcher::router::Router::new(&dispatcher::etcd::EtcdConfig::endpoints(&etcd.url()).expect("urls"))
        .expect("router");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", router_port)).await.expect("binds");
    tokio::spawn(dispatcher::router::serve(router, listener, std::future::pending()));
    let (_, via) = leader(&[router_port], Duration::from_secs(30)).await;

    // Shops and the robot are registered with their area's leader; a shop outside the area is refused.
    let (north_op, south_op) = (operator_token(dirs[0].path()), operator_token(dirs[1].path()));
    let mut north_ops = pb::ops_service_client::OpsServiceClient::new(north.clone());
    let mut south_ops = pb::ops_service_client::OpsServiceClient::new(south.clone());
    let shop = |id: &str, p| pb::RegisterShopRequest { shop_id: id.into(), name: id.into(), location: at(p) };
    let wrong = north_ops.register_shop(authed(shop("deli", PORT), &north_op)).await.expect_err("outside north");
    assert_eq!(wrong.code(), Code::InvalidArgument, "{wrong:?}");
    assert!(wrong.message().contains("north"), "{}", wrong.message());
    let bakery =
        north_ops.register_shop(authed(shop("bakery", CASINO), &north_op)).await.expect("shop").into_inner().token;
    let deli = south_ops.register_shop(authed(shop("deli", PORT), &south_op)).await.expect("shop").into_inner().token;
    let r1 = pb::RegisterRobotRequest { robot_id: "r1".into(), name: String::new(), depot: at(CASINO) };
    let robot = north_ops.register_robot(authed(r1, &north_op)).await.expect("robot").into_inner().token;

    // The robot knows only the router, which sends it to the north's leader; it delivers a northern order.
    let customers = agent(format!("http://127.0.0.1:{router_port}"), robot, CASINO);
    let mut shops = pb::order_service_client::OrderServiceClient::new(via);
    let base_s = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()) as i64;
    let refused = shops.place_order(authed(order_to("south-drop", CONDAMINE, base_s), &bakery)).await;
    let refused = refused.expect_err("a drop-off outside the shop's area");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("outside service area north"), "{}", refused.message());
    let first =
        place_until_placed(&mut shops, order_to("n1", PRINCESSE_GRACE, base_s), &bakery, Duration::from_secs(30)).await;
    let first = deliver(&mut shops, &customers, &first, &bakery).await;
    assert_eq!(first.robot_id, "r1");
    let started = Instant::now();

    // An area that never had a leader is refused (a hand-off there would wait forever), and nothing changes.
    let typo = north_ops
        .hand_off_robot(authed(pb::HandOffRobotRequest { robot_id: "r1".into(), to_area: "suoth".into() }, &north_op))
        .await
        .expect_err("no such area");
    assert_eq!(typo.code(), Code::InvalidArgument, "{typo:?}");
    assert!(robots_of(north.clone(), &north_op).await.contains(&"r1".to_owned()));

    // Handed over once it stands still; the south's leader dies at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = pb::HandOffRobotRequest { robot_id: "r1".into(), to_area: "south".into() };
        match north_ops.hand_off_robot(authed(req, &north_op)).await {
            Ok(_) => break,
            Err(s) if s.code() == Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("not handed over: {s:?}"),
        }
    }
    south_a.kill();
    eprintln!("handed over {:.1} s after the northern delivery", started.elapsed().as_secs_f64());
    assert!(!robots_of(north.clone(), &north_op).await.contains(&"r1".to_owned()), "still in the north");
    let again = north_ops
        .hand_off_robot(authed(pb::HandOffRobotRequest { robot_id: "r1".into(), to_area: "south".into() }, &north_op))
        .await
        .expect_err("the north has no r1 any more");
    assert_eq!(again.code(), Code::NotFound);

    // The south's standby takes over and takes the robot up; the robot follows the router there and delivers.
    let (_, south) = leader(&ports[2..], Duration::from_secs(30)).await;
    let second =
        place_until_placed(&mut shops, order_to("s1", CONDAMINE, base_s), &deli, Duration::from_secs(60)).await;
    eprintln!("placed in the south {:.1} s after the northern delivery", started.elapsed().as_secs_f64());
    let second = deliver(&mut shops, &customers, &second, &deli).await;
    eprintln!("delivered in the south {:.1} s after the northern delivery", started.elapsed().as_secs_f64());
    assert_eq!(second.robot_id, "r1");
    assert!(robots_of(south, &south_op).await.contains(&"r1".to_owned()));
    assert!(!robots_of(north, &north_op).await.contains(&"r1".to_owned()));
}
