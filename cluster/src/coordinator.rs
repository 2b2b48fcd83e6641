//! Quorum coordination (docs/SPEC.md section 2): the protocol, without the I/O.
//!
//! Any node coordinates any request. Replicas, local or remote, are reached
//! only through a [`Transport`], so tests drive this module with a fake one
//! that drops, delays and crashes at will.
//!
//! - **Writes** (put, delete) are multi-writer ABD: learn the highest
//!   version from R replicas, pick `max(now, highest + 1)` with this node's
//!   tie-break, send to all N owners, answer after W durable acks. A write
//!   that begins after another was acknowledged learns it (R + W > N) and so
//!   gets a larger timestamp, whatever the clocks say.
//! - **Strong reads** ask R replicas and take the highest version; unless W
//!   replicas are known to hold it, they write it back to W before
//!   answering, so no later read can see an older version.
//! - **Eventual reads** ask one replica (this node first when it owns the
//!   key). `min_timestamp` widens them to every reachable owner; below it
//!   they answer 503, never older data.
//!
//! The coordinator does no I/O of its own: replicas are reached through the
//! injected [`Transport`], and hints for owners a write missed go to an
//! injected [`HintSink`], which never waits.

use crate::clock::Clock;
use crate::hints::{Hint, HintSink};
use crate::membership::FailureDetector;
use crate::record::Record;
use crate::ring::Ring;
use crate::test_bug::{TestBug, TestBugs};
use crate::transport::Transport;
use crate::version::{node_tag, Version};
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    pub n: usize,
    pub r: usize,
    pub w: usize,
}

impl Quorum {
    /// The configured quorum, shrunk to a cluster smaller than N.
    pub fn for_cluster(n: usize, r: usize, w: usize, members: usize) -> Quorum {
        let n_eff = n.min(members);
        let quorum = Quorum { n: n_eff, r: r.min(n_eff), w: w.min(n_eff) };
        assert!(quorum.r + quorum.w > quorum.n, "R + W > N is checked at startup");
        quorum
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoordinatorError {
    /// Not enough replicas answered in time; for a write the outcome is
    /// unknown.
    #[error("{0}")]
    Unavailable(String),
}

/// What a read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Found {
        value: Vec<u8>,
        version: Version,
    },
    /// Nothing live: `version` is the tombstone's or expired value's, if any.
    NotFound {
        version: Option<Version>,
    },
}

/// How a record reads at `now_ms`.
pub fn read_outcome(held: Option<Record>, now_ms: u64) -> ReadOutcome {
    match held {
        Some(record) if record.is_live_at(now_ms) => {
            ReadOutcome::Found { value: record.value, version: record.version }
        }
        Some(record) => ReadOutcome::NotFound { version: Some(record.version) },
        None => ReadOutcome::NotFound { version: None },
    }
}

pub struct CoordinatorConfig {
    pub node_id: String,
    pub quorum: Quorum,
    /// Bound on each replica call, and on each phase of a request.
    pub rpc_timeout: Duration,
    /// A quorum read that has not heard enough after this long asks the
    /// remaining owners too.
    pub hedge_delay: Duration,
    /// Every this many eventual reads, one repairs the key in the background
    /// (0 turns read repair off).
    pub read_repair_every: u32,
    /// No write goes further than this ahead of this node's clock (see
    /// `Record::too_far_ahead`): a key whose newest version is already
    /// that far ahead answers 503 instead.
    pub max_ahead_ms: u64,
    /// Empty in every real deployment (see [`crate::test_bug`]).
    pub bugs: TestBugs,
}

pub struct Coordinator<T> {
    config: CoordinatorConfig,
    tag: u32,
    sequence: AtomicU32,
    eventual_reads: AtomicU32,
    /// Rotates which remote owners are asked first, to spread reads.
    rotation: AtomicU32,
    clock: Arc<Clock>,
    ring: Arc<Ring>,
    transport: Arc<T>,
    detector: Arc<FailureDetector>,
    hints: Arc<dyn HintSink>,
}

type Response = (String, Option<Record>);

