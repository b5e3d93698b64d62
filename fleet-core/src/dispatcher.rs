//! The dispatcher state machine. One owner calls [`Dispatcher::handle`] with the current time and one
//! [`Input`]; it answers with [`Output`]s: at most one reply, records to persist (the owner writes them before
//! it acts on anything else), mission updates for robots, and change notifications for watchers.
//!
//! Phases of one order: validate and snap -> cheapest feasible insertion (or a refusal with the reason) ->
//! release the robot's next stop step by step -> follow the robot's step results to a terminal state.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::map::{MapGraph, Profile};
use crate::mission::{
    ErrorLevel, FromRobot, InstantAction, MissionUpdate, RobotEvent, Step, StepAction, StepOutcome, ToRobot, pin_hash,
};
use crate::order::{DeliveryRequest, Order, OrderStatus, Place};
use crate::planner::improve::{PlanSnapshot, Proposal};
use crate::planner::insertion::{self, RobotPlan, Task, TravelTable};
use crate::robot::{MissionState, PlanStop, Robot, RobotModel, StopKind};
use crate::{CoreError, LatLon, NodeId, OrderId, RobotId, ShopId, Timestamp};

/// Tunables of the dispatcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// A coordinate farther than this from every walkable way is refused.
    pub max_snap_m: f64,
    pub pickup_service_s: f64,
    pub dropoff_service_s: f64,
    /// The latest accepted deliver-by time, counted from now.
    pub max_lead_s: f64,
    /// Open (non-terminal) orders one shop may have at once.
    pub max_open_orders_per_shop: usize,
    pub crossing_penalty_s: f64,
    /// A robot offline this long loses the orders it has not started loading (they go to other robots); one
    /// with parcels aboard is flagged to operators instead.
    pub offline_limit_s: f64,
    /// A sidewalk a robot reports blocked is closed (both ways) for this long, then reopens by itself.
    #[serde(default = "default_blocked_closure_s")]
    pub blocked_closure_s: f64,
    /// An idle robot whose battery is below this is sent to its depot to charge, up to `charge_to_pct`.
    #[serde(default = "default_charge_below_pct")]
    pub charge_below_pct: f64,
    #[serde(default = "default_charge_to_pct")]
    pub charge_to_pct: f64,
    /// How often the host ticks the core (re-plans waiting orders, acts on absences, reopens closures).
    #[serde(default = "default_tick_every_s")]
    pub tick_every_s: f64,
    /// At most one background search for better plans starts per this interval; 0 turns the search off.
    #[serde(default = "default_improve_every_s")]
    pub improve_every_s: f64,
}

fn default_tick_every_s() -> f64 {
    1.0
}
fn default_improve_every_s() -> f64 {
    2.0
}

fn default_charge_below_pct() -> f64 {
    40.0
}
fn default_charge_to_pct() -> f64 {
    95.0
}

fn default_blocked_closure_s() -> f64 {
    600.0
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_snap_m: 150.0,
            pickup_service_s: 60.0,
            dropoff_service_s: 60.0,
            max_lead_s: 7.0 * 24.0 * 3600.0,
            max_open_orders_per_shop: 1_000,
            crossing_penalty_s: 8.0,
            offline_limit_s: 120.0,
            blocked_closure_s: default_blocked_closure_s(),
            charge_below_pct: default_charge_below_pct(),
            charge_to_pct: default_charge_to_pct(),
            tick_every_s: default_tick_every_s(),
            improve_every_s: default_improve_every_s(),
        }
    }
}

/// A robot the planner may give work: connected, not paused by an operator, not out of service.
fn available(r: &Robot) -> bool {
    r.online && !r.paused && r.fault.is_none() && !r.charging
}

/// Moves an order to `to`. The state machine refuses a transition only when a robot's report does not fit the
/// order's state (a step result for an order cancelled meanwhile, say): the order stays as it is and operators
/// get an alert, because a report the core cannot place means the robot and the dispatcher disagree.
fn advance(o: &mut Order, to: OrderStatus, now: Timestamp, out: &mut Out) {
    if let Err(e) = o.transition(to, now) {
        out.other
            .push(Output::Alert { robot: o.robot.clone(), message: format!("a robot report was not applied: {e}") });
    }
}

/// Longest accepted idempotency key and shop or robot name, in bytes.
pub const MAX_KEY_LEN: usize = 128;
pub const MAX_NAME_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shop {
    pub id: ShopId,
    pub name: String,
    pub place: Place,
}

/// Dispatcher-wide persisted values.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Meta {
    pub next_order_seq: u64,
    pub closed_edges: Vec<(NodeId, NodeId)>,
    /// Closures made because a robot reported the way blocked, and when each reopens by itself.
    #[serde(default)]
    pub temp_closures: Vec<(NodeId, NodeId, Timestamp)>,
}

/// Something to write to the store. Records of one `handle` call are written together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Order(Box<Order>),
    Robot(Box<Robot>),
    Shop(Shop),
    Meta(Meta),
}

/// The answer to a quote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub feasible: bool,
    pub reason: Option<String>,
    pub robot: Option<RobotId>,
    pub eta_pickup: Option<Timestamp>,
    pub eta_dropoff: Option<Timestamp>,
    /// The latest the drop-off should happen if things go somewhat worse than planned (never past deliver-by).
    pub eta_latest: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    RegisterShop {
        id: ShopId,
        name: String,
        pos: LatLon,
    },
    RegisterRobot {
        id: RobotId,
        name: String,
        depot: LatLon,
    },
    Quote {
        shop: ShopId,
        request: DeliveryRequest,
    },
    PlaceOrder {
        shop: ShopId,
        idempotency_key: String,
        request: DeliveryRequest,
        /// The hand-over PIN; drawn by the caller so the core needs no random source.
        pin: String,
    },
    CancelOrder {
        shop: ShopId,
        order: OrderId,
    },
    MarkReady {
        shop: ShopId,
        order: OrderId,
    },
    /// A message from a robot's session (the session already proved it is this robot).
    Robot {
        robot: RobotId,
        msg: FromRobot,
    },
    RobotDisconnected {
        robot: RobotId,
    },
    CloseEdge {
        a: NodeId,
        b: NodeId,
    },
    OpenEdge {
        a: NodeId,
        b: NodeId,
    },
    PauseRobot {
        robot: RobotId,
    },
    ResumeRobot {
        robot: RobotId,
    },
    /// Sets or clears the time by which the robot must have finished every stop. Work already planned that
    /// would end later stays (it was promised); new work must fit.
    SetShift {
        robot: RobotId,
        end: Option<Timestamp>,
    },
    /// Better plans found by an improver from a [`PlanSnapshot`]; checked against the state at this moment and
    /// applied whole or refused (FAILED_PRECONDITION) whole. Never comes from the wire.
    ProposePlans(Box<Proposal>),
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Quote(Quote),
    Placed {
        order: Box<Order>,
        quote: Quote,
        /// The idempotency key was seen before with the same request: this is the original answer.
        replayed: bool,
    },
    Order(Box<Order>),
    Shop(Shop),
    Robot(Box<Robot>),
    Done,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Reply(Result<Reply, CoreError>),
    Persist(Record),
    Send {
        robot: RobotId,
        msg: ToRobot,
    },
    OrderChanged(Box<Order>),
    RobotChanged(Box<Robot>),
    /// Something an operator should see (a blocked edge, a robot error).
    Alert {
        robot: Option<RobotId>,
        message: String,
    },
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
    /// Per robot, the stop each released drive step leads to.
    drive_targets: BTreeMap<(RobotId, u32), (OrderId, StopKind)>,
    /// Since when each offline robot has been gone (in memory: after a restart every robot gets a full grace
    /// period from the first tick), and the robots whose absence was already acted on.
    offline_since: BTreeMap<RobotId, Timestamp>,
    offline_handled: BTreeSet<RobotId>,
    table: TravelTable,
    /// The planner's view of each robot's stops, kept between insertions (building one looks up the order of
    /// every stop). See [`PlanView`].
    views: RefCell<FxHashMap<RobotId, PlanView>>,
    /// Counts changes to any plan or to the set of available robots, so an improver knows when a new
    /// snapshot is worth taking.
    plans_version: u64,
}

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

/// Collects outputs; persists are de-duplicated per entity and emitted first.
#[derive(Default)]
struct Out {
    shops: BTreeSet<ShopId>,
    orders: BTreeSet<OrderId>,
    robots: BTreeSet<RobotId>,
    meta: bool,
    other: Vec<Output>,
    reply: Option<Result<Reply, CoreError>>,
}

impl Dispatcher {
    /// A dispatcher on `map`. Prepares the map's contraction hierarchy for the default robot model unless it
    /// already has one for that profile.
    pub fn new(mut map: MapGraph, config: Config) -> Self {
        let profile =
            Profile { speed_mps: RobotModel::default().max_speed_mps, crossing_penalty_s: config.crossing_penalty_s };
        if map.hierarchy().is_none_or(|(_, p)| p != profile) {
            map.prepare(profile);
        }
        Self {
            map: Arc::new(map),
            config,
            meta: Meta::default(),
            shops: BTreeMap::new(),
            robots: BTreeMap::new(),
            orders: BTreeMap::new(),
            keys: BTreeMap::new(),
            drive_targets: BTreeMap::new(),
            offline_since: BTreeMap::new(),
            offline_handled: BTreeSet::new(),
            table: TravelTable::default(),
            views: RefCell::default(),
            plans_version: 0,
        }
    }

