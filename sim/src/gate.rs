//! `trundle-sim gate`: what a map or policy change must pass before it reaches the street.
//!
//! A gate file (TOML) names scenarios, the seeds each runs on and thresholds. Every run (scenario x seed) is
//! checked against every threshold set for it; the gate passes when every check of every run passes. The
//! result prints as a table and is written as JUnit XML (one test case per run, for CI) and as a Markdown
//! summary (for the change's review). A candidate change is tried by overriding every scenario's map
//! ([`Gate::with_map`]) or dispatch policy ([`Gate::with_policy`]).
//!
//! ```toml
//! name = "Monaco field trial"
//! seeds = [1, 2, 3]
//!
//! [thresholds]                 # for every scenario, unless it sets its own
//! min_on_time_pct = 90
//! max_robot_at_fault = 0
//!
//! [[scenario]]
//! file = "monaco-lunch.toml"   # relative to the gate file
//!
//! [[scenario]]
//! name = "the built-in day"    # no file: the built-in default scenario
//! map = "../data/monaco.osm.pbf"
//! seeds = [1]
//! [scenario.thresholds]
//! min_on_time_pct = 85
//! ```
//!
//! Thresholds (all optional): `min_on_time_pct` (delivered orders handed over by their deliver-by),
//! `min_by_quoted_latest_pct` (delivered by the latest time quoted at placing), `max_delivery_p95_min` (placing
//! to hand-over), `max_refused_pct` (of the orders shops asked for), `min_deliveries_per_robot_hour`,
//! `max_robot_at_fault` (contacts the robot caused), `max_robot_robot` (contacts between robots),
//! `max_stuck` (placed orders not ended when the run stopped) and `max_failed`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fleet_core::dispatcher::Policy;
use serde::{Deserialize, Serialize};

use crate::osm::Area;
use crate::scenario::DEFAULT_MAP;
use crate::world::{Outcome, simulate};
use crate::{Error, Report, Scenario, ScenarioFile};

/// The limits a run is held to; unset ones are not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub min_on_time_pct: Option<f64>,
    pub min_by_quoted_latest_pct: Option<f64>,
    pub max_delivery_p95_min: Option<f64>,
    pub max_refused_pct: Option<f64>,
    pub min_deliveries_per_robot_hour: Option<f64>,
    pub max_robot_at_fault: Option<u64>,
    pub max_robot_robot: Option<u64>,
    pub max_stuck: Option<u64>,
    pub max_failed: Option<u64>,
}

impl Thresholds {
    /// These, with every limit `over` sets replacing this one's.
    pub fn overridden_by(&self, over: &Thresholds) -> Thresholds {
        Thresholds {
            min_on_time_pct: over.min_on_time_pct.or(self.min_on_time_pct),
            min_by_quoted_latest_pct: over.min_by_quoted_latest_pct.or(self.min_by_quoted_latest_pct),
            max_delivery_p95_min: over.max_delivery_p95_min.or(self.max_delivery_p95_min),
            max_refused_pct: over.max_refused_pct.or(self.max_refused_pct),
            min_deliveries_per_robot_hour: over.min_deliveries_per_robot_hour.or(self.min_deliveries_per_robot_hour),
            max_robot_at_fault: over.max_robot_at_fault.or(self.max_robot_at_fault),
            max_robot_robot: over.max_robot_robot.or(self.max_robot_robot),
            max_stuck: over.max_stuck.or(self.max_stuck),
            max_failed: over.max_failed.or(self.max_failed),
        }
    }

    /// The limits as (name, limit, whether it is a minimum), in a fixed order.
    fn limits(&self) -> Vec<(&'static str, f64, bool)> {
        let count = |v: Option<u64>| v.map(|n| n as f64);
        [
            ("on_time_pct", self.min_on_time_pct, true),
            ("by_quoted_latest_pct", self.min_by_quoted_latest_pct, true),
            ("delivery_p95_min", self.max_delivery_p95_min, false),
            ("refused_pct", self.max_refused_pct, false),
            ("deliveries_per_robot_hour", self.min_deliveries_per_robot_hour, true),
            ("robot_at_fault", count(self.max_robot_at_fault), false),
            ("robot_robot", count(self.max_robot_robot), false),
            ("stuck", count(self.max_stuck), false),
            ("failed", count(self.max_failed), false),
        ]
        .into_iter()
        .filter_map(|(name, limit, min)| limit.map(|l| (name, l, min)))
        .collect()
    }

