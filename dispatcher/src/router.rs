//! `trundle-router`: a stateless front for shops when service areas run on etcd. A shop's client talks to the
//! router only; the router finds the shop's area from its token, and the area's leader from etcd, forwards the
//! call, and when the leader is gone (a failover) finds the new one and sends the call again.
//!
//! - Leaders: every leading dispatcher lists itself under `/trundle-areas/<area>` on its lease
//!   ([`crate::etcd::directory_key`]); the router reads that directory every half second and whenever a call
//!   finds its leader gone.
//! - Areas of shops: a token's area is the one whose store holds the token's hash (`/trundle/<area>/t/<hash>`),
//!   read once and kept for a minute; the router never sees a token in the clear beyond the call it forwards.
//! - Retries: a call that failed because the leader went away (`UNAVAILABLE`, a broken connection) is sent again
//!   to the area's leader for up to 15 s. PlaceOrder is safe to send again (its idempotency key); a repeated
//!   cancellation or ready may answer that it was already done.
//!
//! - Robots: a robot's agent opens its session at the router, which answers `UNAVAILABLE` with the address of
//!   the leader of the robot's area in the `trundle-leader` metadata ([`trundle_proto::areas`]); the agent
//!   connects there, and comes back to the router whenever that session ends (a failover, a hand-off). The
//!   robot's area is looked up afresh for every session, since hand-offs move robots between areas.
//!
//! Operators talk to each area's leader directly (its address is in the directory, `/trundle-areas/<area>`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use trundle_proto::etcd as epb;
use trundle_proto::etcd::kv_client::KvClient;
use trundle_proto::pb;
use trundle_proto::pb::order_service_client::OrderServiceClient;

use crate::Error;
use crate::etcd::{AREA_NAMES, DIRECTORY, HANDOFFS, HandOff, balanced, prefix_end};

/// How long a call may be retried across a failover.
const RETRY_FOR: Duration = Duration::from_secs(15);
/// How long a token's area is remembered.
const TOKEN_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    kv: KvClient<Channel>,
    /// Area -> its leader's gRPC address.
    leaders: RwLock<HashMap<String, String>>,
    /// Every area that has ever had a leader.
    areas: RwLock<Vec<String>>,
    /// Token hash -> (area, when learned).
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Leader address -> channel.
    channels: Mutex<HashMap<String, Channel>>,
}

impl Router {
    /// A router on the etcd cluster `endpoints` (needs a runtime).
    pub fn new(endpoints: &[String]) -> Result<Self, Error> {
        let kv = KvClient::new(balanced(endpoints)?);
        Ok(Self {
            inner: Arc::new(Inner {
                kv,
                leaders: RwLock::default(),
                areas: RwLock::default(),
                tokens: Mutex::default(),
                channels: Mutex::default(),
            }),
        })
    }

