//! Other tools' published histories through `harness import --check`, with
//! the verdicts their own tools give: Porcupine's test data (its tests'
//! expected results, `tests/data/porcupine/expected.txt`) and Knossos'
//! cas-register histories (filed under `good/` and `bad/`). And ours out
//! through `harness export` and back in, with the same verdict.

use std::path::{Path, PathBuf};
use std::process::Command;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("interop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `harness ARGS`: exit code and stdout + stderr.
fn harness(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_harness")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// Imports and checks `file` (copied into `dir`: import writes beside its
/// input); the verdict word and the whole output.
fn import_and_check(file: &Path, dialect: &str, dir: &Path) -> (String, String) {
    let copy = dir.join(file.file_name().unwrap());
    std::fs::copy(file, &copy).unwrap();
    let (code, text) =
        harness(&["import".as_ref(), "--from".as_ref(), dialect.as_ref(), "--check".as_ref(), copy.as_os_str()]);
    let verdict = match code {
        0 => "valid",
        1 => "invalid",
        2 => "unknown",
        _ => "error",
    };
    (verdict.to_owned(), text)
}

#[test]
fn porcupine_s_histories_get_porcupine_s_verdicts() {
    let root = Path::new(DATA).join("porcupine");
    let expected = std::fs::read_to_string(root.join("expected.txt")).unwrap();
    let dir = scratch("porcupine");
    let mut wrong = Vec::new();
    let mut counted = (0, 0);
    for line in expected.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (file, want) = line.split_once(' ').unwrap();
        let (got, text) = import_and_check(&root.join(file), "porcupine", &dir);
        if got != want {
            wrong.push(format!("{file}: expected {want}, got {got}\n{text}"));
        }
        if want == "valid" {
            counted.0 += 1
        } else {
            counted.1 += 1
        }
    }
    assert!(wrong.is_empty(), "{} of Porcupine's histories judged differently:\n{}", wrong.len(), wrong.join("\n"));
    // Both kinds are there: the check can fail either way.
    assert!(counted.0 >= 20 && counted.1 >= 60, "{counted:?}");
}

#[test]
fn knossos_s_histories_get_knossos_verdicts() {
    let root = Path::new(DATA).join("knossos/cas-register");
    let dir = scratch("knossos");
    let mut wrong = Vec::new();
    let mut counted = 0;
    for want in ["valid", "invalid"] {
        let folder = root.join(if want == "valid" { "good" } else { "bad" });
        for entry in std::fs::read_dir(folder).unwrap() {
            let file = entry.unwrap().path();
            let (got, text) = import_and_check(&file, "jepsen", &dir);
            if got != want {
                wrong.push(format!("{}: expected {want}, got {got}\n{text}", file.display()));
            }
            counted += 1;
        }
    }
    assert!(wrong.is_empty(), "{} of Knossos' histories judged differently:\n{}", wrong.len(), wrong.join("\n"));
    assert!(counted >= 30, "{counted}");
}

/// A stored run of ours (a planted last-write-wins bug: INVALID), out to
/// Jepsen's EDN and back: the same verdict, the same operations.
#[test]
fn our_history_goes_out_to_jepsen_and_back_with_its_verdict() {
    let dir = scratch("round-trip");
    let ours = dir.join("history.jsonl");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lww-bug/history.jsonl"), &ours).unwrap();
    let (code, text) = harness(&["check".as_ref(), "--model".as_ref(), "register".as_ref(), ours.as_os_str()]);
    assert_eq!(code, 1, "the fixture holds anomalies: {text}");

    let edn = dir.join("exported.edn");
    let (code, text) = harness(&[
        "export".as_ref(),
        "--to".as_ref(),
        "jepsen".as_ref(),
        ours.as_os_str(),
        "-o".as_ref(),
        edn.as_os_str(),
    ]);
    assert_eq!(code, 0, "{text}");
    let first = std::fs::read_to_string(&edn).unwrap();
    assert!(first.lines().any(|l| l.contains(":f :write") && l.contains(":value [\"")), "independent tuples: {first}");

    let back = dir.join("back.jsonl");
    let (code, text) = harness(&[
        "import".as_ref(),
        "--from".as_ref(),
        "jepsen".as_ref(),
        edn.as_os_str(),
        "-o".as_ref(),
        back.as_os_str(),
        "--check".as_ref(),
    ]);
    assert_eq!(code, 1, "INVALID again after the round trip: {text}");
    assert!(text.contains("model register"), "{text}");

    // And a second trip changes nothing.
    let again = dir.join("again.edn");
    let (code, text) = harness(&[
        "export".as_ref(),
        "--to".as_ref(),
        "jepsen".as_ref(),
        back.as_os_str(),
        "-o".as_ref(),
        again.as_os_str(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), first);
}

#[test]
fn bad_input_gets_a_clear_error_and_the_error_exit_code() {
    let dir = scratch("bad");
    let broken = dir.join("broken.edn");
    std::fs::write(&broken, "{:process 0, :type :invoke, :f :read}\n{:process 0 :type\n").unwrap();
    let (code, text) = harness(&["import".as_ref(), "--from".as_ref(), "jepsen".as_ref(), broken.as_os_str()]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("broken.edn") && text.contains("line 2") && text.contains("not EDN"), "{text}");
    assert!(!dir.join("broken.jsonl").exists(), "nothing half-written");
    let (code, text) = harness(&["import".as_ref(), "--from".as_ref(), "elle".as_ref(), broken.as_os_str()]);
    assert_eq!(code, 64, "a usage error: {text}");
    assert!(text.contains("expected jepsen or porcupine"), "{text}");
}
