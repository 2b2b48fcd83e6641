//! The linearizability checker on histories with known verdicts, for every
//! model, and on histories generated from real sequential executions.

use harness::checker::linearizable::{check, Budget};
use harness::history::{Event, EventType, Process, Value};
use harness::model::append_kv::AppendKv;
use harness::model::cas_register::CasRegister;
use harness::model::register::Register;
use harness::verdict::Validity;
use serde_json::{json, Value as Json};

/// A history written by hand: `(process, type, f, value, time)`.
struct H(Vec<Event>);

impl H {
    fn new() -> H {
        H(Vec::new())
    }

    fn event(mut self, process: u64, kind: EventType, f: &str, value: Option<Json>, time: u64) -> H {
        let index = self.0.len() as u64;
        let consistency = (f == "get").then(|| "strong".to_owned());
        self.0.push(Event {
            index,
            time,
            process: Process::Client(process),
            kind,
            f: f.into(),
            key: Some("k".into()),
            value: value.map_or(Value::Absent, Value::Present),
            ttl: None,
            consistency,
            min_timestamp: None,
            timestamp: None,
            node: None,
            error: None,
        });
        self
    }

    fn call(self, p: u64, f: &str, v: Option<Json>, t: u64) -> H {
        self.event(p, EventType::Invoke, f, v, t)
    }

    fn ok(self, p: u64, f: &str, v: Option<Json>, t: u64) -> H {
        self.event(p, EventType::Ok, f, v, t)
    }

    fn info(self, p: u64, f: &str, t: u64) -> H {
        self.event(p, EventType::Info, f, None, t)
    }

    fn fail(self, p: u64, f: &str, t: u64) -> H {
        self.event(p, EventType::Fail, f, None, t)
    }
}

fn v(text: &str) -> Option<Json> {
    use base64::Engine;
    Some(json!(base64::engine::general_purpose::STANDARD.encode(text)))
}

fn register(h: H) -> (Validity, String) {
    let result = check(&Register, &h.0, &Budget::default());
    (result.valid, result.reason)
}

#[test]
fn register_heavy_overlap_and_crashes_are_linearizable() {
    // Three writers overlapping everything; reads see each value in an order
    // consistent with some linearization; a crashed write shows up late.
    let h = H::new()
        .call(0, "put", v("v1"), 0)
        .call(1, "put", v("v2"), 1)
        .call(2, "put", v("v3"), 2)
        .call(3, "get", None, 3)
        .ok(3, "get", v("v2"), 4)
        .call(4, "get", None, 5)
        .ok(0, "put", None, 6)
        .ok(4, "get", v("v1"), 7)
        .info(2, "put", 8)
        .ok(1, "put", None, 9)
        .call(3, "get", None, 10)
        .ok(3, "get", v("v1"), 11)
        .call(5, "get", None, 12)
        .ok(5, "get", v("v3"), 13)
        .call(6, "delete", None, 14)
        .fail(6, "delete", 15)
        .call(7, "get", None, 16)
        .ok(7, "get", v("v3"), 17);
    assert_eq!(register(h).0, Validity::Valid);
}

