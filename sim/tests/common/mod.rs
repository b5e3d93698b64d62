//! Fixtures the simulator's test binaries share: the bundled Monaco extract, read and imported once per test
//! binary however many of its tests use it (each caller gets its own copy to run on).

#![allow(dead_code)] // Each test binary uses the fixtures it needs.

use std::path::PathBuf;
use std::sync::OnceLock;

use fleet_core::map::MapGraph;
use sim::Area;

/// The bundled OpenStreetMap extract of Monaco.
pub fn monaco_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/monaco.osm.pbf"))
}

fn loaded() -> &'static Area {
    static AREA: OnceLock<Area> = OnceLock::new();
    AREA.get_or_init(|| Area::load(&monaco_path()).expect("the bundled Monaco extract imports").0)
}

/// Monaco with its shop points and buildings, as `trundle-sim` loads it.
pub fn monaco_area() -> Area {
    loaded().clone()
}

/// Monaco's walkable graph alone.
pub fn monaco() -> MapGraph {
    loaded().map.clone()
}
