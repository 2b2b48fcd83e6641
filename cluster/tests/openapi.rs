//! The OpenAPI description (`cluster::server::openapi`): the checked-in
//! `docs/openapi.json` is what the code generates, the node serves it, and
//! real answers of a live node, good and bad, each have a documented status
//! and a body its schema accepts.

mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use support::{http_client, plain_client, temp_data_dir, NodeProcess};

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

#[test]
fn the_checked_in_description_is_what_the_code_generates() {
    let checked_in = std::fs::read_to_string(CHECKED_IN).expect("docs/openapi.json");
    assert!(
        checked_in == cluster::server::openapi::json(),
        "docs/openapi.json is out of date: `make openapi` rewrites it from the code"
    );
}

/// A documented response: `(path, method, status)`.
type Documented = (String, String, u16);

/// Checks one real answer against the description: its status is
/// documented for the route, and a JSON body matches the schema given for
/// that status (with the description's components, for `$ref`s).
fn conforms(doc: &Value, path: &str, method: &str, status: u16, content_type: &str, body: &str) -> Documented {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    assert!(response.is_object(), "{method} {path} answered {status}, which is not documented: {body}");
    let content = response["content"].as_object().expect("documented content");
    let documented_type = content.keys().next().expect("a content type");
    let essence = |t: &str| t.split(';').next().unwrap_or("").trim().to_owned();
    assert_eq!(essence(content_type), essence(documented_type), "{method} {path} {status}");
    if essence(content_type) == "application/json" {
        let mut schema = content[documented_type]["schema"].clone();
        if schema.is_object() {
            schema["components"] = doc["components"].clone();
            let validator = jsonschema::validator_for(&schema).expect("a valid schema");
            let instance: Value = serde_json::from_str(body).expect("a JSON body");
            let errors: Vec<String> = validator.iter_errors(&instance).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{method} {path} {status}: {body} breaks its schema: {errors:?}");
        }
    }
    (path.to_owned(), method.to_owned(), status)
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u16, String, String) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status().as_u16();
    let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
    (status, kind, response.text().await.expect("a body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_description() {
    let node = NodeProcess::start("n1", &temp_data_dir("openapi"), &["--max-value-bytes", "1024"]);
    let (client, stranger) = (http_client(), plain_client());
    let base = node.base_url.clone();
    let item = |query: &str| format!("{base}/api/v1/item?{query}");

    let (status, _, served) = call(&client, reqwest::Method::GET, &format!("{base}/openapi.json"), None).await;
    assert_eq!(status, 200);
    assert_eq!(served, cluster::server::openapi::json(), "the node serves the description the code generates");
    let doc: Value = serde_json::from_str(&served).expect("JSON");

    use reqwest::Method as M;
    let value = BASE64.encode(b"hello");
    let cases: Vec<(M, String, Option<Value>, u16)> = vec![
        (M::POST, item(""), Some(json!({"key": "k1", "value": value})), 201),
        (M::POST, item(""), Some(json!({"key": "k2", "value": value, "ttl": 60})), 201),
        (M::POST, item(""), Some(json!({"key": "k1"})), 400),
        (M::POST, item(""), Some(json!({"key": "k1", "value": "not base64!"})), 400),
        (M::POST, item(""), Some(json!({"key": "k1", "value": BASE64.encode(vec![7u8; 2048])})), 413),
        (M::GET, item("key=k1&consistency=strong"), None, 200),
        (M::GET, item("key=k1"), None, 200),
        (M::GET, item("key=never&consistency=strong"), None, 404),
        (M::GET, item("key=k1&consistency=sometimes"), None, 400),
        (M::GET, item(&format!("key={}", "x".repeat(2000))), None, 413),
        (M::GET, item("key=k1&min_timestamp=9000000000000000"), None, 503),
        (M::DELETE, item("key=k1"), None, 200),
        (M::DELETE, item("key=k1"), None, 200),
        (M::GET, item("key=k1&consistency=strong"), None, 404),
        (M::DELETE, item(""), None, 400),
        (M::DELETE, item(&format!("key={}", "x".repeat(2000))), None, 413),
        (M::GET, format!("{base}/health"), None, 200),
        (M::GET, format!("{base}/metrics"), None, 200),
        (M::GET, format!("{base}/openapi.json"), None, 200),
        (M::GET, format!("{base}/admin/v1/membership"), None, 200),
        (M::POST, format!("{base}/admin/v1/remove"), None, 400),
        (M::POST, format!("{base}/admin/v1/remove?node=n9"), None, 409),
        (M::POST, format!("{base}/admin/v1/remove?node=n1"), None, 409),
    ];
    let mut exercised = BTreeSet::new();
    for (method, url, body, expected) in cases {
        let (status, kind, text) = call(&client, method.clone(), &url, body).await;
        assert_eq!(status, expected, "{method} {url}: {text}");
        let path = url.trim_start_matches(&base).split('?').next().unwrap_or("").to_owned();
        exercised.insert(conforms(&doc, &path, &method.as_str().to_lowercase(), status, &kind, &text));
    }
    // Admin routes without the secret answer as unknown paths.
    for (method, path) in
        [(M::GET, "/admin/v1/membership"), (M::POST, "/admin/v1/leave"), (M::POST, "/admin/v1/remove")]
    {
        let (status, kind, text) = call(&stranger, method.clone(), &format!("{base}{path}"), None).await;
        exercised.insert(conforms(&doc, path, &method.as_str().to_lowercase(), status, &kind, &text));
    }

    // Every documented answer was seen, but those a single healthy node
    // cannot give without being broken or made to leave.
    let not_here: BTreeSet<Documented> = [
        ("/api/v1/item", "post", 503),
        ("/api/v1/item", "delete", 503),
        ("/health", "get", 503),
        ("/admin/v1/leave", "post", 202),
        ("/admin/v1/leave", "post", 409),
        ("/admin/v1/remove", "post", 202),
    ]
    .into_iter()
    .map(|(p, m, s)| (p.to_owned(), m.to_owned(), s))
    .collect();
    let mut documented = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("methods") {
            for status in operation["responses"].as_object().expect("responses").keys() {
                documented.insert((path.clone(), method.clone(), status.parse::<u16>().expect("a status")));
            }
        }
    }
    let missed: Vec<&Documented> =
        documented.iter().filter(|d| !exercised.contains(*d) && !not_here.contains(*d)).collect();
    assert!(missed.is_empty(), "documented answers no request here produced: {missed:?}");
}

/// The check above can fail: a body without a required field, or with
/// one of the wrong type, is refused.
#[test]
#[should_panic(expected = "breaks its schema")]
fn a_body_that_breaks_its_schema_is_caught() {
    let doc: Value = serde_json::from_str(&cluster::server::openapi::json()).expect("JSON");
    conforms(&doc, "/api/v1/item", "get", 200, "application/json", r#"{"key": "k", "timestamp": "soon"}"#);
}

#[test]
#[should_panic(expected = "not documented")]
fn an_undocumented_status_is_caught() {
    let doc: Value = serde_json::from_str(&cluster::server::openapi::json()).expect("JSON");
    conforms(&doc, "/api/v1/item", "get", 418, "application/json", "{}");
}
