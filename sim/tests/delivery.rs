//! A quiet morning on Monaco's footways: a few robots, no pedestrians. Every order placed is delivered and no
//! robot touches anything, so the physics bodies, the agents and the dispatcher agree end to end.

mod common;

use common::monaco;
use sim::Scenario;

#[test]
fn few_robots_no_pedestrians_deliver_everything_without_a_collision() {
    let scenario = Scenario {
        seed: 3,
        robots: 3,
        shops: 2,
        orders_per_hour: 8.0,
        duration_s: 3 * 3600,
        pedestrians: 0,
        ..Scenario::default()
    };
    let r = sim::run(monaco(), &scenario).expect("runs");
    assert!(r.placed >= 5, "{r}");
    assert_eq!(r.delivered, r.placed, "{r}");
    assert_eq!(r.open_at_end, 0, "{r}");
    assert_eq!(r.collisions.total(), 0, "{r}");
    assert_eq!(r.blocked_events, 0, "{r}");
    assert!(r.distance_km > 1.0 && r.energy_used_pct > 0.0, "{r}");
    eprintln!("{r}");
}