impl<T: Transport> Coordinator<T> {
    pub fn new(
        config: CoordinatorConfig,
        clock: Arc<Clock>,
        ring: Arc<Ring>,
        transport: Arc<T>,
        detector: Arc<FailureDetector>,
        hints: Arc<dyn HintSink>,
    ) -> Coordinator<T> {
        let tag = node_tag(&config.node_id);
        Coordinator {
            config,
            tag,
            sequence: AtomicU32::new(0),
            eventual_reads: AtomicU32::new(0),
            rotation: AtomicU32::new(0),
            clock,
            ring,
            transport,
            detector,
            hints,
        }
    }

    pub fn quorum(&self) -> Quorum {
        self.config.quorum
    }

    pub async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: Option<u32>) -> Result<Version, CoordinatorError> {
        self.write(key, |version| {
            // Saturating: an expiry past the end of time is "never".
            let expires_at_ms = ttl_secs.map(|ttl| version.timestamp_ms.saturating_add(u64::from(ttl) * 1000));
            Record::value(version, value, expires_at_ms)
        })
        .await
    }

    pub async fn delete(&self, key: &str) -> Result<Version, CoordinatorError> {
        self.write(key, Record::tombstone).await
    }

    async fn write(&self, key: &str, build: impl FnOnce(Version) -> Record) -> Result<Version, CoordinatorError> {
        let Quorum { r, w, .. } = self.config.quorum;
        let (live, down) = self.owners(key.as_bytes());
        let highest = if self.config.bugs.has(TestBug::Lww) {
            None
        } else {
            let learned = self.quorum_read(&live, key.as_bytes(), r).await?;
            learned.iter().filter_map(|(_, record)| record.as_ref().map(|r| r.version)).max()
        };
        let record = build(self.next_version(key, highest)?);
        let version = record.version;
        let stand_ins = self.hint_down_owners(down, key.as_bytes(), &record);
        let acks = stand_ins + self.replicate(&live, key.as_bytes(), &record, w.saturating_sub(stand_ins)).await;
        if acks < w {
            return Err(CoordinatorError::Unavailable(format!(
                "write of {key:?} reached {acks} of the {w} replicas it needs in time; its outcome is unknown"
            )));
        }
        Ok(version)
    }

    pub async fn get_strong(&self, key: &str) -> Result<ReadOutcome, CoordinatorError> {
        let Quorum { r, w, .. } = self.config.quorum;
        let (live, _) = self.owners(key.as_bytes());
        if self.config.bugs.has(TestBug::StrongReadOne) {
            let (_, held) = self.read_first(&live, key.as_bytes()).await?;
            return Ok(read_outcome(held, self.clock.now_ms()));
        }
        let responses = self.quorum_read(&live, key.as_bytes(), r).await?;
        let Some(highest) = newest(&responses) else {
            return Ok(ReadOutcome::NotFound { version: None });
        };
        let holders: Vec<&str> = responses
            .iter()
            .filter(|(_, record)| record.as_ref().map(|r| r.version) == Some(highest.version))
            .map(|(owner, _)| owner.as_str())
            .collect();
        if holders.len() < w && !self.config.bugs.has(TestBug::NoWriteBack) {
            // Write back before answering: once this read returns `highest`,
            // every later quorum read must find it.
            let behind: Vec<String> = live.iter().filter(|owner| !holders.contains(&owner.as_str())).cloned().collect();
            let acks = self.replicate(&behind, key.as_bytes(), &highest, w - holders.len()).await;
            if holders.len() + acks < w {
                return Err(CoordinatorError::Unavailable(format!(
                    "strong read of {key:?} could not write the newest version back to {w} replicas in time"
                )));
            }
        }
        Ok(read_outcome(Some(highest), self.clock.now_ms()))
    }

    pub async fn get_eventual(
        &self,
        key: &str,
        min_timestamp_ms: Option<u64>,
    ) -> Result<ReadOutcome, CoordinatorError> {
        let (live, _) = self.owners(key.as_bytes());
        let (first_owner, first) = self.read_first(&live, key.as_bytes()).await?;
        let min_timestamp_ms = min_timestamp_ms.filter(|_| !self.config.bugs.has(TestBug::IgnoreMinTimestamp));
        let Some(min_ms) = min_timestamp_ms else {
            self.maybe_repair_in_background(key, &live);
            return Ok(read_outcome(first, self.clock.now_ms()));
        };
        if first.as_ref().is_some_and(|record| record.version.timestamp_ms >= min_ms) {
            return Ok(read_outcome(first, self.clock.now_ms()));
        }
        let others: Vec<String> = live.iter().filter(|owner| **owner != first_owner).cloned().collect();
        let mut responses = self.read_from(&others, key.as_bytes(), others.len()).await.unwrap_or_else(|partial| {
            tracing::debug!(%partial, "min_timestamp read heard from fewer owners");
            Vec::new()
        });
        responses.push((first_owner, first));
        if let Some(best) = newest(&responses).filter(|record| record.version.timestamp_ms >= min_ms) {
            self.repair_in_background(key.as_bytes().to_vec(), responses.clone(), best.clone());
            return Ok(read_outcome(Some(best), self.clock.now_ms()));
        }
        let empty = responses.iter().filter(|(_, record)| record.is_none()).count();
        if empty >= self.config.quorum.r {
            // A quorum holds no version at all: no write of this key was
            // ever acknowledged (or its tombstone is long compacted).
            return Ok(ReadOutcome::NotFound { version: None });
        }
        Err(CoordinatorError::Unavailable(format!(
            "no reachable replica of {key:?} holds a version at least as new as min_timestamp {min_ms}"
        )))
    }

    /// Of `candidates` (dead records this node would like to drop), those
    /// every other owner also holds at that version or newer, or not at all.
    pub async fn confirm_removable(&self, candidates: Vec<(Vec<u8>, Version)>) -> Vec<(Vec<u8>, Version)> {
        if self.config.bugs.has(TestBug::EarlyTombstoneGc) {
            return candidates;
        }
        let mut removable = Vec::new();
        for (key, version) in candidates {
            let others: Vec<String> = self
                .ring
                .owners(&key, self.config.quorum.n)
                .into_iter()
                .filter(|owner| *owner != self.config.node_id)
                .collect();
            let Ok(responses) = self.read_from(&others, &key, others.len()).await else { continue };
            if responses.iter().all(|(_, held)| held.as_ref().is_none_or(|r| r.version >= version)) {
                removable.push((key, version));
            }
        }
        removable
    }

    /// Owners of `key` believed alive, in preference order, and the others.
    fn owners(&self, key: &[u8]) -> (Vec<String>, Vec<String>) {
        let now = crate::clock::monotonic_now();
        let mut owners = self.ring.owners(key, self.config.quorum.n);
        // The local replica first: it answers fastest. The others in turns.
        let local = owners.iter().position(|owner| *owner == self.config.node_id);
        if let Some(at) = local {
            owners[..=at].rotate_right(1);
        }
        let remote = &mut owners[usize::from(local.is_some())..];
        if !remote.is_empty() {
            let turn = self.rotation.fetch_add(1, Ordering::Relaxed) as usize % remote.len();
            remote.rotate_left(turn);
        }
        owners.into_iter().partition(|owner| self.detector.is_alive(owner, now))
    }

    /// A version newer than `highest` and than any this node issued; an
    /// error when that would be more than `max_ahead_ms` ahead of this
    /// node's clock (a version planted far ahead, or a clock set back).
    fn next_version(&self, key: &str, highest: Option<Version>) -> Result<Version, CoordinatorError> {
        let now_ms = self.clock.now_ms();
        let floor_ms = highest.map_or(0, |v| v.timestamp_ms.saturating_add(1));
        if floor_ms > now_ms.saturating_add(self.config.max_ahead_ms) {
            return Err(CoordinatorError::Unavailable(format!(
                "{key:?} holds a version {} ms ahead of this node's clock, more than --max-clock-skew-ms ({}) \
                 allows; not written",
                floor_ms - 1 - now_ms,
                self.config.max_ahead_ms
            )));
        }
        let timestamp_ms = now_ms.max(floor_ms);
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let version = Version::new(timestamp_ms, u64::from(self.tag) << 32 | u64::from(sequence));
        assert!(highest.is_none_or(|h| version > h), "a new version must exceed every learned one");
        Ok(version)
    }

    /// A read quorum of `need` owners among `live`. (Under the
    /// `sloppy-quorum` bug, owners believed down are stood in for by
    /// fallbacks that hold nothing, as Riak's fallback vnodes answer "not
    /// found": the quorum is whatever live owners answer, even none.)
    async fn quorum_read(&self, live: &[String], key: &[u8], need: usize) -> Result<Vec<Response>, CoordinatorError> {
        if !self.config.bugs.has(TestBug::SloppyQuorum) {
            return self.read_from(live, key, need).await;
        }
        match live.is_empty() {
            true => Ok(Vec::new()),
            false => self.read_from(live, key, need.min(live.len())).await,
        }
    }

    /// Reads `key` from `owners` until `need` have answered. Asks the first
    /// `need` at once (the local replica first); asks the rest when one
    /// fails, or all of them once `hedge_delay` passes without enough
    /// answers (a slow or paused replica costs a hedge, not a timeout).
    /// The calls run in this task, under one deadline for the phase: no
    /// task or timer per call (both showed in profiles of the put path).
    async fn read_from(&self, owners: &[String], key: &[u8], need: usize) -> Result<Vec<Response>, CoordinatorError> {
        let call = |owner: &String| {
            let (transport, owner) = (&self.transport, owner.clone());
            async move {
                let answer = transport.read(&owner, key).await;
                (owner, answer)
            }
        };
        let mut spare = owners.iter();
        let mut calls: FuturesUnordered<_> = spare.by_ref().take(need).map(call).collect();
        let hedge = tokio::time::sleep(self.config.hedge_delay);
        let expiry = tokio::time::sleep(self.config.rpc_timeout);
        tokio::pin!(hedge, expiry);
        let mut hedged = false;
        let mut responses = Vec::with_capacity(need);
        // Empty `calls` means every owner was asked and none is left to wait for.
        while responses.len() < need && !calls.is_empty() {
            // Biased: the branches are polled in this order, not a random
            // one, so that a simulation seed replays the same run.
            tokio::select! {
                biased;
                Some((owner, answer)) = calls.next() => match answer {
                    Ok(record) => responses.push((owner, record)),
                    Err(error) => {
                        tracing::debug!(%owner, %error, "replica read failed");
                        calls.extend(spare.next().map(call));
                    }
                },
                () = &mut hedge, if !hedged => {
                    hedged = true;
                    calls.extend(spare.by_ref().map(call));
                }
                () = &mut expiry => break,
            }
        }
        if responses.len() < need {
            return Err(CoordinatorError::Unavailable(format!(
                "only {} of the {need} replicas needed answered in time ({} believed reachable of {})",
                responses.len(),
                owners.len(),
                self.config.quorum.n
            )));
        }
        Ok(responses)
    }

    /// The first owner, in preference order, that answers.
    async fn read_first(&self, owners: &[String], key: &[u8]) -> Result<Response, CoordinatorError> {
        for owner in owners {
            match tokio::time::timeout(self.config.rpc_timeout, self.transport.read(owner, key)).await {
                Ok(Ok(record)) => return Ok((owner.clone(), record)),
                Ok(Err(error)) => tracing::debug!(%owner, %error, "replica read failed"),
                Err(_) => tracing::debug!(%owner, "replica read timed out"),
            }
        }
        Err(CoordinatorError::Unavailable(format!("no replica of the {} tried answered in time", owners.len())))
    }

    /// Sends `record` to every target; returns once `need` have acknowledged,
    /// all have answered, or the deadline passed. One background task drives
    /// all the calls, so they finish even if this request is dropped (a
    /// client that hangs up does not cut a write short); targets that failed
    /// or missed the deadline get hints once every call is over.
    async fn replicate(&self, targets: &[String], key: &[u8], record: &Record, need: usize) -> usize {
        let deadline = tokio::time::Instant::now() + self.config.rpc_timeout;
        let (progress, mut acks_seen) = tokio::sync::watch::channel((0usize, false));
        let (transport, hints) = (self.transport.clone(), self.hints.clone());
        let (targets, key, record) = (targets.to_vec(), key.to_vec(), record.clone());
        let sloppy = self.config.bugs.has(TestBug::SloppyQuorum);
        let keep_hints = !self.config.bugs.has(TestBug::NoRepair);
        tokio::spawn(async move {
            let hint = |target: &str| Hint { target: target.to_owned(), key: key.clone(), record: record.clone() };
            let call = |target: String| {
                let (transport, key, record, hint, hints) = (&transport, &key, &record, &hint, &hints);
                async move {
                    let written = tokio::time::timeout_at(deadline, transport.write(&target, key, record)).await;
                    let mut acked = matches!(written, Ok(Ok(())));
                    if let Ok(Err(error)) = &written {
                        tracing::debug!(%target, %error, "replica write failed; leaving a hint");
                    }
                    if !acked && sloppy {
                        // THE BUG: a hint taken here stands in for the owner's ack.
                        acked = hints.offer(hint(&target));
                        return (target, acked, false);
                    }
                    (target, acked, !acked)
                }
            };
            let mut calls: FuturesUnordered<_> = targets.into_iter().map(call).collect();
            let (mut acks, mut missed) = (0, Vec::new());
            while let Some((target, acked, needs_hint)) = calls.next().await {
                acks += usize::from(acked);
                if needs_hint && keep_hints {
                    missed.push(target);
                }
                progress.send_replace((acks, calls.is_empty()));
            }
            progress.send_replace((acks, true));
            drop(calls);
            for target in missed {
                hints.offer(hint(&target));
            }
        });
        let enough = acks_seen.wait_for(|(acks, all_answered)| *acks >= need || *all_answered);
        let waited = tokio::time::timeout_at(deadline, enough).await.map(|seen| seen.map(|seen| seen.0));
        // Past the deadline (or if the task died): what was acknowledged by now.
        waited.ok().and_then(Result::ok).unwrap_or_else(|| acks_seen.borrow().0)
    }

    /// Leaves hints for the owners believed down and returns 0: hints
    /// never count toward W. (Under the `sloppy-quorum` bug each hint taken
    /// counts as an ack.)
    fn hint_down_owners(&self, down: Vec<String>, key: &[u8], record: &Record) -> usize {
        if self.config.bugs.has(TestBug::NoRepair) {
            return 0;
        }
        let mut stand_ins = 0;
        for target in down {
            let taken = self.hints.offer(Hint { target, key: key.to_vec(), record: record.clone() });
            stand_ins += usize::from(taken);
        }
        if self.config.bugs.has(TestBug::SloppyQuorum) {
            stand_ins
        } else {
            0
        }
    }

    fn maybe_repair_in_background(&self, key: &str, live: &[String]) {
        let every = self.config.read_repair_every;
        if every == 0 || !self.eventual_reads.fetch_add(1, Ordering::Relaxed).is_multiple_of(every) {
            return;
        }
        let (transport, live, key) = (self.transport.clone(), live.to_vec(), key.to_owned());
        let timeout = self.config.rpc_timeout;
        tokio::spawn(async move {
            let mut responses = Vec::new();
            for owner in &live {
                if let Ok(Ok(record)) = tokio::time::timeout(timeout, transport.read(owner, key.as_bytes())).await {
                    responses.push((owner.clone(), record));
                }
            }
            if let Some(best) = newest(&responses) {
                push_to_stale(&*transport, key.as_bytes(), &responses, &best, timeout).await;
            }
        });
    }

    fn repair_in_background(&self, key: Vec<u8>, responses: Vec<Response>, best: Record) {
        let (transport, timeout) = (self.transport.clone(), self.config.rpc_timeout);
        tokio::spawn(async move { push_to_stale(&*transport, &key, &responses, &best, timeout).await });
    }
}

/// Writes `best` to every responder that holds an older version or none.
async fn push_to_stale<T: Transport>(
    transport: &T,
    key: &[u8],
    responses: &[Response],
    best: &Record,
    timeout: Duration,
) {
    for (owner, held) in responses {
        if held.as_ref().is_none_or(|record| record.version < best.version) {
            let _ = tokio::time::timeout(timeout, transport.write(owner, key, best)).await;
        }
    }
}

fn newest(responses: &[Response]) -> Option<Record> {
    responses.iter().filter_map(|(_, record)| record.as_ref()).max_by_key(|record| record.version).cloned()
}
