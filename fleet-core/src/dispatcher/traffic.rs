//! Traffic phase: a route is released only up to the next narrow way, crossing or stop spot the robot has not
//! been granted ([`crate::traffic`]). A drive is split into steps at those places; the steps after the first
//! are sent unreleased (the robot sees them as its horizon) and released as their resources are granted. The
//! robot claims them when it comes within [`TrafficConfig::claim_ahead_m`]; what it has passed is freed from
//! its reports. Deadlocks (cycles of robots that stand waiting) and long waits are resolved by re-routing a
//! robot around what it waits for.
//!
//! What a robot holds is derived from its released steps and its reported position, so a restarted
//! dispatcher rebuilds the table from its records; claims are remade on the next tick.

use std::collections::{BTreeMap, BTreeSet};

use crate::map::Route;
use crate::map::osm::default_width_m;
use crate::mission::{Step, StepAction, ToRobot};
use crate::robot::Robot;
use crate::traffic::{Hold, Resource, TrafficConfig};
use crate::{RobotId, Timestamp};

use super::release::drives_end;
use super::*;

/// An idle robot standing this close to one that reports its way blocked is taken to be what blocks it.
pub(super) const IDLE_IN_WAY_M: f64 = 4.0;

impl Dispatcher {
    fn tcfg(&self) -> &TrafficConfig {
        &self.config.traffic
    }

    /// The drive steps for `route`: split where the speed cap changes (each part at its zone's limit) and, with
    /// traffic management on, where the route enters a narrow way or crossing and, when `to_spot`,
    /// [`TrafficConfig::spot_approach_m`] short of its end.
    pub(super) fn drive_steps(&self, route: &Route, speed_mps: f64, to_spot: bool) -> Vec<StepAction> {
        let nodes = &route.nodes;
        let step = |a: usize, b: usize, cum: &[f64], speed_mps: f64| StepAction::Drive {
            nodes: nodes[a..=b].to_vec(),
            path: self.map.geometry(&nodes[a..=b]),
            length_m: cum[b] - cum[a],
            speed_mps,
            corridor_m: nodes[a..=b]
                .windows(2)
                .map(|w| self.map.edge(w[0], w[1]).map_or(default_width_m("footway") as f32, |e| e.width_m) / 2.0)
                .collect(),
        };
        let mut cum = vec![0.0; nodes.len()];
        for k in 1..nodes.len() {
            cum[k] = cum[k - 1] + self.map.edge(nodes[k - 1], nodes[k]).map_or(0.0, |e| e.length_m);
        }
        let last = nodes.len() - 1;
        // Each edge's speed cap (a speed-limited zone); a drive is split where it changes, each part at its cap.
        let cap: Vec<f64> = nodes
            .windows(2)
            .map(|w| self.map.edge(w[0], w[1]).map_or(f64::INFINITY, |e| f64::from(e.max_mps)))
            .collect();
        let mut bounds: BTreeSet<usize> = (1..cap.len()).filter(|&k| cap[k] != cap[k - 1]).collect();
        bounds.insert(0);
        let stretches = if self.tcfg().enabled { self.layout.stretches(nodes) } else { Vec::new() };
        bounds.extend(stretches.iter().map(|s| s.enter));
        if to_spot && self.tcfg().enabled {
            let total = cum[last];
            let mut at = (0..last).rev().find(|&i| total - cum[i] >= self.tcfg().spot_approach_m).unwrap_or(0);
            // Never wait inside a narrow way or on a crossing: wait before it.
            if let Some(s) = stretches.iter().find(|s| s.enter < at && at < s.exit) {
                at = s.enter;
            }
            bounds.insert(at);
        }
        bounds.remove(&last);
        let bounds: Vec<usize> = bounds.into_iter().collect();
        bounds
            .iter()
            .enumerate()
            .map(|(k, &a)| {
                let b = bounds.get(k + 1).copied().unwrap_or(last);
                let limit = cap[a..b].iter().copied().fold(speed_mps, f64::min);
                step(a, b, &cum, limit)
            })
            .collect()
    }

