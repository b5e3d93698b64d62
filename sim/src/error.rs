//! The crate's one error type: why a simulation, a scenario file, a map or a remote run could not go ahead.
//! Each variant keeps what a person needs to fix it (the file, the value, the dispatcher's own status).

use std::path::PathBuf;

use tonic::Status;

/// Why the simulator could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario cannot run (a value out of range, a fault naming a robot that does not exist).
    #[error("bad scenario: {0}")]
    Scenario(String),
    /// A valid scenario whose world could not be built (no map node near the centre, a shop the dispatcher
    /// refused to register).
    #[error("setting up the world failed: {0}")]
    Setup(String),
    #[error("cannot read {path}: {source}")]
    ReadScenario { path: PathBuf, source: std::io::Error },
    /// A scenario file that is not valid TOML, or has an unknown key; the message names the key and the line.
    #[error("{path}: {message}")]
    ParseScenario { path: PathBuf, message: String },
    /// A scenario file that parses but describes a scenario that cannot run.
    #[error("{path}: {message}")]
    InvalidScenario { path: PathBuf, message: String },
    #[error("cannot read the map {path}: {source}")]
    ReadMap { path: PathBuf, source: std::io::Error },
    /// An OSM extract that could not be imported (its graph or its features).
    #[error("cannot import {path}: {message}")]
    ImportMap { path: PathBuf, message: String },
    /// The remote driver could not reach the dispatcher.
    #[error("cannot reach the dispatcher at {0}: {1}")]
    Connect(String, String),
    /// The dispatcher answered a remote driver's call with an error.
    #[error("the dispatcher refused {0}: {1}")]
    Refused(&'static str, Status),
    /// The remote driver's own settings cannot work.
    #[error("bad setup: {0}")]
    RemoteSetup(String),
}
