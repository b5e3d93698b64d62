//! The host of the core: what every owner of a [`Dispatcher`] does around `handle`, written once so that the
//! server's core thread and the simulator's lockstep driver cannot drift apart. It owns the dispatcher and
//! decides, as data, where each output goes ([`Routed`]: records to write first, then the reply, messages to
//! robots and notes for watchers), under which key a store files each record ([`RecordKey`]), when the
//! dispatcher ticks (`Config::tick_every_s`) and when a background search for better plans starts and what
//! happens to its answer (`Config::improve_every_s`, one search at a time, only when plans changed).
//!
//! The owners keep only what is theirs: the server writes records to sled, sends messages into gRPC sessions
//! and runs the search on a thread with a wall-time budget; the simulator keeps records in a map, queues
//! messages on simulated links and runs the search inline with an iteration budget.
//!
//! **Architecture Invariant:** the host reads no clock: `now` comes in with every call, like the core's.

use crate::dispatcher::{Dispatcher, Input, Output, Record, Reply};
use crate::mission::ToRobot;
use crate::order::Order;
use crate::planner::improve::{PlanSnapshot, Proposal};
use crate::robot::Robot;
use crate::{CoreError, OrderId, RobotId, ShopId, Timestamp};

/// The key a store files a record under: one record per entity, the latest wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    Meta,
    Learned,
    Alerts,
    Shop(ShopId),
    Robot(RobotId),
    Order(OrderId),
}

impl RecordKey {
    pub fn of(r: &Record) -> Self {
        match r {
            Record::Meta(_) => Self::Meta,
            Record::Learned(_) => Self::Learned,
            Record::Alerts(_) => Self::Alerts,
            Record::Shop(s) => Self::Shop(s.id.clone()),
            Record::Robot(r) => Self::Robot(r.id.clone()),
            Record::Order(o) => Self::Order(o.id.clone()),
        }
    }

    /// The key as a store spells it (`o/<order>`, `r/<robot>`, `s/<shop>`, `meta`, `learned`, `alerts`).
    pub fn storage_key(&self) -> String {
        match self {
            Self::Meta => "meta".into(),
            Self::Learned => "learned".into(),
            Self::Alerts => "alerts".into(),
            Self::Shop(id) => format!("s/{id}"),
            Self::Robot(id) => format!("r/{id}"),
            Self::Order(id) => format!("o/{id}"),
        }
    }
}

/// Something an operator should see.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: u64,
    pub robot: Option<RobotId>,
    pub message: String,
}

/// One input's outputs, sorted by where they go. The owner writes `records` durably before it acts on
/// anything else, then answers with `reply`, sends `to_robots` in order, and notifies watchers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routed {
    pub records: Vec<(RecordKey, Record)>,
    pub reply: Option<Result<Reply, CoreError>>,
    pub to_robots: Vec<(RobotId, ToRobot)>,
    pub orders: Vec<Order>,
    pub robots: Vec<Robot>,
    pub alerts: Vec<Alert>,
}

impl Routed {
    pub fn from_outputs(outputs: Vec<Output>) -> Self {
        let mut r = Self::default();
        for o in outputs {
            match o {
                Output::Persist(rec) => r.records.push((RecordKey::of(&rec), rec)),
                // The core gives at most one reply per input.
                Output::Reply(x) => r.reply = Some(x),
                Output::Send { robot, msg } => r.to_robots.push((robot, msg)),
                Output::OrderChanged(o) => r.orders.push(*o),
                Output::RobotChanged(x) => r.robots.push(*x),
                Output::Alert { id, robot, message } => r.alerts.push(Alert { id, robot, message }),
            }
        }
        r
    }
}

/// What became of an improver's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Improvement {
    /// The search found nothing worth proposing.
    NothingFound,
    /// Applied: the plans changed, saving this much planned travel.
    Applied { robots: usize, saved_s: f64, routed: Routed },
    /// The core refused it (stale or unsafe): nothing changed, and the next search may start from the same
    /// plans version, since what made it stale may have changed nothing the version counts.
    Refused { why: CoreError, routed: Routed },
}

/// Pacing of the background search: at most one at a time, at most one start per `Config::improve_every_s`,
/// and only when plans changed since the last search whose answer was not refused.
#[derive(Debug, Clone, Default)]
struct Pacer {
    enabled: bool,
    busy: bool,
    last_start: Option<Timestamp>,
    searched_version: Option<u64>,
}

/// The one owner of a dispatcher, for whoever runs it. See the module docs.
#[derive(Debug)]
pub struct Host {
    d: Dispatcher,
    next_tick: Option<Timestamp>,
    improver: Pacer,
}

impl Host {
    /// Hosts `d`; `improve` turns the background search on (the owner must then run the searches it hands out).
    /// Searches are handed out only while the dispatcher's policy improves plans (it can change at run time).
    pub fn new(d: Dispatcher, improve: bool) -> Self {
        let enabled = improve && d.config().improve_every_s > 0.0;
        Self { d, next_tick: None, improver: Pacer { enabled, ..Pacer::default() } }
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        &self.d
    }

    /// Replaces the dispatcher (a restart from the store). The pacing starts over: a search running for the
    /// old one will answer about plans the new one may not have, and is refused like any stale proposal.
    pub fn replace(&mut self, d: Dispatcher) {
        self.d = d;
        self.next_tick = None;
        self.improver.searched_version = None;
    }

