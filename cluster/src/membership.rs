//! Who is in the cluster and who is believed alive.
//!
//! Members come from the membership view (`crate::topology`), which starts
//! from the seed list and changes by gossip. Liveness comes from heartbeats: a peer that answered a ping within the
//! failure timeout is believed alive. Coordinators skip peers believed down
//! (and leave hints for them); a wrong belief costs latency, never safety,
//! because every decision still waits for real quorum answers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// `host:port` of its HTTP listener.
    pub addr: String,
}

/// Parses `ID=HOST:PORT` seed entries.
pub fn parse_peers(peers: &[String]) -> Result<Vec<Member>, String> {
    peers
        .iter()
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| match entry.trim().split_once('=') {
            Some((id, addr)) if !id.is_empty() && is_host_port(addr) => {
                Ok(Member { id: id.to_owned(), addr: addr.to_owned() })
            }
            _ => Err(format!("peer {entry:?} is not ID=HOST:PORT")),
        })
        .collect()
}

/// `HOST:PORT` that makes a valid URI authority (what internal calls use).
fn is_host_port(addr: &str) -> bool {
    let authority = addr.parse::<axum::http::uri::Authority>();
    authority.is_ok_and(|authority| authority.port_u16().is_some() && !addr.contains('@'))
}

/// Heartbeat bookkeeping: the last time each peer answered.
#[derive(Debug)]
pub struct FailureDetector {
    timeout: Duration,
    last_answer: Mutex<HashMap<String, Instant>>,
}

impl FailureDetector {
    /// Every peer starts believed alive (as if it had just answered), so a
    /// cluster starting in any order serves at once.
    pub fn new(peers: impl IntoIterator<Item = String>, timeout: Duration, now: Instant) -> FailureDetector {
        let last_answer = peers.into_iter().map(|peer| (peer, now)).collect();
        FailureDetector { timeout, last_answer: Mutex::new(last_answer) }
    }

    /// A peer not known yet (a member that joined) is added.
    pub fn record_answer(&self, peer: &str, now: Instant) {
        let mut last_answer = self.last_answer.lock().expect("detector lock");
        let last = last_answer.entry(peer.to_owned()).or_insert(now);
        *last = (*last).max(now);
    }

    /// Unknown ids (this node itself) are always alive.
    pub fn is_alive(&self, peer: &str, now: Instant) -> bool {
        match self.last_answer.lock().expect("detector lock").get(peer) {
            Some(last) => now.saturating_duration_since(*last) <= self.timeout,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_or_fail_clearly() {
        let peers = parse_peers(&["n1=127.0.0.1:7001".into(), " n2=kv-n2:7000 ".into(), "".into()]).unwrap();
        assert_eq!(peers[1], Member { id: "n2".into(), addr: "kv-n2:7000".into() });
        assert!(parse_peers(&["n1".into()]).unwrap_err().contains("ID=HOST:PORT"));
        assert!(parse_peers(&["=h:1".into()]).is_err());
        for bad in ["n1=host:", "n1=host:port", "n1=ho st:7000", "n1=user@host:7000", "n1=host:70000"] {
            assert!(parse_peers(&[bad.into()]).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn silence_longer_than_the_timeout_means_down() {
        let start = Instant::now();
        let detector = FailureDetector::new(["n2".to_owned()], Duration::from_secs(1), start);
        assert!(detector.is_alive("n2", start + Duration::from_millis(900)));
        assert!(!detector.is_alive("n2", start + Duration::from_millis(1100)));
        detector.record_answer("n2", start + Duration::from_millis(1050));
        assert!(detector.is_alive("n2", start + Duration::from_millis(1100)));
        assert!(detector.is_alive("me", start + Duration::from_secs(99)));
    }
}
