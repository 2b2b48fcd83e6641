//! HTTP routes of a node: the client API of docs/SPEC.md section 1, `/health`
//! and `/metrics`.
//!
//! Handlers only translate: parse with [`crate::api::request`], call the
//! [`Node`], and render with [`crate::api::wire`]. Every request is bounded
//! in size, in time and in how many run at once; connections are bounded
//! by [`crate::listener`]. Every answer is counted (see [`observe`]).

use crate::api::request::{parse_delete, parse_get, parse_put};
use crate::api::wire::{DeleteResponse, GetResponse, HealthResponse, NotFoundResponse, KEY_NOT_FOUND};
use crate::api::{ApiError, Consistency, Limits};
use crate::coordinator::ReadOutcome;
use crate::handoff::HandoffError;
use crate::metrics::{ConsistencyLabel, Metrics, QuorumOp, QuorumOutcome, Route};
use crate::node::{Node, NodeError};
use crate::{rpc, test_hooks};
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, RawQuery, Request, State};
use axum::http::HeaderMap;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub mod openapi;

pub const ITEM_PATH: &str = "/api/v1/item";
pub const HEALTH_PATH: &str = "/health";
/// The node's metrics in the Prometheus text format (no secret needed, as
/// for `/health`).
pub const METRICS_PATH: &str = "/metrics";
/// This API's OpenAPI description ([`openapi`]), as checked in at
/// `docs/openapi.json`.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Admin routes: like the internal ones, only for callers with the secret.
pub const MEMBERSHIP_PATH: &str = "/admin/v1/membership";
pub const LEAVE_PATH: &str = "/admin/v1/leave";
/// `POST /admin/v1/remove?node=ID`: remove a member lost for good.
pub const REMOVE_PATH: &str = "/admin/v1/remove";

#[derive(Clone)]
pub(crate) struct AppState {
    node: Arc<Node>,
    limits: Limits,
    timeout: Duration,
    /// Bound on reading a request body (a client that sends half a body
    /// must not hold a permit and a connection for ever).
    body_timeout: Duration,
    /// Bound on answering an anti-entropy exchange.
    sync_timeout: Duration,
    inflight: Arc<Semaphore>,
    /// Internal calls have their own permits, so that a flood of client
    /// requests cannot starve the replica protocol, nor the reverse.
    internal_inflight: Arc<Semaphore>,
}

impl AppState {
    fn new(node: Arc<Node>) -> AppState {
        let config = &node.config;
        AppState {
            limits: config.limits(),
            timeout: config.request_timeout(),
            body_timeout: Duration::from_millis(config.body_read_timeout_ms),
            sync_timeout: Duration::from_millis(config.sync_timeout_ms),
            inflight: Arc::new(Semaphore::new(config.max_inflight_requests)),
            internal_inflight: Arc::new(Semaphore::new(config.max_internal_inflight)),
            node,
        }
    }
}

/// Every route of a node on one listener: the client API, `/health`, the
/// internal routes and (with `--test-hooks`) the test hooks.
pub fn router(node: Arc<Node>) -> Router {
    let state = AppState::new(node);
    finish(with_internal_routes(with_client_routes(Router::new(), &state)), state)
}

/// The client API, `/health` and the test hooks, without the internal
/// routes: for the client listener when `--internal-listen` gives the
/// replica protocol a listener of its own.
pub fn client_router(node: Arc<Node>) -> Router {
    let state = AppState::new(node);
    finish(with_client_routes(Router::new(), &state), state)
}

/// The internal routes alone, for `--internal-listen`.
pub fn internal_router(node: Arc<Node>) -> Router {
    let state = AppState::new(node);
    finish(with_internal_routes(Router::new()), state)
}

fn with_client_routes(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let router = router
        .route(ITEM_PATH, get(get_item).post(put_item).delete(delete_item))
        .route(HEALTH_PATH, get(health))
        .route(METRICS_PATH, get(metrics))
        .route(OPENAPI_PATH, get(openapi))
        .route(MEMBERSHIP_PATH, get(admin_membership).fallback(unknown_path))
        .route(LEAVE_PATH, post(admin_leave).fallback(unknown_path))
        .route(REMOVE_PATH, post(admin_remove).fallback(unknown_path));
    match state.node.config.test_hooks {
        false => router,
        true => router
            .route("/test/v1/clock", get(test_clock).post(test_set_clock).fallback(unknown_path))
            .route("/test/v1/replica", get(test_replica_one).post(test_replica_many).fallback(unknown_path))
            .route("/test/v1/probe", post(test_probe).fallback(unknown_path)),
    }
}

