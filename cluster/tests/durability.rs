//! Acknowledged writes survive `kill -9` and a restart.

mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{http_client, temp_data_dir, NodeProcess};

const WRITERS: usize = 32;

#[derive(Debug)]
struct Acked {
    key: String,
    value: String,
    timestamp: u64,
    deleted: bool,
}

/// Writes fresh keys (and deletes some) until the node stops answering.
async fn write_until_killed(url: String, writer: usize, acked: Arc<Mutex<Vec<Acked>>>) {
    let client = http_client();
    for i in 0.. {
        let key = format!("w{writer}-{i}");
        let value = BASE64.encode(format!("value of {key}"));
        let Ok(response) = client.post(&url).json(&json!({"key": key, "value": value})).send().await else {
            return;
        };
        if response.status() != 201 {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let mut record =
            Acked { key: key.clone(), value, timestamp: body["timestamp"].as_u64().unwrap(), deleted: false };
        if i % 5 == 0 {
            let Ok(response) = client.delete(format!("{url}?key={key}")).send().await else {
                return;
            };
            if response.status() == 200 {
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                record.timestamp = body["timestamp"].as_u64().unwrap();
                record.deleted = true;
            }
        }
        acked.lock().unwrap().push(record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = temp_data_dir("durability");
    let node = NodeProcess::start("n1", &dir, &[]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> =
        (0..WRITERS).map(|w| tokio::spawn(write_until_killed(node.item_url(), w, acked.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    node.kill_hard();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= 100, "only {} writes were acknowledged before the kill", acked.len());

    let node = NodeProcess::start("n1", &dir, &[]);
    let client = http_client();
    for write in &acked {
        let url = format!("{}?key={}&consistency=strong", node.item_url(), write.key);
        let response = client.get(url).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if write.deleted {
            assert_eq!(status, 404, "deleted {} came back: {body}", write.key);
        } else {
            assert_eq!(status, 200, "acknowledged write of {} was lost: {body}", write.key);
            assert_eq!(body["value"], write.value.as_str());
        }
        assert_eq!(body["timestamp"], write.timestamp, "{} has another timestamp after restart", write.key);
    }
    eprintln!("{} acknowledged writes all survived kill -9", acked.len());
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_keeps_data() {
    let dir = temp_data_dir("sigterm");
    let node = NodeProcess::start("n1", &dir, &[]);
    let client = http_client();
    let response = client.post(node.item_url()).json(&json!({"key": "k", "value": "AAE="})).send().await.unwrap();
    let timestamp = response.json::<Value>().await.unwrap()["timestamp"].as_u64().unwrap();
    let status = node.terminate();
    assert!(status.success(), "kvnode exited with {status} after SIGTERM");

    let node = NodeProcess::start("n1", &dir, &[]);
    let body: Value = client.get(format!("{}?key=k", node.item_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"key": "k", "value": "AAE=", "timestamp": timestamp}));
}
