//! The one error type of the domain, and the typed reasons an order cannot be served. Every variant is an
//! expected refusal with a message a person understands and a stable reason code ([`CoreError::reason`]) a
//! program can act on; the gRPC adapter maps each variant to exactly one status code and sends the reason as
//! `google.rpc.ErrorInfo` (and a named field as a `google.rpc.BadRequest` violation).

use std::fmt;

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why the domain refused a request. Refusals change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    /// The request itself is malformed, in a way no single field explains (a proposal naming a robot twice).
    #[error("{0}")]
    InvalidArgument(String),
    /// One field of the request is malformed: `field` names it as the protocol spells it
    /// (`delivery.deliver_by`), so a client can point at it.
    #[error("{message}")]
    BadField { field: &'static str, message: String },
    /// The thing named does not exist (or is not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// The thing already exists (a second registration of the same id).
    #[error("{0}")]
    AlreadyExists(String),
    /// An idempotency key was used before for a different request.
    #[error("idempotency key {key:?} was already used for order {order} with a different request")]
    KeyReused { key: String, order: String },
    /// The request is well formed but the current state does not allow it (cancel a delivered order).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A limit is reached (open orders of a shop); retry after something finished.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The order is well formed but the fleet cannot serve it; the refusal says why, as a value.
    #[error("order refused: {0}")]
    Refused(Refusal),
}

impl CoreError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
    pub fn field(field: &'static str, msg: impl Into<String>) -> Self {
        Self::BadField { field, message: msg.into() }
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn precondition(msg: impl Into<String>) -> Self {
        Self::FailedPrecondition(msg.into())
    }

    /// A stable, machine-readable reason (UPPER_SNAKE_CASE): the refusal's own code for [`CoreError::Refused`],
    /// otherwise one per kind of error. Never changes for a given situation; messages may.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::BadField { .. } => "INVALID_FIELD",
            Self::NotFound(_) => "NOT_FOUND",
            Self::AlreadyExists(_) => "ALREADY_EXISTS",
            Self::KeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            Self::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            Self::Refused(r) => r.code(),
        }
    }

    /// The request field at fault, when one is: a malformed field or an address outside the service area.
    pub fn field_at_fault(&self) -> Option<&'static str> {
        match self {
            Self::BadField { field, .. } => Some(field),
            Self::Refused(Refusal::OutOfArea { .. } | Refusal::OutsideServiceArea { .. }) => Some("delivery.dropoff"),
            _ => None,
        }
    }
}

/// Why no robot can serve an order: the answer of an infeasible quote and of a refused `PlaceOrder`.
/// Figures are rounded to whole units so the type stays comparable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// No robot is online, unpaused, fault-free and not charging.
    NoRobotAvailable,
    /// The parcel needs more compartments than the largest available robot has.
    ParcelTooLarge { compartments: u8, largest: u8 },
    /// The drop-off is too far from every walkable way: outside the area the map covers.
    OutOfArea { distance_m: u32, limit_m: u32 },
    /// The drop-off is outside the service area this dispatcher serves (orders stay in their shop's area).
    OutsideServiceArea { area: String },
    /// No open sidewalk leads from the shop to the drop-off (closures cut it off).
    Unreachable,
    /// Even a robot waiting at the shop would arrive after the deliver-by time less the room plans keep
    /// (`Config::late_buffer_s`, `Config::plan_quantile`). `earliest` is the earliest
    /// deliver-by time the fleet can meet (in five-minute steps, up to four hours later), when there is one:
    /// the shop can place the order again with it.
    DeadlineTooSoon { trip_min: u32, late_min: u32, earliest: Option<Timestamp> },
    /// Every available robot's shift ends before it could deliver.
    ShiftEnds,
    /// No available robot has the battery range for the trip.
    BatteryRange { trip_m: u32 },
    /// The robots could do the trip, but each one's plan is too full to fit it before the deadline. `earliest`
    /// as for [`Refusal::DeadlineTooSoon`].
    FleetBusy { robots: u32, earliest: Option<Timestamp> },
}

