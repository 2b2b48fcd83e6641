//! One node: the replica, the coordinator and the background work that
//! makes replicas converge, wired together. HTTP lives in `server.rs`.

use crate::antientropy::{sync_with, SyncStats};
use crate::api::{Consistency, GetCommand, PutCommand};
use crate::clock::{monotonic_now, Clock};
use crate::compaction;
use crate::config::Config;
use crate::coordinator::{Coordinator, CoordinatorConfig, CoordinatorError, Quorum, ReadOutcome};
use crate::handoff::{self, HandoffError, Move, MoveConfig, Progress};
use crate::hints::{self, Hint, HintQueue, HintSink, HintStore, HintWriter};
use crate::membership::{parse_peers, FailureDetector};
use crate::metrics::{ExchangeOutcome, Metrics, MetricsError, Snapshot, StoreLabel, StoreSize};
use crate::record::Record;
use crate::recovery::Recovery;
use crate::replica::{Replica, ReplicaError};
use crate::rpc::client::HttpTransport;
use crate::storage::{Store, StoreError};
use crate::test_bug::TestBug;
use crate::topology::Membership;
use crate::transport::{Gossip, HandoffReply, HandoffRequest, RpcError, SyncReply, SyncRequest, Transport};
use crate::version::Version;
use crate::view::{Status, View};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinHandle;

