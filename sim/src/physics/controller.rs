//! The robot controller: one fixed step of a differential-drive robot following its released path, as a pure
//! function ([`control`]) of the robot's driving state ([`Controller`]), where its body stands ([`BodyState`]),
//! what its forward sensor saw ([`Ahead`]), the tuning ([`PhysicsConfig`]) and the step ([`Clock`]). It
//! decides the body's forward speed and yaw rate, passes path points and ends the drive, steps aside around
//! what holds it, applies the yield rule between robots, and says when the robot is blocked. It knows nothing
//! of rapier: the [world](super::PhysicsWorld) reads the body and the sensor, calls [`control`] and writes the
//! velocities back, so the controller is tested here without a physics world.
//!
//! The arithmetic is in f32 (rapier's `Real`) and in a fixed order: the simulator's reports are byte-identical
//! for a scenario and seed only as long as every step computes exactly the same numbers.

use std::f32::consts::{FRAC_PI_4, PI};

use fleet_core::Timestamp;
use robot_agent::agent::PlatformEvent;

use super::{PhysicsConfig, ROBOT_HALF, dist};

/// A robot aims its lane (a step aside included) this far inside its corridor's edge, metres: room for the
/// swing of a step aside (which overshoots its new lane by about as much).
pub const EDGE_MARGIN_M: f32 = 0.1;

/// A robot held below three quarters of its speed limit by a person its sensor sees ahead for this long,
/// seconds, overtakes them: it steps aside to the left (a step aside of the usual length), where its corridor
/// leaves at least [`OVERTAKE_ROOM_M`] beside the line.
pub const OVERTAKE_AFTER_S: f64 = 5.0;
pub const OVERTAKE_ROOM_M: f32 = 0.55;

/// A path point where the way turns by more than this (radians, 30 degrees) is a corner: the robot turns
/// there, and its corners sweep out beside its lane.
pub const CORNER_RAD: f32 = 0.52;

/// A robot that has made no progress along its path for longer than `blocked_after_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blocked {
    /// The last path point passed: the robot cannot get from it to the next.
    pub index: usize,
    pub since: Timestamp,
}

/// What the robot is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Idle,
    /// Following `pts` (local metres); `normals[k]` is the right-hand normal of the segment into point k and
    /// `room[k]` how far from its centre line the robot's centre may be on it (the corridor less half the
    /// robot's width; infinite without a corridor). `park` is where the drive ends instead of the last point
    /// when another robot has that spot (the world's parking slots). `joined`: the robot has been inside its
    /// corridor since the drive began (it may start off the way, at a parking slot).
    Driving {
        pts: Vec<[f32; 2]>,
        normals: Vec<[f32; 2]>,
        room: Vec<f32>,
        next: usize,
        limit: f32,
        park: Option<[f32; 2]>,
        joined: bool,
    },
    Service {
        until: Timestamp,
    },
    /// Plugged in at a charger until the battery holds this much.
    Charging {
        until_pct: f64,
    },
}

/// One robot's driving state: what [`control`] reads and writes from one step to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Controller {
    /// The robot's index in the world, for the yield rule (the higher index steps aside).
    pub index: usize,
    pub task: Task,
    pub paused: bool,
    /// Commanded forward speed, m/s (the body's velocity is set from it).
    pub speed: f32,
    /// Whether the body still needs a velocity written (false once it stands still, so it can sleep).
    pub moving: bool,
    /// Whether something was closer ahead than `near_miss_m` last step (a near miss counts when it starts).
    pub near: bool,
    /// Physics step at which an obstacle first held the robot still.
    pub stopped_since: Option<u64>,
    pub blocked: Option<Blocked>,
    /// Lateral offset while stepping aside, and the step it ends.
    pub sidestep: Option<(f32, u64)>,
    pub sidesteps: u32,
    /// Progress towards the next path point: its index, the closest the robot has come to it, and the step it
    /// last came 0.5 m closer. No progress for `blocked_after_s` is a blocked robot, whether it stands still
    /// or shuffles aside and back in front of something it cannot pass.
    pub progress: Option<(usize, f32, u64)>,
    /// The path point whose segment was last reported blocked in the current drive: one `Blocked` event per
    /// blocking episode, however often the robot stops and steps aside on that segment.
    pub blocked_reported: Option<usize>,
    /// How far the robot's body stood beyond its way's edge at the last step, metres (0 on the way, before it
    /// joined its corridor, on the way into a parking slot, and without a corridor).
    pub off_way_m: f32,
    /// Physics step since which the robot has trailed someone slower (see [`OVERTAKE_AFTER_S`]).
    pub trailing_since: Option<u64>,
}

