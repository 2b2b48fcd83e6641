//! Histories generated from real sequential executions, for property tests
//! and benchmarks: every operation takes effect at a random instant inside
//! its interval, in that order, on a real model; some writes crash (no
//! completion, or `info`) and take effect or not. Such a history is always
//! linearizable. Pure and seeded.

use crate::history::{Event, EventType, Process, Value};
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Which model's operations to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Our API: put / delete / strong get, base64 values.
    Register,
    /// get / put / append on strings.
    AppendKv,
}

struct Planned {
    process: u64,
    key: String,
    f: &'static str,
    argument: Option<String>,
    invoke: u64,
    effect: u64,
    ret: Option<u64>,
    takes_effect: bool,
    info: bool,
}

fn event(index: u64, time: u64, process: u64, kind: EventType, f: &str, key: &str) -> Event {
    Event { index, time, key: Some(key.into()), ..Event::new(Process::Client(process), kind, f) }
}

/// `ops` operations by `processes` concurrent processes over `keys` keys;
/// about `crash_share` of the writes crash.
pub fn history(flavor: Flavor, seed: u64, processes: u64, ops: usize, keys: usize, crash_share: f64) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut busy_until = vec![0u64; processes as usize];
    let mut incarnation = vec![0u64; processes as usize];
    let mut planned = Vec::with_capacity(ops);
    for i in 0..ops {
        let slot = rng.random_range(0..processes) as usize;
        let invoke = busy_until[slot] + rng.random_range(1..50);
        let effect = invoke + rng.random_range(1..200);
        let ret = effect + rng.random_range(1..200);
        let key = format!("k{}", rng.random_range(0..keys));
        let (f, argument) = match (flavor, rng.random_range(0..10)) {
            (Flavor::Register, 0..=3) => ("put", Some(format!("v{i}"))),
            (Flavor::Register, 4) => ("delete", None),
            (Flavor::Register, _) => ("get", None),
            (Flavor::AppendKv, 0) => ("put", Some(format!("p{i}."))),
            (Flavor::AppendKv, 1..=4) => ("append", Some(format!("a{i}."))),
            (Flavor::AppendKv, _) => ("get", None),
        };
        let crashed = f != "get" && rng.random_bool(crash_share);
        let process = slot as u64 + processes * incarnation[slot];
        if crashed {
            incarnation[slot] += 1; // a crashed process is replaced
            busy_until[slot] = invoke;
        } else {
            busy_until[slot] = ret;
        }
        planned.push(Planned {
            process,
            key,
            f,
            argument,
            invoke,
            effect,
            ret: (!crashed).then_some(ret),
            takes_effect: !crashed || rng.random_bool(0.5),
            info: crashed && rng.random_bool(0.5),
        });
    }
    let reads = execute(flavor, &planned);
    let encode = |text: &str| match flavor {
        Flavor::Register => json!(base64::engine::general_purpose::STANDARD.encode(text)),
        Flavor::AppendKv => json!(text),
    };
    let mut timed: Vec<(u64, bool, Event)> = Vec::with_capacity(2 * ops);
    for (i, p) in planned.iter().enumerate() {
        let mut call = event(0, p.invoke, p.process, EventType::Invoke, p.f, &p.key);
        if let Some(argument) = &p.argument {
            call.value = Value::Present(encode(argument));
        }
        if flavor == Flavor::Register && p.f == "get" {
            call.consistency = Some("strong".into());
        }
        timed.push((p.invoke, false, call.clone()));
        let done = match (p.ret, p.info) {
            (Some(ret), _) => {
                let mut done = call.clone();
                done.kind = EventType::Ok;
                done.time = ret;
                done.value = match (&reads[i], flavor) {
                    (Some(Some(read)), _) => Value::Present(encode(read)),
                    (Some(None), Flavor::Register) => Value::Present(serde_json::Value::Null),
                    (Some(None), Flavor::AppendKv) => Value::Present(json!("")),
                    (None, _) => call.value.clone(),
                };
                Some(done)
            }
            (None, true) => {
                let mut done = call.clone();
                done.kind = EventType::Info;
                done.time = p.effect.max(p.invoke + 1);
                Some(done)
            }
            (None, false) => None,
        };
        if let Some(done) = done {
            timed.push((done.time, true, done));
        }
    }
    timed.sort_by_key(|(time, is_completion, event)| (*time, *is_completion, event.process));
    timed
        .into_iter()
        .enumerate()
        .map(|(index, (_, _, mut e))| {
            e.index = index as u64;
            e
        })
        .collect()
}

/// Runs the plan in effect order; returns what each read saw.
fn execute(flavor: Flavor, planned: &[Planned]) -> Vec<Option<Option<String>>> {
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| planned[i].effect);
    let mut state: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    let mut reads = vec![None; planned.len()];
    for i in order {
        let p = &planned[i];
        match (p.f, flavor) {
            ("get", _) => reads[i] = Some(state.get(p.key.as_str()).cloned()),
            _ if !p.takes_effect => {}
            ("put", _) => {
                state.insert(&p.key, p.argument.clone().unwrap_or_default());
            }
            ("delete", _) => {
                state.remove(p.key.as_str());
            }
            ("append", _) => state.entry(&p.key).or_default().push_str(p.argument.as_deref().unwrap_or("")),
            _ => {}
        }
    }
    reads
}
