//! The dispatcher state machine. One owner calls [`Dispatcher::handle`] with the current time and one
//! [`Input`]; it answers with [`Output`]s: at most one reply, records to persist (the owner writes them before
//! it acts on anything else), mission updates for robots, and change notifications for watchers.
//!
//! Phases of one order: validate and snap -> cheapest feasible insertion (or a refusal with the reason) ->
//! release the robot's next stop step by step -> follow the robot's step results to a terminal state.
//!
//! The code follows those phases: [`api`] (inputs, outputs, records, config), [`orders`] (shop requests),
//! [`planning`] (insertion, refusals, improver proposals), [`release`] (missions step by step), [`robots`] (robot
//! reports), [`tick`] (the periodic phases), [`lateness`] (plans watched against the clock) and [`ops`] (operator
//! commands).

mod api;
mod areas;
mod lateness;
mod mapswap;
mod ops;
mod orders;
mod planning;
mod positioning;
mod reassign;
mod release;
mod robots;
mod tick;
mod traffic;
mod watchdogs;

pub use api::*;
pub use mapswap::{MapSwap, NewMap};
pub use positioning::IdleConfig;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::learn::Learned;
use crate::map::{MapGraph, Profile};
use crate::mission::{FromRobot, MissionUpdate, StepAction};
use crate::order::{Order, OrderStatus};
use crate::planner::insertion::{Task, TravelTable};
use crate::robot::{PlanStop, Robot, RobotModel, StopKind};
use crate::traffic::{Layout, Traffic};
use crate::{CoreError, NodeId, OrderId, RobotId, ShopId, Timestamp};

/// A robot the planner may give work: connected, not paused by an operator, not out of service.
fn available(r: &Robot) -> bool {
    r.unavailable().is_none()
}

/// Moves an order to `to`. The state machine refuses a transition only when a robot's report does not fit the
/// order's state (a step result for an order cancelled meanwhile, say): the order stays as it is and operators
/// get an alert, because a report the core cannot place means the robot and the dispatcher disagree.
fn advance(o: &mut Order, to: OrderStatus, now: Timestamp, out: &mut Out) {
    if let Err(e) = o.transition(to, now) {
        out.other.push(Output::Alert {
            id: 0,
            robot: o.robot.clone(),
            message: format!("a robot report was not applied: {e}"),
        });
    }
}

