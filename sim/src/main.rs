//! `trundle-sim`: runs a simulated delivery period on a map and prints its summary (`run`), optionally writing
//! `report.json` and `report.html`; or runs two scenarios on the same seeds and sets their figures side by
//! side (`compare`); or lists a map's bottlenecks (`layout`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sim::scenario::DEFAULT_MAP;
use sim::{Area, Outcome, Scenario, ScenarioFile};

#[derive(Parser)]
#[command(name = "trundle-sim", version, about = "Simulate a day of sidewalk-robot deliveries on a real map")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario (a TOML file, or the built-in default day) and print its summary.
    Run(RunArgs),
    /// Run two scenarios on the same seeds and print their main figures side by side.
    Compare(CompareArgs),
    /// Run a fleet of real robot-agent gRPC sessions (kinematic bodies, scaled time) and shops against a
    /// running trundle-dispatcher, and report what happened to the orders.
    Remote(RemoteArgs),
    /// Run a gate file's scenarios on its seeds and check its thresholds: prints a table, writes gate.junit.xml,
    /// gate.md and gate.json, and exits non-zero when any check fails. `--policy` or `--map` tries a change.
    Gate(GateArgs),
    /// List a map's bottlenecks as traffic management sees them: narrow ways (with where they run, their length
    /// and width) and crossings.
    Layout(LayoutArgs),
}