    /// Rebuilds a dispatcher from stored records. Every robot starts offline until its session says hello.
    pub fn restore(map: MapGraph, config: Config, records: Vec<Record>) -> Self {
        let mut d = Self::new(map, config);
        for r in records {
            match r {
                Record::Order(o) => {
                    d.keys.insert((o.shop.clone(), o.idempotency_key.clone()), o.id.clone());
                    d.orders.insert(o.id.clone(), *o);
                }
                Record::Robot(mut r) => {
                    r.online = false;
                    d.robots.insert(r.id.clone(), *r);
                }
                Record::Shop(s) => {
                    d.shops.insert(s.id.clone(), s);
                }
                Record::Meta(m) => d.meta = m,
            }
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
        d
    }

    pub fn map(&self) -> &MapGraph {
        &self.map
    }
    pub fn config(&self) -> &Config {
        &self.config
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
        match input {
            Input::RegisterShop { id, name, pos } => {
                out.reply = Some(self.register_shop(id, name, pos, &mut out));
            }
            Input::RegisterRobot { id, name, depot } => {
                out.reply = Some(self.register_robot(id, name, depot, &mut out));
            }
            Input::Quote { shop, request } => {
                out.reply = Some(self.quote(now, &shop, &request).map(Reply::Quote));
            }
            Input::PlaceOrder { shop, idempotency_key, request, pin } => {
                out.reply = Some(self.place(now, shop, idempotency_key, request, pin, &mut out));
            }
            Input::CancelOrder { shop, order } => {
                out.reply = Some(self.cancel(now, &shop, &order, &mut out));
            }
            Input::MarkReady { shop, order } => {
                out.reply = Some(self.mark_ready(now, &shop, &order, &mut out));
            }
            Input::Robot { robot, msg } => self.robot_msg(now, &robot, msg, &mut out),
            Input::RobotDisconnected { robot } => {
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
            Input::ProposePlans(p) => {
                out.reply = Some(self.apply_proposal(now, *p, &mut out));
            }
            Input::Tick => self.tick(now, &mut out),
        }
        self.finish(out)
    }

    fn finish(&self, out: Out) -> Vec<Output> {
        let mut v = Vec::new();
        if out.meta {
            v.push(Output::Persist(Record::Meta(self.meta.clone())));
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

    fn check_name(name: &str) -> Result<(), CoreError> {
        if name.len() > MAX_NAME_LEN {
            return Err(CoreError::invalid(format!("name is {} bytes long; the limit is {MAX_NAME_LEN}", name.len())));
        }
        if name.chars().any(char::is_control) {
            return Err(CoreError::invalid("name must not contain control characters"));
        }
        Ok(())
    }

    fn register_shop(&mut self, id: ShopId, name: String, pos: LatLon, out: &mut Out) -> Result<Reply, CoreError> {
        Self::check_name(&name)?;
        if self.shops.contains_key(&id) {
            return Err(CoreError::AlreadyExists(format!("shop {id} is already registered")));
        }
        let snap = self.map.snap(pos, self.config.max_snap_m)?;
        let shop = Shop { id: id.clone(), name, place: Place { pos, node: snap.node } };
        self.shops.insert(id.clone(), shop.clone());
        out.shops.insert(id);
        Ok(Reply::Shop(shop))
    }

    fn register_robot(&mut self, id: RobotId, name: String, depot: LatLon, out: &mut Out) -> Result<Reply, CoreError> {
        Self::check_name(&name)?;
        if self.robots.contains_key(&id) {
            return Err(CoreError::AlreadyExists(format!("robot {id} is already registered")));
        }
        let snap = self.map.snap(depot, self.config.max_snap_m)?;
        let robot = Robot {
            id: id.clone(),
            name,
            depot,
            model: RobotModel::default(),
            pos: depot,
            node: snap.node,
            battery_pct: 100.0,
            online: false,
            paused: false,
            last_seen: None,
            plan: Vec::new(),
            mission: MissionState {
                mission_id: format!("m-{id}"),
                update_id: 0,
                next_seq: 1,
                base: Vec::new(),
                acked_update_id: 0,
            },
            on_board: Vec::new(),
            shift_end: None,
            fault: None,
            charging: false,
        };
        self.robots.insert(id.clone(), robot.clone());
        out.robots.insert(id);
        Ok(Reply::Robot(Box::new(robot)))
    }

    fn profile(&self, model: &RobotModel) -> Profile {
        Profile { speed_mps: model.max_speed_mps, crossing_penalty_s: self.config.crossing_penalty_s }
    }

    /// Checks a request and snaps its ends; the pickup is the shop.
    fn check_request(&self, now: Timestamp, shop: &ShopId, req: &DeliveryRequest) -> Result<(Place, Place), CoreError> {
        let shop =
            self.shops.get(shop).ok_or_else(|| CoreError::not_found(format!("shop {shop} is not registered")))?;
        if req.deliver_by <= now {
            return Err(CoreError::invalid(format!(
                "deliver-by time is {:.0} s in the past",
                now.secs_since(req.deliver_by)
            )));
        }
        if req.deliver_by.secs_since(now) > self.config.max_lead_s {
            return Err(CoreError::invalid(format!(
                "deliver-by time is more than {:.0} days ahead",
                self.config.max_lead_s / 86_400.0
            )));
        }
        if let Some(r) = req.ready_at
            && r >= req.deliver_by
        {
            return Err(CoreError::invalid("ready time must be before the deliver-by time"));
        }
        let snap = self
            .map
            .snap(req.dropoff, self.config.max_snap_m)
            .map_err(|e| CoreError::invalid(format!("drop-off address refused: {e}")))?;
        Ok((shop.place, Place { pos: req.dropoff, node: snap.node }))
    }

    fn tasks_for(
        &self,
        id: &OrderId,
        req: &DeliveryRequest,
        pickup: Place,
        dropoff: Place,
        now: Timestamp,
    ) -> (Task, Task) {
        let p = Task {
            kind: StopKind::Pickup,
            order: id.clone(),
            node: pickup.node,
            not_before: req.ready_at.unwrap_or(now),
            deadline: None,
            compartments: req.parcel.compartments,
            grams: req.parcel.weight.0,
            service_s: self.config.pickup_service_s,
        };
        let d = Task {
            kind: StopKind::Dropoff,
            order: id.clone(),
            node: dropoff.node,
            not_before: Timestamp(0),
            deadline: Some(req.deliver_by),
            compartments: req.parcel.compartments,
            grams: req.parcel.weight.0,
            service_s: self.config.dropoff_service_s,
        };
        (p, d)
    }

    /// The planner's view of one planned stop; `None` when its order is unknown.
    fn task_of(&self, stop: &PlanStop) -> Option<Task> {
        let o = self.orders.get(&stop.order)?;
        let (service_s, not_before, deadline) = match stop.kind {
            StopKind::Pickup => (self.config.pickup_service_s, o.ready_at(), None),
            // A drop-off already running late may stay as late as planned, but no later.
            StopKind::Dropoff => (
                self.config.dropoff_service_s,
                Timestamp(0),
                Some(o.request.deliver_by.max(o.eta_dropoff.unwrap_or_default())),
            ),
            StopKind::Return => (self.config.pickup_service_s, Timestamp(0), None),
        };
        Some(Task {
            kind: stop.kind,
            order: stop.order.clone(),
            node: stop.node,
            not_before,
            deadline,
            compartments: o.request.parcel.compartments,
            grams: o.request.parcel.weight.0,
            service_s,
        })
    }

    /// The planner's view of one robot.
    fn robot_plan(&self, r: &Robot, now: Timestamp) -> RobotPlan {
        let mut views = self.views.borrow_mut();
        let fresh = views.get(&r.id).is_some_and(|v| v.stops == r.plan && v.on_board == r.on_board);
        if !fresh {
            views.insert(r.id.clone(), self.plan_view(r));
        }
        let view = &views[&r.id];
        #[cfg(debug_assertions)]
        {
            let built = self.plan_view(r);
            assert!(built.tasks == view.tasks && built.load == view.load, "the plan view of {} is stale", r.id);
        }
        let (comp, grams) = view.load;
        let tasks = view.tasks.clone();
        drop(views);
        RobotPlan {
            robot: r.id.clone(),
            model: r.model,
            profile: self.profile(&r.model),
            start_node: r.node,
            start_time: now,
            load_compartments: comp,
            load_grams: grams,
            locked: r.plan.iter().take_while(|s| s.locked()).count(),
            range_m: insertion::range_m(&r.model, r.battery_pct),
            shift_end: r.shift_end,
            tasks,
        }
    }

    fn plan_view(&self, r: &Robot) -> PlanView {
        let tasks: Vec<Task> = r.plan.iter().filter_map(|s| self.task_of(s)).collect();
        debug_assert_eq!(tasks.len(), r.plan.len(), "every planned stop's order exists");
        let (mut comp, mut grams) = (0u8, 0u32);
        for id in &r.on_board {
            if let Some(o) = self.orders.get(id) {
                comp = comp.saturating_add(o.request.parcel.compartments);
                grams = grams.saturating_add(o.request.parcel.weight.0);
            }
        }
        PlanView { stops: r.plan.clone(), on_board: r.on_board.clone(), tasks, load: (comp, grams) }
    }

    /// Increases whenever a plan or the set of available robots changes.
    pub fn plans_version(&self) -> u64 {
        self.plans_version
    }

    /// The plans of every available robot, for an improver to work on away from the core.
    pub fn plan_snapshot(&self, now: Timestamp) -> PlanSnapshot {
        PlanSnapshot {
            map: Arc::clone(&self.map),
            taken_at: now,
            plans: self.robots.values().filter(|r| available(r)).map(|r| self.robot_plan(r, now)).collect(),
        }
    }

    /// Checks a proposal against the plans as they are now and applies it whole, or refuses it whole. Stops
    /// finished since the snapshot are dropped from it; anything else that changed makes it stale.
    fn apply_proposal(&mut self, now: Timestamp, p: Proposal, out: &mut Out) -> Result<Reply, CoreError> {
        type Key = (OrderId, StopKind);
        let stale = |why: String| CoreError::precondition(format!("proposal is stale: {why}"));
        let named: BTreeSet<&RobotId> = p.plans.iter().map(|pp| &pp.robot).collect();
        if named.len() != p.plans.len() {
            return Err(CoreError::invalid("a proposal names a robot twice"));
        }
        // The stops and parcels of the named robots in full; of the rest of the fleet only the stops of orders
        // the proposal mentions (a proposal names a few robots of a fleet that may have thousands).
        let mentioned: BTreeSet<&OrderId> = p.plans.iter().flat_map(|pp| pp.stops.iter().map(|(o, _)| o)).collect();
        let mut owner: BTreeMap<Key, (RobotId, PlanStop)> = BTreeMap::new();
        let mut holder: BTreeMap<&OrderId, &RobotId> = BTreeMap::new();
        let mut elsewhere: BTreeMap<Key, &RobotId> = BTreeMap::new();
        for r in self.robots.values() {
            if named.contains(&r.id) {
                for s in &r.plan {
                    owner.insert((s.order.clone(), s.kind), (r.id.clone(), s.clone()));
                }
                holder.extend(r.on_board.iter().map(|o| (o, &r.id)));
            } else {
                for s in r.plan.iter().filter(|s| mentioned.contains(&s.order)) {
                    elsewhere.insert((s.order.clone(), s.kind), &r.id);
                }
            }
        }
        if let Some(((order, _), robot)) = elsewhere
            .iter()
            .find(|(k, _)| p.plans.iter().any(|pp| pp.stops.iter().any(|(o, kind)| o == &k.0 && *kind == k.1)))
        {
            return Err(stale(format!("order {order} is now planned on robot {robot}")));
        }
        let mut seen: BTreeSet<Key> = BTreeSet::new();
        let mut installs: Vec<(RobotId, Vec<PlanStop>)> = Vec::new();
        for pp in &p.plans {
            let r = self.robots.get(&pp.robot).ok_or_else(|| stale(format!("robot {} is gone", pp.robot)))?;
            if !available(r) {
                return Err(stale(format!("robot {} is no longer available", r.id)));
            }
            let keys: Vec<Key> = pp.stops.iter().filter(|k| owner.contains_key(*k)).cloned().collect();
            let locked: Vec<Key> =
                r.plan.iter().take_while(|s| s.locked()).map(|s| (s.order.clone(), s.kind)).collect();
            if keys.len() < locked.len() || keys[..locked.len()] != locked[..] {
                return Err(stale(format!("robot {} has started other stops", r.id)));
            }
            let mut stops = Vec::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate() {
                if !seen.insert(k.clone()) {
                    return Err(CoreError::invalid(format!("order {} has a stop proposed twice", k.0)));
                }
                let (_, stop) = &owner[k];
                if k.1 == StopKind::Pickup {
                    if !keys[i + 1..].contains(&(k.0.clone(), StopKind::Dropoff)) {
                        return Err(CoreError::invalid(format!("order {} is picked up but never delivered", k.0)));
                    }
                } else {
                    // A parcel aboard stays on its robot; a drop-off follows its pickup on the same robot.
                    let pickup = (k.0.clone(), StopKind::Pickup);
                    let ok = match holder.get(&k.0) {
                        Some(h) => *h == &r.id,
                        None => {
                            !(owner.contains_key(&pickup) || elsewhere.contains_key(&pickup))
                                || keys[..i].contains(&pickup)
                        }
                    };
                    if !ok {
                        return Err(CoreError::invalid(format!(
                            "order {} would be delivered by a robot that does not carry it",
                            k.0
                        )));
                    }
                }
                stops.push(stop.clone());
            }
            installs.push((r.id.clone(), stops));
        }
        for k in owner.keys() {
            if !seen.contains(k) {
                return Err(stale(format!("order {} was planned since", k.0)));
            }
        }
        // Feasible now, and still a gain.
        let (mut before, mut after) = (0.0, 0.0);
        let mut timed = Vec::with_capacity(installs.len());
        for (id, stops) in installs {
            let plan = self.robot_plan(&self.robots[&id], now);
            before += insertion::schedule(&self.map, &mut self.table, &plan, &plan.tasks)
                .map_or(f64::INFINITY, |s| s.travel_s);
            let tasks: Vec<Task> = stops.iter().filter_map(|s| self.task_of(s)).collect();
            let sched = insertion::schedule(&self.map, &mut self.table, &plan, &tasks)
                .ok_or_else(|| stale(format!("the plan for robot {id} no longer meets its deadlines")))?;
            after += sched.travel_s;
            timed.push((id, stops, tasks, sched));
        }
        if after > before - 0.5 {
            return Err(stale(format!("it no longer saves travel ({before:.0} s now, {after:.0} s proposed)")));
        }
        for (id, stops, tasks, sched) in &timed {
            for s in stops.iter().filter(|s| s.kind == StopKind::Pickup) {
                if let Some(o) = self.orders.get_mut(&s.order)
                    && o.robot.as_ref() != Some(id)
                {
                    o.robot = Some(id.clone());
                    o.updated_at = now;
                    out.orders.insert(s.order.clone());
                }
            }
            self.install_plan(id, stops.clone(), tasks, &sched.arrivals, out);
        }
        for (id, ..) in &timed {
            self.release(now, id, out, true);
        }
        Ok(Reply::Done)
    }

    /// The cheapest insertion of an order over every available robot. Robots are tried in order of a lower
    /// bound on what the order would add to their plans, so only the few that could win are planned in full.
    fn best_insertion(
        &mut self,
        now: Timestamp,
        pickup: &Task,
        dropoff: &Task,
    ) -> Result<insertion::Insertion, String> {
        let robots: Vec<&Robot> = self.robots.values().filter(|r| available(r)).collect();
        if robots.is_empty() {
            return Err("no robot is available right now".into());
        }
        let biggest = robots.iter().map(|r| r.model.compartments).max().unwrap_or(0);
        if pickup.compartments > biggest {
            return Err(format!(
                "the parcel needs {} compartments; the largest available robot has {biggest}",
                pickup.compartments
            ));
        }
        // Every planned stop's order exists (orders are never removed), so these nodes are the plans' nodes.
        let nodes: Vec<NodeId> = robots.iter().flat_map(|r| r.plan.iter().map(|s| s.node)).collect();
        let mut outlines = Vec::with_capacity(robots.len());
        let mut at = 0;
        for r in &robots {
            outlines.push(insertion::Outline {
                start: r.node,
                nodes: &nodes[at..at + r.plan.len()],
                locked: r.plan.iter().take_while(|s| s.locked()).count(),
                profile: self.profile(&r.model),
            });
            at += r.plan.len();
        }
        let mut table = std::mem::take(&mut self.table);
        let found = insertion::cheapest_insertion_bounded(
            &self.map,
            &mut table,
            &outlines,
            |k| self.robot_plan(robots[k], now),
            pickup,
            dropoff,
        );
        let answer = match found.best {
            Some(ins) => Ok(ins),
            None => {
                let plans: Vec<RobotPlan> = robots.iter().map(|r| self.robot_plan(r, now)).collect();
                Err(Self::why_not(&self.map, &mut table, now, &plans, pickup, dropoff))
            }
        };
        self.table = table;
        answer
    }

    /// Why no robot can take an order: the trip itself is too long for the deadline, no battery has the
    /// range, or the fleet is busy.
    fn why_not(
        map: &MapGraph,
        table: &mut TravelTable,
        now: Timestamp,
        plans: &[RobotPlan],
        pickup: &Task,
        dropoff: &Task,
    ) -> String {
        let profile = plans[0].profile;
        let Some(trip_s) = table.secs(map, pickup.node, dropoff.node, profile) else {
            return "the drop-off cannot be reached from the shop on the open sidewalks".into();
        };
        let ready = pickup.not_before.max(now);
        let earliest = ready.plus_secs(pickup.service_s + trip_s);
        if let Some(deadline) = dropoff.deadline
            && earliest > deadline
        {
            return format!(
                "too far for the deliver-by time: the drop-off is {:.0} min from the shop by sidewalk, so even a \
                 robot waiting at the shop would arrive {:.0} min late",
                trip_s / 60.0,
                (earliest.secs_since(deadline) / 60.0).max(1.0)
            );
        }
        let done = earliest.plus_secs(dropoff.service_s);
        if plans.iter().all(|p| p.shift_end.is_some_and(|end| end < done)) {
            return "every available robot's shift ends before it could deliver this order".into();
        }
        let trip_m = trip_s * profile.speed_mps;
        if plans.iter().all(|p| p.range_m < trip_m) {
            return format!("no available robot has the battery left for a {:.1} km trip", trip_m / 1000.0);
        }
        format!("all {} available robots are busy or full: none can fit it in before the deliver-by time", plans.len())
    }

    fn quote_of(&self, ins: &insertion::Insertion, now: Timestamp, deliver_by: Timestamp) -> Quote {
        // A planning margin: a quarter of the remaining time, at least two minutes, never past deliver-by.
        let remaining = ins.eta_dropoff.secs_since(now).max(0.0);
        let latest = ins.eta_dropoff.plus_secs((remaining * 0.25).max(120.0)).min(deliver_by.max(ins.eta_dropoff));
        Quote {
            feasible: true,
            reason: None,
            robot: Some(ins.robot.clone()),
            eta_pickup: Some(ins.eta_pickup),
            eta_dropoff: Some(ins.eta_dropoff),
            eta_latest: Some(latest),
        }
    }

    fn quote(&mut self, now: Timestamp, shop: &ShopId, req: &DeliveryRequest) -> Result<Quote, CoreError> {
        let (pickup, dropoff) = self.check_request(now, shop, req)?;
        let probe = OrderId::parse("quote").expect("a constant valid id");
        let (p, d) = self.tasks_for(&probe, req, pickup, dropoff, now);
        Ok(match self.best_insertion(now, &p, &d) {
            Ok(ins) => self.quote_of(&ins, now, req.deliver_by),
            Err(reason) => Quote {
                feasible: false,
                reason: Some(reason),
                robot: None,
                eta_pickup: None,
                eta_dropoff: None,
                eta_latest: None,
            },
        })
    }

    fn place(
        &mut self,
        now: Timestamp,
        shop: ShopId,
        key: String,
        req: DeliveryRequest,
        pin: String,
        out: &mut Out,
    ) -> Result<Reply, CoreError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
            return Err(CoreError::invalid(format!(
                "idempotency key must be 1 to {MAX_KEY_LEN} bytes without control characters"
            )));
        }
        if pin.len() < 4 || pin.len() > 12 || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CoreError::invalid("PIN must be 4 to 12 digits"));
        }
        if let Some(id) = self.keys.get(&(shop.clone(), key.clone())) {
            let o = &self.orders[id];
            if o.request != req {
                return Err(CoreError::AlreadyExists(format!(
                    "idempotency key {key:?} was already used for order {id} with a different request"
                )));
            }
            let quote = Quote {
                feasible: true,
                reason: None,
                robot: o.robot.clone(),
                eta_pickup: o.eta_pickup,
                eta_dropoff: o.eta_dropoff,
                eta_latest: o.eta_dropoff.map(|e| e.max(o.request.deliver_by)),
            };
            return Ok(Reply::Placed { order: Box::new(o.clone()), quote, replayed: true });
        }
        let open = self.orders.values().filter(|o| o.shop == shop && !o.status.is_terminal()).count();
        if open >= self.config.max_open_orders_per_shop {
            return Err(CoreError::ResourceExhausted(format!(
                "shop {shop} already has {open} open orders; the limit is {}",
                self.config.max_open_orders_per_shop
            )));
        }
        let (pickup, dropoff) = self.check_request(now, &shop, &req)?;
        let id = OrderId::parse(&format!("ord-{:06}", self.meta.next_order_seq + 1)).expect("digits are a valid id");
        let (p, d) = self.tasks_for(&id, &req, pickup, dropoff, now);
        let ins =
            self.best_insertion(now, &p, &d).map_err(|why| CoreError::precondition(format!("order refused: {why}")))?;
        let quote = self.quote_of(&ins, now, req.deliver_by);
        self.meta.next_order_seq += 1;
        out.meta = true;
        let mut order = Order {
            id: id.clone(),
            shop: shop.clone(),
            idempotency_key: key.clone(),
            request: req,
            pickup,
            dropoff,
            pin,
            status: OrderStatus::Pending,
            reason: None,
            marked_ready: false,
            robot: None,
            robot_pos: None,
            created_at: now,
            updated_at: now,
            eta_pickup: None,
            eta_dropoff: None,
            delivered_at: None,
        };
        order.transition(OrderStatus::Assigned, now)?;
        order.robot = Some(ins.robot.clone());
        self.orders.insert(id.clone(), order);
        self.keys.insert((shop, key), id.clone());
        out.orders.insert(id.clone());
        self.apply_insertion(now, ins, out);
        Ok(Reply::Placed { order: Box::new(self.orders[&id].clone()), quote, replayed: false })
    }

