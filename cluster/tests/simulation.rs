//! The coordinator over a fake network, deterministically: seeded message
//! drops, delays, node crashes and clock skew, with the node's background
//! work (heartbeats, hinted handoff, anti-entropy, compaction) running as
//! the real node runs it. Every history of strong reads, puts and deletes
//! must be linearizable, eventual reads with `min_timestamp` must never
//! return an older version, and once healed the owners of every key must
//! agree. Faults: messages dropped (a share that differs by seed) and
//! delayed, nodes crashed (unreachable, doing nothing, storage kept) and
//! isolated (serving clients, cut from every peer), clocks moved, and in
//! half the runs lost write requests served late, once their path heals,
//! long after their sender gave up (as a kernel's retransmission does).
//!
//! One seed is one run, exactly: each run has its own tokio runtime on a
//! paused clock (delays cost no wall time), node clocks follow that clock
//! (`Clock::following_tokio`), every map is ordered, and all randomness
//! comes from the seed. A failing seed is printed; rerun it with
//! `SIM_SEED=<seed>`. The failure timeout and the tombstone grace are
//! lowered from the node's defaults so that, within a run of a few virtual
//! seconds, owners are believed down (and get hints) and tombstones are
//! compacted.
//!
//! The simulation must be able to fail: each planted bug of the catalogue
//! that lives in the replication protocol is caught over a fixed set of
//! seeds (`planted_*` tests). `ack-before-fsync` is not among them: storage
//! here is in memory and a crash keeps it, so a lost fsync cannot show; the
//! container suites' power-loss fault catches it.

mod support;

use cluster::antientropy::sync_with;
use cluster::clock::{monotonic_now, Clock};
use cluster::compaction::compact_once;
use cluster::coordinator::{Coordinator, CoordinatorConfig, Quorum, ReadOutcome};
use cluster::handoff::{self, Move, MoveConfig, Progress};
use cluster::hints::{deliver_once, hint_queue, HintStore};
use cluster::membership::FailureDetector;
use cluster::record::Record;
use cluster::recovery::Recovery;
use cluster::replica::{Replica, ReplicaError};
use cluster::storage::{MemoryStorage, Store};
use cluster::test_bug::{TestBug, TestBugs};
use cluster::topology::{Membership, Topology};
use cluster::transport::{Gossip, HandoffReply, HandoffRequest, RpcError, SyncReply, SyncRequest, Transport};
use cluster::version::Version;
use cluster::view::{Status, View};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::linearizability::{is_linearizable, is_linearizable_exhaustive, self_check, Entry, Op};
use tokio::task::JoinHandle;

const RPC_TIMEOUT: Duration = Duration::from_millis(60);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);
/// Lowered (the node's default is an hour) so that compaction runs within
/// a run, and outages outlast it as they do in Cassandra's zombie stories.
/// It stays well above the clock skews simulated here (at most 0.2 s
/// between two nodes), as a deployment's grace must stay above its skew.
const GRACE: Duration = Duration::from_secs(1);
/// Lowered (1.5 s by default), with the heartbeat, so that a crashed owner
/// is believed down within a run and gets hints.
const FAILURE_TIMEOUT: Duration = Duration::from_millis(250);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(80);
/// The node's default; anti-entropy a little faster than its 5 s default so
/// that it runs twice while the run settles.
const HINTS_EVERY: Duration = Duration::from_millis(500);
const ANTI_ENTROPY_EVERY: Duration = Duration::from_secs(2);
/// How long a healed run settles before the final reads: two rounds of
/// anti-entropy, and past every tombstone's grace.
const SETTLE: Duration = Duration::from_secs(5);
const COMPACTION_EVERY: Duration = Duration::from_millis(400);
/// The node default (--max-clock-skew-ms): far above the skews simulated here.
const MAX_AHEAD_MS: u64 = 600_000;
/// Where every node clock starts (before its skew), in Unix milliseconds.
const START_MS: u64 = 1_800_000_000_000;
const MAX_SKEW_MS: i64 = 100;
const KEYS: [&str; 4] = ["a", "b", "c", "d"];
/// A membership run's keys: enough that some ranges move at each change,
/// and that each key's history stays small enough for the checker.
const MANY_KEYS: [&str; 48] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w",
    "x", "y", "z", "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T",
    "U", "V",
];
const CLIENTS: u64 = 6;
const OPS_PER_CLIENT: usize = 50;
/// A membership run's clients stop here even while changes go on.
const MAX_OPS_PER_CLIENT: usize = 320;

struct NetState {
    rng: StdRng,
    drop_probability: f64,
    max_delay_ms: u64,
    /// The share of lost write requests that are served late rather than
    /// never (0 in runs without late delivery: none is drawn for).
    late_share: f64,
    crashed: BTreeSet<String>,
    /// Nodes cut from every other node (they still serve their clients).
    isolated: BTreeSet<String>,
}

/// Every replica, and the faults between them.
struct Net {
    replicas: BTreeMap<String, Arc<Replica>>,
    state: Mutex<NetState>,
    /// Late write requests served, and how each ended.
    late: Mutex<LateCount>,
}

/// What the late write requests of a run did at their replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LateCount {
    /// Stored (or, for a one-round put's, found newest).
    applied: u64,
    /// Refused, or not newest.
    refused: u64,
}

/// How long after it was lost a late write request reaches its replica,
/// at the earliest (and then once the path is whole again): past the
/// tombstone grace, as in the measurement of docs/PLATFORM.md (served
/// 6.7 s after it was sent against a 3 s grace).
const LATE_AFTER_MS: std::ops::RangeInclusive<u64> = 1_000..=3_000;
/// How long a late request waits for its path to heal before its sender's
/// kernel gives up on it.
const LATE_PATIENCE: Duration = Duration::from_secs(6);

/// A write request the network lost on its way, served later. A real
/// sender's kernel goes on retransmitting a socket's queue after the
/// process gave up on the request, so a request cut by a partition is
/// served once it heals (docs/PLATFORM.md), long after the coordinator
/// moved on, perhaps after a newer delete's tombstone was compacted.
enum LateWrite {
    One { key: Vec<u8>, record: Record, fence: u64 },
    Newest { key: Vec<u8>, record: Record, fence: u64 },
    Batch { entries: Vec<(Vec<u8>, Record)>, from: String },
}

impl Net {
    fn crashed(&self, node: &str) -> bool {
        self.state.lock().unwrap().crashed.contains(node)
    }

    /// Whether the path between two nodes is cut (either end isolated).
    fn cut(&self, from: &str, to: &str) -> bool {
        let state = self.state.lock().unwrap();
        from != to && (state.isolated.contains(from) || state.isolated.contains(to))
    }

    /// One message from `from` to `to`: delayed, maybe lost, refused by a
    /// crashed end.
    async fn hop(&self, from: &str, to: &str) -> Result<(), RpcError> {
        match self.request(from, to, false).await? {
            None => Ok(()),
            Some(_) => unreachable!("only a request that may be late is late"),
        }
    }

    /// A write request's hop: as [`Net::hop`], except that a lost one may
    /// instead come back as `Some(delay)`, to be served that much later.
    async fn write_hop(&self, from: &str, to: &str) -> Result<Option<Duration>, RpcError> {
        self.request(from, to, true).await
    }