/// Where the body stands: local metres (x east, y north) and yaw (counter-clockwise from east).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BodyState {
    pub xy: [f32; 2],
    pub yaw: f32,
}

/// The nearest thing the forward sensor saw this step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ahead {
    /// Free distance ahead of the robot's front, metres: what the sensor measured, or where the robot's
    /// look-out expects to meet someone crossing its way.
    pub gap: f32,
    /// What the sensor itself measured (infinite when it saw nothing): near misses count on it.
    pub sensed: f32,
    /// When the thing is a robot: which one, and whether it is driving (the yield rule needs both).
    pub robot: Option<OtherRobot>,
    /// A rule holds the robot there (a red light), not something in its way: it waits without stepping aside
    /// and is not blocked.
    pub rule: bool,
}

/// Another robot seen ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherRobot {
    pub index: usize,
    pub driving: bool,
}

/// The step being taken: its number (the controller's timers count steps), the world's start (to date a
/// blocked robot) and the step's length, seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub start: Timestamp,
    pub step: u64,
    pub dt: f32,
}

/// The body's velocity: forward speed along its heading (m/s) and yaw rate (rad/s, counter-clockwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Velocity {
    pub speed: f32,
    pub yaw_rate: f32,
}

/// What [`control`] wants done after a step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Control {
    /// The velocity to give the body; `None` leaves the body alone (it stands still and may sleep, or it has
    /// just arrived and brakes from the next step on).
    pub velocity: Option<Velocity>,
    /// Events for the agent, in order.
    pub events: Vec<PlatformEvent>,
    /// A near miss started this step.
    pub near_miss: bool,
    /// The robot became blocked this step.
    pub blocked: bool,
    /// The robot started stepping aside this step.
    pub sidestep: bool,
}

impl Controller {
    /// Robot `index` standing idle.
    pub fn new(index: usize) -> Self {
        Self {
            index,
            task: Task::Idle,
            paused: false,
            speed: 0.0,
            moving: false,
            near: false,
            stopped_since: None,
            blocked: None,
            sidestep: None,
            sidesteps: 0,
            progress: None,
            blocked_reported: None,
            off_way_m: 0.0,
            trailing_since: None,
        }
    }

    /// The next corner of the drive the robot will turn at, when it comes within `within` metres of it: where
    /// it aims there (in its lane, a step aside included, within the corridor). A corner is a path point
    /// other than the last where the way turns by more than [`CORNER_RAD`].
    pub fn corner_ahead(&self, p: [f32; 2], cfg: &PhysicsConfig, within: f32) -> Option<[f32; 2]> {
        let Task::Driving { pts, normals, room, next, .. } = &self.task else { return None };
        let k = *next;
        if k == 0 || k + 1 >= pts.len() {
            return None;
        }
        let (a, b, c) = (pts[k - 1], pts[k], pts[k + 1]);
        let turn = wrap((c[1] - b[1]).atan2(c[0] - b[0]) - (b[1] - a[1]).atan2(b[0] - a[0]));
        if turn.abs() <= CORNER_RAD {
            return None;
        }
        let lane = lane_within(self.sidestep.map_or(cfg.keep_right_m, |(l, _)| l), room[k]);
        let at = [b[0] + normals[k][0] * lane, b[1] + normals[k][1] * lane];
        (dist(p, at) < within).then_some(at)
    }

    /// The direction of the stretch of way the robot is on (towards its next path point), when driving.
    pub fn way_direction(&self) -> Option<[f32; 2]> {
        let Task::Driving { pts, next, .. } = &self.task else { return None };
        let (a, b) = (pts.get(next.checked_sub(1)?)?, pts.get(*next)?);
        let (d, l) = ([b[0] - a[0], b[1] - a[1]], dist(*a, *b));
        (l > 1e-3).then(|| [d[0] / l, d[1] / l])
    }

    /// Whether the robot follows a path this step (a paused drive does not).
    pub fn driving(&self) -> bool {
        matches!(self.task, Task::Driving { .. }) && !self.paused
    }

