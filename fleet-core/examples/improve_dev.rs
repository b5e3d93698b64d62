//! Temporary development harness (deleted before the last commit): the improvement part of
//! `trundle-bench insertion` (Monaco, 50 robots, 200 open orders and the bench's 100 measured placements, then 10 rounds of
//! 300 ms of `improve` proposed back to the dispatcher), with positions drawn by fleet-core's own SplitMix
//! generator instead of ChaCha8 (fleet-core has no rand dependency), so the scenario per seed differs from
//! the bench's but is the same for the baseline and the change.

// A throwaway harness: a panic on bad input is the right answer here.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use fleet_core::dispatcher::{Config, Dispatcher, Input, Output, Reply};
use fleet_core::map::MapGraph;
use fleet_core::mission::{FromRobot, Hello};
use fleet_core::order::{DeliveryRequest, Parcel};
use fleet_core::pdptw::solve::Rng;
use fleet_core::robot::RobotModel;
use fleet_core::{Grams, NodeId, RobotId, ShopId, Timestamp};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(7);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let budget_ms: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(300.0);
    // 200 open orders, then the bench's 100 measured placements on top: 300 in the plans.
    let (n_robots, n_orders) = (50, 300);
    let bytes = std::fs::read("/work/alns/data/monaco.osm.pbf").unwrap();
    let (map, _) = MapGraph::from_osm(&bytes).unwrap();
    let mut rng = Rng::new(seed);
    let n = map.node_count();
    let centre = map.origin();
    let near = |rng: &mut Rng, radius: f64| loop {
        let p = map.pos(NodeId(rng.below(n) as u32)).unwrap();
        if p.distance_m(centre) < radius {
            break p;
        }
    };
    let shops: Vec<_> = (0..10).map(|_| near(&mut rng, 1_000.0)).collect();
    let robots: Vec<_> = (0..n_robots).map(|_| near(&mut rng, 1_500.0)).collect();
    let customers: Vec<_> = (0..n_orders).map(|_| near(&mut rng, 1_500.0)).collect();
    let now = Timestamp(1_780_653_600_000);
    let mut d = Dispatcher::new(map.clone(), Config::default());
    for (i, p) in shops.iter().enumerate() {
        d.handle(
            now,
            Input::RegisterShop { id: ShopId::parse(&format!("s{i}")).unwrap(), name: String::new(), pos: *p },
        );
    }
    for (i, p) in robots.iter().enumerate() {
        let id = RobotId::parse(&format!("r{i}")).unwrap();
        d.handle(now, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: *p });
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(now, Input::Robot { robot: id, msg: FromRobot::Hello(hello) });
    }
    let mut placed = 0;
    for (k, c) in customers.iter().enumerate() {
        let shop = ShopId::parse(&format!("s{}", k % shops.len())).unwrap();
        let request = DeliveryRequest {
            dropoff: *c,
            parcel: Parcel::new(Grams(1_000), 1).unwrap(),
            ready_at: None,
            deliver_by: now.plus_secs(4.0 * 3600.0),
        };
        let outs =
            d.handle(now, Input::PlaceOrder { shop, idempotency_key: format!("k{k}"), request, pin: "1234".into() });
        placed += usize::from(outs.iter().any(|o| matches!(o, Output::Reply(Ok(Reply::Placed { .. })))));
    }
    let travel_of = |d: &Dispatcher| {
        let snap = d.plan_snapshot(now);
        let mut table = fleet_core::assign::TravelTable::default();
        snap.plans
            .iter()
            .filter_map(|p| fleet_core::assign::schedule(&snap.map, &mut table, p, &p.tasks))
            .map(|s| s.travel_s)
            .sum::<f64>()
    };
    let start = travel_of(&d);
    let (mut applied, mut iters) = (0, 0);
    for round in 0..rounds {
        let snap = d.plan_snapshot(now);
        let params = fleet_core::improve::ImproveParams { seed: seed + round as u64, ..Default::default() };
        let budget = budget_ms / 1e3;
        let t0 = Instant::now();
        let found = fleet_core::improve::improve(&snap, &params, &mut |_| t0.elapsed().as_secs_f64() / budget);
        drop(snap);
        let Some(p) = found else {
            println!("round {round}: nothing");
            continue;
        };
        iters += p.iterations;
        let gain = p.travel_before_s - p.travel_after_s;
        let outs = d.handle(now, Input::ProposePlans(Box::new(p)));
        let ok = outs.iter().any(|o| matches!(o, Output::Reply(Ok(_))));
        applied += usize::from(ok);
        println!("round {round}: gain {gain:.0} s applied {ok}");
        if !ok {
            println!("  refused: {outs:?}");
        }
    }
    let end = travel_of(&d);
    println!(
        "SUMMARY seed={seed} placed={placed} applied={applied} iterations={iters} before_s={start:.0} after_s={end:.0} saved_pct={:.1}",
        ((100.0 * (start - end) / start) * 10.0).round() / 10.0
    );
}
