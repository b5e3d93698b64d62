//! Pedestrians: kinematic capsules the robots must yield to. A scenario's crowd walks trips: each person picks a
//! destination 150-900 m away on the walkable graph, walks the shortest way there at their own speed (drawn
//! from N(1.34, 0.26) m/s, clipped to 0.5-1.9: Weidmann's free walking speed), keeping right of the way's
//! centre line at their own offset, then picks the next. Some walk in groups of two or three, side by side.
//! How many are out follows the time of day (an hourly profile; the scenario's count is the number out at a
//! profile of 1); the others are indoors (their bodies disabled), and people go in at the end of a trip or
//! come out at a random place when the number out is reviewed, every ten seconds.
//!
//! People react ([`Crowd::walk`]): five times a second every person heads for the next point of their way and turns
//! aside from, or slows for, anyone whose course will bring them closer than a comfortable distance within
//! three seconds (each other, and robots), and keeps within half the way's width (its OSM width, or the
//! default for its type; at most 1.5 m) of its centre line, in a lane that fits on it. Not everybody pays
//! attention to robots ([`Attention`]): 75% do, 20% are distracted (they notice a robot only within 1 m) and
//! 5% are impassive (they never give way to a robot; a robot must cope).
//!
//! [`Crowd::add_shuttle`] adds a scripted person instead, for tests and set pieces: impassive, walking a loop
//! around one segment, out along its right-hand side and back along the other.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use fleet_core::NodeId;
use fleet_core::map::{MapGraph, Profile};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rapier3d::prelude::{
    ColliderBuilder, InteractionGroups, InteractionTestMode, PhysicsWorld as RapierWorld, Real, RigidBodyBuilder,
    RigidBodyHandle, RigidBodySet, Vector,
};
use serde::Serialize;

use super::ROBOT_HALF;
use super::neighbours::{Grid, Kind, Presence};
use super::projection::Projection;
use super::safety::footprint_gap;
use super::{G_PED, G_ROBOT, K_PED, dist, norm};

pub(super) const PED_RADIUS: Real = 0.3;
const PED_HALF_HEIGHT: Real = 0.55;
/// Walking speed: mean and standard deviation (m/s), and the range it is clipped to.
const SPEED_MEAN_MPS: f32 = 1.34;
const SPEED_SD_MPS: f32 = 0.26;
const SPEED_RANGE_MPS: (f32, f32) = (0.5, 1.9);
/// Share of people who come out as a group (of two or three).
const GROUP_SHARE: f64 = 0.15;
/// Shares of distracted and of impassive people; the others are attentive.
const DISTRACTED_SHARE: f64 = 0.20;
const IMPASSIVE_SHARE: f64 = 0.05;
/// A trip's destination lies this far away in a straight line, metres.
const TRIP_M: (f32, f32) = (150.0, 900.0);
/// People keep within half their way's width of its centre line (from the map's widths), and within this far
/// on wider ways.
const HALF_WIDTH_M: f32 = 1.5;
/// How far right of the centre line people walk: drawn from this range, metres.
const LANE_M: (f32, f32) = (0.3, 1.1);
/// Acceleration limit of a person, m/s^2.
const ACCEL_MPS2: f32 = 2.0;
/// People look this far ahead in time for someone they would come too close to, seconds.
const LOOK_S: f32 = 3.0;
/// Extra distance a person keeps from another person and from a robot, beyond touching, metres.
const COMFORT_PERSON_M: f32 = 0.25;
const COMFORT_ROBOT_M: f32 = 0.4;
/// A distracted person notices a robot only this close (gap between bodies), metres.
const DISTRACTED_NOTICE_M: f32 = 1.0;
/// A robot as people see it: a circle around its footprint.
const ROBOT_CIRCLE_M: f32 = 0.45;
/// The number of people out is brought towards the profile this often, seconds.
const REVIEW_S: u64 = 10;
/// A point of the way is passed when a person is this close to it (in their lane), metres.
const PASS_M: f32 = 0.6;
/// A person who has come no closer to the point they walk to for this long gives it up and walks to the next
/// (someone stands on it: a robot waiting at a shop door), seconds.
const GIVE_UP_S: u64 = 15;
/// A person's velocity is written to the body only when it changed by more than this, m/s (rewriting a
/// body's velocity every step makes rapier re-process it as user-changed).
const VEL_EPS: f32 = 0.02;
/// People re-decide their velocity this often a second, each at their own moment (staggered over the
/// physics steps): a new decision every 200 ms, within a person's reaction time, at a quarter of the cost
/// of one every 50 ms step (docs/benchmarks.md, "Simulator speed").
const STEER_HZ: u32 = 5;

/// People out by hour of the simulated clock (UTC), as a share of the scenario's count: a city centre with a
/// lunch peak at 10-12 UTC (noon to two in Monaco's summer time) and an evening one.
pub const DEFAULT_PROFILE: [f32; 24] = [
    0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 0.8, 0.9, // 00-09
    1.0, 1.0, 0.9, 0.8, 0.8, 0.9, 1.0, 0.9, 0.7, 0.5, // 10-19
    0.3, 0.2, 0.1, 0.1, // 20-23
];

