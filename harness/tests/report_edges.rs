//! Reports of odd runs still draw, and their links still resolve: an empty
//! history, one where every operation failed or never completed, and one
//! whose operation names are free text.

use harness::history::{Event, EventType, Process};
use harness::report::{self, Run};

fn op(index: u64, time_ms: u64, process: u64, kind: EventType, f: &str) -> Event {
    let mut e = Event::new(Process::Client(process), kind, f);
    e.index = index;
    e.time = time_ms * 1_000_000;
    e.key = Some("k/1".into());
    e
}

fn run(events: Vec<Event>) -> Run {
    Run {
        name: "odd run".into(),
        config: serde_json::json!({"scenario": {"name": "odd <run>"}, "seed": 1}),
        results: Vec::new(),
        summary: serde_json::Value::Null,
        history: report::History::from_events(&events),
        files: vec!["history.jsonl".into()],
    }
}

fn assert_renders(run: &Run) {
    let page = report::build(run).expect("the report draws");
    assert!(page.html.contains("odd &lt;run&gt;"), "titles are escaped");
    assert!(!page.html.contains("<run>"));
    let plots: Vec<&str> = page.plots.iter().map(|(name, _)| name.as_str()).collect();
    for (at, _) in page.html.match_indices("src=\"") {
        let rest = &page.html[at + 5..];
        let src = &rest[..rest.find('"').unwrap()];
        assert!(plots.contains(&src), "{src} is one of the plots {plots:?}");
        assert!(src.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._".contains(&b)), "{src} is a plain name");
    }
}

#[test]
fn an_empty_history_renders() {
    assert_renders(&run(Vec::new()));
}

#[test]
fn failures_and_unfinished_operations_render() {
    let events = vec![
        op(0, 0, 0, EventType::Invoke, "put"),
        op(1, 5, 0, EventType::Fail, "put"),
        op(2, 6, 1, EventType::Invoke, "delete"),
        op(3, 7, 2, EventType::Invoke, "get"),
        op(4, 900, 2, EventType::Info, "get"),
    ];
    assert_renders(&run(events));
}

#[test]
fn free_text_operation_names_make_safe_file_names() {
    let events = vec![
        op(0, 0, 0, EventType::Invoke, "we/ird \"op\" #1"),
        op(1, 3, 0, EventType::Ok, "we/ird \"op\" #1"),
        op(2, 4, 0, EventType::Invoke, "we-ird-op-1"),
        op(3, 9, 0, EventType::Ok, "we-ird-op-1"),
    ];
    let run = run(events);
    assert_renders(&run);
    let page = report::build(&run).unwrap();
    let names: std::collections::BTreeSet<&str> = page.plots.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), page.plots.len(), "distinct kinds never share a plot file");
}
