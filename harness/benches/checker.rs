//! `make bench` (checker part): linearizability check time on generated
//! histories of growing size and concurrency, with crashed operations.
//! Porcupine (Go) checks a 1,700-operation, 50-client append history split
//! per key in about 0.2–0.4 s on a machine like this one. `BENCH_CASE=N`
//! runs only the N-th case.

use harness::checker::linearizable::{check, Budget};
use harness::checker::synthetic::{history, Flavor};
use harness::model::append_kv::AppendKv;
use harness::model::register::Register;
use harness::verdict::Validity;
use std::time::Instant;

fn main() {
    println!(
        "{:<10} {:>8} {:>8} {:>6} {:>8} {:>10} {:>10}",
        "model", "ops", "clients", "keys", "crashed", "check ms", "verdict"
    );
    let cases = [
        (Flavor::AppendKv, 1_700, 50, 10, 0.0),
        (Flavor::AppendKv, 1_700, 50, 10, 0.01),
        (Flavor::AppendKv, 1_700, 50, 10, 0.05),
        (Flavor::AppendKv, 10_000, 50, 50, 0.05),
        (Flavor::Register, 1_000, 10, 1, 0.05),
        (Flavor::Register, 10_000, 20, 10, 0.05),
        (Flavor::Register, 100_000, 50, 200, 0.05),
        (Flavor::Register, 2_000, 100, 1, 0.0),
        (Flavor::Register, 2_000, 100, 1, 0.05),
    ];
    let only: Option<usize> = std::env::var("BENCH_CASE").ok().and_then(|v| v.parse().ok());
    for (i, (flavor, ops, clients, keys, crashed)) in cases.into_iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let events = history(flavor, 42, clients, ops, keys, crashed);
        let budget = Budget { time: std::time::Duration::from_secs(20), ..Budget::default() };
        let started = Instant::now();
        let result = match flavor {
            Flavor::Register => check(&Register, &events, &budget),
            Flavor::AppendKv => check(&AppendKv, &events, &budget),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let verdict = match result.valid {
            Validity::Valid => "valid",
            Validity::Invalid => "INVALID",
            Validity::Unknown => "unknown",
        };
        let crashed = format!("{:.0}%", crashed * 100.0);
        println!("{:<10} {ops:>8} {clients:>8} {keys:>6} {crashed:>8} {ms:>10.1} {verdict:>10}", format!("{flavor:?}"));
        assert_ne!(result.valid, Validity::Invalid, "a generated history must be linearizable");
    }
}
