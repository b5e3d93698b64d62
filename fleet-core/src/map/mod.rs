//! The map graph a sidewalk robot drives on: nodes with their local projection, directed edges with length and
//! crossing flag, a spatial index for snapping coordinates onto edges, and the set of closed edges (a blocked
//! sidewalk). Building it from OpenStreetMap is [`osm`]; the GeoJSON views are [`geojson`]; shortest paths over
//! it (contraction hierarchy, hub labels, the live search under closures) are [`crate::routing`].

pub mod geojson;
pub mod osm;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use petgraph::graph::{DiGraph, NodeIndex};
use rstar::primitives::{GeomWithData, Line};
use rstar::{PointDistance, RTree};
use serde::{Deserialize, Serialize};

use crate::routing::PreparedCh;
use crate::routing::ch::ChQuery;
use crate::routing::live::LiveGraph;
use crate::{CoreError, LatLon, NodeId};

pub use geojson::route_geojson;
pub use osm::{RawNodes, RawWay, Travel};

/// Earth radius used by the local projection, metres.
const EARTH_R: f64 = 6_371_008.8;

/// One node of the graph. `xy` is the local projection in metres around the map's origin.
#[derive(Debug, Clone, Copy)]
pub struct MapNode {
    pub osm_id: i64,
    pub pos: LatLon,
    pub xy: [f64; 2],
}

/// One directed edge. `length_m` is the great-circle length; `crossing` marks a street crossing and `signals`
/// one controlled by traffic signals; `width_m` is the usable width of its way (from OSM `width`/
/// `sidewalk:width`, else a default per way type).
/// `max_mps` caps a robot's speed on it (a speed-limited zone; infinite elsewhere).
#[derive(Debug, Clone, Copy)]
pub struct MapEdge {
    pub length_m: f64,
    pub crossing: bool,
    pub way_id: i64,
    pub width_m: f32,
    pub signals: bool,
    pub max_mps: f32,
}

/// An area where robots must go slower than they could (a market, a school street): operators draw it as a
/// polygon of (lat, lon) points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedZone {
    pub name: String,
    pub max_mps: f64,
    /// The outline, as [lat, lon] points (closed or not).
    pub polygon: Vec<[f64; 2]>,
}

impl SpeedZone {
    /// Checks the zone: a name, a positive limit, at least three valid points.
    pub fn checked(&self) -> Result<geo::Polygon<f64>, CoreError> {
        if !(self.max_mps.is_finite() && self.max_mps > 0.0) {
            return Err(CoreError::invalid(format!("speed zone {:?}: max_mps must be positive", self.name)));
        }
        if self.polygon.len() < 3 {
            return Err(CoreError::invalid(format!("speed zone {:?}: a polygon needs three points", self.name)));
        }
        let mut ring = Vec::with_capacity(self.polygon.len());
        for &[lat, lon] in &self.polygon {
            let p =
                LatLon::new(lat, lon).map_err(|e| CoreError::invalid(format!("speed zone {:?}: {e}", self.name)))?;
            ring.push(geo::coord! { x: p.lon(), y: p.lat() });
        }
        Ok(geo::Polygon::new(geo::LineString::new(ring), Vec::new()))
    }
}

/// How a robot moves over the graph: its cruising speed, the time a street crossing without signals costs it
/// (looking and yielding), and the expected wait at one with signals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub speed_mps: f64,
    pub crossing_penalty_s: f64,
    #[serde(default)]
    pub signal_wait_s: f64,
}

/// The expected wait at a signalised crossing for a robot arriving at a random moment of a `cycle_s` cycle with
/// `green_s` of green: red squared over twice the cycle.
pub fn expected_signal_wait_s(cycle_s: f64, green_s: f64) -> f64 {
    let red = (cycle_s - green_s).max(0.0);
    if cycle_s > 0.0 { red * red / (2.0 * cycle_s) } else { 0.0 }
}

