//! Wire <-> domain conversions, in one place. Wire -> domain functions check every field and name the field in
//! their error; domain -> wire functions cannot fail.

use fleet_core::dispatcher::{Quote, Shop};
use fleet_core::mission::{
    ErrorLevel, FromRobot, Hello, InstantAction, MissionUpdate, RobotEvent, RobotReport, Step, StepAction, StepOutcome,
    ToRobot,
};
use fleet_core::order::{DeliveryRequest, Order, OrderStatus, Parcel};
use fleet_core::robot::{Robot, RobotModel};
use fleet_core::{Grams, LatLon, NodeId, OrderId, RobotId, ShopId, Timestamp};

use crate::pb;

/// A field that is missing or bad: the field as the protocol spells it (`delivery.dropoff`), and a message
/// naming it. Servers send the field as a `google.rpc.BadRequest` violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub field: String,
    pub message: String,
}

impl WireError {
    /// A bad `field`; `message` is the whole sentence a person reads.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into() }
    }
    fn field(field: &str, e: impl std::fmt::Display) -> Self {
        Self::new(field, format!("{field}: {e}"))
    }
    fn missing(field: &str) -> Self {
        Self::new(field, format!("{field} is required"))
    }
}

type R<T> = Result<T, WireError>;

/// Longest free-text field accepted from a robot (error details), in bytes.
pub const MAX_TEXT_LEN: usize = 1_000;
/// Most steps a drive may have.
const MAX_PATH: usize = 100_000;

pub fn latlon(field: &str, v: Option<&pb::LatLon>) -> R<LatLon> {
    let v = v.ok_or_else(|| WireError::missing(field))?;
    LatLon::new(v.lat, v.lon).map_err(|e| WireError::field(field, e))
}

pub fn latlon_to_wire(p: LatLon) -> pb::LatLon {
    pb::LatLon { lat: p.lat(), lon: p.lon() }
}

/// An optional timestamp; a present one must be after 1970 with nanos in range.
pub fn timestamp(field: &str, v: Option<&prost_types::Timestamp>) -> R<Option<Timestamp>> {
    let Some(v) = v else { return Ok(None) };
    if v.seconds < 0 || !(0..1_000_000_000).contains(&v.nanos) || v.seconds > 253_402_300_799 {
        return Err(WireError::field(field, format!("{}s {}ns is not a valid time", v.seconds, v.nanos)));
    }
    Ok(Some(Timestamp(v.seconds as u64 * 1000 + v.nanos as u64 / 1_000_000)))
}

pub fn timestamp_to_wire(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: (t.0 / 1000) as i64, nanos: ((t.0 % 1000) * 1_000_000) as i32 }
}

fn opt_ts(t: Option<Timestamp>) -> Option<prost_types::Timestamp> {
    t.map(timestamp_to_wire)
}

pub fn order_id(field: &str, s: &str) -> R<OrderId> {
    OrderId::parse(s).map_err(|e| WireError::field(field, e))
}
pub fn robot_id(field: &str, s: &str) -> R<RobotId> {
    RobotId::parse(s).map_err(|e| WireError::field(field, e))
}
pub fn shop_id(field: &str, s: &str) -> R<ShopId> {
    ShopId::parse(s).map_err(|e| WireError::field(field, e))
}

pub fn parcel(field: &str, v: Option<&pb::Parcel>) -> R<Parcel> {
    let v = v.ok_or_else(|| WireError::missing(field))?;
    let compartments = match v.compartments {
        0 => 1,
        n => u8::try_from(n).map_err(|_| WireError::field(field, format!("{n} compartments is too many")))?,
    };
    Parcel::new(Grams(v.weight_grams), compartments).map_err(|e| WireError::field(field, e))
}

pub fn delivery(v: Option<&pb::Delivery>) -> R<DeliveryRequest> {
    let v = v.ok_or_else(|| WireError::missing("delivery"))?;
    Ok(DeliveryRequest {
        dropoff: latlon("delivery.dropoff", v.dropoff.as_ref())?,
        parcel: parcel("delivery.parcel", v.parcel.as_ref())?,
        ready_at: timestamp("delivery.ready_at", v.ready_at.as_ref())?,
        deliver_by: timestamp("delivery.deliver_by", v.deliver_by.as_ref())?
            .ok_or_else(|| WireError::missing("delivery.deliver_by"))?,
    })
}

