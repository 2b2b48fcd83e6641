//! The oracle behind checking a history from disk shard by shard: for
//! random histories full of anomalies of every kind, each checker's
//! verdict and evidence fed shard by shard ([`Tally`]) equal its verdict
//! on the whole history in memory, for any number of shards; the report's
//! samples gathered from shards equal those of the whole history; and a
//! history that is not well-formed fails the split as it fails a read.

use base64::Engine;
use harness::checker::linearizable::{self, AfterAnomaly, Budget, Linearizability};
use harness::checker::{durability, session, staleness, ttl, Tally};
use harness::history::{self, shards, Event, EventType, HistoryWriter, Process, Value};
use harness::model::register::Register;
use harness::report;
use harness::verdict::CheckResult;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Duration;

const START_UNIX_MS: u64 = 1_700_000_000_000;
const TOLERANCE_MS: u64 = 250;

fn value(i: usize) -> serde_json::Value {
    serde_json::json!(base64::engine::general_purpose::STANDARD.encode(format!("v{i}")))
}

/// A history of `processes` clients on `keys` keys whose answers are
/// random among the key's real writes: stale, lost, reordered, expired
/// early or late, with wrong timestamps; some operations fail, some are
/// unknown, some never complete; nemesis events between them; final
/// strong reads of every key at the end. Well-formed, and wrong in every
/// way the checkers look for.
fn chaotic(seed: u64, processes: u64, ops: usize, keys: usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut written: Vec<Vec<(serde_json::Value, u64)>> = vec![Vec::new(); keys];
    let mut events = Vec::new();
    let mut busy_ns = vec![0u64; processes as usize];
    let mut version = 0u64;
    for i in 0..ops {
        let p = rng.random_range(0..processes);
        let k = rng.random_range(0..keys);
        if busy_ns[p as usize] == u64::MAX {
            continue; // its last operation never completed
        }
        let invoke_ns = busy_ns[p as usize] + rng.random_range(1..2_000_000);
        let complete_ns = invoke_ns + rng.random_range(1..50_000_000);
        busy_ns[p as usize] = complete_ns;
        let f = ["put", "put", "delete", "get", "get", "get"][rng.random_range(0..6)];
        let mut invoke = Event::new(Process::Client(p), EventType::Invoke, f);
        invoke.time = invoke_ns;
        invoke.key = Some(format!("k{k}"));
        let mut done = Event::new(Process::Client(p), EventType::Ok, f);
        done.time = complete_ns;
        // Completions need not name the key: the split follows the invocation.
        done.key = invoke.key.clone().filter(|_| rng.random_bool(0.5));
        // Versions are the nodes' clocks (ms) at completion, and grow.
        version = version.max(complete_ns / 1_000_000) + 1;
        match f {
            "put" => {
                invoke.value = Value::Present(value(i));
                invoke.ttl = rng.random_bool(0.2).then(|| rng.random_range(0..3));
                done.timestamp = Some(START_UNIX_MS + version);
                written[k].push((value(i), START_UNIX_MS + version));
            }
            "delete" => done.timestamp = Some(START_UNIX_MS + version),
            _ => {
                let consistency = ["strong", "eventual"][rng.random_range(0..2)];
                invoke.consistency = Some(consistency.into());
                invoke.min_timestamp = rng.random_bool(0.3).then(|| START_UNIX_MS + version.saturating_sub(100));
                done.consistency = invoke.consistency.clone();
                let seen = (!written[k].is_empty() && rng.random_bool(0.8))
                    .then(|| written[k][rng.random_range(0..written[k].len())].clone());
                done.value = Value::Present(seen.as_ref().map_or(serde_json::Value::Null, |(v, _)| v.clone()));
                let wrong = rng.random_bool(0.05);
                done.timestamp = seen.map(|(_, ts)| if wrong { ts + 1 } else { ts });
            }
        }
        done.kind = match rng.random_range(0..20) {
            0 => EventType::Fail,
            1 => EventType::Info,
            _ => EventType::Ok,
        };
        events.push(invoke);
        if rng.random_range(0..50) > 0 {
            events.push(done);
        } else {
            busy_ns[p as usize] = u64::MAX; // never completes: the process is done
        }
        if rng.random_range(0..200) == 0 {
            let mut fault = Event::new(Process::NEMESIS, EventType::Info, "start-partition");
            fault.time = invoke_ns;
            fault.value = Value::Present(serde_json::json!({"shape": "halves"}));
            events.push(fault);
        }
    }
    events.sort_by_key(|e| e.time);
    let end_ns = events.last().map_or(0, |e| e.time);
    for (k, writes) in written.iter().enumerate() {
        let p = 1_000_000 + k as u64;
        let mut read = Event::new(Process::Client(p), EventType::Invoke, "get");
        read.time = end_ns + 1 + 2 * k as u64;
        read.key = Some(format!("k{k}"));
        read.consistency = Some("strong".into());
        let mut done = read.clone();
        done.kind = EventType::Ok;
        done.time += 1;
        // Some final reads show an older write: lost ones.
        let last = match writes.len() {
            n if n > 1 && rng.random_bool(0.3) => Some(writes[rng.random_range(0..n - 1)].clone()),
            _ => writes.last().cloned(),
        };
        done.value = Value::Present(last.as_ref().map_or(serde_json::Value::Null, |(v, _)| v.clone()));
        done.timestamp = last.map(|(_, ts)| ts);
        events.extend([read, done]);
    }
    for (i, e) in events.iter_mut().enumerate() {
        e.index = i as u64;
    }
    history::validate(&events).expect("the generator writes well-formed histories");
    events
}

