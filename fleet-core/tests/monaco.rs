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
fn travel_times_under_closures_follow_every_close_and_open() {
    let mut g = monaco();
    let p = Profile::default();
    g.prepare(p);
    let n = g.node_count() as u32;
    // One closure stays in force throughout, so every answer below comes through the times remembered for
    // the closures in force (or a search), never the hierarchy alone.
    let (far_a, far_b) = g.edges().map(|(a, b, _)| (a, b)).next().expect("edges");
    assert!(g.close_edge(far_a, far_b));
    let exact = |g: &fleet_core::map::MapGraph, a, b| g.dijkstra_ms(a, b, p).map(|ms| ms as f64 / 1000.0);
    let mut longer = 0;
    for (a, b) in pairs(n, 40) {
        let before = g.travel_secs(a, b, p);
        assert_eq!(before, exact(&g, a, b), "{a}->{b}");
        let Some(r) = g.route(a, b, p).filter(|r| r.nodes.len() > 2) else { continue };
        let (x, y) = (r.nodes[1], r.nodes[2]);
        assert!(g.close_edge(x, y));
        let closed = exact(&g, a, b);
        assert_eq!(g.travel_secs(a, b, p), closed, "searched {a}->{b}");
        assert_eq!(g.travel_secs(a, b, p), closed, "remembered {a}->{b}");
        if closed.is_none_or(|c| c > before.expect("open")) {
            longer += 1;
        }
        assert!(g.open_edge(x, y));
        assert_eq!(g.travel_secs(a, b, p), before, "reopened {a}->{b}: nothing stale");
    }
    assert!(longer >= 10, "the closures made {longer} trips longer");
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
        let line = g.pos(a).expect("node").distance_m(g.pos(b).expect("node"));
        assert!(ch.length_m >= line - 1e-6);
        assert!(g.floor_m(a, b) <= line, "the cheap floor is below the great-circle distance");
        assert!(g.floor_m(a, b) >= 0.99 * line - 1.0, "and close to it");
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

/// The bounded insertion search on real streets: every robot's lower bound is at most what the order really
/// adds to its plan, and trying robots in bound order gives exactly the answer of trying every robot, while
/// planning only some of them in full. Fleets of 60 robots with plans built by insertion, some stops locked,
/// some deadlines tight, and on every third case sidewalks closed (closures only lengthen routes).
#[test]
fn bounded_insertion_matches_trying_every_robot_on_monaco() {
    use fleet_core::planner::insertion::{
        Outline, RobotPlan, Task, TravelTable, best_pair_insertion, cheapest_insertion, cheapest_insertion_bounded,
        insertion_lower_bound, plan_room,
    };
    use fleet_core::planner::pdptw::solve::Rng;
    use fleet_core::robot::{RobotModel, StopKind};
    use fleet_core::{OrderId, RobotId, Timestamp};

    let mut g = monaco();
    let profile = Profile::default();
    g.prepare(profile);
    let n = g.node_count();
    let mut rng = Rng::new(11);
    let (mut robots_seen, mut robots_tried, mut found, mut refused) = (0, 0, 0, 0);
    // Over the cases with no closure (rows are swept only then): robots tried without rows, and with.
    let (mut tried_open, mut tried_with_rows) = (0, 0);
    for case in 0..30 {
        let mut map = g.clone();
        if case % 3 == 2 {
            for (a, b) in pairs(n as u32, 400).skip(case * 7).take(5) {
                if let Some(r) = map.route(a, b, profile)
                    && r.nodes.len() > 2
                {
                    map.close_edge(r.nodes[1], r.nodes[2]);
                }
            }
        }
        let mut table = TravelTable::default();
        table.row_nodes_per_stop = Some(0);
        // The same searches with whole rows for the new order's nodes (exact bounds where the map allows).
        let mut rows = TravelTable::default();
        rows.row_nodes_per_stop = Some(usize::MAX);
        let now = Timestamp(1_000_000);
        // Monaco proper: within 1.5 km of the centre, as the load generator places its robots and orders.
        let centre = map.origin();
        let node = |rng: &mut Rng| loop {
            let v = NodeId(rng.below(n) as u32);
            if map.pos(v).is_some_and(|p| p.distance_m(centre) < 1_500.0) {
                break v;
            }
        };
        let task = |kind, order: &str, node, deadline: Option<Timestamp>| Task {
            kind,
            order: OrderId::parse(order).expect("valid"),
            node,
            not_before: now,
            deadline,
            compartments: 1,
            grams: 1_000,
            service_s: 60.0,
        };
        let mut plans: Vec<RobotPlan> = (0..60)
            .map(|k| RobotPlan {
                robot: RobotId::parse(&format!("r{k:02}")).expect("valid"),
                model: RobotModel::default(),
                profile,
                start_node: node(&mut rng),
                start_time: now,
                load_compartments: 0,
                load_grams: 0,
                locked: 0,
                range_m: f64::INFINITY,
                shift_end: None,
                tasks: Vec::new(),
            })
            .collect();
        // Load the fleet: each order goes where it is cheapest, as the dispatcher would put it.
        for k in 0..rng.below(150) {
            let id = format!("o{k}");
            let (a, b) = (node(&mut rng), node(&mut rng));
            let trip = map.travel_secs(a, b, profile).unwrap_or(0.0);
            let deadline = now.plus_secs(1.5 * trip + 600.0 + rng.unit() * 3_600.0);
            let (p, d) = (task(StopKind::Pickup, &id, a, None), task(StopKind::Dropoff, &id, b, Some(deadline)));
            if let Some(ins) = cheapest_insertion(&map, &mut table, &plans, &p, &d) {
                let r = plans.iter_mut().find(|r| r.robot == ins.robot).expect("a fleet robot");
                r.tasks = ins.tasks;
            }
        }
        for r in &mut plans {
            r.locked = rng.below(r.tasks.len().min(2) + 1);
        }
        for probe in 0..5 {
            let (a, b) = (node(&mut rng), node(&mut rng));
            // Tight (only robots near the pickup make it), or loose.
            let trip = map.travel_secs(a, b, profile).unwrap_or(0.0);
            let deadline = now.plus_secs(if probe % 2 == 0 { 1.2 * trip + 300.0 } else { 2.0 * trip + 3_600.0 });
            let (p, d) = (task(StopKind::Pickup, "new", a, None), task(StopKind::Dropoff, "new", b, Some(deadline)));
            let nodes: Vec<Vec<NodeId>> = plans.iter().map(|r| r.tasks.iter().map(|t| t.node).collect()).collect();
            let rooms: Vec<Vec<u8>> = plans.iter().map(plan_room).collect();
            // Capacity in the bound on every other probe.
            let outlines: Vec<Outline> = plans
                .iter()
                .zip(&nodes)
                .zip(&rooms)
                .map(|((r, ns), room)| Outline { room: (probe % 2 == 1).then_some(&room[..]), ..Outline::of(r, ns) })
                .collect();
            if let Some(p_to_d) = map.travel_secs(p.node, d.node, profile) {
                let exact = rows.rows_for(&map, &[p.node, d.node], profile);
                assert_eq!(exact, case % 3 != 2, "rows exactly when no sidewalk is closed");
                for (r, o) in plans.iter().zip(&outlines) {
                    let lb = insertion_lower_bound(&map, &mut table, o, p.node, d.node, p_to_d, 1);
                    let lb_rows = insertion_lower_bound(&map, &mut rows, o, p.node, d.node, p_to_d, 1);
                    if let Some((added, _, _)) = best_pair_insertion(&map, &mut table, r, &r.tasks, &p, &d) {
                        assert!(lb <= added + 1e-6, "case {case}: bound {lb} above the real {added} on {}", r.robot);
                        assert!(lb_rows <= added + 1e-6, "case {case}: row bound {lb_rows} above {added}");
                        assert!(lb <= lb_rows + 1e-6, "case {case}: exact times bound no less than straight lines");
                    }
                }
                rows.end_rows();
            }
            let every = cheapest_insertion(&map, &mut table, &plans, &p, &d);
            let bounded = cheapest_insertion_bounded(&map, &mut table, &outlines, |k| plans[k].clone(), &p, &d);
            let with_rows = cheapest_insertion_bounded(&map, &mut rows, &outlines, |k| plans[k].clone(), &p, &d);
            robots_seen += plans.len();
            robots_tried += bounded.tried;
            if case % 3 != 2 {
                tried_open += bounded.tried;
                tried_with_rows += with_rows.tried;
            }
            let same = |a: &Option<fleet_core::planner::insertion::Insertion>| {
                a.as_ref().map(|a| (a.robot.clone(), (a.added_travel_s * 1e6).round(), a.pickup_at, a.dropoff_at))
            };
            assert_eq!(same(&with_rows.best), same(&bounded.best), "case {case} probe {probe}: rows change the answer");
            match (&every, &bounded.best) {
                (None, None) => refused += 1,
                (Some(a), Some(b)) => {
                    found += 1;
                    assert_eq!(a.robot, b.robot, "case {case} probe {probe}");
                    assert!((a.added_travel_s - b.added_travel_s).abs() < 1e-9, "case {case} probe {probe}");
                    assert_eq!((a.pickup_at, a.dropoff_at, a.eta_dropoff), (b.pickup_at, b.dropoff_at, b.eta_dropoff));
                }
                other => panic!("case {case} probe {probe}: the searches disagree: {other:?}"),
            }
        }
    }
    assert!(found > 90 && refused > 0, "a mix of placed and refused probes: {found} placed, {refused} refused");
    // The point of the bound: most robots are never planned in full.
    assert!(robots_tried * 4 < robots_seen * 3, "tried {robots_tried} of {robots_seen} robots");
    // Exact times to and from the new order's nodes rule out more robots than straight lines.
    println!("bounded search planned {robots_tried} of {robots_seen} robots in full");
    println!("with no closure: {tried_open} robots without rows, {tried_with_rows} with");
    assert!(tried_with_rows * 3 < tried_open * 2, "tried {tried_with_rows} with rows, {tried_open} without");
}
