//! Traffic at bottlenecks, the same code for the production dispatcher and the simulator. On wide ways robots
//! avoid each other locally; the places where they cannot are resources a robot must be granted before its
//! route is released past them (VDA 5050's base):
//!
//! - a **narrow way**: a run of edges narrower than [`TrafficConfig::narrow_below_m`] (from the map's widths)
//!   joined through nodes where nothing else meets. Robots may share one only going the same way.
//! - a **crossing**: a run of street-crossing edges, a few robots at a time.
//! - a **spot**: the node a robot stands on to load or hand over (a shop door, a customer's door), with the
//!   nodes within [`SPOT_MERGE_M`] of it by a short edge; one robot at a time, the next waits
//!   [`TrafficConfig::spot_approach_m`] short of it.
//! - a **charger**: the charging points at a robot's depot (the spot's node group),
//!   [`TrafficConfig::chargers_per_depot`] robots at a time; the next waits short of the depot like at a spot.
//!   A robot charging holds the charger, not the stop spot: where robots start at shops the depot is the shop's
//!   node, and a robot charging there stands on a charging point beside the door, not in it.
//!
//! A robot claims the resources ahead of it ([`Traffic::claim`]), all of a group at once (resources closer
//! together than [`TrafficConfig::group_gap_m`] are claimed together, so that no robot is granted one and then
//! left waiting between two bottlenecks); claims are granted first come first served; it frees each once it
//! reports having passed it. A claim that waits is an edge of the wait-for graph ([`Traffic::wait_for`]): a
//! cycle there is a deadlock ([`Traffic::deadlocks`]) that the dispatcher resolves by re-routing one robot.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::map::MapGraph;
use crate::{NodeId, RobotId, Timestamp};

/// A place robots take turns at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resource {
    /// A run of way too narrow for two robots to pass each other, numbered by the map's [`Layout`].
    Narrow(u32),
    /// A street crossing (a run of crossing edges), numbered by the map's [`Layout`].
    Crossing(u32),
    /// The node a robot stands on to load or hand over.
    Spot(NodeId),
    /// The charging points of the depot at a node (named like its spot, by the lowest node of its group).
    Charger(NodeId),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Narrow(i) => write!(f, "narrow way {i}"),
            Resource::Crossing(i) => write!(f, "crossing {i}"),
            Resource::Spot(n) => write!(f, "stop spot at node {n}"),
            Resource::Charger(n) => write!(f, "chargers of the depot at node {n}"),
        }
    }
}

/// Traffic settings. The defaults are documented in ARCHITECTURE.md.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrafficConfig {
    /// Off: every route is released whole, as before traffic management (a baseline to compare against).
    pub enabled: bool,
    /// A way narrower than this (metres) is a narrow-way resource: two robots about 0.6 m wide plus margins
    /// cannot pass on it.
    pub narrow_below_m: f64,
    /// Robots on one narrow way at once, all going the same way.
    pub narrow_capacity: u8,
    /// Robots on one crossing at once.
    pub crossing_capacity: u8,
    /// Robots at one stop spot at once.
    pub spot_capacity: u8,
    /// Charging points at one depot: robots charging there at once.
    pub chargers_per_depot: u8,
    /// A robot claims a resource once its route distance to it is below this.
    pub claim_ahead_m: f64,
    /// A robot waits for a spot this far (route distance) short of it, clear of the door.
    pub spot_approach_m: f64,
    /// Resources closer together than this along a route are claimed together.
    pub group_gap_m: f64,
    /// A robot that has waited this long for a resource is re-routed around it when another way exists.
    pub reroute_after_s: f64,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            narrow_below_m: 1.8,
            narrow_capacity: 3,
            crossing_capacity: 4,
            spot_capacity: 1,
            chargers_per_depot: 2,
            claim_ahead_m: 40.0,
            spot_approach_m: 20.0,
            group_gap_m: 15.0,
            reroute_after_s: 90.0,
        }
    }
}

