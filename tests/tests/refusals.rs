//! Refusals on the wire, read the way any gRPC client would: each has a status code, a stable reason in the
//! standard `google.rpc.ErrorInfo` (with the figures behind it as metadata), and a `google.rpc.BadRequest`
//! violation naming the field when one field is at fault. A quote says the same reason code in `Quote.refusal`.
//! Nothing here reads the message text.

mod common;

use std::collections::HashMap;

use common::*;
use tonic::Code;
use tonic_types::StatusExt;
use trundle_proto::pb;

/// What a client can read off a refused call.
#[derive(Debug, PartialEq)]
struct Seen {
    code: Code,
    reason: String,
    fields: Vec<String>,
    metadata: HashMap<String, String>,
}

fn seen(st: &tonic::Status) -> Seen {
    let info = st.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.domain, "trundle.v1");
    Seen {
        code: st.code(),
        reason: info.reason,
        fields: st
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default(),
        metadata: info.metadata,
    }
}

/// (what, request, code, reason, fields at fault, metadata keys that must be present)
type Case = (&'static str, pb::PlaceOrderRequest, Code, &'static str, Vec<&'static str>, Vec<&'static str>);

fn order(key: &str, delivery: pb::Delivery) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest { idempotency_key: key.into(), delivery: Some(delivery) }
}