    fn check(&self) -> Result<(), String> {
        for (name, limit, _) in self.limits() {
            if !limit.is_finite() || limit < 0.0 {
                return Err(format!("threshold {name} must be a number >= 0, not {limit}"));
            }
            if name.ends_with("_pct") && limit > 100.0 {
                return Err(format!("threshold {name} is a percentage: at most 100, not {limit}"));
            }
        }
        Ok(())
    }
}

/// The value of a figure a threshold names, from a run's report.
fn figure(r: &Report, name: &str) -> f64 {
    let pct = |n: usize, of: usize| if of == 0 { 0.0 } else { 100.0 * n as f64 / of as f64 };
    match name {
        "on_time_pct" => 100.0 * r.on_time_rate(),
        "by_quoted_latest_pct" => 100.0 * r.by_quoted_latest_rate(),
        "delivery_p95_min" => r.delivery_min_p95,
        "refused_pct" => pct(r.refusals(), r.orders_requested),
        "deliveries_per_robot_hour" => r.deliveries_per_robot_hour,
        "robot_at_fault" => r.contact_faults.robot_at_fault as f64,
        "robot_robot" => r.collisions.robot_robot as f64,
        "stuck" => r.open_at_end as f64,
        "failed" => r.failed as f64,
        other => unreachable!("no figure {other}"),
    }
}

/// A gate file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateFile {
    pub name: Option<String>,
    /// Seeds every scenario runs on unless it names its own.
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(rename = "scenario", default)]
    pub scenarios: Vec<GateEntry>,
}

/// One `[[scenario]]` of a gate file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateEntry {
    pub name: Option<String>,
    /// A scenario file, relative to the gate file; none runs the built-in default scenario.
    pub file: Option<PathBuf>,
    /// Replaces the scenario's map (relative to the gate file).
    pub map: Option<PathBuf>,
    pub seeds: Option<Vec<u64>>,
    #[serde(default)]
    pub thresholds: Thresholds,
}

/// A checked gate: each scenario resolved, with its map, seeds and thresholds.
#[derive(Debug, Clone)]
pub struct Gate {
    pub name: String,
    pub scenarios: Vec<GateScenario>,
    /// What the candidate changes, as said in the summary (empty: the configuration as it is).
    pub change: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct GateScenario {
    pub name: String,
    pub map: PathBuf,
    pub scenario: Scenario,
    pub seeds: Vec<u64>,
    pub thresholds: Thresholds,
}

impl Gate {
    /// Reads and checks a gate file; scenario files and maps are taken relative to it.
    pub fn load(path: &Path) -> Result<Gate, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::ReadScenario { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| Error::InvalidScenario { path: path.to_path_buf(), message })
    }

