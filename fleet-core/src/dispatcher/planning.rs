//! Planning phase: robots' plans as planner tasks, the cheapest feasible insertion of a new order over every
//! available robot (or the typed reason none can take it), installing a plan, and applying the proposals of the
//! background improver after checking them against the current state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::map::{MapGraph, Profile};
use crate::order::{DeliveryRequest, Place};
use crate::planner::improve::{PlanSnapshot, Proposal};
use crate::planner::insertion::{self, RobotPlan, Task, TravelTable};
use crate::robot::{PlanStop, Robot, RobotModel, StopKind};
use crate::{CoreError, NodeId, OrderId, Refusal, RobotId, Timestamp};

use super::*;

/// A refused order is offered a later deliver-by time in steps of this many seconds ...
pub(super) const OFFER_STEP_S: f64 = 300.0;
/// ... up to this many steps later (four hours).
pub(super) const OFFER_STEPS: u32 = 48;
/// Plans never leave more room than this stretch of the time to a drop-off ([`Dispatcher::plan_by`]).
pub const MAX_PLAN_STRETCH: f64 = 1.5;

impl Dispatcher {
    pub(super) fn profile(&self, model: &RobotModel) -> Profile {
        Profile { speed_mps: model.max_speed_mps, ..self.config.profile_base() }
    }

    /// The latest a plan may have a robot arrive for a hand-over due by `deliver_by`: the hand-over itself and
    /// the planning buffer earlier ([`Config::late_buffer_s`]).
    pub(super) fn arrive_by(&self, deliver_by: Timestamp) -> Timestamp {
        deliver_by.minus_secs(self.config.dropoff_service_s + self.config.late_buffer_s)
    }

    /// The latest arrival a plan made at `now` may give a drop-off due by `deliver_by`: [`Dispatcher::arrive_by`]
    /// brought forward so that the time from now to it, stretched as the fleet's deliveries have stretched
    /// (their ratio of actual to planned time at [`Config::plan_quantile`], at most [`MAX_PLAN_STRETCH`]),
    /// still ends by then. A drop-off planned an hour ahead needs more room than one planned five minutes ahead.
    pub(super) fn plan_by(&self, deliver_by: Timestamp, now: Timestamp) -> Timestamp {
        let by = self.arrive_by(deliver_by);
        let q = self.config.plan_quantile;
        if q <= 0.0 || by <= now {
            return by;
        }
        now.plus_secs(by.secs_since(now) / self.plan_stretch)
    }

    /// The stretch [`Dispatcher::plan_by`] allows for: the learned ratio of actual to planned time to
    /// hand-over at [`Config::plan_quantile`], within 1 and [`MAX_PLAN_STRETCH`].
    pub(super) fn stretch(&self) -> f64 {
        self.learned.promise_ratio(self.config.plan_quantile).clamp(1.0, MAX_PLAN_STRETCH)
    }

    pub(super) fn tasks_for(
        &self,
        id: &OrderId,
        req: &DeliveryRequest,
        pickup: Place,
        dropoff: Place,
        now: Timestamp,
    ) -> (Task, Task) {
        let p = Task {
            kind: StopKind::Pickup,
            order: id.clone(),
            node: pickup.node,
            not_before: req.ready_at.unwrap_or(now),
            deadline: None,
            compartments: req.parcel.compartments,
            grams: req.parcel.weight.0,
            service_s: self.config.pickup_service_s,
        };
        let d = Task {
            kind: StopKind::Dropoff,
            order: id.clone(),
            node: dropoff.node,
            not_before: Timestamp(0),
            deadline: Some(self.plan_by(req.deliver_by, now)),
            compartments: req.parcel.compartments,
            grams: req.parcel.weight.0,
            service_s: self.config.dropoff_service_s,
        };
        (p, d)
    }

    /// The planner's view of one planned stop; `None` when its order is unknown.
    pub(super) fn task_of(&self, stop: &PlanStop) -> Option<Task> {
        let o = self.orders.get(&stop.order)?;
        let (service_s, not_before, deadline) = match stop.kind {
            StopKind::Pickup => (self.config.pickup_service_s, o.ready_at(), None),
            // A drop-off already running late may stay as late as planned, but no later.
            StopKind::Dropoff => (
                self.config.dropoff_service_s,
                Timestamp(0),
                Some(
                    o.promise
                        .and_then(|p| p.plan_by)
                        .unwrap_or_else(|| self.arrive_by(o.request.deliver_by))
                        .max(o.eta_dropoff.unwrap_or_default()),
                ),
            ),
            StopKind::Return => (self.config.pickup_service_s, Timestamp(0), None),
        };
        Some(Task {
            kind: stop.kind,
            order: stop.order.clone(),
            node: stop.node,
            not_before,
            deadline,
            compartments: o.request.parcel.compartments,
            grams: o.request.parcel.weight.0,
            service_s,
        })
    }

