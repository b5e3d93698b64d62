//! The physics world of the simulator: robots and pedestrians as rapier3d bodies on a flat ground, in local
//! metres around the map's origin. It owns the robots' low-level driving (a differential-drive controller that
//! follows the released path), their forward sensing, and the safety statistics (collisions, near misses,
//! blocked robots, energy). [`RobotView`] is one robot's [`Platform`](robot_agent::platform::Platform): the
//! lockstep driver talks to it exactly as it talked to the kinematic body, with the same
//! `Passed`/`Arrived`/`ServiceDone` events.
//!
//! The parts, one file each: [`world`] ties them together around rapier's world (bodies, the step, commands,
//! odometers and batteries); [`controller`] is the robot controller, a pure function of the robot's driving
//! state, its body's pose and what its sensor saw, with no rapier in it; [`sensing`] sweeps the space ahead of
//! a robot; [`contacts`] turns rapier's collision events into counted collisions; [`safety`] judges who was at
//! fault in each and keeps the social-navigation figures (distance to people, personal-space intrusions,
//! time-to-collision, time stopped, path irregularity); [`pedestrians`] walk their loops; [`projection`] maps
//! coordinates to local metres.
//!
//! Frame: x east, y north, z up (metres). Positions come from an equirectangular projection around
//! [`MapGraph::origin`](fleet_core::map::MapGraph::origin), the same formula fleet-core uses for its own local
//! frame, so `x, y` agree with [`MapGraph::to_xy`](fleet_core::map::MapGraph::to_xy). rapier works in f32;
//! Monaco is about 3 km across, where f32 still resolves 0.2 mm.
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

mod contacts;
mod controller;
mod neighbours;
mod pedestrians;
mod projection;
mod safety;
mod sensing;
mod signals;
mod world;

use rapier3d::prelude::{Group, Real};
use serde::{Deserialize, Serialize};

pub use contacts::Collisions;
pub use controller::Blocked;
pub use pedestrians::{Attention, CrowdStats, DEFAULT_PROFILE as DEFAULT_PEDESTRIAN_PROFILE};
pub use projection::Projection;
pub use safety::{Contact, Fault, Faults, Other, SocialNav};
pub use signals::{SignalStats, Signals};
pub use world::{ObstacleId, PhysicsWorld, RobotView, ZoneOutcome};

/// A real sidewalk robot's body: half extents (length, width, height) and mass.
const ROBOT_HALF: [Real; 3] = [0.35, 0.275, 0.30];
const ROBOT_MASS_KG: Real = 50.0;

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
    /// Robots in contacts by fault ([`safety`]).
    pub faults: Faults,
    /// The social-navigation figures ([`safety`]).
    pub social: SocialNav,
}

/// Distance between two points, local metres.
fn dist(a: [Real; 2], b: [Real; 2]) -> Real {
    norm([a[0] - b[0], a[1] - b[1]])
}

/// Length of a vector. Not `hypot`: its guard against overflow costs several times a square root, and
/// street-scale figures are nowhere near overflowing (it was 3% of a simulation's time).
fn norm(v: [Real; 2]) -> Real {
    (v[0] * v[0] + v[1] * v[1]).sqrt()
}
