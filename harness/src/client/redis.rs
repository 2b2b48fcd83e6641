//! The [`Client`] of Redis with one primary and asynchronous replicas
//! (no failover), spoken in RESP over one TCP connection per operation.
//!
//! How our abstract operations map onto Redis (docs/SYSTEMS.md, "Redis"):
//! - Redis keeps no version of a key, so the adapter stores one with it: a
//!   put runs a script on the primary that takes the primary's clock
//!   (`TIME`, microseconds), raises it above the key's current version,
//!   and stores `VERSION:VALUE`. Scripts are replicated by their effects,
//!   so replicas hold the same string and a read names the write it saw.
//! - writes and strong reads go to the primary (`n1`, see [`Client::route`]);
//!   eventual reads to a replica, whatever it holds (Redis serves stale
//!   data from a replica cut off from its primary, by default);
//! - an eventual read with `min_timestamp` whose replica holds an older
//!   version is refused (`fail`), as a client keeping its session would;
//!   a read of nothing is passed on: without tombstones, "deleted" and "not
//!   replicated yet" look the same, and the session check judges it;
//! - delete: a script that deletes the key and returns its version (the
//!   primary's clock, above the deleted one);
//! - with `wait_replicas` > 0, each write is followed by `WAIT`; a write
//!   fewer replicas confirmed in time is recorded as unknown (`info`).
//!
//! Outcomes: a refused connection or an error reply is `fail` (the command
//! did not run); a write whose connection broke or timed out after it was
//! sent is `info`.

use super::{failed, outcome, Client, Op, Outcome};
use crate::history::EventType;
use kvapi::Consistency;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest reply line or bulk string read: a bound, not a limit any
/// harness value comes near.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Lua that sets `ts` to a new version of `KEYS[1]`: the primary's clock
/// in microseconds, raised above the version stored with the value.
macro_rules! next_version_lua {
    () => {
        "\
local t = redis.call('TIME')
local ts = tonumber(t[1]) * 1000000 + tonumber(t[2])
local prev = redis.call('GET', KEYS[1])
if prev then
  local p = tonumber(string.match(prev, '^(%d+):'))
  if p and p >= ts then ts = p + 1 end
end
"
    };
}

const PUT_SCRIPT: &str = concat!(
    next_version_lua!(),
    "\
local s = string.format('%.0f', ts)
redis.call('SET', KEYS[1], s .. ':' .. ARGV[1])
return s"
);

const DELETE_SCRIPT: &str = concat!(
    next_version_lua!(),
    "\
redis.call('DEL', KEYS[1])
return string.format('%.0f', ts)"
);

/// One RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Why a command has no reply, and whether it reached the server.
#[derive(Debug)]
enum Failure {
    /// Nothing was sent.
    NotSent(String),
    /// Sent; the answer was lost (the command may have run).
    Lost(String),
}

/// One connection to one Redis node.
struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    async fn open(base_url: &str) -> Result<Connection, Failure> {
        let address = base_url.strip_prefix("redis://").unwrap_or(base_url);
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                Ok(Connection { stream: BufReader::new(stream) })
            }
            Err(error) => Err(Failure::NotSent(format!("connection refused: {error}"))),
        }
    }

    async fn command(&mut self, parts: &[&[u8]]) -> Result<Reply, Failure> {
        let mut request = format!("*{}\r\n", parts.len()).into_bytes();
        for part in parts {
            request.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            request.extend_from_slice(part);
            request.extend_from_slice(b"\r\n");
        }
        if let Err(error) = self.stream.get_mut().write_all(&request).await {
            return Err(Failure::Lost(format!("connection lost: {error}")));
        }
        read_reply(&mut self.stream).await.map_err(|error| Failure::Lost(format!("connection lost: {error}")))
    }
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = Vec::new();
    let read = (&mut *stream).take(MAX_REPLY_BYTES as u64).read_until(b'\n', &mut line).await?;
    if read == 0 || !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "reply cut short"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "reply line not UTF-8"))
}

fn protocol_error(detail: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, detail)
}

