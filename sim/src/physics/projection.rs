//! The equirectangular projection between coordinates and the physics world's local metres (x east, y north)
//! around the map's origin: the same formula fleet-core uses for its own local frame, so `x, y` agree with
//! [`MapGraph::to_xy`](fleet_core::map::MapGraph::to_xy).

use fleet_core::LatLon;

/// Earth radius of fleet-core's local projection, metres (kept equal so our x, y match `MapGraph::to_xy`).
const EARTH_R: f64 = 6_371_008.8;

/// The equirectangular projection around the map's origin.
#[derive(Debug, Clone, Copy)]
pub struct Projection {
    origin: LatLon,
    /// Metres per degree of longitude and of latitude.
    mx: f64,
    my: f64,
}

impl Projection {
    pub fn new(origin: LatLon) -> Self {
        let k = std::f64::consts::PI / 180.0;
        Self { origin, mx: k * EARTH_R * (origin.lat() * k).cos(), my: k * EARTH_R }
    }
    /// The point the local frame is centred on.
    pub fn origin(&self) -> LatLon {
        self.origin
    }
    pub fn to_xy(&self, p: LatLon) -> [f64; 2] {
        [(p.lon() - self.origin.lon()) * self.mx, (p.lat() - self.origin.lat()) * self.my]
    }
    /// The inverse; a point projected from a valid coordinate maps back to a valid one, and anything else (it
    /// would take thousands of km of drift) falls back to the origin.
    pub fn to_latlon(&self, xy: [f64; 2]) -> LatLon {
        LatLon::new(self.origin.lat() + xy[1] / self.my, self.origin.lon() + xy[0] / self.mx).unwrap_or(self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_round_trips_and_matches_fleet_core() {
        let o = LatLon::new(43.73, 7.42).expect("valid");
        let p = LatLon::new(43.7345, 7.4261).expect("valid");
        let proj = Projection::new(o);
        let xy = proj.to_xy(p);
        let back = proj.to_latlon(xy);
        assert!(back.distance_m(p) < 1e-6, "{back:?}");
        assert!((xy[0].hypot(xy[1]) - o.distance_m(p)).abs() < 1.0, "{xy:?}");
    }
}
