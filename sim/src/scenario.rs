//! A scenario: the fleet, the shops, the customers, the demand and the faults of one simulated period, and the
//! seed. [`Scenario`] is the checked value the driver runs; [`ScenarioFile`] is the TOML a person writes (see
//! `scenarios/` for documented examples), parsed strictly (an unknown key is an error, not a silent default)
//! and raised once into a [`Scenario`] by [`ScenarioFile::resolve`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleet_core::LatLon;
use fleet_core::dispatcher::Config;
use fleet_core::robot::RobotModel;
use serde::{Deserialize, Serialize};

use crate::Error;

/// What to simulate. Shops not given as coordinates, and customers not given as a list, are drawn with the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub seed: u64,
    pub robots: usize,
    /// Number of shops: the `shop_sites` first, the rest picked (see `pick_from`).
    pub shops: usize,
    /// Orders per hour over all shops (a Poisson stream), before the hourly profile.
    pub orders_per_hour: f64,
    /// Simulated duration in seconds; generated orders stop arriving one hour before the end so the last can
    /// finish.
    pub duration_s: u64,
    /// After `duration_s`, the run goes on (no new orders) until every placed order has ended, for at most this
    /// long; an order still open then is reported open (stuck).
    #[serde(default = "default_drain_s")]
    pub drain_s: u64,
    /// Simulation step in milliseconds.
    pub dt_ms: u64,
    /// Customers live at most this far (straight line) from their shop.
    pub delivery_radius_m: f64,
    /// Deliver-by time after placing, minutes (uniform in this range).
    pub deadline_min: (f64, f64),
    /// Time until the shop has packed the parcel, minutes (uniform in this range).
    pub prep_min: (f64, f64),
    /// A shop whose order is refused with an offer of a later deliver-by takes it when it is at most this many
    /// minutes later than asked (0: never).
    pub accept_offer_min: f64,
    /// Simulated wall-clock start, ms since the Unix epoch.
    pub start_ms: u64,
    /// Background plan improvement: every this many simulated seconds (0: off), a search of this many
    /// iterations on a snapshot, run in the driver's thread so the run stays deterministic.
    #[serde(default)]
    pub improve_every_s: u64,
    #[serde(default)]
    pub improve_iterations: u64,
    /// People walking trips on the footways: the number out when `pedestrian_profile` is 1.
    #[serde(default = "default_pedestrians")]
    pub pedestrians: usize,
    /// People out by hour of the simulated clock's day (UTC), as a share of `pedestrians`; empty: the
    /// physics world's default (a city centre with a lunch peak).
    #[serde(default)]
    pub pedestrian_profile: Vec<f64>,
    /// Physics steps per simulated second (20..=1000); several per tick when `dt_ms` is longer than a step.
    #[serde(default = "default_physics_hz")]
    pub physics_hz: u32,
    /// The robots' factsheet (every robot the same), sent by each agent in its hello.
    #[serde(default)]
    pub model: RobotModel,
    /// Where robots start, robot `i` at depot `i % len`; empty: robot `i` at shop `i % shops`.
    #[serde(default)]
    pub depots: Vec<LatLon>,
    /// Shops at given coordinates (the first `shop_sites.len()` shops).
    #[serde(default)]
    pub shop_sites: Vec<ShopSite>,
    /// Where the other shops are picked.
    #[serde(default)]
    pub pick_from: PickFrom,
    /// Customers: where drop-offs are drawn from.
    #[serde(default)]
    pub customers: Customers,
    /// Multipliers of `orders_per_hour` by hour of the simulated clock's day (UTC); empty: flat.
    #[serde(default)]
    pub hourly_profile: Vec<f64>,
    /// A recorded order log to replay instead of the generated stream (when not empty).
    #[serde(default)]
    pub replay: Vec<ReplayOrder>,
    /// The dispatcher's tunables.
    #[serde(default)]
    pub dispatch: Config,
    /// Faults injected at given times, in the order given (ties keep file order).
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Scripted people besides the crowd: each group walks back and forth between two points all day, paying
    /// robots no attention (a person stepping out, a crowd crossing).
    #[serde(default)]
    pub walkers: Vec<Walkers>,
    /// Whether building footprints (when the map has them) become walls in the physics world.
    #[serde(default)]
    pub buildings: Buildings,
}

