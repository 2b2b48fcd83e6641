//! Generators: what operations to run, on which keys, how fast, for how
//! long. Pure and synchronous (one seed drives them); the runner asks for
//! the next operation whenever a process is free, and tells the generator
//! every outcome, so sessions can carry what they have seen.
//!
//! Combinators wrap a generator: [`Limit`] (a count), [`TimeLimit`],
//! [`Stagger`] (a target rate for the whole run). [`KeySpace`] hands out
//! independent keys, each good for a bounded number of operations, which
//! keeps linearizability checking tractable.

use crate::client::{Consistency, Op, Outcome};
use crate::history::EventType;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// What the runner tells a generator when it asks.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// Time since the run (or phase) started.
    pub elapsed: Duration,
    /// The process that will run the operation.
    pub process: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run `op`, not before `at` (time since start).
    Op { op: Op, at: Duration },
    /// Nothing more, ever.
    Done,
}

pub trait Generator: Send {
    fn next(&mut self, ctx: &Context) -> Next;

    /// Every completion of an operation this generator produced.
    fn observe(&mut self, _process: u64, _op: &Op, _outcome: &Outcome) {}

    /// Every key an operation was generated for (for final reads).
    fn keys_touched(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }
}

impl<G: Generator + ?Sized> Generator for Box<G> {
    fn next(&mut self, ctx: &Context) -> Next {
        (**self).next(ctx)
    }

    fn observe(&mut self, process: u64, op: &Op, outcome: &Outcome) {
        (**self).observe(process, op, outcome)
    }

    fn keys_touched(&self) -> BTreeSet<String> {
        (**self).keys_touched()
    }
}

/// At most `remaining` operations.
pub struct Limit<G> {
    pub inner: G,
    pub remaining: u64,
}

impl<G: Generator> Generator for Limit<G> {
    fn next(&mut self, ctx: &Context) -> Next {
        if self.remaining == 0 {
            return Next::Done;
        }
        let next = self.inner.next(ctx);
        if matches!(next, Next::Op { .. }) {
            self.remaining -= 1;
        }
        next
    }

    fn observe(&mut self, process: u64, op: &Op, outcome: &Outcome) {
        self.inner.observe(process, op, outcome)
    }

    fn keys_touched(&self) -> BTreeSet<String> {
        self.inner.keys_touched()
    }
}

/// No operation scheduled at or after `limit`.
pub struct TimeLimit<G> {
    pub inner: G,
    pub limit: Duration,
}

impl<G: Generator> Generator for TimeLimit<G> {
    fn next(&mut self, ctx: &Context) -> Next {
        if ctx.elapsed >= self.limit {
            return Next::Done;
        }
        match self.inner.next(ctx) {
            Next::Op { at, .. } if at >= self.limit => Next::Done,
            next => next,
        }
    }

    fn observe(&mut self, process: u64, op: &Op, outcome: &Outcome) {
        self.inner.observe(process, op, outcome)
    }

    fn keys_touched(&self) -> BTreeSet<String> {
        self.inner.keys_touched()
    }
}

/// Spaces operations `interval` apart across all processes: a target rate
/// of `1 / interval` operations per second for the whole run.
pub struct Stagger<G> {
    inner: G,
    interval: Duration,
    next_at: Duration,
}

impl<G> Stagger<G> {
    pub fn per_second(inner: G, rate: f64) -> Stagger<G> {
        assert!(rate > 0.0, "a rate is positive");
        Stagger { inner, interval: Duration::from_secs_f64(1.0 / rate), next_at: Duration::ZERO }
    }
}

impl<G: Generator> Generator for Stagger<G> {
    fn next(&mut self, ctx: &Context) -> Next {
        match self.inner.next(ctx) {
            Next::Op { op, at } => {
                // Never before the slot; a run that fell behind does not burst.
                let at = at.max(ctx.elapsed).max(self.next_at);
                self.next_at = at + self.interval;
                Next::Op { op, at }
            }
            Next::Done => Next::Done,
        }
    }

    fn observe(&mut self, process: u64, op: &Op, outcome: &Outcome) {
        self.inner.observe(process, op, outcome)
    }

    fn keys_touched(&self) -> BTreeSet<String> {
        self.inner.keys_touched()
    }
}

