//! Faults, injected and healed.
//!
//! A [`Fault`] is one concrete thing done to the cluster; [`FaultKind`]s
//! name the families a nemesis draws from; [`ClusterNemesis`] draws a fault
//! of its kinds at random, applies it through the [`Db`] (kills, pauses),
//! the nodes' packet filters (partitions, loss, delay) or their test hooks
//! (clock skew), and heals everything it did. Each injection and heal is an
//! [`Event`] the runner records in the history.

pub mod corruption;
pub mod describe;
pub mod grudge;
pub mod packet_filter;
pub mod schedule;

use crate::db::{wipe_data, Db, DbError};
use crate::node_api::{NodeApi, NodeApiError};
use grudge::Grudge;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NemesisError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Filter(#[from] packet_filter::FilterError),
    #[error(transparent)]
    NodeApi(#[from] NodeApiError),
    #[error("this machine cannot inject {fault}: {why}")]
    Unsupported { fault: &'static str, why: String },
    #[error("corrupting {node}'s files: {error}")]
    Corrupt { node: String, error: std::io::Error },
    #[error("membership change: {0}")]
    Membership(String),
}

/// The families of faults a nemesis can draw from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Any of the partition shapes in [`grudge`].
    Partition,
    /// `kill -9` of one node, a minority, or all, restarted on heal.
    Kill,
    /// SIGSTOP / freezer of one node or a minority, resumed on heal.
    Pause,
    /// A clock offset on one node (bump), or rapid back and forth (strobe).
    Clock,
    /// Random packet loss between nodes.
    Loss,
    /// Added latency on nodes' outgoing packets (needs netem).
    Delay,
    /// `kill -9` of every node at once, restarted on heal.
    KillAll,
    /// One node or a minority killed, and what their file systems had not
    /// made durable thrown away (needs the power-loss file system).
    PowerLoss,
    /// [`FaultKind::PowerLoss`] of every node at once (a data centre's
    /// power cut).
    PowerLossAll,
    /// One node killed and the tails of its log and data files cut or
    /// bit-flipped, restarted on heal (see [`corruption`]).
    Corrupt,
    /// A minority's disks made slow: every fsync takes 0.5 to 2 s longer,
    /// so their writes time out while their reads stay fast.
    SlowDisk,
    /// A membership change: a node added (it joins through the running
    /// members and takes its ranges) or one decommissioned (it hands its
    /// ranges over and stops), following the nemesis's plan. Not healed:
    /// the cluster keeps its new shape.
    Membership,
}

impl FaultKind {
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Partition,
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Clock,
        FaultKind::Loss,
        FaultKind::Delay,
        FaultKind::KillAll,
        FaultKind::PowerLoss,
        FaultKind::PowerLossAll,
        FaultKind::Corrupt,
        FaultKind::SlowDisk,
        FaultKind::Membership,
    ];

    /// The name in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Clock => "clock",
            FaultKind::Loss => "loss",
            FaultKind::Delay => "delay",
            FaultKind::KillAll => "kill-all",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::PowerLossAll => "power-loss-all",
            FaultKind::Corrupt => "corrupt",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::Membership => "membership",
        }
    }

    /// Whether the nodes' data folders must sit on the power-loss file
    /// system ([`crate::db::Disks::PowerLoss`]).
    pub fn needs_power_loss_disks(self) -> bool {
        matches!(self, FaultKind::PowerLoss | FaultKind::PowerLossAll | FaultKind::Corrupt | FaultKind::SlowDisk)
    }

    /// Whether it cuts or degrades the network (not on the local backend).
    pub fn needs_network(self) -> bool {
        matches!(self, FaultKind::Partition | FaultKind::Loss | FaultKind::Delay)
    }
}

