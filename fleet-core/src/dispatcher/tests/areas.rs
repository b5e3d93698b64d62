//! Service areas: shops and drop-offs outside a dispatcher's area are refused with the reason; an idle robot is
//! handed over to another area and works there, its mission numbering going on; a robot with work is not
//! handed over, and nothing changes.

use super::*;
use crate::Refusal;
use crate::area::ServiceArea;
use crate::ideal::IdealRobots;

/// The grid's western and eastern halves.
fn halves() -> (ServiceArea, ServiceArea) {
    let half = |name: &str, from: f64, to: f64| {
        ServiceArea::new(name, vec![ll(43.729, from), ll(43.729, to), ll(43.734, to), ll(43.734, from)]).expect("valid")
    };
    (half("west", 7.419, 7.4215), half("east", 7.4215, 7.424))
}

fn in_area(area: ServiceArea) -> Dispatcher {
    Dispatcher::new(grid(), Config { service_area: Some(area), ..Config::default() })
}

fn hello(d: &mut Dispatcher, now: Timestamp, id: &RobotId) {
    let last_update_id = d.robot(id).expect("in the fleet").mission.update_id;
    let hello = Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id, finished: vec![] };
    d.handle(now, Input::Robot { robot: id.clone(), msg: FromRobot::Hello(hello) });
}

fn hand_off(d: &mut Dispatcher, now: Timestamp, robot: &RobotId, to: &str) -> (Result<Reply, CoreError>, Vec<Output>) {
    let out = d.handle(now, Input::HandOffRobot { robot: robot.clone(), to_area: to.into() });
    (reply(&out), out)
}

#[test]
fn shops_and_drop_offs_outside_the_area_are_refused() {
    let (west, _) = halves();
    let mut d = in_area(west);
    let now = Timestamp(1_000_000);
    let shop = ShopId::parse("s").expect("valid");
    let outside = d.handle(now, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.733, 7.423) });
    match reply(&outside) {
        Err(CoreError::BadField { field: "location", message }) => assert!(message.contains("west"), "{message}"),
        other => panic!("a shop outside the area was registered: {other:?}"),
    }
    assert!(!outside.iter().any(|o| matches!(o, Output::Persist(_))), "a refusal wrote something");
    reply(&d.handle(now, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) }))
        .expect("inside");
    let r = RobotId::parse("r").expect("valid");
    reply(&d.handle(now, Input::RegisterRobot { id: r.clone(), name: String::new(), depot: ll(43.73, 7.42) }))
        .expect("robot");
    hello(&mut d, now, &r);
    place_to(&mut d, &shop, "in", ll(43.731, 7.421), now);
    let request = DeliveryRequest {
        dropoff: ll(43.732, 7.423),
        parcel: Parcel::new(Grams(500), 1).expect("valid"),
        ready_at: None,
        deliver_by: now.plus_secs(3_600.0),
    };
    let quote = reply(&d.handle(now, Input::Quote { shop: shop.clone(), request: request.clone() }));
    let expected = CoreError::Refused(Refusal::OutsideServiceArea { area: "west".into() });
    assert_eq!(quote, Err(expected.clone()));
    let before = d.orders().count();
    let out = d.handle(
        now,
        Input::PlaceOrder { shop, idempotency_key: "out".into(), request, pin: "1234".into(), link_hash: None },
    );
    assert_eq!(reply(&out), Err(expected));
    assert_eq!(d.orders().count(), before);
}

