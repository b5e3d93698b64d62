//! The lockstep driver: one thread, a fixed step, a simulated clock. Each tick: due faults strike (or end),
//! shops act (place orders, mark them ready), customers at a waiting robot type their PIN, the physics world
//! steps up to the tick's time (at its own fixed rate, several steps per tick), every robot's platform reports,
//! every agent and the dispatcher exchange messages until nothing is left in flight, then the host of the core
//! ticks the dispatcher and starts a search for better plans when they are due.
//!
//! The driver is the simulator's adapter over [`fleet_core::host::Host`], the same host the server's core
//! thread runs: what a tick or a search is due, where each output goes and under which key a record is kept
//! come from there. The driver keeps only what is its own: the records, latest per key as a store keeps them
//! (a dispatcher restart rebuilds the core from exactly those with `Dispatcher::restore`), each robot's link
//! (while a link is down, messages both ways are lost, as on a dead connection), and the search's budget in
//! iterations rather than wall time, so runs stay deterministic.

use std::collections::{BTreeMap, VecDeque};

use fleet_core::dispatcher::{Dispatcher, Input, Record, Reply};
use fleet_core::host::{Host, Improvement, RecordKey, Routed};
use fleet_core::map::MapGraph;
use fleet_core::mission::{FromRobot, RobotEvent};
use fleet_core::order::{DeliveryRequest, OrderStatus, Parcel};
use fleet_core::planner::improve::{ImproveParams, improve};
use fleet_core::{Grams, LatLon, NodeId, OrderId, RobotId, ShopId, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use robot_agent::agent::{self, Agent, Output as AgentOut};
use robot_agent::platform::Platform;

use crate::osm::{Area, Features};
use crate::physics::{ObstacleId, PhysicsConfig, PhysicsWorld};
use crate::report::{AppliedFault, OrderOutcome, RobotOutcome, Series, Trace};
use crate::scenario::{Buildings, Customers, Fault, PickFrom};
use crate::{Error, Report, Scenario};

/// Building walls are left out where they come closer than this to a walkable way: a robot keeps 0.4 m right
/// of the way and steps up to 1.2 m aside (plus half its width), and OSM maps some ways through arcades and
/// passages; a wall there would trap robots on a way the dispatcher believes open.
pub const WALL_CLEARANCE_M: f64 = 2.0;
/// Walls farther than this from every walkable way are left out too: robots keep within about 3 m of a way
/// (their lane, a step aside, a parking slot), so such a wall could never be touched, only cost step time.
pub const WALL_REACH_M: f64 = 8.0;
/// Trajectories are sampled this often for the report's map, battery levels six times less often.
pub const TRACE_EVERY_S: u64 = 10;
/// The order chart's bucket.
pub const SERIES_BUCKET_S: u64 = 900;

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
    ToDispatcher(usize, FromRobot),
    ToAgent(usize, agent::Input),
}

/// Something a fault started that ends later.
#[derive(Debug)]
enum Ending {
    LinkUp(usize),
    Unblock(ObstacleId),
}

/// A run's report and the time series behind its charts.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: Report,
    pub trace: Trace,
}

/// Runs the scenario on `map` (no shop points, no buildings) and returns its report.
pub fn run(map: MapGraph, scenario: &Scenario) -> Result<Report, Error> {
    simulate(&Area::from_map(map), scenario, &mut |_, _| {}).map(|o| o.report)
}

