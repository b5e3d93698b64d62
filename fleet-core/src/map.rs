//! The map graph a sidewalk robot drives on: imported from OpenStreetMap (`.osm.pbf` bytes), reduced to its
//! largest strongly connected component, with a spatial index for snapping coordinates onto edges and an A*
//! router over travel times. Closed edges (a blocked sidewalk) are skipped by the router at once.
//!
//! The importer takes bytes, not a path: reading the file is the caller's IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use rstar::primitives::{GeomWithData, Line};
use rstar::{PointDistance, RTree};
use serde::{Deserialize, Serialize};

use crate::ch::{ChQuery, ContractionHierarchy};
use crate::hl::HubLabels;
use crate::{CoreError, LatLon, NodeId};

/// Earth radius used by the local projection, metres.
const EARTH_R: f64 = 6_371_008.8;

/// One node of the graph. `xy` is the local projection in metres around the map's origin.
#[derive(Debug, Clone, Copy)]
pub struct MapNode {
    pub osm_id: i64,
    pub pos: LatLon,
    pub xy: [f64; 2],
}

/// One directed edge. `length_m` is the great-circle length; `crossing` marks a street crossing.
#[derive(Debug, Clone, Copy)]
pub struct MapEdge {
    pub length_m: f64,
    pub crossing: bool,
    pub way_id: i64,
}

/// How a robot moves over the graph: its cruising speed and the time a street crossing costs it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub speed_mps: f64,
    pub crossing_penalty_s: f64,
}

impl Default for Profile {
    fn default() -> Self {
        Self { speed_mps: 1.6, crossing_penalty_s: 8.0 }
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
        }
    }
}

/// The graph in arrays: outgoing arcs per node (`first`/`to`), incoming arcs per node as indices into them
/// (`rfirst`/`rarc`), and each arc's length and crossing flag.
#[derive(Debug)]
struct LiveGraph {
    first: Vec<u32>,
    to: Vec<u32>,
    from: Vec<u32>,
    length_m: Vec<f64>,
    crossing: Vec<bool>,
    rfirst: Vec<u32>,
    rarc: Vec<u32>,
}