    async fn request(&self, from: &str, to: &str, may_be_late: bool) -> Result<Option<Duration>, RpcError> {
        let (lost, delay_ms, late) = {
            let mut state = self.state.lock().unwrap();
            if state.crashed.contains(from) || state.crashed.contains(to) {
                return Err(RpcError::Unreachable(to.into(), "crashed".into()));
            }
            let cut = from != to && (state.isolated.contains(from) || state.isolated.contains(to));
            let probability = state.drop_probability;
            let lost = state.rng.random_bool(probability) || cut;
            let max = state.max_delay_ms;
            let delay_ms = state.rng.random_range(0..=max);
            // Drawn only where it can happen, so that runs without late
            // delivery keep the random stream they always had.
            let share = state.late_share;
            let late = (lost && may_be_late && share > 0.0 && state.rng.random_bool(share))
                .then(|| Duration::from_millis(state.rng.random_range(LATE_AFTER_MS)));
            (lost, delay_ms, late)
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if late.is_some() {
            return Ok(late);
        }
        if lost {
            std::future::pending::<()>().await;
        }
        // The delay is the sender's queue and the wire: a sender that
        // crashed meanwhile never sent it (a coordinator that dies mid-write
        // leaves it on some owners only), a receiver that crashed never
        // takes it.
        if self.crashed(from) || self.crashed(to) {
            return Err(RpcError::Unreachable(to.into(), "crashed".into()));
        }
        Ok(None)
    }

    /// Serves `write` at `to` after `after` and once the path from `from`
    /// is whole again (unless `to` crashed: its connection is gone). The
    /// caller never hears back: its request was lost as far as it knows.
    async fn serve_late<T>(self: &Arc<Self>, from: &str, to: &str, after: Duration, write: LateWrite) -> T {
        let (net, from, to) = (self.clone(), from.to_owned(), to.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let waited_since = tokio::time::Instant::now();
            while net.cut(&from, &to) && waited_since.elapsed() < LATE_PATIENCE {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if net.cut(&from, &to) || net.crashed(&to) {
                return;
            }
            let replica = &net.replicas[&to];
            let applied = match write {
                LateWrite::One { key, record, fence } => replica.write(key, record, fence).await.is_ok(),
                LateWrite::Newest { key, record, fence } => {
                    replica.write_newest(key, record, fence).await.unwrap_or(false)
                }
                LateWrite::Batch { entries, from } => replica.write_batch(entries, &from).await.is_ok(),
            };
            let mut late = net.late.lock().unwrap();
            match applied {
                true => late.applied += 1,
                false => late.refused += 1,
            }
        });
        std::future::pending().await
    }
}

struct FakeTransport {
    from: String,
    net: Arc<Net>,
}

fn store_error(to: &str, error: impl std::fmt::Display) -> RpcError {
    RpcError::Remote(to.into(), error.to_string())
}

fn replica_error(to: &str, error: ReplicaError) -> RpcError {
    match error {
        ReplicaError::StaleView => RpcError::StaleView(to.into()),
        other => store_error(to, other),
    }
}

impl Transport for FakeTransport {
    async fn read(&self, to: &str, key: &[u8], fence: u64) -> Result<Option<Record>, RpcError> {
        self.net.hop(&self.from, to).await?;
        let record = self.net.replicas[to].read(key, fence).map_err(|e| replica_error(to, e))?;
        self.net.hop(to, &self.from).await?;
        Ok(record)
    }

    async fn write(&self, to: &str, key: &[u8], record: &Record, fence: u64) -> Result<(), RpcError> {
        if let Some(after) = self.net.write_hop(&self.from, to).await? {
            let late = LateWrite::One { key: key.to_vec(), record: record.clone(), fence };
            return self.net.serve_late(&self.from, to, after, late).await;
        }
        let written = self.net.replicas[to].write(key.to_vec(), record.clone(), fence).await;
        written.map_err(|e| replica_error(to, e))?;
        self.net.hop(to, &self.from).await
    }

    async fn write_newest(&self, to: &str, key: &[u8], record: &Record, fence: u64) -> Result<bool, RpcError> {
        if let Some(after) = self.net.write_hop(&self.from, to).await? {
            let late = LateWrite::Newest { key: key.to_vec(), record: record.clone(), fence };
            return self.net.serve_late(&self.from, to, after, late).await;
        }
        let written = self.net.replicas[to].write_newest(key.to_vec(), record.clone(), fence).await;
        let newest = written.map_err(|e| replica_error(to, e))?;
        self.net.hop(to, &self.from).await?;
        Ok(newest)
    }

    async fn write_batch(&self, to: &str, from: &str, entries: Vec<(Vec<u8>, Record)>) -> Result<(), RpcError> {
        if let Some(after) = self.net.write_hop(&self.from, to).await? {
            let late = LateWrite::Batch { entries, from: from.to_owned() };
            return self.net.serve_late(&self.from, to, after, late).await;
        }
        self.net.replicas[to].write_batch(entries, from).await.map_err(|e| store_error(to, e))?;
        self.net.hop(to, &self.from).await
    }

    async fn sync(&self, to: &str, request: SyncRequest) -> Result<SyncReply, RpcError> {
        self.net.hop(&self.from, to).await?;
        let reply = self.net.replicas[to].answer_sync(&request).await.map_err(|e| store_error(to, e))?;
        self.net.hop(to, &self.from).await?;
        Ok(reply)
    }

    async fn gossip(&self, to: &str, message: Gossip) -> Result<Gossip, RpcError> {
        self.net.hop(&self.from, to).await?;
        let reply = cluster::gossip::answer(&self.net.replicas[to].membership, &message);
        self.net.hop(to, &self.from).await?;
        Ok(reply)
    }

    /// The receiver pushes through its own transport, as a node does.
    async fn handoff(&self, to: &str, request: HandoffRequest) -> Result<HandoffReply, RpcError> {
        self.net.hop(&self.from, to).await?;
        let pusher = FakeTransport { from: to.to_owned(), net: self.net.clone() };
        let replica = &self.net.replicas[to];
        let pushed = handoff::push_page(&pusher, &replica.store, &replica.membership, &request, RPC_TIMEOUT).await;
        let reply = pushed.map_err(|e| store_error(to, e))?;
        self.net.hop(to, &self.from).await?;
        Ok(reply)
    }
}

struct SimNode {
    id: String,
    coordinator: Coordinator<FakeTransport>,
    transport: Arc<FakeTransport>,
    hints: Arc<HintStore>,
    detector: Arc<FailureDetector>,
    replica: Arc<Replica>,
    membership: Arc<Membership>,
    bugs: TestBugs,
    /// Which peer the next heartbeat gossips with.
    gossip_turn: AtomicU64,
    /// This node's join or leave, if it made one.
    progress: Mutex<Progress>,
}

impl SimNode {
    /// Every other member of this node's view (not those that left).
    fn peers(&self) -> Vec<String> {
        let topology = self.membership.load();
        topology.members().into_iter().map(|(id, _)| id.to_owned()).filter(|id| *id != self.id).collect()
    }

