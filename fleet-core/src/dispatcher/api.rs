//! The dispatcher's vocabulary: its tunables ([`Config`]), what goes in ([`Input`]), what comes out
//! ([`Output`], [`Reply`], [`Record`]s to persist) and the values shops and operators see ([`Quote`], [`Shop`]).

use serde::{Deserialize, Serialize};

use crate::mission::{FromRobot, ToRobot};
use crate::order::{DeliveryRequest, Order, Place};
use crate::planner::improve::Proposal;
use crate::robot::Robot;
use crate::traffic::TrafficConfig;
use crate::{CoreError, LatLon, NodeId, OrderId, Refusal, RobotId, ShopId, Timestamp};

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
    /// Traffic signals at crossings: the cycle and the pedestrians' green in it, seconds. The router counts the
    /// expected wait (red squared over twice the cycle: 27 s with the defaults, 90 s and 20 s); the simulator
    /// runs the lights.
    #[serde(default = "default_signal_cycle_s")]
    pub signal_cycle_s: f64,
    #[serde(default = "default_signal_green_s")]
    pub signal_green_s: f64,
    /// A robot offline this long loses the orders it has not started loading (they go to other robots); one
    /// with parcels aboard is flagged to operators instead.
    pub offline_limit_s: f64,
    /// A sidewalk a robot reports blocked is closed (both ways) for this long, then reopens by itself.
    #[serde(default = "default_blocked_closure_s")]
    pub blocked_closure_s: f64,
    /// A first report of a blocked sidewalk whose way round would add more than this to the robot's drive
    /// (or where there is no way round) is not acted on by closing it: the robot is sent the same way again,
    /// since most blocks (a crowd, a robot turning) clear within a minute. A second report of that sidewalk
    /// within `blocked_closure_s` closes it. 0: close at the first report.
    #[serde(default = "default_blocked_retry_over_s")]
    pub blocked_retry_over_s: f64,
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
    /// Turns at narrow ways, crossings and stop spots ([`crate::traffic`]).
    #[serde(default)]
    pub traffic: TrafficConfig,
    /// Areas where robots go no faster than a limit: routes count the slower time, and the drive through one
    /// is released at the limit.
    #[serde(default)]
    pub speed_zones: Vec<crate::map::SpeedZone>,
    /// How orders are given to robots ([`Policy`]).
    #[serde(default)]
    pub policy: Policy,
    /// Every robot's plan is timed from where it is at least this often, to re-plan or announce orders that
    /// would be late (0 turns the watch off).
    #[serde(default = "default_late_check_every_s")]
    pub late_check_every_s: f64,
    /// Plans hand each parcel over at least this long before its deliver-by time, so that a door queue or a
    /// crowd on the way does not make it late (see docs/benchmarks.md for how it was chosen).
    #[serde(default = "default_late_buffer_s")]
    pub late_buffer_s: f64,
    /// Plans keep each drop-off early enough that the time to it, stretched as the fleet's deliveries have
    /// stretched at this quantile (actual over planned time to hand-over, [`crate::learn`]), still ends by the
    /// deliver-by less the buffer. 0 turns it off: plans then use the whole window up to the buffer.
    #[serde(default = "default_plan_quantile")]
    pub plan_quantile: f64,
    /// A robot with a drive released that has not moved 2 m in this long raises an alert (0: never).
    #[serde(default = "default_stall_alert_s")]
    pub stall_alert_s: f64,
    /// A robot below this battery with a parcel aboard raises an alert.
    #[serde(default = "default_low_battery_aboard_pct")]
    pub low_battery_aboard_pct: f64,
    /// Idle robots wait near the shops, shared out by recent demand ([`super::IdleConfig`]).
    #[serde(default)]
    pub idle: super::IdleConfig,
    /// The service area this dispatcher serves, when the city is cut into several ([`crate::area`]): shops and
    /// drop-offs outside it are refused. `None`: the whole map.
    #[serde(default)]
    pub service_area: Option<crate::area::ServiceArea>,
}

fn default_stall_alert_s() -> f64 {
    180.0
}

fn default_low_battery_aboard_pct() -> f64 {
    15.0
}

fn default_late_buffer_s() -> f64 {
    120.0
}

fn default_plan_quantile() -> f64 {
    0.9
}

fn default_late_check_every_s() -> f64 {
    15.0
}

/// How the dispatcher gives orders to robots. The default is the product; the others are the honest
/// baselines it is measured against (`trundle-sim compare`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Each order is inserted where it costs least into any robot's plan (robots carry several orders at
    /// once), and a background search improves the plans ([`Config::improve_every_s`]).
    #[default]
    InsertImprove,
    /// The same insertion, without the background search.
    Insert,
    /// One order at a time: each order goes to the idle robot (nothing planned) that can serve it soonest; no
    /// batching, no improvement. Orders no idle robot can take are refused.
    Greedy,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::InsertImprove, Policy::Insert, Policy::Greedy];

    pub fn name(self) -> &'static str {
        match self {
            Policy::InsertImprove => "insert-improve",
            Policy::Insert => "insert",
            Policy::Greedy => "greedy",
        }
    }

    /// Whether plans are improved in the background.
    pub fn improves(self) -> bool {
        self == Policy::InsertImprove
    }

    /// Whether a robot with work planned may be given more.
    pub fn batches(self) -> bool {
        self != Policy::Greedy
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
            format!("unknown policy {s:?}; one of {}", names.join(", "))
        })
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn default_signal_cycle_s() -> f64 {
    90.0
}
fn default_signal_green_s() -> f64 {
    20.0
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

fn default_blocked_retry_over_s() -> f64 {
    120.0
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
            signal_cycle_s: default_signal_cycle_s(),
            signal_green_s: default_signal_green_s(),
            offline_limit_s: 120.0,
            blocked_closure_s: default_blocked_closure_s(),
            blocked_retry_over_s: default_blocked_retry_over_s(),
            charge_below_pct: default_charge_below_pct(),
            charge_to_pct: default_charge_to_pct(),
            tick_every_s: default_tick_every_s(),
            improve_every_s: default_improve_every_s(),
            traffic: TrafficConfig::default(),
            speed_zones: Vec::new(),
            policy: Policy::default(),
            late_check_every_s: default_late_check_every_s(),
            late_buffer_s: default_late_buffer_s(),
            plan_quantile: default_plan_quantile(),
            idle: super::IdleConfig::default(),
            stall_alert_s: default_stall_alert_s(),
            low_battery_aboard_pct: default_low_battery_aboard_pct(),
            service_area: None,
        }
    }
}