    /// The planner's view of one robot.
    pub(super) fn robot_plan(&self, r: &Robot, now: Timestamp) -> RobotPlan {
        let mut views = self.views.borrow_mut();
        let fresh = views.get(&r.id).is_some_and(|v| v.stops == r.plan && v.on_board == r.on_board);
        if !fresh {
            views.insert(r.id.clone(), self.plan_view(r));
        }
        let view = &views[&r.id];
        #[cfg(debug_assertions)]
        {
            let built = self.plan_view(r);
            assert!(built.tasks == view.tasks && built.load == view.load, "the plan view of {} is stale", r.id);
        }
        let (comp, grams) = view.load;
        let tasks = view.tasks.clone();
        drop(views);
        RobotPlan {
            robot: r.id.clone(),
            model: r.model,
            profile: self.profile(&r.model),
            start_node: r.node,
            start_time: now,
            load_compartments: comp,
            load_grams: grams,
            locked: r.plan.iter().take_while(|s| s.locked()).count(),
            range_m: insertion::range_m(&r.model, r.battery_pct),
            shift_end: r.shift_end,
            tasks,
        }
    }

    pub(super) fn plan_view(&self, r: &Robot) -> PlanView {
        let tasks: Vec<Task> = r.plan.iter().filter_map(|s| self.task_of(s)).collect();
        debug_assert_eq!(tasks.len(), r.plan.len(), "every planned stop's order exists");
        let (mut comp, mut grams) = (0u8, 0u32);
        for id in &r.on_board {
            if let Some(o) = self.orders.get(id) {
                comp = comp.saturating_add(o.request.parcel.compartments);
                grams = grams.saturating_add(o.request.parcel.weight.0);
            }
        }
        PlanView { stops: r.plan.clone(), on_board: r.on_board.clone(), tasks, load: (comp, grams) }
    }

    /// Increases whenever a plan or the set of available robots changes.
    pub fn plans_version(&self) -> u64 {
        self.plans_version
    }

    /// The plans of every available robot, for an improver to work on away from the core.
    pub fn plan_snapshot(&self, now: Timestamp) -> PlanSnapshot {
        PlanSnapshot {
            map: Arc::clone(&self.map),
            taken_at: now,
            plans: self.robots.values().filter(|r| available(r)).map(|r| self.robot_plan(r, now)).collect(),
            travel_factor: self.table.factor(),
        }
    }

