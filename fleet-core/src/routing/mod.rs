//! Shortest paths over the map graph for one robot profile: a contraction hierarchy ([`ch`]) with hub labels on
//! top ([`hl`]) answers in microseconds while no edge is closed; a path that crosses a closed edge falls back to
//! the exact search on the live graph ([`live`]); A* and plain Dijkstra are the oracles the fast routers are
//! tested against. Edge weights are travel times in whole milliseconds, rounded up.

pub mod ch;
pub mod hl;
pub(crate) mod live;

use std::sync::{Arc, PoisonError};

use rustc_hash::FxHashMap;

use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

use crate::NodeId;
use crate::map::{MapEdge, MapGraph, Profile, Route};
use ch::{ChQuery, ContractionHierarchy};
use hl::HubLabels;

/// A hierarchy and the profile its weights were computed for.
#[derive(Debug)]
pub(crate) struct PreparedCh {
    pub(crate) profile: Profile,
    pub(crate) ch: ContractionHierarchy,
    /// Hub labels over `ch`, when they fit [`LABEL_BUDGET_BYTES`].
    pub(crate) hl: Option<HubLabels>,
}

/// Memory the hub labels of one map may take; bigger maps answer from the hierarchy alone.
pub const LABEL_BUDGET_BYTES: usize = 256 << 20;

impl MapGraph {
    /// Travel time over one directed edge in whole milliseconds (rounded up, so a path's time never falls
    /// below its great-circle bound), ignoring closures.
    pub(crate) fn edge_ms(w: &MapEdge, profile: Profile) -> u64 {
        let wait = match (w.crossing, w.signals) {
            (true, true) => profile.signal_wait_s,
            (true, false) => profile.crossing_penalty_s,
            _ => 0.0,
        };
        let secs = w.length_m / profile.speed_mps.min(f64::from(w.max_mps)) + wait;
        ((secs * 1000.0).ceil() as u64).max(1)
    }

    /// Travel time over one directed edge in ms; `None` while the edge is closed.
    fn cost(&self, e: petgraph::graph::EdgeReference<'_, MapEdge>, profile: Profile) -> Option<u64> {
        if self.closed.contains(&(NodeId(e.source().index() as u32), NodeId(e.target().index() as u32))) {
            return None;
        }
        Some(Self::edge_ms(e.weight(), profile))
    }

    /// Every directed edge with its travel time in ms for `profile`, ignoring closures.
    pub fn weighted_edges(&self, profile: Profile) -> Vec<(u32, u32, u32)> {
        self.graph
            .edge_references()
            .map(|e| {
                let ms = Self::edge_ms(e.weight(), profile).min(u64::from(u32::MAX / 4)) as u32;
                (e.source().index() as u32, e.target().index() as u32, ms)
            })
            .collect()
    }

