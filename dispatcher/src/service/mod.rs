//! The gRPC services. Each handler authenticates, converts the request through `trundle_proto::convert`, calls
//! the core, and converts the answer; errors become statuses in `Error -> Status` only.

pub mod ops;
pub mod orders;
pub mod robots;

use crate::auth::Auth;
use crate::core::CoreHandle;

/// What every service needs.
#[derive(Clone)]
pub struct Ctx {
    pub core: CoreHandle,
    pub auth: Auth,
}
