//! The core thread: the server's adapter over [`fleet_core::host::Host`], which owns the dispatcher. This
//! thread adds only what is the server's: the store it writes records through, the table of live robot
//! sessions it sends messages into, the watchers it notifies, the wall clock, and the improver thread that
//! runs the searches the host hands out. Services talk to it through a [`CoreHandle`].
//!
//! For every group of inputs: the host handles each, all their records are written in one flushed batch, then
//! the replies, robot messages and notes go out. A failed write answers UNAVAILABLE and stops the core
//! (fail-stop): memory may be ahead of disk, so the process must restart from disk rather than serve a state
//! nobody can recover. After every command the host says whether a tick or a search is due.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fleet_core::dispatcher::{Dispatcher, Input, Reply};
use fleet_core::host::{Host, Improvement, Routed};
use fleet_core::map::MapGraph;
use fleet_core::order::Order;
use fleet_core::planner::improve::{ImproveParams, PlanSnapshot, Proposal, improve};
use fleet_core::robot::Robot;
use fleet_core::{CoreError, RobotId};
use tokio::sync::{broadcast, mpsc, oneshot};
use trundle_proto::{convert, pb};

use crate::Error;
use crate::clock::Clock;
use crate::store::Store;

/// What robot sessions receive.
pub type SessionTx = mpsc::Sender<Result<pb::DispatcherMessage, tonic::Status>>;

/// A fleet notification for operators.
#[derive(Debug, Clone)]
pub enum FleetNote {
    Robot(Box<Robot>),
    Alert { robot: Option<RobotId>, message: String },
}

type Query = Box<dyn FnOnce(&Dispatcher) + Send>;
/// Where the answer to one input goes, if anybody waits for it.
type ReplyTx = oneshot::Sender<Result<Reply, Error>>;

enum Command {
    Input {
        input: Input,
        reply: Option<oneshot::Sender<Result<Reply, Error>>>,
    },
    Query(Query),
    Attach {
        robot: RobotId,
        tx: SessionTx,
        reply: oneshot::Sender<u64>,
    },
    Detach {
        robot: RobotId,
        session: u64,
    },
    /// The improver finished a search (with or without something better).
    Improved(Option<Box<Proposal>>),
    /// Nothing to do but see whether a tick or a search is due (sent on the tick cadence).
    Wake,
    Stop,
}

/// Inputs handled together under one flushed write at most.
const MAX_GROUP: usize = 256;

/// The background improver's thread. How often it starts is the core's `Config::improve_every_s` (paced by
/// the host); how long one search may run is this server's business, in wall time.
#[derive(Debug, Clone, Copy)]
pub struct ImproverConfig {
    /// Off: plans are only ever changed by insertion.
    pub enabled: bool,
    /// Wall time one search may take.
    pub budget: Duration,
}

impl Default for ImproverConfig {
    fn default() -> Self {
        Self { enabled: true, budget: Duration::from_millis(300) }
    }
}

/// A cheap, cloneable handle to the core thread.
#[derive(Clone)]
pub struct CoreHandle {
    tx: mpsc::UnboundedSender<Command>,
    orders: broadcast::Sender<Arc<Order>>,
    fleet: broadcast::Sender<FleetNote>,
}

/// The running core thread.
pub struct Core {
    pub handle: CoreHandle,
    thread: Option<JoinHandle<()>>,
    improver: Option<JoinHandle<()>>,
}

impl Core {
    pub fn start(
        dispatcher: Dispatcher,
        store: Arc<dyn Store>,
        improver: ImproverConfig,
        clock: Box<dyn Clock>,
    ) -> Result<Self, Error> {
        // Unbounded: the core must never block a service on a full queue while it holds no await point; the
        // server's concurrency limits bound how much can be queued.
        let (tx, rx) = mpsc::unbounded_channel();
        let (orders, _) = broadcast::channel(4096);
        let (fleet, _) = broadcast::channel(4096);
        let handle = CoreHandle { tx, orders: orders.clone(), fleet: fleet.clone() };
        let improve = improver.enabled && dispatcher.config().improve_every_s > 0.0;
        // A std channel: the improver thread blocks on it between searches; the core only ever sends.
        let (snap_tx, snap_rx) = std::sync::mpsc::channel::<PlanSnapshot>();
        let improver_thread = if improve {
            let back = handle.tx.clone();
            let budget = improver.budget;
            let t = std::thread::Builder::new()
                .name("trundle-improver".into())
                .spawn(move || run_improver(snap_rx, back, budget))
                .map_err(|e| Error::Setup(format!("cannot start the plan improver thread: {e}")))?;
            Some(t)
        } else {
            None
        };
        let state = CoreThread {
            host: Host::new(dispatcher, improve),
            store,
            clock,
            sessions: BTreeMap::new(),
            next_session: 1,
            orders,
            fleet,
            failed: false,
            searches: improver_thread.as_ref().map(|_| snap_tx),
        };
        let thread = std::thread::Builder::new()
            .name("trundle-core".into())
            .spawn(move || state.run(rx))
            .map_err(|e| Error::Setup(format!("cannot start the dispatcher core thread: {e}")))?;
        Ok(Self { handle, thread: Some(thread), improver: improver_thread })
    }

