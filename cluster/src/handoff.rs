//! Moving ranges when a member joins or leaves (docs/MEMBERSHIP.md): the
//! mover's driver, and each member's part, pushing its copies of the keys
//! that gain owners.
//!
//! The driver, run by the joining or leaving member:
//! 1. waits until its view shows no other change under way;
//! 2. announces (its entry `joining` or `leaving`) and exchanges views with
//!    every member until each holds the announcement;
//! 3. one more round: if another member announced meanwhile, undoes its own
//!    change and tries again later (so two changes never overlap);
//! 4. waits one RPC timeout, so that a write admitted before a member
//!    learned the move has been applied before that member pushes;
//! 5. asks every member of the current ring, page by page, paced, to push
//!    its copies of the moving keys to their new owners (durably);
//! 6. once another round shows no other change, switches (`normal` or
//!    `left`) and spreads that.
//!
//! Why every current member pushes, and not one: an acknowledged write is
//! on W of a key's current owners, any W. Pushing from all of them puts it
//! on every new owner whichever W it reached. (Pushing from R of them would
//! do; every one is simpler and costs volume only during a move.)
//!
//! A step that cannot finish by the move's deadline (a member unreachable,
//! say) undoes the change: a joiner becomes `left`, a leaver `normal`
//! again. The ranges then never moved, and every write acknowledged
//! meanwhile reached W of the current owners, so nothing is lost.

use crate::ring::allocate_tokens;
use crate::storage::{Store, StoreError};
use crate::test_bug::{TestBug, TestBugs};
use crate::topology::Membership;
use crate::transport::{HandoffReply, HandoffRequest, RpcError, Transport};
use crate::view::{Entry, Status};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

/// Records a member scans per handoff call.
pub const HANDOFF_PAGE: usize = 512;

#[derive(Debug, Error)]
pub enum HandoffError {
    /// The receiver does not know the mover's announcement yet.
    #[error("this member does not know {0}'s change yet")]
    Unannounced(String),
    /// A purge asked while this member sees a change under way.
    #[error("this member sees a change under way: no purge now")]
    Changing,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("pushing to {0} failed: {1}")]
    Push(String, RpcError),
}

/// A member's part: one page of its store, each record of a key whose
/// range moves and that it owns now, pushed to the key's new owners (or,
/// for a purge, each record of a key it does not own, dropped).
pub async fn push_page<T: Transport>(
    transport: &T,
    store: &Arc<Store>,
    membership: &Membership,
    request: &HandoffRequest,
    timeout: Duration,
) -> Result<HandoffReply, HandoffError> {
    if request.purge {
        return purge_page(store, membership, request).await;
    }
    let topology = membership.load();
    let known = topology.view().entry(&request.mover).map(|entry| entry.version);
    if known.is_none_or(|version| version < request.mover_version) {
        return Err(HandoffError::Unannounced(request.mover.clone()));
    }
    let page = store.scan_page(request.after.clone(), HANDOFF_PAGE).await?;
    let me = membership.me();
    let mut batches: BTreeMap<String, Vec<(Vec<u8>, crate::record::Record)>> = BTreeMap::new();
    for (key, record) in &page {
        let placement = topology.placement(key);
        if !placement.now.iter().any(|owner| owner == me) {
            continue;
        }
        for gainer in placement.next.iter().filter(|id| !placement.now.contains(id)) {
            batches.entry(gainer.clone()).or_default().push((key.clone(), record.clone()));
        }
    }
    let mut pushed = 0;
    for (gainer, entries) in batches {
        let count = entries.len() as u64;
        match tokio::time::timeout(timeout, transport.write_batch(&gainer, me, entries)).await {
            Ok(Ok(())) => pushed += count,
            Ok(Err(error)) => return Err(HandoffError::Push(gainer, error)),
            Err(_) => return Err(HandoffError::Push(gainer.clone(), RpcError::Timeout(gainer))),
        }
    }
    let next = match page.last() {
        Some((last, _)) if page.len() == HANDOFF_PAGE => Some(last.clone()),
        _ => None,
    };
    Ok(HandoffReply { pushed, next })
}

