//! What travels between the dispatcher and a robot, in domain terms: missions released step by step
//! (VDA 5050 style: a released base the robot may execute and a provisional horizon, each update with an
//! increasing id), instant actions, and what the robot reports back. The `proto` crate converts these to and
//! from the wire; the simulator passes them directly.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::robot::RobotModel;
use crate::{LatLon, NodeId, OrderId};

/// One step of a mission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Increasing within a mission; a step's content never changes once released.
    pub seq: u32,
    /// Part of the base (may be executed) or of the horizon (provisional, shown for planning only).
    pub released: bool,
    pub action: StepAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StepAction {
    /// Drive along `nodes`; `path` is their geometry (one point per node). `corridor_m[k]` is half the usable
    /// width of the way from point k to point k + 1 (one entry per segment, from the map's widths): the robot
    /// keeps its whole body within that distance of the centre line, stepping aside included (VDA 5050's edge
    /// corridor). Empty: no corridor given, the robot keeps its own margins.
    Drive {
        nodes: Vec<NodeId>,
        path: Vec<LatLon>,
        length_m: f64,
        speed_mps: f64,
        /// Absent from records written before corridors: read as none.
        #[serde(default)]
        corridor_m: Vec<f32>,
    },
    /// Take a parcel on board at the shop.
    Pickup { order: OrderId, compartments: u8, service_s: f64 },
    /// Hand a parcel over against the customer's PIN (checked on board against `pin_hash`).
    Dropoff { order: OrderId, pin_hash: String, service_s: f64 },
    /// Hand a parcel whose hand-over failed back to the shop.
    Return { order: OrderId, service_s: f64 },
    /// Charge where the robot stands (its depot) until the battery holds `until_pct`.
    Charge { until_pct: f64 },
}

/// A mission update. Re-sending the same update is harmless: the agent ignores an id it has already applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionUpdate {
    pub mission_id: String,
    pub update_id: u64,
    /// Every step not yet reported finished: the released base first, then the horizon.
    pub steps: Vec<Step>,
}

/// Commands that take effect at once, outside the mission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstantAction {
    Pause,
    Resume,
}

/// Dispatcher -> robot.
#[derive(Debug, Clone, PartialEq)]
pub enum ToRobot {
    Mission(MissionUpdate),
    Instant(InstantAction),
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepOutcome {
    Done,
    /// The customer did not give the right PIN in time; the parcel stays on board.
    HandoverFailed(String),
}

/// First message of a session: the robot's hardware and where its mission stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub model: RobotModel,
    pub mission_id: String,
    pub last_update_id: u64,
    /// Steps finished in the current mission (possibly while offline), in order.
    pub finished: Vec<(u32, StepOutcome)>,
}

/// Periodic state report.
#[derive(Debug, Clone, PartialEq)]
pub struct RobotReport {
    pub pos: LatLon,
    pub heading_deg: f64,
    pub speed_mps: f64,
    pub battery_pct: f64,
    pub last_node: Option<NodeId>,
    pub update_id: u64,
    pub driving: bool,
    pub paused: bool,
}

/// Severity of a robot error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorLevel {
    Warning,
    Fatal,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RobotEvent {
    StepFinished {
        seq: u32,
        outcome: StepOutcome,
    },
    /// The robot cannot pass between two nodes of its route.
    Blocked {
        from: NodeId,
        to: NodeId,
    },
    Error {
        level: ErrorLevel,
        kind: String,
        detail: String,
    },
}

/// Robot -> dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub enum FromRobot {
    Hello(Hello),
    State(RobotReport),
    Event(RobotEvent),
    Ack { update_id: u64 },
}

/// The hash a robot checks a customer's PIN against. Salted with the order id so equal PINs differ.
pub fn pin_hash(order: &OrderId, pin: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"trundle-pin-v1:");
    h.update(order.as_str().as_bytes());
    h.update(b":");
    h.update(pin.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drive_recorded_before_corridors_reads_as_one_without() {
        let old = r#"{"Drive":{"nodes":[1,2],"path":[[43.73,7.42],[43.731,7.42]],"length_m":111.0,"speed_mps":1.6}}"#;
        let a: StepAction = serde_json::from_str(old).expect("an old record reads");
        assert!(matches!(&a, StepAction::Drive { corridor_m, .. } if corridor_m.is_empty()), "{a:?}");
        let new = StepAction::Drive {
            nodes: vec![NodeId(1), NodeId(2)],
            path: vec![LatLon::new(43.73, 7.42).expect("valid"), LatLon::new(43.731, 7.42).expect("valid")],
            length_m: 111.0,
            speed_mps: 1.6,
            corridor_m: vec![1.0],
        };
        let back: StepAction = serde_json::from_str(&serde_json::to_string(&new).expect("writes")).expect("reads");
        assert_eq!(back, new);
    }
}
