//! `GET /metrics` on real `kvnode` processes: the text parses as the
//! Prometheus text format, and the numbers move by what was done: each
//! request counted under its route, consistency and status, each client
//! operation timed, each quorum's outcome, the store's records, the
//! write-ahead log's group commits; with peers, the failure detector's
//! view, hints queued and delivered, and anti-entropy.

mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use reqwest::{Client, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{http_client, temp_data_dir, LocalCluster, NodeProcess, FAST};

/// One scrape: every sample, keyed by [`series`] (labels sorted by name).
#[derive(Debug)]
struct Scrape(BTreeMap<String, f64>);

/// `name{k1="v1",k2="v2"}` with the labels sorted by name, as [`parse`]
/// keys samples: the order a library writes labels in is not the test's
/// business.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(key, value)| format!("{key}=\"{value}\"")).collect();
    labels.sort();
    match labels.is_empty() {
        true => name.to_owned(),
        false => format!("{name}{{{}}}", labels.join(",")),
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The labels of `{k="v",...}` (without the braces); `None` if malformed.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        if !is_metric_name(key) || key.contains(':') {
            return None;
        }
        // The value runs to the first quote not escaped by a backslash.
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(more) => more,
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some(labels)
}

/// Parses the Prometheus text format strictly enough to fail on anything
/// else: `# HELP` / `# TYPE` comments, and samples `name{labels} value`
/// whose family has a `# TYPE` (histograms' `_bucket`, `_sum`, `_count`).
fn parse(text: &str) -> Scrape {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name, rest) = (words.next(), words.next(), words.next());
            let (Some(kind), Some(name)) = (kind, name) else { panic!("bad comment line {line:?}") };
            assert!(is_metric_name(name), "bad metric name in {line:?}");
            match kind {
                "HELP" => assert!(rest.is_some_and(|help| !help.is_empty()), "HELP without text: {line:?}"),
                "TYPE" => {
                    let kind = rest.unwrap_or_default();
                    assert!(["counter", "gauge", "histogram"].contains(&kind), "unexpected type in {line:?}");
                    types.insert(name.to_owned(), kind.to_owned());
                }
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "blank line in the exposition");
        let (series_text, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value is not a number in {line:?}"));
        let (name, labels) = match series_text.split_once('{') {
            None => (series_text, Vec::new()),
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                (name, parse_labels(labels).unwrap_or_else(|| panic!("malformed labels in {line:?}")))
            }
        };
        assert!(is_metric_name(name), "bad metric name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|family| types.get(*family).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before (or without) a # TYPE of its family: {line:?}");
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let key = series(name, &labels);
        assert!(samples.insert(key, value).is_none(), "the same series twice: {line:?}");
    }
    assert!(!samples.is_empty(), "no samples in:\n{text}");
    Scrape(samples)
}

impl Scrape {
    /// A series' value; absent counts as 0 (a series appears with its first count).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0.get(&series(name, labels)).copied().unwrap_or(0.0)
    }

    fn present(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.0.contains_key(&series(name, labels))
    }
}

async fn scrape(client: &Client, base_url: &str) -> Scrape {
    let response = client.get(format!("{base_url}/metrics")).send().await.expect("the node answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    parse(&response.text().await.expect("a text body"))
}

async fn put(client: &Client, base_url: &str, key: &str, value: &str) -> StatusCode {
    let body = json!({"key": key, "value": BASE64.encode(value)});
    client.post(format!("{base_url}/api/v1/item")).json(&body).send().await.expect("the node answers").status()
}

async fn get(client: &Client, base_url: &str, query: &str) -> StatusCode {
    client.get(format!("{base_url}/api/v1/item?{query}")).send().await.expect("the node answers").status()
}

async fn delete(client: &Client, base_url: &str, key: &str) -> StatusCode {
    client.delete(format!("{base_url}/api/v1/item?key={key}")).send().await.expect("the node answers").status()
}

const REQUESTS: &str = "kvnode_requests_total";
const QUORUM: &str = "kvnode_quorum_outcomes_total";

/// What moved between two scrapes.
struct Moved<'a> {
    before: &'a Scrape,
    after: &'a Scrape,
}