impl LiveGraph {
    fn new(g: &DiGraph<MapNode, MapEdge>) -> Self {
        let n = g.node_count();
        let mut out: Vec<Vec<(u32, f64, bool)>> = vec![Vec::new(); n];
        for e in g.edge_references() {
            out[e.source().index()].push((e.target().index() as u32, e.weight().length_m, e.weight().crossing));
        }
        let mut s = Self {
            first: vec![0],
            to: Vec::new(),
            from: Vec::new(),
            length_m: Vec::new(),
            crossing: Vec::new(),
            rfirst: vec![0; n + 1],
            rarc: Vec::new(),
        };
        for (u, list) in out.into_iter().enumerate() {
            for (v, len, crossing) in list {
                s.to.push(v);
                s.from.push(u as u32);
                s.length_m.push(len);
                s.crossing.push(crossing);
            }
            s.first.push(s.to.len() as u32);
        }
        // Incoming arcs, grouped by head.
        let mut inc: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, &v) in s.to.iter().enumerate() {
            inc[v as usize].push(i as u32);
        }
        for (v, list) in inc.into_iter().enumerate() {
            s.rarc.extend(list);
            s.rfirst[v + 1] = s.rarc.len() as u32;
        }
        s
    }

    fn arcs(&self, v: u32) -> std::ops::Range<usize> {
        self.first[v as usize] as usize..self.first[v as usize + 1] as usize
    }

    fn ms(&self, i: usize, p: Profile) -> u64 {
        MapGraph::edge_ms(&MapEdge { length_m: self.length_m[i], crossing: self.crossing[i], way_id: 0 }, p)
    }

    /// Bidirectional Dijkstra skipping closed arcs: (ms, node path).
    fn search(&self, closed: &[bool], s: u32, t: u32, p: Profile) -> Option<(u64, Vec<u32>)> {
        let n = self.first.len() - 1;
        if s as usize >= n || t as usize >= n {
            return None;
        }
        if s == t {
            return Some((0, vec![s]));
        }
        let mut dist = [vec![u64::MAX; n], vec![u64::MAX; n]];
        let mut parent = [vec![u32::MAX; n], vec![u32::MAX; n]];
        let mut heap: [std::collections::BinaryHeap<std::cmp::Reverse<(u64, u32)>>; 2] = Default::default();
        dist[0][s as usize] = 0;
        dist[1][t as usize] = 0;
        heap[0].push(std::cmp::Reverse((0, s)));
        heap[1].push(std::cmp::Reverse((0, t)));
        let mut best = (u64::MAX, u32::MAX);
        loop {
            let top =
                |h: &std::collections::BinaryHeap<std::cmp::Reverse<(u64, u32)>>| h.peek().map_or(u64::MAX, |r| r.0.0);
            let (tf, tb) = (top(&heap[0]), top(&heap[1]));
            if tf == u64::MAX && tb == u64::MAX || tf.saturating_add(tb) >= best.0 {
                break;
            }
            let d = usize::from(tb < tf);
            let Some(std::cmp::Reverse((du, u))) = heap[d].pop() else { break };
            if du > dist[d][u as usize] {
                continue;
            }
            let (lo, hi) = if d == 0 {
                (self.first[u as usize] as usize, self.first[u as usize + 1] as usize)
            } else {
                (self.rfirst[u as usize] as usize, self.rfirst[u as usize + 1] as usize)
            };
            for k in lo..hi {
                let i = if d == 0 { k } else { self.rarc[k] as usize };
                if closed[i] {
                    continue;
                }
                let v = if d == 0 { self.to[i] } else { self.from[i] };
                let nd = du + self.ms(i, p);
                if nd < dist[d][v as usize] {
                    dist[d][v as usize] = nd;
                    parent[d][v as usize] = i as u32;
                    heap[d].push(std::cmp::Reverse((nd, v)));
                    let other = dist[1 - d][v as usize];
                    if other != u64::MAX && nd + other < best.0 {
                        best = (nd + other, v);
                    }
                }
            }
        }
        if best.0 == u64::MAX {
            return None;
        }
        let mut path = vec![best.1];
        let mut v = best.1;
        while parent[0][v as usize] != u32::MAX {
            v = self.from[parent[0][v as usize] as usize];
            path.push(v);
        }
        path.reverse();
        let mut v = best.1;
        while parent[1][v as usize] != u32::MAX {
            v = self.to[parent[1][v as usize] as usize];
            path.push(v);
        }
        Some((best.0, path))
    }
}

/// An indexed edge: its segment in local metres and its two node indices.
type Segment = GeomWithData<Line<[f64; 2]>, (u32, u32)>;

/// The walkable graph. Invariant: strongly connected when built by [`MapGraph::from_osm`] or
/// [`MapGraph::from_parts`], so every node reaches every other while no edge is closed.
#[derive(Debug)]
pub struct MapGraph {
    graph: DiGraph<MapNode, MapEdge>,
    origin: LatLon,
    /// Scale on east-west offsets in the local frame that makes [`MapGraph::floor_m`] a true lower bound on
    /// every node of the map (the frame's metres are exact only at the origin's latitude).
    floor_x: f64,
    index: RTree<Segment>,
    /// Closed directed edges, as (from, to).
    closed: BTreeSet<(NodeId, NodeId)>,
    /// Array copy of the graph for searches on the live graph (closures applied).
    live: Arc<LiveGraph>,
    /// Per arc of `live`, closed or not (kept in step with `closed`).
    closed_arc: Vec<bool>,
    /// The contraction hierarchy of the open graph for one profile, shared by clones.
    ch: Option<Arc<PreparedCh>>,
    /// Query scratch for `ch`. A lock only so that a map can be shared; callers use a map from one thread at a
    /// time, and a contended lock falls back to A* rather than wait.
    ch_query: Mutex<Option<ChQuery>>,
}

