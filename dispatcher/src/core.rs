//! The core thread: the server's adapter over [`fleet_core::host::Host`], which owns the dispatcher. This
//! thread adds only what is the server's: the table of live robot sessions, the wall clock, and the improver
//! thread that runs the searches the host hands out. Services talk to it through a [`CoreHandle`].
//!
//! For every group of inputs the host handles each, and the group goes to the writer thread, which writes the
//! records of every group waiting in one flushed batch and only then sends the replies, robot messages and notes,
//! in the order the core handled them. The core goes on with the next inputs while the disk flushes, so a slow
//! flush delays answers but never the core; a query's answer, too, waits until every earlier write is on disk.
//! A failed write answers UNAVAILABLE and stops the core (fail-stop): memory may be ahead of disk, so the process
//! must restart from disk rather than serve a state nobody can recover. After every command the host says
//! whether a tick or a search is due.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
use crate::stats::{self, CoreStats, Histogram};
use crate::store::Store;

/// What robot sessions receive.
pub type SessionTx = mpsc::Sender<Result<pb::DispatcherMessage, tonic::Status>>;

/// A fleet notification for operators.
#[derive(Debug, Clone)]
pub enum FleetNote {
    Robot(Box<Robot>),
    Alert { id: u64, robot: Option<RobotId>, message: String },
}

/// A read of the core's state; what it returns runs once every earlier write is on disk (it sends the answer).
type Query = Box<dyn FnOnce(&Dispatcher) -> Box<dyn FnOnce() + Send> + Send>;
/// Where the answer to one input goes, if anybody waits for it.
type ReplyTx = oneshot::Sender<Result<Reply, Error>>;

