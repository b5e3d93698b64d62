//! The watchdogs through the whole dispatcher: a robot that should drive but does not move raises one alert
//! after the stall time (and none while it drives), and a robot low on battery with a parcel aboard raises one.

use super::*;
use crate::ideal::IdealRobots;
use crate::mission::RobotReport;

fn alerts(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Alert { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_robot_that_should_drive_but_stands_still_is_reported_once() {
    let (mut d, shop, near, far) = fleet();
    let mut now = Timestamp(1_000_000);
    // Only the far robot works, and it has broken down without saying so.
    d.handle(now, Input::PauseRobot { robot: near.clone() });
    let o = place(&mut d, &shop, "k", now);
    reply(&d.handle(now, Input::MarkReady { shop: shop.clone(), order: o.clone() })).expect("ready");
    assert_eq!(d.orders[&o].robot.as_ref(), Some(&far));
    let mut ideal = IdealRobots::new(d.config.pickup_service_s);
    ideal.halted.insert(far.clone());
    let mut seen: Vec<(f64, String)> = Vec::new();
    let start = now;
    for _ in 0..600 {
        now = now.plus_secs(1.0);
        ideal.step(&mut d, now, 1.0);
        for a in alerts(&d.handle(now, Input::Tick)) {
            seen.push((now.secs_since(start), a));
        }
    }
    let stalls: Vec<&(f64, String)> = seen.iter().filter(|(_, a)| a.contains("has not moved")).collect();
    assert_eq!(stalls.len(), 1, "{seen:?}");
    assert!(stalls[0].1.contains(&format!("robot {far}")), "{}", stalls[0].1);
    let at = stalls[0].0;
    // Robots are looked at every few ticks (a share of the fleet per tick).
    assert!((d.config.stall_alert_s..d.config.stall_alert_s + 7.0).contains(&at), "raised after {at} s");

    // Moving again: it delivers, and no further alert comes while it drives. (The paused robot, resumed, makes
    // room at the shop's door.)
    ideal.halted.remove(&far);
    d.handle(now, Input::ResumeRobot { robot: near });
    for _ in 0..1_800 {
        now = now.plus_secs(1.0);
        ideal.step(&mut d, now, 1.0);
        let a = alerts(&d.handle(now, Input::Tick));
        assert!(!a.iter().any(|a| a.contains("has not moved")), "{a:?}");
    }
    assert_eq!(d.orders[&o].status, OrderStatus::Delivered);
}

#[test]
fn a_robot_low_on_battery_with_a_parcel_aboard_is_reported_once() {
    let (mut d, shop, near, _far) = fleet();
    let mut now = Timestamp(1_000_000);
    let o = place(&mut d, &shop, "k", now);
    reply(&d.handle(now, Input::MarkReady { shop: shop.clone(), order: o.clone() })).expect("ready");
    let mut ideal = IdealRobots::new(d.config.pickup_service_s);
    // Until the parcel is aboard.
    run_until(&mut d, &mut ideal, &mut now, 600, |d| !d.robots[&near].on_board.is_empty());
    assert!(!d.robots[&near].on_board.is_empty(), "the parcel never got aboard");
    let report = |pct: f64, pos| RobotReport {
        pos,
        heading_deg: 0.0,
        speed_mps: 1.0,
        battery_pct: pct,
        last_node: None,
        update_id: 0,
        driving: true,
        paused: false,
    };
    let pos = d.robots[&near].pos;
    let mut low = Vec::new();
    for pct in [30.0, 14.0, 13.0, 12.0] {
        d.handle(now, Input::Robot { robot: near.clone(), msg: FromRobot::State(report(pct, pos)) });
        now = now.plus_secs(1.0);
        low.extend(alerts(&d.handle(now, Input::Tick)).into_iter().filter(|a| a.contains("battery")));
    }
    assert_eq!(low.len(), 1, "{low:?}");
    assert!(low[0].contains("14%") && low[0].contains(o.as_str()), "{}", low[0]);
}

/// Alerts get ids and stay open until acknowledged; the open ones are persisted and come back after a restart.
#[test]
fn alerts_have_ids_and_stay_open_until_acknowledged() {
    let (mut d, shop, near, _far) = fleet();
    let now = Timestamp(1_000_000);
    let o = place(&mut d, &shop, "k", now);
    // A robot's error raises an alert.
    let out = d.handle(now, error(&near));
    let ids: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Alert { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 1, "{out:?}");
    assert!(ids[0] >= 1);
    let persisted: Vec<Record> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Persist(r) => Some(r),
            _ => None,
        })
        .collect();
    assert!(persisted.iter().any(|r| matches!(r, Record::Alerts(v) if v.iter().any(|a| a.id == ids[0]))));
    assert_eq!(d.open_alerts().map(|a| a.id).collect::<Vec<_>>(), ids);

    // After a restart from what was persisted, it is still open, and the next alert gets a new id.
    let mut records: Vec<Record> = persisted;
    records.extend(d.robots().map(|r| Record::Robot(Box::new(r.clone()))));
    records.extend(d.orders().map(|o| Record::Order(Box::new(o.clone()))));
    records.extend(d.shops().map(|s| Record::Shop(s.clone())));
    let mut d = Dispatcher::restore(grid(), Config::default(), records);
    assert_eq!(d.open_alerts().map(|a| a.id).collect::<Vec<_>>(), ids);
    assert!(matches!(reply(&d.handle(now, Input::AckAlert { id: ids[0] })), Ok(Reply::Done)));
    assert_eq!(d.open_alerts().count(), 0);
    assert!(matches!(reply(&d.handle(now, Input::AckAlert { id: ids[0] })), Err(CoreError::NotFound(_))));
    let out = d.handle(now, error(&near));
    let next = out.iter().find_map(|o| match o {
        Output::Alert { id, .. } => Some(*id),
        _ => None,
    });
    assert!(next.is_some_and(|n| n > ids[0]), "{next:?}");
    let _ = o;
}

/// The same alert about the same robot is raised once while it is open: again only after it is acknowledged.
#[test]
fn an_alert_already_open_is_not_raised_again() {
    let (mut d, _shop, near, far) = fleet();
    let now = Timestamp(1_000_000);
    let raised = |d: &mut Dispatcher, robot: &RobotId| alerts(&d.handle(now, error(robot))).len();
    assert_eq!(raised(&mut d, &near), 1);
    assert_eq!(raised(&mut d, &near), 0, "the same, still open");
    assert_eq!(raised(&mut d, &far), 1, "the same words about another robot");
    assert_eq!(d.open_alerts().count(), 2);
    let first = d.open_alerts().next().map(|a| a.id).expect("open");
    reply(&d.handle(now, Input::AckAlert { id: first })).expect("acknowledged");
    assert_eq!(raised(&mut d, &near), 1, "acknowledged, so it is news again");
}

fn error(robot: &RobotId) -> Input {
    Input::Robot {
        robot: robot.clone(),
        msg: FromRobot::Event(RobotEvent::Error {
            level: ErrorLevel::Warning,
            kind: "lid".into(),
            detail: "the lid sensor is flaky".into(),
        }),
    }
}