    /// Installs a robot's new task list, keeping the release flags of stops it already had.
    fn apply_insertion(&mut self, now: Timestamp, ins: insertion::Insertion, out: &mut Out) {
        let Some(r) = self.robots.get(&ins.robot) else {
            return;
        };
        let stops: Vec<PlanStop> = ins
            .tasks
            .iter()
            .map(|t| {
                r.plan.iter().find(|s| s.order == t.order && s.kind == t.kind).cloned().unwrap_or(PlanStop {
                    kind: t.kind,
                    order: t.order.clone(),
                    node: t.node,
                    drive_released: false,
                    action_released: false,
                })
            })
            .collect();
        self.install_plan(&ins.robot, stops, &ins.tasks, &ins.schedule.arrivals, out);
        self.release(now, &ins.robot, out, true);
    }

    /// Sets a robot's plan and the ETAs of its orders from the planned arrivals (one per task).
    fn install_plan(
        &mut self,
        robot: &RobotId,
        stops: Vec<PlanStop>,
        tasks: &[Task],
        arrivals: &[Timestamp],
        out: &mut Out,
    ) {
        let Some(r) = self.robots.get_mut(robot) else {
            return;
        };
        r.plan = stops;
        self.plans_version += 1;
        // The ETAs below feed the robot's tasks.
        self.views.get_mut().remove(robot);
        for (t, at) in tasks.iter().zip(arrivals) {
            if let Some(o) = self.orders.get_mut(&t.order) {
                let changed = match t.kind {
                    StopKind::Pickup => {
                        let eta = Some((*at).max(t.not_before));
                        std::mem::replace(&mut o.eta_pickup, eta) != eta
                    }
                    StopKind::Dropoff => o.eta_dropoff.replace(*at) != Some(*at),
                    StopKind::Return => false,
                };
                if changed {
                    out.orders.insert(t.order.clone());
                }
            }
        }
        out.robots.insert(robot.clone());
    }

