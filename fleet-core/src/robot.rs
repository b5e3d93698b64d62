//! Robots as the dispatcher knows them: the model (factsheet), where the robot is, whether it is online, its
//! plan of future stops and the mission released to it.

use serde::{Deserialize, Serialize};

use crate::mission::Step;
use crate::{CoreError, Grams, LatLon, NodeId, OrderId, RobotId, Timestamp};

/// A robot's hardware. Defaults follow real sidewalk robots (about 6 km/h, 20 kg in a couple of compartments).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RobotModel {
    pub max_speed_mps: f64,
    pub compartments: u8,
    pub max_payload: Grams,
    pub battery_wh: f64,
}

impl Default for RobotModel {
    fn default() -> Self {
        Self { max_speed_mps: 1.6, compartments: 2, max_payload: Grams(20_000), battery_wh: 1_000.0 }
    }
}

impl RobotModel {
    /// Checks a factsheet sent by a robot.
    pub fn checked(self) -> Result<Self, CoreError> {
        if !(self.max_speed_mps.is_finite() && self.max_speed_mps > 0.1 && self.max_speed_mps <= 5.0) {
            return Err(CoreError::invalid(format!("max speed {} m/s is outside (0.1, 5]", self.max_speed_mps)));
        }
        if self.compartments == 0 || self.compartments > 16 {
            return Err(CoreError::invalid(format!("compartments {} is outside [1, 16]", self.compartments)));
        }
        if self.max_payload.0 == 0 || self.max_payload.0 > 200_000 {
            return Err(CoreError::invalid(format!("max payload {} g is outside [1, 200000]", self.max_payload.0)));
        }
        if !(self.battery_wh.is_finite() && self.battery_wh > 0.0) {
            return Err(CoreError::invalid("battery capacity must be positive"));
        }
        Ok(self)
    }
}

/// What a stop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StopKind {
    Pickup,
    Dropoff,
    /// Bring a parcel whose hand-over failed back to its shop.
    Return,
}

/// One future stop in a robot's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStop {
    pub kind: StopKind,
    pub order: OrderId,
    pub node: NodeId,
    /// The drive to this stop has been released to the robot.
    pub drive_released: bool,
    /// The stop's own action has been released; the stop can no longer move.
    pub action_released: bool,
}

impl PlanStop {
    pub fn locked(&self) -> bool {
        self.drive_released || self.action_released
    }
}

/// The mission released to a robot. Invariant: `base` holds released steps not yet reported finished, in seq
/// order; every seq is below `next_seq`; `update_id` only grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionState {
    pub mission_id: String,
    pub update_id: u64,
    pub next_seq: u32,
    pub base: Vec<Step>,
    /// Highest update id the robot acknowledged.
    pub acked_update_id: u64,
}

/// A robot as the dispatcher keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Robot {
    pub id: RobotId,
    pub name: String,
    pub depot: LatLon,
    pub model: RobotModel,
    pub pos: LatLon,
    /// The graph node the robot is at or last passed.
    pub node: NodeId,
    pub battery_pct: f64,
    pub online: bool,
    pub paused: bool,
    pub last_seen: Option<Timestamp>,
    pub plan: Vec<PlanStop>,
    pub mission: MissionState,
    /// Orders currently on board.
    pub on_board: Vec<OrderId>,
    /// The robot must have finished every stop by then; `None`: no limit.
    #[serde(default)]
    pub shift_end: Option<Timestamp>,
    /// Out of service since it reported a fatal error, with the error; an operator's resume clears it.
    #[serde(default)]
    pub fault: Option<String>,
    /// On its way to charge or charging; it gets no work until the charge step is done.
    #[serde(default)]
    pub charging: bool,
    /// Handed over to this service area: the robot is no longer this dispatcher's (its record stays as the
    /// trace of where it went). Set only on the record written at the hand-off.
    #[serde(default)]
    pub handed_to: Option<String>,
}

impl Robot {
    /// Why the robot takes no work, when it takes none: "offline", "faulted", "paused" or "charging", in that
    /// order of precedence. `None`: it is available.
    pub fn unavailable(&self) -> Option<&'static str> {
        if !self.online {
            Some("offline")
        } else if self.fault.is_some() {
            Some("faulted")
        } else if self.paused {
            Some("paused")
        } else if self.charging {
            Some("charging")
        } else {
            None
        }
    }
}
