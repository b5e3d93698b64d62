//! `trundle-sim gate`: the shipped gate file is a valid gate, and a gate passes the product as it is while a
//! policy that never batches fails it under heavy demand, with the failure in its JUnit XML and summary.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleet_core::dispatcher::Policy;
use sim::gate::{Gate, GateResult};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn run(g: &Gate) -> GateResult {
    let maps = g.maps();
    assert_eq!(maps.len(), 1, "{maps:?}");
    assert_eq!(maps[0].canonicalize().expect("the map exists"), common::monaco_path().canonicalize().expect("map"));
    let areas: BTreeMap<PathBuf, sim::Area> = maps.into_iter().map(|m| (m, common::monaco_area())).collect();
    let mut seen = Vec::new();
    let r = sim::gate::run(
        g,
        &areas,
        &mut |gs, seed, o| seen.push((gs.name.clone(), seed, o.report.placed)),
        &mut |_, _, _| {},
    )
    .expect("runs");
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [1, 2], "each seed once");
    assert!(seen.iter().all(|s| s.2 > 0), "orders were placed: {seen:?}");
    r
}

#[test]
fn the_shipped_gate_holds_every_scenario_to_no_fault_and_nothing_stuck() {
    let g = Gate::load(&repo("scenarios/gate.toml")).expect("the shipped gate loads");
    let names: Vec<&str> = g.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["lunch", "main job", "shop door", "narrow head-on"]);
    for s in &g.scenarios {
        assert_eq!(s.thresholds.max_robot_at_fault, Some(0), "{}", s.name);
        assert_eq!(s.thresholds.max_robot_robot, Some(0), "{}", s.name);
        assert_eq!(s.thresholds.max_stuck, Some(0), "{}", s.name);
        assert!(s.map.exists(), "{}: {}", s.name, s.map.display());
    }
    assert_eq!(g.scenarios[0].seeds, [1, 2, 3]);
    assert!(g.scenarios[0].thresholds.min_on_time_pct.is_some_and(|p| p >= 90.0));
}

#[test]
fn a_policy_that_never_batches_fails_the_gate_under_heavy_demand() {
    let gate = Gate::load(&repo("sim/tests/gates/small-gate.toml")).expect("loads");
    let ok = run(&gate);
    assert!(ok.passed, "{}", ok.table());
    assert!(!ok.junit().contains("<failure"), "{}", ok.junit());

    let bad = run(&gate.clone().with_policy(Policy::Greedy));
    assert!(!bad.passed, "{}", bad.table());
    assert_eq!(bad.change, ["dispatch policy greedy"]);
    for r in &bad.runs {
        let failed: Vec<&str> = r.checks.iter().filter(|c| !c.passed).map(|c| c.figure).collect();
        assert!(
            failed.contains(&"refused_pct") || failed.contains(&"deliveries_per_robot_hour"),
            "seed {}: {failed:?}",
            r.seed
        );
        // Safety holds either way: what fails is the service, not the robots.
        assert!(r.checks.iter().filter(|c| c.figure == "robot_at_fault").all(|c| c.passed));
    }
    let junit = bad.junit();
    assert_eq!(junit.matches("<failure").count(), bad.failed_runs(), "{junit}");
    assert!(bad.markdown().contains("FAILED"), "{}", bad.markdown());
}
