//! `robot-agent`: one robot's onboard agent, here on a simulated kinematic body. PINs typed by customers are
//! read from standard input, one per line.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use fleet_core::LatLon;
use fleet_core::robot::RobotModel;
use robot_agent::agent::Agent;
use robot_agent::platform::KinematicPlatform;
use robot_agent::session::{self, SessionConfig};
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
#[command(name = "robot-agent", version, about = "Trundle robot onboard agent (simulated kinematic body)")]
struct Args {
    /// Dispatcher URL, e.g. http://127.0.0.1:50051
    #[arg(long, env = "TRUNDLE_DISPATCHER")]
    dispatcher: String,
    /// File holding this robot's token.
    #[arg(long, env = "TRUNDLE_TOKEN_FILE")]
    token: PathBuf,
    /// Where the simulated body starts, as LAT,LON (usually the robot's depot).
    #[arg(long, value_parser = parse_latlon)]
    start: LatLon,
    /// This robot's id; if given, the dispatcher checks it against the token.
    #[arg(long)]
    robot_id: Option<String>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// CA certificate (PEM) that signed the dispatcher's; turns on TLS (use an https:// URL).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The name in the dispatcher's certificate, if not the URL's host.
    #[arg(long, requires = "tls_ca")]
    tls_domain: Option<String>,
    /// This robot's certificate and key (PEM), for a dispatcher that requires client certificates.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn parse_latlon(s: &str) -> Result<LatLon, String> {
    let (a, b) = s.split_once(',').ok_or("expected LAT,LON")?;
    let lat = a.trim().parse::<f64>().map_err(|e| e.to_string())?;
    let lon = b.trim().parse::<f64>().map_err(|e| e.to_string())?;
    LatLon::new(lat, lon).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let token = std::fs::read_to_string(&args.token)
        .with_context(|| format!("cannot read the token file {}", args.token.display()))?
        .trim()
        .to_owned();
    let mut cfg = SessionConfig::new(args.dispatcher, token);
    cfg.robot_id = args.robot_id;
    cfg.time_scale = args.time_scale;
    if let Some(ca) = &args.tls_ca {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let identity = match (&args.tls_cert, &args.tls_key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        cfg.tls =
            Some(robot_agent::session::ClientTls { ca_pem: read(ca)?, domain: args.tls_domain.clone(), identity });
    }
    let (pin_tx, pin_rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let pin = line.trim().to_owned();
            if !pin.is_empty() && pin_tx.send(pin).await.is_err() {
                break;
            }
        }
    });
    let platform = KinematicPlatform::new(args.start, dispatcher_now());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    session::run(cfg, Agent::new(RobotModel::default()), platform, pin_rx, None, shutdown).await?;
    Ok(())
}

fn dispatcher_now() -> fleet_core::Timestamp {
    let ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    fleet_core::Timestamp(ms)
}
