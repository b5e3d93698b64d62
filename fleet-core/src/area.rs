//! Service areas: when a city is cut into districts, each run by its own dispatcher, an area is a polygon of
//! the map with its shops and robots. A dispatcher that serves one takes shops and drop-offs inside it only
//! (orders stay in their shop's area); robots may stand anywhere, and an idle one can be handed over to another
//! area ([`crate::dispatcher::Input::HandOffRobot`]).

use serde::{Deserialize, Serialize};

use crate::{CoreError, LatLon};

/// A named polygon of the map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceArea {
    pub name: String,
    /// The outline, as (lat, lon) corners, closed or not.
    pub outline: Vec<LatLon>,
}

/// The longest area name.
pub const MAX_AREA_NAME: usize = 64;

impl ServiceArea {
    /// Checks the name ([`ServiceArea::check_name`]) and that the outline has three distinct corners or more.
    pub fn new(name: &str, outline: Vec<LatLon>) -> Result<Self, CoreError> {
        Self::check_name(name)?;
        let mut distinct: Vec<LatLon> = Vec::new();
        for p in &outline {
            if !distinct.contains(p) {
                distinct.push(*p);
            }
        }
        if distinct.len() < 3 {
            return Err(CoreError::invalid(format!(
                "service area {name:?}: an outline needs three distinct corners, it has {}",
                distinct.len()
            )));
        }
        Ok(Self { name: name.to_owned(), outline })
    }

    /// An area's name: 1 to 64 letters, digits, `-`, `_` or `.` (it is part of keys in the store).
    pub fn check_name(name: &str) -> Result<(), CoreError> {
        if name.is_empty()
            || name.len() > MAX_AREA_NAME
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(CoreError::invalid(format!(
                "area {name:?}: 1 to {MAX_AREA_NAME} letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(())
    }

    fn polygon(&self) -> geo::Polygon<f64> {
        let ring: Vec<geo::Coord<f64>> = self.outline.iter().map(|p| geo::coord! { x: p.lon(), y: p.lat() }).collect();
        geo::Polygon::new(geo::LineString::new(ring), Vec::new())
    }

    /// Whether `p` is inside the outline or on its edge.
    pub fn contains(&self, p: LatLon) -> bool {
        use geo::Intersects;
        self.polygon().intersects(&geo::Point::new(p.lon(), p.lat()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(lat: f64, lon: f64) -> LatLon {
        LatLon::new(lat, lon).expect("valid")
    }

    #[test]
    fn a_point_is_inside_its_area_on_its_edge_and_not_beyond() {
        let a = ServiceArea::new("north", vec![ll(43.73, 7.41), ll(43.73, 7.43), ll(43.75, 7.43), ll(43.75, 7.41)])
            .expect("valid");
        assert!(a.contains(ll(43.74, 7.42)));
        assert!(a.contains(ll(43.73, 7.42)), "on the edge");
        assert!(!a.contains(ll(43.72, 7.42)));
        assert!(!a.contains(ll(43.74, 7.44)));
    }

    #[test]
    fn bad_areas_say_why() {
        let e =
            ServiceArea::new("x", vec![ll(43.73, 7.41), ll(43.73, 7.41), ll(43.75, 7.43)]).expect_err("two corners");
        assert!(e.to_string().contains("three distinct corners"), "{e}");
        for bad in ["", "a/b", "north area", &"n".repeat(65)] {
            assert!(ServiceArea::check_name(bad).is_err(), "{bad:?}");
        }
        assert!(ServiceArea::check_name("north-1.a_b").is_ok());
    }
}
