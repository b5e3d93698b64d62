//! Checked values: a coordinate that cannot be NaN or out of range, a weight, a point in time.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

use crate::CoreError;

/// A WGS84 coordinate in degrees. Invariant: both parts are finite, `lat` in [-90, 90], `lon` in [-180, 180].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "(f64, f64)", into = "(f64, f64)")]
pub struct LatLon {
    lat: f64,
    lon: f64,
}

impl LatLon {
    pub fn new(lat: f64, lon: f64) -> Result<Self, CoreError> {
        if !lat.is_finite() || !lon.is_finite() {
            return Err(CoreError::invalid(format!("coordinate ({lat}, {lon}) is not a finite number")));
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(CoreError::invalid(format!("latitude {lat} is outside [-90, 90]")));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(CoreError::invalid(format!("longitude {lon} is outside [-180, 180]")));
        }
        Ok(Self { lat, lon })
    }
    pub fn lat(self) -> f64 {
        self.lat
    }
    pub fn lon(self) -> f64 {
        self.lon
    }
    /// Great-circle distance in metres.
    pub fn distance_m(self, other: LatLon) -> f64 {
        use geo::{Distance, Haversine, Point};
        Haversine.distance(Point::new(self.lon, self.lat), Point::new(other.lon, other.lat))
    }
}

impl TryFrom<(f64, f64)> for LatLon {
    type Error = CoreError;
    fn try_from((lat, lon): (f64, f64)) -> Result<Self, CoreError> {
        LatLon::new(lat, lon)
    }
}
impl From<LatLon> for (f64, f64) {
    fn from(p: LatLon) -> (f64, f64) {
        (p.lat, p.lon)
    }
}
impl fmt::Display for LatLon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6},{:.6}", self.lat, self.lon)
    }
}

/// A weight in grams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Grams(pub u32);

/// A point in time: milliseconds since the Unix epoch. Production stamps it from the system clock, the simulator
/// from its tick counter; the domain only compares and adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_millis(ms: u64) -> Self {
        Self(ms)
    }
    pub fn as_millis(self) -> u64 {
        self.0
    }
    /// `self + secs` (fractional seconds are kept to the millisecond; negative or NaN adds nothing).
    pub fn plus_secs(self, secs: f64) -> Self {
        if secs.is_finite() && secs > 0.0 { Self(self.0.saturating_add((secs * 1000.0).round() as u64)) } else { self }
    }
    /// `self - secs`, never before the epoch (negative or NaN takes nothing).
    pub fn minus_secs(self, secs: f64) -> Self {
        if secs.is_finite() && secs > 0.0 { Self(self.0.saturating_sub((secs * 1000.0).round() as u64)) } else { self }
    }
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_millis() as u64))
    }
    /// Seconds from `earlier` to `self`, negative when `self` is earlier.
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0 as f64 - earlier.0 as f64) / 1000.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latlon_refuses_nan_inf_and_out_of_range() {
        for (lat, lon) in [(f64::NAN, 7.0), (43.0, f64::INFINITY), (90.5, 7.0), (43.0, -180.01)] {
            assert!(LatLon::new(lat, lon).is_err(), "{lat},{lon}");
        }
        let p = LatLon::new(43.7384, 7.4246).expect("Monaco");
        assert!((p.distance_m(p)).abs() < 1e-9);
    }

    #[test]
    fn timestamp_arithmetic() {
        let t = Timestamp(1_000);
        assert_eq!(t.plus_secs(1.5), Timestamp(2_500));
        assert_eq!(t.plus_secs(f64::NAN), t);
        assert_eq!(Timestamp(500).secs_since(t), -0.5);
    }
}
