//! Promises and lateness through the whole dispatcher, with ideal robots driven second by second: orders that
//! fall behind are re-planned or announced before their deliver-by passes, and what slow robots teach the
//! dispatcher slows its quotes and survives a restart.

use super::*;
use crate::host::RecordKey;
use crate::ideal::IdealRobots;

/// A 500 g parcel from `shop` to a corner of the grid 380 m away (not the one robot `far` waits on), due `due_s`
/// from `now`.
fn request(now: Timestamp, due_s: f64) -> DeliveryRequest {
    DeliveryRequest {
        dropoff: ll(43.732, 7.422),
        parcel: Parcel::new(Grams(500), 1).expect("valid"),
        ready_at: None,
        deliver_by: now.plus_secs(due_s),
    }
}

/// Places a request and marks its parcel ready at once.
fn place_req(d: &mut Dispatcher, shop: &ShopId, key: &str, now: Timestamp, req: DeliveryRequest) -> OrderId {
    let id = placed(&d.handle(
        now,
        Input::PlaceOrder {
            shop: shop.clone(),
            idempotency_key: key.into(),
            request: req,
            pin: "1234".into(),
            link_hash: None,
        },
    ));
    reply(&d.handle(now, Input::MarkReady { shop: shop.clone(), order: id.clone() })).expect("marked ready");
    id
}

/// What watchers saw while the world ran: each order change and each alert, with the time.
#[derive(Default)]
struct Seen {
    orders: Vec<(Timestamp, Order)>,
    alerts: Vec<(Timestamp, String)>,
}

impl Seen {
    fn take(&mut self, now: Timestamp, out: Vec<Output>) {
        for o in out {
            match o {
                Output::OrderChanged(o) => self.orders.push((now, *o)),
                Output::Alert { message, .. } => self.alerts.push((now, message)),
                _ => {}
            }
        }
    }
}

/// Runs ticks and ideal robots for up to `secs`, until `done` holds.
fn run(
    d: &mut Dispatcher,
    ideal: &mut IdealRobots,
    now: &mut Timestamp,
    secs: u32,
    seen: &mut Seen,
    done: impl Fn(&Dispatcher) -> bool,
) {
    for _ in 0..secs {
        *now = now.plus_secs(1.0);
        ideal.step(d, *now, 1.0);
        let out = d.handle(*now, Input::Tick);
        seen.take(*now, out);
        if done(d) {
            return;
        }
    }
}

#[test]
fn a_robot_falling_behind_has_its_order_announced_late_before_the_deliver_by_passes() {
    let (mut d, shop, near, far) = fleet();
    let mut now = Timestamp(1_000_000);
    // Only the robot at the shop works; the other is paused, so nothing can be re-planned.
    d.handle(now, Input::PauseRobot { robot: far });
    let req = request(now, 900.0);
    let deliver_by = req.deliver_by;
    let id = place_req(&mut d, &shop, "slow", now, req);
    assert_eq!(d.orders[&id].robot.as_ref(), Some(&near));
    let promise = d.orders[&id].promise.expect("a placed order keeps its promise");
    assert!(promise.eta <= promise.latest && promise.planned <= deliver_by, "{promise:?}");
    // It crawls at a twentieth of its speed: the 380 m trip takes far longer than the quarter of an hour.
    let mut ideal = IdealRobots::new(60.0);
    ideal.pace.insert(near.clone(), 0.05);
    let mut seen = Seen::default();
    run(&mut d, &mut ideal, &mut now, 4 * 3600, &mut seen, |d| d.orders[&id].status.is_terminal());
    let o = &d.orders[&id];
    assert_eq!(o.status, OrderStatus::Delivered);
    assert!(o.delivered_at.is_some_and(|t| t > deliver_by), "the order was in fact late");
    let told = o.delayed_at.expect("the order was announced late");
    assert!(told < deliver_by, "announced {} s before the deliver-by", deliver_by.secs_since(told));
    // The shop saw it on the order's stream before the deliver-by passed, with an ETA past the deliver-by (or
    // within one round of the watch of it).
    let (at, notice) = seen.orders.iter().find(|(_, x)| x.id == id && x.delayed_at.is_some()).expect("streamed");
    assert!(*at < deliver_by);
    let margin = d.config.dropoff_service_s + d.config.late_check_every_s;
    assert!(notice.eta_dropoff.is_some_and(|e| e.plus_secs(margin) > deliver_by), "{notice:?}");
    // And operators got one alert for it.
    let alerts: Vec<_> = seen.alerts.iter().filter(|(_, m)| m.contains(id.as_str()) && m.contains("late")).collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].0 < deliver_by);
}