    /// Checks a proposal against the plans as they are now and applies it whole, or refuses it whole. Stops
    /// finished since the snapshot are dropped from it; anything else that changed makes it stale.
    pub(super) fn apply_proposal(&mut self, now: Timestamp, p: Proposal, out: &mut Out) -> Result<Reply, CoreError> {
        type Key = (OrderId, StopKind);
        let stale = |why: String| CoreError::precondition(format!("proposal is stale: {why}"));
        let named: BTreeSet<&RobotId> = p.plans.iter().map(|pp| &pp.robot).collect();
        if named.len() != p.plans.len() {
            return Err(CoreError::invalid("a proposal names a robot twice"));
        }
        // The stops and parcels of the named robots in full; of the rest of the fleet only the stops of orders
        // the proposal mentions (a proposal names a few robots of a fleet that may have thousands).
        let mentioned: BTreeSet<&OrderId> = p.plans.iter().flat_map(|pp| pp.stops.iter().map(|(o, _)| o)).collect();
        let mut owner: BTreeMap<Key, (RobotId, PlanStop)> = BTreeMap::new();
        let mut holder: BTreeMap<&OrderId, &RobotId> = BTreeMap::new();
        let mut elsewhere: BTreeMap<Key, &RobotId> = BTreeMap::new();
        for r in self.robots.values() {
            if named.contains(&r.id) {
                for s in &r.plan {
                    owner.insert((s.order.clone(), s.kind), (r.id.clone(), s.clone()));
                }
                holder.extend(r.on_board.iter().map(|o| (o, &r.id)));
            } else {
                for s in r.plan.iter().filter(|s| mentioned.contains(&s.order)) {
                    elsewhere.insert((s.order.clone(), s.kind), &r.id);
                }
            }
        }
        if let Some(((order, _), robot)) = elsewhere
            .iter()
            .find(|(k, _)| p.plans.iter().any(|pp| pp.stops.iter().any(|(o, kind)| o == &k.0 && *kind == k.1)))
        {
            return Err(stale(format!("order {order} is now planned on robot {robot}")));
        }
        let mut seen: BTreeSet<Key> = BTreeSet::new();
        let mut installs: Vec<(RobotId, Vec<PlanStop>)> = Vec::new();
        for pp in &p.plans {
            let r = self.robots.get(&pp.robot).ok_or_else(|| stale(format!("robot {} is gone", pp.robot)))?;
            if !available(r) {
                return Err(stale(format!("robot {} is no longer available", r.id)));
            }
            let keys: Vec<Key> = pp.stops.iter().filter(|k| owner.contains_key(*k)).cloned().collect();
            let locked: Vec<Key> =
                r.plan.iter().take_while(|s| s.locked()).map(|s| (s.order.clone(), s.kind)).collect();
            if keys.len() < locked.len() || keys[..locked.len()] != locked[..] {
                return Err(stale(format!("robot {} has started other stops", r.id)));
            }
            let mut stops = Vec::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate() {
                if !seen.insert(k.clone()) {
                    return Err(CoreError::invalid(format!("order {} has a stop proposed twice", k.0)));
                }
                let (_, stop) = &owner[k];
                if k.1 == StopKind::Pickup {
                    if !keys[i + 1..].contains(&(k.0.clone(), StopKind::Dropoff)) {
                        return Err(CoreError::invalid(format!("order {} is picked up but never delivered", k.0)));
                    }
                } else {
                    // A parcel aboard stays on its robot; a drop-off follows its pickup on the same robot.
                    let pickup = (k.0.clone(), StopKind::Pickup);
                    let ok = match holder.get(&k.0) {
                        Some(h) => *h == &r.id,
                        None => {
                            !(owner.contains_key(&pickup) || elsewhere.contains_key(&pickup))
                                || keys[..i].contains(&pickup)
                        }
                    };
                    if !ok {
                        return Err(CoreError::invalid(format!(
                            "order {} would be delivered by a robot that does not carry it",
                            k.0
                        )));
                    }
                }
                stops.push(stop.clone());
            }
            installs.push((r.id.clone(), stops));
        }
        for k in owner.keys() {
            if !seen.contains(k) {
                return Err(stale(format!("order {} was planned since", k.0)));
            }
        }
        // Feasible now, and still a gain.
        let (mut before, mut after) = (0.0, 0.0);
        let mut timed = Vec::with_capacity(installs.len());
        for (id, stops) in installs {
            let plan = self.robot_plan(&self.robots[&id], now);
            before += insertion::schedule(&self.map, &mut self.table, &plan, &plan.tasks)
                .map_or(f64::INFINITY, |s| s.travel_s);
            let tasks: Vec<Task> = stops.iter().filter_map(|s| self.task_of(s)).collect();
            let sched = insertion::schedule(&self.map, &mut self.table, &plan, &tasks)
                .ok_or_else(|| stale(format!("the plan for robot {id} no longer meets its deadlines")))?;
            after += sched.travel_s;
            timed.push((id, stops, tasks, sched));
        }
        if after > before - 0.5 {
            return Err(stale(format!("it no longer saves travel ({before:.0} s now, {after:.0} s proposed)")));
        }
        for (id, stops, tasks, sched) in &timed {
            for s in stops.iter().filter(|s| s.kind == StopKind::Pickup) {
                if let Some(o) = self.orders.get_mut(&s.order)
                    && o.robot.as_ref() != Some(id)
                {
                    o.robot = Some(id.clone());
                    o.updated_at = now;
                    out.orders.insert(s.order.clone());
                }
            }
            self.install_plan(id, stops.clone(), tasks, &sched.arrivals, out);
        }
        for (id, ..) in &timed {
            self.release(now, id, out, true);
        }
        Ok(Reply::Done)
    }

    /// The cheapest insertion of an order over every available robot. Robots are tried in order of a lower
    /// bound on what the order would add to their plans, so only the few that could win are planned in full.
    pub(super) fn best_insertion(
        &mut self,
        now: Timestamp,
        pickup: &Task,
        dropoff: &Task,
    ) -> Result<insertion::Insertion, Refusal> {
        // The greedy baseline gives work only to robots with none planned.
        let batches = self.config.policy.batches();
        self.best_insertion_among(now, pickup, dropoff, |r| batches || r.plan.is_empty())
    }

