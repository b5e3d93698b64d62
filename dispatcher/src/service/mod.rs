//! The gRPC services. Each handler authenticates, converts the request through `trundle_proto::convert`, calls
//! the core, and converts the answer; errors become statuses in `Error -> Status` only.

pub mod ops;
pub mod orders;
pub mod robots;

use crate::auth::Auth;
use crate::core::CoreHandle;
use crate::limits::Limits;

/// What every service needs.
#[derive(Clone)]
pub struct Ctx {
    pub core: CoreHandle,
    pub auth: Auth,
    pub limits: Limits,
    /// The data directory, where a loaded map is kept ([`crate::mapfile`]).
    pub data_dir: std::path::PathBuf,
    /// Per-RPC times and refusals, for `/metrics`.
    pub rpc: std::sync::Arc<crate::stats::RpcStats>,
    /// The area leader's fencing token (0 with the sled store), told to every robot at the start of its session.
    pub fencing_token: u64,
    /// The service area this dispatcher leads (empty with the sled store), told to robots with the token.
    pub area: String,
    /// The etcd store, when the records live there (hand-offs between areas need it).
    pub etcd: Option<std::sync::Arc<crate::etcd::EtcdStore>>,
}

/// A core reply of the wrong kind for the call: a bug, logged and reported without detail.
pub(crate) fn unexpected(r: fleet_core::dispatcher::Reply) -> tonic::Status {
    crate::error::Error::Unexpected(format!("{r:?}")).into()
}