enum Command {
    Input {
        input: Input,
        reply: Option<oneshot::Sender<Result<Reply, Error>>>,
        /// When the service queued it, for the queueing figure in [`CoreStats`].
        sent: Instant,
    },
    Query(Query),
    Stats(oneshot::Sender<CoreStats>),
    Attach {
        robot: RobotId,
        tx: SessionTx,
        reply: oneshot::Sender<u64>,
    },
    Detach {
        robot: RobotId,
        session: u64,
    },
    /// The writer found a session's queue full: the session is dropped (the robot reconnects and resynchronises).
    SessionFull {
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

/// The core's input queue: a sender that counts what waits in it, for `/metrics` (the core counts down as it
/// takes commands off).
#[derive(Clone)]
struct Queue {
    tx: mpsc::UnboundedSender<Command>,
    depth: Arc<std::sync::atomic::AtomicUsize>,
}

impl Queue {
    /// Queues `c`; fails only when the core has stopped.
    fn send(&self, c: Command) -> Result<(), Closed> {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.tx.send(c).map_err(|_| {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            Closed
        })
    }
}

/// The core has stopped: nothing can be queued any more.
#[derive(Debug)]
struct Closed;

/// A cheap, cloneable handle to the core thread.
#[derive(Clone)]
pub struct CoreHandle {
    tx: Queue,
    orders: broadcast::Sender<Arc<Order>>,
    fleet: broadcast::Sender<FleetNote>,
}

/// The running core thread.
pub struct Core {
    pub handle: CoreHandle,
    thread: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
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
        let depth = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (orders, _) = broadcast::channel(4096);
        let (fleet, _) = broadcast::channel(4096);
        let handle =
            CoreHandle { tx: Queue { tx, depth: depth.clone() }, orders: orders.clone(), fleet: fleet.clone() };
        // The thread runs whatever the policy: an operator may switch to one that improves plans later.
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
        let failed = Arc::new(AtomicBool::new(false));
        let (batches, batches_rx) = std::sync::mpsc::sync_channel(WRITER_QUEUE);
        let writer = Writer {
            store,
            orders,
            fleet,
            failed: failed.clone(),
            back: handle.tx.clone(),
            write: Histogram::default(),
        };
        let writer_thread = std::thread::Builder::new()
            .name("trundle-writer".into())
            .spawn(move || writer.run(batches_rx))
            .map_err(|e| Error::Setup(format!("cannot start the store writer thread: {e}")))?;
        let state = CoreThread {
            host: Host::new(dispatcher, improve),
            clock,
            sessions: BTreeMap::new(),
            next_session: 1,
            writer: batches,
            failed,
            searches: improver_thread.as_ref().map(|_| snap_tx),
            stats: CoreStats::default(),
        };
        let thread = std::thread::Builder::new()
            .name("trundle-core".into())
            .spawn(move || state.run(rx, depth))
            .map_err(|e| Error::Setup(format!("cannot start the dispatcher core thread: {e}")))?;
        Ok(Self { handle, thread: Some(thread), writer: Some(writer_thread), improver: improver_thread })
    }

    /// Stops the core and waits until it has dropped the store and every session sender.
    pub async fn stop(&mut self) {
        let _ = self.handle.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // The core dropped its end of the writer's queue: the writer writes and delivers what is left, then
        // drops the store.
        if let Some(t) = self.writer.take() {
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
fn run_improver(rx: std::sync::mpsc::Receiver<PlanSnapshot>, back: Queue, budget: Duration) {
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
        self.tx.send(Command::Input { input, reply: Some(tx), sent: Instant::now() }).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Sends an input whose reply nobody waits for (robot messages, ticks).
    pub fn send(&self, input: Input) -> Result<(), Error> {
        self.tx.send(Command::Input { input, reply: None, sent: Instant::now() }).map_err(|_| Error::Stopped)
    }

    /// Reads from the core's current state.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Dispatcher) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        let q: Query = Box::new(move |d| {
            let answer = f(d);
            Box::new(move || {
                // A caller that gave up waiting needs no answer.
                let _ = tx.send(answer);
            })
        });
        self.tx.send(Command::Query(q)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Where the core thread's time went since it started.
    pub async fn stats(&self) -> Result<CoreStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Stats(tx)).map_err(|_| Error::Stopped)?;
        let mut s = rx.await.map_err(|_| Error::Stopped)?;
        s.queue_depth = self.tx.depth.load(Ordering::Relaxed) as u64;
        Ok(s)
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
        self.tx.tx.closed().await
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
    clock: Box<dyn Clock>,
    sessions: BTreeMap<RobotId, (u64, SessionTx)>,
    next_session: u64,
    /// Where handled groups go to be written and then delivered, in order. Bounded: a core that runs this far
    /// ahead of the disk waits for it rather than hold ever more unacknowledged work in memory.
    writer: std::sync::mpsc::SyncSender<Batch>,
    /// Set by the writer when a store write failed: refuse everything from now on.
    failed: Arc<AtomicBool>,
    /// Where searches go; `None` when improvement is off.
    searches: Option<std::sync::mpsc::Sender<PlanSnapshot>>,
    stats: CoreStats,
}

/// Groups the writer may be behind the core before the core waits.
const WRITER_QUEUE: usize = 64;

/// What the core hands the writer: records to make durable, then what may happen once they are.
enum Batch {
    /// Handled inputs: write their records, then answer, send to robots and notify watchers.
    Commit(Vec<Handled>),
    /// Something to do only after every earlier batch is on disk (a query's answer).
    After(Box<dyn FnOnce() + Send>),
    /// The core's figures, completed with the writer's own and sent to the caller.
    Stats(Box<CoreStats>, oneshot::Sender<CoreStats>),
}

/// One handled input: what the host routed, the caller waiting for the reply (if any) and the robot sessions
/// its messages go to, looked up when it was handled (a session attached later never sees older messages).
struct Handled {
    routed: Routed,
    reply: Option<ReplyTx>,
    to: Vec<(RobotId, u64, SessionTx)>,
}

impl CoreThread {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>, depth: Arc<std::sync::atomic::AtomicUsize>) {
        let mut next: Option<Command> = None;
        // Every command taken off the queue counts down what waits in it.
        let taken = |c: Command| {
            depth.fetch_sub(1, Ordering::Relaxed);
            c
        };
        loop {
            let Some(cmd) = next.take().or_else(|| rx.blocking_recv().map(taken)) else { break };
            if self.failed.load(Ordering::Acquire) && !self.sessions.is_empty() {
                // Memory may be ahead of disk: end every session, so robots reconnect to a restarted process.
                self.sessions.clear();
            }
            match cmd {
                Command::Stop => break,
                Command::Wake => {}
                Command::Query(q) => {
                    let answer = q(self.host.dispatcher());
                    self.hand_to_writer(Batch::After(answer));
                }
                Command::Stats(reply) => self.hand_to_writer(Batch::Stats(Box::new(self.stats.clone()), reply)),
                Command::Attach { robot, tx, reply } => {
                    let id = self.next_session;
                    self.next_session += 1;
                    // Dropping the replaced sender ends the older session's stream (once the writer has
                    // delivered what was already addressed to it).
                    self.sessions.insert(robot, (id, tx));
                    // The session waits for this number; if it is gone, its own end detaches it.
                    let _ = reply.send(id);
                }
                Command::Detach { robot, session } => {
                    if self.sessions.get(&robot).is_some_and(|(id, _)| *id == session) {
                        self.sessions.remove(&robot);
                        self.inputs(vec![(Input::RobotDisconnected { robot }, None, Instant::now())]);
                    }
                }
                Command::SessionFull { robot, session } => {
                    if self.sessions.get(&robot).is_some_and(|(id, _)| *id == session) {
                        self.sessions.remove(&robot);
                    }
                }
                Command::Input { input, reply, sent } => {
                    // Group commit: every input already waiting joins this one, and one flushed write covers
                    // them all. Anything else ends the group.
                    let mut group = vec![(input, reply, sent)];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv().map(taken) {
                            Ok(Command::Input { input, reply, sent }) => group.push((input, reply, sent)),
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

    fn hand_to_writer(&mut self, batch: Batch) {
        if self.writer.send(batch).is_err() {
            // The writer only ends after the core, or when it panicked: nothing can be made durable any more.
            tracing::error!("the store writer has stopped; refusing everything from now on");
            self.failed.store(true, Ordering::Release);
        }
    }

    /// Runs the tick and starts the search the host says are due now.
    fn due(&mut self) {
        if self.failed.load(Ordering::Acquire) {
            return;
        }
        let now = self.clock.now();
        let started = Instant::now();
        if let Some(routed) = self.host.tick_if_due(now) {
            self.stats.tick.record(started.elapsed());
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

    /// Handles a group of inputs through the host, then hands them to the writer together.
    fn inputs(&mut self, group: Vec<(Input, Option<ReplyTx>, Instant)>) {
        if self.failed.load(Ordering::Acquire) {
            for (_, reply, _) in group {
                if let Some(r) = reply {
                    // A caller that gave up waiting needs no answer.
                    let _ = r.send(Err(Error::Stopped));
                }
            }
            return;
        }
        self.stats.group.record_us(group.len() as u64);
        let mut handled = Vec::with_capacity(group.len());
        for (input, reply, sent) in group {
            let started = Instant::now();
            self.stats.queued.record(started.saturating_duration_since(sent));
            let kind = stats::kind(&input);
            let now = self.clock.now();
            let routed = self.host.handle(now, input);
            if kind == "proposal" && matches!(routed.reply, Some(Ok(_))) {
                self.stats.proposals_applied += 1;
            }
            self.stats.alerts += routed.alerts.len() as u64;
            handled.push((routed, reply));
            self.stats.handle.entry(kind).or_default().record(started.elapsed());
        }
        self.commit(handled);
    }

    /// Hands handled inputs to the writer, with the sessions their robot messages go to.
    fn commit(&mut self, handled: Vec<(Routed, Option<ReplyTx>)>) {
        let batch = handled
            .into_iter()
            .map(|(routed, reply)| {
                let to = routed
                    .to_robots
                    .iter()
                    .filter_map(|(robot, _)| self.sessions.get(robot).map(|(id, tx)| (robot.clone(), *id, tx.clone())))
                    .collect();
                Handled { routed, reply, to }
            })
            .collect();
        self.hand_to_writer(Batch::Commit(batch));
    }
}

/// The writer thread: makes the records of every batch durable (all batches waiting at once in one flushed
/// write), and only then answers callers, sends to robots and notifies watchers, in the order the core handled
/// the inputs. The core meanwhile handles what came next, so a slow flush delays answers but never the core.
struct Writer {
    store: Arc<dyn Store>,
    orders: broadcast::Sender<Arc<Order>>,
    fleet: broadcast::Sender<FleetNote>,
    failed: Arc<AtomicBool>,
    /// Sessions found full while delivering go back to the core, which owns the session table.
    back: Queue,
    write: Histogram,
}

/// Batches written together at most.
const MAX_WRITE_BATCHES: usize = 256;

impl Writer {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Batch>) {
        while let Ok(first) = rx.recv() {
            let mut batches = vec![first];
            while batches.len() < MAX_WRITE_BATCHES {
                match rx.try_recv() {
                    Ok(b) => batches.push(b),
                    Err(_) => break,
                }
            }
            let written = self.write(&batches);
            for b in batches {
                match b {
                    Batch::Commit(handled) => {
                        for h in handled {
                            match &written {
                                Ok(()) => self.deliver(h),
                                Err(why) => {
                                    if let Some(r) = h.reply {
                                        // A caller that gave up waiting needs no answer.
                                        let _ = r.send(Err(Error::Store(why.clone())));
                                    }
                                }
                            }
                        }
                    }
                    Batch::After(f) => f(),
                    Batch::Stats(mut st, reply) => {
                        st.write = self.write.clone();
                        let _ = reply.send(*st);
                    }
                }
            }
        }
    }

    /// Writes the records of every commit in `batches` in one flushed batch. After a failure nothing is written
    /// again: memory may be ahead of disk, so the process must restart from disk (fail-stop).
    fn write(&mut self, batches: &[Batch]) -> Result<(), String> {
        if self.failed.load(Ordering::Acquire) {
            return Err("an earlier store write failed; the dispatcher must restart".into());
        }
        let records: Vec<_> = batches
            .iter()
            .flat_map(|b| match b {
                Batch::Commit(handled) => handled.iter().flat_map(|h| h.routed.records.iter().cloned()).collect(),
                _ => Vec::new(),
            })
            .collect();
        let started = Instant::now();
        let written = self.store.write(&records);
        if !records.is_empty() {
            self.write.record(started.elapsed());
        }
        written.map_err(|e| {
            tracing::error!("store write failed, stopping the core: {e}");
            self.failed.store(true, Ordering::Release);
            // Wake the core so it ends its sessions now.
            let _ = self.back.send(Command::Wake);
            match e {
                Error::Store(m) => m,
                other => other.to_string(),
            }
        })
    }

    /// Answers, sends to robots and notifies watchers; the records are already on disk.
    fn deliver(&mut self, h: Handled) {
        let Handled { routed, reply, to } = h;
        if let Some(tx) = reply {
            let answer = routed
                .reply
                .unwrap_or_else(|| Err(CoreError::precondition("the core gave no answer")))
                .map_err(Error::from);
            // A caller that gave up waiting needs no answer.
            let _ = tx.send(answer);
        }
        for (robot, msg) in routed.to_robots {
            let Some((_, session, tx)) = to.iter().find(|(r, ..)| *r == robot) else {
                continue;
            };
            // A robot that cannot keep up loses its session; it reconnects and resynchronises.
            if tx.try_send(Ok(convert::to_robot_to_wire(&msg))).is_err() {
                tracing::warn!(%robot, "session queue full or closed; dropping the session");
                let _ = self.back.send(Command::SessionFull { robot, session: *session });
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
            let _ = self.fleet.send(FleetNote::Alert { id: a.id, robot: a.robot, message: a.message });
        }
    }
}