/// A hierarchy and the profile its weights were computed for.
#[derive(Debug)]
struct PreparedCh {
    profile: Profile,
    ch: ContractionHierarchy,
    /// Hub labels over `ch`, when they fit [`LABEL_BUDGET_BYTES`].
    hl: Option<HubLabels>,
}

/// Memory the hub labels of one map may take; bigger maps answer from the hierarchy alone.
pub const LABEL_BUDGET_BYTES: usize = 256 << 20;

/// Why a way is not walkable for a wheeled sidewalk robot, or `None` when it is.
fn skip_reason(tags: &HashMap<&str, &str>) -> Option<String> {
    let Some(highway) = tags.get("highway").copied() else {
        return Some("no highway tag".into());
    };
    let usable = matches!(
        highway,
        "footway"
            | "pedestrian"
            | "path"
            | "living_street"
            | "residential"
            | "service"
            | "unclassified"
            | "tertiary"
            | "tertiary_link"
            | "secondary"
            | "secondary_link"
            | "primary"
            | "primary_link"
            | "track"
            | "cycleway"
            | "corridor"
    );
    if !usable {
        return Some(format!("highway={highway}"));
    }
    let foot = tags.get("foot").copied();
    let foot_allowed = matches!(foot, Some("yes" | "designated" | "permissive"));
    if matches!(foot, Some("no" | "private" | "use_sidepath")) {
        return Some(format!("foot={}", foot.unwrap_or_default()));
    }
    if let Some(access) = tags.get("access").copied()
        && matches!(access, "no" | "private")
        && !foot_allowed
    {
        return Some(format!("access={access}"));
    }
    if highway == "cycleway" && !foot_allowed {
        return Some("highway=cycleway without foot access".into());
    }
    if tags.get("area").copied() == Some("yes") && highway != "pedestrian" {
        return Some("area=yes".into());
    }
    // On a main road the robot drives on the sidewalk: none mapped as absent.
    let main_road = matches!(
        highway,
        "primary" | "primary_link" | "secondary" | "secondary_link" | "tertiary" | "tertiary_link" | "unclassified"
    );
    if main_road && !foot_allowed && matches!(tags.get("sidewalk").copied(), Some("no" | "none")) {
        return Some(format!("highway={highway} with sidewalk=no"));
    }
    None
}

/// Does a node's barrier stop a wheeled robot about 60 cm wide? Bollards, lift gates and open gates do not.
fn blocks_robot(tags: &[(&str, &str)]) -> bool {
    let get = |k: &str| tags.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    match get("barrier") {
        Some(
            "wall"
            | "fence"
            | "turnstile"
            | "full-height_turnstile"
            | "stile"
            | "kissing_gate"
            | "block"
            | "log"
            | "chain"
            | "cycle_barrier"
            | "debris"
            | "hampshire_gate",
        ) => true,
        Some("kerb") => matches!(get("kerb"), Some("raised" | "rolled" | "yes") | None),
        Some("gate") => matches!(get("access"), Some("no" | "private")) || get("locked") == Some("yes"),
        _ => false,
    }
}

/// Which way a robot may travel a way, from `oneway:foot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Travel {
    Both,
    Forward,
    Backward,
}

fn travel(tags: &HashMap<&str, &str>) -> Travel {
    match tags.get("oneway:foot").copied() {
        Some("yes" | "true" | "1") => Travel::Forward,
        Some("-1" | "reverse") => Travel::Backward,
        _ => Travel::Both,
    }
}

/// Node data the importer collects: coordinates, street crossings, and barriers a robot cannot pass.
#[derive(Debug, Clone, Default)]
pub struct RawNodes {
    pub coords: HashMap<i64, LatLon>,
    pub crossing: BTreeSet<i64>,
    pub blocked: BTreeSet<i64>,
}

