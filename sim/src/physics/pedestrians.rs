//! Pedestrians: kinematic capsules (they do not yield; people expect the robot to) each walking a loop around
//! one edge, out along its right-hand side and back along the other, at their own speed. [`walks`] draws the
//! edges, speeds and starting points from the caller's seeded stream; [`Crowd`] keeps the bodies walking.

use fleet_core::map::{MapGraph, Profile};
use fleet_core::{LatLon, NodeId};
use rand::Rng;
use rapier3d::prelude::{
    ColliderBuilder, InteractionGroups, InteractionTestMode, PhysicsWorld as RapierWorld, Real, RigidBodyBuilder,
    RigidBodyHandle, RigidBodySet, Vector,
};

use super::{G_PED, G_ROBOT, K_PED, dist};

pub(super) const PED_RADIUS: Real = 0.3;
const PED_HALF_HEIGHT: Real = 0.55;

#[derive(Debug, Clone)]
struct Pedestrian {
    body: RigidBodyHandle,
    /// The loop walked: out on one side of the edge, back on the other.
    corners: [[Real; 2]; 4],
    /// Index into `corners` of the one walked towards.
    toward: usize,
    speed: Real,
}

/// Every pedestrian of the world, in the order they were added (their collider's index).
#[derive(Debug, Default)]
pub(super) struct Crowd {
    peds: Vec<Pedestrian>,
}

/// Velocity walking from `from` straight to `to` at `speed`.
fn walk_velocity(from: [Real; 2], to: [Real; 2], speed: Real) -> Vector {
    let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
    let d = (dx * dx + dy * dy).sqrt();
    if d > 1e-3 { Vector::new(dx / d * speed, dy / d * speed, 0.0) } else { Vector::ZERO }
}

impl Crowd {
    /// The body of every pedestrian, in index order.
    pub(super) fn bodies(&self) -> impl Iterator<Item = RigidBodyHandle> + '_ {
        self.peds.iter().map(|p| p.body)
    }

    /// The body of pedestrian `j`.
    pub(super) fn body(&self, j: usize) -> Option<RigidBodyHandle> {
        self.peds.get(j).map(|p| p.body)
    }

    /// Adds a pedestrian to `world` walking back and forth between `pa` and `pb` (local metres) at `speed_mps`,
    /// starting `frac` of the way.
    pub(super) fn add(&mut self, world: &mut RapierWorld, pa: [Real; 2], pb: [Real; 2], speed_mps: f32, frac: f32) {
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
        let (body, _) = world.insert(
            RigidBodyBuilder::kinematic_velocity_based()
                .translation(Vector::new(start[0], start[1], PED_HALF_HEIGHT + PED_RADIUS))
                .linvel(walk_velocity(start, corners[1], speed_mps)),
            ColliderBuilder::capsule_z(PED_HALF_HEIGHT, PED_RADIUS)
                .collision_groups(InteractionGroups::new(G_PED, G_ROBOT, InteractionTestMode::And))
                .user_data(K_PED << 120 | j as u128),
        );
        self.peds.push(Pedestrian { body, corners, toward: 1, speed: speed_mps });
    }

    /// Turns every pedestrian who has reached their corner towards the next, before a step of `dt` seconds.
    pub(super) fn walk(&mut self, bodies: &mut RigidBodySet, dt: Real) {
        // A pedestrian's velocity is written only when they turn at a corner: rewriting it every step would make
        // rapier re-process the body as user-changed each step, which was a visible share of the step time.
        for p in &mut self.peds {
            if let Some(b) = bodies.get_mut(p.body) {
                let t = b.translation();
                if dist([t.x, t.y], p.corners[p.toward]) < p.speed * dt * 1.5 {
                    p.toward = (p.toward + 1) % 4;
                    b.set_linvel(walk_velocity([t.x, t.y], p.corners[p.toward], p.speed), true);
                }
            }
        }
    }
}

/// `count` walks on random edges of `map` longer than 5 m, drawn from `rng`: each edge's ends, a speed of
/// 1.0-1.5 m/s and how far along the walker starts. None when the map has no such edge.
pub(super) fn walks(map: &MapGraph, count: usize, rng: &mut impl Rng) -> Vec<(LatLon, LatLon, f32, f32)> {
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
        return Vec::new();
    }
    let mut walks = Vec::with_capacity(count);
    for _ in 0..count {
        let (u, v) = edges[rng.random_range(0..edges.len())];
        let speed = rng.random_range(1.0..1.5);
        let frac = rng.random_range(0.0..1.0);
        if let (Some(a), Some(b)) = (map.pos(NodeId(u)), map.pos(NodeId(v))) {
            walks.push((a, b, speed, frac));
        }
    }
    walks
}
