//! The summary of a run: what happened to every order, how fast deliveries were, how much the fleet drove,
//! what each robot did and which faults struck. [`Report`] is `report.json`; [`Trace`] holds the time series
//! only the charts of `report.html` need (see [`crate::html`]).
//!
//! Every collection here is a `Vec` in a fixed order or a `BTreeMap`, so a report serialises to the same bytes
//! for the same scenario and seed.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::Scenario;
use crate::physics::{Collisions, Fault, Faults, SocialNav};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub map_nodes: usize,
    /// Building walls in the physics world (0 when buildings are off or the map has none).
    pub building_walls: usize,
    pub orders_requested: usize,
    /// Refused at placement, by reason (offers of a later deliver-by the shop did not take included).
    pub refused: BTreeMap<String, usize>,
    /// Orders refused for time whose shop took the offered later deliver-by (counted in `placed`).
    pub offers_taken: usize,
    pub placed: usize,
    pub delivered: usize,
    pub on_time: usize,
    pub late: usize,
    pub failed: usize,
    /// Failed orders by the dispatcher's reason.
    pub failed_reasons: BTreeMap<String, usize>,
    pub returned: usize,
    /// Placed orders not in a terminal state at the end (after the drain).
    pub open_at_end: usize,
    /// Minutes the run went on after the day (no new orders) until every placed order had ended, or the
    /// scenario's drain limit.
    pub drain_min: f64,
    /// Delivered orders handed over by the drop-off ETA their quote gave at placing, and by its latest time.
    pub by_quoted_eta: usize,
    pub by_quoted_latest: usize,
    /// Hand-over minus the quoted ETA over delivered orders, minutes (positive: later than quoted).
    pub quote_error_min_p50: f64,
    pub quote_error_min_p90: f64,
    /// Orders the dispatcher announced as late (a DELAYED notice to the shop), and of the late deliveries those
    /// announced before their deliver-by passed.
    pub delayed_notices: usize,
    pub late_announced_in_time: usize,
    /// What the dispatcher learned by the end: the drive factor it planned with (1 is the map's free flow), the
    /// legs it learned from, and the promise ratios its quotes used (median and 90th percentile of actual over
    /// planned time to hand-over).
    pub learned_travel_factor: f64,
    pub learned_legs: u64,
    pub learned_promise_p50: f64,
    pub learned_promise_p90: f64,
    /// Drives that took idle robots to wait near the shops by their recent demand.
    pub idle_moves: u64,
    /// Minutes from placing to hand-over, over delivered orders.
    pub delivery_min_mean: f64,
    pub delivery_min_p50: f64,
    pub delivery_min_p90: f64,
    pub delivery_min_p95: f64,
    pub delivery_min_max: f64,
    pub distance_km: f64,
    /// Battery used over the fleet, percent of one battery (summed over robots).
    pub energy_used_pct: f64,
    /// The same in watt-hours, for the scenario's battery size.
    pub energy_used_wh: f64,
    /// Contacts between a robot and something else, from the physics engine, one per contact start.
    pub collisions: Collisions,
    /// Times something came closer than 0.5 m ahead of a driving robot.
    pub near_misses: u64,
    /// Times a robot made no progress along its path for longer than the blocked threshold (30 s).
    pub blocked_events: u64,
    /// BLOCKED events the agents sent the dispatcher (asking it to route around a segment).
    pub reroutes: u64,
    /// Times a robot stepped aside around something in its way.
    pub sidesteps: u64,
    /// Robots in contacts by fault, one per robot in a contact: at fault when it moved towards the other,
    /// struck while stopped, or the other at fault (it came from the side or behind).
    pub contact_faults: Faults,
    /// Social-navigation figures: least gap to a person (m), personal-space intrusions (< 0.45 m) and the
    /// seconds inside, least time-to-collision (s) and alerts under 1 s, robot-seconds stopped while driving.
    pub social: SocialNav,
    /// The people on the footways: how many were out on average and at most, trips walked, and how many of
    /// them give way to robots (attentive), notice them late (distracted) or never (impassive).
    pub crowd: CrowdReport,
    /// Traffic management at bottlenecks: the map's narrow ways and crossings, and the dispatcher's turns.
    pub traffic: TrafficReport,
    /// Speed-limited zones: the fastest any robot drove inside each, against its limit.
    pub speed_zones: Vec<crate::physics::ZoneOutcome>,
    /// How far a robot at its full speed travels before it stands when something appears in its way: one
    /// physics step to see it, then braking at twice the normal rate (what the controller does for an obstacle
    /// inside its stop gap), metres.
    pub stopping_distance_m: f64,
    /// Share of the robots' driving time spent stopped (slower than 0.05 m/s).
    pub stopped_share: f64,
    /// Heading change per metre driven, radians (0 for straight driving).
    pub path_irregularity_rad_per_m: f64,
    /// Every robot's side of every contact, in order.
    pub contacts: Vec<ContactOutcome>,
    pub deliveries_per_robot_hour: f64,
    /// Mean over robots of the share of the period spent driving, serving a compartment or waiting for a PIN.
    pub utilisation_mean: f64,
    /// Background improvements applied, and the planned travel they saved (minutes).
    pub improvements: usize,
    pub improvement_saved_min: f64,
    /// Faults applied, in the order they struck.
    pub faults: Vec<AppliedFault>,
    /// Messages lost on a link that was down.
    pub lost_messages: u64,
    /// Alerts the dispatcher raised for operators (blocked robots, robot errors, robots offline too long).
    pub alerts: u64,
    pub ticks: u64,
    pub physics_steps: u64,
    /// Per robot, in robot order.
    pub robots: Vec<RobotOutcome>,
    /// Per placed order, in id order.
    pub orders: Vec<OrderOutcome>,
}