/// The dispatcher core. See the module docs.
#[derive(Debug)]
pub struct Dispatcher {
    /// Shared with plan snapshots being improved elsewhere; a closure copies it if a snapshot holds it.
    map: Arc<MapGraph>,
    config: Config,
    meta: Meta,
    shops: BTreeMap<ShopId, Shop>,
    robots: BTreeMap<RobotId, Robot>,
    orders: BTreeMap<OrderId, Order>,
    /// (shop, idempotency key) -> order.
    keys: BTreeMap<(ShopId, String), OrderId>,
    /// Tracking-link hash -> order.
    links: FxHashMap<String, OrderId>,
    /// Each shop's orders not in a terminal state, for its open-order limit. Kept from the orders each input
    /// changed (every change to an order is persisted, so every one is in `Out::orders`).
    open: BTreeMap<ShopId, BTreeSet<OrderId>>,
    /// Per robot, the stop each released drive step leads to.
    drive_targets: BTreeMap<(RobotId, u32), (OrderId, StopKind)>,
    /// Since when each offline robot has been gone (in memory: after a restart every robot gets a full grace
    /// period from the first tick), and the robots whose absence was already acted on.
    offline_since: BTreeMap<RobotId, Timestamp>,
    offline_handled: BTreeSet<RobotId>,
    table: TravelTable,
    /// Each robot's plan legs for the insertion lower bound, kept between orders (see [`Legs`]).
    legs: FxHashMap<RobotId, Legs>,
    /// The planner's view of each robot's stops, kept between insertions (building one looks up the order of
    /// every stop). See [`PlanView`].
    views: RefCell<FxHashMap<RobotId, PlanView>>,
    /// Counts changes to any plan or to the set of available robots, so an improver knows when a new
    /// snapshot is worth taking.
    plans_version: u64,
    /// The map's narrow ways and crossings, and who holds and waits for what ([`crate::traffic`]).
    layout: Arc<Layout>,
    traffic: Traffic,
    /// Per waiting robot, the steps its claim would release.
    claimed_steps: BTreeMap<RobotId, Vec<u32>>,
    /// Robots in a deadlock operators were told has no way round (told once).
    deadlock_alerted: BTreeSet<RobotId>,
    /// When each long-waiting robot was last tried for a way round.
    reroute_tried: BTreeMap<RobotId, Timestamp>,
    /// Per robot that gave way in a deadlock: when, and every resource it was routed around since (a second
    /// deadlock soon after routes it around all of them, so that it cannot swing between two ways each blocked
    /// by the same robot).
    deadlock_avoided: BTreeMap<RobotId, (Timestamp, Vec<crate::traffic::Resource>)>,
    /// Per robot backing off out of a deadlock: the seq of the last step of its drive aside. That drive is
    /// claimed on its own, not grouped with the drive on from there (which needs what it gave way for).
    aside_end: BTreeMap<RobotId, u32>,
    /// Sidewalks reported blocked and tried again instead of closed (the way round was much longer), with
    /// when, by whom and from which end: a second report within [`Config::blocked_closure_s`], by any robot,
    /// closes it, unless it is the other end's robot meeting the first head-on ([`Dispatcher::on_blocked`]).
    blocked_tried: BTreeMap<(NodeId, NodeId), (Timestamp, RobotId, NodeId)>,
    /// What the fleet taught about time ([`crate::learn`]); the travel-time table runs on its drive factor.
    learned: Learned,
    /// How far plans stretch the time to a drop-off ([`Dispatcher::plan_by`]), from `learned`; kept up to date
    /// where outcomes are learned so that an insertion does not sort them.
    plan_stretch: f64,
    /// Observations not yet persisted (written every [`LEARNED_PERSIST_EVERY`]).
    learned_unsaved: u32,
    /// Per robot driving to a stop: when that drive was released and its free-flow time (in memory: a leg
    /// under way at a restart teaches nothing).
    leg_clock: BTreeMap<RobotId, (Timestamp, f64)>,
    /// Where the lateness watch goes on from ([`Config::late_check_every_s`]).
    late_cursor: Option<RobotId>,
    /// Per shop, when its recent orders were placed or refused (in memory; rebuilt from the store's orders at a
    /// restart), for idle positioning ([`positioning`]).
    demand: BTreeMap<ShopId, std::collections::VecDeque<Timestamp>>,
    /// When idle robots were last shared out, and how many drives that has sent so far.
    idle_positioned_at: Option<Timestamp>,
    idle_moves: u64,
    /// What the watchdogs remember ([`watchdogs`]).
    watch: watchdogs::Watch,
    /// Alerts not yet acknowledged, by id.
    alerts: BTreeMap<u64, OpenAlert>,
}

/// Learned observations are persisted in batches of this many: a crash forgets at most this many legs and
/// outcomes, and the store is not written for each.
pub const LEARNED_PERSIST_EVERY: u32 = 10;

/// A robot's stops as planner tasks, with what they were built from. Tasks read the robot's plan and load and,
/// of each order, its ready time, deliver-by time, parcel and drop-off ETA. The first two are compared on every
/// use; of the order's fields only the ETA ever changes, and only when the robot's plan is installed, which
/// drops the view.
#[derive(Debug)]
struct PlanView {
    stops: Vec<PlanStop>,
    on_board: Vec<OrderId>,
    tasks: Vec<Task>,
    load: (u8, u32),
}

/// A robot's plan legs as the insertion lower bound reads them: from its node to its first stop and between
/// consecutive stops, infinite where no route serves one. Looking them up for 1,000 robots on every order was a
/// fifth of the core's time under load (`trundle-bench load`, docs/benchmarks.md); they change only when the
/// robot moves on, its plan or model changes (checked on every use) or a closure changes the map (dropped with
/// the travel-time table).
#[derive(Debug)]
struct Legs {
    start: NodeId,
    nodes: Vec<NodeId>,
    profile: Profile,
    secs: Vec<f64>,
    /// Free compartments on each leg ([`insertion::plan_room`]). Depends on what is on board and on the
    /// stops' orders too, so a robot's entry is dropped whenever the robot changes (every change is persisted).
    room: Vec<u8>,
}

