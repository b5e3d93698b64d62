//! Dispatcher behaviour tests on small hand-made maps, and the helpers the sibling modules share.

mod areas;
mod faults;
mod handover;
mod improve;
mod lateness;
mod links;
mod mapswap;
mod positioning;
mod reassign;
mod refusals;
mod scenarios;
mod script;
mod traffic;
mod watchdogs;

use super::*;
use crate::Grams;
use crate::LatLon;
use crate::map::tests::grid;
use crate::mission::Hello;
use crate::mission::{ErrorLevel, FromRobot, RobotEvent, StepAction, StepOutcome, ToRobot};
use crate::order::Parcel;
use crate::order::{DeliveryRequest, OrderStatus};
use crate::planner::improve::Proposal;
use crate::robot::StopKind;
use crate::{NodeId, OrderId, RobotId, ShopId, Timestamp};

pub(crate) fn ll(lat: f64, lon: f64) -> LatLon {
    LatLon::new(lat, lon).expect("valid")
}

/// The id of the order a PlaceOrder output placed.
pub(crate) fn placed(out: &[Output]) -> OrderId {
    match reply(out) {
        Ok(Reply::Placed { order, .. }) => order.id,
        other => panic!("not placed: {other:?}"),
    }
}

pub(crate) fn reply(out: &[Output]) -> Result<Reply, CoreError> {
    out.iter()
        .find_map(|o| match o {
            Output::Reply(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a reply")
}

/// A shop at the grid's south-west corner, robot `near` there and robot `far` at the north-east corner.
fn fleet() -> (Dispatcher, ShopId, RobotId, RobotId) {
    let mut d = Dispatcher::new(grid(), Config::default());
    let t = Timestamp(1_000_000);
    let shop = ShopId::parse("s").expect("valid");
    reply(&d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) }))
        .expect("shop");
    let (near, far) = (RobotId::parse("near").expect("valid"), RobotId::parse("far").expect("valid"));
    for (id, at) in [(&near, ll(43.73, 7.42)), (&far, ll(43.733, 7.423))] {
        reply(&d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: at })).expect("robot");
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(t, Input::Robot { robot: id.clone(), msg: FromRobot::Hello(hello) });
    }
    (d, shop, near, far)
}

fn place(d: &mut Dispatcher, shop: &ShopId, key: &str, now: Timestamp) -> OrderId {
    place_to(d, shop, key, ll(43.731, 7.421), now)
}

/// Places a 500 g parcel from `shop` to `to`, due in an hour; panics unless it is placed.
pub(crate) fn place_to(d: &mut Dispatcher, shop: &ShopId, key: &str, to: LatLon, now: Timestamp) -> OrderId {
    let request = DeliveryRequest {
        dropoff: to,
        parcel: Parcel::new(Grams(500), 1).expect("valid"),
        ready_at: None,
        deliver_by: now.plus_secs(3_600.0),
    };
    match reply(&d.handle(
        now,
        Input::PlaceOrder {
            shop: shop.clone(),
            idempotency_key: key.into(),
            request,
            pin: "1234".into(),
            link_hash: None,
        },
    )) {
        Ok(Reply::Placed { order, .. }) => order.id,
        other => panic!("not placed: {other:?}"),
    }
}

#[test]
fn a_blip_is_forgotten_once_the_robot_is_back() {
    // Regression: an absence shorter than the limit used to keep counting after the robot came back, so an
    // online robot lost its orders when the old absence reached the limit, and its next real absence was
    // never acted on.
    let (mut d, shop, near, far) = fleet();
    let t0 = Timestamp(1_000_000);
    let o = place(&mut d, &shop, "k1", t0);
    d.handle(t0, Input::RobotDisconnected { robot: near.clone() });
    d.handle(t0.plus_secs(10.0), Input::Tick);
    let hello = Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
    d.handle(t0.plus_secs(20.0), Input::Robot { robot: near.clone(), msg: FromRobot::Hello(hello) });
    d.handle(t0.plus_secs(200.0), Input::Tick);
    let out = d.handle(t0.plus_secs(210.0), Input::Tick);
    assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()), "back online: nothing moves");
    assert!(!out.iter().any(|o| matches!(o, Output::Alert { .. })));
    // A real absence later is acted on.
    d.handle(t0.plus_secs(300.0), Input::RobotDisconnected { robot: near.clone() });
    d.handle(t0.plus_secs(310.0), Input::Tick);
    d.handle(t0.plus_secs(430.0), Input::Tick);
    assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(far));
}

