//! The search over one key's operations.

use super::entries::{Bits, Entries, EntryBuffers};
use super::evidence::window;
use super::shared::Shared;
use super::{Budget, Failure, KeyVerdict};
use crate::checker::cache::Cache;
use crate::model::{Model, Operation};
use std::time::Instant;

/// One step of the current linearization: the operation placed and the
/// state before it. `forced` marks a read-only operation placed by the
/// reduction below, which has no alternative to try when it is undone.
struct Frame<S> {
    op: usize,
    previous: S,
    forced: bool,
    /// Unobserved writes placed just before `op`, as one step with it.
    absorbed: usize,
}

/// Buffers one worker's searches hand on from one key to the next: a
/// history of many small keys would otherwise spend more time allocating
/// than searching.
pub(super) struct Scratch<S> {
    facts: Vec<Facts>,
    entries: EntryBuffers,
    cache: Cache<S>,
    words: Vec<u64>,
    stack: Vec<Frame<S>>,
}

impl<S> Default for Scratch<S> {
    fn default() -> Scratch<S> {
        Scratch {
            facts: Vec::new(),
            entries: EntryBuffers::default(),
            cache: Cache::new(0, 0),
            words: Vec::new(),
            stack: Vec::new(),
        }
    }
}

/// What placing an enabled read-only operation found.
enum Forced {
    Placed,
    /// This configuration was already explored through the read: it fails.
    Dead,
    Nothing,
}

/// The Wing–Gong–Lowe search over one key, with Porcupine's cache, and
/// three reductions: two described here, the third at [`Search::starved_read`].
///
/// First: a read-only operation (one that never changes the
/// state) that is enabled and matches the current state is placed at once,
/// with no branch that places it later. Placing it earlier cannot hurt: it
/// leaves the state as it is, every operation that returned before its
/// invocation is already placed (or it would not be enabled), and moving an
/// operation earlier never breaks a real-time order after it. So a
/// configuration is linearizable exactly when it is with that read placed,
/// and a cache hit there proves the configuration dead.
///
/// Second, for blind writes (writes that ignore the state) that no
/// operation of the key could ever observe: after such a write the next
/// operation placed must be another blind write (nothing can succeed on
/// its state), or nothing at all. So such a write is placed alone only
/// when its return is the next one due or at the very end; otherwise
/// placing any blind write first places every enabled unobserved one just
/// before it, as one step (moving them earlier is safe for the same
/// reasons as for reads).
pub(super) struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [Operation<M::Op>],
    entries: Entries,
    cache: Cache<M::State>,
    linearized: Bits,
    stack: Vec<Frame<M::State>>,
    state: M::State,
    /// Placed operations with a known outcome; the search ends when all are.
    done: usize,
    /// The deepest point where an operation's return could not be met.
    best: Option<(Vec<usize>, usize)>,
    facts: Vec<Facts>,
    /// Unplaced operations with a known outcome that are not unobserved.
    pending_observable: usize,
    /// Unplaced unobserved writes: while none is left, nothing is absorbed.
    unobserved_left: usize,
    shared: &'a Shared,
    /// Starts helper threads (on the calling thread; a no-op on helpers).
    start_helpers: &'a dyn Fn(),
}

/// The operations that may still take effect before an unplaced read: the
/// unplaced calls of operations that change state, up to the read's return
/// (by rank). Walked lazily: a model usually decides after a few.
struct Writers<'s, 'a, M: Model> {
    search: &'s Search<'a, M>,
    call: usize,
    until: usize,
}

impl<'s, 'a, M: Model> Iterator for Writers<'s, 'a, M> {
    type Item = &'s M::Op;

    fn next(&mut self) -> Option<&'s M::Op> {
        let entries = &self.search.entries;
        let call = self.call;
        if call == entries.n + 1 || entries.rank[call] >= self.until {
            return None;
        }
        self.call = entries.calls.next(call);
        Some(&self.search.ops[call].op)
    }
}

/// Above this many (blind write, other operation) pairs, the unobserved
/// writes are not looked for: the reduction is skipped, not the check.
const MAX_OBSERVATION_PAIRS: usize = 20_000_000;

