//! Trundle's simulator. [`run`] plays a [`Scenario`] in a deterministic lockstep loop with a simulated clock:
//! the real fleet-core [`Dispatcher`](fleet_core::dispatcher::Dispatcher) and one real robot-agent
//! [`Agent`](robot_agent::agent::Agent) per robot, each driving a rapier3d body of the [`physics`] world among
//! walking pedestrians, shops placing a seeded stream of orders, customers typing their PIN at the door. The
//! result is a [`Report`], with the fleet's collisions, near misses and blocked robots.
//!
//! Same scenario and seed, same report, byte for byte: every random draw comes from one seeded ChaCha stream,
//! every collection that reaches the report is ordered, and time is tick x dt.
//!
//! [`remote`] is the other driver: the same simulated fleet as real robot-agent gRPC sessions against a running
//! dispatcher.

pub mod load;
pub mod physics;
pub mod remote;
pub mod report;
pub mod scenario;
pub mod world;

pub use report::Report;
pub use scenario::Scenario;
pub use world::run;
