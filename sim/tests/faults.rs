//! Fault injection end to end: a dispatcher restart in the middle of a run loses no order (the core is rebuilt
//! from exactly the records it persisted, and every robot reconnects), and a link drop shorter than the
//! dispatcher's offline limit re-assigns nothing. Both runs deliver every order they placed.

mod common;

use common::monaco;
use sim::Scenario;
use sim::scenario::Fault;

/// A small quiet fleet; improvement off, so any re-assignment would be the fault's doing.
fn small(faults: Vec<Fault>) -> Scenario {
    Scenario {
        seed: 5,
        robots: 3,
        shops: 2,
        orders_per_hour: 10.0,
        duration_s: 2 * 3600 + 1800,
        pedestrians: 0,
        improve_every_s: 0,
        faults,
        ..Scenario::default()
    }
}

#[test]
fn a_dispatcher_restart_mid_run_loses_nothing() {
    let r = sim::run(monaco(), &small(vec![Fault::DispatcherRestart { at_s: 2_700.0 }])).expect("runs");
    eprintln!("{r}");
    assert_eq!(r.faults.len(), 1, "{r}");
    let detail = &r.faults[0].detail;
    // The run had orders in flight at the restart, and all of them came back.
    let before: usize = r.orders.iter().filter(|o| o.placed_s < 2_700.0).count();
    assert!(before >= 4, "too few orders before the restart to tell: {r}");
    assert!(detail.contains(&format!("{before} orders restored of {before}")), "{detail}");
    assert!(r.orders.iter().any(|o| o.placed_s < 2_700.0 && o.delivered_s.is_some_and(|t| t > 2_700.0)), "{r}");
    // Every order accepted before or after the restart exists at the end and was delivered.
    assert_eq!(r.placed + r.refusals(), r.orders_requested, "{r}");
    assert_eq!(r.delivered, r.placed, "{r}");
    assert_eq!(r.open_at_end, 0, "{r}");
}

#[test]
fn a_link_drop_shorter_than_the_offline_limit_changes_no_assignment() {
    let limit = sim::Scenario::default().dispatch.offline_limit_s;
    let drop = Fault::LinkDrop { at_s: 1_800.0, robot: 0, duration_s: limit / 2.0 };
    let r = sim::run(monaco(), &small(vec![drop])).expect("runs");
    eprintln!("{r}");
    assert_eq!(r.faults.len(), 1, "{r}");
    assert!(r.lost_messages >= 30, "the link was really down: {r}");
    assert!(r.placed >= 8, "{r}");
    for o in &r.orders {
        assert_eq!(o.robots.len(), 1, "order {} was re-assigned: {:?}", o.id, o.robots);
    }
    assert_eq!(r.delivered, r.placed, "{r}");
    assert_eq!(r.open_at_end, 0, "{r}");
}