    fn status(&self) -> Option<Status> {
        self.membership.load().view().entry(&self.id).map(|entry| entry.status)
    }
}

/// One run's cluster, network and event counter.
struct Sim {
    net: Arc<Net>,
    nodes: Vec<Arc<SimNode>>,
    /// A total order of invocations and completions, for this run only.
    events: AtomicU64,
    keys: &'static [&'static str],
    /// Clients go on past their operation count while this is set (a
    /// membership run's changes are under way).
    busy: AtomicBool,
    /// A client's pause before each operation, at most.
    think_ms: u64,
    /// Members crashed for good (removed, or to be): never restarted.
    gone: Mutex<BTreeSet<String>>,
    /// Whether nodes compact dead records (off in half the membership
    /// runs: there an owner holding nothing has lost the write).
    compaction: bool,
}

impl Sim {
    fn tick(&self) -> u64 {
        self.events.fetch_add(1, Ordering::SeqCst)
    }
}

fn volatile_store() -> Store {
    Store::volatile(Arc::new(MemoryStorage::new())).expect("a memory store opens")
}

/// Ring tokens per member in the simulation.
const VNODES: usize = 16;

/// A cluster of `size` nodes; call it inside the run's runtime (it starts
/// each node's hint writer).
fn build_cluster(size: usize, seed: u64, drop_probability: f64, max_delay_ms: u64, bugs: &TestBugs) -> Sim {
    build_cluster_with_spares(size, 0, seed, (drop_probability, max_delay_ms), bugs)
}

/// `size` members and `spares` nodes started outside the cluster, with an
/// empty view: they can join it.
fn build_cluster_with_spares(
    size: usize,
    spares: usize,
    seed: u64,
    (drop_probability, max_delay_ms): (f64, u64),
    bugs: &TestBugs,
) -> Sim {
    let ids: Vec<String> = (1..=size + spares).map(|i| format!("n{i}")).collect();
    let quorum = Quorum::for_cluster(3, 2, 2, size);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut replicas = BTreeMap::new();
    for (at, id) in ids.iter().enumerate() {
        let membership = match at < size {
            true => Membership::from_seed_ids(id, &ids[..size], VNODES, quorum.n),
            false => Membership::new(id, View::default(), 3),
        };
        let membership = Arc::new(membership);
        let clock = Arc::new(Clock::following_tokio(START_MS));
        clock.set_offset_ms(rng.random_range(-MAX_SKEW_MS..=MAX_SKEW_MS));
        let replica = Replica {
            node_id: id.clone(),
            store: Arc::new(volatile_store()),
            membership: membership.clone(),
            clock,
            grace_ms: GRACE.as_millis() as u64,
            recovery: Recovery::done(membership),
            max_ahead_ms: MAX_AHEAD_MS,
            limits: Default::default(),
        };
        replicas.insert(id.clone(), Arc::new(replica));
    }
    let (crashed, isolated) = (BTreeSet::new(), BTreeSet::new());
    let late_share = 0.0;
    let state =
        NetState { rng: StdRng::seed_from_u64(seed), drop_probability, max_delay_ms, late_share, crashed, isolated };
    let net = Arc::new(Net { replicas, state: Mutex::new(state), late: Mutex::default() });
    let nodes = ids.iter().map(|id| build_node(id, &ids, &net, quorum, bugs)).collect();
    Sim {
        net,
        nodes,
        events: AtomicU64::new(0),
        keys: &KEYS,
        busy: AtomicBool::new(false),
        think_ms: 40,
        compaction: true,
        gone: Mutex::new(BTreeSet::new()),
    }
}

fn build_node(id: &str, ids: &[String], net: &Arc<Net>, quorum: Quorum, bugs: &TestBugs) -> Arc<SimNode> {
    let replica = net.replicas[id].clone();
    let membership = replica.membership.clone();
    let transport = Arc::new(FakeTransport { from: id.to_owned(), net: net.clone() });
    let peers: Vec<String> = ids.iter().filter(|p| *p != id).cloned().collect();
    let detector = Arc::new(FailureDetector::new(peers, FAILURE_TIMEOUT, monotonic_now()));
    let hints = Arc::new(HintStore::new(volatile_store(), 1 << 30));
    let (queue, writer) = hint_queue(1_024, 1 << 20);
    tokio::spawn(writer.run(hints.clone()));
    let config = CoordinatorConfig {
        node_id: id.to_owned(),
        quorum,
        rpc_timeout: RPC_TIMEOUT,
        hedge_delay: Duration::from_millis(15),
        read_repair_every: 10,
        max_ahead_ms: MAX_AHEAD_MS,
        bugs: bugs.clone(),
        read_repairs: Default::default(),
        learned_writes: Default::default(),
    };
    let clock = replica.clock.clone();
    let coordinator =
        Coordinator::new(config, clock, membership.clone(), transport.clone(), detector.clone(), Arc::new(queue));
    Arc::new(SimNode {
        id: id.to_owned(),
        coordinator,
        transport,
        hints,
        detector,
        replica,
        membership,
        bugs: bugs.clone(),
        gossip_turn: AtomicU64::new(0),
        progress: Mutex::new(Progress::default()),
    })
}

/// The node's background work (see `Node::spawn_background`).
#[derive(Clone, Copy, Debug)]
enum Duty {
    Heartbeat,
    DeliverHints,
    AntiEntropy,
    Compact,
}

impl Duty {
    fn every(self) -> Duration {
        match self {
            Duty::Heartbeat => HEARTBEAT_EVERY,
            Duty::DeliverHints => HINTS_EVERY,
            Duty::AntiEntropy => ANTI_ENTROPY_EVERY,
            Duty::Compact => COMPACTION_EVERY,
        }
    }

    /// The duties a node runs: under `no-repair`, no hinted handoff and no
    /// anti-entropy, as the node does.
    fn of(bugs: &TestBugs) -> Vec<Duty> {
        match bugs.has(TestBug::NoRepair) {
            true => vec![Duty::Heartbeat, Duty::Compact],
            false => vec![Duty::Heartbeat, Duty::DeliverHints, Duty::AntiEntropy, Duty::Compact],
        }
    }
}

async fn perform(duty: Duty, node: &SimNode, net: &Net) {
    let now_ms = node.replica.clock.now_ms();
    match duty {
        Duty::Heartbeat => {
            let peers = node.peers();
            let pings = peers.iter().map(|peer| async move {
                let round_trip = async { net.hop(&node.id, peer).await.and(net.hop(peer, &node.id).await) };
                if let Ok(Ok(())) = tokio::time::timeout(RPC_TIMEOUT, round_trip).await {
                    node.detector.record_answer(peer, monotonic_now());
                }
            });
            futures::future::join_all(pings).await;
            if !peers.is_empty() {
                let peer = &peers[node.gossip_turn.fetch_add(1, Ordering::SeqCst) as usize % peers.len()];
                let _ = cluster::gossip::exchange(&*node.transport, &node.membership, peer, RPC_TIMEOUT).await;
            }
        }
        Duty::DeliverHints => {
            let (hints, detector, peers) = (&node.hints, &node.detector, node.peers());
            let _ = deliver_once(hints, &*node.transport, detector, &peers, now_ms, GRACE, RPC_TIMEOUT).await;
        }
        Duty::AntiEntropy => {
            for peer in node.peers().iter().filter(|peer| node.detector.is_alive(peer, monotonic_now())) {
                let view = node.replica.view();
                let _ = sync_with(&*node.transport, &node.replica.store, &view, peer, RPC_TIMEOUT * 4).await;
            }
        }
        Duty::Compact => {
            let confirm = |candidates| node.coordinator.confirm_removable(candidates);
            let grace_ms = node.replica.grace_ms;
            let _ = compact_once(&node.replica.store, &node.replica.clock, grace_ms, confirm).await;
            let _ = node.hints.sweep(now_ms, GRACE).await;
        }
    }
}