impl TrafficConfig {
    fn capacity(&self, r: Resource) -> usize {
        usize::from(match r {
            Resource::Narrow(_) => self.narrow_capacity,
            Resource::Crossing(_) => self.crossing_capacity,
            Resource::Spot(_) => self.spot_capacity,
            Resource::Charger(_) => self.chargers_per_depot,
        })
        .max(1)
    }
}

/// Where a route meets a resource: the resource and the indices of the route's nodes where it enters and leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    pub resource: Resource,
    pub enter: usize,
    pub exit: usize,
}

/// Nodes joined by an edge shorter than this are one stop spot: two robots cannot stand on both.
pub const SPOT_MERGE_M: f64 = 3.0;

/// The map's narrow ways and crossings, and which nodes make one stop spot.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    of_edge: FxHashMap<(NodeId, NodeId), Resource>,
    /// Each narrow way's and crossing's edges, sorted: the reverse of `of_edge`, for routing round one.
    edges: FxHashMap<Resource, Vec<(NodeId, NodeId)>>,
    /// Nodes within [`SPOT_MERGE_M`] of another (by a short edge), to the lowest node of their group.
    spot_of: FxHashMap<NodeId, NodeId>,
    narrow: u32,
    crossings: u32,
}

impl Layout {
    /// Finds the narrow ways and crossings of `map`.
    pub fn build(map: &MapGraph, cfg: &TrafficConfig) -> Self {
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Kind {
            Narrow,
            Crossing,
        }
        let mut edges: Vec<(NodeId, NodeId, Kind)> = map
            .edges()
            .filter_map(|(a, b, e)| {
                let kind = if e.crossing {
                    Kind::Crossing
                } else if f64::from(e.width_m) < cfg.narrow_below_m {
                    Kind::Narrow
                } else {
                    return None;
                };
                Some((a.min(b), a.max(b), kind))
            })
            .collect();
        edges.sort();
        edges.dedup_by_key(|e| (e.0, e.1));
        // Union-find over the edges, joined through nodes where exactly two ways of the same kind meet.
        let mut parent: Vec<usize> = (0..edges.len()).collect();
        fn root(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        let mut at: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
        for (i, e) in edges.iter().enumerate() {
            at.entry(e.0).or_default().push(i);
            at.entry(e.1).or_default().push(i);
        }
        for (n, list) in &at {
            if let [i, j] = list[..]
                && edges[i].2 == edges[j].2
                && map.neighbours(*n).len() == 2
            {
                let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                parent[ri.max(rj)] = ri.min(rj);
            }
        }
        let mut layout = Layout::default();
        // Stop spots: nodes joined by short edges, grouped (union-find over node ids, the lowest wins).
        let mut group: BTreeMap<NodeId, NodeId> = BTreeMap::new();
        fn top(g: &mut BTreeMap<NodeId, NodeId>, mut n: NodeId) -> NodeId {
            while let Some(&p) = g.get(&n).filter(|&&p| p != n) {
                n = p;
            }
            n
        }
        for (a, b, e) in map.edges() {
            if e.length_m < SPOT_MERGE_M && a < b {
                let (ra, rb) = (top(&mut group, a), top(&mut group, b));
                if ra != rb {
                    group.insert(ra.max(rb), ra.min(rb));
                    group.entry(ra.min(rb)).or_insert(ra.min(rb));
                }
            }
        }
        let members: Vec<NodeId> = group.keys().copied().collect();
        for n in members {
            let r = top(&mut group, n);
            if r != n {
                layout.spot_of.insert(n, r);
            }
        }
        let mut ids: BTreeMap<usize, Resource> = BTreeMap::new();
        for i in 0..edges.len() {
            let r = root(&mut parent, i);
            let res = *ids.entry(r).or_insert_with(|| match edges[r].2 {
                Kind::Narrow => {
                    layout.narrow += 1;
                    Resource::Narrow(layout.narrow - 1)
                }
                Kind::Crossing => {
                    layout.crossings += 1;
                    Resource::Crossing(layout.crossings - 1)
                }
            });
            layout.of_edge.insert((edges[i].0, edges[i].1), res);
            layout.edges.entry(res).or_default().push((edges[i].0, edges[i].1));
        }
        layout
    }

    /// The stop spot of node `n`: its group of nodes close together, named by the lowest.
    pub fn spot(&self, n: NodeId) -> Resource {
        Resource::Spot(self.spot_of.get(&n).copied().unwrap_or(n))
    }

    /// The chargers of the depot at node `n` (its spot's group of nodes).
    pub fn charger(&self, n: NodeId) -> Resource {
        Resource::Charger(self.spot_of.get(&n).copied().unwrap_or(n))
    }

    /// Narrow ways and crossings found.
    pub fn counts(&self) -> (u32, u32) {
        (self.narrow, self.crossings)
    }

    /// The resource the edge between `a` and `b` (either way) belongs to.
    pub fn resource(&self, a: NodeId, b: NodeId) -> Option<Resource> {
        self.of_edge.get(&(a.min(b), a.max(b))).copied()
    }

    /// The narrow way `n` lies inside of (both its ways are that narrow way), if any: a robot standing there
    /// blocks it.
    pub fn inside(&self, map: &MapGraph, n: NodeId) -> Option<Resource> {
        let nb = map.neighbours(n);
        let mut it = nb.iter().map(|&m| self.resource(n, m));
        match (it.next(), it.next(), it.next()) {
            (Some(Some(a @ Resource::Narrow(_))), Some(Some(b)), None) if a == b => Some(a),
            _ => None,
        }
    }

    /// Every edge of one resource, as (lower node, higher node).
    pub fn edges_of(&self, r: Resource) -> Vec<(NodeId, NodeId)> {
        self.edges.get(&r).cloned().unwrap_or_default()
    }

    /// The narrow ways and crossings a node path passes, in order.
    pub fn stretches(&self, route: &[NodeId]) -> Vec<Stretch> {
        let mut out: Vec<Stretch> = Vec::new();
        for (k, w) in route.windows(2).enumerate() {
            let Some(r) = self.resource(w[0], w[1]) else { continue };
            match out.last_mut() {
                Some(s) if s.resource == r && s.exit == k => s.exit = k + 1,
                _ => out.push(Stretch { resource: r, enter: k, exit: k + 1 }),
            }
        }
        out
    }
}

/// A resource held or claimed, with the node the robot enters it from (robots share a narrow way only when they
/// enter it from the same end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hold {
    pub resource: Resource,
    pub entry: NodeId,
}