    /// Runs one input.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Routed {
        Routed::from_outputs(self.d.handle(now, input))
    }

    /// When the next tick is due (now, before the first one).
    pub fn next_tick_at(&self, now: Timestamp) -> Timestamp {
        self.next_tick.unwrap_or(now)
    }

    /// Ticks the dispatcher if a tick is due at `now`. Ticks keep their cadence from the first one; one that
    /// came late is not made up for with a burst.
    pub fn tick_if_due(&mut self, now: Timestamp) -> Option<Routed> {
        let due = self.next_tick_at(now);
        if now < due {
            return None;
        }
        let every_ms = ((self.d.config().tick_every_s * 1_000.0).round() as u64).max(1);
        let mut next = due.0 + every_ms;
        if next <= now.0 {
            next = now.0 + every_ms - (now.0 - due.0) % every_ms;
        }
        self.next_tick = Some(Timestamp(next));
        Some(self.handle(now, Input::Tick))
    }

    /// A plan snapshot to search, when a search should start now; the owner runs it and hands the answer to
    /// [`Self::improved`].
    pub fn improvement_due(&mut self, now: Timestamp) -> Option<PlanSnapshot> {
        let every_ms = (self.d.config().improve_every_s * 1_000.0).round() as u64;
        let p = &mut self.improver;
        let version = self.d.plans_version();
        if !p.enabled
            || !self.d.config().policy.improves()
            || p.busy
            || p.searched_version == Some(version)
            || p.last_start.is_some_and(|t| now.0 < t.0.saturating_add(every_ms))
        {
            return None;
        }
        p.busy = true;
        p.last_start = Some(now);
        p.searched_version = Some(version);
        Some(self.d.plan_snapshot(now))
    }

    /// A search handed out by [`Self::improvement_due`] ended. Its proposal goes through the core like any
    /// input: checked against the plans as they are now and applied whole or refused whole.
    pub fn improved(&mut self, now: Timestamp, found: Option<Proposal>) -> Improvement {
        self.improver.busy = false;
        let Some(p) = found else {
            return Improvement::NothingFound;
        };
        let (robots, saved_s) = (p.plans.len(), p.travel_before_s - p.travel_after_s);
        let mut routed = self.handle(now, Input::ProposePlans(Box::new(p)));
        match routed.reply.take() {
            Some(Ok(_)) => Improvement::Applied { robots, saved_s, routed },
            Some(Err(why)) => {
                self.improver.searched_version = None;
                Improvement::Refused { why, routed }
            }
            None => Improvement::Refused { why: CoreError::precondition("the core gave no answer"), routed },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::Config;
    use crate::map::tests::grid;

    fn host(config: Config) -> Host {
        Host::new(Dispatcher::new(grid(), config), true)
    }

    #[test]
    fn ticks_follow_the_configured_cadence_without_bursts() {
        let mut h = host(Config { tick_every_s: 1.0, ..Config::default() });
        let t = |ms: u64| Timestamp(1_000_000 + ms);
        assert!(h.tick_if_due(t(0)).is_some(), "the first call ticks");
        assert!(h.tick_if_due(t(999)).is_none());
        assert!(h.tick_if_due(t(1_000)).is_some());
        // Three and a half periods late: one tick, then back on the grid.
        assert!(h.tick_if_due(t(4_500)).is_some());
        assert!(h.tick_if_due(t(4_900)).is_none());
        assert_eq!(h.next_tick_at(t(4_900)), t(5_000));
    }

    #[test]
    fn one_search_at_a_time_and_only_when_plans_changed() {
        let mut h = host(Config { improve_every_s: 2.0, ..Config::default() });
        let t = |ms: u64| Timestamp(1_000_000 + ms);
        assert!(h.improvement_due(t(0)).is_some());
        assert!(h.improvement_due(t(5_000)).is_none(), "one is running");
        assert_eq!(h.improved(t(5_000), None), Improvement::NothingFound);
        assert!(h.improvement_due(t(10_000)).is_none(), "plans did not change");
        // A robot registered and said hello: the set of available robots changed.
        let r = RobotId::parse("r1").expect("id");
        let depot = crate::LatLon::new(43.73, 7.42).expect("valid");
        h.handle(t(10_000), Input::RegisterRobot { id: r.clone(), name: "r".into(), depot });
        h.handle(t(10_000), Input::RobotDisconnected { robot: r });
        assert!(h.improvement_due(t(10_500)).is_some(), "plans changed and the interval passed");
    }

    #[test]
    fn a_refused_proposal_lets_the_next_search_start_from_the_same_plans() {
        let mut h = host(Config { improve_every_s: 1.0, ..Config::default() });
        let t = |ms: u64| Timestamp(1_000_000 + ms);
        let snap = h.improvement_due(t(0)).expect("due");
        let bogus = Proposal {
            taken_at: snap.taken_at,
            plans: vec![crate::planner::improve::ProposedPlan {
                robot: RobotId::parse("ghost").expect("id"),
                stops: vec![],
            }],
            travel_before_s: 10.0,
            travel_after_s: 5.0,
            iterations: 1,
        };
        assert!(matches!(h.improved(t(100), Some(bogus)), Improvement::Refused { .. }));
        assert!(h.improvement_due(t(1_000)).is_some());
    }

    #[test]
    fn record_keys_are_the_stores_keys() {
        let id = OrderId::parse("o-7").expect("id");
        assert_eq!(RecordKey::Order(id).storage_key(), "o/o-7");
        assert_eq!(RecordKey::Meta.storage_key(), "meta");
    }
}