    /// Starts following `pts` at up to `limit` m/s, ending at `park` instead of the last point when given, and
    /// keeping its body within `corridor[k]` of the centre line from point k to k + 1 (empty: no corridor).
    /// The first point is where the dispatcher believes the robot stands, so it counts as passed and the robot
    /// heads for the second.
    pub fn drive(&mut self, pts: Vec<[f32; 2]>, limit: f32, park: Option<[f32; 2]>, corridor: &[f32]) {
        let mut normals = vec![[0.0; 2]; pts.len()];
        for k in 1..pts.len() {
            let s = [pts[k][0] - pts[k - 1][0], pts[k][1] - pts[k - 1][1]];
            let l = (s[0] * s[0] + s[1] * s[1]).sqrt();
            normals[k] = if l > 1e-3 { [s[1] / l, -s[0] / l] } else { normals[k - 1] };
        }
        if pts.len() > 1 {
            normals[0] = normals[1];
        }
        // A corridor of the wrong length is no corridor (the agent checked it on the wire).
        let mut room: Vec<f32> = if corridor.len() + 1 == pts.len() {
            std::iter::once(0.0).chain(corridor.iter().map(|w| (w - ROBOT_HALF[1]).max(0.0))).collect()
        } else {
            vec![f32::INFINITY; pts.len()]
        };
        if room.len() > 1 {
            room[0] = room[1];
        }
        let next = usize::from(!pts.is_empty());
        self.task = Task::Driving { pts, normals, room, next, limit, park, joined: false };
        self.off_way_m = 0.0;
        self.sidestep = None;
        self.stopped_since = None;
        self.blocked = None;
        self.blocked_reported = None;
        self.progress = None;
    }
}

/// Lane offset `lane` kept within a corridor leaving `room` for the robot's centre, [`EDGE_MARGIN_M`] inside it.
fn lane_within(lane: f32, room: f32) -> f32 {
    let r = (room - EDGE_MARGIN_M).max(0.0);
    lane.clamp(-r, r)
}

/// Distance from `p` to the segment `a`-`b`.
fn segment_distance(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    dist(p, [a[0] + t * dx, a[1] + t * dy])
}

/// Angle `a` brought into [-pi, pi].
pub fn wrap(a: f32) -> f32 {
    let mut a = a % (2.0 * PI);
    if a > PI {
        a -= 2.0 * PI;
    } else if a < -PI {
        a += 2.0 * PI;
    }
    a
}

