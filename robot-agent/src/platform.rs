//! The platform a robot agent drives: real hardware or a simulated body. [`KinematicPlatform`] is the simulated
//! one used by the simulator and the demo agent: it follows a path at constant speed and performs loading and
//! unloading in the configured service time. Time is passed in, so it runs in real or simulated time alike.

use fleet_core::{LatLon, Timestamp};

use crate::agent::{PlatformCommand, PlatformEvent, Telemetry};

/// A robot body the agent controls.
pub trait Platform {
    /// Starts a command; it runs until its event is reported or another command replaces it.
    fn execute(&mut self, now: Timestamp, cmd: PlatformCommand);
    /// Advances to `now` (a simulated body moves; hardware reads its sensors) and returns what happened.
    fn poll(&mut self, now: Timestamp) -> Vec<PlatformEvent>;
    fn telemetry(&self) -> Telemetry;
}

/// Battery used per metre driven (percent), and per hour switched on, for the kinematic body.
pub const DRAIN_PCT_PER_M: f64 = 0.0015;
pub const DRAIN_PCT_PER_H: f64 = 1.0;
/// Charging speed at a depot charger, percent per hour (empty to full in two hours).
pub const CHARGE_PCT_PER_H: f64 = 50.0;

#[derive(Debug, Clone)]
enum Task {
    Idle,
    Driving { path: Vec<LatLon>, next: usize, speed: f64 },
    Service { until: Timestamp },
    Charging { until_pct: f64 },
}

/// A body that drives straight between path points at a constant speed.
#[derive(Debug, Clone)]
pub struct KinematicPlatform {
    pos: LatLon,
    heading_deg: f64,
    /// Percent of a full battery; a simulator may set it to start a robot part-charged.
    pub battery_pct: f64,
    task: Task,
    paused: bool,
    last: Timestamp,
    /// Metres driven since start.
    pub odometer_m: f64,
}

impl KinematicPlatform {
    pub fn new(pos: LatLon, now: Timestamp) -> Self {
        Self { pos, heading_deg: 0.0, battery_pct: 100.0, task: Task::Idle, paused: false, last: now, odometer_m: 0.0 }
    }

    fn moving(&self) -> bool {
        matches!(self.task, Task::Driving { .. }) && !self.paused
    }
}

fn lerp(a: LatLon, b: LatLon, f: f64) -> LatLon {
    // Both ends are valid coordinates and f is in [0, 1], so the result is too.
    LatLon::new(a.lat() + (b.lat() - a.lat()) * f, a.lon() + (b.lon() - a.lon()) * f).unwrap_or(a)
}

fn bearing_deg(a: LatLon, b: LatLon) -> f64 {
    let dy = b.lat() - a.lat();
    let dx = (b.lon() - a.lon()) * a.lat().to_radians().cos();
    dx.atan2(dy).to_degrees().rem_euclid(360.0)
}

impl Platform for KinematicPlatform {
    fn execute(&mut self, now: Timestamp, cmd: PlatformCommand) {
        self.poll_inner(now, &mut Vec::new());
        match cmd {
            PlatformCommand::Drive { path, speed_mps, .. } => {
                self.task = Task::Driving { path, next: 0, speed: speed_mps };
            }
            PlatformCommand::Load { service_s, .. } | PlatformCommand::Unload { service_s, .. } => {
                self.task = Task::Service { until: now.plus_secs(service_s) };
            }
            PlatformCommand::Charge { until_pct } => {
                self.task =
                    Task::Charging { until_pct: if until_pct.is_finite() { until_pct.min(100.0) } else { 100.0 } };
            }
            PlatformCommand::Stop => self.task = Task::Idle,
            PlatformCommand::Pause => self.paused = true,
            PlatformCommand::Resume => self.paused = false,
        }
    }

    fn poll(&mut self, now: Timestamp) -> Vec<PlatformEvent> {
        let mut ev = Vec::new();
        self.poll_inner(now, &mut ev);
        ev
    }

    fn telemetry(&self) -> Telemetry {
        let speed_mps = match &self.task {
            Task::Driving { speed, .. } if self.moving() => *speed,
            _ => 0.0,
        };
        Telemetry { pos: self.pos, heading_deg: self.heading_deg, speed_mps, battery_pct: self.battery_pct }
    }
}

