//! One node: the replica, the coordinator and the background work that
//! makes replicas converge, wired together. HTTP lives in `server.rs`.

use crate::antientropy::{sync_with, SyncStats};
use crate::api::{Consistency, GetCommand, PutCommand};
use crate::clock::{monotonic_now, Clock};
use crate::compaction;
use crate::config::Config;
use crate::coordinator::{Coordinator, CoordinatorConfig, CoordinatorError, Quorum, ReadOutcome};
use crate::hints::{self, HintStore, HintWriter};
use crate::membership::{parse_peers, FailureDetector, Member};
use crate::record::Record;
use crate::recovery::Recovery;
use crate::replica::Replica;
use crate::ring::Ring;
use crate::rpc::client::HttpTransport;
use crate::storage::{Store, StoreError};
use crate::test_bug::TestBug;
use crate::transport::{RpcError, SyncReply, SyncRequest, Transport};
use crate::version::Version;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinHandle;

#[derive(Debug, Error)]
pub enum NodeError {
    /// A quorum or the asked `min_timestamp` was not reached in time; for a
    /// write the outcome is unknown.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CoordinatorError> for NodeError {
    fn from(error: CoordinatorError) -> NodeError {
        match error {
            CoordinatorError::Unavailable(message) => NodeError::Unavailable(message),
        }
    }
}

/// Reaches the local replica directly and the others over HTTP.
pub struct ClusterTransport {
    local: Arc<Replica>,
    remote: HttpTransport,
}

fn local_error(to: &str, error: impl std::fmt::Display) -> RpcError {
    RpcError::Remote(to.to_owned(), error.to_string())
}

impl Transport for ClusterTransport {
    async fn read(&self, to: &str, key: &[u8]) -> Result<Option<Record>, RpcError> {
        if to == self.local.node_id {
            return self.local.read(key).map_err(|e| local_error(to, e));
        }
        self.remote.read(to, key).await
    }

    async fn write(&self, to: &str, key: &[u8], record: &Record) -> Result<(), RpcError> {
        if to == self.local.node_id {
            return self.local.write(key.to_vec(), record.clone()).await.map_err(|e| local_error(to, e));
        }
        self.remote.write(to, key, record).await
    }

    async fn write_batch(&self, to: &str, entries: Vec<(Vec<u8>, Record)>) -> Result<(), RpcError> {
        if to == self.local.node_id {
            return self.local.write_batch(entries).await.map_err(|e| local_error(to, e));
        }
        self.remote.write_batch(to, entries).await
    }

    async fn sync(&self, to: &str, request: SyncRequest) -> Result<SyncReply, RpcError> {
        if to == self.local.node_id {
            return self.local.answer_sync(&request).await.map_err(|e| local_error(to, e));
        }
        self.remote.sync(to, request).await
    }
}

pub struct Node {
    pub config: Config,
    pub clock: Arc<Clock>,
    pub replica: Arc<Replica>,
    pub coordinator: Coordinator<ClusterTransport>,
    transport: Arc<ClusterTransport>,
    detector: Arc<FailureDetector>,
    hints: Arc<HintStore>,
    /// Drains the coordinator's hint queue into `hints`; taken by
    /// [`Node::spawn_background`].
    hint_writer: std::sync::Mutex<Option<HintWriter>>,
    /// Every member but this node.
    peers: Vec<Member>,
}

/// Why two members could issue the same version, if they could: a
/// version's tie-break holds a 32-bit hash of the node id (see
/// [`crate::version::node_tag`]), so two ids with one hash would break the
/// uniqueness of versions. Refused at start, with the names.
fn same_version_tag(ids: &[String]) -> Option<String> {
    let mut seen = std::collections::BTreeMap::new();
    for id in ids {
        if let Some(other) = seen.insert(crate::version::node_tag(id), id) {
            if other != id {
                return Some(format!("node ids {other:?} and {id:?} hash to the same version tag; rename one of them"));
            }
        }
    }
    None
}