#[derive(Debug, Error)]
pub enum NodeError {
    /// A quorum or the asked `min_timestamp` was not reached in time; for a
    /// write the outcome is unknown.
    #[error("{0}")]
    Unavailable(String),
    /// Like `Unavailable`, but a deadline cut the quorum short (for the
    /// metrics: the client sees the same 503).
    #[error("{0}")]
    TimedOut(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CoordinatorError> for NodeError {
    fn from(error: CoordinatorError) -> NodeError {
        match error {
            CoordinatorError::Unavailable(message) => NodeError::Unavailable(message),
            CoordinatorError::TimedOut(message) => NodeError::TimedOut(message),
        }
    }
}

/// Reaches the local replica directly and the others over HTTP.
pub struct ClusterTransport {
    local: Arc<Replica>,
    remote: HttpTransport,
    /// Bound on each push of a handoff page.
    rpc_timeout: Duration,
}

fn local_error(to: &str, error: impl std::fmt::Display) -> RpcError {
    RpcError::Remote(to.to_owned(), error.to_string())
}

fn replica_error(to: &str, error: ReplicaError) -> RpcError {
    match error {
        ReplicaError::StaleView => RpcError::StaleView(to.to_owned()),
        other => local_error(to, other),
    }
}

impl Transport for ClusterTransport {
    async fn read(&self, to: &str, key: &[u8], fence: u64) -> Result<Option<Record>, RpcError> {
        if to == self.local.node_id {
            return self.local.read(key, fence).map_err(|e| replica_error(to, e));
        }
        self.remote.read(to, key, fence).await
    }

    async fn write(&self, to: &str, key: &[u8], record: &Record, fence: u64) -> Result<(), RpcError> {
        if to == self.local.node_id {
            return self.local.write(key.to_vec(), record.clone(), fence).await.map_err(|e| replica_error(to, e));
        }
        self.remote.write(to, key, record, fence).await
    }

    async fn write_newest(&self, to: &str, key: &[u8], record: &Record, fence: u64) -> Result<bool, RpcError> {
        if to == self.local.node_id {
            let written = self.local.write_newest(key.to_vec(), record.clone(), fence).await;
            return written.map_err(|e| replica_error(to, e));
        }
        self.remote.write_newest(to, key, record, fence).await
    }

    async fn write_batch(&self, to: &str, from: &str, entries: Vec<(Vec<u8>, Record)>) -> Result<(), RpcError> {
        if to == self.local.node_id {
            return self.local.write_batch(entries, from).await.map_err(|e| local_error(to, e));
        }
        self.remote.write_batch(to, from, entries).await
    }

    async fn sync(&self, to: &str, request: SyncRequest) -> Result<SyncReply, RpcError> {
        if to == self.local.node_id {
            return self.local.answer_sync(&request).await.map_err(|e| local_error(to, e));
        }
        self.remote.sync(to, request).await
    }

    async fn gossip(&self, to: &str, message: Gossip) -> Result<Gossip, RpcError> {
        if to == self.local.node_id {
            return Ok(crate::gossip::answer(&self.local.membership, &message));
        }
        self.remote.gossip(to, message).await
    }

    async fn handoff(&self, to: &str, request: HandoffRequest) -> Result<HandoffReply, RpcError> {
        if to == self.local.node_id {
            let local = &self.local;
            let pushed = handoff::push_page(self, &local.store, &local.membership, &request, self.rpc_timeout).await;
            return pushed.map_err(|e| local_error(to, e));
        }
        self.remote.handoff(to, request).await
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
    hint_writer: Mutex<Option<HintWriter>>,
    pub membership: Arc<Membership>,
    /// This node's join or leave, under way or last finished.
    pub move_progress: Arc<Mutex<Progress>>,
    /// Whether a join or leave of this node runs now.
    moving: AtomicBool,
    /// Which peer the next heartbeat gossips with.
    gossip_turn: AtomicUsize,
    /// The view last saved to the data folder (see [`Node::save_view`]).
    saved_view: Mutex<Option<View>>,
    /// Set once this node has left the cluster: the process may stop.
    left: tokio::sync::watch::Sender<bool>,
    /// This node's own registry (see [`crate::metrics`]); the stores'
    /// writers, the coordinator and the HTTP layer record into it too.
    pub metrics: Arc<Metrics>,
}

/// The node's hint queue, counting what it takes and refuses (the queue
/// itself knows nothing of metrics; `offer` stays free of waits and I/O).
struct CountingHintSink {
    queue: HintQueue,
    metrics: Arc<Metrics>,
}

impl HintSink for CountingHintSink {
    fn offer(&self, hint: Hint) -> bool {
        let taken = self.queue.offer(hint);
        match taken {
            true => self.metrics.hints_queued.inc(),
            false => self.metrics.hints_refused.inc(),
        };
        taken
    }
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
    /// `metrics` is made before the node, since the stores' writers
    /// (opened first) record into it.
    pub fn new(
        config: Config,
        clock: Arc<Clock>,
        store: Arc<Store>,
        hint_store: Store,
        clean: bool,
        metrics: Arc<Metrics>,
    ) -> Result<Node, String> {
        let seeds = parse_peers(&config.peers)?;
        let joiners = parse_peers(&config.join)?;
        let mut ids: Vec<String> = seeds.iter().map(|peer| peer.id.clone()).collect();
        ids.push(config.node_id.clone());
        if let Some(clash) = same_version_tag(&ids) {
            return Err(clash);
        }
        let membership = Arc::new(Membership::new(&config.node_id, initial_view(&config, &seeds)?, config.replicas));
        let members = membership.load().members().len();
        if members > 0 && members < config.replicas {
            tracing::warn!(members, n = config.replicas, "fewer members than N: quorums shrink to the cluster");
        }
        let quorum = Quorum { n: config.replicas, r: config.read_quorum, w: config.write_quorum };
        let recovery = match clean {
            true => Recovery::done(membership.clone()),
            false => Recovery::from_all_peers(membership.clone()),
        };
        if !recovery.is_done() {
            tracing::warn!(peers = ?recovery.pending(), "the last stop was not clean: recovering from the peers \
                before answering reads");
        }
        let replica = Arc::new(Replica {
            node_id: config.node_id.clone(),
            store,
            membership: membership.clone(),
            clock: clock.clone(),
            grace_ms: config.tombstone_grace_secs.saturating_mul(1000),
            recovery,
            max_ahead_ms: config.max_clock_skew_ms,
            limits: config.limits(),
        });
        let rpc_timeout = Duration::from_millis(config.rpc_timeout_ms);
        let others: Vec<_> = seeds.iter().chain(&joiners).filter(|peer| peer.id != config.node_id).cloned().collect();
        // No secret only for a node alone (Config::validate): it calls no one.
        let remote = HttpTransport::new(
            &others,
            config.cluster_secret.as_deref().unwrap_or(""),
            (rpc_timeout, Duration::from_millis(config.sync_timeout_ms)),
            max_response_bytes(&config.limits()),
        );
        let transport = Arc::new(ClusterTransport { local: replica.clone(), remote, rpc_timeout });
        let failure_timeout = Duration::from_millis(config.failure_timeout_ms);
        let detector =
            Arc::new(FailureDetector::new(others.iter().map(|p| p.id.clone()), failure_timeout, monotonic_now()));
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
                read_repairs: metrics.read_repairs.clone(),
                learned_writes: metrics.learned_writes.clone(),
            },
            clock.clone(),
            membership.clone(),
            transport.clone(),
            detector.clone(),
            Arc::new(CountingHintSink { queue: hint_queue, metrics: metrics.clone() }),
        );
        let node = Node {
            config,
            clock,
            replica,
            coordinator,
            transport,
            detector,
            hints,
            hint_writer: Mutex::new(Some(hint_writer)),
            membership,
            move_progress: Arc::new(Mutex::new(Progress { phase: "idle".into(), ..Progress::default() })),
            moving: AtomicBool::new(false),
            gossip_turn: AtomicUsize::new(0),
            saved_view: Mutex::new(None),
            left: tokio::sync::watch::channel(false).0,
            metrics,
        };
        node.learn_addresses();
        Ok(node)
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

    /// Pings every peer, gossips with one in turn, and keeps the view's
    /// addresses and its saved copy up to date.
    async fn heartbeat(&self) {
        let peers = self.peers();
        let pings = peers.iter().map(|peer| async move {
            if self.transport.remote.ping(peer).await.is_ok() {
                self.detector.record_answer(peer, monotonic_now());
            }
        });
        futures::future::join_all(pings).await;
        if !peers.is_empty() {
            let peer = &peers[self.gossip_turn.fetch_add(1, Ordering::Relaxed) % peers.len()];
            let timeout = Duration::from_millis(self.config.rpc_timeout_ms);
            if let Err(error) = crate::gossip::exchange(&*self.transport, &self.membership, peer, timeout).await {
                tracing::debug!(%peer, %error, "gossip exchange failed");
            }
        }
        self.learn_addresses();
        self.save_view();
    }

    /// Every member but this node (not those that left).
    pub fn peers(&self) -> Vec<String> {
        let topology = self.membership.load();
        topology.members().into_iter().map(|(id, _)| id.to_owned()).filter(|id| *id != self.config.node_id).collect()
    }

    /// Tells the transport every member's address (new members, moves).
    pub fn learn_addresses(&self) {
        let topology = self.membership.load();
        for (id, entry) in topology.view().entries() {
            if id != self.config.node_id && !entry.addr.is_empty() {
                self.transport.remote.learn(id, &entry.addr);
            }
        }
    }

    /// Keeps the view in the data folder, so that a restarted node knows
    /// the members that joined since its seed list was written.
    fn save_view(&self) {
        if self.config.storage != crate::config::StorageKind::Sled {
            return;
        }
        let view = self.membership.load().view().clone();
        let mut saved = self.saved_view.lock().expect("saved view lock");
        if saved.as_ref() == Some(&view) {
            return;
        }
        match write_view(&self.config.data_dir, &view) {
            Ok(()) => *saved = Some(view),
            Err(error) => tracing::warn!(%error, "cannot save the membership view; retrying at the next heartbeat"),
        }
    }

    /// This member's part in another member's move (see [`crate::handoff`]).
    pub async fn push_for_move(&self, request: &HandoffRequest) -> Result<HandoffReply, HandoffError> {
        let timeout = Duration::from_millis(self.config.rpc_timeout_ms);
        handoff::push_page(&*self.transport, &self.replica.store, &self.membership, request, timeout).await
    }

    fn move_config(&self) -> MoveConfig {
        MoveConfig {
            addr: self.config.advertised_addr(),
            vnodes: self.config.vnodes,
            rpc_timeout: Duration::from_millis(self.config.rpc_timeout_ms),
            page_pause: Duration::from_millis(self.config.stream_page_pause_ms),
            step_deadline: Duration::from_millis(self.config.move_step_timeout_ms),
            max_attempts: MOVE_ATTEMPTS,
            bugs: self.config.bugs(),
        }
    }

    /// Joins the cluster of the `--join` members: learns its view from
    /// one of them, then runs [`handoff::run`]. Nothing to do for a node
    /// already a normal member (a restart).
    pub fn start_join(self: &Arc<Node>) -> Option<JoinHandle<()>> {
        self.undo_an_interrupted_leave();
        let seeds: Vec<String> = parse_peers(&self.config.join).ok()?.into_iter().map(|m| m.id).collect();
        if seeds.is_empty() || self.own_status() == Some(Status::Normal) || self.moving.swap(true, Ordering::AcqRel) {
            return None;
        }
        let node = self.clone();
        Some(tokio::spawn(async move {
            let config = node.move_config();
            let mut learned = false;
            for attempt in 0..MOVE_ATTEMPTS * 10 {
                let seed = &seeds[attempt as usize % seeds.len()];
                match crate::gossip::exchange(&*node.transport, &node.membership, seed, config.rpc_timeout).await {
                    Ok(_) => {
                        learned = true;
                        break;
                    }
                    Err(error) => tracing::info!(%seed, %error, "join: cannot reach a --join member yet"),
                }
                tokio::time::sleep(config.rpc_timeout * 4).await;
            }
            node.learn_addresses();
            let outcome = match learned {
                true => {
                    handoff::run(&*node.transport, &node.membership, Move::Join, &config, &node.move_progress).await
                }
                false => Err(handoff::MoveError::Refused("no --join member answered".into())),
            };
            match outcome {
                Ok(()) => tracing::info!("joined the cluster: this node is a normal member"),
                Err(error) => tracing::error!(%error, "join failed"),
            }
            node.save_view();
            node.moving.store(false, Ordering::Release);
        }))
    }

    /// A node that stopped while leaving finds its entry `leaving` in its
    /// saved view: nothing drives that leave any more, and it would keep
    /// every other change waiting. It is undone (the node is `normal`
    /// again); the operator asks again.
    fn undo_an_interrupted_leave(&self) {
        let topology = self.membership.load();
        let Some(own) = topology.view().entry(&self.config.node_id).cloned() else { return };
        if own.status == Status::Leaving && !self.moving.load(Ordering::Acquire) {
            tracing::warn!("this node stopped while leaving: the leave is undone; ask again to leave");
            self.membership.set_own(crate::view::Entry { version: own.version + 1, status: Status::Normal, ..own });
        }
    }

    /// Starts this node's decommission: it hands its ranges over, becomes
    /// `left`, and then [`Node::has_left`] fires.
    pub fn start_leave(self: &Arc<Node>) -> Result<(), String> {
        if self.own_status() != Some(Status::Normal) {
            return Err(format!("only a normal member can leave; this one is {:?}", self.own_status()));
        }
        if self.moving.swap(true, Ordering::AcqRel) {
            return Err("a join or leave of this node is already under way".into());
        }
        let node = self.clone();
        tokio::spawn(async move {
            let config = node.move_config();
            match handoff::run(&*node.transport, &node.membership, Move::Leave, &config, &node.move_progress).await {
                Ok(()) => {
                    tracing::info!("left the cluster: every range is held by its new owners");
                    node.save_view();
                    let _ = node.left.send(true);
                }
                Err(error) => tracing::error!(%error, "leave failed"),
            }
            node.moving.store(false, Ordering::Release);
        });
        Ok(())
    }

    /// Starts the removal of `gone`, a member lost for good (an operator's
    /// `removenode`): this node drives a leave on its behalf, the rest of
    /// its owner sets handing its ranges over. Refused for this node, for
    /// a non-member, and for a member that answers a ping (decommission
    /// that one instead: it still holds data, and could still serve).
    pub async fn start_remove(self: &Arc<Node>, gone: &str) -> Result<(), String> {
        if gone == self.config.node_id {
            return Err("a node cannot remove itself; decommission it with /admin/v1/leave".into());
        }
        let status = self.membership.load().view().entry(gone).map(|entry| entry.status);
        if !matches!(status, Some(Status::Normal | Status::Leaving | Status::Joining)) {
            return Err(format!("{gone} is not a member ({status:?})"));
        }
        if self.transport.remote.ping(gone).await.is_ok() {
            return Err(format!("{gone} answers: decommission it with /admin/v1/leave on it instead"));
        }
        if self.moving.swap(true, Ordering::AcqRel) {
            return Err("a change driven by this node is already under way".into());
        }
        let (node, gone) = (self.clone(), gone.to_owned());
        tokio::spawn(async move {
            let config = node.move_config();
            let kind = Move::Remove(gone.clone());
            match handoff::run(&*node.transport, &node.membership, kind, &config, &node.move_progress).await {
                Ok(()) => tracing::info!(%gone, "removed a lost member: its ranges are held by their new owners"),
                Err(error) => tracing::error!(%gone, %error, "removing a lost member failed"),
            }
            node.save_view();
            node.moving.store(false, Ordering::Release);
        });
        Ok(())
    }

    /// Resolves once this node has left the cluster.
    pub async fn has_left(&self) {
        let mut left = self.left.subscribe();
        let _ = left.wait_for(|left| *left).await;
    }

    pub fn own_status(&self) -> Option<Status> {
        self.membership.load().view().entry(&self.config.node_id).map(|entry| entry.status)
    }

    async fn deliver_hints(&self) {
        let peers = self.peers();
        let grace = Duration::from_secs(self.config.tombstone_grace_secs);
        let timeout = Duration::from_millis(self.config.rpc_timeout_ms);
        let now_ms = self.clock.now_ms();
        match hints::deliver_once(&self.hints, &*self.transport, &self.detector, &peers, now_ms, grace, timeout).await {
            Ok(0) => {}
            Ok(delivered) => {
                self.metrics.hints_delivered.inc_by(delivered as u64);
                tracing::info!(delivered, "hinted handoff delivered writes");
            }
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
        self.metrics.anti_entropy_rounds.inc();
        for peer in self.peers() {
            if !self.detector.is_alive(&peer, monotonic_now()) {
                continue;
            }
            match self.exchange_with(&peer).await {
                Ok(stats) if stats.pulled + stats.pushed > 0 => {
                    tracing::info!(%peer, ?stats, "anti-entropy repaired differences")
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%peer, %error, "anti-entropy exchange failed"),
            }
        }
    }

    /// One anti-entropy exchange with `peer` (a round's or recovery's).
    async fn exchange_with(&self, peer: &str) -> Result<SyncStats, String> {
        let timeout = Duration::from_millis(self.config.sync_timeout_ms);
        let view = self.replica.view();
        let exchanged = sync_with(&*self.transport, &self.replica.store, &view, peer, timeout).await;
        match &exchanged {
            Ok(stats) => {
                let outcome = if stats.complete { ExchangeOutcome::Complete } else { ExchangeOutcome::Partial };
                self.metrics.exchange(outcome, stats.pulled as u64, stats.pushed as u64);
            }
            Err(_) => self.metrics.exchange(ExchangeOutcome::Failed, 0, 0),
        }
        exchanged.map_err(|e| e.to_string())
    }

    /// The metrics in the Prometheus text format, with what the node holds
    /// read now: its stores' sizes, what the failure detector believes of
    /// each peer, the members of its view.
    pub fn scrape_metrics(&self) -> Result<String, MetricsError> {
        let size =
            |store, size: crate::storage::Size| StoreSize { store, records: size.records, disk_bytes: size.disk_bytes };
        let now = monotonic_now();
        let peers = self.peers().into_iter().map(|peer| {
            let up = self.detector.is_alive(&peer, now);
            (peer, up)
        });
        let snapshot = Snapshot {
            stores: vec![size(StoreLabel::Data, self.replica.store.size()), size(StoreLabel::Hints, self.hints.size())],
            peers: peers.collect(),
            members: self.membership.load().members().len() as u64,
        };
        self.metrics.scrape(&snapshot)
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

/// Tries of a join or leave (each after undoing one that met another).
const MOVE_ATTEMPTS: u32 = 5;

/// Where the view is kept in the data folder.
const VIEW_FILE: &str = "membership.view";

/// The view this node starts with: the seed list's (every seed normal at
/// version 0, so anything the cluster changed since wins), merged with the
/// one it saved before a restart. Empty for a node that joins and saved
/// none: it learns the view from its `--join` members.
fn initial_view(config: &Config, seeds: &[crate::membership::Member]) -> Result<View, String> {
    let mut members: Vec<(String, String)> = seeds.iter().map(|m| (m.id.clone(), m.addr.clone())).collect();
    if !members.iter().any(|(id, _)| *id == config.node_id) && (config.join.is_empty() || !seeds.is_empty()) {
        members.push((config.node_id.clone(), config.advertised_addr()));
    }
    let mut view = match (members.is_empty(), config.join.is_empty() || !seeds.is_empty()) {
        (false, true) => View::from_seeds(&members, config.vnodes),
        _ => View::default(),
    };
    if config.storage == crate::config::StorageKind::Sled {
        if let Some(saved) = read_view(&config.data_dir)? {
            view.merge(&saved);
        }
    }
    Ok(view)
}

fn read_view(data_dir: &std::path::Path) -> Result<Option<View>, String> {
    let path = data_dir.join(VIEW_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => crate::rpc::codec::decode_gossip(&bytes).map(|message| Some(message.entries)).map_err(|error| {
            format!("{} is damaged ({error}); move it aside to start from the seed list", path.display())
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Written whole to a temporary file, synced, then renamed over the old.
fn write_view(data_dir: &std::path::Path, view: &View) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = crate::rpc::codec::encode_gossip(&Gossip { digest: Default::default(), entries: view.clone() });
    let temporary = data_dir.join(format!("{VIEW_FILE}.new"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, data_dir.join(VIEW_FILE))?;
    crate::storage::fsync::sync_dir(data_dir)
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
