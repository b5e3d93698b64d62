//! The simulator's remote driver against a real dispatcher: every simulated robot is a real robot-agent gRPC
//! session, shops place orders over `OrderService`, and every order is delivered.

mod common;

use std::time::Duration;

use common::*;
use sim::remote::{self, RemoteConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_driver_delivers_a_small_day_over_grpc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None).await;
    let cfg = RemoteConfig {
        endpoint: server.url(),
        operator_token: server.operator_token(),
        robots: 3,
        shops: 2,
        orders: 6,
        order_gap_s: 0.2,
        time_scale: 240.0,
        seed: 5,
        prefix: "t-".into(),
        timeout: Duration::from_secs(120),
    };
    let report = Box::pin(remote::run(&monaco(), &cfg)).await.expect("the run completes");
    assert_eq!(report.placed + report.refused.values().sum::<usize>(), 6, "{report:?}");
    assert!(report.placed >= 4, "most orders are accepted: {report:?}");
    assert_eq!(report.delivered, report.placed, "every accepted order is delivered: {report:?}");
    assert_eq!(report.open, 0);
    server.stop().await;
}
