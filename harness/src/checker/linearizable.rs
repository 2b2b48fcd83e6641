//! Linearizability, generic over a [`Model`]: the Wing–Gong–Lowe search
//! with Porcupine's cache of (linearized set, state), on each key apart
//! (P-compositionality), keys in parallel, under a time and memory budget.
//!
//! Operations whose outcome is unknown (`info`, or never completed) may
//! take effect at any point after their invocation, or never; failed ones
//! never happened. Over budget, a key's verdict is `unknown`, never a guess.

use crate::history::{Event, EventType, Process};
use crate::model::{Explanation, Model};
use crate::verdict::{CheckResult, Validity};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One operation of one key.
#[derive(Clone, Debug)]
pub struct Operation<O> {
    pub process: Process,
    /// History index of the invocation (for evidence).
    pub index: u64,
    pub invoke_ns: u64,
    /// `None`: unknown outcome; it may take effect at any later time.
    pub return_ns: Option<u64>,
    pub op: O,
}

#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Per key.
    pub time: Duration,
    /// Cache entries per key (each a linearized set and a state).
    pub max_cache_entries: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget { time: Duration::from_secs(60), max_cache_entries: 4_000_000 }
    }
}

/// Once one key is known not linearizable, the verdict is settled: the
/// other keys get this long each, so a failing run does not also pay the
/// full budget on every hard key (Porcupine stops them at once).
pub const AFTER_ANOMALY: Duration = Duration::from_secs(2);

/// Why a key's history is not linearizable.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The longest linearization found, as operation positions in order.
    pub longest_prefix: Vec<usize>,
    /// The operation that could not be placed after it.
    pub blocked: usize,
    /// The operations around it: concurrent with it, or just linearized.
    pub window: Vec<usize>,
}

#[derive(Clone, Debug)]
pub enum KeyVerdict {
    Linearizable,
    NotLinearizable(Failure),
    Unknown(String),
}

/// Each key's operations.
pub type ByKey<O> = BTreeMap<String, Vec<Operation<O>>>;

/// Pairs invocations with completions, per key, as the model sees them.
pub fn operations<M: Model>(model: &M, events: &[Event]) -> Result<ByKey<M::Op>, String> {
    let mut open: HashMap<Process, &Event> = HashMap::new();
    let mut by_key: ByKey<M::Op> = BTreeMap::new();
    let mut add = |invoke: &Event, completion: &Event, return_ns: Option<u64>| -> Result<(), String> {
        let op = model.operation(invoke, completion).map_err(|e| format!("history line {}: {e}", invoke.index + 1))?;
        if let Some(op) = op {
            let key = invoke.key.clone().unwrap_or_default();
            let operation =
                Operation { process: invoke.process, index: invoke.index, invoke_ns: invoke.time, return_ns, op };
            by_key.entry(key).or_default().push(operation);
        }
        Ok(())
    };
    for event in events.iter().filter(|e| e.process != Process::NEMESIS) {
        if event.kind == EventType::Invoke {
            open.insert(event.process, event);
            continue;
        }
        let Some(invoke) = open.remove(&event.process) else { continue };
        let return_ns = (event.kind == EventType::Ok).then_some(event.time);
        add(invoke, event, return_ns)?;
    }
    // Never completed: unknown, like `info`.
    let mut unfinished: Vec<&Event> = open.into_values().collect();
    unfinished.sort_by_key(|e| e.index);
    for invoke in unfinished {
        let mut completion = invoke.clone();
        completion.kind = EventType::Info;
        add(invoke, &completion, None)?;
    }
    Ok(by_key)
}

/// A set of operation positions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The call and return entries of all operations, in time order, as a
/// doubly linked list that operations are lifted out of and put back into.
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Entry `e` is the call of op `e` when `e < n`, its return otherwise.
    n: usize,
    call_at: Vec<usize>,
    return_at: Vec<usize>,
    head: usize,
}

