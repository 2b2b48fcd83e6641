//! Quorum coordination (docs/SPEC.md section 2): the protocol, without the I/O.
//!
//! Any node coordinates any request. Replicas, local or remote, are reached
//! only through a [`Transport`], so tests drive this module with a fake one
//! that drops, delays and crashes at will.
//!
//! - **Writes** (put, delete) are multi-writer ABD with its learn round
//!   made optimistic: send the clock's version to all N owners, each of
//!   which acks only if it is newer than all it holds; W such acks prove it
//!   newer than every acknowledged write (2W > N). Otherwise learn the
//!   highest version from R replicas, pick `max(now, highest + 1)` with
//!   this node's tie-break, send it, answer after W durable acks. Either
//!   way a write that begins after another was acknowledged gets a larger
//!   version, whatever the clocks say (see [`Coordinator::write`]).
//! - **Strong reads** ask R replicas and take the highest version; unless W
//!   replicas are known to hold it, they write it back to W before
//!   answering, so no later read can see an older version.
//! - **Eventual reads** ask one replica (this node first when it owns the
//!   key). `min_timestamp` widens them to every reachable owner; below it
//!   they answer 503, never older data. One in `--read-repair-every`
//!   repairs its key in the background (see `REPAIR_TICK`).
//!
//! While a key's range moves (a member joins or leaves), each quorum is
//! reached in both its owner sets, the current and the next: W acks from
//! each, R answers from each (see [`crate::topology`] for why). Every call
//! of a quorum carries the key's fence; a replica that places the key
//! otherwise refuses, and the coordinator exchanges views with it and
//! retries a read, or a write that has not sent its record yet.
//!
//! The coordinator does no I/O of its own: replicas are reached through the
//! injected [`Transport`], and hints for owners a write missed go to an
//! injected [`HintSink`], which never waits.

use crate::clock::Clock;
use crate::hints::{Hint, HintSink};
use crate::membership::FailureDetector;
use crate::metrics::Counter;
use crate::record::Record;
use crate::replica::UNFENCED;
use crate::test_bug::{TestBug, TestBugs};
use crate::topology::{Membership, Placement};
use crate::transport::{RpcError, Transport};
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

    /// This quorum for an owner set of `owners` members (a small cluster's
    /// sets are smaller than N).
    fn for_set(self, owners: usize) -> Quorum {
        Quorum::for_cluster(self.n, self.r, self.w, owners.max(1))
    }
}

impl Needed<'_> {
    /// Whether any two write quorums of each set meet (2W > N), which a
    /// one-round put needs: see [`Coordinator::write`].
    fn writes_intersect(&self) -> bool {
        self.sets.iter().zip(&self.need).all(|(set, &need)| 2 * need > set.len())
    }
}

/// What a phase must hear: `need[i]` answers from members of `sets[i]`.
struct Needed<'a> {
    sets: Vec<&'a [String]>,
    need: Vec<usize>,
}

impl<'a> Needed<'a> {
    fn reads(placement: &'a Placement, quorum: Quorum) -> Needed<'a> {
        let sets = placement.sets();
        let need = sets.iter().map(|set| quorum.for_set(set.len()).r).collect();
        Needed { sets, need }
    }

    fn writes(placement: &'a Placement, quorum: Quorum) -> Needed<'a> {
        let sets = placement.sets();
        let need = sets.iter().map(|set| quorum.for_set(set.len()).w).collect();
        Needed { sets, need }
    }

    /// Every one of `owners`, as one set.
    fn all(owners: &'a [String]) -> Needed<'a> {
        Needed { sets: vec![owners], need: vec![owners.len()] }
    }

    /// Lowers each set's need to what `live` can give (the `sloppy-quorum`
    /// bug's quorum of whoever answers).
    fn at_most_live(mut self, live: &[String]) -> Needed<'a> {
        for (set, need) in self.sets.iter().zip(&mut self.need) {
            *need = (*need).min(set.iter().filter(|id| live.contains(id)).count());
        }
        self
    }

    fn met_by<'b>(&self, heard: impl Iterator<Item = &'b str> + Clone) -> bool {
        self.sets
            .iter()
            .zip(&self.need)
            .all(|(set, &need)| heard.clone().filter(|id| set.iter().any(|member| member == id)).count() >= need)
    }

    /// For messages: the total needed when the sets do not overlap.
    fn describe(&self) -> String {
        match self.need.as_slice() {
            [one] => one.to_string(),
            needs => format!("{needs:?} (from the current and the next owners)"),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoordinatorError {
    /// Too few replicas could answer (they failed, refused, or were
    /// believed down); for a write the outcome is unknown.
    #[error("{0}")]
    Unavailable(String),
    /// The phase's deadline passed before enough replicas answered; for a
    /// write the outcome is unknown. Apart from `Unavailable` only for the
    /// node's metrics: a client sees 503 either way.
    #[error("{0}")]
    TimedOut(String),
}

/// Why a phase fell short: the replicas that refused for a stale view
/// (exchanging views with them may let a retry through), whether a
/// deadline cut it short, and what to say.
#[derive(Debug)]
struct Shortfall {
    stale: Vec<String>,
    timed_out: bool,
    message: String,
}

impl Shortfall {
    /// Short of replicas that could answer, not of time.
    fn unavailable(message: String) -> Shortfall {
        Shortfall { stale: Vec::new(), timed_out: false, message }
    }
}

impl From<Shortfall> for CoordinatorError {
    fn from(shortfall: Shortfall) -> CoordinatorError {
        match shortfall.timed_out {
            true => CoordinatorError::TimedOut(shortfall.message),
            false => CoordinatorError::Unavailable(shortfall.message),
        }
    }
}

/// Who holds a record after [`Coordinator::replicate`], and whether its
/// deadline passed before the round was decided (see [`settle`]).
#[derive(Clone, Debug, Default)]
struct Acks {
    holders: Vec<String>,
    timed_out: bool,
    /// Targets that refused for a stale view.
    stale: Vec<String>,
    /// Whether a target may have stored the record without acknowledging
    /// it (its call failed, or had not answered yet).
    unsure: bool,
}

/// How [`Coordinator::replicate`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteKind {
    /// Applied if newer; an ack means "holds this version or a newer one".
    IfNewer,
    /// A put's one round: an ack means "it was newer than all I held"
    /// ([`crate::replica::Replica::write_newest`]).
    Newest,
}

/// How one target's write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteEnd {
    Acked,
    /// Answered, but without the ack a [`WriteKind::Newest`] asks for.
    NotNewest,
    StaleView,
    /// Failed or timed out: it may or may not hold the record.
    Unknown,
}

/// Tries of an operation that met replicas with another view: each after
/// a view exchange with them.
const VIEW_RETRIES: usize = 2;

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
    /// Counts each replica a background read repair brought up to date
    /// (the node's metrics; `Counter::default()` where nothing reads it).
    /// Repairs run in tasks of their own, which no caller sees end.
    pub read_repairs: Counter,
    /// Writes that took the two-round path (see [`Coordinator::write`]).
    pub learned_writes: Counter,
}

pub struct Coordinator<T> {
    config: CoordinatorConfig,
    tag: u32,
    sequence: AtomicU32,
    eventual_reads: AtomicU32,
    /// Rotates which remote owners are asked first, to spread reads.
    rotation: AtomicU32,
    /// What sampled read repairs' ticks count from (see [`REPAIR_TICK`]).
    started: tokio::time::Instant,
    clock: Arc<Clock>,
    membership: Arc<Membership>,
    transport: Arc<T>,
    detector: Arc<FailureDetector>,
    hints: Arc<dyn HintSink>,
}

type Response = (String, Option<Record>);

/// Sampled read repairs wait for the next tick of this length, counted
/// from the coordinator's start, so that those sampled within one tick
/// read together and reach each peer in one batch (see `rpc::client`).
/// Sent at once, nearly each was a request of its own (same-run A/B of
/// eventual gets, one in ten sampled: 32,466 with the tick vs 29,278/s
/// without). A repair is background work; a few milliseconds later
/// changes nothing.
const REPAIR_TICK: Duration = Duration::from_millis(10);

impl<T: Transport> Coordinator<T> {
    pub fn new(
        config: CoordinatorConfig,
        clock: Arc<Clock>,
        membership: Arc<Membership>,
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
            started: tokio::time::Instant::now(),
            clock,
            membership,
            transport,
            detector,
            hints,
        }
    }