    /// What a drive step must hold before it is released: the narrow way or crossing it starts on, and the
    /// stop spot when it is the last drive to a stop, or the depot's chargers when a charge follows it.
    fn needs(&self, robot: &RobotId, step: &Step) -> Vec<Hold> {
        let StepAction::Drive { nodes, .. } = &step.action else {
            return Vec::new();
        };
        let mut v = Vec::new();
        if let [a, b, ..] = nodes[..]
            && let Some(r) = self.layout.resource(a, b)
        {
            v.push(Hold { resource: r, entry: a });
        }
        if let (Some(&first), Some(&end)) = (nodes.first(), nodes.last()) {
            if self.drive_targets.contains_key(&(robot.clone(), step.seq)) {
                v.push(Hold { resource: self.layout.spot(end), entry: first });
            } else if let Some(r) = self.robots.get(robot)
                && let Some(k) = r.mission.base.iter().position(|s| s.seq == step.seq)
                && charge_follows(&r.mission.base, k)
            {
                v.push(Hold { resource: self.layout.charger(end), entry: first });
            }
        }
        v
    }

    /// What robot `r` holds by what it was released and where it reports itself: the narrow ways and crossings
    /// of its released drives it has not yet passed, the spot it drives to or works at.
    pub(super) fn holds_of(&self, r: &Robot) -> Vec<Hold> {
        let mut v: Vec<Hold> = Vec::new();
        // Where the step being looked at starts: where the robot stands, then each drive's end.
        let mut here = r.node;
        for (k, s) in r.mission.base.iter().enumerate() {
            if !s.released {
                break;
            }
            match &s.action {
                StepAction::Drive { nodes, .. } => {
                    let at = if k == 0 { nodes.iter().position(|&n| n == r.node).unwrap_or(0) } else { 0 };
                    for st in self.layout.stretches(nodes) {
                        if st.exit > at {
                            v.push(Hold { resource: st.resource, entry: nodes[st.enter] });
                        }
                    }
                    if let (Some(&first), Some(&end)) = (nodes.first(), nodes.last()) {
                        if self.drive_targets.contains_key(&(r.id.clone(), s.seq)) {
                            v.push(Hold { resource: self.layout.spot(end), entry: first });
                        } else if charge_follows(&r.mission.base, k) {
                            v.push(Hold { resource: self.layout.charger(end), entry: first });
                        }
                        here = end;
                    }
                }
                StepAction::Pickup { order, .. }
                | StepAction::Dropoff { order, .. }
                | StepAction::Return { order, .. } => {
                    if let Some(p) = r.plan.iter().find(|p| &p.order == order && p.action_released) {
                        v.push(Hold { resource: self.layout.spot(p.node), entry: p.node });
                    }
                }
                StepAction::Charge { .. } => v.push(Hold { resource: self.layout.charger(here), entry: here }),
            }
        }
        // Standing inside a narrow way (at a stop there, or stopped for good): it blocks it.
        if let Some(res) = self.layout.inside(&self.map, r.node)
            && !v.iter().any(|h| h.resource == res)
        {
            v.push(Hold { resource: res, entry: r.node });
        }
        // Not driving (idle, serving, waiting for a parcel or for its turn): it stands on the spot of its node.
        if let Some(h) = self.standing(r)
            && !v.contains(&h)
        {
            v.push(h);
        }
        v
    }

    /// The spot robot `r` stands on when it is not driving a released drive, or the depot's chargers when it
    /// charges there: it occupies that place whatever the table says, so it is taken even past its capacity.
    fn standing(&self, r: &Robot) -> Option<Hold> {
        // A robot away past the offline limit has given up what it held; where it is, nobody knows.
        if !r.online && self.offline_handled.contains(&r.id) {
            return None;
        }
        let head = r.mission.base.first().filter(|s| s.released).map(|s| &s.action);
        match head {
            Some(StepAction::Drive { .. }) => None,
            Some(StepAction::Charge { .. }) => Some(Hold { resource: self.layout.charger(r.node), entry: r.node }),
            _ => (!r.charging).then_some(Hold { resource: self.layout.spot(r.node), entry: r.node }),
        }
    }

