//! The physics world of the simulator: robots and pedestrians as rapier3d bodies on a flat ground, in local
//! metres around the map's origin. It owns the robots' low-level driving (a differential-drive controller that
//! follows the released path), their forward sensing, and the safety statistics (collisions, near misses,
//! blocked robots, energy). [`RobotView`] is one robot's [`Platform`]: the lockstep driver talks to it exactly
//! as it talked to the kinematic body, with the same `Passed`/`Arrived`/`ServiceDone` events.
//!
//! Frame: x east, y north, z up (metres). Positions come from an equirectangular projection around
//! [`MapGraph::origin`], the same formula fleet-core uses for its own local frame, so `x, y` agree with
//! [`MapGraph::to_xy`]. rapier works in f32; Monaco is about 3 km across, where f32 still resolves 0.2 mm.
//!
//! Robots are dynamic bodies (0.70 x 0.55 x 0.60 m, 50 kg) with every rotation but yaw locked and their height
//! locked: the map has no elevation, and a wheel-on-ground contact per robot per step would cost a contact
//! manifold each without telling us anything, so the robots glide 1 cm above the ground collider, which
//! interacts with nothing. Each step the controller sets the body's forward speed and yaw rate (unicycle model,
//! acceleration and yaw-rate limits); the solver still pushes bodies apart when they touch, so contacts are real.
//! Pedestrians are kinematic (they do not yield; people expect the robot to) and walk back and forth along
//! seeded random edges. Robots and pedestrians keep to the right of the line they follow, which is what lets two
//! robots meeting head-on on a footway pass each other. A robot stopped by something for a few seconds steps
//! aside to the left, unless the something is a driving robot with a higher index: of two robots that block
//! each other, the higher index steps aside and the lower waits, so they cannot both wait forever.
//! A robot that makes no progress towards its next path point for `blocked_after_s` (standing still, or
//! stepping aside and back in front of something it cannot pass) tells its agent `Blocked { index }` once per
//! path segment, which the agent reports to the dispatcher. A robot can break down ([`PhysicsWorld::break_down`]):
//! it stops for good and reports a fatal `Fault`. Walls (a blocked footway, building outlines) are fixed
//! colliders the sensor sees like anything else.
//!
//! Determinism: fixed dt, bodies inserted in a fixed order, rapier's `enhanced-determinism`, every random draw
//! from the caller's seeded stream, and statistics kept in ordered maps.

use std::collections::BTreeMap;
use std::f32::consts::{FRAC_PI_4, PI};
use std::sync::{Mutex, PoisonError};

use fleet_core::map::{MapGraph, Profile};
use fleet_core::{LatLon, NodeId, Timestamp};
use rand::Rng;
use rapier3d::parry::query::ShapeCastOptions;
use rapier3d::parry::shape::Cuboid;
use rapier3d::prelude::{
    ActiveEvents, ColliderBuilder, ColliderHandle, ColliderSet, CollisionEvent, ContactPair, EventHandler, Group,
    InteractionGroups, InteractionTestMode, PhysicsWorld as RapierWorld, Pose, QueryFilter, Real, RigidBodyBuilder,
    RigidBodyHandle, RigidBodySet, Rotation, SharedShape, SoftBodySet, SoftBodyTearEvent, Vector,
};
use robot_agent::agent::{PlatformCommand, PlatformEvent, Telemetry};
use robot_agent::platform::Platform;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Earth radius of fleet-core's local projection, metres (kept equal so our x, y match `MapGraph::to_xy`).
const EARTH_R: f64 = 6_371_008.8;
/// Battery used per metre driven and per hour switched on, percent: the same figures as `KinematicPlatform`,
/// so switching bodies does not change the fleet's energy model.
use robot_agent::platform::{CHARGE_PCT_PER_H, DRAIN_PCT_PER_H, DRAIN_PCT_PER_M};

/// A real sidewalk robot's body: half extents (length, width, height) and mass.
const ROBOT_HALF: [Real; 3] = [0.35, 0.275, 0.30];
const ROBOT_MASS_KG: Real = 50.0;
const PED_RADIUS: Real = 0.3;
const PED_HALF_HEIGHT: Real = 0.55;
/// Clearance under the robot body: the ground never touches it (see the module docs).
const HOVER: Real = 0.01;