/// Drops one page's records of keys this member owns neither now nor next.
///
/// Why before every change: a member that stopped owning a key (a join
/// took the range, or a leave that pushed it here was undone) may keep an
/// old copy while the owners compact the key's tombstone. If a later
/// change made it an owner again, that copy would answer reads as if it
/// were the newest: a deleted value back from the dead. Writes of keys a
/// replica does not own are refused, so after a purge no non-owner holds
/// a copy until the next change ends. A removal takes only the version
/// scanned, so a newer copy that arrived meanwhile stays. On a disk store
/// the removal runs later, on the writer thread: a push of the same
/// version in between (a change announced in that instant, which makes
/// this member an owner) would be removed with it. The window is that of
/// one page, and a purge refuses to start while a change is under way.
async fn purge_page(
    store: &Arc<Store>,
    membership: &Membership,
    request: &HandoffRequest,
) -> Result<HandoffReply, HandoffError> {
    let page = store.scan_page(request.after.clone(), HANDOFF_PAGE).await?;
    let topology = membership.load();
    if topology.is_changing() {
        // A change announced meanwhile: keep everything, the driver retries.
        return Err(HandoffError::Changing);
    }
    let foreign: Vec<_> = page
        .iter()
        .filter(|(key, _)| !topology.is_owner(key, membership.me()))
        .map(|(key, record)| (key.clone(), record.version))
        .collect();
    let dropped = match foreign.is_empty() {
        true => 0,
        false => store.compact(foreign).await? as u64,
    };
    let next = match page.last() {
        Some((last, _)) if page.len() == HANDOFF_PAGE => Some(last.clone()),
        _ => None,
    };
    Ok(HandoffReply { pushed: dropped, next })
}

/// Which change the driver makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Move {
    Join,
    Leave,
    /// An operator's removal of a member that is gone for good (a dead
    /// machine): a leave driven by this node on its behalf, the rest of
    /// its owner sets pushing its ranges to the new owners.
    Remove(String),
}

impl Move {
    /// The member whose entry changes.
    fn mover(&self, membership: &Membership) -> String {
        match self {
            Move::Join | Move::Leave => membership.me().to_owned(),
            Move::Remove(gone) => gone.clone(),
        }
    }

    /// A member no step waits for or asks (the one being removed).
    fn absent(&self) -> Option<&str> {
        match self {
            Move::Remove(gone) => Some(gone),
            _ => None,
        }
    }
}

/// Where a move is, for the node's status: the admin API's own shape
/// (`GET /admin/v1/membership`), kept as the move goes.
pub type Progress = kvapi::wire::MoveProgress;

#[derive(Clone, Debug)]
pub struct MoveConfig {
    /// This member's address, as others reach it (for a joiner's entry).
    pub addr: String,
    pub vnodes: usize,
    /// Bound on each call.
    pub rpc_timeout: Duration,
    /// Pause between two pages of one member's push: streaming's pace.
    pub page_pause: Duration,
    /// A step not finished within this is given up, and the change undone.
    pub step_deadline: Duration,
    /// Tries of the whole move (each after undoing one that met another
    /// change).
    pub max_attempts: u32,
    /// Empty in every real deployment (see [`crate::test_bug`]).
    pub bugs: TestBugs,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MoveError {
    #[error("gave up after {attempts} attempts: {reason}; the change was undone")]
    Undone { attempts: u32, reason: String },
    #[error("{0}")]
    Refused(String),
}

/// Joins or leaves, as described in the module comment.
pub async fn run<T: Transport>(
    transport: &T,
    membership: &Membership,
    kind: Move,
    config: &MoveConfig,
    progress: &Mutex<Progress>,
) -> Result<(), MoveError> {
    let mut last_reason = String::new();
    for attempt in 1..=config.max_attempts {
        report(progress, |p| p.attempts = attempt);
        match attempt_move(transport, membership, &kind, config, progress).await {
            Ok(()) => {
                report(progress, |p| p.phase = "done".into());
                return Ok(());
            }
            Err(Attempt::Refused(reason)) => {
                report(progress, |p| (p.phase, p.last_error) = ("failed".into(), Some(reason.clone())));
                return Err(MoveError::Refused(reason));
            }
            Err(Attempt::Undone(reason)) => {
                tracing::warn!(%reason, attempt, "membership change undone");
                report(progress, |p| (p.phase, p.last_error) = ("undone".into(), Some(reason.clone())));
                last_reason = reason;
                // Apart in time from whoever made us undo: members back off
                // by different amounts (their id's hash), longer each time.
                let spread = crate::ring::hash64(membership.me().as_bytes()) % 1_000;
                tokio::time::sleep(config.rpc_timeout * 4 * attempt + Duration::from_millis(spread)).await;
            }
        }
    }
    Err(MoveError::Undone { attempts: config.max_attempts, reason: last_reason })
}

enum Attempt {
    /// Undone; worth another try.
    Undone(String),
    /// Not possible at all (leaving a cluster one is not in, say).
    Refused(String),
}

fn report(progress: &Mutex<Progress>, change: impl FnOnce(&mut Progress)) {
    change(&mut progress.lock().expect("progress lock"));
}

/// What every step of one move needs: the transport, the node's view,
/// the settings, and who moves.
struct Steps<'a, T> {
    transport: &'a T,
    membership: &'a Membership,
    config: &'a MoveConfig,
    kind: &'a Move,
    /// The member whose entry changes (this node, or the one removed).
    mover: String,
}

