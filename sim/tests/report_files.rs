//! report.json and report.html: the same scenario and seed write byte-identical files, and the files carry
//! what they promise (every KPI, per-order outcomes, the charts).

mod common;

use std::path::Path;

use sim::ScenarioFile;

const SMALL: &str = r#"
seed = 11
duration_h = 1.5
pedestrians = 20
buildings = "walls"
[fleet]
robots = 3
[[shops]]
pick = 2
[customers]
from = "buildings"
[demand]
orders_per_hour_per_shop = 5
[dispatch]
improve_every_s = 60
improve_iterations = 50
"#;

#[test]
fn same_scenario_same_report_files_byte_for_byte() {
    let area = common::monaco_area();
    assert!(!area.features.buildings.is_empty() && !area.features.shops.is_empty());
    let (_, scenario) = ScenarioFile::parse(SMALL).and_then(|f| f.resolve(Path::new("."))).expect("valid");
    let dirs = [tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp")];
    for d in &dirs {
        let outcome = sim::simulate(&area, &scenario, &mut |_, _| {}).expect("runs");
        sim::write_outputs(d.path(), &outcome).expect("writes");
    }
    let read = |d: &tempfile::TempDir, f: &str| std::fs::read(d.path().join(f)).expect("written");
    for f in ["report.json", "report.html"] {
        assert!(read(&dirs[0], f) == read(&dirs[1], f), "{f} differs between two runs of the same scenario");
    }

    let json: serde_json::Value = serde_json::from_slice(&read(&dirs[0], "report.json")).expect("json");
    for k in [
        "placed",
        "delivered",
        "late",
        "failed",
        "failed_reasons",
        "delivery_min_p50",
        "delivery_min_p90",
        "deliveries_per_robot_hour",
        "utilisation_mean",
        "distance_km",
        "energy_used_wh",
        "collisions",
        "near_misses",
        "reroutes",
        "faults",
    ] {
        assert!(json.get(k).is_some(), "report.json lacks {k}");
    }
    let orders = json["orders"].as_array().expect("per-order outcomes");
    assert!(orders.len() >= 3, "{json}");
    assert!(orders.iter().all(|o| o["status"].is_string() && o["robots"].is_array()));
    assert!(json["building_walls"].as_u64().is_some_and(|n| n > 100), "walls built: {}", json["building_walls"]);
    let robots = json["robots"].as_array().expect("per robot");
    assert_eq!(robots.len(), 3);
    assert!(robots.iter().any(|r| r["utilisation"].as_f64().is_some_and(|u| u > 0.0 && u <= 1.0)));

    let html = String::from_utf8(read(&dirs[0], "report.html")).expect("utf-8");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 5, "five charts");
    for external in ["<script", "src=", "href=", "<link"] {
        assert!(!html.contains(external), "report.html must be self-contained: it has {external}");
    }
}
