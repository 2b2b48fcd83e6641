//! What the linearizability check does once one key is proven not
//! linearizable: stop (the other keys are not searched), let the other keys
//! share a small budget, or search every key to its own budget. A key whose
//! search was cut is never reported linearizable.

use harness::checker::linearizable::{check, AfterAnomaly, Budget};
use harness::checker::synthetic::{history, Flavor};
use harness::history::{Event, EventType, Process, Value};
use harness::model::register::Register;
use harness::verdict::{CheckResult, Validity};
use std::time::{Duration, Instant};

/// Key `a`: a read of v1 after v2 was acknowledged (proven at once). Key
/// `hard`: 2,000 operations of 100 clients, linearizable but a search of
/// many seconds.
fn one_anomaly_and_one_hard_key() -> Vec<Event> {
    let mut events = history(Flavor::Register, 42, 100, 2_000, 1, 0.0);
    for event in &mut events {
        event.key = Some("hard".into());
    }
    let stale = [
        (0, EventType::Invoke, "put", Some("djE=")),
        (0, EventType::Ok, "put", None),
        (0, EventType::Invoke, "put", Some("djI=")),
        (0, EventType::Ok, "put", None),
        (1, EventType::Invoke, "get", None),
        (1, EventType::Ok, "get", Some("djE=")),
    ];
    for (i, (process, kind, f, value)) in stale.into_iter().enumerate() {
        let mut event = Event::new(Process::Client(1_000_000 + process), kind, f);
        event.index = events.len() as u64;
        event.time = i as u64;
        event.key = Some("a".into());
        event.consistency = (f == "get").then(|| "strong".into());
        event.value = value.map_or(Value::Absent, |v| Value::Present(serde_json::json!(v)));
        events.push(event);
    }
    events
}

fn keys(result: &CheckResult, list: &str) -> Vec<String> {
    let entries = result.evidence[list].as_array().cloned().unwrap_or_default();
    entries.iter().map(|e| e["key"].as_str().unwrap_or("?").to_owned()).collect()
}

fn run(after_anomaly: AfterAnomaly, time: Duration) -> (CheckResult, Duration) {
    let events = one_anomaly_and_one_hard_key();
    let budget = Budget { time, after_anomaly, ..Budget::default() };
    let started = Instant::now();
    let result = check(&Register, &events, &budget);
    (result, started.elapsed())
}

#[test]
fn stop_cancels_the_other_keys_at_once() {
    let (result, took) = run(AfterAnomaly::Stop, Duration::from_secs(30));
    assert_eq!(result.valid, Validity::Invalid, "{}", result.reason);
    assert_eq!(keys(&result, "anomalies"), ["a"]);
    assert_eq!(keys(&result, "not_searched_keys"), ["hard"], "{}", result.evidence);
    assert!(result.reason.contains("1 keys not searched after the first anomaly"), "{}", result.reason);
    assert!(took < Duration::from_secs(3), "stopped at once, not after the hard key's search: {took:?}");
}

#[test]
fn share_bounds_the_search_after_the_first_anomaly() {
    let shared = Duration::from_millis(300);
    let (result, took) = run(AfterAnomaly::Share(shared), Duration::from_secs(30));
    assert_eq!(result.valid, Validity::Invalid, "{}", result.reason);
    assert_eq!(keys(&result, "not_searched_keys"), ["hard"], "{}", result.evidence);
    let why = result.evidence["not_searched_keys"][0]["why"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("search stopped") && why.contains("shared"), "{why}");
    assert!(took >= shared && took < Duration::from_secs(3), "searched for the shared time only: {took:?}");
}

#[test]
fn search_all_gives_every_key_its_own_budget() {
    let own = Duration::from_millis(800);
    let (result, took) = run(AfterAnomaly::SearchAll, own);
    assert_eq!(result.valid, Validity::Invalid, "{}", result.reason);
    assert!(keys(&result, "not_searched_keys").is_empty(), "{}", result.evidence);
    assert_eq!(keys(&result, "unknown_keys"), ["hard"], "over its own budget, undecided: {}", result.evidence);
    assert!(took >= own, "the hard key had its whole budget: {took:?}");
}

#[test]
fn a_history_without_anomaly_is_searched_whole_in_every_mode() {
    let events = history(Flavor::Register, 7, 10, 400, 8, 0.05);
    for after_anomaly in [AfterAnomaly::Stop, AfterAnomaly::Share(Duration::ZERO), AfterAnomaly::SearchAll] {
        let result = check(&Register, &events, &Budget { after_anomaly, ..Budget::default() });
        assert_eq!(result.valid, Validity::Valid, "{after_anomaly:?}: {}", result.reason);
    }
}