    /// Parses a gate file's text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Gate, String> {
        let file: GateFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.scenarios.is_empty() {
            return Err("a gate needs at least one [[scenario]]".into());
        }
        file.thresholds.check()?;
        let mut scenarios = Vec::new();
        for (i, e) in file.scenarios.iter().enumerate() {
            let what = |m: String| format!("scenario {}: {m}", i + 1);
            let (map, scenario) = match &e.file {
                Some(f) => {
                    let (map, s) = ScenarioFile::load(&base.join(f)).map_err(|err| what(err.to_string()))?;
                    (map, s)
                }
                None => (PathBuf::from(DEFAULT_MAP), Scenario::default()),
            };
            let map = e.map.as_ref().map_or(map, |m| base.join(m));
            // One import per map however the scenarios spell its path.
            let map = map.canonicalize().unwrap_or(map);
            let seeds = e.seeds.clone().unwrap_or_else(|| file.seeds.clone());
            if seeds.is_empty() {
                return Err(what("no seeds to run on".into()));
            }
            e.thresholds.check().map_err(what)?;
            let thresholds = file.thresholds.overridden_by(&e.thresholds);
            if thresholds.limits().is_empty() {
                return Err(what("no thresholds to check".into()));
            }
            let name = e.name.clone().unwrap_or_else(|| match &e.file {
                Some(f) => f.file_stem().map_or_else(|| f.display().to_string(), |s| s.to_string_lossy().into()),
                None => "default".into(),
            });
            scenarios.push(GateScenario { name, map, scenario, seeds, thresholds });
        }
        Ok(Gate { name: file.name.unwrap_or_else(|| "gate".into()), scenarios, change: Vec::new() })
    }

    /// Tries a dispatch policy: every scenario runs with it.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        for s in &mut self.scenarios {
            s.scenario.dispatch.policy = policy;
        }
        self.change.push(format!("dispatch policy {policy}"));
        self
    }

    /// Tries a map: every scenario runs on it.
    pub fn with_map(mut self, map: &Path) -> Self {
        let canonical = map.canonicalize().unwrap_or_else(|_| map.to_path_buf());
        for s in &mut self.scenarios {
            s.map = canonical.clone();
        }
        self.change.push(format!("map {}", map.display()));
        self
    }

    /// The maps the scenarios run on, each once.
    pub fn maps(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.scenarios.iter().map(|s| s.map.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// One threshold checked on one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub figure: &'static str,
    pub value: f64,
    pub limit: f64,
    /// The limit is a minimum (else a maximum).
    pub min: bool,
    pub passed: bool,
}

impl Check {
    fn describe(&self) -> String {
        format!("{} {:.2} (limit {} {})", self.figure, self.value, if self.min { ">=" } else { "<=" }, self.limit)
    }
}

/// One scenario on one seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateRun {
    pub scenario: String,
    pub seed: u64,
    pub checks: Vec<Check>,
    pub passed: bool,
}

/// `gate.json`: every run and whether the gate passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub gate: String,
    pub change: Vec<String>,
    pub runs: Vec<GateRun>,
    pub passed: bool,
}

/// Checks one run's report against `t`.
pub fn checks(report: &Report, t: &Thresholds) -> Vec<Check> {
    t.limits()
        .into_iter()
        .map(|(name, limit, min)| {
            let value = figure(report, name);
            let passed = if min { value >= limit } else { value <= limit };
            Check { figure: name, value, limit, min, passed }
        })
        .collect()
}

