//! `trundle-sim compare`: two scenarios (typically two dispatch policies) on the same seeds, their main figures
//! side by side with the difference. Means over seeds are what the table shows; `compare.json` keeps every
//! seed's figures too.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::osm::Area;
use crate::world::{Outcome, simulate};
use crate::{Error, Report, Scenario};

/// The figures compared, in table order: name and how many decimals to print.
pub const FIGURES: [(&str, usize); 15] = [
    ("placed", 1),
    ("delivered", 1),
    ("on_time_pct", 1),
    ("by_quoted_latest_pct", 1),
    ("delivery_mean_min", 1),
    ("delivery_p50_min", 1),
    ("delivery_p90_min", 1),
    ("distance_km", 1),
    ("energy_wh", 0),
    ("collisions", 1),
    ("robot_at_fault", 1),
    ("refusals", 1),
    ("failed", 1),
    ("utilisation_pct", 1),
    ("deliveries_per_robot_hour", 2),
];

/// The compared figures of one report, keyed by the names in [`FIGURES`].
pub fn figures(r: &Report) -> BTreeMap<&'static str, f64> {
    let v = [
        r.placed as f64,
        r.delivered as f64,
        100.0 * r.on_time_rate(),
        100.0 * r.by_quoted_latest_rate(),
        r.delivery_min_mean,
        r.delivery_min_p50,
        r.delivery_min_p90,
        r.distance_km,
        r.energy_used_wh,
        r.collisions.total() as f64,
        r.contact_faults.robot_at_fault as f64,
        r.refusals() as f64,
        r.failed as f64,
        100.0 * r.utilisation_mean,
        r.deliveries_per_robot_hour,
    ];
    FIGURES.iter().map(|(k, _)| *k).zip(v).collect()
}

/// One figure's means over the seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mean {
    pub a: f64,
    pub b: f64,
    pub diff: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedRow {
    pub seed: u64,
    pub a: BTreeMap<&'static str, f64>,
    pub b: BTreeMap<&'static str, f64>,
}

/// `compare.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub seeds: Vec<u64>,
    pub per_seed: Vec<SeedRow>,
    pub means: BTreeMap<&'static str, Mean>,
}

/// Runs `a` and `b` on every seed (each scenario's own seed replaced); `on_run(side, seed, outcome)` sees each
/// run as it ends (side 0 is A), `progress(label, done, total)` the ticks.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    (name_a, area_a, a): (&str, &Area, &Scenario),
    (name_b, area_b, b): (&str, &Area, &Scenario),
    seeds: &[u64],
    on_run: &mut dyn FnMut(usize, u64, &Outcome),
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Comparison, Error> {
    let mut per_seed = Vec::new();
    for &seed in seeds {
        let mut figs = Vec::new();
        for (side, (area, s)) in [(area_a, a), (area_b, b)].into_iter().enumerate() {
            let s = Scenario { seed, ..s.clone() };
            let label = format!("{} seed {seed}", if side == 0 { "A" } else { "B" });
            let outcome = simulate(area, &s, &mut |d, t| progress(&label, d, t))?;
            figs.push(figures(&outcome.report));
            on_run(side, seed, &outcome);
        }
        let b = figs.pop().unwrap_or_default();
        let a = figs.pop().unwrap_or_default();
        per_seed.push(SeedRow { seed, a, b });
    }
    let n = seeds.len().max(1) as f64;
    let mut means = BTreeMap::new();
    for (k, _) in FIGURES {
        let a: f64 = per_seed.iter().map(|r| r.a.get(k).copied().unwrap_or(0.0)).sum::<f64>() / n;
        let b: f64 = per_seed.iter().map(|r| r.b.get(k).copied().unwrap_or(0.0)).sum::<f64>() / n;
        means.insert(k, Mean { a, b, diff: b - a });
    }
    Ok(Comparison { a: name_a.into(), b: name_b.into(), seeds: seeds.to_vec(), per_seed, means })
}

impl Comparison {
    /// The side-by-side table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "A = {}\nB = {}\nseeds {:?}; means over seeds", self.a, self.b, self.seeds);
        let _ = writeln!(out, "{:<26} {:>11} {:>11} {:>11} {:>8}", "figure", "A", "B", "B - A", "change");
        for (k, decimals) in FIGURES {
            let Some(m) = self.means.get(k) else { continue };
            let change =
                if m.a.abs() > 1e-9 { format!("{:+.1}%", 100.0 * m.diff / m.a.abs()) } else { "-".to_string() };
            let _ = writeln!(out, "{k:<26} {:>11.d$} {:>11.d$} {:>+11.d$} {change:>8}", m.a, m.b, m.diff, d = decimals);
        }
        out
    }
}