pub fn status_to_wire(s: OrderStatus) -> pb::OrderStatus {
    use pb::OrderStatus as W;
    match s {
        OrderStatus::Pending => W::Pending,
        OrderStatus::Assigned => W::Assigned,
        OrderStatus::ToPickup => W::ToPickup,
        OrderStatus::AtPickup => W::AtPickup,
        OrderStatus::InTransit => W::InTransit,
        OrderStatus::AtDropoff => W::AtDropoff,
        OrderStatus::Delivered => W::Delivered,
        OrderStatus::Cancelled => W::Cancelled,
        OrderStatus::Failed => W::Failed,
        OrderStatus::Returning => W::Returning,
        OrderStatus::Returned => W::Returned,
    }
}

/// An order for its shop or an operator (the PIN included).
pub fn order_to_wire(o: &Order) -> pb::Order {
    pb::Order {
        order_id: o.id.to_string(),
        shop_id: o.shop.to_string(),
        status: status_to_wire(o.status) as i32,
        reason: o.reason.clone().unwrap_or_default(),
        pickup: Some(latlon_to_wire(o.pickup.pos)),
        dropoff: Some(latlon_to_wire(o.dropoff.pos)),
        parcel: Some(pb::Parcel {
            weight_grams: o.request.parcel.weight.0,
            compartments: o.request.parcel.compartments.into(),
        }),
        ready_at: Some(timestamp_to_wire(o.ready_at())),
        deliver_by: Some(timestamp_to_wire(o.request.deliver_by)),
        created_at: Some(timestamp_to_wire(o.created_at)),
        updated_at: Some(timestamp_to_wire(o.updated_at)),
        marked_ready: o.marked_ready,
        robot_id: o.robot.as_ref().map(ToString::to_string).unwrap_or_default(),
        robot_position: o.robot_pos.map(latlon_to_wire),
        eta_pickup: opt_ts(o.eta_pickup),
        eta_dropoff: opt_ts(o.eta_dropoff),
        delivered_at: opt_ts(o.delivered_at),
        pin: o.pin.clone(),
        promised_eta: opt_ts(o.promise.map(|p| p.eta)),
        promised_latest: opt_ts(o.promise.map(|p| p.latest)),
        delayed_at: opt_ts(o.delayed_at),
    }
}

pub fn quote_to_wire(q: &Quote) -> pb::Quote {
    pb::Quote {
        feasible: q.feasible,
        reason: q.reason.as_ref().map(ToString::to_string).unwrap_or_default(),
        refusal: q.reason.as_ref().map(|r| r.code().to_owned()).unwrap_or_default(),
        eta_pickup: opt_ts(q.eta_pickup),
        eta_dropoff: opt_ts(q.eta_dropoff),
        eta_latest: opt_ts(q.eta_latest),
        earliest_deliver_by: opt_ts(q.reason.as_ref().and_then(fleet_core::Refusal::earliest)),
    }
}

pub fn robot_to_wire(r: &Robot) -> pb::Robot {
    pb::Robot {
        robot_id: r.id.to_string(),
        name: r.name.clone(),
        depot: Some(latlon_to_wire(r.depot)),
        position: Some(latlon_to_wire(r.pos)),
        battery_pct: r.battery_pct,
        online: r.online,
        paused: r.paused,
        planned_orders: r.plan.iter().map(|s| s.order.to_string()).collect(),
        on_board: r.on_board.iter().map(ToString::to_string).collect(),
        mission_update_id: r.mission.update_id,
        acked_update_id: r.mission.acked_update_id,
        shift_end: opt_ts(r.shift_end),
        fault: r.fault.clone().unwrap_or_default(),
        charging: r.charging,
    }
}

pub fn shop_to_wire(s: &Shop) -> pb::Shop {
    pb::Shop { shop_id: s.id.to_string(), name: s.name.clone(), location: Some(latlon_to_wire(s.place.pos)) }
}

fn text(field: &str, s: &str) -> R<String> {
    if s.len() > MAX_TEXT_LEN {
        return Err(WireError::field(field, format!("{} bytes is over the {MAX_TEXT_LEN}-byte limit", s.len())));
    }
    Ok(s.to_owned())
}

fn finite(field: &str, v: f64) -> R<f64> {
    if v.is_finite() { Ok(v) } else { Err(WireError::field(field, "must be a finite number")) }
}

