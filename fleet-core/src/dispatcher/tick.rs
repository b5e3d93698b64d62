//! The periodic tick, an ordered sequence of named phases: robots away too long lose work they have not started,
//! expired closures reopen, idle robots low on battery go to charge, orders still pending are planned again, and
//! plans are checked against the clock ([`super::lateness`]), and idle robots are shared out over the shops
//! ([`super::positioning`]), and the watchdogs raise alerts about robots in trouble ([`super::watchdogs`]).

use std::sync::Arc;

use crate::mission::{Step, StepAction, ToRobot};
use crate::order::OrderStatus;
use crate::{OrderId, RobotId, Timestamp};

use super::*;

impl Dispatcher {
    /// One tick, its phases in a fixed order: robots whose absence passed the limit give up unstarted work first,
    /// so that the reopening, charging and re-planning phases after it see the fleet as it now is.
    pub(super) fn tick(&mut self, now: Timestamp, out: &mut Out) {
        self.handle_offline(now, out);
        self.reopen_and_release(now, out);
        self.traffic_tick(now, out);
        self.send_to_charge(now, out);
        self.replan_pending(now, out);
        self.watch_lateness(now, out);
        self.position_idle(now, out);
        self.watchdogs(now, out);
    }

    pub(super) fn handle_offline(&mut self, now: Timestamp, out: &mut Out) {
        // A robot back online starts its next absence from scratch.
        let robots = &self.robots;
        self.offline_since.retain(|id, _| robots.get(id).is_some_and(|r| !r.online));
        self.offline_handled.retain(|id| robots.get(id).is_some_and(|r| !r.online));
        for r in self.robots.values().filter(|r| !r.online) {
            self.offline_since.entry(r.id.clone()).or_insert(now);
        }
        let limit = self.config.offline_limit_s;
        let due: Vec<(RobotId, Timestamp)> = self
            .offline_since
            .iter()
            .filter(|(id, since)| now.secs_since(**since) >= limit && !self.offline_handled.contains(*id))
            .map(|(id, since)| (id.clone(), *since))
            .collect();
        for (id, since) in due {
            self.offline_handled.insert(id.clone());
            let why = format!("has been offline for {:.0} s", now.secs_since(since));
            // It kept its narrow ways and spots while it might come straight back; no longer.
            self.traffic.free_all(&id);
            self.unassign_unstarted(now, &id, &why, out);
        }
    }

    /// Reopens sidewalks whose blocked-closure time is over, and gives idle robots with planned stops their
    /// next release (one may have waited for a way to open).
    pub(super) fn reopen_and_release(&mut self, now: Timestamp, out: &mut Out) {
        let (due, keep): (Vec<_>, Vec<_>) = self.meta.temp_closures.iter().partition(|c| c.2 <= now);
        if !due.is_empty() {
            self.meta.temp_closures = keep;
            let map = Arc::make_mut(&mut self.map);
            for (a, b, _) in due {
                map.open_edge(a, b);
            }
            self.meta.closed_edges = self.map.closed_edges().collect();
            self.table.clear();
            self.legs.clear();
            self.plans_version += 1;
            out.meta = true;
        }
        let idle: Vec<RobotId> = self
            .robots
            .values()
            .filter(|r| available(r) && r.mission.base.is_empty() && !r.plan.is_empty())
            .map(|r| r.id.clone())
            .collect();
        for id in idle {
            self.release(now, &id, out, false);
        }
    }

    /// Sends idle robots low on battery to their depot to charge. While charging a robot gets no work.
    pub(super) fn send_to_charge(&mut self, now: Timestamp, out: &mut Out) {
        let low: Vec<RobotId> = self
            .robots
            .values()
            .filter(|r| available(r) && r.plan.is_empty() && r.mission.base.is_empty())
            .filter(|r| r.battery_pct < self.config.charge_below_pct)
            .map(|r| r.id.clone())
            .collect();
        for id in low {
            let r = &self.robots[&id];
            let Ok(depot) = self.map.snap(r.depot, self.config.max_snap_m) else { continue };
            let profile = self.profile(&r.model);
            let mut actions = Vec::new();
            if depot.node != r.node {
                match self.map.route(r.node, depot.node, profile) {
                    Some(route) if route.nodes.len() >= 2 => {
                        // Split short of the depot: a robot waits there for a free charger.
                        actions.extend(self.drive_steps(&route, profile.speed_mps, true));
                    }
                    Some(_) => {}
                    None => {
                        out.other.push(Output::Alert {
                            id: 0,
                            robot: Some(id.clone()),
                            message: format!("robot {id} needs charging but has no open route to its depot"),
                        });
                        continue;
                    }
                }
            }
            actions.push(StepAction::Charge { until_pct: self.config.charge_to_pct });
            let r = self.robots.get_mut(&id).expect("listed above");
            let traffic = self.config.traffic.enabled;
            for action in actions {
                let seq = r.mission.next_seq;
                r.mission.next_seq += 1;
                // Drives wait for their narrow ways, crossings and the depot's chargers like any other; the
                // charge goes with them.
                let released = !traffic || !matches!(action, StepAction::Drive { .. });
                r.mission.base.push(Step { seq, released, action });
            }
            r.charging = true;
            if traffic {
                self.claim_ahead(now, &id);
            }
            let r = self.robots.get_mut(&id).expect("listed above");
            r.mission.update_id += 1;
            self.plans_version += 1;
            out.robots.insert(id.clone());
            let update = self.build_update(&self.robots[&id]);
            out.other.push(Output::Send { robot: id.clone(), msg: ToRobot::Mission(update) });
            out.other.push(Output::RobotChanged(Box::new(self.robots[&id].clone())));
        }
    }

    /// Orders waiting for a robot: try again, and fail those whose deadline passed.
    pub(super) fn replan_pending(&mut self, now: Timestamp, out: &mut Out) {
        let pending: Vec<OrderId> =
            self.orders.values().filter(|o| o.status == OrderStatus::Pending).map(|o| o.id.clone()).collect();
        for id in pending {
            let o = &self.orders[&id];
            if o.request.deliver_by <= now {
                let o = self.orders.get_mut(&id).expect("listed above");
                if o.transition(OrderStatus::Failed, now).is_ok() {
                    o.reason = Some("no robot could take it before its deliver-by time".into());
                    out.orders.insert(id);
                }
                continue;
            }
            let (req, p, d) = (o.request.clone(), o.pickup, o.dropoff);
            let (pt, dt) = self.tasks_for(&id, &req, p, d, now);
            if let Ok(ins) = self.best_insertion(now, &pt, &dt) {
                let o = self.orders.get_mut(&id).expect("listed above");
                if o.transition(OrderStatus::Assigned, now).is_ok() {
                    o.robot = Some(ins.robot.clone());
                    out.orders.insert(id);
                    self.apply_insertion(now, ins, out);
                }
            }
        }
    }
}
