//! The HTTP side of [`Transport`](crate::coordinator::Transport): pooled
//! connections, a timeout on every call, one retry when a connection cannot
//! be made (never once a request may have been received), and per-peer
//! batching of reads and writes.
//!
//! Each peer has a bounded queue and [`PIPELINE`] workers. A worker takes
//! every call waiting (up to [`MAX_CALLS_PER_BATCH`]), sends them in one
//! request, and hands each caller its answer. Calls whose caller gave up
//! (timed out) are dropped before sending.

use super::codec::{self, Answer, Call};
use super::{BATCH_PATH, PING_PATH, SECRET_HEADER, SYNC_PATH, WRITE_BATCH_PATH};
use crate::antientropy::{SyncReply, SyncRequest};
use crate::coordinator::RpcError;
use crate::membership::Member;
use crate::record::Record;
use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};

const CONNECT_ATTEMPTS: usize = 2;
/// Batched requests in flight to one peer at once.
const PIPELINE: usize = 2;
const MAX_CALLS_PER_BATCH: usize = 512;
/// Calls waiting for one peer; more fail at once (the peer is not keeping up).
const QUEUE_CAPACITY: usize = 8_192;

struct Pending {
    call: Call,
    reply: oneshot::Sender<Result<Answer, RpcError>>,
}

/// One peer's address and how to post to it.
struct Link {
    peer: String,
    base_url: String,
    client: reqwest::Client,
    secret: String,
}

pub struct HttpTransport {
    links: HashMap<String, Arc<Link>>,
    queues: HashMap<String, mpsc::Sender<Pending>>,
}

impl HttpTransport {
    /// Must be called inside a tokio runtime: it starts the link workers.
    pub fn new(peers: &[Member], secret: &str, timeout: Duration) -> HttpTransport {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_millis(500)))
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .expect("an HTTP client without TLS always builds");
        let mut links = HashMap::new();
        let mut queues = HashMap::new();
        for member in peers {
            let link = Arc::new(Link {
                peer: member.id.clone(),
                base_url: format!("http://{}", member.addr),
                client: client.clone(),
                secret: secret.to_owned(),
            });
            let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
            let receiver = Arc::new(Mutex::new(receiver));
            for _ in 0..PIPELINE {
                tokio::spawn(run_link(link.clone(), receiver.clone()));
            }
            links.insert(member.id.clone(), link);
            queues.insert(member.id.clone(), sender);
        }
        HttpTransport { links, queues }
    }

    fn link(&self, to: &str) -> Result<&Arc<Link>, RpcError> {
        self.links.get(to).ok_or_else(|| RpcError::Unreachable(to.into(), "not a known peer".into()))
    }

    async fn submit(&self, to: &str, call: Call) -> Result<Answer, RpcError> {
        let queue = self.queues.get(to).ok_or_else(|| RpcError::Unreachable(to.into(), "not a known peer".into()))?;
        let (reply, answer) = oneshot::channel();
        queue
            .try_send(Pending { call, reply })
            .map_err(|_| RpcError::Unreachable(to.into(), "too many calls waiting for this peer".into()))?;
        answer.await.map_err(|_| RpcError::Unreachable(to.into(), "link closed".into()))?
    }

    pub async fn ping(&self, to: &str) -> Result<(), RpcError> {
        self.link(to)?.post(PING_PATH, Vec::new()).await.map(|_| ())
    }

    pub async fn read(&self, to: &str, key: &[u8]) -> Result<Option<Record>, RpcError> {
        match self.submit(to, Call::Read { key: key.to_vec() }).await? {
            Answer::Absent => Ok(None),
            Answer::Found(record) => Ok(Some(record)),
            Answer::Failed(message) => Err(RpcError::Remote(to.into(), message)),
            Answer::Written => Err(RpcError::Remote(to.into(), "answered a read as a write".into())),
        }
    }

    pub async fn write(&self, to: &str, key: &[u8], record: &Record) -> Result<(), RpcError> {
        match self.submit(to, Call::Write { key: key.to_vec(), record: record.clone() }).await? {
            Answer::Written => Ok(()),
            Answer::Failed(message) => Err(RpcError::Remote(to.into(), message)),
            _ => Err(RpcError::Remote(to.into(), "answered a write as a read".into())),
        }
    }

    pub async fn write_batch(&self, to: &str, entries: Vec<(Vec<u8>, Record)>) -> Result<(), RpcError> {
        self.link(to)?.post(WRITE_BATCH_PATH, codec::encode_entries(&entries)).await.map(|_| ())
    }

    pub async fn sync(&self, to: &str, request: SyncRequest) -> Result<SyncReply, RpcError> {
        let bytes = self.link(to)?.post(SYNC_PATH, codec::encode_sync_request(&request)).await?.unwrap_or_default();
        codec::decode_sync_reply(&bytes).map_err(|e| RpcError::Remote(to.into(), e.to_string()))
    }
}

impl Link {
    /// One POST; `Ok(None)` for 204.
    async fn post(&self, path: &str, body: Vec<u8>) -> Result<Option<Bytes>, RpcError> {
        let to = &self.peer;
        let url = format!("{}{path}", self.base_url);
        for attempt in 1..=CONNECT_ATTEMPTS {
            let sent = self.client.post(&url).header(SECRET_HEADER, &self.secret).body(body.clone()).send().await;
            let response = match sent {
                Ok(response) => response,
                Err(error) if error.is_connect() && attempt < CONNECT_ATTEMPTS => continue,
                Err(error) if error.is_timeout() => return Err(RpcError::Timeout(to.clone())),
                Err(error) => return Err(RpcError::Unreachable(to.clone(), error.to_string())),
            };
            let status = response.status();
            let bytes = response.bytes().await.map_err(|error| match error.is_timeout() {
                true => RpcError::Timeout(to.clone()),
                false => RpcError::Unreachable(to.clone(), error.to_string()),
            })?;
            return match status.as_u16() {
                200 => Ok(Some(bytes)),
                204 => Ok(None),
                _ => Err(RpcError::Remote(to.clone(), format!("{status}: {}", String::from_utf8_lossy(&bytes)))),
            };
        }
        unreachable!("the last attempt always returns")
    }
}

/// A worker of one peer's link: batch what waits, send, answer.
async fn run_link(link: Arc<Link>, queue: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let mut batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_CALLS_PER_BATCH {
                match queue.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
            batch
        };
        batch.retain(|pending| !pending.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let body = codec::encode_calls(batch.iter().map(|pending| &pending.call));
        let answers = link.post(BATCH_PATH, body).await.and_then(|bytes| {
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