/// Collects outputs; persists are de-duplicated per entity and emitted first.
#[derive(Default)]
struct Out {
    shops: BTreeSet<ShopId>,
    orders: BTreeSet<OrderId>,
    robots: BTreeSet<RobotId>,
    meta: bool,
    learned: bool,
    alerts: bool,
    other: Vec<Output>,
    reply: Option<Result<Reply, CoreError>>,
}

impl Dispatcher {
    /// A dispatcher on `map`. Prepares the map's contraction hierarchy for the default robot model unless it
    /// already has one for that profile.
    pub fn new(mut map: MapGraph, config: Config) -> Self {
        Self::prepare_map(&mut map, &config);
        let layout = Arc::new(Layout::build(&map, &config.traffic));
        let meta = Meta { map_fingerprint: Some(map.fingerprint()), ..Meta::default() };
        let mut d = Self {
            layout,
            traffic: Traffic::default(),
            claimed_steps: BTreeMap::new(),
            deadlock_alerted: BTreeSet::new(),
            reroute_tried: BTreeMap::new(),
            deadlock_avoided: BTreeMap::new(),
            blocked_tried: BTreeMap::new(),
            aside_end: BTreeMap::new(),
            learned: Learned::default(),
            plan_stretch: 1.0,
            learned_unsaved: 0,
            leg_clock: BTreeMap::new(),
            late_cursor: None,
            demand: BTreeMap::new(),
            idle_positioned_at: None,
            idle_moves: 0,
            watch: watchdogs::Watch::default(),
            alerts: BTreeMap::new(),
            map: Arc::new(map),
            config,
            meta,
            shops: BTreeMap::new(),
            robots: BTreeMap::new(),
            orders: BTreeMap::new(),
            keys: BTreeMap::new(),
            links: FxHashMap::default(),
            open: BTreeMap::new(),
            drive_targets: BTreeMap::new(),
            offline_since: BTreeMap::new(),
            offline_handled: BTreeSet::new(),
            table: TravelTable::default(),
            legs: FxHashMap::default(),
            views: RefCell::default(),
            plans_version: 0,
        };
        d.plan_stretch = d.stretch();
        d
    }

    /// Whether stored `records` may be read back on `map`: their node ids must mean the same places. A store
    /// that names no map (written before maps had fingerprints, or holding nothing yet) fits any; one written
    /// on another map is refused, naming both fingerprints, since every order, robot and closure in it would
    /// point at the wrong places.
    pub fn check_map(records: &[Record], map: &MapGraph) -> Result<(), CoreError> {
        let stored = records.iter().find_map(|r| match r {
            Record::Meta(m) => m.map_fingerprint.as_deref(),
            _ => None,
        });
        let here = map.fingerprint();
        match stored {
            Some(fp) if fp != here => Err(CoreError::FailedPrecondition(format!(
                "the store was written on another map (fingerprint {fp}; this map is {here}): its orders, robots \
                 and closures name nodes of that map. Start with the map the store was written on"
            ))),
            _ => Ok(()),
        }
    }

    /// Rebuilds a dispatcher from stored records. Every robot starts offline until its session says hello.
    /// The records must fit `map` ([`Self::check_map`]); the fingerprint is then this map's.
    pub fn restore(map: MapGraph, config: Config, records: Vec<Record>) -> Self {
        Self::new(map, config).with_records(records)
    }