/// Another method on an internal route (or a test hook) answers like an
/// unknown path, as a call without the secret does: a 405 would tell an
/// outsider that the route exists.
fn with_internal_routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route(rpc::BATCH_PATH, post(internal_batch).fallback(unknown_path))
        .route(rpc::WRITE_BATCH_PATH, post(internal_write_batch).fallback(unknown_path))
        .route(rpc::SYNC_PATH, post(internal_sync).fallback(unknown_path))
        .route(rpc::PING_PATH, post(internal_ping).fallback(unknown_path))
        .route(rpc::GOSSIP_PATH, post(internal_gossip).fallback(unknown_path))
        .route(rpc::HANDOFF_PATH, post(internal_handoff).fallback(unknown_path))
}

fn finish(router: Router<AppState>, state: AppState) -> Router {
    let metrics = state.node.metrics.clone();
    router
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        // Our own limits apply in the handlers, with a JSON 413.
        .layer(axum::extract::DefaultBodyLimit::disable())
        // Last, so that it wraps every route and the fallbacks.
        .layer(axum::middleware::from_fn_with_state(metrics, observe))
        .with_state(state)
}

/// Counts every answer by route, read consistency and status, and times
/// the client API's item operations, from the request's head to its answer.
/// A request whose client hung up before the answer is not counted: it got
/// no status.
async fn observe(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = route_of(&request);
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    // A read's consistency is known once its query is parsed: `get_item`
    // leaves it on the answer.
    let consistency = response.extensions().get::<ConsistencyLabel>().copied().unwrap_or(ConsistencyLabel::None);
    metrics.request(route, consistency, response.status().as_u16(), started.elapsed());
    response
}

/// Which route `request` matched (axum leaves the matched path on it).
fn route_of(request: &Request) -> Route {
    let Some(path) = request.extensions().get::<MatchedPath>() else {
        return Route::Other;
    };
    let method = request.method();
    match path.as_str() {
        ITEM_PATH if method == Method::GET => Route::ItemGet,
        ITEM_PATH if method == Method::POST => Route::ItemPut,
        ITEM_PATH if method == Method::DELETE => Route::ItemDelete,
        HEALTH_PATH => Route::Health,
        METRICS_PATH => Route::Metrics,
        OPENAPI_PATH => Route::Openapi,
        MEMBERSHIP_PATH | LEAVE_PATH | REMOVE_PATH => Route::Admin,
        rpc::BATCH_PATH => Route::InternalBatch,
        rpc::WRITE_BATCH_PATH => Route::InternalWriteBatch,
        rpc::SYNC_PATH => Route::InternalSync,
        rpc::PING_PATH => Route::InternalPing,
        rpc::GOSSIP_PATH => Route::InternalGossip,
        rpc::HANDOFF_PATH => Route::InternalHandoff,
        path if path.starts_with("/test/") => Route::TestHook,
        _ => Route::Other,
    }
}

impl AppState {
    /// A client request's permit, taken before its body is read: a node at
    /// its in-flight limit refuses uploads without reading them.
    fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.inflight
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::unavailable("node overloaded: too many requests in flight"))
    }

    /// Runs `work`, the coordinated operation `op`, under the in-flight
    /// limit and the request timeout.
    async fn bounded<T>(&self, op: QuorumOp, work: impl Future<Output = Result<T, NodeError>>) -> Result<T, ApiError> {
        let _permit = self.admit()?;
        self.within_timeout(op, work).await
    }

    /// Runs `work`, the coordinated operation `op`, under the request
    /// timeout (the caller holds a permit), and counts how its quorum
    /// ended: here, where the request's own timeout is seen too.
    async fn within_timeout<T>(
        &self,
        op: QuorumOp,
        work: impl Future<Output = Result<T, NodeError>>,
    ) -> Result<T, ApiError> {
        let (outcome, answer) = match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => (QuorumOutcome::Ok, Ok(value)),
            Ok(Err(NodeError::Unavailable(message))) => {
                (QuorumOutcome::Unavailable, Err(ApiError::unavailable(message)))
            }
            Ok(Err(NodeError::TimedOut(message))) => (QuorumOutcome::TimedOut, Err(ApiError::unavailable(message))),
            Ok(Err(NodeError::Store(error))) => {
                (QuorumOutcome::Unavailable, Err(ApiError::unavailable(format!("outcome unknown: {error}"))))
            }
            Err(_) => (
                QuorumOutcome::TimedOut,
                Err(ApiError::unavailable(format!(
                    "request timed out after {} ms; for a write the outcome is unknown",
                    self.timeout.as_millis()
                ))),
            ),
        };
        self.node.metrics.quorum(op, outcome);
        answer
    }

    /// The body, at most `limit` bytes, read within the body timeout. A
    /// refusal closes the connection: the rest of the body is unread.
    async fn read_body(&self, body: Body, limit: usize) -> Result<Bytes, Response> {
        match tokio::time::timeout(self.body_timeout, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => Err(closing(
                ApiError::too_large(format!("request body is over {limit} bytes (or could not be read)"))
                    .into_response(),
            )),
            Err(_) => Err(closing(
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("request body not received within {} ms", self.body_timeout.as_millis()),
                )
                .into_response(),
            )),
        }
    }
}

