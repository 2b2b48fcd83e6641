//! A run's live progress on stderr: a bar where stderr is a terminal, and
//! plain lines where it is not (a CI log), one every ten seconds and one
//! whenever the fault changes, so the log reads as a timeline.

use crate::output::errln;
use harness::runner::Progress;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seconds between plain lines when nothing else changed.
const PLAIN_EVERY_SECS: u64 = 10;

/// Shows `progress` until the task is aborted (`run_one` does when the
/// run ends). `time_limit_secs` is the length of the bar.
pub async fn show(progress: Arc<Progress>, time_limit_secs: u64) {
    let started = Instant::now();
    if std::io::stderr().is_terminal() {
        bar(&progress, started, time_limit_secs).await
    } else {
        plain(&progress, started, time_limit_secs).await
    }
}

fn counts(progress: &Progress) -> String {
    format!(
        "ok {}  fail {}  info {}",
        progress.ok.load(Ordering::Relaxed),
        progress.fail.load(Ordering::Relaxed),
        progress.info.load(Ordering::Relaxed)
    )
}

fn fault(progress: &Progress) -> String {
    let fault = progress.fault.lock().map(|f| f.clone()).unwrap_or_default();
    if fault.is_empty() {
        "none".into()
    } else {
        fault
    }
}

/// Leaves the bar drawn as it was when the task is dropped.
struct Abandon(indicatif::ProgressBar);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.abandon();
        // The bar's line stays; what follows starts on the next one.
        errln!();
    }
}

async fn bar(progress: &Progress, started: Instant, time_limit_secs: u64) {
    let bar = indicatif::ProgressBar::new(time_limit_secs);
    let style = indicatif::ProgressStyle::with_template("{elapsed:>5} [{bar:24}] {pos}/{len} s  {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    let bar = Abandon(bar);
    loop {
        // Past the time limit the run is healing and checking.
        bar.0.set_position(started.elapsed().as_secs().min(time_limit_secs));
        bar.0.set_message(format!("{}  fault: {}", counts(progress), fault(progress)));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn plain(progress: &Progress, started: Instant, time_limit_secs: u64) {
    let mut last_fault = String::from("none");
    let mut last_line = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let elapsed = started.elapsed().as_secs();
        let now = fault(progress);
        let changed = now != last_fault;
        if changed || elapsed >= last_line + PLAIN_EVERY_SECS {
            let phase = if elapsed > time_limit_secs { " (healing, checking)" } else { "" };
            errln!("[{elapsed:>4}/{time_limit_secs} s] {}  fault: {now}{phase}", counts(progress));
            last_fault = now;
            last_line = elapsed;
        }
    }
}