    /// Reads every area's leader from etcd.
    pub async fn refresh(&self) -> Result<(), Status> {
        let prefix = DIRECTORY.as_bytes().to_vec();
        let req = epb::RangeRequest { range_end: prefix_end(&prefix), key: prefix, limit: 0, revision: 0 };
        let r = self.inner.kv.clone().range(req).await?.into_inner();
        let mut leaders = HashMap::new();
        for kv in r.kvs {
            let area = String::from_utf8_lossy(&kv.key[DIRECTORY.len()..]).into_owned();
            let value = String::from_utf8_lossy(&kv.value).into_owned();
            if let Some(addr) = value.split_whitespace().find_map(|w| w.strip_prefix("grpc=")) {
                leaders.insert(area, addr.to_owned());
            }
        }
        let prefix = AREA_NAMES.as_bytes().to_vec();
        let req = epb::RangeRequest { range_end: prefix_end(&prefix), key: prefix, limit: 0, revision: 0 };
        let r = self.inner.kv.clone().range(req).await?.into_inner();
        let mut areas: Vec<String> =
            r.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key[AREA_NAMES.len()..]).into_owned()).collect();
        for a in leaders.keys() {
            if !areas.contains(a) {
                areas.push(a.clone());
            }
        }
        if let Ok(mut l) = self.inner.leaders.write() {
            *l = leaders;
        }
        if let Ok(mut a) = self.inner.areas.write() {
            *a = areas;
        }
        Ok(())
    }

    /// Every area that has ever had a leader, as last read.
    fn areas(&self) -> Vec<String> {
        self.inner.areas.read().map(|a| a.clone()).unwrap_or_default()
    }

    /// The area whose store holds the token with this hash now, read from etcd.
    async fn area_holding(&self, hash: &str) -> Result<Option<String>, Status> {
        for area in self.areas() {
            let key = format!("/trundle/{area}/t/{hash}").into_bytes();
            let req = epb::RangeRequest { key, range_end: Vec::new(), limit: 1, revision: 0 };
            if !self.inner.kv.clone().range(req).await?.into_inner().kvs.is_empty() {
                return Ok(Some(area));
            }
        }
        Ok(None)
    }

    /// The area a robot with this token hash is being handed over to, if it is.
    async fn handing_over_to(&self, hash: &str) -> Result<Option<String>, Status> {
        let prefix = HANDOFFS.as_bytes().to_vec();
        let req = epb::RangeRequest { range_end: prefix_end(&prefix), key: prefix, limit: 0, revision: 0 };
        for kv in self.inner.kv.clone().range(req).await?.into_inner().kvs {
            if let Ok(h) = serde_json::from_slice::<HandOff>(&kv.value)
                && h.tokens.iter().any(|t| t.hash_hex == hash)
            {
                let key = String::from_utf8_lossy(&kv.key[HANDOFFS.len()..]).into_owned();
                return Ok(key.split('/').next().map(str::to_owned));
            }
        }
        Ok(None)
    }

    /// Where a robot's session should go: the leader of its area now.
    async fn robot_redirect(&self, hash: &str) -> Status {
        if let Err(st) = self.refresh().await {
            return Status::unavailable(format!("cannot read the service areas from etcd: {}", st.message()));
        }
        match self.area_holding(hash).await {
            Ok(Some(area)) => match self.leaders().get(&area) {
                Some(addr) => {
                    let mut st = Status::unavailable(format!(
                        "this robot belongs to service area {area}, led by {addr}: connect there"
                    ));
                    if let Ok(v) = addr.parse() {
                        st.metadata_mut().insert(trundle_proto::areas::LEADER_METADATA, v);
                    }
                    st
                }
                None => Status::unavailable(format!("service area {area} has no leader right now; retry shortly")),
            },
            Ok(None) => match self.handing_over_to(hash).await {
                Ok(Some(to)) => {
                    Status::unavailable(format!("this robot is being handed over to area {to}; retry shortly"))
                }
                Ok(None) => Status::unauthenticated("no service area knows this token"),
                Err(st) => Status::unavailable(format!("cannot read hand-offs from etcd: {}", st.message())),
            },
            Err(st) => Status::unavailable(format!("cannot read the service areas from etcd: {}", st.message())),
        }
    }

    /// Every area's leader as last read.
    pub fn leaders(&self) -> HashMap<String, String> {
        self.inner.leaders.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// The area whose store holds the token with this hash.
    async fn area_of(&self, hash: &str) -> Result<String, Status> {
        if let Some((area, at)) = self.inner.tokens.lock().ok().and_then(|t| t.get(hash).cloned())
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(area);
        }
        for attempt in 0..2 {
            if let Some(area) = self.area_holding(hash).await? {
                if let Ok(mut t) = self.inner.tokens.lock() {
                    t.insert(hash.to_owned(), (area.clone(), Instant::now()));
                }
                return Ok(area);
            }
            if attempt == 0 {
                self.refresh().await?;
            }
        }
        Err(Status::unauthenticated("no service area knows this token"))
    }

    fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut c = self.inner.channels.lock().map_err(|_| Status::internal("router state"))?;
        if let Some(ch) = c.get(addr) {
            return Ok(ch.clone());
        }
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::internal(format!("leader address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        c.insert(addr.to_owned(), ch.clone());
        Ok(ch)
    }

    /// Sends `req` to the leader of its caller's area with `call`, again across a failover.
    async fn route<T, R, F, Fut>(&self, req: Request<T>, call: F) -> Result<Response<R>, Status>
    where
        T: Clone,
        F: Fn(OrderServiceClient<Channel>, Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<R>, Status>>,
    {
        let hash = crate::auth::Auth::token_hash(req.metadata()).ok_or_else(|| Status::unauthenticated("no token"))?;
        let auth = req.metadata().get("authorization").cloned();
        let area = self.area_of(&hash).await?;
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let last = match self.leaders().get(&area).cloned() {
                Some(addr) => {
                    let mut r = Request::new(req.get_ref().clone());
                    if let Some(a) = &auth {
                        r.metadata_mut().insert("authorization", a.clone());
                    }
                    match call(OrderServiceClient::new(self.channel(&addr)?), r).await {
                        Ok(resp) => return Ok(resp),
                        Err(st) if matches!(st.code(), Code::Unavailable | Code::Unknown | Code::Cancelled) => st,
                        Err(st) => return Err(st),
                    }
                }
                None => Status::unavailable(format!("area {area} has no leader right now")),
            };
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = self.refresh().await;
        }
    }
}

