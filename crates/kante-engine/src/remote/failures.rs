//! Failed trust attempts (a wrong password or token) per source address:
//! past [`FAILURE_LIMIT`] within [`FAILURE_WINDOW`], every attempt from
//! that address is refused, the right secret included, until the oldest
//! failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock;

/// Failed attempts allowed per address within [`FAILURE_WINDOW`].
pub const FAILURE_LIMIT: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

pub struct Failures {
    window: Duration,
    by_address: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Default for Failures {
    fn default() -> Self {
        Failures::with_window(FAILURE_WINDOW)
    }
}

impl Failures {
    pub fn with_window(window: Duration) -> Self {
        Failures {
            window,
            by_address: Mutex::new(HashMap::new()),
        }
    }

    fn prune(&self, q: &mut VecDeque<Instant>, now: Instant) {
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
    }

    /// Whether `ip` has used up its attempts for now.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = lock(&self.by_address);
        let Some(q) = map.get_mut(&ip) else {
            return false;
        };
        self.prune(q, now);
        if q.is_empty() {
            map.remove(&ip);
            return false;
        }
        q.len() >= FAILURE_LIMIT
    }

    /// Counts one failed attempt from `ip`.
    pub fn record(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut map = lock(&self.by_address);
        // Bounded: addresses whose failures all left the window go.
        if map.len() > 4096 {
            map.retain(|_, q| {
                self.prune(q, now);
                !q.is_empty()
            });
        }
        let q = map.entry(ip).or_default();
        self.prune(q, now);
        q.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_past_the_limit_until_the_window_passes() {
        let f = Failures::with_window(Duration::from_millis(200));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..FAILURE_LIMIT - 1 {
            f.record(a);
        }
        assert!(!f.blocked(a));
        f.record(a);
        assert!(f.blocked(a));
        // Per address: another one is not blocked.
        assert!(!f.blocked(b));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!f.blocked(a));
    }
}
