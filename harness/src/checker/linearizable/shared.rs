//! What the searches of one check share: the next key to take, whether
//! helper threads were started, and when the first anomaly was proven.

use super::AfterAnomaly;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the searches of one check share: the next key to take, whether
/// helper threads were started, and when the first anomaly was proven.
pub(super) struct Shared {
    started: Instant,
    keys: usize,
    pub(super) next_key: AtomicUsize,
    helpers_started: AtomicBool,
    /// From `started` to the first proven anomaly; `u64::MAX` while none is.
    first_anomaly_ns: AtomicU64,
    after_anomaly: AfterAnomaly,
}

/// How long the calling thread checks alone before helper threads join
/// it. Starting and joining a thread costs tens of microseconds (more on a
/// busy machine, where it waits to be scheduled), more than most small
/// histories take in all; past this, the helpers pay for themselves.
const HELPERS_AFTER: Duration = Duration::from_micros(300);

/// When a check started, and when it proved its first anomaly
/// (`u64::MAX`: not yet): what the search of a later group of keys
/// carries on from, so that [`AfterAnomaly`] spans the whole check.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    started: Instant,
    first_anomaly_ns: u64,
}

impl Shared {
    pub(super) fn new(after_anomaly: AfterAnomaly, keys: usize) -> Shared {
        Shared::resume(after_anomaly, keys, Clock { started: Instant::now(), first_anomaly_ns: u64::MAX })
    }

    /// The search of `keys` more keys of a check that began at `clock`.
    pub(super) fn resume(after_anomaly: AfterAnomaly, keys: usize, clock: Clock) -> Shared {
        Shared {
            started: clock.started,
            keys,
            next_key: AtomicUsize::new(0),
            helpers_started: AtomicBool::new(false),
            first_anomaly_ns: AtomicU64::new(clock.first_anomaly_ns),
            after_anomaly,
        }
    }

    pub(super) fn clock(&self) -> Clock {
        Clock { started: self.started, first_anomaly_ns: self.first_anomaly_ns.load(Ordering::Relaxed) }
    }

    /// True once, when helpers should start: keys are left to take and
    /// the check has run alone for [`HELPERS_AFTER`].
    pub(super) fn helpers_wanted(&self) -> bool {
        !self.helpers_started.load(Ordering::Relaxed)
            && self.next_key.load(Ordering::Relaxed) < self.keys
            && self.started.elapsed() >= HELPERS_AFTER
            && !self.helpers_started.swap(true, Ordering::Relaxed)
    }

    pub(super) fn anomaly_proven(&self) {
        let now_ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.first_anomaly_ns.fetch_min(now_ns, Ordering::Relaxed);
    }

    /// Why no key may be searched any further, if none may. One relaxed
    /// load while no anomaly is proven: cheap enough to ask often.
    pub(super) fn cut(&self) -> Option<String> {
        let anomaly_ns = self.first_anomaly_ns.load(Ordering::Relaxed);
        if anomaly_ns == u64::MAX {
            return None;
        }
        match self.after_anomaly {
            AfterAnomaly::SearchAll => None,
            AfterAnomaly::Stop => Some("another key is already not linearizable".into()),
            AfterAnomaly::Share(total) => {
                let since_ns = (self.started.elapsed().as_nanos() as u64).saturating_sub(anomaly_ns);
                (u128::from(since_ns) > total.as_nanos()).then(|| {
                    format!("another key is already not linearizable, and the {total:?} shared after it ran out")
                })
            }
        }
    }
}