/// One robot's side of one contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactOutcome {
    pub at_s: f64,
    pub robot: String,
    /// `pedestrian 12`, `robot r03` or `static`.
    pub other: String,
    pub fault: Fault,
    /// The robot's speed and its speed towards the other at contact, and the other's speed (m/s).
    pub robot_speed_mps: f64,
    pub closing_mps: f64,
    pub other_speed_mps: f64,
    /// Where the robot stood.
    pub lat: f64,
    pub lon: f64,
}

/// A fault as it struck.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedFault {
    pub at_s: f64,
    pub kind: String,
    pub detail: String,
}

/// What one robot did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RobotOutcome {
    pub id: String,
    pub distance_km: f64,
    pub battery_end_pct: f64,
    /// Share of the period spent driving, serving a compartment or waiting at a door for the PIN.
    pub utilisation: f64,
    pub deliveries: usize,
    pub broken: bool,
}

/// What became of one placed order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderOutcome {
    pub id: String,
    pub shop: String,
    /// The order's final status (`DELIVERED`, `FAILED`, ...).
    pub status: String,
    /// The dispatcher's reason for a failure, a cancellation or a return.
    pub reason: Option<String>,
    /// Every robot the order was assigned to, in order: more than one when it was re-assigned.
    pub robots: Vec<String>,
    /// Seconds after the start.
    pub placed_s: f64,
    pub delivered_s: Option<f64>,
    /// The deliver-by time the order was placed with (an offer's, where the shop took one).
    pub deliver_by_s: f64,
    /// When the dispatcher announced the order late (a DELAYED update), if it did.
    pub delayed_s: Option<f64>,
    /// What the quote promised at placing: the drop-off ETA and the latest time, seconds after the start.
    pub quoted_eta_s: Option<f64>,
    pub quoted_latest_s: Option<f64>,
    /// Placed on an offered later deliver-by than the shop asked (its wait is long by the shop's choice).
    pub took_offer: bool,
    /// Minutes from placing to hand-over.
    pub minutes: Option<f64>,
    pub on_time: Option<bool>,
}

/// Orders placed and delivered per bucket of the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    pub bucket_s: u64,
    pub placed: Vec<u32>,
    pub delivered: Vec<u32>,
}

/// The time series behind the charts, in local metres (x east, y north) where they are positions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// Positions are sampled every `sample_s`, battery levels every `6 * sample_s`; both from the start.
    pub sample_s: u64,
    pub xy: Vec<Vec<[f32; 2]>>,
    pub battery_pct: Vec<Vec<f32>>,
    pub series: Series,
    /// Delivery times, minutes, sorted.
    pub delivery_minutes: Vec<f64>,
    /// The walkable graph's edges (each once).
    pub edges: Vec<([f64; 2], [f64; 2])>,
    pub shops: Vec<[f64; 2]>,
}