    /// A new dispatcher ([`Dispatcher::new`]) given its store's records: what [`Dispatcher::restore`] does in
    /// two steps, so that a standby can prepare the map while another dispatcher still leads, and read the
    /// records only once it takes over.
    pub fn with_records(self, records: Vec<Record>) -> Self {
        let mut d = self;
        for r in records {
            match r {
                Record::Order(o) => {
                    d.keys.insert((o.shop.clone(), o.idempotency_key.clone()), o.id.clone());
                    if let Some(h) = &o.link_hash {
                        d.links.insert(h.clone(), o.id.clone());
                    }
                    if !o.status.is_terminal() {
                        d.open.entry(o.shop.clone()).or_default().insert(o.id.clone());
                    }
                    d.demand.entry(o.shop.clone()).or_default().push_back(o.created_at);
                    d.orders.insert(o.id.clone(), *o);
                }
                // A robot handed over to another area is that area's now; its record is the trace of where it went.
                Record::Robot(r) if r.handed_to.is_some() => {}
                Record::Robot(mut r) => {
                    r.online = false;
                    d.robots.insert(r.id.clone(), *r);
                }
                Record::Shop(s) => {
                    d.shops.insert(s.id.clone(), s);
                }
                Record::Meta(m) => {
                    let fingerprint = d.meta.map_fingerprint.take();
                    d.meta = m;
                    d.meta.map_fingerprint = fingerprint;
                }
                Record::Learned(l) => {
                    d.learned = l;
                    d.plan_stretch = d.stretch();
                }
                Record::Alerts(v) => d.alerts = v.into_iter().map(|a| (a.id, a)).collect(),
            }
        }
        // Demand is counted back from the newest order: the last window's placings, oldest first.
        let newest = d.demand.values().flatten().max().copied();
        let window = d.config.idle.demand_window_s;
        for q in d.demand.values_mut() {
            q.make_contiguous().sort();
            if let Some(newest) = newest {
                q.retain(|t| newest.secs_since(*t) <= window);
            }
        }
        d.demand.retain(|_, q| !q.is_empty());
        if let Some(p) = d.meta.policy {
            d.config.policy = p;
        }
        for &(a, b) in &d.meta.closed_edges {
            Arc::make_mut(&mut d.map).close_edge(a, b);
        }
        // Drive targets follow from the plans: a released drive leads to the first stop whose drive is released
        // and whose action is not yet finished.
        for r in d.robots.values() {
            for s in &r.mission.base {
                if let StepAction::Drive { nodes, .. } = &s.action
                    && let Some(stop) = r.plan.iter().find(|p| p.drive_released && Some(&p.node) == nodes.last())
                {
                    d.drive_targets.insert((r.id.clone(), s.seq), (stop.order.clone(), stop.kind));
                }
            }
        }
        d.restore_traffic();
        d
    }

    pub fn map(&self) -> &MapGraph {
        &self.map
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the fleet taught the dispatcher about time.
    pub fn learned(&self) -> &Learned {
        &self.learned
    }

    /// The factor travel times are planned with now (free flow is 1).
    pub fn travel_factor(&self) -> f64 {
        self.table.factor()
    }

    /// Plans with the learned drive factor of `now`'s hour. A change under half a percent is not worth
    /// dropping the plan legs kept for the insertion bound.
    fn follow_learned_factor(&mut self, now: Timestamp) {
        let f = self.learned.drive_factor(now);
        if (f / self.table.factor() - 1.0).abs() > 0.005 {
            self.table.set_factor(f);
            self.legs.clear();
            self.plans_version += 1;
        }
    }

    /// Counts one learned observation and persists what was learned every [`LEARNED_PERSIST_EVERY`].
    fn learned_one(&mut self, out: &mut Out) {
        self.learned_unsaved += 1;
        if self.learned_unsaved >= LEARNED_PERSIST_EVERY {
            self.learned_unsaved = 0;
            out.learned = true;
        }
    }

    /// What robot `id` holds of the narrow ways, crossings and stop spots.
    pub fn traffic_holds(&self, id: &RobotId) -> Vec<crate::traffic::Resource> {
        self.traffic.holds(id).iter().map(|h| h.resource).collect()
    }

    /// The map's narrow ways and crossings, and what traffic management did so far.
    pub fn traffic_stats(&self) -> (u32, u32, crate::traffic::TrafficStats) {
        let (narrow, crossings) = self.layout.counts();
        (narrow, crossings, self.traffic.stats)
    }

    pub fn order(&self, id: &OrderId) -> Option<&Order> {
        self.orders.get(id)
    }

    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.values()
    }

    pub fn robot(&self, id: &RobotId) -> Option<&Robot> {
        self.robots.get(id)
    }

