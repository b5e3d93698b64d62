//! The dispatcher's answers to faults, end to end in the simulator: a robot that breaks down loses the orders
//! it had not started to robots that deliver them, and a sidewalk blocked under a robot's wheels makes it
//! report BLOCKED, the dispatcher closes that sidewalk and re-routes, and the order still arrives. The scenario
//! is the documented example `scenarios/monaco-faults.toml`.

mod common;

use std::path::Path;

use fleet_core::map::MapGraph;
use sim::ScenarioFile;

fn faults_example() -> (MapGraph, sim::Scenario) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let (map, scenario) = ScenarioFile::load(&dir.join("monaco-faults.toml")).expect("the example loads");
    let real = |p: &Path| p.canonicalize().ok();
    assert_eq!(real(&map), real(&common::monaco_path()), "the example runs on the bundled map");
    (common::monaco(), scenario)
}

#[test]
fn breakdowns_are_reassigned_and_blocked_sidewalks_rerouted_and_every_order_arrives() {
    let (map, scenario) = faults_example();
    let r = sim::run(map, &scenario).expect("runs");
    eprintln!("{r}");
    let kinds: Vec<&str> = r.faults.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["breakdown", "block_sidewalk", "link_drop", "dispatcher_restart"], "{r}");

    // The broken robot's unstarted orders went to other robots, which delivered them.
    let broken = r.robots.iter().find(|x| x.broken).map(|x| x.id.clone()).expect("a robot broke down");
    let moved: Vec<_> =
        r.orders.iter().filter(|o| o.robots.len() >= 2 && o.robots[..o.robots.len() - 1].contains(&broken)).collect();
    assert!(!moved.is_empty(), "the broken robot had orders that moved: {r}");
    for o in &moved {
        assert_ne!(o.robots.last(), Some(&broken), "{o:?}");
        assert_eq!(o.status, "DELIVERED", "{o:?}");
    }

    // The wall across the sidewalk stopped a robot; it reported BLOCKED and the dispatcher re-routed it.
    assert!(r.blocked_events >= 1 && r.reroutes >= 1, "{r}");

    // Nothing is lost or stuck.
    assert_eq!(r.delivered, r.placed, "{r}");
    assert_eq!(r.open_at_end, 0, "{r}");
}
