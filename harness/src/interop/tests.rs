use super::*;
use crate::history::{EventType, Process, Value};
use serde_json::json;

/// What a test compares of an event: process, type, f, key, value.
type Shape = (Process, EventType, String, Option<String>, Option<serde_json::Value>);

fn shape(events: &[Event]) -> Vec<Shape> {
    events.iter().map(|e| (e.process, e.kind, e.f.clone(), e.key.clone(), e.value.json().cloned())).collect()
}

const KNOSSOS: &str = r#"[{:process 0, :type :invoke, :f :write, :value 3}
 {:process 1, :type :invoke, :f :cas, :value [1 2]}
 {:process 0, :type :ok, :f :write, :value 3}
 {:process 1, :type :fail, :f :cas, :value [1 2]}
 {:process :nemesis, :type :info, :f :start, :value nil}
 {:process 2, :type :invoke, :f :read, :value nil}
 {:process 2, :type :ok, :f :read, :value 3}]"#;

#[test]
fn a_knossos_vector_is_a_cas_register_history_whose_failed_cas_did_not_happen() {
    let imported = import(KNOSSOS, Dialect::Jepsen).unwrap();
    assert_eq!(imported.model, ModelKind::CasRegister);
    let client = |p| Process::Client(p);
    assert_eq!(
        shape(&imported.events),
        vec![
            (client(0), EventType::Invoke, "write".into(), None, Some(json!(3))),
            (client(1), EventType::Invoke, "cas".into(), None, Some(json!([1, 2]))),
            (client(0), EventType::Ok, "write".into(), None, Some(json!(3))),
            (client(1), EventType::Fail, "cas".into(), None, Some(json!([1, 2]))),
            (Process::NEMESIS, EventType::Info, "start".into(), None, None),
            (client(2), EventType::Invoke, "read".into(), None, Some(json!(null))),
            (client(2), EventType::Ok, "read".into(), None, Some(json!(3))),
        ]
    );
    // No :time: one millisecond per op keeps the input's order.
    assert_eq!(imported.events.iter().map(|e| e.time).collect::<Vec<_>>()[..3], [0, 1_000_000, 2_000_000]);
}

#[test]
fn porcupine_reads_a_failed_cas_as_a_compare_that_returned_false() {
    let imported = import(KNOSSOS, Dialect::Porcupine).unwrap();
    let cas = &imported.events[3];
    assert_eq!((cas.kind, cas.value.json()), (EventType::Ok, Some(&json!(false))));
}

#[test]
fn jepsen_log_lines_are_ops_and_other_lines_are_skipped() {
    let log = "INFO  jepsen.core - Running test\n\
               INFO  jepsen.util - 3\t:invoke\t:cas\t[1 4]\n\
               INFO  jepsen.util - 1  :invoke :read   nil\n\
               INFO  jepsen.util - 3\t:fail\t:cas\t[1 4]\n\
               INFO  jepsen.util - 1\t:fail\t:read\t:timed-out\n\
               INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n";
    let imported = import(log, Dialect::Porcupine).unwrap();
    assert_eq!(imported.skipped_lines, 1);
    let kinds: Vec<(EventType, &str)> = imported.events.iter().map(|e| (e.kind, e.f.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (EventType::Invoke, "cas"),
            (EventType::Invoke, "read"),
            (EventType::Ok, "cas"),
            (EventType::Info, "read"),
            (EventType::Info, "start")
        ]
    );
    assert_eq!(imported.events[0].value.json(), Some(&json!([1, 4])));
}

#[test]
fn independent_tuples_and_key_fields_become_keys() {
    let tuples = "{:process 0, :type :invoke, :f :write, :value [\"a\" 1], :time 5}\n\
                  {:process 0, :type :ok, :f :write, :value [\"a\" 1], :time 9}\n\
                  {:process 1, :type :invoke, :f :read, :value [7 nil], :time 10}\n\
                  {:process 1, :type :ok, :f :read, :value [7 nil], :time 12}\n";
    let imported = import(tuples, Dialect::Jepsen).unwrap();
    let keys: Vec<Option<&str>> = imported.events.iter().map(|e| e.key.as_deref()).collect();
    assert_eq!(keys, [Some("a"), Some("a"), Some("7"), Some("7")]);
    assert_eq!(imported.events[1].value.json(), Some(&json!(1)));
    assert_eq!(imported.events.iter().map(|e| e.time).collect::<Vec<_>>(), [5, 9, 10, 12]);
    assert!(!imported.times_from_order);
    // Times that go back (older Jepsen histories) give way to the order.
    let back = tuples.replace(":time 9}", ":time 11}");
    let imported = import(&back, Dialect::Jepsen).unwrap();
    assert!(imported.times_from_order);
    assert_eq!(imported.events.iter().map(|e| e.time).collect::<Vec<_>>(), [0, 1_000_000, 2_000_000, 3_000_000]);

    let kv = "{:process 0, :type :invoke, :f :append, :key \"4\", :value \"x 0 1 y\"}\n\
              {:process 0, :type :ok, :f :append, :key \"4\", :value \"x 0 1 y\"}\n";
    let imported = import(kv, Dialect::Porcupine).unwrap();
    assert_eq!(imported.model, ModelKind::AppendKv);
    assert_eq!(imported.events[1].key.as_deref(), Some("4"));
}

