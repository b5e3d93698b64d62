//! `trundle-bench`: Trundle's benchmarks, one subcommand per area. Prints a readable table, or with `--json` one
//! JSON object per measurement (flat keys, units in the key names) ending with a summary object.

mod dashboards;
mod failover;
mod load;
mod store;
mod traffic;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fleet_core::map::{MapGraph, Profile};
use fleet_core::routing::ch::{ChQuery, ContractionHierarchy, INF};
use fleet_core::{LatLon, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "trundle-bench", version, about = "Trundle benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Map import, preprocessing and shortest-path queries: Dijkstra, A*, the fast_paths crate and Trundle's CH.
    Routing(RoutingArgs),
    /// Online insertion: quote and place one order into the plans of a busy fleet on Monaco.
    Insertion(InsertionArgs),
    /// Li & Lim PDPTW instances against the best-known solutions.
    Lilim(SolverArgs),
    /// Solomon VRPTW instances against the best-known solutions.
    Solomon(SolverArgs),
    /// The full lockstep simulation (dispatcher, agents, rapier physics, pedestrians) on Monaco: real-time factor.
    Sim(SimArgs),
    /// The gRPC server under load: robot sessions streaming state while shops place, read and watch orders.
    Load(LoadArgs),
    /// What traffic management costs the dispatcher core: ideal robots under load, turns on and off.
    Traffic(traffic::TrafficArgs),
    /// Commit latency of the sled store and the etcd store (a local 3-member cluster it starts) side by side.
    Store(StoreArgs),
    /// Leader kills of a service area on etcd: failover time, orders lost and duplicated.
    Failover(failover::FailoverArgs),
}