/// Hints waiting to be written to the hint store, at most: a burst of
/// writes during an outage is absorbed here; beyond it hints are refused
/// (logged) and anti-entropy repairs those keys.
const HINT_QUEUE_HINTS: usize = 8_192;
const HINT_QUEUE_BYTES: u64 = 64 * 1024 * 1024;

impl Node {
    /// `clean`: whether the last stop was clean (see [`crate::recovery`]);
    /// if not, the replica recovers from its peers before answering reads.
    pub fn new(
        config: Config,
        clock: Arc<Clock>,
        store: Arc<Store>,
        hint_store: Store,
        clean: bool,
    ) -> Result<Node, String> {
        let peers: Vec<Member> =
            parse_peers(&config.peers)?.into_iter().filter(|peer| peer.id != config.node_id).collect();
        let mut ids: Vec<String> = peers.iter().map(|peer| peer.id.clone()).collect();
        ids.push(config.node_id.clone());
        if let Some(clash) = same_version_tag(&ids) {
            return Err(clash);
        }
        let ring = Arc::new(Ring::new(&ids, config.vnodes));
        let quorum = Quorum::for_cluster(config.replicas, config.read_quorum, config.write_quorum, ring.nodes().len());
        if quorum.n < config.replicas {
            tracing::warn!(
                ?quorum,
                members = ring.nodes().len(),
                "fewer members than N: quorums shrink to the cluster"
            );
        }
        let recovery = match clean {
            true => Recovery::done(ring.clone(), quorum.n),
            false => Recovery::from_all_peers(ring.clone(), quorum.n, &config.node_id),
        };
        if !recovery.is_done() {
            tracing::warn!(peers = ?recovery.pending(), "the last stop was not clean: recovering from the peers \
                before answering reads");
        }
        let replica = Arc::new(Replica {
            node_id: config.node_id.clone(),
            store,
            ring: ring.clone(),
            n: quorum.n,
            clock: clock.clone(),
            grace_ms: config.tombstone_grace_secs.saturating_mul(1000),
            recovery,
            max_ahead_ms: config.max_clock_skew_ms,
            limits: config.limits(),
        });
        let rpc_timeout = Duration::from_millis(config.rpc_timeout_ms);
        // No secret only for a node alone (Config::validate): it calls no one.
        let remote = HttpTransport::new(
            &peers,
            config.cluster_secret.as_deref().unwrap_or(""),
            (rpc_timeout, Duration::from_millis(config.sync_timeout_ms)),
            max_response_bytes(&config.limits()),
        );
        let transport = Arc::new(ClusterTransport { local: replica.clone(), remote });
        let failure_timeout = Duration::from_millis(config.failure_timeout_ms);
        let detector =
            Arc::new(FailureDetector::new(peers.iter().map(|p| p.id.clone()), failure_timeout, monotonic_now()));
        let hints = Arc::new(HintStore::new(hint_store, config.max_hint_bytes));
        let (hint_queue, hint_writer) = hints::hint_queue(HINT_QUEUE_HINTS, HINT_QUEUE_BYTES);
        let coordinator = Coordinator::new(
            CoordinatorConfig {
                node_id: config.node_id.clone(),
                quorum,
                rpc_timeout,
                hedge_delay: Duration::from_millis(config.hedge_delay_ms),
                read_repair_every: config.read_repair_every,
                max_ahead_ms: config.max_clock_skew_ms,
                bugs: config.bugs(),
            },
            clock.clone(),
            ring,
            transport.clone(),
            detector.clone(),
            Arc::new(hint_queue),
        );
        let hint_writer = std::sync::Mutex::new(Some(hint_writer));
        Ok(Node { config, clock, replica, coordinator, transport, detector, hints, hint_writer, peers })
    }

    pub async fn put(&self, command: PutCommand) -> Result<Version, NodeError> {
        Ok(self.coordinator.put(&command.key, command.value, command.ttl_secs).await?)
    }

    pub async fn delete(&self, key: String) -> Result<Version, NodeError> {
        Ok(self.coordinator.delete(&key).await?)
    }

