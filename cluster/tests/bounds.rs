//! The node's bounds, from outside: slow and half-sent requests, the
//! in-flight and connection limits, large batches between peers, a
//! separate internal listener, and a full disk in `/health`.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};

use std::time::{Duration, Instant};
use support::{free_port, http_client, plain_client, temp_data_dir, NodeProcess, TEST_SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(node: &NodeProcess) -> String {
    node.base_url.trim_start_matches("http://").to_owned()
}

/// Everything the server sends until it closes the connection, or `None`
/// if it is still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

/// The first response head the server sends, within `limit`.
async fn read_head(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let deadline = Instant::now() + limit;
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn half_sent_requests_and_idle_connections_are_closed_within_the_read_timeouts() {
    let dir = temp_data_dir("slow-clients");
    let flags = ["--storage", "memory", "--header-read-timeout-ms", "500", "--body-read-timeout-ms", "500"];
    let node = NodeProcess::start("n1", &dir, &flags);
    let limit = Duration::from_secs(5);

    // Half a head, then silence (slowloris).
    let mut half_head = TcpStream::connect(address(&node)).await.unwrap();
    half_head.write_all(b"POST /api/v1/item HTTP/1.1\r\nHost: n1\r\n").await.unwrap();
    let started = Instant::now();
    assert!(read_until_closed(&mut half_head, limit).await.is_some(), "a half-sent head holds its connection");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());

    // A whole head, then half the body it announced.
    let mut half_body = TcpStream::connect(address(&node)).await.unwrap();
    let head =
        "POST /api/v1/item HTTP/1.1\r\nHost: n1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    half_body.write_all(head.as_bytes()).await.unwrap();
    half_body.write_all(br#"{"key":"k","value":""#).await.unwrap();
    let answer = read_until_closed(&mut half_body, limit).await.expect("a half-sent body holds its connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A keep-alive connection left idle after a request.
    let mut idle = TcpStream::connect(address(&node)).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: n1\r\n\r\n").await.unwrap();
    let head = read_head(&mut idle, limit).await.expect("health answers");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(read_until_closed(&mut idle, limit).await.is_some(), "an idle keep-alive connection is kept for ever");
}

#[tokio::test]
async fn at_the_in_flight_limit_an_upload_is_refused_before_its_body_is_read() {
    let dir = temp_data_dir("permit-first");
    let node = NodeProcess::start("n1", &dir, &["--storage", "memory", "--max-inflight-requests", "1"]);
    let head = |length: usize| {
        format!("POST /api/v1/item HTTP/1.1\r\nHost: n1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n")
    };
    // The first upload holds the one permit while its body trickles in.
    let mut first = TcpStream::connect(address(&node)).await.unwrap();
    first.write_all(head(100).as_bytes()).await.unwrap();
    first.write_all(b"{").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The second announces 1 MB and sends none of it: refused at once.
    let mut second = TcpStream::connect(address(&node)).await.unwrap();
    second.write_all(head(1_000_000).as_bytes()).await.unwrap();
    let answer = read_head(&mut second, Duration::from_secs(3)).await.expect("refused without waiting for the body");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    // Once the first finishes, the permit is free again.
    let rest = br#""key":"k","value":"AAAA"}"#;
    first.write_all(&rest[..]).await.unwrap();
    first.write_all(&vec![b' '; 100 - 1 - rest.len()]).await.unwrap();
    let answer = read_head(&mut first, Duration::from_secs(5)).await.expect("the first upload is answered");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let response = plain_client().get(format!("{}?key=k", node.item_url())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let dir = temp_data_dir("connection-cap");
    let node = NodeProcess::start("n1", &dir, &["--storage", "memory", "--max-connections", "2"]);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(address(&node)).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: n1\r\n\r\n").await.unwrap();
        assert!(read_head(&mut stream, Duration::from_secs(3)).await.is_some());
        held.push(stream);
    }
    // The kernel completes the handshake (backlog), but the node does not
    // serve a third connection while two are open.
    let mut third = TcpStream::connect(address(&node)).await.unwrap();
    third.write_all(b"GET /health HTTP/1.1\r\nHost: n1\r\n\r\n").await.unwrap();
    assert!(read_head(&mut third, Duration::from_millis(800)).await.is_none(), "served over the cap");
    drop(held.pop());
    let head = read_head(&mut third, Duration::from_secs(3)).await.expect("served once a slot is free");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// 600 puts of 1 MiB at once through one coordinator: its batches to each
/// peer are cut by bytes, so none exceeds the peer's body limit (512
/// writes of 1 MiB in one batch would, and all of them would fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_puts_of_one_mib_through_one_node_all_succeed() {
    // Generous timeouts and failure detection: 600 uploads of 1.4 MB share
    // two cores with three debug-built nodes, and what is tested here is
    // the size of the batches, not the node's speed.
    let flags = [
        "--storage",
        "memory",
        "--request-timeout-ms",
        "120000",
        "--rpc-timeout-ms",
        "60000",
        "--body-read-timeout-ms",
        "120000",
        "--header-read-timeout-ms",
        "120000",
        "--failure-timeout-ms",
        "120000",
    ];
    let cluster = support::LocalCluster::start("big-batches", 3, &flags);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
    let value = base64_of_one_mib();
    let url = format!("{}/api/v1/item", cluster.url(0));
    let puts = (0..600).map(|i| {
        let body = format!(r#"{{"key":"big-{i}","value":"{value}"}}"#);
        let request = client.post(&url).header("content-type", "application/json").body(body);
        tokio::spawn(async move {
            match request.send().await {
                Ok(response) => (response.status(), response.text().await.unwrap_or_default()),
                Err(error) => (StatusCode::IM_A_TEAPOT, format!("{error:?}")),
            }
        })
    });
    let outcomes = futures::future::join_all(puts).await;
    let failed: Vec<_> = outcomes.into_iter().map(Result::unwrap).filter(|(status, _)| *status != 201).collect();
    assert!(failed.is_empty(), "{} of 600 failed, e.g. {:?}", failed.len(), failed.first());
}

fn base64_of_one_mib() -> String {
    // 1 MiB of 0xAB: base64 of 3 bytes "q6ur" repeated, then the tail.
    let bytes = 1 << 20;
    let mut encoded = "q6ur".repeat(bytes / 3);
    encoded.push_str("qw==");
    encoded
}

#[tokio::test]
async fn with_an_internal_listener_the_client_port_serves_no_internal_route() {
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let internal_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> =
        internal_ports.iter().enumerate().map(|(i, p)| format!("n{}=127.0.0.1:{p}", i + 1)).collect();
    let peers = peers.join(",");
    let nodes: Vec<NodeProcess> = (0..3)
        .map(|i| {
            let internal = format!("127.0.0.1:{}", internal_ports[i]);
            let flags = ["--storage", "memory", "--peers", &peers, "--internal-listen", &internal];
            let dir = temp_data_dir(&format!("internal-listen-n{}", i + 1));
            NodeProcess::start_on(&format!("n{}", i + 1), &format!("127.0.0.1:{}", client_ports[i]), &dir, &flags)
        })
        .collect();
    let client = http_client();
    // The replica protocol works over the internal addresses: W=2 is met.
    let put = client.post(nodes[0].item_url()).json(&json!({"key": "k", "value": "AAEC"})).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::CREATED, "{}", put.text().await.unwrap());
    let strong = client.get(format!("{}?key=k&consistency=strong", nodes[1].item_url())).send().await.unwrap();
    assert_eq!(strong.status(), StatusCode::OK);
    // Even with the secret, the client port has no internal route...
    let ping = |port: u16| client.post(format!("http://127.0.0.1:{port}/internal/v1/ping")).send();
    assert_eq!(ping(client_ports[0]).await.unwrap().status(), StatusCode::NOT_FOUND);
    // ...and the internal port has no client route.
    assert_eq!(ping(internal_ports[0]).await.unwrap().status(), StatusCode::NO_CONTENT);
    let item = client.get(format!("http://127.0.0.1:{}/api/v1/item?key=k", internal_ports[0])).send().await.unwrap();
    assert_eq!(item.status(), StatusCode::NOT_FOUND);
    assert!(TEST_SECRET.len() >= 16);
}

#[tokio::test]
async fn health_says_503_with_the_reason_when_the_disk_is_nearly_full() {
    let dir = temp_data_dir("disk-full");
    let node = NodeProcess::start("n1", &dir, &["--min-free-disk-bytes", &u64::MAX.to_string()]);
    let response = plain_client().get(format!("{}/health", node.base_url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "failed");
    assert!(body["reason"].as_str().unwrap().contains("disk nearly full"), "{body}");
    let dir = temp_data_dir("disk-fine");
    let node = NodeProcess::start("n1", &dir, &[]);
    let response = plain_client().get(format!("{}/health", node.base_url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "64 MiB free by default is available here");
}