impl Default for Profile {
    fn default() -> Self {
        Self { speed_mps: 1.6, crossing_penalty_s: 8.0, signal_wait_s: expected_signal_wait_s(90.0, 20.0) }
    }
}

/// What an import kept and what it dropped, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub nodes: usize,
    pub edges: usize,
    pub length_km: f64,
    pub ways_used: usize,
    /// Ways not used, by reason (for example `highway=steps`, `access=private`).
    pub ways_skipped: BTreeMap<String, usize>,
    /// Way node references pointing outside the extract.
    pub missing_node_refs: usize,
    /// Nodes with a barrier a robot cannot pass (the ways through them are cut there).
    pub barrier_nodes: usize,
    /// Nodes tagged as traffic signals or signalised crossings.
    #[serde(default)]
    pub signal_nodes: usize,
    pub components_dropped: usize,
    pub nodes_dropped: usize,
}

/// A coordinate snapped onto the graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snap {
    /// The nearer end of the nearest edge: where stops of a mission are placed.
    pub node: NodeId,
    /// Distance from the coordinate to the nearest edge, metres.
    pub edge_distance_m: f64,
    /// The nearest edge (both directions exist) and the nearest point on it, at `fraction` of the way from
    /// `edge.0` to `edge.1`.
    pub edge: (NodeId, NodeId),
    pub point: LatLon,
    pub fraction: f64,
}

/// A route over the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub nodes: Vec<NodeId>,
    pub length_m: f64,
    pub duration_s: f64,
}

impl Clone for MapGraph {
    fn clone(&self) -> Self {
        Self {
            graph: self.graph.clone(),
            origin: self.origin,
            floor_x: self.floor_x,
            index: self.index.clone(),
            closed: self.closed.clone(),
            live: self.live.clone(),
            closed_arc: self.closed_arc.clone(),
            ch: self.ch.clone(),
            // Scratch is per value, made on first use.
            ch_query: Mutex::new(None),
            closed_times: Mutex::default(),
        }
    }
}

/// An indexed edge: its segment in local metres and its two node indices.
type Segment = GeomWithData<Line<[f64; 2]>, (u32, u32)>;

/// The walkable graph. Invariant: strongly connected when built by [`MapGraph::from_osm`] or
/// [`MapGraph::from_parts`], so every node reaches every other while no edge is closed.
#[derive(Debug)]
pub struct MapGraph {
    pub(crate) graph: DiGraph<MapNode, MapEdge>,
    pub(crate) origin: LatLon,
    /// Scale on east-west offsets in the local frame that makes [`MapGraph::floor_m`] a true lower bound on
    /// every node of the map (the frame's metres are exact only at the origin's latitude).
    pub(crate) floor_x: f64,
    pub(crate) index: RTree<Segment>,
    /// Closed directed edges, as (from, to).
    pub(crate) closed: BTreeSet<(NodeId, NodeId)>,
    /// Array copy of the graph for searches on the live graph (closures applied).
    pub(crate) live: Arc<LiveGraph>,
    /// Per arc of `live`, closed or not (kept in step with `closed`).
    pub(crate) closed_arc: Vec<bool>,
    /// The contraction hierarchy of the open graph for one profile, shared by clones.
    pub(crate) ch: Option<Arc<PreparedCh>>,
    /// Query scratch for `ch`. A lock only so that a map can be shared; callers use a map from one thread at a
    /// time, and a contended lock falls back to A* rather than wait.
    pub(crate) ch_query: Mutex<Option<ChQuery>>,
    /// Travel times found on the live graph while the closures in force were, so that a pair whose fastest
    /// route crosses a closure is searched once per closure set, not once per question; emptied whenever an
    /// edge closes or opens or speeds change.
    pub(crate) closed_times: Mutex<crate::routing::ClosedTimes>,
}

pub(crate) fn project(origin: LatLon, p: LatLon) -> [f64; 2] {
    let k = std::f64::consts::PI / 180.0;
    [(p.lon() - origin.lon()) * k * EARTH_R * (origin.lat() * k).cos(), (p.lat() - origin.lat()) * k * EARTH_R]
}