/// Every node's duties, each on its interval; a crashed node does nothing.
fn spawn_background(sim: &Arc<Sim>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (at, node) in sim.nodes.iter().enumerate() {
        for duty in Duty::of(&node.bugs).into_iter().filter(|duty| sim.compaction || !matches!(duty, Duty::Compact)) {
            let sim = sim.clone();
            tasks.push(tokio::spawn(async move {
                let node = &sim.nodes[at];
                let mut ticker = tokio::time::interval(duty.every());
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    ticker.tick().await;
                    if !sim.net.crashed(&node.id) {
                        perform(duty, node, &sim.net).await;
                    }
                }
            }));
        }
    }
    tasks
}

fn value_of(outcome: &ReadOutcome) -> Option<u64> {
    match outcome {
        ReadOutcome::Found { value, .. } => {
            Some(u64::from_be_bytes(value.as_slice().try_into().expect("8-byte value")))
        }
        ReadOutcome::NotFound { .. } => None,
    }
}

fn timestamp_of(outcome: &ReadOutcome) -> Option<u64> {
    match outcome {
        ReadOutcome::Found { version, .. } => Some(version.timestamp_ms),
        ReadOutcome::NotFound { version } => version.map(|v| v.timestamp_ms),
    }
}

/// What one run did and ended with: equal for two runs of one seed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcomes {
    /// Per key, the operations the linearizability check sees.
    history: BTreeMap<String, Vec<Entry>>,
    stale_session_reads: Vec<String>,
    /// The version each acknowledged put's value got, by value (values
    /// are unique).
    put_versions: BTreeMap<u64, Version>,
    /// Every value a read returned and the version it came with: a value
    /// must have one version, the one its put was acknowledged with.
    read_versions: Vec<(u64, Version)>,
    /// Per key, the newest acknowledged write's version, and whether it was
    /// a delete.
    acked: BTreeMap<String, (Version, bool)>,
    /// Acknowledged writes held by fewer than W owners right after a
    /// change completed (see `held_after_move`).
    underheld: Vec<String>,
    /// Strong reads after healing that failed (a healed cluster answers).
    failed_final_reads: Vec<String>,
    /// Keys whose owners disagree once healed and quiet.
    diverged: Vec<String>,
    /// Every replica's records at the end.
    final_state: BTreeMap<String, Vec<(Vec<u8>, Record)>>,
    ok: usize,
    unknown: usize,
    /// Membership changes tried and how each ended, in order of ending.
    moves: Vec<String>,
    /// What the write requests served late did.
    late: LateCount,
}

impl Outcomes {
    /// Once settled, every member holds the same view, and no change is
    /// left half done.
    fn membership_problems(&mut self, sim: &Sim, reference: &Topology) {
        let gone = sim.gone.lock().unwrap().clone();
        for node in &sim.nodes {
            let status = node.status();
            if status.is_none() || status == Some(Status::Left) || gone.contains(&node.id) {
                continue; // never joined, left, or lost: its view no longer matters
            }
            if node.membership.load().view() != reference.view() {
                self.diverged.push(format!("{} holds another view once settled", node.id));
            }
        }
        if reference.is_changing() {
            self.diverged.push(format!("a change is still under way once settled: {:?}", reference.view()));
        }
    }

    /// Every violation found; `undecided` counts key histories too hard for
    /// the small checker (never counted as a pass or a failure).
    fn problems(&self, undecided: &mut usize) -> Vec<String> {
        let mut problems = self.stale_session_reads.clone();
        problems.extend(self.underheld.iter().cloned());
        problems.extend(self.failed_final_reads.iter().cloned());
        problems.extend(self.diverged.iter().cloned());
        for (value, seen) in &self.read_versions {
            if let Some(acked) = self.put_versions.get(value).filter(|acked| *acked != seen) {
                problems.push(format!("value {value} was read at version {seen:?} but acknowledged at {acked:?}"));
            }
        }
        for (key, history) in &self.history {
            match is_linearizable(history) {
                Some(true) => {}
                Some(false) => problems.push(format!("history of key {key} is not linearizable: {history:?}")),
                None => *undecided += 1,
            }
        }
        problems
    }
}

/// Shares of puts, deletes and strong reads in percent; eventual reads
/// take the rest.
#[derive(Clone, Copy, Debug)]
struct Mix {
    put: u32,
    delete: u32,
    strong_read: u32,
}

/// What a seed runs: cluster size, message loss, operation mix.
#[derive(Clone, Copy, Debug)]
struct Profile {
    nodes: usize,
    drop_probability: f64,
    mix: Mix,
    /// See [`NetState::late_share`].
    late_share: f64,
}

impl Profile {
    /// Four kinds of seed, on 3 and on 5 nodes. The lossiest reads more
    /// than it writes: a stale read after a partial write needs lost
    /// messages (a write learns from a quorum first, so only losses in its
    /// second phase leave it on one owner) and two reads close together
    /// before repair or the next write.
    fn for_seed(seed: u64) -> Profile {
        let nodes = if (seed / 4).is_multiple_of(2) { 3 } else { 5 };
        let usual = Mix { put: 40, delete: 10, strong_read: 30 };
        let (drop_probability, mix) = match seed % 4 {
            0 => (0.02, usual),
            1 => (0.05, usual),
            2 => (0.12, usual),
            _ => (0.25, Mix { put: 20, delete: 5, strong_read: 65 }),
        };
        // Every other block of eight seeds serves half its lost write
        // requests late: each size and loss rate with and without.
        let late_share = if (seed / 8).is_multiple_of(2) { 0.0 } else { 0.5 };
        Profile { nodes, drop_probability, mix, late_share }
    }
}

fn note_acked(outcomes: &Mutex<Outcomes>, key: &str, version: Version, delete: bool) {
    let mut outcomes = outcomes.lock().unwrap();
    let newest = outcomes.acked.entry(key.to_owned()).or_insert((version, delete));
    if version > newest.0 {
        *newest = (version, delete);
    }
}

/// A found value's whole version (timestamp and tiebreak): two versions
/// of one value may share a millisecond.
fn note_read(outcomes: &Mutex<Outcomes>, outcome: &ReadOutcome) {
    if let ReadOutcome::Found { version, .. } = outcome {
        if let Some(value) = value_of(outcome) {
            outcomes.lock().unwrap().read_versions.push((value, *version));
        }
    }
}

/// What a client's next operation is: its number, key and dice.
struct Planned {
    process: u64,
    op: usize,
    key: &'static str,
    roll: u32,
    mix: Mix,
}

