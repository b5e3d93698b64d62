//! The dispatcher binary as operations run it: `--log-format json` writes one JSON object per line, and
//! `--http ADDR` serves `/healthz` and `/metrics`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A blocking HTTP/1.1 GET: the status code and the body, or None while nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: trundle\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}

#[test]
fn the_dispatcher_logs_json_and_serves_metrics_over_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (grpc, http) = (free_port(), free_port());
    let map = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/monaco.osm.pbf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trundle-dispatcher"))
        .args(["--listen", &format!("127.0.0.1:{grpc}"), "--http", &format!("127.0.0.1:{http}")])
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--map")
        .arg(map)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the dispatcher starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    let health = loop {
        if let Some(r) = get(http, "/healthz") {
            break r;
        }
        assert!(Instant::now() < deadline, "the HTTP port never answered");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health, (200, "ok\n".to_owned()));
    let (code, metrics) = get(http, "/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    for want in [
        "# TYPE trundle_orders gauge",
        "# TYPE trundle_core_queue_seconds histogram",
        "# TYPE trundle_core_queue_depth gauge",
        "trundle_alerts_total 0",
    ] {
        assert!(metrics.contains(want), "missing {want:?} in\n{metrics}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut out = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut out).expect("the log is read");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v.get("level").is_some() && v.get("timestamp").is_some() && v.get("fields").is_some(), "{l}");
    }
    assert!(out.contains(&format!("metrics on http://127.0.0.1:{http}/metrics")), "{out}");
}
