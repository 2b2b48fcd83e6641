//! The HTTP side of [`Transport`](crate::transport::Transport): pooled
//! connections, a timeout on every call, one retry when a connection cannot
//! be made (never once a request may have been received), and per-peer
//! batching of reads and writes.
//!
//! Internode calls use hyper's pooled client directly rather than reqwest:
//! reqwest's redirect layer parses the URL again on every request and
//! response, which showed in profiles of the put path, and none of its
//! conveniences apply to calls between our own nodes.
//!
//! Each peer has two lanes, one for reads and one for writes, each a
//! bounded queue with one worker. A worker takes every call waiting (up to
//! [`MAX_CALLS_PER_BATCH`]), sends them in one request, and hands each
//! caller its answer. Calls whose caller gave up (timed out) are dropped
//! before sending.
//!
//! Why one request in flight per lane: calls that arrive while a batch is
//! out wait for it and then leave together, so the batch grows with the
//! load instead of the number of requests (a second request in flight
//! halved the batches and cost more CPU than it saved in waiting). Why two
//! lanes: a write batch is answered only once durable on the peer, and
//! reads queued behind it would wait for that flush for nothing.

use super::codec::{self, Answer, Call};
use super::{BATCH_PATH, GOSSIP_PATH, HANDOFF_PATH, PING_PATH, SECRET_HEADER, SYNC_PATH, WRITE_BATCH_PATH};
use crate::membership::Member;
use crate::record::Record;
use crate::transport::{Gossip, HandoffReply, HandoffRequest, RpcError, SyncReply, SyncRequest};
use axum::body::Bytes;
use axum::http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const CONNECT_ATTEMPTS: usize = 2;
pub const MAX_CALLS_PER_BATCH: usize = 512;
/// A batch stops growing at this many bytes of keys and values, so that
/// it stays well under the receiver's body limit (256 MiB) whatever the
/// value sizes: 512 writes of 1 MiB would not fit in one batch.
pub const MAX_BATCH_BYTES: usize = 32 << 20;
/// Calls waiting in one lane; more fail at once (the peer is not keeping up).
const QUEUE_CAPACITY: usize = 8_192;

struct Pending {
    call: Call,
    reply: oneshot::Sender<Result<Answer, RpcError>>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One peer's address and how to post to it.
struct Link {
    peer: String,
    /// `host:port`.
    addr: String,
    /// `http://host:port`, to which the internal paths are appended.
    base_url: String,
    /// Parsed once, as it carries nearly every call.
    batch_uri: Uri,
    client: HttpClient,
    secret: HeaderValue,
    timeout: Duration,
    /// A peer's answer longer than this is an error, not a memory blow-up.
    max_response_bytes: usize,
}

/// A peer's two queues: see the module comment.
struct Lanes {
    reads: mpsc::Sender<Pending>,
    writes: mpsc::Sender<Pending>,
}

/// A peer's link and lanes.
struct Peer {
    link: Arc<Link>,
    lanes: Lanes,
}

pub struct HttpTransport {
    /// Bound on anti-entropy calls (`--sync-timeout-ms`).
    sync_timeout: Duration,
    /// Peers by id; grows as the membership view names new members.
    peers: RwLock<HashMap<String, Arc<Peer>>>,
    client: HttpClient,
    secret: HeaderValue,
    timeout: Duration,
    max_response_bytes: usize,
}

impl HttpTransport {
    /// Must be called inside a tokio runtime: it starts the link workers.
    /// `timeout` bounds each call, but anti-entropy's (`sync_timeout`);
    /// `max_response_bytes` bounds every answer read from a peer.
    pub fn new(
        peers: &[Member],
        secret: &str,
        (timeout, sync_timeout): (Duration, Duration),
        max_response_bytes: usize,
    ) -> HttpTransport {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // Both attempts fit in the call's timeout.
        connector.set_connect_timeout(Some(timeout / CONNECT_ATTEMPTS as u32));
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let secret =
            HeaderValue::from_str(secret).expect("the cluster secret is checked to be visible ASCII at startup");
        let transport = HttpTransport {
            sync_timeout,
            peers: RwLock::new(HashMap::new()),
            client,
            secret,
            timeout,
            max_response_bytes,
        };
        for member in peers {
            transport.learn(&member.id, &member.addr);
        }
        transport
    }

    /// Reaches `id` at `addr` from now on (a new member, or one that moved).
    /// Must be called inside a tokio runtime: it starts the link workers.
    pub fn learn(&self, id: &str, addr: &str) {
        if self.peers.read().expect("peers lock").get(id).is_some_and(|peer| peer.link.addr == addr) {
            return;
        }
        let base_url = format!("http://{addr}");
        let Ok(batch_uri) = format!("{base_url}{BATCH_PATH}").parse::<Uri>() else {
            tracing::warn!(%id, %addr, "a member's address is not a valid authority; not reachable");
            return;
        };
        let link = Arc::new(Link {
            peer: id.to_owned(),
            addr: addr.to_owned(),
            batch_uri,
            base_url,
            client: self.client.clone(),
            secret: self.secret.clone(),
            timeout: self.timeout,
            max_response_bytes: self.max_response_bytes,
        });
        let lanes = Lanes { reads: start_lane(&link), writes: start_lane(&link) };
        self.peers.write().expect("peers lock").insert(id.to_owned(), Arc::new(Peer { link, lanes }));
    }

