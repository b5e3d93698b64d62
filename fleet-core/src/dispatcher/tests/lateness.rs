//! Promises and lateness through the whole dispatcher, with ideal robots driven second by second: orders that
//! fall behind are re-planned or announced before their deliver-by passes, and what slow robots teach the
//! dispatcher slows its quotes and survives a restart.

use super::*;
use crate::Refusal;
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

/// The fleet as [`fleet`] sets it up, with `config` and with `ratio` as every promise's outcome so far (actual
/// over planned time to hand-over; `None`: nothing learned yet, the prior).
fn fleet_with(config: Config, ratio: Option<f32>) -> (Dispatcher, ShopId, RobotId) {
    let (d, shop, near, far) = fleet();
    let mut records: Vec<Record> = d.shops().cloned().map(Record::Shop).collect();
    records.extend(d.robots().map(|r| Record::Robot(Box::new(r.clone()))));
    if let Some(ratio) = ratio {
        let learned = crate::learn::Learned { hours: Vec::new(), outcomes: std::iter::repeat_n(ratio, 100).collect() };
        records.push(Record::Learned(learned));
    }
    let mut d = Dispatcher::restore(grid(), config, records);
    let t = Timestamp(1_000_000);
    for id in [&near, &far] {
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(t, Input::Robot { robot: id.clone(), msg: FromRobot::Hello(hello) });
    }
    d.handle(t, Input::PauseRobot { robot: far });
    (d, shop, near)
}

#[test]
fn plans_leave_room_in_proportion_to_the_time_ahead_as_far_as_the_fleet_has_slipped() {
    let now = Timestamp(1_000_000);
    // The quote, or the refusal it carries.
    let quote = |d: &mut Dispatcher, due_s: f64| -> Result<crate::dispatcher::Quote, Refusal> {
        let req = Input::Quote { shop: ShopId::parse("s").expect("valid"), request: request(now, due_s) };
        match reply(&d.handle(now, req)) {
            Ok(Reply::Quote(q)) if q.feasible => Ok(q),
            Ok(Reply::Quote(q)) => Err(q.reason.expect("a refusal says why")),
            other => panic!("{other:?}"),
        }
    };
    // The robot at the shop reaches the drop-off `trip` seconds from now (a quote with time to spare says so).
    let (mut d, shop, _) = fleet_with(Config::default(), Some(1.0));
    let q = quote(&mut d, 7200.0).expect("time to spare");
    let trip = q.eta_dropoff.expect("an ETA").secs_since(now) - d.config.dropoff_service_s;
    assert!(trip > 120.0, "{trip}");
    let margin = d.config.dropoff_service_s + d.config.late_buffer_s;
    // A deliver-by that leaves the trip a tenth more than it needs, after the hand-over and the buffer.
    let tight = trip * 1.1 + margin;

    // A fleet whose promises held exactly plans up to the buffer: the tight order fits.
    quote(&mut d, tight).expect("fits");
    // One whose deliveries took a fifth longer than planned nine times in ten keeps that room: it refuses the
    // tight order, offering a later time, and an order placed with time to spare is planned by its deliver-by
    // less the room, in proportion to the time ahead.
    let (mut d, shop2, _) = fleet_with(Config::default(), Some(1.2));
    match quote(&mut d, tight) {
        Err(Refusal::DeadlineTooSoon { earliest: Some(_), .. }) => {}
        other => panic!("the tight order fits a fleet that slips: {other:?}"),
    }
    let id = place_req(&mut d, &shop2, "spare", now, request(now, 3600.0));
    let plan_by = d.orders[&id].promise.and_then(|p| p.plan_by).expect("kept with the promise");
    let arrive_by = now.plus_secs(3600.0 - margin);
    assert!((plan_by.secs_since(now) - arrive_by.secs_since(now) / 1.2).abs() < 1.0, "{plan_by:?}");
    // The robot's plan keeps it: the drop-off's deadline in the planner is that time.
    let stop = d.robots().flat_map(|r| r.plan.iter()).find(|s| s.order == id && s.kind == StopKind::Dropoff);
    let task = d.task_of(stop.expect("planned")).expect("a task");
    assert_eq!(task.deadline, Some(plan_by.max(d.orders[&id].eta_dropoff.unwrap_or_default())));
    // With the room turned off the same fleet plans up to the buffer again.
    let (mut d, _, _) = fleet_with(Config { plan_quantile: 0.0, ..Config::default() }, Some(1.2));
    quote(&mut d, tight).expect("fits without the room");
    // Before anything is learned, the prior's 90th percentile (1.25) stands in.
    let (mut d, _, _) = fleet_with(Config::default(), None);
    assert!(quote(&mut d, tight).is_err());
    let _ = shop;
}