// Collision groups. The ground is in none of the others' filters: it is scenery.
const G_GROUND: Group = Group::GROUP_1;
const G_ROBOT: Group = Group::GROUP_2;
const G_PED: Group = Group::GROUP_3;
const G_STATIC: Group = Group::GROUP_4;

// What a collider belongs to, kept in its `user_data`: kind in the top byte, index below.
const K_GROUND: u128 = 0;
const K_ROBOT: u128 = 1;
const K_PED: u128 = 2;
const K_STATIC: u128 = 3;

/// Tuning of the physics world. The defaults describe a typical six-wheeled sidewalk robot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhysicsConfig {
    /// Physics steps per simulated second; at least 20 (a step of at most 50 ms).
    pub hz: u32,
    /// Forward sensing range, metres from the robot's front.
    pub sense_range_m: f32,
    /// The robot stops when something is this close ahead.
    pub stop_gap_m: f32,
    /// Something ahead closer than this counts as a near miss.
    pub near_miss_m: f32,
    /// No progress towards the next path point for longer than this: the robot reports itself blocked.
    pub blocked_after_s: f64,
    /// Stopped by an obstacle for longer than this: the robot tries to step aside.
    pub sidestep_after_s: f64,
    /// A path point is passed when the robot is this close to it.
    pub pass_radius_m: f32,
    /// Robots keep this far right of the path's centre line.
    pub keep_right_m: f32,
    pub accel_mps2: f32,
    pub brake_mps2: f32,
    pub yaw_rate_max: f32,
}

impl Default for PhysicsConfig {
    fn default() -> Self {
        Self {
            hz: 20,
            sense_range_m: 3.0,
            stop_gap_m: 0.8,
            near_miss_m: 0.5,
            blocked_after_s: 30.0,
            sidestep_after_s: 3.0,
            pass_radius_m: 0.5,
            keep_right_m: 0.4,
            accel_mps2: 1.0,
            brake_mps2: 2.0,
            yaw_rate_max: 1.5,
        }
    }
}

/// Collisions counted from rapier's contact events, one per contact start (a pair that touches again within
/// a second is the same collision).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Collisions {
    pub robot_robot: u64,
    pub robot_pedestrian: u64,
    pub robot_static: u64,
}

impl Collisions {
    pub fn total(&self) -> u64 {
        self.robot_robot + self.robot_pedestrian + self.robot_static
    }
}

/// What the world has counted since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PhysicsStats {
    pub steps: u64,
    pub collisions: Collisions,
    /// Times something came closer ahead than `near_miss_m` (counted when it first does).
    pub near_misses: u64,
    /// Times a robot made no progress along its path for longer than `blocked_after_s`.
    pub blocked_events: u64,
    /// Times a robot stepped aside.
    pub sidesteps: u64,
}

/// What a broken-down robot's platform reports.
const BROKEN: &str = "drive failure: the robot cannot move";

/// An obstacle that can be taken away again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObstacleId(RigidBodyHandle);

/// A robot that has made no progress along its path for longer than `blocked_after_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blocked {
    /// The last path point passed: the robot cannot get from it to the next.
    pub index: usize,
    pub since: Timestamp,
}

#[derive(Debug, Clone)]
enum Task {
    Idle,
    /// Following `pts` (local metres); `normals[k]` is the right-hand normal of the segment into point k.
    /// `park` is where the drive ends instead of the last point when another robot has that spot (see
    /// [`parking_slot`]).
    Driving {
        pts: Vec<[Real; 2]>,
        normals: Vec<[Real; 2]>,
        next: usize,
        limit: Real,
        park: Option<[Real; 2]>,
    },
    Service {
        until: Timestamp,
    },
    /// Plugged in at a charger until the battery holds this much.
    Charging {
        until_pct: f64,
    },
}

/// What the forward sensor saw this step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    gap: Real,
    what: u128,
}

