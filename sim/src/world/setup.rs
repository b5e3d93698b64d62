//! Building the world a run starts from: the shops (the scenario's sites, then OSM shop points or map nodes
//! near the centre), the physics world (building walls, pedestrians from their own seeded stream, one body per
//! robot parked at its depot), and the host of the core with every shop and robot registered and their
//! records kept as a store would.

use std::collections::BTreeMap;

use fleet_core::dispatcher::{self, Dispatcher, Input, Record};
use fleet_core::host::{Host, RecordKey, Routed};
use fleet_core::map::MapGraph;
use fleet_core::{LatLon, NodeId, RobotId, ShopId, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use robot_agent::agent::Agent;

use super::lockstep::{Fleet, Net, SimRobot};
use crate::osm::{Area, OsmShop};
use crate::physics::{DEFAULT_PEDESTRIAN_PROFILE, PhysicsConfig, PhysicsWorld, Signals};
use crate::scenario::{Buildings, Fault, PickFrom};
use crate::{Error, Scenario};

/// The run's shops, in index order: where each stands and its name.
#[derive(Debug, Clone)]
pub(super) struct Shops {
    pub(super) pos: Vec<LatLon>,
    pub(super) names: Vec<String>,
}

/// Everything [`build`] sets up.
pub(super) struct World {
    pub(super) fleet: Fleet,
    /// Building walls put into the physics world.
    pub(super) walls: usize,
    /// The dispatcher's configuration (a restart builds the new core with it).
    pub(super) config: dispatcher::Config,
    /// The map as the process loads it, kept when a dispatcher restart is scheduled: a restart rebuilds the
    /// core without the closures made since.
    pub(super) pristine: Option<MapGraph>,
    /// Shop `i`'s id.
    pub(super) shop_ids: Vec<ShopId>,
}

/// Map node `i`'s position.
pub(super) fn node_pos(m: &MapGraph, i: u32) -> Result<LatLon, Error> {
    m.pos(NodeId(i)).ok_or_else(|| Error::Setup(format!("node {i} missing")))
}

/// Whether `p` is within the dispatcher's snapping distance of the map.
pub(super) fn snaps(m: &MapGraph, scenario: &Scenario, p: LatLon) -> bool {
    m.snap(p, scenario.dispatch.max_snap_m).is_ok()
}

/// The shops: the given sites, then picks within 1 km of the map's centre (real shop streets are central),
/// OSM shop points when the scenario picks from them, else map nodes. Draws from `rng`.
pub(super) fn shops(area: &Area, scenario: &Scenario, rng: &mut ChaCha8Rng) -> Result<Shops, Error> {
    let (map, features) = (&area.map, &area.features);
    let n = map.node_count() as u32;
    let centre = map.origin();
    let mut shop_pos: Vec<LatLon> = scenario.shop_sites.iter().map(|s| s.pos).collect();
    let mut shop_names: Vec<String> = scenario.shop_sites.iter().map(|s| s.name.clone()).collect();
    let mut osm_pool: Vec<&OsmShop> = match scenario.pick_from {
        PickFrom::Osm => features
            .shops
            .iter()
            .filter(|s| s.pos.distance_m(centre) < 1_000.0 && snaps(map, scenario, s.pos))
            .collect(),
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
            let p = node_pos(map, rng.random_range(0..n))?;
            if p.distance_m(centre) < 1_000.0 {
                pick = Some(p);
                break;
            }
        }
        shop_pos.push(pick.ok_or_else(|| Error::Setup("no node near the map centre".into()))?);
        shop_names.push(format!("Shop {}", shop_pos.len() - 1));
    }
    Ok(Shops { pos: shop_pos, names: shop_names })
}

/// The physics world and the host of the core, with every shop and robot registered. The physics world gets
/// the buildings first, then the pedestrians from their own seeded stream (so the number of pedestrians does
/// not change the orders drawn from the main one), then the robots.
pub(super) fn build(area: &Area, scenario: &Scenario, shops: &Shops) -> Result<World, Error> {
    let map = area.map.clone();
    let start = Timestamp(scenario.start_ms);
    let mut phys =
        PhysicsWorld::new(map.origin(), start, PhysicsConfig { hz: scenario.physics_hz, ..Default::default() })?;
    phys.set_signals(Signals::new(&map, scenario.dispatch.signal_cycle_s, scenario.dispatch.signal_green_s));
    phys.watch_zones(&scenario.dispatch.speed_zones);
    let walls = match scenario.buildings {
        Buildings::Walls => phys.add_walls(area.walls()),
        Buildings::Off => 0,
    };
    let mut ped_rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    ped_rng.set_stream(1);
    let profile = match scenario.pedestrian_profile.as_slice() {
        [] => DEFAULT_PEDESTRIAN_PROFILE,
        p => std::array::from_fn(|h| p.get(h).copied().unwrap_or(1.0) as f32),
    };
    phys.add_pedestrians(&map, scenario.pedestrians, profile, &mut ped_rng);
    for w in &scenario.walkers {
        let (Ok(a), Ok(b)) = (LatLon::new(w.from[0], w.from[1]), LatLon::new(w.to[0], w.to[1])) else { continue };
        for k in 0..w.count {
            phys.add_pedestrian(a, b, w.speed_mps as f32, k as f32 / w.count as f32);
        }
    }

    // The scenario's improvement interval is the dispatcher's (0: off); the search's budget is iterations.
    let config = dispatcher::Config { improve_every_s: scenario.improve_every_s as f64, ..scenario.dispatch.clone() };
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
            host.handle(start, Input::RegisterShop { id: id.clone(), name: shops.names[i].clone(), pos: shops.pos[i] });
        expect_ok(&out, &format!("shop {} ({})", i, shops.names[i]))?;
        keep(&mut store, out);
    }
    let mut robots = Vec::new();
    let depots = if scenario.depots.is_empty() { &shops.pos } else { &scenario.depots };
    for i in 0..scenario.robots {
        let id = RobotId::parse(&format!("robot-{i:03}")).map_err(|e| Error::Setup(e.to_string()))?;
        let depot = depots[i % depots.len()];
        let out = host.handle(start, Input::RegisterRobot { id: id.clone(), name: format!("Robot {i}"), depot });
        expect_ok(&out, &format!("robot {i}'s depot"))?;
        keep(&mut store, out);
        // Robots sharing a depot park side by side in rows of eight (1.2 m apart, rows 1.5 m apart), the first
        // on the depot itself: two bodies cannot stand in one place.
        let slot = (0..i).filter(|&j| depots[j % depots.len()] == depot).count();
        let xy = phys.projection().to_xy(depot);
        let parked = [xy[0] + (slot % 8) as f64 * 1.2, xy[1] + (slot / 8) as f64 * 1.5];
        let body = phys.add_robot(phys.projection().to_latlon(parked), 0.0);
        debug_assert_eq!(body, i, "robot i is body i");
        phys.set_battery_wh(i, scenario.model.battery_wh);
        robots.push(SimRobot { id, agent: Agent::new(scenario.model) });
    }
    let net = Net::new(&robots, store);
    Ok(World { fleet: Fleet { host, net, robots, phys }, walls, config, pristine, shop_ids })
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