#[derive(clap::Args)]
struct RemoteArgs {
    /// Dispatcher URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    dispatcher: String,
    /// File holding an operator token (the dispatcher writes DATA/operator.token on first start).
    #[arg(long)]
    operator_token_file: PathBuf,
    /// The dispatcher's map, to pick shops and customers on.
    #[arg(long, default_value = "data/monaco.osm.pbf")]
    map: PathBuf,
    #[arg(long, default_value_t = 5)]
    robots: usize,
    #[arg(long, default_value_t = 2)]
    shops: usize,
    #[arg(long, default_value_t = 10)]
    orders: usize,
    /// Mean real seconds between orders.
    #[arg(long, default_value_t = 1.0)]
    order_gap_s: f64,
    /// Simulated seconds per real second for the bodies (1: real time).
    #[arg(long, default_value_t = 60.0)]
    time_scale: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of the shop and robot ids this run registers.
    #[arg(long, default_value = "remote-")]
    prefix: String,
    /// Real seconds to wait for every order to end.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

fn remote(a: RemoteArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&a.map).with_context(|| format!("cannot read the map {}", a.map.display()))?;
    let (map, _) =
        fleet_core::map::MapGraph::from_osm(&bytes).with_context(|| format!("cannot import {}", a.map.display()))?;
    let token = std::fs::read_to_string(&a.operator_token_file)
        .with_context(|| format!("cannot read {}", a.operator_token_file.display()))?
        .trim()
        .to_owned();
    let cfg = sim::remote::RemoteConfig {
        endpoint: a.dispatcher,
        operator_token: token,
        robots: a.robots,
        shops: a.shops,
        orders: a.orders,
        order_gap_s: a.order_gap_s,
        time_scale: a.time_scale,
        seed: a.seed,
        prefix: a.prefix,
        timeout: std::time::Duration::from_secs(a.timeout_s),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let r = rt.block_on(sim::remote::run(&map, &cfg))?;
    println!("Trundle remote run against {}", cfg.endpoint);
    println!("  orders placed    {}", r.placed);
    for (why, n) in &r.refused {
        println!("  refused          {n} ({why})");
    }
    println!("  delivered        {}", r.delivered);
    println!("  failed           {}", r.failed);
    println!("  returned         {}", r.returned);
    println!("  cancelled        {}", r.cancelled);
    println!("  open at end      {}", r.open);
    println!("  wall time        {:.1} s", r.wall_s);
    Ok(())
}

/// Flags that override the scenario (or, without a file, the built-in defaults shown in brackets).
#[derive(clap::Args)]
struct Overrides {
    /// OpenStreetMap extract (.osm.pbf) [data/monaco.osm.pbf].
    #[arg(long)]
    map: Option<PathBuf>,
    /// [1]
    #[arg(long)]
    seed: Option<u64>,
    /// [10]
    #[arg(long)]
    robots: Option<usize>,
    /// Shops picked from the map's nodes [5]; with a scenario, replaces its shops.
    #[arg(long)]
    shops: Option<usize>,
    /// Orders per hour over all shops [30].
    #[arg(long)]
    orders_per_hour: Option<f64>,
    /// Simulated hours [8].
    #[arg(long)]
    hours: Option<f64>,
    /// Simulation step, milliseconds [1000].
    #[arg(long)]
    dt_ms: Option<u64>,
    /// Improve plans in the background every this many simulated seconds, 0: never [30].
    #[arg(long)]
    improve_every_s: Option<u64>,
    /// Search iterations per improvement [300].
    #[arg(long)]
    improve_iterations: Option<u64>,
    /// People walking trips on the footways, the number out at the busiest hours [200].
    #[arg(long)]
    pedestrians: Option<usize>,
    /// Physics steps per simulated second, at least 20 [20].
    #[arg(long)]
    physics_hz: Option<u32>,
    /// How orders are given to robots: insert-improve, insert or greedy [insert-improve].
    #[arg(long)]
    policy: Option<fleet_core::dispatcher::Policy>,
    /// Building footprints as walls: off or walls [off].
    #[arg(long)]
    buildings: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The scenario file (TOML; see scenarios/). Without one, the built-in default day.
    scenario: Option<PathBuf>,
    #[command(flatten)]
    o: Overrides,
    /// Write report.json and report.html into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct LayoutArgs {
    #[arg(long, default_value = DEFAULT_MAP)]
    map: PathBuf,
    /// Narrow ways to list (those open at both ends), longest first.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Only those within this many metres of (--near-lat, --near-lon).
    #[arg(long)]
    within_m: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    near_lat: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    near_lon: Option<f64>,
    /// Also route from this point to --to ("lat,lon") and list the bottlenecks the route passes.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    from: Vec<f64>,
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    to: Vec<f64>,
    /// Route round every narrow way (what a robot re-routed round one would take).
    #[arg(long)]
    avoid_narrow: bool,
}

fn layout(a: LayoutArgs) -> anyhow::Result<()> {
    use fleet_core::traffic::{Layout, Resource, TrafficConfig};
    let bytes = std::fs::read(&a.map).with_context(|| format!("cannot read {}", a.map.display()))?;
    let (map, summary) = fleet_core::map::MapGraph::from_osm(&bytes)?;
    println!("{} signal nodes in the extract", summary.signal_nodes);
    let cfg = TrafficConfig::default();
    let layout = Layout::build(&map, &cfg);
    let (narrow, crossings) = layout.counts();
    println!("{}: {narrow} narrow ways (under {} m), {crossings} crossings", a.map.display(), cfg.narrow_below_m);
    let near = match (a.near_lat, a.near_lon) {
        (Some(lat), Some(lon)) => Some(fleet_core::LatLon::new(lat, lon)?),
        _ => None,
    };
    let mut ways: Vec<(f64, f32, fleet_core::LatLon, fleet_core::LatLon, u32)> = (0..narrow)
        .filter_map(|i| {
            let edges = layout.edges_of(Resource::Narrow(i));
            let len: f64 = edges.iter().filter_map(|&(x, y)| map.edge(x, y)).map(|e| e.length_m).sum();
            let width = edges.iter().filter_map(|&(x, y)| map.edge(x, y)).map(|e| e.width_m).fold(f32::MAX, f32::min);
            // Its two ends: the nodes only one of its edges touches.
            let mut seen: std::collections::BTreeMap<fleet_core::NodeId, u32> = Default::default();
            for &(x, y) in &edges {
                *seen.entry(x).or_default() += 1;
                *seen.entry(y).or_default() += 1;
            }
            let mut ends = seen.iter().filter(|(_, c)| **c == 1).map(|(n, _)| *n);
            let first = ends.next().unwrap_or(edges.first()?.0);
            let last = ends.next().unwrap_or(edges.last()?.1);
            let (a_pos, b_pos) = (map.pos(first)?, map.pos(last)?);
            // Only ways that lead somewhere at both ends (not a dead-end spur).
            if map.neighbours(first).len() < 2 || map.neighbours(last).len() < 2 {
                return None;
            }
            Some((len, width, a_pos, b_pos, i))
        })
        .filter(|w| match (near, a.within_m) {
            (Some(p), Some(m)) => w.2.distance_m(p) <= m,
            _ => true,
        })
        .collect();
    // Crossings with traffic signals, nearest first when a point is given.
    let mut lights: Vec<(f64, fleet_core::LatLon, fleet_core::LatLon)> = map
        .edges()
        .filter(|(x, y, e)| e.signals && x < y)
        .filter_map(|(x, y, _)| {
            let (px, py) = (map.pos(x)?, map.pos(y)?);
            Some((near.map_or(0.0, |p| px.distance_m(p)), px, py))
        })
        .filter(|l| a.within_m.is_none_or(|m| near.is_none() || l.0 <= m))
        .collect();
    lights.sort_by(|x, y| x.0.total_cmp(&y.0));
    println!("  {} crossing edges with traffic signals{}", lights.len(), if near.is_some() { " in range" } else { "" });
    for (_, px, py) in lights.iter().take(a.top) {
        println!("  signals: ({:.6}, {:.6}) - ({:.6}, {:.6})", px.lat(), px.lon(), py.lat(), py.lon());
    }
    if let ([flat, flon], [tlat, tlon]) = (a.from.as_slice(), a.to.as_slice()) {
        let profile = fleet_core::dispatcher::Config::default().profile_base();
        let from = map.snap(fleet_core::LatLon::new(*flat, *flon)?, 150.0)?;
        let to = map.snap(fleet_core::LatLon::new(*tlat, *tlon)?, 150.0)?;
        let avoid: Vec<(fleet_core::NodeId, fleet_core::NodeId)> = if a.avoid_narrow {
            (0..narrow).flat_map(|i| layout.edges_of(Resource::Narrow(i))).flat_map(|(x, y)| [(x, y), (y, x)]).collect()
        } else {
            Vec::new()
        };
        let route = map.route_avoiding(from.node, to.node, profile, &avoid).context("no route")?;
        println!("  route: {:.0} m, {:.0} s, {} nodes", route.length_m, route.duration_s, route.nodes.len());
        let pts: Vec<String> = route
            .nodes
            .iter()
            .filter_map(|&n| map.pos(n))
            .map(|p| format!("({:.6}, {:.6})", p.lat(), p.lon()))
            .collect();
        println!("    through {}", pts.join(" "));
        for st in layout.stretches(&route.nodes) {
            let (p, q) = (map.pos(route.nodes[st.enter]), map.pos(route.nodes[st.exit]));
            println!("    {} from {p:?} to {q:?}", st.resource);
        }
    }
    ways.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.4.cmp(&y.4)));
    for (len, width, from, to, i) in ways.into_iter().take(a.top) {
        println!(
            "  narrow way {i:>4}: {len:>6.1} m, {width:.1} m wide, ({:.6}, {:.6}) - ({:.6}, {:.6})",
            from.lat(),
            from.lon(),
            to.lat(),
            to.lon()
        );
    }
    Ok(())
}

