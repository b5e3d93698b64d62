//! Temporary development harness (deleted before the last commit): the Li & Lim figures exactly as
//! `trundle-bench lilim` computes them (distance rounded to 2 decimals, gap per instance, averaged).

// A throwaway harness: a panic on bad input is the right answer here.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use fleet_core::pdptw::{Instance, check::check, solve};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("/work/shared/data/pdptw/li-lim-100", |s| s.as_str()));
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let only = args.get(3).cloned().filter(|s| s != "all");
    let arg = |k: usize, d: f64| args.get(k).and_then(|s| s.parse::<f64>().ok()).unwrap_or(d);
    let base = solve::Params::default();
    let params = solve::Params {
        seed: 1,
        fleet_share: arg(4, 0.5),
        fleet_stall: arg(5, base.fleet_stall as f64) as u64,
        ..base
    };
    println!("{params:?}");
    let bks_text = std::fs::read_to_string(dir.join("../bks.csv")).expect("bks");
    let mut bks = std::collections::BTreeMap::new();
    for line in bks_text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() >= 3 {
            bks.insert(f[0].to_lowercase(), (f[1].parse::<usize>().unwrap(), f[2].parse::<f64>().unwrap()));
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .filter(|p| only.as_deref().is_none_or(|o| p.to_string_lossy().contains(o)))
        .collect();
    files.sort();
    let (mut vehicles, mut bksv, mut gaps, mut feasible) = (0, 0, Vec::new(), 0);
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy().to_lowercase();
        let inst = Instance::parse_lilim(&name, &std::fs::read_to_string(f).unwrap()).unwrap();
        let t0 = Instant::now();
        let mut iters = 0;
        let sol = solve::solve(&inst, params, &mut |i| {
            iters = i;
            t0.elapsed().as_secs_f64() / secs
        });
        let (bv, bd) = bks.get(&name).copied().unwrap_or((0, f64::NAN));
        match sol.as_ref().map(|s| check(&inst, s)) {
            Some(Ok(c)) => {
                feasible += 1;
                vehicles += c.vehicles;
                bksv += bv;
                let dist = (c.distance * 100.0).round() / 100.0;
                let gap = (dist - bd) / bd * 100.0;
                gaps.push(gap);
                println!("{name} v={} bks_v={bv} d={dist} bks_d={bd} gap={gap:.2}% iters={iters}", c.vehicles);
            }
            other => println!("{name} INFEASIBLE {other:?}"),
        }
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;
    println!(
        "SUMMARY instances={} feasible={feasible} vehicles={vehicles} bks_vehicles={bksv} mean_gap_pct={:.2} ({mean:.4})",
        files.len(),
        (mean * 100.0).round() / 100.0
    );
}
