//! The one error type of the domain. Every variant is an expected refusal with a message a person understands;
//! the gRPC adapter maps each variant to exactly one status code.

use thiserror::Error;

/// Why the domain refused a request. Refusals change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    /// The request itself is malformed (bad coordinate, empty id, deadline in the past, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing named does not exist (or is not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// The thing already exists (a second registration of the same id).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well formed but the current state does not allow it (cancel a delivered order,
    /// no robot can make the deadline, an idempotency key reused with another body).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A limit is reached (open orders of a shop); retry after something finished.
    #[error("{0}")]
    ResourceExhausted(String),
}

impl CoreError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn precondition(msg: impl Into<String>) -> Self {
        Self::FailedPrecondition(msg.into())
    }
}