#[derive(Debug, Clone)]
struct Robot {
    body: RigidBodyHandle,
    task: Task,
    paused: bool,
    /// Commanded forward speed, m/s (the controller's state; the body's velocity is set from it).
    speed: Real,
    /// Whether the body still needs a velocity written (false once it stands still, so it can sleep).
    moving: bool,
    events: Vec<PlatformEvent>,
    odometer_m: f64,
    battery_pct: f64,
    /// Battery drained so far, percent (charging does not undo it).
    used_pct: f64,
    last_xy: [Real; 2],
    seen: Option<Seen>,
    near: bool,
    /// Physics step at which an obstacle first held the robot still.
    stopped_since: Option<u64>,
    blocked: Option<Blocked>,
    /// Lateral offset while stepping aside, and the step it ends.
    sidestep: Option<(Real, u64)>,
    sidesteps: u32,
    /// Progress towards the next path point: its index, the closest the robot has come to it, and the step it
    /// last came 0.5 m closer. No progress for `blocked_after_s` is a blocked robot, whether it stands still
    /// or shuffles aside and back in front of something it cannot pass.
    progress: Option<(usize, Real, u64)>,
    /// The path point whose segment was last reported blocked in the current drive: one `Blocked` event per
    /// blocking episode, however often the robot stops and steps aside on that segment.
    blocked_reported: Option<usize>,
    /// The parking slot held at the end of the current (or last) drive: the end point in decimetres and the
    /// slot number (see [`parking_slot`]).
    slot: Option<((i64, i64), usize)>,
    /// Battery drain relative to the reference 1 kWh battery (a bigger battery drains its percentage slower).
    drain_scale: f64,
    /// Broken down: the body never moves again and every command is answered with a fatal fault.
    broken: bool,
}

#[derive(Debug, Clone)]
struct Pedestrian {
    body: RigidBodyHandle,
    /// The loop walked: out on one side of the edge, back on the other.
    corners: [[Real; 2]; 4],
    /// Index into `corners` of the one walked towards.
    toward: usize,
    speed: Real,
}

/// Collects rapier's collision events during a step. rapier requires the handler to be `Sync`; the sim steps on
/// one thread, so the lock is never contended.
#[derive(Default)]
struct Collector(Mutex<Vec<CollisionEvent>>);

impl EventHandler for Collector {
    fn handle_collision_event(
        &self,
        _bodies: &RigidBodySet,
        _colliders: &ColliderSet,
        event: CollisionEvent,
        _contact_pair: Option<&ContactPair>,
    ) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(event);
    }
    fn handle_contact_force_event(
        &self,
        _dt: Real,
        _bodies: &RigidBodySet,
        _colliders: &ColliderSet,
        _contact_pair: &ContactPair,
        _total_force_magnitude: Real,
    ) {
    }
    fn handle_soft_body_tear_event(&self, _soft_bodies: &SoftBodySet, _event: &SoftBodyTearEvent) {}
}

/// Contact state of one pair of colliders, for de-duplicating collision starts.
#[derive(Debug, Clone, Copy)]
struct PairState {
    touching: bool,
    ended_step: u64,
}

/// The equirectangular projection around the map's origin (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Projection {
    origin: LatLon,
    /// Metres per degree of longitude and of latitude.
    mx: f64,
    my: f64,
}

impl Projection {
    pub fn new(origin: LatLon) -> Self {
        let k = std::f64::consts::PI / 180.0;
        Self { origin, mx: k * EARTH_R * (origin.lat() * k).cos(), my: k * EARTH_R }
    }
    pub fn to_xy(&self, p: LatLon) -> [f64; 2] {
        [(p.lon() - self.origin.lon()) * self.mx, (p.lat() - self.origin.lat()) * self.my]
    }
    /// The inverse; a point projected from a valid coordinate maps back to a valid one, and anything else (it
    /// would take thousands of km of drift) falls back to the origin.
    pub fn to_latlon(&self, xy: [f64; 2]) -> LatLon {
        LatLon::new(self.origin.lat() + xy[1] / self.my, self.origin.lon() + xy[0] / self.mx).unwrap_or(self.origin)
    }
}

/// The physics world. See the module docs.
pub struct PhysicsWorld {
    world: RapierWorld,
    proj: Projection,
    cfg: PhysicsConfig,
    dt: Real,
    start: Timestamp,
    robots: Vec<Robot>,
    peds: Vec<Pedestrian>,
    collector: Collector,
    /// Reused buffer for the events drained after each step.
    drained: Vec<CollisionEvent>,
    pairs: BTreeMap<(u128, u128), PairState>,
    stats: PhysicsStats,
    sensor: Cuboid,
    /// Parking slots taken around each drive's end point (decimetres): slot -> robot.
    parking: BTreeMap<(i64, i64), BTreeMap<usize, usize>>,
}

fn wrap(a: Real) -> Real {
    let mut a = a % (2.0 * PI);
    if a > PI {
        a -= 2.0 * PI;
    } else if a < -PI {
        a += 2.0 * PI;
    }
    a
}

