//! Growing and shrinking a running cluster of real `kvnode` processes, as
//! README tells an operator to: a node started with `--join` takes its
//! share and serves; a node told to leave (`POST /admin/v1/leave`) hands
//! its ranges over and stops; every acknowledged write stays readable
//! through every node, and a joined node restarted keeps its membership.

mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kvapi::wire::MembershipResponse;
use std::time::{Duration, Instant};
use support::{free_port, http_client, temp_data_dir, ClusterOptions, LocalCluster, NodeProcess};

const KEYS: usize = 300;
/// Quick enough for a test; the defaults are for real networks.
const FAST: [&str; 8] = [
    "--heartbeat-interval-ms",
    "100",
    "--failure-timeout-ms",
    "1500",
    "--anti-entropy-interval-ms",
    "1000",
    "--stream-page-pause-ms",
    "1",
];

async fn membership(client: &reqwest::Client, base_url: &str) -> MembershipResponse {
    let response = client.get(format!("{base_url}/admin/v1/membership")).send().await.expect("membership answers");
    assert!(response.status().is_success(), "membership: {}", response.status());
    response.json().await.expect("membership JSON")
}

/// Polls `base_url`'s membership until `done` holds, for at most a minute.
async fn wait_for(client: &reqwest::Client, base_url: &str, what: &str, done: impl Fn(&MembershipResponse) -> bool) {
    let start = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{base_url}/admin/v1/membership")).send().await {
            if let Ok(view) = response.json::<MembershipResponse>().await {
                if done(&view) {
                    return;
                }
                assert!(start.elapsed() < Duration::from_secs(60), "{what}: not within a minute: {view:#?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn normal_members(view: &MembershipResponse) -> Vec<&str> {
    view.members.iter().filter(|m| m.status == "normal").map(|m| m.id.as_str()).collect()
}

async fn put(client: &reqwest::Client, base_url: &str, key: &str, value: &str) {
    let body = serde_json::json!({ "key": key, "value": BASE64.encode(value) });
    let response = client.post(format!("{base_url}/api/v1/item")).json(&body).send().await.expect("put answers");
    assert_eq!(response.status().as_u16(), 201, "put {key}: {:?}", response.text().await);
}

/// Every key strongly read through `base_url` has its value.
async fn assert_all_readable(client: &reqwest::Client, base_url: &str, through: &str) {
    for i in 0..KEYS {
        let url = format!("{base_url}/api/v1/item?key=k{i}&consistency=strong");
        let response = client.get(url).send().await.expect("get answers");
        assert_eq!(response.status().as_u16(), 200, "k{i} through {through}: {:?}", response.text().await);
        let body: serde_json::Value = response.json().await.expect("JSON");
        let value = BASE64.decode(body["value"].as_str().expect("a value")).expect("base64");
        assert_eq!(value, format!("v{i}").as_bytes(), "k{i} through {through}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_a_running_cluster_and_another_leaves_without_losing_a_write() {
    let options = ClusterOptions { test_hooks: false, log_files: true };
    let mut cluster = LocalCluster::start_with("membership", 3, options, &FAST);
    let client = http_client();
    for i in 0..KEYS {
        put(&client, &cluster.url(i % 3), &format!("k{i}"), &format!("v{i}")).await;
    }

    // A fourth node joins through n1.
    let port = free_port();
    let dir = temp_data_dir("membership-n4");
    let join = format!("n1={}", cluster.url(0).trim_start_matches("http://"));
    let mut flags: Vec<&str> = vec!["--join", &join];
    flags.extend(FAST);
    let listen = format!("127.0.0.1:{port}");
    let log = dir.with_extension("log");
    let n4 = NodeProcess::start_logged_on("n4", &listen, &dir, &flags, Some(&log));
    wait_for(&client, &n4.base_url, "n4 joins", |view| view.status.as_deref() == Some("normal")).await;
    let joined = membership(&client, &n4.base_url).await;
    assert_eq!(joined.r#move.phase, "done");
    assert!(joined.r#move.records_pushed > 0, "n4 was handed its ranges: {joined:#?}");
    for i in 0..3 {
        let url = cluster.url(i);
        wait_for(&client, &url, "every member sees four", |view| normal_members(view).len() == 4).await;
    }
    assert_all_readable(&client, &n4.base_url, "the joiner").await;

    // n2 leaves: it hands its ranges over and stops by itself.
    let left = client.post(format!("{}/admin/v1/leave", cluster.url(1))).send().await.expect("leave answers");
    assert_eq!(left.status().as_u16(), 202);
    let mut n2 = cluster.nodes[1].take().expect("n2 runs");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = n2.child.try_wait().expect("poll n2") {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "n2 did not stop within a minute of leaving");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success(), "n2 stopped with {status}");
    drop(n2);
    let url = cluster.url(0);
    wait_for(&client, &url, "n1 sees n2 gone", |view| view.members.iter().any(|m| m.id == "n2" && m.status == "left"))
        .await;
    assert_eq!(normal_members(&membership(&client, &url).await), ["n1", "n3", "n4"]);
    assert_all_readable(&client, &cluster.url(2), "n3 after the leave").await;

    // A joined node restarted keeps its place (its view is on disk).
    n4.terminate();
    let n4 = NodeProcess::start_logged_on("n4", &listen, &dir, &flags, Some(&log));
    let view = membership(&client, &n4.base_url).await;
    assert_eq!(view.status.as_deref(), Some("normal"), "{view:#?}");
    assert_eq!(normal_members(&view), ["n1", "n3", "n4"]);
    assert_all_readable(&client, &n4.base_url, "the restarted joiner").await;

    // Without the secret the admin routes are not there.
    let plain = support::plain_client();
    let refused = plain.post(format!("{}/admin/v1/leave", n4.base_url)).send().await.expect("answers");
    assert_eq!(refused.status().as_u16(), 404);
}