/// How a person treats robots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Gives way to a robot like to anyone else.
    Attentive,
    /// Notices a robot only within [`DISTRACTED_NOTICE_M`] (on the phone, in a hurry).
    Distracted,
    /// Never gives way to a robot.
    Impassive,
}

#[derive(Debug, Clone)]
enum Walk {
    /// Off the street, body disabled.
    Indoors,
    /// On a trip: the way's centre line (local metres), the index of the point walked to, and the graph
    /// node the trip ends at.
    /// `half[k]` is the half width of the way into point k (from the map's widths).
    Trip { pts: Vec<[Real; 2]>, half: Vec<Real>, next: usize, end: u32 },
    /// A scripted loop around one segment: its corners and the one walked to.
    Shuttle { corners: [[Real; 2]; 4], toward: usize },
}

#[derive(Debug, Clone)]
struct Pedestrian {
    body: RigidBodyHandle,
    speed: Real,
    /// How far right of the centre line they walk.
    lane: Real,
    attention: Attention,
    walk: Walk,
    /// The group's first member, whose trips the others follow (None: walks alone or leads).
    leader: Option<usize>,
    /// The velocity last written to the body.
    vel: [Real; 2],
    /// Progress towards the point walked to: its index, the closest come to it, and the step that was.
    progress: (usize, Real, u64),
    /// Whether their body is in the physics world: out and near a robot ([`Presence`]). Otherwise the crowd
    /// moves them itself and `pos` is where they stand.
    near: bool,
    pos: [Real; 2],
}

impl Pedestrian {
    fn out(&self) -> bool {
        !matches!(self.walk, Walk::Indoors)
    }

    /// Puts their body into the physics world (`near`) or takes it out, where they stand.
    fn place(&mut self, bodies: &mut RigidBodySet, near: bool) {
        if self.near == near {
            return;
        }
        let Some(b) = bodies.get_mut(self.body) else { return };
        if near {
            b.set_translation(Vector::new(self.pos[0], self.pos[1], PED_HALF_HEIGHT + PED_RADIUS), false);
            b.set_linvel(Vector::new(self.vel[0], self.vel[1], 0.0), false);
            b.set_enabled(true);
        } else {
            let t = b.translation();
            self.pos = [t.x, t.y];
            b.set_enabled(false);
        }
        self.near = near;
    }
}

/// The walkable graph as people use it: node positions and adjacency (compressed rows), lengths in metres.
#[derive(Debug)]
struct Walkways {
    xy: Vec<[Real; 2]>,
    first: Vec<u32>,
    to: Vec<u32>,
    len: Vec<Real>,
    /// Half the usable width of each arc's way, metres (at most `HALF_WIDTH_M`).
    half: Vec<Real>,
    /// A* scratch: best cost per node and the node it was reached from, valid where `seen` equals `round`.
    cost: Vec<Real>,
    from: Vec<u32>,
    seen: Vec<u32>,
    round: u32,
}

impl Walkways {
    fn new(map: &MapGraph, proj: &Projection) -> Self {
        let n = map.node_count();
        let xy: Vec<[Real; 2]> = (0..n)
            .map(|i| {
                let p = map.pos(NodeId(i as u32)).map_or([0.0; 2], |p| proj.to_xy(p));
                [p[0] as Real, p[1] as Real]
            })
            .collect();
        let mut edges: Vec<(u32, u32)> =
            map.weighted_edges(Profile::default()).into_iter().map(|(u, v, _)| (u, v)).collect();
        edges.sort_unstable();
        edges.dedup();
        let mut first = vec![0u32; n + 1];
        for &(u, _) in &edges {
            first[u as usize + 1] += 1;
        }
        for i in 0..n {
            first[i + 1] += first[i];
        }
        let to: Vec<u32> = edges.iter().map(|&(_, v)| v).collect();
        let len: Vec<Real> = edges.iter().map(|&(u, v)| dist(xy[u as usize], xy[v as usize])).collect();
        let half: Vec<Real> = edges
            .iter()
            .map(|&(u, v)| {
                map.edge(NodeId(u), NodeId(v)).map_or(HALF_WIDTH_M, |e| (e.width_m / 2.0).clamp(0.5, HALF_WIDTH_M))
            })
            .collect();
        Self { xy, first, to, len, half, cost: vec![0.0; n], from: vec![0; n], seen: vec![0; n], round: 0 }
    }

    /// The shortest way from `s` to `t` as node positions (A* on straight-line distance); None when `t`
    /// cannot be reached.
    #[cfg(test)]
    fn path(&mut self, s: u32, t: u32) -> Option<Vec<[Real; 2]>> {
        self.path_nodes(s, t).map(|nodes| nodes.iter().map(|&k| self.xy[k as usize]).collect())
    }

    /// The half width of the way from node `u` to node `v` (the widest allowed when they are not adjacent).
    fn half_width(&self, u: u32, v: u32) -> Real {
        (self.first[u as usize] as usize..self.first[u as usize + 1] as usize)
            .find(|&e| self.to[e] == v)
            .map_or(HALF_WIDTH_M, |e| self.half[e])
    }