    /// Stops the core and waits until it has dropped the store and every session sender.
    pub async fn stop(&mut self) {
        let _ = self.handle.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // The core dropped the snapshot sender, so the improver ends after its current search.
        if let Some(t) = self.improver.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// The improver thread: one search per snapshot, each bounded by `budget` of wall time. It keeps its own copy
/// of the map, so its routing never contends with the core's; the copy is refreshed when the map changes.
fn run_improver(rx: std::sync::mpsc::Receiver<PlanSnapshot>, back: mpsc::UnboundedSender<Command>, budget: Duration) {
    // The search takes only CPU time nobody else wants (SCHED_IDLE). At equal priority it took a core's share
    // from the core thread and the services: with 1,000 robot sessions and 200 orders/s on two cores, single
    // runs had a PlaceOrder p99 of 38 to 107 ms with it and 11 ms without it; at SCHED_IDLE 13 to 37 ms
    // (docs/benchmarks.md).
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
            tracing::warn!("the plan improver runs at normal priority: {e:?}");
        }
    }
    let mut map: Option<(std::sync::Weak<MapGraph>, Arc<MapGraph>)> = None;
    let mut seed = 1u64;
    while let Ok(mut snap) = rx.recv() {
        let fresh = map.as_ref().is_some_and(|(src, _)| std::sync::Weak::ptr_eq(src, &Arc::downgrade(&snap.map)));
        if !fresh {
            map = Some((Arc::downgrade(&snap.map), Arc::new((*snap.map).clone())));
        }
        if let Some((_, own)) = &map {
            snap.map = Arc::clone(own);
        }
        let start = Instant::now();
        let params = ImproveParams { seed, ..ImproveParams::default() };
        seed = seed.wrapping_add(1);
        let found = improve(&snap, &params, &mut |_| start.elapsed().as_secs_f64() / budget.as_secs_f64());
        drop(snap);
        if back.send(Command::Improved(found.map(Box::new))).is_err() {
            break;
        }
    }
}

impl CoreHandle {
    /// Runs one input through the core and returns its reply.
    pub async fn call(&self, input: Input) -> Result<Reply, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Input { input, reply: Some(tx) }).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Sends an input whose reply nobody waits for (robot messages, ticks).
    pub fn send(&self, input: Input) -> Result<(), Error> {
        self.tx.send(Command::Input { input, reply: None }).map_err(|_| Error::Stopped)
    }

    /// Reads from the core's current state.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Dispatcher) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        let q: Query = Box::new(move |d| {
            let _ = tx.send(f(d));
        });
        self.tx.send(Command::Query(q)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Registers a robot's session; a newer session replaces an older one. Returns the session number.
    pub async fn attach(&self, robot: RobotId, tx: SessionTx) -> Result<u64, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Attach { robot, tx, reply }).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    pub fn detach(&self, robot: RobotId, session: u64) {
        // A stopped core has no sessions left to detach from.
        let _ = self.tx.send(Command::Detach { robot, session });
    }

    /// Asks the core to run whatever tick or search is due; false once the core has stopped.
    pub fn wake(&self) -> bool {
        self.tx.send(Command::Wake).is_ok()
    }

    /// Resolves when the core thread has stopped; long-lived streams end then.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    pub fn subscribe_orders(&self) -> broadcast::Receiver<Arc<Order>> {
        self.orders.subscribe()
    }

    pub fn subscribe_fleet(&self) -> broadcast::Receiver<FleetNote> {
        self.fleet.subscribe()
    }
}

struct CoreThread {
    host: Host,
    store: Arc<dyn Store>,
    clock: Box<dyn Clock>,
    sessions: BTreeMap<RobotId, (u64, SessionTx)>,
    next_session: u64,
    orders: broadcast::Sender<Arc<Order>>,
    fleet: broadcast::Sender<FleetNote>,
    /// A store write failed: refuse everything from now on.
    failed: bool,
    /// Where searches go; `None` when improvement is off.
    searches: Option<std::sync::mpsc::Sender<PlanSnapshot>>,
}