fn project(origin: LatLon, p: LatLon) -> [f64; 2] {
    let k = std::f64::consts::PI / 180.0;
    [(p.lon() - origin.lon()) * k * EARTH_R * (origin.lat() * k).cos(), (p.lat() - origin.lat()) * k * EARTH_R]
}

/// A way as the importer keeps it: its id, node refs and whether it is a crossing.
pub struct RawWay {
    pub id: i64,
    pub refs: Vec<i64>,
    pub crossing: bool,
    pub travel: Travel,
}

impl MapGraph {
    /// Imports the walkable network from `.osm.pbf` bytes.
    pub fn from_osm(pbf: &[u8]) -> Result<(Self, ImportSummary), CoreError> {
        let mut nodes = RawNodes::default();
        let mut ways: Vec<RawWay> = Vec::new();
        let mut summary = ImportSummary::default();
        let reader = osmpbf::ElementReader::new(std::io::Cursor::new(pbf));
        let mut node = |id: i64, lat: f64, lon: f64, tags: &[(&str, &str)]| {
            // A node with bad coordinates is treated as missing: the segments through it are dropped.
            if let Ok(p) = LatLon::new(lat, lon) {
                nodes.coords.insert(id, p);
                if tags.iter().any(|&(k, v)| k == "highway" && v == "crossing") {
                    nodes.crossing.insert(id);
                }
                if blocks_robot(tags) {
                    nodes.blocked.insert(id);
                }
            }
        };
        reader
            .for_each(|el| match el {
                osmpbf::Element::Node(n) => {
                    let tags: Vec<(&str, &str)> = n.tags().collect();
                    node(n.id(), n.lat(), n.lon(), &tags)
                }
                osmpbf::Element::DenseNode(n) => {
                    let tags: Vec<(&str, &str)> = n.tags().collect();
                    node(n.id(), n.lat(), n.lon(), &tags)
                }
                osmpbf::Element::Way(w) => {
                    let tags: HashMap<&str, &str> = w.tags().collect();
                    if !tags.contains_key("highway") {
                        return;
                    }
                    match skip_reason(&tags) {
                        Some(reason) => *summary.ways_skipped.entry(reason).or_default() += 1,
                        None => ways.push(RawWay {
                            id: w.id(),
                            refs: w.refs().collect(),
                            crossing: tags.get("footway").copied() == Some("crossing")
                                || tags.get("highway").copied() == Some("crossing"),
                            travel: travel(&tags),
                        }),
                    }
                }
                osmpbf::Element::Relation(_) => {}
            })
            .map_err(|e| CoreError::invalid(format!("cannot read the OSM PBF data: {e}")))?;
        summary.ways_used = ways.len();
        Self::from_parts(&nodes, &ways, summary)
    }

