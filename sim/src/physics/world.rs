//! The physics world that ties the parts together around rapier's world: the ground, robot bodies, walls and
//! obstacles, the pedestrians' [`Crowd`], one fixed step (pedestrians turn, each robot senses and its
//! [`controller`](super::controller) sets its velocity, rapier integrates, then contacts, odometers and
//! batteries are accounted), the agent's commands to a robot (a drive and its parking slot, a service, a
//! charge, pause and resume, a breakdown) and the events it polls. [`RobotView`] is one robot as its agent's
//! [`Platform`].

use std::f32::consts::PI;

use fleet_core::map::MapGraph;
use fleet_core::{LatLon, Timestamp};
use rand::Rng;
use rapier3d::prelude::{
    ActiveEvents, ColliderBuilder, Group, InteractionGroups, InteractionTestMode, PhysicsWorld as RapierWorld, Pose,
    Real, RigidBodyBuilder, RigidBodyHandle, Rotation, SharedShape, Vector,
};
use robot_agent::agent::{PlatformCommand, PlatformEvent, Telemetry};
// Battery used per metre driven and per hour switched on, percent: the same figures as `KinematicPlatform`,
// so switching bodies does not change the fleet's energy model.
use robot_agent::platform::{CHARGE_PCT_PER_H, DRAIN_PCT_PER_H, DRAIN_PCT_PER_M, Platform};

use super::contacts::Contacts;
use super::controller::{self, Ahead, Blocked, BodyState, Clock, Controller, OtherRobot, Task};
use super::neighbours::{Grid, Kind, Presence};
use super::pedestrians::{Crowd, CrowdStats, PED_RADIUS};
use super::projection::Projection;
use super::safety::{self, Contact, Episodes, Fault, Other};
use super::sensing::Sensor;
use super::signals::{OnPath, SignalStats, Signals};
use super::{
    G_GROUND, G_PED, G_ROBOT, G_STATIC, K_GROUND, K_PED, K_ROBOT, K_STATIC, PhysicsConfig, PhysicsStats, ROBOT_HALF,
    ROBOT_MASS_KG, dist, norm,
};
use crate::Error;

/// Clearance under the robot body: the ground never touches it (see the module docs of [`super`]).
const HOVER: Real = 0.01;

/// What a broken-down robot's platform reports.
const BROKEN: &str = "drive failure: the robot cannot move";

/// An obstacle that can be taken away again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObstacleId(RigidBodyHandle);

/// A robot of the world: its body, its controller and what the world keeps for it.
#[derive(Debug, Clone)]
struct Robot {
    body: RigidBodyHandle,
    ctl: Controller,
    events: Vec<PlatformEvent>,
    odometer_m: f64,
    battery_pct: f64,
    /// Battery drained so far, percent (charging does not undo it).
    used_pct: f64,
    last_xy: [Real; 2],
    /// Where the robot will stand when its current (or last) drive ends: the stop or a parking slot around it
    /// (see [`parking_slot`]); where it was placed before its first drive.
    parked: [Real; 2],
    /// Battery drain relative to the reference 1 kWh battery (a bigger battery drains its percentage slower).
    drain_scale: f64,
    /// Broken down: the body never moves again and every command is answered with a fatal fault.
    broken: bool,
    /// The robot whose predicted course made this one give way at the last step ([`PhysicsWorld::look_out`]).
    giving_way_to: Option<usize>,
    /// The yaw rate its controller commanded at the last step, rad/s (a push may turn the body too; that is not
    /// the robot's doing).
    yaw_cmd: Real,
    /// The speed along its heading its controller commanded at the last step, m/s: negative while it backs away
    /// from a robot too close to turn (the controller's own speed stays 0 then), so that contacts are judged on
    /// how the robot really moved.
    speed_cmd: Real,
    /// The signalised crossings on the current drive's path ([`Signals::on_path`]).
    crossings: Vec<OnPath>,
    /// The crossing whose kerb line the robot's front was short of at the last step (within `KERB_LOOK_M`), and
    /// whether a red held it there.
    kerb: Option<(u32, bool)>,
    /// The index of the current drive's last path point when the drive was cut short of its end to park along
    /// the way ([`slot_along`]): that point lies between two nodes, so passing it is not reported.
    cut_end: Option<usize>,
}

/// The physics world. See the module docs of [`super`].
pub struct PhysicsWorld {
    world: RapierWorld,
    proj: Projection,
    cfg: PhysicsConfig,
    dt: Real,
    start: Timestamp,
    robots: Vec<Robot>,
    crowd: Crowd,
    contacts: Contacts,
    stats: PhysicsStats,
    sensor: Sensor,
    /// Every robot's side of every contact, in order.
    contact_log: Vec<Contact>,
    /// The contacts that started in the step just taken (scratch).
    fresh: Vec<(u128, u128)>,
    episodes: Episodes,
    /// Every robot and person by grid cell, as the last step left them.
    grid: Grid,
    /// Which cells have robots in them: who of the crowd needs a body in the physics world.
    presence: Presence,
    /// Whether `grid` holds the bodies as they stand (bodies added since make it stale).
    grid_fresh: bool,
    /// The map's traffic signals, when the world runs them ([`PhysicsWorld::set_signals`]).
    signals: Option<Signals>,
    signal_stats: SignalStats,
    /// Speed-limited zones, watched ([`PhysicsWorld::watch_zones`]).
    zones: Vec<WatchedZone>,
}

/// A speed-limited zone in the world's frame and what robots did in it.
#[derive(Debug, Clone)]
struct WatchedZone {
    name: String,
    max_mps: f64,
    outline: geo::Polygon<f32>,
    /// The fastest any robot drove inside, m/s, and robot-seconds spent inside.
    fastest_mps: f32,
    inside_s: f64,
}

/// What robots did in one speed-limited zone over a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ZoneOutcome {
    pub name: String,
    pub max_mps: f64,
    /// The fastest any robot drove (its own speed) while inside.
    pub fastest_mps: f64,
    /// Robot-seconds spent inside.
    pub inside_s: f64,
}

/// One robot's side of a contact before it is judged: the robot, its velocity, the unit vector towards the
/// other, the other and its velocity.
type Side = (usize, [Real; 2], [Real; 2], Other, [Real; 2]);

/// Cells of the grid people are found in: a robot looks at its own cell and the eight around it, which covers
/// every person within [`safety::LOOK_M`] of its body (the body reaches 0.45 m from its centre).
const CELL_M: Real = safety::LOOK_M + 0.5;
/// A person has a body in the physics world while a robot is within a cell of this size (at least
/// [`NEAR_MIN_M`], and the sensor's range plus [`NEAR_MARGIN_M`]), and loses it once none is within two:
/// nothing further away can touch them or sense them, and they are checked five times a second, in which
/// a robot and a person close by at most a metre.
const NEAR_MIN_M: Real = 10.0;
const NEAR_MARGIN_M: Real = 7.0;

/// A robot's look-out assumes it drives on at least this fast, m/s (so that a stopped robot still sees what
/// would meet it when it starts).
const PLAN_MIN_MPS: Real = 0.6;
/// The look-out's horizon, seconds.
const LOOK_AHEAD_S: Real = 3.0;
/// How far a robot's body reaches from its centre when it turns on the spot, metres.
const SWING_M: Real = 0.45;
/// A robot looks for robots standing at the next corner it turns at from this far from it, metres.
const CORNER_LOOK_M: Real = 3.0;
/// Clearance a robot wants beside its body when something passes, metres.
const PASS_MARGIN_M: Real = 0.15;
/// A robot decides whether to start across a signalised crossing within this distance of its kerb, metres.
const KERB_LOOK_M: Real = 10.0;
/// Where a robot held by a red stops: this far short of the kerb line with its front, metres.
const KERB_STOP_M: Real = 0.3;
/// A robot has started across a crossing once its centre is this far past the kerb point, metres.
const ENTERED_M: Real = 0.5;

