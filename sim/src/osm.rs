//! What the simulator reads from an OpenStreetMap extract besides the walkable graph: points of shops and
//! amenities (where scenario shops can be picked) and building footprints (walls in the physics world, homes
//! of customers). One pass over the same `.osm.pbf` fleet-core imports the graph from; [`Area`] holds both.
//!
//! Only closed ways tagged `building=*` (other than `building=no`) are footprints; multipolygon relations are
//! left out to keep the import cheap (they are a small share of the buildings in city extracts).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use fleet_core::LatLon;
use fleet_core::map::{ImportSummary, MapGraph};

use crate::Error;

/// A shop or amenity point: a candidate place for a scenario's shop.
#[derive(Debug, Clone, PartialEq)]
pub struct OsmShop {
    /// The `name` tag, or the kind (`shop=bakery` gives "bakery") when the point has no name.
    pub name: String,
    pub pos: LatLon,
}

/// A building's outline, a closed ring (first point repeated last).
#[derive(Debug, Clone, PartialEq)]
pub struct Footprint {
    pub osm_id: i64,
    /// People live there (`building=residential`, `apartments`, `house`, ...): a customer's home.
    pub residential: bool,
    pub outline: Vec<LatLon>,
}

impl Footprint {
    /// The mean of the outline's corners (the closing point counted once): good enough for a customer's door.
    pub fn centre(&self) -> Option<LatLon> {
        let pts = self.outline.get(..self.outline.len().saturating_sub(1))?;
        if pts.is_empty() {
            return None;
        }
        let n = pts.len() as f64;
        let lat = pts.iter().map(|p| p.lat()).sum::<f64>() / n;
        let lon = pts.iter().map(|p| p.lon()).sum::<f64>() / n;
        LatLon::new(lat, lon).ok()
    }
}

/// Shop points and building footprints, in file order (so draws from them are deterministic).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    pub shops: Vec<OsmShop>,
    pub buildings: Vec<Footprint>,
}

/// Amenities a delivery robot could serve: food and small retail, not benches or parking.
const AMENITIES: [&str; 8] = ["restaurant", "cafe", "fast_food", "pharmacy", "ice_cream", "bar", "pub", "marketplace"];
const RESIDENTIAL: [&str; 9] = [
    "residential",
    "apartments",
    "house",
    "detached",
    "semidetached_house",
    "terrace",
    "dormitory",
    "bungalow",
    "flats",
];

/// Reads shop points and building footprints from `.osm.pbf` bytes.
pub fn read_features(pbf: &[u8]) -> Result<Features, String> {
    let mut coords: BTreeMap<i64, LatLon> = BTreeMap::new();
    let mut features = Features::default();
    // Ways are resolved after the pass: a file need not list its nodes before its ways.
    let mut ways: Vec<(i64, bool, Vec<i64>)> = Vec::new();
    let mut node = |id: i64, lat: f64, lon: f64, tags: &mut dyn Iterator<Item = (&str, &str)>| {
        let Ok(p) = LatLon::new(lat, lon) else { return };
        coords.insert(id, p);
        let (mut name, mut kind) = (None, None);
        for (k, v) in tags {
            match k {
                "name" => name = Some(v.to_string()),
                "shop" => kind = Some(v.to_string()),
                "amenity" if AMENITIES.contains(&v) => kind = Some(v.to_string()),
                _ => {}
            }
        }
        if let Some(kind) = kind {
            features.shops.push(OsmShop { name: name.unwrap_or(kind), pos: p });
        }
    };
    osmpbf::ElementReader::new(std::io::Cursor::new(pbf))
        .for_each(|el| match el {
            osmpbf::Element::Node(n) => node(n.id(), n.lat(), n.lon(), &mut n.tags()),
            osmpbf::Element::DenseNode(n) => node(n.id(), n.lat(), n.lon(), &mut n.tags()),
            osmpbf::Element::Way(w) => {
                let Some((_, b)) = w.tags().find(|(k, _)| *k == "building") else { return };
                if b == "no" {
                    return;
                }
                let refs: Vec<i64> = w.refs().collect();
                if refs.len() >= 4 && refs.first() == refs.last() {
                    ways.push((w.id(), RESIDENTIAL.contains(&b), refs));
                }
            }
            osmpbf::Element::Relation(_) => {}
        })
        .map_err(|e| format!("cannot read the OSM PBF data: {e}"))?;
    for (osm_id, residential, refs) in ways {
        // A footprint with a corner outside the extract is dropped whole: half a wall is worse than none.
        let outline: Option<Vec<LatLon>> = refs.iter().map(|r| coords.get(r).copied()).collect();
        if let Some(outline) = outline {
            features.buildings.push(Footprint { osm_id, residential, outline });
        }
    }
    Ok(features)
}

/// A map and what else the simulator uses from the same extract.
#[derive(Debug, Clone)]
pub struct Area {
    pub map: MapGraph,
    pub features: Features,
    /// The building walls (local metres), worked out on first use and kept: every run in this area (a
    /// `compare` runs several) needs the same.
    walls: OnceLock<Vec<([f64; 2], [f64; 2])>>,
}

impl Area {
    /// A bare graph: no shop points, no buildings.
    pub fn from_map(map: MapGraph) -> Self {
        Self::new(map, Features::default())
    }

    pub fn new(map: MapGraph, features: Features) -> Self {
        Self { map, features, walls: OnceLock::new() }
    }

    /// The walls of the buildings: see [`crate::world::building_walls`].
    pub fn walls(&self) -> &[([f64; 2], [f64; 2])] {
        self.walls.get_or_init(|| crate::world::building_walls(&self.map, &self.features))
    }

    /// Imports the walkable graph and the features of an `.osm.pbf` file.
    pub fn load(path: &Path) -> Result<(Self, ImportSummary), Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadMap { path: path.to_path_buf(), source })?;
        let import = |message: String| Error::ImportMap { path: path.to_path_buf(), message };
        let (map, summary) = MapGraph::from_osm(&bytes).map_err(|e| import(e.to_string()))?;
        let features = read_features(&bytes).map_err(import)?;
        Ok((Self::new(map, features), summary))
    }
}
