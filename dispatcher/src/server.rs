//! Wiring: open the store, recover the dispatcher, make sure an operator can get in, start the core thread and
//! the tick task, and serve the three services plus health and reflection on an already-bound listener until
//! `shutdown` resolves. On shutdown the core stops first (ending every stream), then connections drain.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleet_core::dispatcher::{Config, Dispatcher};
use fleet_core::map::MapGraph;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use trundle_proto::pb;

use crate::Error;
use crate::auth::Auth;
use crate::clock::{Clock, MonotonicClock};
use crate::core::{Core, CoreHandle, ImproverConfig};
use crate::limits::Limits;
use crate::mapfile;
use crate::service::Ctx;
use crate::service::ops::OpsApi;
use crate::service::orders::OrderApi;
use crate::service::robots::RobotApi;
use crate::store::{Principal, SledStore, Store};

/// Largest request the services decode, and largest answer they send.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
pub const MAX_CONCURRENT_PER_CONNECTION: usize = 256;
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1_024;

/// The services, as health and reflection name them.
pub const SERVICES: [&str; 3] = ["trundle.v1.OrderService", "trundle.v1.RobotService", "trundle.v1.OpsService"];

pub struct Options {
    pub data_dir: PathBuf,
    pub map: MapGraph,
    pub config: Config,
    pub improver: ImproverConfig,
    /// Where the core reads `now` (the system clock unless a test sets one).
    pub clock: Box<dyn Clock>,
    pub limits: Limits,
    /// Serve TLS (rustls) instead of plain HTTP/2.
    pub tls: Option<TlsConfig>,
    /// Serve `/metrics` and `/healthz` on this (bound) listener ([`crate::http`]).
    pub http: Option<TcpListener>,
    /// Keep the records in this etcd cluster, as the leader of one service area, instead of the sled store in
    /// the data directory ([`crate::etcd`]). Opening waits until this dispatcher leads the area.
    pub etcd: Option<crate::etcd::EtcdConfig>,
    /// The gRPC address clients reach this dispatcher at, listed for routers while it leads its area.
    pub advertise: Option<String>,
}

/// PEM material for serving TLS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// When set, every client must present a certificate signed by this CA (mutual TLS), on top of its token.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl TlsConfig {
    /// Reads the PEM files.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, Error> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| Error::Setup(format!("cannot read {}: {e}", p.display())));
        Ok(Self { cert_pem: read(cert)?, key_pem: read(key)?, client_ca_pem: client_ca.map(read).transpose()? })
    }

    /// The web port's TLS: the same certificate, no client certificates.
    fn web_config(&self) -> tonic::transport::ServerTlsConfig {
        use tonic::transport::{Identity, ServerTlsConfig};
        ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let mut c = ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        if let Some(ca) = &self.client_ca_pem {
            c = c.client_ca_root(Certificate::from_pem(ca));
        }
        c
    }
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>, map: MapGraph) -> Self {
        Self {
            data_dir: data_dir.into(),
            map,
            config: Config::default(),
            improver: ImproverConfig::default(),
            clock: Box::new(MonotonicClock::default()),
            limits: Limits::default(),
            tls: None,
            http: None,
            etcd: None,
            advertise: None,
        }
    }
}

/// Where the first operator token is written.
pub fn operator_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("operator.token")
}

