//! The IO around the agent: a runner task that owns the [`Agent`] and its [`Platform`], and a connection task
//! that keeps one gRPC session to the dispatcher open, reconnecting with jittered exponential backoff.
//!
//! While the link is down the agent keeps executing its released base; what it would have reported is dropped,
//! and the hello of the next session lists the steps it finished, so the dispatcher catches up without any
//! step running twice.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleet_core::mission::{FromRobot, ToRobot};
use fleet_core::{OrderId, Timestamp};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status};
use trundle_proto::{convert, pb};

use crate::agent::{Agent, Input, Output};
use crate::platform::Platform;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("bad dispatcher address {0:?}: {1}")]
    Endpoint(String, String),
    #[error("the dispatcher refused this robot: {0}")]
    Refused(String),
}

/// How the runner connects and keeps time.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// For example `http://127.0.0.1:50051`.
    pub endpoint: String,
    pub token: String,
    /// If set, sent in the hello; the dispatcher refuses a session whose token is another robot's.
    pub robot_id: Option<String>,
    /// Simulated seconds per real second for the platform and the agent (1 for a real robot).
    pub time_scale: f64,
    /// How often the platform is polled (real time).
    pub poll_every: Duration,
    /// How often state is reported (real time).
    pub state_every: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// TLS to the dispatcher (an `https://` endpoint), with a client certificate for mutual TLS if given.
    pub tls: Option<ClientTls>,
}

/// PEM material for a TLS connection to the dispatcher.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The CA that signed the dispatcher's certificate.
    pub ca_pem: Vec<u8>,
    /// The name in the dispatcher's certificate, when it differs from the endpoint's host.
    pub domain: Option<String>,
    /// This robot's certificate and key, for dispatchers that require client certificates.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    pub fn config(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some(d) = &self.domain {
            c = c.domain_name(d.clone());
        }
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        c
    }
}