#[test]
fn a_late_order_not_yet_started_moves_to_a_robot_that_can_still_make_it() {
    let (mut d, shop, near, far) = fleet();
    let t0 = Timestamp(1_000_000);
    let mut now = t0;
    d.handle(now, Input::PauseRobot { robot: far.clone() });
    // The robot at the shop loads a parcel that fills it, for the far side of the grid, and crawls off with it.
    let big = DeliveryRequest {
        dropoff: ll(43.733, 7.422),
        parcel: Parcel::new(Grams(500), 2).expect("valid"),
        ready_at: None,
        deliver_by: t0.plus_secs(2400.0),
    };
    let first = place_req(&mut d, &shop, "a", now, big);
    let mut ideal = IdealRobots::new(60.0);
    ideal.pace.insert(near.clone(), 0.1);
    let mut seen = Seen::default();
    run(&mut d, &mut ideal, &mut now, 90, &mut seen, |_| false);
    // A second order, due in 25 minutes, can only go to it (the other robot is paused): after the first drop-off.
    let second = place_req(&mut d, &shop, "b", now, request(now, t0.plus_secs(1500.0).secs_since(now)));
    assert_eq!(d.orders[&second].robot.as_ref(), Some(&near));
    d.handle(now, Input::ResumeRobot { robot: far.clone() });
    run(&mut d, &mut ideal, &mut now, 3 * 3600, &mut seen, |d| d.orders[&second].status.is_terminal());
    let o = &d.orders[&second];
    assert_eq!(o.robot.as_ref(), Some(&far), "re-planned onto the other robot");
    assert_eq!(o.status, OrderStatus::Delivered);
    assert!(o.delivered_at.is_some_and(|t| t <= o.request.deliver_by), "and on time");
    assert!(o.delayed_at.is_none(), "so its shop was never told it would be late");
    assert!(seen.alerts.iter().any(|(_, m)| m.contains(second.as_str()) && m.contains("re-planned onto robot far")));
    // The first order is aboard the slow robot: it stays, and is announced late before its deliver-by.
    assert_eq!(d.orders[&first].robot.as_ref(), Some(&near));
    run(&mut d, &mut ideal, &mut now, 3 * 3600, &mut seen, |d| d.orders[&first].status.is_terminal());
    let o = &d.orders[&first];
    assert!(o.delivered_at.is_some_and(|t| t > o.request.deliver_by), "it was late");
    assert!(o.delayed_at.is_some_and(|t| t < o.request.deliver_by), "{:?}", o.delayed_at);
}

#[test]
fn slow_drives_teach_the_dispatcher_longer_quotes_and_the_lesson_survives_a_restart() {
    let (mut d, shop, near, far) = fleet();
    let mut now = Timestamp(1_000_000);
    d.handle(now, Input::PauseRobot { robot: far });
    let quote = |d: &mut Dispatcher, now: Timestamp| match reply(
        &d.handle(now, Input::Quote { shop: shop.clone(), request: request(now, 7200.0) }),
    ) {
        Ok(Reply::Quote(q)) => q,
        other => panic!("{other:?}"),
    };
    let before = quote(&mut d, now);
    assert_eq!(d.travel_factor(), 1.0, "nothing learned yet: free flow");
    // The robot makes two thirds of its speed; it delivers one order after another.
    let mut ideal = IdealRobots::new(60.0);
    ideal.pace.insert(near.clone(), 2.0 / 3.0);
    let mut seen = Seen::default();
    // The store as the setup left it; every record persisted from here on goes over it.
    let mut records: BTreeMap<RecordKey, Record> = BTreeMap::new();
    let setup = d.shops().cloned().map(Record::Shop).chain(d.robots().map(|r| Record::Robot(Box::new(r.clone()))));
    records.extend(setup.map(|r| (RecordKey::of(&r), r)));
    for k in 0..40 {
        let id = place_req(&mut d, &shop, &format!("k{k}"), now, request(now, 7200.0));
        for _ in 0..7200 {
            now = now.plus_secs(1.0);
            let mut outs = Vec::new();
            ideal.step_with(&mut d, now, 1.0, &mut |out| outs.push(out));
            outs.push(d.handle(now, Input::Tick));
            for out in outs {
                for o in &out {
                    if let Output::Persist(r) = o {
                        records.insert(RecordKey::of(r), r.clone());
                    }
                }
                seen.take(now, out);
            }
            if d.orders[&id].status.is_terminal() {
                break;
            }
        }
        assert_eq!(d.orders[&id].status, OrderStatus::Delivered);
    }
    let learned = d.learned().clone();
    assert!(learned.legs() >= 40, "{} legs", learned.legs());
    let f = d.travel_factor();
    assert!(f > 1.3 && f < 1.5, "the legs took 1.5x free flow (drawn towards the prior while few): {f}");
    let after = quote(&mut d, now);
    // A restart from what was persisted plans with what was learned (up to the last batch persisted); one
    // from the same records without it quotes free flow.
    let Some(Record::Learned(kept)) = records.get(&RecordKey::Learned).cloned() else {
        panic!("what was learned was persisted")
    };
    assert!(learned.legs() - kept.legs() < u64::from(LEARNED_PERSIST_EVERY), "at most one batch behind");
    let restart = |records: Vec<Record>| {
        let mut d = Dispatcher::restore(grid(), Config::default(), records);
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(now, Input::Robot { robot: near.clone(), msg: FromRobot::Hello(hello) });
        d
    };
    let mut d2 = restart(records.values().cloned().collect());
    assert_eq!(d2.learned(), &kept);
    let mut free = restart(records.values().filter(|r| !matches!(r, Record::Learned(_))).cloned().collect());
    assert_eq!(free.learned().legs(), 0);
    let span = |q: &Quote| q.eta_dropoff.expect("feasible").secs_since(now);
    let (learned_q, free_q) = (quote(&mut d2, now), quote(&mut free, now));
    assert!(span(&learned_q) > 1.2 * span(&free_q), "learned {learned_q:?}, free flow {free_q:?}");
    assert!((span(&learned_q) - span(&after)).abs() < 0.05 * span(&after), "{learned_q:?} against {after:?}");
    assert!(before.eta_dropoff.is_some());
}