    pub async fn get(&self, command: &GetCommand) -> Result<ReadOutcome, NodeError> {
        let min = command.min_timestamp_ms;
        let outcome = match command.consistency {
            Consistency::Eventual => self.coordinator.get_eventual(&command.key, min).await?,
            Consistency::Strong => self.coordinator.get_strong(&command.key).await?,
        };
        let version = match &outcome {
            ReadOutcome::Found { version, .. } => Some(*version),
            ReadOutcome::NotFound { version } => *version,
        };
        let min = min.filter(|_| !self.config.bugs().has(TestBug::IgnoreMinTimestamp));
        if let (Some(min_ms), Some(version)) = (min, version) {
            if version.timestamp_ms < min_ms {
                return Err(NodeError::Unavailable(format!(
                    "the newest version of {:?} ({}) is older than min_timestamp {min_ms}",
                    command.key, version.timestamp_ms
                )));
            }
        }
        Ok(outcome)
    }

    /// Test hooks: can this node reach `peer` right now (one ping)?
    pub async fn probe(&self, peer: &str) -> Result<(), RpcError> {
        self.transport.remote.ping(peer).await
    }

    /// Heartbeats, hint delivery, anti-entropy, compaction and (after an
    /// unclean stop) recovery, each on its own interval, until the handles
    /// are aborted.
    pub fn spawn_background(self: &Arc<Node>) -> Vec<JoinHandle<()>> {
        let ms = Duration::from_millis;
        let mut tasks = vec![
            every(ms(self.config.heartbeat_interval_ms), self.clone(), |node| async move { node.heartbeat().await }),
            every(Duration::from_secs(self.config.compaction_interval_secs), self.clone(), |node| async move {
                node.compact().await;
                node.sweep_hints().await
            }),
            every(RECOVERY_RETRY, self.clone(), |node| async move { node.recover().await }),
        ];
        if let Some(writer) = self.hint_writer.lock().expect("hint writer lock").take() {
            tasks.push(tokio::spawn(writer.run(self.hints.clone())));
        }
        if self.config.bugs().has(TestBug::NoRepair) {
            tracing::warn!("TEST BUG no-repair: no hinted handoff and no anti-entropy");
            return tasks;
        }
        tasks.push(every(
            ms(self.config.hint_interval_ms),
            self.clone(),
            |node| async move { node.deliver_hints().await },
        ));
        tasks.push(every(ms(self.config.anti_entropy_interval_ms), self.clone(), |node| async move {
            node.anti_entropy().await
        }));
        tasks
    }

    async fn heartbeat(&self) {
        let pings = self.peers.iter().map(|peer| async move {
            if self.transport.remote.ping(&peer.id).await.is_ok() {
                self.detector.record_answer(&peer.id, monotonic_now());
            }
        });
        futures::future::join_all(pings).await;
    }

    async fn deliver_hints(&self) {
        let peers: Vec<String> = self.peers.iter().map(|peer| peer.id.clone()).collect();
        let grace = Duration::from_secs(self.config.tombstone_grace_secs);
        let timeout = Duration::from_millis(self.config.rpc_timeout_ms);
        let now_ms = self.clock.now_ms();
        match hints::deliver_once(&self.hints, &*self.transport, &self.detector, &peers, now_ms, grace, timeout).await {
            Ok(0) => {}
            Ok(delivered) => tracing::info!(delivered, "hinted handoff delivered writes"),
            Err(error) => tracing::warn!(%error, "hint delivery failed"),
        }
    }

    /// Drops hints past grace, for owners alive or not (see `crate::hints`).
    async fn sweep_hints(&self) {
        let grace = Duration::from_secs(self.config.tombstone_grace_secs);
        match self.hints.sweep(self.clock.now_ms(), grace).await {
            Ok(sweep) if sweep.expired > 0 => tracing::info!(?sweep, "expired hints dropped"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "hint sweep failed"),
        }
    }