impl Refusal {
    /// The stable code of this refusal, as sent in `google.rpc.ErrorInfo.reason` and `Quote.refusal`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRobotAvailable => "NO_ROBOT_AVAILABLE",
            Self::ParcelTooLarge { .. } => "PARCEL_TOO_LARGE",
            Self::OutOfArea { .. } => "OUT_OF_AREA",
            Self::OutsideServiceArea { .. } => "OUTSIDE_SERVICE_AREA",
            Self::Unreachable => "UNREACHABLE",
            Self::DeadlineTooSoon { .. } => "DEADLINE_TOO_SOON",
            Self::ShiftEnds => "SHIFT_ENDS",
            Self::BatteryRange { .. } => "BATTERY_RANGE",
            Self::FleetBusy { .. } => "FLEET_BUSY",
        }
    }

    /// The earliest deliver-by time the fleet can meet, when the refusal is about time and there is one.
    pub fn earliest(&self) -> Option<Timestamp> {
        match self {
            Self::DeadlineTooSoon { earliest, .. } | Self::FleetBusy { earliest, .. } => *earliest,
            _ => None,
        }
    }

    /// The same refusal offering `earliest` (refusals not about time stay as they are).
    pub fn offering(self, at: Option<Timestamp>) -> Self {
        match self {
            Self::DeadlineTooSoon { trip_min, late_min, .. } => {
                Self::DeadlineTooSoon { trip_min, late_min, earliest: at }
            }
            Self::FleetBusy { robots, .. } => Self::FleetBusy { robots, earliest: at },
            other => other,
        }
    }

    /// The figures behind the refusal as (name, value) pairs, for `google.rpc.ErrorInfo.metadata`; an offer as
    /// `earliest_deliver_by` (seconds since the Unix epoch).
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        let mut v = self.figures();
        if let Some(t) = self.earliest() {
            v.push(("earliest_deliver_by", (t.as_millis() / 1000).to_string()));
        }
        v
    }

    fn figures(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::ParcelTooLarge { compartments, largest } => {
                vec![("compartments", compartments.to_string()), ("largest", largest.to_string())]
            }
            Self::OutOfArea { distance_m, limit_m } => {
                vec![("distance_m", distance_m.to_string()), ("limit_m", limit_m.to_string())]
            }
            Self::DeadlineTooSoon { trip_min, late_min, .. } => {
                vec![("trip_min", trip_min.to_string()), ("late_min", late_min.to_string())]
            }
            Self::BatteryRange { trip_m } => vec![("trip_m", trip_m.to_string())],
            Self::OutsideServiceArea { area } => vec![("area", area.clone())],
            Self::FleetBusy { robots, .. } => vec![("robots", robots.to_string())],
            Self::NoRobotAvailable | Self::Unreachable | Self::ShiftEnds => Vec::new(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.say(f)?;
        match self.earliest() {
            Some(t) => {
                let minute = t.as_millis() / 60_000;
                write!(f, "; it can be delivered by {:02}:{:02} UTC", (minute / 60) % 24, minute % 60)
            }
            None => Ok(()),
        }
    }
}

impl Refusal {
    fn say(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRobotAvailable => write!(f, "no robot is available right now"),
            Self::ParcelTooLarge { compartments, largest } => {
                write!(f, "the parcel needs {compartments} compartments; the largest available robot has {largest}")
            }
            Self::OutOfArea { distance_m, limit_m } => {
                write!(f, "the drop-off is {distance_m} m from the nearest walkable way; the limit is {limit_m} m")
            }
            Self::OutsideServiceArea { area } => {
                write!(f, "the drop-off is outside service area {area}, where this shop's orders are delivered")
            }
            Self::Unreachable => write!(f, "the drop-off cannot be reached from the shop on the open sidewalks"),
            Self::DeadlineTooSoon { trip_min, late_min, .. } => write!(
                f,
                "too far for the deliver-by time: the drop-off is {trip_min} min from the shop by sidewalk, so even \
                 a robot waiting at the shop would arrive {late_min} min too late to hand it over by then, with the \
                 room plans keep for delays"
            ),
            Self::ShiftEnds => write!(f, "every available robot's shift ends before it could deliver this order"),
            Self::BatteryRange { trip_m } => {
                write!(f, "no available robot has the battery left for a {:.1} km trip", f64::from(*trip_m) / 1000.0)
            }
            Self::FleetBusy { robots: 1, .. } => {
                write!(f, "the one available robot is busy or full: it cannot fit it in before the deliver-by time")
            }
            Self::FleetBusy { robots, .. } => write!(
                f,
                "all {robots} available robots are busy or full: none can fit it in before the deliver-by time"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_own_stable_code() {
        let all = [
            Refusal::NoRobotAvailable,
            Refusal::ParcelTooLarge { compartments: 3, largest: 2 },
            Refusal::OutOfArea { distance_m: 500, limit_m: 60 },
            Refusal::OutsideServiceArea { area: "north".into() },
            Refusal::Unreachable,
            Refusal::DeadlineTooSoon { trip_min: 40, late_min: 10, earliest: None },
            Refusal::ShiftEnds,
            Refusal::BatteryRange { trip_m: 4200 },
            Refusal::FleetBusy { robots: 3, earliest: None },
        ];
        let codes: std::collections::BTreeSet<&str> = all.iter().map(Refusal::code).collect();
        assert_eq!(codes.len(), all.len());
        for r in &all {
            assert!(r.code().bytes().all(|b| b.is_ascii_uppercase() || b == b'_'), "{}", r.code());
            assert_eq!(CoreError::Refused(r.clone()).reason(), r.code());
        }
        assert_eq!(
            CoreError::Refused(Refusal::BatteryRange { trip_m: 4200 }).to_string(),
            "order refused: no available robot has the battery left for a 4.2 km trip"
        );
        assert_eq!(
            Refusal::FleetBusy { robots: 1, earliest: None }.to_string(),
            "the one available robot is busy or full: it cannot fit it in before the deliver-by time"
        );
        assert!(
            Refusal::FleetBusy { robots: 2, earliest: None }
                .to_string()
                .starts_with("all 2 available robots are busy or full")
        );
        assert_eq!(CoreError::field("pin", "bad").field_at_fault(), Some("pin"));
    }
}