/// A claim not yet granted.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub items: Vec<Hold>,
    pub since: Timestamp,
    /// Place in the queue: lower claims are served first.
    pub turn: u64,
}

/// What traffic management did since the dispatcher started (not persisted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficStats {
    /// Claims granted at once.
    pub granted_at_once: u64,
    /// Claims that had to wait, and how long they waited in all and at most, seconds.
    pub waited: u64,
    pub wait_s_total: f64,
    pub wait_s_max: f64,
    /// Deadlocks found, and robots re-routed around what they waited for (for a deadlock or a long wait).
    pub deadlocks: u64,
    pub reroutes: u64,
    /// Idle robots sent off a spot another robot waited for.
    pub moved_aside: u64,
}

/// Whether claim `c` must wait behind the earlier claim `earlier`: they want the same narrow way. Robots queue
/// for a narrow way in turn, so that one waiting to go one way is not kept out for ever by robots coming the
/// other way; at a crossing or a spot a later claim may go first (the earlier one waits for something held,
/// and queueing behind it would tie robots into cycles, one standing on a spot another waits for).
fn queued_behind(c: &Claim, earlier: &Claim) -> bool {
    earlier.turn < c.turn
        && earlier
            .items
            .iter()
            .any(|x| matches!(x.resource, Resource::Narrow(_)) && c.items.iter().any(|h| h.resource == x.resource))
}

/// Who holds and who waits for what.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    held: BTreeMap<Resource, Vec<(RobotId, NodeId)>>,
    holds: BTreeMap<RobotId, Vec<Hold>>,
    claims: BTreeMap<RobotId, Claim>,
    next_turn: u64,
    pub stats: TrafficStats,
}