async fn quote(shop: &mut Shop, d: pb::Delivery) -> pb::Quote {
    let r = shop.client.quote(authed(pb::QuoteRequest { delivery: Some(d) }, &shop.token)).await;
    r.expect("a quote answers").into_inner().quote.expect("a quote")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_says_why_as_a_stable_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None).await;
    let mut ops = Ops::new(&server).await;
    let mut shop = Shop::new(&server, ops.shop("shop", BOULEVARD).await).await;
    let robot_token = ops.robot("r1", BOULEVARD).await;

    // No robot online yet.
    let q = quote(&mut shop, Shop::delivery(CASINO, 3600)).await;
    assert!(!q.feasible);
    assert_eq!(q.refusal, "NO_ROBOT_AVAILABLE");
    let st = shop.send(order("k0", Shop::delivery(CASINO, 3600))).await.expect_err("refused");
    assert_eq!((st.code(), seen(&st).reason.as_str()), (Code::FailedPrecondition, "NO_ROBOT_AVAILABLE"));

    // One robot (two compartments) online, parked at the shop.
    let mut robot = RawRobot::open(&server, &robot_token, hello("r1")).await.expect("session opens");
    robot.next().await.expect("welcome");
    let mut online = false;
    for _ in 0..200 {
        if quote(&mut shop, Shop::delivery(CASINO, 3600)).await.feasible {
            online = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(online, "the robot's hello reached the core");

    let at_sea = (43.70, 7.45);
    let big = pb::Delivery {
        parcel: Some(pb::Parcel { weight_grams: 1_000, compartments: 3 }),
        ..Shop::delivery(CASINO, 3600)
    };
    let no_deadline = pb::Delivery { deliver_by: None, ..Shop::delivery(CASINO, 3600) };
    let cases: Vec<Case> = vec![
        (
            "too far for the deadline",
            order("k1", Shop::delivery(PRINCESSE_GRACE, 90)),
            Code::FailedPrecondition,
            "DEADLINE_TOO_SOON",
            vec![],
            vec!["trip_min", "late_min"],
        ),
        (
            "more compartments than any robot",
            order("k2", big),
            Code::FailedPrecondition,
            "PARCEL_TOO_LARGE",
            vec![],
            vec!["compartments", "largest"],
        ),
        (
            "a drop-off at sea",
            order("k3", Shop::delivery(at_sea, 3600)),
            Code::InvalidArgument,
            "OUT_OF_AREA",
            vec!["delivery.dropoff"],
            vec!["distance_m", "limit_m"],
        ),
        (
            "no deliver-by time",
            order("k4", no_deadline),
            Code::InvalidArgument,
            "INVALID_FIELD",
            vec!["delivery.deliver_by"],
            vec![],
        ),
        (
            "an empty idempotency key",
            order("", Shop::delivery(CASINO, 3600)),
            Code::InvalidArgument,
            "INVALID_FIELD",
            vec!["idempotency_key"],
            vec![],
        ),
    ];
    let mut failures = Vec::new();
    for (what, req, code, reason, fields, keys) in cases {
        match shop.send(req).await {
            Ok(r) => failures.push(format!("{what}: placed {:?}", r.order.map(|o| o.order_id))),
            Err(st) => {
                let s = seen(&st);
                let missing: Vec<&&str> = keys.iter().filter(|k| !s.metadata.contains_key(**k)).collect();
                if s.code != code || s.reason != reason || s.fields != fields || !missing.is_empty() {
                    failures.push(format!("{what}: {s:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The figures are the refusal's: the parcel wants 3 compartments, the largest robot has 2.
    let st = shop.send(order("k2", big)).await.expect_err("refused");
    assert_eq!(seen(&st).metadata.get("largest").map(String::as_str), Some("2"));
    // A quote gives the same code.
    assert_eq!(quote(&mut shop, big).await.refusal, "PARCEL_TOO_LARGE");
    assert_eq!(quote(&mut shop, Shop::delivery(PRINCESSE_GRACE, 90)).await.refusal, "DEADLINE_TOO_SOON");

    // A key used again for another request.
    shop.send(order("same", Shop::delivery(CASINO, 3600))).await.expect("placed");
    let st = shop.send(order("same", Shop::delivery(PORT, 3600))).await.expect_err("refused");
    assert_eq!((st.code(), seen(&st).reason.as_str()), (Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED"));

    drop(robot);
    server.stop().await;
}

/// A plain HTTP/1.1 GET on `addr`: the status code and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("the HTTP port answers");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: trundle\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("request sent");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("response read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    (code, body.to_owned())
}

/// `/metrics` counts what the services and the core saw: a refused place by its stable reason, an infeasible
/// quote, the calls' times, the core's inputs and store commits, robots by state; `/healthz` answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_refusals_and_the_fleet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let http_addr = http.local_addr().expect("bound");
    let server = Server::start_with(dir.path(), None, |o| o.http = Some(http)).await;
    let mut ops = Ops::new(&server).await;
    let mut shop = Shop::new(&server, ops.shop("shop", BOULEVARD).await).await;
    ops.robot("r1", BOULEVARD).await;
    let q = quote(&mut shop, Shop::delivery(CASINO, 3600)).await;
    assert_eq!(q.refusal, "NO_ROBOT_AVAILABLE");
    for key in ["m1", "m2"] {
        let st = shop.send(order(key, Shop::delivery(CASINO, 3600))).await.expect_err("no robot online");
        assert_eq!(seen(&st).reason, "NO_ROBOT_AVAILABLE");
    }

    let (code, text) = http_get(http_addr, "/metrics").await;
    assert_eq!(code, 200, "{text}");
    for want in [
        "trundle_refusals_total{method=\"PlaceOrder\",reason=\"NO_ROBOT_AVAILABLE\"} 2",
        "trundle_refusals_total{method=\"Quote\",reason=\"NO_ROBOT_AVAILABLE\"} 1",
        "trundle_rpc_duration_seconds_count{method=\"PlaceOrder\"} 2",
        "trundle_rpc_duration_seconds_count{method=\"Quote\"} 1",
        "trundle_core_input_seconds_count{kind=\"place\"} 2",
        "trundle_robots{state=\"offline\"} 1",
        "trundle_robot_battery_percent{robot=\"r1\"}",
        "# TYPE trundle_store_commit_seconds histogram",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let commits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("trundle_store_commit_seconds_count "))
        .and_then(|v| v.parse().ok())
        .expect("a commit count");
    assert!(commits >= 2, "the shop's and the robot's registrations were committed: {commits}");
    assert!(!text.contains("trundle_orders{"), "a refused order is no order:\n{text}");
    assert_eq!(http_get(http_addr, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(http_get(http_addr, "/nothing-here").await.0, 404);
    server.stop().await;
}
