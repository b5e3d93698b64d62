//! Where the core thread's time goes: how long inputs wait in its queue, how long the dispatcher takes per kind
//! of input, how long each flushed store write and each tick take, and how big the groups of one write are.
//! Kept as fixed-size log-scale histograms (constant memory, a few nanoseconds a sample) so the core can record
//! every input of a server that runs for months. Read through `CoreHandle::stats`.

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_core::dispatcher::Input;

/// Four buckets per power of two from 1 us to about 2^32 us (71 minutes); the last bucket takes the rest.
const BUCKETS: usize = 4 * 32 + 1;

/// A histogram of durations in microseconds, with its exact count, sum and maximum.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self { counts: [0; BUCKETS], count: 0, sum_us: 0, max_us: 0 }
    }
}

fn bucket(us: u64) -> usize {
    if us < 2 {
        return 0;
    }
    let log = 63 - u64::from(us.leading_zeros());
    // The two bits below the leading one pick one of four sub-buckets.
    let sub = if log >= 2 { (us >> (log - 2)) & 3 } else { (us << (2 - log)) & 3 };
    ((log * 4 + sub) as usize).min(BUCKETS - 1)
}

/// The upper end of a bucket, in microseconds.
fn upper(b: usize) -> u64 {
    let (log, sub) = ((b / 4) as u32, (b % 4) as u64);
    if log >= 2 { ((4 + sub + 1) << (log - 2)).saturating_sub(1) } else { ((4 + sub + 1) >> (2 - log)).max(1) }
}

impl Histogram {
    /// How many samples are at most `us` (exact at bucket ends, else counted by the bucket's upper end).
    pub fn count_at_most_us(&self, us: u64) -> u64 {
        self.counts.iter().enumerate().filter(|(b, _)| upper(*b) <= us).map(|(_, c)| *c).sum()
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.record_us(us);
    }

    pub fn record_us(&mut self, us: u64) {
        self.counts[bucket(us)] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// The value at quantile `q` (0..=1): the upper end of the bucket it falls in (at most 19% above the true
    /// value), never above the maximum seen. 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64 * q.clamp(0.0, 1.0)).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(b).min(self.max_us);
            }
        }
        self.max_us
    }
}

/// The core thread's figures since it started.
#[derive(Debug, Clone, Default)]
pub struct CoreStats {
    /// From a service queueing an input to the core starting on it.
    pub queued: Histogram,
    /// The dispatcher's `handle`, per kind of input (`place`, `quote`, `robot`, ...).
    pub handle: BTreeMap<&'static str, Histogram>,
    /// One flushed store write (only writes that had records).
    pub write: Histogram,
    /// One periodic tick of the dispatcher.
    pub tick: Histogram,
    /// Inputs per group commit, recorded as if microseconds.
    pub group: Histogram,
    /// Improver proposals applied (better plans installed), and alerts raised for operators, since the start.
    pub proposals_applied: u64,
    pub alerts: u64,
    /// Commands waiting in the core's queue when the figures were read.
    pub queue_depth: u64,
}

/// What the services saw, for `/metrics`: each RPC's wall time from the request to the answer, and refusals by
/// method and stable reason (a place refused, a quote that says why it cannot be met).
#[derive(Debug, Default)]
pub struct RpcStats {
    inner: std::sync::Mutex<RpcInner>,
}

#[derive(Debug, Default, Clone)]
pub struct RpcInner {
    pub calls: BTreeMap<&'static str, Histogram>,
    pub refusals: BTreeMap<(&'static str, String), u64>,
}

impl RpcStats {
    pub fn record(&self, method: &'static str, took: Duration, refused: Option<String>) {
        let mut g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.calls.entry(method).or_default().record(took);
        if let Some(reason) = refused {
            *g.refusals.entry((method, reason)).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> RpcInner {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// A short name for the kind of an input.
pub fn kind(input: &Input) -> &'static str {
    match input {
        Input::RegisterShop { .. } | Input::RegisterRobot { .. } => "register",
        Input::Quote { .. } => "quote",
        Input::PlaceOrder { .. } => "place",
        Input::CancelOrder { .. } => "cancel",
        Input::MarkReady { .. } => "ready",
        Input::NewTrackingLink { .. } => "link",
        Input::Robot { .. } => "robot",
        Input::RobotDisconnected { .. } => "disconnect",
        Input::CloseEdge { .. } | Input::OpenEdge { .. } => "edge",
        Input::PauseRobot { .. } | Input::ResumeRobot { .. } | Input::SetShift { .. } => "robot_ops",
        Input::SetPolicy { .. } => "policy",
        Input::LoadMap { .. } => "map",
        Input::ReassignOrder { .. } => "reassign",
        Input::HandOffRobot { .. } | Input::AdoptRobot { .. } => "hand_off",
        Input::AckAlert { .. } => "alert_ack",
        Input::ProposePlans(_) => "proposal",
        Input::Tick => "tick",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record_us(us);
        }
        assert_eq!(h.count, 10_000);
        assert_eq!(h.max_us, 10_000);
        for (q, truth) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = h.quantile_us(q) as f64;
            assert!(got >= truth && got <= truth * 1.19, "q{q}: {got} against {truth}");
        }
        assert_eq!(h.quantile_us(1.0), 10_000);
        assert_eq!(Histogram::default().quantile_us(0.99), 0);
    }

    #[test]
    fn buckets_grow_monotonically() {
        let mut last = 0;
        for us in [0u64, 1, 2, 3, 4, 5, 7, 8, 100, 1_000, 65_536, 1 << 40, u64::MAX] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            assert!(upper(b) >= us.min(upper(BUCKETS - 1)), "{us} above bucket {b}'s upper end {}", upper(b));
            last = b;
        }
    }
}
