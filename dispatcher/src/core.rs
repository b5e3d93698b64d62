//! The core thread: the one owner of the fleet-core dispatcher, the store handle it writes through, and the
//! table of live robot sessions. Services talk to it through a [`CoreHandle`].
//!
//! For every input: `handle(now, input)`, then write all `Persist` records of that call in one flushed batch,
//! then answer and notify. A failed write answers UNAVAILABLE and stops the core (fail-stop): memory may be
//! ahead of disk, so the process must restart from disk rather than serve a state nobody can recover.
//!
//! Beside it runs the improver thread: on a tick, when plans changed and no search is running, the core hands
//! it a plan snapshot; it searches for a bounded time and sends back a proposal, which comes in as one more
//! input and is validated by the core like any other. The core never waits for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fleet_core::dispatcher::{Dispatcher, Input, Output, Reply};
use fleet_core::improve::{ImproveParams, PlanSnapshot, Proposal, improve};
use fleet_core::map::MapGraph;
use fleet_core::order::Order;
use fleet_core::robot::Robot;
use fleet_core::{CoreError, RobotId};
use tokio::sync::{broadcast, mpsc, oneshot};
use trundle_proto::{convert, pb};

use crate::Error;
use crate::clock::MonotonicClock;
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
    Stop,
}

/// Inputs handled together under one flushed write at most.
const MAX_GROUP: usize = 256;

/// How the background improver is paced.
#[derive(Debug, Clone, Copy)]
pub struct ImproverConfig {
    /// Off: plans are only ever changed by insertion.
    pub enabled: bool,
    /// At most one search starts per this interval.
    pub every: Duration,
    /// Wall time one search may take.
    pub budget: Duration,
}

