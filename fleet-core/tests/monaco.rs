//! The importer on the real bundled Monaco extract: the walkable network is found, snapping works on real
//! streets, and A* agrees with Dijkstra on a sample of pairs.

use fleet_core::map::{MapGraph, Profile};
use fleet_core::{LatLon, NodeId};

fn monaco() -> MapGraph {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/monaco.osm.pbf");
    let bytes = std::fs::read(path).expect("the bundled Monaco extract is in data/");
    let (g, summary) = MapGraph::from_osm(&bytes).expect("Monaco imports");
    eprintln!("{summary:?}");
    assert!(summary.nodes > 3_000, "{summary:?}");
    assert!(summary.length_km > 50.0, "{summary:?}");
    assert!(summary.ways_skipped.contains_key("highway=steps"), "{summary:?}");
    g
}

#[test]
fn monaco_imports_snaps_and_routes() {
    let g = monaco();
    // Place du Casino, on a pedestrian area next to streets.
    let casino = LatLon::new(43.7393, 7.4274).expect("valid");
    let s = g.snap(casino, 150.0).expect("on the map");
    assert!(s.edge_distance_m < 60.0, "{s:?}");
    // Out at sea: refused with the distance.
    let sea = LatLon::new(43.70, 7.45).expect("valid");
    assert!(g.snap(sea, 150.0).is_err());

    let p = Profile::default();
    let n = g.node_count() as u64;
    // A fixed, spread-out sample of pairs (deterministic, no random source).
    for i in 0..15u64 {
        let a = NodeId(((i * 7_919) % n) as u32);
        let b = NodeId(((i * 104_729 + 13) % n) as u32);
        let r = g.route(a, b, p).expect("strongly connected");
        let d = g.dijkstra_secs(a, b, p).expect("strongly connected");
        assert!((r.duration_s - d).abs() < 1e-6, "{a}->{b}: A* {} vs Dijkstra {d}", r.duration_s);
        assert!(r.length_m >= g.pos(a).expect("node").distance_m(g.pos(b).expect("node")) - 1e-6);
    }
}