/// One reply; arrays nest (boxed, since async recursion needs it).
fn read_reply(
    stream: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(stream).await?;
        let (kind, rest) = line.split_at(if line.is_empty() { 0 } else { 1 });
        let length = || rest.parse::<i64>().map_err(|_| protocol_error(format!("bad length in {line:?}")));
        match kind {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => Ok(Reply::Integer(length()?)),
            "$" => {
                let n = length()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = usize::try_from(n).map_err(|_| protocol_error(format!("bad length {n}")))?;
                if n > MAX_REPLY_BYTES {
                    return Err(protocol_error(format!("a {n}-byte reply is over the bound")));
                }
                let mut data = vec![0; n + 2];
                stream.read_exact(&mut data).await?;
                data.truncate(n);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let n = length()?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                let mut items = Vec::new();
                for _ in 0..n.min(1 << 20) {
                    items.push(read_reply(stream).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(protocol_error(format!("not a RESP reply: {line:?}"))),
        }
    })
}

/// `VERSION:VALUE` as the adapter stores it.
fn split_version(stored: &[u8]) -> Option<(u64, Vec<u8>)> {
    let colon = stored.iter().position(|b| *b == b':')?;
    let version = std::str::from_utf8(&stored[..colon]).ok()?.parse().ok()?;
    Some((version, stored[colon + 1..].to_vec()))
}

/// A client of one Redis primary (`n1`) and its replicas.
#[derive(Clone)]
pub struct RedisClient {
    timeout: Duration,
    /// Replicas each write waits for (`WAIT`); 0 for none.
    wait_replicas: u64,
    wait_timeout: Duration,
}

impl RedisClient {
    pub fn new(timeout: Duration) -> RedisClient {
        RedisClient { timeout, wait_replicas: 0, wait_timeout: Duration::ZERO }
    }

    /// Each write then waits for `replicas` replicas, at most `limit`.
    pub fn with_wait(mut self, replicas: u64, limit: Duration) -> RedisClient {
        self.wait_replicas = replicas;
        self.wait_timeout = limit;
        self
    }

    async fn call(&self, base_url: &str, op: &Op) -> Outcome {
        let started = Instant::now();
        let unknown = if op.is_write() { EventType::Info } else { EventType::Fail };
        let mut result = match tokio::time::timeout(self.timeout, self.perform(base_url, op)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(Failure::NotSent(error))) => failed(EventType::Fail, error),
            Ok(Err(Failure::Lost(error))) => failed(unknown, error),
            Err(_) => failed(unknown, format!("timeout after {:?}", self.timeout)),
        };
        result.latency = started.elapsed();
        result
    }

    async fn perform(&self, base_url: &str, op: &Op) -> Result<Outcome, Failure> {
        let mut connection = Connection::open(base_url).await?;
        match op {
            Op::Put { ttl_secs: Some(_), .. } => {
                Ok(failed(EventType::Fail, "the Redis adapter stores no TTL: not sent".to_owned()))
            }
            Op::Put { key, value, ttl_secs: None } => {
                let reply = connection.command(&[b"EVAL", PUT_SCRIPT.as_bytes(), b"1", key.as_bytes(), value]).await?;
                self.written(&mut connection, reply).await
            }
            Op::Delete { key } => {
                let reply = connection.command(&[b"EVAL", DELETE_SCRIPT.as_bytes(), b"1", key.as_bytes()]).await?;
                self.written(&mut connection, reply).await
            }
            Op::Get { key, consistency, min_timestamp } => {
                let reply = connection.command(&[b"GET", key.as_bytes()]).await?;
                let min = if *consistency == Consistency::Eventual { *min_timestamp } else { None };
                Ok(read(reply, min))
            }
        }
    }

    /// The outcome of a write script's reply, after `WAIT` if asked.
    async fn written(&self, connection: &mut Connection, reply: Reply) -> Result<Outcome, Failure> {
        let version = match reply {
            Reply::Bulk(Some(text)) => std::str::from_utf8(&text).ok().and_then(|t| t.parse::<u64>().ok()),
            Reply::Error(error) => return Ok(failed(EventType::Fail, error)),
            other => return Ok(failed(EventType::Info, format!("unexpected reply {other:?}"))),
        };
        let Some(version) = version else {
            return Ok(failed(EventType::Info, "the script returned no version".to_owned()));
        };
        let done = Outcome { timestamp: Some(version), ..outcome(EventType::Ok) };
        if self.wait_replicas == 0 {
            return Ok(done);
        }
        let replicas = self.wait_replicas.to_string();
        let limit = self.wait_timeout.as_millis().to_string();
        match connection.command(&[b"WAIT", replicas.as_bytes(), limit.as_bytes()]).await? {
            Reply::Integer(n) if n >= self.wait_replicas as i64 => Ok(done),
            Reply::Integer(n) => {
                Ok(failed(EventType::Info, format!("WAIT: {n} of {} replicas confirmed in time", self.wait_replicas)))
            }
            other => Ok(failed(EventType::Info, format!("WAIT answered {other:?}"))),
        }
    }
}

