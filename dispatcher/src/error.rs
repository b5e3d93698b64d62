//! The dispatcher's error type and its one mapping to a gRPC status.

use fleet_core::CoreError;
use tonic::{Code, Status};
use trundle_proto::convert::WireError;

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
    #[error("{0}")]
    WrongRole(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("storage failed: {0}")]
    Store(String),
    #[error("the dispatcher is shutting down or stopped")]
    Stopped,
    #[error("{0}")]
    Setup(String),
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::Core(c) => match c {
                CoreError::InvalidArgument(_) => Code::InvalidArgument,
                CoreError::NotFound(_) => Code::NotFound,
                CoreError::AlreadyExists(_) => Code::AlreadyExists,
                CoreError::FailedPrecondition(_) => Code::FailedPrecondition,
                CoreError::PermissionDenied(_) => Code::PermissionDenied,
                CoreError::ResourceExhausted(_) => Code::ResourceExhausted,
            },
            Error::RateLimited(_) => Code::ResourceExhausted,
            Error::Wire(_) => Code::InvalidArgument,
            Error::NoToken | Error::BadToken => Code::Unauthenticated,
            Error::WrongRole(_) => Code::PermissionDenied,
            // The write did not happen; the client may retry (with its idempotency key).
            Error::Store(_) | Error::Stopped => Code::Unavailable,
            Error::Setup(_) => Code::Internal,
        };
        let msg = match &e {
            // Details of internal failures stay in the log.
            Error::Setup(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        Status::new(code, msg)
    }
}