#[test]
fn bad_input_is_refused_with_where_and_why() {
    let cases = [
        ("{:process 0, :type :ok, :f :read, :value 1}\n", "line 1: process 0 completes with nothing in flight"),
        ("{:process 0, :type :invoke, :f :read}\n{:process 0 :type\n", "line 2: not EDN"),
        ("{:process 0, :type :invoke, :f :acquire, :value nil}\n", "no model here for the operations [\"acquire\"]"),
        ("{:process 0, :type :begin, :f :read}\n", "line 1: unknown :type :begin"),
        (
            "{:process 0, :type :invoke, :f :write, :value 1}\n{:process 1, :type :invoke, :f :write, :value \"a\"}\n",
            "mixes integer and string values",
        ),
    ];
    for (input, expected) in cases {
        let error = import(input, Dialect::Jepsen).unwrap_err().to_string();
        assert!(error.contains(expected), "{input:?}: {error}");
    }
}

/// A register history of our API, with a delete, an eventual get, an
/// unknown put and a get that never completed.
fn ours() -> Vec<Event> {
    let event = |process, kind, f: &str, key: &str, value: Option<serde_json::Value>| {
        let mut event = Event::new(Process::Client(process), kind, f);
        event.key = Some(key.into());
        event.value = value.map_or(Value::Absent, Value::Present);
        if f == "get" {
            event.consistency = Some(if process == 3 { "eventual" } else { "strong" }.into());
        }
        event
    };
    let mut events = vec![
        event(0, EventType::Invoke, "put", "k1", Some(json!("djE="))),
        event(1, EventType::Invoke, "get", "k1", None),
        event(3, EventType::Invoke, "get", "k1", None),
        event(0, EventType::Ok, "put", "k1", Some(json!("djE="))),
        event(1, EventType::Ok, "get", "k1", Some(json!(null))),
        event(3, EventType::Ok, "get", "k1", Some(json!("djE="))),
        event(0, EventType::Invoke, "delete", "k1", None),
        event(2, EventType::Invoke, "put", "k2", Some(json!("djI="))),
        event(0, EventType::Ok, "delete", "k1", None),
        event(2, EventType::Info, "put", "k2", Some(json!("djI="))),
        event(1, EventType::Invoke, "get", "k2", None),
    ];
    for (i, e) in events.iter_mut().enumerate() {
        e.index = i as u64;
        e.time = 1000 * i as u64;
    }
    events
}

#[test]
fn our_register_history_round_trips_through_jepsen_edn() {
    let events = ours();
    let exported = export(&events, ModelKind::Register).unwrap();
    assert_eq!((exported.ops, exported.dropped_eventual), (9, 2));
    assert!(exported.text.lines().next().unwrap().contains(":f :write"), "{}", exported.text);
    assert!(exported.text.contains(":value [\"k1\" nil]"), "a delete is a write of nil: {}", exported.text);
    let back = import(&exported.text, Dialect::Jepsen).unwrap();
    assert_eq!(back.model, ModelKind::Register);
    let kept: Vec<Event> = events.into_iter().filter(|e| e.consistency.as_deref() != Some("eventual")).collect();
    assert_eq!(shape(&back.events), shape(&kept));
    assert_eq!(back.events.iter().map(|e| e.time).collect::<Vec<_>>(), kept.iter().map(|e| e.time).collect::<Vec<_>>());
}

#[test]
fn a_cas_that_returned_false_exports_as_jepsen_s_fail() {
    let imported = import(KNOSSOS, Dialect::Porcupine).unwrap();
    let exported = export(&imported.events, ModelKind::CasRegister).unwrap();
    let failed_cas = exported.text.lines().nth(3).unwrap();
    assert!(failed_cas.contains(":f :cas") && failed_cas.contains(":type :fail"), "{}", exported.text);
    let again = import(&exported.text, Dialect::Porcupine).unwrap();
    assert_eq!(shape(&again.events), shape(&imported.events));
}
