//! The lockstep driver: one thread, a fixed step, a simulated clock. Each tick: shops act (place orders, mark
//! them ready), customers at a waiting robot type their PIN, the physics world steps up to the tick's time (at
//! its own fixed rate, several steps per tick), every robot's platform reports, every agent and the dispatcher
//! exchange messages until nothing is left in flight, and every 10 s the dispatcher ticks.

use std::collections::{BTreeMap, VecDeque};

use fleet_core::dispatcher::{Config, Dispatcher, Input, Output, Reply};
use fleet_core::improve::{ImproveParams, improve};
use fleet_core::map::MapGraph;
use fleet_core::mission::FromRobot;
use fleet_core::order::{DeliveryRequest, OrderStatus, Parcel};
use fleet_core::{Grams, LatLon, NodeId, OrderId, RobotId, ShopId, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use robot_agent::agent::{self, Agent, Output as AgentOut};
use robot_agent::platform::Platform;

use crate::physics::{PhysicsConfig, PhysicsWorld};
use crate::{Report, Scenario};

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("bad scenario: {0}")]
    Scenario(String),
    #[error("setting up the world failed: {0}")]
    Setup(String),
}

/// A shop's planned order: when it is placed, where it goes, when the parcel is ready.
#[derive(Debug, Clone)]
struct PlannedOrder {
    at: Timestamp,
    shop: usize,
    dropoff: LatLon,
    ready_at: Timestamp,
    deliver_by: Timestamp,
    grams: u32,
    pin: String,
}

/// A robot's agent; its body is robot `i` of the physics world, `i` being its index in the robot list.
struct SimRobot {
    id: RobotId,
    agent: Agent,
}

enum Msg {
    ToDispatcher(RobotId, FromRobot),
    ToAgent(usize, agent::Input),
}