/// Independent keys: `active` keys at a time, each retired after
/// `ops_per_key` operations and replaced by a fresh one.
#[derive(Clone, Debug)]
pub struct KeySpace {
    prefix: String,
    ops_per_key: usize,
    active: Vec<(String, usize)>,
    next_id: u64,
    touched: BTreeSet<String>,
}

impl KeySpace {
    pub fn new(prefix: &str, active: usize, ops_per_key: usize) -> KeySpace {
        assert!(active > 0 && ops_per_key > 0, "a key space needs keys and operations per key");
        let mut keys =
            KeySpace { prefix: prefix.into(), ops_per_key, active: Vec::new(), next_id: 0, touched: BTreeSet::new() };
        for _ in 0..active {
            let key = keys.fresh();
            keys.active.push((key, 0));
        }
        keys
    }

    fn fresh(&mut self) -> String {
        self.next_id += 1;
        format!("{}{}", self.prefix, self.next_id)
    }

    /// A random active key; retires it once it has had its operations.
    pub fn pick(&mut self, rng: &mut StdRng) -> String {
        let slot = rng.random_range(0..self.active.len());
        let (key, used) = &mut self.active[slot];
        *used += 1;
        let key = key.clone();
        if self.active[slot].1 >= self.ops_per_key {
            let fresh = self.fresh();
            self.active[slot] = (fresh, 0);
        }
        self.touched.insert(key.clone());
        key
    }

    pub fn touched(&self) -> &BTreeSet<String> {
        &self.touched
    }
}

/// Relative weights of each kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mix {
    pub put: u32,
    pub delete: u32,
    pub strong_get: u32,
    pub eventual_get: u32,
    /// Eventual gets carrying the session's `min_timestamp` for the key.
    pub session_get: u32,
}

impl Mix {
    fn total(&self) -> u32 {
        self.put + self.delete + self.strong_get + self.eventual_get + self.session_get
    }
}

/// Random operations of a [`Mix`] over a [`KeySpace`]. Every put writes a
/// value unique in the run (`v<N>`), so a read names the write it saw. A
/// session is a process: it remembers, per key, the largest timestamp it
/// wrote or read, and session gets send it as `min_timestamp`.
pub struct OpMix {
    rng: StdRng,
    mix: Mix,
    keys: KeySpace,
    values: u64,
    ttl_secs: Option<(u32, u32)>,
    sessions: HashMap<(u64, String), u64>,
}

impl OpMix {
    pub fn new(rng: StdRng, mix: Mix, keys: KeySpace) -> OpMix {
        assert!(mix.total() > 0, "a mix needs at least one kind of operation");
        OpMix { rng, mix, keys, values: 0, ttl_secs: None, sessions: HashMap::new() }
    }

    /// Every put carries a TTL drawn from `min..=max` seconds.
    pub fn with_ttl(mut self, min: u32, max: u32) -> OpMix {
        assert!(0 < min && min <= max, "TTLs are whole seconds > 0");
        self.ttl_secs = Some((min, max));
        self
    }

    fn unique_value(&mut self) -> Vec<u8> {
        self.values += 1;
        format!("v{}", self.values).into_bytes()
    }
}

impl Generator for OpMix {
    fn next(&mut self, ctx: &Context) -> Next {
        let key = self.keys.pick(&mut self.rng);
        let Mix { put, delete, strong_get, eventual_get, .. } = self.mix;
        let roll = self.rng.random_range(0..self.mix.total());
        let op = if roll < put {
            let ttl_secs = self.ttl_secs.map(|(min, max)| self.rng.random_range(min..=max));
            Op::Put { key, value: self.unique_value(), ttl_secs }
        } else if roll < put + delete {
            Op::Delete { key }
        } else if roll < put + delete + strong_get {
            Op::Get { key, consistency: Consistency::Strong, min_timestamp: None }
        } else if roll < put + delete + strong_get + eventual_get {
            Op::Get { key, consistency: Consistency::Eventual, min_timestamp: None }
        } else {
            let min_timestamp = self.sessions.get(&(ctx.process, key.clone())).copied();
            Op::Get { key, consistency: Consistency::Eventual, min_timestamp }
        };
        Next::Op { op, at: ctx.elapsed }
    }

    fn observe(&mut self, process: u64, op: &Op, outcome: &Outcome) {
        if let (EventType::Ok, Some(timestamp)) = (outcome.kind, outcome.timestamp) {
            let seen = self.sessions.entry((process, op.key().to_owned())).or_default();
            *seen = (*seen).max(timestamp);
        }
    }