    pub fn quorum(&self) -> Quorum {
        self.config.quorum
    }

    pub async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: Option<u32>) -> Result<Version, CoordinatorError> {
        let build = |version: Version| {
            // Saturating: an expiry past the end of time is "never".
            let expires_at_ms = ttl_secs.map(|ttl| version.timestamp_ms.saturating_add(u64::from(ttl) * 1000));
            Record::value(version, value.clone(), expires_at_ms)
        };
        self.retrying(|| self.write(key, &build)).await
    }

    pub async fn delete(&self, key: &str) -> Result<Version, CoordinatorError> {
        self.retrying(|| self.write(key, &Record::tombstone)).await
    }

    /// Runs `attempt` again after a view exchange with the replicas that
    /// refused it for a stale view, at most [`VIEW_RETRIES`] times. An
    /// attempt that may have stored something returns no refusals, so it
    /// is never repeated: a repeated write could reappear after a later
    /// one.
    async fn retrying<R, F, Fut>(&self, attempt: F) -> Result<R, CoordinatorError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<R, Shortfall>>,
    {
        let mut tries = 0;
        loop {
            match attempt().await {
                Ok(done) => return Ok(done),
                Err(shortfall) if shortfall.stale.is_empty() || tries == VIEW_RETRIES => return Err(shortfall.into()),
                Err(shortfall) => {
                    tries += 1;
                    for peer in &shortfall.stale {
                        let exchanged =
                            crate::gossip::exchange(&*self.transport, &self.membership, peer, self.config.rpc_timeout);
                        if let Err(error) = exchanged.await {
                            tracing::debug!(%peer, %error, "view exchange after a stale-view refusal failed");
                        }
                    }
                }
            }
        }
    }

    /// A put or delete: one round when it can, two when it must.
    ///
    /// **One round.** The record gets a version from this node's clock and
    /// goes to every owner as [`WriteKind::Newest`]: a replica acks only if
    /// the version is newer than everything it holds. W such acks (in each
    /// owner set) prove the version exceeds every acknowledged write's:
    /// such a write is on W replicas, two write quorums meet (2W > N), and
    /// the replica where they meet held that write when it vouched (a
    /// replica's version of a key only grows; one that may have lost
    /// writes does not vouch, see [`crate::recovery`]). That is what the
    /// learn round of ABD establishes, without the round.
    ///
    /// **Two rounds**, when the first fell short (a clock behind a held
    /// version, a concurrent write, a recovering replica): learn the
    /// highest version from R replicas, then
    /// - if the first round stored nothing, write a version above it, as
    ///   multi-writer ABD does;
    /// - if the first round may have stored its record somewhere, the
    ///   value must never get a second version (a reader could see it,
    ///   then a newer write, then it again): finish the first version if
    ///   the quorum holds nothing newer (that proves it above every
    ///   acknowledged write, as a learn round does), else give up with the
    ///   outcome unknown.
    async fn write(&self, key: &str, build: &impl Fn(Version) -> Record) -> Result<Version, Shortfall> {
        let placement = self.membership.load().placement(key.as_bytes());
        let fence = placement.fence();
        let (live, down) = self.order(placement.targets());
        let needed = Needed::writes(&placement, self.config.quorum);
        let lww = self.config.bugs.has(TestBug::Lww);
        // The first round's record, if it may be stored anywhere.
        let mut tried = None;
        if lww || needed.writes_intersect() {
            // THE `lww` BUG writes the clock's version as plainly newer-wins,
            // so a replica holding a newer version acks a write it dropped.
            let kind = if lww { WriteKind::IfNewer } else { WriteKind::Newest };
            let record =
                build(self.next_version(key, None).map_err(|e| Shortfall::unavailable(format!("{e}; not written")))?);
            let acks = self.write_round(key, &record, fence, (&live, &down), &needed, kind).await;
            if needed.met_by(acks.holders.iter().map(String::as_str)) {
                if kind == WriteKind::Newest {
                    self.hint_down_owners(down, key.as_bytes(), &record);
                }
                return Ok(record.version);
            }
            // Refusals are passed on (for a retry after a view exchange)
            // only if nothing can have been stored: see `retrying`.
            let stored_nothing = acks.holders.is_empty() && !acks.unsure;
            if lww || acks.timed_out || (stored_nothing && !acks.stale.is_empty()) {
                return Err(Self::write_shortfall(key, &acks, &needed, stored_nothing));
            }
            tried = (!stored_nothing).then_some(record);
        }
        self.config.learned_writes.inc();
        let learned = self.quorum_read(&placement, &live, key.as_bytes(), fence).await.map_err(|mut shortfall| {
            if tried.is_some() {
                shortfall.stale.clear();
            }
            shortfall
        })?;
        let best = newest(&learned);
        let highest = best.as_ref().map(|record| record.version);
        let record = match tried {
            // Nothing newer, nor of its millisecond but its own copy (see
            // `storage::Newer::Millisecond` on why the millisecond).
            Some(tried)
                if highest.is_none_or(|h| h == tried.version || h.timestamp_ms < tried.version.timestamp_ms) =>
            {
                tried
            }
            Some(tried) => {
                // The replicas behind get the newest now, so that a retry's
                // first round meets refusals only and can learn.
                self.read_repair_in_background(key, &live, fence, Duration::ZERO);
                return Err(Shortfall::unavailable(format!(
                    "write of {key:?} met a newer version (timestamp {}) after its first round may have stored it \
                     at timestamp {}; its outcome is unknown",
                    highest.map_or(0, |v| v.timestamp_ms),
                    tried.version.timestamp_ms
                )));
            }
            None => {
                build(self.next_version(key, highest).map_err(|e| Shortfall::unavailable(format!("{e}; not written")))?)
            }
        };
        let acks = self.write_round(key, &record, fence, (&live, &down), &needed, WriteKind::IfNewer).await;
        match needed.met_by(acks.holders.iter().map(String::as_str)) {
            true => Ok(record.version),
            false => Err(Self::write_shortfall(key, &acks, &needed, false)),
        }
    }

    /// Hints for the owners believed down, then `record` to the live ones.
    /// From here the record may be stored. A first round (`Newest`) leaves
    /// no hints until it has succeeded: if it stored nothing, its version
    /// must stay nowhere, and a hint delivered later would store it.
    async fn write_round(
        &self,
        key: &str,
        record: &Record,
        fence: u64,
        (live, down): (&[String], &[String]),
        needed: &Needed<'_>,
        kind: WriteKind,
    ) -> Acks {
        let stand_ins = match kind {
            WriteKind::IfNewer => self.hint_down_owners(down.to_vec(), key.as_bytes(), record),
            WriteKind::Newest => Vec::new(),
        };
        let acks = self.replicate(live.to_vec(), key.as_bytes(), record, fence, needed, stand_ins, kind).await;
        tracing::trace!(node = %self.config.node_id, key, version = ?record.version, ?kind, acked = ?acks.holders,
            "write replicated");
        acks
    }

    /// Why a write round fell short. Its stale-view refusals are kept only
    /// when `stored_nothing` (see `retrying`).
    fn write_shortfall(key: &str, acks: &Acks, needed: &Needed<'_>, stored_nothing: bool) -> Shortfall {
        let outcome = if stored_nothing { "nothing was written" } else { "its outcome is unknown" };
        Shortfall {
            stale: if stored_nothing { acks.stale.clone() } else { Vec::new() },
            timed_out: acks.timed_out,
            message: format!(
                "write of {key:?} reached {} of the {} replicas it needs in time; {outcome}",
                acks.holders.len(),
                needed.describe()
            ),
        }
    }

    pub async fn get_strong(&self, key: &str) -> Result<ReadOutcome, CoordinatorError> {
        self.retrying(|| self.strong_read(key)).await
    }

    async fn strong_read(&self, key: &str) -> Result<ReadOutcome, Shortfall> {
        let placement = self.membership.load().placement(key.as_bytes());
        let fence = placement.fence();
        let (live, _) = self.order(placement.targets());
        if self.config.bugs.has(TestBug::StrongReadOne) {
            let (_, held) = self.read_first(&live, key.as_bytes()).await?;
            return Ok(read_outcome(held, self.clock.now_ms()));
        }
        let responses = self.quorum_read(&placement, &live, key.as_bytes(), fence).await?;
        tracing::trace!(node = %self.config.node_id, key, now = ?placement.now, next = ?placement.next,
            responses = ?responses.iter().map(|(o, r)| (o, r.as_ref().map(|r| r.version))).collect::<Vec<_>>(),
            "strong read");
        let Some(highest) = newest(&responses) else {
            return Ok(ReadOutcome::NotFound { version: None });
        };
        let holders: Vec<String> = responses
            .iter()
            .filter(|(_, record)| record.as_ref().map(|r| r.version) == Some(highest.version))
            .map(|(owner, _)| owner.clone())
            .collect();
        let needed = Needed::writes(&placement, self.config.quorum);
        if !needed.met_by(holders.iter().map(String::as_str)) && !self.config.bugs.has(TestBug::NoWriteBack) {
            // Write back before answering: once this read returns `highest`,
            // every later quorum read must find it.
            let behind: Vec<String> = live.iter().filter(|owner| !holders.contains(owner)).cloned().collect();
            let acks = self
                .replicate(behind, key.as_bytes(), &highest, fence, &needed, holders.clone(), WriteKind::IfNewer)
                .await;
            if !needed.met_by(acks.holders.iter().map(String::as_str)) {
                return Err(Shortfall {
                    stale: Vec::new(),
                    timed_out: acks.timed_out,
                    message: format!(
                        "strong read of {key:?} could not write the newest version back to {} replicas in time",
                        needed.describe()
                    ),
                });
            }
        }
        Ok(read_outcome(Some(highest), self.clock.now_ms()))
    }

    /// An eventual read asks the current owners, unfenced: any replica's
    /// answer is allowed, and `min_timestamp` is checked on what it returns.
    pub async fn get_eventual(
        &self,
        key: &str,
        min_timestamp_ms: Option<u64>,
    ) -> Result<ReadOutcome, CoordinatorError> {
        let placement = self.membership.load().placement(key.as_bytes());
        let (live, _) = self.order(placement.now.clone());
        let (first_owner, first) = self.read_first(&live, key.as_bytes()).await?;
        let min_timestamp_ms = min_timestamp_ms.filter(|_| !self.config.bugs.has(TestBug::IgnoreMinTimestamp));
        let Some(min_ms) = min_timestamp_ms else {
            self.maybe_repair_in_background(key, &live, placement.fence());
            return Ok(read_outcome(first, self.clock.now_ms()));
        };
        if first.as_ref().is_some_and(|record| record.version.timestamp_ms >= min_ms) {
            return Ok(read_outcome(first, self.clock.now_ms()));
        }
        let others: Vec<String> = live.iter().filter(|owner| **owner != first_owner).cloned().collect();
        let mut responses =
            self.read_from(&others, key.as_bytes(), UNFENCED, &Needed::all(&others)).await.unwrap_or_else(|partial| {
                tracing::debug!(partial = %partial.message, "min_timestamp read heard from fewer owners");
                Vec::new()
            });
        responses.push((first_owner, first));
        if let Some(best) = newest(&responses).filter(|record| record.version.timestamp_ms >= min_ms) {
            self.repair_in_background(key.as_bytes().to_vec(), responses.clone(), best.clone(), placement.fence());
            return Ok(read_outcome(Some(best), self.clock.now_ms()));
        }
        let empty = responses.iter().filter(|(_, record)| record.is_none()).count();
        if empty >= self.config.quorum.for_set(placement.now.len()).r {
            // A quorum holds no version at all: no write of this key was
            // ever acknowledged (or its tombstone is long compacted).
            return Ok(ReadOutcome::NotFound { version: None });
        }
        Err(CoordinatorError::Unavailable(format!(
            "no reachable replica of {key:?} holds a version at least as new as min_timestamp {min_ms}"
        )))
    }

    /// Of `candidates` (dead records this node would like to drop), those
    /// every other owner (now or next) also holds at that version or
    /// newer, or not at all.
    pub async fn confirm_removable(&self, candidates: Vec<(Vec<u8>, Version)>) -> Vec<(Vec<u8>, Version)> {
        if self.config.bugs.has(TestBug::EarlyTombstoneGc) {
            return candidates;
        }
        let mut removable = Vec::new();
        for (key, version) in candidates {
            let placement = self.membership.load().placement(&key);
            let others: Vec<String> =
                placement.targets().into_iter().filter(|owner| *owner != self.config.node_id).collect();
            let Ok(responses) = self.read_from(&others, &key, UNFENCED, &Needed::all(&others)).await else {
                continue;
            };
            if responses.iter().all(|(_, held)| held.as_ref().is_none_or(|r| r.version >= version)) {
                tracing::trace!(node = %self.config.node_id, key = %String::from_utf8_lossy(&key), ?version, ?others,
                    "dead record removable");
                removable.push((key, version));
            }
        }
        removable
    }

    /// `owners` believed alive, in preference order (this node first, the
    /// others in turns), and the others.
    fn order(&self, mut owners: Vec<String>) -> (Vec<String>, Vec<String>) {
        let now = crate::clock::monotonic_now();
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
                 allows",
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

    /// A read quorum in each of the key's owner sets, among `live`. (Under
    /// the `sloppy-quorum` bug, owners believed down are stood in for by
    /// fallbacks that hold nothing, as Riak's fallback vnodes answer "not
    /// found": the quorum is whatever live owners answer, even none.)
    async fn quorum_read(
        &self,
        placement: &Placement,
        live: &[String],
        key: &[u8],
        fence: u64,
    ) -> Result<Vec<Response>, Shortfall> {
        let needed = Needed::reads(placement, self.config.quorum);
        match self.config.bugs.has(TestBug::SloppyQuorum) {
            false => self.read_from(live, key, fence, &needed).await,
            true => self.read_from(live, key, fence, &needed.at_most_live(live)).await,
        }
    }

    /// Reads `key` from `owners` until `needed` is met. Asks the fewest
    /// owners that could meet it at once (the local replica first), the
    /// rest when one fails, or all of them once `hedge_delay` passes
    /// without enough answers (a slow or paused replica costs a hedge, not
    /// a timeout). The calls run in this task, under one deadline for the
    /// phase: no task or timer per call (both showed in profiles of the
    /// put path).
    async fn read_from(
        &self,
        owners: &[String],
        key: &[u8],
        fence: u64,
        needed: &Needed<'_>,
    ) -> Result<Vec<Response>, Shortfall> {
        let call = |owner: &String| {
            let (transport, owner) = (&self.transport, owner.clone());
            async move {
                let answer = transport.read(&owner, key, fence).await;
                (owner, answer)
            }
        };
        // One set: its need, in preference order. Two sets: everyone.
        let first = match needed.sets.as_slice() {
            [_] => needed.need[0],
            _ => owners.len(),
        };
        let mut spare = owners.iter();
        let mut calls: FuturesUnordered<_> = spare.by_ref().take(first).map(call).collect();
        let hedge = tokio::time::sleep(self.config.hedge_delay);
        let expiry = tokio::time::sleep(self.config.rpc_timeout);
        tokio::pin!(hedge, expiry);
        let (mut hedged, mut timed_out) = (false, false);
        let (mut responses, mut stale): (Vec<Response>, Vec<String>) = (Vec::with_capacity(first), Vec::new());
        let met = |responses: &[Response]| needed.met_by(responses.iter().map(|(owner, _)| owner.as_str()));
        // Empty `calls` means every owner was asked and none is left to wait for.
        while !met(&responses) && !calls.is_empty() {
            // Biased: the branches are polled in this order, not a random
            // one, so that a simulation seed replays the same run.
            tokio::select! {
                biased;
                Some((owner, answer)) = calls.next() => match answer {
                    Ok(record) => responses.push((owner, record)),
                    Err(error) => {
                        tracing::debug!(%owner, %error, "replica read failed");
                        if matches!(error, RpcError::StaleView(_)) {
                            stale.push(owner);
                        }
                        calls.extend(spare.next().map(call));
                    }
                },
                () = &mut hedge, if !hedged => {
                    hedged = true;
                    calls.extend(spare.by_ref().map(call));
                }
                () = &mut expiry => {
                    timed_out = true;
                    break;
                }
            }
        }
        if !met(&responses) {
            let message = format!(
                "only {} of the {} replicas needed answered in time ({} believed reachable{})",
                responses.len(),
                needed.describe(),
                owners.len(),
                if stale.is_empty() { String::new() } else { format!("; {stale:?} hold another view") }
            );
            return Err(Shortfall { stale, timed_out, message });
        }
        Ok(responses)
    }

    /// The first owner, in preference order, that answers (unfenced).
    async fn read_first(&self, owners: &[String], key: &[u8]) -> Result<Response, Shortfall> {
        let mut timed_out = false;
        for owner in owners {
            match tokio::time::timeout(self.config.rpc_timeout, self.transport.read(owner, key, UNFENCED)).await {
                Ok(Ok(record)) => return Ok((owner.clone(), record)),
                Ok(Err(error)) => tracing::debug!(%owner, %error, "replica read failed"),
                Err(_) => {
                    tracing::debug!(%owner, "replica read timed out");
                    timed_out = true;
                }
            }
        }
        Err(Shortfall {
            stale: Vec::new(),
            timed_out,
            message: format!("no replica of the {} tried answered in time", owners.len()),
        })
    }

    /// Sends `record` to every target as `kind`; returns who holds it
    /// (`holding`, then each target that acknowledged) once that meets
    /// `needed`, once it no longer can (see [`settle`]), or once the
    /// deadline passed (and whether it did). One background task drives all the calls, so they finish even
    /// if this request is dropped (a client that hangs up does not cut a
    /// write short); targets that failed or missed the deadline get hints
    /// once every call is over.
    #[allow(clippy::too_many_arguments)]
    async fn replicate(
        &self,
        targets: Vec<String>,
        key: &[u8],
        record: &Record,
        fence: u64,
        needed: &Needed<'_>,
        holding: Vec<String>,
        kind: WriteKind,
    ) -> Acks {
        let deadline = tokio::time::Instant::now() + self.config.rpc_timeout;
        let unanswered = targets.clone();
        let (progress, acks_seen) =
            tokio::sync::watch::channel((Acks { holders: holding, ..Acks::default() }, unanswered));
        let (transport, hints) = (self.transport.clone(), self.hints.clone());
        let (key, record) = (key.to_vec(), record.clone());
        let sloppy = self.config.bugs.has(TestBug::SloppyQuorum);
        let keep_hints = !self.config.bugs.has(TestBug::NoRepair);
        tokio::spawn(async move {
            let hint = |target: &str| Hint { target: target.to_owned(), key: key.clone(), record: record.clone() };
            let call = |target: String| {
                let (transport, key, record, hint, hints) = (&transport, &key, &record, &hint, &hints);
                async move {
                    let end = write_end(&target, kind, async {
                        match kind {
                            WriteKind::IfNewer => transport.write(&target, key, record, fence).await.map(|()| true),
                            WriteKind::Newest => transport.write_newest(&target, key, record, fence).await,
                        }
                    });
                    let end = tokio::time::timeout_at(deadline, end).await.unwrap_or(WriteEnd::Unknown);
                    // A refusal stored nothing: a first round's hint would.
                    let missed = match kind {
                        WriteKind::IfNewer => matches!(end, WriteEnd::StaleView | WriteEnd::Unknown),
                        WriteKind::Newest => end == WriteEnd::Unknown,
                    };
                    if missed && sloppy {
                        // THE BUG: a hint taken here stands in for the owner's ack.
                        let end = if hints.offer(hint(&target)) { WriteEnd::Acked } else { end };
                        return (target, end, false);
                    }
                    (target, end, missed)
                }
            };
            let mut calls: FuturesUnordered<_> = targets.into_iter().map(call).collect();
            let mut missed = Vec::new();
            while let Some((target, end, needs_hint)) = calls.next().await {
                if needs_hint && keep_hints {
                    missed.push(target.clone());
                }
                progress.send_modify(|(acks, unanswered)| {
                    unanswered.retain(|pending| *pending != target);
                    match end {
                        WriteEnd::Acked => acks.holders.push(target),
                        WriteEnd::NotNewest => {}
                        WriteEnd::StaleView => acks.stale.push(target),
                        WriteEnd::Unknown => acks.unsure = true,
                    }
                });
            }
            drop(calls);
            for target in missed {
                hints.offer(hint(&target));
            }
        });
        settle(acks_seen, needed, deadline).await
    }

    /// Leaves hints for the owners believed down and returns who stands in
    /// for an ack: no one, since hints never count toward W. (Under the
    /// `sloppy-quorum` bug each owner whose hint was taken counts.)
    fn hint_down_owners(&self, down: Vec<String>, key: &[u8], record: &Record) -> Vec<String> {
        if self.config.bugs.has(TestBug::NoRepair) {
            return Vec::new();
        }
        let mut stand_ins = Vec::new();
        for target in down {
            if self.hints.offer(Hint { target: target.clone(), key: key.to_vec(), record: record.clone() }) {
                stand_ins.push(target);
            }
        }
        match self.config.bugs.has(TestBug::SloppyQuorum) {
            true => stand_ins,
            false => Vec::new(),
        }
    }

    /// One eventual read in `--read-repair-every` repairs its key, at the
    /// next [`REPAIR_TICK`].
    fn maybe_repair_in_background(&self, key: &str, live: &[String], fence: u64) {
        let every = self.config.read_repair_every;
        if every == 0 || !self.eventual_reads.fetch_add(1, Ordering::Relaxed).is_multiple_of(every) {
            return;
        }
        let tick_us = REPAIR_TICK.as_micros();
        let to_next_tick_us = tick_us - self.started.elapsed().as_micros() % tick_us;
        let wait = Duration::from_micros(u64::try_from(to_next_tick_us).unwrap_or(0));
        self.read_repair_in_background(key, live, fence, wait);
    }

    /// Read repair, in a task of its own (after `wait`): reads `key`
    /// from `live` and writes the newest to those behind, fenced (a
    /// coordinator with a stale view must not copy a record from a node
    /// that no longer owns the key: see `Replica::write_batch`).
    fn read_repair_in_background(&self, key: &str, live: &[String], fence: u64, wait: Duration) {
        let (transport, live, key) = (self.transport.clone(), live.to_vec(), key.to_owned());
        let (timeout, repairs) = (self.config.rpc_timeout, self.config.read_repairs.clone());
        tokio::spawn(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let mut responses = Vec::new();
            for owner in &live {
                if let Ok(Ok(record)) =
                    tokio::time::timeout(timeout, transport.read(owner, key.as_bytes(), fence)).await
                {
                    responses.push((owner.clone(), record));
                }
            }
            if let Some(best) = newest(&responses) {
                let repaired = push_to_stale(&*transport, key.as_bytes(), &responses, &best, (fence, timeout)).await;
                repairs.inc_by(repaired);
            }
        });
    }

    fn repair_in_background(&self, key: Vec<u8>, responses: Vec<Response>, best: Record, fence: u64) {
        let (transport, timeout) = (self.transport.clone(), self.config.rpc_timeout);
        let repairs = self.config.read_repairs.clone();
        tokio::spawn(async move {
            repairs.inc_by(push_to_stale(&*transport, &key, &responses, &best, (fence, timeout)).await);
        });
    }
}

