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
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Err(problem) = config.validate() {
        eprintln!("kvnode: invalid configuration: {problem}");
        std::process::exit(2);
    }
    init_logging(&config.log)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(config))
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("bad --log filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(node_id = %config.node_id, listen = %config.listen, data_dir = %config.data_dir.display(),
        storage = ?config.storage, "starting");
    let store = Arc::new(open_store(&config)?);
    let clock = Arc::new(Clock::new());
    let node = Arc::new(Node::new(config.clone(), clock.clone(), store.clone()));
    let compaction = tokio::spawn(cluster::compaction::run(
        store.clone(),
        clock,
        Duration::from_secs(config.tombstone_grace_secs),
        Duration::from_secs(config.compaction_interval_secs),
    ));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "serving");
    println!("kvnode ready node_id={} listen={local}", config.node_id);
    std::io::stdout().flush()?;

    cluster::server::serve(listener, cluster::server::router(node), shutdown_signal()).await?;
    tracing::info!("shutting down: checkpointing the store");
    compaction.abort();
    tokio::task::spawn_blocking(move || store.shutdown()).await?;
    tracing::info!("stopped");
    Ok(())
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    let storage: Arc<dyn Storage> = match config.storage {
        StorageKind::Sled => {
            let dir = config.data_dir.join("sled");
            Arc::new(
                SledStorage::open(&dir)
                    .with_context(|| format!("cannot open sled at {}", dir.display()))?,
            )
        }
        StorageKind::Memory => return Ok(Store::volatile(Arc::new(MemoryStorage::new()))?),
    };
    let wal_dir = config.data_dir.join("wal");
    Store::open(storage, &wal_dir)
        .with_context(|| format!("cannot open the write-ahead log in {}", wal_dir.display()))
}

async fn shutdown_signal() {
    let mut terminate = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}
