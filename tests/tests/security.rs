//! Identity comes from the token: a shop sees only its own orders, a robot token acts only for its robot,
//! only operators manage the fleet.

mod common;

use common::*;
use tonic::Code;
use tonic_types::StatusExt;
use trundle_proto::pb;

async fn setup() -> (tempfile::TempDir, Server, Ops, String, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None).await;
    let mut ops = Ops::new(&server).await;
    let a = ops.shop("shop-a", CASINO).await;
    let b = ops.shop("shop-b", PORT).await;
    let r1 = ops.robot("r1", CASINO).await;
    (dir, server, ops, a, b, r1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_shop_gets_no_access_to_an_order() {
    let (_dir, server, _ops, a_token, b_token, r1) = setup().await;
    let mut robot = RawRobot::open(&server, &r1, hello("")).await.expect("session opens");
    robot.next().await.expect("welcome");
    let mut a = Shop::new(&server, a_token).await;
    let mut b = Shop::new(&server, b_token).await;
    let order = a
        .place_when_fleet_up(pb::PlaceOrderRequest {
            idempotency_key: "a-1".into(),
            delivery: Some(Shop::delivery(LARVOTTO_WEST, 3600)),
        })
        .await
        .order
        .expect("order");
    let id = order.order_id.clone();
    let before = a.get(&id).await.expect("owner reads it");

    let not_found = |r: Result<pb::Order, tonic::Status>| {
        let s = r.expect_err("another shop must not reach the order");
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        assert!(!s.message().contains(&order.pin), "no PIN leaks");
    };
    not_found(b.get(&id).await);
    not_found(b.ready(&id).await);
    not_found(
        b.client
            .cancel_order(authed(pb::CancelOrderRequest { order_id: id.clone() }, &b.token))
            .await
            .map(|r| r.into_inner()),
    );
    let watch = b.client.watch_order(authed(pb::WatchOrderRequest { order_id: id.clone() }, &b.token)).await;
    assert_eq!(watch.err().map(|s| s.code()), Some(Code::NotFound));
    assert!(b.list().await.is_empty(), "shop B lists none of A's orders");
    let after = a.get(&id).await.expect("owner reads it");
    assert_eq!(before, after, "nothing B did changed A's order");
    assert_eq!(after.robot_id, "r1");
    // The same idempotency key is another shop's own key space: no clash, no replay of A's order.
    assert!(
        b.place("a-1", LARVOTTO_WEST).await.expect("B's own order").order.expect("order").order_id != id,
        "a key is scoped to its shop"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_robot_identity_come_from_the_token() {
    let (dir, server, mut ops, a_token, _b, r1) = setup().await;
    let r2 = ops.robot("r2", PORT).await;
    let _ = r2;

    // A robot token cannot open a session as another robot.
    let mut s = RawRobot::open(&server, &r1, hello("r2")).await.expect("stream opens");
    let err = s.next().await.expect_err("posing as r2 must end the session");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("r1"), "{err:?}");
    // Claiming its own id is fine, and only that robot comes online.
    let mut s = RawRobot::open(&server, &r1, hello("r1")).await.expect("stream opens");
    assert!(s.next().await.expect("welcome").is_some());
    let robots = ops
        .client
        .list_robots(authed(pb::ListRobotsRequest {}, &ops.token))
        .await
        .expect("operator lists robots")
        .into_inner()
        .robots;
    let online: Vec<_> = robots.iter().filter(|r| r.online).map(|r| r.robot_id.as_str()).collect();
    assert_eq!(online, ["r1"]);

    // A shop token cannot open a robot session; no token and a forged token are unauthenticated.
    let err = RawRobot::open(&server, &a_token, hello("")).await.err().expect("shop is not a robot");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = RawRobot::open(&server, "trd_forged", hello("")).await.err().expect("forged token");
    assert_eq!(err.code(), Code::Unauthenticated);

    // Only operators manage the fleet; robots do not place orders.
    let mut shop_as_ops = pb::ops_service_client::OpsServiceClient::new(server.channel().await);
    let err = shop_as_ops
        .register_robot(authed(
            pb::RegisterRobotRequest { robot_id: "r9".into(), name: "x".into(), depot: Some(ll(CASINO)) },
            &a_token,
        ))
        .await
        .expect_err("a shop cannot register robots");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = shop_as_ops
        .issue_token(authed(
            pb::IssueTokenRequest { role: pb::Role::Operator as i32, subject: String::new() },
            &a_token,
        ))
        .await
        .expect_err("a shop cannot mint tokens");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = shop_as_ops
        .load_map(authed(pb::LoadMapRequest { osm_pbf: b"x".to_vec() }, &a_token))
        .await
        .expect_err("a shop cannot change the map");
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut robot_as_shop = Shop::new(&server, r1.clone()).await;
    let err = robot_as_shop.place("k", LARVOTTO_WEST).await.expect_err("a robot is not a shop");
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut anon = pb::order_service_client::OrderServiceClient::new(server.channel().await);
    let err = anon.list_orders(pb::ListOrdersRequest::default()).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);

    // The first operator token is private to the dispatcher's user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dispatcher::server::operator_token_path(dir.path()))
            .expect("token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_and_its_robot_session_closed() {
    let (_dir, server, mut ops, a_token, _b, r1) = setup().await;
    let r2 = ops.robot("r2", PORT).await;
    let mut robot = RawRobot::open(&server, &r1, hello("r1")).await.expect("session opens");
    robot.next().await.expect("welcome");
    let mut other = RawRobot::open(&server, &r2, hello("r2")).await.expect("session opens");
    other.next().await.expect("welcome");

    let revoke = |role: pb::Role, subject: &str, token: &str| pb::RevokeTokensRequest {
        role: role as i32,
        subject: subject.into(),
        token: token.into(),
    };
    // Only operators revoke.
    let e = ops
        .client
        .revoke_tokens(authed(revoke(pb::Role::Robot, "r1", ""), &a_token))
        .await
        .expect_err("a shop cannot revoke");
    assert_eq!(e.code(), Code::PermissionDenied);
    // The wrong token for the named robot revokes nothing.
    let n = ops.client.revoke_tokens(authed(revoke(pb::Role::Robot, "r1", &r2), &ops.token)).await.expect("answers");
    assert_eq!(n.into_inner().revoked, 0);

    let n = ops.client.revoke_tokens(authed(revoke(pb::Role::Robot, "r1", ""), &ops.token)).await.expect("revokes");
    assert_eq!(n.into_inner().revoked, 1);
    // The open session ends at once with UNAUTHENTICATED (messages already queued may come first).
    let s = session_end(&mut robot).await.expect("the session ended with a status");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    // A new session with the revoked token is refused; the other robot is untouched.
    let again = RawRobot::open(&server, &r1, hello("r1")).await;
    assert_eq!(again.err().map(|s| s.code()), Some(Code::Unauthenticated));
    other.tx.send(hello("r2")).await.expect("still open");
    // A second hello on a live session is a protocol error, which proves the session was still being served.
    assert_eq!(session_end(&mut other).await.map(|s| s.code()), Some(Code::FailedPrecondition));

    // A shop's token, revoked, stops working for every call.
    let mut shop = Shop::new(&server, a_token.clone()).await;
    assert!(shop.list().await.is_empty());
    let n = ops.client.revoke_tokens(authed(revoke(pb::Role::Shop, "shop-a", &a_token), &ops.token)).await;
    assert_eq!(n.expect("revokes").into_inner().revoked, 1);
    let e = shop.get("ord-000001").await.expect_err("revoked");
    assert_eq!(e.code(), Code::Unauthenticated);

    // The last operator token cannot be revoked: nobody could administer the dispatcher then.
    let e =
        ops.client.revoke_tokens(authed(revoke(pb::Role::Operator, "", ""), &ops.token)).await.expect_err("refused");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    server.stop().await;
}

/// Reads a session until it ends; the status it ended with, if any.
async fn session_end(robot: &mut RawRobot) -> Option<tonic::Status> {
    for _ in 0..50 {
        match robot.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(s) => return Some(s),
        }
    }
    None
}

/// `LoadMap` takes only a usable map, whole or not at all: empty or garbage bytes are INVALID_ARGUMENT naming
/// `osm_pbf`, and nothing changes (same fingerprint, no map file left in the data directory); the bundled map
/// itself is swapped in with the shops moved over and kept for restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_is_loaded_only_whole_and_usable() {
    let (dir, server, mut ops, _a, _b, _r1) = setup().await;
    let info = |m: pb::MapInfo| (m.nodes, m.edges, m.fingerprint);
    let before = info(ops.client.get_map(authed(pb::GetMapRequest {}, &ops.token)).await.expect("map").into_inner());
    for (bytes, what) in [(Vec::new(), "empty"), (b"not a map at all".to_vec(), "garbage")] {
        let err = ops
            .client
            .load_map(authed(pb::LoadMapRequest { osm_pbf: bytes }, &ops.token))
            .await
            .expect_err("not a map");
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        let fields: Vec<String> = err
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["osm_pbf"], "{what}: {}", err.message());
        let now = ops.client.get_map(authed(pb::GetMapRequest {}, &ops.token)).await.expect("map").into_inner();
        assert_eq!(info(now), before, "{what} changed the map");
        assert!(!dir.path().join("map.osm.pbf").exists() && !dir.path().join("map.pending.osm.pbf").exists());
    }
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/monaco.osm.pbf")).expect("the map");
    let r = ops
        .client
        .load_map(authed(pb::LoadMapRequest { osm_pbf: bytes.clone() }, &ops.token))
        .await
        .expect("the bundled map loads")
        .into_inner();
    assert!(r.cancelled.is_empty() && r.closures_dropped == 0, "{r:?}");
    assert_eq!(info(r.map.expect("map info")), before, "the same map, the same fingerprint");
    assert_eq!(std::fs::read(dir.path().join("map.osm.pbf")).expect("kept"), bytes);
    server.stop().await;
}
