//! Architecture invariant: fleet-core does no IO. Its manifest names no async runtime, transport, store or
//! physics crate, and its source never reads a clock, spawns a thread, or touches files or the network.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).expect("src is readable") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((p.display().to_string(), std::fs::read_to_string(&p).expect("readable")));
        }
    }
}

#[test]
fn manifest_names_no_io_crate() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("manifest");
    for banned in ["tokio", "tonic", "prost", "sled", "rapier", "reqwest", "hyper", "rand"] {
        let hit = manifest.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with(banned) && l[banned.len()..].trim_start().starts_with(['=', '.', '-'])
        });
        assert!(!hit, "fleet-core's manifest names {banned}");
    }
}

#[test]
fn source_reads_no_clock_and_does_no_io() {
    let mut files = Vec::new();
    sources(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut files);
    assert!(files.len() >= 5);
    for (path, text) in files {
        for banned in [
            "Instant::now",
            "SystemTime",
            "thread::spawn",
            "std::thread",
            "std::fs",
            "File::open",
            "std::net",
            "thread_rng",
            "rand::",
            "std::env",
        ] {
            assert!(!text.contains(banned), "{path} uses {banned}");
        }
    }
}