/// Runs the scenario in `area`; `progress(done, total)` is called with simulated ticks now and then.
pub fn simulate(area: &Area, scenario: &Scenario, progress: &mut dyn FnMut(u64, u64)) -> Result<Outcome, Error> {
    scenario.check().map_err(Error::Scenario)?;
    let (map, features) = (area.map.clone(), &area.features);
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let start = Timestamp(scenario.start_ms);
    let map_nodes = map.node_count();
    let n = map_nodes as u32;
    let node_pos = |m: &MapGraph, i: u32| m.pos(NodeId(i)).ok_or_else(|| Error::Setup(format!("node {i} missing")));
    let snaps = |m: &MapGraph, p: LatLon| m.snap(p, scenario.dispatch.max_snap_m).is_ok();

    // Shops: the given sites, then picks within 1 km of the map's centre (real shop streets are central).
    let centre = map.origin();
    let mut shop_pos: Vec<LatLon> = scenario.shop_sites.iter().map(|s| s.pos).collect();
    let mut shop_names: Vec<String> = scenario.shop_sites.iter().map(|s| s.name.clone()).collect();
    let mut osm_pool: Vec<&crate::osm::OsmShop> = match scenario.pick_from {
        PickFrom::Osm => {
            features.shops.iter().filter(|s| s.pos.distance_m(centre) < 1_000.0 && snaps(&map, s.pos)).collect()
        }
        PickFrom::Nodes => Vec::new(),
    };
    while shop_pos.len() < scenario.shops {
        if !osm_pool.is_empty() {
            let s = osm_pool.remove(rng.random_range(0..osm_pool.len()));
            shop_pos.push(s.pos);
            shop_names.push(s.name.clone());
            continue;
        }
        let mut pick = None;
        for _ in 0..10_000 {
            let p = node_pos(&map, rng.random_range(0..n))?;
            if p.distance_m(centre) < 1_000.0 {
                pick = Some(p);
                break;
            }
        }
        shop_pos.push(pick.ok_or_else(|| Error::Setup("no node near the map centre".into()))?);
        shop_names.push(format!("Shop {}", shop_pos.len() - 1));
    }

    // Customers other than random nodes: per shop, the addresses within the delivery radius (more than 100 m
    // away, like the nodes), or all of them when none is.
    let addresses: Vec<LatLon> = match &scenario.customers {
        Customers::Nodes => Vec::new(),
        Customers::At(v) => v.clone(),
        Customers::Buildings => {
            let homes: Vec<LatLon> = features
                .buildings
                .iter()
                .filter(|b| b.residential)
                .filter_map(crate::osm::Footprint::centre)
                .filter(|&p| snaps(&map, p))
                .collect();
            if homes.is_empty() {
                features
                    .buildings
                    .iter()
                    .filter_map(crate::osm::Footprint::centre)
                    .filter(|&p| snaps(&map, p))
                    .collect()
            } else {
                homes
            }
        }
    };
    let per_shop: Vec<Vec<LatLon>> = shop_pos
        .iter()
        .map(|&s| {
            let near: Vec<LatLon> = addresses
                .iter()
                .copied()
                .filter(|p| {
                    let d = p.distance_m(s);
                    d < scenario.delivery_radius_m && d > 100.0
                })
                .collect();
            if near.is_empty() { addresses.clone() } else { near }
        })
        .collect();

    // The period's orders, drawn up front so the stream does not depend on what the fleet does.
    let mut planned = Vec::new();
    if !scenario.replay.is_empty() {
        for o in &scenario.replay {
            let at = start.plus_secs(o.at_s);
            planned.push(PlannedOrder {
                at,
                shop: o.shop,
                dropoff: o.dropoff,
                ready_at: at.plus_secs(60.0 * o.prep_min),
                deliver_by: at.plus_secs(60.0 * o.deadline_min),
                grams: o.grams,
                pin: format!("{:06}", rng.random_range(0..1_000_000u32)),
            });
        }
    } else {
        let open_s = scenario.duration_s.saturating_sub(3_600).max(scenario.duration_s / 2) as f64;
        // An hourly profile thins a stream at the peak rate: a draw is kept with probability profile / peak.
        let peak = scenario.hourly_profile.iter().copied().fold(0.0, f64::max);
        let rate = scenario.orders_per_hour / 3600.0 * if scenario.hourly_profile.is_empty() { 1.0 } else { peak };
        let mut t = 0.0;
        if rate > 0.0 {
            loop {
                t += -(1.0 - rng.random::<f64>()).ln() / rate;
                if t >= open_s {
                    break;
                }
                if !scenario.hourly_profile.is_empty() {
                    let hour = ((scenario.start_ms / 1_000 + t as u64) / 3_600 % 24) as usize;
                    if rng.random::<f64>() * peak >= scenario.hourly_profile[hour] {
                        continue;
                    }
                }
                let shop = rng.random_range(0..scenario.shops);
                let mut dropoff = None;
                if per_shop[shop].is_empty() {
                    for _ in 0..10_000 {
                        let p = node_pos(&map, rng.random_range(0..n))?;
                        let d = p.distance_m(shop_pos[shop]);
                        if d < scenario.delivery_radius_m && d > 100.0 {
                            dropoff = Some(p);
                            break;
                        }
                    }
                } else {
                    dropoff = Some(per_shop[shop][rng.random_range(0..per_shop[shop].len())]);
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
    }

    // The physics world: buildings first, then robots below, pedestrians now from their own seeded stream (so
    // the number of pedestrians does not change the orders drawn above).
    let mut phys =
        PhysicsWorld::new(map.origin(), start, PhysicsConfig { hz: scenario.physics_hz, ..Default::default() })?;
    let walls = match scenario.buildings {
        Buildings::Walls => phys.add_walls(area.walls()),
        Buildings::Off => 0,
    };
    let mut ped_rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    ped_rng.set_stream(1);
    phys.add_pedestrians(&map, scenario.pedestrians, &mut ped_rng);

    // The scenario's improvement interval is the dispatcher's (0: off); the search's budget is iterations.
    let config = fleet_core::dispatcher::Config {
        improve_every_s: scenario.improve_every_s as f64,
        ..scenario.dispatch.clone()
    };
    let mut host = Host::new(Dispatcher::new(map, config.clone()), scenario.improve_every_s > 0);
    // A restart rebuilds the core on the map as the process loads it: without the closures made since.
    let pristine = scenario
        .faults
        .iter()
        .any(|f| matches!(f, Fault::DispatcherRestart { .. }))
        .then(|| host.dispatcher().map().clone());
    let mut store: BTreeMap<RecordKey, Record> = BTreeMap::new();
    let shop_ids: Vec<ShopId> = (0..scenario.shops)
        .map(|i| ShopId::parse(&format!("shop-{i:03}")).map_err(|e| Error::Setup(e.to_string())))
        .collect::<Result<_, _>>()?;
    for (i, id) in shop_ids.iter().enumerate() {
        let out =
            host.handle(start, Input::RegisterShop { id: id.clone(), name: shop_names[i].clone(), pos: shop_pos[i] });
        expect_ok(&out, &format!("shop {} ({})", i, shop_names[i]))?;
        keep(&mut store, out);
    }
    let mut robots = Vec::new();
    let depots = if scenario.depots.is_empty() { &shop_pos } else { &scenario.depots };
    for i in 0..scenario.robots {
        let id = RobotId::parse(&format!("robot-{i:03}")).map_err(|e| Error::Setup(e.to_string()))?;
        let depot = depots[i % depots.len()];
        let out = host.handle(start, Input::RegisterRobot { id: id.clone(), name: format!("Robot {i}"), depot });
        expect_ok(&out, &format!("robot {i}'s depot"))?;
        keep(&mut store, out);
        // Robots sharing a depot park side by side in rows of eight (1.2 m apart, rows 1.5 m apart), the first
        // on the depot itself: two bodies cannot stand in one place.
        let slot = i / depots.len();
        let xy = phys.projection().to_xy(depot);
        let parked = [xy[0] + (slot % 8) as f64 * 1.2, xy[1] + (slot / 8) as f64 * 1.5];
        let body = phys.add_robot(phys.projection().to_latlon(parked), 0.0);
        debug_assert_eq!(body, i, "robot i is body i");
        phys.set_battery_wh(i, scenario.model.battery_wh);
        robots.push(SimRobot { id, agent: Agent::new(scenario.model) });
    }
    let index: BTreeMap<RobotId, usize> = robots.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();

    let mut faults: Vec<&Fault> = scenario.faults.iter().collect();
    faults.sort_by(|a, b| a.at_s().total_cmp(&b.at_s()));
    let mut faults: VecDeque<&Fault> = faults.into();
    let mut net = Net {
        queue: (0..robots.len()).map(|i| Msg::ToAgent(i, agent::Input::Connected)).collect(),
        link_up: vec![true; robots.len()],
        index,
        store,
        assigned: BTreeMap::new(),
        reroutes: 0,
        lost_messages: 0,
        alerts: 0,
    };
    let mut endings: Vec<(Timestamp, Ending)> = Vec::new();
    let mut applied: Vec<AppliedFault> = Vec::new();
    let mut pins: BTreeMap<OrderId, String> = BTreeMap::new();
    let mut ready_due: Vec<(Timestamp, ShopId, OrderId)> = Vec::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut next_order = 0;
    let dt = scenario.dt_ms;
    let ticks = scenario.duration_s * 1000 / dt;
    let mut now = start;
    let (mut improvements, mut improvement_saved_s) = (0usize, 0.0f64);
    let mut busy_ms = vec![0u64; robots.len()];
    let mut trace = Trace {
        sample_s: TRACE_EVERY_S,
        xy: vec![Vec::new(); robots.len()],
        battery_pct: vec![Vec::new(); robots.len()],
        ..Trace::default()
    };
    let sample = |phys: &PhysicsWorld, trace: &mut Trace, battery: bool| {
        for i in 0..trace.xy.len() {
            if let Some(p) = phys.robot_xy(i) {
                trace.xy[i].push([p[0], p[1]]);
            }
            if battery {
                trace.battery_pct[i].push(phys.battery_pct(i) as f32);
            }
        }
    };
    sample(&phys, &mut trace, true);
    net.pump(&mut host, &mut robots, &mut phys, now);
    let report_every = (ticks / 200).max(1);

    for tick in 1..=ticks {
        now = Timestamp(start.0 + tick * dt);
        let elapsed_ms = tick * dt;
        // Faults that end now, then faults that strike now.
        endings.sort_by_key(|(at, _)| *at);
        while endings.first().is_some_and(|(at, _)| *at <= now) {
            match endings.remove(0).1 {
                Ending::LinkUp(i) => {
                    net.link_up[i] = true;
                    // Like a real reconnect: the agent says hello; the dispatcher answers with the mission.
                    net.queue.push_back(Msg::ToAgent(i, agent::Input::Connected));
                }
                Ending::Unblock(o) => phys.remove_obstacle(o),
            }
        }
        while faults.front().is_some_and(|f| (f.at_s() * 1_000.0) as u64 <= elapsed_ms) {
            let Some(f) = faults.pop_front() else { break };
            let detail = match *f {
                Fault::Breakdown { robot, .. } => {
                    phys.break_down(robot);
                    format!("robot {} broke down", robots[robot].id)
                }
                Fault::BlockSidewalk { lat, lon, duration_s, .. } => {
                    let p = LatLon::new(lat, lon).map_err(|e| Error::Scenario(e.to_string()))?;
                    let m = host.dispatcher().map();
                    match m.snap(p, 500.0) {
                        Ok(s) => {
                            let (a, b) = (m.to_xy(m.pos(s.edge.0).unwrap_or(p)), m.to_xy(m.pos(s.edge.1).unwrap_or(p)));
                            let along = (b[1] - a[1]).atan2(b[0] - a[0]) as f32;
                            let wall = phys.add_wall_across(s.point, along, 4.0);
                            endings.push((now.plus_secs(duration_s), Ending::Unblock(wall)));
                            format!(
                                "sidewalk {}-{} blocked {:.0} m from ({lat}, {lon}) for {duration_s:.0} s",
                                s.edge.0, s.edge.1, s.edge_distance_m
                            )
                        }
                        Err(e) => format!("nothing blocked: {e}"),
                    }
                }
                Fault::LinkDrop { robot, duration_s, .. } => {
                    if net.link_up[robot] {
                        net.link_up[robot] = false;
                        let out = host.handle(now, Input::RobotDisconnected { robot: robots[robot].id.clone() });
                        net.absorb(out);
                    }
                    endings.push((now.plus_secs(duration_s), Ending::LinkUp(robot)));
                    format!("robot {}'s link down for {duration_s:.0} s", robots[robot].id)
                }
                Fault::DispatcherRestart { .. } => {
                    let before = host.dispatcher().orders().count();
                    let records: Vec<Record> = net.store.values().cloned().collect();
                    let map = pristine.clone().unwrap_or_else(|| host.dispatcher().map().clone());
                    host.replace(Dispatcher::restore(map, config.clone(), records));
                    let d = host.dispatcher();
                    for i in 0..robots.len() {
                        if net.link_up[i] {
                            net.queue.push_back(Msg::ToAgent(i, agent::Input::Connected));
                        }
                    }
                    format!(
                        "dispatcher restarted from {} records: {} orders restored of {before}, {} robots, {} shops",
                        net.store.len(),
                        d.orders().count(),
                        d.robots().count(),
                        d.shops().count()
                    )
                }
            };
            applied.push(AppliedFault { at_s: elapsed_ms as f64 / 1_000.0, kind: f.kind().into(), detail });
        }
        // Shops place the orders due by now.
        while next_order < planned.len() && planned[next_order].at <= now {
            let p = &planned[next_order];
            next_order += 1;
            let parcel = Parcel::new(Grams(p.grams), 1).map_err(|e| Error::Setup(e.to_string()))?;
            let request =
                DeliveryRequest { dropoff: p.dropoff, parcel, ready_at: Some(p.ready_at), deliver_by: p.deliver_by };
            let shop = shop_ids[p.shop].clone();
            let mut out = host.handle(
                now,
                Input::PlaceOrder {
                    shop: shop.clone(),
                    idempotency_key: format!("k{next_order}"),
                    request,
                    pin: p.pin.clone(),
                },
            );
            match out.reply.take() {
                Some(Ok(Reply::Placed { order, .. })) => {
                    pins.insert(order.id.clone(), p.pin.clone());
                    ready_due.push((p.ready_at, shop.clone(), order.id.clone()));
                }
                Some(Err(e)) => *refused.entry(e.to_string()).or_default() += 1,
                _ => {}
            }
            net.absorb(out);
        }
        // Shops mark packed parcels ready.
        let (due, later): (Vec<_>, Vec<_>) = ready_due.drain(..).partition(|(at, _, _)| *at <= now);
        ready_due = later;
        for (_, shop, order) in due {
            let out = host.handle(now, Input::MarkReady { shop, order });
            net.absorb(out);
        }
        // Customers at the door type their PIN.
        for (i, r) in robots.iter().enumerate() {
            if let Some(order) = r.agent.awaiting_pin()
                && let Some(pin) = pins.get(order)
            {
                net.queue.push_back(Msg::ToAgent(i, agent::Input::PinEntered(pin.clone())));
            }
        }
        // Bodies move.
        phys.advance_to(now);
        for (i, r) in robots.iter().enumerate() {
            for ev in phys.robot(i).poll(now) {
                net.queue.push_back(Msg::ToAgent(i, agent::Input::Platform(ev)));
            }
            if phys.is_busy(i) || r.agent.awaiting_pin().is_some() {
                busy_ms[i] += dt;
            }
        }
        // State reports once per simulated second.
        if elapsed_ms % 1_000 < dt {
            for i in 0..robots.len() {
                net.queue.push_back(Msg::ToAgent(i, agent::Input::Tick(phys.robot(i).telemetry())));
            }
        }
        net.pump(&mut host, &mut robots, &mut phys, now);
        if let Some(out) = host.tick_if_due(now) {
            net.absorb(out);
            net.pump(&mut host, &mut robots, &mut phys, now);
        }
        if let Some(snap) = host.improvement_due(now) {
            let params = ImproveParams { seed: scenario.seed ^ tick, ..ImproveParams::default() };
            let iterations = scenario.improve_iterations.max(1);
            let found = improve(&snap, &params, &mut |i| i as f64 / iterations as f64);
            match host.improved(now, found) {
                Improvement::NothingFound => {}
                Improvement::Applied { saved_s, routed, .. } => {
                    improvements += 1;
                    improvement_saved_s += saved_s;
                    net.absorb(routed);
                }
                Improvement::Refused { routed, .. } => net.absorb(routed),
            }
            net.pump(&mut host, &mut robots, &mut phys, now);
        }
        if elapsed_ms % (TRACE_EVERY_S * 1_000) < dt {
            sample(&phys, &mut trace, elapsed_ms % (6 * TRACE_EVERY_S * 1_000) < dt);
        }
        if tick % report_every == 0 || tick == ticks {
            progress(tick, ticks);
        }
    }

    // The report.
    let stats = phys.stats();
    let mut report = Report {
        scenario: scenario.clone(),
        map_nodes,
        building_walls: walls,
        orders_requested: next_order,
        refused,
        placed: 0,
        delivered: 0,
        on_time: 0,
        late: 0,
        failed: 0,
        failed_reasons: BTreeMap::new(),
        returned: 0,
        open_at_end: 0,
        delivery_min_mean: 0.0,
        delivery_min_p50: 0.0,
        delivery_min_p90: 0.0,
        delivery_min_p95: 0.0,
        delivery_min_max: 0.0,
        distance_km: phys.distance_m() / 1000.0,
        energy_used_pct: phys.energy_used_pct(),
        energy_used_wh: phys.energy_used_pct() / 100.0 * scenario.model.battery_wh,
        collisions: stats.collisions,
        near_misses: stats.near_misses,
        blocked_events: stats.blocked_events,
        reroutes: net.reroutes,
        sidesteps: stats.sidesteps,
        deliveries_per_robot_hour: 0.0,
        utilisation_mean: 0.0,
        improvements,
        improvement_saved_min: improvement_saved_s / 60.0,
        faults: applied,
        lost_messages: net.lost_messages,
        alerts: net.alerts,
        ticks,
        physics_steps: stats.steps,
        robots: Vec::new(),
        orders: Vec::new(),
    };
    let mut minutes = Vec::new();
    let mut deliveries = vec![0usize; robots.len()];
    let secs_of = |t: Timestamp| t.secs_since(start);
    let d = host.dispatcher();
    for o in d.orders() {
        report.placed += 1;
        let mut outcome = OrderOutcome {
            id: o.id.to_string(),
            shop: o.shop.to_string(),
            status: o.status.name().to_string(),
            reason: o.reason.clone(),
            robots: net.assigned.get(&o.id).map(|v| v.iter().map(ToString::to_string).collect()).unwrap_or_default(),
            placed_s: secs_of(o.created_at),
            delivered_s: None,
            minutes: None,
            on_time: None,
        };
        match o.status {
            OrderStatus::Delivered => {
                report.delivered += 1;
                let at = o.delivered_at.unwrap_or(now);
                let on_time = at <= o.request.deliver_by;
                if on_time {
                    report.on_time += 1;
                } else {
                    report.late += 1;
                }
                let m = at.secs_since(o.created_at) / 60.0;
                minutes.push(m);
                outcome.delivered_s = Some(secs_of(at));
                outcome.minutes = Some(m);
                outcome.on_time = Some(on_time);
                if let Some(&i) = o.robot.as_ref().and_then(|r| net.index.get(r)) {
                    deliveries[i] += 1;
                }
            }
            OrderStatus::Failed => {
                report.failed += 1;
                let why = o.reason.clone().unwrap_or_else(|| "no reason given".into());
                *report.failed_reasons.entry(why).or_default() += 1;
            }
            OrderStatus::Returned => report.returned += 1,
            s if !s.is_terminal() => report.open_at_end += 1,
            _ => {}
        }
        report.orders.push(outcome);
    }
    minutes.sort_by(f64::total_cmp);
    if !minutes.is_empty() {
        report.delivery_min_mean = minutes.iter().sum::<f64>() / minutes.len() as f64;
        report.delivery_min_p50 = percentile(&minutes, 0.5);
        report.delivery_min_p90 = percentile(&minutes, 0.9);
        report.delivery_min_p95 = percentile(&minutes, 0.95);
        report.delivery_min_max = percentile(&minutes, 1.0);
    }
    let robot_hours = scenario.robots as f64 * scenario.duration_s as f64 / 3600.0;
    report.deliveries_per_robot_hour = report.delivered as f64 / robot_hours;
    let duration_ms = (ticks * dt).max(1) as f64;
    for (i, r) in robots.iter().enumerate() {
        report.robots.push(RobotOutcome {
            id: r.id.to_string(),
            distance_km: phys.odometer_m(i) / 1_000.0,
            battery_end_pct: phys.battery_pct(i),
            utilisation: busy_ms[i] as f64 / duration_ms,
            deliveries: deliveries[i],
            broken: phys.is_broken(i),
        });
    }
    report.utilisation_mean =
        report.robots.iter().map(|r| r.utilisation).sum::<f64>() / report.robots.len().max(1) as f64;

    // The chart series: orders placed and delivered per bucket.
    let buckets = scenario.duration_s.div_ceil(SERIES_BUCKET_S) as usize;
    let mut series = Series { bucket_s: SERIES_BUCKET_S, placed: vec![0; buckets], delivered: vec![0; buckets] };
    let bucket = |s: f64| ((s.max(0.0) as u64 / SERIES_BUCKET_S) as usize).min(buckets.saturating_sub(1));
    for o in &report.orders {
        series.placed[bucket(o.placed_s)] += 1;
        if let Some(t) = o.delivered_s {
            series.delivered[bucket(t)] += 1;
        }
    }
    trace.series = series;
    trace.delivery_minutes = minutes;
    let m = d.map();
    trace.edges = m
        .weighted_edges(fleet_core::map::Profile::default())
        .into_iter()
        .filter(|&(u, v, _)| u < v)
        .filter_map(|(u, v, _)| Some((m.node(NodeId(u))?.xy, m.node(NodeId(v))?.xy)))
        .collect();
    trace.shops = shop_pos.iter().map(|&p| m.to_xy(p)).collect();
    Ok(Outcome { report, trace })
}

/// The walls of every footprint that matter and do no harm: each outline edge is sampled every metre, and the
/// runs of samples between [`WALL_CLEARANCE_M`] and [`WALL_REACH_M`] from the nearest walkable way become walls.
pub fn building_walls(map: &MapGraph, features: &Features) -> Vec<([f64; 2], [f64; 2])> {
    let ways = WayGrid::new(map);
    let mut walls = Vec::new();
    for b in &features.buildings {
        let pts: Vec<[f64; 2]> = b.outline.iter().map(|&p| map.to_xy(p)).collect();
        for w in pts.windows(2) {
            let (a, c) = (w[0], w[1]);
            let len = (c[0] - a[0]).hypot(c[1] - a[1]);
            let steps = (len.ceil() as usize).max(1);
            let at = |k: usize| {
                let f = k as f64 / steps as f64;
                [a[0] + (c[0] - a[0]) * f, a[1] + (c[1] - a[1]) * f]
            };
            let mut run: Option<usize> = None;
            for k in 0..=steps {
                let ok = ways.wall_may_stand(at(k));
                match (ok, run) {
                    (true, None) => run = Some(k),
                    (false, Some(s)) => {
                        if k - 1 > s {
                            walls.push((at(s), at(k - 1)));
                        }
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = run
                && steps > s
            {
                walls.push((at(s), at(steps)));
            }
        }
    }
    walls
}

/// The walkable graph's segments in a uniform grid of `WALL_REACH_M` cells: every segment within the reach of
/// a point is in the point's cell or one of its eight neighbours. Built for [`building_walls`], which asks
/// about every metre of every outline (hundreds of thousands of points on Monaco), where a general nearest-
/// neighbour query was the whole cost.
/// A straight piece between two points, local metres.
type Segment = ([f64; 2], [f64; 2]);

struct WayGrid {
    cells: BTreeMap<(i64, i64), Vec<Segment>>,
}

impl WayGrid {
    fn cell(p: [f64; 2]) -> (i64, i64) {
        ((p[0] / WALL_REACH_M).floor() as i64, (p[1] / WALL_REACH_M).floor() as i64)
    }

    fn new(map: &MapGraph) -> Self {
        let mut cells: BTreeMap<(i64, i64), Vec<Segment>> = BTreeMap::new();
        for (u, v, _) in map.weighted_edges(fleet_core::map::Profile::default()) {
            let (Some(a), Some(b)) = (map.node(NodeId(u)), map.node(NodeId(v))) else { continue };
            if u > v {
                continue;
            }
            let (ca, cb) = (Self::cell(a.xy), Self::cell(b.xy));
            for x in ca.0.min(cb.0)..=ca.0.max(cb.0) {
                for y in ca.1.min(cb.1)..=ca.1.max(cb.1) {
                    cells.entry((x, y)).or_default().push((a.xy, b.xy));
                }
            }
        }
        Self { cells }
    }

    /// Whether the nearest segment is at least `WALL_CLEARANCE_M` and at most `WALL_REACH_M` away.
    fn wall_may_stand(&self, p: [f64; 2]) -> bool {
        let (cx, cy) = Self::cell(p);
        let mut nearest = f64::INFINITY;
        for x in cx - 1..=cx + 1 {
            for y in cy - 1..=cy + 1 {
                for &(a, b) in self.cells.get(&(x, y)).map_or(&[][..], Vec::as_slice) {
                    nearest = nearest.min(segment_distance(p, a, b));
                    if nearest < WALL_CLEARANCE_M {
                        return false;
                    }
                }
            }
        }
        nearest <= WALL_REACH_M
    }
}

fn segment_distance(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    (p[0] - a[0] - t * dx).hypot(p[1] - a[1] - t * dy)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn expect_ok(out: &Routed, what: &str) -> Result<(), Error> {
    match &out.reply {
        Some(Err(e)) => Err(Error::Setup(format!("{what}: {e}"))),
        _ => Ok(()),
    }
}

/// Files the records of `out` as a store would.
fn keep(store: &mut BTreeMap<RecordKey, Record>, out: Routed) {
    store.extend(out.records);
}

/// The dispatcher process around the core, as far as the sim needs it: the message queue, each robot's link,
/// the store of persisted records, and what the report counts on the way.
struct Net {
    queue: VecDeque<Msg>,
    link_up: Vec<bool>,
    index: BTreeMap<RobotId, usize>,
    store: BTreeMap<RecordKey, Record>,
    /// Every robot each order was assigned to, in order (a robot listed again only after another).
    assigned: BTreeMap<OrderId, Vec<RobotId>>,
    /// BLOCKED events that reached the dispatcher.
    reroutes: u64,
    /// Messages lost on a link that was down.
    lost_messages: u64,
    alerts: u64,
}

impl Net {
    /// Takes the dispatcher's outputs: records to the store, messages onto robot links, assignments noted.
    fn absorb(&mut self, out: Routed) {
        self.store.extend(out.records);
        for (robot, msg) in out.to_robots {
            if let Some(&i) = self.index.get(&robot) {
                if self.link_up[i] {
                    self.queue.push_back(Msg::ToAgent(i, agent::Input::FromDispatcher(msg)));
                } else {
                    self.lost_messages += 1;
                }
            }
        }
        for o in out.orders {
            if let Some(r) = o.robot {
                let v = self.assigned.entry(o.id.clone()).or_default();
                if v.last() != Some(&r) {
                    v.push(r);
                }
            }
        }
        self.alerts += out.alerts.len() as u64;
    }

    /// Delivers messages until none is in flight.
    fn pump(&mut self, host: &mut Host, robots: &mut [SimRobot], phys: &mut PhysicsWorld, now: Timestamp) {
        while let Some(m) = self.queue.pop_front() {
            match m {
                Msg::ToAgent(i, input) => {
                    if matches!(input, agent::Input::FromDispatcher(_) | agent::Input::Connected) && !self.link_up[i] {
                        self.lost_messages += 1;
                        continue;
                    }
                    for o in robots[i].agent.handle(now, input) {
                        match o {
                            AgentOut::Send(msg) => self.queue.push_back(Msg::ToDispatcher(i, msg)),
                            AgentOut::Platform(cmd) => phys.robot(i).execute(now, cmd),
                        }
                    }
                }
                Msg::ToDispatcher(i, msg) => {
                    if !self.link_up[i] {
                        self.lost_messages += 1;
                        continue;
                    }
                    if matches!(msg, FromRobot::Event(RobotEvent::Blocked { .. })) {
                        self.reroutes += 1;
                    }
                    let out = host.handle(now, Input::Robot { robot: robots[i].id.clone(), msg });
                    self.absorb(out);
                }
            }
        }
    }
}