fn outcome(field: &str, r: &pb::StepResult) -> R<StepOutcome> {
    match pb::StepOutcome::try_from(r.outcome) {
        Ok(pb::StepOutcome::Done) => Ok(StepOutcome::Done),
        Ok(pb::StepOutcome::HandoverFailed) => Ok(StepOutcome::HandoverFailed(text(field, &r.detail)?)),
        Ok(pb::StepOutcome::Unspecified) | Err(_) => {
            Err(WireError::field(field, format!("outcome {} is not a known step outcome", r.outcome)))
        }
    }
}

fn outcome_to_wire(seq: u32, o: &StepOutcome) -> pb::StepResult {
    match o {
        StepOutcome::Done => pb::StepResult { seq, outcome: pb::StepOutcome::Done as i32, detail: String::new() },
        StepOutcome::HandoverFailed(why) => {
            pb::StepResult { seq, outcome: pb::StepOutcome::HandoverFailed as i32, detail: why.clone() }
        }
    }
}

/// A robot's message, checked.
pub fn from_robot(m: pb::RobotMessage) -> R<FromRobot> {
    use pb::robot_message::Msg;
    match m.msg.ok_or_else(|| WireError::missing("msg"))? {
        Msg::Hello(h) => {
            let f = h.factsheet.ok_or_else(|| WireError::missing("hello.factsheet"))?;
            let compartments = u8::try_from(f.compartments)
                .map_err(|_| WireError::field("hello.factsheet.compartments", "too many"))?;
            let model = RobotModel {
                max_speed_mps: f.max_speed_mps,
                compartments,
                max_payload: Grams(f.max_payload_grams),
                battery_wh: f.battery_capacity_wh,
            }
            .checked()
            .map_err(|e| WireError::field("hello.factsheet", e))?;
            if h.mission_id.len() > 200 {
                return Err(WireError::field("hello.mission_id", "too long"));
            }
            if h.finished.len() > 1_000 {
                return Err(WireError::field("hello.finished", "too many entries"));
            }
            let finished =
                h.finished.iter().map(|r| Ok((r.seq, outcome("hello.finished", r)?))).collect::<R<Vec<_>>>()?;
            Ok(FromRobot::Hello(Hello { model, mission_id: h.mission_id, last_update_id: h.last_update_id, finished }))
        }
        Msg::State(s) => Ok(FromRobot::State(RobotReport {
            pos: latlon("state.position", s.position.as_ref())?,
            heading_deg: finite("state.heading_deg", s.heading_deg)?,
            speed_mps: finite("state.speed_mps", s.speed_mps)?,
            battery_pct: {
                let b = finite("state.battery_pct", s.battery_pct)?;
                if !(0.0..=100.0).contains(&b) {
                    return Err(WireError::field("state.battery_pct", format!("{b} is outside [0, 100]")));
                }
                b
            },
            last_node: s.has_last_node.then_some(NodeId(s.last_node)),
            update_id: s.mission_update_id,
            driving: s.driving,
            paused: s.paused,
        })),
        Msg::Event(e) => {
            use pb::robot_event::Event;
            Ok(FromRobot::Event(match e.event.ok_or_else(|| WireError::missing("event.event"))? {
                Event::StepFinished(r) => {
                    RobotEvent::StepFinished { seq: r.seq, outcome: outcome("event.step_finished", &r)? }
                }
                Event::Blocked(b) => RobotEvent::Blocked { from: NodeId(b.from_node), to: NodeId(b.to_node) },
                Event::Error(err) => RobotEvent::Error {
                    level: match pb::ErrorLevel::try_from(err.level) {
                        Ok(pb::ErrorLevel::Warning) => ErrorLevel::Warning,
                        Ok(pb::ErrorLevel::Fatal) => ErrorLevel::Fatal,
                        _ => {
                            return Err(WireError::field(
                                "event.error.level",
                                format!("{} is not a known error level", err.level),
                            ));
                        }
                    },
                    kind: text("event.error.type", &err.r#type)?,
                    detail: text("event.error.detail", &err.detail)?,
                },
            }))
        }
        Msg::Ack(a) => Ok(FromRobot::Ack { update_id: a.update_id }),
    }
}

/// A robot's message for the wire (used by the agent's session client).
pub fn from_robot_to_wire(m: &FromRobot) -> pb::RobotMessage {
    use pb::robot_message::Msg;
    let msg = match m {
        FromRobot::Hello(h) => Msg::Hello(pb::Hello {
            factsheet: Some(pb::Factsheet {
                model: "trundle-kinematic".into(),
                compartments: h.model.compartments.into(),
                max_payload_grams: h.model.max_payload.0,
                max_speed_mps: h.model.max_speed_mps,
                battery_capacity_wh: h.model.battery_wh,
            }),
            mission_id: h.mission_id.clone(),
            last_update_id: h.last_update_id,
            finished: h.finished.iter().map(|(s, o)| outcome_to_wire(*s, o)).collect(),
            robot_id: String::new(),
        }),
        FromRobot::State(s) => Msg::State(pb::RobotState {
            position: Some(latlon_to_wire(s.pos)),
            heading_deg: s.heading_deg,
            speed_mps: s.speed_mps,
            battery_pct: s.battery_pct,
            last_node: s.last_node.map(|n| n.0).unwrap_or_default(),
            has_last_node: s.last_node.is_some(),
            mission_update_id: s.update_id,
            driving: s.driving,
            paused: s.paused,
        }),
        FromRobot::Event(e) => Msg::Event(pb::RobotEvent {
            event: Some(match e {
                RobotEvent::StepFinished { seq, outcome } => {
                    pb::robot_event::Event::StepFinished(outcome_to_wire(*seq, outcome))
                }
                RobotEvent::Blocked { from, to } => {
                    pb::robot_event::Event::Blocked(pb::Blocked { from_node: from.0, to_node: to.0 })
                }
                RobotEvent::Error { level, kind, detail } => pb::robot_event::Event::Error(pb::RobotError {
                    level: match level {
                        ErrorLevel::Warning => pb::ErrorLevel::Warning,
                        ErrorLevel::Fatal => pb::ErrorLevel::Fatal,
                    } as i32,
                    r#type: kind.clone(),
                    detail: detail.clone(),
                }),
            }),
        }),
        FromRobot::Ack { update_id } => Msg::Ack(pb::MissionAck { update_id: *update_id }),
    };
    pb::RobotMessage { msg: Some(msg) }
}

/// A dispatcher message for the wire.
pub fn to_robot_to_wire(m: &ToRobot) -> pb::DispatcherMessage {
    use pb::dispatcher_message::Msg;
    let msg = match m {
        ToRobot::Mission(u) => Msg::Mission(pb::MissionUpdate {
            mission_id: u.mission_id.clone(),
            update_id: u.update_id,
            steps: u.steps.iter().map(step_to_wire).collect(),
        }),
        ToRobot::Instant(a) => Msg::Action(pb::InstantAction {
            r#type: match a {
                InstantAction::Pause => pb::InstantActionType::Pause,
                InstantAction::Resume => pb::InstantActionType::Resume,
            } as i32,
        }),
    };
    pb::DispatcherMessage { msg: Some(msg) }
}