/// One client's operation and what the session learned from it.
async fn one_op(
    planned: Planned,
    node: &SimNode,
    sim: &Sim,
    session: &BTreeMap<String, u64>,
    outcomes: &Mutex<Outcomes>,
) -> (Option<Entry>, Option<u64>) {
    let Planned { process, op, key, roll, mix } = planned;
    let invoke = sim.tick();
    let done = |op| Some(Entry { op, invoke, complete: Some(sim.tick()) });
    let unknown = |op| Some(Entry { op, invoke, complete: None });
    if roll < mix.put {
        let value = process << 32 | op as u64;
        let put = node.coordinator.put(key, value.to_be_bytes().to_vec(), None);
        match tokio::time::timeout(REQUEST_TIMEOUT, put).await {
            Ok(Ok(version)) => {
                note_acked(outcomes, key, version, false);
                outcomes.lock().unwrap().put_versions.insert(value, version);
                (done(Op::Write(Some(value))), Some(version.timestamp_ms))
            }
            _ => (unknown(Op::Write(Some(value))), None),
        }
    } else if roll < mix.put + mix.delete {
        match tokio::time::timeout(REQUEST_TIMEOUT, node.coordinator.delete(key)).await {
            Ok(Ok(version)) => {
                note_acked(outcomes, key, version, true);
                (done(Op::Write(None)), Some(version.timestamp_ms))
            }
            _ => (unknown(Op::Write(None)), None),
        }
    } else if roll < mix.put + mix.delete + mix.strong_read {
        match tokio::time::timeout(REQUEST_TIMEOUT, node.coordinator.get_strong(key)).await {
            Ok(Ok(outcome)) => {
                note_read(outcomes, &outcome);
                (done(Op::Read(value_of(&outcome))), timestamp_of(&outcome))
            }
            _ => (None, None), // a failed read changed nothing
        }
    } else {
        let min = session.get(key).copied();
        match tokio::time::timeout(REQUEST_TIMEOUT, node.coordinator.get_eventual(key, min)).await {
            Ok(Ok(outcome)) => {
                note_read(outcomes, &outcome);
                let seen = timestamp_of(&outcome);
                if let (Some(min), Some(seen)) = (min, seen) {
                    if seen < min {
                        let problem = format!("process {process} read {key} at {seen} after min_timestamp {min}");
                        outcomes.lock().unwrap().stale_session_reads.push(problem);
                    }
                }
                (None, seen)
            }
            _ => (None, None),
        }
    }
}

async fn client(process: u64, sim: Arc<Sim>, seed: u64, outcomes: Arc<Mutex<Outcomes>>) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(process));
    let mut session: BTreeMap<String, u64> = BTreeMap::new();
    let mix = Profile::for_seed(seed).mix;
    let mut op = 0;
    // Past its count while changes go on, but never so far that a key's
    // history outgrows the small checker.
    while op < OPS_PER_CLIENT || (sim.busy.load(Ordering::SeqCst) && op < MAX_OPS_PER_CLIENT) {
        op += 1;
        let key = sim.keys[rng.random_range(0..sim.keys.len())];
        let node = &sim.nodes[rng.random_range(0..sim.nodes.len())];
        if node.membership.load().members().is_empty() {
            continue; // a node that has not joined yet knows no owners
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..sim.think_ms))).await;
        if sim.net.crashed(&node.id) {
            continue; // a crashed coordinator takes no requests
        }
        let roll = rng.random_range(0..100);
        let planned = Planned { process, op, key, roll, mix };
        let (entry, session_ts) = one_op(planned, node, &sim, &session, &outcomes).await;
        if let Some(ts) = session_ts {
            let entry = session.entry(key.to_owned()).or_default();
            *entry = (*entry).max(ts);
        }
        let mut outcomes = outcomes.lock().unwrap();
        if let Some(entry) = entry {
            match entry.complete {
                Some(_) => outcomes.ok += 1,
                None => outcomes.unknown += 1,
            }
            outcomes.history.entry(key.to_owned()).or_default().push(entry);
        }
    }
}

/// Crashes and restarts nodes (at most two down at once), isolates one
/// node at a time and heals it, shifts clocks.
async fn nemesis(sim: Arc<Sim>, seed: u64, stop: Arc<AtomicBool>, pace: Pace) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xfa17);
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(pace.every_ms.clone()))).await;
        let node = &sim.nodes[rng.random_range(0..sim.nodes.len())];
        let mut state = sim.net.state.lock().unwrap();
        match rng.random_range(0..5) {
            0 if state.crashed.len() < 2 => {
                state.crashed.insert(node.id.clone());
            }
            1 if pace.restart_a_crashed_node => {
                let gone = sim.gone.lock().unwrap().clone();
                let crashed: Vec<String> = state.crashed.iter().filter(|id| !gone.contains(*id)).cloned().collect();
                if !crashed.is_empty() {
                    state.crashed.remove(&crashed[rng.random_range(0..crashed.len())]);
                }
            }
            1 => {
                state.crashed.remove(&node.id);
            }
            2 if state.isolated.is_empty() => {
                state.isolated.insert(node.id.clone());
            }
            3 => state.isolated.clear(),
            4 => node.replica.clock.set_offset_ms(rng.random_range(-MAX_SKEW_MS..=MAX_SKEW_MS)),
            _ => {}
        }
    }
}

/// How often the nemesis acts, and whether a restart picks a crashed node
/// (in a large cluster a random pick would leave crashes for ever).
struct Pace {
    every_ms: std::ops::Range<u64>,
    restart_a_crashed_node: bool,
}

/// A record as the owners' agreement sees it: live records by version,
/// every dead one (tombstone, expired) the same as none, since compaction
/// removes them owner by owner.
fn live_version(record: Option<Record>, now_ms: u64) -> Option<Version> {
    record.filter(|record| record.is_live_at(now_ms)).map(|record| record.version)
}

/// Heals the network, lets the background work run for [`SETTLE`], reads every key once more (strongly), then stops everything and
/// compares the owners of every key.
async fn heal_and_settle(sim: &Arc<Sim>, background: Vec<JoinHandle<()>>, outcomes: &Mutex<Outcomes>) {
    {
        let mut state = sim.net.state.lock().unwrap();
        state.drop_probability = 0.0;
        state.crashed = sim.gone.lock().unwrap().clone();
        state.isolated.clear();
    }
    tokio::time::sleep(SETTLE).await;
    let gone = sim.gone.lock().unwrap().clone();
    let members: Vec<&Arc<SimNode>> =
        sim.nodes.iter().filter(|node| node.status() == Some(Status::Normal) && !gone.contains(&node.id)).collect();
    for (at, key) in sim.keys.iter().enumerate() {
        let node = members[at % members.len()];
        let invoke = sim.tick();
        match tokio::time::timeout(REQUEST_TIMEOUT, node.coordinator.get_strong(key)).await {
            Ok(Ok(outcome)) => {
                let entry = Entry { op: Op::Read(value_of(&outcome)), invoke, complete: Some(sim.tick()) };
                outcomes.lock().unwrap().history.entry((*key).to_owned()).or_default().push(entry);
            }
            other => outcomes.lock().unwrap().failed_final_reads.push(format!("final read of {key}: {other:?}")),
        }
    }
    for task in background {
        task.abort();
    }
    let mut outcomes = outcomes.lock().unwrap();
    let now_ms = START_MS + 1_000_000_000; // past every expiry, the same for every owner
    let topology = members[0].membership.load();
    outcomes.membership_problems(sim, &topology);
    for key in sim.keys {
        let owners = topology.placement(key.as_bytes()).now;
        let expected = 3.min(members.len());
        if owners.len() != expected {
            outcomes.diverged.push(format!("{key} has owners {owners:?}, not {expected}"));
        }
        // A lost member whose removal was undone still owns: it holds what
        // it held when it died, which is no divergence of the live owners.
        let held: BTreeMap<&String, _> = owners
            .iter()
            .filter(|owner| !gone.contains(*owner))
            .map(|owner| {
                let held = sim.net.replicas[owner].read(key.as_bytes(), cluster::replica::UNFENCED).unwrap();
                (owner, live_version(held, now_ms))
            })
            .collect();
        if held.values().collect::<BTreeSet<_>>().len() > 1 {
            outcomes.diverged.push(format!("owners of {key} disagree after healing: {held:?}"));
        }
    }
    for (id, replica) in &sim.net.replicas {
        outcomes.final_state.insert(id.clone(), replica.store.scan_after(None, usize::MAX).unwrap());
    }
}