/// Put a value: replicated to N owners, acknowledged by W of them.
#[utoipa::path(
    post,
    path = "/api/v1/item",
    tag = "items",
    request_body = kvapi::wire::PutRequest,
    responses(
        (status = 201, description = "Written on a write quorum; `timestamp` is the version a session passes as `min_timestamp`", body = kvapi::wire::PutResponse),
        (status = 400, description = "Not a put body: the error names the field", body = kvapi::wire::ErrorBody),
        (status = 413, description = "Key or value over the node's limits", body = kvapi::wire::ErrorBody),
        (status = 503, description = "No write quorum, overloaded, or timed out: the write's outcome is unknown", body = kvapi::wire::ErrorBody),
    )
)]
async fn put_item(State(state): State<AppState>, body: Body) -> Response {
    let permit = match state.admit() {
        Ok(permit) => permit,
        Err(error) => return closing(error.into_response()),
    };
    let bytes = match state.read_body(body, state.limits.max_put_body_bytes()).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let command = match parse_put(&bytes, &state.limits) {
        Ok(command) => command,
        Err(error) => return error.into_response(),
    };
    drop(bytes);
    let key = command.key.clone();
    let outcome = state.within_timeout(QuorumOp::Put, state.node.put(command)).await;
    drop(permit);
    match outcome {
        Ok(version) => {
            let body = crate::api::wire::PutResponse { key, timestamp: version.timestamp_ms };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(error) => error.with_key(&key).into_response(),
    }
}

/// Read a value: from one replica (`eventual`) or a quorum (`strong`,
/// linearizable).
#[utoipa::path(
    get,
    path = "/api/v1/item",
    tag = "items",
    params(
        ("key" = String, Query, description = "The key, 1 to --max-key-bytes bytes of UTF-8"),
        ("consistency" = Option<String>, Query, description = "`eventual` (one replica, the default) or `strong` (a quorum; linearizable)"),
        ("min_timestamp" = Option<u64>, Query, description = "Read your own writes: a version at least this new (a put's or delete's `timestamp`), or 503"),
    ),
    responses(
        (status = 200, description = "The value", body = kvapi::wire::GetResponse),
        (status = 404, description = "No value: never written, deleted (a tombstone's timestamp is given) or expired", body = kvapi::wire::NotFoundResponse),
        (status = 400, description = "A bad query parameter, named", body = kvapi::wire::ErrorBody),
        (status = 413, description = "Key over --max-key-bytes", body = kvapi::wire::ErrorBody),
        (status = 503, description = "No read quorum, no replica new enough for `min_timestamp`, overloaded, or timed out", body = kvapi::wire::ErrorBody),
    )
)]
async fn get_item(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let command = match parse_get(query.as_deref(), &state.limits) {
        Ok(command) => command,
        Err(error) => return error.into_response(),
    };
    let consistency = command.consistency;
    let op = match consistency {
        Consistency::Strong => QuorumOp::StrongGet,
        Consistency::Eventual => QuorumOp::EventualGet,
    };
    let mut response = match state.bounded(op, state.node.get(&command)).await {
        Ok(ReadOutcome::Found { value, version }) => {
            let body = GetResponse { key: command.key, value: BASE64.encode(value), timestamp: version.timestamp_ms };
            (StatusCode::OK, Json(body)).into_response()
        }
        Ok(ReadOutcome::NotFound { version }) => {
            let body = NotFoundResponse {
                key: command.key,
                error: KEY_NOT_FOUND.to_owned(),
                timestamp: version.map(|v| v.timestamp_ms),
            };
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
        Err(error) => error.with_key(&command.key).into_response(),
    };
    // For `observe`'s request counter.
    response.extensions_mut().insert(ConsistencyLabel::from(consistency));
    response
}

/// Delete a key: a tombstone on a write quorum. Idempotent: deleting a
/// missing key also answers 200.
#[utoipa::path(
    delete,
    path = "/api/v1/item",
    tag = "items",
    params(("key" = String, Query, description = "The key")),
    responses(
        (status = 200, description = "Deleted (or was never there)", body = kvapi::wire::DeleteResponse),
        (status = 400, description = "A bad query parameter, named", body = kvapi::wire::ErrorBody),
        (status = 413, description = "Key over --max-key-bytes", body = kvapi::wire::ErrorBody),
        (status = 503, description = "No write quorum, overloaded, or timed out: the outcome is unknown", body = kvapi::wire::ErrorBody),
    )
)]
async fn delete_item(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let command = parse_delete(query.as_deref(), &state.limits)?;
    let key = command.key;
    let version =
        state.bounded(QuorumOp::Delete, state.node.delete(key.clone())).await.map_err(|e| e.with_key(&key))?;
    Ok((StatusCode::OK, Json(DeleteResponse { key, deleted: true, timestamp: version.timestamp_ms })).into_response())
}