    /// Frees what `id` no longer holds (passed, finished, withdrawn), and takes the spot it stands on; true
    /// when anything was freed.
    pub(super) fn settle_traffic(&mut self, id: &RobotId) -> bool {
        let derived = self.robots.get(id).map(|r| self.holds_of(r)).unwrap_or_default();
        let keep: BTreeSet<Resource> = derived.iter().map(|h| h.resource).collect();
        if let Some(h) = self.robots.get(id).and_then(|r| self.standing(r)) {
            self.traffic.restore(id, vec![h]);
        }
        let gone: Vec<Resource> =
            self.traffic.holds(id).iter().map(|h| h.resource).filter(|r| !keep.contains(r)).collect();
        for r in &gone {
            self.traffic.free(id, *r);
        }
        !gone.is_empty()
    }

    /// Rebuilds the table after a restart from the robots' released steps.
    pub(super) fn restore_traffic(&mut self) {
        let all: Vec<(RobotId, Vec<Hold>)> = self.robots.values().map(|r| (r.id.clone(), self.holds_of(r))).collect();
        for (id, holds) in all {
            self.traffic.restore(&id, holds);
        }
    }

    /// Route distance from where robot `r` stands to the start of base step `u`, or some distance past `beyond`
    /// when it is farther than that.
    fn distance_to(&self, r: &Robot, u: usize, beyond: f64) -> f64 {
        // Summed edge by edge, and given up once past `beyond`: most robots are far from their next unreleased
        // step, and this runs for every one of them every tick.
        let mut sum = 0.0;
        for (k, s) in r.mission.base[..u].iter().enumerate() {
            match &s.action {
                StepAction::Drive { nodes, length_m, .. } if k == 0 => match nodes.iter().position(|&n| n == r.node) {
                    Some(i) => {
                        for e in nodes[i..].windows(2).filter_map(|w| self.map.edge(w[0], w[1])) {
                            sum += e.length_m;
                            if sum > beyond {
                                return sum;
                            }
                        }
                    }
                    None => sum += *length_m,
                },
                StepAction::Drive { length_m, .. } => sum += *length_m,
                _ => {}
            }
            if sum > beyond {
                return sum;
            }
        }
        sum
    }

    /// Claims the resources of robot `id`'s next unreleased steps once it is close enough, and releases the
    /// steps when granted. Returns whether any step was released (the caller sends the update).
    pub(super) fn claim_ahead(&mut self, now: Timestamp, id: &RobotId) -> bool {
        let Some(r) = self.robots.get(id) else {
            return false;
        };
        let first = r.mission.base.iter().position(|s| !s.released);
        let (Some(u), true) = (first, r.online && r.fault.is_none() && !r.paused) else {
            self.traffic.withdraw(id);
            self.claimed_steps.remove(id);
            return false;
        };
        let ahead_m = self.tcfg().claim_ahead_m;
        if self.distance_to(r, u, ahead_m) > ahead_m {
            self.traffic.withdraw(id);
            self.claimed_steps.remove(id);
            return false;
        }
        // The group: this step, and the next ones while the wide way between two resources is short.
        let mut seqs = Vec::new();
        let mut items = Vec::new();
        let aside_end = self.aside_end.get(id).copied();
        for s in &r.mission.base[u..] {
            let StepAction::Drive { nodes, .. } = &s.action else { break };
            seqs.push(s.seq);
            items.extend(self.needs(id, s));
            if aside_end == Some(s.seq) {
                break;
            }
            let gap = match self.layout.stretches(nodes).first() {
                Some(st) if st.enter == 0 => {
                    nodes[st.exit..].windows(2).filter_map(|w| self.map.edge(w[0], w[1])).map(|e| e.length_m).sum()
                }
                _ => f64::INFINITY,
            };
            if gap >= self.tcfg().group_gap_m {
                break;
            }
        }
        let cfg = *self.tcfg();
        if items.is_empty() || self.traffic.claim(&cfg, id, items, now) {
            self.claimed_steps.remove(id);
            if aside_end.is_some_and(|end| seqs.contains(&end)) {
                self.aside_end.remove(id);
            }
            self.release_steps(id, &seqs)
        } else {
            self.claimed_steps.insert(id.clone(), seqs);
            false
        }
    }

