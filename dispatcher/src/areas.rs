//! Service areas around the core ([`fleet_core::area`]): the areas file operators draw, and how a leading
//! dispatcher takes up robots handed over to its area ([`crate::etcd::EtcdStore::arrivals`]).
//!
//! The areas file is GeoJSON: a `FeatureCollection` whose features are `Polygon`s (the outer ring counts; holes
//! are refused) with a `name` property, coordinates as `[lon, lat]` as GeoJSON has them. Every dispatcher of a
//! city is given the same file and its own `--area`.

use std::sync::Arc;
use std::time::Duration;

use fleet_core::LatLon;
use fleet_core::area::ServiceArea;
use fleet_core::dispatcher::{Input, Reply};
use serde_json::Value;

use crate::Error;
use crate::auth::Auth;
use crate::core::CoreHandle;
use crate::etcd::EtcdStore;

/// How often the leader looks for robots handed over to its area.
const ARRIVALS_EVERY: Duration = Duration::from_millis(500);

/// The areas of a GeoJSON file's bytes.
pub fn parse(bytes: &[u8]) -> Result<Vec<ServiceArea>, Error> {
    let bad = |m: String| Error::Setup(format!("areas file: {m}"));
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    if v.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(bad("expected a GeoJSON FeatureCollection".into()));
    }
    let features = v.get("features").and_then(Value::as_array).ok_or_else(|| bad("no features".into()))?;
    let mut areas: Vec<ServiceArea> = Vec::new();
    for (i, f) in features.iter().enumerate() {
        let name = f
            .pointer("/properties/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("feature {i} has no \"name\" property")))?;
        let geometry = f.get("geometry").ok_or_else(|| bad(format!("area {name:?} has no geometry")))?;
        if geometry.get("type").and_then(Value::as_str) != Some("Polygon") {
            return Err(bad(format!("area {name:?}: the geometry must be a Polygon")));
        }
        let rings = geometry
            .get("coordinates")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("area {name:?}: no coordinates")))?;
        if rings.len() != 1 {
            return Err(bad(format!("area {name:?}: one outer ring and no holes, please ({} rings)", rings.len())));
        }
        let mut outline = Vec::new();
        for p in rings[0].as_array().into_iter().flatten() {
            let (lon, lat) = match p.as_array().map(Vec::as_slice) {
                Some([lon, lat, ..]) => (lon.as_f64(), lat.as_f64()),
                _ => (None, None),
            };
            let (Some(lon), Some(lat)) = (lon, lat) else {
                return Err(bad(format!("area {name:?}: a position is [lon, lat]")));
            };
            outline.push(LatLon::new(lat, lon).map_err(|e| bad(format!("area {name:?}: {e}")))?);
        }
        let area = ServiceArea::new(name, outline).map_err(|e| bad(e.to_string()))?;
        if areas.iter().any(|a| a.name == area.name) {
            return Err(bad(format!("area {name:?} is drawn twice")));
        }
        areas.push(area);
    }
    if areas.is_empty() {
        return Err(bad("no areas".into()));
    }
    Ok(areas)
}

/// The area named `name` of the areas file at `path`.
pub fn load(path: &std::path::Path, name: &str) -> Result<ServiceArea, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Setup(format!("cannot read {}: {e}", path.display())))?;
    let areas = parse(&bytes)?;
    let names: Vec<&str> = areas.iter().map(|a| a.name.as_str()).collect();
    let names = names.join(", ");
    areas
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| Error::Setup(format!("{} has no area {name:?} (it has {names})", path.display())))
}

/// While this dispatcher leads its area: takes up every robot handed over to it, into the store (with its
/// tokens) and then into the core. Runs until the core stops.
pub async fn take_up_arrivals(etcd: Arc<EtcdStore>, core: CoreHandle, auth: Auth) {
    loop {
        tokio::select! {
            () = core.closed() => return,
            () = tokio::time::sleep(ARRIVALS_EVERY) => {}
        }
        let store = etcd.clone();
        let arrivals = match tokio::task::spawn_blocking(move || store.arrivals()).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::warn!("{e}");
                continue;
            }
            Err(_) => return,
        };
        for a in arrivals {
            if let Err(e) = take_up(&etcd, &core, &auth, a).await {
                tracing::warn!("{e}");
            }
        }
    }
}

async fn take_up(etcd: &Arc<EtcdStore>, core: &CoreHandle, auth: &Auth, a: crate::etcd::Arrival) -> Result<(), Error> {
    let id = a.handoff.robot.id.clone();
    let here = {
        let id = id.clone();
        core.query(move |d| d.robot(&id).is_some()).await?
    };
    let store = etcd.clone();
    let arrival = a.clone();
    if here {
        // A hand-off written again after it was taken up (its write was retried): nothing more to take.
        tracing::warn!(robot = %id, from = %a.handoff.from, "a hand-off names a robot already in this area; dropping it");
        tokio::task::spawn_blocking(move || store.drop_arrival(&arrival)).await.map_err(|_| Error::Stopped)??;
        return Ok(());
    }
    let taken = tokio::task::spawn_blocking(move || store.adopt(&arrival)).await.map_err(|_| Error::Stopped)??;
    if !taken {
        return Ok(());
    }
    auth.arrived(a.handoff.tokens.clone());
    match core.call(Input::AdoptRobot { robot: Box::new(a.handoff.robot.clone()) }).await? {
        Reply::Robot(_) => {
            tracing::info!(robot = %id, from = %a.handoff.from, area = %etcd.area(), "took up a robot handed over");
            Ok(())
        }
        other => Err(Error::Unexpected(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_areas_file_is_read_and_bad_ones_say_why() {
        let good = br#"{"type":"FeatureCollection","features":[
            {"type":"Feature","properties":{"name":"north"},"geometry":{"type":"Polygon",
             "coordinates":[[[7.40,43.735],[7.44,43.735],[7.44,43.76],[7.40,43.76],[7.40,43.735]]]}},
            {"type":"Feature","properties":{"name":"south"},"geometry":{"type":"Polygon",
             "coordinates":[[[7.40,43.72],[7.44,43.72],[7.44,43.735],[7.40,43.735],[7.40,43.72]]]}}]}"#;
        let areas = parse(good).expect("valid");
        assert_eq!(areas.len(), 2);
        assert!(areas[0].contains(LatLon::new(43.74, 7.42).expect("valid")));
        assert!(!areas[1].contains(LatLon::new(43.74, 7.42).expect("valid")));
        for (bad, says) in [
            (&b"[]"[..], "FeatureCollection"),
            (br#"{"type":"FeatureCollection","features":[]}"#, "no areas"),
            (br#"{"type":"FeatureCollection","features":[{"properties":{},"geometry":{}}]}"#, "name"),
            (
                br#"{"type":"FeatureCollection","features":[{"properties":{"name":"a"},"geometry":{"type":"Point","coordinates":[7.4,43.7]}}]}"#,
                "Polygon",
            ),
            (
                br#"{"type":"FeatureCollection","features":[{"properties":{"name":"a"},"geometry":{"type":"Polygon","coordinates":[[[7.4,43.7],[7.5,95.0],[7.5,43.8]]]}}]}"#,
                "area \"a\"",
            ),
        ] {
            let e = parse(bad).expect_err("refused").to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
