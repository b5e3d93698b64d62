//! Idle positioning: a robot with nothing to do waits near a shop, not where its last hand-over left it. The
//! idle robots are shared out over the shops in proportion to each shop's recent demand (orders placed and
//! refused in the last [`IdleConfig::demand_window_s`]); a robot already near a shop whose share is not yet
//! filled stays, the others drive to a free node near the shop nearest to them that still has room. Robots low
//! on battery are left alone: they are the charging phase's.
//!
//! Off by default: on the lunch scenario and the main job (seeds 1-5, physics on) it did not raise the share
//! on time (docs/benchmarks.md, "Idle positioning"); `[dispatch.idle] every_s = 60` in a scenario, or
//! `--idle-every-s 60` on the dispatcher, turns it on.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::mission::Step;
use crate::{LatLon, NodeId, RobotId, ShopId, Timestamp};

use super::*;

/// Tunables of idle positioning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdleConfig {
    /// How often idle robots are shared out again, seconds; 0 (the default) turns idle positioning off.
    pub every_s: f64,
    /// Demand counts the orders a shop placed (or had refused) within this long.
    pub demand_window_s: f64,
    /// A robot within this distance (straight line) of a shop counts as waiting at it.
    pub station_m: f64,
    /// A robot is moved only while its battery is at least this far above the charging threshold.
    pub battery_margin_pct: f64,
}

impl Default for IdleConfig {
    fn default() -> Self {
        Self { every_s: 0.0, demand_window_s: 3600.0, station_m: 150.0, battery_margin_pct: 10.0 }
    }
}

/// Splits `n` places over `weights` in proportion (largest remainders; ties to the earlier entry).
pub(super) fn apportion(n: usize, weights: &[f64]) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    if n == 0 || weights.is_empty() || total <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / total * n as f64).collect();
    let mut got: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    let short = n - got.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        got[i] += 1;
    }
    got
}

impl Dispatcher {
    /// How many drives idle positioning has sent since the dispatcher started.
    pub fn idle_moves(&self) -> u64 {
        self.idle_moves
    }

    /// Counts a placing (or a refused one) of `shop` at `now` as demand.
    pub(super) fn note_demand(&mut self, shop: &ShopId, now: Timestamp) {
        let window = self.config.idle.demand_window_s;
        let q = self.demand.entry(shop.clone()).or_default();
        q.push_back(now);
        trim_demand(q, now, window);
    }