    pub fn robots(&self) -> impl Iterator<Item = &Robot> {
        self.robots.values()
    }

    pub fn shop(&self, id: &ShopId) -> Option<&Shop> {
        self.shops.get(id)
    }

    pub fn shops(&self) -> impl Iterator<Item = &Shop> {
        self.shops.values()
    }

    /// The order a customer's tracking link names, by the SHA-256 (hex) of the link's secret.
    pub fn order_by_link(&self, link_hash: &str) -> Option<&Order> {
        self.links.get(link_hash).and_then(|id| self.orders.get(id))
    }

    /// An order as its shop may see it: another shop's order is reported as not found, so existence leaks
    /// nothing.
    pub fn order_for_shop(&self, shop: &ShopId, id: &OrderId) -> Result<&Order, CoreError> {
        self.orders
            .get(id)
            .filter(|o| &o.shop == shop)
            .ok_or_else(|| CoreError::not_found(format!("order {id} not found")))
    }

    /// The current mission update of a robot, as it would be sent now.
    pub fn mission_update(&self, id: &RobotId) -> Option<MissionUpdate> {
        self.robots.get(id).map(|r| self.build_update(r))
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        let mut out = Out::default();
        self.follow_learned_factor(now);
        let reporting = match &input {
            Input::Robot { robot, msg: FromRobot::State(_) } => Some(robot.clone()),
            _ => None,
        };
        match input {
            Input::RegisterShop { id, name, pos } => {
                out.reply = Some(self.register_shop(id, name, pos, &mut out));
            }
            Input::RegisterRobot { id, name, depot } => {
                out.reply = Some(self.register_robot(id, name, depot, &mut out));
            }
            Input::HandOffRobot { robot, to_area } => {
                out.reply = Some(self.hand_off(now, &robot, &to_area, &mut out));
            }
            Input::AdoptRobot { robot } => {
                out.reply = Some(self.adopt(*robot, &mut out));
            }
            Input::Quote { shop, request } => {
                out.reply = Some(self.quote(now, &shop, &request).map(Reply::Quote));
            }
            Input::PlaceOrder { shop, idempotency_key, request, pin, link_hash } => {
                let placing = orders::Placing { shop, key: idempotency_key, req: request, pin, link_hash };
                out.reply = Some(self.place(now, placing, &mut out));
            }
            Input::NewTrackingLink { shop, order, link_hash } => {
                out.reply = Some(self.new_link(now, &shop, &order, link_hash, &mut out));
            }
            Input::CancelOrder { shop, order } => {
                out.reply = Some(self.cancel(now, &shop, &order, &mut out));
            }
            Input::MarkReady { shop, order } => {
                out.reply = Some(self.mark_ready(now, &shop, &order, &mut out));
            }
            Input::Robot { robot, msg } => self.robot_msg(now, &robot, msg, &mut out),
            Input::RobotDisconnected { robot } => {
                self.leg_clock.remove(&robot);
                if let Some(r) = self.robots.get_mut(&robot) {
                    r.online = false;
                    self.plans_version += 1;
                    out.other.push(Output::RobotChanged(Box::new(r.clone())));
                    self.offline_since.insert(robot, now);
                }
            }
            Input::CloseEdge { a, b } => {
                out.reply = Some(self.set_edge(a, b, true, &mut out));
            }
            Input::OpenEdge { a, b } => {
                out.reply = Some(self.set_edge(a, b, false, &mut out));
            }
            Input::PauseRobot { robot } | Input::ResumeRobot { robot } if !self.robots.contains_key(&robot) => {
                out.reply = Some(Err(CoreError::not_found(format!("robot {robot} not found"))));
            }
            Input::PauseRobot { robot } => {
                self.set_paused(&robot, true, &mut out);
                out.reply = Some(Ok(Reply::Done));
            }
            Input::ResumeRobot { robot } => {
                self.set_paused(&robot, false, &mut out);
                out.reply = Some(Ok(Reply::Done));
            }
            Input::SetShift { robot, end } => {
                out.reply = Some(match self.robots.get_mut(&robot) {
                    Some(r) => {
                        r.shift_end = end;
                        self.plans_version += 1;
                        out.robots.insert(robot.clone());
                        Ok(Reply::Robot(Box::new(r.clone())))
                    }
                    None => Err(CoreError::not_found(format!("robot {robot} not found"))),
                });
            }
            Input::SetPolicy { policy } => {
                self.config.policy = policy;
                self.meta.policy = Some(policy);
                self.plans_version += 1;
                out.meta = true;
                out.reply = Some(Ok(Reply::Done));
            }
            Input::AckAlert { id } => {
                out.reply = Some(match self.alerts.remove(&id) {
                    Some(_) => {
                        out.alerts = true;
                        Ok(Reply::Done)
                    }
                    None => Err(CoreError::not_found(format!("alert {id} is not open"))),
                });
            }
            Input::ReassignOrder { order, robot } => {
                out.reply = Some(self.reassign(now, &order, &robot, &mut out));
            }
            Input::LoadMap { map } => {
                out.reply = Some(self.load_map(now, map, &mut out));
            }
            Input::ProposePlans(p) => {
                out.reply = Some(self.apply_proposal(now, *p, &mut out));
            }
            Input::Tick => self.tick(now, &mut out),
        }
        let mut touched = out.robots.clone();
        touched.extend(reporting);
        self.traffic_after(now, &touched, &mut out);
        for id in &out.robots {
            self.legs.remove(id);
        }
        for id in &out.orders {
            if let Some(o) = self.orders.get(id) {
                let open = self.open.entry(o.shop.clone()).or_default();
                if o.status.is_terminal() {
                    open.remove(id);
                } else {
                    open.insert(id.clone());
                }
            }
        }
        self.raise_alerts(now, &mut out);
        self.finish(out)
    }