impl Traffic {
    /// Whether `robot` could take `h` now, holders aside from itself.
    fn fits(&self, cfg: &TrafficConfig, robot: &RobotId, h: &Hold) -> bool {
        let holders: Vec<&(RobotId, NodeId)> =
            self.held.get(&h.resource).map(|v| v.iter().filter(|(r, _)| r != robot).collect()).unwrap_or_default();
        if holders.len() >= cfg.capacity(h.resource) {
            return false;
        }
        match h.resource {
            Resource::Narrow(_) => holders.iter().all(|(_, entry)| *entry == h.entry),
            _ => true,
        }
    }

    /// Claims `items` for `robot` (replacing any claim it had) and grants them at once when they are free and
    /// no earlier claim waits for any of them. Items it already holds are dropped from the claim. Returns
    /// whether everything is now held.
    pub fn claim(&mut self, cfg: &TrafficConfig, robot: &RobotId, items: Vec<Hold>, now: Timestamp) -> bool {
        let held = self.holds.get(robot);
        let mut items: Vec<Hold> =
            items.into_iter().filter(|h| !held.is_some_and(|v| v.iter().any(|x| x.resource == h.resource))).collect();
        items.sort();
        items.dedup_by_key(|h| h.resource);
        if items.is_empty() {
            self.claims.remove(robot);
            return true;
        }
        match self.claims.get_mut(robot) {
            Some(c) if c.items == items => {}
            _ => {
                let turn = self.next_turn;
                self.next_turn += 1;
                self.claims.insert(robot.clone(), Claim { items, since: now, turn });
            }
        }
        self.try_grant(cfg, robot, now)
    }

    /// Grants `robot`'s claim when every item fits and no earlier claim waits for one of them.
    fn try_grant(&mut self, cfg: &TrafficConfig, robot: &RobotId, now: Timestamp) -> bool {
        let Some(c) = self.claims.get(robot) else {
            return true;
        };
        let queued = self.claims.iter().any(|(other, oc)| other != robot && queued_behind(c, oc));
        if queued || !c.items.iter().all(|h| self.fits(cfg, robot, h)) {
            return false;
        }
        let c = self.claims.remove(robot).expect("checked above");
        let waited = now.secs_since(c.since);
        if waited > 0.0 {
            self.stats.waited += 1;
            self.stats.wait_s_total += waited;
            self.stats.wait_s_max = self.stats.wait_s_max.max(waited);
        } else {
            self.stats.granted_at_once += 1;
        }
        for h in c.items {
            self.held.entry(h.resource).or_default().push((robot.clone(), h.entry));
            self.holds.entry(robot.clone()).or_default().push(h);
        }
        true
    }

    /// Grants whatever waiting claims can now be granted, first come first served; returns their robots.
    pub fn grant_waiting(&mut self, cfg: &TrafficConfig, now: Timestamp) -> Vec<RobotId> {
        let mut order: Vec<(u64, RobotId)> = self.claims.iter().map(|(r, c)| (c.turn, r.clone())).collect();
        order.sort();
        order.into_iter().filter_map(|(_, r)| self.try_grant(cfg, &r, now).then_some(r)).collect()
    }

    /// Takes holds without checks: what a restarted dispatcher had released, or the spot a robot stands on
    /// (it is there, whatever the table says).
    pub fn restore(&mut self, robot: &RobotId, holds: Vec<Hold>) {
        for h in holds {
            if self.holds.get(robot).is_some_and(|v| v.iter().any(|x| x.resource == h.resource)) {
                continue;
            }
            self.held.entry(h.resource).or_default().push((robot.clone(), h.entry));
            self.holds.entry(robot.clone()).or_default().push(h);
        }
    }

    /// Frees one resource held by `robot`; true when it held it.
    pub fn free(&mut self, robot: &RobotId, r: Resource) -> bool {
        let Some(list) = self.holds.get_mut(robot) else {
            return false;
        };
        let before = list.len();
        list.retain(|h| h.resource != r);
        let freed = list.len() != before;
        if list.is_empty() {
            self.holds.remove(robot);
        }
        if let Some(v) = self.held.get_mut(&r) {
            v.retain(|(x, _)| x != robot);
            if v.is_empty() {
                self.held.remove(&r);
            }
        }
        freed
    }