impl Entries {
    fn new<O>(ops: &[Operation<O>]) -> Entries {
        let n = ops.len();
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            order.push((op.invoke_ns, false, i));
            order.push((op.return_ns.unwrap_or(u64::MAX), true, i));
        }
        // At equal times calls come first: the more permissive reading.
        order.sort_unstable();
        let head = 2 * n;
        let mut next = vec![head; 2 * n + 1];
        let mut prev = vec![head; 2 * n + 1];
        let (mut call_at, mut return_at) = (vec![0; n], vec![0; n]);
        let mut last = head;
        for &(_, is_return, op) in &order {
            let entry = if is_return { n + op } else { op };
            if is_return {
                return_at[op] = entry;
            } else {
                call_at[op] = entry;
            }
            next[last] = entry;
            prev[entry] = last;
            last = entry;
        }
        next[last] = head;
        prev[head] = last;
        Entries { next, prev, n, call_at, return_at, head }
    }

    fn unlink(&mut self, e: usize) {
        let (p, q) = (self.prev[e], self.next[e]);
        self.next[p] = q;
        self.prev[q] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, q) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[q] = e;
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_at[op]);
        self.unlink(self.return_at[op]);
    }

    fn unlift(&mut self, op: usize) {
        self.relink(self.return_at[op]);
        self.relink(self.call_at[op]);
    }
}

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
struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [Operation<M::Op>],
    entries: Entries,
    cache: HashSet<(Bits, M::State)>,
    linearized: Bits,
    stack: Vec<Frame<M::State>>,
    state: M::State,
    /// Placed operations with a known outcome; the search ends when all are.
    done: usize,
    /// The deepest point where an operation's return could not be met.
    best: Option<(Vec<usize>, usize)>,
    blind: Vec<bool>,
    /// Blind writes whose state no operation of the key accepts.
    unobserved: Vec<bool>,
    /// Unplaced operations with a known outcome that are not unobserved.
    pending_observable: usize,
    /// Set when another key is already not linearizable.
    anomaly_elsewhere: &'a AtomicBool,
}

/// Above this many (blind write, other operation) pairs, the unobserved
/// writes are not looked for: the reduction is skipped, not the check.
const MAX_OBSERVATION_PAIRS: usize = 20_000_000;