impl KinematicPlatform {
    fn poll_inner(&mut self, now: Timestamp, ev: &mut Vec<PlatformEvent>) {
        let dt = now.secs_since(self.last).max(0.0);
        self.last = self.last.max(now);
        self.battery_pct = (self.battery_pct - dt / 3600.0 * DRAIN_PCT_PER_H).max(0.0);
        if self.paused {
            return;
        }
        match &mut self.task {
            Task::Idle => {}
            Task::Service { until } => {
                if now >= *until {
                    self.task = Task::Idle;
                    ev.push(PlatformEvent::ServiceDone);
                }
            }
            Task::Charging { until_pct } => {
                self.battery_pct = (self.battery_pct + dt / 3600.0 * CHARGE_PCT_PER_H).min(100.0);
                if self.battery_pct >= *until_pct {
                    self.task = Task::Idle;
                    ev.push(PlatformEvent::ServiceDone);
                }
            }
            Task::Driving { path, next, speed } => {
                let mut budget = *speed * dt;
                loop {
                    let Some(&target) = path.get(*next) else {
                        self.task = Task::Idle;
                        ev.push(PlatformEvent::Arrived);
                        break;
                    };
                    let d = self.pos.distance_m(target);
                    if d <= budget {
                        budget -= d;
                        self.odometer_m += d;
                        self.battery_pct = (self.battery_pct - d * DRAIN_PCT_PER_M).max(0.0);
                        if d > 0.0 {
                            self.heading_deg = bearing_deg(self.pos, target);
                        }
                        self.pos = target;
                        ev.push(PlatformEvent::Passed { index: *next });
                        *next += 1;
                    } else {
                        if budget > 0.0 {
                            self.heading_deg = bearing_deg(self.pos, target);
                            self.pos = lerp(self.pos, target, budget / d);
                            self.odometer_m += budget;
                            self.battery_pct = (self.battery_pct - budget * DRAIN_PCT_PER_M).max(0.0);
                        }
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives_the_path_at_its_speed() {
        let a = LatLon::new(43.73, 7.42).expect("valid");
        let b = LatLon::new(43.731, 7.42).expect("valid");
        let len = a.distance_m(b);
        let mut p = KinematicPlatform::new(a, Timestamp(0));
        p.execute(Timestamp(0), PlatformCommand::Drive { path: vec![a, b], speed_mps: 2.0, corridor_m: Vec::new() });
        let ev = p.poll(Timestamp(1_000));
        assert_eq!(ev, vec![PlatformEvent::Passed { index: 0 }]);
        assert!((p.telemetry().pos.distance_m(a) - 2.0).abs() < 0.01);
        let half = ((len / 2.0) * 1000.0) as u64;
        assert!(!p.poll(Timestamp(half)).contains(&PlatformEvent::Arrived));
        let ev = p.poll(Timestamp(half * 2 + 1_000));
        assert_eq!(ev, vec![PlatformEvent::Passed { index: 1 }, PlatformEvent::Arrived]);
        assert!((p.odometer_m - len).abs() < 0.01);
        assert!(p.telemetry().battery_pct < 100.0);
    }

    #[test]
    fn service_takes_its_time_and_pause_holds() {
        let a = LatLon::new(43.73, 7.42).expect("valid");
        let mut p = KinematicPlatform::new(a, Timestamp(0));
        p.execute(Timestamp(0), PlatformCommand::Pause);
        p.execute(
            Timestamp(0),
            PlatformCommand::Load { order: fleet_core::OrderId::parse("o").expect("valid"), service_s: 10.0 },
        );
        assert!(p.poll(Timestamp(20_000)).is_empty());
        p.execute(Timestamp(20_000), PlatformCommand::Resume);
        assert_eq!(p.poll(Timestamp(20_001)), vec![PlatformEvent::ServiceDone]);
    }

    #[test]
    fn charging_fills_the_battery_at_the_charger_rate() {
        let a = LatLon::new(43.73, 7.42).expect("valid");
        let mut p = KinematicPlatform::new(a, Timestamp(0));
        p.battery_pct = 50.0;
        p.execute(Timestamp(0), PlatformCommand::Charge { until_pct: 90.0 });
        // 40 points at 50 %/h (less the 1 %/h the robot uses switched on) take a little over 48 minutes.
        assert!(p.poll(Timestamp(47 * 60_000)).is_empty());
        assert_eq!(p.poll(Timestamp(50 * 60_000)), vec![PlatformEvent::ServiceDone]);
        assert!(p.telemetry().battery_pct >= 90.0);
    }
}
