//! `trundle-bench traffic`: what traffic management (turns at narrow ways, crossings and stop spots) costs the
//! dispatcher core. A fleet of ideal robots on Monaco ([`fleet_core::ideal`]: they follow their released
//! steps exactly and report every node) under a steady stream of orders, run twice in one process on the same
//! seed, traffic on and off; the core's time per simulated second (the tick plus every robot report and step
//! result) and per tick alone is timed in both.

use std::time::Instant;

use anyhow::Context;
use fleet_core::dispatcher::{Config, Dispatcher, Input, Output, Reply};
use fleet_core::ideal::IdealRobots;
use fleet_core::map::MapGraph;
use fleet_core::mission::Hello;
use fleet_core::order::{DeliveryRequest, Parcel};
use fleet_core::robot::RobotModel;
use fleet_core::traffic::TrafficConfig;
use fleet_core::{Grams, NodeId, RobotId, ShopId, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::{Out, machine, peak_rss_mb};

#[derive(clap::Args)]
pub struct TrafficArgs {
    #[arg(long, default_value = "data/monaco.osm.pbf")]
    map: std::path::PathBuf,
    #[arg(long, default_value_t = 1000)]
    robots: usize,
    /// Simulated minutes per run (after the fleet is placed).
    #[arg(long, default_value_t = 20.0)]
    minutes: f64,
    /// Orders per robot-hour.
    #[arg(long, default_value_t = 3.0)]
    orders_per_robot_hour: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

struct Timing {
    /// Per simulated second: the core's time for everything (ms), and for the tick alone (ms).
    second_ms: Vec<f64>,
    tick_ms: Vec<f64>,
    placed: usize,
    refused: usize,
    delivered: usize,
    stats: fleet_core::traffic::TrafficStats,
}

fn pct(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(((s.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN)
}

fn run(map: &MapGraph, a: &TrafficArgs, traffic: bool) -> anyhow::Result<Timing> {
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let config =
        Config { traffic: TrafficConfig { enabled: traffic, ..TrafficConfig::default() }, ..Config::default() };
    let mut d = Dispatcher::new(map.clone(), config);
    let mut now = Timestamp(1_780_653_600_000);
    let n = map.node_count() as u32;
    let node = |rng: &mut ChaCha8Rng| NodeId(rng.random_range(0..n));
    let shops: Vec<ShopId> = (0..(a.robots / 10).clamp(5, 100))
        .map(|i| {
            let id = ShopId::parse(&format!("shop-{i:03}")).expect("valid id");
            let pos = map.pos(node(&mut rng)).expect("node");
            match d.handle(now, Input::RegisterShop { id: id.clone(), name: id.to_string(), pos }).into_iter().find_map(
                |o| match o {
                    Output::Reply(r) => Some(r),
                    _ => None,
                },
            ) {
                Some(Ok(_)) => Ok(id),
                other => Err(anyhow::anyhow!("shop not registered: {other:?}")),
            }
        })
        .collect::<anyhow::Result<_>>()?;
    for i in 0..a.robots {
        let id = RobotId::parse(&format!("robot-{i:04}")).expect("valid id");
        let depot = d.shop(&shops[i % shops.len()]).map(|s| s.place.pos).context("shop")?;
        d.handle(now, Input::RegisterRobot { id: id.clone(), name: String::new(), depot });
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(now, Input::Robot { robot: id, msg: fleet_core::mission::FromRobot::Hello(hello) });
    }
    let mut ideal = IdealRobots::new(60.0);
    let per_s = a.orders_per_robot_hour * a.robots as f64 / 3600.0;
    let (mut owed, mut key) = (0.0, 0u64);
    let mut t = Timing {
        second_ms: Vec::new(),
        tick_ms: Vec::new(),
        placed: 0,
        refused: 0,
        delivered: 0,
        stats: Default::default(),
    };
    for _ in 0..(a.minutes * 60.0) as usize {
        now = now.plus_secs(1.0);
        // Orders are placed outside the timed part: their cost is the planner's, the same with or without turns.
        owed += per_s;
        while owed >= 1.0 {
            owed -= 1.0;
            key += 1;
            let shop = shops[rng.random_range(0..shops.len())].clone();
            let from = d.shop(&shop).map(|s| s.place.pos).context("shop")?;
            // A customer within 1.5 km of the shop, as the simulator's scenarios have them.
            let dropoff = (0..50)
                .map(|_| map.pos(node(&mut rng)).expect("node"))
                .find(|p| p.distance_m(from) < 1_500.0)
                .unwrap_or(from);
            let request = DeliveryRequest {
                dropoff,
                parcel: Parcel::new(Grams(1_000), 1).expect("valid"),
                ready_at: None,
                deliver_by: now.plus_secs(5_400.0),
            };
            let out = d.handle(
                now,
                Input::PlaceOrder {
                    shop: shop.clone(),
                    idempotency_key: format!("k{key}"),
                    request,
                    pin: "1234".into(),
                    link_hash: None,
                },
            );
            match out.iter().find(|o| matches!(o, Output::Reply(_))) {
                Some(Output::Reply(Ok(Reply::Placed { order, .. }))) => {
                    t.placed += 1;
                    d.handle(now, Input::MarkReady { shop, order: order.id.clone() });
                }
                other => {
                    if t.refused == 0 {
                        eprintln!("first refusal: {other:?}");
                    }
                    t.refused += 1;
                }
            }
        }
        let t0 = Instant::now();
        ideal.step(&mut d, now, 1.0);
        let t1 = Instant::now();
        d.handle(now, Input::Tick);
        let t2 = Instant::now();
        t.second_ms.push((t2 - t0).as_secs_f64() * 1e3);
        t.tick_ms.push((t2 - t1).as_secs_f64() * 1e3);
    }
    t.delivered = d.orders().filter(|o| o.status == fleet_core::order::OrderStatus::Delivered).count();
    t.stats = d.traffic_stats().2;
    Ok(t)
}

pub fn traffic_bench(a: TrafficArgs) -> anyhow::Result<()> {
    let mut out = Out { json: a.json, rows: Vec::new() };
    let bytes = std::fs::read(&a.map).with_context(|| format!("cannot read {}", a.map.display()))?;
    let (map, _) = MapGraph::from_osm(&bytes)?;
    let mut rows = Vec::new();
    for traffic in [false, true] {
        let t = run(&map, &a, traffic)?;
        let row = json!({"bench": "traffic", "traffic": traffic, "robots": a.robots, "sim_s": t.second_ms.len(),
            "second_ms_p50": (pct(&t.second_ms, 0.5) * 1000.0).round() / 1000.0,
            "second_ms_p99": (pct(&t.second_ms, 0.99) * 1000.0).round() / 1000.0,
            "tick_ms_p50": (pct(&t.tick_ms, 0.5) * 1000.0).round() / 1000.0,
            "tick_ms_p99": (pct(&t.tick_ms, 0.99) * 1000.0).round() / 1000.0,
            "tick_ms_max": (pct(&t.tick_ms, 1.0) * 1000.0).round() / 1000.0,
            "placed": t.placed, "refused": t.refused, "delivered": t.delivered, "waited": t.stats.waited, "granted_at_once": t.stats.granted_at_once,
            "deadlocks": t.stats.deadlocks, "reroutes": t.stats.reroutes});
        out.emit(row.clone());
        rows.push((t, row));
    }
    let (off, on) = (&rows[0].0, &rows[1].0);
    out.emit(json!({"bench": "traffic", "measure": "summary", "robots": a.robots,
        "added_second_ms_p50": ((pct(&on.second_ms, 0.5) - pct(&off.second_ms, 0.5)) * 1000.0).round() / 1000.0,
        "added_tick_ms_p50": ((pct(&on.tick_ms, 0.5) - pct(&off.tick_ms, 0.5)) * 1000.0).round() / 1000.0,
        "peak_rss_mb": peak_rss_mb().round(), "machine": machine()}));
    Ok(())
}