#[test]
fn register_classic_anomalies_are_caught_with_words() {
    // Stale read: v2 acknowledged before the read began.
    let stale = H::new()
        .call(0, "put", v("v1"), 0)
        .ok(0, "put", None, 1)
        .call(0, "put", v("v2"), 2)
        .ok(0, "put", None, 3)
        .call(1, "get", None, 4)
        .ok(1, "get", v("v1"), 5);
    let (validity, reason) = register(stale);
    assert_eq!(validity, Validity::Invalid);
    assert!(reason.contains("returned v1") && reason.contains("put of v2 was acknowledged"), "{reason}");

    // Lost write: the put was acknowledged, the key reads as never written.
    let lost = H::new().call(0, "put", v("v1"), 0).ok(0, "put", None, 1).call(1, "get", None, 2).ok(
        1,
        "get",
        Some(Json::Null),
        3,
    );
    let (validity, reason) = register(lost);
    assert_eq!(validity, Validity::Invalid);
    assert!(reason.contains("returned nothing"), "{reason}");

    // A value never written.
    let phantom = H::new().call(0, "get", None, 0).ok(0, "get", v("v9"), 1);
    let (validity, reason) = register(phantom);
    assert_eq!(validity, Validity::Invalid);
    assert!(reason.contains("never written"), "{reason}");

    // New then old: two sequential reads during one long write of v2.
    let inversion = H::new()
        .call(0, "put", v("v1"), 0)
        .ok(0, "put", None, 1)
        .call(0, "put", v("v2"), 2)
        .call(1, "get", None, 3)
        .ok(1, "get", v("v2"), 4)
        .call(1, "get", None, 5)
        .ok(1, "get", v("v1"), 6)
        .ok(0, "put", None, 7);
    assert_eq!(register(inversion).0, Validity::Invalid);

    // A write that takes effect twice: v1, then v2, then v1 again.
    let twice = H::new()
        .call(0, "put", v("v1"), 0)
        .ok(0, "put", None, 1)
        .call(0, "put", v("v2"), 2)
        .ok(0, "put", None, 3)
        .call(1, "get", None, 4)
        .ok(1, "get", v("v2"), 5)
        .call(1, "get", None, 6)
        .ok(1, "get", v("v1"), 7);
    assert_eq!(register(twice).0, Validity::Invalid);

    // An unknown write may appear late, but not before it was invoked.
    let early = H::new().call(0, "get", None, 0).ok(0, "get", v("v1"), 1).call(1, "put", v("v1"), 2).info(1, "put", 3);
    assert_eq!(register(early).0, Validity::Invalid);
}

#[test]
fn cas_register_verdicts() {
    let check_cas = |h: H| check(&CasRegister, &h.0, &Budget::default()).valid;
    let fine = H::new()
        .call(0, "write", Some(json!(1)), 0)
        .ok(0, "write", Some(json!(1)), 1)
        .call(1, "cas", Some(json!([1, 2])), 2)
        .call(2, "cas", Some(json!([1, 3])), 3)
        .ok(2, "cas", Some(json!(false)), 4)
        .info(1, "cas", 5)
        .call(3, "read", None, 6)
        .ok(3, "read", Some(json!(2)), 7);
    assert_eq!(check_cas(fine), Validity::Valid);
    let double_swap = H::new()
        .call(0, "write", Some(json!(1)), 0)
        .ok(0, "write", Some(json!(1)), 1)
        .call(1, "cas", Some(json!([1, 2])), 2)
        .ok(1, "cas", Some(json!(true)), 3)
        .call(2, "cas", Some(json!([1, 3])), 4)
        .ok(2, "cas", Some(json!(true)), 5);
    assert_eq!(check_cas(double_swap), Validity::Invalid);
    let never_written = H::new().call(0, "read", None, 0).ok(0, "read", Some(json!(5)), 1);
    assert_eq!(check_cas(never_written), Validity::Invalid);
    let initial_null = H::new().call(0, "read", None, 0).ok(0, "read", Some(Json::Null), 1);
    assert_eq!(check_cas(initial_null), Validity::Valid);
}

