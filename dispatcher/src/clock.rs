//! The production clock: system time in milliseconds, clamped so that the core never sees time go backwards
//! (an NTP step). Two inputs in the same millisecond get the same stamp: time that only moves forward is what
//! the core needs, and stamping each input one millisecond after the last would let core time run ahead of the
//! wall clock whenever more than 1,000 inputs arrive in a second (1,000 robots reporting at 1 Hz already do),
//! skewing deadlines, ETAs and offline limits for as long as the load lasts.
//!
//! [`Clock`] is what the core thread reads; tests drive it with a [`ManualClock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use fleet_core::Timestamp;

/// Where the core thread gets `now` from.
pub trait Clock: Send + 'static {
    fn now(&mut self) -> Timestamp;
}

#[derive(Debug, Default)]
pub struct MonotonicClock {
    last: u64,
}

impl MonotonicClock {
    /// The stamp for an input seen at system time `sys_ms`: never earlier than the last one, never later than
    /// the system time unless the system clock stepped back.
    pub fn stamp(&mut self, sys_ms: u64) -> Timestamp {
        self.last = self.last.max(sys_ms);
        Timestamp(self.last)
    }
}

impl Clock for MonotonicClock {
    fn now(&mut self) -> Timestamp {
        self.stamp(wall_now().0)
    }
}

/// A clock a test sets by hand; clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        Self(Arc::new(AtomicU64::new(at.0)))
    }
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }
    pub fn get(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

impl Clock for ManualClock {
    fn now(&mut self) -> Timestamp {
        self.get()
    }
}

/// System time now, for clients (not monotonic).
pub fn wall_now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: stamps were `max(now, last + 1 ms)`, so 10,000 inputs in one second put core time 9 s
    /// ahead of the wall clock.
    #[test]
    fn no_drift_at_ten_thousand_inputs_a_second() {
        let mut c = MonotonicClock::default();
        let start = 1_780_000_000_000u64;
        let mut last = Timestamp(0);
        // 10,000 inputs spread evenly over one second of system time: ten per millisecond.
        for i in 0..10_000u64 {
            let sys = start + i / 10;
            let t = c.stamp(sys);
            assert!(t >= last, "time never goes backwards");
            assert_eq!(t.0, sys, "core time is the system time, not ahead of it");
            last = t;
        }
    }

    #[test]
    fn a_step_back_of_the_system_clock_is_held_not_followed() {
        let mut c = MonotonicClock::default();
        assert_eq!(c.stamp(5_000), Timestamp(5_000));
        assert_eq!(c.stamp(4_000), Timestamp(5_000));
        assert_eq!(c.stamp(5_001), Timestamp(5_001));
    }

    #[test]
    fn the_real_clock_follows_the_system_time() {
        let mut c = MonotonicClock::default();
        let before = wall_now();
        let a = c.now();
        let b = c.now();
        assert!(b >= a && a >= before && b <= wall_now());
    }
}