/// One step of robot `c` standing at `body`, with `ahead` what its sensor saw (nothing, or not driving: `None`).
///
/// Not driving: it brakes to a halt and then leaves the body alone. Driving: it passes the path points it is
/// close to (the last ends the drive), aims at a carrot on its lane `lookahead` metres ahead, turns towards
/// it and drives only as fast as its heading error, the end of the path and the gap ahead allow (within the
/// acceleration and braking limits); held by something for `sidestep_after_s` it steps aside (waiting for a
/// driving robot with a higher index to do so first, for a bounded time), and with no progress towards the
/// next point for `blocked_after_s` it is blocked.
pub fn control(
    c: &mut Controller,
    body: BodyState,
    ahead: Option<Ahead>,
    cfg: &PhysicsConfig,
    clock: Clock,
) -> Control {
    let mut out = Control::default();
    let (p, yaw, dt, step) = (body.xy, body.yaw, clock.dt, clock.step);
    let (start, hz) = (clock.start, u64::from(cfg.hz));
    if !c.driving() {
        c.near = false;
        c.stopped_since = None;
        c.progress = None;
        // Brake to a halt, then leave the body alone so rapier can put it to sleep.
        if c.speed > 0.0 || c.moving {
            c.speed = (c.speed - cfg.brake_mps2 * dt).max(0.0);
            out.velocity = Some(Velocity { speed: c.speed, yaw_rate: 0.0 });
            c.moving = c.speed > 0.0;
        }
        return out;
    }
    let gap = ahead.map_or(f32::INFINITY, |s| s.gap);
    let near = ahead.is_some_and(|s| s.sensed < cfg.near_miss_m);
    if near && !c.near {
        out.near_miss = true;
    }
    c.near = near;
    let rule = ahead.is_some_and(|a| a.rule);
    let held = gap < cfg.stop_gap_m + 0.05 && !rule;
    let (next_k, next_pt) = match &c.task {
        Task::Driving { pts, next, .. } => (*next, pts.get(*next).copied()),
        _ => (0, None),
    };
    if let Some(q) = next_pt {
        let dq = dist(p, q);
        match &mut c.progress {
            Some((k, best, at)) if *k == next_k => {
                if dq < *best - 0.5 {
                    (*best, *at) = (dq, step);
                    c.blocked = None;
                }
            }
            _ => {
                c.progress = Some((next_k, dq, step));
                c.blocked = None;
            }
        }
    }
    // Waiting for a light is not being blocked.
    if rule && let Some((_, _, at)) = &mut c.progress {
        *at = step;
    }
    if let Some((_, _, since)) = c.progress
        && (step - since) as f64 / f64::from(cfg.hz) > cfg.blocked_after_s
        && c.blocked.is_none()
    {
        let index = next_k.saturating_sub(1);
        c.blocked = Some(Blocked { index, since: Timestamp(start.0 + since * 1_000 / hz) });
        out.blocked = true;
        if c.blocked_reported != Some(index) {
            c.blocked_reported = Some(index);
            out.events.push(PlatformEvent::Blocked { index });
        }
    }
    if held {
        let since = *c.stopped_since.get_or_insert(step);
        let held_s = (step - since) as f64 / f64::from(cfg.hz);
        // The yield rule: wait for a driving robot with a higher index (it steps aside), else step aside.
        // The wait is bounded: the other may be stuck itself (against a parked robot, in a queue at a
        // shop) and never step aside, and two robots each waiting on a chain of others is a livelock.
        let wait_for_other = ahead.and_then(|a| a.robot).is_some_and(|o| o.driving && o.index > c.index)
            && held_s < 3.0 * cfg.sidestep_after_s;
        if held_s > cfg.sidestep_after_s && c.sidestep.is_none() && !wait_for_other {
            // Alternate sides so that a robot stuck against something wide tries both.
            let lateral = if c.sidesteps.is_multiple_of(2) { -1.0 } else { 1.2 };
            c.sidestep = Some((lateral, step + u64::from(cfg.hz) * 10));
            c.sidesteps += 1;
            out.sidestep = true;
            c.stopped_since = Some(step);
        }
    } else {
        c.stopped_since = None;
    }
    if c.sidestep.is_some_and(|(_, until)| step >= until) {
        c.sidestep = None;
    }
    // Trailing a slower person: overtake on the left where the way leaves room.
    let trail = match &c.task {
        Task::Driving { limit, room, next, .. } => Some((*limit, room.get(*next).copied().unwrap_or(f32::INFINITY))),
        _ => None,
    };
    if let Some((limit, room_here)) = trail
        && !held
        && !rule
        && c.sidestep.is_none()
        && c.speed < 0.75 * limit
        && ahead.is_some_and(|a| a.robot.is_none() && a.sensed < cfg.sense_range_m)
    {
        let since = *c.trailing_since.get_or_insert(step);
        if (step - since) as f64 / f64::from(cfg.hz) > OVERTAKE_AFTER_S && room_here - EDGE_MARGIN_M >= OVERTAKE_ROOM_M
        {
            c.sidestep = Some((-1.0, step + u64::from(cfg.hz) * 10));
            c.trailing_since = None;
            out.sidestep = true;
        }
    } else {
        c.trailing_since = None;
    }
    let (lane, lookahead) = match c.sidestep {
        Some((l, _)) => (l, 1.0),
        None => (cfg.keep_right_m, 2.5),
    };
    let held_long = c.stopped_since.is_some_and(|s| step - s >= u64::from(cfg.hz));
    let stepping = c.sidestep.is_some();
    let Task::Driving { pts, normals, room, next, limit, park, joined } = &mut c.task else { return out };
    let park = *park;
    c.off_way_m = 0.0;
    if *next < pts.len() {
        // How far beyond the way the body stands: within the corridor of the segment it is on or of the one
        // before (a robot cutting a corner is on either), counted once it has joined its corridor and not on
        // the last segment when it parks in a slot off the way.
        let beyond = |k: usize| {
            let (a, b) = (pts[k.saturating_sub(1)], pts[k]);
            segment_distance(p, a, b) - room[k]
        };
        let k = *next;
        let off = if k >= 2 { beyond(k).min(beyond(k - 1)) } else { beyond(k) };
        if off <= 0.0 {
            *joined = true;
        } else if *joined && !(park.is_some() && k + 1 == pts.len()) {
            c.off_way_m = off;
        }
    }
    // Keep the lane, a step aside included, within the corridor of the segment ahead, [`EDGE_MARGIN_M`]
    // inside its edge.
    let lane = lane_within(lane, room.get(*next).copied().unwrap_or(f32::INFINITY));
    // Where point k is aimed at: in our lane, except the end when we have a parking slot there.
    let aim = |k: usize, pts: &[[f32; 2]], normals: &[[f32; 2]]| match park {
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
            out.events.push(PlatformEvent::Passed { index: k });
            *next += 1;
        } else {
            break;
        }
    }
    if arrived {
        out.events.push(PlatformEvent::Arrived);
        c.task = Task::Idle;
        c.sidestep = None;
        c.blocked = None;
        c.stopped_since = None;
        // Braking happens in the next steps' idle branch.
        return out;
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
        // Stepping aside and still far from the new lane: a steeper way there, so that the sensor's slab
        // swings clear of what held it (in a narrow corridor the step aside is short, and the usual shallow
        // one runs the robot's front into the thing's corner before it is across).
        let off = ((p[0] - apt[0]) * u[1] - (p[1] - apt[1]) * u[0]).abs();
        let lookahead = if stepping && off > 0.3 { 0.5 } else { lookahead };
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
    c.speed = (c.speed + (v - c.speed).clamp(-brake * dt, cfg.accel_mps2 * dt)).max(0.0);
    let w = (2.0 * err).clamp(-cfg.yaw_rate_max, cfg.yaw_rate_max);
    c.moving = true;
    out.velocity = Some(Velocity { speed: c.speed, yaw_rate: w });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_780_653_600_000);

    fn clock(step: u64) -> Clock {
        Clock { start: T0, step, dt: 1.0 / 20.0 }
    }

    /// Robot `index` about to drive a straight path east from the origin, `len` metres, at up to 1.6 m/s.
    fn driving_east(index: usize, len: f32) -> Controller {
        let mut c = Controller::new(index);
        c.drive(vec![[0.0, 0.0], [len, 0.0]], 1.6, None, &[]);
        c
    }

    /// The same, already driving at `speed`.
    fn moving_east(speed: f32) -> Controller {
        let mut c = driving_east(0, 20.0);
        c.speed = speed;
        c
    }

    /// The body `x` metres along the path, in its lane (0.4 m right of a path that runs east), facing `yaw`.
    fn in_lane(x: f32, yaw: f32) -> BodyState {
        BodyState { xy: [x, -0.4], yaw }
    }

    fn wall(gap: f32) -> Option<Ahead> {
        Some(Ahead { gap, sensed: gap, robot: None, rule: false })
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    /// Steps `c` standing still at `body` with `ahead` for steps `0..=last`; the output of each.
    fn hold(c: &mut Controller, body: BodyState, ahead: Option<Ahead>, last: u64) -> Vec<Control> {
        (0..=last).map(|s| control(c, body, ahead, &PhysicsConfig::default(), clock(s))).collect()
    }

    fn steps_where(outs: &[Control], f: impl Fn(&Control) -> bool) -> Vec<usize> {
        outs.iter().enumerate().filter(|(_, o)| f(o)).map(|(s, _)| s).collect()
    }

    #[test]
    fn a_drive_heads_for_the_second_point_with_right_hand_normals() {
        let c = driving_east(0, 20.0);
        let Task::Driving { normals, next, limit, park, .. } = &c.task else { panic!("not driving: {:?}", c.task) };
        assert_eq!((normals.as_slice(), *next, *limit, *park), (&[[0.0, -1.0], [0.0, -1.0]][..], 1, 1.6, None));
        assert!(c.driving());
    }

    #[test]
    fn accelerates_towards_the_next_point_at_the_acceleration_limit() {
        let cfg = PhysicsConfig::default();
        let mut c = driving_east(0, 20.0);
        let out = control(&mut c, in_lane(0.0, 0.0), None, &cfg, clock(0));
        assert_eq!(out.velocity, Some(Velocity { speed: 0.05, yaw_rate: 0.0 }));
        assert_eq!((out.events, out.near_miss, out.blocked, out.sidestep), (vec![], false, false, false));
        // 1 m/s^2 from standstill: 1.6 m/s (the drive's limit) after 1.6 s, and no faster.
        for s in 1..40 {
            control(&mut c, in_lane(0.0, 0.0), None, &cfg, clock(s));
        }
        assert!(close(c.speed, 1.6), "{}", c.speed);
        assert!(c.moving);
    }

    #[test]
    fn turns_in_place_when_facing_away_and_drives_within_45_degrees() {
        let cfg = PhysicsConfig::default();
        // Facing west or north with the point east: no speed, the full yaw rate clockwise.
        for yaw in [PI, PI / 2.0] {
            let mut c = driving_east(0, 20.0);
            let out = control(&mut c, in_lane(0.0, yaw), None, &cfg, clock(0));
            assert_eq!(out.velocity, Some(Velocity { speed: 0.0, yaw_rate: -1.5 }), "yaw {yaw}");
        }
        // 30 degrees off: it drives (and accelerates) while turning at twice the error.
        let mut c = driving_east(0, 20.0);
        let out = control(&mut c, in_lane(0.0, PI / 6.0), None, &cfg, clock(0));
        let v = out.velocity.expect("drives");
        assert!(close(v.speed, 0.05) && close(v.yaw_rate, -PI / 3.0), "{v:?}");
    }

    #[test]
    fn stops_for_an_obstacle_within_the_stop_gap_and_slows_for_one_in_range() {
        let cfg = PhysicsConfig::default();
        // 0.7 m ahead (stop gap 0.8): target speed 0, braking at twice the limit, 4 m/s^2.
        let mut c = moving_east(1.0);
        let out = control(&mut c, in_lane(0.0, 0.0), wall(0.7), &cfg, clock(0));
        assert!(close(out.velocity.expect("brakes").speed, 0.8), "{out:?}");
        // 2 m ahead, in sensing range (3 m): at most 1.6 * (0.5 + 0.5 * 1.2 / 2.2) = 1.24 m/s, so a robot at
        // 1.6 m/s brakes at the normal 2 m/s^2.
        let mut c = moving_east(1.6);
        let out = control(&mut c, in_lane(0.0, 0.0), wall(2.0), &cfg, clock(0));
        assert!(close(out.velocity.expect("brakes").speed, 1.5), "{out:?}");
        // Nothing in range: it keeps its speed.
        let out = control(&mut c, in_lane(0.0, 0.0), wall(5.0), &cfg, clock(1));
        assert!(close(out.velocity.expect("drives").speed, 1.55), "{out:?}");
    }

    #[test]
    fn a_near_miss_counts_once_when_it_starts() {
        let mut c = driving_east(0, 20.0);
        let outs = hold(&mut c, in_lane(0.0, 0.0), wall(0.4), 5);
        assert_eq!(steps_where(&outs, |o| o.near_miss), [0]);
        let cfg = PhysicsConfig::default();
        control(&mut c, in_lane(0.0, 0.0), wall(2.0), &cfg, clock(6));
        assert!(control(&mut c, in_lane(0.0, 0.0), wall(0.4), &cfg, clock(7)).near_miss, "a new one");
    }

    #[test]
    fn slows_near_the_goal() {
        let cfg = PhysicsConfig::default();
        // 0.55 m short of the end (pass radius 0.5): at most sqrt(2 * 2 * 0.55) = 1.48 m/s, so from 1.6 m/s it
        // brakes at 2 m/s^2.
        let mut c = moving_east(1.6);
        let out = control(&mut c, in_lane(19.45, 0.0), None, &cfg, clock(0));
        assert!(close(out.velocity.expect("drives").speed, 1.5), "{out:?}");
        // Far from it, the same robot keeps 1.6 m/s.
        let mut c = moving_east(1.6);
        let out = control(&mut c, in_lane(5.0, 0.0), None, &cfg, clock(0));
        assert!(close(out.velocity.expect("drives").speed, 1.6), "{out:?}");
    }

    #[test]
    fn passes_the_last_point_arrives_and_then_brakes() {
        let cfg = PhysicsConfig::default();
        let mut c = moving_east(1.0);
        let out = control(&mut c, in_lane(19.7, 0.0), None, &cfg, clock(0));
        assert_eq!(out.events, [PlatformEvent::Passed { index: 1 }, PlatformEvent::Arrived]);
        assert_eq!((out.velocity, &c.task), (None, &Task::Idle), "the body is left alone this step");
        let out = control(&mut c, in_lane(19.7, 0.0), None, &cfg, clock(1));
        assert!(close(out.velocity.expect("brakes").speed, 0.9), "{out:?}");
    }

    #[test]
    fn a_paused_or_idle_robot_brakes_to_a_halt_then_leaves_the_body_alone() {
        let cfg = PhysicsConfig::default();
        let mut c = driving_east(0, 20.0);
        (c.speed, c.moving, c.paused) = (0.25, true, true);
        let outs = hold(&mut c, in_lane(0.0, 0.0), None, 4);
        let speeds: Vec<Option<f32>> = outs.iter().map(|o| o.velocity.map(|v| v.speed)).collect();
        assert!(close(speeds[0].unwrap_or(-1.0), 0.15) && close(speeds[1].unwrap_or(-1.0), 0.05), "{speeds:?}");
        assert_eq!(speeds[2..], [Some(0.0), None, None]);
        assert!(outs.iter().all(|o| o.velocity.is_none_or(|v| v.yaw_rate == 0.0)));
        assert!(!c.moving && matches!(c.task, Task::Driving { .. }), "resuming picks up the drive");
        // Idle (after arriving, or broken down): the same, and a robot standing still gets no velocity at all.
        let mut c = Controller::new(0);
        assert_eq!(control(&mut c, in_lane(0.0, 0.0), None, &cfg, clock(0)), Control::default());
    }

    #[test]
    fn held_still_it_steps_aside_alternating_sides_and_reports_blocked_once() {
        let mut c = driving_east(0, 20.0);
        let outs = hold(&mut c, in_lane(0.0, 0.0), wall(0.5), 700);
        // Held 3 s (60 steps at 20 Hz): step aside for 10 s; held 3 s again after it: the other side.
        assert_eq!(steps_where(&outs, |o| o.sidestep), [61, 262, 463, 664]);
        assert_eq!(c.sidesteps, 4);
        assert_eq!(c.sidestep, Some((1.2, 864)));
        // No progress towards the next point for 30 s: blocked, and the agent hears it once.
        assert_eq!(steps_where(&outs, |o| o.blocked), [601]);
        let events: Vec<(usize, &PlatformEvent)> =
            outs.iter().enumerate().flat_map(|(s, o)| o.events.iter().map(move |e| (s, e))).collect();
        assert_eq!(events, [(601, &PlatformEvent::Blocked { index: 0 })]);
        assert_eq!(c.blocked, Some(Blocked { index: 0, since: T0 }));
    }

    #[test]
    fn of_two_robots_the_lower_index_waits_for_the_higher_to_step_aside() {
        let first_sidestep = |me: usize, other: OtherRobot| {
            let mut c = driving_east(me, 20.0);
            let ahead = Some(Ahead { gap: 0.5, sensed: 0.5, robot: Some(other), rule: false });
            let outs = hold(&mut c, in_lane(0.0, 0.0), ahead, 300);
            steps_where(&outs, |o| o.sidestep).first().copied()
        };
        // Waits up to 3 x 3 s for a driving robot with a higher index, then steps aside anyway.
        assert_eq!(first_sidestep(0, OtherRobot { index: 1, driving: true }), Some(180));
        // A lower index, or a robot that is not driving, does not step aside for it: it goes after 3 s.
        assert_eq!(first_sidestep(1, OtherRobot { index: 0, driving: true }), Some(61));
        assert_eq!(first_sidestep(0, OtherRobot { index: 1, driving: false }), Some(61));
    }

    #[test]
    fn the_lane_and_a_step_aside_are_kept_within_the_corridor() {
        let cfg = PhysicsConfig::default();
        // In its lane 0.4 m right of the line, facing along it: with no corridor, or a wide one, it drives
        // straight on.
        for corridor in [vec![], vec![1.0]] {
            let mut c = driving_east(0, 20.0);
            c.drive(vec![[0.0, 0.0], [20.0, 0.0]], 1.6, None, &corridor);
            let v = control(&mut c, in_lane(2.0, 0.0), None, &cfg, clock(0)).velocity.expect("drives");
            assert!(close(v.yaw_rate, 0.0), "{corridor:?}: {v:?}");
        }
        // A 0.95 m wide way (0.475 m each side): the centre may be 0.2 m off the line, and aims 0.1 m inside
        // that, so it steers left towards 0.1 m right of the line.
        let mut c = driving_east(0, 20.0);
        c.drive(vec![[0.0, 0.0], [20.0, 0.0]], 1.6, None, &[0.475]);
        let v = control(&mut c, in_lane(2.0, 0.0), None, &cfg, clock(0)).velocity.expect("drives");
        assert!(close(v.yaw_rate, 2.0 * (0.3f32).atan2(2.5)), "{v:?}");
        // Stepping aside to the left (1 m) on the same way goes only 0.1 m left of the line.
        c.sidestep = Some((-1.0, 1_000));
        let v = control(&mut c, BodyState { xy: [2.0, 0.1], yaw: 0.0 }, None, &cfg, clock(1));
        assert!(close(v.velocity.expect("drives").yaw_rate, 0.0), "{v:?}");
    }

    #[test]
    fn off_the_way_counts_once_the_robot_has_joined_its_corridor() {
        let cfg = PhysicsConfig::default();
        let mut c = driving_east(0, 20.0);
        c.drive(vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]], 1.6, None, &[1.0, 1.0]);
        // Starting 1.5 m off the line (a parking slot): not counted until it is inside.
        control(&mut c, BodyState { xy: [0.0, -1.5], yaw: 0.0 }, None, &cfg, clock(0));
        assert_eq!(c.off_way_m, 0.0);
        control(&mut c, in_lane(1.0, 0.0), None, &cfg, clock(1));
        assert_eq!(c.off_way_m, 0.0);
        // Pushed 1.5 m right of it: the body is 1.5 + 0.275 - 1.0 m beyond the edge.
        control(&mut c, BodyState { xy: [5.0, -1.5], yaw: 0.0 }, None, &cfg, clock(2));
        assert!(close(c.off_way_m, 0.775), "{}", c.off_way_m);
        // Cutting the corner into the second segment: on the first segment's corridor, so on the way.
        if let Task::Driving { next, .. } = &mut c.task {
            *next = 2;
        }
        control(&mut c, BodyState { xy: [9.5, -0.5], yaw: 0.0 }, None, &cfg, clock(3));
        assert_eq!(c.off_way_m, 0.0);
    }

    #[test]
    fn trailing_a_slower_person_it_overtakes_on_the_left_where_the_way_has_room() {
        let cfg = PhysicsConfig::default();
        // Something 1.2 m ahead, seen by the sensor, keeps it at 0.9 m/s.
        let slowed = |c: &mut Controller, ahead: Ahead| -> Vec<usize> {
            let outs: Vec<Control> = (0..=200)
                .map(|s| {
                    c.speed = 0.9;
                    control(c, in_lane(2.0, 0.0), Some(ahead), &cfg, clock(s))
                })
                .collect();
            steps_where(&outs, |o| o.sidestep)
        };
        let person = Ahead { gap: 1.2, sensed: 1.2, robot: None, rule: false };
        // On a 2 m footway: after 5 s behind them it steps to the left, once, for the usual 10 s.
        let mut c = driving_east(0, 20.0);
        c.drive(vec![[0.0, 0.0], [20.0, 0.0]], 1.6, None, &[1.0]);
        assert_eq!(slowed(&mut c, person), [101]);
        assert_eq!(c.sidestep, Some((-1.0, 301)));
        // A 1.5 m path leaves no room to pass; a robot ahead, or a person only the look-out expects, is no
        // reason to.
        let mut c = driving_east(0, 20.0);
        c.drive(vec![[0.0, 0.0], [20.0, 0.0]], 1.6, None, &[0.75]);
        assert!(slowed(&mut c, person).is_empty());
        for ahead in [
            Ahead { robot: Some(OtherRobot { index: 1, driving: true }), ..person },
            Ahead { sensed: f32::INFINITY, ..person },
        ] {
            let mut c = driving_east(0, 20.0);
            c.drive(vec![[0.0, 0.0], [20.0, 0.0]], 1.6, None, &[1.0]);
            assert!(slowed(&mut c, ahead).is_empty(), "{ahead:?}");
        }
    }

    #[test]
    fn wrap_keeps_angles_in_range() {
        assert!((wrap(3.0 * PI / 2.0) + PI / 2.0).abs() < 1e-5);
        assert!((wrap(-3.0 * PI / 2.0) - PI / 2.0).abs() < 1e-5);
    }
}
