//! The whole loop on Monaco: shops place orders, real agents drive them to the customers' doors, customers type
//! their PINs; and a dispatcher restart in mid-run loses nothing.

mod common;

use common::*;
use trundle_proto::pb;
use trundle_proto::pb::OrderStatus as S;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_from_two_shops_are_all_delivered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None).await;
    let mut ops = Ops::new(&server).await;
    let a_token = ops.shop("shop-a", CASINO).await;
    let b_token = ops.shop("shop-b", PORT).await;
    let cust = customers();
    let mut robots = Vec::new();
    for (id, at) in [("r1", CASINO), ("r2", PORT), ("r3", BOULEVARD)] {
        let token = ops.robot(id, at).await;
        robots.push(Robot::start(&server.url(), &token, at, cust.clone()));
    }
    let mut a = Shop::new(&server, a_token).await;
    let mut b = Shop::new(&server, b_token).await;

    // Robots need a moment to say hello before anything can be assigned.
    let first = a
        .place_when_fleet_up(pb::PlaceOrderRequest {
            idempotency_key: "a-1".into(),
            delivery: Some(Shop::delivery(LARVOTTO_WEST, 3 * 3600)),
        })
        .await;
    let mut placed = vec![(0usize, first.order.expect("order"))];
    for (shop, key, to) in [(1, "b-1", CONDAMINE), (0, "a-2", PRINCESSE_GRACE), (1, "b-2", BOULEVARD)] {
        let client = if shop == 0 { &mut a } else { &mut b };
        let r = client.place(key, to).await.expect("placed");
        placed.push((shop, r.order.expect("order")));
    }
    for (_, o) in &placed {
        assert_eq!(o.pin.len(), 6, "the shop gets the hand-over PIN");
        assert!(o.eta_dropoff.is_some(), "an ETA comes with the order");
        remember_pin(&cust, o);
    }
    // Watch one order from placement to the door.
    let mut watch = a
        .client
        .watch_order(authed(pb::WatchOrderRequest { order_id: placed[0].1.order_id.clone() }, &a.token))
        .await
        .expect("watch opens")
        .into_inner();
    for (shop, o) in &placed {
        let client = if *shop == 0 { &mut a } else { &mut b };
        client.ready(&o.order_id).await.expect("marked ready");
    }
    for (shop, o) in &placed {
        let client = if *shop == 0 { &mut a } else { &mut b };
        let done = client.wait_for(&o.order_id, S::Delivered, 240).await;
        assert!(done.delivered_at.is_some());
    }
    let mut seen = Vec::new();
    while let Some(o) = watch.message().await.expect("watch stream") {
        if seen.last() != Some(&o.status) {
            seen.push(o.status);
        }
    }
    for s in [S::InTransit, S::AtDropoff, S::Delivered] {
        assert!(seen.contains(&(s as i32)), "watch saw {seen:?}, missing {s:?}");
    }
    assert_eq!(seen.last(), Some(&(S::Delivered as i32)));
    for r in robots {
        r.stop().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_restart_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None).await;
    let addr = server.addr;
    let mut ops = Ops::new(&server).await;
    let shop_token = ops.shop("shop-a", CASINO).await;
    let cust = customers();
    let mut robots = Vec::new();
    for (id, at) in [("r1", CASINO), ("r2", BOULEVARD)] {
        let token = ops.robot(id, at).await;
        robots.push(Robot::start(&server.url(), &token, at, cust.clone()));
    }
    let mut shop = Shop::new(&server, shop_token.clone()).await;
    let mut acked = Vec::new();
    let mut requests = Vec::new();
    for (i, to) in [LARVOTTO_WEST, PRINCESSE_GRACE, CONDAMINE, PORT].into_iter().enumerate() {
        let req =
            pb::PlaceOrderRequest { idempotency_key: format!("k-{i}"), delivery: Some(Shop::delivery(to, 3 * 3600)) };
        let order = shop.place_when_fleet_up(req.clone()).await.order.expect("order");
        requests.push(req);
        remember_pin(&cust, &order);
        shop.ready(&order.order_id).await.expect("ready");
        acked.push(order);
    }
    // Let the fleet get going, then stop the dispatcher while parcels are on the road.
    shop.wait_for(&acked[0].order_id, S::InTransit, 120).await;
    server.stop().await;

    let server = Server::start(dir.path(), Some(addr)).await;
    let mut shop = Shop::new(&server, shop_token).await;
    // Every acknowledged order is there with what was acknowledged.
    for o in &acked {
        let now = shop.get(&o.order_id).await.expect("still there after the restart");
        assert_eq!((&now.shop_id, &now.dropoff, &now.pin), (&o.shop_id, &o.dropoff, &o.pin));
    }
    // A retried placement with an old key answers the original order, not a new one.
    let replay = shop.send(requests[0].clone()).await.expect("replayed");
    assert!(replay.replayed);
    assert_eq!(replay.order.expect("order").order_id, acked[0].order_id);
    // The agents reconnect by themselves and the fleet finishes the work.
    for o in &acked {
        shop.wait_for(&o.order_id, S::Delivered, 300).await;
    }
    assert_eq!(shop.list().await.len(), acked.len(), "no order was duplicated");
    for r in robots {
        r.stop().await;
    }
    server.stop().await;
}
