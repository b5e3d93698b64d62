//! Idle positioning through the whole dispatcher, with ideal robots: idle robots end up waiting near the shops in
//! proportion to their recent demand, stay there, and a robot given work on the way drives to it directly.

use super::*;
use crate::ideal::IdealRobots;
use crate::map::MapGraph;

/// An 8 x 8 street grid (about 780 m across) with shop `a` at the south-west corner, shop `b` at the north-east
/// one, and `n` robots all at the north-west corner, far from both.
fn town(n: usize) -> (Dispatcher, ShopId, ShopId, Vec<RobotId>) {
    town_with(Config::default(), n)
}

/// `config` with idle positioning on, once a minute.
fn positioning(mut config: Config) -> Config {
    config.idle.every_s = 60.0;
    config
}

fn town_with(config: Config, n: usize) -> (Dispatcher, ShopId, ShopId, Vec<RobotId>) {
    let map = MapGraph::street_grid(8, 0.001).expect("a valid grid");
    let mut d = Dispatcher::new(map, positioning(config));
    let t = Timestamp(1_000_000);
    let (a, b) = (ShopId::parse("a").expect("valid"), ShopId::parse("b").expect("valid"));
    for (id, pos) in [(&a, ll(43.730, 7.420)), (&b, ll(43.737, 7.427))] {
        reply(&d.handle(t, Input::RegisterShop { id: id.clone(), name: id.to_string(), pos })).expect("shop");
    }
    let robots: Vec<RobotId> = (0..n).map(|i| RobotId::parse(&format!("r{i}")).expect("valid")).collect();
    for id in &robots {
        reply(&d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: ll(43.737, 7.420) }))
            .expect("robot");
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(t, Input::Robot { robot: id.clone(), msg: FromRobot::Hello(hello) });
    }
    (d, a, b, robots)
}

fn place_ready(d: &mut Dispatcher, shop: &ShopId, key: &str, to: LatLon, now: Timestamp) -> OrderId {
    let id = place_to(d, shop, key, to, now);
    reply(&d.handle(now, Input::MarkReady { shop: shop.clone(), order: id.clone() })).expect("marked ready");
    id
}

/// Runs ticks and ideal robots second by second for `secs`.
fn run(d: &mut Dispatcher, ideal: &mut IdealRobots, now: &mut Timestamp, secs: u32) {
    for _ in 0..secs {
        *now = now.plus_secs(1.0);
        ideal.step(d, *now, 1.0);
        d.handle(*now, Input::Tick);
    }
}

fn near(d: &Dispatcher, shop: &ShopId, r: &RobotId) -> bool {
    let at = d.shops[shop].place.pos;
    d.robots[r].pos.distance_m(at) <= d.config.idle.station_m
}

#[test]
fn idle_robots_wait_near_the_shops_by_their_demand_and_stay() {
    let (mut d, a, b, robots) = town(4);
    let mut now = Timestamp(1_000_000);
    let mut ideal = IdealRobots::new(d.config.pickup_service_s);
    // Three orders at shop a, one at shop b, all to the grid's middle.
    let mut orders = Vec::new();
    for (k, shop) in [&a, &a, &a, &b].into_iter().enumerate() {
        orders.push(place_ready(&mut d, shop, &format!("k{k}"), ll(43.7335, 7.4235), now));
    }
    run(&mut d, &mut ideal, &mut now, 3_600);
    for o in &orders {
        assert_eq!(d.orders[o].status, OrderStatus::Delivered, "{o}");
    }
    assert!(d.idle_moves() >= 1, "no robot was sent to wait near a shop");
    let at_a = robots.iter().filter(|r| near(&d, &a, r)).count();
    let at_b = robots.iter().filter(|r| near(&d, &b, r)).count();
    assert_eq!((at_a, at_b), (3, 1), "robots at {:?}", robots.iter().map(|r| d.robots[r].pos).collect::<Vec<_>>());
    for r in &robots {
        let robot = &d.robots[r];
        assert!(robot.mission.base.is_empty() && robot.plan.is_empty(), "{r} is not idle: {:?}", robot.mission);
    }
    // No two robots wait on one node, and none on a shop's own spot.
    let nodes: BTreeSet<NodeId> = robots.iter().map(|r| d.robots[r].node).collect();
    assert_eq!(nodes.len(), robots.len());
    assert!(!nodes.contains(&d.shops[&a].place.node) && !nodes.contains(&d.shops[&b].place.node));
    // Once placed they stay: another half hour with no new orders sends nobody anywhere.
    let moves = d.idle_moves();
    run(&mut d, &mut ideal, &mut now, 1_800);
    assert_eq!(d.idle_moves(), moves);
}

#[test]
fn a_robot_given_work_on_its_way_to_wait_drives_to_the_work() {
    // Every way counts as narrow, so a drive comes in steps, one per way between resources.
    let mut config = Config::default();
    config.traffic.narrow_below_m = 2.5;
    let (mut d, a, b, robots) = town_with(config, 1);
    let r = &robots[0];
    let mut now = Timestamp(1_000_000);
    let mut ideal = IdealRobots::new(d.config.pickup_service_s);
    // Demand at shop a only: the robot sets off from the north-west corner to wait near a (south-west).
    d.note_demand(&a, now);
    run(&mut d, &mut ideal, &mut now, 20);
    assert_eq!(d.idle_moves(), 1);
    // On this grid nothing holds a drive back; on a real map traffic releases it a claim at a time. Hold back
    // all but its first two steps, as a claim not yet granted would.
    let base = &mut d.robots.get_mut(r).expect("registered").mission.base;
    assert!(base.len() > 3, "a short idle drive: {base:?}");
    for s in base.iter_mut().skip(2) {
        s.released = false;
    }
    // An order at shop b (north-east) while it drives: what was not yet released of the idle drive is withdrawn,
    // and the drive to b starts where the released part ends.
    let before = d.robots[r].mission.next_seq;
    let order = place_ready(&mut d, &b, "b", ll(43.7365, 7.4265), now);
    let base = &d.robots[r].mission.base;
    assert!(base.iter().filter(|s| s.seq < before).all(|s| s.released), "{base:?}");
    assert_eq!(super::super::release::drives_end(base), Some(d.shops[&b].place.node), "{base:?}");
    run(&mut d, &mut ideal, &mut now, 3_600);
    assert_eq!(d.orders[&order].status, OrderStatus::Delivered);
}
