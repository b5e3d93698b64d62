//! Robot reports: hellos, state, step results and events. A step result moves its order along the state machine; a
//! blocked sidewalk becomes a temporary closure and the robot is re-routed; a fault takes the robot out of planning.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::mission::{ErrorLevel, FromRobot, InstantAction, RobotEvent, Step, StepAction, StepOutcome, ToRobot};
use crate::order::OrderStatus;
use crate::robot::{PlanStop, StopKind};
use crate::{NodeId, OrderId, RobotId, Timestamp};

use super::traffic::IDLE_IN_WAY_M;
use super::*;

/// Why a robot reporting its way blocked is sent the same way again instead of round.
enum Cleared {
    /// This many idle robots standing by it were sent aside.
    IdleMoved(usize),
    /// The way round is this many seconds longer.
    Longer(f64),
    NoWayRound,
    /// This robot stood in its way (head-on on one sidewalk, or at the node both leave) and backs off aside.
    FaceOff(RobotId),
    /// This robot stands by it working at a stop (loading, handing over) and leaves when done.
    Working(RobotId),
}

/// A report of a sidewalk blocked from its other end by another robot this recently after the first is two
/// robots meeting head-on, seconds.
const FACE_OFF_S: f64 = 300.0;

impl Dispatcher {
    pub(super) fn robot_msg(&mut self, now: Timestamp, id: &RobotId, msg: FromRobot, out: &mut Out) {
        let Some(r) = self.robots.get_mut(id) else {
            return;
        };
        r.last_seen = Some(now);
        if matches!(msg, FromRobot::Hello(_) | FromRobot::State(_)) {
            // It is back: its absence, if any, is over.
            self.offline_since.remove(id);
            self.offline_handled.remove(id);
        }
        let Some(r) = self.robots.get_mut(id) else {
            return;
        };
        match msg {
            FromRobot::Hello(hello) => {
                match hello.model.checked() {
                    Ok(m) => r.model = m,
                    Err(e) => out.other.push(Output::Alert {
                        id: 0,
                        robot: Some(id.clone()),
                        message: format!("robot {id} sent a bad factsheet ({e}); keeping the registered model"),
                    }),
                }
                r.online = true;
                self.plans_version += 1;
                out.robots.insert(id.clone());
                if hello.mission_id == r.mission.mission_id {
                    for (seq, outcome) in hello.finished {
                        self.step_finished(now, id, seq, outcome, out);
                    }
                }
                self.release(now, id, out, false);
                // Always (re)send the current mission: a reconnecting robot may have missed updates, and
                // re-sent updates are idempotent.
                if !out
                    .other
                    .iter()
                    .any(|o| matches!(o, Output::Send { robot, msg: ToRobot::Mission(_) } if robot == id))
                {
                    out.other.push(Output::Send {
                        robot: id.clone(),
                        msg: ToRobot::Mission(self.build_update(&self.robots[id])),
                    });
                }
                if self.robots[id].paused {
                    out.other.push(Output::Send { robot: id.clone(), msg: ToRobot::Instant(InstantAction::Pause) });
                }
                out.other.push(Output::RobotChanged(Box::new(self.robots[id].clone())));
            }
            FromRobot::State(s) => {
                if !r.online {
                    r.online = true;
                    self.plans_version += 1;
                }
                r.pos = s.pos;
                let (rid, rpos) = (r.id.clone(), r.pos);
                self.watch_position(&rid, rpos, now);
                let Some(r) = self.robots.get_mut(id) else { return };
                if s.battery_pct.is_finite() {
                    r.battery_pct = s.battery_pct.clamp(0.0, 100.0);
                }
                if let Some(n) = s.last_node
                    && self.map.node(n).is_some()
                {
                    r.node = n;
                }
                let pos = r.pos;
                let active: Vec<OrderId> = r.plan.iter().map(|p| p.order.clone()).collect();

                out.other.push(Output::RobotChanged(Box::new(r.clone())));
                for oid in active {
                    if let Some(o) = self.orders.get_mut(&oid)
                        && matches!(o.status, OrderStatus::ToPickup | OrderStatus::InTransit)
                    {
                        o.robot_pos = Some(pos);
                        out.other.push(Output::OrderChanged(Box::new(o.clone())));
                    }
                }
            }
            FromRobot::Ack { update_id } => {
                if update_id <= r.mission.update_id && update_id > r.mission.acked_update_id {
                    r.mission.acked_update_id = update_id;
                }
            }
            FromRobot::Event(RobotEvent::StepFinished { seq, outcome }) => {
                self.step_finished(now, id, seq, outcome, out);
                self.release(now, id, out, false);
            }
            FromRobot::Event(RobotEvent::Blocked { from, to }) => self.on_blocked(now, id, from, to, out),
            FromRobot::Event(RobotEvent::Error { level, kind, detail }) => {
                out.other.push(Output::Alert {
                    id: 0,
                    robot: Some(id.clone()),
                    message: format!("robot {id} reports {level:?} {kind}: {detail}"),
                });
                if level == ErrorLevel::Fatal && r.fault.is_none() {
                    self.leg_clock.remove(id);
                    r.fault = Some(format!("{kind}: {detail}"));
                    out.robots.insert(id.clone());
                    self.plans_version += 1;
                    self.unassign_unstarted(now, id, "is out of service", out);
                    self.replan_pending(now, out);
                }
            }
        }
    }

