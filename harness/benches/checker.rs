//! `make bench` (checker part): linearizability check time on generated
//! histories of growing size and concurrency, with crashed operations.
//! Porcupine (Go) checks a 1,700-operation, 50-client append history split
//! per key in about 0.2–0.4 s on a machine like this one. `BENCH_CASE=N`
//! runs only the N-th case; `PORCUPINE_KV_DIR` adds Porcupine's own logs.

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
    porcupine_logs();
}

/// Porcupine's own key-value logs (`test_data/kv/c*-{ok,bad}.txt` of
/// anishathalye/porcupine), when `PORCUPINE_KV_DIR` points at a copy: the
/// like-for-like comparison. Lines look like
/// `{:process 6, :type :invoke, :f :append, :key "0", :value "x 6 0 y"}`;
/// the line number is the time, as in Porcupine's own parser.
fn porcupine_logs() {
    let Some(dir) = std::env::var_os("PORCUPINE_KV_DIR") else {
        println!("\n(set PORCUPINE_KV_DIR to a copy of Porcupine's test_data/kv to time its own logs)");
        return;
    };
    println!("\n{:<16} {:>8} {:>10} {:>10}", "porcupine log", "events", "check ms", "verdict");
    for name in ["c01-ok", "c01-bad", "c10-ok", "c10-bad", "c50-ok", "c50-bad"] {
        let Ok(text) = std::fs::read_to_string(std::path::Path::new(&dir).join(format!("{name}.txt"))) else {
            continue;
        };
        let events: Vec<harness::history::Event> =
            text.lines().enumerate().filter_map(|(i, l)| kv_event(i, l)).collect();
        let started = Instant::now();
        let result = check(&AppendKv, &events, &Budget::default());
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        println!("{name:<16} {:>8} {ms:>10.1} {:>10}", events.len(), format!("{:?}", result.valid));
    }
}

fn kv_event(line_no: usize, line: &str) -> Option<harness::history::Event> {
    use harness::history::{Event, EventType, Process, Value};
    let field = |name: &str| -> Option<&str> {
        let start = line.find(name)? + name.len();
        let rest = &line[start..];
        Some(rest[..rest.find([',', '}'])?].trim())
    };
    let process: u64 = field(":process ")?.parse().ok()?;
    let kind = match field(":type :")? {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        _ => EventType::Info,
    };
    let mut event = Event::new(Process::Client(process), kind, field(":f :")?);
    event.index = line_no as u64;
    event.time = line_no as u64;
    event.key = Some(field(":key ")?.trim_matches('"').to_owned());
    event.value = match field(":value ")? {
        "nil" if kind == EventType::Ok && event.f == "get" => Value::Present(serde_json::json!("")),
        "nil" => Value::Absent,
        quoted => Value::Present(serde_json::json!(quoted.trim_matches('"'))),
    };
    Some(event)
}
