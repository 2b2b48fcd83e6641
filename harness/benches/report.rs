//! `make bench` (report part): how long the HTML report of a long run takes
//! to draw, and how big it gets. A report must stay usable at hundreds of
//! thousands of operations: plots downsample, tables cap. `REPORT_OPS`
//! sets the size (default 300,000 operations).

use harness::checker::linearizable::{self, Budget};
use harness::checker::synthetic::{history, Flavor};
use harness::history::{Event, EventType, Process, Value};
use harness::model::register::Register;
use harness::report::{self, Run};
use std::time::Instant;

fn main() {
    let ops: usize = std::env::var("REPORT_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(300_000);
    let mut events = history(Flavor::Register, 7, 50, ops, 500, 0.02);
    // Synthetic times are abstract units: stretch them to a run of minutes,
    // and add a fault every 10 s.
    for event in &mut events {
        event.time *= 20_000;
    }
    let end_ns = events.last().map_or(0, |e| e.time);
    let mut faults = Vec::new();
    for (n, at_ns) in (5_000_000_000..end_ns).step_by(10_000_000_000).enumerate() {
        let f = if n % 2 == 0 { "start-partition" } else { "heal" };
        let mut e = Event::new(Process::NEMESIS, EventType::Info, f);
        e.time = at_ns;
        e.value = Value::Present(serde_json::json!({"shape": "halves"}));
        faults.push(e);
    }
    events.extend(faults);
    events.sort_by_key(|e| e.time);
    for (i, e) in events.iter_mut().enumerate() {
        e.index = i as u64;
    }
    let results = vec![linearizable::check(&Register, &events, &Budget::default())];
    let run = Run {
        name: "bench".into(),
        config: serde_json::json!({"scenario": {"name": "bench"}, "seed": 7, "command": "(bench)"}),
        results,
        summary: serde_json::json!({"events": events.len()}),
        history: report::History::from_events(&events),
        files: vec!["history.jsonl".into()],
    };
    let started = Instant::now();
    let page = report::build(&run).expect("the report draws");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let plots_bytes: usize = page.plots.iter().map(|(_, svg)| svg.len()).sum();
    println!(
        "report of {ops} operations ({:.0} s of history): drawn in {ms:.0} ms; page {} KB, {} plots {} KB in all, largest {} KB",
        end_ns as f64 / 1e9,
        page.html.len() / 1024,
        page.plots.len(),
        plots_bytes / 1024,
        page.plots.iter().map(|(_, svg)| svg.len()).max().unwrap_or(0) / 1024,
    );
}
