//! The background improver's proposals: applied when they are still valid, refused otherwise.

use super::*;
use crate::map::tests::grid;
use crate::mission::Hello;
use crate::planner::improve::{ImproveParams, ProposedPlan, improve};

use super::{ll, reply};

fn hello(d: &mut Dispatcher, id: &RobotId, t: Timestamp) {
    let hello = Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
    d.handle(t, Input::Robot { robot: id.clone(), msg: FromRobot::Hello(hello) });
}

fn place(d: &mut Dispatcher, shop: &ShopId, key: &str, to: LatLon, now: Timestamp) -> OrderId {
    super::place_to(d, shop, key, to, now)
}

/// Two orders planned on the far robot while the one at the shop was offline; then it comes back.
fn lopsided() -> (Dispatcher, ShopId, RobotId, RobotId, [OrderId; 2], Timestamp) {
    let t = Timestamp(1_000_000);
    let mut d = Dispatcher::new(grid(), Config::default());
    let shop = ShopId::parse("s").expect("valid");
    reply(&d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) }))
        .expect("shop");
    let (near, far) = (RobotId::parse("near").expect("valid"), RobotId::parse("far").expect("valid"));
    for (id, at) in [(&near, ll(43.73, 7.42)), (&far, ll(43.733, 7.423))] {
        reply(&d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: at })).expect("robot");
    }
    hello(&mut d, &far, t);
    // North and east of the shop: one robot doing both drives there and back across the grid.
    let o1 = place(&mut d, &shop, "k1", ll(43.733, 7.42), t);
    let o2 = place(&mut d, &shop, "k2", ll(43.73, 7.423), t);
    assert!(d.orders().all(|o| o.robot.as_ref() == Some(&far)), "only the far robot was online");
    hello(&mut d, &near, t);
    (d, shop, near, far, [o1, o2], t)
}

fn budget(n: u64) -> impl FnMut(u64) -> f64 {
    move |i| i as f64 / n as f64
}

#[test]
fn a_fleet_bigger_than_a_region_is_improved_a_region_at_a_time() {
    use crate::planner::improve::REGION_ROBOTS;
    let (mut d, _shop, near, far, [o1, o2], t) = lopsided();
    // Sixty more idle robots at the shop: more robots than one search works on.
    for k in 0..60 {
        let id = RobotId::parse(&format!("extra-{k:02}")).expect("valid");
        reply(&d.handle(t, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: ll(43.73, 7.42) }))
            .expect("robot");
        hello(&mut d, &id, t);
    }
    let snap = d.plan_snapshot(t);
    assert!(snap.plans.len() > REGION_ROBOTS, "{} robots", snap.plans.len());
    let p = improve(&snap, &ImproveParams::default(), &mut budget(200)).expect("an improvement exists");
    assert!(p.plans.len() <= REGION_ROBOTS && p.travel_after_s < p.travel_before_s - 1.0, "{p:?}");
    assert_eq!(reply(&d.handle(t.plus_secs(1.0), Input::ProposePlans(Box::new(p)))), Ok(Reply::Done));
    assert_eq!(d.order(&o1).and_then(|o| o.robot.clone()), Some(far.clone()), "released: stays");
    let taker = d.order(&o2).and_then(|o| o.robot.clone()).expect("planned");
    assert_ne!(taker, far, "moved off the far robot");
    let at = |id: &RobotId| d.robot(id).expect("robot").node;
    assert_eq!(at(&taker), at(&near), "to a robot at the shop");
}