/// The outcome of a `GET`, refusing a version below `min` (a session's).
fn read(reply: Reply, min: Option<u64>) -> Outcome {
    match reply {
        Reply::Bulk(None) => Outcome { read: Some(None), ..outcome(EventType::Ok) },
        Reply::Bulk(Some(stored)) => match split_version(&stored) {
            Some((version, _)) if min.is_some_and(|min| version < min) => failed(
                EventType::Fail,
                format!("replica behind the session: version {version} < min_timestamp {}", min.unwrap_or(0)),
            ),
            Some((version, value)) => {
                Outcome { read: Some(Some(value)), timestamp: Some(version), ..outcome(EventType::Ok) }
            }
            None => failed(EventType::Fail, "the key holds a value the harness did not write".to_owned()),
        },
        Reply::Error(error) => failed(EventType::Fail, error),
        other => failed(EventType::Fail, format!("unexpected reply {other:?}")),
    }
}

impl Client for RedisClient {
    fn invoke(&self, base_url: &str, op: &Op) -> impl Future<Output = Outcome> + Send {
        self.call(base_url, op)
    }

    /// Writes and strong reads to the primary (`n1`); an eventual read to
    /// the replica picked, or, when the primary was picked, to a replica
    /// chosen by the key (so each key's reads spread over the replicas).
    fn route<'a>(&self, picked: &'a str, op: &Op, nodes: &'a [String]) -> &'a str {
        let Some((primary, replicas)) = nodes.split_first() else { return picked };
        let eventual = matches!(op, Op::Get { consistency: Consistency::Eventual, .. });
        if !eventual || replicas.is_empty() {
            return primary;
        }
        if picked != primary {
            return picked;
        }
        let hash = crate::hash::fnv1a(op.key().as_bytes());
        &replicas[(hash % replicas.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_carry_their_version() {
        assert_eq!(split_version(b"17:a:b"), Some((17, b"a:b".to_vec())));
        assert_eq!(split_version(b"17:"), Some((17, Vec::new())));
        assert_eq!(split_version(b"x:1"), None);
        assert_eq!(split_version(b"plain"), None);
    }

    #[test]
    fn a_replica_behind_the_session_is_refused_and_nothing_is_passed_on() {
        let stored = Reply::Bulk(Some(b"100:v".to_vec()));
        let fresh = read(stored.clone(), Some(100));
        assert_eq!((fresh.kind, fresh.timestamp, fresh.read), (EventType::Ok, Some(100), Some(Some(b"v".to_vec()))));
        assert_eq!(read(stored, Some(101)).kind, EventType::Fail);
        assert_eq!(read(Reply::Bulk(None), Some(101)).read, Some(None));
        assert_eq!(read(Reply::Bulk(Some(b"junk".to_vec())), None).kind, EventType::Fail);
        assert_eq!(read(Reply::Error("LOADING".into()), None).kind, EventType::Fail);
    }

    #[test]
    fn writes_and_strong_reads_go_to_the_primary() {
        let nodes: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let client = RedisClient::new(Duration::from_secs(1));
        let put = Op::Put { key: "k".into(), value: vec![1], ttl_secs: None };
        assert_eq!(client.route("n3", &put, &nodes), "n1");
        let strong = Op::Get { key: "k".into(), consistency: Consistency::Strong, min_timestamp: None };
        assert_eq!(client.route("n2", &strong, &nodes), "n1");
        let eventual = Op::Get { key: "k".into(), consistency: Consistency::Eventual, min_timestamp: None };
        assert_eq!(client.route("n3", &eventual, &nodes), "n3");
        assert_ne!(client.route("n1", &eventual, &nodes), "n1");
        assert_eq!(client.route("n1", &eventual, &nodes[..1]), "n1");
    }
}
