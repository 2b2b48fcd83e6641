//! The node's wall clock, with a test-only offset.
//!
//! Containers share the host's realtime clock, so clock skew between nodes
//! can only be injected here: every timestamp the node assigns or compares
//! comes from [`Clock::now_ms`], which adds the offset.
//!
//! A clock can also follow tokio's time instead of the system's
//! ([`Clock::following_tokio`]): the deterministic simulation pauses tokio's
//! clock, and a node clock that read `SystemTime` would make every run
//! differ. [`monotonic_now`] is the same choice for `Instant`s.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
enum Source {
    System,
    /// `start_ms` at `origin`, advancing with tokio's clock.
    Tokio {
        start_ms: u64,
        origin: tokio::time::Instant,
    },
}

#[derive(Debug)]
pub struct Clock {
    source: Source,
    offset_ms: AtomicI64,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

impl Clock {
    /// The system's realtime clock.
    pub fn new() -> Clock {
        Clock { source: Source::System, offset_ms: AtomicI64::new(0) }
    }

    /// A clock that reads `start_ms` now and advances with tokio's clock
    /// (virtual under `start_paused`), for deterministic simulations.
    pub fn following_tokio(start_ms: u64) -> Clock {
        let source = Source::Tokio { start_ms, origin: tokio::time::Instant::now() };
        Clock { source, offset_ms: AtomicI64::new(0) }
    }

    /// Milliseconds since the Unix epoch, offset by the injected skew.
    pub fn now_ms(&self) -> u64 {
        let base_ms = match &self.source {
            Source::System => {
                SystemTime::now().duration_since(UNIX_EPOCH).expect("clock is after 1970").as_millis() as i64
            }
            Source::Tokio { start_ms, origin } => {
                (*start_ms).saturating_add(origin.elapsed().as_millis() as u64) as i64
            }
        };
        base_ms.saturating_add(self.offset_ms()).max(0) as u64
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Only reachable through the test hooks (`--test-hooks`).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }
}

/// Now, on tokio's clock: the real monotonic clock in a running node, the
/// virtual one in a simulation on a paused runtime. Liveness and rate
/// limits use it, so that a simulation replays them too.
pub fn monotonic_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_moves_the_clock() {
        let clock = Clock::new();
        let before = clock.now_ms();
        clock.set_offset_ms(3_600_000);
        let skewed = clock.now_ms();
        assert!(skewed >= before + 3_600_000);
        clock.set_offset_ms(-3_600_000);
        assert!(clock.now_ms() + 3_600_000 <= skewed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_following_tokio_moves_only_with_it() {
        let clock = Clock::following_tokio(1_000_000);
        assert_eq!(clock.now_ms(), 1_000_000);
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        assert_eq!(clock.now_ms(), 1_002_500);
        clock.set_offset_ms(-500);
        assert_eq!(clock.now_ms(), 1_002_000);
    }
}
