//! The client API of docs/SPEC.md section 1, row by row, against a real `kvnode`.

mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use support::{http_client, temp_data_dir, NodeProcess};

struct Api {
    node: NodeProcess,
    client: Client,
}

struct Answer {
    status: StatusCode,
    body: Value,
}

impl Api {
    /// A node with small limits, so that limit cases are cheap to send.
    fn start(name: &str) -> Api {
        let dir = temp_data_dir(name);
        let node = NodeProcess::start("n1", &dir, &["--max-key-bytes", "16", "--max-value-bytes", "64"]);
        Api { node, client: http_client() }
    }

    async fn send(&self, method: Method, path_and_query: &str, body: Option<String>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path_and_query}", self.node.base_url));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.expect("node answers");
        let status = response.status();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(content_type.as_deref(), Some("application/json"), "{path_and_query} answered without JSON");
        let body = response.json().await.expect("JSON body");
        Answer { status, body }
    }

    async fn put_json(&self, body: Value) -> Answer {
        self.send(Method::POST, "/api/v1/item", Some(body.to_string())).await
    }

    async fn put_raw(&self, body: &str) -> Answer {
        self.send(Method::POST, "/api/v1/item", Some(body.to_owned())).await
    }

    async fn put(&self, key: &str, value: &[u8]) -> u64 {
        let answer = self.put_json(json!({"key": key, "value": BASE64.encode(value)})).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body["timestamp"].as_u64().expect("timestamp")
    }

    async fn get(&self, query: &str) -> Answer {
        self.send(Method::GET, &format!("/api/v1/item?{query}"), None).await
    }

    async fn delete(&self, query: &str) -> Answer {
        self.send(Method::DELETE, &format!("/api/v1/item?{query}"), None).await
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn assert_error(answer: &Answer, status: StatusCode, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    let message =
        answer.body["error"].as_str().unwrap_or_else(|| panic!("{what}: no error message in {}", answer.body));
    assert!(!message.is_empty(), "{what}: empty error message");
}

#[tokio::test]
async fn put_then_get_returns_the_exact_shapes() {
    let api = Api::start("shapes");
    let before = now_ms();
    let answer = api.put_json(json!({"key": "user:123:name", "value": "U29tZSBkYXRh"})).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let timestamp = answer.body["timestamp"].as_u64().unwrap();
    assert!(timestamp >= before && timestamp <= now_ms() + 1, "timestamp {timestamp} is not the server's now");
    assert_eq!(answer.body, json!({"key": "user:123:name", "timestamp": timestamp}));

    let expected = json!({"key": "user:123:name", "value": "U29tZSBkYXRh", "timestamp": timestamp});
    for query in
        ["key=user:123:name", "key=user%3A123%3Aname&consistency=eventual", "key=user:123:name&consistency=strong"]
    {
        let answer = api.get(query).await;
        assert_eq!((answer.status, &answer.body), (StatusCode::OK, &expected), "{query}");
    }
}

#[tokio::test]
async fn values_are_opaque_bytes() {
    let api = Api::start("bytes");
    let every_byte: Vec<u8> = (0..=255).collect();
    for (key, value) in [("all", &every_byte[..64]), ("all2", &every_byte[64..128]), ("empty", &[][..])] {
        let timestamp = api.put(key, value).await;
        let answer = api.get(&format!("key={key}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(BASE64.decode(answer.body["value"].as_str().unwrap()).unwrap(), value);
        assert_eq!(answer.body["timestamp"], timestamp);
    }
}

#[tokio::test]
async fn all_256_byte_values_round_trip_under_default_limits() {
    let dir = temp_data_dir("bytes256");
    let api = Api { node: NodeProcess::start("n1", &dir, &[]), client: http_client() };
    let every_byte: Vec<u8> = (0..=255).rev().chain(0..=255).collect();
    api.put("bytes", &every_byte).await;
    let answer = api.get("key=bytes&consistency=strong").await;
    assert_eq!(BASE64.decode(answer.body["value"].as_str().unwrap()).unwrap(), every_byte);
}

#[tokio::test]
async fn overwrite_is_silent_and_later_writes_get_larger_timestamps() {
    let api = Api::start("overwrite");
    let mut last = 0;
    for i in 0..100u32 {
        let timestamp = api.put("k", &i.to_be_bytes()).await;
        assert!(timestamp > last, "write {i} got {timestamp}, not after {last}");
        last = timestamp;
    }
    let answer = api.get("key=k").await;
    assert_eq!(answer.body["value"], BASE64.encode(99u32.to_be_bytes()));
    assert_eq!(answer.body["timestamp"], last);
    let deleted = api.delete("key=k").await;
    assert!(deleted.body["timestamp"].as_u64().unwrap() > last);
}

#[tokio::test]
async fn ttl_expires_the_value_on_time() {
    let api = Api::start("ttl");
    let answer = api.put_json(json!({"key": "session", "value": "AQI=", "ttl": 1})).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let timestamp = answer.body["timestamp"].as_u64().unwrap();
    assert_eq!(api.put_json(json!({"key": "forever", "value": "AQI="})).await.status, StatusCode::CREATED);
    if now_ms() < timestamp + 900 {
        assert_eq!(api.get("key=session").await.status, StatusCode::OK, "read before the TTL ran out");
    }
    tokio::time::sleep(std::time::Duration::from_millis((timestamp + 1_050).saturating_sub(now_ms()))).await;
    for consistency in ["eventual", "strong"] {
        let answer = api.get(&format!("key=session&consistency={consistency}")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.body, json!({"key": "session", "error": "key not found", "timestamp": timestamp}));
    }
    assert_eq!(api.get("key=forever").await.status, StatusCode::OK);
}

#[tokio::test]
async fn delete_is_idempotent_and_leaves_a_tombstone() {
    let api = Api::start("delete");
    let put_timestamp = api.put("doomed", b"x").await;
    let first = api.delete("key=doomed").await;
    assert_eq!(first.status, StatusCode::OK);
    let deleted_at = first.body["timestamp"].as_u64().unwrap();
    assert!(deleted_at > put_timestamp);
    assert_eq!(first.body, json!({"key": "doomed", "deleted": true, "timestamp": deleted_at}));
    let answer = api.get("key=doomed").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, json!({"key": "doomed", "error": "key not found", "timestamp": deleted_at}));

    let again = api.delete("key=doomed").await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.body["timestamp"].as_u64().unwrap() > deleted_at);

    let missing = api.delete("key=never-written").await;
    assert_eq!(missing.status, StatusCode::OK);
    assert_eq!(missing.body["deleted"], true);
    let answer = api.get("key=never-written").await;
    assert_eq!(answer.body["timestamp"], missing.body["timestamp"]);
}

#[tokio::test]
async fn missing_key_is_a_404_without_timestamp() {
    let api = Api::start("missing");
    for consistency in ["eventual", "strong"] {
        let answer = api.get(&format!("key=nobody&consistency={consistency}")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.body, json!({"key": "nobody", "error": "key not found"}));
    }
}

#[tokio::test]
async fn min_timestamp_never_answers_older_data() {
    let api = Api::start("min-ts");
    let timestamp = api.put("k", b"v").await;
    let answer = api.get(&format!("key=k&min_timestamp={timestamp}")).await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = api.get(&format!("key=k&min_timestamp={}", timestamp + 1)).await;
    assert_error(&answer, StatusCode::SERVICE_UNAVAILABLE, "min_timestamp above every version");
    let answer = api.get(&format!("key=absent&min_timestamp={timestamp}")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn queries_decode_as_forms_do() {
    let api = Api::start("query");
    let timestamp = api.put("a b+c/é", b"v").await;
    let answer = api.get("key=a+b%2Bc%2F%C3%A9&consistency=strong").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["key"], "a b+c/é");
    assert_eq!(answer.body["timestamp"], timestamp);
    let answer = api.put_json(json!({"key": "k", "value": "", "unknown": {"nested": true}})).await;
    assert_eq!(answer.status, StatusCode::CREATED, "unknown fields are ignored");
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let api = Api::start("bad");
    let timestamp = api.put("k", b"original").await;
    let key_17 = "k".repeat(17);
    let value_65 = BASE64.encode([7u8; 65]);
    let bad_puts: Vec<(String, StatusCode)> = vec![
        ("{not json".into(), StatusCode::BAD_REQUEST),
        ("".into(), StatusCode::BAD_REQUEST),
        ("[1,2]".into(), StatusCode::BAD_REQUEST),
        (json!({"value": "AA=="}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "", "value": "AA=="}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": 5, "value": "AA=="}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "k"}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "k", "value": "not base64!"}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "k", "value": "AA"}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "k", "value": "AA==", "ttl": 0}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "k", "value": "AA==", "ttl": -3}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "k", "value": "AA==", "ttl": 1.5}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "k", "value": "AA==", "ttl": "10"}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "k", "value": "AA==", "ttl": null}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": "k", "value": "AA==", "ttl": 4294967296u64}).to_string(), StatusCode::BAD_REQUEST),
        (json!({"key": key_17, "value": "AA=="}).to_string(), StatusCode::PAYLOAD_TOO_LARGE),
        (json!({"key": "k", "value": value_65}).to_string(), StatusCode::PAYLOAD_TOO_LARGE),
        (format!("{{\"key\":\"k\",\"value\":\"{}\"}}", "A".repeat(200_000)), StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (body, status) in &bad_puts {
        let answer = api.put_raw(body).await;
        assert_error(&answer, *status, &body.chars().take(80).collect::<String>());
    }
    for (query, status) in [
        ("", StatusCode::BAD_REQUEST),
        ("key=", StatusCode::BAD_REQUEST),
        ("key=k&key=k", StatusCode::BAD_REQUEST),
        ("key=%FF", StatusCode::BAD_REQUEST),
        (&format!("key={key_17}"), StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        assert_error(&api.delete(query).await, status, &format!("DELETE ?{query}"));
        assert_error(&api.get(query).await, status, &format!("GET ?{query}"));
    }
    for query in [
        "key=k&consistency=linearizable",
        "key=k&consistency=",
        "key=k&min_timestamp=0",
        "key=k&min_timestamp=-1",
        "key=k&min_timestamp=abc",
        "key=k&min_timestamp=1.0",
        "key=k&min_timestamp=9223372036854775808",
        "key=k&min_timestamp=1&min_timestamp=2",
    ] {
        assert_error(&api.get(query).await, StatusCode::BAD_REQUEST, &format!("GET ?{query}"));
    }
    // Nothing above touched the stored value.
    let answer = api.get("key=k&consistency=strong").await;
    assert_eq!(answer.body, json!({"key": "k", "value": BASE64.encode(b"original"), "timestamp": timestamp}));
    assert_eq!(api.get(&format!("key={key_17}")).await.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn limits_accept_exactly_the_limit() {
    let api = Api::start("limits");
    api.put(&"k".repeat(16), &[1u8; 64]).await;
    let answer = api.get(&format!("key={}", "k".repeat(16))).await;
    assert_eq!(BASE64.decode(answer.body["value"].as_str().unwrap()).unwrap(), vec![1u8; 64]);
    // 8 two-byte characters are 16 UTF-8 bytes; 9 are over.
    api.put(&"é".repeat(8), b"").await;
    assert_error(&api.put_json(json!({"key": "é".repeat(9), "value": ""})).await, StatusCode::PAYLOAD_TOO_LARGE, "key");
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let api = Api::start("paths");
    assert_error(&api.send(Method::GET, "/api/v1/items", None).await, StatusCode::NOT_FOUND, "unknown path");
    assert_error(&api.send(Method::GET, "/", None).await, StatusCode::NOT_FOUND, "root");
    assert_error(&api.send(Method::PUT, "/api/v1/item?key=k", None).await, StatusCode::METHOD_NOT_ALLOWED, "PUT");
    assert_error(&api.send(Method::PATCH, "/api/v1/item", None).await, StatusCode::METHOD_NOT_ALLOWED, "PATCH");
    let health = api.send(Method::GET, "/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["node_id"], "n1");
}

/// A body refused before it is read leaves the connection unusable; the
/// answer says `Connection: close` so that no client reuses it (without it,
/// the next request on a pooled connection could fail mid-flight).
#[tokio::test]
async fn a_refused_unread_body_closes_the_connection() {
    let api = Api::start("unread-body");
    let body = format!("{{\"key\":\"k\",\"value\":\"{}\"}}", "A".repeat(200_000));
    let url = format!("{}/api/v1/item", api.node.base_url);
    let response = api.client.post(&url).header("content-type", "application/json").body(body).send().await;
    let response = response.expect("node answers");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    // The next request on the same client still gets its answer.
    assert_eq!(api.get("key=k").await.status, StatusCode::NOT_FOUND);
}