/// Runs the scenario on `map` and returns its report.
pub fn run(map: MapGraph, scenario: &Scenario) -> Result<Report, SimError> {
    scenario.check().map_err(SimError::Scenario)?;
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let start = Timestamp(scenario.start_ms);
    let map_nodes = map.node_count();
    let n = map_nodes as u32;
    let node_pos = |m: &MapGraph, i: u32| m.pos(NodeId(i)).ok_or_else(|| SimError::Setup(format!("node {i} missing")));

    // Shops: nodes within 1 km of the map's centre (real shop streets are central); robots start at shops.
    let centre = map.origin();
    let mut shop_pos = Vec::new();
    for _ in 0..scenario.shops {
        let mut pick = None;
        for _ in 0..10_000 {
            let p = node_pos(&map, rng.random_range(0..n))?;
            if p.distance_m(centre) < 1_000.0 {
                pick = Some(p);
                break;
            }
        }
        shop_pos.push(pick.ok_or_else(|| SimError::Setup("no node near the map centre".into()))?);
    }

    // The day's orders, drawn up front so the stream does not depend on what the fleet does.
    let mut planned = Vec::new();
    let open_s = scenario.duration_s.saturating_sub(3_600).max(scenario.duration_s / 2) as f64;
    let rate = scenario.orders_per_hour / 3600.0;
    let mut t = 0.0;
    if rate > 0.0 {
        loop {
            t += -(1.0 - rng.random::<f64>()).ln() / rate;
            if t >= open_s {
                break;
            }
            let shop = rng.random_range(0..scenario.shops);
            let mut dropoff = None;
            for _ in 0..10_000 {
                let p = node_pos(&map, rng.random_range(0..n))?;
                let d = p.distance_m(shop_pos[shop]);
                if d < scenario.delivery_radius_m && d > 100.0 {
                    dropoff = Some(p);
                    break;
                }
            }
            let Some(dropoff) = dropoff else { continue };
            let at = start.plus_secs(t);
            let (pa, pb) = scenario.prep_min;
            let (da, db) = scenario.deadline_min;
            planned.push(PlannedOrder {
                at,
                shop,
                dropoff,
                ready_at: at.plus_secs(60.0 * (pa + (pb - pa) * rng.random::<f64>())),
                deliver_by: at.plus_secs(60.0 * (da + (db - da) * rng.random::<f64>())),
                grams: rng.random_range(200..8_000),
                pin: format!("{:06}", rng.random_range(0..1_000_000u32)),
            });
        }
    }

    // The physics world: robots are added below, pedestrians now from their own seeded stream (so the number of
    // pedestrians does not change the orders drawn above).
    let mut phys =
        PhysicsWorld::new(map.origin(), start, PhysicsConfig { hz: scenario.physics_hz, ..Default::default() })
            .map_err(SimError::Scenario)?;
    let mut ped_rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    ped_rng.set_stream(1);
    phys.add_pedestrians(&map, scenario.pedestrians, &mut ped_rng);

    let mut d = Dispatcher::new(map, Config::default());
    let shop_ids: Vec<ShopId> = (0..scenario.shops)
        .map(|i| ShopId::parse(&format!("shop-{i:03}")).map_err(|e| SimError::Setup(e.to_string())))
        .collect::<Result<_, _>>()?;
    for (i, id) in shop_ids.iter().enumerate() {
        expect_ok(
            d.handle(start, Input::RegisterShop { id: id.clone(), name: format!("Shop {i}"), pos: shop_pos[i] }),
        )?;
    }
    let mut robots = Vec::new();
    for i in 0..scenario.robots {
        let id = RobotId::parse(&format!("robot-{i:03}")).map_err(|e| SimError::Setup(e.to_string()))?;
        let depot = shop_pos[i % scenario.shops];
        expect_ok(d.handle(start, Input::RegisterRobot { id: id.clone(), name: format!("Robot {i}"), depot }))?;
        // Robots sharing a depot park side by side in rows of eight (1.2 m apart, rows 1.5 m apart), the first
        // on the depot itself: two bodies cannot stand in one place.
        let slot = i / scenario.shops;
        let xy = phys.projection().to_xy(depot);
        let parked = [xy[0] + (slot % 8) as f64 * 1.2, xy[1] + (slot / 8) as f64 * 1.5];
        let body = phys.add_robot(phys.projection().to_latlon(parked), 0.0);
        debug_assert_eq!(body, i, "robot i is body i");
        robots.push(SimRobot { id, agent: Agent::new(fleet_core::robot::RobotModel::default()) });
    }
    let index: BTreeMap<RobotId, usize> = robots.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();

    let mut queue: VecDeque<Msg> = (0..robots.len()).map(|i| Msg::ToAgent(i, agent::Input::Connected)).collect();
    let mut pins: BTreeMap<OrderId, String> = BTreeMap::new();
    let mut ready_due: Vec<(Timestamp, ShopId, OrderId)> = Vec::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut next_order = 0;
    let dt = scenario.dt_ms;
    let ticks = scenario.duration_s * 1000 / dt;
    let mut now = start;
    let (mut improved_version, mut improvements, mut improvement_saved_s) = (u64::MAX, 0usize, 0.0f64);
    pump(&mut d, &mut robots, &mut phys, &index, &mut queue, now);

    for tick in 1..=ticks {
        now = Timestamp(start.0 + tick * dt);
        // Shops place the orders due by now.
        while next_order < planned.len() && planned[next_order].at <= now {
            let p = &planned[next_order];
            next_order += 1;
            let parcel = Parcel::new(Grams(p.grams), 1).map_err(|e| SimError::Setup(e.to_string()))?;
            let request =
                DeliveryRequest { dropoff: p.dropoff, parcel, ready_at: Some(p.ready_at), deliver_by: p.deliver_by };
            let shop = shop_ids[p.shop].clone();
            let out = d.handle(
                now,
                Input::PlaceOrder {
                    shop: shop.clone(),
                    idempotency_key: format!("k{next_order}"),
                    request,
                    pin: p.pin.clone(),
                },
            );
            for o in out {
                match o {
                    Output::Reply(Ok(Reply::Placed { order, .. })) => {
                        pins.insert(order.id.clone(), p.pin.clone());
                        ready_due.push((p.ready_at, shop.clone(), order.id.clone()));
                    }
                    Output::Reply(Err(e)) => *refused.entry(e.to_string()).or_default() += 1,
                    other => route(other, &index, &mut queue),
                }
            }
        }
        // Shops mark packed parcels ready.
        let (due, later): (Vec<_>, Vec<_>) = ready_due.drain(..).partition(|(at, _, _)| *at <= now);
        ready_due = later;
        for (_, shop, order) in due {
            for o in d.handle(now, Input::MarkReady { shop, order }) {
                route(o, &index, &mut queue);
            }
        }
        // Customers at the door type their PIN.
        for (i, r) in robots.iter().enumerate() {
            if let Some(order) = r.agent.awaiting_pin()
                && let Some(pin) = pins.get(order)
            {
                queue.push_back(Msg::ToAgent(i, agent::Input::PinEntered(pin.clone())));
            }
        }
        // Bodies move.
        phys.advance_to(now);
        for i in 0..robots.len() {
            for ev in phys.robot(i).poll(now) {
                queue.push_back(Msg::ToAgent(i, agent::Input::Platform(ev)));
            }
        }
        // State reports once per simulated second.
        if (tick * dt) % 1_000 < dt {
            for i in 0..robots.len() {
                queue.push_back(Msg::ToAgent(i, agent::Input::Tick(phys.robot(i).telemetry())));
            }
        }
        pump(&mut d, &mut robots, &mut phys, &index, &mut queue, now);
        if (tick * dt) % 10_000 < dt {
            for o in d.handle(now, Input::Tick) {
                route(o, &index, &mut queue);
            }
            pump(&mut d, &mut robots, &mut phys, &index, &mut queue, now);
        }
        let every_ms = scenario.improve_every_s * 1_000;
        if every_ms > 0 && (tick * dt) % every_ms < dt && d.plans_version() != improved_version {
            improved_version = d.plans_version();
            let snap = d.plan_snapshot(now);
            let params = ImproveParams { seed: scenario.seed ^ tick, ..ImproveParams::default() };
            let iterations = scenario.improve_iterations.max(1);
            if let Some(p) = improve(&snap, &params, &mut |i| i as f64 / iterations as f64) {
                let saved = p.travel_before_s - p.travel_after_s;
                for o in d.handle(now, Input::ProposePlans(Box::new(p))) {
                    match o {
                        Output::Reply(Ok(_)) => {
                            improvements += 1;
                            improvement_saved_s += saved;
                        }
                        other => route(other, &index, &mut queue),
                    }
                }
                pump(&mut d, &mut robots, &mut phys, &index, &mut queue, now);
            }
        }
    }

    // The report.
    let mut report = Report {
        scenario: scenario.clone(),
        map_nodes,
        orders_requested: next_order,
        refused,
        placed: 0,
        delivered: 0,
        on_time: 0,
        late: 0,
        failed: 0,
        returned: 0,
        open_at_end: 0,
        delivery_min_mean: 0.0,
        delivery_min_p50: 0.0,
        delivery_min_p90: 0.0,
        distance_km: phys.distance_m() / 1000.0,
        energy_used_pct: phys.energy_used_pct(),
        collisions: phys.stats().collisions,
        near_misses: phys.stats().near_misses,
        blocked_events: phys.stats().blocked_events,
        sidesteps: phys.stats().sidesteps,
        deliveries_per_robot_hour: 0.0,
        improvements,
        improvement_saved_min: improvement_saved_s / 60.0,
        ticks,
        physics_steps: phys.stats().steps,
    };
    let mut minutes = Vec::new();
    for o in d.orders() {
        report.placed += 1;
        match o.status {
            OrderStatus::Delivered => {
                report.delivered += 1;
                let at = o.delivered_at.unwrap_or(now);
                if at <= o.request.deliver_by {
                    report.on_time += 1;
                } else {
                    report.late += 1;
                }
                minutes.push(at.secs_since(o.created_at) / 60.0);
            }
            OrderStatus::Failed => report.failed += 1,
            OrderStatus::Returned => report.returned += 1,
            s if !s.is_terminal() => report.open_at_end += 1,
            _ => {}
        }
    }
    minutes.sort_by(f64::total_cmp);
    if !minutes.is_empty() {
        report.delivery_min_mean = minutes.iter().sum::<f64>() / minutes.len() as f64;
        report.delivery_min_p50 = percentile(&minutes, 0.5);
        report.delivery_min_p90 = percentile(&minutes, 0.9);
    }
    let robot_hours = scenario.robots as f64 * scenario.duration_s as f64 / 3600.0;
    report.deliveries_per_robot_hour = report.delivered as f64 / robot_hours;
    Ok(report)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn expect_ok(out: Vec<Output>) -> Result<(), SimError> {
    for o in out {
        if let Output::Reply(Err(e)) = o {
            return Err(SimError::Setup(e.to_string()));
        }
    }
    Ok(())
}

/// Routes one dispatcher output: messages to robots go on the queue; the rest is for watchers, not the sim.
fn route(o: Output, index: &BTreeMap<RobotId, usize>, queue: &mut VecDeque<Msg>) {
    if let Output::Send { robot, msg } = o
        && let Some(&i) = index.get(&robot)
    {
        queue.push_back(Msg::ToAgent(i, agent::Input::FromDispatcher(msg)));
    }
}

/// Delivers messages until none is in flight.
fn pump(
    d: &mut Dispatcher,
    robots: &mut [SimRobot],
    phys: &mut PhysicsWorld,
    index: &BTreeMap<RobotId, usize>,
    queue: &mut VecDeque<Msg>,
    now: Timestamp,
) {
    while let Some(m) = queue.pop_front() {
        match m {
            Msg::ToAgent(i, input) => {
                let r = &mut robots[i];
                for o in r.agent.handle(now, input) {
                    match o {
                        AgentOut::Send(msg) => queue.push_back(Msg::ToDispatcher(r.id.clone(), msg)),
                        AgentOut::Platform(cmd) => phys.robot(i).execute(now, cmd),
                    }
                }
            }
            Msg::ToDispatcher(robot, msg) => {
                for o in d.handle(now, Input::Robot { robot, msg }) {
                    route(o, index, queue);
                }
            }
        }
    }
}