    /// Frees everything `robot` holds and withdraws its claim; returns what it held.
    pub fn free_all(&mut self, robot: &RobotId) -> Vec<Resource> {
        self.claims.remove(robot);
        let held: Vec<Resource> = self.holds(robot).iter().map(|h| h.resource).collect();
        for &r in &held {
            self.free(robot, r);
        }
        held
    }

    /// Withdraws `robot`'s claim, if any.
    pub fn withdraw(&mut self, robot: &RobotId) {
        self.claims.remove(robot);
    }

    pub fn holds(&self, robot: &RobotId) -> &[Hold] {
        self.holds.get(robot).map_or(&[], Vec::as_slice)
    }

    pub fn claim_of(&self, robot: &RobotId) -> Option<&Claim> {
        self.claims.get(robot)
    }

    /// The robots holding `r`.
    pub fn holders(&self, r: Resource) -> impl Iterator<Item = &RobotId> {
        self.held.get(&r).into_iter().flatten().map(|(x, _)| x)
    }

    /// What `robot`'s claim waits for: the resources others hold and leave it no room on, or, when all fit, those
    /// an earlier claim waits for too.
    pub fn blocking(&self, cfg: &TrafficConfig, robot: &RobotId) -> Vec<Resource> {
        let Some(c) = self.claims.get(robot) else { return Vec::new() };
        let held: Vec<Resource> = c.items.iter().filter(|h| !self.fits(cfg, robot, h)).map(|h| h.resource).collect();
        if !held.is_empty() {
            return held;
        }
        c.items
            .iter()
            .filter(|h| {
                matches!(h.resource, Resource::Narrow(_))
                    && self.claims.iter().any(|(o, oc)| {
                        o != robot && oc.turn < c.turn && oc.items.iter().any(|x| x.resource == h.resource)
                    })
            })
            .map(|h| h.resource)
            .collect()
    }

    /// Robots waiting, with their claims.
    pub fn waiting(&self) -> impl Iterator<Item = (&RobotId, &Claim)> {
        self.claims.iter()
    }

    /// Total holds, for metrics.
    pub fn held_count(&self) -> usize {
        self.holds.values().map(Vec::len).sum()
    }

    /// The wait-for graph: each waiting robot points at the robots it waits for (holders that leave it no room,
    /// and earlier claims for the same resources).
    pub fn wait_for(&self, cfg: &TrafficConfig) -> BTreeMap<RobotId, BTreeSet<RobotId>> {
        self.wait_for_refs(cfg, false)
            .into_iter()
            .map(|(r, on)| (r.clone(), on.into_iter().cloned().collect()))
            .collect()
    }

    /// [`Self::wait_for`] on borrowed ids (no id is copied: the graph is built every tick). With `nearest`, a
    /// claim points only at the latest earlier claim for each narrow way rather than at all of them: the same
    /// robots reach each other (a queue is a chain), so the cycles are the same, and a queue of n robots at one
    /// way has n edges instead of n squared over 2.
    fn wait_for_refs(&self, cfg: &TrafficConfig, nearest: bool) -> BTreeMap<&RobotId, BTreeSet<&RobotId>> {
        // Per narrow way, the claims waiting for it with their turns: an index instead of every claim against
        // every other (that pairing was most of a tick's traffic time with a few hundred robots waiting).
        let mut narrow: BTreeMap<Resource, Vec<(u64, &RobotId)>> = BTreeMap::new();
        for (robot, c) in &self.claims {
            for h in c.items.iter().filter(|h| matches!(h.resource, Resource::Narrow(_))) {
                narrow.entry(h.resource).or_default().push((c.turn, robot));
            }
        }
        for v in narrow.values_mut() {
            v.sort();
        }
        let mut g: BTreeMap<&RobotId, BTreeSet<&RobotId>> = BTreeMap::new();
        for (robot, c) in &self.claims {
            let mut on: BTreeSet<&RobotId> = BTreeSet::new();
            for h in &c.items {
                if !self.fits(cfg, robot, h) {
                    on.extend(self.holders(h.resource).filter(|x| *x != robot));
                }
                if let Some(v) = narrow.get(&h.resource) {
                    // Sorted by turn: the claims before this one.
                    let before = &v[..v.partition_point(|(turn, _)| *turn < c.turn)];
                    if nearest {
                        on.extend(before.last().map(|(_, o)| *o));
                    } else {
                        on.extend(before.iter().map(|(_, o)| *o));
                    }
                }
            }
            if !on.is_empty() {
                g.insert(robot, on);
            }
        }
        g
    }