impl Config {
    /// The routing profile for the default robot, with this configuration's crossing costs.
    pub fn profile_base(&self) -> crate::map::Profile {
        crate::map::Profile {
            speed_mps: crate::robot::RobotModel::default().max_speed_mps,
            crossing_penalty_s: self.crossing_penalty_s,
            signal_wait_s: crate::map::expected_signal_wait_s(self.signal_cycle_s, self.signal_green_s),
        }
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
    /// The dispatch policy an operator set ([`Input::SetPolicy`]); it outlives restarts and wins over the
    /// configured one.
    #[serde(default)]
    pub policy: Option<Policy>,
    /// The fingerprint of the map the stored node ids refer to ([`crate::map::MapGraph::fingerprint`]); a
    /// store is read back only on a map with the same one ([`super::Dispatcher::check_map`]).
    #[serde(default)]
    pub map_fingerprint: Option<String>,
    /// The id the last alert got.
    #[serde(default)]
    pub last_alert_id: u64,
}

/// Something to write to the store. Records of one `handle` call are written together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Order(Box<Order>),
    Robot(Box<Robot>),
    Shop(Shop),
    Meta(Meta),
    /// What the fleet taught the dispatcher about time ([`crate::learn`]).
    Learned(crate::learn::Learned),
    /// The alerts not yet acknowledged, oldest first.
    Alerts(Vec<OpenAlert>),
}

/// An alert raised for operators and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAlert {
    pub id: u64,
    pub robot: Option<RobotId>,
    pub message: String,
    pub raised_at: Timestamp,
}

/// Alerts kept open at most; past this the oldest is dropped (and counted in its place's message).
pub const MAX_OPEN_ALERTS: usize = 1_000;

/// The answer to a quote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub feasible: bool,
    /// Why not, when not feasible.
    pub reason: Option<Refusal>,
    pub robot: Option<RobotId>,
    pub eta_pickup: Option<Timestamp>,
    /// The hand-over the fleet meets half the time ([`crate::learn`]).
    pub eta_dropoff: Option<Timestamp>,
    /// The hand-over the fleet meets nine times in ten. It may be after the deliver-by time: an order is
    /// accepted when its plan hands over in time, and this says how sure that is.
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
    /// An operator hands an idle robot (nothing planned, nothing aboard, standing still) over to another service
    /// area ([`super::handoff`]): it leaves this dispatcher's fleet, and its record, with `handed_to` set, is
    /// what the store turns into the hand-off the other area's dispatcher takes up.
    HandOffRobot {
        robot: RobotId,
        to_area: String,
    },
    /// A robot handed over by another area joins this fleet, as it stood there (its mission numbering goes on,
    /// so the robot's agent takes the next update). Refused if this fleet has a robot of that id.
    AdoptRobot {
        robot: Box<Robot>,
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
        /// The SHA-256 (hex) of the customer's tracking-link secret, drawn by the caller; `None` makes no link.
        /// A replayed placing with a link replaces the order's link (the caller lost the first answer).
        link_hash: Option<String>,
    },
    /// Gives an order a new customer tracking link (the hash of its secret), replacing the old one, which stops
    /// working. For the owning shop only, while the order is open.
    NewTrackingLink {
        shop: ShopId,
        order: OrderId,
        link_hash: String,
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
    /// Changes how orders are given to robots from now on (plans already made stay). Operators reach it
    /// through `trundle policy set NAME --gate GATE.toml`, which runs the simulator's gate on the change first.
    SetPolicy {
        policy: Policy,
    },
    /// Replaces the map ([`super::mapswap`]): everything that names a node moves over by its coordinates, open
    /// orders the new map cannot serve are cancelled with the reason, and the swap is refused whole while a
    /// robot has steps under way or when a shop, a robot or a parcel aboard would have no place on it.
    /// Operators reach it through `trundle map apply FILE --gate GATE.toml`.
    LoadMap {
        map: super::NewMap,
    },
    /// An operator moves an order that has not started loading to another robot, which must be available and
    /// fit it in before its deliver-by ([`super::reassign`]).
    ReassignOrder {
        order: OrderId,
        robot: RobotId,
    },
    /// An operator acknowledges an open alert: it is closed.
    AckAlert {
        id: u64,
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
    MapSwapped(Box<super::MapSwap>),
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
    /// Something an operator should see (a blocked edge, a robot error). Its id is set by the dispatcher when
    /// it is raised (code that raises one writes 0); it stays open until an operator acknowledges it.
    Alert {
        id: u64,
        robot: Option<RobotId>,
        message: String,
    },
}
