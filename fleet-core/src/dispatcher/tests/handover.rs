//! Hand-over between robots when one goes away.

use super::*;
use crate::Grams;
use crate::map::tests::grid;
use crate::mission::Hello;
use crate::order::Parcel;

#[test]
fn an_order_marked_ready_while_its_robot_is_away_is_picked_up_by_the_next_robot() {
    let t = Timestamp(1_000_000);
    let ll = |a, b| LatLon::new(a, b).expect("valid");
    let mut d = Dispatcher::new(grid(), Config { offline_limit_s: 2.0, ..Config::default() });
    let shop = ShopId::parse("s").expect("valid");
    d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) });
    let (a, b) = (RobotId::parse("a").expect("valid"), RobotId::parse("b").expect("valid"));
    let hello = || {
        FromRobot::Hello(Hello {
            model: RobotModel::default(),
            mission_id: String::new(),
            last_update_id: 0,
            finished: vec![],
        })
    };
    for id in [&a, &b] {
        d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: ll(43.73, 7.42) });
    }
    d.handle(t, Input::Robot { robot: a.clone(), msg: hello() });
    let request = DeliveryRequest {
        dropoff: ll(43.733, 7.423),
        parcel: Parcel::new(Grams(500), 1).expect("valid"),
        ready_at: None,
        deliver_by: t.plus_secs(3_600.0),
    };
    let out = d.handle(
        t,
        Input::PlaceOrder {
            shop: shop.clone(),
            idempotency_key: "k".into(),
            request,
            pin: "1234".into(),
            link_hash: None,
        },
    );
    let order = super::tests::placed(&out);
    d.handle(t, Input::RobotDisconnected { robot: a.clone() });
    d.handle(t.plus_secs(0.5), Input::MarkReady { shop, order: order.clone() });
    d.handle(t.plus_secs(1.0), Input::Robot { robot: b.clone(), msg: hello() });
    d.handle(t.plus_secs(1.5), Input::Tick);
    d.handle(t.plus_secs(4.0), Input::Tick);
    let o = d.order(&order).expect("order");
    let holder = o.robot.clone().expect("assigned");
    let r = d.robot(&holder).expect("robot");
    eprintln!("{holder}: status {:?}, plan {:?}, base {:?}", o.status, r.plan, r.mission.base);
    assert_eq!(holder, b, "the order moves to the robot that is there");
    assert!(
        r.mission.base.iter().any(|s| matches!(&s.action, StepAction::Pickup { order: x, .. } if x == &order)),
        "and its pickup is released to it: {:?}",
        r.mission.base
    );
}
