//! The test-hook calls the harness makes to a node (`/test/v1/*`), typed
//! with the cluster's own wire types.

use kvapi::wire::{ClockState, HealthResponse, MembershipResponse, ProbeRequest, ProbeResponse, SetClock};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NodeApiError {
    #[error("{url}: {error}")]
    Http { url: String, error: String },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
}

/// A small client for one node's test hooks, with a timeout on every call.
#[derive(Clone)]
pub struct NodeApi {
    client: reqwest::Client,
}

impl Default for NodeApi {
    fn default() -> NodeApi {
        NodeApi::new(Duration::from_secs(3))
    }
}

/// An HTTP client that sends the cluster secret with every call (test
/// hooks answer only callers that have it), each call bounded by `timeout`.
pub fn hook_client(timeout: Duration, secret: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = secret.and_then(|s| reqwest::header::HeaderValue::from_str(s).ok()) {
        headers.insert(kvapi::SECRET_HEADER, value);
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()
        .expect("an HTTP client without TLS builds")
}

impl NodeApi {
    /// Without the secret: only `/health` answers.
    pub fn new(timeout: Duration) -> NodeApi {
        NodeApi::with_secret(timeout, None)
    }

    /// Test hooks answer only with the cluster's secret ([`crate::db::Db::cluster_secret`]).
    pub fn with_secret(timeout: Duration, secret: Option<&str>) -> NodeApi {
        NodeApi { client: hook_client(timeout, secret) }
    }

    async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        body: &B,
    ) -> Result<T, NodeApiError> {
        let http = |error: reqwest::Error| NodeApiError::Http { url: url.clone(), error: error.to_string() };
        let response = self.client.post(&url).json(body).send().await.map_err(http)?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            return Err(NodeApiError::Status { url, status, body });
        }
        response.json().await.map_err(http)
    }

    pub async fn set_clock_offset(&self, base_url: &str, offset_ms: i64) -> Result<ClockState, NodeApiError> {
        self.post(format!("{base_url}/test/v1/clock"), &SetClock { offset_ms }).await
    }

    pub async fn clock(&self, base_url: &str) -> Result<ClockState, NodeApiError> {
        let url = format!("{base_url}/test/v1/clock");
        let http = |error: reqwest::Error| NodeApiError::Http { url: url.clone(), error: error.to_string() };
        self.client.get(&url).send().await.map_err(http)?.json().await.map_err(http)
    }

    /// Whether the node at `base_url` reaches `peer` through its own
    /// internal RPC, right now.
    pub async fn probe(&self, base_url: &str, peer: &str) -> Result<ProbeResponse, NodeApiError> {
        self.post(format!("{base_url}/test/v1/probe"), &ProbeRequest { peer: peer.to_owned() }).await
    }

    /// The node's view of the membership and its own move's progress
    /// (kvnode's admin API, `GET /admin/v1/membership`).
    pub async fn membership(&self, base_url: &str) -> Result<MembershipResponse, NodeApiError> {
        let url = format!("{base_url}/admin/v1/membership");
        let http = |error: reqwest::Error| NodeApiError::Http { url: url.clone(), error: error.to_string() };
        let response = self.client.get(&url).send().await.map_err(http)?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            return Err(NodeApiError::Status { url, status, body });
        }
        response.json().await.map_err(http)
    }

    /// Asks the node to leave the cluster (`POST /admin/v1/leave`): it
    /// hands its ranges over and stops by itself.
    pub async fn leave(&self, base_url: &str) -> Result<(), NodeApiError> {
        self.post_accepted(format!("{base_url}/admin/v1/leave")).await
    }

    /// Asks the node to remove `gone`, a member lost for good
    /// (`POST /admin/v1/remove?node=ID`): it drives the handoff for it.
    pub async fn remove(&self, base_url: &str, gone: &str) -> Result<(), NodeApiError> {
        self.post_accepted(format!("{base_url}/admin/v1/remove?node={gone}")).await
    }

    /// A body-less POST that starts something on the node: 202, or an error.
    async fn post_accepted(&self, url: String) -> Result<(), NodeApiError> {
        let http = |error: reqwest::Error| NodeApiError::Http { url: url.clone(), error: error.to_string() };
        let response = self.client.post(&url).send().await.map_err(http)?;
        let status = response.status().as_u16();
        if status != 202 {
            let body = response.text().await.unwrap_or_default();
            return Err(NodeApiError::Status { url, status, body });
        }
        Ok(())
    }

    /// Whether `GET /health` answers 200 in time.
    pub async fn healthy(&self, base_url: &str) -> bool {
        let response = self.client.get(format!("{base_url}/health")).send().await;
        response.is_ok_and(|r| r.status().is_success())
    }

    /// Whether the node is still repairing from its peers after an unclean
    /// stop (`/health` names them in `recovering_from`); until it is done
    /// it refuses reads, so a quorum of such nodes answers 503.
    pub async fn recovering(&self, base_url: &str) -> Result<bool, NodeApiError> {
        let url = format!("{base_url}/health");
        let http = |error: reqwest::Error| NodeApiError::Http { url: url.clone(), error: error.to_string() };
        let health: HealthResponse = self.client.get(&url).send().await.map_err(http)?.json().await.map_err(http)?;
        Ok(!health.recovering_from.is_empty())
    }
}
