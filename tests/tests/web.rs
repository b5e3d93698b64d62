//! The web side over real HTTP: a shop signs in with its token, quotes, places, watches its orders live, marks
//! one ready and a real agent delivers it; the customer's link shows that order only; history comes as CSV;
//! and the hostile cases: other shops' orders, guessed links, missing CSRF tokens, bad and oversized bodies,
//! wrong roles, signing out and revoked tokens.

mod common;

use common::http::{Browser, request, sign_in};
use common::*;
use serde_json::{Value, json};
use trundle_proto::pb;

fn delivery(to: (f64, f64), in_s: i64) -> Value {
    json!({ "lat": to.0, "lon": to.1, "weight_g": 1200, "compartments": 1, "deliver_by": (wall_ms() as i64) + in_s * 1000 })
}

/// Places through the web, retrying while no robot has said hello yet.
async fn place_when_fleet_up(b: &Browser, key: &str, to: (f64, f64)) -> Value {
    for _ in 0..200 {
        let r = b.post("/api/orders", &json!({ "idempotency_key": key, "delivery": delivery(to, 3 * 3600) })).await;
        match r.status {
            200 => return r.json(),
            409 => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            _ => panic!("unexpected answer: {r:?}"),
        }
    }
    panic!("no robot came online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_places_follows_and_gets_an_order_delivered_over_the_web() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_web(dir.path()).await;
    let web = server.http.expect("http port");
    let mut ops = Ops::new(&server).await;
    let shop_token = ops.shop("bakery", CASINO).await;
    let cust = customers();
    let robot_token = ops.robot("r1", CASINO).await;
    let robot = Robot::start(&server.url(), &robot_token, CASINO, cust.clone());

    // The pages and their scripts are served from the binary.
    for path in ["/", "/shop", "/ops", "/static/shop.js", "/static/i18n.js", "/static/app.css"] {
        let r = request(web, "GET", path, &[], b"").await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(r.header("content-security-policy").is_some_and(|c| c.contains("script-src 'self'")), "{path}");
    }

    let shop = Browser::sign_in(web, &shop_token).await;
    assert_eq!(shop.role, "shop");
    let me = shop.get("/api/shop").await.json();
    assert_eq!(me["id"], "bakery");
    assert!((me["pos"]["lat"].as_f64().expect("lat") - CASINO.0).abs() < 1e-9);

    let map = request(web, "GET", "/api/map", &[], b"").await;
    assert_eq!(map.status, 200);
    let m = map.json();
    let (nodes, edges) = (m["nodes"].as_array().expect("nodes").len(), m["edges"].as_array().expect("edges").len());
    assert!(nodes > 1000 && nodes % 2 == 0 && edges > 1000 && edges % 2 == 0, "{nodes} {edges}");
    let etag = map.header("etag").expect("an ETag").to_owned();
    assert_eq!(request(web, "GET", "/api/map", &[("If-None-Match", &etag)], b"").await.status, 304);

    let mut live = shop.events("/api/events").await;
    assert_eq!(live.status, 200);
    let (name, snap) = live.next().await.expect("a snapshot");
    assert_eq!(name, "snapshot");
    assert_eq!(snap["orders"].as_array().expect("orders").len(), 0);

    let placed = place_when_fleet_up(&shop, "form-1", LARVOTTO_WEST).await;
    let order = &placed["order"];
    let id = order["id"].as_str().expect("id").to_owned();
    let pin = order["pin"].as_str().expect("pin").to_owned();
    assert_eq!(pin.len(), 6);
    assert!(placed["quote"]["eta_dropoff"].as_i64().is_some(), "{placed}");
    let link = placed["link"].as_str().expect("a tracking link").to_owned();
    assert!(link.starts_with("/t/") && link.len() == 3 + 32, "{link}");
    cust.lock().expect("lock").insert(fleet_core::OrderId::parse(&id).expect("id"), pin.clone());

    // The same submission again is the same order (the page keeps one key per form).
    let again = shop
        .post("/api/orders", &json!({ "idempotency_key": "form-1", "delivery": delivery(LARVOTTO_WEST, 3 * 3600) }))
        .await;
    assert_eq!(again.status, 409, "another body under the same key is refused: {again:?}");

    // A quote answers with times and changes nothing.
    let q = shop.post("/api/quote", &delivery(PRINCESSE_GRACE, 3 * 3600)).await.json();
    assert_eq!(q["quote"]["feasible"], true, "{q}");

    // The customer's page: this order, its PIN, where it is; nothing about the shop or robot.
    let secret = &link[3..];
    let t = request(web, "GET", &format!("/api/track/{secret}"), &[], b"").await;
    assert_eq!(t.status, 200, "{t:?}");
    let tj = t.json();
    assert_eq!(tj["order"]["pin"], pin.as_str());
    assert!(
        tj["order"].get("shop").is_none() && tj["order"].get("robot").is_none() && tj["order"].get("id").is_none(),
        "{tj}"
    );
    assert_eq!(request(web, "GET", &link, &[], b"").await.status, 200, "the customer's page itself");

    let r = shop.post_empty(&format!("/api/orders/{id}/ready")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["order"]["marked_ready"], true);

    // The live stream follows the order to the door.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(240);
    while tokio::time::Instant::now() < deadline {
        let (name, ev) = live.next().await.expect("the stream stays open");
        if name != "order" || ev["order"]["id"] != id.as_str() {
            continue;
        }
        let status = ev["order"]["status"].as_str().expect("status").to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "DELIVERED" {
            break;
        }
    }
    assert_eq!(seen.last().map(String::as_str), Some("DELIVERED"), "{seen:?}");
    assert!(seen.iter().any(|s| s == "IN_TRANSIT"), "{seen:?}");

    // Delivered: the link shows how it ended, without the PIN or the robot.
    let done = request(web, "GET", &format!("/api/track/{secret}"), &[], b"").await.json();
    assert_eq!(done["order"]["status"], "DELIVERED");
    assert!(done["order"]["pin"].is_null() && done["order"]["robot_pos"].is_null(), "{done}");

    // History as CSV.
    let csv = shop.get("/api/orders.csv").await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").is_some_and(|c| c.starts_with("text/csv")));
    let row = csv.body.lines().find(|l| l.starts_with(&id)).expect("the order is in the CSV");
    assert!(row.contains(",DELIVERED,") && row.contains(",r1,"), "{row}");

    robot.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_web_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_web(dir.path()).await;
    let web = server.http.expect("http port");
    let mut ops = Ops::new(&server).await;
    let a_token = ops.shop("shop-a", CASINO).await;
    let b_token = ops.shop("shop-b", PORT).await;
    let robot_token = ops.robot("r1", CASINO).await;
    let _raw = RawRobot::open(&server, &robot_token, hello("r1")).await.expect("robot online");
    let a = Browser::sign_in(web, &a_token).await;
    let b = Browser::sign_in(web, &b_token).await;

    // Cookie flags.
    let r = sign_in(web, &a_token).await;
    let cookie = r.header("set-cookie").expect("cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP on loopback: {cookie}");

    // Bad tokens and roles.
    assert_eq!(sign_in(web, "trd_nope").await.status, 401);
    assert_eq!(sign_in(web, &robot_token).await.status, 403, "robots do not sign in to pages");
    assert_eq!(request(web, "GET", "/api/orders", &[], b"").await.status, 401, "no cookie");
    assert_eq!(request(web, "GET", "/api/orders", &[("Cookie", "trundle_session=00")], b"").await.status, 401);
    assert_eq!(a.get("/api/ops/fleet").await.status, 403, "a shop is no operator");
    assert_eq!(a.post_empty("/api/ops/robots/r1/pause").await.status, 403);

    let placed = place_when_fleet_up(&a, "k1", LARVOTTO_WEST).await;
    let id = placed["order"]["id"].as_str().expect("id").to_owned();
    let link = placed["link"].as_str().expect("link").to_owned();

    // Another shop cannot see or touch the order, nor guess its neighbours.
    for path in
        [format!("/api/orders/{id}/ready"), format!("/api/orders/{id}/cancel"), format!("/api/orders/{id}/link")]
    {
        let r = b.post_empty(&path).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    for guess in ["ord-000000", "ord-000002", "ord-999999", "../ord-000001", "ord-000001%00"] {
        let r = b.post_empty(&format!("/api/orders/{guess}/cancel")).await;
        assert!(matches!(r.status, 400 | 404), "{guess}: {r:?}");
    }
    assert!(b.get("/api/orders?closed=true").await.json()["orders"].as_array().expect("list").is_empty());
    assert!(!b.get("/api/orders.csv").await.body.contains(&id));

    // Without the CSRF token (or with a wrong one) nothing changes.
    let no_csrf = request(web, "POST", &format!("/api/orders/{id}/cancel"), &[("Cookie", &a.cookie)], b"").await;
    assert_eq!(no_csrf.status, 403, "{no_csrf:?}");
    assert_eq!(no_csrf.json()["code"], "CSRF");
    let wrong = request(
        web,
        "POST",
        &format!("/api/orders/{id}/ready"),
        &[("Cookie", &a.cookie), ("X-CSRF-Token", &b.csrf)],
        b"",
    )
    .await;
    assert_eq!(wrong.status, 403);
    let mut shop = Shop::new(&server, a_token.clone()).await;
    let now = shop.get(&id).await.expect("order");
    assert!(!now.marked_ready && now.status != pb::OrderStatus::Cancelled as i32, "{now:?}");

    // Tracking links: a guessed or malformed secret finds nothing; a new link ends the old one.
    for guess in ["0123456789abcdef0123456789abcdef", "zz", "../../api/orders", &"a".repeat(500)] {
        let r = request(web, "GET", &format!("/api/track/{guess}"), &[], b"").await;
        assert_eq!(r.status, 404, "{guess}: {r:?}");
        assert!(!r.body.contains(&id));
    }
    let fresh = a.post_empty(&format!("/api/orders/{id}/link")).await;
    assert_eq!(fresh.status, 200, "{fresh:?}");
    let fresh = fresh.json()["link"].as_str().expect("link").to_owned();
    assert_ne!(fresh, link);
    assert_eq!(
        request(web, "GET", &format!("/api/track/{}", &link[3..]), &[], b"").await.status,
        404,
        "old link ended"
    );
    assert_eq!(request(web, "GET", &format!("/api/track/{}", &fresh[3..]), &[], b"").await.status, 200);

    // Bad bodies: a clear 4xx and nothing placed.
    let h = [("Cookie", a.cookie.as_str()), ("X-CSRF-Token", a.csrf.as_str()), ("Content-Type", "application/json")];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("broken JSON", b"{\"idempotency_key\": ".to_vec(), 400),
        ("wrong type", br#"{"idempotency_key": 5, "delivery": {}}"#.to_vec(), 422),
        ("unknown field", br#"{"idempotency_key": "x", "delivery": {"lat": 43.74, "lon": 7.43, "weight_g": 1, "deliver_by": 1, "evil": 1}}"#.to_vec(), 422),
        ("oversized", vec![b' '; 100 * 1024], 413),
    ];
    for (what, body, want) in cases {
        let r = request(web, "POST", "/api/orders", &h, &body).await;
        assert_eq!(r.status, want, "{what}: {r:?}");
        assert!(!r.json()["error"].as_str().expect("a message").is_empty(), "{what}");
    }
    let not_json = request(
        web,
        "POST",
        "/api/orders",
        &[("Cookie", &a.cookie), ("X-CSRF-Token", &a.csrf), ("Content-Type", "text/plain")],
        b"{}",
    )
    .await;
    assert_eq!(not_json.status, 415, "{not_json:?}");
    // Values the services refuse keep the services' field and reason.
    let far =
        a.post("/api/orders", &json!({ "idempotency_key": "far", "delivery": delivery((48.85, 2.35), 3600) })).await;
    assert_eq!(far.status, 400, "{far:?}");
    assert_eq!(far.json()["field"], "delivery.dropoff", "{far:?}");
    let heavy = a
        .post("/api/quote", &json!({ "lat": 43.74, "lon": 7.43, "weight_g": 0, "deliver_by": wall_ms() + 3_600_000 }))
        .await;
    assert_eq!(heavy.status, 400, "{heavy:?}");
    assert_eq!(shop.list().await.len(), 1, "nothing else was placed");

    // Signing out ends the session; a revoked token ends its sessions.
    let out = request(web, "DELETE", "/api/session", &[("Cookie", &b.cookie), ("X-CSRF-Token", &b.csrf)], b"").await;
    assert_eq!(out.status, 200);
    assert_eq!(b.get("/api/orders").await.status, 401);
    let revoke =
        pb::RevokeTokensRequest { role: pb::Role::Shop as i32, subject: "shop-a".into(), token: a_token.clone() };
    ops.client.revoke_tokens(authed(revoke, &ops.token)).await.expect("revoked");
    assert_eq!(a.get("/api/orders").await.status, 401, "revoked");

    // Unknown paths answer 404 in JSON.
    let r = request(web, "GET", "/api/nothing", &[], b"").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "NOT_FOUND");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_fleet_from_the_web() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_web(dir.path()).await;
    let web = server.http.expect("http port");
    let op = Browser::sign_in(web, &server.operator_token()).await;
    assert_eq!(op.role, "operator");

    let shop =
        op.post("/api/ops/shops", &json!({ "id": "deli", "name": "Deli <b>", "lat": CASINO.0, "lon": CASINO.1 })).await;
    assert_eq!(shop.status, 200, "{shop:?}");
    let shop_token = shop.json()["token"].as_str().expect("token").to_owned();
    let robot = op.post("/api/ops/robots", &json!({ "id": "r1", "lat": CASINO.0, "lon": CASINO.1 })).await;
    let robot_token = robot.json()["token"].as_str().expect("token").to_owned();
    let _raw = RawRobot::open(&server, &robot_token, hello("r1")).await.expect("robot online");
    let extra = op.post("/api/ops/tokens", &json!({ "role": "shop", "subject": "deli" })).await;
    assert_eq!(extra.status, 200);
    assert_eq!(Browser::sign_in(web, extra.json()["token"].as_str().expect("token")).await.role, "shop");
    assert_eq!(op.post("/api/ops/tokens", &json!({ "role": "king" })).await.status, 400);

    let mut feed = op.events("/api/ops/events").await;
    let (name, fleet) = feed.next().await.expect("a fleet event");
    assert_eq!(name, "fleet");
    assert_eq!(fleet["shops"][0]["name"], "Deli <b>");
    assert_eq!(fleet["robots"][0]["id"], "r1");

    // Pause and resume.
    let p = op.post_empty("/api/ops/robots/r1/pause").await;
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.json()["robot"]["state"], "paused");
    assert_eq!(op.post_empty("/api/ops/robots/ghost/pause").await.status, 404);
    let r = op.post_empty("/api/ops/robots/r1/resume").await;
    assert_eq!(r.json()["robot"]["paused"], false);

    // Close and open a sidewalk, by node indices from /api/map.
    let m = request(web, "GET", "/api/map", &[], b"").await.json();
    let (a, b) = (m["edges"][0].as_u64().expect("a"), m["edges"][1].as_u64().expect("b"));
    let c = op.post("/api/ops/edges/close", &json!({ "from": a, "to": b })).await;
    assert_eq!(c.status, 200, "{c:?}");
    let f = op.get("/api/ops/fleet").await.json();
    assert!(
        f["closed"].as_array().expect("closed").iter().any(|e| e[0] == a.min(b) && e[1] == a.max(b)),
        "{}",
        f["closed"]
    );
    let bad = op.post("/api/ops/edges/close", &json!({ "from": 0, "to": 99_999_999 })).await;
    assert_eq!(bad.status, 404, "{bad:?}");
    assert!(!bad.json()["error"].as_str().expect("message").is_empty());
    op.post("/api/ops/edges/open", &json!({ "from": a, "to": b })).await;
    assert!(op.get("/api/ops/fleet").await.json()["closed"].as_array().expect("closed").is_empty());

    // Re-assign to an unknown robot is refused by the core; acknowledging an unknown alert is a 404.
    let sb = Browser::sign_in(web, &shop_token).await;
    let placed = place_when_fleet_up(&sb, "k", LARVOTTO_WEST).await;
    let id = placed["order"]["id"].as_str().expect("id");
    let re = op.post(&format!("/api/ops/orders/{id}/reassign"), &json!({ "robot": "ghost" })).await;
    assert_eq!(re.status, 404, "{re:?}");
    assert_eq!(op.post_empty("/api/ops/alerts/424242/ack").await.status, 404);
    assert_eq!(op.post_empty("/api/ops/alerts/abc/ack").await.status, 400);

    // An operator's stream ends when it signs out.
    let out = request(web, "DELETE", "/api/session", &[("Cookie", &op.cookie), ("X-CSRF-Token", &op.csrf)], b"").await;
    assert_eq!(out.status, 200);
    loop {
        match feed.next().await {
            Some((name, _)) if name == "ended" => break,
            Some(_) => continue,
            None => break,
        }
    }
    server.stop().await;
}
