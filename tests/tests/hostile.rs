//! The hostile-input suite: hundreds of distinct malformed or hostile requests across every RPC (bad numbers,
//! empty, huge and unicode strings, unknown enum values, other shops' orders, forged robot ids, missing fields,
//! the wrong role, no or a forged token), each answered with its exact status code and each leaving the served
//! state exactly as it was. Call rates are not limited here (the limits have their own test).

mod common;

use common::*;
use dispatcher::limits::Limits;
use tokio_stream::StreamExt;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use trundle_proto::pb;
use trundle_proto::pb::ops_service_client::OpsServiceClient;
use trundle_proto::pb::order_service_client::OrderServiceClient;

/// One request, with the token it is sent with.
#[derive(Clone)]
enum Call {
    Place(pb::PlaceOrderRequest),
    Quote(pb::QuoteRequest),
    Get(String),
    Cancel(String),
    Ready(String),
    Watch(String),
    List(pb::ListOrdersRequest),
    RegisterShop(pb::RegisterShopRequest),
    RegisterRobot(pb::RegisterRobotRequest),
    ListShops,
    ListRobots,
    IssueToken(pb::IssueTokenRequest),
    Revoke(pb::RevokeTokensRequest),
    GetMap,
    CloseEdge(pb::EdgeRequest),
    OpenEdge(pb::EdgeRequest),
    Pause(String),
    Resume(String),
    Shift(pb::SetRobotShiftRequest),
    OpsGet(String),
    WatchFleet,
    LoadMap(Vec<u8>),
    Reassign(String, String),
    ListAlerts,
    AckAlert(u64),
    /// A robot session: these messages in order; the status the session ends with.
    Session(Vec<pb::RobotMessage>),
}

struct Case {
    what: String,
    token: String,
    call: Call,
    code: Code,
}

async fn send(server: &Server, token: &str, call: Call) -> Result<(), Status> {
    let ch = server.channel().await;
    let (mut o, mut p) = (OrderServiceClient::new(ch.clone()), OpsServiceClient::new(ch));
    let t = token;
    match call {
        Call::Place(r) => o.place_order(authed(r, t)).await.map(drop),
        Call::Quote(r) => o.quote(authed(r, t)).await.map(drop),
        Call::Get(id) => o.get_order(authed(pb::GetOrderRequest { order_id: id }, t)).await.map(drop),
        Call::Cancel(id) => o.cancel_order(authed(pb::CancelOrderRequest { order_id: id }, t)).await.map(drop),
        Call::Ready(id) => o.mark_ready(authed(pb::MarkReadyRequest { order_id: id }, t)).await.map(drop),
        Call::Watch(id) => {
            let mut s = o.watch_order(authed(pb::WatchOrderRequest { order_id: id }, t)).await?.into_inner();
            // A stream that opens must still fail on its first message to count as refused.
            match tokio::time::timeout(std::time::Duration::from_secs(2), s.next()).await {
                Ok(Some(Err(st))) => Err(st),
                _ => Ok(()),
            }
        }
        Call::List(r) => o.list_orders(authed(r, t)).await.map(drop),
        Call::RegisterShop(r) => p.register_shop(authed(r, t)).await.map(drop),
        Call::RegisterRobot(r) => p.register_robot(authed(r, t)).await.map(drop),
        Call::ListShops => p.list_shops(authed(pb::ListShopsRequest {}, t)).await.map(drop),
        Call::ListRobots => p.list_robots(authed(pb::ListRobotsRequest {}, t)).await.map(drop),
        Call::IssueToken(r) => p.issue_token(authed(r, t)).await.map(drop),
        Call::Revoke(r) => p.revoke_tokens(authed(r, t)).await.map(drop),
        Call::GetMap => p.get_map(authed(pb::GetMapRequest {}, t)).await.map(drop),
        Call::CloseEdge(r) => p.close_edge(authed(r, t)).await.map(drop),
        Call::OpenEdge(r) => p.open_edge(authed(r, t)).await.map(drop),
        Call::Pause(id) => p.pause_robot(authed(pb::RobotRequest { robot_id: id }, t)).await.map(drop),
        Call::Resume(id) => p.resume_robot(authed(pb::RobotRequest { robot_id: id }, t)).await.map(drop),
        Call::Shift(r) => p.set_robot_shift(authed(r, t)).await.map(drop),
        Call::OpsGet(id) => p.get_order(authed(pb::OpsGetOrderRequest { order_id: id }, t)).await.map(drop),
        Call::WatchFleet => p.watch_fleet(authed(pb::WatchFleetRequest {}, t)).await.map(drop),
        Call::LoadMap(b) => p.load_map(authed(pb::LoadMapRequest { osm_pbf: b }, t)).await.map(drop),
        Call::ListAlerts => p.list_alerts(authed(pb::ListAlertsRequest {}, t)).await.map(drop),
        Call::AckAlert(alert_id) => p.ack_alert(authed(pb::AckAlertRequest { alert_id }, t)).await.map(drop),
        Call::Reassign(order_id, robot_id) => {
            p.reassign_order(authed(pb::ReassignOrderRequest { order_id, robot_id }, t)).await.map(drop)
        }
        Call::Session(msgs) => {
            let mut it = msgs.into_iter();
            let first = it.next().unwrap_or(pb::RobotMessage { msg: None });
            let mut s = RawRobot::open(server, t, first).await?;
            for m in it {
                let _ = s.tx.send(m).await;
            }
            for _ in 0..20 {
                match s.next().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return Ok(()),
                    Err(st) => return Err(st),
                }
            }
            Ok(())
        }
    }
}