    /// Marks base steps `seqs` of robot `id` released; true when any changed.
    fn release_steps(&mut self, id: &RobotId, seqs: &[u32]) -> bool {
        let Some(r) = self.robots.get_mut(id) else {
            return false;
        };
        let mut changed = false;
        for s in r.mission.base.iter_mut().filter(|s| seqs.contains(&s.seq) && !s.released) {
            s.released = true;
            changed = true;
        }
        changed
    }

    /// Sends robot `id` its current update after a change to its base.
    pub(super) fn send_update(&mut self, id: &RobotId, out: &mut Out) {
        let Some(r) = self.robots.get_mut(id) else {
            return;
        };
        r.mission.update_id += 1;
        out.robots.insert(id.clone());
        let update = self.build_update(&self.robots[id]);
        out.other.push(Output::Send { robot: id.clone(), msg: ToRobot::Mission(update) });
        out.other.push(Output::RobotChanged(Box::new(self.robots[id].clone())));
    }

    /// After any input: frees what the touched robots passed and releases the steps of claims that can now be
    /// granted.
    pub(super) fn traffic_after(&mut self, now: Timestamp, touched: &BTreeSet<RobotId>, out: &mut Out) {
        if !self.tcfg().enabled {
            return;
        }
        let mut freed = false;
        for id in touched {
            freed |= self.settle_traffic(id);
        }
        if freed {
            self.grant(now, out);
        }
        // A robot that moved on or finished a step may now be close enough to claim what comes next.
        for id in touched {
            if self.robots.get(id).is_some_and(|r| r.mission.base.iter().any(|s| !s.released))
                && self.claim_ahead(now, id)
            {
                self.send_update(id, out);
            }
        }
    }

    /// Grants waiting claims that fit now and releases their steps.
    fn grant(&mut self, now: Timestamp, out: &mut Out) {
        let cfg = *self.tcfg();
        for id in self.traffic.grant_waiting(&cfg, now) {
            let seqs = self.claimed_steps.remove(&id).unwrap_or_default();
            if self.release_steps(&id, &seqs) {
                self.send_update(&id, out);
            }
        }
    }