/// `v` scaled to length 1 (east when it is too short to have a direction).
fn unit(v: [Real; 2]) -> [Real; 2] {
    let n = norm(v);
    if n > 1e-6 { [v[0] / n, v[1] / n] } else { [1.0, 0.0] }
}

/// The unit vector (x east, y north) a body with rotation `r` faces.
fn facing(r: &Rotation) -> [Real; 2] {
    let f = *r * Vector::X;
    unit([f.x, f.y])
}

fn yaw_of(r: &Rotation) -> Real {
    let f = *r * Vector::X;
    f.y.atan2(f.x)
}

/// A robot turning faster than this (rad/s) is seen by the others' look-out as the disc its corners sweep.
const TURNING_RAD_S: Real = 0.05;

/// How fast a robot too close to another to turn backs away from it, m/s.
const BACK_OFF_MPS: Real = 0.2;
/// A robot whose centre is this close, and not a body length behind, is beside another: the other keeps to
/// the side it stepped to until it has passed, metres.
const BESIDE_M: Real = 1.8;

/// Robots stand at least this far apart, centre to centre, where their drives end: a turn on the spot sweeps
/// a robot's corners out to `SWING_M`, so two robots closer than twice that would touch when one turns.
const PARK_APART_M: Real = 2.0 * SWING_M + 0.1;

/// Offset of parking slot `k` from a stop, metres. Slot 0 is the stop itself (in the lane, as a lone robot
/// always parked); the others lie on rings around it, 6 on the first (1.6 m out), 12 on the second (3.0 m),
/// 18 on the third (4.4 m), ..., each ring turned half a slot against the one inside it so that a robot
/// driving out between two slots does not meet one straight behind. Cheap and deterministic; on a narrow
/// footway an outer slot may be unreachable, and the drive then ends held within 5 m of it as before.
fn parking_slot(k: usize) -> Option<[Real; 2]> {
    if k == 0 {
        return None;
    }
    let (mut ring, mut first) = (1usize, 1usize);
    while k >= first + 6 * ring {
        first += 6 * ring;
        ring += 1;
    }
    let slots = 6 * ring;
    let j = k - first;
    let radius = 0.2 + 1.4 * ring as Real;
    let angle = 2.0 * PI * (j as Real + if ring % 2 == 0 { 0.5 } else { 0.0 }) / slots as Real;
    Some([radius * angle.cos(), radius * angle.sin()])
}

/// The first parking slot lies this far short of the drive's end, metres: a robot at a stop on a junction leaves
/// the junction itself to robots passing through it.
const PARK_BACK_M: Real = 0.8;

/// A parking slot along the way a drive came: `back_m` short of its end along `pts`, at the right-hand edge
/// of the way (the corridor less half the robot's width and [`controller::EDGE_MARGIN_M`]), so that a robot
/// waiting there leaves the rest of the way to others (on a narrow way, robots queue in line as people do).
/// Returns the segment it lies on, the point on the path and the slot; `None` when the path is shorter than
/// `back_m` plus a metre, or has no corridor.
fn slot_along(pts: &[[Real; 2]], corridor: &[f32], back_m: Real) -> Option<(usize, [Real; 2], [Real; 2])> {
    if corridor.len() + 1 != pts.len() {
        return None;
    }
    // Not within a metre of the drive's start: the robot must have come along the way to stand there.
    let total: Real = pts.windows(2).map(|w| dist(w[0], w[1])).sum();
    if total - back_m < 1.0 {
        return None;
    }
    let mut left = back_m;
    for j in (0..corridor.len()).rev() {
        let (a, b) = (pts[j], pts[j + 1]);
        let len = dist(a, b);
        if len < 1e-3 {
            continue;
        }
        if left < len {
            let u = [(b[0] - a[0]) / len, (b[1] - a[1]) / len];
            let at = [b[0] - u[0] * left, b[1] - u[1] * left];
            let side = (corridor[j] - ROBOT_HALF[1] - controller::EDGE_MARGIN_M).max(0.0);
            return Some((j, at, [at[0] + u[1] * side, at[1] - u[0] * side]));
        }
        left -= len;
    }
    None
}

impl PhysicsWorld {
    /// An empty world (ground only) around `origin`, starting at `start`.
    pub fn new(origin: LatLon, start: Timestamp, cfg: PhysicsConfig) -> Result<Self, Error> {
        if !(20..=1_000).contains(&cfg.hz) {
            return Err(Error::Scenario(format!(
                "physics rate must be 20..=1000 Hz (a step of at most 50 ms), not {}",
                cfg.hz
            )));
        }
        let mut world = RapierWorld { gravity: Vector::new(0.0, 0.0, -9.81), ..RapierWorld::default() };
        let dt = 1.0 / cfg.hz as Real;
        world.integration_parameters.dt = dt;
        // The ground: a slab under a 20 km square, top face at z = 0. It is in no other group's filter.
        world.insert(
            RigidBodyBuilder::fixed().translation(Vector::new(0.0, 0.0, -0.5)),
            ColliderBuilder::cuboid(10_000.0, 10_000.0, 0.5)
                .collision_groups(InteractionGroups::new(G_GROUND, Group::NONE, InteractionTestMode::And))
                .user_data(K_GROUND << 120),
        );
        let sensor = Sensor::new(cfg.sense_range_m);
        let presence = Presence::new((cfg.sense_range_m + NEAR_MARGIN_M).max(NEAR_MIN_M));
        Ok(Self {
            world,
            proj: Projection::new(origin),
            cfg,
            dt,
            start,
            robots: Vec::new(),
            crowd: Crowd::default(),
            contacts: Contacts::default(),
            stats: PhysicsStats::default(),
            sensor,
            contact_log: Vec::new(),
            fresh: Vec::new(),
            episodes: Episodes::default(),
            grid: Grid::new(CELL_M),
            presence,
            grid_fresh: false,
            signals: None,
            signal_stats: SignalStats::default(),
            zones: Vec::new(),
        })
    }

    /// Watches speed-limited zones: the fastest each robot drives inside each is reported ([`Self::zones`]).
    pub fn watch_zones(&mut self, zones: &[fleet_core::map::SpeedZone]) {
        let proj = self.proj;
        self.zones = zones
            .iter()
            .filter_map(|z| {
                let poly = z.checked().ok()?;
                let ring: Vec<geo::Coord<f32>> = poly
                    .exterior()
                    .coords()
                    .filter_map(|c| fleet_core::LatLon::new(c.y, c.x).ok())
                    .map(|p| {
                        let xy = proj.to_xy(p);
                        geo::coord! { x: xy[0] as f32, y: xy[1] as f32 }
                    })
                    .collect();
                Some(WatchedZone {
                    name: z.name.clone(),
                    max_mps: z.max_mps,
                    outline: geo::Polygon::new(geo::LineString::new(ring), Vec::new()),
                    fastest_mps: 0.0,
                    inside_s: 0.0,
                })
            })
            .collect();
    }

    /// The speed-limited zones watched, with the fastest robot speed seen inside each.
    pub fn zones(&self) -> Vec<ZoneOutcome> {
        self.zones
            .iter()
            .map(|z| ZoneOutcome {
                name: z.name.clone(),
                max_mps: z.max_mps,
                fastest_mps: (f64::from(z.fastest_mps) * 1000.0).round() / 1000.0,
                inside_s: (z.inside_s * 10.0).round() / 10.0,
            })
            .collect()
    }

