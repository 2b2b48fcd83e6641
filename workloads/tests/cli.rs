//! `harness check` on histories written by hand in the docs/SPEC.md format.

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
    assert_eq!(code, 3, "an unreadable history is an error, not a verdict: {text}");
    assert!(text.contains("line 2") && text.contains("in flight"), "{text}");
    let (code, text) = check("{\"index\":0,\"time\":0\n{oops}\n{\"index\":1}\n");
    assert_eq!(code, 3);
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

fn write(name: &str, history: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("cli-{}-{name}.jsonl", std::process::id()));
    std::fs::write(&path, history).unwrap();
    path
}

fn check_files(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_harness")).arg("check").args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

const VALID: &str = r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"put","key":"k","value":"djE="}
{"index":1,"time":20,"process":0,"type":"ok","f":"put","key":"k","timestamp":1700000000000}
{"index":2,"time":30,"process":1,"type":"invoke","f":"get","key":"k","consistency":"strong"}
{"index":3,"time":40,"process":1,"type":"ok","f":"get","key":"k","value":"djE=","consistency":"strong","timestamp":1700000000000}
"#;

/// A stale read on each of `keys` keys: `put v1`, then `put v2`, then a
/// read of v1 long after both were acknowledged.
fn stale_reads(keys: usize) -> String {
    let mut lines = Vec::new();
    for k in 0..keys {
        let (t, p) = (k as u64 * 1000, k as u64 * 2);
        let key = format!("k{k:03}");
        let mut line = |offset: u64, process: u64, rest: &str| {
            let index = lines.len();
            let time = t + offset;
            lines.push(format!(r#"{{"index":{index},"time":{time},"process":{process},"key":"{key}",{rest}}}"#));
        };
        line(0, p, r#""type":"invoke","f":"put","value":"djE=""#);
        line(10, p, r#""type":"ok","f":"put""#);
        line(20, p, r#""type":"invoke","f":"put","value":"djI=""#);
        line(30, p, r#""type":"ok","f":"put""#);
        line(40, p + 1, r#""type":"invoke","f":"get","consistency":"strong""#);
        line(50, p + 1, r#""type":"ok","f":"get","value":"djE=","consistency":"strong""#);
    }
    lines.join("\n") + "\n"
}

#[test]
fn several_files_get_a_block_each_a_summary_and_the_worst_exit_code() {
    let (valid, invalid) = (write("valid", VALID), write("invalid", &stale_reads(1)));
    let broken = write("broken", "{\"index\":0,\"time\":0\n{oops}\n{\"index\":1}\n");
    let (code, text) = check_files(&[valid.as_os_str(), valid.as_os_str()]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.matches(&format!("VALID {}", valid.display())).count(), 2, "{text}");
    assert!(text.contains("2 histories: 2 valid, 0 invalid, 0 unknown, 0 unreadable; exit code 0"), "{text}");

    let (code, text) = check_files(&[valid.as_os_str(), invalid.as_os_str()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("VALID {}", valid.display())), "{text}");
    assert!(text.contains(&format!("INVALID {}", invalid.display())), "{text}");
    assert!(text.contains("2 histories: 1 valid, 1 invalid, 0 unknown, 0 unreadable; exit code 1"), "{text}");

    // An unreadable file is reported and the others are still checked.
    let (code, text) = check_files(&[broken.as_os_str(), valid.as_os_str()]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains(&format!("ERROR   {}", broken.display())) && text.contains("line 1"), "{text}");
    assert!(text.contains(&format!("VALID {}", valid.display())), "{text}");
    assert!(text.contains("2 histories: 1 valid, 0 invalid, 0 unknown, 1 unreadable; exit code 3"), "{text}");

    // One file: no summary line.
    let (code, text) = check_files(&[valid.as_os_str()]);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("histories:"), "{text}");
    for path in [valid, invalid, broken] {
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn the_first_anomaly_stops_the_check_unless_all_anomalies_are_asked_for() {
    let keys = 60;
    let path = write("many-anomalies", &stale_reads(keys));
    let (code, text) = check_files(&[path.as_os_str()]);
    assert_eq!(code, 1, "{text}");
    let found = text.matches("           - ").count();
    assert!((1..keys / 2).contains(&found), "stops soon after the first anomaly ({found} shown): {text}");
    assert!(text.contains("keys not searched after the first anomaly"), "{text}");
    assert!(text.contains("--all-anomalies searches every key"), "{text}");

    let (code, text) = check_files(&[path.as_os_str(), std::ffi::OsStr::new("--all-anomalies")]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("(and {} more keys)", keys - 1)), "every key searched: {text}");
    assert!(!text.contains("not searched"), "{text}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn check_json_is_one_document_with_every_verdict_and_the_exit_code() {
    let (valid, invalid) = (write("json-valid", VALID), write("json-invalid", &stale_reads(2)));
    let broken = write("json-broken", "{oops}\n{\"index\":1}\n");
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["check", "--json"])
        .args([&valid, &invalid, &broken])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON only");
    let verdicts: Vec<&serde_json::Value> =
        document["histories"].as_array().unwrap().iter().map(|h| &h["verdict"]).collect();
    assert_eq!(verdicts, [&serde_json::json!("valid"), &serde_json::json!("invalid"), &serde_json::Value::Null]);
    assert_eq!(document["exit_code"], 1);
    let linearizable = &document["histories"][1]["results"][1];
    assert_eq!(
        (linearizable["checker"].as_str(), linearizable["valid"].as_str()),
        (Some("linearizable"), Some("invalid"))
    );
    assert!(document["histories"][2]["error"].as_str().unwrap().contains("line 1"), "{document}");
    for path in [valid, invalid, broken] {
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn usage_errors_have_their_own_exit_code_and_help_is_not_an_error() {
    let code = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_harness")).args(args).output().unwrap().status.code();
    assert_eq!(code(&["no-such-command"]), Some(64));
    assert_eq!(code(&["check"]), Some(64), "a missing argument");
    assert_eq!(code(&["check", "--model", "nope", "x.jsonl"]), Some(64));
    assert_eq!(code(&["--help"]), Some(0));
    assert_eq!(code(&["check", "--help"]), Some(0));
}

/// `harness check … | head -1`: the reader goes away after one line; the
/// harness stops quietly (no panic message) with 141, as a tool killed
/// by SIGPIPE would.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    let path = write("pipe", VALID);
    // More output than a pipe holds (64 KiB), so the harness is still
    // writing when the reader goes.
    let args = vec![path.as_os_str().to_owned(); 600];
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("check")
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then dropped: the pipe closes
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    std::fs::remove_file(path).unwrap();
}

/// `harness run --json` on local processes: stdout is one JSON document
/// with the verdict, and stderr carries plain progress lines (not a
/// terminal) that name the fault.
#[test]
fn run_json_prints_one_document_and_progress_stays_on_stderr() {
    let reports = std::env::temp_dir().join(format!("cli-run-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&reports);
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("--reports")
        .arg(&reports)
        .args(["run", "--backend", "local", "--nodes", "3", "--concurrency", "3", "--rate", "40"])
        .args(["--time-limit", "12", "--nemesis", "kill", "--nemesis-interval", "4", "--seed", "5", "--json"])
        .args(["--convergence-timeout", "30"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is JSON only ({e}); stderr: {stderr}"));
    assert_eq!(document["validity"], "valid", "{document:#}");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(document["exit_code"], 0);
    assert_eq!(document["seed"], 5);
    assert!(document["results"].as_array().is_some_and(|r| r.len() >= 3), "{document:#}");
    assert!(std::path::Path::new(document["folder"].as_str().unwrap()).join("history.jsonl").is_file());
    assert!(document["reproduce"].as_str().unwrap().contains("--seed 5"), "{document:#}");
    // Plain lines, one per change of fault at least: the kill is named.
    assert!(!stderr.contains('\r'), "no bar redraws in a log: {stderr}");
    assert!(stderr.lines().any(|l| l.contains("fault: kill n")), "{stderr}");
    let _ = std::fs::remove_dir_all(&reports);
}