/// Traffic management's figures of a run (see [`Report::traffic`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TrafficReport {
    pub enabled: bool,
    pub narrow_ways: u32,
    pub crossings: u32,
    /// Claims granted at once; claims that waited, with their total and longest wait (s).
    pub granted_at_once: u64,
    pub waited: u64,
    pub wait_s_total: f64,
    pub wait_s_max: f64,
    /// Deadlocks found (robots waiting on each other in a cycle), and re-routes around a held bottleneck.
    pub deadlocks: u64,
    pub reroutes: u64,
    /// Signalised crossings on the map; crossings robots started across them, of those on red; waits at a red
    /// and the robot-seconds spent waiting.
    pub signalised: usize,
    pub signal_crossed: u64,
    pub signal_entered_on_red: u64,
    pub signal_waits: u64,
    pub signal_wait_s: f64,
}

/// The crowd's figures of a run (see [`Report::crowd`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CrowdReport {
    pub mean_out: f64,
    /// The mean number of people out with a body in the physics world: those near a robot. The others walk
    /// and react just the same, moved by the crowd itself (nothing can touch or sense them).
    pub mean_in_physics: f64,
    pub peak_out: u64,
    pub trips: u64,
    pub attentive: u64,
    pub distracted: u64,
    pub impassive: u64,
}