    /// Deadlocks: the cycles of the wait-for graph, each as the set of robots on it (strongly connected
    /// components with more than one robot), in a fixed order.
    pub fn deadlocks(&self, cfg: &TrafficConfig) -> Vec<Vec<RobotId>> {
        let g = self.wait_for_refs(cfg, true);
        // Only a robot that waits itself can be on a cycle: edges to robots that wait for nobody are left out
        // (the strongly connected components with more than one robot are the same without them).
        let mut graph = petgraph::graph::DiGraph::<&RobotId, ()>::new();
        let mut idx = BTreeMap::new();
        for (r, on) in &g {
            for x in on.iter().filter(|x| g.contains_key(**x)) {
                let a = *idx.entry(*r).or_insert_with(|| graph.add_node(*r));
                let b = *idx.entry(*x).or_insert_with(|| graph.add_node(*x));
                graph.add_edge(a, b, ());
            }
        }
        cycles(&graph)
    }
}

/// The cycles of a wait-for graph: its strongly connected components with more than one robot, each sorted,
/// in a fixed order.
fn cycles(graph: &petgraph::graph::DiGraph<&RobotId, ()>) -> Vec<Vec<RobotId>> {
    let mut cycles: Vec<Vec<RobotId>> = petgraph::algo::kosaraju_scc(graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut v: Vec<RobotId> = c.into_iter().map(|n| graph[n].clone()).collect();
            v.sort();
            v
        })
        .collect();
    cycles.sort();
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LatLon;
    use crate::map::{ImportSummary, RawNodes, RawWay, Travel};

    fn rid(s: &str) -> RobotId {
        RobotId::parse(s).expect("valid id")
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + s * 1000)
    }

    /// A street 1-2-3-4-5 (wide) with a narrow bypass 2-6-7-4 (1.2 m) and a crossing 5-8, plus a narrow spur
    /// 3-9 whose interior node 9 continues narrow to 10 and then meets a wide way at 10 (10-11).
    fn map() -> MapGraph {
        let mut nodes = RawNodes::default();
        let mut put = |id: i64, lat: f64, lon: f64| {
            nodes.coords.insert(id, LatLon::new(lat, lon).expect("valid"));
        };
        for i in 1..=5 {
            put(i, 43.73, 7.42 + 0.0005 * i as f64);
        }
        put(6, 43.7303, 7.4215);
        put(7, 43.7303, 7.4225);
        put(8, 43.7305, 7.4225);
        put(9, 43.7297, 7.4215);
        put(10, 43.7294, 7.4215);
        put(11, 43.7294, 7.4225);
        let way = |id: i64, refs: Vec<i64>, crossing: bool, width_m: f64| RawWay {
            id,
            refs,
            crossing,
            travel: Travel::Both,
            width_m,
            signals: false,
        };
        let ways = vec![
            way(1, vec![1, 2, 3, 4, 5], false, 3.0),
            way(2, vec![2, 6, 7, 4], false, 1.2),
            way(3, vec![5, 8], true, 6.0),
            way(4, vec![3, 9, 10], false, 1.0),
            way(5, vec![10, 11, 5], false, 2.5),
        ];
        MapGraph::from_parts(&nodes, &ways, ImportSummary::default()).expect("builds").0
    }

    fn node(m: &MapGraph, osm: i64) -> NodeId {
        (0..m.node_count() as u32).map(NodeId).find(|&n| m.node(n).expect("node").osm_id == osm).expect("present")
    }

    #[test]
    fn narrow_runs_join_through_plain_nodes_and_stop_at_junctions() {
        let m = map();
        let l = Layout::build(&m, &TrafficConfig::default());
        assert_eq!(l.counts(), (2, 1), "one narrow bypass, one narrow spur, one crossing");
        let n = |o| node(&m, o);
        let bypass = l.resource(n(2), n(6)).expect("narrow");
        assert_eq!(l.resource(n(6), n(7)), Some(bypass));
        assert_eq!(l.resource(n(7), n(4)), Some(bypass));
        let spur = l.resource(n(3), n(9)).expect("narrow");
        assert_ne!(spur, bypass);
        assert_eq!(l.resource(n(9), n(10)), Some(spur));
        assert!(matches!(l.resource(n(5), n(8)), Some(Resource::Crossing(_))));
        assert_eq!(l.resource(n(1), n(2)), None, "3 m is wide");
        assert_eq!(l.edges_of(bypass).len(), 3);
        let route = [n(1), n(2), n(6), n(7), n(4), n(5), n(8)];
        let s = l.stretches(&route);
        assert_eq!(
            s,
            vec![
                Stretch { resource: bypass, enter: 1, exit: 4 },
                Stretch { resource: l.resource(n(5), n(8)).expect("crossing"), enter: 5, exit: 6 }
            ]
        );
    }

    #[test]
    fn a_narrow_way_is_shared_only_by_robots_going_the_same_way() {
        let cfg = TrafficConfig::default();
        let mut tr = Traffic::default();
        let r = Resource::Narrow(0);
        let (a, b, c) = (rid("a"), rid("b"), rid("c"));
        assert!(tr.claim(&cfg, &a, vec![Hold { resource: r, entry: NodeId(1) }], t(0)));
        assert!(tr.claim(&cfg, &b, vec![Hold { resource: r, entry: NodeId(1) }], t(1)), "same way in");
        assert!(!tr.claim(&cfg, &c, vec![Hold { resource: r, entry: NodeId(4) }], t(2)), "head-on waits");
        assert_eq!(tr.wait_for(&cfg)[&c], BTreeSet::from([a.clone(), b.clone()]));
        tr.free(&a, r);
        assert!(tr.grant_waiting(&cfg, t(9)).is_empty(), "b is still on it");
        // A robot coming the same way as b now queues behind c: no overtaking a waiting claim.
        assert!(!tr.claim(&cfg, &a, vec![Hold { resource: r, entry: NodeId(1) }], t(3)));
        tr.free(&b, r);
        assert_eq!(tr.grant_waiting(&cfg, t(9)), vec![c.clone()]);
        assert!(tr.grant_waiting(&cfg, t(9)).is_empty(), "a waits for c, head-on");
        tr.free(&c, r);
        assert_eq!(tr.grant_waiting(&cfg, t(9)), vec![a.clone()]);
        assert_eq!(tr.held_count(), 1);
    }

    #[test]
    fn a_spot_takes_one_robot_and_a_group_is_granted_whole_or_not_at_all() {
        let cfg = TrafficConfig::default();
        let mut tr = Traffic::default();
        let spot = Resource::Spot(NodeId(7));
        let way = Resource::Narrow(3);
        let (a, b) = (rid("a"), rid("b"));
        assert!(tr.claim(&cfg, &a, vec![Hold { resource: spot, entry: NodeId(6) }], t(0)));
        let group = vec![Hold { resource: way, entry: NodeId(2) }, Hold { resource: spot, entry: NodeId(6) }];
        assert!(!tr.claim(&cfg, &b, group.clone(), t(1)));
        assert!(tr.holders(way).next().is_none(), "b does not take the way while the spot is taken");
        // Claiming the same again keeps b's place.
        let turn = tr.claim_of(&b).expect("waiting").turn;
        assert!(!tr.claim(&cfg, &b, group, t(5)));
        assert_eq!(tr.claim_of(&b).expect("waiting").turn, turn);
        assert_eq!(tr.free_all(&a), vec![spot]);
        assert_eq!(tr.grant_waiting(&cfg, t(9)), vec![b.clone()]);
        assert_eq!(tr.holds(&b).len(), 2);
    }

    /// The cycles of the full wait-for graph, found the plain way (for comparing with [`Traffic::deadlocks`]).
    fn cycles_of_full_graph(tr: &Traffic, cfg: &TrafficConfig) -> Vec<Vec<RobotId>> {
        let g = tr.wait_for(cfg);
        let mut graph = petgraph::graph::DiGraph::<&RobotId, ()>::new();
        let mut idx = BTreeMap::new();
        for (r, on) in &g {
            for x in std::iter::once(r).chain(on) {
                idx.entry(x).or_insert_with(|| graph.add_node(x));
            }
        }
        for (r, on) in &g {
            for x in on {
                graph.add_edge(idx[r], idx[x], ());
            }
        }
        super::cycles(&graph)
    }

    #[test]
    fn a_queue_at_a_narrow_way_is_a_chain_and_its_cycles_are_those_of_the_full_graph() {
        let cfg = TrafficConfig::default();
        let mut tr = Traffic::default();
        let (way, spot) = (Resource::Narrow(0), Resource::Spot(NodeId(9)));
        // h is on the narrow way going one way; ten robots queue to enter it from the other end.
        let h = rid("h");
        tr.restore(&h, vec![Hold { resource: way, entry: NodeId(5) }]);
        let queue: Vec<RobotId> = (0..10).map(|k| rid(&format!("q{k}"))).collect();
        for (k, q) in queue.iter().enumerate() {
            assert!(!tr.claim(&cfg, q, vec![Hold { resource: way, entry: NodeId(6) }], t(k as u64)));
        }
        // Each waits for h and for every earlier claim; nobody waits for a queued robot: no cycle.
        assert_eq!(tr.wait_for(&cfg)[&queue[9]].len(), 10);
        assert!(tr.deadlocks(&cfg).is_empty());
        assert_eq!(tr.deadlocks(&cfg), cycles_of_full_graph(&tr, &cfg));
        // The last in the queue holds the spot h needs next: h and the whole queue wait on each other.
        tr.restore(&queue[9], vec![Hold { resource: spot, entry: NodeId(8) }]);
        assert!(!tr.claim(&cfg, &h, vec![Hold { resource: spot, entry: NodeId(8) }], t(20)));
        let d = tr.deadlocks(&cfg);
        assert_eq!(d, cycles_of_full_graph(&tr, &cfg));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].len(), 11, "{d:?}");
        // A robot in the middle of the queue gives up: the others still form one cycle, h with q9 and the rest.
        tr.withdraw(&queue[4]);
        assert_eq!(tr.deadlocks(&cfg), cycles_of_full_graph(&tr, &cfg));
        assert_eq!(tr.deadlocks(&cfg)[0].len(), 10);
    }

    #[test]
    fn a_cycle_of_waits_is_a_deadlock_and_nothing_else_is() {
        let cfg = TrafficConfig::default();
        let mut tr = Traffic::default();
        let (x, y) = (Resource::Spot(NodeId(1)), Resource::Spot(NodeId(2)));
        let (a, b, c) = (rid("a"), rid("b"), rid("c"));
        tr.restore(&a, vec![Hold { resource: x, entry: NodeId(0) }]);
        tr.restore(&b, vec![Hold { resource: y, entry: NodeId(0) }]);
        assert!(!tr.claim(&cfg, &c, vec![Hold { resource: x, entry: NodeId(0) }], t(0)));
        assert!(tr.deadlocks(&cfg).is_empty(), "c waits for a, who waits for nothing");
        assert!(!tr.claim(&cfg, &a, vec![Hold { resource: y, entry: NodeId(0) }], t(1)));
        assert!(tr.deadlocks(&cfg).is_empty(), "a waits for b, still no cycle");
        assert!(!tr.claim(&cfg, &b, vec![Hold { resource: x, entry: NodeId(0) }], t(2)));
        // b waits for a (holder of x) and c (earlier claim for x); a waits for b: a and b deadlock.
        let d = tr.deadlocks(&cfg);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains(&a) && d[0].contains(&b), "{d:?}");
        // b backs off: the cycle is gone.
        tr.withdraw(&b);
        assert!(tr.deadlocks(&cfg).is_empty());
    }
}
