//! Import from OpenStreetMap: which ways a wheeled sidewalk robot may use (footways, sidewalks, pedestrian
//! streets, crossings; not steps, not private ways), which barriers stop it, one-way footpaths, and the build
//! of the graph from raw nodes and ways, reduced to its largest strongly connected component.
//!
//! The importer takes bytes, not a path: reading the file is the caller's IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use rstar::RTree;
use rstar::primitives::{GeomWithData, Line};

use super::{ImportSummary, MapEdge, MapGraph, MapNode, project};
use crate::routing::live::LiveGraph;
use crate::{CoreError, LatLon};

/// Why a way is not walkable for a wheeled sidewalk robot, or `None` when it is.
pub(crate) fn skip_reason(tags: &HashMap<&str, &str>) -> Option<String> {
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
pub(crate) fn blocks_robot(tags: &[(&str, &str)]) -> bool {
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

/// Parses an OSM width value in metres ("2", "1.5 m", "1,5"); feet and other units are not read.
fn parse_width(v: &str) -> Option<f64> {
    let v = v.trim().trim_end_matches('m').trim().replace(',', ".");
    v.parse::<f64>().ok().filter(|w| w.is_finite() && *w > 0.2 && *w < 100.0)
}

/// Default usable width of a way a robot drives on, metres, by its `highway` type, where the way has no width
/// tag. On a street the robot keeps to the sidewalk, so that is the width. Documented in ARCHITECTURE.md.
pub fn default_width_m(highway: &str) -> f64 {
    match highway {
        "pedestrian" => 6.0,
        "living_street" => 4.0,
        "service" => 3.0,
        "track" => 2.5,
        "path" => 1.5,
        "corridor" => 1.8,
        // Footways, sidewalks, cycleways with foot access, and streets' sidewalks.
        _ => 2.0,
    }
}

/// The width a robot has on a way: `sidewalk:width` (or a side's) on a street, else `width`/`est_width`, else
/// the default for its type.
pub(crate) fn way_width_m(tags: &HashMap<&str, &str>) -> f64 {
    let highway = tags.get("highway").copied().unwrap_or("footway");
    let sidewalk = ["sidewalk:width", "sidewalk:both:width", "sidewalk:right:width", "sidewalk:left:width"]
        .iter()
        .find_map(|k| tags.get(k).and_then(|v| parse_width(v)));
    let street = !matches!(highway, "footway" | "path" | "pedestrian" | "cycleway" | "corridor" | "track");
    let own = ["width", "est_width"].iter().find_map(|k| tags.get(k).and_then(|v| parse_width(v)));
    match (street, sidewalk, own) {
        (_, Some(w), _) => w,
        (false, None, Some(w)) => w,
        _ => default_width_m(highway),
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

/// Node data the importer collects: coordinates, street crossings (and which have traffic signals), and
/// barriers a robot cannot pass.
#[derive(Debug, Clone, Default)]
pub struct RawNodes {
    pub coords: HashMap<i64, LatLon>,
    pub crossing: BTreeSet<i64>,
    pub signals: BTreeSet<i64>,
    pub blocked: BTreeSet<i64>,
}

/// Whether tags mark a crossing controlled by traffic signals.
fn signalised<'a>(get: impl Fn(&str) -> Option<&'a str>) -> bool {
    get("crossing") == Some("traffic_signals")
        || get("crossing:signals") == Some("yes")
        || get("highway") == Some("traffic_signals")
}

/// A way as the importer keeps it: its id, node refs, whether it is a crossing (and one with traffic signals),
/// and its usable width (metres).
pub struct RawWay {
    pub id: i64,
    pub refs: Vec<i64>,
    pub crossing: bool,
    pub travel: Travel,
    pub width_m: f64,
    pub signals: bool,
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
                if signalised(|k| tags.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)) {
                    nodes.signals.insert(id);
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
                            width_m: way_width_m(&tags),
                            signals: signalised(|k| tags.get(k).copied()),
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
        summary.signal_nodes = nodes.signals.len();
        // Full graph first, over every referenced node we have coordinates for.
        let mut full: DiGraph<i64, (f64, bool, i64, f32, bool)> = DiGraph::new();
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
                    // A crossing with traffic signals: the way says so, or one of its ends is a signal.
                    let signals = crossing && (way.signals || nodes.signals.contains(&q) || nodes.signals.contains(&r));
                    if way.travel != Travel::Backward {
                        full.add_edge(a, b, (len, crossing, way.id, way.width_m as f32, signals));
                    }
                    if way.travel != Travel::Forward {
                        full.add_edge(b, a, (len, crossing, way.id, way.width_m as f32, signals));
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
                    let (length_m, crossing, way_id, width_m, signals) = *e.weight();
                    graph.add_edge(
                        remap[&old],
                        t,
                        MapEdge { length_m, crossing, way_id, width_m, signals, max_mps: f32::INFINITY },
                    );
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
                closed_times: Mutex::default(),
            },
            summary,
        ))
    }
}