    /// Runs the map's traffic signals: from now on robots wait at signalised crossings for a long enough green.
    pub fn set_signals(&mut self, signals: Signals) {
        self.signals = Some(signals);
    }

    /// What the robots did at signals so far, and the number of signalised crossings.
    pub fn signal_stats(&self) -> (usize, SignalStats) {
        (self.signals.as_ref().map_or(0, Signals::count), self.signal_stats)
    }
    pub fn projection(&self) -> &Projection {
        &self.proj
    }
    pub fn config(&self) -> &PhysicsConfig {
        &self.cfg
    }
    pub fn stats(&self) -> PhysicsStats {
        self.stats
    }
    /// Every robot's side of every contact so far, in order.
    pub fn contacts(&self) -> &[Contact] {
        &self.contact_log
    }
    pub fn robot_count(&self) -> usize {
        self.robots.len()
    }
    /// The simulated time the world has reached.
    pub fn now(&self) -> Timestamp {
        self.time_of(self.stats.steps)
    }
    fn time_of(&self, step: u64) -> Timestamp {
        Timestamp(self.start.0 + step * 1_000 / u64::from(self.cfg.hz))
    }

    /// Adds a robot standing at `pos` facing `yaw_rad` (counter-clockwise from east); returns its index.
    pub fn add_robot(&mut self, pos: LatLon, yaw_rad: f32) -> usize {
        let i = self.robots.len();
        let xy = self.proj.to_xy(pos);
        let xy = [xy[0] as Real, xy[1] as Real];
        let (body, _) = self.world.insert(
            RigidBodyBuilder::dynamic()
                .pose(Pose::from_parts(
                    Vector::new(xy[0], xy[1], ROBOT_HALF[2] + HOVER),
                    Rotation::from_rotation_z(yaw_rad),
                ))
                .enabled_translations(true, true, false)
                .enabled_rotations(false, false, true)
                // A shove from a passer-by dies out instead of sending an idle robot gliding off.
                .linear_damping(2.0)
                .angular_damping(2.0),
            ColliderBuilder::cuboid(ROBOT_HALF[0], ROBOT_HALF[1], ROBOT_HALF[2])
                .mass(ROBOT_MASS_KG)
                .collision_groups(InteractionGroups::new(G_ROBOT, G_ROBOT | G_PED | G_STATIC, InteractionTestMode::And))
                .active_events(ActiveEvents::COLLISION_EVENTS)
                .user_data(K_ROBOT << 120 | i as u128),
        );
        self.robots.push(Robot {
            body,
            ctl: Controller::new(i),
            events: Vec::new(),
            odometer_m: 0.0,
            battery_pct: 100.0,
            used_pct: 0.0,
            last_xy: xy,
            parked: xy,
            broken: false,
            drain_scale: 1.0,
            giving_way_to: None,
            yaw_cmd: 0.0,
            speed_cmd: 0.0,
            crossings: Vec::new(),
            kerb: None,
            cut_end: None,
        });
        self.grid_fresh = false;
        i
    }

    /// Robot `i` breaks down for good: it stops where it is, drops what it was doing and reports a fatal fault.
    pub fn break_down(&mut self, i: usize) {
        let Some(r) = self.robots.get_mut(i) else { return };
        if r.broken {
            return;
        }
        r.broken = true;
        r.ctl.task = Task::Idle;
        r.ctl.sidestep = None;
        r.ctl.blocked = None;
        r.ctl.stopped_since = None;
        r.events.clear();
        r.events.push(PlatformEvent::Fault { fatal: true, detail: BROKEN.into() });
    }

    /// Gives robot `i` a battery of `wh` watt-hours (the drain figures are for 1 kWh).
    pub fn set_battery_wh(&mut self, i: usize, wh: f64) {
        if let Some(r) = self.robots.get_mut(i)
            && wh.is_finite()
            && wh > 0.0
        {
            r.drain_scale = 1_000.0 / wh;
        }
    }

    pub fn is_broken(&self, i: usize) -> bool {
        self.robots.get(i).is_some_and(|r| r.broken)
    }

    /// Whether robot `i` is at work this step: driving (not paused) or serving a compartment.
    pub fn is_busy(&self, i: usize) -> bool {
        self.robots.get(i).is_some_and(|r| {
            !r.broken && !r.ctl.paused && matches!(r.ctl.task, Task::Driving { .. } | Task::Service { .. })
        })
    }

    /// Adds a wall (road works, a fence across the footway) centred at `pos`, `length_m` long across the
    /// direction `along_rad` (counter-clockwise from east) and 0.3 m thick; [`Self::remove_obstacle`] takes it
    /// away again.
    pub fn add_wall_across(&mut self, pos: LatLon, along_rad: f32, length_m: f32) -> ObstacleId {
        let xy = self.proj.to_xy(pos);
        let half = [0.15, length_m / 2.0, 0.6];
        let k = self.world.colliders.len() as u128;
        let (body, _) = self.world.insert(
            RigidBodyBuilder::fixed().pose(Pose::from_parts(
                Vector::new(xy[0] as Real, xy[1] as Real, half[2]),
                Rotation::from_rotation_z(along_rad),
            )),
            ColliderBuilder::cuboid(half[0], half[1], half[2])
                .collision_groups(InteractionGroups::new(G_STATIC, G_ROBOT | G_PED, InteractionTestMode::And))
                .user_data(K_STATIC << 120 | k),
        );
        ObstacleId(body)
    }

    pub fn remove_obstacle(&mut self, id: ObstacleId) {
        self.world.remove_body(id.0);
        // Robots parked against it may be asleep; they must notice the way is free.
        self.world.wake_up_all(false);
    }

    /// Adds static walls: each segment `(a, b)` in local metres becomes a cuboid 0.2 m thick and 1 m high; returns
    /// how many. All of them form one compound collider (no body): measured on Monaco's 33,674 walls, one
    /// collider per wall made a step 2.5 times slower (rapier's broad phase keeps every collider in its tree
    /// and the moving ones are re-inserted each step), compounds per 5-200 m cell 1.7-2.5 times, one compound
    /// for all 1.25 times. Pedestrians ignore walls (they are kinematic and walk the graph, which the walls
    /// were kept clear of).
    pub fn add_walls(&mut self, segments: &[([f64; 2], [f64; 2])]) -> usize {
        let mut shapes: Vec<(Pose, SharedShape)> = Vec::new();
        for &(a, b) in segments {
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let len = dx.hypot(dy);
            if !(len >= 0.05 && len.is_finite()) {
                continue;
            }
            let mid = Vector::new(((a[0] + b[0]) / 2.0) as Real, ((a[1] + b[1]) / 2.0) as Real, 0.5);
            let pose = Pose::from_parts(mid, Rotation::from_rotation_z(dy.atan2(dx) as Real));
            shapes.push((pose, SharedShape::cuboid((len / 2.0) as Real, 0.1, 0.5)));
        }
        let n = shapes.len();
        if n > 0 {
            let k = self.world.colliders.len() as u128;
            self.world.insert_collider(
                ColliderBuilder::compound(shapes)
                    .collision_groups(InteractionGroups::new(G_STATIC, G_ROBOT, InteractionTestMode::And))
                    .user_data(K_STATIC << 120 | k),
                None,
            );
        }
        n
    }

