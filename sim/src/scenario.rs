//! A scenario: the fleet, the shops and the demand of one simulated period, and the seed.

use serde::{Deserialize, Serialize};

/// What to simulate. Shops and customers are drawn from the map's nodes with the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub seed: u64,
    pub robots: usize,
    pub shops: usize,
    /// Orders per hour over all shops (a Poisson stream).
    pub orders_per_hour: f64,
    /// Simulated duration in seconds; orders stop arriving one hour before the end so the last can finish.
    pub duration_s: u64,
    /// Simulation step in milliseconds.
    pub dt_ms: u64,
    /// Customers live at most this far (straight line) from their shop.
    pub delivery_radius_m: f64,
    /// Deliver-by time after placing, minutes (uniform in this range).
    pub deadline_min: (f64, f64),
    /// Time until the shop has packed the parcel, minutes (uniform in this range).
    pub prep_min: (f64, f64),
    /// Simulated wall-clock start, ms since the Unix epoch.
    pub start_ms: u64,
    /// Background plan improvement: every this many simulated seconds (0: off), a search of this many
    /// iterations on a snapshot, run in the driver's thread so the run stays deterministic.
    #[serde(default)]
    pub improve_every_s: u64,
    #[serde(default)]
    pub improve_iterations: u64,
    /// People walking the footways (back and forth along random edges).
    #[serde(default = "default_pedestrians")]
    pub pedestrians: usize,
    /// Physics steps per simulated second (20..=1000); several per tick when `dt_ms` is longer than a step.
    #[serde(default = "default_physics_hz")]
    pub physics_hz: u32,
}

fn default_pedestrians() -> usize {
    200
}
fn default_physics_hz() -> u32 {
    20
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            seed: 1,
            robots: 10,
            shops: 5,
            orders_per_hour: 30.0,
            duration_s: 8 * 3600,
            dt_ms: 1_000,
            delivery_radius_m: 1_500.0,
            deadline_min: (40.0, 75.0),
            prep_min: (2.0, 10.0),
            // 2026-06-05 10:00:00 UTC, a Friday.
            start_ms: 1_780_653_600_000,
            improve_every_s: 30,
            improve_iterations: 300,
            pedestrians: default_pedestrians(),
            physics_hz: default_physics_hz(),
        }
    }
}

impl Scenario {
    /// Refuses scenarios that cannot run.
    pub fn check(&self) -> Result<(), String> {
        if self.robots == 0 || self.robots > 10_000 {
            return Err(format!("robots must be 1..=10000, not {}", self.robots));
        }
        if self.shops == 0 || self.shops > 1_000 {
            return Err(format!("shops must be 1..=1000, not {}", self.shops));
        }
        if !(self.orders_per_hour.is_finite() && self.orders_per_hour >= 0.0) {
            return Err("orders per hour must be a non-negative number".into());
        }
        if self.dt_ms == 0 || self.dt_ms > 10_000 {
            return Err("dt must be 1..=10000 ms".into());
        }
        if !(20..=1_000).contains(&self.physics_hz) {
            return Err(format!("physics rate must be 20..=1000 Hz, not {}", self.physics_hz));
        }
        if self.pedestrians > 100_000 {
            return Err(format!("pedestrians must be at most 100000, not {}", self.pedestrians));
        }
        if self.duration_s == 0 {
            return Err("duration must be positive".into());
        }
        for (name, (a, b)) in [("deadline", self.deadline_min), ("prep", self.prep_min)] {
            if !(a.is_finite() && b.is_finite() && 0.0 <= a && a <= b) {
                return Err(format!("{name} range must be 0 <= low <= high"));
            }
        }
        if self.prep_min.1 >= self.deadline_min.0 {
            return Err("parcels must be ready before the earliest deadline".into());
        }
        Ok(())
    }
}