/// Runs every scenario of `gate` on its seeds, with the maps in `areas` (by path; every map of
/// [`Gate::maps`]). `on_run` sees each run's outcome as it ends; `progress(label, done, total)` the ticks.
pub fn run(
    gate: &Gate,
    areas: &BTreeMap<PathBuf, Area>,
    on_run: &mut dyn FnMut(&GateScenario, u64, &Outcome),
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<GateResult, Error> {
    let mut runs = Vec::new();
    for gs in &gate.scenarios {
        let area = areas.get(&gs.map).ok_or_else(|| {
            Error::Setup(format!("the map {} of scenario {} is not loaded", gs.map.display(), gs.name))
        })?;
        for &seed in &gs.seeds {
            let s = Scenario { seed, ..gs.scenario.clone() };
            let label = format!("{} seed {seed}", gs.name);
            let outcome = simulate(area, &s, &mut |d, t| progress(&label, d, t))?;
            let checks = checks(&outcome.report, &gs.thresholds);
            let passed = checks.iter().all(|c| c.passed);
            on_run(gs, seed, &outcome);
            runs.push(GateRun { scenario: gs.name.clone(), seed, checks, passed });
        }
    }
    let passed = runs.iter().all(|r| r.passed);
    Ok(GateResult { gate: gate.name.clone(), change: gate.change.clone(), runs, passed })
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

impl GateResult {
    pub fn failed_runs(&self) -> usize {
        self.runs.iter().filter(|r| !r.passed).count()
    }

    fn verdict(&self) -> String {
        if self.passed {
            format!("PASSED ({} runs)", self.runs.len())
        } else {
            format!("FAILED ({} of {} runs)", self.failed_runs(), self.runs.len())
        }
    }

    /// The table printed at the end of a gate run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "gate {}", self.gate);
        if !self.change.is_empty() {
            let _ = writeln!(out, "change: {}", self.change.join(", "));
        }
        let _ = writeln!(out, "{:<24} {:>6}  {:<6} checks", "scenario", "seed", "result");
        for r in &self.runs {
            let checks: Vec<String> =
                r.checks.iter().map(|c| format!("{}{}", if c.passed { "" } else { "FAIL " }, c.describe())).collect();
            let _ = writeln!(
                out,
                "{:<24} {:>6}  {:<6} {}",
                r.scenario,
                r.seed,
                if r.passed { "pass" } else { "FAIL" },
                checks.join("; ")
            );
        }
        let _ = writeln!(out, "gate {}", self.verdict());
        out
    }

    /// JUnit XML: a test suite per scenario, a test case per seed, a failure per failed run naming its checks.
    pub fn junit(&self) -> String {
        let mut by: BTreeMap<&str, Vec<&GateRun>> = BTreeMap::new();
        for r in &self.runs {
            by.entry(&r.scenario).or_default().push(r);
        }
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\">",
            xml(&self.gate),
            self.runs.len(),
            self.failed_runs()
        );
        for (scenario, runs) in by {
            let failures = runs.iter().filter(|r| !r.passed).count();
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
                xml(scenario),
                runs.len()
            );
            for r in runs {
                let _ = write!(out, "    <testcase classname=\"gate.{}\" name=\"seed {}\"", xml(scenario), r.seed);
                let failed: Vec<String> = r.checks.iter().filter(|c| !c.passed).map(Check::describe).collect();
                let all: Vec<String> = r.checks.iter().map(Check::describe).collect();
                if failed.is_empty() {
                    let _ =
                        writeln!(out, ">\n      <system-out>{}</system-out>\n    </testcase>", xml(&all.join("\n")));
                } else {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        xml(&failed.join("; ")),
                        xml(&all.join("\n"))
                    );
                }
            }
            let _ = writeln!(out, "  </testsuite>");
        }
        out.push_str("</testsuites>\n");
        out
    }

    /// A Markdown summary for a change's review.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Gate {}: {}\n", self.gate, self.verdict());
        if !self.change.is_empty() {
            let _ = writeln!(out, "Change tried: {}.\n", self.change.join(", "));
        }
        let _ = writeln!(out, "| scenario | seed | result | checks |\n|---|---:|---|---|");
        for r in &self.runs {
            let checks: Vec<String> = r
                .checks
                .iter()
                .map(|c| if c.passed { c.describe() } else { format!("**{}**", c.describe()) })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                r.scenario,
                r.seed,
                if r.passed { "pass" } else { "**FAIL**" },
                checks.join("<br>")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            orders_requested: 100,
            placed: 80,
            delivered: 80,
            on_time: 76,
            by_quoted_latest: 72,
            refused: [("busy".to_string(), 20)].into(),
            delivery_min_p95: 61.0,
            deliveries_per_robot_hour: 2.0,
            ..Report::default()
        }
    }

    #[test]
    fn each_threshold_reads_its_figure_and_fails_on_the_wrong_side() {
        let t = Thresholds {
            min_on_time_pct: Some(95.0),
            min_by_quoted_latest_pct: Some(90.0),
            max_delivery_p95_min: Some(60.0),
            max_refused_pct: Some(20.0),
            min_deliveries_per_robot_hour: Some(2.0),
            max_robot_at_fault: Some(0),
            max_robot_robot: Some(0),
            max_stuck: Some(0),
            max_failed: Some(0),
        };
        let c = checks(&report(), &t);
        let by: BTreeMap<&str, &Check> = c.iter().map(|c| (c.figure, c)).collect();
        assert_eq!(by.len(), 9);
        assert_eq!((by["on_time_pct"].value, by["on_time_pct"].passed), (95.0, true));
        assert_eq!((by["by_quoted_latest_pct"].value, by["by_quoted_latest_pct"].passed), (90.0, true));
        assert_eq!((by["delivery_p95_min"].value, by["delivery_p95_min"].passed), (61.0, false));
        assert_eq!((by["refused_pct"].value, by["refused_pct"].passed), (20.0, true));
        assert!(by["deliveries_per_robot_hour"].passed && by["stuck"].passed);
        let strict = Thresholds { min_on_time_pct: Some(95.1), ..Thresholds::default() };
        assert!(!checks(&report(), &strict)[0].passed);
    }

    #[test]
    fn a_gate_file_is_checked_and_its_scenarios_get_the_thresholds_they_override() {
        let base = Path::new(".");
        let text = "seeds = [1, 2]\n[thresholds]\nmin_on_time_pct = 90\nmax_robot_at_fault = 0\n\
                    [[scenario]]\nname = \"day\"\n[[scenario]]\nseeds = [7]\n[scenario.thresholds]\nmin_on_time_pct = 50\n";
        let g = Gate::parse(text, base).expect("parses");
        assert_eq!(g.scenarios.len(), 2);
        assert_eq!(g.scenarios[0].name, "day");
        assert_eq!(g.scenarios[0].seeds, [1, 2]);
        assert_eq!(g.scenarios[0].thresholds.min_on_time_pct, Some(90.0));
        assert_eq!(g.scenarios[1].seeds, [7]);
        assert_eq!(g.scenarios[1].thresholds.min_on_time_pct, Some(50.0));
        assert_eq!(g.scenarios[1].thresholds.max_robot_at_fault, Some(0));
        let g = g.with_policy(Policy::Greedy).with_map(Path::new("other.osm.pbf"));
        assert!(g.scenarios.iter().all(|s| s.scenario.dispatch.policy == Policy::Greedy));
        assert_eq!(g.maps(), [PathBuf::from("other.osm.pbf")]);
        assert_eq!(g.change, ["dispatch policy greedy", "map other.osm.pbf"]);
        for (bad, why) in [
            ("seeds = [1]\n[thresholds]\nmin_on_time_pct = 90\n", "at least one [[scenario]]"),
            ("seeds = [1]\n[[scenario]]\n", "no thresholds"),
            ("seeds = []\n[thresholds]\nmax_stuck = 0\n[[scenario]]\n", "no seeds"),
            ("seeds = [1]\n[thresholds]\nmin_on_time_pct = 120\n[[scenario]]\n", "at most 100"),
            ("seeds = [1]\n[thresholds]\nmin_ontime = 1\n[[scenario]]\n", "unknown field"),
            ("seeds = [1]\n[thresholds]\nmax_stuck = 0\n[[scenario]]\nfile = \"nowhere.toml\"\n", "scenario 1"),
        ] {
            let e = Gate::parse(bad, base).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_result_reads_the_same_as_a_table_junit_and_markdown() {
        let pass = GateRun {
            scenario: "lunch".into(),
            seed: 1,
            checks: vec![Check { figure: "on_time_pct", value: 97.0, limit: 90.0, min: true, passed: true }],
            passed: true,
        };
        let fail = GateRun {
            scenario: "lunch".into(),
            seed: 2,
            checks: vec![Check { figure: "refused_pct", value: 41.0, limit: 35.0, min: false, passed: false }],
            passed: false,
        };
        let r = GateResult {
            gate: "g <&>".into(),
            change: vec!["dispatch policy greedy".into()],
            runs: vec![pass, fail],
            passed: false,
        };
        assert!(r.table().ends_with("gate FAILED (1 of 2 runs)\n"), "{}", r.table());
        let j = r.junit();
        assert!(j.contains("<testsuites name=\"g &lt;&amp;&gt;\" tests=\"2\" failures=\"1\">"), "{j}");
        assert!(j.contains("<testcase classname=\"gate.lunch\" name=\"seed 2\">\n      <failure message=\"refused_pct 41.00 (limit &lt;= 35)\">"), "{j}");
        assert_eq!(j.matches("<failure").count(), 1);
        let m = r.markdown();
        assert!(m.starts_with("# Gate g <&>: FAILED (1 of 2 runs)"), "{m}");
        assert!(m.contains("| lunch | 2 | **FAIL** | **refused_pct 41.00 (limit <= 35)** |"), "{m}");
    }
}