impl Moved<'_> {
    fn by(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.after.value(name, labels) - self.before.value(name, labels)
    }

    fn requests(&self, route: &str, consistency: &str, status: u16) -> f64 {
        self.by(REQUESTS, &[("route", route), ("consistency", consistency), ("status", &status.to_string())])
    }

    fn quorum(&self, op: &str, outcome: &str) -> f64 {
        self.by(QUORUM, &[("op", op), ("outcome", outcome)])
    }
}

#[tokio::test]
async fn a_nodes_metrics_move_by_exactly_what_it_served() {
    let node = NodeProcess::start("n1", &temp_data_dir("metrics"), &[]);
    let (client, url) = (http_client(), node.base_url.clone());
    let before = scrape(&client, &url).await;
    assert_eq!(before.value("kvnode_membership_members", &[]), 1.0);
    for op in ["put", "delete", "get_strong", "get_eventual"] {
        for outcome in ["ok", "unavailable", "timed_out"] {
            assert!(before.present(QUORUM, &[("op", op), ("outcome", outcome)]), "{op}/{outcome} exists at zero");
        }
    }

    for key in ["a", "b", "c"] {
        assert_eq!(put(&client, &url, key, "v1").await, StatusCode::CREATED);
    }
    assert_eq!(put(&client, &url, "a", "v2").await, StatusCode::CREATED, "an overwrite adds no record");
    let bad_put = client.post(format!("{url}/api/v1/item")).body("{not json").send().await.expect("answers");
    assert_eq!(bad_put.status(), StatusCode::BAD_REQUEST);
    for _ in 0..2 {
        assert_eq!(get(&client, &url, "key=a&consistency=strong").await, StatusCode::OK);
    }
    assert_eq!(get(&client, &url, "key=missing&consistency=strong").await, StatusCode::NOT_FOUND);
    for query in ["key=a&consistency=eventual", "key=b&consistency=eventual", "key=c"] {
        assert_eq!(get(&client, &url, query).await, StatusCode::OK, "{query}");
    }
    assert_eq!(get(&client, &url, "key=missing&consistency=eventual").await, StatusCode::NOT_FOUND);
    assert_eq!(get(&client, &url, "key=a&consistency=linearizable").await, StatusCode::BAD_REQUEST);
    assert_eq!(delete(&client, &url, "b").await, StatusCode::OK);
    assert_eq!(client.get(format!("{url}/health")).send().await.expect("answers").status(), StatusCode::OK);
    assert_eq!(client.get(format!("{url}/no/such/path")).send().await.expect("answers").status(), 404);
    let after = scrape(&client, &url).await;
    let moved = Moved { before: &before, after: &after };

    // Every request under its route, consistency and status, exactly once.
    assert_eq!(moved.requests("item_put", "none", 201), 4.0);
    assert_eq!(moved.requests("item_put", "none", 400), 1.0);
    assert_eq!(moved.requests("item_get", "strong", 200), 2.0);
    assert_eq!(moved.requests("item_get", "strong", 404), 1.0);
    assert_eq!(moved.requests("item_get", "eventual", 200), 3.0, "no consistency given reads eventually");
    assert_eq!(moved.requests("item_get", "eventual", 404), 1.0);
    assert_eq!(moved.requests("item_get", "none", 400), 1.0, "refused before its consistency was known");
    assert_eq!(moved.requests("item_delete", "none", 200), 1.0);
    assert_eq!(moved.requests("health", "none", 200), 1.0);
    assert_eq!(moved.requests("other", "none", 404), 1.0);
    assert_eq!(moved.requests("metrics", "none", 200), 1.0, "the first scrape, counted once it was answered");
    let total_requests: f64 = after
        .0
        .iter()
        .filter(|(series, _)| series.starts_with(REQUESTS))
        .map(|(series, value)| value - before.0.get(series).copied().unwrap_or(0.0))
        .sum();
    assert_eq!(total_requests, 17.0, "nothing else counted");

    // Every client operation timed, whatever its status.
    let timed = |op| moved.by("kvnode_request_duration_seconds_count", &[("op", op)]);
    assert_eq!((timed("put"), timed("get"), timed("delete")), (5.0, 8.0, 1.0));
    let slowest = moved.by("kvnode_request_duration_seconds_bucket", &[("op", "put"), ("le", "+Inf")]);
    assert_eq!(slowest, 5.0, "the +Inf bucket holds every observation");
    assert!(moved.by("kvnode_request_duration_seconds_sum", &[("op", "put")]) > 0.0);

    // Quorums: only operations that reached the coordinator.
    assert_eq!(moved.quorum("put", "ok"), 4.0);
    assert_eq!(moved.quorum("get_strong", "ok"), 3.0, "a 404 is an answered quorum");
    assert_eq!(moved.quorum("get_eventual", "ok"), 4.0);
    assert_eq!(moved.quorum("delete", "ok"), 1.0);
    for op in ["put", "delete", "get_strong", "get_eventual"] {
        assert_eq!(moved.quorum(op, "unavailable") + moved.quorum(op, "timed_out"), 0.0, "{op}");
    }

    // Three new keys; the delete left a tombstone, still a record.
    let data = [("store", "data")];
    assert_eq!(moved.by("kvnode_store_records", &data), 3.0);
    assert!(after.value("kvnode_store_disk_bytes", &data) > 0.0, "sled has files");
    // Each write (4 puts, 1 delete) logged once, each batch synced once.
    assert_eq!(moved.by("kvnode_wal_batch_records_sum", &data), 5.0);
    let batches = moved.by("kvnode_wal_batch_records_count", &data);
    assert!((1.0..=5.0).contains(&batches), "{batches} group commits for 5 sequential writes");
    assert_eq!(moved.by("kvnode_wal_fsync_duration_seconds_count", &data), batches);
    assert!(!after.0.keys().any(|series| series.starts_with("kvnode_peer_up")), "a node alone has no peers");
}

