//! The production clock: system time in milliseconds, clamped to be strictly increasing so that the core never
//! sees time go backwards (NTP steps) or stand still between two inputs.

use std::time::{SystemTime, UNIX_EPOCH};

use fleet_core::Timestamp;

#[derive(Debug, Default)]
pub struct MonotonicClock {
    last: u64,
}

impl MonotonicClock {
    pub fn now(&mut self) -> Timestamp {
        let sys = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        self.last = sys.max(self.last + 1);
        Timestamp(self.last)
    }
}

/// System time now, for clients (not monotonic).
pub fn wall_now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn strictly_increasing() {
        let mut c = super::MonotonicClock::default();
        let a = c.now();
        let b = c.now();
        assert!(b > a);
    }
}