fn delivery() -> pb::Delivery {
    Shop::delivery(LARVOTTO_WEST, 3600)
}

fn with(f: impl Fn(&mut pb::Delivery)) -> pb::Delivery {
    let mut d = delivery();
    f(&mut d);
    d
}

/// Bad numbers for a coordinate field.
const BAD_LAT: [f64; 7] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 90.000_001, -90.5, 1e308, -1e308];
const BAD_LON: [f64; 7] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 180.000_001, -181.0, 1e308, -1e308];

/// Malformed ids: each is refused as INVALID_ARGUMENT wherever an id goes.
fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("65 characters", "o".repeat(65)),
        ("10 kB", "o".repeat(10_000)),
        ("a space", "ord 1".into()),
        ("a slash", "ord/1".into()),
        ("a path", "../etc".into()),
        ("unicode", "ördér".into()),
        ("a NUL", "ord\u{0}1".into()),
        ("a newline", "ord\n1".into()),
        ("an emoji", "🤖".into()),
    ]
}

fn hello_with(f: impl Fn(&mut pb::Hello)) -> pb::RobotMessage {
    let mut m = hello("r1");
    if let Some(pb::robot_message::Msg::Hello(h)) = &mut m.msg {
        f(h);
    }
    m
}

fn factsheet(f: impl Fn(&mut pb::Factsheet)) -> pb::RobotMessage {
    hello_with(|h| {
        if let Some(fs) = h.factsheet.as_mut() {
            f(fs);
        }
    })
}