#[test]
fn a_robot_gone_too_long_loses_orders_it_has_not_started() {
    let (mut d, shop, near, far) = fleet();
    let t0 = Timestamp(1_000_000);
    let o = place(&mut d, &shop, "k1", t0);
    assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()));
    d.handle(t0, Input::RobotDisconnected { robot: near.clone() });
    // A short absence changes nothing.
    d.handle(t0.plus_secs(60.0), Input::Tick);
    assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()));
    // Past the limit the order goes to the robot that is still online.
    let out = d.handle(t0.plus_secs(121.0), Input::Tick);
    let order = d.order(&o).expect("order");
    assert_eq!(order.robot.as_ref(), Some(&far), "{order:?}");
    assert!(d.robot(&near).expect("robot").plan.is_empty());
    assert!(out.iter().any(|o| matches!(o, Output::Persist(Record::Order(_)))), "the change is persisted");
    assert!(!out.iter().any(|o| matches!(o, Output::Alert { .. })), "nothing aboard: no alert");
}

#[test]
fn a_robot_gone_with_a_parcel_aboard_is_flagged_and_keeps_it() {
    let (mut d, shop, near, _far) = fleet();
    let t0 = Timestamp(1_000_000);
    let o = place(&mut d, &shop, "k1", t0);
    reply(&d.handle(t0, Input::MarkReady { shop: shop.clone(), order: o.clone() })).expect("ready");
    // The robot is at the shop: the pickup is released at once; it loads and reports it.
    let seq = d.robot(&near).expect("robot").mission.base.iter().find_map(|s| match &s.action {
        StepAction::Pickup { .. } => Some(s.seq),
        _ => None,
    });
    let seq = seq.expect("pickup released");
    d.handle(
        t0,
        Input::Robot {
            robot: near.clone(),
            msg: FromRobot::Event(RobotEvent::StepFinished { seq, outcome: StepOutcome::Done }),
        },
    );
    assert_eq!(d.order(&o).map(|o| o.status), Some(OrderStatus::InTransit));
    d.handle(t0, Input::RobotDisconnected { robot: near.clone() });
    let out = d.handle(t0.plus_secs(130.0), Input::Tick);
    assert_eq!(d.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()), "the parcel stays with its robot");
    let alerts: Vec<&String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Alert { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("parcels aboard"), "{alerts:?}");
    // Flagged once, not on every tick.
    let again = d.handle(t0.plus_secs(140.0), Input::Tick);
    assert!(!again.iter().any(|o| matches!(o, Output::Alert { .. })));
}

#[test]
fn after_a_restart_robots_get_a_full_grace_period() {
    let (mut d, shop, near, _far) = fleet();
    let t0 = Timestamp(1_000_000);
    let o = place(&mut d, &shop, "k1", t0);
    let records: Vec<Record> = d
        .robots()
        .map(|r| Record::Robot(Box::new(r.clone())))
        .chain(d.orders().map(|o| Record::Order(Box::new(o.clone()))))
        .chain(d.shops().map(|s| Record::Shop(s.clone())))
        .collect();
    let mut restored = Dispatcher::restore(grid(), Config::default(), records);
    // Hours later, the first tick after the restart starts the clock; nothing moves yet.
    let later = t0.plus_secs(7_200.0);
    restored.handle(later, Input::Tick);
    assert_eq!(restored.order(&o).and_then(|o| o.robot.clone()), Some(near.clone()));
}