/// Waits on a write round's progress (who holds the record, which targets
/// have not answered) until the round is decided or the deadline passes.
/// It is decided once `needed` is met, or once it is out of reach (the
/// holders plus every target yet to answer fall short) and no answer still
/// out could change what the caller does: a round with no holder and no
/// failed call may yet prove that it stored nothing, which lets a put
/// learn and go on instead of answering 503 (see `Coordinator::write`), so
/// it waits for every answer; any other round out of reach ends at once,
/// so that a failure (or a holder) plus a hung owner does not hold the
/// caller until the deadline.
async fn settle(
    mut seen: tokio::sync::watch::Receiver<(Acks, Vec<String>)>,
    needed: &Needed<'_>,
    deadline: tokio::time::Instant,
) -> Acks {
    let decided = |(acks, unanswered): &(Acks, Vec<String>)| {
        let holders = acks.holders.iter().map(String::as_str);
        let in_reach = needed.met_by(holders.clone().chain(unanswered.iter().map(String::as_str)));
        let may_prove_nothing_stored = acks.holders.is_empty() && !acks.unsure && !unanswered.is_empty();
        needed.met_by(holders) || (!in_reach && !may_prove_nothing_stored)
    };
    // A dead task (an error here) leaves the calls out as `unsure`.
    let timed_out = tokio::time::timeout_at(deadline, seen.wait_for(decided)).await.is_err();
    let (mut acks, unanswered) = seen.borrow().clone();
    acks.timed_out = timed_out;
    // A call still out may store the record yet.
    acks.unsure |= !unanswered.is_empty();
    acks
}

