//! `make bench` (history scale): the memory and time a run's check and
//! report take as its history grows, up to an hour at 3,000 operations a
//! second (10.8 million operations, 21.6 million events).
//!
//! A synthetic history is written to disk a minute at a time (never held
//! whole), shaped like a run's: 50 processes, a working set of 4,500 keys
//! that moves on every half minute, 2% of writes crashing, a fault every 10 s.
//! A child process then does what a run does after its traffic stops
//! (`workloads::run::check_history`, then the HTML report) and reports its
//! own peak resident memory as the kernel counts it (`VmHWM`), so that
//! generating the history does not count. For comparison, the smallest
//! size is also checked the way runs did before histories were split
//! (read whole, checked and drawn in memory).
//!
//! `HISTORY_MINUTES` (default `7.5,15,30,60`) sets the sizes;
//! `HISTORY_DIR` where the files go (default the system's temp folder).
//! Target: the hour under 2 GB, and time per event flat across sizes.

use harness::checker::synthetic::{history, Flavor};
use harness::history::{Event, EventType, HistoryWriter, Process, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const OPS_PER_SEC: u64 = 3_000;
const PROCESSES: u64 = 50;
const KEYS: usize = 4_500;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let mode = args.get(at + 1).map_or("sharded", String::as_str);
        let folder = PathBuf::from(args.get(at + 2).map_or("", String::as_str));
        child(mode, &folder);
        return;
    }
    let minutes: Vec<f64> = std::env::var("HISTORY_MINUTES")
        .unwrap_or_else(|_| "7.5,15,30,60".into())
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .collect();
    let base = std::env::var("HISTORY_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    println!("history scale: {OPS_PER_SEC} ops/s from {PROCESSES} processes, {KEYS} keys every 30 s, register checks + report");
    let mut first = true;
    for minutes in minutes {
        let folder = base.join(format!("history-scale-{}-{minutes}", std::process::id()));
        std::fs::create_dir_all(&folder).expect("a folder for the history");
        let started = Instant::now();
        let events = write_history(&folder, minutes);
        let bytes = std::fs::metadata(folder.join("history.jsonl")).map_or(0, |m| m.len());
        println!(
            "  {minutes:>5} min: {events} events, {:.2} GB on disk (written in {:.0} s)",
            bytes as f64 / 1e9,
            started.elapsed().as_secs_f64()
        );
        measure("sharded", &folder, events);
        if first {
            measure("whole", &folder, events);
            first = false;
        }
        let _ = std::fs::remove_dir_all(&folder);
    }
}

/// Runs the child on `folder` and prints what it reports.
fn measure(mode: &str, folder: &Path, events: u64) {
    let exe = std::env::current_exe().expect("this bench's own path");
    let started = Instant::now();
    let output = Command::new(exe).arg("--child").arg(mode).arg(folder).output().expect("the child runs");
    let secs = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&output.stdout);
    let peak_kb: u64 = text.lines().find_map(|l| l.strip_prefix("peak_kb ")?.trim().parse().ok()).unwrap_or(0);
    let verdict = text.lines().find_map(|l| l.strip_prefix("verdict ")).unwrap_or("?").to_owned();
    if !output.status.success() {
        println!("    {mode}: the child failed: {}", String::from_utf8_lossy(&output.stderr));
        return;
    }
    println!(
        "    {mode:>7}: check + report in {secs:.1} s ({:.2} us/event), peak RSS {} MB ({:.0} B/event); {verdict}",
        secs * 1e6 / events as f64,
        peak_kb / 1024,
        peak_kb as f64 * 1024.0 / events as f64,
    );
}

/// A run's history of `minutes` at [`OPS_PER_SEC`], written a minute at a
/// time, with the files a run folder has beside it. Returns its events.
fn write_history(folder: &Path, minutes: f64) -> u64 {
    let mut writer = HistoryWriter::create(&folder.join("history.jsonl")).expect("history.jsonl");
    let chunks = (minutes * 2.0).ceil() as u64; // half-minute chunks
    let chunk_ns = 30_000_000_000u64;
    let ops_per_chunk = (OPS_PER_SEC * 30) as usize;
    let mut written = 0u64;
    for chunk in 0..chunks {
        let mut events = history(Flavor::Register, chunk, PROCESSES, ops_per_chunk, KEYS, 0.02);
        let span = events.iter().map(|e| e.time).max().unwrap_or(1).max(1);
        let start_ns = chunk * chunk_ns;
        // The working set moves on every half minute, as the runner's
        // does when keys reach their operation limit.
        let generation = chunk;
        for e in &mut events {
            e.time = start_ns + e.time * (chunk_ns - 1) / span;
            if let Process::Client(p) = e.process {
                e.process = Process::Client(p + chunk * 10_000);
            }
            if let Some(key) = &mut e.key {
                *key = format!("g{generation}-{key}");
            }
        }
        // A fault every 10 s, healed 5 s later.
        for n in 0..6u64 {
            let f = if n % 2 == 0 { "start-partition" } else { "heal" };
            let mut e = Event::new(Process::NEMESIS, EventType::Info, f);
            e.time = start_ns + n * 5_000_000_000;
            e.value = Value::Present(serde_json::json!({"shape": "halves"}));
            events.push(e);
        }
        events.sort_by_key(|e| e.time);
        for e in events {
            writer.append(e).expect("the history is written");
            written += 1;
        }
    }
    let config = serde_json::json!({"scenario": {"name": "history-scale"}, "seed": 0, "command": "(bench)"});
    std::fs::write(folder.join("config.json"), config.to_string()).expect("config.json");
    written
}

/// What a run does once its traffic stops: check, then draw. Prints the
/// verdict and this process's peak resident memory.
fn child(mode: &str, folder: &Path) {
    let checkers = workloads::WorkloadKind::Register.checkers();
    let path = folder.join("history.jsonl");
    let (results, history) = if mode == "whole" {
        let events = harness::history::read(&path).expect("the history reads");
        let results = whole(checkers, &events);
        (results, Some(harness::report::History::from_events(&events)))
    } else {
        workloads::run::check_history(checkers, &path, None)
    };
    let written = serde_json::json!({"valid": harness::verdict::merge(&results), "results": results});
    std::fs::write(folder.join("results.json"), written.to_string()).expect("results.json");
    let run = harness::report::load_with_history(folder, history.expect("the history was gathered"))
        .expect("the run folder loads");
    harness::report::write(folder, &run).expect("the report is written");
    let verdicts: Vec<String> = results.iter().map(|r| format!("{} {:?}", r.checker, r.valid)).collect();
    println!("verdict {}", verdicts.join(", "));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kb =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).map_or("0", |v| v.trim_end_matches("kB").trim());
    println!("peak_kb {peak_kb}");
}

/// The checks as runs made them before histories were split: the whole
/// history in memory.
fn whole(checkers: &[&str], events: &[Event]) -> Vec<harness::verdict::CheckResult> {
    use harness::checker::linearizable::{self, AfterAnomaly, Budget};
    use harness::checker::{durability, session};
    let budget = Budget { after_anomaly: AfterAnomaly::Share(linearizable::AFTER_ANOMALY), ..Budget::default() };
    checkers
        .iter()
        .filter_map(|c| match *c {
            "linearizable" => Some(linearizable::check(&harness::model::register::Register, events, &budget)),
            "durability" => Some(durability::check(events)),
            "session" => Some(session::check(events)),
            _ => None,
        })
        .collect()
}
