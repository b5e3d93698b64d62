//! The lockstep driver: one thread, a fixed step, a simulated clock. Each tick: due faults strike (or end),
//! shops act (place orders, mark them ready), customers at a waiting robot type their PIN, the physics world
//! steps up to the tick's time (at its own fixed rate, several steps per tick), every robot's platform reports,
//! every agent and the dispatcher exchange messages until nothing is left in flight, then the host of the core
//! ticks the dispatcher and starts a search for better plans when they are due.
//!
//! The driver is the simulator's adapter over [`fleet_core::host::Host`], the same host the server's core
//! thread runs: what a tick or a search is due, where each output goes and under which key a record is kept
//! come from there. The driver keeps only what is its own: the records, latest per key as a store keeps them
//! (a dispatcher restart rebuilds the core from exactly those with `Dispatcher::restore`), each robot's link
//! (while a link is down, messages both ways are lost, as on a dead connection), and the search's budget in
//! iterations rather than wall time, so runs stay deterministic.
//!
//! [`simulate`] runs the parts in order, one file each: [`setup`] builds the world (shops, the physics world with
//! its walls, pedestrians and robot bodies, the host of the core with every shop and robot registered);
//! [`demand`] draws the day's orders up front and places them when due; [`faults`] keeps the injection
//! schedule and applies each fault; [`lockstep`] steps the world tick by tick; [`report`] assembles the
//! report and the chart series at the end. [`walls`] picks the building walls worth putting in the world.

mod demand;
mod faults;
mod lockstep;
mod report;
mod setup;
mod walls;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use fleet_core::Timestamp;
use fleet_core::map::MapGraph;

use crate::osm::Area;
use crate::report::Trace;
use crate::{Error, Report, Scenario};

pub use walls::{WALL_CLEARANCE_M, WALL_REACH_M, building_walls};

/// Trajectories are sampled this often for the report's map, battery levels six times less often.
pub const TRACE_EVERY_S: u64 = 10;
/// The order chart's bucket.
pub const SERIES_BUCKET_S: u64 = 900;

/// A run's report and the time series behind its charts.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: Report,
    pub trace: Trace,
}

/// Runs the scenario on `map` (no shop points, no buildings) and returns its report.
pub fn run(map: MapGraph, scenario: &Scenario) -> Result<Report, Error> {
    simulate(&Area::from_map(map), scenario, &mut |_, _| {}).map(|o| o.report)
}

/// Runs the scenario in `area`; `progress(done, total)` is called with simulated ticks now and then.
pub fn simulate(area: &Area, scenario: &Scenario, progress: &mut dyn FnMut(u64, u64)) -> Result<Outcome, Error> {
    scenario.check().map_err(Error::Scenario)?;
    // One seeded stream draws the shops, then the day's orders; pedestrians have their own (see `setup`).
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let start = Timestamp(scenario.start_ms);
    let shops = setup::shops(area, scenario, &mut rng)?;
    let planned = demand::plan(area, scenario, &shops, &mut rng)?;
    let mut world = setup::build(area, scenario, &shops)?;
    let mut demand = demand::Demand::new(planned, world.shop_ids.clone(), scenario.accept_offer_min);
    let mut faults = faults::Faults::new(scenario, world.pristine.take(), world.config.clone());
    let ran = lockstep::run(&mut world.fleet, &mut demand, &mut faults, scenario, progress)?;
    Ok(report::assemble(report::Inputs {
        scenario,
        start,
        map_nodes: area.map.node_count(),
        walls: world.walls,
        shops: &shops,
        fleet: &world.fleet,
        demand,
        applied: faults.applied(),
        ran,
    }))
}