async fn attempt_move<T: Transport>(
    transport: &T,
    membership: &Membership,
    kind: &Move,
    config: &MoveConfig,
    progress: &Mutex<Progress>,
) -> Result<(), Attempt> {
    let steps = Steps { transport, membership, config, kind, mover: kind.mover(membership) };
    report(progress, |p| p.phase = "waiting".into());
    wait_until_alone(&steps).await.map_err(Attempt::Undone)?;
    if let Some(left) = remove_a_dead_joiner(&steps).await {
        return left;
    }
    report(progress, |p| p.phase = "purging".into());
    purge_everywhere(&steps, progress).await.map_err(Attempt::Undone)?;
    report(progress, |p| p.phase = "announcing".into());
    let announced = announce(&steps)?;
    let result = carry_out(&steps, progress, announced).await;
    if let Err(reason) = result {
        undo(&steps).await;
        return Err(Attempt::Undone(reason));
    }
    report(progress, |p| p.phase = "switching".into());
    let entry = mover_entry(&steps).ok_or_else(|| Attempt::Refused("the mover's entry vanished".into()))?;
    let status = match kind {
        Move::Join => Status::Normal,
        Move::Leave | Move::Remove(_) => Status::Left,
    };
    membership.set_other(&steps.mover, Entry { version: entry.version + 1, status, ..entry });
    // Spreading the switch is gossip's job; one round now makes it quick.
    let _ = round(&steps, config.step_deadline).await;
    Ok(())
}

/// A member removed while `joining` never took its ranges (writes went to
/// W of the current owners too): it is set `left`, with nothing to hand
/// over. `None` for any other move.
async fn remove_a_dead_joiner<T: Transport>(steps: &Steps<'_, T>) -> Option<Result<(), Attempt>> {
    let entry = mover_entry(steps).filter(|entry| entry.status == Status::Joining)?;
    if !matches!(steps.kind, Move::Remove(_)) {
        return None;
    }
    steps.membership.set_other(&steps.mover, Entry { version: entry.version + 1, status: Status::Left, ..entry });
    Some(round(steps, steps.config.step_deadline).await.map_err(Attempt::Undone))
}

/// Steps 2 to 6 once announced at `version`.
async fn carry_out<T: Transport>(steps: &Steps<'_, T>, progress: &Mutex<Progress>, version: u64) -> Result<(), String> {
    let config = steps.config;
    if config.bugs.has(TestBug::ReleaseBeforeHeld) {
        // THE BUG: the ranges change owners at once, nothing handed over.
        tracing::warn!("TEST BUG release-before-held: switching without confirmation or handoff");
        return Ok(());
    }
    round(steps, config.step_deadline).await?;
    round(steps, config.step_deadline).await?;
    if let Some(other) = other_mover(steps) {
        return Err(format!("{other} is changing too"));
    }
    // In-flight writes admitted under the old view land before pushes read.
    tokio::time::sleep(config.rpc_timeout).await;
    report(progress, |p| p.phase = "streaming".into());
    stream(steps, progress, version).await?;
    // No switch while another change is (or was just) announced anywhere:
    // a round that ends with none seen leaves every member knowing that.
    let deadline = tokio::time::Instant::now() + config.step_deadline;
    loop {
        round(steps, config.step_deadline).await?;
        match other_mover(steps) {
            None => return Ok(()),
            Some(other) if tokio::time::Instant::now() >= deadline => return Err(format!("{other} kept changing too")),
            Some(_) => tokio::time::sleep(config.rpc_timeout).await,
        }
    }
}

