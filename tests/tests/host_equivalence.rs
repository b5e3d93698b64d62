//! The two owners of the core make the same decisions: one scripted stretch of a day (shops and robots
//! registered, robots connecting, orders placed, marked ready and cancelled, a robot going away past the
//! offline limit, ticks as time passes) is driven once through `fleet_core::host::Host` directly, as the
//! simulator's lockstep driver does, and once through the server's core thread (a real sled store in a temp
//! dir, robot sessions attached, a manual clock). The records on disk, every message each robot was sent and
//! every reply must be the same.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use dispatcher::clock::ManualClock;
use dispatcher::core::{Core, ImproverConfig};
use dispatcher::store::{SledStore, Store};
use fleet_core::dispatcher::{Config, Dispatcher, Input, Reply};
use fleet_core::host::Host;
use fleet_core::mission::{FromRobot, Hello};
use fleet_core::order::{DeliveryRequest, OrderStatus, Parcel};
use fleet_core::robot::RobotModel;
use fleet_core::{CoreError, Grams, LatLon, OrderId, RobotId, ShopId, Timestamp};
use tokio::sync::mpsc;
use trundle_proto::{convert, pb};

use common::*;

const T0: u64 = 1_780_653_600_000;

fn at(p: (f64, f64)) -> LatLon {
    LatLon::new(p.0, p.1).expect("valid")
}

/// One step of the script: advance the clock to `at_s` after T0, then give the core the input (or only let
/// time pass).
struct Step {
    at_s: u64,
    input: Option<Input>,
}

fn script() -> (Vec<RobotId>, Vec<Step>) {
    let shops = [ShopId::parse("bakery").expect("id"), ShopId::parse("florist").expect("id")];
    let robots: Vec<RobotId> = ["r1", "r2", "r3"].iter().map(|r| RobotId::parse(r).expect("id")).collect();
    let mut steps = vec![
        Step { at_s: 0, input: Some(Input::RegisterShop { id: shops[0].clone(), name: "B".into(), pos: at(CASINO) }) },
        Step { at_s: 0, input: Some(Input::RegisterShop { id: shops[1].clone(), name: "F".into(), pos: at(PORT) }) },
    ];
    for (r, depot) in robots.iter().zip([CASINO, PORT, BOULEVARD]) {
        steps.push(Step {
            at_s: 1,
            input: Some(Input::RegisterRobot { id: r.clone(), name: String::new(), depot: at(depot) }),
        });
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        steps.push(Step { at_s: 2, input: Some(Input::Robot { robot: r.clone(), msg: FromRobot::Hello(hello) }) });
    }
    let drops = [LARVOTTO_WEST, CONDAMINE, PRINCESSE_GRACE, BOULEVARD, CASINO, LARVOTTO_WEST];
    for (k, d) in drops.iter().enumerate() {
        let request = DeliveryRequest {
            dropoff: at(*d),
            parcel: Parcel::new(Grams(500 + 100 * k as u32), 1).expect("valid"),
            ready_at: Some(Timestamp(T0 + (60 + 30 * k as u64) * 1_000)),
            deliver_by: Timestamp(T0 + (3_600 + 300 * k as u64) * 1_000),
        };
        steps.push(Step {
            at_s: 5 + 7 * k as u64,
            input: Some(Input::PlaceOrder {
                shop: shops[k % 2].clone(),
                idempotency_key: format!("key-{k}"),
                request,
                pin: format!("{:06}", 100_000 + k),
                link_hash: None,
            }),
        });
    }
    // The first order is packed; the fourth is cancelled; robot r1 goes away for good.
    let order = |k: u64| OrderId::parse(&format!("ord-{:06}", k + 1)).expect("id");
    steps.push(Step { at_s: 70, input: Some(Input::MarkReady { shop: shops[0].clone(), order: order(0) }) });
    steps.push(Step { at_s: 80, input: Some(Input::CancelOrder { shop: shops[1].clone(), order: order(3) }) });
    steps.push(Step { at_s: 91, input: Some(Input::RobotDisconnected { robot: robots[0].clone() }) });
    // Time passes past r1's offline limit (120 s): a tick re-assigns what it had not started.
    for s in (91..=260).step_by(3) {
        steps.push(Step { at_s: s, input: None });
    }
    (robots, steps)
}