impl Default for ImproverConfig {
    fn default() -> Self {
        Self { enabled: true, every: Duration::from_secs(2), budget: Duration::from_millis(300) }
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
    pub fn start(dispatcher: Dispatcher, store: Arc<dyn Store>, improver: ImproverConfig) -> Self {
        // Unbounded: the core must never block a service on a full queue while it holds no await point; the
        // server's concurrency limits bound how much can be queued.
        let (tx, rx) = mpsc::unbounded_channel();
        let (orders, _) = broadcast::channel(4096);
        let (fleet, _) = broadcast::channel(4096);
        let handle = CoreHandle { tx, orders: orders.clone(), fleet: fleet.clone() };
        // A std channel: the improver thread blocks on it between searches; the core only ever sends.
        let (snap_tx, snap_rx) = std::sync::mpsc::channel::<PlanSnapshot>();
        let improver_thread = if improver.enabled {
            let back = handle.tx.clone();
            let budget = improver.budget;
            std::thread::Builder::new()
                .name("trundle-improver".into())
                .spawn(move || run_improver(snap_rx, back, budget))
                .ok()
        } else {
            None
        };
        let state = CoreThread {
            d: dispatcher,
            store,
            clock: MonotonicClock::default(),
            sessions: BTreeMap::new(),
            next_session: 1,
            orders,
            fleet,
            failed: false,
            improver: Improver {
                tx: improver_thread.as_ref().map(|_| snap_tx),
                every: improver.every,
                busy: false,
                last_start: None,
                searched_version: None,
            },
        };
        let thread = std::thread::Builder::new().name("trundle-core".into()).spawn(move || state.run(rx)).ok();
        Self { handle, thread, improver: improver_thread }
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
        let _ = self.tx.send(Command::Detach { robot, session });
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
    d: Dispatcher,
    store: Arc<dyn Store>,
    clock: MonotonicClock,
    sessions: BTreeMap<RobotId, (u64, SessionTx)>,
    next_session: u64,
    orders: broadcast::Sender<Arc<Order>>,
    fleet: broadcast::Sender<FleetNote>,
    /// A store write failed: refuse everything from now on.
    failed: bool,
    improver: Improver,
}

/// The core's side of the improver.
struct Improver {
    /// `None` when improvement is off.
    tx: Option<std::sync::mpsc::Sender<PlanSnapshot>>,
    every: Duration,
    /// A search is running; at most one at a time.
    busy: bool,
    last_start: Option<Instant>,
    /// The plans version the last search started from, unless that search's proposal was refused as stale.
    searched_version: Option<u64>,
}

impl CoreThread {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut next: Option<Command> = None;
        loop {
            let Some(cmd) = next.take().or_else(|| rx.blocking_recv()) else { break };
            match cmd {
                Command::Stop => break,
                Command::Query(q) => q(&self.d),
                Command::Attach { robot, tx, reply } => {
                    let id = self.next_session;
                    self.next_session += 1;
                    // Dropping the replaced sender ends the older session's stream.
                    self.sessions.insert(robot, (id, tx));
                    let _ = reply.send(id);
                }
                Command::Detach { robot, session } => {
                    if self.sessions.get(&robot).is_some_and(|(id, _)| *id == session) {
                        self.sessions.remove(&robot);
                        self.input(Input::RobotDisconnected { robot }, None);
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
                    let tick = group.iter().any(|(i, _)| matches!(i, Input::Tick));
                    self.inputs(group);
                    if tick {
                        self.maybe_improve();
                    }
                }
                Command::Improved(found) => {
                    self.improver.busy = false;
                    if let Some(p) = found {
                        let (n, before, after) = (p.plans.len(), p.travel_before_s, p.travel_after_s);
                        let (tx, mut rx) = oneshot::channel();
                        self.input(Input::ProposePlans(p), Some(tx));
                        match rx.try_recv() {
                            Ok(Ok(_)) => {
                                tracing::info!(robots = n, "plans improved: travel {before:.0} s -> {after:.0} s")
                            }
                            Ok(Err(e)) => {
                                tracing::debug!("improvement not applied: {e}");
                                self.improver.searched_version = None;
                            }
                            Err(_) => {}
                        }
                    }
                }
            }
        }
        tracing::info!("dispatcher core stopped");
    }

    /// Starts a search when plans changed since the last one, none is running and the interval has passed.
    fn maybe_improve(&mut self) {
        let imp = &mut self.improver;
        let Some(tx) = &imp.tx else { return };
        let version = self.d.plans_version();
        if self.failed
            || imp.busy
            || imp.searched_version == Some(version)
            || imp.last_start.is_some_and(|t| t.elapsed() < imp.every)
        {
            return;
        }
        let snap = self.d.plan_snapshot(self.clock.now());
        if tx.send(snap).is_ok() {
            imp.busy = true;
            imp.last_start = Some(Instant::now());
            imp.searched_version = Some(version);
        }
    }

    fn input(&mut self, input: Input, reply: Option<oneshot::Sender<Result<Reply, Error>>>) {
        self.inputs(vec![(input, reply)]);
    }

    /// Handles a group of inputs, writes all their records in one flushed batch, then answers and notifies
    /// in order.
    fn inputs(&mut self, group: Vec<(Input, Option<ReplyTx>)>) {
        if self.failed {
            for (_, reply) in group {
                if let Some(r) = reply {
                    let _ = r.send(Err(Error::Stopped));
                }
            }
            return;
        }
        let mut handled = Vec::with_capacity(group.len());
        let mut records = Vec::new();
        for (input, reply) in group {
            let now = self.clock.now();
            let outputs = self.d.handle(now, input);
            records.extend(outputs.iter().filter_map(|o| match o {
                Output::Persist(r) => Some(r.clone()),
                _ => None,
            }));
            handled.push((outputs, reply));
        }
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
                    let _ = r.send(Err(Error::Store(why.clone())));
                }
            }
            return;
        }
        for (outputs, reply) in handled {
            self.dispatch(outputs, reply);
        }
    }

    /// Answers, sends to robots and notifies watchers; the records are already on disk.
    fn dispatch(&mut self, outputs: Vec<Output>, reply: Option<oneshot::Sender<Result<Reply, Error>>>) {
        let mut reply = reply;
        for o in outputs {
            match o {
                Output::Persist(_) => {}
                Output::Reply(r) => {
                    if let Some(tx) = reply.take() {
                        let _ = tx.send(r.map_err(Error::from));
                    }
                }
                Output::Send { robot, msg } => {
                    let Some((_, tx)) = self.sessions.get(&robot) else {
                        continue;
                    };
                    // A robot that cannot keep up loses its session; it reconnects and resynchronises.
                    if tx.try_send(Ok(convert::to_robot_to_wire(&msg))).is_err() {
                        tracing::warn!(%robot, "session queue full or closed; dropping the session");
                        self.sessions.remove(&robot);
                    }
                }
                Output::OrderChanged(o) => {
                    let _ = self.orders.send(Arc::new(*o));
                }
                Output::RobotChanged(r) => {
                    let _ = self.fleet.send(FleetNote::Robot(r));
                }
                Output::Alert { robot, message } => {
                    tracing::warn!("{message}");
                    let _ = self.fleet.send(FleetNote::Alert { robot, message });
                }
            }
        }
        if let Some(tx) = reply {
            let _ = tx.send(Err(Error::Core(CoreError::precondition("the core gave no answer"))));
        }
    }
}
