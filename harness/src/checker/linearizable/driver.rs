//! Every key of a history, searched in parallel: the calling thread
//! first, helper threads once the check proves long enough.

use super::evidence::Summary;
use super::shared::{Clock, Shared};
use super::{operations, Budget, KeyVerdict, Scratch, Search};
use crate::checker::Tally;
use crate::history::Event;
use crate::model::{Model, Operation};
use crate::verdict::{CheckResult, Validity};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

/// Checks every key of `events`, keys in parallel.
pub fn check<M: Model>(model: &M, events: &[Event], budget: &Budget) -> CheckResult {
    crate::checker::one_group(Box::new(Linearizability::new(model, budget)), events)
}

/// The linearizability check fed a group of keys at a time (see
/// [`Tally`]): each group's keys are searched in parallel, and the time
/// [`super::AfterAnomaly`] allows runs from the check's first anomaly
/// whichever group it was in.
pub struct Linearizability<'m, M: Model> {
    model: &'m M,
    budget: Budget,
    clock: Option<Clock>,
    summary: Summary,
    /// A history the model cannot read: the verdict is unknown.
    error: Option<String>,
}

impl<'m, M: Model> Linearizability<'m, M> {
    pub fn new(model: &'m M, budget: &Budget) -> Self {
        Linearizability { model, budget: *budget, clock: None, summary: Summary::default(), error: None }
    }
}

impl<M: Model> Tally for Linearizability<'_, M> {
    fn add(&mut self, events: &[Event]) {
        if self.error.is_some() {
            return;
        }
        match operations(self.model, events) {
            Ok(by_key) => {
                let keys: Vec<(&String, &Vec<Operation<M::Op>>)> = by_key.iter().collect();
                let shared = match self.clock {
                    None => Shared::new(self.budget.after_anomaly, keys.len()),
                    Some(clock) => Shared::resume(self.budget.after_anomaly, keys.len(), clock),
                };
                let verdicts = search_all(self.model, &keys, &self.budget, &shared);
                self.clock = Some(shared.clock());
                self.summary.add(self.model, &keys, verdicts);
            }
            Err(error) => self.error = Some(error),
        }
    }

    fn finish(self: Box<Self>) -> CheckResult {
        match self.error {
            Some(error) => {
                CheckResult::new("linearizable", Validity::Unknown, format!("cannot read the history: {error}"))
            }
            None => self.summary.finish(self.model.name(), self.budget.after_anomaly),
        }
    }
}

/// Every key's verdict, in the order of `keys`.
fn search_all<M: Model>(
    model: &M,
    keys: &[(&String, &Vec<Operation<M::Op>>)],
    budget: &Budget,
    shared: &Shared,
) -> Vec<(usize, KeyVerdict)> {
    let verdicts: Mutex<Vec<(usize, KeyVerdict)>> = Mutex::new(Vec::with_capacity(keys.len()));
    let keep =
        |mine: Vec<(usize, KeyVerdict)>| verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(mine);
    // The calling thread checks first, alone; helpers join it only when
    // the check proves long enough to pay for them (see `HELPERS_AFTER`).
    let helpers = if keys.len() > 1 { cores().min(keys.len()) - 1 } else { 0 };
    std::thread::scope(|scope| {
        let helper = || keep(search_keys(model, keys, budget, shared, &|| {}));
        let start_helpers = || {
            for _ in 0..helpers {
                scope.spawn(helper);
            }
        };
        keep(search_keys(model, keys, budget, shared, &start_helpers));
    });
    let mut verdicts = verdicts.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    verdicts.sort_by_key(|(i, _)| *i);
    verdicts
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