    /// Adds a fixed box obstacle (a bin, a scooter, road works) centred at `pos` on the ground.
    pub fn add_obstacle(&mut self, pos: LatLon, half_extents: [f32; 3]) {
        let xy = self.proj.to_xy(pos);
        let k = self.world.colliders.len() as u128;
        self.world.insert(
            RigidBodyBuilder::fixed().translation(Vector::new(xy[0] as Real, xy[1] as Real, half_extents[2])),
            ColliderBuilder::cuboid(half_extents[0], half_extents[1], half_extents[2])
                .collision_groups(InteractionGroups::new(G_STATIC, G_ROBOT, InteractionTestMode::And))
                .user_data(K_STATIC << 120 | k),
        );
    }

    /// Adds a scripted pedestrian who never gives way to a robot, walking a loop around the segment `a -> b`
    /// (out on its right-hand side, back on the other) at `speed_mps`, starting `frac` of the way.
    pub fn add_pedestrian(&mut self, a: LatLon, b: LatLon, speed_mps: f32, frac: f32) {
        let (pa, pb) = (self.proj.to_xy(a), self.proj.to_xy(b));
        let (pa, pb) = ([pa[0] as Real, pa[1] as Real], [pb[0] as Real, pb[1] as Real]);
        self.crowd.add_shuttle(&mut self.world, pa, pb, speed_mps, frac);
        self.grid_fresh = false;
    }

    /// Adds `count` people walking trips over `map` ([`pedestrians`](super::pedestrians)): that many are out
    /// when `profile` (people out by hour of the day, UTC, as a share of `count`) is 1. Their speeds, lanes,
    /// attention and the crowd's own stream are drawn from `rng`.
    pub fn add_pedestrians(&mut self, map: &MapGraph, count: usize, profile: [f32; 24], rng: &mut impl Rng) {
        let proj = self.proj;
        self.crowd.add_walkers(&mut self.world, map, &proj, count, profile, rng);
        self.grid_fresh = false;
    }

    /// The crowd's figures so far.
    pub fn crowd_stats(&self) -> CrowdStats {
        self.crowd.stats()
    }

    /// How many people there are of each attention to robots: attentive, distracted, impassive.
    pub fn crowd_attention(&self) -> [u64; 3] {
        self.crowd.attention_counts()
    }

