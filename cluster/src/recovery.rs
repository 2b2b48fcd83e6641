//! Recovery after an unclean stop: repair from peers before answering reads.
//!
//! A replica counts toward quorums, so a replica that lost a write it
//! acknowledged breaks quorum intersection: a write held by this node and
//! one other owner, lost here, is invisible to a read quorum made of this
//! node and the third owner. Losing such writes takes a damaged disk (a
//! torn or flipped log tail, a sled file cut short) or a wiped data folder,
//! and the node cannot always tell: sled treats a damaged tail as a torn
//! write and drops it silently.
//!
//! So a node that did not stop cleanly trusts nothing it holds until it
//! has compared notes with the other owners. It writes a clean-shutdown
//! marker only after its stores checkpointed without error, and removes it
//! at start. Without the marker (a crash, a kill, a power loss, a damaged
//! folder), or when told with `--recover-from-peers` or a
//! [`RECOVER_MARKER`] file (a wiped or replaced disk), it starts
//! **recovering**: it takes writes (they
//! are durable and count toward W as usual) but refuses replica reads of a
//! key until it has finished one complete anti-entropy exchange with every
//! other owner of that key. Every write it acknowledged before is held by
//! another owner (W >= 2 of them took it), so after those exchanges it
//! holds at least that version again. Coordinators treat the refusal like
//! an unreachable owner and ask the others.
//!
//! A node that stopped cleanly trusts its disk on the next start, and so
//! does a new node (an empty folder, no flag): a brand-new cluster must be
//! able to start with some members missing. The flip side, as in every
//! Dynamo-style store: a node whose folder was wiped must be restarted with
//! `--recover-from-peers`, never as if it were new.

use crate::topology::Membership;
use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The marker's file name in the data folder.
const CLEAN_MARKER: &str = "clean-shutdown";
/// A file an operator leaves in an emptied data folder: the same as
/// `--recover-from-peers` for the next start (removed once the node's
/// stores exist again, when an unclean stop is recognised without it).
pub const RECOVER_MARKER: &str = "recover-from-peers";

/// Which peers this replica still has to exchange with before it answers
/// reads of the keys they co-own.
pub struct Recovery {
    membership: Arc<Membership>,
    pending: Mutex<BTreeSet<String>>,
    /// Fast path: true once `pending` is empty, for good.
    done: AtomicBool,
}

impl Recovery {
    /// Nothing to recover: every read is answered.
    pub fn done(membership: Arc<Membership>) -> Recovery {
        Recovery { membership, pending: Mutex::new(BTreeSet::new()), done: AtomicBool::new(true) }
    }

    /// Recovering from every other member of the view.
    pub fn from_all_peers(membership: Arc<Membership>) -> Recovery {
        let topology = membership.load();
        let me = membership.me();
        let pending: BTreeSet<String> =
            topology.members().into_iter().filter(|(id, _)| *id != me).map(|(id, _)| id.to_owned()).collect();
        let done = AtomicBool::new(pending.is_empty());
        Recovery { membership, pending: Mutex::new(pending), done }
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Peers not yet exchanged with, in order.
    pub fn pending(&self) -> Vec<String> {
        self.pending.lock().expect("recovery lock").iter().cloned().collect()
    }

    /// The co-owners of `key` this replica has not exchanged with yet; a
    /// read of `key` must wait for them. Empty once recovered.
    pub fn blocking(&self, key: &[u8]) -> Vec<String> {
        if self.is_done() {
            return Vec::new();
        }
        let pending = self.pending.lock().expect("recovery lock");
        let placement = self.membership.load().placement(key);
        placement.targets().into_iter().filter(|owner| pending.contains(owner)).collect()
    }

    /// One complete exchange with `peer` finished: everything it held is
    /// now held here too.
    pub fn exchanged_with(&self, peer: &str) {
        let mut pending = self.pending.lock().expect("recovery lock");
        if pending.remove(peer) && pending.is_empty() {
            self.done.store(true, Ordering::Release);
            tracing::info!("recovery done: every peer exchanged with; this replica answers reads again");
        }
    }
}

/// Whether the last stop was clean, and removes the marker (made durable)
/// so that a crash from now on is seen as one.
pub fn take_clean_marker(data_dir: &Path) -> io::Result<bool> {
    let marker = data_dir.join(CLEAN_MARKER);
    match std::fs::remove_file(&marker) {
        Ok(()) => {
            crate::storage::fsync::sync_dir(data_dir)?;
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Leaves the marker (durably): call only once every store checkpointed.
pub fn leave_clean_marker(data_dir: &Path) -> io::Result<()> {
    let marker = data_dir.join(CLEAN_MARKER);
    let file = std::fs::File::create(&marker)?;
    file.sync_all()?;
    crate::storage::fsync::sync_dir(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ring::Ring;

    fn names(nodes: &[&str]) -> Vec<String> {
        nodes.iter().map(|n| n.to_string()).collect()
    }

    fn membership(nodes: &[&str], n: usize) -> Arc<Membership> {
        Arc::new(Membership::from_seed_ids("a", &names(nodes), 16, n))
    }

    #[test]
    fn reads_wait_only_for_co_owners_not_yet_exchanged_with() {
        let ring = Ring::new(&names(&["a", "b", "c", "d", "e"]), 16);
        let recovery = Recovery::from_all_peers(membership(&["a", "b", "c", "d", "e"], 3));
        assert_eq!(recovery.pending(), vec!["b", "c", "d", "e"]);
        let key = (0..1000).map(|i| format!("k{i}")).find(|k| ring.owners(k.as_bytes(), 3).contains(&"a".into()));
        let key = key.expect("a owns some key");
        let others: Vec<String> = ring.owners(key.as_bytes(), 3).into_iter().filter(|o| o != "a").collect();
        assert_eq!(recovery.blocking(key.as_bytes()), others);
        recovery.exchanged_with(&others[0]);
        assert_eq!(recovery.blocking(key.as_bytes()), vec![others[1].clone()]);
        recovery.exchanged_with(&others[1]);
        assert!(recovery.blocking(key.as_bytes()).is_empty(), "both co-owners exchanged with");
        assert!(!recovery.is_done());
        for peer in ["b", "c", "d", "e"] {
            recovery.exchanged_with(peer);
        }
        assert!(recovery.is_done() && recovery.pending().is_empty());
    }

    #[test]
    fn a_lone_node_and_a_clean_start_have_nothing_to_recover() {
        assert!(Recovery::from_all_peers(membership(&["a"], 3)).is_done());
        assert!(Recovery::done(membership(&["a", "b"], 2)).blocking(b"k").is_empty());
    }

    #[test]
    fn the_marker_is_taken_once() {
        let dir = std::env::temp_dir().join(format!("recovery-marker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!take_clean_marker(&dir).unwrap(), "no marker on a first start");
        leave_clean_marker(&dir).unwrap();
        assert!(take_clean_marker(&dir).unwrap());
        assert!(!take_clean_marker(&dir).unwrap(), "taken: a crash from now on is unclean");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
