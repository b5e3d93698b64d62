//! Release phase (VDA 5050 style): the robot's next steps are released one update at a time, a released base it may
//! drive and a provisional horizon; arriving at a stop releases its action (load, hand over).

use crate::mission::{MissionUpdate, Step, StepAction, ToRobot, pin_hash};
use crate::order::OrderStatus;
use crate::robot::{PlanStop, Robot, StopKind};
use crate::{OrderId, RobotId, Timestamp};

use super::*;

/// Where the last drive among `steps` ends, if any drives.
pub(super) fn drives_end(steps: &[Step]) -> Option<crate::NodeId> {
    steps.iter().rev().find_map(|s| match &s.action {
        StepAction::Drive { nodes, .. } => nodes.last().copied(),
        _ => None,
    })
}

impl Dispatcher {
    /// Releases the robot's next stop when nothing it must finish first is pending: the drive to it, then its
    /// action once its precondition holds (a pickup waits for the parcel to be marked ready). Sends an update
    /// when anything changed or `plan_changed`.
    pub(super) fn release(&mut self, now: Timestamp, robot: &RobotId, out: &mut Out, plan_changed: bool) {
        let Some(r) = self.robots.get(robot) else {
            return;
        };
        // Nothing new is released to a robot that is away or broken: a step released to it could not be taken
        // back, and would pin its order to a robot that may never return. Its hello releases what is due.
        if !r.online || r.fault.is_some() {
            return;
        }
        let mut changed = plan_changed;
        // The drive still held back by traffic leads to a stop no longer planned (its order was cancelled or
        // moved): it is withdrawn; the robot goes on from where its released drive ends.
        let target =
            r.mission.base.iter().filter(|s| !s.released).find_map(|s| self.drive_targets.get(&(robot.clone(), s.seq)));
        let stale = target.is_some_and(|(order, kind)| !r.plan.iter().any(|p| &p.order == order && p.kind == *kind));
        // So is the rest of an idle drive (to wait near a shop, or out of another's way) once the robot has a
        // stop to drive to: it goes there from where its released drive ends, not via the end of the idle one.
        let idle_drive = !r.charging
            && r.plan.first().is_some_and(|p| !p.drive_released)
            && r.mission.base.iter().any(|s| !s.released);
        if stale || idle_drive {
            let r = self.robots.get_mut(robot).expect("checked above");
            let withdrawn: Vec<u32> = r.mission.base.iter().filter(|s| !s.released).map(|s| s.seq).collect();
            r.mission.base.retain(|s| s.released);
            for seq in withdrawn {
                self.drive_targets.remove(&(robot.clone(), seq));
            }
            self.traffic.withdraw(robot);
            self.claimed_steps.remove(robot);
            self.leg_clock.remove(robot);
            changed = true;
        }
        let Some(r) = self.robots.get(robot) else {
            return;
        };
        let busy = r.mission.base.iter().any(|s| !matches!(s.action, StepAction::Drive { .. }));
        if !busy && let Some(stop) = r.plan.first().cloned() {
            let profile = self.profile(&r.model);
            let from = drives_end(&r.mission.base).unwrap_or(r.node);
            let order_ready = self.orders.get(&stop.order).is_some_and(|o| o.marked_ready);
            let mut drives: Vec<StepAction> = Vec::new();
            let mut arrived_now = false;
            // The free-flow time of the leg, when it starts from where the robot is (nothing else to drive
            // first), for learning how long legs really take.
            let mut leg_s = None;
            if !stop.drive_released {
                match self.map.route(from, stop.node, profile) {
                    Some(route) if route.nodes.len() >= 2 => {
                        drives = self.drive_steps(&route, profile.speed_mps, true);
                        leg_s = drives_end(&r.mission.base).is_none().then_some(route.duration_s);
                    }
                    Some(_) => arrived_now = r.mission.base.is_empty(),
                    None => {
                        out.other.push(Output::Alert {
                            id: 0,
                            robot: Some(robot.clone()),
                            message: format!("no open route from {from} to {} for order {}", stop.node, stop.order),
                        });
                        return;
                    }
                }
            }
            // A pickup waits for the parcel to be packed; the drive to the shop does not.
            let release_action = !stop.action_released && (stop.kind != StopKind::Pickup || order_ready);
            let action = if release_action { self.stop_action(&stop) } else { None };
            if !stop.drive_released || release_action {
                changed = true;
                let r = self.robots.get_mut(robot).expect("checked above");
                let n = drives.len();
                // The drive's first part is released at once unless traffic holds it; the rest as granted.
                for (k, action) in drives.into_iter().enumerate() {
                    let seq = r.mission.next_seq;
                    r.mission.next_seq += 1;
                    if k + 1 == n {
                        self.drive_targets.insert((robot.clone(), seq), (stop.order.clone(), stop.kind));
                    }
                    r.mission.base.push(Step { seq, released: !self.config.traffic.enabled, action });
                }
                if let Some(action) = action {
                    let seq = r.mission.next_seq;
                    r.mission.next_seq += 1;
                    r.mission.base.push(Step { seq, released: true, action });
                }
                let first = &mut r.plan[0];
                let newly_driving = !first.drive_released;
                first.drive_released = true;
                first.action_released |= release_action;
                if newly_driving {
                    match leg_s {
                        Some(s) => self.leg_clock.insert(robot.clone(), (now, s)),
                        None => self.leg_clock.remove(robot),
                    };
                    self.on_drive_released(now, &stop, arrived_now, out);
                }
                if self.config.traffic.enabled {
                    self.claim_ahead(now, robot);
                }
            }
        }
        if changed {
            let r = self.robots.get_mut(robot).expect("checked above");
            r.mission.update_id += 1;
            out.robots.insert(robot.clone());
            let update = self.build_update(&self.robots[robot]);
            out.other.push(Output::Send { robot: robot.clone(), msg: ToRobot::Mission(update) });
        }
    }

