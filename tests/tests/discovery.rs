//! Any gRPC client can find and use the API: standard health reports SERVING, server reflection lists the three
//! services, and a client generated from the proto files alone, in another language, places and reads an order.

mod common;

use common::*;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_serves_and_reflection_lists_the_services() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "trundle.v1.OrderService", "trundle.v1.RobotService", "trundle.v1.OpsService"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .expect("health answers")
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers =
        reflection.server_reflection_info(tokio_stream::iter([req])).await.expect("reflection answers").into_inner();
    let Some(Ok(answer)) = answers.next().await else { panic!("no reflection answer") };
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["trundle.v1.OrderService", "trundle.v1.RobotService", "trundle.v1.OpsService", "grpc.health.v1.Health"]
    {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    server.stop().await;
}

/// Runs `tests/python/interop.py`, a Python client generated from `proto/` alone by grpcio-tools. Gated by
/// `TRUNDLE_PYTHON` (a Python with grpcio-tools, as `.ci/run` sets up), because it needs packages from outside
/// the Rust toolchain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_the_protos_places_and_reads_an_order() {
    let Ok(python) = std::env::var("TRUNDLE_PYTHON") else {
        eprintln!("TRUNDLE_PYTHON is not set: skipping the Python interop check (.ci/run sets it)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), None).await;
    let mut ops = Ops::new(&server).await;
    let shop_token = ops.shop("py-shop", CASINO).await;
    let r1 = ops.robot("r1", CASINO).await;
    let mut robot = RawRobot::open(&server, &r1, hello("r1")).await.expect("session");
    robot.next().await.expect("welcome");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = tokio::process::Command::new(python)
        .arg(format!("{root}/tests/python/interop.py"))
        .arg("--proto-dir")
        .arg(format!("{root}/proto/proto"))
        .arg("--out-dir")
        .arg(dir.path().join("py"))
        .arg("--addr")
        .arg(server.addr.to_string())
        .arg("--token")
        .arg(&shop_token)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // The Python client prints the id it placed; the Rust side must see the same order.
    let id = stdout.lines().find_map(|l| l.strip_prefix("placed ")).expect("python printed the order id").trim();
    let mut shop = Shop::new(&server, shop_token).await;
    let o = shop.get(id).await.expect("the order the Python client placed exists");
    assert_eq!(o.shop_id, "py-shop");
    drop(robot);
    server.stop().await;
}
