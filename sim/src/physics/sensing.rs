//! Forward sensing: each driving robot sweeps a thin slab as wide as itself (plus 5 cm a side) through the
//! space ahead, up to `sense_range_m`, and learns the gap to the nearest robot, pedestrian or wall and what it
//! is (the collider's `user_data`: kind and index).

use rapier3d::parry::query::ShapeCastOptions;
use rapier3d::parry::shape::Cuboid;
use rapier3d::prelude::{
    InteractionGroups, InteractionTestMode, PhysicsWorld as RapierWorld, Pose, QueryFilter, Real, RigidBodyHandle,
    Rotation, Vector,
};

use super::{G_PED, G_ROBOT, G_STATIC, K_STATIC, ROBOT_HALF};

/// What the forward sensor saw this step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Seen {
    /// Free distance ahead of the robot's front, metres.
    pub(super) gap: Real,
    /// The collider's `user_data`: kind in the top byte, index below.
    pub(super) what: u128,
}

/// The sweep's shape and reach.
pub(super) struct Sensor {
    shape: Cuboid,
    range_m: Real,
}

impl Sensor {
    pub(super) fn new(range_m: Real) -> Self {
        Self { shape: Cuboid::new(Vector::new(0.02, ROBOT_HALF[1] + 0.05, ROBOT_HALF[2] - 0.05)), range_m }
    }

    /// The nearest thing ahead of the robot `body` standing at `pos` facing `yaw`, ignoring the robot itself.
    pub(super) fn sweep(&self, world: &RapierWorld, body: RigidBodyHandle, pos: Vector, yaw: Real) -> Option<Seen> {
        let dir = Vector::new(yaw.cos(), yaw.sin(), 0.0);
        let origin = pos + dir * (ROBOT_HALF[0] + 0.03);
        let shape_pos = Pose::from_parts(origin, Rotation::from_rotation_z(yaw));
        let filter = QueryFilter::default().exclude_rigid_body(body).groups(InteractionGroups::new(
            G_ROBOT,
            G_ROBOT | G_PED | G_STATIC,
            InteractionTestMode::And,
        ));
        let opts = ShapeCastOptions::with_max_time_of_impact(self.range_m);
        let (h, hit) = world.query_pipeline_with_filter(filter).cast_shape(&shape_pos, dir, &self.shape, opts)?;
        let what = world.colliders.get(h).map_or(K_STATIC << 120, |c| c.user_data);
        Some(Seen { gap: hit.time_of_impact, what })
    }
}
