//! Robot link loss over real gRPC, with a TCP proxy between a real agent and the dispatcher that the test cuts
//! and restores: a short blip changes nothing; a robot gone longer than the offline limit with nothing aboard
//! loses its order to another robot; a robot gone that long with the parcel aboard keeps it, operators are told
//! in WatchFleet, and the agent keeps driving its released steps offline and reports them when it is back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use trundle_proto::pb;
use trundle_proto::pb::OrderStatus as S;

/// A TCP proxy to the dispatcher. While cut, it drops every connection and refuses new ones.
struct Proxy {
    url: String,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (u, g) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = g.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { url, up, generation }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(dir.path(), None, |o| {
        o.config.tick_every_s = 0.1;
        o.improver.enabled = false;
        o.config.offline_limit_s = 3.0;
    })
    .await;
    (dir, server)
}

async fn robot_of(shop: &mut Shop, id: &str) -> String {
    shop.get(id).await.expect("readable").robot_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blip_changes_nothing_and_a_long_absence_moves_the_order() {
    let (_dir, server) = start().await;
    let mut ops = Ops::new(&server).await;
    let shop_token = ops.shop("shop", CASINO).await;
    let near_token = ops.robot("near", CASINO).await;
    let cust = customers();
    let proxy = Proxy::start(server.addr).await;
    let near = Robot::start(&proxy.url, &near_token, CASINO, cust.clone());
    let mut shop = Shop::new(&server, shop_token).await;
    // Not marked ready: the robot drives to the shop and waits there, so nothing is aboard.
    let order = shop
        .place_when_fleet_up(pb::PlaceOrderRequest {
            idempotency_key: "k1".into(),
            delivery: Some(Shop::delivery(PRINCESSE_GRACE, 3 * 3600)),
        })
        .await
        .order
        .expect("order");
    remember_pin(&cust, &order);
    assert_eq!(order.robot_id, "near");

    // A blip well under the offline limit: the order stays.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(robot_of(&mut shop, &order.order_id).await, "near", "a short blip re-assigns nothing");

    // A second robot comes online elsewhere; the first goes dark for longer than the limit.
    let far_token = ops.robot("far", PORT).await;
    let far = Robot::start(&server.url(), &far_token, PORT, cust.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut();
    let mut moved = false;
    for _ in 0..100 {
        if robot_of(&mut shop, &order.order_id).await == "far" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moved, "an order with nothing aboard goes to a robot that is online");
    shop.ready(&order.order_id).await.expect("ready");
    let done = shop.wait_for(&order.order_id, S::Delivered, 120).await;
    assert_eq!(done.robot_id, "far");
    proxy.restore();
    near.stop().await;
    far.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_offline_with_a_parcel_aboard_keeps_it_is_flagged_and_delivers_on_its_own() {
    let (_dir, server) = start().await;
    let mut ops = Ops::new(&server).await;
    let shop_token = ops.shop("shop", CASINO).await;
    let r1_token = ops.robot("r1", CASINO).await;
    let r2_token = ops.robot("r2", CASINO).await;
    let cust = customers();
    let proxy = Proxy::start(server.addr).await;
    let r1 = Robot::start(&proxy.url, &r1_token, CASINO, cust.clone());
    let mut fleet =
        ops.client.watch_fleet(authed(pb::WatchFleetRequest {}, &ops.token)).await.expect("watch").into_inner();
    let mut shop = Shop::new(&server, shop_token).await;
    let order = shop
        .place_when_fleet_up(pb::PlaceOrderRequest {
            idempotency_key: "k1".into(),
            delivery: Some(Shop::delivery(LARVOTTO_WEST, 3 * 3600)),
        })
        .await
        .order
        .expect("order");
    remember_pin(&cust, &order);
    shop.ready(&order.order_id).await.expect("ready");
    let _r2 = Robot::start(&server.url(), &r2_token, CASINO, cust.clone());
    // Loaded and on its way: cut the link. The agent has the drive to the customer and the hand-over released.
    shop.wait_for(&order.order_id, S::InTransit, 60).await;
    proxy.cut();
    let alert = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(ev)) = fleet.next().await {
            if let Some(pb::fleet_event::Event::Alert(a)) = ev.event
                && a.robot_id == "r1"
                && a.message.contains("offline")
            {
                return Some(a.message);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let alert = alert.expect("operators are told in WatchFleet");
    assert!(alert.contains(&order.order_id), "{alert}");
    let o = shop.get(&order.order_id).await.expect("readable");
    assert_eq!(o.robot_id, "r1", "a parcel aboard stays with its robot");
    // Back online: the agent drove on and handed over while offline; its hello reports the finished steps.
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let done = shop.wait_for(&order.order_id, S::Delivered, 120).await;
    assert_eq!(done.robot_id, "r1");
    r1.stop().await;
    server.stop().await;
}