fn state(lat: f64, lon: f64) -> pb::RobotMessage {
    pb::RobotMessage {
        msg: Some(pb::robot_message::Msg::State(pb::RobotState {
            position: Some(pb::LatLon { lat, lon }),
            battery_pct: 80.0,
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_hostile_requests_get_their_status_and_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(dir.path(), None, |o| {
        o.limits = Limits {
            calls_per_s: 1e9,
            call_burst: 1e9,
            session_msgs_per_s: 1e9,
            session_burst: 1e9,
            ..Limits::default()
        };
        o.improver.enabled = false;
    })
    .await;
    let mut ops = Ops::new(&server).await;
    let a_token = ops.shop("shop-a", CASINO).await;
    let b_token = ops.shop("shop-b", PORT).await;
    let r1 = ops.robot("r1", LARVOTTO_WEST).await;
    let r2 = ops.robot("r2", PORT).await;
    let mut robot = RawRobot::open(&server, &r1, hello("r1")).await.expect("session");
    robot.next().await.expect("welcome");
    let mut a = Shop::new(&server, a_token.clone()).await;
    let mut b = Shop::new(&server, b_token.clone()).await;
    let a_order = a
        .place_when_fleet_up(pb::PlaceOrderRequest { idempotency_key: "live".into(), delivery: Some(delivery()) })
        .await
        .order
        .expect("order")
        .order_id;
    let op = ops.token.clone();
    let mut cases: Vec<Case> = Vec::new();
    let mut case = |what: String, token: &str, call: Call, code: Code| {
        cases.push(Case { what, token: token.to_owned(), call, code });
    };
    let place = |key: &str, d: Option<pb::Delivery>| {
        Call::Place(pb::PlaceOrderRequest { idempotency_key: key.into(), delivery: d })
    };

    // Deliveries, for PlaceOrder and Quote alike.
    let mut bad_deliveries: Vec<(String, Option<pb::Delivery>)> = vec![
        ("no delivery".into(), None),
        ("no drop-off".into(), Some(with(|d| d.dropoff = None))),
        ("no parcel".into(), Some(with(|d| d.parcel = None))),
        ("no deadline".into(), Some(with(|d| d.deliver_by = None))),
        ("weight 0".into(), Some(with(|d| d.parcel = Some(pb::Parcel { weight_grams: 0, compartments: 1 })))),
        (
            "weight u32::MAX".into(),
            Some(with(|d| d.parcel = Some(pb::Parcel { weight_grams: u32::MAX, compartments: 1 }))),
        ),
        ("5 compartments".into(), Some(with(|d| d.parcel = Some(pb::Parcel { weight_grams: 100, compartments: 5 })))),
        (
            "u32::MAX compartments".into(),
            Some(with(|d| d.parcel = Some(pb::Parcel { weight_grams: 100, compartments: u32::MAX }))),
        ),
        ("deadline in the past".into(), Some(with(|d| d.deliver_by = Some(ts_in(-60))))),
        ("deadline 30 days ahead".into(), Some(with(|d| d.deliver_by = Some(ts_in(30 * 86_400))))),
        (
            "deadline before 1970".into(),
            Some(with(|d| d.deliver_by = Some(prost_types::Timestamp { seconds: -1, nanos: 0 }))),
        ),
        (
            "deadline at i64::MAX seconds".into(),
            Some(with(|d| d.deliver_by = Some(prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }))),
        ),
        (
            "deadline with negative nanos".into(),
            Some(with(|d| d.deliver_by = Some(prost_types::Timestamp { seconds: 2_000_000_000, nanos: -5 }))),
        ),
        (
            "deadline with 2e9 nanos".into(),
            Some(with(|d| {
                d.deliver_by = Some(prost_types::Timestamp { seconds: 2_000_000_000, nanos: 2_000_000_000 })
            })),
        ),
        ("ready after the deadline".into(), Some(with(|d| d.ready_at = Some(ts_in(7_200))))),
        (
            "ready at i64::MIN".into(),
            Some(with(|d| d.ready_at = Some(prost_types::Timestamp { seconds: i64::MIN, nanos: 0 }))),
        ),
        ("drop-off at sea".into(), Some(with(|d| d.dropoff = Some(pb::LatLon { lat: 43.70, lon: 7.45 })))),
        ("drop-off at 0,0".into(), Some(with(|d| d.dropoff = Some(pb::LatLon { lat: 0.0, lon: 0.0 })))),
        ("drop-off at the pole".into(), Some(with(|d| d.dropoff = Some(pb::LatLon { lat: 90.0, lon: 0.0 })))),
    ];
    for lat in BAD_LAT {
        bad_deliveries
            .push((format!("latitude {lat}"), Some(with(|d| d.dropoff = Some(pb::LatLon { lat, lon: 7.42 })))));
    }
    for lon in BAD_LON {
        bad_deliveries
            .push((format!("longitude {lon}"), Some(with(|d| d.dropoff = Some(pb::LatLon { lat: 43.73, lon })))));
    }
    for (what, d) in &bad_deliveries {
        case(format!("PlaceOrder: {what}"), &a_token, place(&format!("k-{what}"), *d), Code::InvalidArgument);
        case(format!("Quote: {what}"), &a_token, Call::Quote(pb::QuoteRequest { delivery: *d }), Code::InvalidArgument);
    }
    // Idempotency keys.
    for (what, key) in [
        ("empty", String::new()),
        ("129 bytes", "k".repeat(129)),
        ("1 MB", "k".repeat(1 << 20)),
        ("a newline", "k\n1".into()),
        ("a NUL", "k\u{0}".into()),
        ("a tab", "k\t1".into()),
        ("65 two-byte characters", "é".repeat(65)),
    ] {
        case(format!("PlaceOrder: key {what}"), &a_token, place(&key, Some(delivery())), Code::InvalidArgument);
    }
    case(
        "PlaceOrder: key reused with another body".into(),
        &a_token,
        place("live", Some(with(|d| d.parcel = Some(pb::Parcel { weight_grams: 999, compartments: 1 })))),
        Code::AlreadyExists,
    );
    case(
        "PlaceOrder: parcel bigger than any robot".into(),
        &a_token,
        place("k-big", Some(with(|d| d.parcel = Some(pb::Parcel { weight_grams: 100, compartments: 4 })))),
        Code::FailedPrecondition,
    );
    case(
        "PlaceOrder: bad PIN request field ignored? no: a too-heavy parcel".into(),
        &a_token,
        place("k-heavy", Some(with(|d| d.parcel = Some(pb::Parcel { weight_grams: 60_000, compartments: 1 })))),
        Code::InvalidArgument,
    );

    // Order ids on every order call, for shops and the operator.
    for (what, id) in bad_ids() {
        case(format!("GetOrder: id {what}"), &a_token, Call::Get(id.clone()), Code::InvalidArgument);
        case(format!("CancelOrder: id {what}"), &a_token, Call::Cancel(id.clone()), Code::InvalidArgument);
        case(format!("MarkReady: id {what}"), &a_token, Call::Ready(id.clone()), Code::InvalidArgument);
        case(format!("WatchOrder: id {what}"), &a_token, Call::Watch(id.clone()), Code::InvalidArgument);
        case(format!("ops GetOrder: id {what}"), &op, Call::OpsGet(id.clone()), Code::InvalidArgument);
    }
    for (what, id, token) in
        [("unknown order", "ord-999999".to_owned(), &a_token), ("another shop's order", a_order.clone(), &b_token)]
    {
        case(format!("GetOrder: {what}"), token, Call::Get(id.clone()), Code::NotFound);
        case(format!("CancelOrder: {what}"), token, Call::Cancel(id.clone()), Code::NotFound);
        case(format!("MarkReady: {what}"), token, Call::Ready(id.clone()), Code::NotFound);
        case(format!("WatchOrder: {what}"), token, Call::Watch(id.clone()), Code::NotFound);
    }
    case("ops GetOrder: unknown order".into(), &op, Call::OpsGet("ord-999999".into()), Code::NotFound);
    for (what, id) in bad_ids() {
        case(
            format!("ReassignOrder: order id {what}"),
            &op,
            Call::Reassign(id.clone(), "r1".into()),
            Code::InvalidArgument,
        );
        case(
            format!("ReassignOrder: robot id {what}"),
            &op,
            Call::Reassign(a_order.clone(), id),
            Code::InvalidArgument,
        );
    }
    case("ReassignOrder: unknown order".into(), &op, Call::Reassign("ord-999999".into(), "r1".into()), Code::NotFound);
    case("AckAlert: id 0".into(), &op, Call::AckAlert(0), Code::InvalidArgument);
    case("AckAlert: no such alert".into(), &op, Call::AckAlert(u64::MAX), Code::NotFound);
    case("ReassignOrder: unknown robot".into(), &op, Call::Reassign(a_order.clone(), "nobody".into()), Code::NotFound);
    for (what, r) in [
        ("limit 1001", pb::ListOrdersRequest { limit: 1001, ..Default::default() }),
        ("limit u32::MAX", pb::ListOrdersRequest { limit: u32::MAX, ..Default::default() }),
        ("garbage page token", pb::ListOrdersRequest { page_token: "not a token".into(), ..Default::default() }),
        (
            "page token of an unknown order",
            pb::ListOrdersRequest { page_token: "ord-999999".into(), ..Default::default() },
        ),
        ("10 kB page token", pb::ListOrdersRequest { page_token: "p".repeat(10_000), ..Default::default() }),
    ] {
        case(format!("ListOrders: {what}"), &a_token, Call::List(r), Code::InvalidArgument);
    }

    // Operator calls with bad arguments.
    let shop_req = |id: &str, name: &str, at: Option<pb::LatLon>| {
        Call::RegisterShop(pb::RegisterShopRequest { shop_id: id.into(), name: name.into(), location: at })
    };
    let robot_req = |id: &str, name: &str, at: Option<pb::LatLon>| {
        Call::RegisterRobot(pb::RegisterRobotRequest { robot_id: id.into(), name: name.into(), depot: at })
    };
    for (what, id) in bad_ids() {
        case(format!("RegisterShop: id {what}"), &op, shop_req(&id, "x", Some(ll(CASINO))), Code::InvalidArgument);
        case(format!("RegisterRobot: id {what}"), &op, robot_req(&id, "x", Some(ll(CASINO))), Code::InvalidArgument);
        case(format!("PauseRobot: id {what}"), &op, Call::Pause(id.clone()), Code::InvalidArgument);
        case(format!("ResumeRobot: id {what}"), &op, Call::Resume(id.clone()), Code::InvalidArgument);
        case(
            format!("SetRobotShift: id {what}"),
            &op,
            Call::Shift(pb::SetRobotShiftRequest { robot_id: id.clone(), shift_end: None }),
            Code::InvalidArgument,
        );
        case(
            format!("IssueToken: shop subject {what}"),
            &op,
            Call::IssueToken(pb::IssueTokenRequest { role: pb::Role::Shop as i32, subject: id.clone() }),
            Code::InvalidArgument,
        );
        case(
            format!("RevokeTokens: robot subject {what}"),
            &op,
            Call::Revoke(pb::RevokeTokensRequest {
                role: pb::Role::Robot as i32,
                subject: id.clone(),
                token: String::new(),
            }),
            Code::InvalidArgument,
        );
    }
    for lat in BAD_LAT {
        let at = Some(pb::LatLon { lat, lon: 7.42 });
        case(format!("RegisterShop: latitude {lat}"), &op, shop_req("shop-x", "x", at), Code::InvalidArgument);
        case(format!("RegisterRobot: latitude {lat}"), &op, robot_req("r-x", "x", at), Code::InvalidArgument);
    }
    for lon in BAD_LON {
        let at = Some(pb::LatLon { lat: 43.73, lon });
        case(format!("RegisterShop: longitude {lon}"), &op, shop_req("shop-x", "x", at), Code::InvalidArgument);
        case(format!("RegisterRobot: longitude {lon}"), &op, robot_req("r-x", "x", at), Code::InvalidArgument);
    }
    for (what, name) in [
        ("201 bytes", "n".repeat(201)),
        ("10 kB", "n".repeat(10_000)),
        ("a newline", "a\nb".into()),
        ("a NUL", "a\u{0}".into()),
    ] {
        case(
            format!("RegisterShop: name {what}"),
            &op,
            shop_req("shop-x", &name, Some(ll(CASINO))),
            Code::InvalidArgument,
        );
        case(
            format!("RegisterRobot: name {what}"),
            &op,
            robot_req("r-x", &name, Some(ll(CASINO))),
            Code::InvalidArgument,
        );
    }
    case("RegisterShop: no location".into(), &op, shop_req("shop-x", "x", None), Code::InvalidArgument);
    case("RegisterRobot: no depot".into(), &op, robot_req("r-x", "x", None), Code::InvalidArgument);
    case(
        "RegisterShop: at sea".into(),
        &op,
        shop_req("shop-x", "x", Some(pb::LatLon { lat: 43.70, lon: 7.45 })),
        Code::InvalidArgument,
    );
    case(
        "RegisterRobot: at sea".into(),
        &op,
        robot_req("r-x", "x", Some(pb::LatLon { lat: 43.70, lon: 7.45 })),
        Code::InvalidArgument,
    );
    case("RegisterShop: duplicate".into(), &op, shop_req("shop-a", "x", Some(ll(CASINO))), Code::AlreadyExists);
    case("RegisterRobot: duplicate".into(), &op, robot_req("r1", "x", Some(ll(CASINO))), Code::AlreadyExists);
    for role in [-1, 0, 4, 99, i32::MAX] {
        case(
            format!("IssueToken: role {role}"),
            &op,
            Call::IssueToken(pb::IssueTokenRequest { role, subject: "shop-a".into() }),
            Code::InvalidArgument,
        );
        case(
            format!("RevokeTokens: role {role}"),
            &op,
            Call::Revoke(pb::RevokeTokensRequest { role, subject: "shop-a".into(), token: String::new() }),
            Code::InvalidArgument,
        );
    }
    case(
        "IssueToken: unknown shop".into(),
        &op,
        Call::IssueToken(pb::IssueTokenRequest { role: pb::Role::Shop as i32, subject: "nobody".into() }),
        Code::NotFound,
    );
    case(
        "IssueToken: unknown robot".into(),
        &op,
        Call::IssueToken(pb::IssueTokenRequest { role: pb::Role::Robot as i32, subject: "nobody".into() }),
        Code::NotFound,
    );
    case(
        "IssueToken: operator with a subject".into(),
        &op,
        Call::IssueToken(pb::IssueTokenRequest { role: pb::Role::Operator as i32, subject: "x".into() }),
        Code::InvalidArgument,
    );
    case(
        "RevokeTokens: the last operator token".into(),
        &op,
        Call::Revoke(pb::RevokeTokensRequest {
            role: pb::Role::Operator as i32,
            subject: String::new(),
            token: String::new(),
        }),
        Code::FailedPrecondition,
    );
    case(
        "RevokeTokens: 1 kB token".into(),
        &op,
        Call::Revoke(pb::RevokeTokensRequest {
            role: pb::Role::Shop as i32,
            subject: "shop-a".into(),
            token: "t".repeat(1_000),
        }),
        Code::InvalidArgument,
    );
    for (what, a_node, b_node) in [
        ("unknown nodes", 999_999_998u32, 999_999_999u32),
        ("a node and itself", 0, 0),
        ("u32::MAX", u32::MAX, 0),
        ("not adjacent", 0, 999),
    ] {
        let e = pb::EdgeRequest { from_node: a_node, to_node: b_node };
        case(format!("CloseEdge: {what}"), &op, Call::CloseEdge(e), Code::NotFound);
        case(format!("OpenEdge: {what}"), &op, Call::OpenEdge(e), Code::NotFound);
    }
    for (what, call) in [
        ("PauseRobot", Call::Pause("nobody".into())),
        ("ResumeRobot", Call::Resume("nobody".into())),
        ("SetRobotShift", Call::Shift(pb::SetRobotShiftRequest { robot_id: "nobody".into(), shift_end: None })),
    ] {
        case(format!("{what}: unknown robot"), &op, call, Code::NotFound);
    }
    // A map must be a whole, usable extract: empty, garbage, cut short or an XML export are refused whole.
    let monaco = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/monaco.osm.pbf")).expect("the map");
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("garbage", b"\x00\x01not a map".to_vec()),
        ("cut short", monaco[..4096].to_vec()),
        ("OSM XML, not PBF", b"<?xml version='1.0'?><osm version='0.6'></osm>".to_vec()),
    ] {
        case(format!("LoadMap: {what}"), &op, Call::LoadMap(bytes), Code::InvalidArgument);
    }
    case(
        "SetRobotShift: end before 1970".into(),
        &op,
        Call::Shift(pb::SetRobotShiftRequest {
            robot_id: "r1".into(),
            shift_end: Some(prost_types::Timestamp { seconds: -5, nanos: 0 }),
        }),
        Code::InvalidArgument,
    );

    // The wrong role, no token, a forged token, a malformed header.
    let ops_calls = vec![
        ("RegisterShop", shop_req("shop-z", "x", Some(ll(CASINO)))),
        ("RegisterRobot", robot_req("r-z", "x", Some(ll(CASINO)))),
        ("ListShops", Call::ListShops),
        ("ListRobots", Call::ListRobots),
        (
            "IssueToken",
            Call::IssueToken(pb::IssueTokenRequest { role: pb::Role::Operator as i32, subject: String::new() }),
        ),
        (
            "RevokeTokens",
            Call::Revoke(pb::RevokeTokensRequest {
                role: pb::Role::Shop as i32,
                subject: "shop-b".into(),
                token: String::new(),
            }),
        ),
        ("GetMap", Call::GetMap),
        ("CloseEdge", Call::CloseEdge(pb::EdgeRequest { from_node: 0, to_node: 1 })),
        ("OpenEdge", Call::OpenEdge(pb::EdgeRequest { from_node: 0, to_node: 1 })),
        ("PauseRobot", Call::Pause("r1".into())),
        ("ResumeRobot", Call::Resume("r1".into())),
        ("SetRobotShift", Call::Shift(pb::SetRobotShiftRequest { robot_id: "r1".into(), shift_end: Some(ts_in(60)) })),
        ("ops GetOrder", Call::OpsGet(a_order.clone())),
        ("WatchFleet", Call::WatchFleet),
        ("LoadMap", Call::LoadMap(b"x".to_vec())),
        ("ReassignOrder", Call::Reassign(a_order.clone(), "r1".into())),
        ("ListAlerts", Call::ListAlerts),
        ("AckAlert", Call::AckAlert(1)),
    ];
    let order_calls = vec![
        ("PlaceOrder", place("k-role", Some(delivery()))),
        ("Quote", Call::Quote(pb::QuoteRequest { delivery: Some(delivery()) })),
        ("GetOrder", Call::Get(a_order.clone())),
        ("CancelOrder", Call::Cancel(a_order.clone())),
        ("MarkReady", Call::Ready(a_order.clone())),
        ("WatchOrder", Call::Watch(a_order.clone())),
        ("ListOrders", Call::List(pb::ListOrdersRequest::default())),
    ];
    for (name, call) in &ops_calls {
        case(format!("{name} with a shop token"), &a_token, call.clone(), Code::PermissionDenied);
        case(format!("{name} with a robot token"), &r2, call.clone(), Code::PermissionDenied);
    }
    for (name, call) in &order_calls {
        case(format!("{name} with an operator token"), &op, call.clone(), Code::PermissionDenied);
        case(format!("{name} with a robot token"), &r2, call.clone(), Code::PermissionDenied);
    }
    for (name, call) in ops_calls.iter().chain(order_calls.iter()) {
        case(format!("{name} with no token"), "", call.clone(), Code::Unauthenticated);
        case(format!("{name} with a forged token"), "trd_0000", call.clone(), Code::Unauthenticated);
    }
    case("Session with a shop token".into(), &a_token, Call::Session(vec![hello("r1")]), Code::PermissionDenied);
    case("Session with a forged token".into(), "trd_forged", Call::Session(vec![hello("r1")]), Code::Unauthenticated);

    // Robot sessions: forged identities and malformed messages.
    case("Session: hello naming another robot".into(), &r2, Call::Session(vec![hello("r1")]), Code::PermissionDenied);
    case(
        "Session: hello naming an unknown robot".into(),
        &r2,
        Call::Session(vec![hello("nobody")]),
        Code::PermissionDenied,
    );
    case(
        "Session: first message a state report".into(),
        &r2,
        Call::Session(vec![state(43.73, 7.42)]),
        Code::FailedPrecondition,
    );
    case(
        "Session: empty first message".into(),
        &r2,
        Call::Session(vec![pb::RobotMessage { msg: None }]),
        Code::FailedPrecondition,
    );
    case("Session: hello twice".into(), &r2, Call::Session(vec![hello("r2"), hello("r2")]), Code::FailedPrecondition);
    case(
        "Session: hello without a factsheet".into(),
        &r2,
        Call::Session(vec![hello_with(|h| {
            h.robot_id = "r2".into();
            h.factsheet = None
        })]),
        Code::InvalidArgument,
    );
    for (what, msg) in [
        ("NaN speed", factsheet(|f| f.max_speed_mps = f64::NAN)),
        ("infinite speed", factsheet(|f| f.max_speed_mps = f64::INFINITY)),
        ("zero speed", factsheet(|f| f.max_speed_mps = 0.0)),
        ("100 m/s", factsheet(|f| f.max_speed_mps = 100.0)),
        ("0 compartments", factsheet(|f| f.compartments = 0)),
        ("300 compartments", factsheet(|f| f.compartments = 300)),
        ("0 g payload", factsheet(|f| f.max_payload_grams = 0)),
        ("NaN battery", factsheet(|f| f.battery_capacity_wh = f64::NAN)),
        ("negative battery", factsheet(|f| f.battery_capacity_wh = -1.0)),
        ("1 kB mission id", hello_with(|h| h.mission_id = "m".repeat(1_000))),
        ("1 kB robot id", hello_with(|h| h.robot_id = "r".repeat(1_000))),
    ] {
        let mut msg = msg;
        if let Some(pb::robot_message::Msg::Hello(h)) = &mut msg.msg
            && h.robot_id == "r1"
        {
            h.robot_id = "r2".into();
        }
        let code = if what == "1 kB robot id" { Code::PermissionDenied } else { Code::InvalidArgument };
        case(format!("Session: hello with {what}"), &r2, Call::Session(vec![msg]), code);
    }
    for lat in BAD_LAT {
        case(
            format!("Session: state with latitude {lat}"),
            &r2,
            Call::Session(vec![hello("r2"), state(lat, 7.42)]),
            Code::InvalidArgument,
        );
    }
    for lon in BAD_LON {
        case(
            format!("Session: state with longitude {lon}"),
            &r2,
            Call::Session(vec![hello("r2"), state(43.73, lon)]),
            Code::InvalidArgument,
        );
    }
    case(
        "Session: state without a position".into(),
        &r2,
        Call::Session(vec![
            hello("r2"),
            pb::RobotMessage { msg: Some(pb::robot_message::Msg::State(pb::RobotState::default())) },
        ]),
        Code::InvalidArgument,
    );
    case(
        "Session: an event with nothing in it".into(),
        &r2,
        Call::Session(vec![
            hello("r2"),
            pb::RobotMessage { msg: Some(pb::robot_message::Msg::Event(pb::RobotEvent { event: None })) },
        ]),
        Code::InvalidArgument,
    );
    case(
        "Session: an empty message after the hello".into(),
        &r2,
        Call::Session(vec![hello("r2"), pb::RobotMessage { msg: None }]),
        Code::InvalidArgument,
    );
    case(
        "Session: an error with an unknown level".into(),
        &r2,
        Call::Session(vec![
            hello("r2"),
            pb::RobotMessage {
                msg: Some(pb::robot_message::Msg::Event(pb::RobotEvent {
                    event: Some(pb::robot_event::Event::Error(pb::RobotError {
                        level: 77,
                        r#type: "x".into(),
                        detail: String::new(),
                    })),
                })),
            },
        ]),
        Code::InvalidArgument,
    );
    case(
        "Session: a step result with an unknown outcome".into(),
        &r2,
        Call::Session(vec![
            hello("r2"),
            pb::RobotMessage {
                msg: Some(pb::robot_message::Msg::Event(pb::RobotEvent {
                    event: Some(pb::robot_event::Event::StepFinished(pb::StepResult {
                        seq: 1,
                        outcome: 42,
                        detail: String::new(),
                    })),
                })),
            },
        ]),
        Code::InvalidArgument,
    );

    assert!(cases.len() >= 200, "only {} cases", cases.len());
    let mut shops = [&mut a, &mut b];
    let mut before = fingerprint(&mut ops, &mut shops).await;
    let mut failures = Vec::new();
    let total = cases.len();
    for Case { what, token, call, code } in cases {
        let got = send(&server, &token, call).await;
        match got {
            Err(st) if st.code() == code => {
                assert!(!st.message().is_empty(), "{what}: a refusal says why");
                // Every refusal of ours carries a stable reason any client can act on; only the transport's
                // own decode limit (OUT_OF_RANGE, answered before our code runs) has none.
                match st.get_details_error_info() {
                    Some(info) => {
                        if info.domain != "trundle.v1" || info.reason.is_empty() {
                            failures.push(format!("{what}: ErrorInfo {info:?}"));
                        }
                        if info.reason == "INVALID_FIELD" && st.get_details_bad_request().is_none() {
                            failures.push(format!("{what}: a bad field without its BadRequest violation"));
                        }
                    }
                    None if code == Code::OutOfRange => {}
                    None => failures.push(format!("{what}: {code:?} without an ErrorInfo reason")),
                }
            }
            other => failures.push(format!(
                "{what}: expected {code:?}, got {:?}",
                other.map_err(|s| (s.code(), s.message().to_owned()))
            )),
        }
        let after = fingerprint(&mut ops, &mut shops).await;
        if after != before {
            failures.push(format!("{what}: the served state changed"));
            before = after;
        }
    }
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
    drop(robot);
    server.stop().await;
}