/// What the model says of each operation, asked once: the search asks it
/// of every entry it walks past.
#[derive(Clone, Copy, Default)]
struct Facts {
    blind: bool,
    read_only: bool,
    /// A blind write whose state no operation of the key accepts.
    unobserved: bool,
}

fn facts<M: Model>(model: &M, ops: &[Operation<M::Op>], mut facts: Vec<Facts>) -> Vec<Facts> {
    facts.clear();
    let fact = |op: &Operation<M::Op>| Facts {
        blind: model.blind(&op.op),
        read_only: model.read_only(&op.op),
        unobserved: false,
    };
    facts.extend(ops.iter().map(fact));
    mark_unobserved_writes(model, ops, &mut facts);
    facts
}

/// Marks the blind writes no other operation of the key could observe.
fn mark_unobserved_writes<M: Model>(model: &M, ops: &[Operation<M::Op>], facts: &mut [Facts]) {
    let writes = facts.iter().filter(|f| f.blind).count();
    if writes * (ops.len() - writes) > MAX_OBSERVATION_PAIRS {
        return;
    }
    let init = model.init();
    for w in 0..ops.len() {
        let unobserved = facts[w].blind
            && model.step(&init, &ops[w].op).is_some_and(|after| {
                (0..ops.len()).filter(|&r| !facts[r].blind).all(|r| model.step(&after, &ops[r].op).is_none())
            });
        facts[w].unobserved = unobserved;
    }
}

impl<'a, M: Model> Search<'a, M> {
    pub(super) fn new(
        model: &'a M,
        ops: &'a [Operation<M::Op>],
        shared: &'a Shared,
        start_helpers: &'a dyn Fn(),
        mut scratch: Scratch<M::State>,
    ) -> Self {
        let facts = facts(model, ops, std::mem::take(&mut scratch.facts));
        let pending_observable = (0..ops.len()).filter(|&i| ops[i].return_ns.is_some() && !facts[i].unobserved).count();
        let unobserved_left = facts.iter().filter(|f| f.unobserved).count();
        // Room for about one configuration per operation: what a search
        // without backtracking needs, so easy keys never rehash.
        scratch.cache.reset(ops.len().div_ceil(64), ops.len());
        scratch.stack.clear();
        Search {
            model,
            ops,
            entries: Entries::new(ops, |i| facts[i].read_only, std::mem::take(&mut scratch.entries)),
            cache: scratch.cache,
            linearized: Bits::reuse(scratch.words, ops.len()),
            stack: scratch.stack,
            state: model.init(),
            done: 0,
            best: None,
            facts,
            pending_observable,
            unobserved_left,
            shared,
            start_helpers,
        }
    }

    /// Hands the buffers on to the next key's search.
    pub(super) fn recycle(self) -> Scratch<M::State> {
        Scratch {
            facts: self.facts,
            entries: self.entries.recycle(),
            cache: self.cache,
            words: self.linearized.0,
            stack: self.stack,
        }
    }

    /// Marks `op` placed (the caller pushes its frame).
    fn lift(&mut self, op: usize) {
        self.linearized.set(op);
        self.entries.lift(op);
        self.unobserved_left -= usize::from(self.facts[op].unobserved);
        if self.ops[op].return_ns.is_some() {
            self.done += 1;
            self.pending_observable -= usize::from(!self.facts[op].unobserved);
        }
    }

    fn unlift(&mut self, op: usize) {
        self.linearized.clear(op);
        self.entries.unlift(op);
        self.unobserved_left += usize::from(self.facts[op].unobserved);
        if self.ops[op].return_ns.is_some() {
            self.done -= 1;
            self.pending_observable += usize::from(!self.facts[op].unobserved);
        }
    }

    /// An unobserved write is placed alone only when nothing else can
    /// wait for it: at the very end, or when its return is the next return
    /// in time (a blind write that follows it in some order was invoked
    /// after it returned, so no absorption could ever place it).
    fn waits_to_be_absorbed(&self, op: usize) -> bool {
        self.facts[op].unobserved && self.pending_observable > 0 && self.first_return() != self.entries.return_at(op)
    }

