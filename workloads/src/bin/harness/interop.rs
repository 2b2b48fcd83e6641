//! `harness import` and `harness export`: the files around
//! `harness::interop`, which does the translating.

use crate::check::{judge, print_checked};
use crate::output::{errln, outln, worst_code};
use anyhow::Context;
use harness::checker::linearizable::Budget;
use harness::interop::{self, Dialect};
use harness::model::ModelKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where an imported or exported file goes: `out` when given (one input
/// only), else beside the input with `extension`.
fn destination(input: &Path, out: Option<&Path>, extension: &str) -> PathBuf {
    out.map_or_else(|| input.with_extension(extension), Path::to_path_buf)
}

/// Imports each file into our history format (`FILE.jsonl`), says which
/// model judges it, and with `check` judges it too. Returns the exit code.
pub fn import(files: &[PathBuf], dialect: Dialect, out: Option<&Path>, check: bool, budget: &Budget) -> i32 {
    if out.is_some() && files.len() > 1 {
        errln!("harness: --out names one file; give one input, or none to write each beside its input");
        return crate::output::EXIT_USAGE;
    }
    let mut outcomes = Vec::new();
    for file in files {
        match import_one(file, dialect, out, check, budget) {
            Ok(verdict) => outcomes.push(verdict),
            Err(error) => {
                outln!("ERROR   {}: {error:#}", file.display());
                outcomes.push(None);
            }
        }
    }
    if check {
        worst_code(&outcomes)
    } else if outcomes.contains(&None) {
        crate::output::EXIT_ERROR
    } else {
        crate::output::EXIT_VALID
    }
}

/// The verdict when `check`, else `Some(Valid)` for "imported".
fn import_one(
    file: &Path,
    dialect: Dialect,
    out: Option<&Path>,
    check: bool,
    budget: &Budget,
) -> anyhow::Result<Option<harness::verdict::Validity>> {
    let started = Instant::now();
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let imported = interop::import(&text, dialect)?;
    let path = destination(file, out, "jsonl");
    write_history(&path, &imported.events)?;
    let model = model_name(imported.model);
    outln!(
        "imported {} -> {} ({} events, model {model}{})",
        file.display(),
        path.display(),
        imported.events.len(),
        if imported.skipped_lines > 0 {
            format!(", {} other log lines skipped", imported.skipped_lines)
        } else {
            String::new()
        }
    );
    if imported.times_from_order {
        outln!("  times: missing or out of order in the input, so taken from the order of its ops");
    }
    if !check {
        outln!("  check it: harness check --model {model} {}", path.display());
        return Ok(Some(harness::verdict::Validity::Valid));
    }
    let checked = judge(&path, &imported.events, imported.model, budget, started);
    print_checked(&checked);
    Ok(checked.verdict)
}

fn model_name(model: ModelKind) -> String {
    serde_json::to_value(model).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Writes `events` in our JSON-lines format, to a temporary name first so
/// that a failure leaves no half file under the real one.
fn write_history(path: &Path, events: &[harness::history::Event]) -> anyhow::Result<()> {
    let mut text = String::new();
    for event in events {
        text.push_str(&serde_json::to_string(event)?);
        text.push('\n');
    }
    write_whole(path, &text)
}

fn write_whole(path: &Path, text: &str) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("renaming {} to {}", partial.display(), path.display()))
}

/// Exports one of our histories as Jepsen's `history.edn` (one op map per
/// line). Returns the exit code.
pub fn export(file: &Path, model: ModelKind, out: Option<&Path>) -> anyhow::Result<i32> {
    let events = harness::history::read(file).with_context(|| format!("reading {}", file.display()))?;
    let exported = interop::export(&events, model)?;
    let path = destination(file, out, "edn");
    write_whole(&path, &exported.text)?;
    outln!(
        "exported {} -> {} ({} ops{})",
        file.display(),
        path.display(),
        exported.ops,
        if exported.dropped_eventual > 0 {
            format!("; {} eventual-get events left out: they are not claimed linearizable", exported.dropped_eventual)
        } else {
            String::new()
        }
    );
    Ok(crate::output::EXIT_VALID)
}