    /// Robot `i` as a [`Platform`]. Panics on an index not returned by [`Self::add_robot`].
    pub fn robot(&mut self, i: usize) -> RobotView<'_> {
        RobotView { world: self, i }
    }

    pub fn telemetry(&self, i: usize) -> Option<Telemetry> {
        let r = self.robots.get(i)?;
        let b = self.world.bodies.get(r.body)?;
        let t = b.translation();
        let yaw = yaw_of(b.rotation());
        Some(Telemetry {
            pos: self.proj.to_latlon([f64::from(t.x), f64::from(t.y)]),
            // Compass bearing: clockwise from north.
            heading_deg: f64::from(90.0 - yaw.to_degrees()).rem_euclid(360.0),
            speed_mps: f64::from(if r.ctl.paused { 0.0 } else { r.ctl.speed }),
            battery_pct: r.battery_pct,
        })
    }

    /// Local position (x east, y north) of robot `i`.
    pub fn robot_xy(&self, i: usize) -> Option<[f32; 2]> {
        let b = self.world.bodies.get(self.robots.get(i)?.body)?;
        let t = b.translation();
        Some([t.x, t.y])
    }

    pub fn odometer_m(&self, i: usize) -> f64 {
        self.robots.get(i).map_or(0.0, |r| r.odometer_m)
    }
    pub fn battery_pct(&self, i: usize) -> f64 {
        self.robots.get(i).map_or(0.0, |r| r.battery_pct)
    }
    /// Whether robot `i` is currently blocked (no progress for longer than `blocked_after_s`).
    pub fn blocked(&self, i: usize) -> Option<Blocked> {
        self.robots.get(i)?.ctl.blocked
    }
    pub fn distance_m(&self) -> f64 {
        self.robots.iter().map(|r| r.odometer_m).sum()
    }
    pub fn energy_used_pct(&self) -> f64 {
        self.robots.iter().map(|r| r.used_pct).sum()
    }

    /// Steps until the world's clock reaches `now` (never past it).
    pub fn advance_to(&mut self, now: Timestamp) {
        while self.time_of(self.stats.steps + 1) <= now {
            self.step();
        }
    }

    /// One fixed step: pedestrians walk, robot controllers sense and set velocities, rapier integrates, then
    /// contacts, odometers and batteries are accounted.
    pub fn step(&mut self) {
        let step = self.stats.steps;
        if !self.grid_fresh {
            self.fill_grid();
        }
        let hour = ((self.now().0 / 3_600_000) % 24) as usize;
        self.presence.fill(self.grid.robots().map(|a| a.pos));
        self.crowd.walk(&mut self.world.bodies, &self.grid, &self.presence, hour, step, self.cfg.hz, self.dt);
        for i in 0..self.robots.len() {
            self.control(i, step);
        }
        self.world.step_with_events(&(), &self.contacts.collector);
        self.stats.steps += 1;
        let step = self.stats.steps;
        self.contacts.account(
            &self.world.colliders,
            step,
            u64::from(self.cfg.hz),
            &mut self.stats.collisions,
            &mut self.fresh,
        );
        self.judge_contacts();
        self.fill_grid();
        self.watch_people();
        let hours = f64::from(self.dt) / 3600.0;
        let dt_s = f64::from(self.dt);
        for r in &mut self.robots {
            if r.ctl.moving
                && let Some(b) = self.world.bodies.get(r.body)
            {
                // The heading change of this step: the body's yaw rate over the step.
                self.stats.social.heading_change_rad += f64::from(b.angvel().z.abs() * self.dt);
            }
            if r.ctl.driving() && !r.ctl.paused && !r.broken {
                self.stats.social.driving_s += dt_s;
                if r.ctl.speed < safety::MOVING_MPS {
                    self.stats.social.stopped_s += dt_s;
                }
                if r.ctl.off_way_m > safety::OFF_WAY_M {
                    self.stats.social.off_way_s += dt_s;
                }
                self.stats.social.off_way_max_m = self.stats.social.off_way_max_m.max(f64::from(r.ctl.off_way_m));
            }
            let idle = (hours * DRAIN_PCT_PER_H * r.drain_scale).min(r.battery_pct);
            r.battery_pct -= idle;
            r.used_pct += idle;
            if let Task::Charging { .. } = r.ctl.task
                && !r.ctl.paused
            {
                r.battery_pct = (r.battery_pct + hours * CHARGE_PCT_PER_H).min(100.0);
            }
            if !r.ctl.moving {
                continue;
            }
            if let Some(b) = self.world.bodies.get(r.body) {
                let t = b.translation();
                let d = f64::from(dist(r.last_xy, [t.x, t.y]));
                r.last_xy = [t.x, t.y];
                r.odometer_m += d;
                let used = (d * DRAIN_PCT_PER_M * r.drain_scale).min(r.battery_pct);
                r.battery_pct -= used;
                r.used_pct += used;
            }
        }
    }

    /// Robot `i`'s position, the unit vector it faces, and its own velocity: what it was last commanded to drive
    /// along its heading (backwards while it backs away; 0 when paused or broken).
    fn robot_motion(&self, i: usize) -> Option<([Real; 2], [Real; 2], [Real; 2])> {
        let r = self.robots.get(i)?;
        let b = self.world.bodies.get(r.body)?;
        let (t, f) = (b.translation(), facing(b.rotation()));
        let speed = if r.ctl.paused || r.broken { 0.0 } else { r.speed_cmd };
        Some(([t.x, t.y], f, [f[0] * speed, f[1] * speed]))
    }

    /// The signalised crossing robot `i` comes up to next on its drive, if it has not started across and is
    /// within [`KERB_LOOK_M`] of the kerb: the crossing and the gap from the robot's front to the kerb line.
    fn next_kerb(&self, i: usize, pos: [Real; 2]) -> Option<(OnPath, Real)> {
        let r = self.robots.get(i)?;
        let Task::Driving { pts, next, .. } = &r.ctl.task else { return None };
        // The first crossing whose far end the robot has not passed.
        let c = *r.crossings.iter().find(|c| c.last + 1 >= *next)?;
        let (kerb, over) = (*pts.get(c.first)?, *pts.get(c.first + 1)?);
        let dir = unit([over[0] - kerb[0], over[1] - kerb[1]]);
        let into = (pos[0] - kerb[0]) * dir[0] + (pos[1] - kerb[1]) * dir[1];
        // A drive often starts at the kerb itself (traffic management splits drives there): the robot counts
        // as waiting at the kerb until its centre is ENTERED_M past it.
        (into < ENTERED_M && -into <= KERB_LOOK_M).then_some((c, (-into - ROBOT_HALF[0]).max(0.0)))
    }

    /// Whether robot `i` has started across crossing `id` on its current drive.
    fn front_past(&self, i: usize, id: u32, pos: [Real; 2]) -> bool {
        let r = &self.robots[i];
        let Task::Driving { pts, .. } = &r.ctl.task else { return false };
        let Some(c) = r.crossings.iter().find(|c| c.id == id) else { return false };
        let (Some(kerb), Some(over)) = (pts.get(c.first), pts.get(c.first + 1)) else { return false };
        let dir = unit([over[0] - kerb[0], over[1] - kerb[1]]);
        (pos[0] - kerb[0]) * dir[0] + (pos[1] - kerb[1]) * dir[1] >= ENTERED_M
    }

    /// The gap to keep to a red (or a green too short to get across) ahead of robot `i`, if any.
    fn signal_hold(&self, i: usize, pos: [Real; 2], step: u64) -> Option<Real> {
        let signals = self.signals.as_ref()?;
        let (c, to_line) = self.next_kerb(i, pos)?;
        let Task::Driving { limit, .. } = &self.robots[i].ctl.task else { return None };
        let t_s = step as f64 / f64::from(self.cfg.hz);
        // Started on green, it must be across before the clearance after the green ends (the time a person
        // walking at the design speed of 1.2 m/s needs), with two seconds to spare.
        let need = f64::from(c.length_m + 2.0 * ROBOT_HALF[0]) / f64::from(limit.max(0.3)) + 2.0;
        let clearance = f64::from(c.length_m) / 1.2;
        match signals.green_left(c.id, t_s) {
            Some(left) if left + clearance >= need => None,
            _ => Some((to_line - KERB_STOP_M).max(0.0)),
        }
    }

    /// Counts robot `i`'s crossings, crossings started on red, and waits at the kerb.
    fn count_signals(&mut self, i: usize, held: Option<Real>, step: u64) {
        let Some(signals) = &self.signals else { return };
        let Some(b) = self.world.bodies.get(self.robots[i].body) else { return };
        let pos = [b.translation().x, b.translation().y];
        let now = self.next_kerb(i, pos).map(|(c, _)| c.id);
        let held = held.is_some() && self.robots[i].ctl.speed < safety::MOVING_MPS;
        let t_s = step as f64 / f64::from(self.cfg.hz);
        let crossed = self.robots[i].kerb.filter(|(id, _)| now != Some(*id) && self.front_past(i, *id, pos));
        let st = &mut self.signal_stats;
        if let Some((id, _)) = crossed {
            // The front crossed the kerb line since the last step.
            st.crossed += 1;
            if signals.green_left(id, t_s).is_none() {
                st.entered_on_red += 1;
            }
        }
        let was_held = self.robots[i].kerb.is_some_and(|(_, h)| h);
        if held {
            st.wait_s += f64::from(self.dt);
            if !was_held {
                st.waits += 1;
            }
        }
        self.robots[i].kerb = now.map(|id| (id, held));
    }

    /// How fast robot `i`'s corners sweep as it turns on its own (the commanded yaw rate times its half
    /// diagonal), m/s.
    fn swing_mps(&self, i: usize) -> Real {
        self.robots.get(i).map_or(0.0, |r| r.yaw_cmd.abs() * norm([ROBOT_HALF[0], ROBOT_HALF[1]]))
    }

    /// Judges every robot in the contacts that started this step ([`safety`]) and logs them.
    fn judge_contacts(&mut self) {
        let at_s = self.stats.steps as f64 / f64::from(self.cfg.hz);
        let fresh = std::mem::take(&mut self.fresh);
        for &(a, b) in &fresh {
            let index = |x: u128| (x & 0xffff_ffff) as usize;
            // Kinds sort robot < pedestrian < static, so `a` is always a robot.
            let Some((pa, facing_a, va)) = self.robot_motion(index(a)) else { continue };
            let mut sides: Vec<Side> = Vec::with_capacity(2);
            match b >> 120 {
                K_ROBOT => {
                    let Some((pb, _, vb)) = self.robot_motion(index(b)) else { continue };
                    let n = unit([pb[0] - pa[0], pb[1] - pa[1]]);
                    sides.push((index(a), va, n, Other::Robot(index(b)), vb));
                    sides.push((index(b), vb, [-n[0], -n[1]], Other::Robot(index(a)), va));
                }
                K_PED => {
                    let Some(body) = self.crowd.body(index(b)).and_then(|(h, _)| self.world.bodies.get(h)) else {
                        continue;
                    };
                    let (t, v) = (body.translation(), body.linvel());
                    let n = unit([t.x - pa[0], t.y - pa[1]]);
                    sides.push((index(a), va, n, Other::Pedestrian(index(b)), [v.x, v.y]));
                }
                // A wall: what matters is whether the robot drove on.
                _ => sides.push((index(a), va, facing_a, Other::Static, [0.0, 0.0])),
            }
            for (robot, v, towards, other, v_other) in sides {
                let other_closing = -(v_other[0] * towards[0] + v_other[1] * towards[1]);
                let fault = Fault::judge(v, towards, self.swing_mps(robot), other_closing);
                self.stats.faults.count(fault, &other);
                self.contact_log.push(Contact {
                    at_s,
                    robot,
                    other,
                    fault,
                    robot_speed_mps: f64::from(norm(v)),
                    closing_mps: f64::from(v[0] * towards[0] + v[1] * towards[1]),
                    other_speed_mps: f64::from(norm(v_other)),
                    xy: self.robot_motion(robot).map_or([0.0; 2], |(p, _, _)| [f64::from(p[0]), f64::from(p[1])]),
                });
            }
        }
        self.fresh = fresh;
        self.fresh.clear();
    }

    /// Files every robot and every person out in the grid, where they stand after the step.
    fn fill_grid(&mut self) {
        let mut grid = std::mem::take(&mut self.grid);
        grid.clear();
        for i in 0..self.robots.len() {
            if let Some((pos, f, v)) = self.robot_motion(i) {
                grid.push(Kind::Robot, i, pos, v, f);
            }
        }
        for (j, pos, v) in self.crowd.motions(&self.world.bodies) {
            grid.push(Kind::Person, j, pos, v, unit(v));
        }
        grid.seal();
        self.grid = grid;
        self.grid_fresh = true;
    }

    /// The social-navigation figures of this step: every robot against every person near it ([`safety`]).
    fn watch_people(&mut self) {
        for i in 0..self.robots.len() {
            if self.grid.is_empty() {
                break;
            }
            let Some((pos, f, v)) = self.robot_motion(i) else { continue };
            for a in self.grid.around(pos) {
                if a.kind != Kind::Person {
                    continue;
                }
                let (gap, towards) = safety::footprint_gap(pos, f, [ROBOT_HALF[0], ROBOT_HALF[1]], a.pos, PED_RADIUS);
                self.stats.social.pair(&mut self.episodes, i, a.index, gap, towards, v, a.vel, self.dt);
            }
        }
        self.episodes.end_step();
    }

    /// Robot `i`'s look-out beyond its forward sensor: of everyone near it (the grid) whose course, kept, meets
    /// the robot's driving on at its speed (at least [`PLAN_MIN_MPS`]) within [`LOOK_AHEAD_S`] seconds closer
    /// sideways than the two bodies plus [`PASS_MARGIN_M`], ahead of the robot's middle, the one whose meeting
    /// point is nearest along the robot's heading: the free distance to it, as if the sensor saw it there.
    /// Between two robots, the higher index gives way: a robot ignores a meeting with a lower-indexed one
    /// that is giving way to it, unless that one is turning on the spot or stands within reach of this one's
    /// corners turning.
    fn look_out(&mut self, i: usize, pos: [Real; 2], f: [Real; 2], speed: Real) -> Option<Ahead> {
        let plan = speed.max(PLAN_MIN_MPS);
        let vr = [f[0] * plan, f[1] * plan];
        let mut best: Option<Ahead> = None;
        let mut giving_way = None;
        // The corner it will turn at next, when it is near: a robot standing within reach of this one's
        // corners sweeping round it holds this one short of the corner (the sensor and the look-out look
        // along the heading, and would see it only once turning into it).
        let corner = self.robots[i].ctl.corner_ahead(pos, &self.cfg, CORNER_LOOK_M);
        // The way it is on: a robot stepping aside heads across it, and will turn back along it.
        let way = self.robots[i].ctl.way_direction();
        for a in self.grid.around(pos) {
            // How far the other's body reaches sideways of this robot's heading and along it: a person is a
            // disc; a robot a box, which reaches further than its half-width when it stands at an angle (at
            // 45 degrees its corner is 0.17 m further out, more than the margin), and a robot turning the
            // disc its corners sweep (a robot passing one turning on the spot was caught by a swinging corner).
            let (r_o, r_along) = match a.kind {
                Kind::Robot if a.index == i => continue,
                Kind::Robot if self.robots[a.index].yaw_cmd.abs() > TURNING_RAD_S => (SWING_M, SWING_M),
                Kind::Robot => {
                    let across = (f[0] * a.facing[1] - f[1] * a.facing[0]).abs();
                    let along = (f[0] * a.facing[0] + f[1] * a.facing[1]).abs();
                    (ROBOT_HALF[0] * across + ROBOT_HALF[1] * along, ROBOT_HALF[0] * along + ROBOT_HALF[1] * across)
                }
                Kind::Person => (PED_RADIUS, PED_RADIUS),
            };
            if let Some(at) = corner
                && a.kind == Kind::Robot
                && dist(a.pos, at) < SWING_M + r_o.max(ROBOT_HALF[0]) + PASS_MARGIN_M
            {
                let gap = (dist(pos, at) - ROBOT_HALF[0]).max(0.0);
                if best.is_none_or(|b| gap < b.gap) {
                    let other = &self.robots[a.index];
                    let robot = Some(OtherRobot { index: a.index, driving: other.ctl.driving() });
                    best = Some(Ahead { gap, sensed: f32::INFINITY, robot, rule: false });
                    giving_way = Some(a.index);
                }
                continue;
            }
            let d = [a.pos[0] - pos[0], a.pos[1] - pos[1]];
            let (dn, ahead) = (norm(d), d[0] * f[0] + d[1] * f[1]);
            if ahead <= 0.0 || dn > CELL_M {
                continue;
            }
            // The bubble: a person even slightly ahead, within the distance the robot needs to stop (braking
            // hard, after a step), what the person covers meanwhile when closing in, and 0.2 m, stops it
            // whatever their course. (Robots ahead are the sensor's: a bubble between robots held two facing
            // robots for hours, each in the other's, where the sensor lets them step aside.)
            if a.kind == Kind::Person {
                let stopping = speed * speed / 8.0 + speed * 0.1;
                let closing = (-(a.vel[0] * d[0] + a.vel[1] * d[1]) / dn).max(0.0);
                let (g, _) = safety::footprint_gap(pos, f, [ROBOT_HALF[0], ROBOT_HALF[1]], a.pos, r_o);
                if ahead / dn > 0.05 && g < 0.2 + stopping + closing * (speed / 4.0 + 0.1) {
                    if best.is_none_or(|b| b.gap > 0.0) {
                        best = Some(Ahead { gap: 0.0, sensed: f32::INFINITY, robot: None, rule: false });
                        giving_way = None;
                    }
                    continue;
                }
            }
            let rv = [a.vel[0] - vr[0], a.vel[1] - vr[1]];
            let rv2 = rv[0] * rv[0] + rv[1] * rv[1];
            let t = if rv2 > 1e-6 { (-(d[0] * rv[0] + d[1] * rv[1]) / rv2).clamp(0.0, LOOK_AHEAD_S) } else { 0.0 };
            let c = [d[0] + rv[0] * t, d[1] + rv[1] * t];
            let lateral = (c[0] * f[1] - c[1] * f[0]).abs();
            let along = c[0] * f[0] + c[1] * f[1];
            if lateral >= ROBOT_HALF[1] + r_o + PASS_MARGIN_M || along < -0.1 {
                continue;
            }
            let mut along_way = None;
            let robot = match a.kind {
                Kind::Robot => {
                    let other = &self.robots[a.index];
                    // Not while it turns on the spot giving way (its corners still sweep out), nor when it
                    // stands so close beside this robot's heading or its way that this robot's own corners
                    // would catch it turning (a corner of the route next to the one giving way, or the turn
                    // back into its lane after stepping aside).
                    let beside_way = way.is_some_and(|w| (d[0] * w[1] - d[1] * w[0]).abs() < SWING_M + r_o);
                    if a.index < i
                        && other.giving_way_to == Some(i)
                        && other.yaw_cmd.abs() <= TURNING_RAD_S
                        && lateral >= SWING_M + r_o
                        && !beside_way
                    {
                        continue;
                    }
                    // One giving way beside this robot's way: it meets it where it turns back along the way.
                    if other.giving_way_to == Some(i)
                        && beside_way
                        && let Some(w) = way
                    {
                        along_way = Some(d[0] * w[0] + d[1] * w[1]);
                    }
                    Some(OtherRobot { index: a.index, driving: other.ctl.driving() })
                }
                Kind::Person => None,
            };
            // Where the other will be along the robot's heading when they meet (or along its way, when nearer).
            let meet = (d[0] + a.vel[0] * t) * f[0] + (d[1] + a.vel[1] * t) * f[1];
            let meet = along_way.map_or(meet, |m| m.min(meet));
            let gap = (meet - ROBOT_HALF[0] - r_along).max(0.0);
            if best.is_none_or(|b| gap < b.gap) {
                best = Some(Ahead { gap, sensed: f32::INFINITY, robot, rule: false });
                giving_way = robot.map(|o| o.index);
            }
        }
        self.robots[i].giving_way_to = giving_way;
        best
    }

    /// Robot `i`'s controller for one step: the world reads the body and the sensor, the pure controller
    /// decides, and the world writes the velocity back and counts what the controller saw happen.
    fn control(&mut self, i: usize, step: u64) {
        let Some(body) = self.robots.get(i).map(|r| r.body) else { return };
        let Some(b) = self.world.bodies.get(body) else { return };
        let pos = b.translation();
        let yaw = yaw_of(b.rotation());
        let driving = self.robots[i].ctl.driving();
        let seen = if driving { self.sensor.sweep(&self.world, body, pos, yaw) } else { None };
        // Who blocks us matters for the yield rule: a robot index, and whether that robot is driving.
        let mut ahead = seen.map(|s| Ahead {
            gap: s.gap,
            sensed: s.gap,
            robot: (s.what >> 120 == K_ROBOT)
                .then_some((s.what & 0xffff_ffff) as usize)
                .map(|j| OtherRobot { index: j, driving: self.robots.get(j).is_some_and(|o| o.ctl.driving()) }),
            rule: false,
        });
        if driving {
            let speed = self.robots[i].ctl.speed;
            if let Some(seen) = self.look_out(i, [pos.x, pos.y], [yaw.cos(), yaw.sin()], speed)
                && ahead.is_none_or(|a| seen.gap < a.gap)
            {
                let sensed = ahead.map_or(f32::INFINITY, |a| a.sensed);
                ahead = Some(Ahead { sensed, ..seen });
            }
        } else {
            self.robots[i].giving_way_to = None;
        }
        // A red light ahead holds the robot at the kerb, unless something nearer holds it already.
        let kerb = if driving { self.signal_hold(i, [pos.x, pos.y], step) } else { None };
        if let Some(d) = kerb
            && ahead.is_none_or(|a| d < a.gap)
        {
            let sensed = ahead.map_or(f32::INFINITY, |a| a.sensed);
            ahead = Some(Ahead { gap: d, sensed, robot: None, rule: true });
        }
        // A robot stepped aside goes back to its lane only once no other robot is beside it: turning back
        // swings its front into one standing just off its sensor's slab (the other stopped to let it pass).
        if let Some((lane, until)) = self.robots[i].ctl.sidestep
            && step + 1 >= until
        {
            let here = [pos.x, pos.y];
            let f = [yaw.cos(), yaw.sin()];
            let beside = self.grid.around(here).any(|a| {
                let rel = [a.pos[0] - here[0], a.pos[1] - here[1]];
                a.kind == Kind::Robot
                    && a.index != i
                    && dist(a.pos, here) < BESIDE_M
                    && rel[0] * f[0] + rel[1] * f[1] > -2.0 * ROBOT_HALF[0]
            });
            if beside {
                self.robots[i].ctl.sidestep = Some((lane, step + u64::from(self.cfg.hz) / 2));
            }
        }
        let clock = Clock { start: self.start, step, dt: self.dt };
        let r = &mut self.robots[i];
        let out = controller::control(&mut r.ctl, BodyState { xy: [pos.x, pos.y], yaw }, ahead, &self.cfg, clock);
        self.stats.near_misses += u64::from(out.near_miss);
        self.stats.blocked_events += u64::from(out.blocked);
        self.stats.sidesteps += u64::from(out.sidestep);
        let cut = r.cut_end;
        r.events.extend(
            out.events.into_iter().filter(|e| !matches!(e, PlatformEvent::Passed { index } if Some(*index) == cut)),
        );
        let mut velocity = out.velocity;
        // Turning on the spot swings the body's corners out to SWING_M: not while a person stands in reach or
        // walks into it within the next 1.5 s, nor while another robot's body is within the sweep.
        if let Some(v) = &mut velocity
            && v.speed < safety::MOVING_MPS
            && v.yaw_rate != 0.0
            && self.grid.around([pos.x, pos.y]).any(|a| match a.kind {
                Kind::Person => {
                    let reach = SWING_M + PED_RADIUS + 0.05;
                    [0.0, 0.5, 1.0, 1.5]
                        .iter()
                        .any(|t| dist([a.pos[0] + a.vel[0] * t, a.pos[1] + a.vel[1] * t], [pos.x, pos.y]) < reach)
                }
                // Another robot whose body the sweep would reach (only when they stand this close: a robot
                // held face to face by another stands farther off, at its stop gap).
                Kind::Robot => a.index != i && dist(a.pos, [pos.x, pos.y]) < 2.0 * SWING_M + 0.05,
            })
        {
            v.yaw_rate = 0.0;
            // Too close to another robot to turn: back away from it, slowly, when nothing is behind. (Two robots
            // side by side, each wanting to turn, would otherwise stand there for ever.)
            let here = [pos.x, pos.y];
            let f = [yaw.cos(), yaw.sin()];
            let robot_close = self
                .grid
                .around(here)
                .any(|a| a.kind == Kind::Robot && a.index != i && dist(a.pos, here) < 2.0 * SWING_M + 0.05);
            let behind_clear = !self.grid.around(here).any(|a| {
                let rel = [a.pos[0] - here[0], a.pos[1] - here[1]];
                !(a.kind == Kind::Robot && a.index == i)
                    && rel[0] * f[0] + rel[1] * f[1] < 0.0
                    && dist(a.pos, here) < ROBOT_HALF[0] + 0.9
            });
            if robot_close && behind_clear {
                v.speed = -BACK_OFF_MPS;
            }
        }
        self.robots[i].yaw_cmd = velocity.map_or(0.0, |v| v.yaw_rate);
        self.robots[i].speed_cmd = velocity.map_or(self.robots[i].ctl.speed, |v| v.speed);
        self.count_signals(i, kerb, step);
        if !self.zones.is_empty() {
            use geo::Contains;
            let here = geo::Point::new(pos.x, pos.y);
            let speed = self.robots[i].ctl.speed;
            for z in &mut self.zones {
                if z.outline.contains(&here) {
                    z.fastest_mps = z.fastest_mps.max(speed);
                    z.inside_s += f64::from(self.dt);
                }
            }
        }
        if let Some(v) = velocity
            && let Some(b) = self.world.bodies.get_mut(body)
        {
            b.set_linvel(Vector::new(yaw.cos() * v.speed, yaw.sin() * v.speed, 0.0), true);
            b.set_angvel(Vector::new(0.0, 0.0, v.yaw_rate), true);
        }
    }

    fn execute(&mut self, i: usize, now: Timestamp, cmd: PlatformCommand) {
        let proj = self.proj;
        let Some(r) = self.robots.get_mut(i) else { return };
        if r.broken {
            // A broken robot carries out nothing. Its agent ignores platform events while idle, so the fault of
            // the breakdown may have gone unheard; each command it cannot carry out is answered with it again.
            if matches!(
                cmd,
                PlatformCommand::Drive { .. } | PlatformCommand::Load { .. } | PlatformCommand::Unload { .. }
            ) {
                r.events.push(PlatformEvent::Fault { fatal: true, detail: BROKEN.into() });
            }
            return;
        }
        // Events of the command being replaced are dropped, as the kinematic body does.
        match cmd {
            PlatformCommand::Drive { path, speed_mps, corridor_m } => {
                r.events.clear();
                let pts: Vec<[Real; 2]> = path
                    .iter()
                    .map(|&q| {
                        let xy = proj.to_xy(q);
                        [xy[0] as Real, xy[1] as Real]
                    })
                    .collect();
                // The route starts where the dispatcher believes the robot stands (its node); the body is there
                // up to its parking spot, so it joins the route from where it is.
                if !pts.is_empty() {
                    r.events.push(PlatformEvent::Passed { index: 0 });
                }
                let limit = if speed_mps.is_finite() { speed_mps.max(0.0) as Real } else { 0.0 };
                r.crossings = self.signals.as_ref().map(|s| s.on_path(&path)).unwrap_or_default();
                r.kerb = None;
                // Where it will stand: the first parking slot at least PARK_APART_M from where every other
                // robot stands or will stand (their stops may be different nodes a metre apart), so robots
                // waiting or serving near one place stand apart instead of on one spot. The slots lie at the
                // way's edge, pulled over out of others' way: just short of the end, then one behind the other
                // along the way it came. Where the drive is too short for them, or has no corridor: the end in its lane,
                // or slots around it.
                let mut park = None;
                let mut pts = pts;
                let mut corridor_m = corridor_m;
                self.robots[i].cut_end = None;
                if let Some(&end) = pts.last() {
                    let others: Vec<[Real; 2]> =
                        self.robots.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, o)| o.parked).collect();
                    let free = |at: [Real; 2]| others.iter().all(|p| dist(*p, at) >= PARK_APART_M);
                    let along = (0..40usize)
                        .map_while(|k| slot_along(&pts, &corridor_m, PARK_BACK_M + k as Real * PARK_APART_M))
                        .find(|(_, _, at)| free(*at));
                    match along {
                        // On the last segment the drive ends there as it is; on an earlier one it is cut there.
                        Some((j, _, slot)) if j + 2 == pts.len() => park = Some(slot),
                        Some((j, at, slot)) => {
                            pts.truncate(j + 1);
                            pts.push(at);
                            corridor_m.truncate(j + 1);
                            self.robots[i].cut_end = Some(j + 1);
                            park = Some(slot);
                        }
                        None if free(end) => {}
                        None => {
                            let k = (1..200usize)
                                .find(|&k| {
                                    let o = parking_slot(k).unwrap_or([0.0, 0.0]);
                                    free([end[0] + o[0], end[1] + o[1]])
                                })
                                .unwrap_or(0);
                            park = parking_slot(k).map(|o| [end[0] + o[0], end[1] + o[1]]);
                        }
                    }
                    self.robots[i].parked = park.unwrap_or(end);
                }
                let r = &mut self.robots[i];
                r.ctl.drive(pts, limit, park, &corridor_m);
            }
            PlatformCommand::Load { service_s, .. } | PlatformCommand::Unload { service_s, .. } => {
                r.events.clear();
                let s = if service_s.is_finite() { service_s.max(0.0) } else { 0.0 };
                r.ctl.task = Task::Service { until: now.plus_secs(s) };
            }
            PlatformCommand::Charge { until_pct } => {
                r.events.clear();
                let until = if until_pct.is_finite() { until_pct.min(100.0) } else { 100.0 };
                r.ctl.task = Task::Charging { until_pct: until };
            }
            PlatformCommand::Stop => {
                r.events.clear();
                r.ctl.task = Task::Idle;
            }
            PlatformCommand::Pause => r.ctl.paused = true,
            PlatformCommand::Resume => r.ctl.paused = false,
        }
    }

    fn poll(&mut self, i: usize, now: Timestamp) -> Vec<PlatformEvent> {
        let Some(r) = self.robots.get_mut(i) else { return Vec::new() };
        if !r.ctl.paused
            && let Task::Service { until } = r.ctl.task
            && now >= until
        {
            r.ctl.task = Task::Idle;
            r.events.push(PlatformEvent::ServiceDone);
        }
        if let Task::Charging { until_pct } = r.ctl.task
            && r.battery_pct >= until_pct
        {
            r.ctl.task = Task::Idle;
            r.events.push(PlatformEvent::ServiceDone);
        }
        std::mem::take(&mut r.events)
    }
}