    /// The first return entry in the list: the next operation that must be
    /// placed.
    fn first_return(&self) -> usize {
        let mut entry = self.entries.all.next(self.entries.head);
        while entry != self.entries.head && entry < self.entries.n {
            entry = self.entries.all.next(entry);
        }
        entry
    }

    /// Places every enabled unobserved write but `except`, without cache
    /// entries (these configurations are not explored on their own).
    fn absorb(&mut self, except: usize) -> usize {
        if self.unobserved_left == 0 {
            return 0;
        }
        let mut writes = Vec::new();
        let mut entry = self.entries.all.next(self.entries.head);
        while entry != self.entries.head && entry < self.entries.n {
            if entry != except && self.facts[entry].unobserved {
                writes.push(entry);
            }
            entry = self.entries.all.next(entry);
        }
        for &op in &writes {
            let next_state = self.model.step(&self.state, &self.ops[op].op).expect("a blind write always applies");
            let previous = std::mem::replace(&mut self.state, next_state);
            self.stack.push(Frame { op, previous, forced: true, absorbed: 0 });
            self.lift(op);
        }
        writes.len()
    }

    /// Places `op`, with the unobserved writes it absorbs when it is blind.
    fn place(&mut self, op: usize) -> Option<bool> {
        let absorbed = if self.facts[op].blind { self.absorb(op) } else { 0 };
        let placed = self.try_place(op, false, absorbed);
        if placed != Some(true) {
            for _ in 0..absorbed {
                self.undo();
            }
        }
        placed
    }

    /// Places `op` if the model allows it here and the configuration it
    /// leads to is new. `None`: not allowed; `Some(false)`: already seen.
    fn try_place(&mut self, op: usize, forced: bool, absorbed: usize) -> Option<bool> {
        let next_state = self.model.step(&self.state, &self.ops[op].op)?;
        self.linearized.set(op);
        let new = self.cache.insert(&self.linearized.0, &next_state);
        self.linearized.clear(op);
        if !new {
            return Some(false);
        }
        let previous = std::mem::replace(&mut self.state, next_state);
        self.stack.push(Frame { op, previous, forced, absorbed });
        self.lift(op);
        Some(true)
    }

    /// Undoes the last frame; returns it.
    fn undo(&mut self) -> Option<Frame<()>> {
        let frame = self.stack.pop()?;
        self.state = frame.previous;
        self.unlift(frame.op);
        Some(Frame { op: frame.op, previous: (), forced: frame.forced, absorbed: frame.absorbed })
    }

    /// Undoes the last placement, with the writes it absorbed.
    fn undo_step(&mut self) -> Option<Frame<()>> {
        let frame = self.undo()?;
        for _ in 0..frame.absorbed {
            self.undo().expect("absorbed frames lie below the one that absorbed them");
        }
        Some(frame)
    }

    /// Places the first enabled read-only operation that matches the state.
    fn force_read(&mut self) -> Forced {
        let mut entry = self.entries.all.next(self.entries.head);
        while entry != self.entries.head && entry < self.entries.n {
            if self.facts[entry].read_only {
                match self.try_place(entry, true, 0) {
                    Some(true) => return Forced::Placed,
                    Some(false) => return Forced::Dead,
                    None => {}
                }
            }
            entry = self.entries.all.next(entry);
        }
        Forced::Nothing
    }

    /// One of the next unplaced reads that can no longer succeed, if any: the
    /// model says no order of the operations that may still come before it
    /// leads from the current state to what it returned. Looking a few reads
    /// past the enabled ones catches a wrong order of writes long before the
    /// read that rules it out is reached.
    fn starved_read(&self) -> Option<usize> {
        const READS_CHECKED: usize = 8;
        let mut read = self.entries.first_read();
        for _ in 0..READS_CHECKED {
            if read == self.entries.n {
                return None;
            }
            let until = self.entries.rank[self.entries.return_at(read)];
            let writers = Writers { search: self, call: self.entries.calls.next(self.entries.n + 1), until };
            if !self.model.may_read(&self.state, &self.ops[read].op, writers) {
                return Some(read);
            }
            read = self.entries.calls.next(read);
        }
        None
    }

