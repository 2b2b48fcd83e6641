//! The node's metrics, served in the Prometheus text format at `GET /metrics`.
//!
//! Each node owns one [`Registry`], inside its [`Metrics`]: tests and
//! benches run several nodes in one process, and a global recorder would
//! add their counts together. The text is written by `prometheus-client`
//! (format 0.0.4), never by hand.
//!
//! Recording sits on the hot path, so it is an atomic add (counters), or a
//! short lock of one histogram; labels are small `Copy` enums, not strings,
//! so counting a request allocates nothing once its series exists. What
//! the node holds (store size, the failure detector's view, membership) is
//! not kept up to date as it changes: the node reads it when scraped and
//! hands it to [`Metrics::scrape`] as a [`Snapshot`].
//!
//! This module imports no other module of the crate: the modules that
//! record import it (the protocol modules only take a counter handle, see
//! `coordinator`), so it can never close a circle of modules.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;
use thiserror::Error;

/// A counter handle: cloning it shares the count. Modules that only count
/// (the coordinator's read repairs) take one of these, not [`Metrics`].
pub use prometheus_client::metrics::counter::Counter;

/// The `Content-Type` of [`Metrics::scrape`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// An enum whose variants are label values: `as_str` gives the value, and
/// it encodes as that (the derive of `prometheus-client` would write the
/// variant's Rust name; Prometheus labels are snake_case).
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$variant_doc:meta])* $variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        pub enum $name {
            $($(#[$variant_doc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value),+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_values!(
    /// What a request asked for, by the route it matched (and for the
    /// item path, its method).
    Route {
        ItemGet => "item_get",
        ItemPut => "item_put",
        ItemDelete => "item_delete",
        Health => "health",
        Metrics => "metrics",
        Openapi => "openapi",
        Admin => "admin",
        InternalBatch => "internal_batch",
        InternalWriteBatch => "internal_write_batch",
        InternalSync => "internal_sync",
        InternalPing => "internal_ping",
        InternalGossip => "internal_gossip",
        InternalHandoff => "internal_handoff",
        TestHook => "test_hook",
        /// No route matched (404), or the item path with another method (405).
        Other => "other",
    }
);

label_values!(
    /// A read's consistency; `None` for every other request, and for a
    /// read refused before its consistency was known (a bad query).
    ConsistencyLabel {
        Strong => "strong",
        Eventual => "eventual",
        None => "none",
    }
);

impl From<kvapi::Consistency> for ConsistencyLabel {
    fn from(consistency: kvapi::Consistency) -> ConsistencyLabel {
        match consistency {
            kvapi::Consistency::Strong => ConsistencyLabel::Strong,
            kvapi::Consistency::Eventual => ConsistencyLabel::Eventual,
        }
    }
}

label_values!(
    /// A client operation, for its latency.
    Op {
        Get => "get",
        Put => "put",
        Delete => "delete",
    }
);

label_values!(
    /// A coordinated operation, for its quorum outcome.
    QuorumOp {
        Put => "put",
        Delete => "delete",
        StrongGet => "get_strong",
        EventualGet => "get_eventual",
    }
);

label_values!(
    /// How a coordinated operation ended: answered, short of replicas that
    /// answered or refused (`Unavailable`), or short because a deadline
    /// passed first (the coordinator's phase or the request's own).
    QuorumOutcome {
        Ok => "ok",
        Unavailable => "unavailable",
        TimedOut => "timed_out",
    }
);

label_values!(
    /// Which of a node's two stores.
    StoreLabel {
        Data => "data",
        Hints => "hints",
    }
);

label_values!(
    /// How an anti-entropy exchange ended: `Partial` when the peer's reply
    /// was cut at the exchange's cap (another round moves the rest).
    ExchangeOutcome {
        Complete => "complete",
        Partial => "partial",
        Failed => "failed",
    }
);

label_values!(
    /// Which way anti-entropy moved a record: into this replica, or to the peer.
    Direction {
        Pulled => "pulled",
        Pushed => "pushed",
    }
);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Route,
    pub consistency: ConsistencyLabel,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: Op,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuorumLabels {
    op: QuorumOp,
    outcome: QuorumOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: StoreLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    outcome: ExchangeOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

/// Peer ids are only known at run time; this label is written at scrape
/// time only, so its `String` costs nothing on the hot path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// Client operations take from well under a millisecond (an eventual read
/// of the local replica) to the request timeout (5 s by default).
const REQUEST_SECONDS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// A log sync takes tens of microseconds on a device with a write cache
/// that honours flushes cheaply, to tens of milliseconds on a disk; a
/// second or more means the device is in trouble.
const FSYNC_SECONDS: [f64; 13] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_SECONDS)
}

fn fsync_histogram() -> Histogram {
    Histogram::new(FSYNC_SECONDS)
}

/// Records per group commit: 1 to 2,048 (the store's largest batch), in powers of 2.
fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;
type U64Gauge = Gauge<u64, AtomicU64>;

/// The handles a store's writer thread records its group commits with.
/// Cloned out of [`Metrics`] (see [`Metrics::wal`]) so that the thread
/// records without looking a series up.
#[derive(Clone, Debug)]
pub struct WalMetrics {
    /// Records per group commit (one log write and one sync).
    pub batch_records: Histogram,
    /// How long each sync of the log took.
    pub fsync_seconds: Histogram,
}

impl WalMetrics {
    /// Handles that no registry reads: for stores opened outside a node
    /// (tests, benches, tools).
    pub fn unregistered() -> WalMetrics {
        WalMetrics { batch_records: batch_histogram(), fsync_seconds: fsync_histogram() }
    }
}

/// What a store can tell of its size without reading its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreSize {
    pub store: StoreLabel,
    /// Records held, tombstones included.
    pub records: u64,
    /// Bytes its files take, where it has files.
    pub disk_bytes: Option<u64>,
}

