//! The importer and the routers on the real bundled Monaco extract: the walkable network is found, snapping works
//! on real streets, and the contraction hierarchy and A* agree exactly with Dijkstra on a sample of pairs, also
//! with sidewalks closed after the hierarchy was built.

use fleet_core::map::{MapGraph, Profile};
use fleet_core::{LatLon, NodeId};

fn monaco() -> MapGraph {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/monaco.osm.pbf");
    let bytes = std::fs::read(path).expect("the bundled Monaco extract is in data/");
    let (g, summary) = MapGraph::from_osm(&bytes).expect("Monaco imports");
    assert!(summary.nodes > 3_000, "{summary:?}");
    assert!(summary.length_km > 50.0, "{summary:?}");
    assert!(summary.ways_skipped.contains_key("highway=steps"), "{summary:?}");
    g
}

/// A fixed, spread-out sample of pairs (deterministic, no random source).
fn pairs(n: u32, count: u64) -> impl Iterator<Item = (NodeId, NodeId)> {
    (0..count)
        .map(move |i| (NodeId(((i * 7_919) % u64::from(n)) as u32), NodeId(((i * 104_729 + 13) % u64::from(n)) as u32)))
}

#[test]
fn monaco_imports_snaps_and_routes_exactly() {
    let mut g = monaco();
    let casino = LatLon::new(43.7393, 7.4274).expect("valid");
    let s = g.snap(casino, 150.0).expect("on the map");
    assert!(s.edge_distance_m < 60.0, "{s:?}");
    let sea = LatLon::new(43.70, 7.45).expect("valid");
    assert!(g.snap(sea, 150.0).is_err());

    let p = Profile::default();
    g.prepare(p);
    let n = g.node_count() as u32;
    let mut closed = 0;
    for (i, (a, b)) in pairs(n, 60).enumerate() {
        let want = g.dijkstra_ms(a, b, p).expect("strongly connected");
        let ch = g.route(a, b, p).expect("strongly connected");
        assert_eq!((ch.duration_s * 1000.0).round() as u64, want, "CH {a}->{b}");
        assert_eq!(g.travel_secs(a, b, p), Some(ch.duration_s));
        if i % 10 == 0 {
            let astar = g.astar(a, b, p).expect("strongly connected");
            assert_eq!((astar.duration_s * 1000.0).round() as u64, want, "A* {a}->{b}");
        }
        assert!(ch.length_m >= g.pos(a).expect("node").distance_m(g.pos(b).expect("node")) - 1e-6);
        // Close a sidewalk in the middle of every fifth route: the next query must avoid it, exactly.
        if i % 5 == 0 && ch.nodes.len() > 4 {
            let m = ch.nodes.len() / 2;
            assert!(g.close_edge(ch.nodes[m], ch.nodes[m + 1]));
            closed += 1;
            let want = g.dijkstra_ms(a, b, p);
            let got = g.route(a, b, p);
            assert_eq!(got.as_ref().map(|r| (r.duration_s * 1000.0).round() as u64), want, "closed {a}->{b}");
            if let Some(r) = got {
                assert!(!r.nodes.windows(2).any(|w| w == [ch.nodes[m], ch.nodes[m + 1]]), "route uses a closed edge");
            }
        }
    }
    assert!(closed >= 5);
}