/// Which blind writes no other operation of the key could observe.
fn unobserved_writes<M: Model>(model: &M, ops: &[Operation<M::Op>], blind: &[bool]) -> Vec<bool> {
    let writes = blind.iter().filter(|b| **b).count();
    if writes * (ops.len() - writes) > MAX_OBSERVATION_PAIRS {
        return vec![false; ops.len()];
    }
    let init = model.init();
    (0..ops.len())
        .map(|w| {
            blind[w]
                && model.step(&init, &ops[w].op).is_some_and(|after| {
                    (0..ops.len()).filter(|&r| !blind[r]).all(|r| model.step(&after, &ops[r].op).is_none())
                })
        })
        .collect()
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, ops: &'a [Operation<M::Op>], anomaly_elsewhere: &'a AtomicBool) -> Self {
        let blind: Vec<bool> = ops.iter().map(|op| model.blind(&op.op)).collect();
        let unobserved = unobserved_writes(model, ops, &blind);
        let pending_observable = (0..ops.len()).filter(|&i| ops[i].return_ns.is_some() && !unobserved[i]).count();
        Search {
            model,
            ops,
            entries: Entries::new(ops),
            cache: HashSet::new(),
            linearized: Bits::new(ops.len()),
            stack: Vec::new(),
            state: model.init(),
            done: 0,
            best: None,
            blind,
            unobserved,
            pending_observable,
            anomaly_elsewhere,
        }
    }

    /// Marks `op` placed (the caller pushes its frame).
    fn lift(&mut self, op: usize) {
        self.linearized.set(op);
        self.entries.lift(op);
        if self.ops[op].return_ns.is_some() {
            self.done += 1;
            self.pending_observable -= usize::from(!self.unobserved[op]);
        }
    }

    fn unlift(&mut self, op: usize) {
        self.linearized.clear(op);
        self.entries.unlift(op);
        if self.ops[op].return_ns.is_some() {
            self.done -= 1;
            self.pending_observable += usize::from(!self.unobserved[op]);
        }
    }

    /// An unobserved write is placed alone only when nothing else can
    /// wait for it: at the very end, or when its return is the next return
    /// in time (a blind write that follows it in some order was invoked
    /// after it returned, so no absorption could ever place it).
    fn waits_to_be_absorbed(&self, op: usize) -> bool {
        self.unobserved[op] && self.pending_observable > 0 && self.first_return() != self.entries.return_at[op]
    }

    /// The first return entry in the list: the next operation that must be
    /// placed.
    fn first_return(&self) -> usize {
        let mut entry = self.entries.next[self.entries.head];
        while entry != self.entries.head && entry < self.entries.n {
            entry = self.entries.next[entry];
        }
        entry
    }

    /// Places every enabled unobserved write but `except`, without cache
    /// entries (these configurations are not explored on their own).
    fn absorb(&mut self, except: usize) -> usize {
        let mut writes = Vec::new();
        let mut entry = self.entries.next[self.entries.head];
        while entry != self.entries.head && entry < self.entries.n {
            if entry != except && self.unobserved[entry] {
                writes.push(entry);
            }
            entry = self.entries.next[entry];
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
        let absorbed = if self.blind[op] { self.absorb(op) } else { 0 };
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
        let new = self.cache.insert((self.linearized.clone(), next_state.clone()));
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
        let mut entry = self.entries.next[self.entries.head];
        while entry != self.entries.head && entry < self.entries.n {
            if self.model.read_only(&self.ops[entry].op) {
                match self.try_place(entry, true, 0) {
                    Some(true) => return Forced::Placed,
                    Some(false) => return Forced::Dead,
                    None => {}
                }
            }
            entry = self.entries.next[entry];
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
        let (head, n) = (self.entries.head, self.entries.n);
        let entries = || std::iter::successors(Some(self.entries.next[head]), |&e| Some(self.entries.next[e]));
        let reads = entries().take_while(|&e| e != head).filter(|&e| e < n && self.model.read_only(&self.ops[e].op));
        for read in reads.take(READS_CHECKED) {
            let until = self.entries.return_at[read];
            let writers = entries()
                .take_while(|&e| e != until && e != head)
                .filter(|&e| e < n && !self.model.read_only(&self.ops[e].op))
                .map(|e| &self.ops[e].op);
            if !self.model.may_read(&self.state, &self.ops[read].op, writers) {
                return Some(read);
            }
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
                return Some(self.entries.next[self.entries.call_at[frame.op]]);
            }
        }
    }

    fn run(&mut self, budget: &Budget) -> KeyVerdict {
        let started = Instant::now();
        let required = self.ops.iter().filter(|op| op.return_ns.is_some()).count();
        let mut steps: u64 = 0;
        let mut fresh = true;
        let mut entry = self.entries.next[self.entries.head];
        loop {
            if self.done == required {
                return KeyVerdict::Linearizable;
            }
            steps += 1;
            if steps.is_multiple_of(4096) {
                if let Some(why) = self.over_budget(budget, started, steps) {
                    return KeyVerdict::Unknown(why);
                }
            }
            if std::mem::take(&mut fresh) {
                match self.force_read() {
                    Forced::Placed => {
                        fresh = true;
                        entry = self.entries.next[self.entries.head];
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
                    entry = self.entries.next[entry];
                    continue;
                }
                if self.place(entry) == Some(true) {
                    if let Some(read) = self.starved_read() {
                        self.undo_step();
                        // The read is what cannot be placed: it names the anomaly.
                        self.note_blocked(read);
                        entry = self.entries.next[entry];
                        continue;
                    }
                    fresh = true;
                    entry = self.entries.next[self.entries.head];
                } else {
                    entry = self.entries.next[entry];
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

    fn over_budget(&self, budget: &Budget, started: Instant, steps: u64) -> Option<String> {
        if started.elapsed() > AFTER_ANOMALY.min(budget.time) && self.anomaly_elsewhere.load(Ordering::Relaxed) {
            return Some(format!("stopped after {AFTER_ANOMALY:?}: another key is already not linearizable"));
        }
        if started.elapsed() > budget.time {
            return Some(format!("over the {:?} time budget after {steps} search steps", budget.time));
        }
        (self.cache.len() > budget.max_cache_entries)
            .then(|| format!("over the memory budget ({} cached configurations)", self.cache.len()))
    }

    fn not_linearizable(&mut self) -> KeyVerdict {
        let (longest_prefix, blocked) = self.best.take().unwrap_or((Vec::new(), 0));
        let window = window(self.ops, &longest_prefix, blocked);
        KeyVerdict::NotLinearizable(Failure { longest_prefix, blocked, window })
    }
}

/// Checks one key's operations.
pub fn check_key<M: Model>(model: &M, ops: &[Operation<M::Op>], budget: &Budget) -> KeyVerdict {
    Search::new(model, ops, &AtomicBool::new(false)).run(budget)
}

/// The blocked operation, the ones concurrent with it, and the last few
/// linearized before it: where to look.
fn window<O>(ops: &[Operation<O>], prefix: &[usize], blocked: usize) -> Vec<usize> {
    let Some(b) = ops.get(blocked) else { return Vec::new() };
    let b_return = b.return_ns.unwrap_or(u64::MAX);
    let mut window: Vec<usize> = (0..ops.len())
        .filter(|&i| i != blocked && ops[i].invoke_ns < b_return && ops[i].return_ns.unwrap_or(u64::MAX) > b.invoke_ns)
        .collect();
    window.extend(prefix.iter().rev().take(3));
    window.push(blocked);
    window.sort_unstable_by_key(|&i| (ops[i].invoke_ns, i));
    window.dedup();
    window.truncate(16);
    window
}

/// Checks every key of `events`, keys in parallel.
pub fn check<M: Model>(model: &M, events: &[Event], budget: &Budget) -> CheckResult {
    let by_key = match operations(model, events) {
        Ok(by_key) => by_key,
        Err(error) => {
            return CheckResult::new("linearizable", Validity::Unknown, format!("cannot read the history: {error}"))
        }
    };
    let keys: Vec<(&String, &Vec<Operation<M::Op>>)> = by_key.iter().collect();
    let verdicts: Mutex<Vec<(usize, KeyVerdict)>> = Mutex::new(Vec::with_capacity(keys.len()));
    let next = AtomicUsize::new(0);
    let anomaly = AtomicBool::new(false);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(keys.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((_, ops)) = keys.get(i) else { return };
                let verdict = Search::new(model, ops, &anomaly).run(budget);
                if matches!(verdict, KeyVerdict::NotLinearizable(_)) {
                    anomaly.store(true, Ordering::Relaxed);
                }
                verdicts.lock().expect("verdicts lock").push((i, verdict));
            });
        }
    });
    let mut verdicts = verdicts.into_inner().expect("verdicts lock");
    verdicts.sort_by_key(|(i, _)| *i);
    summarize(model, &keys, verdicts)
}

fn summarize<M: Model>(
    model: &M,
    keys: &[(&String, &Vec<Operation<M::Op>>)],
    verdicts: Vec<(usize, KeyVerdict)>,
) -> CheckResult {
    let operations: usize = keys.iter().map(|(_, ops)| ops.len()).sum();
    let mut failures = Vec::new();
    let mut unknown = Vec::new();
    for (i, verdict) in verdicts {
        let (key, ops) = keys[i];
        match verdict {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Unknown(why) => unknown.push(serde_json::json!({"key": key, "why": why})),
            KeyVerdict::NotLinearizable(failure) => failures.push(evidence(model, key, ops, &failure)),
        }
    }
    let evidence = serde_json::json!({"model": model.name(), "keys": keys.len(), "operations": operations,
        "anomalies": failures, "unknown_keys": unknown});
    let (valid, reason) = if let Some(first) = failures.first() {
        let more = if failures.len() > 1 { format!(" (and {} more keys)", failures.len() - 1) } else { String::new() };
        (Validity::Invalid, format!("{}{more}", first["explanation"].as_str().unwrap_or("not linearizable")))
    } else if !unknown.is_empty() {
        (Validity::Unknown, format!("{} of {} keys could not be decided within the budget", unknown.len(), keys.len()))
    } else {
        (Validity::Valid, format!("{operations} operations on {} keys are linearizable ({})", keys.len(), model.name()))
    };
    CheckResult { checker: "linearizable".into(), valid, reason, evidence }
}

pub(crate) fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// Reads tried when the blocked operation has no explanation in words.
const MAX_BLAME_CANDIDATES: usize = 256;

/// The operation to show as the anomaly: the blocked one when the model can
/// say why in words; else the read nearest to it that the model can explain
/// (a model's explanation is a proof on its own, so it never blames a read
/// that could be fine); else the blocked one, without words.
fn blame<M: Model>(model: &M, key: &str, ops: &[Operation<M::Op>], blocked: usize) -> (usize, Option<Explanation>) {
    if let Some(explanation) = model.explain(key, ops, blocked) {
        return (blocked, Some(explanation));
    }
    let at = ops[blocked].invoke_ns;
    let mut reads: Vec<usize> = (0..ops.len()).filter(|&i| i != blocked && model.read_only(&ops[i].op)).collect();
    reads.sort_by_key(|&i| ops[i].invoke_ns.abs_diff(at));
    reads
        .into_iter()
        .take(MAX_BLAME_CANDIDATES)
        .find_map(|i| model.explain(key, ops, i).map(|e| (i, Some(e))))
        .unwrap_or((blocked, None))
}

fn evidence<M: Model>(model: &M, key: &str, ops: &[Operation<M::Op>], failure: &Failure) -> serde_json::Value {
    let (blamed, explained) = blame(model, key, ops, failure.blocked);
    let blocked = &ops[blamed];
    let fallback = format!(
        "{key}: {} (process {:?}, {} → {}) cannot be placed after any order of the {} operations linearized before it",
        model.describe(&blocked.op),
        blocked.process,
        seconds(blocked.invoke_ns),
        blocked.return_ns.map_or("unknown".into(), seconds),
        failure.longest_prefix.len(),
    );
    let explanation = explained.unwrap_or(Explanation { text: fallback, named: Vec::new() });
    // Every operation a reader should see: the blamed one, the ones the
    // explanation names, and the window around the blocked one, each with
    // its role.
    let mut shown: Vec<usize> = failure.window.iter().chain(&explanation.named).copied().collect();
    shown.push(failure.blocked);
    shown.push(blamed);
    shown.sort_unstable_by_key(|&i| (ops[i].invoke_ns, i));
    shown.dedup();
    let role = |i: usize| match i {
        _ if i == blamed => "blocked",
        _ if explanation.named.contains(&i) => "named",
        _ => "context",
    };
    let describe = |i: usize| {
        let op = &ops[i];
        serde_json::json!({
            "op": model.describe(&op.op),
            "process": op.process,
            "index": op.index,
            "invoke_s": op.invoke_ns as f64 / 1e9,
            "return_s": op.return_ns.map(|ns| ns as f64 / 1e9),
            "role": role(i),
        })
    };
    serde_json::json!({
        "key": key,
        "explanation": explanation.text,
        "blocked": describe(blamed),
        "window": shown.iter().map(|&i| describe(i)).collect::<Vec<_>>(),
        "longest_prefix": failure.longest_prefix.iter().map(|&i| model.describe(&ops[i].op)).collect::<Vec<_>>(),
    })
}
