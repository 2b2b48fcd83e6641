//! The checker's search prunes (reads placed as soon as they fit, branches
//! dropped when a later read can no longer succeed). Here it must agree with
//! a brute-force search over every order, on many small random histories,
//! linearizable or not, for every model.

use harness::checker::linearizable::{check_key, Budget, KeyVerdict};
use harness::history::Process;
use harness::model::append_kv::{AppendKv, AppendOp};
use harness::model::cas_register::{CasOp, CasRegister};
use harness::model::register::{Register, RegisterOp};
use harness::model::Model;
use harness::model::Operation;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every order that respects real time (an operation that returned before
/// another was invoked comes first; crashed ones may be left out).
fn brute_force<M: Model>(model: &M, ops: &[Operation<M::Op>], placed: &mut Vec<bool>, state: &M::State) -> bool {
    let definite_left = (0..ops.len()).any(|i| !placed[i] && ops[i].return_ns.is_some());
    if !definite_left {
        return true;
    }
    for c in 0..ops.len() {
        let must_wait =
            (0..ops.len()).any(|y| !placed[y] && y != c && ops[y].return_ns.is_some_and(|r| r < ops[c].invoke_ns));
        if placed[c] || must_wait {
            continue;
        }
        let Some(next) = model.step(state, &ops[c].op) else { continue };
        placed[c] = true;
        let found = brute_force(model, ops, placed, &next);
        placed[c] = false;
        if found {
            return true;
        }
    }
    false
}

fn random_ops<O>(rng: &mut StdRng, n: usize, mut op: impl FnMut(&mut StdRng) -> (O, bool)) -> Vec<Operation<O>> {
    (0..n)
        .map(|i| {
            let invoke_ns = rng.random_range(0..20);
            let (op, may_crash) = op(rng);
            let crashed = may_crash && rng.random_bool(0.2);
            let return_ns = (!crashed).then(|| invoke_ns + rng.random_range(0..10));
            Operation { process: Process::Client(i as u64), index: i as u64, invoke_ns, return_ns, op }
        })
        .collect()
}

fn agree<M: Model>(model: &M, seed: u64, gen: impl Fn(&mut StdRng) -> (M::Op, bool)) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut valid, mut invalid) = (0, 0);
    for case in 0..3000 {
        let n = rng.random_range(1..=7);
        let ops = random_ops(&mut rng, n, &gen);
        let expected = brute_force(model, &ops, &mut vec![false; n], &model.init());
        let verdict = check_key(model, &ops, &Budget::default());
        let got = match verdict {
            KeyVerdict::Linearizable => true,
            KeyVerdict::NotLinearizable(_) => false,
            KeyVerdict::Unknown(why) | KeyVerdict::NotSearched(why) => {
                panic!("case {case}: undecided on {n} operations: {why}")
            }
        };
        assert_eq!(got, expected, "{} seed {seed} case {case}: {ops:#?}", model.name());
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    (valid, invalid)
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

#[test]
fn register_search_agrees_with_brute_force() {
    let (valid, invalid) = agree(&Register, 1, |rng| match rng.random_range(0..5) {
        0 | 1 => (RegisterOp::Put(pick(rng, &["a", "b", "c"]).into()), true),
        2 => (RegisterOp::Delete, true),
        _ => {
            let read = pick(rng, &["", "a", "b", "c"]);
            (RegisterOp::Get((!read.is_empty()).then(|| read.into())), false)
        }
    });
    assert!(valid > 40 && invalid > 40, "both verdicts are exercised: {valid} valid, {invalid} invalid");
}

#[test]
fn cas_register_search_agrees_with_brute_force() {
    let (valid, invalid) = agree(&CasRegister, 2, |rng| match rng.random_range(0..5) {
        0 | 1 => (CasOp::Write(rng.random_range(0..3)), true),
        2 => {
            let swapped = [Some(true), Some(false), None][rng.random_range(0..3)];
            let cas = CasOp::Cas { expected: rng.random_range(0..3), new: rng.random_range(0..3), swapped };
            (cas, swapped.is_none())
        }
        _ => (CasOp::Read([None, Some(0), Some(1), Some(2)][rng.random_range(0..4)]), false),
    });
    assert!(valid > 40 && invalid > 40, "both verdicts are exercised: {valid} valid, {invalid} invalid");
}

#[test]
fn append_kv_search_agrees_with_brute_force() {
    let (valid, invalid) = agree(&AppendKv, 3, |rng| match rng.random_range(0..6) {
        0 => (AppendOp::Put(pick(rng, &["p", "q"]).into()), true),
        1 | 2 => (AppendOp::Append(pick(rng, &["x", "y"]).into()), true),
        _ => (AppendOp::Get(pick(rng, &["", "x", "y", "xy", "yx", "p", "px", "qy", "pxy"]).into()), false),
    });
    assert!(valid > 40 && invalid > 40, "both verdicts are exercised: {valid} valid, {invalid} invalid");
}