/// One robot of a [`PhysicsWorld`] as the agent's [`Platform`]. The world is stepped by the driver (once per
/// tick, [`PhysicsWorld::advance_to`]); `poll` hands over what happened since the last poll.
pub struct RobotView<'a> {
    world: &'a mut PhysicsWorld,
    i: usize,
}

impl Platform for RobotView<'_> {
    fn execute(&mut self, now: Timestamp, cmd: PlatformCommand) {
        self.world.execute(self.i, now, cmd);
    }
    fn poll(&mut self, now: Timestamp) -> Vec<PlatformEvent> {
        self.world.poll(self.i, now)
    }
    fn telemetry(&self) -> Telemetry {
        let fallback = Telemetry { pos: self.world.proj.origin(), heading_deg: 0.0, speed_mps: 0.0, battery_pct: 0.0 };
        self.world.telemetry(self.i).unwrap_or(fallback)
    }
}

#[cfg(test)]
mod tests {
    use fleet_core::NodeId;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn parking_slots_lie_along_the_way_at_its_right_hand_edge() {
        // East along a 10 m path of two segments with 1 m either side: the slot's centre is 1 - 0.275 - 0.1
        // right (south) of the line.
        let pts = [[0.0, 0.0], [5.0, 0.0], [10.0, 0.0]];
        let edge = -(1.0 - ROBOT_HALF[1] - controller::EDGE_MARGIN_M);
        let (j, at, slot) = slot_along(&pts, &[1.0, 1.0], 0.8).expect("a slot");
        assert_eq!(j, 1);
        assert!((at[0] - 9.2).abs() < 1e-4 && at[1].abs() < 1e-4, "{at:?}");
        assert!((slot[0] - 9.2).abs() < 1e-4 && (slot[1] - edge).abs() < 1e-4, "{slot:?}");
        // Further back it lies on the first segment; within a metre of the start there is none, nor without a
        // corridor.
        assert_eq!(slot_along(&pts, &[1.0, 1.0], 6.0).map(|s| s.0), Some(0));
        assert!(slot_along(&pts, &[1.0, 1.0], 9.5).is_none());
        assert!(slot_along(&pts, &[], 0.8).is_none());
    }

