//! `harness check` on histories written by hand in the SPEC format.

use std::process::Command;

fn check(history: &str) -> (i32, String) {
    let path = std::env::temp_dir().join(format!("hand-{}-{}.jsonl", std::process::id(), history.len()));
    std::fs::write(&path, history).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_harness")).arg("check").arg(&path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn a_hand_written_history_is_read_and_judged() {
    let history = r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"put","key":"k","value":"djE=","node":"n1"}
{"index":1,"time":10,"process":1,"type":"invoke","f":"get","key":"k","consistency":"strong","node":"n2"}
{"index":2,"time":20,"process":0,"type":"ok","f":"put","key":"k","timestamp":1700000000000,"node":"n1"}
{"index":3,"time":25,"process":"nemesis","type":"info","f":"start-partition","value":{"shape":"bridge"}}
{"index":4,"time":30,"process":1,"type":"ok","f":"get","key":"k","value":"djE=","consistency":"strong","timestamp":1700000000000,"node":"n2"}
"#;
    let (code, text) = check(history);
    assert!(text.contains("well-formed") && text.contains("5 events"), "{text}");
    assert!(text.contains("linearizable") && text.contains("durability"), "{text}");
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_broken_history_is_refused_with_the_line() {
    let two_in_flight = r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"put","key":"k","value":"djE="}
{"index":1,"time":1,"process":0,"type":"invoke","f":"get","key":"k","consistency":"strong"}
{"index":2,"time":2,"process":0,"type":"ok","f":"get","key":"k","value":null,"consistency":"strong"}
"#;
    let (code, text) = check(two_in_flight);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("line 2") && text.contains("in flight"), "{text}");
    let (code, text) = check("{\"index\":0,\"time\":0\n{oops}\n{\"index\":1}\n");
    assert_eq!(code, 2);
    assert!(text.contains("line 1"), "{text}");
}

#[test]
fn a_hand_written_stale_read_is_an_anomaly_in_words() {
    let history = r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"put","key":"k7","value":"djEy"}
{"index":1,"time":100,"process":0,"type":"ok","f":"put","key":"k7"}
{"index":2,"time":200,"process":0,"type":"invoke","f":"put","key":"k7","value":"djE1"}
{"index":3,"time":3100000000,"process":0,"type":"ok","f":"put","key":"k7"}
{"index":4,"time":3200000000,"process":1,"type":"invoke","f":"get","key":"k7","consistency":"strong"}
{"index":5,"time":3410000000,"process":1,"type":"ok","f":"get","key":"k7","value":"djEy","consistency":"strong"}
"#;
    let (code, text) = check(history);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("read of k7 returned v12 at 3.410 s, but a put of v15 was acknowledged at 3.100 s"),
        "{text}"
    );
}