#[test]
fn an_improver_moves_unstarted_work_to_a_better_robot() {
    let (mut d, _shop, near, far, [o1, o2], t) = lopsided();
    let snap = d.plan_snapshot(t);
    let p = improve(&snap, &ImproveParams::default(), &mut budget(200)).expect("an improvement exists");
    assert!(p.travel_after_s < p.travel_before_s - 1.0, "{p:?}");
    // Same seed, same budget: same proposal.
    assert_eq!(improve(&snap, &ImproveParams::default(), &mut budget(200)).as_ref(), Some(&p));
    let out = d.handle(t.plus_secs(1.0), Input::ProposePlans(Box::new(p)));
    assert_eq!(reply(&out), Ok(Reply::Done));
    // The first order's drive was released to the far robot: it stays. The second moves to the near one.
    assert_eq!(d.order(&o1).and_then(|o| o.robot.clone()), Some(far.clone()));
    assert_eq!(d.order(&o2).and_then(|o| o.robot.clone()), Some(near.clone()));
    assert!(d.robot(&far).expect("far").plan.iter().all(|s| s.order == o1));
    assert!(out.iter().any(|o| matches!(o, Output::Persist(Record::Order(x)) if x.id == o2)), "persisted");
    assert!(out.iter().any(|o| matches!(o, Output::Send { robot, .. } if robot == &near)), "released");
}

#[test]
fn a_stale_or_unsafe_proposal_changes_nothing() {
    let (mut d, shop, near, far, [o1, o2], t) = lopsided();
    let snap = d.plan_snapshot(t);
    let p = improve(&snap, &ImproveParams::default(), &mut budget(200)).expect("an improvement exists");
    // An order placed since the snapshot lands on a robot the proposal names.
    place(&mut d, &shop, "k3", ll(43.732, 7.421), t);
    let plans = |d: &Dispatcher| d.robots().map(|r| r.plan.clone()).collect::<Vec<_>>();
    let before = plans(&d);
    let out = d.handle(t, Input::ProposePlans(Box::new(p)));
    assert!(matches!(reply(&out), Err(CoreError::FailedPrecondition(m)) if m.contains("stale")), "{out:?}");
    assert_eq!(plans(&d), before);
    assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))));

    // Hand-made proposals that break a commitment are refused too.
    let keys = |r: &RobotId, d: &Dispatcher| -> Vec<(OrderId, StopKind)> {
        d.robot(r).expect("robot").plan.iter().map(|s| (s.order.clone(), s.kind)).collect()
    };
    let mut far_stops = keys(&far, &d);
    let near_stops = keys(&near, &d);
    // Moving the released first stop of the far robot to the near robot.
    let o1_stops: Vec<_> = far_stops.iter().filter(|k| k.0 == o1).cloned().collect();
    far_stops.retain(|k| k.0 != o1);
    let mut moved = o1_stops.clone();
    moved.extend(near_stops.clone());
    let bad = |plans: Vec<ProposedPlan>| {
        Box::new(Proposal { taken_at: t, plans, travel_before_s: 0.0, travel_after_s: 0.0, iterations: 0 })
    };
    let out = d.handle(
        t,
        Input::ProposePlans(bad(vec![
            ProposedPlan { robot: far.clone(), stops: far_stops.clone() },
            ProposedPlan { robot: near.clone(), stops: moved },
        ])),
    );
    assert!(matches!(reply(&out), Err(CoreError::FailedPrecondition(_))), "{out:?}");
    // A drop-off before its pickup.
    let mut reversed = keys(&far, &d);
    if let Some(i) = reversed.iter().position(|k| k.0 == o2 && k.1 == StopKind::Pickup) {
        let pick = reversed.remove(i);
        reversed.push(pick);
    }
    let out = d.handle(t, Input::ProposePlans(bad(vec![ProposedPlan { robot: far.clone(), stops: reversed }])));
    assert!(reply(&out).is_err(), "{out:?}");
    // Taking an order off a robot the proposal does not name.
    let mut grab = near_stops.clone();
    grab.extend(keys(&far, &d).into_iter().filter(|k| k.0 == o2));
    let out = d.handle(t, Input::ProposePlans(bad(vec![ProposedPlan { robot: near.clone(), stops: grab }])));
    assert!(
        matches!(reply(&out), Err(CoreError::FailedPrecondition(m)) if m.contains("is now planned on robot far")),
        "{out:?}"
    );
    assert_eq!(plans(&d), before);
}