impl Report {
    pub fn on_time_rate(&self) -> f64 {
        if self.delivered == 0 { 0.0 } else { self.on_time as f64 / self.delivered as f64 }
    }
    /// Share of delivered orders handed over by their quoted latest time.
    pub fn by_quoted_latest_rate(&self) -> f64 {
        if self.delivered == 0 { 0.0 } else { self.by_quoted_latest as f64 / self.delivered as f64 }
    }
    /// Orders refused at placement, over every reason.
    pub fn refusals(&self) -> usize {
        self.refused.values().sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        writeln!(f, "Trundle simulation summary")?;
        writeln!(
            f,
            "  scenario         seed {}, {} robots, {} shops, {:.1} orders/h, {:.1} h, dt {} ms, policy {}",
            s.seed,
            s.robots,
            s.shops,
            s.orders_per_hour,
            s.duration_s as f64 / 3600.0,
            s.dt_ms,
            s.dispatch.policy
        )?;
        writeln!(
            f,
            "  physics          {} Hz, {} pedestrians, {} building walls",
            s.physics_hz, s.pedestrians, self.building_walls
        )?;
        let c = &self.crowd;
        writeln!(
            f,
            "  people out       mean {:.0} ({:.0} near robots), at most {}; {} trips; {} attentive, {} distracted, \
             {} impassive",
            c.mean_out, c.mean_in_physics, c.peak_out, c.trips, c.attentive, c.distracted, c.impassive
        )?;
        writeln!(f, "  map              {} nodes", self.map_nodes)?;
        writeln!(f, "  orders requested {}", self.orders_requested)?;
        writeln!(f, "  orders placed    {} ({} on an offered later deliver-by)", self.placed, self.offers_taken)?;
        for (why, n) in &self.refused {
            writeln!(f, "  refused          {n} ({why})")?;
        }
        writeln!(
            f,
            "  delivered        {} ({} on time, {} late; on-time rate {:.1}%)",
            self.delivered,
            self.on_time,
            self.late,
            100.0 * self.on_time_rate()
        )?;
        let share = |n: usize| if self.delivered == 0 { 0.0 } else { 100.0 * n as f64 / self.delivered as f64 };
        writeln!(
            f,
            "  promises         by the quoted ETA {} ({:.1}%), by the quoted latest {} ({:.1}%); hand-over minus \
             quoted ETA p50 {:.1} min, p90 {:.1} min",
            self.by_quoted_eta,
            share(self.by_quoted_eta),
            self.by_quoted_latest,
            share(self.by_quoted_latest),
            self.quote_error_min_p50,
            self.quote_error_min_p90
        )?;
        writeln!(
            f,
            "  late notices     {} orders announced late; {} of {} late deliveries announced before their deliver-by",
            self.delayed_notices, self.late_announced_in_time, self.late
        )?;
        writeln!(
            f,
            "  learned          drives take {:.2}x free flow ({} legs); quotes scale planned time by {:.2} (ETA) and \
             {:.2} (latest)",
            self.learned_travel_factor, self.learned_legs, self.learned_promise_p50, self.learned_promise_p90
        )?;
        writeln!(f, "  idle positioning {} drives to wait near the shops", self.idle_moves)?;
        writeln!(f, "  failed           {}", self.failed)?;
        for (why, n) in &self.failed_reasons {
            writeln!(f, "    {n} ({why})")?;
        }
        writeln!(f, "  returned         {}", self.returned)?;
        writeln!(
            f,
            "  open at end      {} (the run went on {:.1} min after the day)",
            self.open_at_end, self.drain_min
        )?;
        writeln!(
            f,
            "  delivery time    mean {:.1} min, p50 {:.1} min, p90 {:.1} min, p95 {:.1} min, max {:.1} min",
            self.delivery_min_mean,
            self.delivery_min_p50,
            self.delivery_min_p90,
            self.delivery_min_p95,
            self.delivery_min_max
        )?;
        writeln!(f, "  fleet distance   {:.2} km", self.distance_km)?;
        writeln!(
            f,
            "  energy used      {:.1}% of a battery over the fleet ({:.0} Wh)",
            self.energy_used_pct, self.energy_used_wh
        )?;
        let c = &self.collisions;
        writeln!(
            f,
            "  collisions       {} (robot-robot {}, robot-pedestrian {}, robot-static {})",
            c.total(),
            c.robot_robot,
            c.robot_pedestrian,
            c.robot_static
        )?;
        let x = &self.contact_faults;
        writeln!(
            f,
            "  contact faults   robot at fault {} (with people {}, with robots {}), struck while stopped {}, \
             other at fault {}",
            x.robot_at_fault,
            x.robot_at_fault_pedestrian,
            x.robot_at_fault_robot,
            x.struck_while_stopped,
            x.other_at_fault
        )?;
        let sn = &self.social;
        let opt = |v: Option<f64>, unit: &str| v.map_or_else(|| "none".to_string(), |v| format!("{v:.2} {unit}"));
        writeln!(
            f,
            "  people           closest {}, {} personal-space intrusions ({:.0} s), least time-to-collision {} \
             ({} under 1 s)",
            opt(sn.min_person_distance_m, "m"),
            sn.intrusions,
            sn.intrusion_s,
            opt(sn.min_ttc_s, "s"),
            sn.ttc_under_1s
        )?;
        writeln!(
            f,
            "  driving          stopped {:.1}% of driving time, path irregularity {:.3} rad/m; stopping distance at \
             {:.1} m/s {:.2} m",
            100.0 * self.stopped_share,
            self.path_irregularity_rad_per_m,
            self.scenario.model.max_speed_mps,
            self.stopping_distance_m
        )?;
        writeln!(
            f,
            "  on the way       off it {:.0} s of {:.1} h driving (body over 0.1 m beyond the way's edge), at most {:.2} m \
             beyond",
            sn.off_way_s,
            sn.driving_s / 3600.0,
            sn.off_way_max_m
        )?;
        let t = &self.traffic;
        if t.enabled {
            writeln!(
                f,
                "  traffic          {} narrow ways, {} crossings; {} turns at once, {} waited ({:.0} s in all, \
                 longest {:.0} s); {} deadlocks, {} re-routes round a held way",
                t.narrow_ways,
                t.crossings,
                t.granted_at_once,
                t.waited,
                t.wait_s_total,
                t.wait_s_max,
                t.deadlocks,
                t.reroutes
            )?;
        } else {
            writeln!(f, "  traffic          off (routes released whole; robots avoid each other locally)")?;
        }
        writeln!(
            f,
            "  signals          {} signalised crossings; crossed {} times, {} on red; {} waits for green ({:.0} s in all)",
            t.signalised, t.signal_crossed, t.signal_entered_on_red, t.signal_waits, t.signal_wait_s
        )?;
        for z in &self.speed_zones {
            writeln!(
                f,
                "  speed zone       {}: limit {:.2} m/s, fastest inside {:.2} m/s, {:.0} robot-s inside",
                z.name, z.max_mps, z.fastest_mps, z.inside_s
            )?;
        }
        writeln!(f, "  near misses      {}", self.near_misses)?;
        writeln!(
            f,
            "  blocked          {} (sidesteps {}, re-routes asked {})",
            self.blocked_events, self.sidesteps, self.reroutes
        )?;
        writeln!(f, "  deliveries/robot-hour {:.2}", self.deliveries_per_robot_hour)?;
        writeln!(f, "  utilisation      {:.1}% (mean over robots)", 100.0 * self.utilisation_mean)?;
        writeln!(
            f,
            "  plan improvements {} applied, {:.1} min of planned travel saved",
            self.improvements, self.improvement_saved_min
        )?;
        for x in &self.faults {
            writeln!(f, "  fault at {:>6.0} s {}: {}", x.at_s, x.kind, x.detail)?;
        }
        if self.lost_messages > 0 {
            writeln!(f, "  messages lost    {} (links down)", self.lost_messages)?;
        }
        write!(f, "  simulated ticks  {} ({} physics steps)", self.ticks, self.physics_steps)
    }
}