    /// The traffic phase of a tick: claims for robots coming up to a resource, grants, then deadlocks and long
    /// waits.
    pub(super) fn traffic_tick(&mut self, now: Timestamp, out: &mut Out) {
        if !self.tcfg().enabled {
            return;
        }
        let ids: Vec<RobotId> =
            self.robots.values().filter(|r| r.mission.base.iter().any(|s| !s.released)).map(|r| r.id.clone()).collect();
        for id in &ids {
            if self.claim_ahead(now, id) {
                self.send_update(id, out);
            }
        }
        // What robots passed is freed as they report it (see `traffic_after`); here only what waits is granted.
        self.grant(now, out);
        let cfg = *self.tcfg();
        // A robot that stands waiting (its next step unreleased).
        let stalled = |d: &Self, id: &RobotId| {
            d.robots.get(id).is_some_and(|r| r.mission.base.first().is_some_and(|s| !s.released))
        };
        self.make_room(now, out);
        let traffic = &self.traffic;
        self.deadlock_alerted.retain(|id| traffic.claim_of(id).is_some());
        for cycle in self.traffic.deadlocks(&cfg) {
            if !cycle.iter().all(|id| stalled(self, id)) {
                continue;
            }
            // The latest claim on the cycle gives way.
            let Some(victim) = cycle.iter().max_by_key(|id| self.traffic.claim_of(id).map_or(0, |c| c.turn)).cloned()
            else {
                continue;
            };
            let mut waits = self.traffic.blocking(&cfg, &victim);
            // A robot that gave way shortly before is routed around what it avoided then too: with two ways
            // each blocked by the same robot it would otherwise swing from one to the other every tick. Where
            // no way avoids them all, it backs off.
            if let Some((at, before)) = self.deadlock_avoided.get(&victim)
                && now.secs_since(*at) < cfg.reroute_after_s
            {
                for r in before {
                    if !waits.contains(r) {
                        waits.push(*r);
                    }
                }
            }
            self.deadlock_avoided.insert(victim.clone(), (now, waits.clone()));
            let others: Vec<RobotId> = cycle.iter().filter(|x| **x != victim).cloned().collect();
            if self.reroute_around(now, &victim, &waits, &others, out) {
                self.traffic.stats.deadlocks += 1;
                out.other.push(Output::Alert {
                    id: 0,
                    robot: Some(victim.clone()),
                    message: format!(
                        "deadlock between robots {}: robot {victim} re-routed (or backed off) around {}",
                        cycle.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                        waits.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    ),
                });
            } else if self.deadlock_alerted.insert(victim.clone()) {
                self.traffic.stats.deadlocks += 1;
                out.other.push(Output::Alert {
                    id: 0,
                    robot: Some(victim.clone()),
                    message: format!(
                        "deadlock between robots {} with no way round for robot {victim}",
                        cycle.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        let long: Vec<(RobotId, Vec<Resource>)> = self
            .traffic
            .waiting()
            .filter(|(id, c)| now.secs_since(c.since) >= cfg.reroute_after_s && stalled(self, id))
            .map(|(id, _)| (id.clone(), self.traffic.blocking(&cfg, id)))
            .collect();
        for (id, waits) in long {
            // What it waits for is held by a robot that cannot move off it (paused, faulted, offline): no
            // re-route helps at a spot, so operators are told once, naming the robot in the way.
            let mut stuck: Vec<String> = Vec::new();
            for res in &waits {
                for h in self.traffic.holders(*res).filter(|h| **h != id) {
                    if let Some(why) = self.robots.get(h).and_then(Robot::unavailable) {
                        stuck.push(format!("robot {h} ({why})"));
                    }
                }
            }
            if !stuck.is_empty() && self.deadlock_alerted.insert(id.clone()) {
                let waited = self.traffic.claim_of(&id).map_or(0.0, |c| now.secs_since(c.since));
                out.other.push(Output::Alert {
                    id: 0,
                    robot: Some(id.clone()),
                    message: format!(
                        "robot {id} has waited {waited:.0} s for {} held by {}, which cannot move off it: resume or \
                         move it",
                        waits.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                        stuck.join(", ")
                    ),
                });
            }
            if self.reroute_tried.get(&id).is_some_and(|t| now.secs_since(*t) < cfg.reroute_after_s) {
                continue;
            }
            self.reroute_tried.insert(id.clone(), now);
            self.reroute_around(now, &id, &waits, &[], out);
        }
    }

    /// Idle robots parked on a spot another robot waits for drive off to a free node nearby.
    fn make_room(&mut self, now: Timestamp, out: &mut Out) {
        let wanted: BTreeSet<NodeId> = self
            .traffic
            .waiting()
            .flat_map(|(_, c)| c.items.iter())
            .filter_map(|h| match h.resource {
                Resource::Spot(n) => Some(n),
                _ => None,
            })
            .collect();
        for n in wanted {
            let idle: Vec<RobotId> = self
                .traffic
                .holders(Resource::Spot(n))
                .filter(|id| {
                    self.robots.get(*id).is_some_and(|r| {
                        available(r)
                            && r.plan.is_empty()
                            && r.mission.base.is_empty()
                            && self.layout.spot(r.node) == Resource::Spot(n)
                    })
                })
                .cloned()
                .collect();
            for id in idle {
                self.move_aside(now, &id, out);
            }
        }
    }

    /// Idle robots standing within [`IDLE_IN_WAY_M`] of robot `id` (which reports its way blocked) drive off to
    /// the nearest free node at least [`TrafficConfig::spot_approach_m`] away that is not on `id`'s drive. A
    /// robot with nothing to do must not stand in another's way: on a sidewalk it is what blocks it most
    /// often. Returns how many were sent.
    pub(super) fn clear_idle_near(&mut self, now: Timestamp, id: &RobotId, out: &mut Out) -> usize {
        let Some((here, at)) = self.robots.get(id).map(|r| (r.pos, r.node)) else { return 0 };
        // They leave without passing the node the blocked robot last passed: it stands about there.
        let into: Vec<(NodeId, NodeId)> = self.map.neighbours(at).into_iter().map(|n| (n, at)).collect();
        let idle: Vec<(RobotId, NodeId)> = self
            .robots
            .values()
            .filter(|r| {
                &r.id != id
                    && available(r)
                    && r.plan.is_empty()
                    && r.mission.base.is_empty()
                    && r.pos.distance_m(here) <= IDLE_IN_WAY_M
            })
            .map(|r| (r.id.clone(), r.node))
            .collect();
        let mut sent = 0;
        for (other, node) in idle {
            let avoid: &[(NodeId, NodeId)] = if node == at { &[] } else { &into };
            let Some(goal) = self.aside_node(node, avoid, std::slice::from_ref(id)) else { continue };
            if self.drive_idle_avoiding(now, &other, goal, avoid, out) {
                self.traffic.stats.moved_aside += 1;
                sent += 1;
            }
        }
        sent
    }

    /// Sends idle robot `id` to the nearest node at least [`TrafficConfig::spot_approach_m`] away (by way) that
    /// is not a spot anyone holds or waits for, nor inside a narrow way.
    fn move_aside(&mut self, now: Timestamp, id: &RobotId, out: &mut Out) {
        let Some(r) = self.robots.get(id) else { return };
        let start = r.node;
        let min_m = self.tcfg().spot_approach_m;
        let Some(goal) = self.free_node_near(start, min_m, &BTreeSet::new()) else { return };
        if self.drive_idle_to(now, id, goal, out) {
            self.traffic.stats.moved_aside += 1;
        }
    }

    /// Replaces robot `id`'s unreleased drive with a route that avoids the narrow ways and crossings in
    /// `avoid` (a spot cannot be avoided); where there is none and `back_off`, it first backs off to a free
    /// node nearby (off the others' way, not through what it avoids) and goes on from there once what it
    /// waited for has passed. True when a new route was sent.
    fn reroute_around(
        &mut self,
        now: Timestamp,
        id: &RobotId,
        avoid: &[Resource],
        back_off: &[RobotId],
        out: &mut Out,
    ) -> bool {
        let edges: Vec<(NodeId, NodeId)> = avoid
            .iter()
            .filter(|r| matches!(r, Resource::Narrow(_) | Resource::Crossing(_)))
            .flat_map(|r| self.layout.edges_of(*r))
            .flat_map(|(a, b)| [(a, b), (b, a)])
            .collect();
        let Some(r) = self.robots.get(id) else { return false };
        let Some(u) = r.mission.base.iter().position(|s| !s.released) else { return false };
        let from = drives_end(&r.mission.base[..u]).unwrap_or(r.node);
        // The unreleased steps lead to the plan's first stop, or to the depot when charging.
        let Some(to) = drives_end(&r.mission.base) else {
            return false;
        };
        let profile = self.profile(&r.model);
        let around = if edges.is_empty() { None } else { self.map.route_avoiding(from, to, profile, &edges) };
        let legs = match around {
            Some(route) => vec![route],
            None if !back_off.is_empty() => {
                let aside = self.aside_node(from, &edges, back_off);
                let Some(aside) = aside else { return false };
                match (self.map.route_avoiding(from, aside, profile, &edges), self.map.route(aside, to, profile)) {
                    (Some(a), Some(b)) => vec![a, b],
                    _ => return false,
                }
            }
            None => return false,
        };
        let target = r.mission.base[u..].iter().find_map(|s| self.drive_targets.get(&(id.clone(), s.seq)).cloned());
        // A drive to the depot's chargers waits for them short of it, like one to a stop.
        let to_charge = r.mission.base[u..].iter().any(|s| matches!(s.action, StepAction::Charge { .. }));
        let r = self.robots.get_mut(id).expect("checked above");
        let tail: Vec<Step> = r.mission.base.split_off(u);
        let (drives, rest): (Vec<Step>, Vec<Step>) =
            tail.into_iter().partition(|s| matches!(s.action, StepAction::Drive { .. }));
        for s in &drives {
            self.drive_targets.remove(&(id.clone(), s.seq));
        }
        let last_leg = legs.len() - 1;
        let backing_off = legs.len() > 1;
        let steps: Vec<(bool, StepAction)> = legs
            .iter()
            .enumerate()
            .filter(|(_, route)| route.nodes.len() >= 2)
            .flat_map(|(k, route)| {
                let to_stop = k == last_leg && (target.is_some() || to_charge);
                let steps = self.drive_steps(route, profile.speed_mps, to_stop);
                let n = steps.len();
                steps.into_iter().enumerate().map(move |(j, s)| (to_stop && j + 1 == n, s))
            })
            .collect();
        let aside_steps = if backing_off {
            legs.first().map_or(0, |route| self.drive_steps(route, profile.speed_mps, false).len())
        } else {
            0
        };
        self.aside_end.remove(id);
        let r = self.robots.get_mut(id).expect("checked above");
        for (k, (final_to_stop, action)) in steps.into_iter().enumerate() {
            let seq = r.mission.next_seq;
            if backing_off && k + 1 == aside_steps {
                self.aside_end.insert(id.clone(), seq);
            }
            r.mission.next_seq += 1;
            if final_to_stop && let Some(t) = &target {
                self.drive_targets.insert((id.clone(), seq), t.clone());
            }
            r.mission.base.push(Step { seq, released: false, action });
        }
        // What followed the drive (the stop's action) keeps its place after it, renumbered.
        for mut s in rest {
            s.seq = r.mission.next_seq;
            r.mission.next_seq += 1;
            r.mission.base.push(s);
        }
        self.traffic.withdraw(id);
        self.claimed_steps.remove(id);
        self.traffic.stats.reroutes += 1;
        self.claim_ahead(now, id);
        self.send_update(id, out);
        true
    }

    /// The nearest node at least [`TrafficConfig::spot_approach_m`] from `from` by way, reached without the
    /// edges in `avoid`, that is no robot's spot, not inside a narrow way, and not on the unreleased drives of
    /// `others` (so a robot that backs off there is out of their way).
    pub(super) fn aside_node(&self, from: NodeId, avoid: &[(NodeId, NodeId)], others: &[RobotId]) -> Option<NodeId> {
        let their_way: rustc_hash::FxHashSet<NodeId> = others
            .iter()
            .filter_map(|o| self.robots.get(o))
            .flat_map(|r| r.mission.base.iter())
            .flat_map(|s| match &s.action {
                StepAction::Drive { nodes, .. } => nodes.as_slice(),
                _ => &[],
            })
            .copied()
            .collect();
        let min_m = self.tcfg().spot_approach_m;
        self.nearest_by_way(from, min_m, 20.0 * min_m, avoid, |n| {
            !their_way.contains(&n)
                && self.traffic.holders(self.layout.spot(n)).next().is_none()
                && self.layout.inside(&self.map, n).is_none()
        })
    }

    /// The nearest node by way from `from`, between `min_m` and `max_m` away, reached without the directed
    /// edges in `avoid`, for which `fits` holds (Dijkstra on way lengths, to the millimetre).
    pub(super) fn nearest_by_way(
        &self,
        from: NodeId,
        min_m: f64,
        max_m: f64,
        avoid: &[(NodeId, NodeId)],
        fits: impl Fn(NodeId) -> bool,
    ) -> Option<NodeId> {
        let mut dist: BTreeMap<NodeId, f64> = BTreeMap::from([(from, 0.0)]);
        let mut heap = std::collections::BinaryHeap::new();
        heap.push(std::cmp::Reverse((0u64, from)));
        while let Some(std::cmp::Reverse((mm, n))) = heap.pop() {
            let d = mm as f64 / 1000.0;
            if d > dist.get(&n).copied().unwrap_or(f64::INFINITY) || d > max_m {
                continue;
            }
            if d >= min_m && fits(n) {
                return Some(n);
            }
            for m in self.map.neighbours(n) {
                if avoid.contains(&(n, m)) {
                    continue;
                }
                let Some(e) = self.map.edge(n, m) else { continue };
                let nd = d + e.length_m;
                if nd < dist.get(&m).copied().unwrap_or(f64::INFINITY) {
                    dist.insert(m, nd);
                    heap.push(std::cmp::Reverse(((nd * 1000.0) as u64, m)));
                }
            }
        }
        None
    }
}

/// Whether a charge follows step `k` of `base`: that step is the drive to the depot's chargers.
fn charge_follows(base: &[Step], k: usize) -> bool {
    base.get(k + 1).is_some_and(|s| matches!(s.action, StepAction::Charge { .. }))
}