    fn keys_touched(&self) -> BTreeSet<String> {
        self.keys.touched().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn mix() -> Mix {
        Mix { put: 3, delete: 1, strong_get: 2, eventual_get: 1, session_get: 1 }
    }

    fn ops(seed: u64, count: usize) -> Vec<Op> {
        let mut generator = OpMix::new(StdRng::seed_from_u64(seed), mix(), KeySpace::new("k", 3, 5));
        (0..count)
            .map(|i| match generator.next(&Context { elapsed: Duration::ZERO, process: i as u64 % 4 }) {
                Next::Op { op, .. } => op,
                Next::Done => panic!("an op mix never ends"),
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_operations() {
        assert_eq!(ops(9, 500), ops(9, 500));
        assert_ne!(ops(9, 500), ops(10, 500));
    }

    #[test]
    fn put_values_are_unique_and_keys_take_bounded_operations() {
        let all = ops(1, 2_000);
        let values: Vec<&Vec<u8>> =
            all.iter().filter_map(|op| if let Op::Put { value, .. } = op { Some(value) } else { None }).collect();
        let unique: BTreeSet<_> = values.iter().collect();
        assert_eq!(unique.len(), values.len());
        let mut per_key: HashMap<&str, usize> = HashMap::new();
        for op in &all {
            *per_key.entry(op.key()).or_default() += 1;
        }
        assert!(per_key.values().all(|n| *n <= 5), "a key took more than its 5 operations");
        assert!(per_key.len() >= 2_000 / 5);
    }

    #[test]
    fn limits_and_time_limits_end_the_stream() {
        let base = || OpMix::new(StdRng::seed_from_u64(2), mix(), KeySpace::new("k", 2, 10));
        let mut limited = Limit { inner: base(), remaining: 7 };
        let ctx = Context { elapsed: Duration::ZERO, process: 0 };
        assert_eq!((0..20).filter(|_| matches!(limited.next(&ctx), Next::Op { .. })).count(), 7);
        let mut timed = TimeLimit { inner: base(), limit: Duration::from_secs(1) };
        assert!(matches!(timed.next(&ctx), Next::Op { .. }));
        assert_eq!(timed.next(&Context { elapsed: Duration::from_secs(1), process: 0 }), Next::Done);
    }

    #[test]
    fn stagger_holds_the_target_rate() {
        let mut staggered = TimeLimit {
            inner: Stagger::per_second(OpMix::new(StdRng::seed_from_u64(3), mix(), KeySpace::new("k", 2, 10)), 200.0),
            limit: Duration::from_secs(2),
        };
        // Ask as fast as possible: the schedule, not the asking, sets the pace.
        let mut times = Vec::new();
        while let Next::Op { at, .. } = staggered.next(&Context { elapsed: Duration::ZERO, process: 0 }) {
            times.push(at);
        }
        assert!((395..=401).contains(&times.len()), "{} ops in 2 s at 200/s", times.len());
        assert!(times.windows(2).all(|w| w[1] - w[0] >= Duration::from_millis(4)));
    }

    #[test]
    fn sessions_carry_the_largest_timestamp_seen() {
        let session_only = Mix { session_get: 1, ..Mix::default() };
        let mut generator = OpMix::new(StdRng::seed_from_u64(4), session_only, KeySpace::new("k", 1, 100));
        let ctx = Context { elapsed: Duration::ZERO, process: 3 };
        let Next::Op { op, .. } = generator.next(&ctx) else { panic!() };
        assert_eq!(op, Op::Get { key: "k1".into(), consistency: Consistency::Eventual, min_timestamp: None });
        let seen = |timestamp| Outcome {
            kind: EventType::Ok,
            read: None,
            timestamp: Some(timestamp),
            error: None,
            latency: Duration::ZERO,
        };
        generator.observe(3, &op, &seen(50));
        generator.observe(3, &op, &seen(40));
        let Next::Op { op, .. } = generator.next(&ctx) else { panic!() };
        assert!(matches!(op, Op::Get { min_timestamp: Some(50), .. }), "{op:?}");
        let Next::Op { op, .. } = generator.next(&Context { process: 4, ..ctx }) else { panic!() };
        assert!(matches!(op, Op::Get { min_timestamp: None, .. }), "another session starts fresh");
    }
}
