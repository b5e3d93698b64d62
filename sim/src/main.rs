//! `trundle-sim`: runs a simulated delivery period on a map and prints its summary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fleet_core::map::MapGraph;
use sim::Scenario;

#[derive(Parser)]
#[command(name = "trundle-sim", version, about = "Simulate a day of sidewalk-robot deliveries on a real map")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario and print its summary.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// OpenStreetMap extract (.osm.pbf).
    #[arg(long, default_value = "data/monaco.osm.pbf")]
    map: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 10)]
    robots: usize,
    #[arg(long, default_value_t = 5)]
    shops: usize,
    /// Orders per hour over all shops.
    #[arg(long, default_value_t = 30.0)]
    orders_per_hour: f64,
    /// Simulated hours.
    #[arg(long, default_value_t = 8.0)]
    hours: f64,
    /// Simulation step, milliseconds.
    #[arg(long, default_value_t = 1000)]
    dt_ms: u64,
    /// Improve plans in the background every this many simulated seconds (0: never).
    #[arg(long, default_value_t = 30)]
    improve_every_s: u64,
    /// Search iterations per improvement.
    #[arg(long, default_value_t = 300)]
    improve_iterations: u64,
    /// People walking the footways.
    #[arg(long, default_value_t = 200)]
    pedestrians: usize,
    /// Physics steps per simulated second (at least 20).
    #[arg(long, default_value_t = 20)]
    physics_hz: u32,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let Cli { cmd: Cmd::Run(a) } = Cli::parse();
    if !(a.hours.is_finite() && a.hours > 0.0 && a.hours <= 24.0 * 7.0) {
        anyhow::bail!("--hours must be in (0, 168]");
    }
    let bytes = std::fs::read(&a.map).with_context(|| format!("cannot read the map {}", a.map.display()))?;
    let (map, summary) = MapGraph::from_osm(&bytes).with_context(|| format!("cannot import {}", a.map.display()))?;
    eprintln!(
        "map {}: {} nodes, {} edges, {:.1} km of walkable ways",
        a.map.display(),
        summary.nodes,
        summary.edges,
        summary.length_km
    );
    let scenario = Scenario {
        seed: a.seed,
        robots: a.robots,
        shops: a.shops,
        orders_per_hour: a.orders_per_hour,
        duration_s: (a.hours * 3600.0).round() as u64,
        dt_ms: a.dt_ms,
        improve_every_s: a.improve_every_s,
        improve_iterations: a.improve_iterations,
        pedestrians: a.pedestrians,
        physics_hz: a.physics_hz,
        ..Scenario::default()
    };
    let report = sim::run(map, &scenario)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