    /// Remembers `op` as the one that could not be placed, when the current
    /// linearization is the deepest found so far: the evidence shows it.
    fn note_blocked(&mut self, op: usize) {
        if self.best.as_ref().is_none_or(|(prefix, _)| self.stack.len() > prefix.len()) {
            self.best = Some((self.stack.iter().map(|f| f.op).collect(), op));
        }
    }

    /// Backtracks to the last placement that has an alternative; returns the
    /// entry to resume scanning at, or `None` when nothing is left to try.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let frame = self.undo_step()?;
            if !frame.forced {
                return Some(self.entries.all.next(self.entries.call_at(frame.op)));
            }
        }
    }

    pub(super) fn run(&mut self, budget: &Budget) -> KeyVerdict {
        let started = Instant::now();
        let required = self.ops.iter().filter(|op| op.return_ns.is_some()).count();
        let mut steps: u64 = 0;
        let mut fresh = true;
        let mut entry = self.entries.all.next(self.entries.head);
        loop {
            if self.done == required {
                return KeyVerdict::Linearizable;
            }
            steps += 1;
            if steps.is_multiple_of(CUT_CHECK_STEPS) {
                if let Some(verdict) = self.over_budget(budget, started, steps) {
                    return verdict;
                }
            }
            if std::mem::take(&mut fresh) {
                match self.force_read() {
                    Forced::Placed => {
                        fresh = true;
                        entry = self.entries.all.next(self.entries.head);
                        continue;
                    }
                    Forced::Dead => {
                        let Some(resume) = self.backtrack() else { return self.not_linearizable() };
                        entry = resume;
                        continue;
                    }
                    Forced::Nothing => {}
                }
            }
            let at_end = entry == self.entries.head;
            if !at_end && entry < self.entries.n {
                if self.waits_to_be_absorbed(entry) {
                    entry = self.entries.all.next(entry);
                    continue;
                }
                if self.place(entry) == Some(true) {
                    if let Some(read) = self.starved_read() {
                        self.undo_step();
                        // The read is what cannot be placed: it names the anomaly.
                        self.note_blocked(read);
                        entry = self.entries.all.next(entry);
                        continue;
                    }
                    fresh = true;
                    entry = self.entries.all.next(self.entries.head);
                } else {
                    entry = self.entries.all.next(entry);
                }
                continue;
            }
            // A return reached (or the end): the operation it closes cannot be
            // placed after what is linearized now. Remember the deepest such point.
            if !at_end {
                self.note_blocked(entry - self.entries.n);
            }
            let Some(resume) = self.backtrack() else { return self.not_linearizable() };
            entry = resume;
        }
    }

    /// Why the search stops undecided, if it must: an anomaly elsewhere
    /// (asked every [`CUT_CHECK_STEPS`], so a cancellation is prompt), or
    /// its own budget (every [`BUDGET_CHECK_STEPS`]: reading the clock costs).
    fn over_budget(&self, budget: &Budget, started: Instant, steps: u64) -> Option<KeyVerdict> {
        if let Some(why) = self.shared.cut() {
            return Some(KeyVerdict::NotSearched(format!("search stopped after {steps} steps: {why}")));
        }
        if !steps.is_multiple_of(BUDGET_CHECK_STEPS) {
            return None;
        }
        if self.shared.helpers_wanted() {
            (self.start_helpers)();
        }
        if started.elapsed() > budget.time {
            let why = format!("over the {:?} time budget after {steps} search steps", budget.time);
            return Some(KeyVerdict::Unknown(why));
        }
        (self.cache.len() > budget.max_cache_entries).then(|| {
            KeyVerdict::Unknown(format!("over the memory budget ({} cached configurations)", self.cache.len()))
        })
    }

    fn not_linearizable(&mut self) -> KeyVerdict {
        let (longest_prefix, blocked) = self.best.take().unwrap_or((Vec::new(), 0));
        let window = window(self.ops, &longest_prefix, blocked);
        KeyVerdict::NotLinearizable(Failure { longest_prefix, blocked, window })
    }
}

/// Search steps between two looks at whether another key's anomaly cut
/// this search, and between two looks at the clock and the cache size.
const CUT_CHECK_STEPS: u64 = 256;
const BUDGET_CHECK_STEPS: u64 = 4096;
