//! Late-order phase: plans are watched against the clock. Each robot's remaining stops are timed from where it
//! is now (or was last seen), with the learned travel times. An order whose hand-over would come after its
//! deliver-by, or within the time until the robot's next check of it, is first
//! re-planned (another robot, or another place in a plan) when nothing of it has started; when it would still
//! be late, its shop is told (`delayed_at` and the new ETA on the order, which `WatchOrder` streams) and
//! operators get an alert. Orders on time get their ETA brought up to date when it moved by a minute or more.

use std::ops::Bound;

use crate::robot::StopKind;
use crate::{OrderId, RobotId, Timestamp};

use super::*;

/// An ETA moving by less than this is not worth an update to the shop.
const ETA_STEP_S: f64 = 60.0;

impl Dispatcher {
    /// Checks the next robots' plans in turn: every robot once per [`Config::late_check_every_s`].
    pub(super) fn watch_lateness(&mut self, now: Timestamp, out: &mut Out) {
        let n = self.robots.len();
        if n == 0 || self.config.late_check_every_s <= 0.0 {
            return;
        }
        let per_tick = ((n as f64) * self.config.tick_every_s / self.config.late_check_every_s).ceil() as usize;
        let ids: Vec<RobotId> = match &self.late_cursor {
            Some(c) => self
                .robots
                .range::<RobotId, _>((Bound::Excluded(c), Bound::Unbounded))
                .chain(self.robots.range::<RobotId, _>(..=c))
                .map(|(id, _)| id.clone())
                .take(per_tick.min(n))
                .collect(),
            None => self.robots.keys().take(per_tick.min(n)).cloned().collect(),
        };
        self.late_cursor = ids.last().cloned();
        for id in ids {
            self.check_robot_lateness(now, &id, out);
        }
    }

    /// When each stop of robot `id` would be reached if it went on from where it is now, ignoring deadlines.
    pub(super) fn projected_arrivals(&mut self, now: Timestamp, id: &RobotId) -> Vec<(OrderId, StopKind, Timestamp)> {
        let Some(r) = self.robots.get(id) else { return Vec::new() };
        let profile = self.profile(&r.model);
        let mut v = Vec::with_capacity(r.plan.len());
        let (mut at, mut t) = (r.node, now);
        for stop in &r.plan {
            let Some(leg) = self.table.secs(&self.map, at, stop.node, profile) else { break };
            let arrive = t.plus_secs(leg);
            v.push((stop.order.clone(), stop.kind, arrive));
            let (not_before, service_s) = match stop.kind {
                StopKind::Pickup => (
                    self.orders.get(&stop.order).map_or(now, crate::order::Order::ready_at),
                    self.config.pickup_service_s,
                ),
                StopKind::Dropoff => (now, self.config.dropoff_service_s),
                StopKind::Return => (now, self.config.pickup_service_s),
            };
            t = arrive.max(not_before).plus_secs(service_s);
            at = stop.node;
        }
        v
    }

    fn check_robot_lateness(&mut self, now: Timestamp, id: &RobotId, out: &mut Out) {
        let Some(r) = self.robots.get(id) else { return };
        if r.plan.is_empty() {
            return;
        }
        let service = self.config.dropoff_service_s;
        // This robot is checked again only after the watch has been round the fleet: an order that would be
        // handed over within that long of its deliver-by counts as late now, or its notice could come too late.
        let n = self.robots.len() as f64;
        let per_tick = (n * self.config.tick_every_s / self.config.late_check_every_s).ceil().max(1.0);
        let next_check_s = (n / per_tick).ceil() * self.config.tick_every_s;
        let mut late: Vec<OrderId> = Vec::new();
        for (order, kind, arrive) in self.projected_arrivals(now, id) {
            if kind != StopKind::Dropoff {
                continue;
            }
            let Some(o) = self.orders.get_mut(&order) else { continue };
            if arrive.plus_secs(service + next_check_s) > o.request.deliver_by {
                late.push(order);
            } else if o.eta_dropoff.is_none_or(|e| e.secs_since(arrive).abs() >= ETA_STEP_S) {
                o.eta_dropoff = Some(arrive);
                out.orders.insert(order);
                // The drop-off's deadline in the robot's planner view reads this ETA.
                self.views.get_mut().remove(id);
            }
        }
        for order in late {
            if !self.replan_late(now, id, &order, out) {
                self.announce_late(now, &order, out);
            }
        }
    }