/// One concrete fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    Partition {
        shape: &'static str,
        grudge: Grudge,
    },
    Kill {
        nodes: Vec<String>,
    },
    Pause {
        nodes: Vec<String>,
    },
    ClockBump {
        node: String,
        offset_ms: i64,
    },
    ClockStrobe {
        nodes: Vec<String>,
        offset_ms: i64,
        period_ms: u64,
    },
    Loss {
        nodes: Vec<String>,
        probability: f64,
    },
    Delay {
        nodes: Vec<String>,
        delay_ms: u64,
    },
    PowerLoss {
        nodes: Vec<String>,
    },
    Corrupt {
        node: String,
        mode: corruption::Mode,
        seed: u64,
    },
    SlowDisk {
        nodes: Vec<String>,
        delay_ms: u64,
    },
    /// A node added; its id is known once it started.
    Join,
    Leave {
        node: String,
    },
    /// `node` killed for good, removed by `by`, a new node added.
    Replace {
        node: String,
        by: String,
    },
}

impl Fault {
    /// The history's `f` for the start of this fault (`start-partition`, ...).
    pub fn start_f(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "start-partition",
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::ClockBump { .. } => "bump-clock",
            Fault::ClockStrobe { .. } => "strobe-clock",
            Fault::Loss { .. } => "start-loss",
            Fault::Delay { .. } => "start-delay",
            Fault::PowerLoss { .. } => "power-loss",
            Fault::Corrupt { .. } => "corrupt",
            Fault::SlowDisk { .. } => "slow-disk",
            Fault::Join => "join",
            Fault::Leave { .. } => "leave",
            Fault::Replace { .. } => "replace",
        }
    }

    /// The nodes this fault stops until it is healed.
    pub fn stopped_nodes(&self) -> Vec<String> {
        match self {
            Fault::Kill { nodes } | Fault::PowerLoss { nodes } => nodes.clone(),
            Fault::Corrupt { node, .. } => vec![node.clone()],
            _ => Vec::new(),
        }
    }
}

/// What the runner records: `f` and a JSON description.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub f: String,
    pub value: serde_json::Value,
}

/// Injects faults and heals them (Jepsen's nemesis).
pub trait Nemesis: Send {
    /// The families this nemesis draws from.
    fn kinds(&self) -> &[FaultKind];

    /// Prepares the nodes (e.g. packet filter chains); called once.
    fn setup<D: Db>(&mut self, db: &D) -> impl Future<Output = Result<(), NemesisError>> + Send;

    /// Draws one fault of its kinds and applies it.
    fn inject<D: Db>(&mut self, db: &D) -> impl Future<Output = Result<Event, NemesisError>> + Send;

    /// Undoes everything injected so far: heals partitions, restarts killed
    /// nodes, resumes paused ones, resets clocks. Safe to call at any time.
    fn heal<D: Db>(&mut self, db: &D) -> impl Future<Output = Result<Event, NemesisError>> + Send;
}

/// A partition shape: nodes and randomness in, grudge out.
type Shape = fn(&[String], &mut StdRng) -> Grudge;

/// One step of a membership plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MembershipStep {
    Add,
    Leave,
    /// A node killed for good, removed by another (`removenode`), and a
    /// new one added in its place.
    Replace,
}

/// Grows the cluster by two, shrinks it by one (3 -> 5 -> 4), replaces a
/// dead node, again and again.
pub const DEFAULT_MEMBERSHIP_PLAN: [MembershipStep; 4] =
    [MembershipStep::Add, MembershipStep::Add, MembershipStep::Leave, MembershipStep::Replace];

/// A cluster never shrinks below this (N).
const MIN_MEMBERS: usize = 3;

/// How long a join or a leave may take before the fault fails.
const MOVE_LIMIT: Duration = Duration::from_secs(90);

/// The nemesis of this harness: every fault kind, drawn with one seed.
pub struct ClusterNemesis {
    kinds: Vec<FaultKind>,
    rng: StdRng,
    /// Faults applied and not yet healed.
    active: Vec<Fault>,
    strobes: Vec<tokio::task::JoinHandle<()>>,
    /// The membership fault's steps, taken in turn, cyclically.
    plan: Vec<MembershipStep>,
    steps_taken: usize,
}

