//! The dispatcher's error type and its one mapping to a gRPC status. Every status the servers send is built in
//! [`Error::into_status`]: a code, a message for people, and the standard rich error details so that any gRPC
//! client, not only ours, can act on the reason without reading prose: a `google.rpc.ErrorInfo` with a stable
//! reason (and the figures behind a refusal as metadata), and a `google.rpc.BadRequest` field violation when one
//! request field is at fault.

use std::collections::HashMap;

use fleet_core::CoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use trundle_proto::convert::WireError;

/// The `google.rpc.ErrorInfo` domain of every reason this service sends.
pub const ERROR_DOMAIN: &str = "trundle.v1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("invalid request: {0}")]
    Wire(#[from] WireError),
    #[error("missing bearer token: send 'authorization: Bearer <token>'")]
    NoToken,
    #[error("unknown or revoked token")]
    BadToken,
    /// A robot's token was revoked while its session was open.
    #[error("this robot's token was revoked")]
    Revoked,
    #[error("{0}")]
    WrongRole(String),
    /// The robot was handed over to another service area; it belongs there now.
    #[error("robot {robot} was handed over to service area {area}; connect through the router")]
    HandedOver { robot: String, area: String },
    #[error("{0}")]
    RateLimited(String),
    /// A robot opened a session and sent no hello in time.
    #[error("no hello within {0} s")]
    NoHello(u64),
    #[error("storage failed: {0}")]
    Store(String),
    #[error("the dispatcher is shutting down or stopped")]
    Stopped,
    #[error("{0}")]
    Setup(String),
    /// A bug: the core answered a call with a reply of another kind. Logged, answered without detail.
    #[error("unexpected core reply: {0}")]
    Unexpected(String),
}

impl Error {
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::Core(CoreError::not_found(msg))
    }

    fn code(&self) -> Code {
        match self {
            Error::Core(c) => match c {
                CoreError::InvalidArgument(_) | CoreError::BadField { .. } => Code::InvalidArgument,
                CoreError::NotFound(_) => Code::NotFound,
                CoreError::AlreadyExists(_) | CoreError::KeyReused { .. } => Code::AlreadyExists,
                CoreError::FailedPrecondition(_) => Code::FailedPrecondition,
                CoreError::PermissionDenied(_) => Code::PermissionDenied,
                CoreError::ResourceExhausted(_) => Code::ResourceExhausted,
                // An address outside the map or the service area is a bad request; everything else about the fleet
                // is state.
                CoreError::Refused(
                    fleet_core::Refusal::OutOfArea { .. } | fleet_core::Refusal::OutsideServiceArea { .. },
                ) => Code::InvalidArgument,
                CoreError::Refused(_) => Code::FailedPrecondition,
            },
            Error::RateLimited(_) => Code::ResourceExhausted,
            Error::Wire(_) => Code::InvalidArgument,
            Error::NoToken | Error::BadToken | Error::Revoked => Code::Unauthenticated,
            Error::WrongRole(_) => Code::PermissionDenied,
            Error::HandedOver { .. } => Code::Unavailable,
            Error::NoHello(_) => Code::DeadlineExceeded,
            // The write did not happen; the client may retry (with its idempotency key).
            Error::Store(_) | Error::Stopped => Code::Unavailable,
            Error::Setup(_) | Error::Unexpected(_) => Code::Internal,
        }
    }

    /// The stable `google.rpc.ErrorInfo` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Core(c) => c.reason(),
            Error::Wire(_) => "INVALID_FIELD",
            Error::NoToken => "MISSING_TOKEN",
            Error::BadToken => "BAD_TOKEN",
            Error::Revoked => "TOKEN_REVOKED",
            Error::WrongRole(_) => "WRONG_ROLE",
            Error::HandedOver { .. } => "HANDED_OVER",
            Error::RateLimited(_) => "RATE_LIMITED",
            Error::NoHello(_) => "NO_HELLO",
            Error::Store(_) => "STORE_UNAVAILABLE",
            Error::Stopped => "SHUTTING_DOWN",
            Error::Setup(_) | Error::Unexpected(_) => "INTERNAL",
        }
    }

    /// The one place a status is built.
    pub fn into_status(self) -> Status {
        let code = self.code();
        let mut metadata = HashMap::new();
        let mut violation = None;
        match &self {
            Error::Core(c) => {
                if let CoreError::Refused(r) = c {
                    metadata.extend(r.metadata().into_iter().map(|(k, v)| (k.to_owned(), v)));
                }
                if let Some(field) = c.field_at_fault() {
                    violation = Some((field.to_owned(), c.to_string()));
                }
            }
            Error::Wire(w) => violation = Some((w.field.clone(), w.message.clone())),
            Error::HandedOver { area, .. } => {
                metadata.insert("area".to_owned(), area.clone());
            }
            Error::Setup(_) | Error::Unexpected(_) => tracing::error!("internal error: {self}"),
            _ => {}
        }
        let mut details = ErrorDetails::with_error_info(self.reason(), ERROR_DOMAIN, metadata);
        if let Some((field, description)) = violation {
            details.add_bad_request_violation(field, description);
        }
        let msg = match &self {
            // Details of internal failures stay in the log.
            Error::Setup(_) | Error::Unexpected(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let mut status = Status::with_error_details(code, msg, details);
        if let Error::HandedOver { area, .. } = &self
            && let Ok(v) = area.parse()
        {
            status.metadata_mut().insert(trundle_proto::areas::AREA_METADATA, v);
        }
        status
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        e.into_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::Refusal;

    fn details(s: &Status) -> (String, HashMap<String, String>, Vec<(String, String)>) {
        let info = s.get_details_error_info().expect("every status carries an ErrorInfo");
        assert_eq!(info.domain, ERROR_DOMAIN);
        let fields = s
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
            .unwrap_or_default();
        (info.reason, info.metadata, fields)
    }

    #[test]
    fn a_refusal_carries_its_reason_and_figures() {
        let s = Status::from(Error::Core(CoreError::Refused(Refusal::DeadlineTooSoon {
            trip_min: 42,
            late_min: 7,
            earliest: None,
        })));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().starts_with("order refused: too far for the deliver-by time"), "{s:?}");
        let (reason, meta, fields) = details(&s);
        assert_eq!(reason, "DEADLINE_TOO_SOON");
        assert_eq!(meta.get("trip_min").map(String::as_str), Some("42"));
        assert_eq!(meta.get("late_min").map(String::as_str), Some("7"));
        assert!(fields.is_empty());
    }

    #[test]
    fn an_address_outside_the_map_names_the_field() {
        let s = Status::from(Error::Core(CoreError::Refused(Refusal::OutOfArea { distance_m: 900, limit_m: 60 })));
        assert_eq!(s.code(), Code::InvalidArgument);
        let (reason, _, fields) = details(&s);
        assert_eq!(reason, "OUT_OF_AREA");
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].0, "delivery.dropoff");
    }

    #[test]
    fn a_bad_wire_field_is_a_field_violation() {
        let s = Status::from(Error::Wire(WireError::new("delivery.deliver_by", "delivery.deliver_by is required")));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "invalid request: delivery.deliver_by is required");
        let (reason, _, fields) = details(&s);
        assert_eq!(reason, "INVALID_FIELD");
        assert_eq!(fields, vec![("delivery.deliver_by".to_owned(), "delivery.deliver_by is required".to_owned())]);
    }

    #[test]
    fn internal_errors_say_nothing_of_their_cause() {
        let s = Status::from(Error::Setup("cannot open /secret/path".into()));
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.message(), "internal error");
        assert_eq!(details(&s).0, "INTERNAL");
    }
}