    /// Builds the graph from nodes and ways (segments in the directions the way allows; a blocked or missing
    /// node cuts the way), keeping the largest strongly connected component. Used by the importer and by tests
    /// with hand-made maps.
    pub fn from_parts(
        nodes: &RawNodes,
        ways: &[RawWay],
        mut summary: ImportSummary,
    ) -> Result<(Self, ImportSummary), CoreError> {
        let (coords, crossing_nodes) = (&nodes.coords, &nodes.crossing);
        summary.barrier_nodes = nodes.blocked.len();
        // Full graph first, over every referenced node we have coordinates for.
        let mut full: DiGraph<i64, (f64, bool, i64)> = DiGraph::new();
        let mut idx: BTreeMap<i64, NodeIndex> = BTreeMap::new();
        for way in ways {
            let mut prev: Option<i64> = None;
            for &r in &way.refs {
                let Some(&p) = coords.get(&r) else {
                    // A way cut by the extract boundary: the segment through the missing node is dropped.
                    summary.missing_node_refs += 1;
                    prev = None;
                    continue;
                };
                if nodes.blocked.contains(&r) {
                    prev = None;
                    continue;
                }
                let b = *idx.entry(r).or_insert_with(|| full.add_node(r));
                if let Some(q) = prev
                    && q != r
                {
                    let a = idx[&q];
                    let len = coords[&q].distance_m(p);
                    let crossing = way.crossing || crossing_nodes.contains(&q) || crossing_nodes.contains(&r);
                    if way.travel != Travel::Backward {
                        full.add_edge(a, b, (len, crossing, way.id));
                    }
                    if way.travel != Travel::Forward {
                        full.add_edge(b, a, (len, crossing, way.id));
                    }
                }
                prev = Some(r);
            }
        }
        // Kosaraju (iterative DFS) rather than Tarjan: petgraph's Tarjan recurses once per node on the path and
        // overflows a thread stack on a real city.
        let mut comps = petgraph::algo::kosaraju_scc(&full);
        // Largest first; ties by smallest OSM id so the choice is deterministic.
        comps.sort_by_key(|c| (std::cmp::Reverse(c.len()), c.iter().map(|&n| full[n]).min().unwrap_or(i64::MAX)));
        let Some(largest) = comps.first() else {
            return Err(CoreError::invalid("the map has no walkable way a sidewalk robot can use"));
        };
        if largest.len() < 2 {
            return Err(CoreError::invalid("the map's walkable network has no two connected nodes"));
        }
        summary.components_dropped = comps.len() - 1;
        summary.nodes_dropped = comps[1..].iter().map(Vec::len).sum();

        let mut keep: Vec<NodeIndex> = largest.clone();
        keep.sort_by_key(|&n| full[n]);
        let origin = {
            let n = keep.len() as f64;
            let (la, lo) = keep.iter().fold((0.0, 0.0), |(a, b), &i| {
                let p = coords[&full[i]];
                (a + p.lat(), b + p.lon())
            });
            LatLon::new(la / n, lo / n)?
        };
        let mut graph: DiGraph<MapNode, MapEdge> = DiGraph::with_capacity(keep.len(), 0);
        let mut remap: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        for &old in &keep {
            let osm_id = full[old];
            let pos = coords[&osm_id];
            let new = graph.add_node(MapNode { osm_id, pos, xy: project(origin, pos) });
            remap.insert(old, new);
        }
        for &old in &keep {
            for e in full.edges(old) {
                if let Some(&t) = remap.get(&e.target()) {
                    let (length_m, crossing, way_id) = *e.weight();
                    graph.add_edge(remap[&old], t, MapEdge { length_m, crossing, way_id });
                }
            }
        }
        let segments = graph
            .edge_references()
            .filter(|e| e.source().index() < e.target().index())
            .map(|e| {
                let (a, b) = (e.source(), e.target());
                GeomWithData::new(Line::new(graph[a].xy, graph[b].xy), (a.index() as u32, b.index() as u32))
            })
            .collect();
        let live = LiveGraph::new(&graph);
        // East-west metres shrink away from the equator: scale by the node farthest from it.
        let k = std::f64::consts::PI / 180.0;
        let floor_x =
            graph.node_weights().map(|n| (n.pos.lat() * k).cos()).fold(1.0, f64::min) / (origin.lat() * k).cos();
        summary.nodes = graph.node_count();
        summary.edges = graph.edge_count();
        summary.length_km = graph.edge_weights().map(|e| e.length_m).sum::<f64>() / 2000.0;
        Ok((
            Self {
                graph,
                origin,
                floor_x: floor_x.min(1.0),
                index: RTree::bulk_load(segments),
                closed: BTreeSet::new(),
                closed_arc: vec![false; live.to.len()],
                live: Arc::new(live),
                ch: None,
                ch_query: Mutex::new(None),
            },
            summary,
        ))
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

    /// The walkable graph as a GeoJSON FeatureCollection of LineStrings (one per street segment, both directions
    /// together), with length and closure state.
    pub fn to_geojson(&self) -> String {
        let mut out = String::from("{\"type\":\"FeatureCollection\",\"features\":[");
        let mut first = true;
        for e in self.graph.edge_references().filter(|e| e.source().index() < e.target().index()) {
            let (a, b) = (&self.graph[e.source()], &self.graph[e.target()]);
            let closed = self.closed.contains(&(NodeId(e.source().index() as u32), NodeId(e.target().index() as u32)));
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&format!(
                "{{\"type\":\"Feature\",\"properties\":{{\"from\":{},\"to\":{},\"length_m\":{:.1},\"crossing\":{},\"closed\":{},\"osm_way\":{}}},\"geometry\":{{\"type\":\"LineString\",\"coordinates\":[[{:.7},{:.7}],[{:.7},{:.7}]]}}}}",
                e.source().index(),
                e.target().index(),
                e.weight().length_m,
                e.weight().crossing,
                closed,
                e.weight().way_id,
                a.pos.lon(),
                a.pos.lat(),
                b.pos.lon(),
                b.pos.lat()
            ));
        }
        out.push_str("]}");
        out
    }
}