async fn simulate(seed: u64, bugs: TestBugs) -> Outcomes {
    let profile = Profile::for_seed(seed);
    let sim = Arc::new(build_cluster(profile.nodes, seed, profile.drop_probability, 20, &bugs));
    sim.net.state.lock().unwrap().late_share = profile.late_share;
    let background = spawn_background(&sim);
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let chaos = tokio::spawn(nemesis(
        sim.clone(),
        seed,
        stop.clone(),
        Pace { every_ms: 50..300, restart_a_crashed_node: false },
    ));
    let clients: Vec<_> =
        (0..CLIENTS).map(|process| tokio::spawn(client(process, sim.clone(), seed, outcomes.clone()))).collect();
    for client in clients {
        client.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    chaos.await.unwrap();
    heal_and_settle(&sim, background, &outcomes).await;
    outcomes.lock().unwrap().late = *sim.net.late.lock().unwrap();
    // Bound first: the lock guard must drop before `outcomes` does.
    let taken = std::mem::take(&mut *outcomes.lock().unwrap());
    taken
}

/// How a membership run's moves are paced: short steps, so that a move
/// that meets a crashed member is undone within the run.
fn move_config(addr: &str, bugs: &TestBugs) -> MoveConfig {
    MoveConfig {
        addr: addr.to_owned(),
        vnodes: VNODES,
        rpc_timeout: RPC_TIMEOUT,
        page_pause: Duration::from_millis(5),
        step_deadline: Duration::from_secs(3),
        max_attempts: 3,
        bugs: bugs.clone(),
    }
}

/// One join (of a node outside the cluster, which first learns the view
/// from a member) or leave, to its end; what happened goes to `outcomes`.
async fn one_move(sim: Arc<Sim>, at: usize, kind: Move, members: Vec<String>, outcomes: Arc<Mutex<Outcomes>>) {
    let node = &sim.nodes[at];
    if kind == Move::Join {
        for attempt in 0..20 {
            let member = &members[attempt % members.len()];
            let learned = cluster::gossip::exchange(&*node.transport, &node.membership, member, RPC_TIMEOUT);
            if learned.await.is_ok() {
                break;
            }
            tokio::time::sleep(RPC_TIMEOUT).await;
        }
    }
    let config = move_config(&node.id, &node.bugs);
    let name = format!("{kind:?}");
    let outcome = handoff::run(&*node.transport, &node.membership, kind, &config, &node.progress).await;
    let pushed = node.progress.lock().unwrap().records_pushed;
    let line = format!("{name} of {}: {outcome:?} ({pushed} records pushed)", node.id);
    let mut outcomes = outcomes.lock().unwrap();
    if outcome.is_ok() {
        held_after_move(&sim, &node.membership.load(), &line, &mut outcomes);
    }
    outcomes.moves.push(line);
}

/// The invariant a move must keep (docs/MEMBERSHIP.md): the moment it
/// completes, every acknowledged write is held (at its version or a newer
/// one) by W owners of its key in the view after the move. Reads from any
/// R of them then see it.
///
/// An owner holding nothing counts as holding when the acknowledged write
/// was a delete, or, where nodes compact, when no owner holds an older
/// version: a newer delete (one whose client timed out) may have been
/// compacted everywhere. Runs without compaction check exactly.
fn held_after_move(sim: &Sim, topology: &Topology, change: &str, outcomes: &mut Outcomes) {
    for (key, (version, delete)) in &outcomes.acked {
        let owners = topology.placement(key.as_bytes()).now;
        let held: Vec<(&String, Option<Record>)> =
            owners.iter().map(|owner| (owner, sim.net.replicas[owner].store.get(key.as_bytes()).unwrap())).collect();
        let older_somewhere = held.iter().any(|(_, record)| record.as_ref().is_some_and(|r| r.version < *version));
        let holders: Vec<&String> = held
            .iter()
            .filter(|(_, record)| match record {
                Some(record) => record.version >= *version,
                None => *delete || (sim.compaction && !older_somewhere),
            })
            .map(|(owner, _)| *owner)
            .collect();
        if holders.len() < 2.min(owners.len()) {
            let problem =
                format!("after {change}: {key}'s acknowledged {version:?} is held by {holders:?} of {owners:?}");
            outcomes.underheld.push(problem);
        }
    }
}

/// Adds and decommissions members while the other faults go on: a join
/// or a leave every so often, sometimes two at once (they must not
/// overlap: one of them is undone), keeping at least 18 members; then
/// lets the clients stop.
async fn membership_nemesis(sim: Arc<Sim>, seed: u64, outcomes: Arc<Mutex<Outcomes>>) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x3e3b);
    let mut moves = Vec::new();
    for _ in 0..CHANGES_PER_RUN {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..900))).await;
        let at_once = if rng.random_bool(0.25) { 2 } else { 1 };
        for _ in 0..at_once {
            let spares: Vec<usize> = (0..sim.nodes.len()).filter(|&i| sim.nodes[i].status().is_none()).collect();
            let normal: Vec<usize> =
                (0..sim.nodes.len()).filter(|&i| sim.nodes[i].status() == Some(Status::Normal)).collect();
            let mut members: Vec<String> = normal.iter().map(|&i| sim.nodes[i].id.clone()).collect();
            let turn = rng.random_range(0..members.len());
            members.rotate_left(turn);
            let (at, kind) = match rng.random_bool(0.5) && !spares.is_empty() || normal.len() <= 18 {
                true if !spares.is_empty() => (spares[rng.random_range(0..spares.len())], Move::Join),
                true => continue,
                false => (normal[rng.random_range(0..normal.len())], Move::Leave),
            };
            moves.push(tokio::spawn(one_move(sim.clone(), at, kind, members, outcomes.clone())));
        }
        // Wait for this change (or pair) before the next, as an operator would.
        for pending in moves.drain(..) {
            pending.await.unwrap();
        }
    }
    if rng.random_bool(0.5) {
        replace_a_lost_member(&sim, &mut rng, &outcomes).await;
    }
    sim.busy.store(false, Ordering::SeqCst);
}