impl MapGraph {
    /// What node ids mean on this map, as a short hex digest: every node's OSM id and position in id order, and
    /// every edge's ends. Two imports agree on it exactly when a [`NodeId`] names the same place on both, so a
    /// store written on one map is only read back on a map with the same fingerprint. Closures and speed
    /// limits are left out: they change what a route costs, not what an id means.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update((self.graph.node_count() as u64).to_le_bytes());
        for n in self.graph.node_weights() {
            h.update(n.osm_id.to_le_bytes());
            h.update(n.pos.lat().to_bits().to_le_bytes());
            h.update(n.pos.lon().to_bits().to_le_bytes());
        }
        h.update((self.graph.edge_count() as u64).to_le_bytes());
        for e in self.graph.raw_edges() {
            h.update((e.source().index() as u64).to_le_bytes());
            h.update((e.target().index() as u64).to_le_bytes());
        }
        h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
    }

    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }
    pub fn origin(&self) -> LatLon {
        self.origin
    }

    /// The node, or `None` for an id not in this map.
    pub fn node(&self, id: NodeId) -> Option<&MapNode> {
        self.graph.node_weight(NodeIndex::new(id.0 as usize))
    }

    /// Position of a node. Callers hold ids produced by this map.
    pub fn pos(&self, id: NodeId) -> Option<LatLon> {
        self.node(id).map(|n| n.pos)
    }

    /// A distance in metres that no path between the two nodes is shorter than: the straight line in the local
    /// frame, east-west offsets scaled down to the narrowest latitude of the map, less 0.1% for the frame's
    /// curvature. Two multiplications and a square root, for bounds that must be cheap; 0 for unknown nodes.
    pub fn floor_m(&self, a: NodeId, b: NodeId) -> f64 {
        match (self.node(a), self.node(b)) {
            (Some(a), Some(b)) => {
                let dx = (a.xy[0] - b.xy[0]) * self.floor_x;
                let dy = a.xy[1] - b.xy[1];
                (dx * dx + dy * dy).sqrt() * 0.999
            }
            _ => 0.0,
        }
    }

    /// Projects a coordinate into the map's local frame (metres east, metres north of the origin).
    pub fn to_xy(&self, p: LatLon) -> [f64; 2] {
        project(self.origin, p)
    }

    /// Snaps `p` onto the nearest edge; refuses a coordinate farther than `max_m` from every usable way.
    pub fn snap(&self, p: LatLon, max_m: f64) -> Result<Snap, CoreError> {
        let q = project(self.origin, p);
        let Some(seg) = self.index.nearest_neighbor(&q) else {
            return Err(CoreError::invalid("the map is empty"));
        };
        let edge_distance_m = seg.geom().distance_2(&q).sqrt();
        if edge_distance_m > max_m {
            return Err(CoreError::invalid(format!(
                "{p} is {edge_distance_m:.0} m from the nearest walkable way; the limit is {max_m:.0} m"
            )));
        }
        let (a, b) = seg.data;
        let (pa, pb) = (self.graph[NodeIndex::new(a as usize)].xy, self.graph[NodeIndex::new(b as usize)].xy);
        let (dx, dy) = (pb[0] - pa[0], pb[1] - pa[1]);
        let len2 = dx * dx + dy * dy;
        let fraction =
            if len2 > 0.0 { (((q[0] - pa[0]) * dx + (q[1] - pa[1]) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
        let point = self.unproject([pa[0] + fraction * dx, pa[1] + fraction * dy]).unwrap_or(p);
        Ok(Snap {
            node: NodeId(if fraction <= 0.5 { a } else { b }),
            edge_distance_m,
            edge: (NodeId(a), NodeId(b)),
            point,
            fraction,
        })
    }

    /// The coordinate of a point in the local frame.
    fn unproject(&self, xy: [f64; 2]) -> Option<LatLon> {
        let k = std::f64::consts::PI / 180.0;
        let lat = self.origin.lat() + xy[1] / EARTH_R / k;
        let lon = self.origin.lon() + xy[0] / (EARTH_R * (self.origin.lat() * k).cos()) / k;
        LatLon::new(lat, lon).ok()
    }

    /// Fastest route between two snapped points, each possibly in the middle of an edge: tries leaving and
    /// entering through either end of the two edges. The geometry starts and ends at the snapped points.
    pub fn route_between(&self, from: &Snap, to: &Snap, profile: Profile) -> Option<(Route, Vec<LatLon>)> {
        let part = |s: &Snap, toward_first: bool| -> f64 {
            let (a, b) = (NodeIndex::new(s.edge.0.0 as usize), NodeIndex::new(s.edge.1.0 as usize));
            let ms = self.graph.find_edge(a, b).map_or(0, |e| Self::edge_ms(&self.graph[e], profile)) as f64;
            ms * if toward_first { s.fraction } else { 1.0 - s.fraction } / 1000.0
        };
        let mut best: Option<(f64, Route)> = None;
        for (exit, exit_s) in [(from.edge.0, part(from, true)), (from.edge.1, part(from, false))] {
            for (entry, entry_s) in [(to.edge.0, part(to, true)), (to.edge.1, part(to, false))] {
                let Some(r) = self.route(exit, entry, profile) else { continue };
                let total = exit_s + r.duration_s + entry_s;
                if best.as_ref().is_none_or(|(b, _)| total < *b) {
                    best = Some((total, r));
                }
            }
        }
        let (total, mut route) = best?;
        let mut geometry = vec![from.point];
        geometry.extend(self.geometry(&route.nodes));
        geometry.push(to.point);
        route.length_m = geometry.windows(2).map(|w| w[0].distance_m(w[1])).sum();
        route.duration_s = total;
        Some((route, geometry))
    }

    /// Closes the edge between two adjacent nodes in both directions. Returns false when they are not adjacent.
    pub fn close_edge(&mut self, a: NodeId, b: NodeId) -> bool {
        if !self.adjacent(a, b) {
            return false;
        }
        self.closed.insert((a, b));
        self.closed.insert((b, a));
        self.set_arc_flags(a, b, true);
        self.forget_closed_times();
        true
    }

    fn set_arc_flags(&mut self, a: NodeId, b: NodeId, closed: bool) {
        for (x, y) in [(a, b), (b, a)] {
            for i in self.live.arcs(x.0) {
                if self.live.to[i] == y.0 {
                    self.closed_arc[i] = closed;
                }
            }
        }
    }

    /// Reopens a closed edge (both directions). Returns false when it was not closed.
    pub fn open_edge(&mut self, a: NodeId, b: NodeId) -> bool {
        let x = self.closed.remove(&(a, b));
        let y = self.closed.remove(&(b, a));
        self.set_arc_flags(a, b, false);
        self.forget_closed_times();
        x || y
    }

    fn forget_closed_times(&mut self) {
        self.closed_times.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    pub fn closed_edges(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.closed.iter().copied().filter(|(a, b)| a < b)
    }

    pub fn adjacent(&self, a: NodeId, b: NodeId) -> bool {
        let (ia, ib) = (NodeIndex::new(a.0 as usize), NodeIndex::new(b.0 as usize));
        ia.index() < self.graph.node_count()
            && ib.index() < self.graph.node_count()
            && self.graph.find_edge(ia, ib).is_some()
    }

    /// The polyline of a node path.
    pub fn geometry(&self, nodes: &[NodeId]) -> Vec<LatLon> {
        nodes.iter().filter_map(|&n| self.pos(n)).collect()
    }

    /// Caps the speed on every edge that touches one of the zones (checked polygons, x = lon and y = lat, with
    /// their limits; the lowest limit where zones overlap) and returns how many edges got a cap. The prepared hierarchy is dropped: travel times changed.
    pub fn limit_speed(&mut self, polys: &[(geo::Polygon<f64>, f64)]) -> usize {
        use geo::Intersects;
        if polys.is_empty() {
            return 0;
        }
        let mut capped = 0;
        let ids: Vec<petgraph::graph::EdgeIndex> = self.graph.edge_indices().collect();
        for e in ids {
            let Some((a, b)) = self.graph.edge_endpoints(e) else { continue };
            let (pa, pb) = (self.graph[a].pos, self.graph[b].pos);
            let line =
                geo::Line::new(geo::coord! { x: pa.lon(), y: pa.lat() }, geo::coord! { x: pb.lon(), y: pb.lat() });
            let cap =
                polys.iter().filter(|(p, _)| p.intersects(&line)).map(|(_, m)| *m as f32).fold(f32::INFINITY, f32::min);
            if cap.is_finite() {
                self.graph[e].max_mps = cap;
                capped += 1;
            }
        }
        self.live = Arc::new(LiveGraph::new(&self.graph));
        self.ch = None;
        self.forget_closed_times();
        capped
    }

    /// A square grid of `n` x `n` two-way sidewalks 2 m wide, `step_deg` degrees apart both ways, from
    /// 43.73 N 7.42 E: a small map for tests, benchmarks and examples.
    pub fn street_grid(n: usize, step_deg: f64) -> Result<MapGraph, CoreError> {
        let mut nodes = RawNodes::default();
        let id = |r: usize, c: usize| (r * n + c + 1) as i64;
        for r in 0..n {
            for c in 0..n {
                let p = LatLon::new(43.73 + r as f64 * step_deg, 7.42 + c as f64 * step_deg)?;
                nodes.coords.insert(id(r, c), p);
            }
        }
        let way = |wid: usize, refs: Vec<i64>| RawWay {
            id: wid as i64,
            refs,
            crossing: false,
            travel: Travel::Both,
            width_m: 2.0,
            signals: false,
        };
        let mut ways: Vec<RawWay> = (0..n).map(|r| way(r + 1, (0..n).map(|c| id(r, c)).collect())).collect();
        ways.extend((0..n).map(|c| way(n + c + 1, (0..n).map(|r| id(r, c)).collect())));
        Ok(MapGraph::from_parts(&nodes, &ways, ImportSummary::default())?.0)
    }

    /// The edge from `a` to `b`, when the graph has one.
    pub fn edge(&self, a: NodeId, b: NodeId) -> Option<&MapEdge> {
        if !self.adjacent(a, b) {
            return None;
        }
        let e = self.graph.find_edge(NodeIndex::new(a.0 as usize), NodeIndex::new(b.0 as usize))?;
        self.graph.edge_weight(e)
    }

    /// Every directed edge, as (from, to, edge).
    pub fn edges(&self) -> impl Iterator<Item = (NodeId, NodeId, &MapEdge)> + '_ {
        use petgraph::visit::EdgeRef;
        self.graph
            .edge_references()
            .map(|e| (NodeId(e.source().index() as u32), NodeId(e.target().index() as u32), e.weight()))
    }

    /// The nodes one edge away from `a` in either direction, each once.
    pub fn neighbours(&self, a: NodeId) -> BTreeSet<NodeId> {
        if self.node(a).is_none() {
            return BTreeSet::new();
        }
        self.graph.neighbors_undirected(NodeIndex::new(a.0 as usize)).map(|n| NodeId(n.index() as u32)).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::geojson::route_geojson;
    use super::osm::{blocks_robot, skip_reason};
    use super::*;

    fn way(id: i64, refs: Vec<i64>, crossing: bool, travel: Travel) -> RawWay {
        RawWay { id, refs, crossing, travel, width_m: 2.0, signals: false }
    }

    /// A 4x4 grid of streets, 0.001 degrees apart (about 111 m north-south), plus a detached way that is dropped.
    pub fn grid() -> MapGraph {
        let mut nodes = RawNodes::default();
        let mut ways = Vec::new();
        let id = |r: i64, c: i64| r * 10 + c + 1;
        for r in 0..4 {
            for c in 0..4 {
                let p = LatLon::new(43.73 + r as f64 * 0.001, 7.42 + c as f64 * 0.001).expect("valid");
                nodes.coords.insert(id(r, c), p);
            }
        }
        for r in 0..4 {
            ways.push(way(100 + r, (0..4).map(|c| id(r, c)).collect(), false, Travel::Both));
        }
        for c in 0..4 {
            ways.push(way(200 + c, (0..4).map(|r| id(r, c)).collect(), c == 3, Travel::Both));
        }
        nodes.coords.insert(900, LatLon::new(43.80, 7.50).expect("valid"));
        nodes.coords.insert(901, LatLon::new(43.8001, 7.50).expect("valid"));
        ways.push(way(300, vec![900, 901, 999], false, Travel::Both));
        let (g, _) = MapGraph::from_parts(&nodes, &ways, ImportSummary::default()).expect("grid builds");
        g
    }

    fn line_nodes() -> RawNodes {
        let mut nodes = RawNodes::default();
        for (i, lat) in [(1, 43.73), (2, 43.731), (3, 43.732), (8, 43.8), (9, 43.801)] {
            nodes.coords.insert(i, LatLon::new(lat, 7.42).expect("valid"));
        }
        nodes
    }

    #[test]
    fn keeps_largest_component_and_reports_the_rest() {
        let ways = [way(1, vec![1, 2, 3], false, Travel::Both), way(2, vec![8, 9, 77], false, Travel::Both)];
        let (g, s) = MapGraph::from_parts(&line_nodes(), &ways, ImportSummary::default()).expect("builds");
        assert_eq!((g.node_count(), g.edge_count()), (3, 4));
        assert_eq!((s.components_dropped, s.nodes_dropped, s.missing_node_refs), (1, 2, 1));
    }

    #[test]
    fn barriers_cut_ways_and_one_way_footpaths_are_directed() {
        // 1-2-3 with a turnstile at 2, and a loop 1->3 one-way plus 3-1 back: only the loop's nodes remain.
        let mut nodes = line_nodes();
        nodes.blocked.insert(2);
        nodes.coords.insert(4, LatLon::new(43.731, 7.421).expect("valid"));
        let ways = [
            way(1, vec![1, 2, 3], false, Travel::Both),
            way(2, vec![1, 4, 3], false, Travel::Forward),
            way(3, vec![3, 1], false, Travel::Both),
        ];
        let (g, s) = MapGraph::from_parts(&nodes, &ways, ImportSummary::default()).expect("builds");
        assert_eq!(s.barrier_nodes, 1);
        assert_eq!(g.node_count(), 3, "the blocked node is gone");
        // 1->4->3 exists one way only: 2 one-way edges plus the two-way 3-1.
        assert_eq!(g.edge_count(), 4);
        assert!(blocks_robot(&[("barrier", "turnstile")]));
        assert!(!blocks_robot(&[("barrier", "bollard")]));
        assert!(blocks_robot(&[("barrier", "kerb"), ("kerb", "raised")]));
        assert!(!blocks_robot(&[("barrier", "kerb"), ("kerb", "lowered")]));
    }

    #[test]
    fn snaps_to_the_nearest_edge_and_refuses_far_points() {
        let g = grid();
        // Just off the middle of the bottom street, nearer its west end.
        let p = LatLon::new(43.73002, 7.42030).expect("valid");
        let s = g.snap(p, 50.0).expect("close enough");
        assert!(s.edge_distance_m < 3.0, "{s:?}");
        assert_eq!(g.pos(s.node), Some(LatLon::new(43.73, 7.42).expect("valid")));
        assert!((s.fraction - 0.3).abs() < 0.02, "{s:?}");
        assert!(s.point.distance_m(LatLon::new(43.73, 7.4203).expect("valid")) < 1.0, "{s:?}");
        // Between two mid-edge points on the same street: the route runs along it, not via a detour.
        let q = g.snap(LatLon::new(43.72998, 7.42250).expect("valid"), 50.0).expect("close");
        let (r, geom) = g.route_between(&s, &q, Profile::default()).expect("route");
        assert!((r.length_m - s.point.distance_m(q.point)).abs() < 1.0, "{} m", r.length_m);
        assert_eq!((geom[0], *geom.last().expect("geometry")), (s.point, q.point));
        let json: serde_json::Value = serde_json::from_str(&route_geojson(&r, &geom)).expect("valid GeoJSON");
        assert_eq!(json["geometry"]["type"], "LineString");
        let net: serde_json::Value = serde_json::from_str(&g.to_geojson()).expect("valid GeoJSON");
        assert_eq!(net["features"].as_array().map(Vec::len), Some(g.edge_count() / 2));
        let far = LatLon::new(43.75, 7.42).expect("valid");
        let err = g.snap(far, 50.0).expect_err("too far");
        assert!(err.to_string().contains("m from the nearest walkable way"), "{err}");
    }

    #[test]
    fn astar_matches_dijkstra_and_closures_reroute() {
        let mut g = grid();
        let p = Profile::default();
        let n = g.node_count() as u32;
        let mut prepared = g.clone();
        prepared.prepare(p);
        for a in 0..n {
            for b in 0..n {
                let d = g.dijkstra_ms(NodeId(a), NodeId(b), p).expect("connected");
                let r = g.route(NodeId(a), NodeId(b), p).expect("connected");
                assert_eq!((r.duration_s * 1000.0).round() as u64, d, "A* {a}->{b}");
                let c = prepared.route(NodeId(a), NodeId(b), p).expect("connected");
                assert_eq!((c.duration_s * 1000.0).round() as u64, d, "CH {a}->{b}");
                assert_eq!((c.nodes[0], *c.nodes.last().expect("path")), (NodeId(a), NodeId(b)));
            }
        }
        let before = g.route(NodeId(0), NodeId(1), p).expect("route");
        assert_eq!(before.nodes.len(), 2);
        assert!(g.close_edge(NodeId(0), NodeId(1)));
        let after = g.route(NodeId(0), NodeId(1), p).expect("detour");
        assert!(after.nodes.len() > 2 && after.duration_s > before.duration_s);
        let d = g.dijkstra_ms(NodeId(0), NodeId(1), p).expect("detour");
        assert_eq!((after.duration_s * 1000.0).round() as u64, d);
        // The hierarchy built before the closure still answers exactly, and never through the closed edge.
        prepared.close_edge(NodeId(0), NodeId(1));
        assert_eq!(prepared.route(NodeId(0), NodeId(1), p), Some(after.clone()));
        assert_eq!(prepared.travel_secs(NodeId(0), NodeId(1), p), Some(after.duration_s));
        assert!(g.open_edge(NodeId(0), NodeId(1)));
        assert_eq!(g.route(NodeId(0), NodeId(1), p), Some(before));
    }

    #[test]
    fn skip_rules() {
        let t = |pairs: &[(&'static str, &'static str)]| -> std::collections::HashMap<&str, &str> {
            pairs.iter().copied().collect()
        };
        assert_eq!(skip_reason(&t(&[("highway", "footway")])), None);
        assert_eq!(skip_reason(&t(&[("highway", "steps")])).as_deref(), Some("highway=steps"));
        assert_eq!(skip_reason(&t(&[("highway", "motorway")])).as_deref(), Some("highway=motorway"));
        assert!(skip_reason(&t(&[("highway", "service"), ("access", "private")])).is_some());
        assert_eq!(skip_reason(&t(&[("highway", "service"), ("access", "private"), ("foot", "yes")])), None);
        assert!(skip_reason(&t(&[("highway", "residential"), ("foot", "no")])).is_some());
    }
}
