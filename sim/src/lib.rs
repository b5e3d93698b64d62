//! Trundle's simulator. [`simulate`] plays a [`Scenario`] in a deterministic lockstep loop with a simulated
//! clock: the real fleet-core [`Dispatcher`](fleet_core::dispatcher::Dispatcher) and one real robot-agent
//! [`Agent`](robot_agent::agent::Agent) per robot, each driving a rapier3d body of the [`physics`] world among
//! walking pedestrians (and building walls, when the scenario asks), shops placing a seeded stream of orders
//! (or replaying a log), customers typing their PIN at the door, and faults striking on schedule. The result
//! is a [`Report`] (`report.json`) and a [`Trace`](report::Trace) for the charts of `report.html` ([`html`]).
//!
//! Same scenario and seed, same report, byte for byte: every random draw comes from one seeded ChaCha stream,
//! every collection that reaches the report is ordered, and time is tick x dt.
//!
//! [`remote`] is the other driver: the same simulated fleet as real robot-agent gRPC sessions against a running
//! dispatcher.

pub mod compare;
pub mod error;
pub mod gate;
pub mod html;
pub mod osm;
pub mod physics;
pub mod remote;
pub mod report;
pub mod scenario;
pub mod world;

use std::path::Path;

pub use error::Error;
pub use osm::Area;
pub use report::Report;
pub use scenario::{Scenario, ScenarioFile};
pub use world::{Outcome, run, simulate};

/// Writes `report.json` and `report.html` of a run into `dir` (created if missing).
pub fn write_outputs(dir: &Path, outcome: &Outcome) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut json = serde_json::to_vec_pretty(&outcome.report).map_err(std::io::Error::other)?;
    json.push(b'\n');
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.html"), html::render(&outcome.report, &outcome.trace))
}
