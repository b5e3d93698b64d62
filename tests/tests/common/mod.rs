//! The end-to-end harness: a real dispatcher on 127.0.0.1, a real sled store in a temp dir, real robot agents
//! on kinematic bodies running in scaled time, and authenticated clients.

#![allow(dead_code)]

pub mod http;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleet_core::map::MapGraph;
use fleet_core::robot::RobotModel;
use fleet_core::{LatLon, OrderId, Timestamp};
use robot_agent::agent::Agent;
use robot_agent::platform::KinematicPlatform;
use robot_agent::session::{self, Customers, SessionConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Request, Status};
use trundle_proto::pb;
use trundle_proto::pb::ops_service_client::OpsServiceClient;
use trundle_proto::pb::order_service_client::OrderServiceClient;

/// Simulated seconds per real second for the agents' bodies.
pub const TIME_SCALE: f64 = 60.0;

/// Places in central Monaco, all within a short drive of each other.
pub const CASINO: (f64, f64) = (43.7393, 7.4274);
pub const PORT: (f64, f64) = (43.7350, 7.4230);
pub const CONDAMINE: (f64, f64) = (43.7360, 7.4195);
pub const LARVOTTO_WEST: (f64, f64) = (43.7420, 7.4300);
pub const BOULEVARD: (f64, f64) = (43.7375, 7.4260);
pub const PRINCESSE_GRACE: (f64, f64) = (43.7405, 7.4315);

pub fn monaco() -> MapGraph {
    static MAP: OnceLock<MapGraph> = OnceLock::new();
    MAP.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/monaco.osm.pbf");
        let bytes = std::fs::read(path).expect("the bundled Monaco extract is in data/");
        MapGraph::from_osm(&bytes).expect("Monaco imports").0
    })
    .clone()
}

pub fn ll(p: (f64, f64)) -> pb::LatLon {
    pb::LatLon { lat: p.0, lon: p.1 }
}

pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64
}

pub fn ts_in(secs: i64) -> prost_types::Timestamp {
    let ms = wall_ms() as i64 + secs * 1000;
    prost_types::Timestamp { seconds: ms / 1000, nanos: 0 }
}

pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
    r
}

/// A running dispatcher.
pub struct Server {
    pub addr: SocketAddr,
    /// The HTTP port (pages, JSON API, metrics), when started with one.
    pub http: Option<SocketAddr>,
    pub data: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), dispatcher::Error>>>,
}

impl Server {
    /// Starts a dispatcher on `data`, on `addr` (or a free port).
    pub async fn start(data: &Path, addr: Option<SocketAddr>) -> Self {
        Self::start_with(data, addr, |_| {}).await
    }

    /// Starts a dispatcher with options adjusted by `tune`.
    pub async fn start_with(
        data: &Path,
        addr: Option<SocketAddr>,
        tune: impl FnOnce(&mut dispatcher::Options),
    ) -> Self {
        let bind = addr.unwrap_or_else(|| "127.0.0.1:0".parse().expect("valid"));
        let listener = tokio::net::TcpListener::bind(bind).await.expect("binds");
        let addr = listener.local_addr().expect("bound");
        let (tx, rx) = oneshot::channel::<()>();
        let mut opts = dispatcher::Options::new(data, monaco());
        tune(&mut opts);
        let http = opts.http.as_ref().map(|l| l.local_addr().expect("bound"));
        // Opened here, synchronously: the store is recovered and the operator token written before any client
        // connects.
        let prepared = dispatcher::open(opts).expect("dispatcher opens its data dir");
        let task = tokio::spawn(Box::pin(prepared.serve(listener, async {
            let _ = rx.await;
        })));
        Self { addr, http, data: data.to_owned(), stop: Some(tx), task: Some(task) }
    }