    /// Releases the robot's next stop when nothing it must finish first is pending: the drive to it, then its
    /// action once its precondition holds (a pickup waits for the parcel to be marked ready). Sends an update
    /// when anything changed or `plan_changed`.
    fn release(&mut self, now: Timestamp, robot: &RobotId, out: &mut Out, plan_changed: bool) {
        let Some(r) = self.robots.get(robot) else {
            return;
        };
        // Nothing new is released to a robot that is away or broken: a step released to it could not be taken
        // back, and would pin its order to a robot that may never return. Its hello releases what is due.
        if !r.online || r.fault.is_some() {
            return;
        }
        let mut changed = plan_changed;
        let busy = r.mission.base.iter().any(|s| !matches!(s.action, StepAction::Drive { .. }));
        if !busy && let Some(stop) = r.plan.first().cloned() {
            let profile = self.profile(&r.model);
            let from = r
                .mission
                .base
                .iter()
                .rev()
                .find_map(|s| match &s.action {
                    StepAction::Drive { nodes, .. } => nodes.last().copied(),
                    _ => None,
                })
                .unwrap_or(r.node);
            let order_ready = self.orders.get(&stop.order).is_some_and(|o| o.marked_ready);
            let mut new_steps = Vec::new();
            let mut arrived_now = false;
            if !stop.drive_released {
                match self.map.route(from, stop.node, profile) {
                    Some(route) if route.nodes.len() >= 2 => new_steps.push(StepAction::Drive {
                        path: self.map.geometry(&route.nodes),
                        nodes: route.nodes,
                        length_m: route.length_m,
                        speed_mps: profile.speed_mps,
                    }),
                    Some(_) => arrived_now = r.mission.base.is_empty(),
                    None => {
                        out.other.push(Output::Alert {
                            robot: Some(robot.clone()),
                            message: format!("no open route from {from} to {} for order {}", stop.node, stop.order),
                        });
                        return;
                    }
                }
            }
            // A pickup waits for the parcel to be packed; the drive to the shop does not.
            let release_action = !stop.action_released && (stop.kind != StopKind::Pickup || order_ready);
            if release_action && let Some(action) = self.stop_action(&stop) {
                new_steps.push(action);
            }
            if !stop.drive_released || release_action {
                changed = true;
                let r = self.robots.get_mut(robot).expect("checked above");
                for action in new_steps {
                    let seq = r.mission.next_seq;
                    r.mission.next_seq += 1;
                    if matches!(action, StepAction::Drive { .. }) {
                        self.drive_targets.insert((robot.clone(), seq), (stop.order.clone(), stop.kind));
                    }
                    r.mission.base.push(Step { seq, released: true, action });
                }
                let first = &mut r.plan[0];
                let newly_driving = !first.drive_released;
                first.drive_released = true;
                first.action_released |= release_action;
                if newly_driving {
                    self.on_drive_released(now, &stop, arrived_now, out);
                }
            }
        }
        if changed {
            let r = self.robots.get_mut(robot).expect("checked above");
            r.mission.update_id += 1;
            out.robots.insert(robot.clone());
            let update = self.build_update(&self.robots[robot]);
            out.other.push(Output::Send { robot: robot.clone(), msg: ToRobot::Mission(update) });
        }
    }

    fn on_drive_released(&mut self, now: Timestamp, stop: &PlanStop, arrived: bool, out: &mut Out) {
        let Some(o) = self.orders.get_mut(&stop.order) else {
            return;
        };
        if stop.kind == StopKind::Pickup && o.status == OrderStatus::Assigned {
            advance(o, OrderStatus::ToPickup, now, out);
            out.orders.insert(o.id.clone());
        }
        if arrived {
            self.on_arrived(now, &stop.order.clone(), stop.kind, out);
        }
    }

    fn on_arrived(&mut self, now: Timestamp, order: &OrderId, kind: StopKind, out: &mut Out) {
        let Some(o) = self.orders.get_mut(order) else {
            return;
        };
        let to = match (kind, o.status) {
            (StopKind::Pickup, OrderStatus::ToPickup) => OrderStatus::AtPickup,
            (StopKind::Dropoff, OrderStatus::InTransit) => OrderStatus::AtDropoff,
            _ => return,
        };
        if o.transition(to, now).is_ok() {
            out.orders.insert(order.clone());
        }
    }

    /// The update a robot should hold: the released base, then the rest of the plan as a provisional horizon
    /// (stop actions only; the route to a stop comes with its release).
    fn build_update(&self, r: &Robot) -> MissionUpdate {
        let mut steps = r.mission.base.clone();
        let mut seq = r.mission.next_seq;
        for stop in r.plan.iter().filter(|s| !s.action_released) {
            let Some(action) = self.stop_action(stop) else {
                continue;
            };
            steps.push(Step { seq, released: false, action });
            seq += 1;
        }
        MissionUpdate { mission_id: r.mission.mission_id.clone(), update_id: r.mission.update_id, steps }
    }

    /// The step that performs a stop.
    fn stop_action(&self, stop: &PlanStop) -> Option<StepAction> {
        let o = self.orders.get(&stop.order)?;
        Some(match stop.kind {
            StopKind::Pickup => StepAction::Pickup {
                order: stop.order.clone(),
                compartments: o.request.parcel.compartments,
                service_s: self.config.pickup_service_s,
            },
            StopKind::Dropoff => StepAction::Dropoff {
                order: stop.order.clone(),
                pin_hash: pin_hash(&stop.order, &o.pin),
                service_s: self.config.dropoff_service_s,
            },
            StopKind::Return => {
                StepAction::Return { order: stop.order.clone(), service_s: self.config.pickup_service_s }
            }
        })
    }

    fn cancel(&mut self, now: Timestamp, shop: &ShopId, id: &OrderId, out: &mut Out) -> Result<Reply, CoreError> {
        let o = self.order_for_shop(shop, id)?;
        if o.status.is_terminal() || o.status.on_board() {
            return Err(CoreError::precondition(format!(
                "order {id} is {} and can no longer be cancelled",
                o.status.name()
            )));
        }
        let robot = o.robot.clone();
        if let Some(rid) = &robot
            && let Some(r) = self.robots.get(rid)
            && r.plan.iter().any(|s| &s.order == id && s.action_released)
        {
            return Err(CoreError::precondition(format!(
                "order {id} is being loaded by robot {rid} and can no longer be cancelled"
            )));
        }
        let o = self.orders.get_mut(id).expect("found above");
        o.transition(OrderStatus::Cancelled, now)?;
        o.reason = Some("cancelled by the shop".into());
        out.orders.insert(id.clone());
        if let Some(rid) = robot
            && let Some(r) = self.robots.get_mut(&rid)
        {
            r.plan.retain(|s| &s.order != id);
            self.plans_version += 1;
            out.robots.insert(rid.clone());
            self.release(now, &rid, out, true);
        }
        Ok(Reply::Order(Box::new(self.orders[id].clone())))
    }

    fn mark_ready(&mut self, now: Timestamp, shop: &ShopId, id: &OrderId, out: &mut Out) -> Result<Reply, CoreError> {
        let o = self.order_for_shop(shop, id)?;
        if o.status.is_terminal() {
            return Err(CoreError::precondition(format!("order {id} is {} already", o.status.name())));
        }
        if !o.marked_ready {
            let o = self.orders.get_mut(id).expect("found above");
            o.marked_ready = true;
            o.updated_at = now;
            out.orders.insert(id.clone());
            if let Some(rid) = o.robot.clone() {
                self.release(now, &rid, out, false);
            }
        }
        Ok(Reply::Order(Box::new(self.orders[id].clone())))
    }

    fn set_edge(&mut self, a: NodeId, b: NodeId, close: bool, out: &mut Out) -> Result<Reply, CoreError> {
        if !self.map.adjacent(a, b) {
            return Err(CoreError::not_found(format!("there is no edge between {a} and {b}")));
        }
        let map = Arc::make_mut(&mut self.map);
        if close {
            map.close_edge(a, b);
        } else {
            map.open_edge(a, b);
        }
        self.plans_version += 1;
        self.table.clear();
        self.meta.closed_edges = self.map.closed_edges().collect();
        out.meta = true;
        Ok(Reply::Done)
    }

    fn set_paused(&mut self, robot: &RobotId, paused: bool, out: &mut Out) {
        if let Some(r) = self.robots.get_mut(robot) {
            r.paused = paused;
            // Resuming is also how an operator returns a repaired robot to service.
            if !paused {
                r.fault = None;
            }
            self.plans_version += 1;
            out.robots.insert(robot.clone());
            out.other.push(Output::Send {
                robot: robot.clone(),
                msg: ToRobot::Instant(if paused { InstantAction::Pause } else { InstantAction::Resume }),
            });
        }
    }