impl SessionConfig {
    pub fn new(endpoint: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            token: token.into(),
            robot_id: None,
            time_scale: 1.0,
            poll_every: Duration::from_millis(100),
            state_every: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// A simulated customer: the PIN they will type for an order, if they know one.
pub type Customers = Arc<Mutex<BTreeMap<OrderId, String>>>;

enum Link {
    Up(mpsc::Sender<pb::RobotMessage>),
    Down,
    Msg(ToRobot),
    Fatal(String),
}

fn is_fatal(s: &Status) -> bool {
    matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied | Code::NotFound | Code::InvalidArgument)
}

/// Keeps a session open, forwarding what arrives to the runner.
///
/// With service areas the configured endpoint is an entry point (`trundle-router`): it answers a session with
/// `UNAVAILABLE` and the address of the leader of the robot's area ([`trundle_proto::areas::LEADER_METADATA`]),
/// and the agent connects there next. Whenever a session at such an address ends or fails (a failover, a
/// hand-off to another area), the next attempt goes through the entry point again. Only the entry point's
/// refusals (a bad token) stop the agent.
async fn connect_loop(cfg: SessionConfig, to_runner: mpsc::Sender<Link>) {
    let mut backoff = cfg.backoff_min;
    // The highest fencing token a dispatcher of each area has welcomed this robot with: a dispatcher of that
    // area with a lower one has lost the area to another, and this robot takes no command from it. Tokens of
    // different areas are not comparable (a robot handed over starts afresh in its new area).
    let mut highest_token: BTreeMap<String, u64> = BTreeMap::new();
    // Where the entry point last sent this robot (`host:port`).
    let mut redirect: Option<String> = None;
    loop {
        let at_entry = redirect.is_none();
        let url = match &redirect {
            None => cfg.endpoint.clone(),
            Some(addr) => {
                let scheme = if cfg.endpoint.starts_with("https://") { "https" } else { "http" };
                format!("{scheme}://{addr}")
            }
        };
        let mut next_redirect = None;
        let endpoint = match tonic::transport::Endpoint::from_shared(url) {
            Ok(e) => e
                .connect_timeout(Duration::from_secs(5))
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true),
            Err(e) if at_entry => {
                let _ = to_runner.send(Link::Fatal(format!("bad endpoint: {e}"))).await;
                return;
            }
            Err(e) => {
                tracing::warn!("the entry point sent this robot to a bad address: {e}");
                redirect = None;
                continue;
            }
        };
        let endpoint = match &cfg.tls {
            None => endpoint,
            Some(t) => match endpoint.tls_config(t.config()) {
                Ok(e) => e,
                Err(e) => {
                    let _ = to_runner.send(Link::Fatal(format!("bad TLS settings: {e}"))).await;
                    return;
                }
            },
        };
        match endpoint.connect().await {
            Ok(channel) => {
                let mut client = pb::robot_service_client::RobotServiceClient::new(channel);
                let (out_tx, out_rx) = mpsc::channel(256);
                let mut req = Request::new(ReceiverStream::new(out_rx));
                match format!("Bearer {}", cfg.token).parse() {
                    Ok(v) => {
                        req.metadata_mut().insert("authorization", v);
                    }
                    Err(_) => {
                        let _ = to_runner.send(Link::Fatal("the token is not a valid header value".into())).await;
                        return;
                    }
                }
                // The runner answers `Up` with the hello, so it is the first message on the stream.
                if to_runner.send(Link::Up(out_tx)).await.is_err() {
                    return;
                }
                match client.session(req).await {
                    Ok(resp) => {
                        let mut inbound = resp.into_inner();
                        loop {
                            match inbound.message().await {
                                Ok(Some(m)) => {
                                    if let Some(pb::dispatcher_message::Msg::Welcome(w)) = &m.msg {
                                        let seen = highest_token.entry(w.area.clone()).or_default();
                                        if w.fencing_token < *seen {
                                            tracing::warn!(
                                                area = %w.area,
                                                seen = *seen,
                                                offered = w.fencing_token,
                                                "this dispatcher lost the area (an older fencing token); refusing it"
                                            );
                                            break;
                                        }
                                        *seen = w.fencing_token;
                                    }
                                    backoff = cfg.backoff_min;
                                    match convert::to_robot(m) {
                                        Ok(Some(msg)) => {
                                            if to_runner.send(Link::Msg(msg)).await.is_err() {
                                                return;
                                            }
                                        }
                                        Ok(None) => {}
                                        Err(e) => tracing::warn!("ignoring a malformed dispatcher message: {e}"),
                                    }
                                }
                                Ok(None) => break,
                                Err(s) if at_entry && is_fatal(&s) => {
                                    let _ = to_runner.send(Link::Fatal(s.message().to_owned())).await;
                                    return;
                                }
                                Err(s) => {
                                    tracing::info!("session ended: {s}");
                                    break;
                                }
                            }
                        }
                    }
                    Err(s) if at_entry && is_fatal(&s) => {
                        let _ = to_runner.send(Link::Fatal(s.message().to_owned())).await;
                        return;
                    }
                    Err(s) => match leader_of(&s) {
                        Some(addr) if at_entry => {
                            tracing::info!("the entry point sends this robot to {addr}");
                            next_redirect = Some(addr);
                        }
                        _ => tracing::info!("session refused: {s}"),
                    },
                }
                if to_runner.send(Link::Down).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!("connect failed: {e}"),
        }
        if next_redirect.is_some() {
            // Straight on to the leader the entry point named.
            redirect = next_redirect;
            continue;
        }
        // A session away from the entry point that ended or failed: back through the entry point, which knows
        // where the robot belongs now.
        redirect = None;
        let jitter = rand::rng().random_range(0.5..1.0);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

/// The leader address an entry point's refusal names, if it names one.
fn leader_of(s: &Status) -> Option<String> {
    let v = s.metadata().get(trundle_proto::areas::LEADER_METADATA)?.to_str().ok()?;
    let ok = !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b));
    ok.then(|| v.to_owned())
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Runs the agent on `platform` against the dispatcher until `shutdown` resolves or the dispatcher refuses the
/// robot. PINs typed on the keypad arrive on `keypad`; `customers` (optional) answers for simulated customers.
pub async fn run<P: Platform + Send>(
    cfg: SessionConfig,
    mut agent: Agent,
    mut platform: P,
    mut keypad: mpsc::Receiver<String>,
    customers: Option<Customers>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SessionError> {
    if !(cfg.time_scale.is_finite() && cfg.time_scale > 0.0) {
        return Err(SessionError::Endpoint(cfg.endpoint, "time scale must be positive".into()));
    }
    let (link_tx, mut link_rx) = mpsc::channel(256);
    let conn = tokio::spawn(connect_loop(cfg.clone(), link_tx));
    let (t0, w0) = (Instant::now(), wall_ms());
    let now = || Timestamp(w0 + (t0.elapsed().as_secs_f64() * 1000.0 * cfg.time_scale) as u64);
    let mut out: Option<mpsc::Sender<pb::RobotMessage>> = None;
    let mut poll = tokio::time::interval(cfg.poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_state: Option<Instant> = None;
    let mut keypad_open = true;
    tokio::pin!(shutdown);

    let result = loop {
        let mut inputs = Vec::new();
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            _ = poll.tick() => {
                let t = now();
                inputs.extend(platform.poll(t).into_iter().map(Input::Platform));
                if let (Some(order), Some(c)) = (agent.awaiting_pin(), &customers)
                    && let Some(pin) = c.lock().ok().and_then(|m| m.get(order).cloned())
                {
                    inputs.push(Input::PinEntered(pin));
                }
                if last_state.is_none_or(|l| l.elapsed() >= cfg.state_every) {
                    last_state = Some(Instant::now());
                    inputs.push(Input::Tick(platform.telemetry()));
                }
            }
            link = link_rx.recv() => match link {
                Some(Link::Up(tx)) => { out = Some(tx); inputs.push(Input::Connected); }
                Some(Link::Down) => out = None,
                Some(Link::Msg(m)) => inputs.push(Input::FromDispatcher(m)),
                Some(Link::Fatal(why)) => break Err(SessionError::Refused(why)),
                None => break Ok(()),
            },
            pin = keypad.recv(), if keypad_open => match pin {
                Some(p) => inputs.push(Input::PinEntered(p)),
                None => keypad_open = false,
            },
        }
        let t = now();
        for input in inputs {
            for o in agent.handle(t, input) {
                match o {
                    Output::Send(msg) => send(&mut out, &msg, cfg.robot_id.as_deref()),
                    Output::Platform(cmd) => platform.execute(t, cmd),
                }
            }
        }
    };
    conn.abort();
    result
}

fn send(out: &mut Option<mpsc::Sender<pb::RobotMessage>>, msg: &FromRobot, robot_id: Option<&str>) {
    let Some(tx) = out else { return };
    let mut wire = convert::from_robot_to_wire(msg);
    if let (Some(pb::robot_message::Msg::Hello(h)), Some(id)) = (&mut wire.msg, robot_id) {
        h.robot_id = id.to_owned();
    }
    // A full queue means the link is stalled: drop the message (state is re-sent every second, step results
    // travel again in the next hello).
    if tx.try_send(wire).is_err() {
        tracing::debug!("link stalled; dropped a message");
    }
}