    fn peer(&self, to: &str) -> Result<Arc<Peer>, RpcError> {
        let peers = self.peers.read().expect("peers lock");
        peers.get(to).cloned().ok_or_else(|| RpcError::Unreachable(to.into(), "not a known peer".into()))
    }

    fn link(&self, to: &str) -> Result<Arc<Link>, RpcError> {
        Ok(self.peer(to)?.link.clone())
    }

    async fn submit(&self, to: &str, call: Call) -> Result<Answer, RpcError> {
        let peer = self.peer(to)?;
        let queue = match call {
            Call::Read { .. } => &peer.lanes.reads,
            Call::Write { .. } | Call::WriteNewest { .. } => &peer.lanes.writes,
        };
        let (reply, answer) = oneshot::channel();
        queue
            .try_send(Pending { call, reply })
            .map_err(|_| RpcError::Unreachable(to.into(), "too many calls waiting for this peer".into()))?;
        answer.await.map_err(|_| RpcError::Unreachable(to.into(), "link closed".into()))?
    }

    pub async fn ping(&self, to: &str) -> Result<(), RpcError> {
        self.link(to)?.post(PING_PATH, Vec::new()).await.map(|_| ())
    }

    pub async fn read(&self, to: &str, key: &[u8], fence: u64) -> Result<Option<Record>, RpcError> {
        match self.submit(to, Call::Read { key: key.to_vec(), fence }).await? {
            Answer::Absent => Ok(None),
            Answer::Found(record) => Ok(Some(record)),
            Answer::Failed(message) => Err(RpcError::Remote(to.into(), message)),
            Answer::StaleView => Err(RpcError::StaleView(to.into())),
            Answer::Written | Answer::NotNewest => {
                Err(RpcError::Remote(to.into(), "answered a read as a write".into()))
            }
        }
    }

    pub async fn write(&self, to: &str, key: &[u8], record: &Record, fence: u64) -> Result<(), RpcError> {
        match self.submit(to, Call::Write { key: key.to_vec(), record: record.clone(), fence }).await? {
            Answer::Written => Ok(()),
            Answer::Failed(message) => Err(RpcError::Remote(to.into(), message)),
            Answer::StaleView => Err(RpcError::StaleView(to.into())),
            _ => Err(RpcError::Remote(to.into(), "answered a write as a read".into())),
        }
    }

    /// See [`crate::replica::Replica::write_newest`].
    pub async fn write_newest(&self, to: &str, key: &[u8], record: &Record, fence: u64) -> Result<bool, RpcError> {
        match self.submit(to, Call::WriteNewest { key: key.to_vec(), record: record.clone(), fence }).await? {
            Answer::Written => Ok(true),
            Answer::NotNewest => Ok(false),
            Answer::Failed(message) => Err(RpcError::Remote(to.into(), message)),
            Answer::StaleView => Err(RpcError::StaleView(to.into())),
            _ => Err(RpcError::Remote(to.into(), "answered a write as a read".into())),
        }
    }

    pub async fn gossip(&self, to: &str, message: Gossip) -> Result<Gossip, RpcError> {
        let link = self.link(to)?;
        let bytes = link.post(GOSSIP_PATH, codec::encode_gossip(&message)).await?.unwrap_or_default();
        codec::decode_gossip(&bytes).map_err(|e| RpcError::Remote(to.into(), e.to_string()))
    }

    /// One page of a member's push (its own writes bounded by the call's
    /// timeout each): bounded by the anti-entropy timeout.
    pub async fn handoff(&self, to: &str, request: HandoffRequest) -> Result<HandoffReply, RpcError> {
        let link = self.link(to)?;
        let uri = uri(&link.base_url, HANDOFF_PATH);
        let body = codec::encode_handoff_request(&request);
        let bytes = link.post_within(&uri, body, self.sync_timeout).await?.unwrap_or_default();
        codec::decode_handoff_reply(&bytes).map_err(|e| RpcError::Remote(to.into(), e.to_string()))
    }

    /// Records pushed by anti-entropy, up to an exchange's cap: bounded by
    /// the exchange's timeout.
    pub async fn write_batch(&self, to: &str, from: &str, entries: Vec<(Vec<u8>, Record)>) -> Result<(), RpcError> {
        let link = self.link(to)?;
        let uri = uri(&link.base_url, WRITE_BATCH_PATH);
        let body = codec::encode_write_batch(from, &entries);
        link.post_within(&uri, body, self.sync_timeout).await.map(|_| ())
    }