/// Scrapes `url` until `done` holds of the scrape; panics after 15 s.
async fn scrape_until(client: &Client, url: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let scraped = scrape(client, url).await;
        if done(&scraped) {
            return scraped;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "still not {what} after 15 s: {scraped:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_going_down_and_back_show_in_peer_up_hints_and_quorums() {
    let mut cluster = LocalCluster::start("metrics-peers", 3, FAST);
    let (client, n1) = (http_client(), cluster.url(0));
    let up = |peer: &'static str| move |s: &Scrape| s.value("kvnode_peer_up", &[("peer", peer)]) == 1.0;
    let down = |peer: &'static str| move |s: &Scrape| s.present("kvnode_peer_up", &[("peer", peer)]) && !up(peer)(s);
    let before = scrape_until(&client, &n1, "both peers up", |s| up("n2")(s) && up("n3")(s)).await;
    assert_eq!(before.value("kvnode_membership_members", &[]), 3.0);

    // n3 down: a put still meets W, and n1 keeps a hint for n3.
    cluster.kill(2);
    scrape_until(&client, &n1, "n3 down", down("n3")).await;
    assert_eq!(put(&client, &n1, "k", "v").await, StatusCode::CREATED);
    // n2 down too: a strong read cannot meet R (the live owners are too
    // few: unavailable at once, not timed out).
    cluster.kill(1);
    scrape_until(&client, &n1, "n2 down", down("n2")).await;
    assert_eq!(get(&client, &n1, "key=k&consistency=strong").await, StatusCode::SERVICE_UNAVAILABLE);
    let outage = scrape(&client, &n1).await;
    let moved = Moved { before: &before, after: &outage };
    assert_eq!(moved.by("kvnode_hints_queued_total", &[]), 1.0, "one owner missed one write");
    assert_eq!(moved.quorum("put", "ok"), 1.0);
    assert_eq!(moved.quorum("get_strong", "unavailable"), 1.0);
    assert_eq!(moved.requests("item_get", "strong", 503), 1.0);

    // Both back: believed up again, and the hint reaches n3.
    cluster.restart(1);
    cluster.restart(2);
    let after = scrape_until(&client, &n1, "peers up and the hint delivered", |s| {
        up("n2")(s) && up("n3")(s) && s.value("kvnode_hints_delivered_total", &[]) >= 1.0
    })
    .await;
    let moved = Moved { before: &before, after: &after };
    assert_eq!(moved.by("kvnode_hints_delivered_total", &[]), 1.0);
    assert_eq!(moved.by("kvnode_hints_refused_total", &[]), 0.0);
    let after = scrape_until(&client, &n1, "an anti-entropy round over", |s| {
        s.value("kvnode_anti_entropy_rounds_total", &[]) > before.value("kvnode_anti_entropy_rounds_total", &[])
            && s.value("kvnode_anti_entropy_exchanges_total", &[("outcome", "complete")]) > 0.0
    })
    .await;
    assert_eq!(after.value("kvnode_membership_members", &[]), 3.0);
}
