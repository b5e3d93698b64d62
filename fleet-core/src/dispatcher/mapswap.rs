//! Replacing the map under a running dispatcher ([`Input::LoadMap`]). Node ids mean places only on the map they
//! were made on, so everything that names a node is moved over by its coordinates: shops, robots, open orders
//! and the stops of every plan. The swap is all or nothing:
//! - it is refused while a robot has steps released (a drive or an action under way cannot be taken back, and
//!   its nodes are the old map's), and when a shop, a robot or a parcel already aboard would have no place on
//!   the new map (nothing acknowledged may be stranded);
//! - an order not yet picked up whose drop-off (or route from its shop) the new map lacks is cancelled with
//!   that reason, and its shop sees it;
//! - closures name old nodes and are dropped (the reply counts them); what the fleet learned about time stays.

use std::sync::Arc;

use crate::map::MapGraph;
use crate::order::OrderStatus;
use crate::robot::StopKind;
use crate::traffic::{Layout, Traffic};
use crate::{CoreError, OrderId, RobotId};

use super::*;

/// A map to swap in, shared so that the input stays cheap to clone (equal when it is the same map).
#[derive(Debug, Clone)]
pub struct NewMap(pub Arc<MapGraph>);

impl PartialEq for NewMap {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What a map swap did.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSwap {
    /// The new map's fingerprint ([`MapGraph::fingerprint`]).
    pub fingerprint: String,
    pub nodes: usize,
    pub edges: usize,
    /// Open orders moved onto the new map.
    pub orders_moved: usize,
    /// Orders cancelled because the new map cannot serve them, with the reason each was given.
    pub cancelled: Vec<(OrderId, String)>,
    /// Sidewalk closures dropped (they named nodes of the old map).
    pub closures_dropped: usize,
}

impl Dispatcher {
    /// Prepares `map` for this configuration: speed-limited zones applied, and the contraction hierarchy for
    /// the default robot model built unless it has one. Slow on a city map: hosts call it before
    /// [`Input::LoadMap`], off the core's thread.
    pub fn prepare_map(map: &mut MapGraph, config: &Config) {
        // Zones are checked where a configuration comes in (a scenario file); one that fails is left out here.
        let zones: Vec<(geo::Polygon<f64>, f64)> =
            config.speed_zones.iter().filter_map(|z| z.checked().ok().map(|p| (p, z.max_mps))).collect();
        if !zones.is_empty() {
            map.limit_speed(&zones);
        }
        let profile = Profile { speed_mps: RobotModel::default().max_speed_mps, ..config.profile_base() };
        if map.hierarchy().is_none_or(|(_, p)| p != profile) {
            map.prepare(profile);
        }
    }