/// A member lost for good (crashed, never back) is removed by another
/// member, as an operator's `removenode`, and a node outside joins in its
/// place.
async fn replace_a_lost_member(sim: &Arc<Sim>, rng: &mut StdRng, outcomes: &Arc<Mutex<Outcomes>>) {
    let normal: Vec<usize> = (0..sim.nodes.len()).filter(|&i| sim.nodes[i].status() == Some(Status::Normal)).collect();
    let (lost, driver) = (normal[rng.random_range(0..normal.len())], normal[rng.random_range(0..normal.len())]);
    if lost == driver || sim.net.crashed(&sim.nodes[driver].id) {
        return;
    }
    let lost_id = sim.nodes[lost].id.clone();
    sim.gone.lock().unwrap().insert(lost_id.clone());
    sim.net.state.lock().unwrap().crashed.insert(lost_id.clone());
    // It is believed down before anyone removes it, as an operator would see.
    tokio::time::sleep(FAILURE_TIMEOUT * 2).await;
    let members: Vec<String> = normal.iter().map(|&i| sim.nodes[i].id.clone()).filter(|id| *id != lost_id).collect();
    one_move(sim.clone(), driver, Move::Remove(lost_id), members.clone(), outcomes.clone()).await;
    let spares: Vec<usize> = (0..sim.nodes.len()).filter(|&i| sim.nodes[i].status().is_none()).collect();
    if let Some(&spare) = spares.first() {
        one_move(sim.clone(), spare, Move::Join, members, outcomes.clone()).await;
    }
}

/// Rounds of changes (one, or two at once) in a membership run.
const CHANGES_PER_RUN: usize = 4;

/// A membership run: 20 members and 4 nodes outside, joins and leaves
/// under the usual faults and traffic over more keys.
async fn simulate_membership(seed: u64, bugs: TestBugs) -> Outcomes {
    let drop_probability = [0.01, 0.03, 0.05][seed as usize % 3];
    let mut sim = build_cluster_with_spares(20, 4, seed, (drop_probability, 20), &bugs);
    sim.keys = &MANY_KEYS;
    sim.think_ms = 150;
    sim.compaction = seed.is_multiple_of(2);
    sim.net.state.lock().unwrap().late_share = 0.5;
    let sim = Arc::new(sim);
    let background = spawn_background(&sim);
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    // Gentler than a fixed cluster's: a change needs every member once.
    let pace = Pace { every_ms: 200..1_000, restart_a_crashed_node: true };
    let chaos = tokio::spawn(nemesis(sim.clone(), seed, stop.clone(), pace));
    sim.busy.store(true, Ordering::SeqCst);
    let changes = tokio::spawn(membership_nemesis(sim.clone(), seed, outcomes.clone()));
    let clients: Vec<_> = (0..MEMBERSHIP_CLIENTS)
        .map(|process| tokio::spawn(client(process, sim.clone(), seed, outcomes.clone())))
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    changes.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    chaos.await.unwrap();
    heal_and_settle(&sim, background, &outcomes).await;
    let taken = std::mem::take(&mut *outcomes.lock().unwrap());
    taken
}

/// Log lines stamped with the run's virtual time (tokio's paused clock).
struct VirtualTime;

impl tracing_subscriber::fmt::time::FormatTime for VirtualTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(tokio::time::Instant::now);
        write!(w, "{:>9.3}s", (tokio::time::Instant::now() - start).as_secs_f64())
    }
}

/// Clients of a membership run: more, over more keys, for longer.
const MEMBERSHIP_CLIENTS: u64 = 10;

fn run_membership_seed(seed: u64, bugs: &TestBugs) -> Outcomes {
    // SIM_TRACE=trace (an EnvFilter) prints what the nodes did, for one seed.
    if let Ok(filter) = std::env::var("SIM_TRACE") {
        let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_timer(VirtualTime).with_ansi(false);
        let _ = subscriber.with_writer(std::io::stderr).try_init();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime for the run");
    runtime.block_on(simulate_membership(seed, bugs.clone()))
}

/// One run, on a runtime of its own: nothing from another run (tasks,
/// timers, counters) can touch it.
fn run_seed(seed: u64, bugs: &TestBugs) -> Outcomes {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime for the run");
    runtime.block_on(simulate(seed, bugs.clone()))
}

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => (0..100).collect(),
    }
}

/// Aborts the test binary if a test runs too long: a loud failure rather
/// than a CI job that hangs when a seed livelocks.
fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "a simulation test ran for {limit:?}; rerun its seeds one by one with SIM_SEED to find the one that hangs"
        );
        std::process::abort();
    });
}

#[test]
fn strong_reads_stay_linearizable_under_drops_delays_crashes_and_skew() {
    self_check();
    watchdog(Duration::from_secs(600));
    let (mut ok, mut unknown, mut keys, mut undecided) = (0, 0, 0, 0);
    let mut late = LateCount::default();
    for seed in seeds() {
        eprintln!("simulation seed {seed}");
        let outcomes = run_seed(seed, &TestBugs::none());
        let problems = outcomes.problems(&mut undecided);
        assert!(problems.is_empty(), "seed {seed} (rerun with SIM_SEED={seed}): {problems:#?}");
        keys += outcomes.history.len();
        ok += outcomes.ok;
        unknown += outcomes.unknown;
        late.applied += outcomes.late.applied;
        late.refused += outcomes.late.refused;
    }
    // The faults must not make the test vacuous, nor the search budget.
    assert!(ok > unknown, "only {ok} operations succeeded against {unknown} unknown");
    assert!(undecided * 10 <= keys, "{undecided} of {keys} key histories were too hard for the small checker");
    if std::env::var("SIM_SEED").is_err() {
        assert!(late.applied > 0 && late.refused > 0, "late write requests must be both served and refused: {late:?}");
    }
    eprintln!("checked {ok} acknowledged and {unknown} unknown operations; late write requests: {late:?}");
}

/// Joins and leaves of members under load and faults (docs/MEMBERSHIP.md):
/// strong reads linearizable, no acknowledged write lost (the final reads
/// are in each key's history), and once settled one view everywhere, no
/// change half done, every key on N owners that agree.
#[test]
fn joins_and_leaves_keep_every_key_linearizable_and_on_n_owners() {
    self_check();
    watchdog(Duration::from_secs(900));
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => (0..MEMBERSHIP_SEEDS).collect(),
    };
    let (mut ok, mut unknown, mut undecided, mut keys) = (0, 0, 0, 0);
    let (mut completed, mut undone) = (0, 0);
    for seed in seeds {
        eprintln!("membership simulation seed {seed}");
        let outcomes = run_membership_seed(seed, &TestBugs::none());
        let problems = outcomes.problems(&mut undecided);
        assert!(
            problems.is_empty(),
            "seed {seed} (rerun with SIM_SEED={seed}): {problems:#?}\nmoves: {:#?}",
            outcomes.moves
        );
        for line in &outcomes.moves {
            eprintln!("  {line}");
        }
        completed += outcomes.moves.iter().filter(|line| line.contains(": Ok(())")).count();
        undone += outcomes.moves.iter().filter(|line| !line.contains(": Ok(())")).count();
        keys += outcomes.history.len();
        ok += outcomes.ok;
        unknown += outcomes.unknown;
    }
    assert!(completed > 0, "no join or leave completed: the test proves nothing");
    assert!(ok > unknown, "only {ok} operations succeeded against {unknown} unknown");
    assert!(undecided * 10 <= keys, "{undecided} of {keys} key histories were too hard for the small checker");
    eprintln!("{completed} moves completed, {undone} undone; {ok} acknowledged and {unknown} unknown operations");
}

/// Membership runs in `make test`.
const MEMBERSHIP_SEEDS: u64 = 10;

