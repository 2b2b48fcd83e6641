//! Linearizability, generic over a [`Model`]: the Wing–Gong–Lowe search
//! with Porcupine's cache of (linearized set, state), on each key apart
//! (P-compositionality), keys in parallel, under a time and memory budget.
//!
//! Operations whose outcome is unknown (`info`, or never completed) may
//! take effect at any point after their invocation, or never; failed ones
//! never happened. Over budget, a key's verdict is `unknown`, never a guess;
//! once one key is proven not linearizable, [`AfterAnomaly`] says how much
//! more the other keys are searched, and those cut say so.

use super::cache::{Cache, FastMap};
use crate::history::{Event, EventType, Process};
use crate::model::{Explanation, Model};
use crate::verdict::{CheckResult, Validity};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
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
    /// How much more is searched once one key is proven not linearizable.
    pub after_anomaly: AfterAnomaly,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            time: Duration::from_secs(60),
            max_cache_entries: 4_000_000,
            after_anomaly: AfterAnomaly::Share(AFTER_ANOMALY),
        }
    }
}

/// What the check does once one key is proven not linearizable. The
/// verdict is settled then (invalid); what is left is how much more of the
/// picture is worth the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAnomaly {
    /// The other keys' searches are cancelled at once and reported as not
    /// searched, as Porcupine does (`harness check`'s default).
    Stop,
    /// The keys not yet decided share this much time in all, not each: a
    /// run's report can show a few anomalies and its check stays fast.
    Share(Duration),
    /// Every key is searched to its own budget: the whole picture.
    SearchAll,
}

/// The time a run's other keys share after its first anomaly.
pub const AFTER_ANOMALY: Duration = Duration::from_secs(1);

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
    /// Over the key's own budget: undecided.
    Unknown(String),
    /// Not searched, or not to the end, because another key was already
    /// proven not linearizable ([`AfterAnomaly`]): undecided.
    NotSearched(String),
}

/// What the searches of one check share: the next key to take, whether
/// helper threads were started, and when the first anomaly was proven.
struct Shared {
    started: Instant,
    keys: usize,
    next_key: AtomicUsize,
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

impl Shared {
    fn new(after_anomaly: AfterAnomaly, keys: usize) -> Shared {
        Shared {
            started: Instant::now(),
            keys,
            next_key: AtomicUsize::new(0),
            helpers_started: AtomicBool::new(false),
            first_anomaly_ns: AtomicU64::new(u64::MAX),
            after_anomaly,
        }
    }

    /// True once, when helpers should start: keys are left to take and
    /// the check has run alone for [`HELPERS_AFTER`].
    fn helpers_wanted(&self) -> bool {
        !self.helpers_started.load(Ordering::Relaxed)
            && self.next_key.load(Ordering::Relaxed) < self.keys
            && self.started.elapsed() >= HELPERS_AFTER
            && !self.helpers_started.swap(true, Ordering::Relaxed)
    }

    fn anomaly_proven(&self) {
        let now_ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.first_anomaly_ns.fetch_min(now_ns, Ordering::Relaxed);
    }

