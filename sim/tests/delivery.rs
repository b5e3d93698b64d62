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
    // What each quote promised is kept, and the counts are what the orders say.
    let mut by_eta = 0;
    let mut by_latest = 0;
    for o in &r.orders {
        let (Some(eta), Some(latest), Some(at)) = (o.quoted_eta_s, o.quoted_latest_s, o.delivered_s) else {
            panic!("a delivered order without its promise: {o:?}");
        };
        assert!(o.placed_s < eta && eta <= latest, "{o:?}");
        by_eta += usize::from(at <= eta);
        by_latest += usize::from(at <= latest);
    }
    assert_eq!((r.by_quoted_eta, r.by_quoted_latest), (by_eta, by_latest), "{r}");
    // Each order placed on an offered later deliver-by is marked, and they add up to the offers taken.
    assert_eq!(r.orders.iter().filter(|o| o.took_offer).count(), r.offers_taken, "{r}");
    assert!(r.by_quoted_eta <= r.by_quoted_latest && r.by_quoted_latest <= r.delivered, "{r}");
    // With no one on the footways the robots keep to the quoted latest time.
    assert_eq!(r.by_quoted_latest, r.delivered, "{r}");
    eprintln!("{r}");
}