/// Writes `best` to every responder that holds an older version or none;
/// returns how many took it.
async fn push_to_stale<T: Transport>(
    transport: &T,
    key: &[u8],
    responses: &[Response],
    best: &Record,
    (fence, timeout): (u64, Duration),
) -> u64 {
    let mut repaired = 0;
    for (owner, held) in responses {
        if held.as_ref().is_none_or(|record| record.version < best.version) {
            if let Ok(Ok(())) = tokio::time::timeout(timeout, transport.write(owner, key, best, fence)).await {
                repaired += 1;
            }
        }
    }
    repaired
}

/// How a write call ended, its errors logged.
async fn write_end(
    target: &str,
    kind: WriteKind,
    call: impl std::future::Future<Output = Result<bool, RpcError>>,
) -> WriteEnd {
    match call.await {
        Ok(true) => WriteEnd::Acked,
        Ok(false) => WriteEnd::NotNewest,
        Err(RpcError::StaleView(_)) => WriteEnd::StaleView,
        Err(error) => {
            tracing::debug!(%target, %error, ?kind, "replica write failed; leaving a hint");
            WriteEnd::Unknown
        }
    }
}

fn newest(responses: &[Response]) -> Option<Record> {
    responses.iter().filter_map(|(_, record)| record.as_ref()).max_by_key(|record| record.version).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Gossip, HandoffReply, HandoffRequest, SyncReply, SyncRequest};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// How a fake replica behaves.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Behaviour {
        Answers,
        /// Refuses at once (connection refused).
        Fails,
        /// Never answers.
        Hangs,
        /// Answers reads, never answers writes.
        HangsOnWrites,
        /// Answers after 50 ms (more than a hedge, less than the deadline).
        Slow,
        /// Never vouches for a one-round put's version (as a replica that
        /// is recovering does), otherwise answers.
        Recovering,
    }

    /// Three replicas of one key, "a" (the coordinator's own), "b" and "c".
    #[derive(Default)]
    struct Replicas {
        held: Mutex<BTreeMap<String, Record>>,
        behaviour: BTreeMap<String, Behaviour>,
        /// Reads answered, to tell a one-round put from a two-round one.
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Replicas {
        fn behaving(behaviour: &[(&str, Behaviour)]) -> Replicas {
            let behaviour = behaviour.iter().map(|(id, how)| (id.to_string(), *how)).collect();
            Replicas { behaviour, ..Replicas::default() }
        }

        async fn reach(&self, to: &str, writing: bool) -> Result<(), RpcError> {
            match self.behaviour.get(to).copied().unwrap_or(Behaviour::Answers) {
                Behaviour::Fails => Err(RpcError::Unreachable(to.to_owned(), "connection refused".into())),
                Behaviour::Hangs => std::future::pending().await,
                Behaviour::HangsOnWrites if writing => std::future::pending().await,
                Behaviour::Slow => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(())
                }
                Behaviour::Answers | Behaviour::HangsOnWrites | Behaviour::Recovering => Ok(()),
            }
        }

        fn held(&self, at: &str) -> Option<Record> {
            self.held.lock().expect("replicas lock").get(at).cloned()
        }
    }

    fn not_here(to: &str) -> RpcError {
        RpcError::Remote(to.to_owned(), "not used by these tests".into())
    }

    impl Transport for Replicas {
        async fn read(&self, to: &str, _key: &[u8], _fence: u64) -> Result<Option<Record>, RpcError> {
            self.reach(to, false).await?;
            self.reads.fetch_add(1, Ordering::Relaxed);
            Ok(self.held(to))
        }

        async fn write_newest(&self, to: &str, _key: &[u8], record: &Record, _fence: u64) -> Result<bool, RpcError> {
            self.reach(to, true).await?;
            let mut held = self.held.lock().expect("replicas lock");
            let newest = held.get(to).is_none_or(|old| old.version.timestamp_ms < record.version.timestamp_ms);
            if newest && self.behaviour.get(to) != Some(&Behaviour::Recovering) {
                held.insert(to.to_owned(), record.clone());
                return Ok(true);
            }
            Ok(false)
        }

        async fn write(&self, to: &str, _key: &[u8], record: &Record, _fence: u64) -> Result<(), RpcError> {
            self.reach(to, true).await?;
            let mut held = self.held.lock().expect("replicas lock");
            if held.get(to).is_none_or(|old| old.version < record.version) {
                held.insert(to.to_owned(), record.clone());
            }
            Ok(())
        }

        async fn write_batch(&self, to: &str, _: &str, _: Vec<(Vec<u8>, Record)>) -> Result<(), RpcError> {
            Err(not_here(to))
        }

        async fn sync(&self, to: &str, _: SyncRequest) -> Result<SyncReply, RpcError> {
            Err(not_here(to))
        }

        async fn gossip(&self, to: &str, _: Gossip) -> Result<Gossip, RpcError> {
            Err(not_here(to))
        }

        async fn handoff(&self, to: &str, _: HandoffRequest) -> Result<HandoffReply, RpcError> {
            Err(not_here(to))
        }
    }

    struct NoHints;

    impl HintSink for NoHints {
        fn offer(&self, _: Hint) -> bool {
            false
        }
    }

    /// The coordinator on "a", N=3, R=W=2, every eventual read repairing.
    fn coordinator(replicas: Arc<Replicas>, read_repairs: Counter) -> Coordinator<Replicas> {
        coordinator_with(replicas, read_repairs, TestBugs::default())
    }

    fn coordinator_with(replicas: Arc<Replicas>, read_repairs: Counter, bugs: TestBugs) -> Coordinator<Replicas> {
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let membership = Arc::new(Membership::from_seed_ids("a", &ids, 8, 3));
        let now = crate::clock::monotonic_now();
        let detector = Arc::new(FailureDetector::new(["b".to_owned(), "c".to_owned()], Duration::from_secs(60), now));
        let config = CoordinatorConfig {
            node_id: "a".into(),
            quorum: Quorum { n: 3, r: 2, w: 2 },
            rpc_timeout: Duration::from_millis(100),
            hedge_delay: Duration::from_millis(20),
            read_repair_every: 1,
            max_ahead_ms: 600_000,
            bugs,
            read_repairs,
            learned_writes: Counter::default(),
        };
        Coordinator::new(config, Arc::new(Clock::new()), membership, replicas, detector, Arc::new(NoHints))
    }

    /// The node's quorum metric tells "too few replicas could answer" from
    /// "the deadline came first": the error says which.
    #[tokio::test(start_paused = true)]
    async fn a_quorum_short_of_time_is_told_from_one_short_of_replicas() {
        use Behaviour::*;
        let (value, counter) = (|| b"v".to_vec(), Counter::default);
        let refused = coordinator(Arc::new(Replicas::behaving(&[("b", Fails), ("c", Fails)])), counter());
        assert!(matches!(refused.put("k", value(), None).await, Err(CoordinatorError::Unavailable(_))));
        assert!(matches!(refused.get_strong("k").await, Err(CoordinatorError::Unavailable(_))));

        let silent = coordinator(Arc::new(Replicas::behaving(&[("b", Hangs), ("c", Hangs)])), counter());
        assert!(matches!(silent.put("k", value(), None).await, Err(CoordinatorError::TimedOut(_))));
        assert!(matches!(silent.get_strong("k").await, Err(CoordinatorError::TimedOut(_))));
        assert!(matches!(silent.delete("k").await, Err(CoordinatorError::TimedOut(_))));

        // The learn phase meets R (a and b); the write phase then waits on
        // b's ack until the deadline: timed out, not refused.
        let slow_disk = coordinator(Arc::new(Replicas::behaving(&[("b", HangsOnWrites), ("c", Fails)])), counter());
        assert!(matches!(slow_disk.put("k", value(), None).await, Err(CoordinatorError::TimedOut(_))));

        let one_down = coordinator(Arc::new(Replicas::behaving(&[("c", Fails)])), counter());
        assert!(one_down.put("k", value(), None).await.is_ok());
        assert!(matches!(one_down.get_strong("k").await, Ok(ReadOutcome::Found { .. })));
    }

    /// An eventual read answered by a stale local replica repairs it in the
    /// background, and the repair is counted once the replica took it.
    #[tokio::test]
    async fn a_background_read_repair_is_counted() {
        let record = Record::value(Version::new(1_000, 1), b"v".to_vec(), None);
        let replicas = Arc::new(Replicas::default());
        for peer in ["b", "c"] {
            replicas.held.lock().expect("replicas lock").insert(peer.to_owned(), record.clone());
        }
        let repairs = Counter::default();
        let coordinator = coordinator(replicas.clone(), repairs.clone());
        let read = coordinator.get_eventual("k", None).await.expect("the local replica answers");
        assert_eq!(read, ReadOutcome::NotFound { version: None }, "the local replica answered first, stale");
        for _ in 0..500 {
            if repairs.get() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(repairs.get(), 1, "one replica was behind");
        assert_eq!(replicas.held("a"), Some(record));
    }

    /// A version from 60 s ahead of the coordinator's clock, held by `at`.
    fn hold_ahead(replicas: &Replicas, at: &[&str]) -> Version {
        let ahead = Version::new(Clock::new().now_ms() + 60_000, 9);
        for id in at {
            let record = Record::value(ahead, b"ahead".to_vec(), None);
            replicas.held.lock().expect("replicas lock").insert((*id).to_owned(), record);
        }
        ahead
    }

    /// Back-to-back puts of one key get ever larger timestamps, by the
    /// millisecond: a session's `min_timestamp` tells them apart.
    #[tokio::test]
    async fn back_to_back_puts_get_later_milliseconds() {
        let coordinator = coordinator(Arc::new(Replicas::default()), Counter::default());
        let mut last = 0;
        for i in 0..200u32 {
            let version = coordinator.put("k", i.to_be_bytes().to_vec(), None).await.expect("answered");
            assert!(version.timestamp_ms > last, "put {i} got {}, not after {last}", version.timestamp_ms);
            last = version.timestamp_ms;
        }
    }

    /// A put whose clock version is newer than what W replicas hold is
    /// written in one round: no replica is read.
    #[tokio::test]
    async fn a_put_newer_than_all_held_takes_one_round() {
        let replicas = Arc::new(Replicas::default());
        let version = coordinator(replicas.clone(), Counter::default()).put("k", b"v".to_vec(), None).await;
        let version = version.expect("every replica answers");
        assert_eq!(replicas.reads.load(Ordering::Relaxed), 0, "one round, no learning");
        let holding = ["a", "b", "c"].iter().filter(|id| replicas.held(id).is_some_and(|r| r.version == version));
        assert!(holding.count() >= 2, "on W replicas");
    }

    /// A coordinator whose clock is behind a version W replicas hold (a
    /// skewed clock, or a later write) learns it in a second round and
    /// writes above it: the put is never acknowledged below a held write.
    #[tokio::test]
    async fn a_put_behind_a_held_version_learns_it_and_writes_above() {
        let replicas = Arc::new(Replicas::default());
        let ahead = hold_ahead(&replicas, &["a", "b", "c"]);
        let version = coordinator(replicas.clone(), Counter::default()).put("k", b"v".to_vec(), None).await;
        let version = version.expect("every replica answers");
        assert!(version > ahead, "{version:?} must exceed the held {ahead:?}");
        assert!(replicas.reads.load(Ordering::Relaxed) >= 2, "a learn round read a quorum");
        let newest = ["a", "b", "c"].iter().filter(|id| replicas.held(id).is_some_and(|r| r.version == version));
        assert!(newest.count() >= 2, "the put is on W replicas");

        // One vouch, one replica that cannot (recovering) and one down:
        // the learn round finds the first round's version the newest, and
        // the put finishes at that version.
        let replicas = Arc::new(Replicas::behaving(&[("b", Behaviour::Recovering), ("c", Behaviour::Fails)]));
        let version = coordinator(replicas.clone(), Counter::default()).put("k", b"v".to_vec(), None).await;
        let version = version.expect("every replica answers");
        assert!(replicas.reads.load(Ordering::Relaxed) >= 2, "a learn round read a quorum");
        let holding = ["a", "b", "c"].iter().filter(|id| replicas.held(id).is_some_and(|r| r.version == version));
        assert!(holding.count() >= 2, "the first round's version is on W replicas");
    }

    /// A first round stored on a replica that was behind, while W others
    /// hold a newer version: writing the value again at a version above
    /// theirs could let a reader see it, then the newer write, then it
    /// again. The outcome is unknown instead (503), the value keeps one
    /// version, and the replica behind is repaired so that a retry learns.
    #[tokio::test]
    async fn a_put_stored_by_its_first_round_never_gets_a_second_version() {
        let replicas = Arc::new(Replicas::default());
        let ahead = hold_ahead(&replicas, &["b", "c"]);
        let coordinator = coordinator(replicas.clone(), Counter::default());
        let refused = coordinator.put("k", b"v".to_vec(), None).await;
        assert!(matches!(refused, Err(CoordinatorError::Unavailable(_))), "{refused:?}");
        let versions: Vec<Version> = ["a", "b", "c"]
            .iter()
            .filter_map(|id| replicas.held(id).filter(|r| r.value == b"v").map(|r| r.version))
            .collect();
        assert!(versions.len() <= 1, "one version of the value at most: {versions:?}");
        for _ in 0..500 {
            if replicas.held("a").is_some_and(|r| r.version == ahead) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(replicas.held("a").map(|r| r.version), Some(ahead), "the replica behind was repaired");
        let retried = coordinator.put("k", b"v".to_vec(), None).await.expect("a retry learns and writes above");
        assert!(retried > ahead);
    }

    /// One owner refuses a put's first round (it holds a newer version),
    /// one fails and the third never answers writes: W acks are out of
    /// reach, and after a failure the round cannot prove that it stored
    /// nothing, so it ends at once instead of at the RPC deadline. The
    /// learn round then finds the newer version: outcome unknown, a 503.
    #[tokio::test(start_paused = true)]
    async fn a_put_out_of_reach_of_w_ends_before_the_deadline() {
        use Behaviour::*;
        let replicas = Arc::new(Replicas::behaving(&[("b", Fails), ("c", HangsOnWrites)]));
        hold_ahead(&replicas, &["a"]);
        let coordinator = coordinator(replicas.clone(), Counter::default());
        let started = tokio::time::Instant::now();
        let refused = coordinator.put("k", b"v".to_vec(), None).await;
        let took = started.elapsed();
        assert!(matches!(refused, Err(CoordinatorError::Unavailable(_))), "{refused:?}");
        assert!(took < Duration::from_millis(100), "took {took:?}, as long as the deadline");
    }

    /// Every owner refuses a put's first round, one of them late (after
    /// more than a hedge): the round waits for it, since only then does it
    /// know that it stored nothing, and the put learns and writes above.
    #[tokio::test(start_paused = true)]
    async fn a_first_round_refused_by_all_waits_for_the_last_refusal_and_learns() {
        let replicas = Arc::new(Replicas::behaving(&[("c", Behaviour::Slow)]));
        let ahead = hold_ahead(&replicas, &["a", "b", "c"]);
        let written = coordinator(replicas.clone(), Counter::default()).put("k", b"v".to_vec(), None).await;
        assert!(
            written.as_ref().is_ok_and(|version| *version > ahead),
            "a late refusal is still a refusal: {written:?}"
        );
    }

    /// The planted `lww` bug: the same put is acknowledged at the clock's
    /// version, below the one W replicas keep. The write is lost.
    #[tokio::test]
    async fn the_lww_bug_acknowledges_a_put_below_a_held_version() {
        let replicas = Arc::new(Replicas::default());
        let ahead = hold_ahead(&replicas, &["b", "c"]);
        let buggy = coordinator_with(replicas.clone(), Counter::default(), TestBugs::of(&[TestBug::Lww]));
        let version = buggy.put("k", b"v".to_vec(), None).await.expect("acknowledged");
        assert!(version < ahead, "the bug writes the clock's version");
        assert_eq!(replicas.held("b").map(|r| r.version), Some(ahead), "and the replicas keep theirs");
    }
}
