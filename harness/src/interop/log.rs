//! The op lines older Jepsen tests log through `jepsen.util` (and that
//! Porcupine's etcd test data are made of; the gaps are tabs or spaces):
//!
//! ```text
//! INFO  jepsen.util - 3  :invoke  :cas  [1 4]
//! INFO  jepsen.util - 3  :fail  :cas  [1 4]
//! INFO  jepsen.util - :nemesis  :info  :start  nil
//! ```
//!
//! Every other line of such a log is skipped and counted.

use super::edn::{event_type, to_json};
use super::{InteropError, RawOp};

const MARK: &str = "jepsen.util - ";

/// Whether the text's first few lines are `jepsen.util` log lines.
pub(super) fn looks_like_log(text: &str) -> bool {
    text.lines().filter(|l| !l.trim().is_empty()).take(20).any(|l| l.contains(MARK))
}

pub(super) fn parse(text: &str) -> Result<(Vec<RawOp>, usize), InteropError> {
    let mut ops = Vec::new();
    let mut skipped = 0;
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        match line.split_once(MARK).map(|(_, rest)| op_line(rest, n)) {
            Some(Some(op)) => ops.push(op?),
            _ => skipped += 1,
        }
    }
    Ok((ops, skipped))
}

/// `None` when the line is not an op (jepsen.util logs other things too).
fn op_line(rest: &str, line: usize) -> Option<Result<RawOp, InteropError>> {
    let (process, rest) = next_token(rest)?;
    let (kind, rest) = next_token(rest)?;
    let (f, after_f) = next_token(rest)?;
    let kind = event_type(kind.strip_prefix(':')?)?;
    let process = match process {
        ":nemesis" => None,
        number => match number.parse::<u64>() {
            Ok(p) => Some(p),
            Err(_) => return Some(Err(InteropError::at(line, format!("process {number:?} is not a number")))),
        },
    };
    // The value is the rest of the line; it may hold spaces (`[1 4]`).
    let after_f = after_f.trim();
    let value = if after_f.is_empty() {
        Ok(serde_json::Value::Null)
    } else {
        edn_format::parse_str(after_f).map(|v| to_json(&v)).map_err(|e| InteropError::at(line, format!("value: {e}")))
    };
    Some(value.map(|value| RawOp {
        line,
        process,
        kind,
        f: f.trim_start_matches(':').to_owned(),
        value,
        key: None,
        time_ns: None,
        error: None,
    }))
}

/// The first whitespace-separated token of `text`, and what follows it.
fn next_token(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (end > 0).then(|| (&text[..end], &text[end..]))
}