fn step_to_wire(s: &Step) -> pb::Step {
    use pb::step::Action;
    let action = match &s.action {
        StepAction::Drive { nodes, path, length_m, speed_mps, corridor_m } => Action::Drive(pb::Drive {
            nodes: nodes.iter().map(|n| n.0).collect(),
            path: path.iter().copied().map(latlon_to_wire).collect(),
            length_m: *length_m,
            speed_mps: *speed_mps,
            corridor_m: corridor_m.clone(),
        }),
        StepAction::Pickup { order, compartments, service_s } => Action::Pickup(pb::Pickup {
            order_id: order.to_string(),
            compartments: (*compartments).into(),
            service_s: *service_s,
        }),
        StepAction::Dropoff { order, pin_hash, service_s } => Action::Dropoff(pb::Dropoff {
            order_id: order.to_string(),
            pin_sha256: pin_hash.clone(),
            service_s: *service_s,
        }),
        StepAction::Return { order, service_s } => {
            Action::ReturnParcel(pb::Return { order_id: order.to_string(), service_s: *service_s })
        }
        StepAction::Charge { until_pct } => Action::Charge(pb::Charge { until_pct: *until_pct }),
    };
    pb::Step { seq: s.seq, released: s.released, action: Some(action) }
}

fn service(field: &str, v: f64) -> R<f64> {
    let v = finite(field, v)?;
    if !(0.0..=3_600.0).contains(&v) {
        return Err(WireError::field(field, format!("{v} s is outside [0, 3600]")));
    }
    Ok(v)
}

