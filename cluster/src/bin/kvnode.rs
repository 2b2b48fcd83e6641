//! `kvnode`: one node of the reference cluster.
//!
//! Prints one readiness line on stdout once it serves
//! (`kvnode ready node_id=ID listen=ADDR`); logs go to stderr. SIGTERM or
//! SIGINT stops it cleanly: in-flight requests finish, the log is
//! checkpointed. It runs as PID 1 in containers, so it handles both itself.
//! `kvnode --list-test-bugs` prints the catalogue of known bugs (see
//! `cluster::test_bug`) as JSON lines and exits; `kvnode --print-openapi`
//! prints the API description (`cluster::server::openapi`) and exits.

use anyhow::Context;
use clap::Parser;
use cluster::clock::Clock;
use cluster::config::{Config, StorageKind};
use cluster::metrics::{Metrics, StoreLabel};
use cluster::node::Node;
use cluster::recovery;
use cluster::storage::{fsync, MemoryStorage, SledStorage, Storage, Store, SyncPolicy};
use cluster::test_bug::TestBug;
use std::io::Write;
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The node allocates for every request (hyper buffers, JSON, records);
/// mimalloc costs less per call than glibc's malloc under these loads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--list-test-bugs") {
        // For the harness's bug matrix: the catalogue, one JSON object a line.
        for bug in TestBug::ALL {
            println!("{}", serde_json::json!({ "name": bug.name(), "origin": bug.origin() }));
        }
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("--print-openapi") {
        print!("{}", cluster::server::openapi::json());
        return Ok(());
    }
    let config = Config::parse();
    if let Err(problem) = config.validate() {
        eprintln!("kvnode: invalid configuration: {problem}");
        std::process::exit(2);
    }
    init_logging(&config.log)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads);
    }
    runtime.enable_all().build()?.block_on(run(config))
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).with_context(|| format!("bad --log filter {filter:?}"))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(node_id = %config.node_id, listen = %config.listen, data_dir = %config.data_dir.display(),
        storage = ?config.storage, "starting");
    for bug in &config.test_bugs {
        tracing::warn!(
            bug = bug.name(),
            origin = bug.origin(),
            "A KNOWN BUG IS ON (--test-bug): this node breaks its guarantees on purpose, for tests"
        );
    }
    if config.test_hooks {
        tracing::warn!(
            "TEST HOOKS ARE ON (--test-hooks): /test/v1/* can skew this node's clock; never use in production"
        );
    }
    let clean = match config.storage {
        StorageKind::Sled => trusts_its_data(&config)?,
        StorageKind::Memory => !config.recover_from_peers,
    };
    // Before the stores: their writers record each group commit into it.
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(open_store(&config, StoreLabel::Data, 128 << 20, &metrics)?);
    // A log that had to be read past damage may have lost acknowledged
    // writes: the peers hold them (W >= 2), so ask them before any read.
    let clean = clean && store.log_damage().is_none();
    let hint_store = open_hint_store(&config, &metrics)?;
    if config.storage == StorageKind::Sled {
        // Every folder and file name the stores made is durable before the
        // first write is acknowledged.
        fsync::sync_tree(&config.data_dir)
            .with_context(|| format!("cannot sync the data folder {}", config.data_dir.display()))?;
        // The stores exist now: an unclean stop from here on is recognised
        // without the operator's marker.
        remove_recover_marker(&config.data_dir)?;
    }
    let clock = Arc::new(Clock::new());
    let node = Node::new(config.clone(), clock, store, hint_store, clean, metrics)
        .map_err(|problem| anyhow::anyhow!(problem))?;
    let node = Arc::new(node);
    let background = node.spawn_background();

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    let limits = config.connection_limits();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    // Before anything is served: see `shutdown_signals`.
    let signals = shutdown_signals()?;
    let mut listeners = tokio::task::JoinSet::new();
    let client_routes = match config.internal_listen {
        None => cluster::server::router(node.clone()),
        Some(internal) => {
            let internal_listener = tokio::net::TcpListener::bind(internal)
                .await
                .with_context(|| format!("cannot listen on {internal} (--internal-listen)"))?;
            tracing::info!(internal_listen = %internal_listener.local_addr()?, "serving the replica protocol");
            let routes = cluster::server::internal_router(node.clone());
            listeners.spawn(cluster::listener::serve(internal_listener, routes, limits, stopping(stopped.clone())));
            cluster::server::client_router(node.clone())
        }
    };
    listeners.spawn(cluster::listener::serve(listener, client_routes, limits, stopping(stopped)));
    tracing::info!(listen = %local, "serving");
    println!("kvnode ready node_id={} listen={local}", config.node_id);
    std::io::stdout().flush()?;
    // Joining needs the listeners up: members push this node its ranges.
    let join = node.start_join();

    tokio::select! {
        () = shutdown_signal(signals) => {}
        () = node.has_left() => tracing::info!("this node left the cluster: stopping"),
    }
    if let Some(join) = join {
        join.abort();
    }
    let _ = stop.send(true);
    while let Some(served) = listeners.join_next().await {
        served??;
    }
    tracing::info!("shutting down: checkpointing the store");
    for task in background {
        task.abort();
    }
    let data_dir = config.data_dir.clone();
    let checkpointed = tokio::task::spawn_blocking(move || node.shutdown()).await?;
    if checkpointed {
        recovery::leave_clean_marker(&data_dir).context("cannot leave the clean-shutdown marker")?;
        tracing::info!("stopped cleanly");
    } else if config.storage == StorageKind::Sled {
        tracing::error!("stopped without a clean checkpoint: the next start recovers from the peers");
    }
    Ok(())
}