fn mover_entry<T>(steps: &Steps<'_, T>) -> Option<Entry> {
    steps.membership.load().view().entry(&steps.mover).cloned()
}

/// Another member joining or leaving, if any.
fn other_mover<T>(steps: &Steps<'_, T>) -> Option<String> {
    let topology = steps.membership.load();
    let other = topology
        .view()
        .entries()
        .find(|(id, entry)| *id != steps.mover && matches!(entry.status, Status::Joining | Status::Leaving))
        .map(|(id, _)| id.to_owned());
    other
}

async fn wait_until_alone<T: Transport>(steps: &Steps<'_, T>) -> Result<(), String> {
    let config = steps.config;
    let deadline = tokio::time::Instant::now() + config.step_deadline;
    loop {
        let _ = round(steps, config.rpc_timeout * 4).await;
        match other_mover(steps) {
            None => return Ok(()),
            Some(other) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("{other} was still changing"))
            }
            Some(_) => tokio::time::sleep(config.rpc_timeout * 2).await,
        }
    }
}

/// Writes the mover's announcement; returns its entry version.
fn announce<T>(steps: &Steps<'_, T>) -> Result<u64, Attempt> {
    let (membership, config) = (steps.membership, steps.config);
    let topology = membership.load();
    let own = topology.view().entry(&steps.mover).cloned();
    let entry = match (steps.kind, own) {
        (Move::Join, Some(own)) if own.status == Status::Normal => {
            return Err(Attempt::Refused("already a normal member".into()))
        }
        (Move::Join, own) => {
            // A joiner that knows no member would make a cluster of its own.
            let ring = topology.current_ring().ok_or_else(|| {
                Attempt::Refused("knows no member of the cluster: learn its view from a member first".into())
            })?;
            let tokens = allocate_tokens(ring, config.vnodes);
            let version = own.map_or(1, |own| own.version + 1);
            Entry { version, status: Status::Joining, addr: config.addr.clone(), tokens }
        }
        (Move::Leave | Move::Remove(_), Some(own)) if matches!(own.status, Status::Normal | Status::Leaving) => {
            let normal = topology.members().iter().filter(|(_, e)| e.status == Status::Normal).count();
            if normal <= 1 {
                return Err(Attempt::Refused("the last normal member cannot leave".into()));
            }
            Entry { version: own.version + 1, status: Status::Leaving, ..own }
        }
        (Move::Leave, _) => return Err(Attempt::Refused("only a normal member can leave".into())),
        (Move::Remove(gone), _) => return Err(Attempt::Refused(format!("{gone} is not a member to remove"))),
    };
    let version = entry.version;
    membership.set_other(&steps.mover, entry);
    Ok(version)
}

async fn undo<T: Transport>(steps: &Steps<'_, T>) {
    let Some(entry) = mover_entry(steps) else { return };
    let status = match steps.kind {
        Move::Join => Status::Left,
        Move::Leave | Move::Remove(_) => Status::Normal,
    };
    steps.membership.set_other(&steps.mover, Entry { version: entry.version + 1, status, ..entry });
    let _ = round(steps, steps.config.step_deadline).await;
}