/// The greedy baseline gives each order to an idle robot, one order a robot, and refuses once none is idle;
/// the insertion policies batch the third order onto a robot that has work.
#[test]
fn the_greedy_baseline_gives_one_order_to_each_idle_robot_and_no_more() {
    for policy in [Policy::Greedy, Policy::Insert, Policy::InsertImprove] {
        let (mut d, shop, near, far) = fleet();
        d.config.policy = policy;
        let t = Timestamp(1_000_000);
        let a = place(&mut d, &shop, "a", t);
        let b = place(&mut d, &shop, "c", t);
        let robot_of = |d: &Dispatcher, o: &OrderId| d.orders[o].robot.clone();
        let third = DeliveryRequest {
            dropoff: ll(43.731, 7.421),
            parcel: Parcel::new(Grams(500), 1).expect("valid"),
            ready_at: None,
            deliver_by: t.plus_secs(3_600.0),
        };
        let out = d.handle(
            t,
            Input::PlaceOrder {
                shop: shop.clone(),
                idempotency_key: "c3".into(),
                request: third,
                pin: "1234".into(),
                link_hash: None,
            },
        );
        if policy == Policy::Greedy {
            let mut robots = [robot_of(&d, &a), robot_of(&d, &b)];
            robots.sort();
            assert_eq!(robots, [Some(far.clone()), Some(near.clone())], "one order each");
            assert!(
                matches!(reply(&out), Err(CoreError::Refused(crate::Refusal::NoRobotAvailable))),
                "{:?}",
                reply(&out)
            );
        } else {
            // Both go to the robot at the shop, the third too: batching is cheaper than sending the far one.
            assert_eq!(robot_of(&d, &a), Some(near.clone()), "{policy}");
            assert_eq!(robot_of(&d, &b), Some(near.clone()), "{policy}");
            assert_eq!(robot_of(&d, &placed(&out)), Some(near.clone()), "{policy}");
        }
    }
    assert_eq!("greedy".parse::<Policy>(), Ok(Policy::Greedy));
    assert!("nearest".parse::<Policy>().is_err_and(|e| e.contains("insert-improve, insert, greedy")));
    assert_eq!(serde_json::from_str::<Policy>("\"insert-improve\"").ok(), Some(Policy::InsertImprove));
}

/// A store is read back only on the map it was written on: the fingerprint goes out with the first shop, a
/// restart on the same map passes and keeps it, one on another map (node ids meaning other places) is refused.
#[test]
fn a_store_is_read_back_only_on_the_map_it_was_written_on() {
    let mut d = Dispatcher::new(grid(), Config::default());
    let t = Timestamp(1_000_000);
    let out = d.handle(
        t,
        Input::RegisterShop { id: ShopId::parse("s").expect("valid"), name: "S".into(), pos: ll(43.73, 7.42) },
    );
    let records: Vec<Record> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Persist(r) => Some(r),
            _ => None,
        })
        .collect();
    let stored = records.iter().find_map(|r| match r {
        Record::Meta(m) => m.map_fingerprint.clone(),
        _ => None,
    });
    assert_eq!(stored, Some(grid().fingerprint()), "the first shop's records carry no map fingerprint");
    assert!(Dispatcher::check_map(&records, &grid()).is_ok());
    let other = crate::map::MapGraph::street_grid(4, 0.001).expect("a valid grid");
    assert_ne!(other.fingerprint(), grid().fingerprint());
    match Dispatcher::check_map(&records, &other) {
        Err(CoreError::FailedPrecondition(m)) => {
            assert!(m.contains(&grid().fingerprint()) && m.contains(&other.fingerprint()), "{m}")
        }
        other => panic!("a store from another map was accepted: {other:?}"),
    }
    // Records from before fingerprints (no meta) fit any map; a restored dispatcher then takes its map's.
    let old: Vec<Record> = records.iter().filter(|r| !matches!(r, Record::Meta(_))).cloned().collect();
    assert!(Dispatcher::check_map(&old, &other).is_ok());
    let restored = Dispatcher::restore(grid(), Config::default(), records);
    assert_eq!(restored.meta.map_fingerprint, Some(grid().fingerprint()));
}

/// Runs ideal robots and ticks second by second for up to `secs` seconds, until `done` holds.
pub(crate) fn run_until(
    d: &mut Dispatcher,
    ideal: &mut crate::ideal::IdealRobots,
    now: &mut Timestamp,
    secs: u32,
    done: impl Fn(&Dispatcher) -> bool,
) {
    for _ in 0..secs {
        *now = now.plus_secs(1.0);
        ideal.step(d, *now, 1.0);
        d.handle(*now, Input::Tick);
        if done(d) {
            return;
        }
    }
}