    fn robot_msg(&mut self, now: Timestamp, id: &RobotId, msg: FromRobot, out: &mut Out) {
        let Some(r) = self.robots.get_mut(id) else {
            return;
        };
        r.last_seen = Some(now);
        if matches!(msg, FromRobot::Hello(_) | FromRobot::State(_)) {
            // It is back: its absence, if any, is over.
            self.offline_since.remove(id);
            self.offline_handled.remove(id);
        }
        let Some(r) = self.robots.get_mut(id) else {
            return;
        };
        match msg {
            FromRobot::Hello(hello) => {
                match hello.model.checked() {
                    Ok(m) => r.model = m,
                    Err(e) => out.other.push(Output::Alert {
                        robot: Some(id.clone()),
                        message: format!("robot {id} sent a bad factsheet ({e}); keeping the registered model"),
                    }),
                }
                r.online = true;
                self.plans_version += 1;
                out.robots.insert(id.clone());
                if hello.mission_id == r.mission.mission_id {
                    for (seq, outcome) in hello.finished {
                        self.step_finished(now, id, seq, outcome, out);
                    }
                }
                self.release(now, id, out, false);
                // Always (re)send the current mission: a reconnecting robot may have missed updates, and
                // re-sent updates are idempotent.
                if !out
                    .other
                    .iter()
                    .any(|o| matches!(o, Output::Send { robot, msg: ToRobot::Mission(_) } if robot == id))
                {
                    out.other.push(Output::Send {
                        robot: id.clone(),
                        msg: ToRobot::Mission(self.build_update(&self.robots[id])),
                    });
                }
                if self.robots[id].paused {
                    out.other.push(Output::Send { robot: id.clone(), msg: ToRobot::Instant(InstantAction::Pause) });
                }
                out.other.push(Output::RobotChanged(Box::new(self.robots[id].clone())));
            }
            FromRobot::State(s) => {
                if !r.online {
                    r.online = true;
                    self.plans_version += 1;
                }
                r.pos = s.pos;
                if s.battery_pct.is_finite() {
                    r.battery_pct = s.battery_pct.clamp(0.0, 100.0);
                }
                if let Some(n) = s.last_node
                    && self.map.node(n).is_some()
                {
                    r.node = n;
                }
                let pos = r.pos;
                let active: Vec<OrderId> = r.plan.iter().map(|p| p.order.clone()).collect();
                out.other.push(Output::RobotChanged(Box::new(r.clone())));
                for oid in active {
                    if let Some(o) = self.orders.get_mut(&oid)
                        && matches!(o.status, OrderStatus::ToPickup | OrderStatus::InTransit)
                    {
                        o.robot_pos = Some(pos);
                        out.other.push(Output::OrderChanged(Box::new(o.clone())));
                    }
                }
            }
            FromRobot::Ack { update_id } => {
                if update_id <= r.mission.update_id && update_id > r.mission.acked_update_id {
                    r.mission.acked_update_id = update_id;
                }
            }
            FromRobot::Event(RobotEvent::StepFinished { seq, outcome }) => {
                self.step_finished(now, id, seq, outcome, out);
                self.release(now, id, out, false);
            }
            FromRobot::Event(RobotEvent::Blocked { from, to }) => self.on_blocked(now, id, from, to, out),
            FromRobot::Event(RobotEvent::Error { level, kind, detail }) => {
                out.other.push(Output::Alert {
                    robot: Some(id.clone()),
                    message: format!("robot {id} reports {level:?} {kind}: {detail}"),
                });
                if level == ErrorLevel::Fatal && r.fault.is_none() {
                    r.fault = Some(format!("{kind}: {detail}"));
                    out.robots.insert(id.clone());
                    self.plans_version += 1;
                    self.unassign_unstarted(now, id, "is out of service", out);
                    self.replan_pending(now, out);
                }
            }
        }
    }

    /// Applies a finished step (and, implicitly, every earlier base step). Unknown or repeated seqs are ignored.
    fn step_finished(&mut self, now: Timestamp, id: &RobotId, seq: u32, outcome: StepOutcome, out: &mut Out) {
        let Some(r) = self.robots.get_mut(id) else {
            return;
        };
        let Some(pos) = r.mission.base.iter().position(|s| s.seq == seq) else {
            return;
        };
        let done: Vec<Step> = r.mission.base.drain(..=pos).collect();
        out.robots.insert(id.clone());
        let last = done.len() - 1;
        for (i, step) in done.into_iter().enumerate() {
            let outcome = if i == last { outcome.clone() } else { StepOutcome::Done };
            match step.action {
                StepAction::Charge { .. } => {
                    self.robots.get_mut(id).expect("present").charging = false;
                    self.plans_version += 1;
                }
                StepAction::Drive { nodes, .. } => {
                    if let Some(&n) = nodes.last() {
                        self.robots.get_mut(id).expect("present").node = n;
                    }
                    if let Some((order, kind)) = self.drive_targets.remove(&(id.clone(), step.seq)) {
                        self.on_arrived(now, &order, kind, out);
                    }
                }
                StepAction::Pickup { order, .. } => {
                    let r = self.robots.get_mut(id).expect("present");
                    r.plan.retain(|s| !(s.order == order && s.kind == StopKind::Pickup));
                    r.on_board.push(order.clone());
                    if let Some(o) = self.orders.get_mut(&order) {
                        // A pickup released without its drive (robot already at the shop) arrives here first.
                        if o.status == OrderStatus::ToPickup {
                            advance(o, OrderStatus::AtPickup, now, out);
                        }
                        advance(o, OrderStatus::InTransit, now, out);
                        out.orders.insert(order);
                    }
                }
                StepAction::Dropoff { order, .. } => {
                    let r = self.robots.get_mut(id).expect("present");
                    r.plan.retain(|s| !(s.order == order && s.kind == StopKind::Dropoff));
                    let Some(o) = self.orders.get_mut(&order) else {
                        continue;
                    };
                    if o.status == OrderStatus::InTransit {
                        advance(o, OrderStatus::AtDropoff, now, out);
                    }
                    match outcome {
                        StepOutcome::Done => {
                            advance(o, OrderStatus::Delivered, now, out);
                            r.on_board.retain(|x| x != &order);
                        }
                        StepOutcome::HandoverFailed(why) => {
                            // The parcel stays on board; the robot brings it back to the shop.
                            advance(o, OrderStatus::Returning, now, out);
                            o.reason = Some(format!("hand-over failed: {why}"));
                            r.plan.push(PlanStop {
                                kind: StopKind::Return,
                                order: order.clone(),
                                node: o.pickup.node,
                                drive_released: false,
                                action_released: false,
                            });
                        }
                    }
                    out.orders.insert(order);
                }
                StepAction::Return { order, .. } => {
                    let r = self.robots.get_mut(id).expect("present");
                    r.plan.retain(|s| !(s.order == order && s.kind == StopKind::Return));
                    r.on_board.retain(|x| x != &order);
                    if let Some(o) = self.orders.get_mut(&order)
                        && o.transition(OrderStatus::Returned, now).is_ok()
                    {
                        out.orders.insert(order);
                    }
                }
            }
        }
    }

    /// Acts on robots gone longer than the limit: orders they have not started loading go back to pending (and
    /// are re-planned below); parcels aboard stay with the robot and operators are told.
    /// A robot could not get from `from` to `to`: close that sidewalk for a while (both ways) and send the
    /// robot a new route to the stop it was driving to, from the node it last passed.
    fn on_blocked(&mut self, now: Timestamp, id: &RobotId, from: NodeId, to: NodeId, out: &mut Out) {
        let minutes = self.config.blocked_closure_s / 60.0;
        if self.map.adjacent(from, to) {
            let until = now.plus_secs(self.config.blocked_closure_s);
            // Closures are per edge (both directions), named with the lower node first.
            let key = (from.min(to), from.max(to));
            let by_operator =
                self.map.closed_edges().any(|e| e == key) && !self.meta.temp_closures.iter().any(|c| (c.0, c.1) == key);
            // An edge an operator closed stays the operator's to open.
            if !by_operator {
                Arc::make_mut(&mut self.map).close_edge(key.0, key.1);
                self.meta.temp_closures.retain(|c| (c.0, c.1) != key);
                self.meta.temp_closures.push((key.0, key.1, until));
            }
            self.meta.closed_edges = self.map.closed_edges().collect();
            self.table.clear();
            self.plans_version += 1;
            out.meta = true;
        }
        let Some(r) = self.robots.get_mut(id) else { return };
        let driving = r.mission.base.first().is_some_and(|s| matches!(s.action, StepAction::Drive { .. }));
        if !driving {
            out.other.push(Output::Alert {
                robot: Some(id.clone()),
                message: format!("robot {id} reports the way from {from} to {to} blocked; closed for {minutes:.0} min"),
            });
            return;
        }
        // Withdraw the whole released base (the drive and any action released with it); the agent stops the
        // step it runs when it is no longer first, and the release below sends the new route.
        for s in std::mem::take(&mut r.mission.base) {
            self.drive_targets.remove(&(id.clone(), s.seq));
        }
        if self.map.node(from).is_some() {
            r.node = from;
        }
        if let Some(first) = r.plan.first_mut() {
            first.drive_released = false;
            first.action_released = false;
        }
        out.robots.insert(id.clone());
        self.release(now, id, out, true);
        let rerouted = self.robots.get(id).is_some_and(|r| !r.mission.base.is_empty());
        out.other.push(Output::Alert {
            robot: Some(id.clone()),
            message: if rerouted {
                format!("robot {id} blocked between {from} and {to}: sidewalk closed for {minutes:.0} min, re-routed")
            } else {
                format!(
                    "robot {id} blocked between {from} and {to}: sidewalk closed for {minutes:.0} min, no other way yet"
                )
            },
        });
    }

    /// Reopens sidewalks whose blocked-closure time is over, and gives idle robots with planned stops their
    /// next release (one may have waited for a way to open).
    fn reopen_and_release(&mut self, now: Timestamp, out: &mut Out) {
        let (due, keep): (Vec<_>, Vec<_>) = self.meta.temp_closures.iter().partition(|c| c.2 <= now);
        if !due.is_empty() {
            self.meta.temp_closures = keep;
            let map = Arc::make_mut(&mut self.map);
            for (a, b, _) in due {
                map.open_edge(a, b);
            }
            self.meta.closed_edges = self.map.closed_edges().collect();
            self.table.clear();
            self.plans_version += 1;
            out.meta = true;
        }
        let idle: Vec<RobotId> = self
            .robots
            .values()
            .filter(|r| available(r) && r.mission.base.is_empty() && !r.plan.is_empty())
            .map(|r| r.id.clone())
            .collect();
        for id in idle {
            self.release(now, &id, out, false);
        }
    }

    /// Sends idle robots low on battery to their depot to charge. While charging a robot gets no work.
    fn send_to_charge(&mut self, out: &mut Out) {
        let low: Vec<RobotId> = self
            .robots
            .values()
            .filter(|r| available(r) && r.plan.is_empty() && r.mission.base.is_empty())
            .filter(|r| r.battery_pct < self.config.charge_below_pct)
            .map(|r| r.id.clone())
            .collect();
        for id in low {
            let r = &self.robots[&id];
            let Ok(depot) = self.map.snap(r.depot, self.config.max_snap_m) else { continue };
            let profile = self.profile(&r.model);
            let mut actions = Vec::new();
            if depot.node != r.node {
                match self.map.route(r.node, depot.node, profile) {
                    Some(route) if route.nodes.len() >= 2 => actions.push(StepAction::Drive {
                        path: self.map.geometry(&route.nodes),
                        nodes: route.nodes,
                        length_m: route.length_m,
                        speed_mps: profile.speed_mps,
                    }),
                    Some(_) => {}
                    None => {
                        out.other.push(Output::Alert {
                            robot: Some(id.clone()),
                            message: format!("robot {id} needs charging but has no open route to its depot"),
                        });
                        continue;
                    }
                }
            }
            actions.push(StepAction::Charge { until_pct: self.config.charge_to_pct });
            let r = self.robots.get_mut(&id).expect("listed above");
            for action in actions {
                let seq = r.mission.next_seq;
                r.mission.next_seq += 1;
                r.mission.base.push(Step { seq, released: true, action });
            }
            r.charging = true;
            r.mission.update_id += 1;
            self.plans_version += 1;
            out.robots.insert(id.clone());
            let update = self.build_update(&self.robots[&id]);
            out.other.push(Output::Send { robot: id.clone(), msg: ToRobot::Mission(update) });
            out.other.push(Output::RobotChanged(Box::new(self.robots[&id].clone())));
        }
    }