#[derive(clap::Args)]
struct LoadArgs {
    #[arg(long, default_value = "data/monaco.osm.pbf")]
    map: PathBuf,
    #[arg(long, default_value_t = 1000)]
    robots: usize,
    #[arg(long, default_value_t = 200.0)]
    orders_per_sec: f64,
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    #[arg(long, default_value_t = 20)]
    shops: usize,
    /// Watch one in this many orders (a WatchOrder stream held to the end).
    #[arg(long, default_value_t = 20)]
    watch_every: usize,
    /// Worker threads of the in-process dispatcher's runtime (the load generator has its own).
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    #[arg(long, default_value_t = 3)]
    seed: u64,
    /// Run the dispatcher without its background plan improver (to measure what the improver costs).
    #[arg(long)]
    no_improve: bool,
    /// Operators' dashboards open during the run: each signs in over HTTP and reads the live fleet stream.
    #[arg(long, default_value_t = 0)]
    dashboards: usize,
    /// Service areas: with 2 or more the map is cut into this many bands of latitude, each area led by its own
    /// in-process dispatcher on a local 3-member etcd cluster, with --robots robots, --shops shops and
    /// --orders-per-sec each; shops place through an in-process `trundle-router` and robots open their sessions
    /// there (and are sent on to their area's leader). 1: one dispatcher on the sled store.
    #[arg(long, default_value_t = 1)]
    areas: usize,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct StoreArgs {
    /// Commits per second, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rates: Vec<f64>,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rounds: each round runs every store at every rate, in turn.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// An etcd cluster to use (`etcd://HOST:PORT,...`); without it, a local 3-member cluster of /usr/bin/etcd is
    /// started in a temp dir.
    #[arg(long)]
    etcd: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct SimArgs {
    #[arg(long, default_value = "data/monaco.osm.pbf")]
    map: PathBuf,
    /// Fleet sizes, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10,50,200,1000")]
    robots: Vec<usize>,
    /// Simulated hours per run.
    #[arg(long, default_value_t = 0.5)]
    hours: f64,
    #[arg(long, default_value_t = 200)]
    pedestrians: usize,
    /// Orders per robot-hour over all shops.
    #[arg(long, default_value_t = 3.0)]
    orders_per_robot_hour: f64,
    #[arg(long, default_value_t = 20)]
    physics_hz: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The dispatcher's tick interval (`dispatch.tick_every_s`), to measure what the cadence costs.
    #[arg(long, default_value_t = 1.0)]
    tick_every_s: f64,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct InsertionArgs {
    #[arg(long, default_value = "data/monaco.osm.pbf")]
    map: PathBuf,
    #[arg(long, default_value_t = 50)]
    robots: usize,
    /// Open orders in the plans before measuring.
    #[arg(long, default_value_t = 200)]
    orders: usize,
    /// Quotes and placements measured.
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// Background improvement rounds after the placements, and the search budget of each (ms).
    #[arg(long, default_value_t = 10)]
    improve_rounds: usize,
    #[arg(long, default_value_t = 300)]
    improve_ms: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct SolverArgs {
    /// Folder of instances (e.g. ../shared/data/pdptw/li-lim-100); `bks.csv` is read from it or its parent.
    dir: PathBuf,
    /// Time budget per instance, seconds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only instances whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Share of each instance's budget spent minimising the fleet before distance.
    #[arg(long, default_value_t = 0.5)]
    fleet_share: f64,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct RoutingArgs {
    #[arg(long, default_value = "data/monaco.osm.pbf")]
    map: PathBuf,
    /// Random point-to-point pairs.
    #[arg(long, default_value_t = 10_000)]
    pairs: usize,
    /// Pairs also answered by plain Dijkstra and A* (the slow baselines), the first of the same list.
    #[arg(long, default_value_t = 10_000)]
    dijkstra_pairs: usize,
    /// Side of the synthetic grid city (side x side nodes); 0 skips it.
    #[arg(long, default_value_t = 1_000)]
    synthetic_side: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

struct Out {
    json: bool,
    rows: Vec<Value>,
}

impl Out {
    fn emit(&mut self, v: Value) {
        if self.json {
            println!("{v}");
        } else {
            let obj = v.as_object().map(|o| {
                o.iter().map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"'))).collect::<Vec<_>>().join("  ")
            });
            println!("{}", obj.unwrap_or_default());
        }
        self.rows.push(v);
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Times `f` on each pair; returns per-query microseconds.
fn time_each<T>(pairs: &[(u32, u32)], mut f: impl FnMut(u32, u32) -> T, out: &mut Vec<T>) -> Vec<f64> {
    let mut us = Vec::with_capacity(pairs.len());
    for &(s, t) in pairs {
        let t0 = Instant::now();
        let r = f(s, t);
        us.push(t0.elapsed().as_secs_f64() * 1e6);
        out.push(r);
    }
    us
}

fn query_row(out: &mut Out, graph: &str, method: &str, us: &mut [f64], baseline_p50: Option<f64>) -> f64 {
    let p50 = percentile(us, 0.5);
    let p99 = percentile(us, 0.99);
    let mut v = json!({"bench": "routing", "graph": graph, "measure": "query", "method": method, "queries": us.len(),
        "p50_us": (p50 * 100.0).round() / 100.0, "p99_us": (p99 * 100.0).round() / 100.0});
    if let Some(b) = baseline_p50 {
        v["speedup_vs_dijkstra_p50"] = json!((b / p50 * 10.0).round() / 10.0);
    }
    out.emit(v);
    p50
}

/// A synthetic city: a side x side grid, 80 m blocks, every tenth street an arterial (faster), some one-way
/// streets and some missing blocks, weights in ms.
fn synthetic_city(side: u32, seed: u64) -> (usize, Vec<(u32, u32, u32)>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let id = |r: u32, c: u32| r * side + c;
    let mut edges = Vec::with_capacity((side as usize) * (side as usize) * 4);
    for r in 0..side {
        for c in 0..side {
            for (dr, dc) in [(0u32, 1u32), (1, 0)] {
                let (r2, c2) = (r + dr, c + dc);
                if r2 >= side || c2 >= side {
                    continue;
                }
                let arterial = (dr == 0 && r % 10 == 0) || (dc == 0 && c % 10 == 0);
                if !arterial && rng.random_range(0..100) < 5 {
                    continue; // a missing block
                }
                let len = 80.0 * rng.random_range(0.8..1.2);
                let speed = if arterial { 3.0 } else { 1.6 };
                let ms = (len / speed * 1000.0) as u32;
                match rng.random_range(0..20) {
                    0 if !arterial => edges.push((id(r, c), id(r2, c2), ms)),
                    1 if !arterial => edges.push((id(r2, c2), id(r, c), ms)),
                    _ => {
                        edges.push((id(r, c), id(r2, c2), ms));
                        edges.push((id(r2, c2), id(r, c), ms));
                    }
                }
            }
        }
    }
    ((side * side) as usize, edges)
}

fn routing(a: RoutingArgs) -> anyhow::Result<()> {
    let mut out = Out { json: a.json, rows: Vec::new() };
    let t0 = Instant::now();
    let bytes = std::fs::read(&a.map).with_context(|| format!("cannot read {}", a.map.display()))?;
    let (mut map, summary) = MapGraph::from_osm(&bytes)?;
    let import_ms = t0.elapsed().as_secs_f64() * 1e3;
    let graph = a.map.file_stem().map_or("map".into(), |s| s.to_string_lossy().replace(".osm", ""));
    out.emit(json!({"bench": "routing", "graph": graph, "measure": "import", "nodes": summary.nodes,
        "edges": summary.edges, "km": (summary.length_km * 10.0).round() / 10.0, "import_ms": import_ms.round()}));

    let profile = Profile::default();
    let edges = map.weighted_edges(profile);
    let n = map.node_count();
    let t0 = Instant::now();
    let ch = ContractionHierarchy::build(n, &edges);
    let ours_prep_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut ig = fast_paths::InputGraph::new();
    for &(u, v, w) in &edges {
        ig.add_edge(u as usize, v as usize, w as usize);
    }
    ig.freeze();
    let t0 = Instant::now();
    let fg = fast_paths::prepare(&ig);
    let fp_prep_ms = t0.elapsed().as_secs_f64() * 1e3;
    out.emit(json!({"bench": "routing", "graph": graph, "measure": "preprocess", "method": "trundle_ch",
        "prep_ms": ours_prep_ms.round(), "shortcuts": ch.shortcuts, "memory_mb": (ch.memory_bytes() as f64 / 1e5).round() / 10.0}));
    out.emit(json!({"bench": "routing", "graph": graph, "measure": "preprocess", "method": "fast_paths",
        "prep_ms": fp_prep_ms.round()}));

    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let pairs: Vec<(u32, u32)> =
        (0..a.pairs).map(|_| (rng.random_range(0..n as u32), rng.random_range(0..n as u32))).collect();
    let dpairs = &pairs[..a.dijkstra_pairs.min(pairs.len())];

    // Baselines on the same pairs, same weights.
    let mut dj = Vec::new();
    let mut us_dj = time_each(dpairs, |s, t| map.dijkstra_ms(NodeId(s), NodeId(t), profile), &mut dj);
    let dj_p50 = query_row(&mut out, &graph, "petgraph_dijkstra", &mut us_dj, None);
    let mut astar = Vec::new();
    let mut us_astar =
        time_each(dpairs, |s, t| map.astar(NodeId(s), NodeId(t), profile).map(|r| r.nodes.len()), &mut astar);
    query_row(&mut out, &graph, "petgraph_astar", &mut us_astar, Some(dj_p50));
    let mut calc = fast_paths::create_calculator(&fg);
    let mut fp = Vec::new();
    let mut us_fp = time_each(
        &pairs,
        |s, t| calc.calc_path(&fg, s as usize, t as usize).map(|p| (p.get_weight() as u64, p.get_nodes().len())),
        &mut fp,
    );
    let fp_p50 = query_row(&mut out, &graph, "fast_paths", &mut us_fp, Some(dj_p50));
    let mut q = ChQuery::new(&ch);
    let mut ours = Vec::new();
    let mut us_ours = time_each(&pairs, |s, t| q.path(&ch, s, t).map(|(d, p)| (u64::from(d), p.len())), &mut ours);
    let ours_p50 = query_row(&mut out, &graph, "trundle_ch", &mut us_ours, Some(dj_p50));
    let t0 = Instant::now();
    let hl = fleet_core::routing::hl::HubLabels::build(&ch, 1 << 30).context("labels fit 1 GiB")?;
    let hl_prep_ms = t0.elapsed().as_secs_f64() * 1e3;
    out.emit(json!({"bench": "routing", "graph": graph, "measure": "preprocess", "method": "trundle_hub_labels",
        "prep_ms_on_top_of_ch": hl_prep_ms.round(), "memory_mb": (hl.memory_bytes() as f64 / 1e5).round() / 10.0,
        "mean_label_entries": (hl.mean_label() * 10.0).round() / 10.0}));
    let mut hl_res = Vec::new();
    let mut us_hl = time_each(&pairs, |s, t| hl.path(s, t).map(|(d, p)| (u64::from(d), p.len())), &mut hl_res);
    let hl_p50 = query_row(&mut out, &graph, "trundle_hub_labels", &mut us_hl, Some(dj_p50));
    let hl_mismatch = hl_res.iter().zip(&fp).filter(|(a, b)| a.map(|x| x.0) != b.map(|x| x.0)).count();
    let hl_mismatch_dj = hl_res.iter().zip(&dj).filter(|(a, b)| a.map(|x| x.0) != **b).count();
    let mut dist_only = Vec::new();
    let mut us_dist = time_each(&pairs, |s, t| q.distance(&ch, s, t), &mut dist_only);
    query_row(&mut out, &graph, "trundle_ch_distance_only", &mut us_dist, Some(dj_p50));
    let mean_path = ours.iter().flatten().map(|x| x.1).sum::<usize>() / ours.len().max(1);
    out.emit(json!({"bench": "routing", "graph": graph, "measure": "path_nodes_mean", "nodes": mean_path}));
    let (mut tf, mut tb) = (0usize, 0usize);
    for &(s, t) in pairs.iter().take(1000) {
        q.distance(&ch, s, t);
        let (f, b) = q.last_search_space();
        tf += f;
        tb += b;
    }
    out.emit(json!({"bench": "routing", "graph": graph, "measure": "search_space", "method": "trundle_ch",
        "touched_fwd_mean": tf / 1000, "touched_bwd_mean": tb / 1000}));
    // Whole rows: one sweep gives a node's times from (or to) every node. The insertion search sweeps them for
    // a new order's pickup and drop-off when the plans hold enough stops (`ROW_NODES_PER_STOP`): this is what
    // one sweep costs in point queries.
    let t0 = Instant::now();
    for &(s, t) in &pairs {
        std::hint::black_box(hl.distance(s, t));
    }
    let distance_ns = t0.elapsed().as_secs_f64() * 1e9 / pairs.len().max(1) as f64;
    let (mut sweep_us, mut row_mismatch) = (Vec::new(), 0);
    for (k, &(s, _)) in pairs.iter().take(100).enumerate() {
        let t0 = Instant::now();
        let row = std::hint::black_box(if k % 2 == 0 { ch.from_one(s) } else { ch.to_one(s) });
        sweep_us.push(t0.elapsed().as_secs_f64() * 1e6);
        for &(_, t) in pairs.iter().skip(k * 50).take(50) {
            let want = if k % 2 == 0 { hl.distance(s, t) } else { hl.distance(t, s) };
            row_mismatch += usize::from(row[t as usize] != want.unwrap_or(fleet_core::routing::ch::INF));
        }
    }
    let sweep_p50 = percentile(&mut sweep_us, 0.5);
    out.emit(json!({"bench": "routing", "graph": graph, "measure": "row_sweep", "sweeps": sweep_us.len(),
        "p50_us": (sweep_p50 * 10.0).round() / 10.0, "p99_us": (percentile(&mut sweep_us, 0.99) * 10.0).round() / 10.0,
        "hub_label_distance_ns": distance_ns.round(), "sweep_in_distance_queries": (sweep_p50 * 1e3 / distance_ns).round(),
        "mismatches_vs_hub_labels": row_mismatch}));
    let mismatch_fp = ours.iter().zip(&fp).filter(|(a, b)| a.map(|x| x.0) != b.map(|x| x.0)).count();
    let mismatch_dj = ours.iter().zip(&dj).filter(|(a, b)| a.map(|x| x.0) != **b).count();
    out.emit(json!({"bench": "routing", "graph": graph, "measure": "exactness", "pairs_vs_fast_paths": pairs.len(),
        "mismatches_vs_fast_paths": mismatch_fp, "pairs_vs_dijkstra": dpairs.len(), "mismatches_vs_dijkstra": mismatch_dj,
        "p50_ratio_vs_fast_paths": (ours_p50 / fp_p50 * 100.0).round() / 100.0,
        "hub_labels_mismatches_vs_fast_paths": hl_mismatch, "hub_labels_mismatches_vs_dijkstra": hl_mismatch_dj}));

    // Closures: close 20 random edges on the map, then route through the map (CH with A* fallback).
    map.prepare(profile);
    let mut closed = 0;
    while closed < 20 {
        let (s, t) = (rng.random_range(0..n as u32), rng.random_range(0..n as u32));
        if let Some(r) = map.route(NodeId(s), NodeId(t), profile)
            && r.nodes.len() > 3
        {
            let m = r.nodes.len() / 2;
            if map.close_edge(r.nodes[m], r.nodes[m + 1]) {
                closed += 1;
            }
        }
    }
    let mut got = Vec::new();
    let mut us_closed = time_each(
        dpairs,
        |s, t| map.route(NodeId(s), NodeId(t), profile).map(|r| (r.duration_s * 1000.0).round() as u64),
        &mut got,
    );
    let mut want = Vec::new();
    time_each(dpairs, |s, t| map.dijkstra_ms(NodeId(s), NodeId(t), profile), &mut want);
    let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    let p50 = percentile(&mut us_closed, 0.5);
    out.emit(json!({"bench": "routing", "graph": graph, "measure": "closures", "closed_edges": closed,
        "queries": dpairs.len(), "mismatches_vs_dijkstra": bad, "p50_us": (p50 * 100.0).round() / 100.0,
        "p99_us": (percentile(&mut us_closed, 0.99) * 100.0).round() / 100.0}));

    // Many-to-many tables.
    for k in [100usize, 1000] {
        let ids: Vec<u32> = (0..2 * k).map(|_| rng.random_range(0..n as u32)).collect();
        let (src, dst) = ids.split_at(k);
        let mut times = Vec::new();
        let mut table = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            table = q.table(&ch, src, dst);
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let check = (0..k.min(20)).all(|i| Some(table[i * k + i]) == q.distance(&ch, src[i], dst[i]).or(Some(INF)));
        out.emit(json!({"bench": "routing", "graph": graph, "measure": "table", "size": format!("{k}x{k}"),
            "p50_ms": (percentile(&mut times, 0.5) * 100.0).round() / 100.0, "spot_checks_equal": check}));
    }

    // The synthetic city: how cost grows.
    if a.synthetic_side > 0 {
        let (sn, sedges) = synthetic_city(a.synthetic_side, a.seed);
        let t0 = Instant::now();
        let sch = ContractionHierarchy::build(sn, &sedges);
        let prep_s = t0.elapsed().as_secs_f64();
        let mut sq = ChQuery::new(&sch);
        let spairs: Vec<(u32, u32)> =
            (0..1000).map(|_| (rng.random_range(0..sn as u32), rng.random_range(0..sn as u32))).collect();
        let mut res = Vec::new();
        let mut us = time_each(&spairs, |s, t| sq.path(&sch, s, t).map(|(d, _)| d), &mut res);
        let check: Vec<(u32, u32)> = spairs[..10].to_vec();
        let mut dres = Vec::new();
        let mut dus = time_each(&check, |s, t| fleet_core::routing::ch::dijkstra(sn, &sedges, s, t), &mut dres);
        let exact = res[..10].iter().zip(&dres).all(|(a, b)| a == b);
        out.emit(json!({"bench": "routing", "graph": format!("synthetic_{}x{}", a.synthetic_side, a.synthetic_side),
            "measure": "synthetic", "nodes": sn, "edges": sedges.len(), "prep_s": (prep_s * 10.0).round() / 10.0,
            "shortcuts": sch.shortcuts, "query_p50_us": (percentile(&mut us, 0.5) * 10.0).round() / 10.0,
            "query_p99_us": (percentile(&mut us, 0.99) * 10.0).round() / 10.0,
            "dijkstra_p50_ms": (percentile(&mut dus, 0.5) / 100.0).round() / 10.0, "exact_on_10_dijkstra_pairs": exact}));
    }
    out.emit(json!({"bench": "routing", "measure": "summary", "graph": graph,
        "trundle_p50_us": (hl_p50 * 100.0).round() / 100.0, "trundle_ch_p50_us": (ours_p50 * 100.0).round() / 100.0,
        "fast_paths_p50_us": (fp_p50 * 100.0).round() / 100.0,
        "dijkstra_p50_us": (dj_p50 * 10.0).round() / 10.0, "speedup_vs_dijkstra": (dj_p50 / hl_p50).round(),
        "ratio_vs_fast_paths": (hl_p50 / fp_p50 * 100.0).round() / 100.0, "peak_rss_mb": peak_rss_mb().round(),
        "machine": machine()}));
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cpu}, {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()))
}

fn insertion(a: InsertionArgs) -> anyhow::Result<()> {
    use fleet_core::dispatcher::{Config, Dispatcher, Input, Output, Reply};
    use fleet_core::mission::{FromRobot, Hello};
    use fleet_core::order::{DeliveryRequest, Parcel};
    use fleet_core::robot::RobotModel;
    use fleet_core::{Grams, RobotId, ShopId, Timestamp};

    let mut out = Out { json: a.json, rows: Vec::new() };
    let bytes = std::fs::read(&a.map).with_context(|| format!("cannot read {}", a.map.display()))?;
    let (map, _) = MapGraph::from_osm(&bytes)?;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let n = map.node_count() as u32;
    let centre = map.origin();
    let near = |rng: &mut ChaCha8Rng, radius: f64| loop {
        let p = map.pos(NodeId(rng.random_range(0..n))).expect("node in range");
        if p.distance_m(centre) < radius {
            break p;
        }
    };
    let shops: Vec<_> = (0..10).map(|_| near(&mut rng, 1_000.0)).collect();
    let robots: Vec<_> = (0..a.robots).map(|_| near(&mut rng, 1_500.0)).collect();
    let customers: Vec<_> = (0..a.orders + 2 * a.samples).map(|_| near(&mut rng, 1_500.0)).collect();
    let now = Timestamp(1_780_653_600_000);
    let t0 = Instant::now();
    let mut d = Dispatcher::new(map.clone(), Config::default());
    let prep_ms = t0.elapsed().as_secs_f64() * 1e3;
    for (i, p) in shops.iter().enumerate() {
        d.handle(now, Input::RegisterShop { id: ShopId::parse(&format!("s{i}"))?, name: String::new(), pos: *p });
    }
    for (i, p) in robots.iter().enumerate() {
        let id = RobotId::parse(&format!("r{i}"))?;
        d.handle(now, Input::RegisterRobot { id: id.clone(), name: String::new(), depot: *p });
        let hello =
            Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
        d.handle(now, Input::Robot { robot: id, msg: FromRobot::Hello(hello) });
    }
    let request = |k: usize| -> anyhow::Result<DeliveryRequest> {
        Ok(DeliveryRequest {
            dropoff: customers[k],
            parcel: Parcel::new(Grams(1_000), 1)?,
            ready_at: None,
            deliver_by: now.plus_secs(4.0 * 3600.0),
        })
    };
    let placed_ok = |outs: &[Output]| outs.iter().any(|o| matches!(o, Output::Reply(Ok(Reply::Placed { .. }))));
    let mut placed = 0;
    for k in 0..a.orders {
        let shop = ShopId::parse(&format!("s{}", k % shops.len()))?;
        let outs = d.handle(
            now,
            Input::PlaceOrder {
                shop,
                idempotency_key: format!("k{k}"),
                request: request(k)?,
                pin: "1234".into(),
                link_hash: None,
            },
        );
        placed += usize::from(placed_ok(&outs));
    }
    let mut quote_us = Vec::new();
    for k in 0..a.samples {
        let shop = ShopId::parse(&format!("s{}", k % shops.len()))?;
        let req = request(a.orders + k)?;
        let t0 = Instant::now();
        let outs = d.handle(now, Input::Quote { shop, request: req });
        quote_us.push(t0.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(outs);
    }
    // Placements grow the plans; measure a window of them on top of the open orders.
    let mut place_us = Vec::new();
    let extra = a.samples.min(100);
    for k in 0..extra {
        let shop = ShopId::parse(&format!("s{}", k % shops.len()))?;
        let req = request(a.orders + a.samples + k)?;
        let t0 = Instant::now();
        let outs = d.handle(
            now,
            Input::PlaceOrder {
                shop,
                idempotency_key: format!("x{k}"),
                request: req,
                pin: "1234".into(),
                link_hash: None,
            },
        );
        place_us.push(t0.elapsed().as_secs_f64() * 1e6);
        placed += usize::from(placed_ok(&outs));
    }
    let round = |v: f64| (v * 10.0).round() / 10.0;
    out.emit(json!({"bench": "insertion", "measure": "quote", "robots": a.robots, "open_orders_before": a.orders,
        "orders_placed": placed, "samples": quote_us.len(), "p50_us": round(percentile(&mut quote_us, 0.5)),
        "p99_us": round(percentile(&mut quote_us, 0.99)), "max_us": round(percentile(&mut quote_us, 1.0))}));
    out.emit(json!({"bench": "insertion", "measure": "place", "robots": a.robots, "samples": place_us.len(),
        "p50_us": round(percentile(&mut place_us, 0.5)), "p99_us": round(percentile(&mut place_us, 0.99)),
        "max_us": round(percentile(&mut place_us, 1.0))}));
    // The bounded search against trying every robot: same answers, and how much faster.
    {
        use fleet_core::planner::insertion::{
            Outline, Task, TravelTable, cheapest_insertion, cheapest_insertion_bounded,
        };
        use fleet_core::robot::StopKind;
        let snap = d.plan_snapshot(now);
        // The dispatcher's table knows the plans' own legs; each search starts from that, as a new order's
        // drop-off is a node no table has seen.
        let mut base = TravelTable::default();
        for p in &snap.plans {
            fleet_core::planner::insertion::schedule(&snap.map, &mut base, p, &p.tasks);
        }
        // And the shops' rows, as the dispatcher keeps them after a shop's first order.
        if let Some(profile) = snap.plans.first().map(|p| p.profile) {
            for &shop in &shops {
                if let Ok(s) = map.snap(shop, 150.0) {
                    base.rows_for(&snap.map, &[s.node], profile);
                }
            }
            base.end_rows();
        }
        let nodes: Vec<Vec<fleet_core::NodeId>> =
            snap.plans.iter().map(|p| p.tasks.iter().map(|t| t.node).collect()).collect();
        let rooms: Vec<Vec<u8>> = snap.plans.iter().map(fleet_core::planner::insertion::plan_room).collect();
        let outlines: Vec<Outline> = snap
            .plans
            .iter()
            .zip(&nodes)
            .zip(&rooms)
            .map(|((p, n), room)| Outline { room: Some(room), ..Outline::of(p, n) })
            .collect();
        let (mut same, mut compared, mut tried, mut bounded_us, mut full_us) = (0usize, 0usize, 0usize, vec![], vec![]);
        for k in 0..a.samples.min(300) {
            let (Ok(p), Ok(q)) = (map.snap(shops[k % shops.len()], 150.0), map.snap(customers[k], 150.0)) else {
                continue;
            };
            let task = |kind, node| Task {
                kind,
                order: fleet_core::OrderId::parse("probe").expect("a constant valid id"),
                node,
                not_before: now,
                deadline: (kind == StopKind::Dropoff).then(|| now.plus_secs(4.0 * 3600.0)),
                compartments: 1,
                grams: 1_000,
                service_s: 60.0,
            };
            let (pt, dt) = (task(StopKind::Pickup, p.node), task(StopKind::Dropoff, q.node));
            // Both build the plans they try, as the dispatcher does.
            let mut table = base.clone();
            let t0 = Instant::now();
            let bounded =
                cheapest_insertion_bounded(&snap.map, &mut table, &outlines, |k| snap.plans[k].clone(), &pt, &dt);
            bounded_us.push(t0.elapsed().as_secs_f64() * 1e6);
            let mut table = base.clone();
            let t0 = Instant::now();
            let full = cheapest_insertion(&snap.map, &mut table, &snap.plans, &pt, &dt);
            full_us.push(t0.elapsed().as_secs_f64() * 1e6);
            compared += 1;
            tried += bounded.tried;
            let key = |i: &fleet_core::planner::insertion::Insertion| {
                (i.robot.clone(), i.pickup_at, i.dropoff_at, i.eta_dropoff)
            };
            if bounded.best.as_ref().map(key) == full.as_ref().map(key) {
                same += 1;
            }
        }
        let round = |v: f64| (v * 10.0).round() / 10.0;
        out.emit(json!({"bench": "insertion", "measure": "bounded_vs_all", "robots": a.robots,
            "compared": compared, "same_answer_pct": round(100.0 * same as f64 / compared.max(1) as f64),
            "robots_tried_mean": round(tried as f64 / compared.max(1) as f64),
            "bounded_p50_us": round(percentile(&mut bounded_us, 0.5)), "all_p50_us": round(percentile(&mut full_us, 0.5))}));
    }
    // Background improvement rounds on these plans: what the core pays (snapshot, validating and applying the
    // proposal) and what the search, off the core, finds in its budget.
    let (mut snap_us, mut apply_us, mut saved_s, mut iters, mut applied) = (Vec::new(), Vec::new(), 0.0, 0u64, 0);
    let travel_of = |d: &Dispatcher| {
        let snap = d.plan_snapshot(now);
        let mut table = fleet_core::planner::insertion::TravelTable::default();
        snap.plans
            .iter()
            .filter_map(|p| fleet_core::planner::insertion::schedule(&snap.map, &mut table, p, &p.tasks))
            .map(|s| s.travel_s)
            .sum::<f64>()
    };
    let travel_start = travel_of(&d);
    for round in 0..a.improve_rounds {
        let t0 = Instant::now();
        let snap = d.plan_snapshot(now);
        snap_us.push(t0.elapsed().as_secs_f64() * 1e6);
        let params = fleet_core::planner::improve::ImproveParams { seed: a.seed + round as u64, ..Default::default() };
        let budget = a.improve_ms as f64 / 1e3;
        let t0 = Instant::now();
        let found = fleet_core::planner::improve::improve(&snap, &params, &mut |_| t0.elapsed().as_secs_f64() / budget);
        drop(snap);
        let Some(p) = found else { continue };
        iters += p.iterations;
        let gain = p.travel_before_s - p.travel_after_s;
        let t0 = Instant::now();
        let outs = d.handle(now, Input::ProposePlans(Box::new(p)));
        apply_us.push(t0.elapsed().as_secs_f64() * 1e6);
        if outs.iter().any(|o| matches!(o, Output::Reply(Ok(_)))) {
            applied += 1;
            saved_s += gain;
        }
    }
    let travel_end = travel_of(&d);
    out.emit(json!({"bench": "insertion", "measure": "improve", "robots": a.robots, "rounds": a.improve_rounds,
        "budget_ms": a.improve_ms, "applied": applied, "iterations": iters,
        "planned_travel_before_s": travel_start.round(), "planned_travel_after_s": travel_end.round(),
        "saved_pct": round(100.0 * (travel_start - travel_end) / travel_start.max(1.0)),
        "claimed_saving_s": saved_s.round(),
        "snapshot_p50_us": round(percentile(&mut snap_us, 0.5)), "snapshot_max_us": round(percentile(&mut snap_us, 1.0)),
        "apply_p50_us": round(percentile(&mut apply_us, 0.5)), "apply_max_us": round(percentile(&mut apply_us, 1.0))}));
    out.emit(json!({"bench": "insertion", "measure": "summary", "dispatcher_setup_ms": prep_ms.round(),
        "quote_p99_us": round(percentile(&mut quote_us, 0.99)), "place_p99_us": round(percentile(&mut place_us, 0.99)),
        "machine": machine()}));
    Ok(())
}

fn read_bks(dir: &std::path::Path) -> anyhow::Result<std::collections::BTreeMap<String, (usize, f64)>> {
    let path = [dir.join("bks.csv"), dir.join("../bks.csv")]
        .into_iter()
        .find(|p| p.exists())
        .with_context(|| format!("no bks.csv in {} or its parent", dir.display()))?;
    let mut out = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(&path)?.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() >= 3 {
            out.insert(f[0].to_lowercase(), (f[1].parse()?, f[2].parse()?));
        }
    }
    Ok(out)
}

fn solver_bench(a: SolverArgs, solomon: bool) -> anyhow::Result<()> {
    use fleet_core::planner::pdptw::{Instance, check::check, solve};
    if !a.dir.exists() {
        anyhow::bail!(
            "{} does not exist: the benchmark instances live in the shared data folder (../shared/data), which a fresh clone does not have",
            a.dir.display()
        );
    }
    let bks = read_bks(&a.dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&a.dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .filter(|p| a.only.as_deref().is_none_or(|o| p.to_string_lossy().contains(o)))
        .collect();
    files.sort();
    let mut out = Out { json: a.json, rows: Vec::new() };
    let bench = if solomon { "solomon" } else { "lilim" };
    let (mut vehicles, mut bks_vehicles, mut gaps, mut feasible, mut same_fleet) = (0, 0, Vec::new(), 0, 0);
    let mut gaps_same_fleet = Vec::new();
    for f in &files {
        let name = f.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
        let text = std::fs::read_to_string(f)?;
        let inst = if solomon { Instance::parse_solomon(&name, &text)? } else { Instance::parse_lilim(&name, &text)? };
        let t0 = Instant::now();
        let budget = a.seconds;
        let sol = solve::solve(
            &inst,
            solve::Params { seed: a.seed, fleet_share: a.fleet_share, ..Default::default() },
            &mut |_| t0.elapsed().as_secs_f64() / budget,
        );
        let secs = t0.elapsed().as_secs_f64();
        let (bv, bd) = bks.get(&name).copied().unwrap_or((0, f64::NAN));
        let row = match sol.as_ref().map(|s| check(&inst, s)) {
            Some(Ok(cost)) => {
                feasible += 1;
                vehicles += cost.vehicles;
                bks_vehicles += bv;
                let dist = (cost.distance * 100.0).round() / 100.0;
                let gap = (dist - bd) / bd * 100.0;
                gaps.push(gap);
                if cost.vehicles == bv {
                    same_fleet += 1;
                    gaps_same_fleet.push(gap);
                }
                json!({"bench": bench, "instance": name, "vehicles": cost.vehicles, "distance": dist,
                    "bks_vehicles": bv, "bks_distance": bd, "gap_pct": (gap * 100.0).round() / 100.0,
                    "seconds": (secs * 100.0).round() / 100.0, "feasible": true})
            }
            Some(Err(why)) => json!({"bench": bench, "instance": name, "feasible": false, "error": why}),
            None => json!({"bench": bench, "instance": name, "feasible": false, "error": "no solution with the fleet"}),
        };
        out.emit(row);
    }
    let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    out.emit(json!({"bench": bench, "measure": "summary", "instances": files.len(), "feasible": feasible,
        "vehicles": vehicles, "bks_vehicles": bks_vehicles, "mean_gap_pct": (mean(&gaps) * 100.0).round() / 100.0,
        "instances_with_bks_fleet": same_fleet, "mean_gap_pct_where_fleet_equals_bks": (mean(&gaps_same_fleet) * 100.0).round() / 100.0,
        "seconds_per_instance": a.seconds, "seed": a.seed, "fleet_share": a.fleet_share, "machine": machine()}));
    Ok(())
}

fn sim_bench(a: SimArgs) -> anyhow::Result<()> {
    if !(a.hours.is_finite() && a.hours > 0.0 && a.hours <= 24.0) {
        anyhow::bail!("--hours must be in (0, 24]");
    }
    let mut out = Out { json: a.json, rows: Vec::new() };
    let bytes = std::fs::read(&a.map).with_context(|| format!("cannot read {}", a.map.display()))?;
    let (map, _) = MapGraph::from_osm(&bytes)?;
    let sim_s = (a.hours * 3600.0).round() as u64;
    let mut rtfs = Vec::new();
    for &robots in &a.robots {
        let scenario = sim::Scenario {
            seed: a.seed,
            robots,
            // Ten robots a shop, at least five shops and at most a hundred.
            shops: (robots / 10).clamp(5, 100),
            orders_per_hour: a.orders_per_robot_hour * robots as f64,
            duration_s: sim_s,
            pedestrians: a.pedestrians,
            physics_hz: a.physics_hz,
            dispatch: fleet_core::dispatcher::Config { tick_every_s: a.tick_every_s, ..Default::default() },
            // The hours asked for, under load: no drain after the day (a scenario's default waits up to an
            // hour more for the last orders, a quieter stretch that would flatter the figure).
            drain_s: 0,
            ..sim::Scenario::default()
        };
        let m = map.clone();
        let t0 = Instant::now();
        let r = sim::run(m, &scenario)?;
        let wall = t0.elapsed().as_secs_f64();
        // Simulated time is what the physics stepped through.
        let simulated_s = r.physics_steps as f64 / f64::from(a.physics_hz);
        let rtf = simulated_s / wall;
        rtfs.push(json!({"robots": robots, "rtf": rtf.round()}));
        out.emit(json!({"bench": "sim", "robots": robots, "pedestrians": a.pedestrians, "shops": scenario.shops,
            "sim_s": simulated_s.round(), "wall_s": (wall * 100.0).round() / 100.0, "rtf": (rtf * 10.0).round() / 10.0,
            "steps": r.physics_steps, "physics_hz": a.physics_hz,
            "us_per_step": (wall / r.physics_steps.max(1) as f64 * 1e7).round() / 10.0,
            "placed": r.placed, "delivered": r.delivered, "collisions": r.collisions.total(),
            "robot_robot": r.collisions.robot_robot, "robot_pedestrian": r.collisions.robot_pedestrian,
            "near_misses": r.near_misses, "blocked": r.blocked_events, "sidesteps": r.sidesteps,
            "distance_km": (r.distance_km * 10.0).round() / 10.0,
            "people_out": r.crowd.mean_out.round(), "people_in_physics": r.crowd.mean_in_physics.round(),
            "robot_at_fault": r.contact_faults.robot_at_fault, "robot_at_fault_robot": r.contact_faults.robot_at_fault_robot,
            "struck_while_stopped": r.contact_faults.struck_while_stopped,
            "other_at_fault": r.contact_faults.other_at_fault}));
    }
    out.emit(json!({"bench": "sim", "measure": "summary", "hours": a.hours, "pedestrians": a.pedestrians,
        "physics_hz": a.physics_hz, "rtf_by_robots": rtfs, "peak_rss_mb": peak_rss_mb().round(), "machine": machine()}));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Routing(a) => routing(a),
        Cmd::Insertion(a) => insertion(a),
        Cmd::Lilim(a) => solver_bench(a, false),
        Cmd::Solomon(a) => solver_bench(a, true),
        Cmd::Sim(a) => sim_bench(a),
        Cmd::Load(a) if a.areas >= 2 => areas_load_bench(a),
        Cmd::Load(a) => load_bench(a),
        Cmd::Traffic(a) => traffic::traffic_bench(a),
        Cmd::Store(a) => store_bench(a),
        Cmd::Failover(a) => failover::failover_bench(a),
    }
}

/// Starts a dispatcher on a temp dir on its own runtime (as a separate process would have), then drives the
/// load from another runtime.
fn load_bench(a: LoadArgs) -> anyhow::Result<()> {
    let mut out = Out { json: a.json, rows: Vec::new() };
    let bytes = std::fs::read(&a.map).with_context(|| format!("cannot read {}", a.map.display()))?;
    let (map, _) = MapGraph::from_osm(&bytes)?;
    let dir = tempfile::tempdir()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.server_threads.max(1))
        .thread_name("server")
        .enable_all()
        .build()?;
    let mut opts = dispatcher::Options::new(dir.path(), map.clone());
    // Each of the 20 shops places 10 orders a second at 200/s, more than the default cap of open orders.
    opts.config.max_open_orders_per_shop = usize::MAX;
    opts.improver.enabled = !a.no_improve;
    let http = if a.dashboards > 0 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        opts.http = Some(server_rt.block_on(async { tokio::net::TcpListener::from_std(l) })?);
        Some(addr)
    } else {
        None
    };
    let mut prepared = dispatcher::open(opts)?;
    let core = prepared.core_handle();
    let token = std::fs::read_to_string(dispatcher::server::operator_token_path(dir.path()))?.trim().to_owned();
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(prepared.serve(listener, async {
        let _ = stop_rx.await;
    }));
    let load_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let cfg = load_config(&a);
    let endpoint = format!("http://{addr}");
    let (dash_stop, dash_rx) = tokio::sync::watch::channel(false);
    let dashboards: Vec<_> = http
        .into_iter()
        .flat_map(|web| std::iter::repeat_n(web, a.dashboards))
        .map(|web| load_rt.spawn(dashboards::watch(web, token.clone(), dash_rx.clone())))
        .collect();
    let target = load::Target {
        ops_endpoint: endpoint.clone(),
        operator_token: token.clone(),
        shop_endpoint: endpoint.clone(),
        robot_endpoint: endpoint,
        area: None,
        prefix: "load-".into(),
    };
    let report = load_rt.block_on(load::run(Arc::new(map), &[target], &cfg)).map_err(anyhow::Error::msg)?;
    let _ = dash_stop.send(true);
    let seen: Vec<dashboards::Seen> = load_rt
        .block_on(async {
            let mut v = Vec::new();
            for d in dashboards {
                v.push(d.await.map_err(|e| e.to_string()).and_then(|r| r));
            }
            v
        })
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    // Where the core thread's time went, read before the server stops.
    let stats = server_rt.block_on(async { core.await.ok()?.stats().await.ok() });
    let _ = stop_tx.send(());
    let _ = server_rt.block_on(server);
    emit_load(&mut out, &a, &report);
    let r2 = |v: f64| (v * 100.0).round() / 100.0;
    if !seen.is_empty() {
        let mut rates: Vec<f64> = seen.iter().map(dashboards::Seen::rate_hz).collect();
        rates.sort_by(f64::total_cmp);
        let events: u64 = seen.iter().map(|s| s.events).sum();
        let bytes: u64 = seen.iter().map(|s| s.bytes).sum();
        out.emit(json!({"bench": "load", "measure": "dashboards", "dashboards": seen.len(),
            "rate_hz_min": r2(rates[0]), "rate_hz_median": r2(rates[rates.len() / 2]),
            "max_gap_s": r2(seen.iter().map(|s| s.max_gap_s).fold(0.0, f64::max)),
            "events": events, "kib_per_event": r2(bytes as f64 / 1024.0 / events.max(1) as f64)}));
    }
    if let Some(st) = stats {
        emit_core(&mut out, "", &st);
    }
    Ok(())
}

/// Where a core thread's time went (`area` empty for the one dispatcher).
fn emit_core(out: &mut Out, area: &str, st: &dispatcher::stats::CoreStats) {
    let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
    let mut phases: Vec<(String, &dispatcher::stats::Histogram)> =
        vec![("queued".into(), &st.queued), ("write".into(), &st.write), ("tick".into(), &st.tick)];
    phases.extend(st.handle.iter().map(|(k, h)| (format!("handle {k}"), h)));
    for (phase, h) in phases {
        out.emit(json!({"bench": "load", "area": area, "core": phase, "count": h.count,
            "p50_ms": ms(h.quantile_us(0.5)), "p99_ms": ms(h.quantile_us(0.99)), "max_ms": ms(h.max_us)}));
    }
    out.emit(json!({"bench": "load", "area": area, "core": "group size", "count": st.group.count,
        "p50": st.group.quantile_us(0.5), "p99": st.group.quantile_us(0.99), "max": st.group.max_us}));
}

fn load_config(a: &LoadArgs) -> load::LoadConfig {
    load::LoadConfig {
        robots: a.robots,
        shops: a.shops,
        orders_per_s: a.orders_per_sec,
        seconds: a.seconds,
        watch_every: a.watch_every,
        seed: a.seed,
    }
}

/// The load run's rows: each RPC's latencies, then the summary.
fn emit_load(out: &mut Out, a: &LoadArgs, report: &load::LoadReport) {
    let r2 = |v: f64| (v * 100.0).round() / 100.0;
    for (rpc, l) in &report.latencies {
        out.emit(json!({"bench": "load", "rpc": rpc, "calls": l.0.len(), "p50_ms": r2(l.percentile(0.5)),
            "p99_ms": r2(l.percentile(0.99)), "max_ms": r2(l.percentile(1.0))}));
    }
    let errors: usize = report.errors.values().sum();
    let areas = a.areas.max(1);
    out.emit(json!({"bench": "load", "measure": "summary", "areas": areas, "robots": a.robots * areas,
        "sessions_up": report.sessions_up, "orders_per_s": a.orders_per_sec * areas as f64, "seconds": a.seconds,
        "placed": report.placed, "delivered": report.delivered, "refused": report.refused,
        "refused_by_reason": format!("{:?}", report.refused_by_reason),
        "errors": errors, "errors_by_rpc": format!("{:?}", report.errors), "lost": report.lost,
        "state_reports": report.state_reports, "wall_s": r2(report.wall_s), "improver": !a.no_improve,
        "place_p99_ms": r2(report.latencies.get("PlaceOrder").map_or(f64::NAN, |l| l.percentile(0.99))),
        "machine": machine()}));
}

/// Bands of latitude over the map's nodes, each holding about as many nodes, as service areas `area-0`... (south
/// to north).
fn latitude_bands(map: &MapGraph, n: usize) -> anyhow::Result<Vec<fleet_core::area::ServiceArea>> {
    let mut lats: Vec<f64> =
        (0..map.node_count() as u32).filter_map(|i| map.pos(fleet_core::NodeId(i))).map(|p| p.lat()).collect();
    let mut lons: Vec<f64> =
        (0..map.node_count() as u32).filter_map(|i| map.pos(fleet_core::NodeId(i))).map(|p| p.lon()).collect();
    anyhow::ensure!(!lats.is_empty(), "the map has no nodes");
    lats.sort_by(f64::total_cmp);
    lons.sort_by(f64::total_cmp);
    let (west, east) = (lons[0] - 0.01, lons[lons.len() - 1] + 0.01);
    let cut = |k: usize| match k {
        0 => lats[0] - 0.01,
        k if k == n => lats[lats.len() - 1] + 0.01,
        k => lats[lats.len() * k / n],
    };
    (0..n)
        .map(|k| {
            let (south, north) = (cut(k), cut(k + 1));
            let corners = [(south, west), (south, east), (north, east), (north, west)];
            let outline = corners.iter().map(|&(lat, lon)| LatLon::new(lat, lon)).collect::<Result<Vec<_>, _>>()?;
            Ok(fleet_core::area::ServiceArea::new(&format!("area-{k}"), outline)?)
        })
        .collect()
}

/// The load over several service areas: a local 3-member etcd cluster, one in-process dispatcher leading each
/// area (its own core and store connection, on one server runtime), an in-process router; shops place through
/// the router and robots are sent on by it to their area's leader.
fn areas_load_bench(a: LoadArgs) -> anyhow::Result<()> {
    let mut out = Out { json: a.json, rows: Vec::new() };
    let bytes = std::fs::read(&a.map).with_context(|| format!("cannot read {}", a.map.display()))?;
    let (map, _) = MapGraph::from_osm(&bytes)?;
    let dir = tempfile::tempdir()?;
    let cluster = dispatcher::etcd::LocalCluster::start(3, &dir.path().join("etcd"))
        .map_err(|e| anyhow::anyhow!("no etcd for service areas: {e}"))?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.server_threads.max(1))
        .thread_name("server")
        .enable_all()
        .build()?;
    let mut targets = Vec::new();
    let mut servers = Vec::new();
    let mut cores = Vec::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let router_listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let router_at = format!("http://{}", router_listener.local_addr()?);
    for area in latitude_bands(&map, a.areas)? {
        let data = dir.path().join(&area.name);
        let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let mut opts = dispatcher::Options::new(&data, map.clone());
        opts.config.max_open_orders_per_shop = usize::MAX;
        opts.config.service_area = Some(area.clone());
        opts.improver.enabled = !a.no_improve;
        // The cluster may still be electing its own leader: campaigning waits for it.
        opts.etcd = Some(dispatcher::etcd::EtcdConfig::parse(&cluster.url(), &area.name)?);
        opts.advertise = Some(addr.to_string());
        let mut prepared = dispatcher::open(opts)?;
        cores.push((area.name.clone(), prepared.core_handle()));
        let token = std::fs::read_to_string(dispatcher::server::operator_token_path(&data))?.trim().to_owned();
        let mut stop = stop_rx.clone();
        servers.push(server_rt.spawn(prepared.serve(listener, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
        targets.push(load::Target {
            ops_endpoint: format!("http://{addr}"),
            operator_token: token,
            shop_endpoint: router_at.clone(),
            robot_endpoint: router_at.clone(),
            area: Some(area.clone()),
            prefix: format!("{}-", area.name),
        });
    }
    let router = server_rt.block_on(async { dispatcher::router::Router::new(&cluster.clients) })?;
    let mut stop = stop_rx.clone();
    let router_task = server_rt.spawn(dispatcher::router::serve(router, router_listener, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    let load_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let cfg = load_config(&a);
    let report = load_rt.block_on(load::run(Arc::new(map), &targets, &cfg)).map_err(anyhow::Error::msg)?;
    let stats: Vec<_> = cores
        .into_iter()
        .map(|(area, c)| (area, server_rt.block_on(async { c.await.ok()?.stats().await.ok() })))
        .collect();
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = server_rt.block_on(s);
    }
    let _ = server_rt.block_on(router_task);
    emit_load(&mut out, &a, &report);
    for (area, st) in stats {
        if let Some(st) = st {
            emit_core(&mut out, &area, &st);
        }
    }
    drop(cluster);
    Ok(())
}

/// Commit latency, sled and etcd, at each rate, interleaved over rounds.
fn store_bench(a: StoreArgs) -> anyhow::Result<()> {
    let mut out = Out { json: a.json, rows: Vec::new() };
    let dir = tempfile::tempdir()?;
    let _cluster;
    let url = match &a.etcd {
        Some(u) => u.clone(),
        None => {
            let c = dispatcher::etcd::LocalCluster::start(3, &dir.path().join("etcd"))
                .map_err(|e| anyhow::anyhow!("no etcd to measure: {e}; pass --etcd etcd://HOST:PORT"))?;
            let u = c.url();
            _cluster = c;
            u
        }
    };
    let r2 = |v: f64| (v * 100.0).round() / 100.0;
    let pct = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN)
    };
    for round in 0..a.rounds.max(1) {
        for &rate in &a.rates {
            for backend in ["sled", "etcd"] {
                let store: Box<dyn dispatcher::store::Store> = match backend {
                    "sled" => {
                        Box::new(dispatcher::store::SledStore::open(&dir.path().join(format!("sled-{round}-{rate}")))?)
                    }
                    _ => {
                        let cfg = dispatcher::etcd::EtcdConfig::parse(&url, &format!("bench-{round}-{rate}"))?;
                        Box::new(dispatcher::etcd::EtcdStore::lead(cfg, "bench")?)
                    }
                };
                let (mut lat, groups) = store::run(store.as_ref(), rate, a.seconds).map_err(anyhow::Error::msg)?;
                let mean_group = groups.iter().sum::<usize>() as f64 / groups.len().max(1) as f64;
                out.emit(json!({"bench": "store", "backend": backend, "round": round, "rate": rate,
                    "commits": lat.len(), "p50_ms": r2(pct(&mut lat, 0.5)), "p99_ms": r2(pct(&mut lat, 0.99)),
                    "max_ms": r2(pct(&mut lat, 1.0)), "groups": groups.len(), "mean_group": r2(mean_group),
                    "machine": machine()}));
            }
        }
    }
    Ok(())
}
