//! Replication over real `kvnode` processes on loopback: availability with
//! replicas down, convergence without client reads, deletes that stay
//! deleted.

mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use cluster::rpc;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::{http_client, LocalCluster, FAST};

async fn put(client: &Client, url: &str, key: &str, value: &str) -> (StatusCode, Value) {
    let body = json!({"key": key, "value": BASE64.encode(value)});
    let response = client.post(format!("{url}/api/v1/item")).json(&body).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn delete(client: &Client, url: &str, key: &str) -> (StatusCode, Value) {
    let response = client.delete(format!("{url}/api/v1/item?key={key}")).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn get(client: &Client, url: &str, key: &str, consistency: &str) -> (StatusCode, Value) {
    let response = client.get(format!("{url}/api/v1/item?key={key}&consistency={consistency}")).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Each running node's local record of each key, through the status call.
async fn replica_states(client: &Client, cluster: &LocalCluster, keys: &[String]) -> Vec<Vec<Value>> {
    let mut states = Vec::new();
    for i in 0..cluster.nodes.len() {
        let url = format!("{}/test/v1/replica", cluster.url(i));
        let body: Value = client.post(url).json(&json!({"keys": keys})).send().await.unwrap().json().await.unwrap();
        for record in body["records"].as_array().unwrap() {
            // Each key's owners as this node's ring places it: N of them.
            let owners = record["owners"].as_array().unwrap();
            assert_eq!(owners.len(), 3.min(cluster.nodes.len()), "{record}");
        }
        let records = body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["present"], r["timestamp"], r["tiebreak"], r["tombstone"], r["value"]]));
        states.push(records.collect());
    }
    states
}