    /// People out of every robot's reach walk without a body in the physics world; anyone near a robot has
    /// one, where the crowd says they stand.
    #[test]
    fn people_near_a_robot_have_bodies_and_those_far_away_walk_without() {
        let map = MapGraph::street_grid(4, 0.001).expect("the grid builds");
        let mut w = PhysicsWorld::new(map.origin(), Timestamp(0), PhysicsConfig::default()).expect("valid config");
        w.add_robot(map.pos(NodeId(5)).expect("a node"), 0.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        w.add_pedestrians(&map, 60, [1.0; 24], &mut rng);
        let (mut near, mut far) = (0, 0);
        for step in 0..20 * 600 {
            w.step();
            if step % 10 != 0 {
                continue;
            }
            let robot = w.robot_xy(0).expect("the robot");
            for (j, pos, _) in w.crowd.motions(&w.world.bodies) {
                let (h, _) = w.crowd.body(j).expect("a person");
                let b = w.world.bodies.get(h).expect("their body");
                let d = dist(pos, robot);
                // Checked five times a second: a person may have come half a metre closer since.
                if d < NEAR_MIN_M - 0.5 {
                    assert!(b.is_enabled(), "person {j} {d:.1} m from the robot has no body");
                    assert!(dist([b.translation().x, b.translation().y], pos) < 1e-3);
                    near += 1;
                }
                // Three cells away along one axis: outside the five by five.
                if d > 3.0 * NEAR_MIN_M * std::f32::consts::SQRT_2 + 0.5 {
                    assert!(!b.is_enabled(), "person {j} {d:.1} m from the robot has a body");
                    far += 1;
                }
            }
        }
        assert!(near > 50 && far > 10_000, "near {near}, far {far}");
        let c = w.crowd_stats();
        assert!(c.in_world_s > 0.0 && c.in_world_s < 0.5 * c.out_s, "{c:?}");
    }
}
