//! Where the command line writes, and what its exit codes mean.
//!
//! Rust ignores SIGPIPE, so `println!` panics when the reader of a pipe
//! has gone (`harness check … | head`). Every line to stdout goes through
//! [`line`] instead, which ends the process quietly when that happens, as
//! a Unix tool killed by SIGPIPE would; lines to stderr never fail the
//! command.

use harness::verdict::Validity;
use std::io::Write;

/// Every history or run judged valid.
pub const EXIT_VALID: i32 = 0;
/// An anomaly was found.
pub const EXIT_INVALID: i32 = 1;
/// The checkers could not decide (a search ran out of budget, a check
/// could not run).
pub const EXIT_UNKNOWN: i32 = 2;
/// The command failed: an input could not be read, a run could not start.
pub const EXIT_ERROR: i32 = 3;
/// The command line itself was wrong (BSD's EX_USAGE).
pub const EXIT_USAGE: i32 = 64;
/// The reader of stdout went away (128 + SIGPIPE, what a shell reports for
/// a tool the signal killed).
pub const EXIT_BROKEN_PIPE: i32 = 141;

pub fn verdict_code(validity: Validity) -> i32 {
    match validity {
        Validity::Valid => EXIT_VALID,
        Validity::Invalid => EXIT_INVALID,
        Validity::Unknown => EXIT_UNKNOWN,
    }
}

/// The code for several outcomes (`None`: one could not be read): an
/// anomaly outranks a failure, which outranks not knowing.
pub fn worst_code(outcomes: &[Option<Validity>]) -> i32 {
    if outcomes.contains(&Some(Validity::Invalid)) {
        EXIT_INVALID
    } else if outcomes.contains(&None) {
        EXIT_ERROR
    } else if outcomes.is_empty() || outcomes.contains(&Some(Validity::Unknown)) {
        EXIT_UNKNOWN
    } else {
        EXIT_VALID
    }
}

/// Writes one line to stdout; a closed pipe ends the process (see the
/// module comment), any other failure is reported on stderr.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(EXIT_BROKEN_PIPE),
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "harness: writing to stdout: {error}");
        }
    }
}

/// Writes to stderr, ignoring failure: diagnostics never fail a command.
pub fn err(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

macro_rules! outln {
    () => { $crate::output::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}

macro_rules! errln {
    () => { $crate::output::err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::err(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {errln, outln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anomaly_outranks_an_error_which_outranks_unknown() {
        let (v, u, i) = (Some(Validity::Valid), Some(Validity::Unknown), Some(Validity::Invalid));
        assert_eq!(worst_code(&[v, v]), EXIT_VALID);
        assert_eq!(worst_code(&[v, u]), EXIT_UNKNOWN);
        assert_eq!(worst_code(&[u, None]), EXIT_ERROR);
        assert_eq!(worst_code(&[None, i, v]), EXIT_INVALID);
        assert_eq!(worst_code(&[]), EXIT_UNKNOWN);
    }
}
