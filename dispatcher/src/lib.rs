//! Trundle's dispatcher: the gRPC server around one fleet-core [`Dispatcher`](fleet_core::dispatcher::Dispatcher).
//!
//! - [`core`]: the one thread that owns the dispatcher core and the store; every input goes through it, and
//!   every record an input produces is written and flushed before anything is answered. Beside it, the
//!   improver thread searches plan snapshots for better plans and proposes them back as inputs.
//! - [`store`]: the [`store::Store`] trait and its sled implementation.
//! - [`auth`]: bearer tokens for the shop, robot and operator roles, stored hashed.
//! - [`service`]: the three gRPC services; each converts the request, calls the core, maps errors in one place.
//! - [`server`]: wiring, health, reflection, graceful shutdown: `serve(listener, options, shutdown)`.

pub mod areas;
pub mod auth;
pub mod clock;
pub mod core;
pub mod error;
pub mod etcd;
pub mod http;
pub mod limits;
pub mod mapfile;
pub mod router;
pub mod server;
pub mod service;
pub mod stats;
pub mod store;
pub mod web;

pub use error::Error;
pub use server::{Options, Prepared, open, serve};
