//! `trundle policy set NAME --gate GATE.toml` against a real dispatcher: a policy that fails the gate is not
//! applied (the CLI exits non-zero and the dispatcher keeps its policy); one that passes is applied and kept
//! across a restart.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn start(port: u16, data: &Path) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_trundle-dispatcher"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .arg("--map")
            .arg(repo("data/monaco.osm.pbf"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the dispatcher starts"),
    )
}

/// Runs the `trundle` CLI against the dispatcher on `port`, as an operator, until it answers.
fn trundle(port: u16, data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trundle"))
        .args(["--server", &format!("http://127.0.0.1:{port}"), "--token-file"])
        .arg(data.join("operator.token"))
        .args(args)
        .output()
        .expect("the CLI runs")
}

fn policy(port: u16, data: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = trundle(port, data, &["policy", "show"]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        assert!(Instant::now() < deadline, "the dispatcher never answered: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_policy_is_applied_only_when_the_gate_passes_and_is_kept_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = start(port, &data);
    assert_eq!(policy(port, &data), "policy insert-improve (available: insert-improve, insert, greedy)");
    let gate = repo("sim/tests/gates/small-gate.toml");
    let gate = gate.to_str().expect("utf-8 path");

    let out_bad = dir.path().join("gate-greedy");
    let out = trundle(
        port,
        &data,
        &["policy", "set", "greedy", "--gate", gate, "--gate-out", out_bad.to_str().expect("utf-8")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a failing gate must fail the command");
    assert!(stderr.contains("the gate failed with policy greedy: nothing was changed"), "{stderr}");
    let junit = std::fs::read_to_string(out_bad.join("gate.junit.xml")).expect("the JUnit file is written");
    assert!(junit.contains("<failure"), "{junit}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("gate FAILED"));
    assert!(policy(port, &data).starts_with("policy insert-improve "), "not applied");

    let out_ok = dir.path().join("gate-insert");
    let out = trundle(
        port,
        &data,
        &["policy", "set", "insert", "--gate", gate, "--gate-out", out_ok.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the gate passed; policy insert is in force"));
    assert!(policy(port, &data).starts_with("policy insert "));

    // Kept in the store: a restart comes back with it.
    drop(server);
    server = start(port, &data);
    assert!(policy(port, &data).starts_with("policy insert "));
    drop(server);
}

fn map_info(port: u16, data: &Path) -> String {
    let out = trundle(port, data, &["map", "info"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned()
}

/// `trundle map apply FILE --gate GATE.toml`: a map the gate cannot run on is not loaded; one that passes is
/// swapped in (the shop moves over), kept in the data directory, and a restart comes back on it even when the
/// configured map is missing.
#[test]
fn a_map_is_applied_only_when_the_gate_passes_and_is_kept_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = start(port, &data);
    policy(port, &data);
    let out = trundle(port, &data, &["shop", "register", "--id", "bakery", "--name", "B", "--at", "43.7393,7.4274"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = map_info(port, &data);
    assert!(before.contains("fingerprint "), "{before}");
    let gate = repo("sim/tests/gates/small-gate.toml");
    let gate = gate.to_str().expect("utf-8 path");

    // Not a map: the gate cannot run on it, and nothing changes.
    let bad = dir.path().join("bad.osm.pbf");
    std::fs::write(&bad, b"this is not an OpenStreetMap extract").expect("written");
    let out = trundle(port, &data, &["map", "apply", bad.to_str().expect("utf-8"), "--gate", gate]);
    assert!(!out.status.success(), "a map the gate cannot load must not be applied");
    assert_eq!(map_info(port, &data), before);
    assert!(!data.join("map.osm.pbf").exists() && !data.join("map.pending.osm.pbf").exists());

    // The bundled map, as a file of its own: the gate passes and it is swapped in.
    let good = dir.path().join("monaco-copy.osm.pbf");
    std::fs::copy(repo("data/monaco.osm.pbf"), &good).expect("copied");
    let out_dir = dir.path().join("gate-map");
    let out = trundle(
        port,
        &data,
        &[
            "map",
            "apply",
            good.to_str().expect("utf-8"),
            "--gate",
            gate,
            "--gate-out",
            out_dir.to_str().expect("utf-8"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("the gate passed; map") && stdout.contains("0 cancelled"), "{stdout}");
    assert!(std::fs::read_to_string(out_dir.join("gate.md")).expect("the gate's summary").contains("pass"));
    let kept = std::fs::read(data.join("map.osm.pbf")).expect("the map is kept in the data directory");
    assert_eq!(kept, std::fs::read(&good).expect("readable"));
    assert!(!data.join("map.pending.osm.pbf").exists());
    assert_eq!(map_info(port, &data), before, "the same map keeps its fingerprint");

    // A restart with the configured map gone comes back on the kept one, with the shop.
    drop(server);
    server = Server(
        Command::new(env!("CARGO_BIN_EXE_trundle-dispatcher"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(&data)
            .args(["--map", "/nonexistent/map.osm.pbf"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the dispatcher starts"),
    );
    policy(port, &data);
    assert_eq!(map_info(port, &data), before);
    let out = trundle(port, &data, &["shop", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("bakery"), "{}", String::from_utf8_lossy(&out.stdout));
    drop(server);
}