impl ClusterNemesis {
    pub fn new(kinds: Vec<FaultKind>, rng: StdRng) -> ClusterNemesis {
        assert!(!kinds.is_empty(), "a nemesis needs at least one kind of fault");
        let plan = DEFAULT_MEMBERSHIP_PLAN.to_vec();
        ClusterNemesis { kinds, rng, active: Vec::new(), strobes: Vec::new(), plan, steps_taken: 0 }
    }

    /// The membership fault's plan (never empty: an empty one is ignored).
    pub fn with_membership_plan(mut self, plan: Vec<MembershipStep>) -> ClusterNemesis {
        if !plan.is_empty() {
            self.plan = plan;
        }
        self
    }

    /// Draws a concrete fault of `kind` for `nodes`. Pure but for the rng
    /// and the membership plan's position.
    pub fn draw(&mut self, kind: FaultKind, nodes: &[String]) -> Fault {
        let rng = &mut self.rng;
        let minority = |rng: &mut StdRng| {
            let count = rng.random_range(1..=((nodes.len() - 1) / 2).max(1));
            nodes.choose_multiple(rng, count).cloned().collect::<Vec<_>>()
        };
        match kind {
            FaultKind::Partition => {
                let shapes: [(&'static str, Shape); 5] = [
                    ("isolate-one", grudge::isolate_one),
                    ("random-halves", grudge::random_halves),
                    ("majority-minority", grudge::majority_minority),
                    ("majorities-ring", grudge::majorities_ring),
                    ("bridge", grudge::bridge),
                ];
                let (shape, make) = shapes[rng.random_range(0..shapes.len())];
                Fault::Partition { shape, grudge: make(nodes, rng) }
            }
            FaultKind::Kill => {
                let nodes = match rng.random_range(0..3) {
                    0 => vec![nodes.choose(rng).expect("nodes").clone()],
                    1 => minority(rng),
                    _ => nodes.to_vec(),
                };
                Fault::Kill { nodes }
            }
            FaultKind::Pause => Fault::Pause { nodes: minority(rng) },
            FaultKind::Clock => {
                let offset_ms = rng.random_range(1_000..=60_000) * if rng.random_bool(0.5) { 1 } else { -1 };
                if rng.random_bool(0.5) {
                    Fault::ClockBump { node: nodes.choose(rng).expect("nodes").clone(), offset_ms }
                } else {
                    Fault::ClockStrobe { nodes: minority(rng), offset_ms, period_ms: rng.random_range(10..=200) }
                }
            }
            FaultKind::Loss => Fault::Loss { nodes: minority(rng), probability: rng.random_range(0.1..=0.5) },
            FaultKind::Delay => Fault::Delay { nodes: minority(rng), delay_ms: rng.random_range(20..=200) },
            FaultKind::KillAll => Fault::Kill { nodes: nodes.to_vec() },
            FaultKind::PowerLoss => {
                let nodes = match rng.random_bool(0.5) {
                    true => vec![nodes.choose(rng).expect("nodes").clone()],
                    false => minority(rng),
                };
                Fault::PowerLoss { nodes }
            }
            FaultKind::PowerLossAll => Fault::PowerLoss { nodes: nodes.to_vec() },
            FaultKind::Corrupt => {
                let mode = if rng.random_bool(0.5) { corruption::Mode::Truncate } else { corruption::Mode::Bitflip };
                Fault::Corrupt { node: nodes.choose(rng).expect("nodes").clone(), mode, seed: rng.random() }
            }
            FaultKind::SlowDisk => Fault::SlowDisk { nodes: minority(rng), delay_ms: rng.random_range(500..=2_000) },
            FaultKind::Membership => {
                let step = self.plan[self.steps_taken % self.plan.len()];
                self.steps_taken += 1;
                match step {
                    MembershipStep::Leave if nodes.len() > MIN_MEMBERS => {
                        Fault::Leave { node: nodes.choose(rng).expect("nodes").clone() }
                    }
                    MembershipStep::Replace if nodes.len() > MIN_MEMBERS => {
                        let pair: Vec<&String> = nodes.choose_multiple(rng, 2).collect();
                        Fault::Replace { node: pair[0].clone(), by: pair[1].clone() }
                    }
                    _ => Fault::Join,
                }
            }
        }
    }

    /// Applies `fault` to the cluster.
    pub async fn apply<D: Db>(&mut self, db: &D, fault: Fault) -> Result<Event, NemesisError> {
        // Record first: a fault that fails half-way is still healed.
        self.active.push(fault.clone());
        let mut value = serde_json::to_value(&fault).expect("faults serialize");
        match &fault {
            Fault::Partition { grudge, .. } => {
                for (node, cut) in grudge {
                    let ns = db.net_namespace(node).await?;
                    for peer in cut {
                        packet_filter::cut(&ns, &db.net_namespace(peer).await?.ip)?;
                    }
                }
            }
            Fault::Kill { nodes } => {
                for node in nodes {
                    db.kill(node).await?;
                }
            }
            Fault::Pause { nodes } => {
                for node in nodes {
                    db.pause(node).await?;
                }
            }
            Fault::ClockBump { node, offset_ms } => {
                hooks(db).set_clock_offset(&db.base_url(node)?, *offset_ms).await?;
            }
            Fault::ClockStrobe { nodes, offset_ms, period_ms } => {
                let urls: Vec<String> = nodes.iter().map(|n| db.base_url(n)).collect::<Result<_, _>>()?;
                self.strobes.push(tokio::spawn(strobe(hooks(db), urls, *offset_ms, *period_ms)));
            }
            Fault::Loss { nodes, probability } => {
                for node in nodes {
                    let ns = db.net_namespace(node).await?;
                    for peer in db.nodes().iter().filter(|peer| *peer != node) {
                        packet_filter::lose(&ns, &db.net_namespace(peer).await?.ip, *probability)?;
                    }
                }
            }
            Fault::Delay { nodes, delay_ms } => {
                for node in nodes {
                    let ns = db.net_namespace(node).await?;
                    packet_filter::delay(&ns, *delay_ms).map_err(|error| NemesisError::Unsupported {
                        fault: "delay",
                        why: format!("tc netem is not available in this kernel ({error})"),
                    })?;
                }
            }
            Fault::PowerLoss { nodes } => {
                // Every node down first: a power cut is one instant for all.
                for node in nodes {
                    db.kill(node).await?;
                }
                let mut lost = serde_json::Map::new();
                for node in nodes {
                    lost.insert(node.clone(), db.lose_unsynced(node).await?);
                }
                value["lost"] = serde_json::Value::Object(lost);
            }
            Fault::SlowDisk { nodes, delay_ms } => {
                for node in nodes {
                    db.set_fsync_delay(node, Duration::from_millis(*delay_ms))?;
                }
            }
            Fault::Join => {
                let node = db.add_node().await?;
                value["node"] = serde_json::Value::String(node.clone());
                if self.kinds.iter().any(|k| matches!(k, FaultKind::Partition | FaultKind::Loss)) {
                    packet_filter::install(&db.net_namespace(&node).await?)?;
                }
                value["move"] = wait_until_normal(db, &node).await?;
            }
            Fault::Leave { node } => {
                hooks(db).leave(&db.base_url(node)?).await?;
                db.retire_node(node, MOVE_LIMIT).await?;
            }
            Fault::Replace { node, by } => {
                db.kill(node).await?;
                db.retire_node(node, MOVE_LIMIT).await?;
                // Believed down by the remover before it is asked (it
                // refuses to remove a member that answers).
                tokio::time::sleep(Duration::from_secs(3)).await;
                let by_url = db.base_url(by)?;
                hooks(db).remove(&by_url, node).await?;
                value["removal"] = wait_until_left(db, &by_url, node).await?;
                let added = db.add_node().await?;
                if self.kinds.iter().any(|k| matches!(k, FaultKind::Partition | FaultKind::Loss)) {
                    packet_filter::install(&db.net_namespace(&added).await?)?;
                }
                value["added"] = serde_json::Value::String(added.clone());
                value["move"] = wait_until_normal(db, &added).await?;
            }
            Fault::Corrupt { node, mode, seed } => {
                db.kill(node).await?;
                let dir = db.data_dir(node)?;
                let mut rng = StdRng::seed_from_u64(*seed);
                let damage = corruption::corrupt_dir(&dir, *mode, &mut rng)
                    .map_err(|error| NemesisError::Corrupt { node: node.clone(), error })?;
                value["damage"] = serde_json::to_value(damage).expect("damage serializes");
            }
        }
        Ok(Event { f: fault.start_f().to_owned(), value })
    }
}

/// Waits until a node that joins serves as a normal member; returns its
/// move's progress as it finished (for the history).
async fn wait_until_normal<D: Db>(db: &D, node: &str) -> Result<serde_json::Value, NemesisError> {
    let api = hooks(db);
    let url = db.base_url(node)?;
    let started = std::time::Instant::now();
    loop {
        match api.membership(&url).await {
            Ok(view) if view.status.as_deref() == Some("normal") => {
                return Ok(serde_json::to_value(&view.r#move).expect("progress serializes"))
            }
            Ok(view) if view.r#move.phase == "failed" => {
                return Err(NemesisError::Membership(format!("{node} could not join: {:?}", view.r#move.last_error)))
            }
            _ if started.elapsed() > MOVE_LIMIT => {
                return Err(NemesisError::Membership(format!("{node} had not joined after {MOVE_LIMIT:?}")))
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Waits until the node at `url`, which drives the removal of `gone`, sees
/// it `left`; returns the removal's progress as it finished.
async fn wait_until_left<D: Db>(db: &D, url: &str, gone: &str) -> Result<serde_json::Value, NemesisError> {
    let api = hooks(db);
    let started = std::time::Instant::now();
    loop {
        match api.membership(url).await {
            Ok(view) if view.members.iter().any(|m| m.id == gone && m.status == "left") => {
                return Ok(serde_json::to_value(&view.r#move).expect("progress serializes"))
            }
            Ok(view) if view.r#move.phase == "failed" => {
                return Err(NemesisError::Membership(format!("{gone} could not be removed: {:?}", view.r#move)))
            }
            _ if started.elapsed() > MOVE_LIMIT => {
                return Err(NemesisError::Membership(format!("{gone} was not removed after {MOVE_LIMIT:?}")))
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The test hooks of `db`'s nodes, with the secret they ask for.
fn hooks<D: Db>(db: &D) -> NodeApi {
    NodeApi::with_secret(Duration::from_secs(3), db.cluster_secret().as_deref())
}

/// Flips the nodes' clocks between +offset and -offset every period.
async fn strobe(api: NodeApi, urls: Vec<String>, offset_ms: i64, period_ms: u64) {
    let mut sign = 1;
    loop {
        for url in &urls {
            let _ = api.set_clock_offset(url, sign * offset_ms).await;
        }
        sign = -sign;
        tokio::time::sleep(Duration::from_millis(period_ms)).await;
    }
}

impl Nemesis for ClusterNemesis {
    fn kinds(&self) -> &[FaultKind] {
        &self.kinds
    }

    async fn setup<D: Db>(&mut self, db: &D) -> Result<(), NemesisError> {
        let needs_filters = self.kinds.iter().any(|k| matches!(k, FaultKind::Partition | FaultKind::Loss));
        if needs_filters {
            for node in db.nodes() {
                packet_filter::install(&db.net_namespace(&node).await?)?;
            }
        }
        Ok(())
    }

    async fn inject<D: Db>(&mut self, db: &D) -> Result<Event, NemesisError> {
        let kind = *self.kinds.choose(&mut self.rng).expect("kinds is never empty");
        let fault = self.draw(kind, &db.nodes());
        self.apply(db, fault).await
    }

    async fn heal<D: Db>(&mut self, db: &D) -> Result<Event, NemesisError> {
        for strobe in self.strobes.drain(..) {
            strobe.abort();
        }
        let healed: Vec<Fault> = std::mem::take(&mut self.active);
        let mut first_error: Option<NemesisError> = None;
        let mut keep = |result: Result<(), NemesisError>| {
            if let Err(error) = result {
                tracing::error!(%error, "healing failed");
                first_error.get_or_insert(error);
            }
        };
        let touched = |pick: fn(&Fault) -> Vec<String>| -> BTreeSet<String> { healed.iter().flat_map(pick).collect() };
        for node in touched(|f| match f {
            Fault::Pause { nodes } => nodes.clone(),
            _ => vec![],
        }) {
            keep(db.resume(&node).await.map_err(Into::into));
        }
        // Disks first: a node restarted on a slow disk syncs its folder slowly.
        for node in touched(|f| match f {
            Fault::SlowDisk { nodes, .. } => nodes.clone(),
            _ => vec![],
        }) {
            keep(db.set_fsync_delay(&node, Duration::ZERO).map_err(Into::into));
        }
        let mut restarts = Vec::new();
        for node in touched(Fault::stopped_nodes) {
            match restart(db, &node).await {
                Ok(Some(refusal)) => restarts.push(refusal),
                Ok(None) => {}
                Err(error) => keep(Err(error)),
            }
        }
        let networked =
            healed.iter().any(|f| matches!(f, Fault::Partition { .. } | Fault::Loss { .. } | Fault::Delay { .. }));
        if networked {
            for node in db.nodes() {
                keep(heal_network(db, &node).await);
            }
        }
        if healed.iter().any(|f| matches!(f, Fault::ClockBump { .. } | Fault::ClockStrobe { .. })) {
            for node in db.nodes() {
                let reset =
                    async { hooks(db).set_clock_offset(&db.base_url(&node)?, 0).await.map(|_| ()).map_err(Into::into) };
                keep(reset.await);
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let healed: Vec<&'static str> = healed.iter().map(Fault::start_f).collect();
        let mut value = serde_json::json!({ "healed": healed });
        if !restarts.is_empty() {
            value["refused"] = serde_json::Value::Array(restarts);
        }
        Ok(Event { f: "heal".into(), value })
    }
}

/// Starts a stopped node again. A node that refuses to start (its disk is
/// damaged beyond what it accepts) is what an operator would then do to
/// it: its folder emptied, and started to repair from its peers before it
/// answers reads. Returns the refusal, for the history, if there was one.
async fn restart<D: Db>(db: &D, node: &str) -> Result<Option<serde_json::Value>, NemesisError> {
    match db.start(node).await {
        Ok(()) => Ok(None),
        Err(DbError::Refused { detail, .. }) => {
            tracing::warn!(%node, %detail, "node refused to start; wiping its folder, it recovers from its peers");
            wipe_data(&db.data_dir(node)?)?;
            db.start(node).await?;
            Ok(Some(serde_json::json!({ "node": node, "refusal": detail, "then": "wiped; recovered from peers" })))
        }
        Err(error) => Err(error.into()),
    }
}

async fn heal_network<D: Db>(db: &D, node: &str) -> Result<(), NemesisError> {
    let ns = db.net_namespace(node).await?;
    packet_filter::heal(&ns)?;
    packet_filter::clear_delay(&ns)?;
    Ok(())
}
