//! The planner: who does which order, in what sequence. [`insertion`] places a new order at its cheapest feasible
//! position over every available robot's plan (pickup before drop-off, capacity, deadlines, battery, shifts);
//! [`alns`] is the one search engine that improves routes, run by the benchmark on the Li & Lim / Solomon
//! instances ([`pdptw`]: readers, the problem, an independent checker) and by the dispatcher on the live plans
//! ([`improve`]).

pub mod alns;
pub mod improve;
pub mod insertion;
pub mod pdptw;
