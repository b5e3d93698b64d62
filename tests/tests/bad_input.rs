//! Every class of bad input gets its status and a message a person understands, and changes nothing: the
//! served state is compared before and after each request, and the store is read back at the end.

mod common;

use common::*;
use dispatcher::store::{SledStore, Store};
use fleet_core::dispatcher::Record;
use tonic::Code;
use trundle_proto::pb;

fn delivery() -> pb::Delivery {
    Shop::delivery(LARVOTTO_WEST, 3600)
}

fn place(key: &str, d: Option<pb::Delivery>) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest { idempotency_key: key.into(), delivery: d }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_class_of_bad_input_gets_its_status_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None).await;
    let mut ops = Ops::new(&server).await;
    let a_token = ops.shop("shop-a", CASINO).await;
    let b_token = ops.shop("shop-b", PORT).await;
    let r1 = ops.robot("r1", LARVOTTO_WEST).await;
    let mut robot = RawRobot::open(&server, &r1, hello("r1")).await.expect("session");
    robot.next().await.expect("welcome");
    let mut a = Shop::new(&server, a_token).await;
    let mut b = Shop::new(&server, b_token).await;
    // Two good orders to aim bad requests at: one live, one cancelled.
    let live_req = place("live", Some(delivery()));
    let live = a.place_when_fleet_up(live_req).await.order.expect("order");
    let gone = a.send(place("gone", Some(delivery()))).await.expect("placed").order.expect("order");
    a.client
        .cancel_order(authed(pb::CancelOrderRequest { order_id: gone.order_id.clone() }, &a.token))
        .await
        .expect("cancelled");

    let with = |f: &dyn Fn(&mut pb::Delivery)| {
        let mut d = delivery();
        f(&mut d);
        Some(d)
    };
    let far_past = prost_types::Timestamp { seconds: 1_000_000_000, nanos: 0 };
    let shop_cases: Vec<(&str, pb::PlaceOrderRequest, Code, &str)> = vec![
        (
            "NaN latitude",
            place("k1", with(&|d| d.dropoff = Some(pb::LatLon { lat: f64::NAN, lon: 7.42 }))),
            Code::InvalidArgument,
            "not a finite number",
        ),
        (
            "infinite longitude",
            place("k1", with(&|d| d.dropoff = Some(pb::LatLon { lat: 43.7, lon: f64::INFINITY }))),
            Code::InvalidArgument,
            "not a finite number",
        ),
        (
            "latitude out of range",
            place("k1", with(&|d| d.dropoff = Some(pb::LatLon { lat: 95.0, lon: 7.42 }))),
            Code::InvalidArgument,
            "outside [-90, 90]",
        ),
        (
            "longitude out of range",
            place("k1", with(&|d| d.dropoff = Some(pb::LatLon { lat: 43.7, lon: -190.0 }))),
            Code::InvalidArgument,
            "outside [-180, 180]",
        ),
        ("missing delivery", place("k1", None), Code::InvalidArgument, "delivery is required"),
        (
            "missing drop-off",
            place("k1", with(&|d| d.dropoff = None)),
            Code::InvalidArgument,
            "delivery.dropoff is required",
        ),
        (
            "missing deadline",
            place("k1", with(&|d| d.deliver_by = None)),
            Code::InvalidArgument,
            "deliver_by is required",
        ),
        (
            "deadline in the past",
            place("k1", with(&|d| d.deliver_by = Some(ts_in(-60)))),
            Code::InvalidArgument,
            "in the past",
        ),
        (
            "deadline before 1970",
            place("k1", with(&|d| d.deliver_by = Some(prost_types::Timestamp { seconds: -1, nanos: 0 }))),
            Code::InvalidArgument,
            "not a valid time",
        ),
        (
            "ready after deadline",
            place("k1", with(&|d| d.ready_at = Some(ts_in(7200)))),
            Code::InvalidArgument,
            "ready time",
        ),
        (
            "ready long ago is fine but deadline long ago is not",
            place(
                "k1",
                with(&|d| {
                    d.ready_at = Some(far_past);
                    d.deliver_by = Some(far_past)
                }),
            ),
            Code::InvalidArgument,
            "in the past",
        ),
        (
            "address at sea",
            place("k1", with(&|d| d.dropoff = Some(pb::LatLon { lat: 43.70, lon: 7.45 }))),
            Code::InvalidArgument,
            "m from the nearest walkable way",
        ),
        (
            "zero weight",
            place("k1", with(&|d| d.parcel = Some(pb::Parcel { weight_grams: 0, compartments: 1 }))),
            Code::InvalidArgument,
            "weight",
        ),
        (
            "too heavy",
            place("k1", with(&|d| d.parcel = Some(pb::Parcel { weight_grams: 60_000, compartments: 1 }))),
            Code::InvalidArgument,
            "weight",
        ),
        (
            "too many compartments",
            place("k1", with(&|d| d.parcel = Some(pb::Parcel { weight_grams: 100, compartments: 9 }))),
            Code::InvalidArgument,
            "compartments",
        ),
        ("missing parcel", place("k1", with(&|d| d.parcel = None)), Code::InvalidArgument, "parcel is required"),
        ("empty idempotency key", place("", Some(delivery())), Code::InvalidArgument, "idempotency key"),
        (
            "oversized idempotency key",
            place(&"k".repeat(10_000), Some(delivery())),
            Code::InvalidArgument,
            "idempotency key",
        ),
        (
            "key reused with another body",
            place("live", with(&|d| d.parcel = Some(pb::Parcel { weight_grams: 999, compartments: 1 }))),
            Code::AlreadyExists,
            "different request",
        ),
        (
            "parcel bigger than any robot",
            place("k1", with(&|d| d.parcel = Some(pb::Parcel { weight_grams: 100, compartments: 4 }))),
            Code::FailedPrecondition,
            "compartments",
        ),
    ];

    let mut shops = [&mut a, &mut b];
    let before = fingerprint(&mut ops, &mut shops).await;
    let [a, b] = shops;
    for (what, req, code, needle) in shop_cases {
        let err = a.send(req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(needle), "{what}: {:?} should mention {needle:?}", err.message());
    }

    // Ids: empty, malformed, oversized, unknown, and state refusals.
    let id_cases: Vec<(&str, String, Code)> = vec![
        ("empty id", String::new(), Code::InvalidArgument),
        ("id with a slash", "ord/1".into(), Code::InvalidArgument),
        ("unicode id", "ordé".into(), Code::InvalidArgument),
        ("oversized id", "o".repeat(65), Code::InvalidArgument),
        ("unknown id", "ord-999999".into(), Code::NotFound),
    ];
    for (what, id, code) in &id_cases {
        let e1 = a.get(id).await.expect_err(what);
        let e2 = a.ready(id).await.expect_err(what);
        let e3 = a
            .client
            .cancel_order(authed(pb::CancelOrderRequest { order_id: id.clone() }, &a.token))
            .await
            .expect_err(what);
        for e in [e1, e2, e3] {
            assert_eq!(e.code(), *code, "{what}: {e:?}");
        }
    }
    let e = a
        .client
        .cancel_order(authed(pb::CancelOrderRequest { order_id: gone.order_id.clone() }, &a.token))
        .await
        .expect_err("cancel twice");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("CANCELLED"), "{e:?}");
    let e = a.ready(&gone.order_id).await.expect_err("ready after cancel");
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = a
        .client
        .list_orders(authed(
            pb::ListOrdersRequest { include_closed: true, limit: 5000, ..Default::default() },
            &a.token,
        ))
        .await
        .expect_err("limit too big");
    assert_eq!(e.code(), Code::InvalidArgument);
    for token in ["ord-999999", "not a token"] {
        let e = a
            .client
            .list_orders(authed(pb::ListOrdersRequest { page_token: token.into(), ..Default::default() }, &a.token))
            .await
            .expect_err("bad page token");
        assert_eq!(e.code(), Code::InvalidArgument, "{token}: {e:?}");
    }

    // Operator calls.
    let t = ops.token.clone();
    let shop_req = |id: &str, name: &str, at: Option<pb::LatLon>| {
        authed(pb::RegisterShopRequest { shop_id: id.into(), name: name.into(), location: at }, &t)
    };
    type Answer = Result<tonic::Response<pb::RegisterShopResponse>, tonic::Status>;
    let op_cases: Vec<(&str, Answer, Code)> = vec![
        (
            "duplicate shop",
            ops.client.register_shop(shop_req("shop-a", "x", Some(ll(CASINO)))).await,
            Code::AlreadyExists,
        ),
        ("bad shop id", ops.client.register_shop(shop_req("a b", "x", Some(ll(CASINO)))).await, Code::InvalidArgument),
        ("missing location", ops.client.register_shop(shop_req("shop-c", "x", None)).await, Code::InvalidArgument),
        (
            "oversized name",
            ops.client.register_shop(shop_req("shop-c", &"n".repeat(10_000), Some(ll(CASINO)))).await,
            Code::InvalidArgument,
        ),
        (
            "shop at sea",
            ops.client.register_shop(shop_req("shop-c", "x", Some(pb::LatLon { lat: 43.70, lon: 7.45 }))).await,
            Code::InvalidArgument,
        ),
    ];
    for (what, r, code) in op_cases {
        assert_eq!(r.expect_err(what).code(), code, "{what}");
    }
    let e = ops
        .client
        .register_robot(authed(
            pb::RegisterRobotRequest {
                robot_id: "r9".into(),
                name: "x".into(),
                depot: Some(pb::LatLon { lat: f64::NAN, lon: 0.0 }),
            },
            &t,
        ))
        .await
        .expect_err("NaN depot");
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = ops.client.issue_token(authed(pb::IssueTokenRequest { role: 99, subject: String::new() }, &t)).await;
    assert_eq!(e.expect_err("unknown role").code(), Code::InvalidArgument);
    let e = ops
        .client
        .issue_token(authed(pb::IssueTokenRequest { role: pb::Role::Shop as i32, subject: "nobody".into() }, &t))
        .await;
    assert_eq!(e.expect_err("unknown shop").code(), Code::NotFound);
    let e = ops.client.close_edge(authed(pb::EdgeRequest { from_node: 0, to_node: 999_999 }, &t)).await;
    assert_eq!(e.expect_err("no such edge").code(), Code::NotFound);
    let e = ops.client.pause_robot(authed(pb::RobotRequest { robot_id: "nobody".into() }, &t)).await;
    assert_eq!(e.expect_err("unknown robot").code(), Code::NotFound);

    // Robot sessions: the first message must be a hello, and a hello must make sense.
    let state = pb::RobotMessage { msg: Some(pb::robot_message::Msg::Ack(pb::MissionAck { update_id: 1 })) };
    let mut s = RawRobot::open(&server, &r1, state).await.expect("stream");
    assert_eq!(s.next().await.expect_err("not a hello").code(), Code::FailedPrecondition);
    let mut bad_hello = hello("r1");
    if let Some(pb::robot_message::Msg::Hello(h)) = &mut bad_hello.msg {
        h.factsheet.as_mut().expect("factsheet").max_speed_mps = f64::NAN;
    }
    let mut s = RawRobot::open(&server, &r1, bad_hello).await.expect("stream");
    assert_eq!(s.next().await.expect_err("NaN speed").code(), Code::InvalidArgument);

    let mut shops = [a, b];
    let after = fingerprint(&mut ops, &mut shops).await;
    assert_eq!(before, after, "a refused request changed the served state");
    let live_now = shops[0].get(&live.order_id).await.expect("live order");
    assert_eq!(live_now.robot_id, "r1");

    // On disk: exactly the two acknowledged orders and the two shops.
    drop(robot);
    server.stop().await;
    let store = SledStore::open(dir.path()).expect("store reopens");
    let records = store.load().expect("loads");
    let orders = records.iter().filter(|r| matches!(r, Record::Order(_))).count();
    let shops = records.iter().filter(|r| matches!(r, Record::Shop(_))).count();
    assert_eq!((orders, shops), (2, 2));
}