#[test]
fn append_kv_verdicts() {
    let check_kv = |h: H| check(&AppendKv, &h.0, &Budget::default()).valid;
    let fine = H::new()
        .call(0, "append", Some(json!("a")), 0)
        .call(1, "append", Some(json!("b")), 1)
        .ok(0, "append", Some(json!("a")), 2)
        .ok(1, "append", Some(json!("b")), 3)
        .call(2, "get", None, 4)
        .ok(2, "get", Some(json!("ba")), 5);
    assert_eq!(check_kv(fine), Validity::Valid);
    let lost_append = H::new()
        .call(0, "append", Some(json!("a")), 0)
        .ok(0, "append", Some(json!("a")), 1)
        .call(1, "append", Some(json!("b")), 2)
        .ok(1, "append", Some(json!("b")), 3)
        .call(2, "get", None, 4)
        .ok(2, "get", Some(json!("b")), 5);
    assert_eq!(check_kv(lost_append), Validity::Invalid);
    let doubled = H::new()
        .call(0, "append", Some(json!("a")), 0)
        .ok(0, "append", Some(json!("a")), 1)
        .call(2, "get", None, 4)
        .ok(2, "get", Some(json!("aa")), 5);
    assert_eq!(check_kv(doubled), Validity::Invalid);
}

/// A register history from a real sequential execution, with crashes.
fn generated(seed: u64, processes: u64, ops: usize) -> Vec<Event> {
    harness::checker::synthetic::history(harness::checker::synthetic::Flavor::Register, seed, processes, ops, 1, 0.15)
}

#[test]
fn generated_executions_are_linearizable_and_impossible_reads_are_caught() {
    for seed in 0..200 {
        let history = generated(seed, 5, 40);
        let result = check(&Register, &history, &Budget::default());
        assert_eq!(result.valid, Validity::Valid, "seed {seed}: {}", result.reason);

        // Make one successful read return a value nobody wrote.
        let mut mutated = history.clone();
        let reads: Vec<usize> =
            (0..mutated.len()).filter(|&i| mutated[i].f == "get" && mutated[i].kind == EventType::Ok).collect();
        if reads.is_empty() {
            continue;
        }
        let target = reads[seed as usize % reads.len()];
        mutated[target].value = Value::Present(json!("bm9ib2R5")); // "nobody"
        let result = check(&Register, &mutated, &Budget::default());
        assert_eq!(result.valid, Validity::Invalid, "seed {seed}: a read of an unwritten value passed");
    }
}

#[test]
fn the_budget_holds() {
    // 30 processes over one key: a valid history that needs a search. With
    // the default budget it is judged valid; with none, it must come back
    // UNKNOWN, quickly, and never as a guess either way.
    let history = generated(1, 30, 120);
    assert_eq!(check(&Register, &history, &Budget::default()).valid, Validity::Valid);
    let tiny = Budget { time: std::time::Duration::ZERO, max_cache_entries: 0, ..Budget::default() };
    let started = std::time::Instant::now();
    let result = check(&Register, &history, &tiny);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(result.valid, Validity::Unknown, "the budget was ignored: {}", result.reason);
    // A cache budget alone stops the search too.
    let no_cache = Budget { max_cache_entries: 0, ..Budget::default() };
    assert_eq!(check(&Register, &history, &no_cache).valid, Validity::Unknown);
}

#[test]
fn generated_append_and_register_histories_across_many_keys() {
    use harness::checker::synthetic::{history, Flavor};
    for seed in 0..30 {
        for (flavor, model_is_register) in [(Flavor::Register, true), (Flavor::AppendKv, false)] {
            let mut events = history(flavor, seed, 20, 400, 8, 0.1);
            let result = if model_is_register {
                check(&Register, &events, &Budget::default())
            } else {
                check(&AppendKv, &events, &Budget::default())
            };
            assert_eq!(result.valid, Validity::Valid, "seed {seed} {flavor:?}: {}", result.reason);
            let read = events.iter().position(|e| e.f == "get" && e.kind == EventType::Ok).unwrap();
            events[read].value = Value::Present(if model_is_register { json!("bmV2ZXI=") } else { json!("never.") });
            let result = if model_is_register {
                check(&Register, &events, &Budget::default())
            } else {
                check(&AppendKv, &events, &Budget::default())
            };
            assert_eq!(result.valid, Validity::Invalid, "seed {seed} {flavor:?}: an impossible read passed");
        }
    }
}