/// 200 "ok", or 503 "failed" with the reason while the store takes no
/// writes (a failed log write, sync or checkpoint; a lost writer thread)
/// or its disk is (nearly) full, so that a load balancer or an operator
/// stops sending it traffic.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Serving", body = kvapi::wire::HealthResponse),
        (status = 503, description = "Takes no writes: `reason` says why", body = kvapi::wire::HealthResponse),
    )
)]
async fn health(State(state): State<AppState>) -> Response {
    let node = &state.node;
    let recovering_from = node.replica.recovery.pending();
    let reason = node.replica.store.failure().or_else(|| disk_full(&node.config));
    let (code, status) = match reason {
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "failed"),
        None => (StatusCode::OK, "ok"),
    };
    let body = HealthResponse { status: status.into(), node_id: node.config.node_id.clone(), recovering_from, reason };
    (code, Json(body)).into_response()
}

/// The API description, generated from the handlers and kvapi's types.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This description (OpenAPI 3.1)", content_type = "application/json")),
)]
async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi::json()).into_response()
}

/// The node's metrics (see [`crate::metrics`]), read now.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
    )
)]
async fn metrics(State(state): State<AppState>) -> Response {
    match state.node.scrape_metrics() {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(error) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// Why the data folder's disk counts as full, if it does: less free space
/// than `--min-free-disk-bytes`. Writes would soon fail with ENOSPC (and
/// then the store fails); saying so first lets traffic move elsewhere.
fn disk_full(config: &crate::config::Config) -> Option<String> {
    if config.storage != crate::config::StorageKind::Sled {
        return None;
    }
    match nix::sys::statvfs::statvfs(&config.data_dir) {
        Ok(stats) => {
            let free_bytes = stats.blocks_available().saturating_mul(stats.fragment_size());
            (free_bytes < config.min_free_disk_bytes).then(|| {
                format!(
                    "disk nearly full: {free_bytes} bytes free under {}, below --min-free-disk-bytes {}",
                    config.data_dir.display(),
                    config.min_free_disk_bytes
                )
            })
        }
        Err(error) => Some(format!("cannot read the free space under {}: {error}", config.data_dir.display())),
    }
}

async fn unknown_path(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such path: {}", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method {method} is not allowed on {}", uri.path()))
}

/// Internal bodies can carry a batch of records; bounded all the same.
const MAX_INTERNAL_BODY_BYTES: usize = 256 * 1024 * 1024;

/// Whether the caller of `path` sent the cluster secret (a 404 if not).
fn authorized(state: &AppState, headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
    rpc::routes::authorize(headers, state.node.config.cluster_secret.as_deref(), path)
}