/// Waits (no client reads) until every replica holds the same version of
/// every key; panics with the differences after `limit`.
async fn await_convergence(client: &Client, cluster: &LocalCluster, keys: &[String], limit: Duration) {
    let start = Instant::now();
    loop {
        let states = replica_states(client, cluster, keys).await;
        let differing: Vec<&String> = keys
            .iter()
            .enumerate()
            .filter(|(k, _)| states.iter().map(|s| &s[*k]).collect::<HashSet<_>>().len() > 1)
            .map(|(_, key)| key)
            .collect();
        if differing.is_empty() {
            return;
        }
        assert!(start.elapsed() < limit, "replicas still differ after {limit:?} on {differing:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorums_survive_one_loss_refuse_two_and_replicas_converge() {
    let mut cluster = LocalCluster::start("availability", 3, FAST);
    let client = http_client();
    let n1 = cluster.url(0);
    let mut keys: Vec<String> = Vec::new();
    for i in 0..10 {
        let key = format!("before-{i}");
        assert_eq!(put(&client, &n1, &key, "v0").await.0, StatusCode::CREATED);
        keys.push(key);
    }

    cluster.kill(2);
    for i in 0..10 {
        let key = format!("one-down-{i}");
        let (status, body) = put(&client, &n1, &key, "v1").await;
        assert_eq!(status, StatusCode::CREATED, "put with one replica down: {body}");
        let (status, body) = get(&client, &cluster.url(1), &key, "strong").await;
        assert_eq!((status, body["value"].clone()), (StatusCode::OK, json!(BASE64.encode("v1"))));
        assert_eq!(delete(&client, &n1, &keys[i]).await.0, StatusCode::OK);
        keys.push(key);
    }

    cluster.kill(1);
    let (status, body) = put(&client, &n1, "two-down", "v2").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a put without a quorum must not succeed: {body}");
    let (status, _) = get(&client, &n1, "one-down-0", "strong").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(delete(&client, &n1, "one-down-1").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = get(&client, &n1, "one-down-0", "eventual").await;
    assert_eq!((status, body["value"].clone()), (StatusCode::OK, json!(BASE64.encode("v1"))));
    keys.push("two-down".into());
    keys.push("one-down-1".into());

    cluster.restart(1);
    cluster.restart(2);
    await_convergence(&client, &cluster, &keys, Duration::from_secs(30)).await;
    // Converged on the right things: the deletes stayed, the writes arrived.
    let states = replica_states(&client, &cluster, &keys).await;
    for node in &states {
        assert_eq!(node[0][3], json!(true), "before-0 was deleted: {:?}", node[0]);
        assert_eq!(node[10][4], json!(BASE64.encode("v1")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_one_replica_missed_is_never_resurrected() {
    let mut args = FAST.to_vec();
    args.extend(["--tombstone-grace-secs", "2", "--compaction-interval-secs", "1"]);
    let mut cluster = LocalCluster::start("resurrection", 3, &args);
    let client = http_client();
    let keys: Vec<String> = (0..20).map(|i| format!("doomed-{i}")).collect();
    for key in &keys {
        assert_eq!(put(&client, &cluster.url(0), key, "alive").await.0, StatusCode::CREATED);
    }
    await_convergence(&client, &cluster, &keys, Duration::from_secs(10)).await;

    // n3 holds the values and misses every delete.
    cluster.kill(2);
    for key in &keys {
        assert_eq!(delete(&client, &cluster.url(0), key).await.0, StatusCode::OK);
    }
    // Past the grace period, n1 and n2 would compact if they did not wait
    // for n3 to hold the tombstone too.
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.restart(2);

    // Hints and anti-entropy bring n3 the tombstones; compaction may then
    // drop them everywhere. At no point may any replica hold the value again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        for (node, records) in replica_states(&client, &cluster, &keys).await.iter().enumerate() {
            for (key, record) in keys.iter().zip(records) {
                if node != 2 && record[0] == json!(true) {
                    assert_eq!(record[3], json!(true), "n{} resurrected {key}: {record}", node + 1);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for node in replica_states(&client, &cluster, &keys).await {
        for record in node {
            assert!(record[0] == json!(false) || record[3] == json!(true), "a deleted value survived: {record}");
        }
    }
    for i in 0..3 {
        for key in &keys {
            assert_eq!(get(&client, &cluster.url(i), key, "eventual").await.0, StatusCode::NOT_FOUND);
            assert_eq!(get(&client, &cluster.url(i), key, "strong").await.0, StatusCode::NOT_FOUND);
        }
    }
}

/// Hints and anti-entropy slowed to a crawl: only recovery repairs here.
const NO_BACKGROUND_REPAIR: &[&str] = &["--hint-interval-ms", "600000", "--anti-entropy-interval-ms", "600000"];

/// n2 loses its folder, n3 missed the last writes: the two together form a
/// read quorum that knows nothing of them. Each must repair from its peers
/// before it answers reads (n2 told so with --recover-from-peers, n3
/// because it was killed), so once n1 is gone too, strong reads from n2 and
/// n3 still see every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_lost_writes_recover_before_they_answer() {
    let mut args: Vec<&str> =
        FAST.chunks(2).filter(|flag| !NO_BACKGROUND_REPAIR.contains(&flag[0])).flatten().copied().collect();
    args.extend(NO_BACKGROUND_REPAIR);
    let mut cluster = LocalCluster::start("recovery", 3, &args);
    let client = http_client();
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    for key in &keys {
        assert_eq!(put(&client, &cluster.url(0), key, "v1").await.0, StatusCode::CREATED);
    }
    cluster.kill(2);
    for key in &keys {
        assert_eq!(put(&client, &cluster.url(0), key, "v2").await.0, StatusCode::CREATED);
    }
    cluster.kill(1);
    cluster.wipe(1);
    cluster.restart_with(1, &["--recover-from-peers"]);
    cluster.restart(2);
    for i in [1, 2] {
        let recovered = wait_recovered(&client, &cluster.url(i), Duration::from_secs(15)).await;
        assert!(recovered, "n{} is still recovering", i + 1);
    }
    cluster.kill(0);
    for key in &keys {
        let (status, body) = get(&client, &cluster.url(1), key, "strong").await;
        assert_eq!((status, &body["value"]), (StatusCode::OK, &json!(BASE64.encode("v2"))), "{key} after recovery");
    }
}

/// Polls `/health` until the node reports no peer left to recover from.
async fn wait_recovered(client: &Client, url: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let health: Value = client.get(format!("{url}/health")).send().await.unwrap().json().await.unwrap();
        if health.get("recovering_from").is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_does_not_lose_a_later_write() {
    let cluster = LocalCluster::start("skew", 3, FAST);
    let client = http_client();
    let skew = |i: usize, offset_ms: i64| {
        let client = client.clone();
        let url = format!("{}/test/v1/clock", cluster.url(i));
        async move {
            let state: Value =
                client.post(url).json(&json!({"offset_ms": offset_ms})).send().await.unwrap().json().await.unwrap();
            assert_eq!(state["offset_ms"], offset_ms);
        }
    };
    skew(0, 60_000).await;
    skew(1, -60_000).await;
    let (_, first) = put(&client, &cluster.url(0), "k", "first").await;
    // A put whose one-round attempt reached only the replica the first
    // write had not reached yet may answer 503 (outcome unknown; see
    // `Coordinator::write`); the replica is repaired, and a client retries.
    let mut second = Value::Null;
    for _ in 0..5 {
        let (status, body) = put(&client, &cluster.url(1), "k", "second").await;
        second = body;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(second["timestamp"].as_u64() > first["timestamp"].as_u64(), "{first} then {second}");
    for i in 0..3 {
        let (_, body) = get(&client, &cluster.url(i), "k", "strong").await;
        assert_eq!(body["value"], BASE64.encode("second"), "node n{} lost the later write", i + 1);
    }
}

/// The real internal routes, called with no secret, a wrong one, and the
/// old public default: each answers 404 as for an unknown path, and the
/// write the batch carried is not stored. The test hooks likewise.
#[tokio::test]
async fn internal_routes_and_test_hooks_answer_only_the_secret() {
    use cluster::record::Record;
    use cluster::rpc::codec::{encode_calls, Call};
    use cluster::version::Version;
    let cluster = LocalCluster::start("closed", 1, &[]);
    let url = cluster.url(0);
    let forged = Record::value(Version::new(u64::MAX / 2, 1), b"forged".to_vec(), None);
    let calls = [Call::Write { key: b"k".to_vec(), record: forged, fence: 0 }];
    let body = encode_calls(calls.iter());
    let plain = support::plain_client();
    for secret in [None, Some("not-the-secret-at-all"), Some("leaderless-kv-internal")] {
        for path in [rpc::BATCH_PATH, rpc::WRITE_BATCH_PATH, rpc::SYNC_PATH, rpc::PING_PATH] {
            let mut request = plain.post(format!("{url}{path}")).body(body.clone());
            if let Some(secret) = secret {
                request = request.header(rpc::SECRET_HEADER, secret);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path} answered {secret:?}");
            // Another method must not tell the route exists (a 405 would).
            for method in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE] {
                let mut request = plain.request(method.clone(), format!("{url}{path}"));
                if let Some(secret) = secret {
                    request = request.header(rpc::SECRET_HEADER, secret);
                }
                let status = request.send().await.unwrap().status();
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path} answered {secret:?}");
            }
        }
        for path in ["/test/v1/clock", "/test/v1/replica?key=k", "/test/v1/probe"] {
            let request = plain.delete(format!("{url}{path}"));
            assert_eq!(request.send().await.unwrap().status(), StatusCode::NOT_FOUND, "DELETE {path}");
        }
        for path in ["/test/v1/clock", "/test/v1/replica?key=k"] {
            let mut request = plain.get(format!("{url}{path}"));
            if let Some(secret) = secret {
                request = request.header(rpc::SECRET_HEADER, secret);
            }
            assert_eq!(request.send().await.unwrap().status(), StatusCode::NOT_FOUND, "{path} answered {secret:?}");
        }
    }
    let (status, _) = get(&plain, &url, "k", "strong").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused internal write stored nothing");
    let (status, _) = put(&plain, &url, "k", "mine").await;
    assert_eq!(status, StatusCode::CREATED, "and the key stays writable");
    // With the secret the same route answers: the refusals above were the secret's.
    let ping = http_client().post(format!("{url}{}", rpc::PING_PATH)).send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::NO_CONTENT);

    let dir = support::temp_data_dir("no-hooks");
    let node = support::NodeProcess::start("n1", &dir, &[]);
    let response = http_client().get(format!("{}/test/v1/clock", node.base_url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "test hooks must be off without --test-hooks");
}

/// A node with peers and no secret refuses to start, and says how to set one.
#[test]
fn a_node_with_peers_and_no_secret_exits_2_with_the_way_out() {
    let dir = support::temp_data_dir("no-secret");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kvnode"))
        .args(["--node-id", "n1", "--listen", "127.0.0.1:0", "--peers", "n1=127.0.0.1:1,n2=127.0.0.1:2"])
        .arg("--data-dir")
        .arg(&dir)
        .env_remove("KV_CLUSTER_SECRET")
        .output()
        .expect("kvnode runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cluster secret") && stderr.contains("KV_CLUSTER_SECRET"), "{stderr}");
}

/// Records an hour ahead of the node's clock, and at `u64::MAX`, arriving
/// through each internal path a peer can use (a replica write or
/// write-back in a batch, a hint delivery or anti-entropy push in a
/// write-batch) are refused: nothing is stored, nothing panics, and the
/// key stays writable. A key that already holds a version far ahead (its
/// node's clock was wrong when it was written) answers 503 with the reason
/// instead of writing further ahead.
#[tokio::test]
async fn versions_far_ahead_are_refused_on_every_path_and_never_panic() {
    use cluster::record::Record;
    use cluster::rpc::codec::{decode_answers, encode_calls, encode_write_batch, Answer, Call};
    use cluster::version::Version;
    let cluster = LocalCluster::start("ahead", 1, &[]);
    let url = cluster.url(0);
    let client = http_client();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for (i, timestamp_ms) in [now_ms + 3_600_000, u64::MAX].into_iter().enumerate() {
        let key = format!("ahead-{i}");
        let record = Record::value(Version::new(timestamp_ms, 7), b"poison".to_vec(), Some(u64::MAX));
        let calls = [Call::Write { key: key.clone().into_bytes(), record: record.clone(), fence: 0 }];
        let response = client.post(format!("{url}{}", rpc::BATCH_PATH)).body(encode_calls(calls.iter())).send().await;
        let answers = decode_answers(&response.unwrap().bytes().await.unwrap()).unwrap();
        assert!(matches!(&answers[0], Answer::Failed(reason) if reason.contains("ahead")), "{answers:?}");
        let entries = [(key.clone().into_bytes(), record)];
        let response =
            client.post(format!("{url}{}", rpc::WRITE_BATCH_PATH)).body(encode_write_batch("n1", &entries)).send();
        assert!(response.await.unwrap().status().is_success(), "the rest of a write-batch is still taken");
        let (status, _) = get(&client, &url, &key, "strong").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{key}: a refused record was stored");
        let (status, body) = put(&client, &url, &key, "mine").await;
        assert_eq!(status, StatusCode::CREATED, "{key} stays writable: {body}");
        assert!(body["timestamp"].as_u64().unwrap() < now_ms + 60_000, "{body}");
    }
    // A day of skew (the most a test hook allows), a write, the clock back.
    let skew = |offset_ms: i64| client.post(format!("{url}/test/v1/clock")).json(&json!({"offset_ms": offset_ms}));
    assert!(skew(86_400_000).send().await.unwrap().status().is_success());
    assert_eq!(put(&client, &url, "pinned", "then").await.0, StatusCode::CREATED);
    assert!(skew(0).send().await.unwrap().status().is_success());
    let (status, body) = put(&client, &url, "pinned", "now").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--max-clock-skew-ms"), "{body}");
    assert_eq!(skew(86_400_001).send().await.unwrap().status(), StatusCode::BAD_REQUEST, "offsets beyond a day");
    let health = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "the node still serves: nothing panicked");
}

/// The replica protocol is no back door around the client API's limits: a
/// peer's record with an empty key, a key over --max-key-bytes, or a value
/// over --max-value-bytes is refused (per call in a batch; dropped from a
/// write-batch) and nothing of it is stored.
#[tokio::test]
async fn records_over_the_client_limits_are_refused_from_peers_too() {
    use cluster::record::Record;
    use cluster::rpc::codec::{decode_answers, encode_calls, encode_write_batch, Answer, Call};
    use cluster::version::Version;
    let cluster = LocalCluster::start("limits", 1, &["--max-key-bytes", "16", "--max-value-bytes", "64"]);
    let url = cluster.url(0);
    let client = http_client();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let record = |value: usize| Record::value(Version::new(now_ms, 3), vec![b'v'; value], None);
    let cases = [(Vec::new(), record(1), "--max-key-bytes"), (vec![b'k'; 17], record(1), "--max-key-bytes")];
    let cases = cases.into_iter().chain([(b"big".to_vec(), record(65), "--max-value-bytes")]);
    for (key, record, flag) in cases {
        let calls = [Call::Write { key: key.clone(), record: record.clone(), fence: 0 }];
        let response = client.post(format!("{url}{}", rpc::BATCH_PATH)).body(encode_calls(calls.iter())).send().await;
        let answers = decode_answers(&response.unwrap().bytes().await.unwrap()).unwrap();
        assert!(matches!(&answers[0], Answer::Failed(reason) if reason.contains(flag)), "{answers:?}");
        let entries = [(key.clone(), record)];
        let response =
            client.post(format!("{url}{}", rpc::WRITE_BATCH_PATH)).body(encode_write_batch("n1", &entries)).send();
        assert!(response.await.unwrap().status().is_success());
        if !key.is_empty() {
            let key = String::from_utf8(key).unwrap();
            let records: Value =
                client.get(format!("{url}/test/v1/replica?key={key}")).send().await.unwrap().json().await.unwrap();
            assert_eq!(records["present"], false, "{key}: {records}");
        }
    }
    let fits = [(b"fits".to_vec(), record(64))];
    let response = client.post(format!("{url}{}", rpc::WRITE_BATCH_PATH)).body(encode_write_batch("n1", &fits)).send();
    assert!(response.await.unwrap().status().is_success());
    assert_eq!(get(&client, &url, "fits", "strong").await.0, StatusCode::OK, "exactly the limits are accepted");
}
