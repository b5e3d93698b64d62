//! Background plan improvement through the real server: work planned on a far robot while the near one was
//! offline moves to the near one once it is back, without anybody asking, and what was already released stays.

mod common;

use std::time::Duration;

use common::*;
use trundle_proto::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_improver_moves_unstarted_orders_to_a_better_robot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(dir.path(), None, |o| {
        o.config.tick_every_s = 0.1;
        o.config.improve_every_s = 0.1;
        o.improver.budget = Duration::from_millis(100);
    })
    .await;
    let mut ops = Ops::new(&server).await;
    let shop_token = ops.shop("shop", BOULEVARD).await;
    let near_token = ops.robot("near", BOULEVARD).await;
    let far_token = ops.robot("far", LARVOTTO_WEST).await;
    let mut shop = Shop::new(&server, shop_token.clone()).await;

    // Only the far robot is online: both orders go to it; the drive to the shop is released at once.
    let far = RawRobot::open(&server, &far_token, hello("far")).await.expect("session opens");
    let first = shop
        .place_when_fleet_up(pb::PlaceOrderRequest {
            idempotency_key: "k1".into(),
            delivery: Some(Shop::delivery(PRINCESSE_GRACE, 3 * 3600)),
        })
        .await
        .order
        .expect("order");
    let second = shop.place("k2", CONDAMINE).await.expect("placed").order.expect("order");
    assert_eq!(first.robot_id, "far");
    assert_eq!(second.robot_id, "far");

    // The near robot comes online; the improver should hand it the second order within a few rounds.
    let near = RawRobot::open(&server, &near_token, hello("near")).await.expect("session opens");
    let mut moved = None;
    for _ in 0..100 {
        let o = shop.get(&second.order_id).await.expect("readable");
        if o.robot_id == "near" {
            moved = Some(o);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = moved.expect("the second order moved to the near robot");
    assert!(moved.eta_dropoff.is_some(), "a fresh ETA comes with the move");
    // The first order's drive was released to the far robot: a commitment, so it stays.
    assert_eq!(shop.get(&first.order_id).await.expect("readable").robot_id, "far");
    drop((far, near));
    server.stop().await;

    // The move is on disk: a restart sees it.
    let server = Server::start(dir.path(), None).await;
    let mut shop = Shop::new(&server, shop_token).await;
    assert_eq!(shop.get(&second.order_id).await.expect("readable").robot_id, "near");
    server.stop().await;
}