/// The small checker's shortcut (unknown puts nobody read are left out)
/// against its plain search, on many small random histories with both
/// verdicts well represented.
#[test]
fn pruning_keeps_every_verdict() {
    let mut rng = StdRng::seed_from_u64(99);
    let mut verdicts = [0usize; 2];
    for _ in 0..20_000 {
        let mut history = Vec::new();
        for value in 0..rng.random_range(1..9u64) {
            let invoke = rng.random_range(0..20);
            let complete = invoke + rng.random_range(1..6);
            let op = match rng.random_range(0..4) {
                0 | 1 => Op::Write(Some(value)),
                2 => Op::Write(None),
                _ => Op::Read(rng.random_bool(0.3).then(|| rng.random_range(0..8))),
            };
            let known = matches!(op, Op::Read(_)) || rng.random_bool(0.6);
            history.push(Entry { op, invoke, complete: known.then_some(complete) });
        }
        let plain = is_linearizable_exhaustive(&history);
        assert_eq!(is_linearizable(&history), plain, "verdicts differ on {history:?}");
        verdicts[usize::from(plain == Some(true))] += 1;
    }
    assert!(verdicts.iter().all(|&count| count > 2_000), "both verdicts must be tried: {verdicts:?}");
}

/// Determinism: one seed, run twice, gives the same history, the same
/// verdict inputs and the same final state of every replica.
#[test]
fn a_seed_replays_the_same_run() {
    for seed in [1, 4, 7] {
        let first = run_seed(seed, &TestBugs::none());
        let second = run_seed(seed, &TestBugs::none());
        assert!(first.ok > 20, "seed {seed}: a run that did little proves little");
        assert!(first == second, "seed {seed} ran differently twice:\n{first:?}\n---\n{second:?}");
    }
}

/// Seeds each planted bug is given to show itself in.
const BUG_SEEDS: std::ops::Range<u64> = 0..64;

/// The first seed under which the simulation finds `bug`, with what it
/// found; panics if none of [`BUG_SEEDS`] does.
fn assert_caught(bug: TestBug) {
    watchdog(Duration::from_secs(600));
    let bugs = TestBugs::of(&[bug]);
    for seed in BUG_SEEDS {
        let mut undecided = 0;
        let problems = run_seed(seed, &bugs).problems(&mut undecided);
        if let Some(first) = problems.first() {
            eprintln!("{} caught at seed {seed} ({} problems), first: {first:.400}", bug.name(), problems.len());
            return;
        }
    }
    panic!("the planted bug {} went unnoticed over seeds {BUG_SEEDS:?}", bug.name());
}

#[test]
fn planted_lww_is_caught() {
    assert_caught(TestBug::Lww);
}

#[test]
fn planted_no_write_back_is_caught() {
    assert_caught(TestBug::NoWriteBack);
}

#[test]
fn planted_strong_read_one_is_caught() {
    assert_caught(TestBug::StrongReadOne);
}

#[test]
fn planted_sloppy_quorum_is_caught() {
    assert_caught(TestBug::SloppyQuorum);
}

#[test]
fn planted_ignore_min_timestamp_is_caught() {
    assert_caught(TestBug::IgnoreMinTimestamp);
}

#[test]
fn planted_early_tombstone_gc_is_caught() {
    assert_caught(TestBug::EarlyTombstoneGc);
}

#[test]
fn planted_no_repair_is_caught() {
    assert_caught(TestBug::NoRepair);
}

/// Membership runs the planted `release-before-held` is given. Whether a
/// run catches it depends on its schedule, so the test stops at the first
/// that does. Counted over 0..24 on 2026-12-01: seeds 10, 13, 16 and 22
/// catch it; 8 of the 24 did before sampled read repairs began to wait
/// for a tick (`coordinator::REPAIR_TICK`), the first of them seed 2.
const MOVE_BUG_SEEDS: std::ops::Range<u64> = 0..24;

#[test]
fn planted_release_before_held_is_caught() {
    watchdog(Duration::from_secs(900));
    let bugs = TestBugs::of(&[TestBug::ReleaseBeforeHeld]);
    for seed in MOVE_BUG_SEEDS {
        let mut undecided = 0;
        let problems = run_membership_seed(seed, &bugs).problems(&mut undecided);
        if let Some(first) = problems.first() {
            eprintln!("release-before-held caught at seed {seed} ({} problems), first: {first:.400}", problems.len());
            return;
        }
    }
    panic!("the planted bug release-before-held went unnoticed over membership seeds {MOVE_BUG_SEEDS:?}");
}

/// Cassandra-style last-write-wins loses this write: the second put comes
/// through a node whose clock is 10 s behind, after an acknowledged put
/// through a node 10 s ahead. Here the second write learns the first
/// version and goes above it.
#[tokio::test(start_paused = true)]
async fn a_later_write_through_a_slow_clock_wins() {
    let sim = build_cluster(3, 7, 0.0, 1, &TestBugs::none());
    let nodes = &sim.nodes;
    nodes[0].replica.clock.set_offset_ms(10_000);
    nodes[1].replica.clock.set_offset_ms(-10_000);
    let first = nodes[0].coordinator.put("k", b"first".to_vec(), None).await.unwrap();
    let second = nodes[1].coordinator.put("k", b"second".to_vec(), None).await.unwrap();
    assert!(second > first, "{second:?} must order after {first:?}");
    for node in nodes {
        match node.coordinator.get_strong("k").await.unwrap() {
            ReadOutcome::Found { value, .. } => assert_eq!(value, b"second"),
            other => panic!("lost the later write: {other:?}"),
        }
    }
    let deleted = nodes[1].coordinator.delete("k").await.unwrap();
    assert!(deleted > second);
    assert!(matches!(nodes[2].coordinator.get_strong("k").await.unwrap(), ReadOutcome::NotFound { .. }));
}

/// A write that reached one replica only (its coordinator died) is seen by
/// a strong read; that read must write it back, so that a later strong read
/// through the other replicas cannot go back to the older value.
#[tokio::test(start_paused = true)]
async fn a_strong_read_writes_back_what_it_returns() {
    let sim = build_cluster(3, 11, 0.0, 1, &TestBugs::none());
    let (net, nodes) = (&sim.net, &sim.nodes);
    let coordinator = &nodes[0].coordinator;
    let v1 = coordinator.put("k", b"v1".to_vec(), None).await.unwrap();
    let owners = nodes[0].membership.load().placement(b"k").now;
    let (lonely, others) = (owners[0].clone(), [owners[1].clone(), owners[2].clone()]);
    let v2 = Record::value(Version::new(v1.timestamp_ms + 1, 1), b"v2".to_vec(), None);
    net.replicas[&lonely].write(b"k".to_vec(), v2, cluster::replica::UNFENCED).await.unwrap();

    net.state.lock().unwrap().crashed.insert(others[0].clone());
    let first = nodes.iter().find(|n| n.id == others[1]).unwrap().coordinator.get_strong("k").await.unwrap();
    assert_eq!(value_bytes(&first), b"v2");
    net.state.lock().unwrap().crashed = BTreeSet::from([lonely.clone()]);
    let second = nodes.iter().find(|n| n.id == others[0]).unwrap().coordinator.get_strong("k").await.unwrap();
    assert_eq!(value_bytes(&second), b"v2", "a strong read went back from v2 to an older value");
}

fn value_bytes(outcome: &ReadOutcome) -> &[u8] {
    match outcome {
        ReadOutcome::Found { value, .. } => value,
        other => panic!("expected a value, got {other:?}"),
    }
}
