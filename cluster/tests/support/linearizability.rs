//! A small linearizability checker for one register (put / delete / get),
//! enough for the cluster's own tests: Wing & Gong's search with a cache of
//! (linearized set, state), as in Porcupine. The harness has the full one.

#![allow(dead_code)]

use std::collections::HashSet;

/// What an operation did to or saw in the register (`None`: absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write(Option<u64>),
    Read(Option<u64>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub op: Op,
    pub invoke: u64,
    /// `None` for an operation whose outcome is unknown: it may take effect
    /// at any point after its invocation, or never.
    pub complete: Option<u64>,
}

/// Search steps one history may take before the small checker gives up.
const MAX_STEPS: usize = 2_000_000;

/// Whether some order of `history` (at most 128 operations, one key)
/// respects real time and the register's semantics; `None` when the search
/// ran out of steps (undecided, never a guess).
pub fn is_linearizable(history: &[Entry]) -> Option<bool> {
    is_linearizable_exhaustive(&without_unseen_unknown_puts(history))
}

/// `history` without the puts of unknown outcome whose value no read
/// returned. Each may be taken as never having happened, which changes no
/// read's justification, and each would otherwise multiply the search by
/// the places it could go (a partitioned run has dozens).
/// `pruning_keeps_every_verdict` checks this against the plain search.
fn without_unseen_unknown_puts(history: &[Entry]) -> Vec<Entry> {
    let read: HashSet<u64> = history
        .iter()
        .filter_map(|entry| match entry.op {
            Op::Read(Some(value)) => Some(value),
            _ => None,
        })
        .collect();
    let unseen =
        |entry: &Entry| entry.complete.is_none() && matches!(entry.op, Op::Write(Some(v)) if !read.contains(&v));
    history.iter().filter(|entry| !unseen(entry)).cloned().collect()
}

/// The search over every operation, no shortcut.
pub fn is_linearizable_exhaustive(history: &[Entry]) -> Option<bool> {
    assert!(history.len() <= 128, "the small checker handles up to 128 operations per key");
    let mut seen = HashSet::new();
    let found = search(history, 0, None, &mut seen);
    if seen.len() > MAX_STEPS {
        return None;
    }
    Some(found)
}

fn search(history: &[Entry], done: u128, state: Option<u64>, seen: &mut HashSet<(u128, Option<u64>)>) -> bool {
    let required_left = history.iter().enumerate().any(|(i, e)| done & (1 << i) == 0 && e.complete.is_some());
    if !required_left {
        return true;
    }
    // Out of budget: stop exploring (the caller reports undecided).
    if seen.len() > MAX_STEPS || !seen.insert((done, state)) {
        return false;
    }
    // An operation may go next only if no pending one completed before it began.
    let horizon = history
        .iter()
        .enumerate()
        .filter(|(i, _)| done & (1 << i) == 0)
        .filter_map(|(_, e)| e.complete)
        .min()
        .unwrap_or(u64::MAX);
    for (i, entry) in history.iter().enumerate() {
        if done & (1 << i) != 0 || entry.invoke > horizon {
            continue;
        }
        let next = match &entry.op {
            Op::Write(value) => *value,
            Op::Read(value) if *value == state => state,
            Op::Read(_) => continue,
        };
        if search(history, done | (1 << i), next, seen) {
            return true;
        }
    }
    false
}

/// Known verdicts, so the checker itself is checked.
pub fn self_check() {
    let e = |op, invoke, complete| Entry { op, invoke, complete };
    // Overlapping write and read may go either way.
    let yes = |h: &[Entry]| is_linearizable(h) == Some(true);
    let no = |h: &[Entry]| is_linearizable(h) == Some(false);
    assert!(yes(&[e(Op::Write(Some(1)), 0, Some(10)), e(Op::Read(None), 1, Some(2))]));
    assert!(yes(&[e(Op::Write(Some(1)), 0, Some(10)), e(Op::Read(Some(1)), 1, Some(2))]));
    // A stale read after the write completed is not.
    assert!(no(&[e(Op::Write(Some(1)), 0, Some(1)), e(Op::Read(None), 2, Some(3))]));
    // New then old: once 2 was read, 1 cannot come back.
    assert!(no(&[
        e(Op::Write(Some(1)), 0, Some(1)),
        e(Op::Write(Some(2)), 2, Some(10)),
        e(Op::Read(Some(2)), 3, Some(4)),
        e(Op::Read(Some(1)), 5, Some(6)),
    ]));
    // An unknown write may take effect late, or never.
    assert!(yes(&[e(Op::Write(Some(7)), 0, None), e(Op::Read(None), 5, Some(6)), e(Op::Read(Some(7)), 8, Some(9))]));
    assert!(no(&[e(Op::Read(Some(9)), 0, Some(1))]));
}