    /// Why no key may be searched any further, if none may. One relaxed
    /// load while no anomaly is proven: cheap enough to ask often.
    fn cut(&self) -> Option<String> {
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

/// Each key's operations.
pub type ByKey<O> = BTreeMap<String, Vec<Operation<O>>>;

/// Pairs invocations with completions, per key, as the model sees them.
pub fn operations<M: Model>(model: &M, events: &[Event]) -> Result<ByKey<M::Op>, String> {
    let mut open = Open::default();
    // Keys are looked up by the events' own text and copied once each at
    // the end, not once per operation.
    let mut by_key: FastMap<Option<&str>, Vec<Operation<M::Op>>> = FastMap::default();
    for event in events.iter().filter(|e| e.process != Process::NEMESIS) {
        if event.kind == EventType::Invoke {
            open.insert(event);
            continue;
        }
        let Some(invoke) = open.remove(event.process) else { continue };
        let return_ns = (event.kind == EventType::Ok).then_some(event.time);
        add_operation(model, &mut by_key, invoke, event, return_ns)?;
    }
    // Never completed: unknown, like `info`.
    let mut unfinished: Vec<&Event> = open.into_values().collect();
    unfinished.sort_by_key(|e| e.index);
    for invoke in unfinished {
        let mut completion = invoke.clone();
        completion.kind = EventType::Info;
        add_operation(model, &mut by_key, invoke, &completion, None)?;
    }
    Ok(by_key.into_iter().map(|(key, ops)| (key.unwrap_or_default().to_owned(), ops)).collect())
}

/// Invocations not completed yet, by process: a vector indexed by client
/// id for the small ids histories use (a map lookup per event cost more
/// than the rest of pairing), a map for the others.
#[derive(Default)]
struct Open<'e> {
    small: Vec<Option<&'e Event>>,
    other: FastMap<Process, &'e Event>,
}

impl<'e> Open<'e> {
    const SMALL_IDS: u64 = 1 << 16;

    fn insert(&mut self, invoke: &'e Event) {
        match invoke.process {
            Process::Client(id) if id < Self::SMALL_IDS => {
                let id = id as usize;
                if self.small.len() <= id {
                    self.small.resize(id + 1, None);
                }
                self.small[id] = Some(invoke);
            }
            process => {
                self.other.insert(process, invoke);
            }
        }
    }

    fn remove(&mut self, process: Process) -> Option<&'e Event> {
        match process {
            Process::Client(id) if id < Self::SMALL_IDS => self.small.get_mut(id as usize)?.take(),
            process => self.other.remove(&process),
        }
    }

    fn into_values(self) -> impl Iterator<Item = &'e Event> {
        self.small.into_iter().flatten().chain(self.other.into_values())
    }
}

fn add_operation<'e, M: Model>(
    model: &M,
    by_key: &mut FastMap<Option<&'e str>, Vec<Operation<M::Op>>>,
    invoke: &'e Event,
    completion: &Event,
    return_ns: Option<u64>,
) -> Result<(), String> {
    let op = model.operation(invoke, completion).map_err(|e| format!("history line {}: {e}", invoke.index + 1))?;
    if let Some(op) = op {
        let operation =
            Operation { process: invoke.process, index: invoke.index, invoke_ns: invoke.time, return_ns, op };
        // An empty key is never compared: glibc's vector memcmp of zero
        // bytes at an empty string's dangling address takes a slow
        // microcode assist (300 ns each on this machine), and histories of
        // one register have no key at all.
        let key = invoke.key.as_deref().filter(|k| !k.is_empty());
        by_key.entry(key).or_default().push(operation);
    }
    Ok(())
}

/// A set of operation positions.
#[derive(Clone, Debug)]
struct Bits(Vec<u64>);