    /// The shortest way from `s` to `t` as nodes (A* on straight-line distance); None when `t` cannot be
    /// reached.
    fn path_nodes(&mut self, s: u32, t: u32) -> Option<Vec<u32>> {
        self.round = self.round.wrapping_add(1);
        if self.round == 0 {
            self.seen.fill(0);
            self.round = 1;
        }
        let goal = self.xy[t as usize];
        // Costs in millimetres, so that the heap orders integers and ties go by node id.
        let key = |c: Real| (c * 1_000.0) as u64;
        let mut heap = BinaryHeap::new();
        self.cost[s as usize] = 0.0;
        self.from[s as usize] = s;
        self.seen[s as usize] = self.round;
        heap.push(Reverse((key(dist(self.xy[s as usize], goal)), s)));
        while let Some(Reverse((_, u))) = heap.pop() {
            if u == t {
                let mut nodes = vec![t];
                let mut at = t;
                while at != s {
                    at = self.from[at as usize];
                    nodes.push(at);
                }
                nodes.reverse();
                return Some(nodes);
            }
            let cu = self.cost[u as usize];
            for e in self.first[u as usize] as usize..self.first[u as usize + 1] as usize {
                let v = self.to[e] as usize;
                let c = cu + self.len[e];
                if self.seen[v] != self.round || c < self.cost[v] {
                    self.seen[v] = self.round;
                    self.cost[v] = c;
                    self.from[v] = u;
                    heap.push(Reverse((key(c + dist(self.xy[v], goal)), v as u32)));
                }
            }
        }
        None
    }
}

/// Velocity walking from `from` straight to `to` at `speed`.
fn walk_velocity(from: [Real; 2], to: [Real; 2], speed: Real) -> [Real; 2] {
    let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
    let d = (dx * dx + dy * dy).sqrt();
    if d > 1e-3 { [dx / d * speed, dy / d * speed] } else { [0.0, 0.0] }
}

/// The right-hand unit normal of the segment `a -> b` (zero for a degenerate one).
fn right_of(a: [Real; 2], b: [Real; 2]) -> [Real; 2] {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let l = (dx * dx + dy * dy).sqrt();
    if l > 1e-3 { [dy / l, -dx / l] } else { [0.0, 0.0] }
}

/// The unit vector into the body of a robot standing at `c` facing `facing` that a person at `pos` touches
/// (their body within 2 cm of its footprint), if they do.
fn touching(pos: [Real; 2], c: [Real; 2], facing: [Real; 2]) -> Option<[Real; 2]> {
    let (gap, out) = footprint_gap(c, facing, [ROBOT_HALF[0], ROBOT_HALF[1]], pos, PED_RADIUS);
    (gap < 0.02).then_some([-out[0], -out[1]])
}

/// The unit vector into a robot that a person at `pos` touches, if any ([`touching`]).
fn against_robot(pos: [Real; 2], grid: &Grid) -> Option<[Real; 2]> {
    grid.around(pos).filter(|a| a.kind == Kind::Robot).find_map(|a| touching(pos, a.pos, a.facing))
}

/// The lane a person keeps on a way `half` metres wide each side: their own, but never off the way.
fn lane_on(lane: Real, half: Real) -> Real {
    lane.min(half - PED_RADIUS).max(0.0)
}

/// Point `k` of `pts` moved `lane` metres to the right of the segment leading into it.
fn in_lane(pts: &[[Real; 2]], k: usize, lane: Real) -> [Real; 2] {
    let n = if k == 0 { pts.get(1).map_or([0.0; 2], |&b| right_of(pts[0], b)) } else { right_of(pts[k - 1], pts[k]) };
    [pts[k][0] + n[0] * lane, pts[k][1] + n[1] * lane]
}

/// A walking speed drawn from N(1.34, 0.26) m/s clipped to 0.5-1.9 (Box-Muller).
fn draw_speed(rng: &mut impl Rng) -> Real {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (SPEED_MEAN_MPS + SPEED_SD_MPS * z as Real).clamp(SPEED_RANGE_MPS.0, SPEED_RANGE_MPS.1)
}

fn draw_attention(rng: &mut impl Rng) -> Attention {
    let x: f64 = rng.random_range(0.0..1.0);
    if x < IMPASSIVE_SHARE {
        Attention::Impassive
    } else if x < IMPASSIVE_SHARE + DISTRACTED_SHARE {
        Attention::Distracted
    } else {
        Attention::Attentive
    }
}

/// Figures about the crowd for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CrowdStats {
    /// Trips started.
    pub trips: u64,
    /// Person-seconds spent out, and the mean number out (person-seconds over the seconds stepped).
    pub out_s: f64,
    pub stepped_s: f64,
    /// Person-seconds spent out with a body in the physics world (near a robot).
    pub in_world_s: f64,
    /// The most people out at once.
    pub peak_out: u64,
}

/// Every pedestrian of the world, in the order they were added (their collider's index).
#[derive(Debug)]
pub(super) struct Crowd {
    peds: Vec<Pedestrian>,
    ways: Option<Walkways>,
    rng: ChaCha8Rng,
    profile: [f32; 24],
    /// People out at a profile of 1.
    peak: usize,
    /// People still to send indoors at the end of their trip (the number out is above the profile).
    retiring: usize,
    /// The scripted shuttles among `peds` (they check their corner every step).
    shuttles: Vec<usize>,
    stats: CrowdStats,
}

