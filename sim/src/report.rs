//! The summary of a run: what happened to every order, how fast deliveries were, how much the fleet drove.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::Scenario;
use crate::physics::Collisions;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub map_nodes: usize,
    pub orders_requested: usize,
    /// Refused at placement, by reason.
    pub refused: BTreeMap<String, usize>,
    pub placed: usize,
    pub delivered: usize,
    pub on_time: usize,
    pub late: usize,
    pub failed: usize,
    pub returned: usize,
    /// Placed orders not in a terminal state at the end.
    pub open_at_end: usize,
    /// Minutes from placing to hand-over, over delivered orders.
    pub delivery_min_mean: f64,
    pub delivery_min_p50: f64,
    pub delivery_min_p90: f64,
    pub distance_km: f64,
    /// Battery used over the fleet, percent of one battery (summed over robots).
    pub energy_used_pct: f64,
    /// Contacts between a robot and something else, from the physics engine, one per contact start.
    pub collisions: Collisions,
    /// Times something came closer than 0.5 m ahead of a driving robot.
    pub near_misses: u64,
    /// Times a robot was held up by an obstacle for longer than the blocked threshold.
    pub blocked_events: u64,
    /// Times a robot stepped aside around something in its way.
    pub sidesteps: u64,
    pub deliveries_per_robot_hour: f64,
    /// Background improvements applied, and the planned travel they saved (minutes).
    pub improvements: usize,
    pub improvement_saved_min: f64,
    pub ticks: u64,
    pub physics_steps: u64,
}

impl Report {
    pub fn on_time_rate(&self) -> f64 {
        if self.delivered == 0 { 0.0 } else { self.on_time as f64 / self.delivered as f64 }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        writeln!(f, "Trundle simulation summary")?;
        writeln!(
            f,
            "  scenario         seed {}, {} robots, {} shops, {:.1} orders/h, {:.1} h, dt {} ms",
            s.seed,
            s.robots,
            s.shops,
            s.orders_per_hour,
            s.duration_s as f64 / 3600.0,
            s.dt_ms
        )?;
        writeln!(f, "  physics          {} Hz, {} pedestrians", s.physics_hz, s.pedestrians)?;
        writeln!(f, "  map              {} nodes", self.map_nodes)?;
        writeln!(f, "  orders requested {}", self.orders_requested)?;
        writeln!(f, "  orders placed    {}", self.placed)?;
        for (why, n) in &self.refused {
            writeln!(f, "  refused          {n} ({why})")?;
        }
        writeln!(
            f,
            "  delivered        {} ({} on time, {} late; on-time rate {:.1}%)",
            self.delivered,
            self.on_time,
            self.late,
            100.0 * self.on_time_rate()
        )?;
        writeln!(f, "  failed           {}", self.failed)?;
        writeln!(f, "  returned         {}", self.returned)?;
        writeln!(f, "  open at end      {}", self.open_at_end)?;
        writeln!(
            f,
            "  delivery time    mean {:.1} min, p50 {:.1} min, p90 {:.1} min",
            self.delivery_min_mean, self.delivery_min_p50, self.delivery_min_p90
        )?;
        writeln!(f, "  fleet distance   {:.2} km", self.distance_km)?;
        writeln!(f, "  energy used      {:.1}% of a battery over the fleet", self.energy_used_pct)?;
        let c = &self.collisions;
        writeln!(
            f,
            "  collisions       {} (robot-robot {}, robot-pedestrian {}, robot-static {})",
            c.total(),
            c.robot_robot,
            c.robot_pedestrian,
            c.robot_static
        )?;
        writeln!(f, "  near misses      {}", self.near_misses)?;
        writeln!(f, "  blocked          {} (sidesteps {})", self.blocked_events, self.sidesteps)?;
        writeln!(f, "  deliveries/robot-hour {:.2}", self.deliveries_per_robot_hour)?;
        writeln!(
            f,
            "  plan improvements {} applied, {:.1} min of planned travel saved",
            self.improvements, self.improvement_saved_min
        )?;
        write!(f, "  simulated ticks  {} ({} physics steps)", self.ticks, self.physics_steps)
    }
}