    /// Tries to give a late order whose stops have not started to another robot, or another place in a plan,
    /// that hands it over by its deliver-by. Returns whether it did.
    fn replan_late(&mut self, now: Timestamp, robot: &RobotId, id: &OrderId, out: &mut Out) -> bool {
        let Some(r) = self.robots.get(robot) else { return false };
        // A robot away keeps its orders until the offline limit; they are announced meanwhile.
        if !r.online || r.on_board.contains(id) || r.plan.iter().any(|s| &s.order == id && s.locked()) {
            return false;
        }
        let Some(o) = self.orders.get(id) else { return false };
        if o.delayed_at.is_some() {
            // Tried when it was announced; the improver may still find it a better place.
            return false;
        }
        let (req, pickup, dropoff) = (o.request.clone(), o.pickup, o.dropoff);
        let kept = r.plan.clone();
        let r = self.robots.get_mut(robot).expect("found above");
        r.plan.retain(|s| &s.order != id);
        let (pt, dt) = self.tasks_for(id, &req, pickup, dropoff, now);
        match self.best_insertion(now, &pt, &dt) {
            Ok(ins) => {
                let to = ins.robot.clone();
                if &to != robot {
                    // The robot it leaves keeps its other stops, timed again.
                    let stops = self.robots[robot].plan.clone();
                    let tasks: Vec<_> = stops.iter().filter_map(|s| self.task_of(s)).collect();
                    let arrivals: Vec<Timestamp> =
                        self.projected_arrivals(now, robot).into_iter().map(|(.., t)| t).collect();
                    self.install_plan(robot, stops, &tasks, &arrivals, out);
                    self.release(now, robot, out, true);
                }
                let o = self.orders.get_mut(id).expect("found above");
                o.robot = Some(to.clone());
                o.updated_at = now;
                out.orders.insert(id.clone());
                out.other.push(Output::Alert {
                    id: 0,
                    robot: Some(to.clone()),
                    message: format!("order {id} was running late on robot {robot}; re-planned onto robot {to}"),
                });
                self.apply_insertion(now, ins, out);
                true
            }
            Err(_) => {
                self.robots.get_mut(robot).expect("found above").plan = kept;
                false
            }
        }
    }

    /// Tells the shop (the order's ETA and `delayed_at`) and operators (an alert) that an order will be late;
    /// the alert goes once, the ETA follows the projection.
    fn announce_late(&mut self, now: Timestamp, id: &OrderId, out: &mut Out) {
        let Some(robot) = self.orders.get(id).and_then(|o| o.robot.clone()) else { return };
        let arrive = self
            .projected_arrivals(now, &robot)
            .into_iter()
            .find_map(|(o, kind, t)| (&o == id && kind == StopKind::Dropoff).then_some(t));
        let service = self.config.dropoff_service_s;
        let Some(o) = self.orders.get_mut(id) else { return };
        let Some(arrive) = arrive else { return };
        let first = o.delayed_at.is_none();
        // The notice carries the ETA as it is now; later it follows in steps.
        let moved = first || o.eta_dropoff.is_none_or(|e| e.secs_since(arrive).abs() >= ETA_STEP_S);
        if moved {
            o.eta_dropoff = Some(arrive);
            self.views.get_mut().remove(&robot);
        }
        if first {
            o.delayed_at = Some(now);
            let minutes = arrive.plus_secs(service).secs_since(o.request.deliver_by) / 60.0;
            out.other.push(Output::Alert {
                id: 0,
                robot: Some(robot.clone()),
                message: format!(
                    "order {id} of shop {} will be about {:.0} min late (robot {robot}); its shop was told",
                    o.shop,
                    minutes.ceil().max(1.0)
                ),
            });
        }
        if moved {
            o.updated_at = now;
            out.orders.insert(id.clone());
        }
    }
}
