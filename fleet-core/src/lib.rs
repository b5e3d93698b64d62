//! Trundle's pure domain: typed ids and checked values, the map graph and its router, orders and their state
//! machine, robots and their missions, the assignment policy, and the dispatcher state machine
//! `Dispatcher::handle(now, Input) -> Vec<Output>`.
//!
//! Nothing in this crate does IO: it never reads a clock, a file, the network or a random source. Time and
//! randomness (PINs) come in as data, so the production dispatcher and the simulator run the same code.

pub mod area;
pub mod dispatcher;
pub mod error;
pub mod host;
pub mod ideal;
pub mod ids;
pub mod learn;
pub mod map;
pub mod mission;
pub mod order;
pub mod planner;
pub mod robot;
pub mod routing;
pub mod traffic;
pub mod units;

pub use error::{CoreError, Refusal};
pub use ids::{NodeId, OrderId, RobotId, ShopId};
pub use units::{Grams, LatLon, Timestamp};