    /// Builds the contraction hierarchy for `profile`, and hub labels on top when they fit the budget; routes
    /// for that profile then take microseconds.
    pub fn prepare(&mut self, profile: Profile) {
        let ch = ContractionHierarchy::build(self.node_count(), &self.weighted_edges(profile));
        let hl = HubLabels::build(&ch, LABEL_BUDGET_BYTES);
        *self.ch_query.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ChQuery::new(&ch));
        self.ch = Some(Arc::new(PreparedCh { profile, ch, hl }));
    }

    /// The hierarchy, if one was prepared.
    pub fn hierarchy(&self) -> Option<(&ContractionHierarchy, Profile)> {
        self.ch.as_deref().map(|p| (&p.ch, p.profile))
    }

    fn path_is_open(&self, nodes: &[NodeId]) -> bool {
        self.closed.is_empty() || nodes.windows(2).all(|w| !self.closed.contains(&(w[0], w[1])))
    }

    fn route_of(&self, nodes: Vec<NodeId>, ms: u64) -> Route {
        let length_m = nodes
            .windows(2)
            .filter_map(|w| self.graph.find_edge(NodeIndex::new(w[0].0 as usize), NodeIndex::new(w[1].0 as usize)))
            .map(|e| self.graph[e].length_m)
            .sum();
        Route { nodes, length_m, duration_s: ms as f64 / 1000.0 }
    }

    /// Fastest route from `from` to `to` for `profile`, avoiding closed edges. Uses the contraction hierarchy
    /// when one was prepared for this profile and its path avoids every closure; otherwise (or then) A* on the
    /// live graph. `None` when no open path exists or an id is not in this map.
    pub fn route(&self, from: NodeId, to: NodeId, profile: Profile) -> Option<Route> {
        self.node(from)?;
        self.node(to)?;
        if let Some(p) = self.ch.as_deref().filter(|p| p.profile == profile) {
            let found = match &p.hl {
                Some(hl) => Some(hl.path(from.0, to.0)),
                None => self.ch_query.try_lock().ok().map(|mut q| {
                    let q = q.get_or_insert_with(|| ChQuery::new(&p.ch));
                    q.path(&p.ch, from.0, to.0)
                }),
            };
            match found {
                Some(Some((ms, path))) => {
                    let nodes: Vec<NodeId> = path.into_iter().map(NodeId).collect();
                    if self.path_is_open(&nodes) {
                        return Some(self.route_of(nodes, u64::from(ms)));
                    }
                }
                // Unreachable even with every edge open: closures cannot help.
                Some(None) => return None,
                // The scratch is busy elsewhere: answer on the live graph below.
                None => {}
            }
        }
        self.live_route(from, to, profile)
    }

    /// Exact fastest route on the live graph (closures applied): bidirectional Dijkstra over arrays, the
    /// fallback when a precomputed path crosses a closed edge.
    pub fn live_route(&self, from: NodeId, to: NodeId, profile: Profile) -> Option<Route> {
        let (ms, nodes) = self.live.search(&self.closed_arc, from.0, to.0, profile)?;
        Some(self.route_of(nodes.into_iter().map(NodeId).collect(), ms))
    }

    /// Fastest route on the live graph that also avoids the directed edges in `avoid` (a robot re-routed around
    /// a bottleneck held by others); `None` when every way round is closed.
    pub fn route_avoiding(
        &self,
        from: NodeId,
        to: NodeId,
        profile: Profile,
        avoid: &[(NodeId, NodeId)],
    ) -> Option<Route> {
        let mut closed = self.closed_arc.clone();
        for &(a, b) in avoid {
            if self.node(a).is_none() {
                continue;
            }
            for i in self.live.arcs(a.0) {
                if self.live.to[i] == b.0 {
                    closed[i] = true;
                }
            }
        }
        let (ms, nodes) = self.live.search(&closed, from.0, to.0, profile)?;
        Some(self.route_of(nodes.into_iter().map(NodeId).collect(), ms))
    }

    /// A* on the live graph (closures applied) with a great-circle lower bound.
    pub fn astar(&self, from: NodeId, to: NodeId, profile: Profile) -> Option<Route> {
        let target = self.node(to)?.pos;
        self.node(from)?;
        let (s, t) = (NodeIndex::new(from.0 as usize), NodeIndex::new(to.0 as usize));
        let (ms, path) = petgraph::algo::astar(
            &self.graph,
            s,
            |n| n == t,
            |e| self.cost(e, profile).unwrap_or(u64::MAX / 4),
            // Great-circle distance never exceeds a path's length and edge times are rounded up, so this bound
            // never overestimates.
            |n| (self.graph[n].pos.distance_m(target) / profile.speed_mps * 1000.0).floor() as u64,
        )?;
        if ms >= u64::MAX / 4 {
            return None;
        }
        Some(self.route_of(path.iter().map(|n| NodeId(n.index() as u32)).collect(), ms))
    }

    /// Travel time in seconds from `from` to `to` (the route's duration).
    pub fn travel_secs(&self, from: NodeId, to: NodeId, profile: Profile) -> Option<f64> {
        if from == to {
            return self.node(from).map(|_| 0.0);
        }
        if self.closed.is_empty()
            && let Some(p) = self.ch.as_deref().filter(|p| p.profile == profile)
        {
            if let Some(hl) = &p.hl {
                return hl.distance(from.0, to.0).map(|ms| f64::from(ms) / 1000.0);
            }
            if let Ok(mut q) = self.ch_query.try_lock() {
                let q = q.get_or_insert_with(|| ChQuery::new(&p.ch));
                return q.distance(&p.ch, from.0, to.0).map(|ms| f64::from(ms) / 1000.0);
            }
        }
        if self.closed.is_empty() {
            return self.route(from, to, profile).map(|r| r.duration_s);
        }
        let known = self.closed_times.lock().unwrap_or_else(PoisonError::into_inner).get(from, to, profile);
        if let Some(known) = known {
            return known.map(|ms| f64::from(ms) / 1000.0);
        }
        // Not under the lock: another thread may search meanwhile, and both find the same.
        let secs = self.route(from, to, profile).map(|r| r.duration_s);
        let ms = secs.map(|s| (s * 1000.0).round().clamp(0.0, f64::from(u32::MAX - 1)) as u32);
        self.closed_times.lock().unwrap_or_else(PoisonError::into_inner).put(from, to, profile, ms);
        secs
    }

    /// Travel times in ms from `node` to every node (`towards` false) or from every node to `node` (true), by
    /// node id, `u32::MAX` where no route exists: one sweep of the hierarchy, a few hundred microseconds on a
    /// city. `None` while an edge is closed or when no hierarchy was prepared for `profile`; ask
    /// [`travel_secs`](Self::travel_secs) pair by pair then.
    pub fn times_all(&self, node: NodeId, profile: Profile, towards: bool) -> Option<Vec<u32>> {
        self.node(node)?;
        if !self.closed.is_empty() {
            return None;
        }
        let p = self.ch.as_deref().filter(|p| p.profile == profile)?;
        Some(if towards { p.ch.to_one(node.0) } else { p.ch.from_one(node.0) })
    }

    /// Reference shortest travel time in ms by plain Dijkstra on the live graph; the oracle the faster routers
    /// are tested against.
    pub fn dijkstra_ms(&self, from: NodeId, to: NodeId, profile: Profile) -> Option<u64> {
        let t = NodeIndex::new(to.0 as usize);
        let costs = petgraph::algo::dijkstra(&self.graph, NodeIndex::new(from.0 as usize), Some(t), |e| {
            self.cost(e, profile).unwrap_or(u64::MAX / 4)
        });
        costs.get(&t).copied().filter(|c| *c < u64::MAX / 4)
    }
}

