//! Gossip of the membership view: any node tells any other what it holds,
//! so a change made at one node reaches all without a coordinator, and any
//! node may be down meanwhile.
//!
//! One exchange is digest-first, as in Scuttlebutt: the initiator sends
//! each member's entry version and hash; the receiver merges what it was
//! sent, and answers with the entries the initiator lacks and its own
//! digest; the initiator merges those and, if the receiver still lacks
//! something, sends it in a second message. In a quiet cluster a round
//! carries digests only (about 20 bytes a member), not tokens.

use crate::topology::Membership;
use crate::transport::{Gossip, RpcError, Transport, ViewDigest};
use crate::view::View;
use std::time::Duration;

/// Each member's entry version and hash.
pub fn digest(view: &View) -> ViewDigest {
    view.digest()
}

/// The entries of `view` that a holder of `digest` lacks or holds older
/// (or, at an equal version, holds otherwise: the merge picks one).
pub fn missing_from(view: &View, digest: &ViewDigest) -> View {
    missing_given(view, &view.digest(), digest)
}

/// [`missing_from`] with `view`'s own digest already at hand (a topology
/// keeps it), so that a quiet exchange hashes no tokens.
fn missing_given(view: &View, own: &ViewDigest, digest: &ViewDigest) -> View {
    let mut missing = View::default();
    for (id, entry) in view.entries() {
        let lacks = match (digest.get(id), own.get(id)) {
            (None, _) | (_, None) => true,
            (Some(&(version, hash)), Some(&(_, own_hash))) => {
                entry.version > version || (entry.version == version && own_hash != hash)
            }
        };
        if lacks {
            missing.offer(id, entry.clone());
        }
    }
    missing
}

/// The receiver's side: merge what was sent, answer with what the sender
/// lacks.
pub fn answer(membership: &Membership, message: &Gossip) -> Gossip {
    membership.merge(&message.entries);
    let topology = membership.load();
    let entries = missing_given(topology.view(), topology.digest(), &message.digest);
    Gossip { digest: topology.digest().clone(), entries }
}

/// One exchange with `peer`, each message bounded by `timeout`. Returns
/// whether this node's view changed.
pub async fn exchange<T: Transport>(
    transport: &T,
    membership: &Membership,
    peer: &str,
    timeout: Duration,
) -> Result<bool, RpcError> {
    let held = membership.load();
    let opening = Gossip { digest: held.digest().clone(), entries: View::default() };
    let reply = tokio::time::timeout(timeout, transport.gossip(peer, opening))
        .await
        .map_err(|_| RpcError::Timeout(peer.to_owned()))??;
    let changed = membership.merge(&reply.entries);
    let now = membership.load();
    let lacking = missing_given(now.view(), now.digest(), &reply.digest);
    if lacking.entries().next().is_some() {
        let push = Gossip { digest: ViewDigest::new(), entries: lacking };
        // The answer to a push is ignored: everything it could hold was
        // in the reply above, or arrived at the peer since (the next round).
        let _ = tokio::time::timeout(timeout, transport.gossip(peer, push))
            .await
            .map_err(|_| RpcError::Timeout(peer.to_owned()))??;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Entry, Status};

    fn entry(version: u64, status: Status) -> Entry {
        Entry { version, status, addr: "h:1".into(), tokens: vec![version, 7] }
    }

    #[test]
    fn only_what_the_other_side_lacks_is_sent() {
        let mut mine = View::default();
        mine.offer("a", entry(2, Status::Normal));
        mine.offer("b", entry(1, Status::Normal));
        mine.offer("c", entry(1, Status::Joining));
        let mut theirs = View::default();
        theirs.offer("a", entry(3, Status::Leaving));
        theirs.offer("b", entry(1, Status::Normal));
        let missing = missing_from(&mine, &digest(&theirs));
        let ids: Vec<&str> = missing.entries().map(|(id, _)| id).collect();
        assert_eq!(ids, ["c"], "a is older here, b the same");
        // At an equal version a differing entry is sent; the merge decides.
        theirs.offer("c", entry(1, Status::Leaving));
        assert!(missing_from(&mine, &digest(&theirs)).entry("c").is_some());
        // After both sides merge what the other lacks, they agree.
        let mut both = mine.clone();
        both.merge(&missing_from(&theirs, &digest(&mine)));
        let mut other = theirs.clone();
        other.merge(&missing_from(&mine, &digest(&theirs)));
        assert_eq!(both, other);
        assert!(missing_from(&both, &digest(&other)).entries().next().is_none());
    }
}