/// Whether this node can trust what its folder holds (see
/// `cluster::recovery`): after a clean stop, or as a new node (no store
/// yet) unless told its data was lost. The marker is removed either way, so
/// a crash from now on is seen as one.
fn trusts_its_data(config: &Config) -> anyhow::Result<bool> {
    let dir = &config.data_dir;
    let new_node = !dir.join("data").exists();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data folder {}", dir.display()))?;
    let clean = recovery::take_clean_marker(dir).context("cannot read the clean-shutdown marker")?;
    if config.recover_from_peers || dir.join(recovery::RECOVER_MARKER).exists() {
        tracing::warn!("told that this node's data was lost: repairing from the peers before answering reads");
        return Ok(false);
    }
    if !clean && !new_node {
        tracing::warn!(data_dir = %dir.display(), "the last stop was not clean (a crash, a kill, a power loss, or a \
            damaged folder): recovering from the peers before answering reads");
    }
    Ok(clean || new_node)
}

fn remove_recover_marker(dir: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::remove_file(dir.join(recovery::RECOVER_MARKER)) {
        Ok(()) => Ok(fsync::sync_dir(dir)?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(anyhow::Error::new(error).context("cannot remove the recover-from-peers marker")),
    }
}

/// The store named after `which` under the data folder: `DATA/NAME/sled`
/// and `DATA/NAME/wal` (records under "data", hints under "hints").
fn open_store(config: &Config, which: StoreLabel, cache_bytes: u64, metrics: &Metrics) -> anyhow::Result<Store> {
    // Folder names are the disk's format: spelled here, not taken from the label.
    let name = match which {
        StoreLabel::Data => "data",
        StoreLabel::Hints => "hints",
    };
    let storage: Arc<dyn Storage> = match config.storage {
        StorageKind::Sled => {
            let dir = config.data_dir.join(name).join("sled");
            let sled = SledStorage::open(&dir, cache_bytes);
            Arc::new(sled.with_context(|| format!("cannot open sled at {}", dir.display()))?)
        }
        StorageKind::Memory => return Ok(Store::volatile(Arc::new(MemoryStorage::new()))?),
    };
    let wal_dir = config.data_dir.join(name).join("wal");
    let policy = match config.bugs().has(TestBug::AckBeforeFsync) {
        true => SyncPolicy::Periodic(ACK_BEFORE_FSYNC_PERIOD),
        false => SyncPolicy::EveryBatch,
    };
    Store::open_with(storage, &wal_dir, policy, metrics.wal(which))
        .with_context(|| format!("cannot open the write-ahead log in {}", wal_dir.display()))
}

/// Cassandra's default `commitlog_sync_period_in_ms`.
const ACK_BEFORE_FSYNC_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// The hints store; a damaged one is set aside (renamed) and replaced by
/// an empty one: hints only speed up convergence, anti-entropy does the rest.
fn open_hint_store(config: &Config, metrics: &Metrics) -> anyhow::Result<Store> {
    match open_store(config, StoreLabel::Hints, 16 << 20, metrics) {
        Ok(store) => Ok(store),
        Err(error) if config.storage == StorageKind::Sled => {
            let hints = config.data_dir.join("hints");
            let aside = config.data_dir.join(format!("hints.damaged-{}", std::process::id()));
            tracing::error!(error = format!("{error:#}"), aside = %aside.display(),
                "the hints store cannot be opened; setting it aside and starting with no hints");
            std::fs::rename(&hints, &aside).with_context(|| format!("cannot set {} aside", hints.display()))?;
            open_store(config, StoreLabel::Hints, 16 << 20, metrics)
        }
        Err(error) => Err(error),
    }
}

/// SIGTERM and SIGINT, caught from creation on.
struct ShutdownSignals {
    terminate: Signal,
    interrupt: Signal,
}

/// Installed before the listeners start: a signal sent as soon as the
/// node answers (a quick client) must stop it cleanly, not kill it by the
/// default action before the main task first waits.
fn shutdown_signals() -> anyhow::Result<ShutdownSignals> {
    let terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(ShutdownSignals { terminate, interrupt })
}

async fn shutdown_signal(ShutdownSignals { mut terminate, mut interrupt }: ShutdownSignals) {
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}