    /// Gives each alert raised by this input its id and keeps it open. An alert that says what an open one
    /// already says about the same robot is dropped: a condition that lasts (a robot with no open route, tried
    /// every tick) is one alert until an operator acknowledges it, not one a second.
    fn raise_alerts(&mut self, now: Timestamp, out: &mut Out) {
        let open = &self.alerts;
        out.other.retain(|o| match o {
            Output::Alert { id: 0, robot, message } => {
                !open.values().any(|a| a.robot == *robot && a.message == *message)
            }
            _ => true,
        });
        for o in &mut out.other {
            if let Output::Alert { id, robot, message } = o
                && *id == 0
            {
                self.meta.last_alert_id += 1;
                *id = self.meta.last_alert_id;
                self.alerts
                    .insert(*id, OpenAlert { id: *id, robot: robot.clone(), message: message.clone(), raised_at: now });
                out.meta = true;
                out.alerts = true;
            }
        }
        while self.alerts.len() > MAX_OPEN_ALERTS {
            self.alerts.pop_first();
        }
    }

    /// Alerts not yet acknowledged, oldest first.
    pub fn open_alerts(&self) -> impl Iterator<Item = &OpenAlert> + '_ {
        self.alerts.values()
    }

    fn finish(&self, out: Out) -> Vec<Output> {
        let mut v = Vec::new();
        if out.alerts {
            v.push(Output::Persist(Record::Alerts(self.alerts.values().cloned().collect())));
        }
        if out.meta {
            v.push(Output::Persist(Record::Meta(self.meta.clone())));
        }
        if out.learned {
            v.push(Output::Persist(Record::Learned(self.learned.clone())));
        }
        for id in &out.shops {
            if let Some(s) = self.shops.get(id) {
                v.push(Output::Persist(Record::Shop(s.clone())));
            }
        }
        for id in &out.robots {
            if let Some(r) = self.robots.get(id) {
                v.push(Output::Persist(Record::Robot(Box::new(r.clone()))));
            }
        }
        for id in &out.orders {
            if let Some(o) = self.orders.get(id) {
                v.push(Output::Persist(Record::Order(Box::new(o.clone()))));
            }
        }
        if let Some(reply) = out.reply {
            v.push(Output::Reply(reply));
        }
        for id in &out.orders {
            if let Some(o) = self.orders.get(id) {
                v.push(Output::OrderChanged(Box::new(o.clone())));
            }
        }
        v.extend(out.other);
        v
    }
}

#[cfg(test)]
mod tests;