#[derive(clap::Args)]
struct CompareArgs {
    a: PathBuf,
    b: PathBuf,
    /// Seeds to run both scenarios on [the seed of A].
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Write compare.json (and each run's report.json and report.html, in A-SEED and B-SEED) into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct GateArgs {
    /// The gate file (see scenarios/gate.toml).
    gate: PathBuf,
    /// Try this dispatch policy in every scenario (insert-improve, insert, greedy).
    #[arg(long)]
    policy: Option<fleet_core::dispatcher::Policy>,
    /// Try this map (an OpenStreetMap .osm.pbf) in every scenario.
    #[arg(long)]
    map: Option<PathBuf>,
    /// Where gate.junit.xml, gate.md, gate.json and each run's report go.
    #[arg(long, default_value = "gate-report")]
    out: PathBuf,
    #[arg(long)]
    quiet: bool,
}

/// The map path and scenario of a file (or the defaults), with the command line's overrides applied.
fn scenario_of(file: Option<&Path>, o: &Overrides) -> anyhow::Result<(PathBuf, Scenario)> {
    let (mut map, mut s) = match file {
        Some(p) => ScenarioFile::load(p)?,
        None => (PathBuf::from(DEFAULT_MAP), Scenario::default()),
    };
    if let Some(m) = &o.map {
        map = m.clone();
    }
    if let Some(h) = o.hours {
        if !(h.is_finite() && h > 0.0 && h <= 24.0 * 7.0) {
            anyhow::bail!("--hours must be in (0, 168]");
        }
        s.duration_s = (h * 3600.0).round() as u64;
    }
    if let Some(n) = o.shops {
        s.shops = n;
        s.shop_sites.clear();
        s.replay.clear();
    }
    macro_rules! set {
        ($($f:ident),*) => { $(if let Some(v) = o.$f { s.$f = v; })* };
    }
    set!(seed, robots, orders_per_hour, dt_ms, improve_every_s, improve_iterations, pedestrians, physics_hz);
    if let Some(p) = o.policy {
        s.dispatch.policy = p;
    }
    if let Some(b) = &o.buildings {
        s.buildings = match b.as_str() {
            "off" => sim::scenario::Buildings::Off,
            "walls" => sim::scenario::Buildings::Walls,
            other => anyhow::bail!("--buildings must be off or walls, not {other:?}"),
        };
    }
    s.check().map_err(|e| anyhow::anyhow!("bad scenario: {e}"))?;
    Ok((map, s))
}

fn load_area(path: &Path) -> anyhow::Result<Area> {
    let (area, summary) = Area::load(path)?;
    eprintln!(
        "map {}: {} nodes, {} edges, {:.1} km of walkable ways, {} shop points, {} buildings",
        path.display(),
        summary.nodes,
        summary.edges,
        summary.length_km,
        area.features.shops.len(),
        area.features.buildings.len()
    );
    Ok(area)
}

/// A progress bar on stderr, drawn only when stderr is a terminal and not `quiet`.
fn progress_bar(quiet: bool, label: String) -> ProgressBar {
    let target = if quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(0), target);
    let style =
        ProgressStyle::with_template("{prefix} [{bar:40}] {percent:>3}% simulated, {elapsed} elapsed, eta {eta}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(label);
    bar
}

/// The progress callback of the commands that run many scenarios: the bar says which run it follows.
fn labelled(bar: &ProgressBar) -> impl FnMut(&str, u64, u64) + '_ {
    move |label, done, total| {
        bar.set_prefix(label.to_string());
        bar.set_length(total);
        bar.set_position(done);
    }
}