fn step(s: pb::Step) -> R<Step> {
    use pb::step::Action;
    let action = match s.action.ok_or_else(|| WireError::missing("step.action"))? {
        Action::Drive(d) => {
            if d.nodes.len() != d.path.len() || d.nodes.is_empty() || d.nodes.len() > MAX_PATH {
                return Err(WireError::field("step.drive", "nodes and path must be non-empty and of equal length"));
            }
            let segments = d.nodes.len() - 1;
            StepAction::Drive {
                nodes: d.nodes.into_iter().map(NodeId).collect(),
                path: d.path.iter().map(|p| latlon("step.drive.path", Some(p))).collect::<R<_>>()?,
                length_m: finite("step.drive.length_m", d.length_m)?,
                speed_mps: {
                    let v = finite("step.drive.speed_mps", d.speed_mps)?;
                    if v <= 0.0 {
                        return Err(WireError::field("step.drive.speed_mps", "must be positive"));
                    }
                    v
                },
                corridor_m: {
                    if !d.corridor_m.is_empty() && d.corridor_m.len() != segments {
                        return Err(WireError::field(
                            "step.drive.corridor_m",
                            "must be empty or have one entry per segment (one fewer than nodes)",
                        ));
                    }
                    if let Some(w) = d.corridor_m.iter().find(|w| !(w.is_finite() && **w > 0.0 && **w <= 50.0)) {
                        return Err(WireError::field(
                            "step.drive.corridor_m",
                            format!("{w} m is not a half width in (0, 50]"),
                        ));
                    }
                    d.corridor_m
                },
            }
        }
        Action::Pickup(p) => StepAction::Pickup {
            order: order_id("step.pickup.order_id", &p.order_id)?,
            compartments: u8::try_from(p.compartments)
                .map_err(|_| WireError::field("step.pickup.compartments", "too many"))?,
            service_s: service("step.pickup.service_s", p.service_s)?,
        },
        Action::Dropoff(p) => {
            if p.pin_sha256.len() != 64 || !p.pin_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(WireError::field("step.dropoff.pin_sha256", "must be 64 hex digits"));
            }
            StepAction::Dropoff {
                order: order_id("step.dropoff.order_id", &p.order_id)?,
                pin_hash: p.pin_sha256.to_ascii_lowercase(),
                service_s: service("step.dropoff.service_s", p.service_s)?,
            }
        }
        Action::ReturnParcel(p) => StepAction::Return {
            order: order_id("step.return_parcel.order_id", &p.order_id)?,
            service_s: service("step.return_parcel.service_s", p.service_s)?,
        },
        Action::Charge(c) => {
            let v = finite("step.charge.until_pct", c.until_pct)?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(WireError::field("step.charge.until_pct", format!("{v} is outside (0, 100]")));
            }
            StepAction::Charge { until_pct: v }
        }
    };
    Ok(Step { seq: s.seq, released: s.released, action })
}