/// Exchanges views with every other member (not left, not the one being
/// removed) until each exchange has succeeded once, members that appear
/// meanwhile included, or until `limit` passes.
async fn round<T: Transport>(steps: &Steps<'_, T>, limit: Duration) -> Result<(), String> {
    let (transport, membership, config) = (steps.transport, steps.membership, steps.config);
    let deadline = tokio::time::Instant::now() + limit;
    let mut done: Vec<String> = Vec::new();
    loop {
        let topology = membership.load();
        let pending: Vec<String> = topology
            .members()
            .into_iter()
            .map(|(id, _)| id.to_owned())
            .filter(|id| id != membership.me() && Some(id.as_str()) != steps.kind.absent() && !done.contains(id))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let exchanges =
            pending.iter().map(|peer| crate::gossip::exchange(transport, membership, peer, config.rpc_timeout));
        let outcomes = futures::future::join_all(exchanges).await;
        let mut failed = Vec::new();
        for (peer, outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                Ok(_) => done.push(peer),
                Err(error) => failed.push(format!("{peer}: {error}")),
            }
        }
        if !failed.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("could not exchange views with {}", failed.join("; ")));
            }
            tokio::time::sleep(config.rpc_timeout).await;
        }
    }
}

/// Step 5: every member of the current ring pushes its moving keys (but a
/// member being removed: an acknowledged write is on W of a key's current
/// owners, so on at least one of the others, which push it).
async fn stream<T: Transport>(steps: &Steps<'_, T>, progress: &Mutex<Progress>, version: u64) -> Result<(), String> {
    let topology = steps.membership.load();
    let pushers: Vec<String> = topology
        .current_ring()
        .map(|ring| ring.nodes().to_vec())
        .unwrap_or_default()
        .into_iter()
        .filter(|id| Some(id.as_str()) != steps.kind.absent())
        .collect();
    page_through(steps, progress, (&pushers, version, false)).await
}

/// Step 1b: every member (this one included) drops what it does not own.
async fn purge_everywhere<T: Transport>(steps: &Steps<'_, T>, progress: &Mutex<Progress>) -> Result<(), String> {
    let membership = steps.membership;
    let topology = membership.load();
    let mut members: Vec<String> = topology
        .members()
        .into_iter()
        .map(|(id, _)| id.to_owned())
        .filter(|id| Some(id.as_str()) != steps.kind.absent())
        .collect();
    if !members.iter().any(|id| id == membership.me()) {
        members.push(membership.me().to_owned());
    }
    page_through(steps, progress, (&members, 0, true)).await
}

/// Asks each of `members`, page by page, to push (or purge), paced; a
/// member that makes no progress for the step deadline fails the step.
async fn page_through<T: Transport>(
    steps: &Steps<'_, T>,
    progress: &Mutex<Progress>,
    (members, version, purge): (&[String], u64, bool),
) -> Result<(), String> {
    let (transport, membership, config) = (steps.transport, steps.membership, steps.config);
    report(progress, |p| (p.members, p.members_done) = (members.len(), 0));
    for pusher in members {
        let mut after = None;
        let mut deadline = tokio::time::Instant::now() + config.step_deadline;
        loop {
            let request = HandoffRequest { mover: steps.mover.clone(), mover_version: version, after, purge };
            let answer = tokio::time::timeout(config.rpc_timeout * 8, transport.handoff(pusher, request.clone())).await;
            match answer {
                Ok(Ok(reply)) => {
                    report(progress, |p| match purge {
                        true => p.records_purged += reply.pushed,
                        false => p.records_pushed += reply.pushed,
                    });
                    // Progress resets the deadline: a slow member that
                    // moves on is not given up on.
                    deadline = tokio::time::Instant::now() + config.step_deadline;
                    match reply.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                    tokio::time::sleep(config.page_pause).await;
                }
                failure => {
                    let error = match failure {
                        Ok(Err(error)) => error.to_string(),
                        _ => format!("{pusher} did not answer in time"),
                    };
                    if tokio::time::Instant::now() >= deadline {
                        return Err(format!("{pusher} could not push its ranges: {error}"));
                    }
                    report(progress, |p| p.last_error = Some(error));
                    // It may lack the announcement: give it our view.
                    let _ = crate::gossip::exchange(transport, membership, pusher, config.rpc_timeout).await;
                    tokio::time::sleep(config.rpc_timeout).await;
                    after = request.after;
                }
            }
        }
        report(progress, |p| p.members_done += 1);
    }
    Ok(())
}
