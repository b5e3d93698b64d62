//! `trundle-dispatcher`: the gRPC dispatcher server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use fleet_core::map::MapGraph;

#[derive(Parser)]
#[command(name = "trundle-dispatcher", version, about = "Trundle's delivery-robot dispatcher (gRPC)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051", env = "TRUNDLE_LISTEN")]
    listen: String,
    /// Serve `/metrics` (Prometheus text format) and `/healthz` over HTTP on this address (off when not given).
    #[arg(long, env = "TRUNDLE_HTTP")]
    http: Option<String>,
    /// Data directory (the sled store and the first operator token).
    #[arg(long, default_value = "trundle-data", env = "TRUNDLE_DATA")]
    data: PathBuf,
    /// OpenStreetMap extract (.osm.pbf) the robots drive on. A map an operator loaded since (`trundle map apply`)
    /// is kept in the data directory and wins over this one.
    #[arg(long, default_value = "data/monaco.osm.pbf", env = "TRUNDLE_MAP")]
    map: PathBuf,
    /// Do not improve plans in the background (orders are still inserted into plans as they arrive).
    #[arg(long)]
    no_improve: bool,
    /// How orders are given to robots: insert-improve (insertion into any robot's plan, improved in the
    /// background), insert (no background search) or greedy (one order at a time, to an idle robot).
    #[arg(long, default_value = "insert-improve")]
    policy: fleet_core::dispatcher::Policy,
    /// Share idle robots out over the shops by recent demand every this many seconds (0: off, robots wait where
    /// their last stop was).
    #[arg(long, default_value_t = 0.0)]
    idle_every_s: f64,
    /// Plans keep each drop-off early enough that the time to it, stretched as the fleet's deliveries have
    /// stretched at this quantile (0 to 1), still ends by the deliver-by less the buffer (0: no such room).
    #[arg(long, default_value_t = 0.9)]
    plan_quantile: f64,
    /// Seconds a robot may be offline before its unstarted orders go to other robots.
    #[arg(long, default_value_t = 120.0)]
    offline_limit_s: f64,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS); needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Keep the records in an etcd cluster (`etcd://HOST:PORT,HOST:PORT,...`) instead of the sled store in
    /// --data: several dispatchers of one --area then run as one leader and standbys, and a standby takes over
    /// within seconds when the leader dies. Without it, the embedded sled store.
    #[arg(long, env = "TRUNDLE_STORE")]
    store: Option<String>,
    /// The service area this dispatcher serves (with --store etcd://...).
    #[arg(long, default_value = "default", env = "TRUNDLE_AREA")]
    area: String,
    /// The gRPC address routers send this area's shops to while this dispatcher leads it (with --store
    /// etcd://...); by default the --listen address.
    #[arg(long, env = "TRUNDLE_ADVERTISE")]
    advertise: Option<String>,
    /// The city's service areas, a GeoJSON file of named polygons (with --store etcd://...): this dispatcher
    /// takes shops and drop-offs inside its --area only. Without it the area is the whole map.
    #[arg(long, env = "TRUNDLE_AREAS", requires = "store")]
    areas: Option<std::path::PathBuf>,
    /// The area leader's lease in seconds (with --store etcd://...): a dead leader is replaced about this long
    /// after its last keep-alive.
    #[arg(long, default_value_t = 3)]
    lease_ttl_s: i64,
    /// Log lines as text for people, or as one JSON object per line for a log pipeline.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
    }
    let loaded = dispatcher::mapfile::current(&args.data);
    if loaded.is_file() {
        tracing::info!("using the map an operator loaded, {}, not {}", loaded.display(), args.map.display());
        args.map = loaded;
    }
    let bytes = std::fs::read(&args.map).with_context(|| format!("cannot read the map {}", args.map.display()))?;
    let (map, summary) = MapGraph::from_osm(&bytes).with_context(|| format!("cannot import {}", args.map.display()))?;
    tracing::info!(
        nodes = summary.nodes,
        edges = summary.edges,
        km = summary.length_km,
        components_dropped = summary.components_dropped,
        "map {} imported",
        args.map.display()
    );
    let shutdown = async {
        // Ctrl-C or SIGTERM (service managers) both drain and stop cleanly.
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    let mut opts = dispatcher::Options::new(args.data, map);
    if let Some(url) = &args.store {
        let mut cfg = dispatcher::etcd::EtcdConfig::parse(url, &args.area)?;
        if !(2..=600).contains(&args.lease_ttl_s) {
            anyhow::bail!("--lease-ttl-s must be between 2 and 600 seconds");
        }
        cfg.lease_ttl_s = args.lease_ttl_s;
        opts.etcd = Some(cfg);
        if let Some(path) = &args.areas {
            opts.config.service_area = Some(dispatcher::areas::load(path, &args.area)?);
        }
        opts.advertise = Some(args.advertise.clone().unwrap_or_else(|| args.listen.clone()));
    }
    opts.improver.enabled = !args.no_improve;
    if !(args.offline_limit_s.is_finite() && args.offline_limit_s > 0.0) {
        anyhow::bail!("--offline-limit-s must be a positive number of seconds");
    }
    opts.config.offline_limit_s = args.offline_limit_s;
    opts.config.policy = args.policy;
    if !(args.idle_every_s.is_finite() && (0.0..=86_400.0).contains(&args.idle_every_s)) {
        anyhow::bail!("--idle-every-s must be between 0 and 86400 seconds");
    }
    opts.config.idle.every_s = args.idle_every_s;
    if !(args.plan_quantile.is_finite() && (0.0..=1.0).contains(&args.plan_quantile)) {
        anyhow::bail!("--plan-quantile must be between 0 and 1");
    }
    opts.config.plan_quantile = args.plan_quantile;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        opts.tls = Some(dispatcher::server::TlsConfig::from_files(cert, key, args.tls_client_ca.as_deref())?);
    }
    // Opening recovers the store; with etcd it first waits to lead the area (a standby waits here, and binds no
    // port until it leads, so clients find the leader by where they can connect).
    let mut shutdown = Box::pin(shutdown);
    let opening = tokio::task::spawn_blocking(move || dispatcher::open(opts));
    let mut prepared = tokio::select! {
        p = opening => p.context("opening the store")??,
        () = &mut shutdown => {
            // A standby still campaigning: nothing to drain, and the campaign's thread would hold the exit up.
            tracing::info!("stopped while standing by");
            std::process::exit(0);
        }
    };
    if let Some(addr) = &args.http {
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        prepared = prepared.with_http(l);
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    Box::pin(prepared.serve(listener, shutdown)).await?;
    Ok(())
}
