//! A robot takes no command from a dispatcher that lost its area: a real robot agent talks to stand-in
//! dispatchers (real gRPC servers on one loopback port, one after another) that welcome it with a fencing token
//! and send a mission update. The agent acknowledges the updates of a dispatcher with the highest token it has
//! seen, and refuses the session of one with an older token: no acknowledgement, the session dropped. The
//! dispatcher side (every session's welcome carries the area leader's token) runs in `dispatcher/tests/etcd.rs`.

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use common::*;
use fleet_core::robot::RobotModel;
use robot_agent::agent::Agent;
use robot_agent::platform::KinematicPlatform;
use robot_agent::session::{self, SessionConfig};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use trundle_proto::pb;

/// A stand-in dispatcher: welcomes with `token`, sends one mission update, and reports what the robot sends.
struct StandIn {
    area: &'static str,
    token: u64,
    update_id: u64,
    seen: mpsc::UnboundedSender<pb::RobotMessage>,
    /// Set when the stand-in stops: its sessions end, so the robot reconnects to whatever answers next.
    stopping: tokio::sync::watch::Receiver<bool>,
}

type Out = Pin<Box<dyn Stream<Item = Result<pb::DispatcherMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::robot_service_server::RobotService for StandIn {
    type SessionStream = Out;

    async fn session(&self, req: Request<Streaming<pb::RobotMessage>>) -> Result<Response<Out>, Status> {
        let mut inbound = req.into_inner();
        let seen = self.seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                let _ = seen.send(m);
            }
        });
        let (tx, rx) = mpsc::channel(4);
        let welcome = pb::DispatcherMessage {
            msg: Some(pb::dispatcher_message::Msg::Welcome(pb::Welcome {
                robot_id: "r1".into(),
                fencing_token: self.token,
                area: self.area.into(),
            })),
        };
        let update = pb::DispatcherMessage {
            msg: Some(pb::dispatcher_message::Msg::Mission(pb::MissionUpdate {
                mission_id: format!("m{}", self.token),
                update_id: self.update_id,
                steps: vec![],
            })),
        };
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let _ = tx.send(Ok(welcome)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tx.send(Ok(update)).await;
            tokio::select! {
                () = tx.closed() => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// Serves a stand-in on `addr` until the returned sender is set.
async fn stand_in(
    addr: SocketAddr,
    area: &'static str,
    token: u64,
    update_id: u64,
) -> (tokio::sync::watch::Sender<bool>, mpsc::UnboundedReceiver<pb::RobotMessage>) {
    let (seen, rx) = mpsc::unbounded_channel();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let listener = loop {
        // The previous stand-in may still hold the port for a moment.
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut stopped = stopping.clone();
    let svc = pb::robot_service_server::RobotServiceServer::new(StandIn { area, token, update_id, seen, stopping });
    tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    (stop, rx)
}

/// A real agent whose only address is `addr`, quick to reconnect; stopped through the sender.
fn start_agent(
    addr: SocketAddr,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), session::SessionError>>) {
    let mut cfg = SessionConfig::new(format!("http://{addr}"), "trd_token");
    cfg.poll_every = Duration::from_millis(50);
    cfg.backoff_min = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(200);
    let start = fleet_core::LatLon::new(CASINO.0, CASINO.1).expect("valid");
    let platform = KinematicPlatform::new(start, fleet_core::Timestamp(wall_ms()));
    let (keypad_tx, keypad) = mpsc::channel(1);
    let (stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        let _keypad = keypad_tx;
        session::run(cfg, Agent::new(RobotModel::default()), platform, keypad, None, async {
            let _ = agent_stopped.await;
        })
        .await
    });
    (stop_agent, agent)
}

/// Within `within`: how many hellos the robot sent (sessions it opened) and whether it acknowledged `update_id`.
async fn acked(rx: &mut mpsc::UnboundedReceiver<pb::RobotMessage>, update_id: u64, within: Duration) -> (usize, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut hellos = 0;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(pb::RobotMessage { msg: Some(pb::robot_message::Msg::Ack(a)) })) if a.update_id == update_id => {
                return (hellos, true);
            }
            Ok(Some(pb::RobotMessage { msg: Some(pb::robot_message::Msg::Hello(_)) })) => hellos += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return (hellos, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_refuses_a_dispatcher_with_an_older_fencing_token() {
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    // The area's leader with token 9: its update is acknowledged.
    let (stop, mut seen) = stand_in(addr, "north", 9, 1).await;
    let (stop_agent, agent) = start_agent(addr);
    assert!(acked(&mut seen, 1, Duration::from_secs(20)).await.1, "the leader's update is acknowledged");
    let _ = stop.send(true);

    // An ex-leader with token 5 answers at that address next: its update is never acknowledged, however often the
    // robot tries.
    let (stop, mut seen) = stand_in(addr, "north", 5, 2).await;
    let (hellos, ack) = acked(&mut seen, 2, Duration::from_secs(4)).await;
    assert!(hellos >= 2, "the robot tried the ex-leader and left it, more than once ({hellos} sessions)");
    assert!(!ack, "a command of an ex-leader was acknowledged");
    let _ = stop.send(true);

    // A later leader (token 12) is followed again.
    let (stop, mut seen) = stand_in(addr, "north", 12, 3).await;
    assert!(acked(&mut seen, 3, Duration::from_secs(20)).await.1, "the new leader's update is acknowledged");
    let _ = stop.send(true);

    // Tokens are compared within an area: handed over to the south, the robot follows its leader's token 3.
    let (stop, mut seen) = stand_in(addr, "south", 3, 4).await;
    assert!(acked(&mut seen, 4, Duration::from_secs(20)).await.1, "another area's leader is followed");
    let _ = stop.send(true);
    let _ = stop_agent.send(());
    let _ = agent.await;
}

/// An entry point (a stand-in for `trundle-router`): answers every session with UNAVAILABLE and the address of
/// the leader to go to, and counts the sessions it was asked for.
struct Entry {
    leader: String,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl pb::robot_service_server::RobotService for Entry {
    type SessionStream = Out;

    async fn session(&self, _req: Request<Streaming<pb::RobotMessage>>) -> Result<Response<Out>, Status> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut st = Status::unavailable("go to the leader");
        st.metadata_mut().insert(trundle_proto::areas::LEADER_METADATA, self.leader.parse().expect("ascii"));
        Err(st)
    }
}

/// The agent knows only the entry point: it follows the entry's answer to the leader and is commanded there;
/// when that leader goes away it asks the entry point again instead of retrying the old address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_follows_its_entry_point_to_the_leader_and_comes_back_when_it_goes() {
    let entry: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    let leader: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let svc =
        pb::robot_service_server::RobotServiceServer::new(Entry { leader: leader.to_string(), asked: asked.clone() });
    let listener = tokio::net::TcpListener::bind(entry).await.expect("binds");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let (stop, mut seen) = stand_in(leader, "north", 7, 1).await;

    let (stop_agent, agent) = start_agent(entry);
    assert!(acked(&mut seen, 1, Duration::from_secs(20)).await.1, "the leader the entry named commands the robot");
    let before = asked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(before >= 1);

    // The leader goes: the robot asks the entry point again (which still names the same address, so it keeps
    // coming back through the entry while nothing answers there).
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while asked.load(std::sync::atomic::Ordering::SeqCst) < before + 2 {
        assert!(tokio::time::Instant::now() < deadline, "the robot did not come back to its entry point");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A leader at that address again: the robot is back under command.
    let (stop, mut seen) = stand_in(leader, "north", 8, 2).await;
    assert!(acked(&mut seen, 2, Duration::from_secs(20)).await.1, "the next leader commands the robot");
    let _ = stop.send(true);
    let _ = stop_agent.send(());
    let _ = agent.await;
}