    /// Applies a finished step (and, implicitly, every earlier base step). Unknown or repeated seqs are ignored.
    pub(super) fn step_finished(
        &mut self,
        now: Timestamp,
        id: &RobotId,
        seq: u32,
        outcome: StepOutcome,
        out: &mut Out,
    ) {
        let Some(r) = self.robots.get_mut(id) else {
            return;
        };
        let Some(pos) = r.mission.base.iter().position(|s| s.seq == seq) else {
            return;
        };
        let done: Vec<Step> = r.mission.base.drain(..=pos).collect();
        out.robots.insert(id.clone());
        let last = done.len() - 1;
        for (i, step) in done.into_iter().enumerate() {
            let outcome = if i == last { outcome.clone() } else { StepOutcome::Done };
            match step.action {
                StepAction::Charge { .. } => {
                    self.robots.get_mut(id).expect("present").charging = false;
                    self.plans_version += 1;
                }
                StepAction::Drive { nodes, .. } => {
                    if let Some(&n) = nodes.last() {
                        self.robots.get_mut(id).expect("present").node = n;
                    }
                    if let Some((order, kind)) = self.drive_targets.remove(&(id.clone(), step.seq)) {
                        if let Some((since, free_s)) = self.leg_clock.remove(id)
                            && self.learned.observe_leg(since, free_s, now.secs_since(since))
                        {
                            self.learned_one(out);
                        }
                        self.on_arrived(now, &order, kind, out);
                    }
                }
                StepAction::Pickup { order, .. } => {
                    let r = self.robots.get_mut(id).expect("present");
                    r.plan.retain(|s| !(s.order == order && s.kind == StopKind::Pickup));
                    r.on_board.push(order.clone());
                    if let Some(o) = self.orders.get_mut(&order) {
                        // A pickup released without its drive (robot already at the shop) arrives here first.
                        if o.status == OrderStatus::ToPickup {
                            advance(o, OrderStatus::AtPickup, now, out);
                        }
                        advance(o, OrderStatus::InTransit, now, out);
                        out.orders.insert(order);
                    }
                }
                StepAction::Dropoff { order, .. } => {
                    let r = self.robots.get_mut(id).expect("present");
                    r.plan.retain(|s| !(s.order == order && s.kind == StopKind::Dropoff));
                    let Some(o) = self.orders.get_mut(&order) else {
                        continue;
                    };
                    if o.status == OrderStatus::InTransit {
                        advance(o, OrderStatus::AtDropoff, now, out);
                    }
                    match outcome {
                        StepOutcome::Done => {
                            advance(o, OrderStatus::Delivered, now, out);
                            r.on_board.retain(|x| x != &order);
                            if let Some(p) = o.promise
                                && self
                                    .learned
                                    .observe_outcome(p.planned.secs_since(o.created_at), now.secs_since(o.created_at))
                            {
                                self.plan_stretch = self.stretch();
                                self.learned_one(out);
                            }
                        }
                        StepOutcome::HandoverFailed(why) => {
                            // The parcel stays on board; the robot brings it back to the shop.
                            advance(o, OrderStatus::Returning, now, out);
                            o.reason = Some(format!("hand-over failed: {why}"));
                            r.plan.push(PlanStop {
                                kind: StopKind::Return,
                                order: order.clone(),
                                node: o.pickup.node,
                                drive_released: false,
                                action_released: false,
                            });
                        }
                    }
                    out.orders.insert(order);
                }
                StepAction::Return { order, .. } => {
                    let r = self.robots.get_mut(id).expect("present");
                    r.plan.retain(|s| !(s.order == order && s.kind == StopKind::Return));
                    r.on_board.retain(|x| x != &order);
                    if let Some(o) = self.orders.get_mut(&order)
                        && o.transition(OrderStatus::Returned, now).is_ok()
                    {
                        out.orders.insert(order);
                    }
                }
            }
        }
    }