    /// [`Self::best_insertion`] over the available robots for which `eligible` holds.
    pub(super) fn best_insertion_among(
        &mut self,
        now: Timestamp,
        pickup: &Task,
        dropoff: &Task,
        eligible: impl Fn(&Robot) -> bool,
    ) -> Result<insertion::Insertion, Refusal> {
        let robots: Vec<&Robot> = self.robots.values().filter(|r| available(r) && eligible(r)).collect();
        if robots.is_empty() {
            return Err(Refusal::NoRobotAvailable);
        }
        let biggest = robots.iter().map(|r| r.model.compartments).max().unwrap_or(0);
        if pickup.compartments > biggest {
            return Err(Refusal::ParcelTooLarge { compartments: pickup.compartments, largest: biggest });
        }
        // Every planned stop's order exists (orders are never removed), so these nodes are the plans' nodes.
        let nodes: Vec<NodeId> = robots.iter().flat_map(|r| r.plan.iter().map(|s| s.node)).collect();
        let mut table = std::mem::take(&mut self.table);
        // The plans' legs, kept per robot while its node, stops and profile stay the same.
        let mut flat_legs: Vec<f64> = Vec::with_capacity(nodes.len());
        // And the free compartments on each leg: one more per robot (after its last stop).
        let mut flat_room: Vec<u8> = Vec::with_capacity(nodes.len() + robots.len());
        let mut at = 0;
        for r in &robots {
            let (ns, profile) = (&nodes[at..at + r.plan.len()], self.profile(&r.model));
            match self.legs.get(&r.id) {
                Some(l) if l.start == r.node && l.profile == profile && l.nodes == ns => {
                    // Debug builds look every leg up again: every test checks that what is kept is current.
                    debug_assert_eq!(
                        l.secs,
                        insertion::plan_legs(&self.map, &mut table, r.node, ns, profile),
                        "the kept legs of robot {} are stale",
                        r.id
                    );
                    debug_assert_eq!(
                        l.room,
                        insertion::plan_room(&self.robot_plan(r, now)),
                        "the kept room of robot {} is stale",
                        r.id
                    );
                    flat_legs.extend(&l.secs);
                    flat_room.extend(&l.room);
                }
                _ => {
                    let secs = insertion::plan_legs(&self.map, &mut table, r.node, ns, profile);
                    let room = insertion::plan_room(&self.robot_plan(r, now));
                    flat_legs.extend(&secs);
                    flat_room.extend(&room);
                    self.legs.insert(r.id.clone(), Legs { start: r.node, nodes: ns.to_vec(), profile, secs, room });
                }
            }
            at += r.plan.len();
        }
        let mut outlines = Vec::with_capacity(robots.len());
        let mut at = 0;
        for (k, r) in robots.iter().enumerate() {
            outlines.push(insertion::Outline {
                start: r.node,
                nodes: &nodes[at..at + r.plan.len()],
                locked: r.plan.iter().take_while(|s| s.locked()).count(),
                profile: self.profile(&r.model),
                legs: Some(&flat_legs[at..at + r.plan.len()]),
                // Robot k's room starts k places further on: each robot has one more value than stops.
                room: Some(&flat_room[at + k..at + k + r.plan.len() + 1]),
            });
            at += r.plan.len();
        }
        let found = insertion::cheapest_insertion_bounded(
            &self.map,
            &mut table,
            &outlines,
            |k| self.robot_plan(robots[k], now),
            pickup,
            dropoff,
        );
        let answer = match found.best {
            Some(ins) => Ok(ins),
            None => {
                // What the reason needs of each robot, without building its plan again.
                let limits: Vec<(Profile, Option<Timestamp>, f64)> = robots
                    .iter()
                    .map(|r| (self.profile(&r.model), r.shift_end, insertion::range_m(&r.model, r.battery_pct)))
                    .collect();
                Err(Self::why_not(&self.map, &mut table, now, &limits, pickup, dropoff))
            }
        };
        self.table = table;
        answer
    }

