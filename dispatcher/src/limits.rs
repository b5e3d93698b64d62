//! Request limits: a token bucket per caller (shop, robot or operator), and one per robot session for the
//! messages it streams. A caller over its rate gets RESOURCE_EXHAUSTED and nothing it asked for happens; it may
//! retry after a short wait (the bucket refills continuously).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rates and bursts; `Default` suits a small city's fleet on one machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Calls per second each shop, robot or operator may make, sustained, and in a burst.
    pub calls_per_s: f64,
    pub call_burst: f64,
    /// Messages per second one robot session may stream, sustained, and in a burst.
    pub session_msgs_per_s: f64,
    pub session_burst: f64,
    /// HTTP/2 keepalive: a ping this often on every connection, which is closed when the answer takes more than
    /// half as long. Notices a dead robot link even when nothing is sent. `None` sends no pings.
    pub keepalive: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            calls_per_s: 100.0,
            call_burst: 400.0,
            session_msgs_per_s: 50.0,
            session_burst: 200.0,
            keepalive: Some(Duration::from_secs(20)),
        }
    }
}

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn full(burst: f64) -> Self {
        Self { tokens: burst, last: Instant::now() }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buckets per caller.
#[derive(Debug)]
pub struct CallLimiter {
    rate: f64,
    burst: f64,
    // A std lock: held for one map update, never across an `.await`.
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl CallLimiter {
    pub fn new(limits: &Limits) -> Self {
        Self { rate: limits.calls_per_s, burst: limits.call_burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `caller` may make one more call now.
    pub fn allow(&self, caller: &str) -> bool {
        let Ok(mut b) = self.buckets.lock() else {
            return true;
        };
        b.entry(caller.to_owned()).or_insert_with(|| Bucket::full(self.burst)).take(self.rate, self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let l = CallLimiter::new(&Limits { calls_per_s: 0.001, call_burst: 3.0, ..Limits::default() });
        assert!((0..3).all(|_| l.allow("shop:a")));
        assert!(!l.allow("shop:a"), "the burst is spent and the rate is tiny");
        assert!(l.allow("shop:b"), "callers have their own buckets");
    }
}