/// Writes one run's report and page into `dir`, keeping the first error for the end of the command.
fn write_run(first_err: &mut Option<anyhow::Error>, dir: &Path, outcome: &Outcome) {
    if let Err(e) = sim::write_outputs(dir, outcome) {
        first_err.get_or_insert(anyhow::anyhow!("cannot write {}: {e}", dir.display()));
    }
}

fn simulate(area: &Area, s: &Scenario, quiet: bool, label: String) -> anyhow::Result<Outcome> {
    let bar = progress_bar(quiet, label);
    let out = sim::simulate(area, s, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    Ok(out?)
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    let (map, scenario) = scenario_of(a.scenario.as_deref(), &a.o)?;
    let area = load_area(&map)?;
    let outcome = simulate(&area, &scenario, a.quiet, "simulating".into())?;
    if let Some(dir) = &a.out {
        sim::write_outputs(dir, &outcome).with_context(|| format!("cannot write the report into {}", dir.display()))?;
        eprintln!("wrote {0}/report.json and {0}/report.html", dir.display());
    }
    if a.json {
        println!("{}", serde_json::to_string(&outcome.report)?);
    } else {
        println!("{}", outcome.report);
    }
    Ok(())
}

fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let none = Overrides {
        map: None,
        seed: None,
        robots: None,
        shops: None,
        orders_per_hour: None,
        hours: None,
        dt_ms: None,
        improve_every_s: None,
        improve_iterations: None,
        pedestrians: None,
        physics_hz: None,
        policy: None,
        buildings: None,
    };
    let (map_a, sa) = scenario_of(Some(&a.a), &none)?;
    let (map_b, sb) = scenario_of(Some(&a.b), &none)?;
    let seeds = if a.seeds.is_empty() { vec![sa.seed] } else { a.seeds.clone() };
    let area_a = load_area(&map_a)?;
    // One import when both use the same map.
    let area_b = if map_b == map_a { None } else { Some(load_area(&map_b)?) };
    let area_b = area_b.as_ref().unwrap_or(&area_a);
    let bar = progress_bar(a.quiet, String::new());
    let mut write_err = None;
    let cmp = sim::compare::compare(
        (&a.a.display().to_string(), &area_a, &sa),
        (&a.b.display().to_string(), area_b, &sb),
        &seeds,
        &mut |side, seed, outcome| {
            if let Some(dir) = &a.out {
                write_run(&mut write_err, &dir.join(format!("{}-{seed}", if side == 0 { "A" } else { "B" })), outcome);
            }
        },
        &mut labelled(&bar),
    )?;
    bar.finish_and_clear();
    if let Some(e) = write_err {
        return Err(e);
    }
    print!("{}", cmp.table());
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)?;
        let mut bytes = serde_json::to_vec_pretty(&cmp)?;
        bytes.push(b'\n');
        std::fs::write(dir.join("compare.json"), bytes)?;
        eprintln!("wrote {}/compare.json", dir.display());
    }
    Ok(())
}