    pub(super) fn on_drive_released(&mut self, now: Timestamp, stop: &PlanStop, arrived: bool, out: &mut Out) {
        let Some(o) = self.orders.get_mut(&stop.order) else {
            return;
        };
        if stop.kind == StopKind::Pickup && o.status == OrderStatus::Assigned {
            advance(o, OrderStatus::ToPickup, now, out);
            out.orders.insert(o.id.clone());
        }
        if arrived {
            self.on_arrived(now, &stop.order.clone(), stop.kind, out);
        }
    }

    pub(super) fn on_arrived(&mut self, now: Timestamp, order: &OrderId, kind: StopKind, out: &mut Out) {
        let Some(o) = self.orders.get_mut(order) else {
            return;
        };
        let to = match (kind, o.status) {
            (StopKind::Pickup, OrderStatus::ToPickup) => OrderStatus::AtPickup,
            (StopKind::Dropoff, OrderStatus::InTransit) => OrderStatus::AtDropoff,
            _ => return,
        };
        if o.transition(to, now).is_ok() {
            out.orders.insert(order.clone());
        }
    }

    /// The update a robot should hold: the released base, then the rest of the plan as a provisional horizon
    /// (stop actions only; the route to a stop comes with its release).
    pub(super) fn build_update(&self, r: &Robot) -> MissionUpdate {
        let mut steps = r.mission.base.clone();
        let mut seq = r.mission.next_seq;
        for stop in r.plan.iter().filter(|s| !s.action_released) {
            let Some(action) = self.stop_action(stop) else {
                continue;
            };
            steps.push(Step { seq, released: false, action });
            seq += 1;
        }
        MissionUpdate { mission_id: r.mission.mission_id.clone(), update_id: r.mission.update_id, steps }
    }

    /// The step that performs a stop.
    pub(super) fn stop_action(&self, stop: &PlanStop) -> Option<StepAction> {
        let o = self.orders.get(&stop.order)?;
        Some(match stop.kind {
            StopKind::Pickup => StepAction::Pickup {
                order: stop.order.clone(),
                compartments: o.request.parcel.compartments,
                service_s: self.config.pickup_service_s,
            },
            StopKind::Dropoff => StepAction::Dropoff {
                order: stop.order.clone(),
                pin_hash: pin_hash(&stop.order, &o.pin),
                service_s: self.config.dropoff_service_s,
            },
            StopKind::Return => {
                StepAction::Return { order: stop.order.clone(), service_s: self.config.pickup_service_s }
            }
        })
    }
}
