//! Trundle protocol v1 (package `trundle.v1`): the generated gRPC code behind [`pb`], the descriptor set for
//! server reflection, and in [`convert`] the only conversions between wire and domain types. Wire data is
//! checked once, here; a missing or bad field is a [`convert::WireError`] that servers turn into
//! `INVALID_ARGUMENT`, never a panic.

pub mod convert;

/// Generated protobuf and gRPC code. Wire types stay behind this module and the service/client adapters.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("trundle.v1");
}

/// The part of etcd's v3 API the etcd store uses (package `etcdserverpb`: KV and Lease clients).
pub mod etcd {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("etcdserverpb");
}

/// Re-exported so clients need no prost-types dependency of their own.
pub use prost_types;

/// The encoded descriptor set of every Trundle proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("trundle_descriptor");

/// Response metadata of service areas ([`AREA_METADATA`], [`LEADER_METADATA`]).
pub mod areas {
    /// On an `UNAVAILABLE` status: the robot now belongs to this service area (it was handed over); its agent
    /// reconnects through its entry point (the router), which sends it to that area's leader.
    pub const AREA_METADATA: &str = "trundle-area";
    /// On an `UNAVAILABLE` status from `trundle-router`: the `host:port` of the leader of the robot's area; the
    /// agent connects there next.
    pub const LEADER_METADATA: &str = "trundle-leader";
}
