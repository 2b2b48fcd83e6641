//! The nemesis schedule: inject, wait, heal, wait, again, until told to
//! stop; then one final heal that runs whatever happened before it.

use super::{Event, Nemesis, NemesisError};
use crate::db::Db;
use std::time::Duration;
use tokio::sync::watch;

/// Cycles faults every `interval` until `stop` turns true (or its sender is
/// dropped). Every event goes to `record` as it happens. The final heal
/// always runs, also when an injection failed; the first error is returned
/// after it.
pub async fn run<D: Db, N: Nemesis>(
    db: &D,
    nemesis: &mut N,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    mut record: impl FnMut(Event) + Send,
) -> Result<(), NemesisError> {
    let cycled = cycle(db, nemesis, interval, &mut stop, &mut record).await;
    let healed = nemesis.heal(db).await.map(&mut record);
    cycled.and(healed)
}

async fn cycle<D: Db, N: Nemesis>(
    db: &D,
    nemesis: &mut N,
    interval: Duration,
    stop: &mut watch::Receiver<bool>,
    record: &mut (impl FnMut(Event) + Send),
) -> Result<(), NemesisError> {
    loop {
        if wait_or_stop(interval, stop).await {
            return Ok(());
        }
        record(nemesis.inject(db).await?);
        if wait_or_stop(interval, stop).await {
            return Ok(());
        }
        record(nemesis.heal(db).await?);
    }
}

/// Sleeps `interval`; true if told to stop meanwhile.
async fn wait_or_stop(interval: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(interval) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}