    pub(super) fn load_map(&mut self, now: Timestamp, new: NewMap, out: &mut Out) -> Result<Reply, CoreError> {
        let busy: Vec<String> = self
            .robots
            .values()
            .filter(|r| !r.mission.base.is_empty())
            .map(|r| format!("{} ({} steps)", r.id, r.mission.base.len()))
            .collect();
        if !busy.is_empty() {
            return Err(CoreError::FailedPrecondition(format!(
                "a map is swapped only while no robot has steps under way; {} do: {}. Try again when they \
                 have finished (pausing robots stops new work, not steps already released)",
                busy.len(),
                busy.join(", ")
            )));
        }
        let map = &new.0;
        let snap_m = self.config.max_snap_m;
        let far = |what: String, e: CoreError| CoreError::FailedPrecondition(format!("{what}: {e} on the new map"));
        // Everything is worked out first; nothing changes unless all of it fits.
        let mut shops = Vec::new();
        for s in self.shops.values() {
            let snap = map.snap(s.place.pos, snap_m).map_err(|e| far(format!("shop {}", s.id), e))?;
            shops.push((s.id.clone(), snap.node));
        }
        let mut robots = Vec::new();
        for r in self.robots.values() {
            let snap = map.snap(r.pos, snap_m).map_err(|e| far(format!("robot {}", r.id), e))?;
            robots.push((r.id.clone(), snap.node));
        }
        let profile = self.profile(&RobotModel::default());
        let mut moved = Vec::new();
        let mut cancelled: Vec<(OrderId, String)> = Vec::new();
        for o in self.orders.values().filter(|o| !o.status.is_terminal()) {
            let pickup = map.snap(o.pickup.pos, snap_m).map(|s| s.node);
            let dropoff = map.snap(o.dropoff.pos, snap_m).map(|s| s.node);
            let why = match (&pickup, &dropoff) {
                (Err(e), _) => Some(format!("the new map has no walkable way at its shop ({e})")),
                (_, Err(e)) => Some(format!("the new map has no walkable way at its drop-off ({e})")),
                (Ok(p), Ok(d)) if map.route(*p, *d, profile).is_none() => {
                    Some("the new map has no route from its shop to its drop-off".to_string())
                }
                _ => None,
            };
            match (why, o.status.on_board()) {
                (None, _) => moved.push((o.id.clone(), pickup.expect("checked"), dropoff.expect("checked"))),
                (Some(why), true) => {
                    return Err(CoreError::FailedPrecondition(format!(
                        "order {} is aboard robot {} and {why}; the map is not swapped",
                        o.id,
                        o.robot.as_ref().map_or("?".to_string(), ToString::to_string)
                    )));
                }
                (Some(why), false) => cancelled.push((o.id.clone(), why)),
            }
        }

        // It fits: swap.
        for (id, node) in shops {
            let s = self.shops.get_mut(&id).expect("listed above");
            s.place.node = node;
            out.shops.insert(id);
        }
        for (id, node) in robots {
            let r = self.robots.get_mut(&id).expect("listed above");
            r.node = node;
            out.robots.insert(id);
        }
        let nodes: BTreeMap<OrderId, (NodeId, NodeId)> =
            moved.iter().map(|(id, p, d)| (id.clone(), (*p, *d))).collect();
        for (id, (p, d)) in &nodes {
            let o = self.orders.get_mut(id).expect("listed above");
            o.pickup.node = *p;
            o.dropoff.node = *d;
            out.orders.insert(id.clone());
        }
        let gone: BTreeSet<OrderId> = cancelled.iter().map(|(id, _)| id.clone()).collect();
        for (id, why) in &cancelled {
            let o = self.orders.get_mut(id).expect("listed above");
            if o.transition(OrderStatus::Cancelled, now).is_ok() {
                o.reason = Some(format!("cancelled by a map change: {why}"));
                out.orders.insert(id.clone());
            }
        }
        // Plans keep their order of stops, at the stops' new nodes; nothing of them is released (no robot has
        // steps), so each is released afresh from where its robot now stands.
        let ids: Vec<RobotId> = self.robots.keys().cloned().collect();
        for id in &ids {
            let r = self.robots.get_mut(id).expect("listed");
            r.plan.retain(|s| !gone.contains(&s.order));
            for s in &mut r.plan {
                if let Some((p, d)) = nodes.get(&s.order) {
                    s.node = if s.kind == StopKind::Pickup { *p } else { *d };
                }
                s.drive_released = false;
                s.action_released = false;
            }
        }
        let closures_dropped = self.meta.closed_edges.len();
        self.meta.closed_edges.clear();
        self.meta.temp_closures.clear();
        let mut map = Arc::unwrap_or_clone(new.0);
        // A host prepares the map off this thread; one that did not gets it prepared here.
        let profile = Profile { speed_mps: RobotModel::default().max_speed_mps, ..self.config.profile_base() };
        if map.hierarchy().is_none_or(|(_, p)| p != profile) {
            Self::prepare_map(&mut map, &self.config);
        }
        let fingerprint = map.fingerprint();
        self.meta.map_fingerprint = Some(fingerprint.clone());
        out.meta = true;
        self.layout = Arc::new(Layout::build(&map, &self.config.traffic));
        self.map = Arc::new(map);
        self.table.clear();
        self.legs.clear();
        self.views.borrow_mut().clear();
        self.drive_targets.clear();
        self.claimed_steps.clear();
        self.deadlock_alerted.clear();
        self.reroute_tried.clear();
        self.deadlock_avoided.clear();
        self.blocked_tried.clear();
        self.aside_end.clear();
        self.leg_clock.clear();
        self.late_cursor = None;
        self.traffic = Traffic::default();
        self.restore_traffic();
        self.plans_version += 1;
        for id in &ids {
            if self.robots[id].plan.is_empty() {
                continue;
            }
            self.release(now, id, out, true);
        }
        Ok(Reply::MapSwapped(Box::new(MapSwap {
            fingerprint,
            nodes: self.map.node_count(),
            edges: self.map.edge_count(),
            orders_moved: nodes.len(),
            cancelled,
            closures_dropped,
        })))
    }
}