impl Default for Crowd {
    fn default() -> Self {
        Self {
            peds: Vec::new(),
            ways: None,
            rng: ChaCha8Rng::seed_from_u64(0),
            profile: DEFAULT_PROFILE,
            peak: 0,
            retiring: 0,
            shuttles: Vec::new(),
            stats: CrowdStats::default(),
        }
    }
}

/// Where a disabled body is kept: far off the map, one metre apart.
fn indoors_at(j: usize) -> Vector {
    Vector::new(-50_000.0 - j as Real, -50_000.0, PED_HALF_HEIGHT + PED_RADIUS)
}

impl Crowd {
    /// Where person `j` stands: their body's position when it is in the physics world, else their own.
    fn pos_of(&self, bodies: &RigidBodySet, j: usize) -> [Real; 2] {
        let p = &self.peds[j];
        match bodies.get(p.body) {
            Some(b) if p.near => [b.translation().x, b.translation().y],
            _ => p.pos,
        }
    }

    /// Where every person out stands and their velocity, with their index: from their body when it is in
    /// the physics world, else from the crowd's own record.
    pub(super) fn motions<'a>(
        &'a self,
        bodies: &'a RigidBodySet,
    ) -> impl Iterator<Item = (usize, [Real; 2], [Real; 2])> + 'a {
        self.peds.iter().enumerate().filter(|(_, p)| p.out()).filter_map(|(j, p)| {
            if !p.near {
                return Some((j, p.pos, p.vel));
            }
            let b = bodies.get(p.body)?;
            let (t, v) = (b.translation(), b.linvel());
            Some((j, [t.x, t.y], [v.x, v.y]))
        })
    }

    /// The body of pedestrian `j`, whether they are out.
    pub(super) fn body(&self, j: usize) -> Option<(RigidBodyHandle, bool)> {
        self.peds.get(j).map(|p| (p.body, p.out()))
    }

    pub(super) fn stats(&self) -> CrowdStats {
        self.stats
    }

    /// How many people there are of each [`Attention`] (attentive, distracted, impassive).
    pub(super) fn attention_counts(&self) -> [u64; 3] {
        let mut n = [0u64; 3];
        for p in &self.peds {
            n[p.attention as usize] += 1;
        }
        n
    }

    fn insert(&mut self, world: &mut RapierWorld, at: Vector, vel: [Real; 2], enabled: bool) -> RigidBodyHandle {
        let j = self.peds.len();
        let (body, _) = world.insert(
            RigidBodyBuilder::kinematic_velocity_based()
                .translation(at)
                .linvel(Vector::new(vel[0], vel[1], 0.0))
                .enabled(enabled),
            ColliderBuilder::capsule_z(PED_HALF_HEIGHT, PED_RADIUS)
                .collision_groups(InteractionGroups::new(G_PED, G_ROBOT, InteractionTestMode::And))
                .user_data(K_PED << 120 | j as u128),
        );
        body
    }

    /// Adds a scripted, impassive pedestrian walking a loop around `pa -> pb` (local metres) at `speed_mps`:
    /// out along its right-hand side, across, back along the other, starting `frac` of the way.
    pub(super) fn add_shuttle(
        &mut self,
        world: &mut RapierWorld,
        pa: [Real; 2],
        pb: [Real; 2],
        speed_mps: f32,
        frac: f32,
    ) {
        let n = right_of(pa, pb);
        let n = [n[0] * 0.6, n[1] * 0.6];
        let corners = [
            [pa[0] + n[0], pa[1] + n[1]],
            [pb[0] + n[0], pb[1] + n[1]],
            [pb[0] - n[0], pb[1] - n[1]],
            [pa[0] - n[0], pa[1] - n[1]],
        ];
        let f = frac.clamp(0.0, 1.0);
        let start = [corners[0][0] + (pb[0] - pa[0]) * f, corners[0][1] + (pb[1] - pa[1]) * f];
        let vel = walk_velocity(start, corners[1], speed_mps);
        let body = self.insert(world, Vector::new(start[0], start[1], PED_HALF_HEIGHT + PED_RADIUS), vel, true);
        self.shuttles.push(self.peds.len());
        self.peds.push(Pedestrian {
            body,
            speed: speed_mps,
            lane: 0.6,
            attention: Attention::Impassive,
            walk: Walk::Shuttle { corners, toward: 1 },
            leader: None,
            vel,
            progress: (0, 0.0, 0),
            near: true,
            pos: start,
        });
    }

    /// Makes this the crowd of trip walkers on `map`: `count` people (out at a profile of 1, following
    /// `profile` by hour), drawn from `rng` (speeds, lanes, attention, and a seed for the crowd's own stream).
    /// They come out at the first step.
    pub(super) fn add_walkers(
        &mut self,
        world: &mut RapierWorld,
        map: &MapGraph,
        proj: &Projection,
        count: usize,
        profile: [f32; 24],
        rng: &mut impl Rng,
    ) {
        if count == 0 || map.node_count() < 2 {
            return;
        }
        self.ways = Some(Walkways::new(map, proj));
        self.rng = ChaCha8Rng::seed_from_u64(rng.random());
        self.profile = profile.map(|x| if x.is_finite() { x.max(0.0) } else { 0.0 });
        self.peak += count;
        for _ in 0..count {
            let j = self.peds.len();
            let speed = draw_speed(rng);
            let lane = rng.random_range(LANE_M.0..LANE_M.1);
            let attention = draw_attention(rng);
            let body = self.insert(world, indoors_at(j), [0.0; 2], false);
            self.peds.push(Pedestrian {
                body,
                speed,
                lane,
                attention,
                walk: Walk::Indoors,
                leader: None,
                vel: [0.0; 2],
                progress: (0, Real::INFINITY, 0),
                near: false,
                pos: [0.0; 2],
            });
        }
    }

    /// Brings the number out towards the profile at `hour`: people come out at random nodes clear of
    /// everyone in `grid`, alone or as a group; when too many are out, the next to end a trip go in.
    fn review(&mut self, bodies: &mut RigidBodySet, grid: &Grid, presence: &Presence, hour: usize) {
        let Some(ways) = self.ways.as_mut() else { return };
        let target = (self.peak as f32 * self.profile[hour % 24]).round() as usize;
        let out = self.peds.iter().filter(|p| p.out() && !matches!(p.walk, Walk::Shuttle { .. })).count();
        self.retiring = out.saturating_sub(target);
        let mut indoors: Vec<usize> =
            (0..self.peds.len()).filter(|&j| matches!(self.peds[j].walk, Walk::Indoors)).collect();
        let mut out = out;
        let n = ways.xy.len() as u32;
        while out < target && !indoors.is_empty() {
            let lead = indoors.swap_remove(self.rng.random_range(0..indoors.len()));
            let mut group = vec![lead];
            if self.rng.random_bool(GROUP_SHARE) {
                let more = self.rng.random_range(1..=2usize).min(indoors.len());
                for _ in 0..more {
                    group.push(indoors.swap_remove(self.rng.random_range(0..indoors.len())));
                }
            }
            // A start clear of robots and people (a few tries), and a destination at trip distance.
            let mut start = self.rng.random_range(0..n);
            for _ in 0..10 {
                let p = ways.xy[start as usize];
                if grid.around(p).all(|a| dist(a.pos, p) > 2.0) {
                    break;
                }
                start = self.rng.random_range(0..n);
            }
            let Some((pts, half, end)) = trip(ways, &mut self.rng, start) else { continue };
            let speed = group.iter().map(|&j| self.peds[j].speed).fold(SPEED_RANGE_MPS.1, Real::min);
            let lead_lane = self.peds[lead].lane;
            for (k, &j) in group.iter().enumerate() {
                let p = &mut self.peds[j];
                // Side by side: each member 0.7 m further right than the one before.
                p.lane = lead_lane + 0.7 * k as Real;
                p.leader = (k > 0).then_some(lead);
                if k > 0 {
                    p.speed = speed;
                }
                p.pos = in_lane(&pts, 0, lane_on(p.lane, half[1]));
                p.vel = [0.0; 2];
                p.walk = Walk::Trip { pts: pts.clone(), half: half.clone(), next: 1, end };
                p.place(bodies, presence.near(p.pos, 1));
            }
            self.peds[lead].speed = speed;
            self.stats.trips += 1;
            out += group.len();
        }
    }

    /// One step for every person: the number out is reviewed every [`REVIEW_S`] (at `step`, of `hz` per
    /// second, in `hour`), then each person out walks on, reacting to those in `grid`. A person whose turn
    /// it is to steer is put into the physics world when a robot is within one cell of `presence`, and taken
    /// out when none is within two; the crowd moves those out of it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn walk(
        &mut self,
        bodies: &mut RigidBodySet,
        grid: &Grid,
        presence: &Presence,
        hour: usize,
        step: u64,
        hz: u32,
        dt: Real,
    ) {
        if self.ways.is_some() && step.is_multiple_of(REVIEW_S * u64::from(hz)) {
            self.review(bodies, grid, presence, hour);
        }
        // Each person steers every `every` steps, at their own phase; a scripted shuttle checks its corner
        // every step.
        let every = u64::from((hz / STEER_HZ).max(1));
        let turn_dt = dt * every as Real;
        let first = ((every - step % every) % every) as usize;
        let turns = (first..self.peds.len()).step_by(every as usize);
        let off_turn: Vec<usize> = self.shuttles.iter().copied().filter(|j| j % every as usize != first).collect();
        for j in turns.chain(off_turn) {
            let my_turn = (step + j as u64).is_multiple_of(every);
            if my_turn && self.peds[j].out() && !matches!(self.peds[j].walk, Walk::Shuttle { .. }) {
                let pos = self.pos_of(bodies, j);
                let near = presence.near(pos, if self.peds[j].near { 2 } else { 1 });
                self.peds[j].place(bodies, near);
            }
            let pos = self.pos_of(bodies, j);
            let p = &mut self.peds[j];
            let want = match &mut p.walk {
                Walk::Indoors => continue,
                Walk::Shuttle { corners, toward } => {
                    // Scripted: turns at corners only, no reactions, except that nobody walks through a robot:
                    // against one, they walk on only along it.
                    let turned = dist(pos, corners[*toward]) < p.speed * dt * 1.5;
                    if turned {
                        *toward = (*toward + 1) % 4;
                    }
                    let mut v = walk_velocity(pos, corners[*toward], p.speed);
                    if p.near
                        && let Some(u) = against_robot(pos, grid)
                    {
                        let into = v[0] * u[0] + v[1] * u[1];
                        if into > 0.0 {
                            v = [v[0] - u[0] * into, v[1] - u[1] * into];
                        }
                    }
                    if turned || (v[0] - p.vel[0]).abs() + (v[1] - p.vel[1]).abs() > VEL_EPS {
                        p.vel = v;
                        if p.near
                            && let Some(b) = bodies.get_mut(p.body)
                        {
                            b.set_linvel(Vector::new(p.vel[0], p.vel[1], 0.0), true);
                        }
                    }
                    continue;
                }
                Walk::Trip { pts, half, next, .. } => {
                    while *next < pts.len() && dist(pos, in_lane(pts, *next, lane_on(p.lane, half[*next]))) < PASS_M {
                        *next += 1;
                    }
                    if *next < pts.len() {
                        let d = dist(pos, in_lane(pts, *next, lane_on(p.lane, half[*next])));
                        if p.progress.0 != *next || d < p.progress.1 - 0.5 {
                            p.progress = (*next, d, step);
                        } else if step - p.progress.2 > GIVE_UP_S * u64::from(hz) {
                            *next += 1;
                            p.progress = (*next, Real::INFINITY, step);
                        }
                    }
                    if *next >= pts.len() {
                        None
                    } else {
                        let hw = half[*next];
                        let aim = in_lane(pts, *next, lane_on(p.lane, hw));
                        let mut v = walk_velocity(pos, aim, p.speed);
                        // Keep on the way: back towards the centre line when further than the half width.
                        let (a, b) = (pts[*next - 1], pts[*next]);
                        let n = right_of(a, b);
                        let lateral = (pos[0] - a[0]) * n[0] + (pos[1] - a[1]) * n[1];
                        if lateral.abs() > hw {
                            let back = (lateral.abs() - hw) * 2.0 * lateral.signum();
                            v = [v[0] - n[0] * back, v[1] - n[1] * back];
                        }
                        Some(v)
                    }
                }
            };
            let Some(want) = want else {
                self.trip_done(bodies, j);
                continue;
            };
            let (v, against) = self.steer(j, pos, want, grid);
            let p = &mut self.peds[j];
            let dv = [v[0] - p.vel[0], v[1] - p.vel[1]];
            let dn = norm(dv);
            let max = ACCEL_MPS2 * turn_dt;
            let dv = if dn > max { [dv[0] / dn * max, dv[1] / dn * max] } else { dv };
            let mut nv = [p.vel[0] + dv[0], p.vel[1] + dv[1]];
            // Against a robot: no walking on into it, at once (the acceleration limit is for choosing where to
            // go, not for walking through a 50 kg robot, which the physics would then shove aside).
            if let Some(u) = against {
                let into = nv[0] * u[0] + nv[1] * u[1];
                if into > 0.0 {
                    nv = [nv[0] - u[0] * into, nv[1] - u[1] * into];
                }
            }
            if (nv[0] - p.vel[0]).abs() + (nv[1] - p.vel[1]).abs() > VEL_EPS || (nv[0] == 0.0 && nv[1] == 0.0) {
                p.vel = nv;
                if p.near
                    && let Some(b) = bodies.get_mut(p.body)
                {
                    b.set_linvel(Vector::new(nv[0], nv[1], 0.0), true);
                }
            }
        }
        // Those out of the physics world walk on by themselves; and the figures of the step.
        let (mut out, mut in_world) = (0, 0);
        for p in &mut self.peds {
            match p.walk {
                Walk::Indoors | Walk::Shuttle { .. } => continue,
                Walk::Trip { .. } => {}
            }
            out += 1;
            if p.near {
                in_world += 1;
            } else {
                p.pos = [p.pos[0] + p.vel[0] * dt, p.pos[1] + p.vel[1] * dt];
            }
        }
        self.stats.in_world_s += in_world as f64 * f64::from(dt);
        self.stats.out_s += out as f64 * f64::from(dt);
        self.stats.stepped_s += f64::from(dt);
        self.stats.peak_out = self.stats.peak_out.max(out as u64);
    }

    /// Person `j` reached the end of their way: a follower waits for the group's leader; a leader (or a person
    /// alone) goes indoors with the group while too many are out, else starts the next trip with the group.
    fn trip_done(&mut self, bodies: &mut RigidBodySet, j: usize) {
        let p = &mut self.peds[j];
        if p.leader.is_some() {
            if p.vel != [0.0, 0.0] {
                p.vel = [0.0; 2];
                if p.near
                    && let Some(b) = bodies.get_mut(p.body)
                {
                    b.set_linvel(Vector::ZERO, true);
                }
            }
            return;
        }
        let Walk::Trip { end, .. } = p.walk else { return };
        let group: Vec<usize> =
            std::iter::once(j).chain((0..self.peds.len()).filter(|&k| self.peds[k].leader == Some(j))).collect();
        if self.retiring > 0 {
            self.retiring = self.retiring.saturating_sub(group.len());
            for &k in &group {
                let p = &mut self.peds[k];
                p.walk = Walk::Indoors;
                p.leader = None;
                p.vel = [0.0; 2];
                p.near = false;
                if let Some(b) = bodies.get_mut(p.body) {
                    b.set_linvel(Vector::ZERO, false);
                    b.set_translation(indoors_at(k), false);
                    b.set_enabled(false);
                }
            }
            return;
        }
        let Some(ways) = self.ways.as_mut() else { return };
        let Some((pts, half, end)) = trip(ways, &mut self.rng, end) else { return };
        self.stats.trips += 1;
        for &k in &group {
            self.peds[k].walk = Walk::Trip { pts: pts.clone(), half: half.clone(), next: 1, end };
        }
    }

    /// Person `j`'s velocity for this step: `want` (towards their way), turned aside from and slowed for
    /// anyone in `grid` whose course brings them closer than comfortable within [`LOOK_S`] seconds.
    fn steer(&self, j: usize, pos: [Real; 2], want: [Real; 2], grid: &Grid) -> ([Real; 2], Option<[Real; 2]>) {
        let me = &self.peds[j];
        let group = me.leader.unwrap_or(j);
        let mut v = want;
        let mut against = None;
        let speed = me.speed;
        for a in grid.around(pos) {
            let (other_r, comfort) = match a.kind {
                Kind::Person => {
                    if a.index == j || self.peds.get(a.index).is_some_and(|o| o.leader.unwrap_or(a.index) == group) {
                        continue;
                    }
                    (PED_RADIUS, COMFORT_PERSON_M)
                }
                Kind::Robot => (ROBOT_CIRCLE_M, COMFORT_ROBOT_M),
            };
            let d = [a.pos[0] - pos[0], a.pos[1] - pos[1]];
            let dn = norm(d);
            if !(1e-4..=3.5).contains(&dn) {
                continue;
            }
            let gap = dn - PED_RADIUS - other_r;
            if a.kind == Kind::Robot {
                // Whoever bumps into a robot stops pushing into it and goes round it, to the right (people are
                // not bulldozers, nor do they stand against a robot for ever).
                let into = (v[0] * d[0] + v[1] * d[1]) / dn;
                if gap < 0.05 && into > 0.0 {
                    let u = [d[0] / dn, d[1] / dn];
                    v = [v[0] - u[0] * into + u[1] * into, v[1] - u[1] * into - u[0] * into];
                }
                if against.is_none() {
                    against = touching(pos, a.pos, a.facing);
                }
                match me.attention {
                    Attention::Impassive => continue,
                    Attention::Distracted if gap > DISTRACTED_NOTICE_M => continue,
                    _ => {}
                }
            }
            let need = PED_RADIUS + other_r + comfort;
            // Where the other will be, relative to me, at our closest (both keep their velocities, mine the
            // one I want).
            let rv = [a.vel[0] - want[0], a.vel[1] - want[1]];
            let rv2 = rv[0] * rv[0] + rv[1] * rv[1];
            let t = if rv2 > 1e-6 { (-(d[0] * rv[0] + d[1] * rv[1]) / rv2).clamp(0.0, LOOK_S) } else { 0.0 };
            let c = [d[0] + rv[0] * t, d[1] + rv[1] * t];
            let cn = norm(c);
            if cn < need {
                // Away from that point; when it is straight ahead, to the right (people pass on the right).
                let fwd = walk_velocity([0.0; 2], want, 1.0);
                let lateral = c[0] * fwd[1] - c[1] * fwd[0];
                let away = if lateral.abs() < 0.1 {
                    [fwd[1], -fwd[0]]
                } else {
                    let s = -lateral.signum();
                    [-fwd[1] * s, fwd[0] * s]
                };
                let w = (need - cn) / need * speed * 1.5 / (1.0 + t);
                v = [v[0] + away[0] * w, v[1] + away[1] * w];
                // And slow down when the meeting is close in time and ahead.
                if t < 1.5 && c[0] * fwd[0] + c[1] * fwd[1] > -0.1 {
                    let k = (t / 1.5).max(0.3);
                    v = [v[0] * k, v[1] * k];
                }
            }
            if gap < comfort {
                let push = (comfort - gap) / comfort * speed;
                v = [v[0] - d[0] / dn * push, v[1] - d[1] / dn * push];
            }
        }
        let n = norm(v);
        let max = speed * 1.3;
        (if n > max { [v[0] / n * max, v[1] / n * max] } else { v }, against)
    }
}

