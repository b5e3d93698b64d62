//! Swapping the map under a running dispatcher: open orders move over by their coordinates and are delivered on
//! the new map, an order the new map cannot serve is cancelled with the reason, and a swap that would strand
//! anything, or that comes while a robot has steps under way, is refused whole and changes nothing.

use std::sync::Arc;

use super::*;
use crate::ideal::IdealRobots;
use crate::map::MapGraph;

fn small(n: usize) -> MapGraph {
    MapGraph::street_grid(n, 0.001).expect("a valid grid")
}

/// A 4 x 4 grid with one shop and one robot at its south-west corner.
fn corner() -> (Dispatcher, ShopId, RobotId) {
    let mut d = Dispatcher::new(small(4), Config::default());
    let t = Timestamp(1_000_000);
    let shop = ShopId::parse("s").expect("valid");
    reply(&d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.730, 7.420) }))
        .expect("shop");
    let robot = RobotId::parse("r").expect("valid");
    reply(&d.handle(t, Input::RegisterRobot { id: robot.clone(), name: String::new(), depot: ll(43.730, 7.420) }))
        .expect("robot");
    let hello = Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
    d.handle(t, Input::Robot { robot: robot.clone(), msg: FromRobot::Hello(hello) });
    (d, shop, robot)
}

fn swap(d: &mut Dispatcher, now: Timestamp, map: MapGraph) -> (Result<Reply, CoreError>, Vec<Output>) {
    let out = d.handle(now, Input::LoadMap { map: NewMap(Arc::new(map)) });
    (reply(&out), out)
}

#[test]
fn open_orders_move_to_the_new_map_and_are_delivered_on_it() {
    let (mut d, shop, robot) = corner();
    let mut now = Timestamp(1_000_000);
    // Two orders waiting for their parcels (the robot stands at the shop: no step is under way): one inside
    // the 2 x 2 grid that replaces the map, one to the far corner that the new map does not reach.
    let kept = place_to(&mut d, &shop, "kept", ll(43.7305, 7.4205), now);
    let lost = place_to(&mut d, &shop, "lost", ll(43.733, 7.423), now);
    assert!(d.robots[&robot].mission.base.is_empty(), "{:?}", d.robots[&robot].mission);
    d.meta.closed_edges.push((NodeId(0), NodeId(1)));

    let (r, out) = swap(&mut d, now, small(2));
    let Ok(Reply::MapSwapped(s)) = r else { panic!("not swapped: {r:?}") };
    assert_eq!((s.orders_moved, s.closures_dropped, s.nodes), (1, 1, 4));
    assert_eq!(s.cancelled.len(), 1);
    assert_eq!(s.cancelled[0].0, lost);
    assert!(s.cancelled[0].1.contains("drop-off"), "{}", s.cancelled[0].1);
    assert_eq!(s.fingerprint, small(2).fingerprint());
    // What was persisted: the new fingerprint, and the cancelled order with its reason (its shop sees it).
    let meta = out.iter().find_map(|o| match o {
        Output::Persist(Record::Meta(m)) => Some(m.clone()),
        _ => None,
    });
    assert_eq!(meta.and_then(|m| m.map_fingerprint), Some(small(2).fingerprint()));
    let cancelled = &d.orders[&lost];
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert!(cancelled.reason.as_deref().is_some_and(|r| r.starts_with("cancelled by a map change")));
    assert!(out.iter().any(|o| matches!(o, Output::OrderChanged(o) if o.id == lost)));
    // The kept order's places are the new map's nodes, and the robot plans only it.
    let node_at = |p: LatLon| d.map().snap(p, 150.0).expect("on the new map").node;
    assert_eq!(d.orders[&kept].dropoff.node, node_at(ll(43.7305, 7.4205)));
    assert_eq!(d.shops[&shop].place.node, node_at(ll(43.730, 7.420)));
    assert!(d.robots[&robot].plan.iter().all(|s| s.order == kept), "{:?}", d.robots[&robot].plan);
    assert!(d.meta.closed_edges.is_empty());

    reply(&d.handle(now, Input::MarkReady { shop: shop.clone(), order: kept.clone() })).expect("ready");
    let mut ideal = IdealRobots::new(d.config.pickup_service_s);
    run_until(&mut d, &mut ideal, &mut now, 1_800, |_| false);
    assert_eq!(d.orders[&kept].status, OrderStatus::Delivered);
}

#[test]
fn a_swap_while_a_robot_drives_or_that_strands_a_shop_is_refused_and_changes_nothing() {
    let (mut d, shop, robot) = corner();
    let now = Timestamp(1_000_000);
    let before = d.meta.map_fingerprint.clone();
    // A second shop at the far corner: the 2 x 2 grid has no way near it.
    let far = ShopId::parse("far").expect("valid");
    reply(&d.handle(now, Input::RegisterShop { id: far.clone(), name: "F".into(), pos: ll(43.733, 7.423) }))
        .expect("shop");
    match swap(&mut d, now, small(2)).0 {
        Err(CoreError::FailedPrecondition(m)) => assert!(m.contains("shop far"), "{m}"),
        other => panic!("a map without a shop's way was swapped in: {other:?}"),
    }
    assert_eq!(d.meta.map_fingerprint, before);
    // An order from the far shop: the robot drives there, so no swap now, even to a map that has every place.
    let o = place_to(&mut d, &far, "o", ll(43.7305, 7.4205), now);
    let node = d.orders[&o].dropoff.node;
    assert!(!d.robots[&robot].mission.base.is_empty());
    match swap(&mut d, now, small(5)).0 {
        Err(CoreError::FailedPrecondition(m)) => assert!(m.contains("r (") && m.contains("under way"), "{m}"),
        other => panic!("a map was swapped under a driving robot: {other:?}"),
    }
    assert_eq!(d.meta.map_fingerprint, before);
    assert_eq!(d.orders[&o].dropoff.node, node);
    assert_eq!(d.map().fingerprint(), small(4).fingerprint());
    let _ = shop;
}