    /// A robot could not get from `from` to `to`. When the way round is not much longer (under
    /// [`Config::blocked_retry_over_s`] more), or the sidewalk was reported blocked once already within
    /// [`Config::blocked_closure_s`], that sidewalk is closed for that long (both ways) and the robot gets a new
    /// route to the stop it was driving to, from the node it last passed. At a first report with a much longer
    /// way round (or none), the robot is sent the same way again instead: a crowd or a turning robot clears in
    /// seconds, a detour costs minutes for the rest of the closure.
    pub(super) fn on_blocked(&mut self, now: Timestamp, id: &RobotId, from: NodeId, to: NodeId, out: &mut Out) {
        let minutes = self.config.blocked_closure_s / 60.0;
        let mut tried_again = None;
        // An idle robot standing in the way is sent off it, and the robot tries the same way again.
        let cleared = self.clear_idle_near(now, id, out);
        if cleared > 0 {
            tried_again = Some(Cleared::IdleMoved(cleared));
        } else if let Some(other) =
            // Working at a stop: its released first step is a load, hand-over or return.
            self.standing_by(id, |s| s.released && !matches!(s.action, StepAction::Drive { .. }))
        {
            // A robot working at a stop on a narrow sidewalk blocks it only until it is done: the sidewalk
            // stays open and the robot waits behind it (it reports again if it is still blocked).
            tried_again = Some(Cleared::Working(other));
        } else if let Some(other) =
            // Waiting for its turn at a bottleneck: its next drive not yet released.
            self.standing_by(id, |s| !s.released && matches!(s.action, StepAction::Drive { .. }))
            && let Some(at) = self.robots.get(&other).map(|r| r.node)
            && self.back_off(now, &other, at, &[(from, to), (to, from)], id, out)
        {
            // A robot standing there waiting for its turn somewhere goes nowhere for now: it backs off aside,
            // out of this one's way, and goes on when its turn comes.
            tried_again = Some(Cleared::FaceOff(other));
        } else if self.map.adjacent(from, to) {
            let until = now.plus_secs(self.config.blocked_closure_s);
            // Closures are per edge (both directions), named with the lower node first.
            let key = (from.min(to), from.max(to));
            let by_operator =
                self.map.closed_edges().any(|e| e == key) && !self.meta.temp_closures.iter().any(|c| (c.0, c.1) == key);
            // An edge an operator closed stays the operator's to open.
            if !by_operator {
                let window = self.config.blocked_closure_s;
                self.blocked_tried.retain(|_, (at, ..)| now.secs_since(*at) < window);
                let reported_before = self.blocked_tried.contains_key(&key);
                // The other end's robot reported it first: the two met head-on, and the sidewalk is not what
                // blocks them. One backs off aside (this one, or else the other) and the other goes on; the
                // sidewalk stays open.
                // So did another robot that reported another way out of the node this one stands at: the two
                // stand in each other's way there.
                let met = self.blocked_tried.iter().find_map(|(k, (at, other, other_from))| {
                    let other_to = if k.0 == *other_from { k.1 } else { k.0 };
                    let head_on = *k == key && *other_from == to;
                    let same_node = *k != key && *other_from == from;
                    (other != id && (head_on || same_node) && now.secs_since(*at) <= FACE_OFF_S)
                        .then(|| (*k, other.clone(), other_to, head_on))
                });
                if let Some((their_key, other, other_to, head_on)) = met {
                    self.blocked_tried.remove(&their_key);
                    let edge = [(from, to), (to, from), (from, other_to), (other_to, from)];
                    if self.back_off(now, id, from, &edge, &other, out) {
                        let met = if head_on {
                            format!("met head-on between {from} and {to}")
                        } else {
                            format!("stood in each other's way at {from}")
                        };
                        out.other.push(Output::Alert {
                            id: 0,
                            robot: Some(id.clone()),
                            message: format!("robots {id} and {other} {met}: {id} backs off aside to let {other} by"),
                        });
                        return;
                    }
                    let other_at = self.robots.get(&other).map_or(to, |r| r.node);
                    if self.back_off(now, &other, other_at, &edge, id, out) {
                        tried_again = Some(Cleared::FaceOff(other));
                    }
                }
                let before = self.secs_to_next_stop(id, from, &[]);
                let after = self.secs_to_next_stop(id, from, &[(from, to), (to, from)]);
                let extra = match (before, after) {
                    (Some(b), Some(a)) => Some(a - b),
                    (Some(_), None) => None,
                    // The robot had no way to its stop before either (or has no stop): nothing to weigh.
                    (None, _) => Some(0.0),
                };
                let retry = self.config.blocked_retry_over_s > 0.0
                    && !reported_before
                    && extra.is_none_or(|x| x > self.config.blocked_retry_over_s);
                if tried_again.is_some() {
                    // Met head-on and the other backs off: nothing to close.
                } else if retry {
                    self.blocked_tried.insert(key, (now, id.clone(), from));
                    tried_again = Some(match extra {
                        Some(x) => Cleared::Longer(x),
                        None => Cleared::NoWayRound,
                    });
                } else {
                    Arc::make_mut(&mut self.map).close_edge(key.0, key.1);
                    self.blocked_tried.remove(&key);
                    self.meta.temp_closures.retain(|c| (c.0, c.1) != key);
                    self.meta.temp_closures.push((key.0, key.1, until));
                    self.meta.closed_edges = self.map.closed_edges().collect();
                    self.table.clear();
                    self.legs.clear();
                    self.plans_version += 1;
                    out.meta = true;
                }
            } else {
                self.meta.closed_edges = self.map.closed_edges().collect();
            }
        }
        let Some(r) = self.robots.get_mut(id) else { return };
        let driving = r.mission.base.first().is_some_and(|s| matches!(s.action, StepAction::Drive { .. }));
        if !driving {
            out.other.push(Output::Alert {
                id: 0,
                robot: Some(id.clone()),
                message: if let Some(Cleared::Working(other)) = &tried_again {
                    format!(
                        "robot {id} reports the way from {from} to {to} blocked; robot {other} works at a stop there \
                         and leaves when done"
                    )
                } else if let Some(Cleared::IdleMoved(n)) = tried_again {
                    format!(
                        "robot {id} reports the way from {from} to {to} blocked; {n} idle robot(s) there sent aside"
                    )
                } else if tried_again.is_some() {
                    format!("robot {id} reports the way from {from} to {to} blocked; left open (first report)")
                } else {
                    format!("robot {id} reports the way from {from} to {to} blocked; closed for {minutes:.0} min")
                },
            });
            return;
        }
        // Withdraw the whole released base (the drive and any action released with it); the agent stops the
        // step it runs when it is no longer first, and the release below sends the new route.
        for s in std::mem::take(&mut r.mission.base) {
            self.drive_targets.remove(&(id.clone(), s.seq));
        }
        if self.map.node(from).is_some() {
            r.node = from;
        }
        if let Some(first) = r.plan.first_mut() {
            first.drive_released = false;
            first.action_released = false;
        }
        out.robots.insert(id.clone());
        self.release(now, id, out, true);
        let rerouted = self.robots.get(id).is_some_and(|r| !r.mission.base.is_empty());
        out.other.push(Output::Alert {
            id: 0,
            robot: Some(id.clone()),
            message: if let Some(extra) = tried_again {
                let why = match extra {
                    Cleared::IdleMoved(n) => format!("{n} idle robot(s) standing there sent aside"),
                    Cleared::Longer(x) => format!("the way round is {:.0} min longer", (x / 60.0).ceil()),
                    Cleared::NoWayRound => "there is no way round".to_string(),
                    Cleared::FaceOff(other) => format!("robot {other} stood in its way and backs off aside"),
                    Cleared::Working(other) => {
                        format!("robot {other} works at a stop there and leaves when done")
                    }
                };
                format!("robot {id} blocked between {from} and {to}: {why}; sent the same way again")
            } else if rerouted {
                format!("robot {id} blocked between {from} and {to}: sidewalk closed for {minutes:.0} min, re-routed")
            } else {
                format!(
                    "robot {id} blocked between {from} and {to}: sidewalk closed for {minutes:.0} min, no other way yet"
                )
            },
        });
    }