    /// Takes back from robot `id` every order it has not started loading (they become pending and are planned
    /// again); orders aboard or being loaded stay, and operators are told.
    fn unassign_unstarted(&mut self, now: Timestamp, id: &RobotId, why: &str, out: &mut Out) {
        let Some(r) = self.robots.get(id) else { return };
        // An order moves when its pickup is still in the plan and not yet released for loading.
        let movable: BTreeSet<OrderId> = r
            .plan
            .iter()
            .filter(|s| s.kind == StopKind::Pickup && !s.action_released)
            .map(|s| s.order.clone())
            .collect();
        let staying: BTreeSet<OrderId> =
            r.plan.iter().map(|s| s.order.clone()).filter(|o| !movable.contains(o)).collect();
        let r = self.robots.get_mut(id).expect("present");
        r.plan.retain(|s| !movable.contains(&s.order));
        for oid in &movable {
            if let Some(o) = self.orders.get_mut(oid)
                && o.transition(OrderStatus::Pending, now).is_ok()
            {
                o.eta_pickup = None;
                o.eta_dropoff = None;
                out.orders.insert(oid.clone());
            }
        }
        if !staying.is_empty() {
            let list: Vec<String> = staying.iter().map(ToString::to_string).collect();
            out.other.push(Output::Alert {
                robot: Some(id.clone()),
                message: format!(
                    "robot {id} {why} with parcels aboard or being loaded ({}); those orders wait for it",
                    list.join(", ")
                ),
            });
        }
        if !movable.is_empty() {
            self.plans_version += 1;
            out.robots.insert(id.clone());
            self.release(now, id, out, true);
        }
    }

    fn handle_offline(&mut self, now: Timestamp, out: &mut Out) {
        // A robot back online starts its next absence from scratch.
        let robots = &self.robots;
        self.offline_since.retain(|id, _| robots.get(id).is_some_and(|r| !r.online));
        self.offline_handled.retain(|id| robots.get(id).is_some_and(|r| !r.online));
        for r in self.robots.values().filter(|r| !r.online) {
            self.offline_since.entry(r.id.clone()).or_insert(now);
        }
        let limit = self.config.offline_limit_s;
        let due: Vec<(RobotId, Timestamp)> = self
            .offline_since
            .iter()
            .filter(|(id, since)| now.secs_since(**since) >= limit && !self.offline_handled.contains(*id))
            .map(|(id, since)| (id.clone(), *since))
            .collect();
        for (id, since) in due {
            self.offline_handled.insert(id.clone());
            let why = format!("has been offline for {:.0} s", now.secs_since(since));
            self.unassign_unstarted(now, &id, &why, out);
        }
    }

    fn tick(&mut self, now: Timestamp, out: &mut Out) {
        self.handle_offline(now, out);
        self.reopen_and_release(now, out);
        self.send_to_charge(out);
        self.replan_pending(now, out);
    }

    /// Orders waiting for a robot: try again, and fail those whose deadline passed.
    fn replan_pending(&mut self, now: Timestamp, out: &mut Out) {
        let pending: Vec<OrderId> =
            self.orders.values().filter(|o| o.status == OrderStatus::Pending).map(|o| o.id.clone()).collect();
        for id in pending {
            let o = &self.orders[&id];
            if o.request.deliver_by <= now {
                let o = self.orders.get_mut(&id).expect("listed above");
                if o.transition(OrderStatus::Failed, now).is_ok() {
                    o.reason = Some("no robot could take it before its deliver-by time".into());
                    out.orders.insert(id);
                }
                continue;
            }
            let (req, p, d) = (o.request.clone(), o.pickup, o.dropoff);
            let (pt, dt) = self.tasks_for(&id, &req, p, d, now);
            if let Ok(ins) = self.best_insertion(now, &pt, &dt) {
                let o = self.orders.get_mut(&id).expect("listed above");
                if o.transition(OrderStatus::Assigned, now).is_ok() {
                    o.robot = Some(ins.robot.clone());
                    out.orders.insert(id);
                    self.apply_insertion(now, ins, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grams;
    use crate::map::tests::grid;
    use crate::mission::Hello;
    use crate::order::Parcel;

    pub(super) fn ll(lat: f64, lon: f64) -> LatLon {
        LatLon::new(lat, lon).expect("valid")
    }

    /// The id of the order a PlaceOrder output placed.
    pub(super) fn placed(out: &[Output]) -> OrderId {
        match reply(out) {
            Ok(Reply::Placed { order, .. }) => order.id,
            other => panic!("not placed: {other:?}"),
        }
    }

    pub(super) fn reply(out: &[Output]) -> Result<Reply, CoreError> {
        out.iter()
            .find_map(|o| match o {
                Output::Reply(r) => Some(r.clone()),
                _ => None,
            })
            .expect("a reply")
    }

    /// A shop at the grid's south-west corner, robot `near` there and robot `far` at the north-east corner.
    fn fleet() -> (Dispatcher, ShopId, RobotId, RobotId) {
        let mut d = Dispatcher::new(grid(), Config::default());
        let t = Timestamp(1_000_000);
        let shop = ShopId::parse("s").expect("valid");
        reply(&d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) }))
            .expect("shop");
        let (near, far) = (RobotId::parse("near").expect("valid"), RobotId::parse("far").expect("valid"));
        for (id, at) in [(&near, ll(43.73, 7.42)), (&far, ll(43.733, 7.423))] {
            reply(&d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: at }))
                .expect("robot");
            let hello =
                Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
            d.handle(t, Input::Robot { robot: id.clone(), msg: FromRobot::Hello(hello) });
        }
        (d, shop, near, far)
    }

    fn place(d: &mut Dispatcher, shop: &ShopId, key: &str, now: Timestamp) -> OrderId {
        let request = DeliveryRequest {
            dropoff: ll(43.731, 7.421),
            parcel: Parcel::new(Grams(500), 1).expect("valid"),
            ready_at: None,
            deliver_by: now.plus_secs(3_600.0),
        };
        match reply(&d.handle(
            now,
            Input::PlaceOrder { shop: shop.clone(), idempotency_key: key.into(), request, pin: "1234".into() },
        )) {
            Ok(Reply::Placed { order, .. }) => order.id,
            other => panic!("not placed: {other:?}"),
        }
    }

    #[test]
    fn a_blip_is_forgotten_once_the_robot_is_back() {
        // Regression: an absence shorter than the limit used to keep counting after the robot came back, so an
        // online robot lost its orders when the old absence reached the limit, and its next real absence was
        // never acted on.
        let (mut d, shop, near, far) = fleet();
        let t0 = Timestamp(1_000_000);
        let o = place(&mut d, &shop, "k1", t0);
        d.handle(t0, Input::RobotDisconnected { robot: near.clone() });
        d.handle(t0.plus_secs(10.0), Input::Tick);
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(t0.plus_secs(20.0), Input::Robot { robot: near.clone(), msg: FromRobot::Hello(hello) });
        d.handle(t0.plus_secs(200.0), Input::Tick);
        let out = d.handle(t0.plus_secs(210.0), Input::Tick);
        assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()), "back online: nothing moves");
        assert!(!out.iter().any(|o| matches!(o, Output::Alert { .. })));
        // A real absence later is acted on.
        d.handle(t0.plus_secs(300.0), Input::RobotDisconnected { robot: near.clone() });
        d.handle(t0.plus_secs(310.0), Input::Tick);
        d.handle(t0.plus_secs(430.0), Input::Tick);
        assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(far));
    }

    #[test]
    fn a_robot_gone_too_long_loses_orders_it_has_not_started() {
        let (mut d, shop, near, far) = fleet();
        let t0 = Timestamp(1_000_000);
        let o = place(&mut d, &shop, "k1", t0);
        assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()));
        d.handle(t0, Input::RobotDisconnected { robot: near.clone() });
        // A short absence changes nothing.
        d.handle(t0.plus_secs(60.0), Input::Tick);
        assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()));
        // Past the limit the order goes to the robot that is still online.
        let out = d.handle(t0.plus_secs(121.0), Input::Tick);
        let order = d.order(&o).expect("order");
        assert_eq!(order.robot.as_ref(), Some(&far), "{order:?}");
        assert!(d.robot(&near).expect("robot").plan.is_empty());
        assert!(out.iter().any(|o| matches!(o, Output::Persist(Record::Order(_)))), "the change is persisted");
        assert!(!out.iter().any(|o| matches!(o, Output::Alert { .. })), "nothing aboard: no alert");
    }

    #[test]
    fn a_robot_gone_with_a_parcel_aboard_is_flagged_and_keeps_it() {
        let (mut d, shop, near, _far) = fleet();
        let t0 = Timestamp(1_000_000);
        let o = place(&mut d, &shop, "k1", t0);
        reply(&d.handle(t0, Input::MarkReady { shop: shop.clone(), order: o.clone() })).expect("ready");
        // The robot is at the shop: the pickup is released at once; it loads and reports it.
        let seq = d.robot(&near).expect("robot").mission.base.iter().find_map(|s| match &s.action {
            StepAction::Pickup { .. } => Some(s.seq),
            _ => None,
        });
        let seq = seq.expect("pickup released");
        d.handle(
            t0,
            Input::Robot {
                robot: near.clone(),
                msg: FromRobot::Event(RobotEvent::StepFinished { seq, outcome: StepOutcome::Done }),
            },
        );
        assert_eq!(d.order(&o).map(|o| o.status), Some(OrderStatus::InTransit));
        d.handle(t0, Input::RobotDisconnected { robot: near.clone() });
        let out = d.handle(t0.plus_secs(130.0), Input::Tick);
        assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()), "the parcel stays with its robot");
        let alerts: Vec<&String> = out
            .iter()
            .filter_map(|o| match o {
                Output::Alert { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(alerts[0].contains("parcels aboard"), "{alerts:?}");
        // Flagged once, not on every tick.
        let again = d.handle(t0.plus_secs(140.0), Input::Tick);
        assert!(!again.iter().any(|o| matches!(o, Output::Alert { .. })));
    }

    #[test]
    fn after_a_restart_robots_get_a_full_grace_period() {
        let (mut d, shop, near, _far) = fleet();
        let t0 = Timestamp(1_000_000);
        let o = place(&mut d, &shop, "k1", t0);
        let records: Vec<Record> = d
            .robots()
            .map(|r| Record::Robot(Box::new(r.clone())))
            .chain(d.orders().map(|o| Record::Order(Box::new(o.clone()))))
            .chain(d.shops().map(|s| Record::Shop(s.clone())))
            .collect();
        let mut restored = Dispatcher::restore(grid(), Config::default(), records);
        // Hours later, the first tick after the restart starts the clock; nothing moves yet.
        let later = t0.plus_secs(7_200.0);
        restored.handle(later, Input::Tick);
        assert_eq!(restored.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()));
    }
}