/// A dispatcher message, checked (used by the agent's session client). `Ok(None)` for a welcome.
pub fn to_robot(m: pb::DispatcherMessage) -> R<Option<ToRobot>> {
    use pb::dispatcher_message::Msg;
    match m.msg.ok_or_else(|| WireError::missing("msg"))? {
        Msg::Welcome(_) => Ok(None),
        Msg::Mission(u) => Ok(Some(ToRobot::Mission(MissionUpdate {
            mission_id: u.mission_id,
            update_id: u.update_id,
            steps: u.steps.into_iter().map(step).collect::<R<_>>()?,
        }))),
        Msg::Action(a) => Ok(Some(ToRobot::Instant(match pb::InstantActionType::try_from(a.r#type) {
            Ok(pb::InstantActionType::Pause) => InstantAction::Pause,
            Ok(pb::InstantActionType::Resume) => InstantAction::Resume,
            _ => {
                return Err(WireError::field("action.type", format!("{} is not a known action", a.r#type)));
            }
        }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_checks_every_field() {
        let good = pb::Delivery {
            dropoff: Some(pb::LatLon { lat: 43.73, lon: 7.42 }),
            parcel: Some(pb::Parcel { weight_grams: 500, compartments: 0 }),
            ready_at: None,
            deliver_by: Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 0 }),
        };
        let d = delivery(Some(&good)).expect("valid");
        assert_eq!(d.parcel.compartments, 1);
        assert_eq!(d.deliver_by, Timestamp(1_800_000_000_000));
        let cases: Vec<(pb::Delivery, &str)> = vec![
            (pb::Delivery { dropoff: None, ..good }, "delivery.dropoff is required"),
            (pb::Delivery { dropoff: Some(pb::LatLon { lat: f64::NAN, lon: 7.0 }), ..good }, "delivery.dropoff"),
            (pb::Delivery { dropoff: Some(pb::LatLon { lat: 91.0, lon: 7.0 }), ..good }, "latitude"),
            (pb::Delivery { parcel: None, ..good }, "delivery.parcel is required"),
            (pb::Delivery { parcel: Some(pb::Parcel { weight_grams: 0, compartments: 1 }), ..good }, "weight"),
            (pb::Delivery { deliver_by: None, ..good }, "delivery.deliver_by is required"),
            (
                pb::Delivery { deliver_by: Some(prost_types::Timestamp { seconds: -5, nanos: 0 }), ..good },
                "not a valid time",
            ),
        ];
        for (bad, want) in cases {
            let err = delivery(Some(&bad)).expect_err(want);
            assert!(err.message.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn robot_messages_round_trip_and_unknown_enums_are_refused() {
        let msgs = [
            FromRobot::Ack { update_id: 7 },
            FromRobot::Event(RobotEvent::StepFinished { seq: 3, outcome: StepOutcome::HandoverFailed("x".into()) }),
            FromRobot::Event(RobotEvent::Blocked { from: NodeId(1), to: NodeId(2) }),
            FromRobot::Event(RobotEvent::Error {
                level: ErrorLevel::Fatal,
                kind: "battery".into(),
                detail: "low".into(),
            }),
        ];
        for m in msgs {
            assert_eq!(from_robot(from_robot_to_wire(&m)).expect("round trip"), m);
        }
        let bad = pb::RobotMessage {
            msg: Some(pb::robot_message::Msg::Event(pb::RobotEvent {
                event: Some(pb::robot_event::Event::StepFinished(pb::StepResult {
                    seq: 1,
                    outcome: 99,
                    detail: String::new(),
                })),
            })),
        };
        assert!(from_robot(bad).is_err());
        assert!(from_robot(pb::RobotMessage { msg: None }).is_err());
    }

    #[test]
    fn missions_round_trip() {
        let order = OrderId::parse("ord-000001").expect("valid");
        let m = ToRobot::Mission(MissionUpdate {
            mission_id: "m-r".into(),
            update_id: 4,
            steps: vec![
                Step {
                    seq: 1,
                    released: true,
                    action: StepAction::Drive {
                        nodes: vec![NodeId(1), NodeId(2)],
                        path: vec![LatLon::new(43.7, 7.4).expect("valid"), LatLon::new(43.71, 7.4).expect("valid")],
                        length_m: 1112.0,
                        speed_mps: 1.6,
                        corridor_m: vec![1.0],
                    },
                },
                Step {
                    seq: 2,
                    released: false,
                    action: StepAction::Dropoff {
                        pin_hash: fleet_core::mission::pin_hash(&order, "1234"),
                        order,
                        service_s: 60.0,
                    },
                },
            ],
        });
        assert_eq!(to_robot(to_robot_to_wire(&m)).expect("round trip"), Some(m));
    }

    #[test]
    fn a_drive_corridor_has_one_positive_half_width_per_segment_or_none() {
        let drive = |corridor_m: Vec<f32>| pb::Step {
            seq: 1,
            released: true,
            action: Some(pb::step::Action::Drive(pb::Drive {
                nodes: vec![1, 2, 3],
                path: vec![
                    pb::LatLon { lat: 43.7, lon: 7.4 },
                    pb::LatLon { lat: 43.701, lon: 7.4 },
                    pb::LatLon { lat: 43.702, lon: 7.4 },
                ],
                length_m: 222.0,
                speed_mps: 1.6,
                corridor_m,
            })),
        };
        for good in [vec![], vec![1.0, 0.5]] {
            let s = step(drive(good.clone())).expect("valid");
            assert!(matches!(s.action, StepAction::Drive { corridor_m, .. } if corridor_m == good));
        }
        for (bad, want) in [
            (vec![1.0], "one entry per segment"),
            (vec![1.0, 1.0, 1.0], "one entry per segment"),
            (vec![1.0, 0.0], "0 m is not a half width"),
            (vec![-1.0, 1.0], "-1 m is not a half width"),
            (vec![1.0, f32::NAN], "NaN m is not a half width"),
            (vec![1.0, 60.0], "60 m is not a half width"),
        ] {
            let err = step(drive(bad)).expect_err(want);
            assert!(err.message.contains(want) && err.message.contains("step.drive.corridor_m"), "{err}");
        }
    }
}