/// A reply as the script compares it (the server's error type wraps the core's).
fn reply_text(r: &Result<Reply, String>) -> String {
    format!("{r:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lockstep_host_and_the_server_core_decide_the_same() {
    let config = Config { tick_every_s: 1.0, ..Config::default() };
    let (robots, steps) = script();

    // Lockstep, as the simulator drives it: the host directly, ticking after every step when one is due.
    let mut host = Host::new(Dispatcher::new(monaco(), config.clone()), false);
    let mut kept: BTreeMap<String, fleet_core::dispatcher::Record> = BTreeMap::new();
    let mut sent: BTreeMap<RobotId, Vec<pb::DispatcherMessage>> = BTreeMap::new();
    let mut replies = Vec::new();
    let mut unstarted: Vec<OrderId> = Vec::new();
    let absorb = |routed: fleet_core::host::Routed, kept: &mut BTreeMap<_, _>, sent: &mut BTreeMap<_, Vec<_>>| {
        for (k, r) in routed.records {
            kept.insert(k.storage_key(), r);
        }
        for (robot, msg) in routed.to_robots {
            sent.entry(robot).or_default().push(convert::to_robot_to_wire(&msg));
        }
        routed.reply
    };
    if let Some(r) = host.tick_if_due(Timestamp(T0)) {
        absorb(r, &mut kept, &mut sent);
    }
    for s in &steps {
        let now = Timestamp(T0 + s.at_s * 1_000);
        if matches!(s.input, Some(Input::RobotDisconnected { .. })) {
            unstarted = host
                .dispatcher()
                .orders()
                .filter(|o| o.robot.as_ref() == Some(&robots[0]) && o.status == OrderStatus::Assigned)
                .map(|o| o.id.clone())
                .collect();
        }
        if let Some(input) = &s.input {
            let reply = absorb(host.handle(now, input.clone()), &mut kept, &mut sent);
            let expects_reply = !matches!(input, Input::Robot { .. } | Input::RobotDisconnected { .. });
            if expects_reply {
                replies.push(reply_text(
                    &reply.unwrap_or_else(|| Err(CoreError::precondition("none"))).map_err(|e| e.to_string()),
                ));
            }
        }
        if let Some(r) = host.tick_if_due(now) {
            absorb(r, &mut kept, &mut sent);
        }
    }

    // The server's core thread: a real sled store, robot sessions attached, the same clock readings.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SledStore::open(dir.path()).expect("store opens"));
    let clock = ManualClock::new(Timestamp(T0));
    let mut core = Core::start(
        Dispatcher::new(monaco(), config),
        store.clone(),
        ImproverConfig { enabled: false, ..ImproverConfig::default() },
        Box::new(clock.clone()),
    )
    .expect("core starts");
    let h = core.handle.clone();
    let mut inboxes = BTreeMap::new();
    for r in &robots {
        let (tx, rx) = mpsc::channel(1_024);
        h.attach(r.clone(), tx).await.expect("attached");
        inboxes.insert(r.clone(), rx);
    }
    let mut server_replies = Vec::new();
    for s in &steps {
        clock.set(Timestamp(T0 + s.at_s * 1_000));
        match &s.input {
            Some(input @ (Input::Robot { .. } | Input::RobotDisconnected { .. })) => {
                h.send(input.clone()).expect("core running");
            }
            Some(input) => {
                let r = h.call(input.clone()).await.map_err(|e| match e {
                    dispatcher::Error::Core(c) => c.to_string(),
                    other => other.to_string(),
                });
                server_replies.push(reply_text(&r));
            }
            None => assert!(h.wake(), "core running"),
        }
        // A barrier: the query runs after the input and after the tick it made due.
        h.query(|_| ()).await.expect("core running");
    }
    core.stop().await;

    assert_eq!(server_replies, replies, "the same replies");
    let on_disk: BTreeMap<String, fleet_core::dispatcher::Record> = store
        .load()
        .expect("loads")
        .into_iter()
        .map(|r| (fleet_core::host::RecordKey::of(&r).storage_key(), r))
        .collect();
    assert_eq!(on_disk.len(), kept.len(), "the same records");
    for (k, r) in &kept {
        assert_eq!(on_disk.get(k), Some(r), "record {k}");
    }
    for r in &robots {
        let mut got = Vec::new();
        if let Some(rx) = inboxes.get_mut(r) {
            while let Ok(m) = rx.try_recv() {
                got.push(m.expect("no error on the session"));
            }
        }
        let want = sent.get(r).cloned().unwrap_or_default();
        assert!(!want.is_empty(), "robot {r} was sent its missions");
        assert_eq!(got, want, "the messages robot {r} was sent");
    }
    // The script did something worth comparing: orders were placed, assigned and one cancelled, and the
    // absent robot's unstarted work moved to other robots on a tick.
    assert!(!unstarted.is_empty(), "r1 had unstarted work when it went away");
    for id in &unstarted {
        let o = host.dispatcher().order(id).expect("exists");
        assert!(o.robot.as_ref() != Some(&robots[0]), "{id} moved away from r1: {o:?}");
    }
    let orders: Vec<_> = kept
        .values()
        .filter_map(|r| match r {
            fleet_core::dispatcher::Record::Order(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(orders.len(), 6);
    assert!(orders.iter().filter(|o| o.robot.is_some()).count() >= 4, "orders were assigned: {orders:?}");
    assert!(orders.iter().any(|o| o.status == OrderStatus::Cancelled), "the cancellation landed");
}