impl Bits {
    /// `n` clear bits, in `words`' memory.
    fn reuse(mut words: Vec<u64>, n: usize) -> Bits {
        words.clear();
        words.resize(n.div_ceil(64), 0);
        Bits(words)
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Doubly linked lists over numbered nodes, each a ring through its head
/// node, that nodes are lifted out of and put back into (in the reverse
/// order, as the search backtracks).
struct Links {
    /// Each node's next and previous node.
    links: Vec<[usize; 2]>,
}

impl Links {
    /// `nodes` nodes, each a ring of its own (an empty list if it is a
    /// head), in `links`' memory.
    fn reuse(mut links: Vec<[usize; 2]>, nodes: usize) -> Links {
        links.clear();
        links.extend((0..nodes).map(|node| [node, node]));
        Links { links }
    }

    fn next(&self, node: usize) -> usize {
        self.links[node][0]
    }

    /// Appends `node` to the list whose head is `head`.
    fn push_back(&mut self, head: usize, node: usize) {
        let last = self.links[head][1];
        self.links[node] = [head, last];
        self.links[last][0] = node;
        self.links[head][1] = node;
    }

    fn unlink(&mut self, node: usize) {
        let [next, prev] = self.links[node];
        self.links[prev][0] = next;
        self.links[next][1] = prev;
    }

    fn relink(&mut self, node: usize) {
        let [next, prev] = self.links[node];
        self.links[prev][0] = node;
        self.links[next][1] = node;
    }
}

/// The call and return entries of the unplaced operations, in time order,
/// as a linked list: entry `op` is the call of operation `op`, entry `n +
/// op` its return, entry `2n` the head. Beside it, the calls alone, in two
/// lists, read-only operations (head `n`) and the others (head `n + 1`):
/// looking ahead for reads and the writes before them walks only those.
struct Entries {
    all: Links,
    calls: Links,
    /// Each entry's place in time order: the lists never reorder, so a call
    /// precedes a return in the list exactly when its rank is lower.
    rank: Vec<usize>,
    n: usize,
    head: usize,
    /// The sort's buffer, kept for the next key's.
    order: Vec<u128>,
}

impl Entries {
    fn new<O>(ops: &[Operation<O>], facts: &[Facts], scratch: &mut Scratch<impl Sized>) -> Entries {
        let n = ops.len();
        // (time, then calls before returns at equal times: the more
        // permissive reading, then the entry), packed in one integer so the
        // sort compares plain numbers.
        let mut order = std::mem::take(&mut scratch.order);
        order.clear();
        for (i, op) in ops.iter().enumerate() {
            order.push(u128::from(op.invoke_ns) << 64 | i as u128);
            order.push(u128::from(op.return_ns.unwrap_or(u64::MAX)) << 64 | 1 << 63 | (n + i) as u128);
        }
        order.sort_unstable();
        let head = 2 * n;
        let mut all = Links::reuse(std::mem::take(&mut scratch.all), 2 * n + 1);
        let mut calls = Links::reuse(std::mem::take(&mut scratch.calls), n + 2);
        let mut rank = std::mem::take(&mut scratch.rank);
        rank.clear();
        rank.resize(2 * n + 1, 0);
        for (place, &key) in order.iter().enumerate() {
            let entry = (key as u64 & !(1 << 63)) as usize;
            rank[entry] = place;
            all.push_back(head, entry);
            if entry < n {
                calls.push_back(if facts[entry].read_only { n } else { n + 1 }, entry);
            }
        }
        Entries { all, calls, rank, n, head, order }
    }

    fn call_at(&self, op: usize) -> usize {
        op
    }

    fn return_at(&self, op: usize) -> usize {
        self.n + op
    }

    /// The first unplaced read-only call, or the reads' head (`n`).
    fn first_read(&self) -> usize {
        self.calls.next(self.n)
    }

    fn lift(&mut self, op: usize) {
        self.all.unlink(self.call_at(op));
        self.all.unlink(self.return_at(op));
        self.calls.unlink(op);
    }

    fn unlift(&mut self, op: usize) {
        self.calls.relink(op);
        self.all.relink(self.return_at(op));
        self.all.relink(self.call_at(op));
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

/// Buffers one worker's searches hand on from one key to the next: a
/// history of many small keys would otherwise spend more time allocating
/// than searching.
struct Scratch<S> {
    facts: Vec<Facts>,
    order: Vec<u128>,
    all: Vec<[usize; 2]>,
    calls: Vec<[usize; 2]>,
    rank: Vec<usize>,
    cache: Cache<S>,
    words: Vec<u64>,
    stack: Vec<Frame<S>>,
}

impl<S> Default for Scratch<S> {
    fn default() -> Scratch<S> {
        Scratch {
            facts: Vec::new(),
            order: Vec::new(),
            all: Vec::new(),
            calls: Vec::new(),
            rank: Vec::new(),
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
struct Search<'a, M: Model> {
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
    fn new(
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
            entries: Entries::new(ops, &facts, &mut scratch),
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
    fn recycle(self) -> Scratch<M::State> {
        let Entries { all, calls, rank, order, .. } = self.entries;
        Scratch {
            facts: self.facts,
            order,
            all: all.links,
            calls: calls.links,
            rank,
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

    fn run(&mut self, budget: &Budget) -> KeyVerdict {
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

/// Checks one key's operations.
pub fn check_key<M: Model>(model: &M, ops: &[Operation<M::Op>], budget: &Budget) -> KeyVerdict {
    Search::new(model, ops, &Shared::new(budget.after_anomaly, 1), &|| {}, Scratch::default()).run(budget)
}

/// The blocked operation, the ones concurrent with it, the last few
/// linearized before it, and the last few that returned before it was
/// invoked but are not linearized (what it must follow and could not):
/// where to look.
fn window<O>(ops: &[Operation<O>], prefix: &[usize], blocked: usize) -> Vec<usize> {
    let Some(b) = ops.get(blocked) else { return Vec::new() };
    let b_return = b.return_ns.unwrap_or(u64::MAX);
    let mut window: Vec<usize> = (0..ops.len())
        .filter(|&i| i != blocked && ops[i].invoke_ns < b_return && ops[i].return_ns.unwrap_or(u64::MAX) > b.invoke_ns)
        .collect();
    window.extend(prefix.iter().rev().take(3));
    let mut in_prefix = vec![false; ops.len()];
    prefix.iter().for_each(|&i| in_prefix[i] = true);
    let mut due: Vec<usize> =
        (0..ops.len()).filter(|&i| !in_prefix[i] && ops[i].return_ns.is_some_and(|r| r < b.invoke_ns)).collect();
    due.sort_unstable_by_key(|&i| std::cmp::Reverse((ops[i].return_ns, i)));
    window.extend(due.iter().take(3));
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
    let shared = Shared::new(budget.after_anomaly, keys.len());
    let verdicts: Mutex<Vec<(usize, KeyVerdict)>> = Mutex::new(Vec::with_capacity(keys.len()));
    let keep =
        |mine: Vec<(usize, KeyVerdict)>| verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(mine);
    // The calling thread checks first, alone; helpers join it only when
    // the check proves long enough to pay for them (see `HELPERS_AFTER`).
    let helpers = if keys.len() > 1 { cores().min(keys.len()) - 1 } else { 0 };
    std::thread::scope(|scope| {
        let helper = || keep(search_keys(model, &keys, budget, &shared, &|| {}));
        let start_helpers = || {
            for _ in 0..helpers {
                scope.spawn(helper);
            }
        };
        keep(search_keys(model, &keys, budget, &shared, &start_helpers));
    });
    let mut verdicts = verdicts.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    verdicts.sort_by_key(|(i, _)| *i);
    summarize(model, &keys, verdicts, budget.after_anomaly)
}

/// The cores this process may use, asked once: the answer reads the
/// cgroup's files, which costs more than checking a small history.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// One worker: takes keys until none is left, and searches each unless
/// an anomaly elsewhere already cut the search.
fn search_keys<M: Model>(
    model: &M,
    keys: &[(&String, &Vec<Operation<M::Op>>)],
    budget: &Budget,
    shared: &Shared,
    start_helpers: &dyn Fn(),
) -> Vec<(usize, KeyVerdict)> {
    let mut verdicts = Vec::new();
    let mut scratch = Scratch::default();
    loop {
        if shared.helpers_wanted() {
            start_helpers();
        }
        let i = shared.next_key.fetch_add(1, Ordering::Relaxed);
        let Some((_, ops)) = keys.get(i) else { return verdicts };
        let verdict = match shared.cut() {
            Some(why) => KeyVerdict::NotSearched(format!("not searched: {why}")),
            None => {
                let mut search = Search::new(model, ops, shared, start_helpers, scratch);
                let verdict = search.run(budget);
                scratch = search.recycle();
                verdict
            }
        };
        if matches!(verdict, KeyVerdict::NotLinearizable(_)) {
            shared.anomaly_proven();
        }
        verdicts.push((i, verdict));
    }
}

fn summarize<M: Model>(
    model: &M,
    keys: &[(&String, &Vec<Operation<M::Op>>)],
    verdicts: Vec<(usize, KeyVerdict)>,
    after_anomaly: AfterAnomaly,
) -> CheckResult {
    let operations: usize = keys.iter().map(|(_, ops)| ops.len()).sum();
    let (mut failures, mut unknown, mut not_searched) = (Vec::new(), Vec::new(), Vec::new());
    for (i, verdict) in verdicts {
        let (key, ops) = keys[i];
        match verdict {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Unknown(why) => unknown.push(serde_json::json!({"key": key, "why": why})),
            KeyVerdict::NotSearched(why) => not_searched.push(serde_json::json!({"key": key, "why": why})),
            KeyVerdict::NotLinearizable(failure) => failures.push(evidence(model, key, ops, &failure)),
        }
    }
    let mode = match after_anomaly {
        AfterAnomaly::Stop => "stop at the first anomaly".to_owned(),
        AfterAnomaly::Share(total) => format!("the other keys share {total:?} after the first anomaly"),
        AfterAnomaly::SearchAll => "every key searched".to_owned(),
    };
    let (valid, reason) = verdict(model.name(), keys.len(), operations, &failures, unknown.len(), not_searched.len());
    // Built by moving the lists in: `json!` would copy each one through serde.
    let evidence = serde_json::Value::Object(serde_json::Map::from_iter([
        ("model".to_owned(), model.name().into()),
        ("keys".to_owned(), keys.len().into()),
        ("operations".to_owned(), operations.into()),
        ("after_anomaly".to_owned(), mode.into()),
        ("anomalies".to_owned(), failures.into()),
        ("unknown_keys".to_owned(), unknown.into()),
        ("not_searched_keys".to_owned(), not_searched.into()),
    ]));
    CheckResult { checker: "linearizable".into(), valid, reason, evidence }
}

/// The check's verdict and its line: the first anomaly in words, with how
/// many more were found and how many keys stayed undecided, and why.
fn verdict(
    model: &str,
    keys: usize,
    operations: usize,
    failures: &[serde_json::Value],
    unknown: usize,
    not_searched: usize,
) -> (Validity, String) {
    let Some(first) = failures.first() else {
        if unknown + not_searched > 0 {
            let undecided = unknown + not_searched;
            return (Validity::Unknown, format!("{undecided} of {keys} keys could not be decided within the budget"));
        }
        return (Validity::Valid, format!("{operations} operations on {keys} keys are linearizable ({model})"));
    };
    let mut more = Vec::new();
    if failures.len() > 1 {
        more.push(format!("and {} more keys", failures.len() - 1));
    }
    if unknown > 0 {
        more.push(format!("{unknown} keys undecided within the budget"));
    }
    if not_searched > 0 {
        more.push(format!("{not_searched} keys not searched after the first anomaly"));
    }
    let more = if more.is_empty() { String::new() } else { format!(" ({})", more.join("; ")) };
    (Validity::Invalid, format!("{}{more}", first["explanation"].as_str().unwrap_or("not linearizable")))
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
    reads.sort_unstable_by_key(|&i| (ops[i].invoke_ns.abs_diff(at), i));
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
        "{key}: {} (process {}, {} → {}) cannot be placed after any order of the {} operations linearized before it",
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
    let window: Vec<serde_json::Value> = shown.iter().map(|&i| describe(i)).collect();
    // The prefix as history indices: a description each would cost more
    // than the whole search of a small history, for a list no one reads
    // whole; the window above describes its end.
    let prefix: Vec<serde_json::Value> = failure.longest_prefix.iter().map(|&i| ops[i].index.into()).collect();
    // Moved in, not copied through serde as `json!` would.
    serde_json::Value::Object(serde_json::Map::from_iter([
        ("key".to_owned(), key.into()),
        ("explanation".to_owned(), explanation.text.into()),
        ("blocked".to_owned(), describe(blamed)),
        ("window".to_owned(), window.into()),
        ("longest_prefix".to_owned(), prefix.into()),
    ]))
}
