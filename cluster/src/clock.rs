//! The node's wall clock, with a test-only offset.
//!
//! Containers share the host's realtime clock, so clock skew between nodes
//! can only be injected here: every timestamp the node assigns or compares
//! comes from [`Clock::now_ms`], which adds the offset.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock::default()
    }

    /// Milliseconds since the Unix epoch, offset by the injected skew.
    pub fn now_ms(&self) -> u64 {
        let real_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock is after 1970").as_millis() as i64;
        real_ms.saturating_add(self.offset_ms()).max(0) as u64
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Only reachable through the test hooks (`--test-hooks`).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }
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
}
