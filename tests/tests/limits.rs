//! Limits: a caller over its call rate, a shop at its open-order cap, a robot flooding its session and an
//! oversized request are each refused with a clear status, and nothing they asked for happens.

mod common;

use common::*;
use dispatcher::limits::Limits;
use tonic::Code;
use trundle_proto::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_over_their_limits_are_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(dir.path(), None, |o| {
        // Operators and the first shop need a few calls to set up; the rate refills very slowly.
        o.limits = Limits {
            calls_per_s: 0.05,
            call_burst: 6.0,
            session_msgs_per_s: 0.05,
            session_burst: 5.0,
            ..Limits::default()
        };
        o.config.max_open_orders_per_shop = 2;
    })
    .await;
    let mut ops = Ops::new(&server).await;
    let a_token = ops.shop("shop-a", CASINO).await;
    let b_token = ops.shop("shop-b", PORT).await;
    let r1 = ops.robot("r1", CASINO).await;
    let mut robot = RawRobot::open(&server, &r1, hello("r1")).await.expect("session opens");
    robot.next().await.expect("welcome");

    // Shop A: two orders (its open-order cap), a third refused with RESOURCE_EXHAUSTED.
    let mut a = Shop::new(&server, a_token).await;
    a.place_when_fleet_up(pb::PlaceOrderRequest {
        idempotency_key: "a-1".into(),
        delivery: Some(Shop::delivery(LARVOTTO_WEST, 3600)),
    })
    .await;
    a.place("a-2", PORT).await.expect("second order");
    let e = a.place("a-3", PORT).await.expect_err("over the open-order cap");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("open orders"), "{e:?}");
    // Its call budget (6) is now spent: the next call is refused before it reaches the dispatcher.
    let mut refused = None;
    for _ in 0..4 {
        if let Err(e) = a.get("ord-000001").await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("over the call rate");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("call rate"), "{e:?}");

    // Another shop has its own budget; it sees that only two orders exist in A's name... through ops.
    let mut b = Shop::new(&server, b_token).await;
    assert!(b.list().await.is_empty());
    let ids: Vec<_> = (1..=3).map(|k| format!("ord-{k:06}")).collect();
    let mut found = 0;
    for id in &ids {
        let r = ops.client.get_order(authed(pb::OpsGetOrderRequest { order_id: id.clone() }, &ops.token)).await;
        found += usize::from(r.is_ok());
    }
    assert_eq!(found, 2, "the refused order was never created");

    // A robot streaming faster than its session allows loses the session with RESOURCE_EXHAUSTED.
    let state = pb::RobotMessage {
        msg: Some(pb::robot_message::Msg::State(pb::RobotState {
            position: Some(ll(CASINO)),
            battery_pct: 90.0,
            ..Default::default()
        })),
    };
    for _ in 0..10 {
        if robot.tx.send(state.clone()).await.is_err() {
            break;
        }
    }
    let mut end = None;
    for _ in 0..50 {
        match robot.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(s) => {
                end = Some(s);
                break;
            }
        }
    }
    assert_eq!(end.map(|s| s.code()), Some(Code::ResourceExhausted));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None).await;
    let mut ops = Ops::new(&server).await;
    let shop = ops.shop("shop-a", CASINO).await;
    let mut a = Shop::new(&server, shop).await;
    let huge = "k".repeat(5 << 20);
    let e = a.place(&huge, PORT).await.expect_err("5 MB is over the 4 MB limit");
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(a.list().await.is_empty(), "nothing was created");
    server.stop().await;
}