/// A shop at given coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShopSite {
    pub name: String,
    pub pos: LatLon,
}

/// Where shops not given as coordinates come from. Both draw within 1 km of the map's centre, where real shop
/// streets are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PickFrom {
    /// Random nodes of the walkable graph.
    #[default]
    Nodes,
    /// OpenStreetMap points tagged `shop=*` or `amenity=*` (restaurants, cafés, pharmacies); falls back to
    /// nodes on a map without them.
    Osm,
}

/// Where customers live.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Customers {
    /// Random nodes of the walkable graph within the delivery radius of the shop.
    #[default]
    Nodes,
    /// Random residential buildings (their footprint's centre) within the delivery radius; falls back to
    /// nodes on a map without buildings.
    Buildings,
    /// One of these addresses, drawn uniformly among those within the delivery radius of the shop (among all
    /// when none is).
    At(Vec<LatLon>),
}

/// Building footprints in the physics world.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Buildings {
    /// No buildings: robots and pedestrians on an open plane. The default: with walls, robots got stuck in
    /// the lunch example (OSM shops, customers in buildings: 16,476 sidesteps and 105 deliveries against 490
    /// and 220 without walls), though not in the main job; see docs/benchmarks.md.
    #[default]
    Off,
    /// Each footprint's outline as thin walls where it runs between `WALL_CLEARANCE_M` and `WALL_REACH_M` from
    /// the nearest walkable way: closer, a wall would trap robots (arcades, passages, ways mapped through a
    /// building); farther, no robot could touch it.
    Walls,
}

/// One order of a replayed log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayOrder {
    /// Seconds after the start.
    pub at_s: f64,
    /// Index of the shop.
    pub shop: usize,
    pub dropoff: LatLon,
    pub grams: u32,
    pub prep_min: f64,
    pub deadline_min: f64,
}

/// A fault injected at `at_s` seconds after the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Robot `robot` (0-based) stops for good; its platform reports a fatal fault.
    Breakdown { at_s: f64, robot: usize },
    /// A wall across the walkable way nearest to (lat, lon), for `duration_s`.
    BlockSidewalk { at_s: f64, lat: f64, lon: f64, duration_s: f64 },
    /// Messages between robot `robot` and the dispatcher are lost for `duration_s`; then it reconnects.
    LinkDrop { at_s: f64, robot: usize, duration_s: f64 },
    /// The dispatcher process restarts: it is rebuilt from the records it persisted, and every robot reconnects.
    DispatcherRestart { at_s: f64 },
}

impl Fault {
    pub fn at_s(&self) -> f64 {
        match self {
            Fault::Breakdown { at_s, .. }
            | Fault::BlockSidewalk { at_s, .. }
            | Fault::LinkDrop { at_s, .. }
            | Fault::DispatcherRestart { at_s } => *at_s,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Breakdown { .. } => "breakdown",
            Fault::BlockSidewalk { .. } => "block_sidewalk",
            Fault::LinkDrop { .. } => "link_drop",
            Fault::DispatcherRestart { .. } => "dispatcher_restart",
        }
    }
}

fn default_pedestrians() -> usize {
    200
}
fn default_drain_s() -> u64 {
    3_600
}