/// A trip's way: the centre line's points, the half width into each, and the end node.
type TripWay = (Vec<[Real; 2]>, Vec<Real>, u32);

/// A trip from node `start`: the way to a destination drawn at trip distance (a few tries, else the last
/// drawn), and the destination.
fn trip(ways: &mut Walkways, rng: &mut ChaCha8Rng, start: u32) -> Option<TripWay> {
    let n = ways.xy.len() as u32;
    let from = *ways.xy.get(start as usize)?;
    let mut end = rng.random_range(0..n);
    for _ in 0..30 {
        let d = dist(from, ways.xy[end as usize]);
        if (TRIP_M.0..=TRIP_M.1).contains(&d) {
            break;
        }
        end = rng.random_range(0..n);
    }
    let nodes = ways.path_nodes(start, end)?;
    let pts: Vec<[Real; 2]> = nodes.iter().map(|&k| ways.xy[k as usize]).collect();
    // The half width of the way into each point (the first point: that of the way out of it).
    let mut half: Vec<Real> = nodes.windows(2).map(|w| ways.half_width(w[0], w[1])).collect();
    half.insert(0, half.first().copied().unwrap_or(HALF_WIDTH_M));
    (pts.len() >= 2).then_some((pts, half, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_circle_people_keep_clear_of_covers_the_robot() {
        assert!(ROBOT_CIRCLE_M.powi(2) >= ROBOT_HALF[0].powi(2) + ROBOT_HALF[1].powi(2));
    }

    #[test]
    fn speeds_follow_the_walking_distribution() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let s: Vec<Real> = (0..20_000).map(|_| draw_speed(&mut rng)).collect();
        let mean = s.iter().sum::<Real>() / s.len() as Real;
        let sd = (s.iter().map(|x| (x - mean).powi(2)).sum::<Real>() / s.len() as Real).sqrt();
        assert!((mean - 1.34).abs() < 0.01, "mean {mean}");
        assert!((sd - 0.26).abs() < 0.01, "sd {sd}");
        assert!(s.iter().all(|&x| (0.5..=1.9).contains(&x)));
    }

    #[test]
    fn attention_shares_are_as_documented() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut n = [0usize; 3];
        for _ in 0..20_000 {
            n[draw_attention(&mut rng) as usize] += 1;
        }
        let share = |k: usize| n[k] as f64 / 20_000.0;
        assert!((share(0) - 0.75).abs() < 0.01 && (share(1) - 0.20).abs() < 0.01 && (share(2) - 0.05).abs() < 0.01);
    }

    #[test]
    fn the_walkways_find_the_shortest_way() {
        let map = fleet_core::map::MapGraph::street_grid(4, 0.001).expect("the grid builds");
        let proj = Projection::new(map.origin());
        let mut w = Walkways::new(&map, &proj);
        let (s, t) = (0u32, map.node_count() as u32 - 1);
        let pts = w.path(s, t).expect("the grid is connected");
        let length: Real = pts.windows(2).map(|p| dist(p[0], p[1])).sum();
        let best = map.route(NodeId(s), NodeId(t), Profile::default()).expect("route").length_m as Real;
        assert!((length - best).abs() < 0.5, "A* {length} m, the router {best} m");
        assert_eq!((pts[0], *pts.last().expect("a way")), (w.xy[s as usize], w.xy[t as usize]));
        // Again, with scratch from the first search.
        assert_eq!(w.path(s, t), Some(pts));
    }

    #[test]
    fn two_people_meeting_head_on_both_turn_to_their_right() {
        let mut crowd = Crowd::default();
        let mut world = RapierWorld::default();
        crowd.add_shuttle(&mut world, [0.0, 0.0], [10.0, 0.0], 1.3, 0.0);
        crowd.add_shuttle(&mut world, [10.0, 0.0], [0.0, 0.0], 1.3, 0.0);
        for p in &mut crowd.peds {
            p.attention = Attention::Attentive;
        }
        let mut grid = Grid::new(3.5);
        grid.push(Kind::Person, 0, [4.0, 0.0], [1.3, 0.0], [1.0, 0.0]);
        grid.push(Kind::Person, 1, [6.0, 0.0], [-1.3, 0.0], [-1.0, 0.0]);
        grid.seal();
        let a = crowd.steer(0, [4.0, 0.0], [1.3, 0.0], &grid).0;
        let b = crowd.steer(1, [6.0, 0.0], [-1.3, 0.0], &grid).0;
        assert!(a[1] < -0.1 && b[1] > 0.1, "each to their right: {a:?} {b:?}");
        assert!(a[0] < 1.3 && b[0] > -1.3, "and slower: {a:?} {b:?}");
    }

    #[test]
    fn only_the_impassive_ignore_a_robot_and_the_distracted_notice_it_late() {
        let mut crowd = Crowd::default();
        let mut world = RapierWorld::default();
        crowd.add_shuttle(&mut world, [0.0, 0.0], [10.0, 0.0], 1.3, 0.0);
        let robot_at = |x: Real| {
            let mut g = Grid::new(3.5);
            g.push(Kind::Robot, 0, [x, 0.0], [-1.0, 0.0], [-1.0, 0.0]);
            g.seal();
            g
        };
        let want = [1.3, 0.0];
        // Touching a robot (its front 0.35 m from its centre, the person 0.3 m across), everyone knows it is
        // there: the way into it.
        for attention in [Attention::Attentive, Attention::Distracted, Attention::Impassive] {
            crowd.peds[0].attention = attention;
            assert_eq!(crowd.steer(0, [0.0, 0.0], want, &robot_at(0.66)).1, Some([1.0, 0.0]), "{attention:?}");
            assert_eq!(crowd.steer(0, [0.0, 0.0], want, &robot_at(0.7)).1, None, "{attention:?}");
        }
        let react = |crowd: &Crowd, x: Real| crowd.steer(0, [0.0, 0.0], want, &robot_at(x)).0 != want;
        for (attention, far, near) in [
            (Attention::Attentive, true, true),
            (Attention::Distracted, false, true),
            (Attention::Impassive, false, false),
        ] {
            crowd.peds[0].attention = attention;
            assert_eq!((react(&crowd, 3.0), react(&crowd, 1.5)), (far, near), "{attention:?}");
        }
    }
}