#[cfg(test)]
mod improve_tests {
    use super::*;
    use crate::Grams;
    use crate::map::tests::grid;
    use crate::mission::Hello;
    use crate::order::Parcel;
    use crate::planner::improve::{ImproveParams, ProposedPlan, improve};

    use super::tests::{ll, reply};

    fn hello(d: &mut Dispatcher, id: &RobotId, t: Timestamp) {
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(t, Input::Robot { robot: id.clone(), msg: FromRobot::Hello(hello) });
    }

    fn place(d: &mut Dispatcher, shop: &ShopId, key: &str, to: LatLon, now: Timestamp) -> OrderId {
        let request = DeliveryRequest {
            dropoff: to,
            parcel: Parcel::new(Grams(500), 1).expect("valid"),
            ready_at: None,
            deliver_by: now.plus_secs(3_600.0),
        };
        match reply(&d.handle(
            now,
            Input::PlaceOrder { shop: shop.clone(), idempotency_key: key.into(), request, pin: "1234".into() },
        )) {
            Ok(Reply::Placed { order, .. }) => order.id,
            other => panic!("not placed: {other:?}"),
        }
    }

    /// Two orders planned on the far robot while the one at the shop was offline; then it comes back.
    fn lopsided() -> (Dispatcher, ShopId, RobotId, RobotId, [OrderId; 2], Timestamp) {
        let t = Timestamp(1_000_000);
        let mut d = Dispatcher::new(grid(), Config::default());
        let shop = ShopId::parse("s").expect("valid");
        reply(&d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) }))
            .expect("shop");
        let (near, far) = (RobotId::parse("near").expect("valid"), RobotId::parse("far").expect("valid"));
        for (id, at) in [(&near, ll(43.73, 7.42)), (&far, ll(43.733, 7.423))] {
            reply(&d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: at }))
                .expect("robot");
        }
        hello(&mut d, &far, t);
        // North and east of the shop: one robot doing both drives there and back across the grid.
        let o1 = place(&mut d, &shop, "k1", ll(43.733, 7.42), t);
        let o2 = place(&mut d, &shop, "k2", ll(43.73, 7.423), t);
        assert!(d.orders().all(|o| o.robot.as_ref() == Some(&far)), "only the far robot was online");
        hello(&mut d, &near, t);
        (d, shop, near, far, [o1, o2], t)
    }

    fn budget(n: u64) -> impl FnMut(u64) -> f64 {
        move |i| i as f64 / n as f64
    }

    #[test]
    fn a_fleet_bigger_than_a_region_is_improved_a_region_at_a_time() {
        use crate::planner::improve::REGION_ROBOTS;
        let (mut d, _shop, near, far, [o1, o2], t) = lopsided();
        // Sixty more idle robots at the shop: more robots than one search works on.
        for k in 0..60 {
            let id = RobotId::parse(&format!("extra-{k:02}")).expect("valid");
            reply(&d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: ll(43.73, 7.42) }))
                .expect("robot");
            hello(&mut d, &id, t);
        }
        let snap = d.plan_snapshot(t);
        assert!(snap.plans.len() > REGION_ROBOTS, "{} robots", snap.plans.len());
        let p = improve(&snap, &ImproveParams::default(), &mut budget(200)).expect("an improvement exists");
        assert!(p.plans.len() <= REGION_ROBOTS && p.travel_after_s < p.travel_before_s - 1.0, "{p:?}");
        assert_eq!(reply(&d.handle(t.plus_secs(1.0), Input::ProposePlans(Box::new(p)))), Ok(Reply::Done));
        assert_eq!(d.order(&o1).and_then(|o| o.robot.clone()), Some(far.clone()), "released: stays");
        let taker = d.order(&o2).and_then(|o| o.robot.clone()).expect("planned");
        assert_ne!(taker, far, "moved off the far robot");
        let at = |id: &RobotId| d.robot(id).expect("robot").node;
        assert_eq!(at(&taker), at(&near), "to a robot at the shop");
    }

    #[test]
    fn an_improver_moves_unstarted_work_to_a_better_robot() {
        let (mut d, _shop, near, far, [o1, o2], t) = lopsided();
        let snap = d.plan_snapshot(t);
        let p = improve(&snap, &ImproveParams::default(), &mut budget(200)).expect("an improvement exists");
        assert!(p.travel_after_s < p.travel_before_s - 1.0, "{p:?}");
        // Same seed, same budget: same proposal.
        assert_eq!(improve(&snap, &ImproveParams::default(), &mut budget(200)).as_ref(), Some(&p));
        let out = d.handle(t.plus_secs(1.0), Input::ProposePlans(Box::new(p)));
        assert_eq!(reply(&out), Ok(Reply::Done));
        // The first order's drive was released to the far robot: it stays. The second moves to the near one.
        assert_eq!(d.order(&o1).and_then(|o| o.robot.clone()), Some(far.clone()));
        assert_eq!(d.order(&o2).and_then(|o| o.robot.clone()), Some(near.clone()));
        assert!(d.robot(&far).expect("far").plan.iter().all(|s| s.order == o1));
        assert!(out.iter().any(|o| matches!(o, Output::Persist(Record::Order(x)) if x.id == o2)), "persisted");
        assert!(out.iter().any(|o| matches!(o, Output::Send { robot, .. } if robot == &near)), "released");
    }

    #[test]
    fn a_stale_or_unsafe_proposal_changes_nothing() {
        let (mut d, shop, near, far, [o1, o2], t) = lopsided();
        let snap = d.plan_snapshot(t);
        let p = improve(&snap, &ImproveParams::default(), &mut budget(200)).expect("an improvement exists");
        // An order placed since the snapshot lands on a robot the proposal names.
        place(&mut d, &shop, "k3", ll(43.732, 7.421), t);
        let plans = |d: &Dispatcher| d.robots().map(|r| r.plan.clone()).collect::<Vec<_>>();
        let before = plans(&d);
        let out = d.handle(t, Input::ProposePlans(Box::new(p)));
        assert!(matches!(reply(&out), Err(CoreError::FailedPrecondition(m)) if m.contains("stale")), "{out:?}");
        assert_eq!(plans(&d), before);
        assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))));

        // Hand-made proposals that break a commitment are refused too.
        let keys = |r: &RobotId, d: &Dispatcher| -> Vec<(OrderId, StopKind)> {
            d.robot(r).expect("robot").plan.iter().map(|s| (s.order.clone(), s.kind)).collect()
        };
        let mut far_stops = keys(&far, &d);
        let near_stops = keys(&near, &d);
        // Moving the released first stop of the far robot to the near robot.
        let o1_stops: Vec<_> = far_stops.iter().filter(|k| k.0 == o1).cloned().collect();
        far_stops.retain(|k| k.0 != o1);
        let mut moved = o1_stops.clone();
        moved.extend(near_stops.clone());
        let bad = |plans: Vec<ProposedPlan>| {
            Box::new(Proposal { taken_at: t, plans, travel_before_s: 0.0, travel_after_s: 0.0, iterations: 0 })
        };
        let out = d.handle(
            t,
            Input::ProposePlans(bad(vec![
                ProposedPlan { robot: far.clone(), stops: far_stops.clone() },
                ProposedPlan { robot: near.clone(), stops: moved },
            ])),
        );
        assert!(matches!(reply(&out), Err(CoreError::FailedPrecondition(_))), "{out:?}");
        // A drop-off before its pickup.
        let mut reversed = keys(&far, &d);
        if let Some(i) = reversed.iter().position(|k| k.0 == o2 && k.1 == StopKind::Pickup) {
            let pick = reversed.remove(i);
            reversed.push(pick);
        }
        let out = d.handle(t, Input::ProposePlans(bad(vec![ProposedPlan { robot: far.clone(), stops: reversed }])));
        assert!(reply(&out).is_err(), "{out:?}");
        // Taking an order off a robot the proposal does not name.
        let mut grab = near_stops.clone();
        grab.extend(keys(&far, &d).into_iter().filter(|k| k.0 == o2));
        let out = d.handle(t, Input::ProposePlans(bad(vec![ProposedPlan { robot: near.clone(), stops: grab }])));
        assert!(
            matches!(reply(&out), Err(CoreError::FailedPrecondition(m)) if m.contains("is now planned on robot far")),
            "{out:?}"
        );
        assert_eq!(plans(&d), before);
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;
    use crate::Grams;
    use crate::map::tests::grid;
    use crate::mission::Hello;
    use crate::order::Parcel;

    #[test]
    fn a_quote_says_why_an_order_cannot_be_served() {
        let t = Timestamp(1_000_000);
        let mut d = Dispatcher::new(grid(), Config::default());
        let ll = |a, b| LatLon::new(a, b).expect("valid");
        let shop = ShopId::parse("s").expect("valid");
        let robot = RobotId::parse("r").expect("valid");
        d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) });
        d.handle(t, Input::RegisterRobot { id: robot.clone(), name: String::new(), depot: ll(43.73, 7.42) });
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(t, Input::Robot { robot, msg: FromRobot::Hello(hello) });
        let quote = |d: &mut Dispatcher, deliver_in_s: f64| {
            let request = DeliveryRequest {
                dropoff: ll(43.733, 7.423),
                parcel: Parcel::new(Grams(500), 1).expect("valid"),
                ready_at: None,
                deliver_by: t.plus_secs(deliver_in_s),
            };
            match d.handle(t, Input::Quote { shop: shop.clone(), request }).into_iter().next() {
                Some(Output::Reply(Ok(Reply::Quote(q)))) => q,
                other => panic!("no quote: {other:?}"),
            }
        };
        // About 660 m across the grid: more than 5 minutes at 1.6 m/s, plus a minute of loading.
        let q = quote(&mut d, 300.0);
        assert!(!q.feasible);
        assert!(q.reason.as_deref().is_some_and(|r| r.starts_with("too far for the deliver-by time")), "{q:?}");
        let q = quote(&mut d, 3_600.0);
        assert!(q.feasible, "{q:?}");
        // A shift that ends in five minutes leaves no time for a trip of eight.
        let out =
            d.handle(t, Input::SetShift { robot: RobotId::parse("r").expect("valid"), end: Some(t.plus_secs(300.0)) });
        assert!(matches!(super::tests::reply(&out), Ok(Reply::Robot(r)) if r.shift_end == Some(t.plus_secs(300.0))));
        let q = quote(&mut d, 3_600.0);
        assert!(q.reason.as_deref().is_some_and(|r| r.contains("shift ends")), "{q:?}");
        let out = d.handle(t, Input::SetShift { robot: RobotId::parse("nobody").expect("valid"), end: None });
        assert!(matches!(super::tests::reply(&out), Err(CoreError::NotFound(_))));
        d.handle(t, Input::SetShift { robot: RobotId::parse("r").expect("valid"), end: None });
        assert!(quote(&mut d, 3_600.0).feasible);
    }
}

