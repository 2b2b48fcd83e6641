//! `kvnode`: one node of the reference cluster.
//!
//! Prints one readiness line on stdout once it serves
//! (`kvnode ready node_id=ID listen=ADDR`); logs go to stderr. SIGTERM or
//! SIGINT stops it cleanly: in-flight requests finish, the log is
//! checkpointed. It runs as PID 1 in containers, so it handles both itself.

use anyhow::Context;
use clap::Parser;
use cluster::clock::Clock;
use cluster::config::{Config, StorageKind};
use cluster::node::Node;
use cluster::storage::{MemoryStorage, SledStorage, Storage, Store};
use std::io::Write;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// The node allocates for every request (hyper buffers, JSON, records);
/// mimalloc costs less per call than glibc's malloc under these loads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
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
    if let Some(bug) = config.test_bug {
        tracing::warn!(?bug, "A KNOWN BUG IS ON (--test-bug): this node breaks its guarantees on purpose, for tests");
    }
    if config.test_hooks {
        tracing::warn!(
            "TEST HOOKS ARE ON (--test-hooks): /test/v1/* can skew this node's clock; never use in production"
        );
    }
    let store = Arc::new(open_store(&config, "data", 128 << 20)?);
    let hint_store = open_store(&config, "hints", 16 << 20)?;
    let clock = Arc::new(Clock::new());
    let node = Node::new(config.clone(), clock, store, hint_store).map_err(|problem| anyhow::anyhow!(problem))?;
    let node = Arc::new(node);
    let background = node.spawn_background();

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "serving");
    println!("kvnode ready node_id={} listen={local}", config.node_id);
    std::io::stdout().flush()?;

    cluster::server::serve(listener, cluster::server::router(node.clone()), shutdown_signal()).await?;
    tracing::info!("shutting down: checkpointing the store");
    for task in background {
        task.abort();
    }
    tokio::task::spawn_blocking(move || node.shutdown()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The store named `name` under the data folder: `DATA/NAME/sled` and
/// `DATA/NAME/wal` (records under "data", hints under "hints").
fn open_store(config: &Config, name: &str, cache_bytes: u64) -> anyhow::Result<Store> {
    let storage: Arc<dyn Storage> = match config.storage {
        StorageKind::Sled => {
            let dir = config.data_dir.join(name).join("sled");
            let sled = SledStorage::open(&dir, cache_bytes);
            Arc::new(sled.with_context(|| format!("cannot open sled at {}", dir.display()))?)
        }
        StorageKind::Memory => return Ok(Store::volatile(Arc::new(MemoryStorage::new()))?),
    };
    let wal_dir = config.data_dir.join(name).join("wal");
    Store::open(storage, &wal_dir).with_context(|| format!("cannot open the write-ahead log in {}", wal_dir.display()))
}

async fn shutdown_signal() {
    let mut terminate = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}