    /// A robot other than `id` standing within [`IDLE_IN_WAY_M`] of it that could move (online, no fault, not
    /// paused, not charging) and whose first step is `doing`.
    fn standing_by(&self, id: &RobotId, doing: impl Fn(&Step) -> bool) -> Option<RobotId> {
        let here = self.robots.get(id)?.pos;
        self.robots
            .values()
            .filter(|r| &r.id != id && r.unavailable().is_none() && r.pos.distance_m(here) <= IDLE_IN_WAY_M)
            .find(|r| r.mission.base.first().is_some_and(&doing))
            .map(|r| r.id.clone())
    }

    /// Sends driving robot `id`, last at `at`, to a node aside (the nearest free one off `other`'s drive,
    /// reached without the directed edges in `avoid`), and on from there to its next stop, in place of its
    /// released steps. False, changing nothing, when it is not driving to a stop or has no such node.
    fn back_off(
        &mut self,
        now: Timestamp,
        id: &RobotId,
        at: NodeId,
        avoid: &[(NodeId, NodeId)],
        other: &RobotId,
        out: &mut Out,
    ) -> bool {
        let Some(r) = self.robots.get(id) else { return false };
        let Some(stop) = r.plan.first() else { return false };
        if !r.mission.base.first().is_some_and(|s| matches!(s.action, StepAction::Drive { .. })) {
            return false;
        }
        let (target, goal, profile) = ((stop.order.clone(), stop.kind), stop.node, self.profile(&r.model));
        let Some(aside) = self.aside_node(at, avoid, std::slice::from_ref(other)) else { return false };
        let (Some(out_leg), Some(on_leg)) =
            (self.map.route_avoiding(at, aside, profile, avoid), self.map.route(aside, goal, profile))
        else {
            return false;
        };
        if out_leg.nodes.len() < 2 {
            return false;
        }
        let aside_steps = self.drive_steps(&out_leg, profile.speed_mps, false);
        let on_steps =
            if on_leg.nodes.len() >= 2 { self.drive_steps(&on_leg, profile.speed_mps, true) } else { Vec::new() };
        let traffic = self.config.traffic.enabled;
        let r = self.robots.get_mut(id).expect("checked above");
        for s in std::mem::take(&mut r.mission.base) {
            self.drive_targets.remove(&(id.clone(), s.seq));
        }
        r.node = at;
        if let Some(first) = r.plan.first_mut() {
            // The drive to the stop is these steps; its action follows them as usual.
            first.drive_released = true;
            first.action_released = false;
        }
        let (n_aside, n) = (aside_steps.len(), aside_steps.len() + on_steps.len());
        self.aside_end.remove(id);
        for (k, action) in aside_steps.into_iter().chain(on_steps).enumerate() {
            let seq = r.mission.next_seq;
            r.mission.next_seq += 1;
            if traffic && k + 1 == n_aside && n > n_aside {
                // Claimed on its own, not with the drive on (which needs what it gave way for).
                self.aside_end.insert(id.clone(), seq);
            }
            if k + 1 == n {
                self.drive_targets.insert((id.clone(), seq), target.clone());
            }
            r.mission.base.push(Step { seq, released: !traffic, action });
        }
        self.traffic.withdraw(id);
        self.claimed_steps.remove(id);
        out.robots.insert(id.clone());
        self.release(now, id, out, true);
        if traffic {
            self.claim_ahead(now, id);
        }
        self.send_update(id, out);
        true
    }

