//! Trundle's robot onboard agent.
//!
//! - [`agent`]: the agent's logic, sans IO: `Agent::handle(now, Input) -> Vec<Output>`. It executes the released
//!   base of its mission step by step, checks the customer's PIN, reports state and step results.
//! - [`platform`]: the [`platform::Platform`] trait the logic drives (real hardware or a simulated body) and
//!   [`platform::KinematicPlatform`], which drives a route at the robot's speed.
//! - [`session`]: the gRPC session client that connects the agent to a dispatcher, reconnecting with backoff.

pub mod agent;
pub mod platform;
pub mod session;
