//! The HTTP side of [`Transport`]: pooled connections, a timeout on every
//! call, one retry when a connection cannot be made (never after a request
//! may have been received: a write must not be sent twice blindly, though
//! replicas would shrug it off).

use super::{codec, PING_PATH, READ_PATH, SECRET_HEADER, SYNC_PATH, WRITE_BATCH_PATH, WRITE_PATH};
use crate::antientropy::{SyncReply, SyncRequest};
use crate::coordinator::RpcError;
use crate::membership::Member;
use crate::record::Record;
use std::collections::HashMap;
use std::time::Duration;

const CONNECT_ATTEMPTS: usize = 2;

pub struct HttpTransport {
    client: reqwest::Client,
    addrs: HashMap<String, String>,
    secret: String,
}

impl HttpTransport {
    pub fn new(peers: &[Member], secret: &str, timeout: Duration) -> HttpTransport {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_millis(500)))
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .expect("an HTTP client without TLS always builds");
        let addrs = peers.iter().map(|m| (m.id.clone(), m.addr.clone())).collect();
        HttpTransport { client, addrs, secret: secret.to_owned() }
    }

    async fn call(&self, to: &str, path: &str, body: Vec<u8>) -> Result<Option<axum::body::Bytes>, RpcError> {
        let addr = self.addrs.get(to).ok_or_else(|| RpcError::Unreachable(to.into(), "not a known peer".into()))?;
        let url = format!("http://{addr}{path}");
        for attempt in 1..=CONNECT_ATTEMPTS {
            let sent = self.client.post(&url).header(SECRET_HEADER, &self.secret).body(body.clone()).send().await;
            let response = match sent {
                Ok(response) => response,
                Err(error) if error.is_connect() && attempt < CONNECT_ATTEMPTS => continue,
                Err(error) if error.is_timeout() => return Err(RpcError::Timeout(to.into())),
                Err(error) => return Err(RpcError::Unreachable(to.into(), error.to_string())),
            };
            let status = response.status();
            let bytes = response.bytes().await.map_err(|error| match error.is_timeout() {
                true => RpcError::Timeout(to.into()),
                false => RpcError::Unreachable(to.into(), error.to_string()),
            })?;
            return match status.as_u16() {
                200 => Ok(Some(bytes)),
                204 => Ok(None),
                _ => Err(RpcError::Remote(to.into(), format!("{status}: {}", String::from_utf8_lossy(&bytes)))),
            };
        }
        unreachable!("the last attempt always returns")
    }

    pub async fn ping(&self, to: &str) -> Result<(), RpcError> {
        self.call(to, PING_PATH, Vec::new()).await.map(|_| ())
    }

    pub async fn read(&self, to: &str, key: &[u8]) -> Result<Option<Record>, RpcError> {
        match self.call(to, READ_PATH, key.to_vec()).await? {
            None => Ok(None),
            Some(bytes) => Record::decode(&bytes).map(Some).map_err(|e| RpcError::Remote(to.into(), e.to_string())),
        }
    }

    pub async fn write(&self, to: &str, key: &[u8], record: &Record) -> Result<(), RpcError> {
        self.call(to, WRITE_PATH, codec::encode_write(key, record)).await.map(|_| ())
    }

    pub async fn write_batch(&self, to: &str, entries: Vec<(Vec<u8>, Record)>) -> Result<(), RpcError> {
        self.call(to, WRITE_BATCH_PATH, codec::encode_entries(&entries)).await.map(|_| ())
    }

    pub async fn sync(&self, to: &str, request: SyncRequest) -> Result<SyncReply, RpcError> {
        let bytes = self.call(to, SYNC_PATH, codec::encode_sync_request(&request)).await?.unwrap_or_default();
        codec::decode_sync_reply(&bytes).map_err(|e| RpcError::Remote(to.into(), e.to_string()))
    }
}