type OrderStream = Pin<Box<dyn Stream<Item = Result<pb::Order, Status>> + Send>>;
type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::DispatcherMessage, Status>> + Send>>;

/// Robots are not proxied: each session is answered with where to go.
#[tonic::async_trait]
impl pb::robot_service_server::RobotService for Router {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<tonic::Streaming<pb::RobotMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let hash = crate::auth::Auth::token_hash(req.metadata()).ok_or_else(|| Status::unauthenticated("no token"))?;
        Err(self.robot_redirect(&hash).await)
    }
}

#[tonic::async_trait]
impl pb::order_service_server::OrderService for Router {
    async fn quote(&self, req: Request<pb::QuoteRequest>) -> Result<Response<pb::QuoteResponse>, Status> {
        self.route(req, |mut c, r| async move { c.quote(r).await }).await
    }

    async fn place_order(
        &self,
        req: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        self.route(req, |mut c, r| async move { c.place_order(r).await }).await
    }

    async fn get_order(&self, req: Request<pb::GetOrderRequest>) -> Result<Response<pb::Order>, Status> {
        self.route(req, |mut c, r| async move { c.get_order(r).await }).await
    }

    async fn list_orders(
        &self,
        req: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        self.route(req, |mut c, r| async move { c.list_orders(r).await }).await
    }

    async fn cancel_order(&self, req: Request<pb::CancelOrderRequest>) -> Result<Response<pb::Order>, Status> {
        self.route(req, |mut c, r| async move { c.cancel_order(r).await }).await
    }

    async fn mark_ready(&self, req: Request<pb::MarkReadyRequest>) -> Result<Response<pb::Order>, Status> {
        self.route(req, |mut c, r| async move { c.mark_ready(r).await }).await
    }

    async fn new_tracking_link(
        &self,
        req: Request<pb::NewTrackingLinkRequest>,
    ) -> Result<Response<pb::TrackingLink>, Status> {
        self.route(req, |mut c, r| async move { c.new_tracking_link(r).await }).await
    }

    type WatchOrderStream = OrderStream;

    /// The stream of the leader at the time; when it ends with a failover the client watches again.
    async fn watch_order(&self, req: Request<pb::WatchOrderRequest>) -> Result<Response<OrderStream>, Status> {
        let resp = self.route(req, |mut c, r| async move { c.watch_order(r).await }).await?;
        Ok(Response::new(Box::pin(resp.into_inner()) as OrderStream))
    }
}

/// Serves the router on `listener` until `shutdown`: the shops' `OrderService`, robots' redirects and health.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<pb::order_service_server::OrderServiceServer<Router>>().await;
    reporter.set_serving::<pb::robot_service_server::RobotServiceServer<Router>>().await;
    let watcher = {
        let r = router.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = r.refresh().await {
                    tracing::warn!("cannot read the areas' leaders from etcd: {}", e.message());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let result = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(pb::order_service_server::OrderServiceServer::new(router.clone()))
        .add_service(pb::robot_service_server::RobotServiceServer::new(router))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| Error::Setup(format!("router: {e}")));
    watcher.abort();
    result
}