fn default_physics_hz() -> u32 {
    20
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            seed: 1,
            robots: 10,
            shops: 5,
            orders_per_hour: 30.0,
            duration_s: 8 * 3600,
            drain_s: default_drain_s(),
            dt_ms: 1_000,
            delivery_radius_m: 1_500.0,
            deadline_min: (40.0, 75.0),
            prep_min: (2.0, 10.0),
            accept_offer_min: 20.0,
            // 2026-06-05 10:00:00 UTC, a Friday.
            start_ms: 1_780_653_600_000,
            improve_every_s: 30,
            improve_iterations: 300,
            pedestrians: default_pedestrians(),
            pedestrian_profile: Vec::new(),
            physics_hz: default_physics_hz(),
            model: RobotModel::default(),
            depots: Vec::new(),
            shop_sites: Vec::new(),
            pick_from: PickFrom::default(),
            customers: Customers::default(),
            hourly_profile: Vec::new(),
            replay: Vec::new(),
            dispatch: Config::default(),
            faults: Vec::new(),
            walkers: Vec::new(),
            buildings: Buildings::default(),
        }
    }
}

/// `count` people walking back and forth between `from` and `to` ([lat, lon]) at `speed_mps`, spread evenly
/// along the way at the start. They pay robots no attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Walkers {
    pub from: [f64; 2],
    pub to: [f64; 2],
    #[serde(default = "one")]
    pub count: usize,
    #[serde(default = "walking_speed")]
    pub speed_mps: f64,
}

fn one() -> usize {
    1
}
fn walking_speed() -> f64 {
    1.34
}

fn finite_range(name: &str, v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} must be in [{lo}, {hi}], not {v}"))
    }
}