fn write_secret(path: &Path, secret: &str) -> Result<(), Error> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(path).map_err(|e| Error::Setup(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(format!("{secret}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::Setup(format!("cannot write {}: {e}", path.display())))
}

/// Of the data directory's map files ([`mapfile`]), the one `records` were written on; a pending one found so
/// is made current.
fn stored_map(data_dir: &Path, records: &[fleet_core::dispatcher::Record]) -> Option<MapGraph> {
    for path in mapfile::candidates(data_dir) {
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let Ok((map, _)) = MapGraph::from_osm(&bytes) else { continue };
        if Dispatcher::check_map(records, &map).is_ok() {
            tracing::info!("the store names the map in {}, not the one configured: using it", path.display());
            if path == mapfile::pending(data_dir)
                && let Err(e) = mapfile::promote_pending(data_dir)
            {
                tracing::warn!("{e}");
            }
            return Some(map);
        }
    }
    None
}

/// A dispatcher whose store is open and whose state is recovered, ready to serve.
pub struct Prepared {
    dispatcher: Dispatcher,
    store: Arc<dyn Store>,
    auth: Auth,
    improver: ImproverConfig,
    clock: Box<dyn Clock>,
    limits: Limits,
    tls: Option<TlsConfig>,
    /// Who wants the core's handle once it runs (an in-process benchmark reading [`crate::stats::CoreStats`]).
    handle_to: Option<tokio::sync::oneshot::Sender<CoreHandle>>,
    data_dir: PathBuf,
    http: Option<TcpListener>,
    /// The etcd store, when the records live there: its leadership, and resigning at an orderly stop.
    etcd: Option<Arc<crate::etcd::EtcdStore>>,
}

/// Serves until `shutdown` resolves. The listener is already bound, so tests can pass `127.0.0.1:0`.
pub async fn serve(
    listener: TcpListener,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Box::pin(open(opts)?.serve(listener, shutdown)).await
}

/// Opens the store, recovers every order, robot and shop, and on first start writes an operator token to
/// `DIR/operator.token` (mode 0600).
pub fn open(opts: Options) -> Result<Prepared, Error> {
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| Error::Setup(format!("cannot create {}: {e}", opts.data_dir.display())))?;
    let (store, etcd, ready, map): (Arc<dyn Store>, _, _, _) = match &opts.etcd {
        None => (Arc::new(SledStore::open(&opts.data_dir)?), None, None, Some(opts.map)),
        Some(cfg) => {
            // Everything that needs no records is done before campaigning, so a standby that takes over only
            // reads the records.
            let ready = Dispatcher::new(opts.map, opts.config.clone());
            let holder = format!(
                "grpc={} pid={} id={}",
                opts.advertise.as_deref().unwrap_or("unknown"),
                std::process::id(),
                crate::web::session::random_hex(4)
            );
            let e = Arc::new(crate::etcd::EtcdStore::lead(cfg.clone(), &holder)?);
            (e.clone(), Some(e), Some(ready), None)
        }
    };
    let records = store.load()?;
    let (orders, robots) = records.iter().fold((0, 0), |(o, r), rec| match rec {
        fleet_core::dispatcher::Record::Order(_) => (o + 1, r),
        fleet_core::dispatcher::Record::Robot(_) => (o, r + 1),
        _ => (o, r),
    });
    tracing::info!(orders, robots, "recovered from {}", opts.data_dir.display());
    let dispatcher = match ready {
        // An area in etcd runs on the map every one of its dispatchers is started with.
        Some(ready) => {
            Dispatcher::check_map(&records, ready.map())
                .map_err(|e| Error::Setup(format!("cannot take the area over: {e}")))?;
            ready.with_records(records)
        }
        None => {
            let given = map.ok_or_else(|| Error::Setup("no map".into()))?;
            let map = match Dispatcher::check_map(&records, &given) {
                Ok(()) => given,
                // The store may name a map an operator loaded (kept in the data directory), or one a crash left
                // pending after its commit: take whichever of those it names.
                Err(e) => stored_map(&opts.data_dir, &records)
                    .ok_or_else(|| Error::Setup(format!("cannot open {}: {e}", opts.data_dir.display())))?,
            };
            Dispatcher::restore(map, opts.config, records)
        }
    };
    let auth = Auth::load(store.clone(), &opts.limits)?;
    if !auth.has_operator() {
        let token = auth.issue(Principal::Operator)?;
        let path = operator_token_path(&opts.data_dir);
        write_secret(&path, &token)?;
        tracing::info!("first start: wrote an operator token to {} (mode 0600)", path.display());
    }
    Ok(Prepared {
        dispatcher,
        store,
        auth,
        improver: opts.improver,
        clock: opts.clock,
        limits: opts.limits,
        tls: opts.tls,
        handle_to: None,
        data_dir: opts.data_dir,
        http: opts.http,
        etcd,
    })
}

impl Prepared {
    /// Serves the HTTP port on `l` too (bound once the store is open: a standby binds nothing until it leads).
    pub fn with_http(mut self, l: TcpListener) -> Self {
        self.http = Some(l);
        self
    }

    /// With the etcd store: cleared once this dispatcher may have lost its area (it then writes nothing and
    /// should stop, so that it can stand by again).
    pub fn leadership(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        self.etcd.as_ref().map(|e| e.leadership().live_flag())
    }

    /// The core's handle, once [`Prepared::serve`] has started the core: for a process that runs the server
    /// in-process and wants to read its figures.
    pub fn core_handle(&mut self) -> tokio::sync::oneshot::Receiver<CoreHandle> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.handle_to = Some(tx);
        rx
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Prepared { dispatcher, store, auth, improver, clock, limits, tls, handle_to, data_dir, http, etcd } = self;
        // The host decides when a tick or a search is due; this only wakes the core on the tick cadence so
        // that it looks even when no input arrives.
        let wake_every = Duration::from_secs_f64(dispatcher.config().tick_every_s.clamp(0.01, 3_600.0));
        let mut core = Core::start(dispatcher, store, improver, clock)?;
        let handle = core.handle.clone();
        if let Some(to) = handle_to {
            // Nobody listening any more is their business.
            let _ = to.send(handle.clone());
        }
        let wake_handle = core.handle.clone();
        let ticker = tokio::spawn(async move {
            let mut iv = tokio::time::interval(wake_every);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                if !wake_handle.wake() {
                    break;
                }
            }
        });

        let (reporter, health) = tonic_health::server::health_reporter();
        for s in SERVICES {
            reporter.set_service_status(s, ServingStatus::Serving).await;
        }
        reporter.set_service_status("", ServingStatus::Serving).await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(trundle_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| Error::Setup(format!("reflection: {e}")))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(trundle_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| Error::Setup(format!("reflection: {e}")))?;

        let rpc = Arc::new(crate::stats::RpcStats::default());
        let fencing_token = etcd.as_ref().map_or(0, |e| u64::try_from(e.leadership().token).unwrap_or(0));
        let ctx = Ctx {
            core: handle.clone(),
            auth,
            limits,
            data_dir,
            rpc: rpc.clone(),
            fencing_token,
            area: etcd.as_ref().map(|e| e.area().to_owned()).unwrap_or_default(),
            etcd: etcd.clone(),
        };
        // Robots handed over to this area are taken up while it leads.
        let arrivals =
            etcd.clone().map(|e| tokio::spawn(crate::areas::take_up_arrivals(e, handle.clone(), ctx.auth.clone())));
        let http_task = match http {
            Some(listener) => {
                let addr = listener.local_addr().map_err(|e| Error::Setup(e.to_string()))?;
                let scheme = if tls.is_some() { "https" } else { "http" };
                tracing::info!("web pages on {scheme}://{addr}/ and metrics on {scheme}://{addr}/metrics");
                let app = crate::http::router(handle.clone(), rpc.clone())
                    .merge(crate::web::router(ctx.clone(), tls.is_some()));
                // Served by a second tonic server, for its rustls: with --tls-cert the web port is HTTPS with the
                // same certificate (browsers have no client certificates, so never mutual TLS here), and HTTP/1.1
                // or HTTP/2 as the browser chooses.
                let mut web = Server::builder().accept_http1(true).tcp_nodelay(true);
                if let Some(t) = &tls {
                    web = web.tls_config(t.web_config()).map_err(|e| Error::Setup(format!("web TLS: {e}")))?;
                }
                let serving = web
                    .add_routes(tonic::service::Routes::from(app))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
                Some(tokio::spawn(async move {
                    if let Err(e) = serving.await {
                        tracing::warn!("the HTTP port stopped: {e}");
                    }
                }))
            }
            None => None,
        };
        let orders = pb::order_service_server::OrderServiceServer::new(OrderApi(ctx.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let robots = pb::robot_service_server::RobotServiceServer::new(RobotApi(ctx.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let ops = pb::ops_service_server::OpsServiceServer::new(OpsApi(ctx))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let addr = listener.local_addr().map_err(|e| Error::Setup(e.to_string()))?;
        tracing::info!("serving on {addr}");
        // With the etcd store, losing the area stops the server too: it could write nothing more.
        let live = etcd.as_ref().map(|e| e.leadership().live_flag());
        let shutdown = async move {
            let lost = async {
                match live {
                    Some(live) => {
                        while live.load(std::sync::atomic::Ordering::Acquire) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        tracing::error!("lost the service area's leadership; stopping");
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = shutdown => {}
                () = lost => {}
            }
        };
        let stop = async move {
            shutdown.await;
            tracing::info!("shutting down");
            for s in SERVICES {
                reporter.set_service_status(s, ServingStatus::NotServing).await;
            }
            ticker.abort();
            if let Some(t) = &arrivals {
                t.abort();
            }
            if let Some(t) = &http_task {
                t.abort();
            }
            // Stopping the core ends every robot session and watch stream, so connections can drain.
            core.stop().await;
        };
        let mut builder = Server::builder();
        if let Some(t) = &tls {
            builder = builder.tls_config(t.server_config()).map_err(|e| Error::Setup(format!("TLS: {e}")))?;
            tracing::info!(mutual = t.client_ca_pem.is_some(), "serving TLS");
        }
        builder
            // Keepalive pings notice a dead robot link within about 30 s even when nothing is sent.
            .http2_keepalive_interval(limits.keepalive)
            .http2_keepalive_timeout(limits.keepalive.map(|k| k / 2))
            .tcp_keepalive(Some(Duration::from_secs(30)))
            // At most this many requests in flight per connection, and streams per connection.
            .concurrency_limit_per_connection(MAX_CONCURRENT_PER_CONNECTION)
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .tcp_nodelay(true)
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(orders)
            .add_service(robots)
            .add_service(ops)
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), stop)
            .await
            .map_err(|e| Error::Setup(format!("server: {e}")))?;
        if let Some(e) = etcd {
            if !e.leadership().is_live() {
                return Err(Error::Store("lost the service area's leadership".into()));
            }
            // An orderly stop hands the area over at once instead of after the lease.
            e.resign();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::dispatcher::{Input, Output, Record};
    use fleet_core::host::RecordKey;
    use fleet_core::{LatLon, ShopId, Timestamp};

    /// A data directory written on one map is not opened on another: the dispatcher refuses to start, naming
    /// both maps, and the store is left as it was; on its own map it opens.
    #[test]
    fn a_store_written_on_one_map_is_not_opened_on_another() {
        let dir = tempfile::tempdir().expect("temp dir");
        let small = || MapGraph::street_grid(4, 0.001).expect("a valid grid");
        let mut core = Dispatcher::new(small(), Config::default());
        let pos = LatLon::new(43.73, 7.42).expect("valid");
        let out = core.handle(
            Timestamp(1_000_000),
            Input::RegisterShop { id: ShopId::parse("s").expect("valid"), name: "S".into(), pos },
        );
        let records: Vec<(RecordKey, Record)> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Persist(r) => Some((RecordKey::of(&r), r)),
                _ => None,
            })
            .collect();
        SledStore::open(dir.path()).expect("store").write(&records).expect("written");

        let other = MapGraph::street_grid(5, 0.001).expect("a valid grid");
        let err = open(Options::new(dir.path(), other)).err().expect("opened on another map");
        let msg = err.to_string();
        assert!(msg.contains("another map") && msg.contains(&small().fingerprint()), "{msg}");
        let prepared = open(Options::new(dir.path(), small())).expect("opens on its own map");
        assert_eq!(prepared.dispatcher.shops().count(), 1);
    }
}
