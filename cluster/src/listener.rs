//! The accept loop: how many connections a node holds, and for how long.
//!
//! axum's own `serve` accepts every connection and waits on each forever,
//! so a client that opens sockets and sends nothing (or half a request)
//! holds them until the node runs out of file descriptors. Here:
//!
//! - at most `max_connections` connections are open at once; beyond that
//!   the loop stops accepting, and new connections wait in the kernel's
//!   backlog (they are served as others close, or time out on their side);
//! - a request's head must arrive within `header_read_timeout` of the
//!   connection being ready for it, which also closes keep-alive
//!   connections idle for that long (hyper starts the timer whenever it
//!   waits for a head);
//! - bodies are read within a timeout by the handlers (`server`), which
//!   know the route and its size limit.
//!
//! On shutdown the loop stops accepting, asks every connection to finish
//! its request in flight and close, and waits at most [`SHUTDOWN_GRACE`].

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// How long requests in flight get to finish once shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A failed accept (out of file descriptors, say) is retried after this,
/// rather than in a hot loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The bounds of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// resolves, then lets requests in flight finish (see the module comment).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    assert!(limits.max_connections > 0, "Config::validate refuses a zero connection cap");
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        connections.spawn(serve_connection(stream, router.clone(), limits, closing_seen.clone(), slot));
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::warn!(left = connections.len(), "connections still open after the shutdown grace; closing them");
        connections.abort_all();
    }
    Ok(())
}

/// One connection, holding its `slot` until it closes.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut closing: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    // Without TCP_NODELAY a response can wait for a delayed ACK.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        () = async { drop(closing.wait_for(|closing| *closing).await) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = outcome {
        // Timeouts, resets and malformed requests end up here: the
        // client's problem, not the node's.
        tracing::debug!(%error, "connection ended with an error");
    }
    drop(slot);
}