/// Checks the cluster secret and reads the body, at most `limit` bytes,
/// within the body timeout.
async fn authorized_body(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    body: Body,
    limit: usize,
) -> Result<Bytes, Response> {
    authorized(state, headers, path).map_err(IntoResponse::into_response)?;
    state.read_body(body, limit).await
}

/// `response` with `Connection: close`. After a body is refused unread, the
/// connection cannot carry another request: saying so keeps a client from
/// reusing it and seeing it closed under its next request.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    response
}

/// An internal route: the secret, an internal permit (taken before the
/// body is read), the body within its limit and timeout, then the call
/// within the request timeout.
macro_rules! internal_handler {
    ($name:ident, $path:expr, $call:path, $timeout:expr) => {
        async fn $name(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
            if let Err(error) = authorized(&state, &headers, $path) {
                return error.into_response();
            }
            let Ok(_permit) = state.internal_inflight.clone().try_acquire_owned() else {
                return closing(ApiError::unavailable("too many internal calls in flight").into_response());
            };
            let bytes = match state.read_body(body, MAX_INTERNAL_BODY_BYTES).await {
                Ok(bytes) => bytes,
                Err(response) => return response,
            };
            let timeout: Duration = $timeout(&state);
            match tokio::time::timeout(timeout, $call(&state.node, bytes)).await {
                Ok(response) => response,
                Err(_) => ApiError::unavailable(format!(
                    "internal call timed out after {} ms; its writes may or may not be applied",
                    timeout.as_millis()
                ))
                .into_response(),
            }
        }
    };
}

async fn batch_call(node: &Arc<Node>, body: Bytes) -> Response {
    rpc::routes::batch(&node.replica, body).await
}

async fn write_batch_call(node: &Arc<Node>, body: Bytes) -> Response {
    rpc::routes::write_batch(&node.replica, body).await
}

async fn sync_call(node: &Arc<Node>, body: Bytes) -> Response {
    rpc::routes::sync(&node.replica, body).await
}

async fn gossip_call(node: &Arc<Node>, body: Bytes) -> Response {
    let response = rpc::routes::gossip(&node.replica, body);
    node.learn_addresses();
    response
}

