//! Time-outs of the real server, tested on tokio's paused clock: the runtime jumps to the next timer whenever
//! every task waits, so a 30-second time-out is tested in a moment of wall time. The clock is paused only once
//! the server is up: while it starts, the runtime waits on real threads (the core, the store), and a paused
//! clock would race ahead meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tonic::Code;
use tonic_types::StatusExt;
use trundle_proto::pb;

#[tokio::test]
async fn a_robot_that_sends_no_hello_is_dropped_after_thirty_seconds() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No HTTP/2 keepalive pings: on a paused clock the runtime would jump past a ping's answer while the
    // socket delivers it, and close a healthy connection.
    let server = Server::start_with(dir.path(), None, |o| o.limits.keepalive = None).await;
    let mut ops = Ops::new(&server).await;
    let token = ops.robot("r1", CASINO).await;

    // A session is opened and nothing is sent on it.
    let mut client = pb::robot_service_client::RobotServiceClient::new(server.channel().await);
    let (_keep_open, rx) = tokio::sync::mpsc::channel::<pb::RobotMessage>(1);
    let mut inbound = client
        .session(authed(tokio_stream::wrappers::ReceiverStream::new(rx), &token))
        .await
        .expect("the session opens")
        .into_inner();
    // The server started its 30 s wait for the hello just before answering. From here on the clock is paused
    // and moves only when told to: while a blocking task runs, tokio does not jump to the next timer, so the
    // real waits below let sockets deliver without the clock running ahead.
    tokio::time::pause();
    let real_wait = |ms| tokio::task::spawn_blocking(move || std::thread::sleep(Duration::from_millis(ms)));
    let wall = Instant::now();
    tokio::time::advance(Duration::from_secs(29)).await;
    tokio::select! {
        m = inbound.message() => panic!("the session ended before its 30 s were up: {m:?}"),
        _ = real_wait(500) => {}
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    let ended = tokio::select! {
        m = inbound.message() => m.expect_err("the dispatcher ends the session"),
        _ = real_wait(10_000) => panic!("the session is still open 31 s after it was opened"),
    };
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert_eq!(ended.get_details_error_info().map(|i| i.reason).as_deref(), Some("NO_HELLO"));
    assert!(wall.elapsed() < Duration::from_secs(10), "the paused clock did the waiting: {:?}", wall.elapsed());
    server.stop().await;
}