    /// The earliest deliver-by time, in [`OFFER_STEP_S`] steps after `deliver_by` and at most [`OFFER_STEPS`] of
    /// them, that some robot can meet for the order of `pickup` and `dropoff`; `None` when none within that.
    /// Feasibility only grows with the deadline, so a binary search over the steps finds it.
    pub(super) fn earliest_offer(
        &mut self,
        now: Timestamp,
        pickup: &Task,
        dropoff: &Task,
        deliver_by: Timestamp,
    ) -> Option<Timestamp> {
        let at = |k: u32| deliver_by.plus_secs(f64::from(k) * OFFER_STEP_S);
        let fits = |d: &mut Self, k: u32| {
            let late = Task { deadline: Some(d.plan_by(at(k), now)), ..dropoff.clone() };
            d.best_insertion(now, pickup, &late).is_ok()
        };
        if !fits(self, OFFER_STEPS) {
            return None;
        }
        let (mut lo, mut hi) = (0, OFFER_STEPS);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(self, mid) { hi = mid } else { lo = mid }
        }
        Some(at(hi))
    }

    /// Why no robot can take an order: the trip itself is too long for the deadline, no battery has the
    /// range, or the fleet is busy.
    pub(super) fn why_not(
        map: &MapGraph,
        table: &mut TravelTable,
        now: Timestamp,
        robots: &[(Profile, Option<Timestamp>, f64)],
        pickup: &Task,
        dropoff: &Task,
    ) -> Refusal {
        let Some(&(profile, ..)) = robots.first() else {
            return Refusal::NoRobotAvailable;
        };
        let Some(trip_s) = table.secs(map, pickup.node, dropoff.node, profile) else {
            return Refusal::Unreachable;
        };
        let ready = pickup.not_before.max(now);
        let earliest = ready.plus_secs(pickup.service_s + trip_s);
        if let Some(deadline) = dropoff.deadline
            && earliest > deadline
        {
            return Refusal::DeadlineTooSoon {
                trip_min: (trip_s / 60.0).round() as u32,
                late_min: (earliest.secs_since(deadline) / 60.0).round().max(1.0) as u32,
                earliest: None,
            };
        }
        let done = earliest.plus_secs(dropoff.service_s);
        if robots.iter().all(|(_, shift_end, _)| shift_end.is_some_and(|end| end < done)) {
            return Refusal::ShiftEnds;
        }
        let trip_m = trip_s * profile.speed_mps;
        if robots.iter().all(|(.., range_m)| *range_m < trip_m) {
            return Refusal::BatteryRange { trip_m: trip_m.round() as u32 };
        }
        Refusal::FleetBusy { robots: robots.len() as u32, earliest: None }
    }

    /// Installs a robot's new task list, keeping the release flags of stops it already had.
    pub(super) fn apply_insertion(&mut self, now: Timestamp, ins: insertion::Insertion, out: &mut Out) {
        let Some(r) = self.robots.get(&ins.robot) else {
            return;
        };
        let stops: Vec<PlanStop> = ins
            .tasks
            .iter()
            .map(|t| {
                r.plan.iter().find(|s| s.order == t.order && s.kind == t.kind).cloned().unwrap_or(PlanStop {
                    kind: t.kind,
                    order: t.order.clone(),
                    node: t.node,
                    drive_released: false,
                    action_released: false,
                })
            })
            .collect();
        self.install_plan(&ins.robot, stops, &ins.tasks, &ins.schedule.arrivals, out);
        self.release(now, &ins.robot, out, true);
    }

    /// Sets a robot's plan and the ETAs of its orders from the planned arrivals (one per task).
    pub(super) fn install_plan(
        &mut self,
        robot: &RobotId,
        stops: Vec<PlanStop>,
        tasks: &[Task],
        arrivals: &[Timestamp],
        out: &mut Out,
    ) {
        let Some(r) = self.robots.get_mut(robot) else {
            return;
        };
        r.plan = stops;
        self.plans_version += 1;
        // The ETAs below feed the robot's tasks.
        self.views.get_mut().remove(robot);
        for (t, at) in tasks.iter().zip(arrivals) {
            if let Some(o) = self.orders.get_mut(&t.order) {
                let changed = match t.kind {
                    StopKind::Pickup => {
                        let eta = Some((*at).max(t.not_before));
                        std::mem::replace(&mut o.eta_pickup, eta) != eta
                    }
                    StopKind::Dropoff => o.eta_dropoff.replace(*at) != Some(*at),
                    StopKind::Return => false,
                };
                if changed {
                    out.orders.insert(t.order.clone());
                }
            }
        }
        out.robots.insert(robot.clone());
    }
}