/// What the node holds at the moment of a scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub stores: Vec<StoreSize>,
    /// Every other member, and whether the failure detector believes it up.
    pub peers: Vec<(String, bool)>,
    /// Members of the view (not those that left), this node included.
    pub members: u64,
}

/// One node's metrics: its registry and a typed handle for each family.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// The series of `kvnode_request_duration_seconds`, looked up once.
    get_seconds: Histogram,
    put_seconds: Histogram,
    delete_seconds: Histogram,
    quorum: Family<QuorumLabels, Counter>,
    /// Hints a coordinator's hint queue took.
    pub hints_queued: Counter,
    /// Hints it refused (full): anti-entropy repairs those keys instead.
    pub hints_refused: Counter,
    pub hints_delivered: Counter,
    /// Replicas brought up to date by a read repair (one count per replica written).
    pub read_repairs: Counter,
    pub learned_writes: Counter,
    pub anti_entropy_rounds: Counter,
    anti_entropy_exchanges: Family<ExchangeLabels, Counter>,
    anti_entropy_keys: Family<DirectionLabels, Counter>,
    wal_batch_records: HistogramFamily<StoreLabels>,
    wal_fsync_seconds: HistogramFamily<StoreLabels>,
    store_records: Family<StoreLabels, U64Gauge>,
    store_disk_bytes: Family<StoreLabels, U64Gauge>,
    peer_up: Family<PeerLabels, Gauge>,
    members: U64Gauge,
    /// Held while a scrape sets the gauges and encodes, so that two scrapes
    /// never interleave (one would see the other's cleared peer gauges).
    scraping: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kvnode");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route, read consistency and status code",
            requests.clone(),
        );
        let request_seconds = HistogramFamily::<OpLabels>::new_with_constructor(request_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time to answer a client operation, from its head to its answer (any status)",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let op_seconds = |op| request_seconds.get_or_create_owned(&OpLabels { op });
        let (get_seconds, put_seconds, delete_seconds) =
            (op_seconds(Op::Get), op_seconds(Op::Put), op_seconds(Op::Delete));
        let quorum = Family::<QuorumLabels, Counter>::default();
        registry.register("quorum_outcomes", "Coordinated operations by how their quorum ended", quorum.clone());
        // Every series exists from the start, at zero: a rate over a
        // series that appears with its first failure misses that failure.
        for &op in QuorumOp::ALL {
            for &outcome in QuorumOutcome::ALL {
                drop(quorum.get_or_create(&QuorumLabels { op, outcome }));
            }
        }
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let hints_queued = counter(&mut registry, "hints_queued", "Hints taken for owners that missed a write");
        let hints_refused =
            counter(&mut registry, "hints_refused", "Hints refused by a full hint queue (anti-entropy repairs them)");
        let hints_delivered = counter(&mut registry, "hints_delivered", "Hints delivered to their owners");
        let read_repairs =
            counter(&mut registry, "read_repairs", "Replicas written the newest version by a background read repair");
        let learned_writes = counter(
            &mut registry,
            "learned_writes",
            "Puts and deletes that needed a learn round: their clock's version was not the newest on W replicas",
        );
        let anti_entropy_rounds =
            counter(&mut registry, "anti_entropy_rounds", "Anti-entropy rounds (one exchange with each live peer)");
        let anti_entropy_exchanges = Family::<ExchangeLabels, Counter>::default();
        registry.register(
            "anti_entropy_exchanges",
            "Anti-entropy exchanges with a peer (rounds and recovery), by outcome",
            anti_entropy_exchanges.clone(),
        );
        for &outcome in ExchangeOutcome::ALL {
            drop(anti_entropy_exchanges.get_or_create(&ExchangeLabels { outcome }));
        }
        let anti_entropy_keys = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "anti_entropy_keys_repaired",
            "Records anti-entropy moved because a replica lacked them or held an older version",
            anti_entropy_keys.clone(),
        );
        for &direction in Direction::ALL {
            drop(anti_entropy_keys.get_or_create(&DirectionLabels { direction }));
        }
        let wal_batch_records = HistogramFamily::<StoreLabels>::new_with_constructor(batch_histogram);
        registry.register(
            "wal_batch_records",
            "Records per group commit of the write-ahead log (one write and one sync)",
            wal_batch_records.clone(),
        );
        let wal_fsync_seconds = HistogramFamily::<StoreLabels>::new_with_constructor(fsync_histogram);
        registry.register_with_unit(
            "wal_fsync_duration",
            "Time to sync the write-ahead log (sync_data) per group commit",
            Unit::Seconds,
            wal_fsync_seconds.clone(),
        );
        let store_records = Family::<StoreLabels, U64Gauge>::default();
        registry.register("store_records", "Records a store holds, tombstones included", store_records.clone());
        let store_disk_bytes = Family::<StoreLabels, U64Gauge>::default();
        registry.register_with_unit(
            "store_disk",
            "Bytes of a store's storage files (sled's), as the file system reports them",
            Unit::Bytes,
            store_disk_bytes.clone(),
        );
        let peer_up = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "peer_up",
            "Whether the failure detector believes a peer up (1) or down (0)",
            peer_up.clone(),
        );
        let members = U64Gauge::default();
        registry.register("membership_members", "Members in this node's view, itself included", members.clone());
        Metrics {
            registry,
            requests,
            get_seconds,
            put_seconds,
            delete_seconds,
            quorum,
            hints_queued,
            hints_refused,
            hints_delivered,
            read_repairs,
            learned_writes,
            anti_entropy_rounds,
            anti_entropy_exchanges,
            anti_entropy_keys,
            wal_batch_records,
            wal_fsync_seconds,
            store_records,
            store_disk_bytes,
            peer_up,
            members,
            scraping: Mutex::new(()),
        }
    }

    /// One answered request; a client operation's time too.
    pub fn request(&self, route: Route, consistency: ConsistencyLabel, status: u16, took: Duration) {
        self.requests.get_or_create(&RequestLabels { route, consistency, status }).inc();
        let histogram = match route {
            Route::ItemGet => &self.get_seconds,
            Route::ItemPut => &self.put_seconds,
            Route::ItemDelete => &self.delete_seconds,
            _ => return,
        };
        histogram.observe(took.as_secs_f64());
    }

    pub fn quorum(&self, op: QuorumOp, outcome: QuorumOutcome) {
        self.quorum.get_or_create(&QuorumLabels { op, outcome }).inc();
    }

    /// One anti-entropy exchange and the records it moved.
    pub fn exchange(&self, outcome: ExchangeOutcome, pulled: u64, pushed: u64) {
        self.anti_entropy_exchanges.get_or_create(&ExchangeLabels { outcome }).inc();
        self.anti_entropy_keys.get_or_create(&DirectionLabels { direction: Direction::Pulled }).inc_by(pulled);
        self.anti_entropy_keys.get_or_create(&DirectionLabels { direction: Direction::Pushed }).inc_by(pushed);
    }

    /// The handles `store`'s writer thread records with.
    pub fn wal(&self, store: StoreLabel) -> WalMetrics {
        let labels = StoreLabels { store };
        WalMetrics {
            batch_records: self.wal_batch_records.get_or_create_owned(&labels),
            fsync_seconds: self.wal_fsync_seconds.get_or_create_owned(&labels),
        }
    }

    /// Sets the gauges from `snapshot` and encodes every metric in the
    /// Prometheus text format.
    pub fn scrape(&self, snapshot: &Snapshot) -> Result<String, MetricsError> {
        // Nothing guarded can be left half-done by a panic: go on.
        let _scraping = self.scraping.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for size in &snapshot.stores {
            let labels = StoreLabels { store: size.store };
            self.store_records.get_or_create(&labels).set(size.records);
            match size.disk_bytes {
                Some(bytes) => {
                    self.store_disk_bytes.get_or_create(&labels).set(bytes);
                }
                None => {
                    self.store_disk_bytes.remove(&labels);
                }
            }
        }
        // A member that left must not stay "down" for ever: the family is
        // rebuilt from the current peers at each scrape.
        self.peer_up.clear();
        for (peer, up) in &snapshot.peers {
            self.peer_up.get_or_create(&PeerLabels { peer: peer.clone() }).set(i64::from(*up));
        }
        self.members.set(snapshot.members);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name{labels} value` of every sample line; panics on a line that is
    /// not a comment and not of that shape.
    fn samples(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line:?}"));
                (series.to_owned(), value)
            })
            .collect()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        samples(text).into_iter().find(|(name, _)| name == series).map(|(_, value)| value)
    }

    #[test]
    fn what_is_recorded_is_what_is_encoded() {
        let metrics = Metrics::new();
        let ms = Duration::from_millis;
        metrics.request(Route::ItemGet, ConsistencyLabel::Strong, 200, ms(3));
        metrics.request(Route::ItemGet, ConsistencyLabel::Strong, 200, ms(700));
        metrics.request(Route::ItemGet, ConsistencyLabel::None, 400, ms(0));
        metrics.request(Route::InternalBatch, ConsistencyLabel::None, 200, ms(1));
        metrics.quorum(QuorumOp::StrongGet, QuorumOutcome::TimedOut);
        metrics.hints_queued.inc();
        metrics.exchange(ExchangeOutcome::Complete, 3, 1);
        let wal = metrics.wal(StoreLabel::Data);
        wal.batch_records.observe(5.0);
        wal.fsync_seconds.observe(0.002);
        let data = StoreSize { store: StoreLabel::Data, records: 42, disk_bytes: Some(4096) };
        let snapshot =
            Snapshot { stores: vec![data], peers: vec![("n2".into(), true), ("n3".into(), false)], members: 3 };
        let text = metrics.scrape(&snapshot).expect("encodes");
        let at = |series: &str| value(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));

        assert_eq!(at(r#"kvnode_requests_total{route="item_get",consistency="strong",status="200"}"#), 2.0);
        assert_eq!(at(r#"kvnode_requests_total{route="item_get",consistency="none",status="400"}"#), 1.0);
        assert_eq!(at(r#"kvnode_requests_total{route="internal_batch",consistency="none",status="200"}"#), 1.0);
        // Three gets timed (whatever their status), no internal call.
        assert_eq!(at(r#"kvnode_request_duration_seconds_count{op="get"}"#), 3.0);
        assert_eq!(at(r#"kvnode_request_duration_seconds_bucket{op="get",le="0.005"}"#), 2.0);
        assert_eq!(at(r#"kvnode_request_duration_seconds_count{op="put"}"#), 0.0);
        assert_eq!(at(r#"kvnode_quorum_outcomes_total{op="get_strong",outcome="timed_out"}"#), 1.0);
        assert_eq!(at(r#"kvnode_quorum_outcomes_total{op="put",outcome="ok"}"#), 0.0, "exists at zero");
        assert_eq!(at("kvnode_hints_queued_total"), 1.0);
        assert_eq!(at(r#"kvnode_anti_entropy_exchanges_total{outcome="complete"}"#), 1.0);
        assert_eq!(at(r#"kvnode_anti_entropy_keys_repaired_total{direction="pulled"}"#), 3.0);
        assert_eq!(at(r#"kvnode_wal_batch_records_sum{store="data"}"#), 5.0);
        assert_eq!(at(r#"kvnode_wal_fsync_duration_seconds_count{store="data"}"#), 1.0);
        assert_eq!(at(r#"kvnode_store_records{store="data"}"#), 42.0);
        assert_eq!(at(r#"kvnode_store_disk_bytes{store="data"}"#), 4096.0);
        assert_eq!(at(r#"kvnode_peer_up{peer="n2"}"#), 1.0);
        assert_eq!(at(r#"kvnode_peer_up{peer="n3"}"#), 0.0);
        assert_eq!(at("kvnode_membership_members"), 3.0);
        assert!(text.contains("# TYPE kvnode_requests_total counter\n"), "{text}");
        assert!(!text.contains("_total_total"), "{text}");

        // n3 left the view: its gauge goes; a store without files has no disk size.
        let memory = StoreSize { store: StoreLabel::Data, records: 1, disk_bytes: None };
        let snapshot = Snapshot { stores: vec![memory], peers: vec![("n2".into(), false)], members: 2 };
        let text = metrics.scrape(&snapshot).expect("encodes");
        assert_eq!(value(&text, r#"kvnode_peer_up{peer="n2"}"#), Some(0.0));
        assert_eq!(value(&text, r#"kvnode_peer_up{peer="n3"}"#), None, "{text}");
        assert_eq!(value(&text, r#"kvnode_store_disk_bytes{store="data"}"#), None, "{text}");
    }

    /// Two nodes in one process count apart (no global recorder).
    #[test]
    fn each_node_has_its_own_registry() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.hints_delivered.inc_by(7);
        let text = b.scrape(&Snapshot::default()).expect("encodes");
        assert_eq!(value(&text, "kvnode_hints_delivered_total"), Some(0.0));
    }
}