    async fn anti_entropy(&self) {
        for peer in &self.peers {
            if !self.detector.is_alive(&peer.id, monotonic_now()) {
                continue;
            }
            match self.exchange_with(&peer.id).await {
                Ok(stats) if stats.pulled + stats.pushed > 0 => {
                    tracing::info!(peer = %peer.id, ?stats, "anti-entropy repaired differences")
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(peer = %peer.id, %error, "anti-entropy exchange failed"),
            }
        }
    }

    /// One anti-entropy exchange with `peer`.
    async fn exchange_with(&self, peer: &str) -> Result<SyncStats, String> {
        let timeout = Duration::from_millis(self.config.sync_timeout_ms);
        let view = self.replica.view();
        sync_with(&*self.transport, &self.replica.store, &view, peer, timeout).await.map_err(|e| e.to_string())
    }

    /// While recovering (see [`crate::recovery`]): one complete exchange
    /// with each peer not yet exchanged with, whatever the failure
    /// detector believes (a peer just started may not have been pinged).
    /// The exchanges run at once, so that one peer slow to answer (paused,
    /// say, for up to `--sync-timeout-ms`) does not hold back the others.
    async fn recover(&self) {
        let pending = self.replica.recovery.pending();
        let exchanges = pending.iter().map(|peer| self.exchange_with(peer));
        for (peer, outcome) in pending.iter().zip(futures::future::join_all(exchanges).await) {
            match outcome {
                Ok(stats) if stats.complete => {
                    tracing::info!(%peer, ?stats, "recovery: exchanged with a peer");
                    self.replica.recovery.exchanged_with(peer);
                }
                Ok(stats) => tracing::info!(%peer, ?stats, "recovery: exchange cut short; another round follows"),
                Err(error) => tracing::debug!(%peer, %error, "recovery: exchange failed; retrying"),
            }
        }
    }

    async fn compact(&self) {
        let grace_ms = self.config.tombstone_grace_secs.saturating_mul(1000);
        let confirm = |candidates| self.coordinator.confirm_removable(candidates);
        match compaction::compact_once(&self.replica.store, &self.clock, grace_ms, confirm).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "compaction removed dead records"),
            Err(error) => tracing::error!(%error, "compaction failed"),
        }
    }

    /// Lets both stores finish queued writes and checkpoint. True when
    /// both did so without error (a clean stop: see [`crate::recovery`]).
    pub fn shutdown(&self) -> bool {
        let data = self.replica.store.shutdown();
        let hints = self.hints.shutdown();
        data && hints
    }
}

/// The longest answer a peer can rightly send: a batch of reads that all
/// find values of the largest size, or an anti-entropy reply.
fn max_response_bytes(limits: &crate::api::Limits) -> usize {
    let per_read = limits.max_key_bytes + limits.max_value_bytes + 64;
    let batch = crate::rpc::client::MAX_CALLS_PER_BATCH.saturating_mul(per_read);
    batch.max(crate::antientropy::MAX_REPLY_BYTES).saturating_add(1 << 20)
}

/// How often a recovering node retries the exchanges it still needs.
const RECOVERY_RETRY: Duration = Duration::from_millis(200);

/// Runs `work` every `interval` (skipping missed ticks) until aborted.
fn every<F, Fut>(interval: Duration, node: Arc<Node>, work: F) -> JoinHandle<()>
where
    F: Fn(Arc<Node>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        // The first round one interval after start, not at once: a starting
        // node's repair is recovery's job (see `crate::recovery`).
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            work(node.clone()).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_whose_ids_share_a_version_tag_are_refused() {
        let ids = |names: &[&str]| names.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        assert_eq!(same_version_tag(&ids(&["n1", "n2", "n3"])), None);
        // Two ids with one 32-bit FNV-1a hash, found by search.
        let clash = same_version_tag(&ids(&["n1", "node-522789", "node-739192"])).expect("a clash");
        assert!(clash.contains("node-522789") && clash.contains("rename"), "{clash}");
    }
}
