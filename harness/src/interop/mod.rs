//! Histories of other tools, in and out: Jepsen's (EDN maps, as Knossos,
//! Elle and Jepsen's `history.edn` write them, or the `jepsen.util` log
//! lines of older tests) and Porcupine's test data, so that a history one
//! tool wrote can be judged by the other's checker.
//!
//! Pure and synchronous: text in, events out (and back). The command line
//! reads and writes the files.
//!
//! An imported history speaks one of our models' vocabularies:
//! - `read`/`write`/`cas` with integers (Knossos' cas-register, Porcupine's
//!   etcd logs) becomes the cas-register model's own operations;
//! - `read`/`write` with strings or nil becomes our API's register
//!   (`write v` a put, `write nil` a delete, `read` a strong get), which is
//!   also how `export` writes our histories;
//! - `get`/`put`/`append` with `:key` (Porcupine's kv data) stays as it is,
//!   for the append-kv model.
//!
//! Keys come from `:key`, or from jepsen.independent's `[key value]` tuples
//! when every client invocation carries one.

mod edn;
mod log;
mod vocabulary;

use crate::history::Event;
use crate::model::ModelKind;

pub use edn::export;

/// Whose meaning a history's `:fail` has for a compare-and-set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Jepsen and Knossos: `:fail` means the operation did not happen (a
    /// cas whose compare failed reports `:fail` and is then irrelevant).
    Jepsen,
    /// Porcupine's etcd model: a failed cas happened and returned false,
    /// so the register must have held something else at that moment.
    /// Porcupine's logs also report a read that timed out as `:fail`; here
    /// it is unknown, as Porcupine's own parser has it.
    Porcupine,
}

impl Dialect {
    pub fn parse(text: &str) -> Result<Dialect, String> {
        match text {
            "jepsen" | "knossos" => Ok(Dialect::Jepsen),
            "porcupine" => Ok(Dialect::Porcupine),
            other => Err(format!("unknown history format {other:?}: expected jepsen or porcupine")),
        }
    }
}

/// A history in our format, and the model that judges it.
#[derive(Debug)]
pub struct Imported {
    pub events: Vec<Event>,
    pub model: ModelKind,
    /// Lines that were not operations (other log lines of a Jepsen log).
    pub skipped_lines: usize,
    /// The input's `:time`s were missing or went back (older Jepsen
    /// histories), so times were given in input order: the order is what
    /// real time means to Knossos too.
    pub times_from_order: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InteropError {
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("{0}")]
    History(String),
}

impl InteropError {
    fn at(line: usize, problem: impl Into<String>) -> InteropError {
        InteropError::Line { line, problem: problem.into() }
    }
}

/// One operation event as the other tool wrote it, before it is given our
/// vocabulary.
#[derive(Clone, Debug)]
struct RawOp {
    /// Where it was in the input (1-based), for errors.
    line: usize,
    /// `None`: the nemesis (or any non-numeric process).
    process: Option<u64>,
    kind: crate::history::EventType,
    f: String,
    value: serde_json::Value,
    key: Option<String>,
    time_ns: Option<u64>,
    error: Option<String>,
}

/// Reads `text` in any of the shapes Jepsen and Porcupine write: an EDN
/// vector of op maps, EDN maps one after another, or `jepsen.util` log
/// lines.
pub fn import(text: &str, dialect: Dialect) -> Result<Imported, InteropError> {
    let (raw, skipped_lines) = if log::looks_like_log(text) { log::parse(text)? } else { (edn::parse(text)?, 0) };
    let (events, model, times_from_order) = vocabulary::translate(raw, dialect)?;
    crate::history::validate(&events).map_err(|e| InteropError::History(e.to_string()))?;
    Ok(Imported { events, model, skipped_lines, times_from_order })
}

#[cfg(test)]
mod tests;