/// One page of this member's push for a move (see `crate::handoff`).
async fn handoff_call(node: &Arc<Node>, body: Bytes) -> Response {
    let request = match rpc::codec::decode_handoff_request(&body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    match node.push_for_move(&request).await {
        Ok(reply) => (StatusCode::OK, rpc::codec::encode_handoff_reply(&reply)).into_response(),
        Err(error @ (HandoffError::Unannounced(_) | HandoffError::Changing)) => {
            (StatusCode::CONFLICT, error.to_string()).into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

internal_handler!(internal_batch, rpc::BATCH_PATH, batch_call, |state: &AppState| state.timeout);
// An exchange passes over the whole store (see `antientropy`): its own bound.
internal_handler!(internal_write_batch, rpc::WRITE_BATCH_PATH, write_batch_call, |state: &AppState| state.sync_timeout);
internal_handler!(internal_sync, rpc::SYNC_PATH, sync_call, |state: &AppState| state.sync_timeout);
internal_handler!(internal_gossip, rpc::GOSSIP_PATH, gossip_call, |state: &AppState| state.timeout);
internal_handler!(internal_handoff, rpc::HANDOFF_PATH, handoff_call, |state: &AppState| state.sync_timeout);

async fn internal_ping(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match authorized(&state, &headers, rpc::PING_PATH) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

/// This node's view of the membership and its own move's progress.
#[utoipa::path(
    get,
    path = "/admin/v1/membership",
    tag = "admin",
    security(("cluster_secret" = [])),
    responses(
        (status = 200, description = "The node's view and its own move", body = kvapi::wire::MembershipResponse),
        (status = 404, description = "Without the cluster secret: as an unknown path", body = kvapi::wire::ErrorBody),
    )
)]
async fn admin_membership(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(error) = authorized(&state, &headers, MEMBERSHIP_PATH) {
        return error.into_response();
    }
    let node = &state.node;
    let topology = node.membership.load();
    let members = topology
        .view()
        .entries()
        .map(|(id, entry)| crate::api::wire::MemberStatus {
            id: id.to_owned(),
            status: format!("{:?}", entry.status).to_lowercase(),
            version: entry.version,
            addr: entry.addr.clone(),
            tokens: entry.tokens.len(),
        })
        .collect();
    let progress = node.move_progress.lock().expect("progress lock").clone();
    let body = crate::api::wire::MembershipResponse {
        node_id: node.config.node_id.clone(),
        status: node.own_status().map(|status| format!("{status:?}").to_lowercase()),
        members,
        changing: topology.is_changing(),
        r#move: progress,
    };
    Json(body).into_response()
}

/// Starts this node's decommission: 202 once started (follow it at
/// `MEMBERSHIP_PATH`); the process stops once it has left.
#[utoipa::path(
    post,
    path = "/admin/v1/leave",
    tag = "admin",
    security(("cluster_secret" = [])),
    responses(
        (status = 202, description = "The leave started", body = kvapi::wire::LeaveResponse),
        (status = 404, description = "Without the cluster secret: as an unknown path", body = kvapi::wire::ErrorBody),
        (status = 409, description = "Another change is under way, or this node is not a member", body = kvapi::wire::ErrorBody),
    )
)]
async fn admin_leave(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(error) = authorized(&state, &headers, LEAVE_PATH) {
        return error.into_response();
    }
    match state.node.start_leave() {
        Ok(()) => (StatusCode::ACCEPTED, Json(kvapi::wire::LeaveResponse { leaving: true })).into_response(),
        Err(message) => ApiError::new(StatusCode::CONFLICT, message).into_response(),
    }
}

/// Starts the removal of a member lost for good, driven by this node: 202
/// once started (follow it at `MEMBERSHIP_PATH` on this node).
#[utoipa::path(
    post,
    path = "/admin/v1/remove",
    tag = "admin",
    security(("cluster_secret" = [])),
    params(("node" = String, Query, description = "The member lost for good")),
    responses(
        (status = 202, description = "The removal started, driven by this node", body = kvapi::wire::RemoveResponse),
        (status = 400, description = "No member named", body = kvapi::wire::ErrorBody),
        (status = 404, description = "Without the cluster secret: as an unknown path", body = kvapi::wire::ErrorBody),
        (status = 409, description = "The member still answers, is unknown, or another change is under way", body = kvapi::wire::ErrorBody),
    )
)]
async fn admin_remove(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if let Err(error) = authorized(&state, &headers, REMOVE_PATH) {
        return error.into_response();
    }
    let gone = query.as_deref().and_then(|q| q.strip_prefix("node=")).filter(|id| !id.is_empty() && !id.contains('&'));
    let Some(gone) = gone else {
        return ApiError::new(StatusCode::BAD_REQUEST, "name the member to remove: ?node=ID").into_response();
    };
    match state.node.start_remove(gone).await {
        Ok(()) => {
            (StatusCode::ACCEPTED, Json(kvapi::wire::RemoveResponse { removing: gone.to_owned() })).into_response()
        }
        Err(message) => ApiError::new(StatusCode::CONFLICT, message).into_response(),
    }
}

/// Test hook bodies are small JSON: a clock offset, a list of keys, a peer.
const MAX_TEST_HOOK_BODY_BYTES: usize = 4 * 1024 * 1024;

async fn test_hook_body(state: &AppState, headers: &HeaderMap, path: &str, body: Body) -> Result<Bytes, Response> {
    authorized_body(state, headers, path, body, MAX_TEST_HOOK_BODY_BYTES).await
}

async fn test_clock(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match authorized(&state, &headers, "/test/v1/clock") {
        Ok(()) => Json(test_hooks::clock_state(&state.node)).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn test_set_clock(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match test_hook_body(&state, &headers, "/test/v1/clock", body).await {
        Ok(body) => json_or_error(test_hooks::set_clock(&state.node, &body)),
        Err(response) => response,
    }
}

async fn test_replica_one(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    match authorized(&state, &headers, "/test/v1/replica") {
        Ok(()) => json_or_error(test_hooks::replica_one(&state.node, query.as_deref())),
        Err(error) => error.into_response(),
    }
}

async fn test_replica_many(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match test_hook_body(&state, &headers, "/test/v1/replica", body).await {
        Ok(body) => json_or_error(test_hooks::replica_many(&state.node, &body)),
        Err(response) => response,
    }
}

async fn test_probe(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match test_hook_body(&state, &headers, "/test/v1/probe", body).await {
        Ok(body) => json_or_error(test_hooks::probe(&state.node, &body).await),
        Err(response) => response,
    }
}

fn json_or_error<T: serde::Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}