fn yaw_of(r: &Rotation) -> Real {
    let f = *r * Vector::X;
    f.y.atan2(f.x)
}

/// Velocity walking from `from` straight to `to` at `speed`.
fn walk_velocity(from: [Real; 2], to: [Real; 2], speed: Real) -> Vector {
    let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
    let d = (dx * dx + dy * dy).sqrt();
    if d > 1e-3 { Vector::new(dx / d * speed, dy / d * speed, 0.0) } else { Vector::ZERO }
}

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

fn dist(a: [Real; 2], b: [Real; 2]) -> Real {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
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
        // The sensor sweeps a thin slab as wide as the robot (plus 5 cm a side) through the space ahead.
        let sensor = Cuboid::new(Vector::new(0.02, ROBOT_HALF[1] + 0.05, ROBOT_HALF[2] - 0.05));
        Ok(Self {
            world,
            proj: Projection::new(origin),
            cfg,
            dt,
            start,
            robots: Vec::new(),
            peds: Vec::new(),
            collector: Collector::default(),
            drained: Vec::new(),
            pairs: BTreeMap::new(),
            stats: PhysicsStats::default(),
            sensor,
            parking: BTreeMap::new(),
        })
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
            task: Task::Idle,
            paused: false,
            speed: 0.0,
            moving: false,
            events: Vec::new(),
            odometer_m: 0.0,
            battery_pct: 100.0,
            used_pct: 0.0,
            last_xy: xy,
            seen: None,
            near: false,
            stopped_since: None,
            blocked: None,
            sidestep: None,
            sidesteps: 0,
            progress: None,
            slot: None,
            blocked_reported: None,
            broken: false,
            drain_scale: 1.0,
        });
        i
    }

    /// Robot `i` breaks down for good: it stops where it is, drops what it was doing and reports a fatal fault.
    pub fn break_down(&mut self, i: usize) {
        let Some(r) = self.robots.get_mut(i) else { return };
        if r.broken {
            return;
        }
        r.broken = true;
        r.task = Task::Idle;
        r.sidestep = None;
        r.blocked = None;
        r.stopped_since = None;
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
        self.robots
            .get(i)
            .is_some_and(|r| !r.broken && !r.paused && matches!(r.task, Task::Driving { .. } | Task::Service { .. }))
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

    /// Adds a pedestrian walking back and forth between `a` and `b` at `speed_mps`, starting `frac` of the way.
    pub fn add_pedestrian(&mut self, a: LatLon, b: LatLon, speed_mps: f32, frac: f32) {
        let (pa, pb) = (self.proj.to_xy(a), self.proj.to_xy(b));
        let (pa, pb) = ([pa[0] as Real, pa[1] as Real], [pb[0] as Real, pb[1] as Real]);
        let len = dist(pa, pb).max(1e-3);
        // People keep right too: out along the right-hand side of a -> b, across, and back along the other side.
        let n = [(pb[1] - pa[1]) / len * 0.6, -(pb[0] - pa[0]) / len * 0.6];
        let corners = [
            [pa[0] + n[0], pa[1] + n[1]],
            [pb[0] + n[0], pb[1] + n[1]],
            [pb[0] - n[0], pb[1] - n[1]],
            [pa[0] - n[0], pa[1] - n[1]],
        ];
        let f = frac.clamp(0.0, 1.0);
        let start = [corners[0][0] + (pb[0] - pa[0]) * f, corners[0][1] + (pb[1] - pa[1]) * f];
        let j = self.peds.len();
        let (body, _) = self.world.insert(
            RigidBodyBuilder::kinematic_velocity_based()
                .translation(Vector::new(start[0], start[1], PED_HALF_HEIGHT + PED_RADIUS))
                .linvel(walk_velocity(start, corners[1], speed_mps)),
            ColliderBuilder::capsule_z(PED_HALF_HEIGHT, PED_RADIUS)
                .collision_groups(InteractionGroups::new(G_PED, G_ROBOT, InteractionTestMode::And))
                .user_data(K_PED << 120 | j as u128),
        );
        self.peds.push(Pedestrian { body, corners, toward: 1, speed: speed_mps });
    }

    /// Adds `count` pedestrians on random edges of `map` (longer than 5 m) at 1.0-1.5 m/s, drawn from `rng`.
    pub fn add_pedestrians(&mut self, map: &MapGraph, count: usize, rng: &mut impl Rng) {
        let edges: Vec<(u32, u32)> = map
            .weighted_edges(Profile::default())
            .into_iter()
            .filter(|&(u, v, _)| u < v)
            .map(|(u, v, _)| (u, v))
            .filter(|&(u, v)| match (map.pos(NodeId(u)), map.pos(NodeId(v))) {
                (Some(a), Some(b)) => a.distance_m(b) > 5.0,
                _ => false,
            })
            .collect();
        if edges.is_empty() {
            return;
        }
        for _ in 0..count {
            let (u, v) = edges[rng.random_range(0..edges.len())];
            let speed = rng.random_range(1.0..1.5);
            let frac = rng.random_range(0.0..1.0);
            if let (Some(a), Some(b)) = (map.pos(NodeId(u)), map.pos(NodeId(v))) {
                self.add_pedestrian(a, b, speed, frac);
            }
        }
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
            speed_mps: f64::from(if r.paused { 0.0 } else { r.speed }),
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
        self.robots.get(i)?.blocked
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
        // A pedestrian's velocity is written only when they turn at a corner: rewriting it every step would make
        // rapier re-process the body as user-changed each step, which was a visible share of the step time.
        for p in &mut self.peds {
            if let Some(b) = self.world.bodies.get_mut(p.body) {
                let t = b.translation();
                if dist([t.x, t.y], p.corners[p.toward]) < p.speed * self.dt * 1.5 {
                    p.toward = (p.toward + 1) % 4;
                    b.set_linvel(walk_velocity([t.x, t.y], p.corners[p.toward], p.speed), true);
                }
            }
        }
        for i in 0..self.robots.len() {
            self.control(i, step);
        }
        self.world.step_with_events(&(), &self.collector);
        self.stats.steps += 1;
        let step = self.stats.steps;
        self.account_contacts(step);
        let hours = f64::from(self.dt) / 3600.0;
        for r in &mut self.robots {
            let idle = (hours * DRAIN_PCT_PER_H * r.drain_scale).min(r.battery_pct);
            r.battery_pct -= idle;
            r.used_pct += idle;
            if let Task::Charging { .. } = r.task
                && !r.paused
            {
                r.battery_pct = (r.battery_pct + hours * CHARGE_PCT_PER_H).min(100.0);
            }
            if !r.moving {
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

    /// The forward sweep of robot `i`: the nearest thing ahead within range, ignoring the robot itself.
    fn sense(&self, body: RigidBodyHandle, pos: Vector, yaw: Real) -> Option<Seen> {
        let dir = Vector::new(yaw.cos(), yaw.sin(), 0.0);
        let origin = pos + dir * (ROBOT_HALF[0] + 0.03);
        let shape_pos = Pose::from_parts(origin, Rotation::from_rotation_z(yaw));
        let filter = QueryFilter::default().exclude_rigid_body(body).groups(InteractionGroups::new(
            G_ROBOT,
            G_ROBOT | G_PED | G_STATIC,
            InteractionTestMode::And,
        ));
        let opts = ShapeCastOptions::with_max_time_of_impact(self.cfg.sense_range_m);
        let (h, hit) = self.world.query_pipeline_with_filter(filter).cast_shape(&shape_pos, dir, &self.sensor, opts)?;
        let what = self.world.colliders.get(h).map_or(K_STATIC << 120, |c| c.user_data);
        Some(Seen { gap: hit.time_of_impact, what })
    }

    fn control(&mut self, i: usize, step: u64) {
        let cfg = self.cfg.clone();
        let dt = self.dt;
        let Some(body) = self.robots.get(i).map(|r| r.body) else { return };
        let Some(b) = self.world.bodies.get(body) else { return };
        let pos = b.translation();
        let p = [pos.x, pos.y];
        let yaw = yaw_of(b.rotation());
        let driving = matches!(self.robots[i].task, Task::Driving { .. }) && !self.robots[i].paused;
        let seen = if driving { self.sense(body, pos, yaw) } else { None };
        // Who blocks us matters for the yield rule: a robot index, and whether that robot is driving.
        let blocker_driving = seen.and_then(|s| {
            (s.what >> 120 == K_ROBOT)
                .then_some((s.what & 0xffff_ffff) as usize)
                .map(|j| (j, self.robots.get(j).is_some_and(|o| matches!(o.task, Task::Driving { .. }) && !o.paused)))
        });
        let (start, hz) = (self.start, u64::from(self.cfg.hz));
        let r = &mut self.robots[i];
        r.seen = seen;
        if !driving {
            r.near = false;
            r.stopped_since = None;
            r.progress = None;
            // Brake to a halt, then leave the body alone so rapier can put it to sleep.
            if r.speed > 0.0 || r.moving {
                r.speed = (r.speed - cfg.brake_mps2 * dt).max(0.0);
                if let Some(b) = self.world.bodies.get_mut(body) {
                    b.set_linvel(Vector::new(yaw.cos() * r.speed, yaw.sin() * r.speed, 0.0), true);
                    b.set_angvel(Vector::ZERO, true);
                }
                r.moving = r.speed > 0.0;
            }
            return;
        }
        let gap = seen.map_or(Real::INFINITY, |s| s.gap);
        let near = gap < cfg.near_miss_m;
        if near && !r.near {
            self.stats.near_misses += 1;
        }
        r.near = near;
        let held = gap < cfg.stop_gap_m + 0.05;
        let (next_k, next_pt) = match &r.task {
            Task::Driving { pts, next, .. } => (*next, pts.get(*next).copied()),
            _ => (0, None),
        };
        if let Some(q) = next_pt {
            let dq = dist(p, q);
            match &mut r.progress {
                Some((k, best, at)) if *k == next_k => {
                    if dq < *best - 0.5 {
                        (*best, *at) = (dq, step);
                        r.blocked = None;
                    }
                }
                _ => {
                    r.progress = Some((next_k, dq, step));
                    r.blocked = None;
                }
            }
        }
        if let Some((_, _, since)) = r.progress
            && (step - since) as f64 / f64::from(cfg.hz) > cfg.blocked_after_s
            && r.blocked.is_none()
        {
            let index = next_k.saturating_sub(1);
            r.blocked = Some(Blocked { index, since: Timestamp(start.0 + since * 1_000 / hz) });
            self.stats.blocked_events += 1;
            if r.blocked_reported != Some(index) {
                r.blocked_reported = Some(index);
                r.events.push(PlatformEvent::Blocked { index });
            }
        }
        if held {
            let since = *r.stopped_since.get_or_insert(step);
            let held_s = (step - since) as f64 / f64::from(cfg.hz);
            // The yield rule: wait for a driving robot with a higher index (it steps aside), else step aside.
            // The wait is bounded: the other may be stuck itself (against a parked robot, in a queue at a
            // shop) and never step aside, and two robots each waiting on a chain of others is a livelock.
            let wait_for_other =
                blocker_driving.is_some_and(|(j, drv)| drv && j > i) && held_s < 3.0 * cfg.sidestep_after_s;
            if held_s > cfg.sidestep_after_s && r.sidestep.is_none() && !wait_for_other {
                // Alternate sides so that a robot stuck against something wide tries both.
                let lateral = if r.sidesteps.is_multiple_of(2) { -1.0 } else { 1.2 };
                r.sidestep = Some((lateral, step + u64::from(cfg.hz) * 10));
                r.sidesteps += 1;
                self.stats.sidesteps += 1;
                r.stopped_since = Some(step);
            }
        } else {
            r.stopped_since = None;
        }
        if r.sidestep.is_some_and(|(_, until)| step >= until) {
            r.sidestep = None;
        }
        let (lane, lookahead) = match r.sidestep {
            Some((l, _)) => (l, 1.0),
            None => (cfg.keep_right_m, 2.5),
        };
        let held_long = r.stopped_since.is_some_and(|s| step - s >= u64::from(cfg.hz));
        let Task::Driving { pts, normals, next, limit, park } = &mut r.task else { return };
        let park = *park;
        // Where point k is aimed at: in our lane, except the end when we have a parking slot there.
        let aim = |k: usize, pts: &[[Real; 2]], normals: &[[Real; 2]]| match park {
            Some(xy) if k + 1 == pts.len() => xy,
            _ => [pts[k][0] + normals[k][0] * lane, pts[k][1] + normals[k][1] * lane],
        };
        // Pass every point we are close to; the last one ends the drive. The end counts as reached when
        // something (typically a robot parked there) holds us within 5 m of it: the spot is taken.
        let mut arrived = false;
        loop {
            let k = *next;
            if k >= pts.len() {
                arrived = true;
                break;
            }
            let b = aim(k, pts, normals);
            let last = k + 1 == pts.len();
            if dist(p, b) <= cfg.pass_radius_m || (last && held_long && dist(p, b) < 5.0) {
                r.events.push(PlatformEvent::Passed { index: k });
                *next += 1;
            } else {
                break;
            }
        }
        if arrived {
            r.events.push(PlatformEvent::Arrived);
            r.task = Task::Idle;
            r.sidestep = None;
            r.blocked = None;
            r.stopped_since = None;
            // Braking happens in the next steps' idle branch.
            return;
        }
        let k = *next;
        let n = normals[k];
        let bpt = aim(k, pts, normals);
        let apt = if k == 0 { p } else { [pts[k - 1][0] + n[0] * lane, pts[k - 1][1] + n[1] * lane] };
        let ab = [bpt[0] - apt[0], bpt[1] - apt[1]];
        let len = (ab[0] * ab[0] + ab[1] * ab[1]).sqrt();
        let carrot = if len < 1e-3 {
            bpt
        } else {
            let u = [ab[0] / len, ab[1] / len];
            let t = ((p[0] - apt[0]) * u[0] + (p[1] - apt[1]) * u[1]).clamp(0.0, len);
            let s = (t + lookahead).min(len);
            [apt[0] + u[0] * s, apt[1] + u[1] * s]
        };
        let to = [carrot[0] - p[0], carrot[1] - p[1]];
        let want = if to[0].abs() + to[1].abs() < 1e-4 { yaw } else { to[1].atan2(to[0]) };
        let err = wrap(want - yaw);
        let c45 = FRAC_PI_4.cos();
        let mut v = *limit * ((err.cos() - c45) / (1.0 - c45)).clamp(0.0, 1.0);
        if k + 1 == pts.len() {
            v = v.min((2.0 * cfg.brake_mps2 * dist(p, bpt)).sqrt().max(0.3));
        }
        let mut brake = cfg.brake_mps2;
        if gap < cfg.stop_gap_m {
            v = 0.0;
            brake *= 2.0;
        } else if gap < cfg.sense_range_m {
            // Slow down as soon as something is in range, and never faster than a comfortable stop (at the
            // acceleration limit) short of it; creep the last centimetres.
            let f = (gap - cfg.stop_gap_m) / (cfg.sense_range_m - cfg.stop_gap_m);
            let comfortable = (2.0 * cfg.accel_mps2 * (gap - cfg.stop_gap_m)).sqrt();
            v = v.min((*limit * (0.5 + 0.5 * f)).min(comfortable).max(0.1));
        }
        r.speed = (r.speed + (v - r.speed).clamp(-brake * dt, cfg.accel_mps2 * dt)).max(0.0);
        let w = (2.0 * err).clamp(-cfg.yaw_rate_max, cfg.yaw_rate_max);
        r.moving = true;
        let speed = r.speed;
        if let Some(b) = self.world.bodies.get_mut(body) {
            b.set_linvel(Vector::new(yaw.cos() * speed, yaw.sin() * speed, 0.0), true);
            b.set_angvel(Vector::new(0.0, 0.0, w), true);
        }
    }

    /// Counts collision starts involving a robot, once per contact (see [`Collisions`]).
    fn account_contacts(&mut self, step: u64) {
        {
            let mut q = self.collector.0.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *q, &mut self.drained);
        }
        let debounce = u64::from(self.cfg.hz);
        for ev in self.drained.drain(..) {
            let ud = |h: ColliderHandle| self.world.colliders.get(h).map_or(K_GROUND << 120, |c| c.user_data);
            let (a, b) = (ud(ev.collider1()), ud(ev.collider2()));
            let key = (a.min(b), a.max(b));
            let kinds = (key.0 >> 120, key.1 >> 120);
            let state = self.pairs.entry(key).or_insert(PairState { touching: false, ended_step: 0 });
            match ev {
                CollisionEvent::Started(..) => {
                    let fresh = !state.touching && (state.ended_step == 0 || step - state.ended_step > debounce);
                    state.touching = true;
                    if fresh {
                        let c = &mut self.stats.collisions;
                        match kinds {
                            (K_ROBOT, K_ROBOT) => c.robot_robot += 1,
                            (K_ROBOT, K_PED) => c.robot_pedestrian += 1,
                            (K_ROBOT, K_STATIC) => c.robot_static += 1,
                            _ => {}
                        }
                    }
                }
                CollisionEvent::Stopped(..) => {
                    state.touching = false;
                    state.ended_step = step;
                }
            }
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
            PlatformCommand::Drive { path, speed_mps } => {
                r.events.clear();
                let pts: Vec<[Real; 2]> = path
                    .iter()
                    .map(|&q| {
                        let xy = proj.to_xy(q);
                        [xy[0] as Real, xy[1] as Real]
                    })
                    .collect();
                let mut normals = vec![[0.0; 2]; pts.len()];
                for k in 1..pts.len() {
                    let s = [pts[k][0] - pts[k - 1][0], pts[k][1] - pts[k - 1][1]];
                    let l = (s[0] * s[0] + s[1] * s[1]).sqrt();
                    normals[k] = if l > 1e-3 { [s[1] / l, -s[0] / l] } else { normals[k - 1] };
                }
                if pts.len() > 1 {
                    normals[0] = normals[1];
                }
                // The route starts where the dispatcher believes the robot stands (its node); the body is there
                // up to its parking spot, so it joins the route from where it is.
                let mut next = 0;
                if !pts.is_empty() {
                    r.events.push(PlatformEvent::Passed { index: 0 });
                    next = 1;
                }
                let limit = if speed_mps.is_finite() { speed_mps.max(0.0) as Real } else { 0.0 };
                // The end's parking slot: the lowest free one around that point; the robot keeps it until its
                // next drive, so robots waiting or serving at one stop stand apart instead of on one spot.
                if let Some((key, k)) = r.slot.take()
                    && let Some(taken) = self.parking.get_mut(&key)
                {
                    taken.remove(&k);
                }
                let mut park = None;
                if let Some(&end) = pts.last() {
                    let key = ((end[0] * 10.0).round() as i64, (end[1] * 10.0).round() as i64);
                    let taken = self.parking.entry(key).or_default();
                    let k = (0..).find(|k| !taken.contains_key(k)).unwrap_or(0);
                    taken.insert(k, i);
                    r.slot = Some((key, k));
                    park = parking_slot(k).map(|o| [end[0] + o[0], end[1] + o[1]]);
                }
                r.task = Task::Driving { pts, normals, next, limit, park };
                r.sidestep = None;
                r.stopped_since = None;
                r.blocked = None;
                r.blocked_reported = None;
                r.progress = None;
            }
            PlatformCommand::Load { service_s, .. } | PlatformCommand::Unload { service_s, .. } => {
                r.events.clear();
                let s = if service_s.is_finite() { service_s.max(0.0) } else { 0.0 };
                r.task = Task::Service { until: now.plus_secs(s) };
            }
            PlatformCommand::Charge { until_pct } => {
                r.events.clear();
                let until = if until_pct.is_finite() { until_pct.min(100.0) } else { 100.0 };
                r.task = Task::Charging { until_pct: until };
            }
            PlatformCommand::Stop => {
                r.events.clear();
                r.task = Task::Idle;
            }
            PlatformCommand::Pause => r.paused = true,
            PlatformCommand::Resume => r.paused = false,
        }
    }

    fn poll(&mut self, i: usize, now: Timestamp) -> Vec<PlatformEvent> {
        let Some(r) = self.robots.get_mut(i) else { return Vec::new() };
        if !r.paused
            && let Task::Service { until } = r.task
            && now >= until
        {
            r.task = Task::Idle;
            r.events.push(PlatformEvent::ServiceDone);
        }
        if let Task::Charging { until_pct } = r.task
            && r.battery_pct >= until_pct
        {
            r.task = Task::Idle;
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
        let fallback = Telemetry { pos: self.world.proj.origin, heading_deg: 0.0, speed_mps: 0.0, battery_pct: 0.0 };
        self.world.telemetry(self.i).unwrap_or(fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_round_trips_and_matches_fleet_core() {
        let o = LatLon::new(43.73, 7.42).expect("valid");
        let p = LatLon::new(43.7345, 7.4261).expect("valid");
        let proj = Projection::new(o);
        let xy = proj.to_xy(p);
        let back = proj.to_latlon(xy);
        assert!(back.distance_m(p) < 1e-6, "{back:?}");
        assert!((xy[0].hypot(xy[1]) - o.distance_m(p)).abs() < 1.0, "{xy:?}");
    }

    #[test]
    fn wrap_keeps_angles_in_range() {
        assert!((wrap(3.0 * PI / 2.0) + PI / 2.0).abs() < 1e-5);
        assert!((wrap(-3.0 * PI / 2.0) - PI / 2.0).abs() < 1e-5);
    }
}