/// A route's geometry as a GeoJSON Feature (LineString) with its length and duration.
pub fn route_geojson(route: &Route, geometry: &[LatLon]) -> String {
    let coords: Vec<String> = geometry.iter().map(|p| format!("[{:.7},{:.7}]", p.lon(), p.lat())).collect();
    format!(
        "{{\"type\":\"Feature\",\"properties\":{{\"length_m\":{:.1},\"duration_s\":{:.1},\"nodes\":{}}},\"geometry\":{{\"type\":\"LineString\",\"coordinates\":[{}]}}}}",
        route.length_m,
        route.duration_s,
        route.nodes.len(),
        coords.join(",")
    )
}

impl MapGraph {
    /// Closes the edge between two adjacent nodes in both directions. Returns false when they are not adjacent.
    pub fn close_edge(&mut self, a: NodeId, b: NodeId) -> bool {
        if !self.adjacent(a, b) {
            return false;
        }
        self.closed.insert((a, b));
        self.closed.insert((b, a));
        self.set_arc_flags(a, b, true);
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
        x || y
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

    /// Travel time over one directed edge in whole milliseconds (rounded up, so a path's time never falls
    /// below its great-circle bound), ignoring closures.
    fn edge_ms(w: &MapEdge, profile: Profile) -> u64 {
        let secs = w.length_m / profile.speed_mps + if w.crossing { profile.crossing_penalty_s } else { 0.0 };
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
        self.route(from, to, profile).map(|r| r.duration_s)
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

    /// The polyline of a node path.
    pub fn geometry(&self, nodes: &[NodeId]) -> Vec<LatLon> {
        nodes.iter().filter_map(|&n| self.pos(n)).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn way(id: i64, refs: Vec<i64>, crossing: bool, travel: Travel) -> RawWay {
        RawWay { id, refs, crossing, travel }
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
        let t = |pairs: &[(&'static str, &'static str)]| -> HashMap<&str, &str> { pairs.iter().copied().collect() };
        assert_eq!(skip_reason(&t(&[("highway", "footway")])), None);
        assert_eq!(skip_reason(&t(&[("highway", "steps")])).as_deref(), Some("highway=steps"));
        assert_eq!(skip_reason(&t(&[("highway", "motorway")])).as_deref(), Some("highway=motorway"));
        assert!(skip_reason(&t(&[("highway", "service"), ("access", "private")])).is_some());
        assert_eq!(skip_reason(&t(&[("highway", "service"), ("access", "private"), ("foot", "yes")])), None);
        assert!(skip_reason(&t(&[("highway", "residential"), ("foot", "no")])).is_some());
    }
}