#[cfg(test)]
mod fault_tests {
    use super::*;
    use crate::Grams;
    use crate::map::tests::grid;
    use crate::mission::Hello;
    use crate::order::Parcel;

    use super::tests::ll;

    /// A shop at the south-west corner of the grid, robot `a` there, robot `b` one block north; one order to
    /// the north-east corner placed on `a`.
    fn setup() -> (Dispatcher, RobotId, RobotId, OrderId, Timestamp) {
        let t = Timestamp(1_000_000);
        let mut d = Dispatcher::new(grid(), Config::default());
        let shop = ShopId::parse("s").expect("valid");
        d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) });
        let (a, b) = (RobotId::parse("a").expect("valid"), RobotId::parse("b").expect("valid"));
        for (id, at) in [(&a, ll(43.73, 7.42)), (&b, ll(43.731, 7.42))] {
            d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: at });
            let hello =
                Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
            d.handle(t, Input::Robot { robot: id.clone(), msg: FromRobot::Hello(hello) });
        }
        let request = DeliveryRequest {
            dropoff: ll(43.733, 7.423),
            parcel: Parcel::new(Grams(500), 1).expect("valid"),
            ready_at: None,
            deliver_by: t.plus_secs(3_600.0),
        };
        let out = d.handle(t, Input::PlaceOrder { shop, idempotency_key: "k".into(), request, pin: "1234".into() });
        let order = super::tests::placed(&out);
        assert_eq!(d.order(&order).and_then(|o| o.robot.clone()), Some(a.clone()));
        (d, a, b, order, t)
    }

    fn drive_nodes(d: &Dispatcher, r: &RobotId) -> Option<(u32, Vec<NodeId>)> {
        d.robot(r)?.mission.base.iter().find_map(|s| match &s.action {
            StepAction::Drive { nodes, .. } => Some((s.seq, nodes.clone())),
            _ => None,
        })
    }

    #[test]
    fn a_blocked_sidewalk_is_closed_and_the_robot_rerouted_until_it_reopens() {
        let (mut d, a, _b, order, t) = setup();
        // Mark the parcel ready and let robot `a` load it, so its released drive goes to the customer.
        let shop = ShopId::parse("s").expect("valid");
        d.handle(t, Input::MarkReady { shop, order: order.clone() });
        let pickup_seq = d.robot(&a).expect("a").mission.base.iter().find_map(|s| match s.action {
            StepAction::Pickup { .. } => Some(s.seq),
            _ => None,
        });
        let seq = pickup_seq.expect("the pickup is released at the shop");
        d.handle(
            t,
            Input::Robot {
                robot: a.clone(),
                msg: FromRobot::Event(RobotEvent::StepFinished { seq, outcome: StepOutcome::Done }),
            },
        );
        let (old_seq, nodes) = drive_nodes(&d, &a).expect("driving to the customer");
        let (from, to) = (nodes[0], nodes[1]);
        let out = d.handle(
            t.plus_secs(5.0),
            Input::Robot { robot: a.clone(), msg: FromRobot::Event(RobotEvent::Blocked { from, to }) },
        );
        let (new_seq, new_nodes) = drive_nodes(&d, &a).expect("a new route");
        assert!(new_seq > old_seq, "a new step, not the withdrawn one");
        assert_eq!(new_nodes.first(), Some(&from));
        assert!(
            !new_nodes.windows(2).any(|w| (w[0], w[1]) == (from, to) || (w[0], w[1]) == (to, from)),
            "{new_nodes:?}"
        );
        assert_eq!(new_nodes.last(), nodes.last(), "same destination");
        assert!(out.iter().any(|o| matches!(o, Output::Send { robot, msg: ToRobot::Mission(_) } if robot == &a)));
        assert!(out.iter().any(|o| matches!(o, Output::Alert { message, .. } if message.contains("re-routed"))));
        assert!(out.iter().any(|o| matches!(o, Output::Persist(Record::Meta(m)) if m.temp_closures.len() == 1)));
        let closed: Vec<_> = d.map().closed_edges().collect();
        assert_eq!(closed, vec![(from.min(to), from.max(to))]);
        // Ten minutes later the sidewalk reopens by itself.
        d.handle(t.plus_secs(5.0 + 599.0), Input::Tick);
        assert_eq!(d.map().closed_edges().count(), 1);
        d.handle(t.plus_secs(5.0 + 601.0), Input::Tick);
        assert_eq!(d.map().closed_edges().count(), 0);
    }

    #[test]
    fn an_idle_robot_low_on_battery_charges_at_its_depot_and_gets_no_work_meanwhile() {
        let (mut d, a, b, order, t) = setup();
        // Robot `b` is idle, one block from its depot... at it, in fact; report a low battery.
        let state = |pct: f64| {
            FromRobot::State(crate::mission::RobotReport {
                pos: ll(43.731, 7.42),
                heading_deg: 0.0,
                speed_mps: 0.0,
                battery_pct: pct,
                last_node: None,
                update_id: 0,
                driving: false,
                paused: false,
            })
        };
        d.handle(t, Input::Robot { robot: b.clone(), msg: state(35.0) });
        let out = d.handle(t.plus_secs(1.0), Input::Tick);
        let r = d.robot(&b).expect("b");
        assert!(r.charging);
        let charge = r.mission.base.iter().find_map(|s| match s.action {
            StepAction::Charge { until_pct } => Some((s.seq, until_pct)),
            _ => None,
        });
        let (seq, until) = charge.expect("a charge step");
        assert_eq!(until, Config::default().charge_to_pct);
        assert!(out.iter().any(|o| matches!(o, Output::Send { robot, msg: ToRobot::Mission(_) } if robot == &b)));
        assert!(d.plan_snapshot(t).plans.iter().all(|p| p.robot != b), "charging: not planned");
        // Robot `a` breaks down: its order cannot go to the charging robot and waits.
        let err = RobotEvent::Error { level: ErrorLevel::Fatal, kind: "motor".into(), detail: "stuck".into() };
        d.handle(t.plus_secs(2.0), Input::Robot { robot: a.clone(), msg: FromRobot::Event(err) });
        assert_eq!(d.order(&order).map(|o| o.status), Some(OrderStatus::Pending));
        // Charged: `b` reports the step done and takes the waiting order on the next tick.
        d.handle(t.plus_secs(3.0), Input::Robot { robot: b.clone(), msg: state(95.0) });
        let done = RobotEvent::StepFinished { seq, outcome: StepOutcome::Done };
        d.handle(t.plus_secs(3.0), Input::Robot { robot: b.clone(), msg: FromRobot::Event(done) });
        assert!(!d.robot(&b).expect("b").charging);
        d.handle(t.plus_secs(4.0), Input::Tick);
        assert_eq!(d.order(&order).and_then(|o| o.robot.clone()), Some(b.clone()));
    }

    #[test]
    fn a_broken_robot_loses_unstarted_orders_and_gets_no_new_work_until_resumed() {
        let (mut d, a, b, order, t) = setup();
        let err = RobotEvent::Error { level: ErrorLevel::Fatal, kind: "motor".into(), detail: "left wheel".into() };
        let out = d.handle(t.plus_secs(1.0), Input::Robot { robot: a.clone(), msg: FromRobot::Event(err) });
        assert_eq!(d.order(&order).and_then(|o| o.robot.clone()), Some(b.clone()), "re-assigned at once");
        assert!(d.robot(&a).expect("a").fault.is_some());
        assert!(d.robot(&a).expect("a").plan.is_empty());
        assert!(out.iter().any(|o| matches!(o, Output::Persist(Record::Robot(r)) if r.id == a && r.fault.is_some())));
        assert!(d.plan_snapshot(t).plans.iter().all(|p| p.robot != a), "out of service: not planned");
        d.handle(t.plus_secs(2.0), Input::ResumeRobot { robot: a.clone() });
        assert!(d.robot(&a).expect("a").fault.is_none());
        assert!(d.plan_snapshot(t).plans.iter().any(|p| p.robot == a));
    }
}

#[cfg(test)]
mod handover_tests {
    use super::*;
    use crate::Grams;
    use crate::map::tests::grid;
    use crate::mission::Hello;
    use crate::order::Parcel;

    #[test]
    fn an_order_marked_ready_while_its_robot_is_away_is_picked_up_by_the_next_robot() {
        let t = Timestamp(1_000_000);
        let ll = |a, b| LatLon::new(a, b).expect("valid");
        let mut d = Dispatcher::new(grid(), Config { offline_limit_s: 2.0, ..Config::default() });
        let shop = ShopId::parse("s").expect("valid");
        d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) });
        let (a, b) = (RobotId::parse("a").expect("valid"), RobotId::parse("b").expect("valid"));
        let hello = || {
            FromRobot::Hello(Hello {
                model: RobotModel::default(),
                mission_id: String::new(),
                last_update_id: 0,
                finished: vec![],
            })
        };
        for id in [&a, &b] {
            d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: ll(43.73, 7.42) });
        }
        d.handle(t, Input::Robot { robot: a.clone(), msg: hello() });
        let request = DeliveryRequest {
            dropoff: ll(43.733, 7.423),
            parcel: Parcel::new(Grams(500), 1).expect("valid"),
            ready_at: None,
            deliver_by: t.plus_secs(3_600.0),
        };
        let out = d.handle(
            t,
            Input::PlaceOrder { shop: shop.clone(), idempotency_key: "k".into(), request, pin: "1234".into() },
        );
        let order = super::tests::placed(&out);
        d.handle(t, Input::RobotDisconnected { robot: a.clone() });
        d.handle(t.plus_secs(0.5), Input::MarkReady { shop, order: order.clone() });
        d.handle(t.plus_secs(1.0), Input::Robot { robot: b.clone(), msg: hello() });
        d.handle(t.plus_secs(1.5), Input::Tick);
        d.handle(t.plus_secs(4.0), Input::Tick);
        let o = d.order(&order).expect("order");
        let holder = o.robot.clone().expect("assigned");
        let r = d.robot(&holder).expect("robot");
        eprintln!("{holder}: status {:?}, plan {:?}, base {:?}", o.status, r.plan, r.mission.base);
        assert_eq!(holder, b, "the order moves to the robot that is there");
        assert!(
            r.mission.base.iter().any(|s| matches!(&s.action, StepAction::Pickup { order: x, .. } if x == &order)),
            "and its pickup is released to it: {:?}",
            r.mission.base
        );
    }
}