    pub async fn sync(&self, to: &str, request: SyncRequest) -> Result<SyncReply, RpcError> {
        let link = self.link(to)?;
        let uri = uri(&link.base_url, SYNC_PATH);
        let body = codec::encode_sync_request(&request);
        let bytes = link.post_within(&uri, body, self.sync_timeout).await?.unwrap_or_default();
        codec::decode_sync_reply(&bytes).map_err(|e| RpcError::Remote(to.into(), e.to_string()))
    }
}

impl Link {
    /// One POST to `path`; `Ok(None)` for 204.
    async fn post(&self, path: &str, body: Vec<u8>) -> Result<Option<Bytes>, RpcError> {
        self.post_to(&uri(&self.base_url, path), body).await
    }

    /// One POST to `uri` within the call timeout; `Ok(None)` for 204.
    async fn post_to(&self, uri: &Uri, body: Vec<u8>) -> Result<Option<Bytes>, RpcError> {
        self.post_within(uri, body, self.timeout).await
    }

    /// One POST to `uri` within `timeout`; `Ok(None)` for 204.
    async fn post_within(&self, uri: &Uri, body: Vec<u8>, timeout: Duration) -> Result<Option<Bytes>, RpcError> {
        match tokio::time::timeout(timeout, self.exchange(uri, Bytes::from(body))).await {
            Ok(answer) => answer,
            Err(_) => Err(RpcError::Timeout(self.peer.clone())),
        }
    }

    async fn exchange(&self, uri: &Uri, body: Bytes) -> Result<Option<Bytes>, RpcError> {
        let to = &self.peer;
        for attempt in 1..=CONNECT_ATTEMPTS {
            let request = Request::post(uri.clone())
                .header(SECRET_HEADER, self.secret.clone())
                .body(Full::new(body.clone()))
                .expect("a request from a valid URI and header builds");
            let response = match self.client.request(request).await {
                Ok(response) => response,
                Err(error) if error.is_connect() && attempt < CONNECT_ATTEMPTS => continue,
                Err(error) => return Err(RpcError::Unreachable(to.clone(), error_chain(&error))),
            };
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), self.max_response_bytes);
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                    let limit = self.max_response_bytes;
                    return Err(RpcError::Remote(to.clone(), format!("answered with over {limit} bytes")));
                }
                Err(error) => return Err(RpcError::Unreachable(to.clone(), error_chain(&*error))),
            };
            return match status.as_u16() {
                200 => Ok(Some(bytes)),
                204 => Ok(None),
                _ => Err(RpcError::Remote(to.clone(), format!("{status}: {}", String::from_utf8_lossy(&bytes)))),
            };
        }
        unreachable!("the last attempt always returns")
    }
}

fn uri(base_url: &str, path: &str) -> Uri {
    format!("{base_url}{path}").parse().expect("member addresses and internal paths make valid URIs")
}

/// An error and its causes on one line (hyper's outer errors say little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A lane's queue and its worker.
fn start_lane(link: &Arc<Link>) -> mpsc::Sender<Pending> {
    let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
    tokio::spawn(run_lane(link.clone(), receiver));
    sender
}

/// The bytes a call adds to a batch (keys and values; the rest is small).
fn call_bytes(call: &Call) -> usize {
    match call {
        Call::Read { key, .. } => key.len() + 16,
        Call::Write { key, record, .. } | Call::WriteNewest { key, record, .. } => {
            crate::record::entry_bytes(key, record) + 8
        }
    }
}

/// The worker of one lane: batch what waits, send, answer.
async fn run_lane(link: Arc<Link>, mut queue: mpsc::Receiver<Pending>) {
    // A call taken from the queue that did not fit the last batch.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match queue.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let mut bytes = call_bytes(&first.call);
        let mut batch = vec![first];
        while batch.len() < MAX_CALLS_PER_BATCH {
            let Ok(pending) = queue.try_recv() else { break };
            bytes += call_bytes(&pending.call);
            if bytes > MAX_BATCH_BYTES {
                carried = Some(pending);
                break;
            }
            batch.push(pending);
        }
        batch.retain(|pending| !pending.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let body = codec::encode_calls(batch.iter().map(|pending| &pending.call));
        let answers = link.post_to(&link.batch_uri, body).await.and_then(|bytes| {
            let answers = codec::decode_answers(&bytes.unwrap_or_default())
                .map_err(|error| RpcError::Remote(link.peer.clone(), error.to_string()))?;
            if answers.len() != batch.len() {
                return Err(RpcError::Remote(link.peer.clone(), "answered a batch with another count".into()));
            }
            Ok(answers)
        });
        match answers {
            Ok(answers) => {
                for (pending, answer) in batch.into_iter().zip(answers) {
                    let _ = pending.reply.send(Ok(answer));
                }
            }
            Err(error) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
