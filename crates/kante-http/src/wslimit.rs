//! A cap on the API's concurrent websockets (`/1.0/events` subscribers and
//! operation websockets: exec, console). Each one keeps a connection, and
//! its fd, open for as long as the client likes; without a cap, idle event
//! subscribers alone took the daemon to `RLIMIT_NOFILE`, and then nothing
//! (not even `GET /1.0`) could be accepted. Beyond the cap a websocket is
//! refused with 503 in the usual error envelope, and the connection closed.
//!
//! The cap is a quarter of the open-file limit (at least 64), or
//! `KANTE_MAX_WEBSOCKETS` when set.

use std::sync::Arc;

use kante_engine::EngineError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The environment variable that overrides the default cap.
pub const MAX_WEBSOCKETS_ENV: &str = "KANTE_MAX_WEBSOCKETS";

/// The websocket slots of one server.
pub struct WsSlots {
    sem: Arc<Semaphore>,
    max: usize,
}

/// One open websocket's slot, given back when dropped.
pub struct WsSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl WsSlots {
    pub fn new(max: usize) -> WsSlots {
        WsSlots {
            sem: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// `KANTE_MAX_WEBSOCKETS` if set (and a positive number), else the default.
    pub fn from_env() -> WsSlots {
        let max = std::env::var(MAX_WEBSOCKETS_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| default_max(nofile_limit()));
        WsSlots::new(max)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more websocket, or 503 when all are taken.
    pub fn take(&self) -> Result<WsSlot, EngineError> {
        self.sem
            .clone()
            .try_acquire_owned()
            .map(WsSlot)
            .map_err(|_| {
                EngineError::Unavailable(format!(
                    "Too many websockets are open (the limit is {}); close some and try again",
                    self.max
                ))
            })
    }
}

/// A quarter of the fds the process may open, at least 64.
pub fn default_max(nofile: u64) -> usize {
    usize::try_from(nofile / 4).unwrap_or(usize::MAX).max(64)
}

/// The soft `RLIMIT_NOFILE` (the daemon raised it to the hard one at start).
fn nofile_limit() -> u64 {
    kante_engine::host::nofile_limit().unwrap_or(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_refused_beyond_the_cap_and_come_back() {
        let slots = WsSlots::new(2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        let e = slots.take().err().expect("third slot refused");
        assert_eq!(e.status(), 503);
        assert!(e.to_string().contains("limit is 2"), "{e}");
        drop(a);
        assert!(slots.take().is_ok());
    }

    #[test]
    fn the_default_follows_the_open_file_limit() {
        assert_eq!(default_max(20_000), 5_000);
        assert_eq!(default_max(1024), 256);
        assert_eq!(default_max(100), 64);
    }
}