    /// Starts a dispatcher with its HTTP port (pages, JSON API, metrics) on a free port too.
    pub async fn start_web(data: &Path) -> Self {
        Self::start_with(data, None, |o| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
            l.set_nonblocking(true).expect("non-blocking");
            o.http = Some(tokio::net::TcpListener::from_std(l).expect("tokio listener"));
        })
        .await
    }

    /// The HTTP port's base URL.
    pub fn web_url(&self) -> String {
        format!("http://{}", self.http.expect("started with an HTTP port"))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        for _ in 0..100 {
            if let Ok(c) = Channel::from_shared(self.url()).expect("valid url").connect().await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("dispatcher at {} never came up", self.addr);
    }

    pub fn operator_token(&self) -> String {
        std::fs::read_to_string(dispatcher::server::operator_token_path(&self.data))
            .expect("the first start writes operator.token")
            .trim()
            .to_owned()
    }

    /// Stops the dispatcher and waits until its store is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("shutdown completes")
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

/// An operator's view: register shops and robots.
pub struct Ops {
    pub client: OpsServiceClient<Channel>,
    pub token: String,
}

impl Ops {
    pub async fn new(server: &Server) -> Self {
        Self { client: OpsServiceClient::new(server.channel().await), token: server.operator_token() }
    }

    pub async fn shop(&mut self, id: &str, at: (f64, f64)) -> String {
        let r = self
            .client
            .register_shop(authed(
                pb::RegisterShopRequest { shop_id: id.into(), name: format!("Shop {id}"), location: Some(ll(at)) },
                &self.token,
            ))
            .await
            .expect("shop registers");
        r.into_inner().token
    }

    pub async fn robot(&mut self, id: &str, at: (f64, f64)) -> String {
        let r = self
            .client
            .register_robot(authed(
                pb::RegisterRobotRequest { robot_id: id.into(), name: format!("Robot {id}"), depot: Some(ll(at)) },
                &self.token,
            ))
            .await
            .expect("robot registers");
        r.into_inner().token
    }
}

/// A shop's client.
pub struct Shop {
    pub client: OrderServiceClient<Channel>,
    pub token: String,
}

impl Shop {
    pub async fn new(server: &Server, token: String) -> Self {
        Self { client: OrderServiceClient::new(server.channel().await), token }
    }

    pub fn delivery(to: (f64, f64), deliver_in_s: i64) -> pb::Delivery {
        pb::Delivery {
            dropoff: Some(ll(to)),
            parcel: Some(pb::Parcel { weight_grams: 1500, compartments: 1 }),
            ready_at: None,
            deliver_by: Some(ts_in(deliver_in_s)),
        }
    }

    pub async fn place(&mut self, key: &str, to: (f64, f64)) -> Result<pb::PlaceOrderResponse, Status> {
        let req = pb::PlaceOrderRequest { idempotency_key: key.into(), delivery: Some(Self::delivery(to, 3 * 3600)) };
        self.send(req).await
    }

    pub async fn send(&mut self, req: pb::PlaceOrderRequest) -> Result<pb::PlaceOrderResponse, Status> {
        self.client.place_order(authed(req, &self.token)).await.map(|r| r.into_inner())
    }

    /// Places, retrying while no robot has connected yet.
    pub async fn place_when_fleet_up(&mut self, req: pb::PlaceOrderRequest) -> pb::PlaceOrderResponse {
        for _ in 0..200 {
            match self.send(req.clone()).await {
                Ok(r) => return r,
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(s) => panic!("unexpected refusal: {s}"),
            }
        }
        panic!("no robot came online");
    }

    pub async fn get(&mut self, id: &str) -> Result<pb::Order, Status> {
        self.client
            .get_order(authed(pb::GetOrderRequest { order_id: id.into() }, &self.token))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn ready(&mut self, id: &str) -> Result<pb::Order, Status> {
        self.client
            .mark_ready(authed(pb::MarkReadyRequest { order_id: id.into() }, &self.token))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn list(&mut self) -> Vec<pb::Order> {
        self.client
            .list_orders(authed(
                pb::ListOrdersRequest { include_closed: true, limit: 1000, ..Default::default() },
                &self.token,
            ))
            .await
            .expect("lists")
            .into_inner()
            .orders
    }

    /// Waits until the order reaches `status` (panics after `secs`).
    pub async fn wait_for(&mut self, id: &str, status: pb::OrderStatus, secs: u64) -> pb::Order {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let o = self.get(id).await.expect("order readable");
            if o.status == status as i32 {
                return o;
            }
            assert!(tokio::time::Instant::now() < deadline, "order {id} stuck at {:?}", o.status());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A real robot agent on a kinematic body, connected over gRPC.
pub struct Robot {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), session::SessionError>>,
}

impl Robot {
    pub fn start(server_url: &str, token: &str, at: (f64, f64), customers: Customers) -> Self {
        let mut cfg = SessionConfig::new(server_url, token);
        cfg.time_scale = TIME_SCALE;
        cfg.poll_every = Duration::from_millis(50);
        cfg.state_every = Duration::from_millis(250);
        let start = LatLon::new(at.0, at.1).expect("valid");
        let platform = KinematicPlatform::new(start, Timestamp(wall_ms()));
        let (_keypad_tx, keypad) = tokio::sync::mpsc::channel(1);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _keep_keypad_open = _keypad_tx;
            session::run(cfg, Agent::new(RobotModel::default()), platform, keypad, Some(customers), async {
                let _ = rx.await;
            })
            .await
        });
        Self { stop: Some(tx), task }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Customers who know their PINs (filled in as orders are placed).
pub fn customers() -> Customers {
    Arc::new(Mutex::new(BTreeMap::new()))
}

pub fn remember_pin(c: &Customers, order: &pb::Order) {
    c.lock().expect("not poisoned").insert(OrderId::parse(&order.order_id).expect("valid id"), order.pin.clone());
}

/// A robot driven by hand from the test over a real session: it says hello and then only does what the test
/// sends. Used where a test needs a robot online that never moves.
pub struct RawRobot {
    pub tx: tokio::sync::mpsc::Sender<pb::RobotMessage>,
    pub inbound: tonic::Streaming<pb::DispatcherMessage>,
}

pub fn hello(robot_id: &str) -> pb::RobotMessage {
    pb::RobotMessage {
        msg: Some(pb::robot_message::Msg::Hello(pb::Hello {
            factsheet: Some(pb::Factsheet {
                model: "test".into(),
                compartments: 2,
                max_payload_grams: 20_000,
                max_speed_mps: 1.6,
                battery_capacity_wh: 1000.0,
            }),
            mission_id: String::new(),
            last_update_id: 0,
            finished: vec![],
            robot_id: robot_id.into(),
        })),
    }
}

impl RawRobot {
    /// Opens a session with `token` and sends `first`; returns the stream or the status it ended with.
    pub async fn open(server: &Server, token: &str, first: pb::RobotMessage) -> Result<Self, Status> {
        let mut client = pb::robot_service_client::RobotServiceClient::new(server.channel().await);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(first).await.expect("queue");
        let inbound =
            client.session(authed(tokio_stream::wrappers::ReceiverStream::new(rx), token)).await?.into_inner();
        Ok(Self { tx, inbound })
    }

    /// The next message, or the status the session ended with.
    pub async fn next(&mut self) -> Result<Option<pb::DispatcherMessage>, Status> {
        tokio::time::timeout(Duration::from_secs(10), self.inbound.message()).await.expect("dispatcher answers")
    }
}

/// Everything an operator and the shops can see, minus what moving robots change by themselves.
pub async fn fingerprint(ops: &mut Ops, shops: &mut [&mut Shop]) -> String {
    let t = ops.token.clone();
    let shops_list = ops.client.list_shops(authed(pb::ListShopsRequest {}, &t)).await.expect("shops").into_inner();
    let robots = ops.client.list_robots(authed(pb::ListRobotsRequest {}, &t)).await.expect("robots").into_inner();
    let map = ops.client.get_map(authed(pb::GetMapRequest {}, &t)).await.expect("map").into_inner();
    let mut s = format!("{shops_list:?}\n{:?}\n", map.closed);
    for r in robots.robots {
        s += &format!("{} {:?} {:?} {} {}\n", r.robot_id, r.planned_orders, r.on_board, r.mission_update_id, r.paused);
    }
    for shop in shops.iter_mut() {
        s += &format!("{:?}\n", shop.list().await);
    }
    s
}
