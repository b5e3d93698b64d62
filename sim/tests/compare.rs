//! `compare`: two scenarios on the same seeds give a side-by-side table and per-seed figures; a scenario
//! compared with itself differs by nothing.

mod common;

use sim::{Area, Scenario};

#[test]
fn compare_runs_both_scenarios_on_each_seed() {
    let area = Area::from_map(common::monaco());
    let a = Scenario {
        robots: 2,
        shops: 2,
        orders_per_hour: 6.0,
        duration_s: 3600 + 1800,
        pedestrians: 0,
        improve_every_s: 0,
        ..Scenario::default()
    };
    // B: the same demand with one more robot and background improvement.
    let b = Scenario { robots: 3, improve_every_s: 60, improve_iterations: 50, ..a.clone() };
    let mut runs = Vec::new();
    let cmp = sim::compare::compare(
        ("a", &area, &a),
        ("b", &area, &b),
        &[1, 2],
        &mut |side, seed, o| runs.push((side, seed, o.report.placed)),
        &mut |_, _, _| {},
    )
    .expect("runs");
    assert_eq!(runs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), [(0, 1), (1, 1), (0, 2), (1, 2)]);
    assert_eq!(cmp.per_seed.len(), 2);
    let delivered = &cmp.means["delivered"];
    assert!(delivered.a > 0.0 && delivered.b > 0.0, "{cmp:?}");
    assert!((delivered.diff - (delivered.b - delivered.a)).abs() < 1e-9);
    let table = cmp.table();
    for k in [
        "delivered",
        "on_time_pct",
        "delivery_p50_min",
        "delivery_p90_min",
        "distance_km",
        "energy_wh",
        "collisions",
        "refusals",
    ] {
        assert!(table.contains(k), "{table}");
    }
    let json = serde_json::to_string(&cmp).expect("serialises");
    assert!(json.contains("\"per_seed\""));

    let same = sim::compare::compare(("a", &area, &a), ("a", &area, &a), &[3], &mut |_, _, _| {}, &mut |_, _, _| {})
        .expect("runs");
    assert!(same.means.values().all(|m| m.diff == 0.0), "{same:?}");
}