impl Scenario {
    /// Refuses scenarios that cannot run.
    pub fn check(&self) -> Result<(), String> {
        if self.robots == 0 || self.robots > 10_000 {
            return Err(format!("robots must be 1..=10000, not {}", self.robots));
        }
        if self.shops == 0 || self.shops > 1_000 {
            return Err(format!("shops must be 1..=1000, not {}", self.shops));
        }
        if self.shop_sites.len() > self.shops {
            return Err(format!("{} shop sites given for {} shops", self.shop_sites.len(), self.shops));
        }
        if !(self.orders_per_hour.is_finite() && self.orders_per_hour >= 0.0) {
            return Err("orders per hour must be a non-negative number".into());
        }
        if self.dt_ms == 0 || self.dt_ms > 10_000 {
            return Err("dt must be 1..=10000 ms".into());
        }
        if !(20..=1_000).contains(&self.physics_hz) {
            return Err(format!("physics rate must be 20..=1000 Hz, not {}", self.physics_hz));
        }
        if self.pedestrians > 100_000 {
            return Err(format!("pedestrians must be at most 100000, not {}", self.pedestrians));
        }
        if self.duration_s == 0 || self.duration_s > 31 * 86_400 {
            return Err("duration must be positive and at most 31 days".into());
        }
        finite_range("delivery radius (m)", self.delivery_radius_m, 0.0, 100_000.0)?;
        for w in &self.walkers {
            for [lat, lon] in [w.from, w.to] {
                LatLon::new(lat, lon).map_err(|e| format!("walkers: {e}"))?;
            }
            if w.count == 0 || w.count > 1_000 {
                return Err("walkers: count must be 1..=1000".into());
            }
            finite_range("walkers speed_mps", w.speed_mps, 0.1, 3.0)?;
        }
        for z in &self.dispatch.speed_zones {
            z.checked().map_err(|e| e.to_string())?;
        }
        finite_range("signal_cycle_s", self.dispatch.signal_cycle_s, 10.0, 600.0)?;
        finite_range("signal_green_s", self.dispatch.signal_green_s, 1.0, self.dispatch.signal_cycle_s)?;
        if self.drain_s > 86_400 {
            return Err("drain_s must be at most 86400".into());
        }
        for (name, (a, b)) in [("deadline", self.deadline_min), ("prep", self.prep_min)] {
            if !(a.is_finite() && b.is_finite() && 0.0 <= a && a <= b) {
                return Err(format!("{name} range must be 0 <= low <= high"));
            }
        }
        if self.prep_min.1 >= self.deadline_min.0 {
            return Err("parcels must be ready before the earliest deadline".into());
        }
        self.model.checked().map_err(|e| format!("fleet model: {e}"))?;
        if !self.pedestrian_profile.is_empty() {
            if self.pedestrian_profile.len() != 24 {
                return Err(format!("the pedestrian profile needs 24 values, not {}", self.pedestrian_profile.len()));
            }
            for (h, &m) in self.pedestrian_profile.iter().enumerate() {
                finite_range(&format!("pedestrian profile value for hour {h}"), m, 0.0, 10.0)?;
            }
        }
        if !self.hourly_profile.is_empty() {
            if self.hourly_profile.len() != 24 {
                return Err(format!("the hourly profile needs 24 values, not {}", self.hourly_profile.len()));
            }
            for (h, &m) in self.hourly_profile.iter().enumerate() {
                finite_range(&format!("hourly profile value for hour {h}"), m, 0.0, 1_000.0)?;
            }
        }
        if let Customers::At(v) = &self.customers
            && v.is_empty()
        {
            return Err("the customer list is empty".into());
        }
        for (k, o) in self.replay.iter().enumerate() {
            let row = format!("replayed order {} ", k + 1);
            finite_range(&format!("{row}at_s"), o.at_s, 0.0, self.duration_s as f64)?;
            if o.shop >= self.shops {
                return Err(format!("{row}names shop {} but there are {}", o.shop, self.shops));
            }
            if o.grams == 0 {
                return Err(format!("{row}weighs nothing"));
            }
            finite_range(&format!("{row}prep_min"), o.prep_min, 0.0, 24.0 * 60.0)?;
            finite_range(&format!("{row}deadline_min"), o.deadline_min, 1.0, 7.0 * 24.0 * 60.0)?;
            if o.prep_min >= o.deadline_min {
                return Err(format!("{row}must be ready before its deadline"));
            }
        }
        let c = &self.dispatch;
        finite_range("dispatch.offline_limit_s", c.offline_limit_s, 0.0, 86_400.0)?;
        finite_range("dispatch.pickup_service_s", c.pickup_service_s, 0.0, 3_600.0)?;
        finite_range("dispatch.dropoff_service_s", c.dropoff_service_s, 0.0, 3_600.0)?;
        finite_range("dispatch.crossing_penalty_s", c.crossing_penalty_s, 0.0, 3_600.0)?;
        finite_range("dispatch.max_snap_m", c.max_snap_m, 1.0, 10_000.0)?;
        finite_range("dispatch.tick_every_s", c.tick_every_s, 0.1, 600.0)?;
        finite_range("dispatch.late_buffer_s", c.late_buffer_s, 0.0, 3_600.0)?;
        finite_range("dispatch.plan_quantile", c.plan_quantile, 0.0, 1.0)?;
        finite_range("dispatch.late_check_every_s", c.late_check_every_s, 0.0, 3_600.0)?;
        finite_range("dispatch.blocked_closure_s", c.blocked_closure_s, 0.0, 86_400.0)?;
        finite_range("dispatch.blocked_retry_over_s", c.blocked_retry_over_s, 0.0, 86_400.0)?;
        finite_range("dispatch.idle.every_s", c.idle.every_s, 0.0, 86_400.0)?;
        finite_range("dispatch.idle.demand_window_s", c.idle.demand_window_s, 1.0, 7.0 * 86_400.0)?;
        finite_range("dispatch.idle.station_m", c.idle.station_m, 0.0, 10_000.0)?;
        finite_range("dispatch.idle.battery_margin_pct", c.idle.battery_margin_pct, 0.0, 100.0)?;
        for (k, f) in self.faults.iter().enumerate() {
            let at = f.at_s();
            let name = format!("fault {} ({})", k + 1, f.kind());
            finite_range(&format!("{name} at_s"), at, 0.0, self.duration_s as f64)?;
            match f {
                Fault::Breakdown { robot, .. } | Fault::LinkDrop { robot, .. } if *robot >= self.robots => {
                    return Err(format!("{name} names robot {robot} but robots are 0..{}", self.robots));
                }
                Fault::BlockSidewalk { lat, lon, duration_s, .. } => {
                    LatLon::new(*lat, *lon).map_err(|e| format!("{name}: {e}"))?;
                    finite_range(&format!("{name} duration_s"), *duration_s, 0.0, 31.0 * 86_400.0)?;
                }
                Fault::LinkDrop { duration_s, .. } => {
                    finite_range(&format!("{name} duration_s"), *duration_s, 0.0, 31.0 * 86_400.0)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A scenario file as written (TOML). Every section is optional; what is left out takes the value of
/// [`Scenario::default`]. See `scenarios/monaco-lunch.toml` for every key, documented.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The OpenStreetMap extract, relative to the scenario file.
    pub map: Option<PathBuf>,
    pub seed: Option<u64>,
    pub duration_h: Option<f64>,
    pub duration_s: Option<u64>,
    /// After the day: at most this long for the orders still open to finish (no new ones arrive).
    pub drain_s: Option<u64>,
    /// Simulated start, seconds since the Unix epoch (UTC).
    pub start_unix_s: Option<u64>,
    pub dt_ms: Option<u64>,
    pub physics_hz: Option<u32>,
    pub pedestrians: Option<usize>,
    /// People out by hour (UTC), 24 shares of `pedestrians`.
    pub pedestrian_profile: Option<Vec<f64>>,
    /// "off" or "walls".
    pub buildings: Option<Buildings>,
    #[serde(default)]
    pub fleet: FleetSection,
    #[serde(default)]
    pub shops: Vec<ShopEntry>,
    #[serde(default)]
    pub customers: CustomersSection,
    #[serde(default)]
    pub demand: DemandSection,
    #[serde(default)]
    pub dispatch: DispatchSection,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub walkers: Vec<Walkers>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    pub robots: Option<usize>,
    /// `"at_shops"` (the default) or a list of `[lat, lon]`.
    pub depots: Option<toml::Value>,
    pub speed_mps: Option<f64>,
    pub compartments: Option<u8>,
    pub payload_g: Option<u32>,
    pub battery_wh: Option<f64>,
}

/// One `[[shops]]` entry: `{ name, lat, lon }`, or `{ pick = N }` (optionally `from = "osm" | "nodes"`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopEntry {
    pub name: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub pick: Option<usize>,
    pub from: Option<PickFrom>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomersSection {
    pub radius_m: Option<f64>,
    /// "nodes" (default) or "buildings".
    pub from: Option<String>,
    /// A list of `[lat, lon]` addresses.
    pub at: Option<Vec<LatLon>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandSection {
    pub orders_per_hour_per_shop: Option<f64>,
    /// 24 multipliers, hour 0 to 23 of the simulated clock (UTC).
    pub profile: Option<Vec<f64>>,
    pub prep_min: Option<[f64; 2]>,
    pub deadline_min: Option<[f64; 2]>,
    /// Minutes later than asked a shop still takes an offered deliver-by [20].
    pub accept_offer_min: Option<f64>,
    /// A CSV order log (relative to the scenario file): `at_s,shop,lat,lon,grams,prep_min,deadline_min`.
    pub replay: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSection {
    pub tick_every_s: Option<f64>,
    pub improve_every_s: Option<u64>,
    pub improve_iterations: Option<u64>,
    pub offline_limit_s: Option<f64>,
    pub pickup_service_s: Option<f64>,
    pub dropoff_service_s: Option<f64>,
    pub crossing_penalty_s: Option<f64>,
    pub max_snap_m: Option<f64>,
    /// Turns at narrow ways, crossings and stop spots (fleet-core's `TrafficConfig`; left-out keys keep its
    /// defaults).
    pub traffic: Option<fleet_core::traffic::TrafficConfig>,
    /// Traffic signals: cycle and green, seconds [90, 20].
    pub signal_cycle_s: Option<f64>,
    pub signal_green_s: Option<f64>,
    /// Speed-limited zones: `[[dispatch.speed_zones]]` with name, max_mps and polygon = [[lat, lon], ...].
    pub speed_zones: Option<Vec<fleet_core::map::SpeedZone>>,
    pub max_open_orders_per_shop: Option<usize>,
    /// How orders are given to robots: "insert-improve" (the default), "insert" (no background search) or
    /// "greedy" (one order at a time to the idle robot that can serve it soonest).
    pub policy: Option<fleet_core::dispatcher::Policy>,
    /// Plans hand parcels over at least this long before their deliver-by [120].
    pub late_buffer_s: Option<f64>,
    /// Plans keep drop-offs early enough for the time to them stretched as the fleet's deliveries stretch at
    /// this quantile [0.9; 0 off: plans use the whole window up to the buffer].
    pub plan_quantile: Option<f64>,
    /// Every robot's plan is timed against the clock this often, to re-plan or announce late orders [15; 0 off].
    pub late_check_every_s: Option<f64>,
    /// A sidewalk a robot reports blocked is closed for this long [600].
    pub blocked_closure_s: Option<f64>,
    /// At a first report, a block whose way round adds more than this is tried again instead [120; 0: close at
    /// once].
    pub blocked_retry_over_s: Option<f64>,
    /// Idle positioning (`[dispatch.idle]`: every_s [0: off; 60 turns it on], demand_window_s [3600], station_m [150],
    /// battery_margin_pct [10]; fleet-core's `IdleConfig`).
    pub idle: Option<fleet_core::dispatcher::IdleConfig>,
}

/// The default map when a scenario names none, relative to the working directory.
pub const DEFAULT_MAP: &str = "data/monaco.osm.pbf";

impl ScenarioFile {
    /// Reads and resolves a scenario file; returns the map's path and the checked scenario.
    pub fn load(path: &Path) -> Result<(PathBuf, Scenario), Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::ReadScenario { path: path.to_path_buf(), source })?;
        let file = Self::parse(&text).map_err(|message| Error::ParseScenario { path: path.to_path_buf(), message })?;
        let base = path.parent().unwrap_or(Path::new("."));
        file.resolve(base).map_err(|message| Error::InvalidScenario { path: path.to_path_buf(), message })
    }

    /// Parses TOML; the error names the key and the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Raises the file into a checked scenario; relative paths are taken from `base`. Returns the map's path
    /// (`DEFAULT_MAP` when the file names none) and the scenario.
    pub fn resolve(&self, base: &Path) -> Result<(PathBuf, Scenario), String> {
        let mut s = Scenario::default();
        let map = self.map.as_ref().map_or_else(|| PathBuf::from(DEFAULT_MAP), |m| base.join(m));
        if let Some(v) = self.seed {
            s.seed = v;
        }
        match (self.duration_h, self.duration_s) {
            (Some(_), Some(_)) => return Err("give duration_h or duration_s, not both".into()),
            (Some(h), None) => {
                finite_range("duration_h", h, 0.001, 31.0 * 24.0)?;
                s.duration_s = (h * 3600.0).round() as u64;
            }
            (None, Some(secs)) => s.duration_s = secs,
            (None, None) => {}
        }
        if let Some(v) = self.drain_s {
            s.drain_s = v;
        }
        if let Some(v) = self.start_unix_s {
            s.start_ms = v.checked_mul(1_000).ok_or("start_unix_s is too large")?;
        }
        if let Some(v) = self.dt_ms {
            s.dt_ms = v;
        }
        if let Some(v) = self.physics_hz {
            s.physics_hz = v;
        }
        if let Some(v) = self.pedestrians {
            s.pedestrians = v;
        }
        if let Some(v) = &self.pedestrian_profile {
            s.pedestrian_profile = v.clone();
        }
        if let Some(v) = self.buildings {
            s.buildings = v;
        }

        // Shops first: the fleet's depots and the demand refer to them.
        if !self.shops.is_empty() {
            s.shops = 0;
            let mut pick_from = None;
            for (k, e) in self.shops.iter().enumerate() {
                let name = format!("shops entry {}", k + 1);
                match (e, e.pick) {
                    (ShopEntry { name: Some(n), lat: Some(lat), lon: Some(lon), pick: None, from: None }, _) => {
                        if s.shops != s.shop_sites.len() {
                            return Err(format!("{name}: list shops with coordinates before `pick` entries"));
                        }
                        let pos = LatLon::new(*lat, *lon).map_err(|e| format!("{name} ({n}): {e}"))?;
                        s.shop_sites.push(ShopSite { name: n.clone(), pos });
                        s.shops += 1;
                    }
                    (ShopEntry { name: None, lat: None, lon: None, from, .. }, Some(n)) => {
                        if pick_from.is_some() {
                            return Err(format!("{name}: only one `pick` entry is allowed"));
                        }
                        pick_from = Some(from.unwrap_or(PickFrom::Osm));
                        s.shops += n;
                    }
                    _ => {
                        return Err(format!(
                            "{name}: give either `name`, `lat` and `lon`, or `pick = N` (with an optional `from`)"
                        ));
                    }
                }
            }
            s.pick_from = pick_from.unwrap_or_default();
        }

        let f = &self.fleet;
        if let Some(v) = f.robots {
            s.robots = v;
        }
        match &f.depots {
            None => {}
            Some(toml::Value::String(k)) if k == "at_shops" => {}
            Some(toml::Value::Array(items)) => {
                for (k, item) in items.iter().enumerate() {
                    let num = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
                    let pair: Option<Vec<f64>> = item.as_array().and_then(|a| a.iter().map(num).collect());
                    let Some([lat, lon]) = pair.as_deref().and_then(|p| <[f64; 2]>::try_from(p).ok()) else {
                        return Err(format!("fleet.depots[{k}] must be [lat, lon] (two floats)"));
                    };
                    s.depots.push(LatLon::new(lat, lon).map_err(|e| format!("fleet.depots[{k}]: {e}"))?);
                }
                if s.depots.is_empty() {
                    return Err("fleet.depots is an empty list; leave it out to park robots at the shops".into());
                }
            }
            Some(other) => {
                return Err(format!("fleet.depots must be \"at_shops\" or a list of [lat, lon], not {other}"));
            }
        }
        if let Some(v) = f.speed_mps {
            s.model.max_speed_mps = v;
        }
        if let Some(v) = f.compartments {
            s.model.compartments = v;
        }
        if let Some(v) = f.payload_g {
            s.model.max_payload = fleet_core::Grams(v);
        }
        if let Some(v) = f.battery_wh {
            s.model.battery_wh = v;
        }

        let c = &self.customers;
        if let Some(r) = c.radius_m {
            s.delivery_radius_m = r;
        }
        s.customers = match (c.from.as_deref(), &c.at) {
            (Some(_), Some(_)) => return Err("customers: give `from` or `at`, not both".into()),
            (None | Some("nodes"), None) => Customers::Nodes,
            (Some("buildings"), None) => Customers::Buildings,
            (Some(other), None) => {
                return Err(format!("customers.from must be \"nodes\" or \"buildings\", not {other:?}"));
            }
            (None, Some(at)) => Customers::At(at.clone()),
        };

        let d = &self.demand;
        if d.replay.is_some() && (d.orders_per_hour_per_shop.is_some() || d.profile.is_some()) {
            return Err("demand: a replayed log replaces the generated stream; drop orders_per_hour_per_shop and \
                        profile"
                .into());
        }
        if let Some(v) = d.orders_per_hour_per_shop {
            finite_range("demand.orders_per_hour_per_shop", v, 0.0, 10_000.0)?;
            s.orders_per_hour = v * s.shops as f64;
        }
        if let Some(p) = &d.profile {
            s.hourly_profile = p.clone();
        }
        if let Some([a, b]) = d.prep_min {
            s.prep_min = (a, b);
        }
        if let Some([a, b]) = d.deadline_min {
            s.deadline_min = (a, b);
        }
        if let Some(v) = d.accept_offer_min {
            finite_range("demand.accept_offer_min", v, 0.0, 24.0 * 60.0)?;
            s.accept_offer_min = v;
        }
        if let Some(path) = &d.replay {
            let full = base.join(path);
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read the order log {}: {e}", full.display()))?;
            let names: BTreeMap<&str, usize> =
                s.shop_sites.iter().enumerate().map(|(i, site)| (site.name.as_str(), i)).collect();
            s.replay = parse_replay(&text, &names).map_err(|e| format!("{}: {e}", full.display()))?;
            s.orders_per_hour = 0.0;
        }

        let p = &self.dispatch;
        if let Some(v) = p.improve_every_s {
            s.improve_every_s = v;
        }
        if let Some(v) = p.improve_iterations {
            s.improve_iterations = v;
        }
        let c = &mut s.dispatch;
        for (field, v) in [
            (&mut c.offline_limit_s, p.offline_limit_s),
            (&mut c.pickup_service_s, p.pickup_service_s),
            (&mut c.dropoff_service_s, p.dropoff_service_s),
            (&mut c.crossing_penalty_s, p.crossing_penalty_s),
            (&mut c.max_snap_m, p.max_snap_m),
            (&mut c.tick_every_s, p.tick_every_s),
            (&mut c.late_buffer_s, p.late_buffer_s),
            (&mut c.plan_quantile, p.plan_quantile),
            (&mut c.late_check_every_s, p.late_check_every_s),
            (&mut c.blocked_closure_s, p.blocked_closure_s),
            (&mut c.blocked_retry_over_s, p.blocked_retry_over_s),
        ] {
            if let Some(v) = v {
                *field = v;
            }
        }
        if let Some(v) = p.max_open_orders_per_shop {
            c.max_open_orders_per_shop = v;
        }
        if let Some(t) = p.traffic {
            c.traffic = t;
        }
        if let Some(i) = &p.idle {
            c.idle = i.clone();
        }
        if let Some(v) = p.signal_cycle_s {
            c.signal_cycle_s = v;
        }
        if let Some(v) = p.signal_green_s {
            c.signal_green_s = v;
        }
        if let Some(z) = &p.speed_zones {
            c.speed_zones = z.clone();
        }
        if let Some(v) = p.policy {
            c.policy = v;
        }
        s.faults = self.faults.clone();
        s.walkers = self.walkers.clone();
        s.check()?;
        Ok((map, s))
    }
}

/// Parses an order log: a header line `at_s,shop,lat,lon,grams,prep_min,deadline_min`, then one order a line.
/// `shop` is a shop's name from the scenario or its 0-based index. Blank lines and `#` comments are skipped.
/// Rows are sorted by time (stable), so a log need not be.
pub fn parse_replay(text: &str, shop_names: &BTreeMap<&str, usize>) -> Result<Vec<ReplayOrder>, String> {
    const HEADER: [&str; 7] = ["at_s", "shop", "lat", "lon", "grams", "prep_min", "deadline_min"];
    let mut rows = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((_, header)) = rows.next() else {
        return Err("the order log is empty".into());
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    if cols != HEADER {
        return Err(format!("the header must be `{}`, not `{}`", HEADER.join(","), header.trim()));
    }
    let mut out = Vec::new();
    for (n, line) in rows {
        let line_no = n + 1;
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != HEADER.len() {
            return Err(format!("line {line_no}: {} fields, expected {}", f.len(), HEADER.len()));
        }
        let num = |k: usize| -> Result<f64, String> {
            f[k].parse::<f64>().map_err(|_| format!("line {line_no}: {} is not a number: {:?}", HEADER[k], f[k]))
        };
        let shop = match shop_names.get(f[1]) {
            Some(&i) => i,
            None => f[1].parse::<usize>().map_err(|_| {
                format!("line {line_no}: shop {:?} is neither a named shop of the scenario nor an index", f[1])
            })?,
        };
        let dropoff = LatLon::new(num(2)?, num(3)?).map_err(|e| format!("line {line_no}: {e}"))?;
        let grams = f[4].parse::<u32>().map_err(|_| format!("line {line_no}: grams must be a whole number"))?;
        out.push(ReplayOrder { at_s: num(0)?, shop, dropoff, grams, prep_min: num(5)?, deadline_min: num(6)? });
    }
    out.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    Ok(out)
}