    /// Seconds from `from` to robot `id`'s next planned stop on the map as it is now (closures included) without
    /// the directed edges in `avoid`, `None` when it has no stop or no way there.
    fn secs_to_next_stop(&self, id: &RobotId, from: NodeId, avoid: &[(NodeId, NodeId)]) -> Option<f64> {
        let r = self.robots.get(id)?;
        let stop = r.plan.first()?;
        let profile = self.profile(&r.model);
        if avoid.is_empty() {
            self.map.travel_secs(from, stop.node, profile)
        } else {
            self.map.route_avoiding(from, stop.node, profile, avoid).map(|route| route.duration_s)
        }
    }

    /// Takes back from robot `id` every order it has not started loading (they become pending and are planned
    /// again); orders aboard or being loaded stay, and operators are told.
    pub(super) fn unassign_unstarted(&mut self, now: Timestamp, id: &RobotId, why: &str, out: &mut Out) {
        let Some(r) = self.robots.get(id) else { return };
        // An order moves when its pickup is still in the plan and not yet released for loading.
        let movable: BTreeSet<OrderId> = r
            .plan
            .iter()
            .filter(|s| s.kind == StopKind::Pickup && !s.action_released)
            .map(|s| s.order.clone())
            .collect();
        let staying: BTreeSet<OrderId> =
            r.plan.iter().map(|s| s.order.clone()).filter(|o| !movable.contains(o)).collect();
        let r = self.robots.get_mut(id).expect("present");
        r.plan.retain(|s| !movable.contains(&s.order));
        for oid in &movable {
            if let Some(o) = self.orders.get_mut(oid)
                && o.transition(OrderStatus::Pending, now).is_ok()
            {
                o.eta_pickup = None;
                o.eta_dropoff = None;
                out.orders.insert(oid.clone());
            }
        }
        if !staying.is_empty() {
            let list: Vec<String> = staying.iter().map(ToString::to_string).collect();
            out.other.push(Output::Alert {
                id: 0,
                robot: Some(id.clone()),
                message: format!(
                    "robot {id} {why} with parcels aboard or being loaded ({}); those orders wait for it",
                    list.join(", ")
                ),
            });
        }
        if !movable.is_empty() {
            self.plans_version += 1;
            out.robots.insert(id.clone());
            self.release(now, id, out, true);
        }
    }
}