fn gate(a: GateArgs) -> anyhow::Result<()> {
    let mut g = sim::gate::Gate::load(&a.gate)?;
    if let Some(p) = a.policy {
        g = g.with_policy(p);
    }
    if let Some(m) = &a.map {
        g = g.with_map(m);
    }
    let mut areas = std::collections::BTreeMap::new();
    for m in g.maps() {
        areas.insert(m.clone(), load_area(&m)?);
    }
    let bar = progress_bar(a.quiet, String::new());
    let mut write_err = None;
    let result = sim::gate::run(
        &g,
        &areas,
        &mut |gs, seed, outcome| {
            let name = gs.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
            write_run(&mut write_err, &a.out.join(format!("{name}-{seed}")), outcome);
        },
        &mut labelled(&bar),
    )?;
    bar.finish_and_clear();
    if let Some(e) = write_err {
        return Err(e);
    }
    print!("{}", result.table());
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(a.out.join("gate.junit.xml"), result.junit())?;
    std::fs::write(a.out.join("gate.md"), result.markdown())?;
    let mut json = serde_json::to_vec_pretty(&result)?;
    json.push(b'\n');
    std::fs::write(a.out.join("gate.json"), json)?;
    eprintln!("wrote {0}/gate.junit.xml, {0}/gate.md and {0}/gate.json", a.out.display());
    if !result.passed {
        anyhow::bail!("the gate failed: {} of {} runs missed a threshold", result.failed_runs(), result.runs.len());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => run(a),
        Cmd::Compare(a) => compare(a),
        Cmd::Gate(a) => gate(a),
        Cmd::Remote(a) => remote(a),
        Cmd::Layout(a) => layout(a),
    }
}