#[test]
fn an_idle_robot_moves_to_another_area_and_works_there() {
    let (west, east) = halves();
    let mut a = in_area(west);
    let mut now = Timestamp(1_000_000);
    let r = RobotId::parse("r").expect("valid");
    reply(&a.handle(now, Input::RegisterRobot { id: r.clone(), name: "Rolly".into(), depot: ll(43.73, 7.42) }))
        .expect("robot");
    hello(&mut a, now, &r);
    let update_id = a.robot(&r).expect("there").mission.update_id;

    let (answer, out) = hand_off(&mut a, now, &r, "east");
    let Ok(Reply::Robot(handed)) = answer else { panic!("not handed over: {answer:?}") };
    assert_eq!(handed.handed_to.as_deref(), Some("east"));
    assert!(a.robot(&r).is_none(), "still in the giving fleet");
    let record = out
        .iter()
        .find_map(|o| match o {
            Output::Persist(Record::Robot(x)) => Some(x.clone()),
            _ => None,
        })
        .expect("the hand-off is persisted");
    assert_eq!(record.handed_to.as_deref(), Some("east"));
    // Read back, the giving area has no such robot.
    let back = Dispatcher::new(grid(), Config::default()).with_records(vec![Record::Robot(record.clone())]);
    assert!(back.robot(&r).is_none());

    let mut b = in_area(east);
    let shop = ShopId::parse("e").expect("valid");
    reply(&b.handle(now, Input::RegisterShop { id: shop.clone(), name: "E".into(), pos: ll(43.733, 7.423) }))
        .expect("shop");
    let Ok(Reply::Robot(adopted)) = reply(&b.handle(now, Input::AdoptRobot { robot: record.clone() })) else {
        panic!("not adopted")
    };
    assert_eq!(adopted.handed_to, None);
    assert_eq!(adopted.name, "Rolly");
    assert!(!adopted.online, "online once it connects to this area");
    assert_eq!(
        reply(&b.handle(now, Input::AdoptRobot { robot: record })),
        Err(CoreError::AlreadyExists("robot r is already in this area's fleet; it cannot be handed over here".into()))
    );
    hello(&mut b, now, &r);
    assert!(b.mission_update(&r).expect("a mission").update_id >= update_id, "the robot's numbering goes on");
    let o = place_to(&mut b, &shop, "k", ll(43.732, 7.423), now);
    assert_eq!(b.orders[&o].robot.as_ref(), Some(&r));
    reply(&b.handle(now, Input::MarkReady { shop, order: o.clone() })).expect("ready");
    let mut ideal = IdealRobots::new(b.config.pickup_service_s);
    run_until(&mut b, &mut ideal, &mut now, 1_800, |d| d.orders[&o].status == OrderStatus::Delivered);
    assert_eq!(b.orders[&o].status, OrderStatus::Delivered);
}

#[test]
fn a_robot_with_work_is_not_handed_over_and_nothing_changes() {
    let (mut d, shop, near, far) = fleet();
    let mut now = Timestamp(1_000_000);
    let o = place(&mut d, &shop, "k", now);
    assert_eq!(d.orders[&o].robot.as_ref(), Some(&near));
    let before = d.robot(&near).cloned();
    let (answer, out) = hand_off(&mut d, now, &near, "east");
    match answer {
        Err(CoreError::FailedPrecondition(m)) => assert!(m.contains("planned"), "{m}"),
        other => panic!("handed over with a stop planned: {other:?}"),
    }
    assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))), "a refusal wrote something");
    assert_eq!(d.robot(&near).cloned(), before);

    reply(&d.handle(now, Input::MarkReady { shop, order: o.clone() })).expect("ready");
    let mut ideal = IdealRobots::new(d.config.pickup_service_s);
    run_until(&mut d, &mut ideal, &mut now, 600, |d| d.orders[&o].status.on_board());
    match hand_off(&mut d, now, &near, "east").0 {
        Err(CoreError::FailedPrecondition(m)) => assert!(m.contains("aboard"), "{m}"),
        other => panic!("handed over with a parcel aboard: {other:?}"),
    }
    match hand_off(&mut d, now, &far, "no/such").0 {
        Err(CoreError::BadField { field: "to_area", .. }) => {}
        other => panic!("a bad area name was taken: {other:?}"),
    }
    let ghost = RobotId::parse("ghost").expect("valid");
    assert!(matches!(hand_off(&mut d, now, &ghost, "east").0, Err(CoreError::NotFound(_))));
    assert!(d.robot(&far).is_some());
}