    /// The tick phase: shares idle robots out over the shops by recent demand, at most once per
    /// [`IdleConfig::every_s`].
    pub(super) fn position_idle(&mut self, now: Timestamp, out: &mut Out) {
        let cfg = self.config.idle.clone();
        if cfg.every_s <= 0.0 || self.idle_positioned_at.is_some_and(|t| now.secs_since(t) < cfg.every_s) {
            return;
        }
        self.idle_positioned_at = Some(now);
        let mut shops: Vec<(ShopId, LatLon, NodeId, f64)> = Vec::new();
        for (id, q) in self.demand.iter_mut() {
            trim_demand(q, now, cfg.demand_window_s);
            if let Some(s) = self.shops.get(id)
                && !q.is_empty()
            {
                shops.push((id.clone(), s.place.pos, s.place.node, q.len() as f64));
            }
        }
        if shops.is_empty() {
            return;
        }
        let min_battery = self.config.charge_below_pct + cfg.battery_margin_pct;
        let idle: Vec<(RobotId, LatLon)> = self
            .robots
            .values()
            .filter(|r| available(r) && r.plan.is_empty() && r.mission.base.is_empty() && r.on_board.is_empty())
            .filter(|r| r.battery_pct >= min_battery && r.shift_end.is_none_or(|end| end > now))
            .map(|r| (r.id.clone(), r.pos))
            .collect();
        if idle.is_empty() {
            return;
        }
        let weights: Vec<f64> = shops.iter().map(|s| s.3).collect();
        let mut room = apportion(idle.len(), &weights);
        // Pairs of robot and shop by distance: a robot already at a shop with room stays; then the nearest
        // pairs go first.
        let mut pairs: Vec<(f64, usize, usize)> = Vec::with_capacity(idle.len() * shops.len());
        for (ri, (_, pos)) in idle.iter().enumerate() {
            for (si, s) in shops.iter().enumerate() {
                pairs.push((pos.distance_m(s.1), ri, si));
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut placed = vec![false; idle.len()];
        let mut moves: Vec<(usize, usize)> = Vec::new();
        for &(d, ri, si) in &pairs {
            if placed[ri] || room[si] == 0 {
                continue;
            }
            placed[ri] = true;
            room[si] -= 1;
            if d > cfg.station_m {
                moves.push((ri, si));
            }
        }
        if moves.is_empty() {
            return;
        }
        // Where robots stand or are bound for is not free to wait at.
        let mut taken: BTreeSet<NodeId> = BTreeSet::new();
        for r in self.robots.values() {
            taken.insert(r.node);
            if let Some(end) = r.mission.base.iter().rev().find_map(|s| match &s.action {
                StepAction::Drive { nodes, .. } => nodes.last().copied(),
                _ => None,
            }) {
                taken.insert(end);
            }
        }
        for (ri, si) in moves {
            let id = idle[ri].0.clone();
            let min_m = self.config.traffic.spot_approach_m;
            let Some(goal) = self.free_node_near(shops[si].2, min_m, &taken) else { continue };
            if self.drive_idle_to(now, &id, goal, out) {
                taken.insert(goal);
                self.idle_moves += 1;
            }
        }
    }

    /// Sends idle robot `id` along a route to `goal` (no stop at its end: it waits there for work). False when
    /// there is no route or it stands there already.
    pub(super) fn drive_idle_to(&mut self, now: Timestamp, id: &RobotId, goal: NodeId, out: &mut Out) -> bool {
        self.drive_idle_avoiding(now, id, goal, &[], out)
    }

    /// [`Self::drive_idle_to`] on a route that takes none of the directed edges in `avoid`.
    pub(super) fn drive_idle_avoiding(
        &mut self,
        now: Timestamp,
        id: &RobotId,
        goal: NodeId,
        avoid: &[(NodeId, NodeId)],
        out: &mut Out,
    ) -> bool {
        let Some(r) = self.robots.get(id) else { return false };
        let profile = self.profile(&r.model);
        let route = if avoid.is_empty() {
            self.map.route(r.node, goal, profile)
        } else {
            self.map.route_avoiding(r.node, goal, profile, avoid)
        };
        let Some(route) = route else { return false };
        if route.nodes.len() < 2 {
            return false;
        }
        let steps = self.drive_steps(&route, profile.speed_mps, false);
        let traffic = self.config.traffic.enabled;
        let r = self.robots.get_mut(id).expect("checked above");
        for action in steps {
            let seq = r.mission.next_seq;
            r.mission.next_seq += 1;
            // With traffic on, drives wait for their narrow ways and crossings like any other.
            r.mission.base.push(Step { seq, released: !traffic, action });
        }
        if traffic {
            self.claim_ahead(now, id);
        }
        self.send_update(id, out);
        true
    }

    /// The nearest node (by way) at least `min_m` from `start` that is not in `taken`, not a spot anyone holds
    /// or waits for, and not inside a narrow way; searched to ten times `min_m`.
    pub(super) fn free_node_near(&self, start: NodeId, min_m: f64, taken: &BTreeSet<NodeId>) -> Option<NodeId> {
        let busy = |n: NodeId| {
            let spot = self.layout.spot(n);
            taken.contains(&n)
                || self.traffic.holders(spot).next().is_some()
                || self.traffic.waiting().any(|(_, c)| c.items.iter().any(|h| h.resource == spot))
                || self.layout.inside(&self.map, n).is_some()
        };
        self.nearest_by_way(start, min_m, 10.0 * min_m, &[], |n| !busy(n))
    }
}

fn trim_demand(q: &mut VecDeque<Timestamp>, now: Timestamp, window_s: f64) {
    while q.front().is_some_and(|t| now.secs_since(*t) > window_s) {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::apportion;

    #[test]
    fn apportion_follows_the_weights_and_places_everyone() {
        assert_eq!(apportion(12, &[6.0, 3.0, 3.0]), vec![6, 3, 3]);
        assert_eq!(apportion(5, &[1.0, 1.0, 1.0]), vec![2, 2, 1]);
        assert_eq!(apportion(3, &[10.0, 0.0, 1.0]), vec![3, 0, 0]);
        assert_eq!(apportion(0, &[1.0]), vec![0]);
        assert_eq!(apportion(4, &[0.0, 0.0]), vec![0, 0]);
        for n in 0..30 {
            assert_eq!(apportion(n, &[5.0, 2.0, 1.0, 7.0]).iter().sum::<usize>(), n);
        }
    }
}