/// Travel times in whole ms (`None`: no route) by profile and pair, for one set of closures
/// ([`MapGraph::travel_secs`] while an edge is closed). Bounded: it starts over past [`ClosedTimes::MAX`] pairs.
#[derive(Debug, Default)]
pub(crate) struct ClosedTimes {
    by_profile: Vec<(Profile, FxHashMap<u64, u32>)>,
}

impl ClosedTimes {
    const MAX: usize = 1 << 20;
    const NONE: u32 = u32::MAX;

    fn get(&self, a: NodeId, b: NodeId, p: Profile) -> Option<Option<u32>> {
        let (_, pairs) = self.by_profile.iter().find(|(q, _)| *q == p)?;
        let &ms = pairs.get(&((u64::from(a.0) << 32) | u64::from(b.0)))?;
        Some((ms != Self::NONE).then_some(ms))
    }

    fn put(&mut self, a: NodeId, b: NodeId, p: Profile, ms: Option<u32>) {
        let k = match self.by_profile.iter().position(|(q, _)| *q == p) {
            Some(k) => k,
            None => {
                self.by_profile.push((p, FxHashMap::default()));
                self.by_profile.len() - 1
            }
        };
        let pairs = &mut self.by_profile[k].1;
        if pairs.len() >= Self::MAX {
            pairs.clear();
        }
        pairs.insert((u64::from(a.0) << 32) | u64::from(b.0), ms.unwrap_or(Self::NONE));
    }

    pub(crate) fn clear(&mut self) {
        self.by_profile.clear();
    }
}