/// A folder of this test's, removed at the end.
struct Scratch(std::path::PathBuf);

impl Scratch {
    #[track_caller]
    fn new() -> Scratch {
        let line = std::panic::Location::caller().line();
        let dir = std::env::temp_dir().join(format!("shards-test-{}-{line}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(events: &[Event], path: &Path) {
    let mut writer = HistoryWriter::create(path).unwrap();
    for e in events {
        writer.append(e.clone()).unwrap();
    }
}

/// Every checker, as the runner builds them; the linearizability search
/// goes to the end of every key so that its verdict does not depend on
/// timing.
fn tallies() -> Vec<Box<dyn Tally>> {
    let budget = Budget { time: Duration::from_secs(30), after_anomaly: AfterAnomaly::SearchAll, ..Budget::default() };
    vec![
        Box::new(Linearizability::new(&Register, &budget)),
        Box::<durability::Durability>::default(),
        Box::<session::Sessions>::default(),
        Box::<staleness::Staleness>::default(),
        Box::new(ttl::Ttl::new(START_UNIX_MS, TOLERANCE_MS)),
    ]
}

fn whole(events: &[Event]) -> Vec<CheckResult> {
    let budget = Budget { time: Duration::from_secs(30), after_anomaly: AfterAnomaly::SearchAll, ..Budget::default() };
    vec![
        linearizable::check(&Register, events, &budget),
        durability::check(events),
        session::check(events),
        staleness::check(events),
        ttl::check(events, START_UNIX_MS, TOLERANCE_MS),
    ]
}

#[test]
fn checking_shard_by_shard_gives_the_verdicts_of_the_whole_history() {
    let dir = Scratch::new();
    for seed in 0..6 {
        let events = chaotic(seed, 12, 1_500, 40);
        let expected = whole(&events);
        // Every checker finds something to say, or the oracle proves little.
        for result in &expected {
            assert_ne!(result.evidence, serde_json::Value::Null, "{}", result.checker);
        }
        let verdicts: Vec<_> = expected.iter().map(|r| (r.checker.clone(), r.valid, r.reason.clone())).collect();
        assert!(
            expected.iter().filter(|r| r.valid == harness::verdict::Validity::Invalid).count() >= 4,
            "{verdicts:#?}"
        );
        let path = dir.path().join(format!("history-{seed}.jsonl"));
        write(&events, &path);
        for count in [1, 2, 5, 16, 64] {
            let split = shards::split(&path, &dir.path().join(format!("shards-{seed}-{count}")), count).unwrap();
            assert_eq!(split.events, events.len() as u64);
            assert_eq!(split.nemesis.len(), events.iter().filter(|e| e.process == Process::NEMESIS).count());
            let mut tallies = tallies();
            split.for_each(|group| tallies.iter_mut().for_each(|t| t.add(group))).unwrap();
            let got: Vec<CheckResult> = tallies.into_iter().map(Tally::finish).collect();
            for (got, expected) in got.iter().zip(&expected) {
                assert_eq!(got, expected, "seed {seed}, {count} shards, {}", expected.checker);
            }
        }
    }
}

#[test]
fn the_reports_samples_from_shards_are_the_whole_historys() {
    let dir = Scratch::new();
    let events = chaotic(9, 8, 2_000, 30);
    let path = dir.path().join("history.jsonl");
    write(&events, &path);
    let results = whole(&events);
    let expected = report::History::from_events(&events);
    for count in [1, 3, 32] {
        let split = shards::split(&path, &dir.path().join(format!("shards-{count}")), count).unwrap();
        let mut samples = report::data::Samples::default();
        split.for_each(|group| samples.add(group, &|_| false)).unwrap();
        let got = report::finish_gather(&split, samples, &results).unwrap();
        assert_eq!(got.end_ns, expected.end_ns);
        assert_eq!(got.nemesis, expected.nemesis);
        assert_eq!(got.samples.len(), expected.samples.len());
        let anomaly_keys: Vec<String> =
            report::anomaly::anomalies(&results).into_iter().take(report::MAX_TIMELINES).map(|a| a.key).collect();
        assert!(!anomaly_keys.is_empty());
        for (got, expected) in got.samples.iter().zip(&expected.samples) {
            // Details only where a timeline needs them, and then the same.
            let on_anomaly_key = expected.detail.as_ref().is_some_and(|d| anomaly_keys.contains(&d.key));
            let detail = if on_anomaly_key { expected.detail.clone() } else { None };
            let expected = report::data::Sample { detail, ..expected.clone() };
            assert_eq!(got, &expected);
        }
    }
    // The split beside the history is removed with it.
    let split = shards::split_beside(&path).unwrap();
    assert!(path.with_extension("shards").is_dir());
    drop(split);
    assert!(!path.with_extension("shards").exists());
}

#[test]
fn a_history_that_is_not_well_formed_fails_the_split_as_it_fails_a_read() {
    let dir = Scratch::new();
    let events = chaotic(3, 4, 200, 5);
    let path = dir.path().join("history.jsonl");
    write(&events, &path);
    let mut text = std::fs::read_to_string(&path).unwrap();
    // A torn last line is dropped by both.
    text.push_str("{\"index\": 99999, \"ti");
    std::fs::write(&path, &text).unwrap();
    let read = history::read(&path).unwrap();
    let split = shards::split(&path, &dir.path().join("a"), 4).unwrap();
    assert_eq!(split.events, read.len() as u64);
    drop(split);
    // A completion with nothing in flight, in the middle: the same error.
    let mut lines: Vec<&str> = text.lines().collect();
    let orphan = r#"{"index":0,"time":0,"process":77,"type":"ok","f":"get","key":"k0"}"#;
    lines.insert(10, orphan);
    std::fs::write(&path, lines.join("\n")).unwrap();
    let read = history::read(&path).unwrap_err().to_string();
    let split = shards::split(&path, &dir.path().join("b"), 4).unwrap_err().to_string();
    assert_eq!(read, split);
    assert!(read.starts_with("line 11:"), "{read}");
    // Garbage in the middle: the same parse error.
    lines[10] = "not json";
    std::fs::write(&path, lines.join("\n")).unwrap();
    let read = history::read(&path).unwrap_err().to_string();
    assert_eq!(read, shards::split(&path, &dir.path().join("c"), 4).unwrap_err().to_string());
    assert!(read.starts_with("line 11:"), "{read}");
}
