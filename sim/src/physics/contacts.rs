//! Contact accounting: rapier's collision events collected during a step ([`Collector`]) and turned into
//! counted collisions ([`Contacts::account`]), one per contact start of a pair that involves a robot, a pair
//! that touches again within a second being the same collision.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use rapier3d::prelude::{
    ColliderHandle, ColliderSet, CollisionEvent, ContactPair, EventHandler, Real, RigidBodySet, SoftBodySet,
    SoftBodyTearEvent,
};
use serde::Serialize;

use super::{K_GROUND, K_PED, K_ROBOT, K_STATIC};

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

/// Collects rapier's collision events during a step. rapier requires the handler to be `Sync`; the sim steps on
/// one thread, so the lock is never contended.
#[derive(Default)]
pub(super) struct Collector(Mutex<Vec<CollisionEvent>>);

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

/// The events of the step being taken and the contact state of every pair that has touched.
#[derive(Default)]
pub(super) struct Contacts {
    /// Handed to rapier's step as its event handler.
    pub(super) collector: Collector,
    /// Reused buffer for the events drained after each step.
    drained: Vec<CollisionEvent>,
    pairs: BTreeMap<(u128, u128), PairState>,
}

impl Contacts {
    /// Counts into `counted` the collision starts of the step just taken (`step`, counted from 1) that involve a
    /// robot, and pushes each such pair's user data onto `fresh` (lower first); a pair whose contact ended at
    /// most `debounce` steps ago is still the same collision.
    pub(super) fn account(
        &mut self,
        colliders: &ColliderSet,
        step: u64,
        debounce: u64,
        counted: &mut Collisions,
        fresh: &mut Vec<(u128, u128)>,
    ) {
        {
            let mut q = self.collector.0.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *q, &mut self.drained);
        }
        for ev in self.drained.drain(..) {
            let ud = |h: ColliderHandle| colliders.get(h).map_or(K_GROUND << 120, |c| c.user_data);
            let (a, b) = (ud(ev.collider1()), ud(ev.collider2()));
            let key = (a.min(b), a.max(b));
            let kinds = (key.0 >> 120, key.1 >> 120);
            let state = self.pairs.entry(key).or_insert(PairState { touching: false, ended_step: 0 });
            match ev {
                CollisionEvent::Started(..) => {
                    let started_anew = !state.touching && (state.ended_step == 0 || step - state.ended_step > debounce);
                    state.touching = true;
                    if started_anew {
                        match kinds {
                            (K_ROBOT, K_ROBOT) => counted.robot_robot += 1,
                            (K_ROBOT, K_PED) => counted.robot_pedestrian += 1,
                            (K_ROBOT, K_STATIC) => counted.robot_static += 1,
                            _ => continue,
                        }
                        fresh.push(key);
                    }
                }
                CollisionEvent::Stopped(..) => {
                    state.touching = false;
                    state.ended_step = step;
                }
            }
        }
    }
}