impl CoreThread {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut next: Option<Command> = None;
        loop {
            let Some(cmd) = next.take().or_else(|| rx.blocking_recv()) else { break };
            match cmd {
                Command::Stop => break,
                Command::Wake => {}
                Command::Query(q) => q(self.host.dispatcher()),
                Command::Attach { robot, tx, reply } => {
                    let id = self.next_session;
                    self.next_session += 1;
                    // Dropping the replaced sender ends the older session's stream.
                    self.sessions.insert(robot, (id, tx));
                    // The session waits for this number; if it is gone, its own end detaches it.
                    let _ = reply.send(id);
                }
                Command::Detach { robot, session } => {
                    if self.sessions.get(&robot).is_some_and(|(id, _)| *id == session) {
                        self.sessions.remove(&robot);
                        self.inputs(vec![(Input::RobotDisconnected { robot }, None)]);
                    }
                }
                Command::Input { input, reply } => {
                    // Group commit: every input already waiting joins this one, and one flushed write covers
                    // them all. A query or any other command ends the group, so nothing reads state that is
                    // not yet on disk.
                    let mut group = vec![(input, reply)];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(Command::Input { input, reply }) => group.push((input, reply)),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.inputs(group);
                }
                Command::Improved(found) => {
                    let now = self.clock.now();
                    match self.host.improved(now, found.map(|p| *p)) {
                        Improvement::NothingFound => {}
                        Improvement::Applied { robots, saved_s, routed } => {
                            tracing::info!(robots, "plans improved: {saved_s:.0} s less planned travel");
                            self.commit(vec![(routed, None)]);
                        }
                        Improvement::Refused { why, routed } => {
                            tracing::debug!("improvement not applied: {why}");
                            self.commit(vec![(routed, None)]);
                        }
                    }
                }
            }
            self.due();
        }
        tracing::info!("dispatcher core stopped");
    }

    /// Runs the tick and starts the search the host says are due now.
    fn due(&mut self) {
        if self.failed {
            return;
        }
        let now = self.clock.now();
        if let Some(routed) = self.host.tick_if_due(now) {
            self.commit(vec![(routed, None)]);
        }
        let Some(tx) = &self.searches else { return };
        if let Some(snap) = self.host.improvement_due(now)
            && tx.send(snap).is_err()
        {
            // The improver thread is gone (it panicked): say so once and stop handing out searches.
            tracing::error!("the plan improver thread has stopped; plans are now changed by insertion only");
            self.searches = None;
            self.host.improved(now, None);
        }
    }

    /// Handles a group of inputs through the host, then commits them together.
    fn inputs(&mut self, group: Vec<(Input, Option<ReplyTx>)>) {
        if self.failed {
            for (_, reply) in group {
                if let Some(r) = reply {
                    // A caller that gave up waiting needs no answer.
                    let _ = r.send(Err(Error::Stopped));
                }
            }
            return;
        }
        let mut handled = Vec::with_capacity(group.len());
        for (input, reply) in group {
            let now = self.clock.now();
            handled.push((self.host.handle(now, input), reply));
        }
        self.commit(handled);
    }

    /// Writes every record of the group in one flushed batch, then answers, sends and notifies in order.
    fn commit(&mut self, handled: Vec<(Routed, Option<ReplyTx>)>) {
        let records: Vec<_> = handled.iter().flat_map(|(r, _)| r.records.iter().cloned()).collect();
        if let Err(e) = self.store.write(&records) {
            tracing::error!("store write failed, stopping the core: {e}");
            self.failed = true;
            self.sessions.clear();
            let why = match &e {
                Error::Store(m) => m.clone(),
                other => other.to_string(),
            };
            for (_, reply) in handled {
                if let Some(r) = reply {
                    // A caller that gave up waiting needs no answer.
                    let _ = r.send(Err(Error::Store(why.clone())));
                }
            }
            return;
        }
        for (routed, reply) in handled {
            self.deliver(routed, reply);
        }
    }

    /// Answers, sends to robots and notifies watchers; the records are already on disk.
    fn deliver(&mut self, routed: Routed, reply: Option<ReplyTx>) {
        if let Some(tx) = reply {
            let answer = routed
                .reply
                .unwrap_or_else(|| Err(CoreError::precondition("the core gave no answer")))
                .map_err(Error::from);
            // A caller that gave up waiting needs no answer.
            let _ = tx.send(answer);
        }
        for (robot, msg) in routed.to_robots {
            let Some((_, tx)) = self.sessions.get(&robot) else {
                continue;
            };
            // A robot that cannot keep up loses its session; it reconnects and resynchronises.
            if tx.try_send(Ok(convert::to_robot_to_wire(&msg))).is_err() {
                tracing::warn!(%robot, "session queue full or closed; dropping the session");
                self.sessions.remove(&robot);
            }
        }
        // A broadcast without receivers is a watcher-less moment, not an error.
        for o in routed.orders {
            let _ = self.orders.send(Arc::new(o));
        }
        for r in routed.robots {
            let _ = self.fleet.send(FleetNote::Robot(Box::new(r)));
        }
        for a in routed.alerts {
            tracing::warn!("{}", a.message);
            let _ = self.fleet.send(FleetNote::Alert { robot: a.robot, message: a.message });
        }
    }
}
