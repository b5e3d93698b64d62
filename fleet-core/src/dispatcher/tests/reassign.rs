//! An operator moves an order to another robot: it leaves the first robot's plan and is delivered by the second;
//! an order being loaded or aboard, a robot that cannot take work, unknown names and an order that cannot fit
//! are refused with the reason, and nothing changes.

use super::*;
use crate::ideal::IdealRobots;

fn reassign(d: &mut Dispatcher, now: Timestamp, order: &OrderId, robot: &RobotId) -> Result<Reply, CoreError> {
    reply(&d.handle(now, Input::ReassignOrder { order: order.clone(), robot: robot.clone() }))
}

#[test]
fn an_order_moves_to_another_robot_and_is_delivered_by_it() {
    let (mut d, shop, near, far) = fleet();
    let mut now = Timestamp(1_000_000);
    let o = place(&mut d, &shop, "k", now);
    assert_eq!(d.orders[&o].robot.as_ref(), Some(&near));
    let Ok(Reply::Order(moved)) = reassign(&mut d, now, &o, &far) else { panic!("not moved") };
    assert_eq!(moved.robot.as_ref(), Some(&far));
    assert_eq!(moved.status, OrderStatus::ToPickup, "the far robot sets off for the shop at once");
    assert!(d.robots[&near].plan.is_empty(), "{:?}", d.robots[&near].plan);
    assert!(d.robots[&far].plan.iter().any(|s| s.order == o && s.kind == StopKind::Pickup));
    // Moving it to the robot it is on already changes nothing.
    assert!(reassign(&mut d, now, &o, &far).is_ok());

    reply(&d.handle(now, Input::MarkReady { shop: shop.clone(), order: o.clone() })).expect("ready");
    let mut ideal = IdealRobots::new(d.config.pickup_service_s);
    run_until(&mut d, &mut ideal, &mut now, 1_800, |_| false);
    assert_eq!(d.orders[&o].status, OrderStatus::Delivered);
    assert_eq!(d.orders[&o].robot.as_ref(), Some(&far));
}

#[test]
fn a_reassignment_that_cannot_be_made_says_why_and_changes_nothing() {
    let (mut d, shop, near, far) = fleet();
    let mut now = Timestamp(1_000_000);
    let o = place(&mut d, &shop, "k", now);
    let before = d.orders[&o].clone();
    let nobody = RobotId::parse("nobody").expect("valid");
    assert!(matches!(reassign(&mut d, now, &o, &nobody), Err(CoreError::NotFound(_))));
    let ghost = OrderId::parse("ord-999999").expect("valid");
    assert!(matches!(reassign(&mut d, now, &ghost, &far), Err(CoreError::NotFound(_))));
    d.handle(now, Input::PauseRobot { robot: far.clone() });
    match reassign(&mut d, now, &o, &far) {
        Err(CoreError::FailedPrecondition(m)) => assert!(m.contains("paused"), "{m}"),
        other => panic!("given to a paused robot: {other:?}"),
    }
    assert_eq!(d.orders[&o], before);
    d.handle(now, Input::ResumeRobot { robot: far.clone() });

    // Once its parcel is aboard, the order stays on its robot.
    reply(&d.handle(now, Input::MarkReady { shop: shop.clone(), order: o.clone() })).expect("ready");
    let mut ideal = IdealRobots::new(d.config.pickup_service_s);
    run_until(&mut d, &mut ideal, &mut now, 600, |d| d.orders[&o].status.on_board());
    assert!(d.orders[&o].status.on_board());
    let aboard = d.orders[&o].clone();
    match reassign(&mut d, now, &o, &far) {
        Err(CoreError::FailedPrecondition(m)) => assert!(m.contains("aboard"), "{m}"),
        other => panic!("moved off a robot carrying it: {other:?}"),
    }
    assert_eq!(d.orders[&o], aboard);
    assert!(d.robots[&far].plan.is_empty());
    let _ = near;
}
