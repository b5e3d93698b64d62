//! `trundle-router`: the shops' front when service areas run on etcd ([`dispatcher::router`]).

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(name = "trundle-router", version, about = "Sends each shop's calls to its service area's leader")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50050", env = "TRUNDLE_ROUTER_LISTEN")]
    listen: String,
    /// The etcd cluster the areas run on: etcd://HOST:PORT,HOST:PORT,...
    #[arg(long, env = "TRUNDLE_STORE")]
    store: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let endpoints = dispatcher::etcd::EtcdConfig::endpoints(&args.store)?;
    let router = dispatcher::router::Router::new(&endpoints)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!("routing shops on {}", args.listen);
    dispatcher::router::serve(router, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
