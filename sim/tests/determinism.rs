//! Same scenario and seed, byte-identical report; another seed, another day.

mod common;

use common::monaco;
use sim::Scenario;

/// Pedestrians kept few so the three runs stay quick in a debug build; enough that they meet the robots.
fn small(seed: u64) -> Scenario {
    Scenario {
        seed,
        robots: 4,
        shops: 2,
        orders_per_hour: 12.0,
        duration_s: 3 * 3600,
        pedestrians: 20,
        ..Scenario::default()
    }
}

#[test]
fn same_seed_same_report_byte_for_byte() {
    let map = monaco();
    let a = sim::run(map.clone(), &small(7)).expect("runs");
    let b = sim::run(map.clone(), &small(7)).expect("runs");
    assert_eq!(a.to_string(), b.to_string());
    assert_eq!(serde_json_bytes(&a), serde_json_bytes(&b));
    // The run did real work: orders went all the way to the door.
    assert!(a.placed >= 10 && a.delivered >= 10, "{a}");
    assert_eq!(a.open_at_end, 0, "{a}");

    let c = sim::run(map, &small(8)).expect("runs");
    assert_ne!(a.to_string(), c.to_string(), "another seed must give another day");
}

fn serde_json_bytes(r: &sim::Report) -> Vec<u8> {
    serde_json::to_vec(r).expect("serialises")
}
