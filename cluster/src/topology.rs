//! Where keys live under a membership view (docs/MEMBERSHIP.md): a key's
//! owners now and once the changes under way are done, the fence that
//! keeps a coordinator with another placement of a key out, and the
//! node's shared, swappable copy of it all.
//!
//! Why a placement is two sets: while a member joins or leaves, the
//! ranges it gains or gives up have owners in the current ring (normal and
//! leaving members) and others in the next ring (normal and joining). A
//! coordinator that writes W of each and reads R of each meets, in one of
//! the two sets, every quorum of a coordinator one step behind or ahead of
//! it, so the move needs no global switch moment.
//!
//! Why a fence: the step argument holds only between neighbouring views.
//! Each coordinator call carries a hash of the key's placement in the
//! caller's view; a replica whose own placement of the key differs refuses
//! the call (the caller merges views and retries). A move streams data
//! only once every member holds its announcement, so from then on a call
//! made in the view before the announcement is refused everywhere.

use crate::ring::{hash64, Ring, DEFAULT_DEPTH};
use crate::view::{Entry, Status, View, ViewDigest};
use std::sync::{Arc, RwLock};

/// A key's owners now, and once the changes under way are done; the same
/// set twice when its range does not move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// In preference order.
    pub now: Vec<String>,
    pub next: Vec<String>,
}

impl Placement {
    pub fn is_moving(&self) -> bool {
        !same_members(&self.now, &self.next)
    }

    /// The sets a quorum must be reached in: one, or both while moving.
    pub fn sets(&self) -> Vec<&[String]> {
        match self.is_moving() {
            true => vec![&self.now, &self.next],
            false => vec![&self.now],
        }
    }

    /// Every owner in either set, the current ones first.
    pub fn targets(&self) -> Vec<String> {
        let mut all = self.now.clone();
        all.extend(self.next.iter().filter(|id| !self.now.contains(id)).cloned());
        all
    }

    /// The hash a call carries and a replica compares: equal when both
    /// sets have the same members, whatever their order. Never 0, which a
    /// call uses to say "not fenced" (repairs, hints).
    pub fn fence(&self) -> u64 {
        fence(set_hash(self.now.iter().map(String::as_str)), set_hash(self.next.iter().map(String::as_str)))
    }
}

/// A set of members as one number, whatever their order: the sum of their
/// ids' hashes. Why a sum and not a sorted list: a put computes its key's
/// fence four times (the coordinator's, then each replica's), and this
/// needs no allocation. Two different sets of the same size collide only
/// if their hashes happen to sum alike (about 2^-64).
fn set_hash<'a>(ids: impl Iterator<Item = &'a str>) -> u64 {
    ids.fold(0u64, |sum, id| sum.wrapping_add(hash64(id.as_bytes())))
}

/// The fence of a placement from its two sets' hashes; never 0.
fn fence(now: u64, next: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&now.to_le_bytes());
    bytes[8..].copy_from_slice(&next.to_le_bytes());
    hash64(&bytes).max(1)
}

fn same_members(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|id| b.contains(id))
}

/// A view with its two rings, built once per view change.
#[derive(Debug)]
pub struct Topology {
    view: View,
    /// The view's digest, for gossip: computed once per change.
    digest: ViewDigest,
    current: Option<Ring>,
    next: Option<Ring>,
    n: usize,
}

impl Topology {
    pub fn new(view: View, n: usize) -> Topology {
        assert!(n > 0, "N is at least 1");
        let current = view.current_ring(DEFAULT_DEPTH.max(n));
        let next = view.next_ring(DEFAULT_DEPTH.max(n));
        let digest = view.digest();
        Topology { view, digest, current, next, n }
    }

    pub fn digest(&self) -> &ViewDigest {
        &self.digest
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// `key`'s owners. Before any member is normal (a cluster's first
    /// joiner), the next ring stands for the current one.
    pub fn placement(&self, key: &[u8]) -> Placement {
        let owners = |ring: &Option<Ring>| ring.as_ref().map(|ring| ring.owners(key, self.n)).unwrap_or_default();
        let next = owners(&self.next);
        let now = match &self.current {
            Some(_) => owners(&self.current),
            None => next.clone(),
        };
        Placement { now, next }
    }

    /// `self.placement(key).fence()`, without building the placement:
    /// what a replica compares on every fenced call.
    pub fn fence(&self, key: &[u8]) -> u64 {
        // The rings' tables are at least N deep (see `Topology::new`).
        let owners = |ring: &Option<Ring>| {
            ring.as_ref().map_or(0, |ring| {
                set_hash(ring.owner_indices(key).iter().take(self.n).map(|&index| ring.node_name(index)))
            })
        };
        let next = owners(&self.next);
        let now = if self.current.is_some() { owners(&self.current) } else { next };
        fence(now, next)
    }

    /// Whether `member` owns `key` now or next, without allocating.
    pub fn is_owner(&self, key: &[u8], member: &str) -> bool {
        // The rings' tables are at least N deep (see `Topology::new`).
        let owns = |ring: &Option<Ring>| {
            ring.as_ref().is_some_and(|ring| {
                ring.owner_indices(key).iter().take(self.n).any(|&index| ring.node_name(index) == member)
            })
        };
        owns(&self.current) || owns(&self.next)
    }

    /// Members that are in a ring (not left), with their entries, by id.
    pub fn members(&self) -> Vec<(&str, &Entry)> {
        self.view.entries().filter(|(_, entry)| entry.status != Status::Left).collect()
    }

    /// Whether any member is joining or leaving.
    pub fn is_changing(&self) -> bool {
        self.view.entries().any(|(_, entry)| matches!(entry.status, Status::Joining | Status::Leaving))
    }

    /// The current ring, for allocating a joiner's tokens.
    pub fn current_ring(&self) -> Option<&Ring> {
        self.current.as_ref()
    }
}

/// This node's copy of the topology: read on every request, replaced
/// whole when gossip or the node itself changes the view.
#[derive(Debug)]
pub struct Membership {
    me: String,
    topology: RwLock<Arc<Topology>>,
}

impl Membership {
    pub fn new(me: &str, view: View, n: usize) -> Membership {
        Membership { me: me.to_owned(), topology: RwLock::new(Arc::new(Topology::new(view, n))) }
    }

    /// A fixed cluster from a seed list (hashed tokens, everyone normal).
    pub fn from_seed_ids(me: &str, ids: &[String], vnodes: usize, n: usize) -> Membership {
        let members: Vec<(String, String)> = ids.iter().map(|id| (id.clone(), String::new())).collect();
        Membership::new(me, View::from_seeds(&members, vnodes), n)
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn load(&self) -> Arc<Topology> {
        self.topology.read().expect("topology lock").clone()
    }

    /// Takes what `other` knows that this node does not; returns whether
    /// the view changed. The rings are rebuilt outside the lock's reach of
    /// readers: they keep the old topology until the new one is swapped in.
    ///
    /// An entry at version 0 (a seed list's) of a member this view does
    /// not know is ignored, unless this view is empty (a joiner learning
    /// the cluster): every member's seed list names the same seeds, so
    /// such a member was started with `--peers` naming itself instead of
    /// joining with `--join`. Taken, it would own ranges it never
    /// received, with nothing handed over.
    pub fn merge(&self, other: &View) -> bool {
        let mut held = self.topology.write().expect("topology lock");
        let mut view = held.view.clone();
        let mut offered = View::default();
        let knows_the_cluster = view.entries().next().is_some();
        for (id, entry) in other.entries() {
            if knows_the_cluster && entry.version == 0 && view.entry(id).is_none() {
                tracing::warn!(member = %id, "ignored a member that is in no seed list here and never joined: start \
                    new members with --join");
                continue;
            }
            offered.offer(id, entry.clone());
        }
        if !view.merge(&offered) {
            return false;
        }
        tracing::trace!(me = %self.me, view = ?view.entries().map(|(id, e)| (id, e.version, e.status)).collect::<Vec<_>>(),
            "view changed");
        *held = Arc::new(Topology::new(view, held.n));
        true
    }

    /// Sets this node's own entry (a raised version is the caller's job:
    /// the view refuses an entry that is not newer).
    pub fn set_own(&self, entry: Entry) -> bool {
        let mut view = View::default();
        view.offer(&self.me, entry);
        self.merge(&view)
    }

    /// Sets another member's entry: an operator's removal of a dead member.
    pub fn set_other(&self, id: &str, entry: Entry) -> bool {
        let mut view = View::default();
        view.offer(id, entry);
        self.merge(&view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::hashed_tokens;

    fn ids(count: usize) -> Vec<String> {
        (1..=count).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn a_fixed_cluster_places_keys_as_its_ring_does() {
        let membership = Membership::from_seed_ids("n1", &ids(5), 16, 3);
        let ring = Ring::new(&ids(5), 16);
        let topology = membership.load();
        for i in 0..500 {
            let key = format!("k{i}");
            let placement = topology.placement(key.as_bytes());
            assert_eq!(placement.now, ring.owners(key.as_bytes(), 3));
            assert!(!placement.is_moving());
            assert_eq!(placement.sets().len(), 1);
            for id in ids(5) {
                assert_eq!(topology.is_owner(key.as_bytes(), &id), placement.now.contains(&id));
            }
        }
    }

    /// A joiner moves some keys only; a moving key's fence differs from its
    /// fence before the announcement, a still key's does not.
    #[test]
    fn a_joiner_moves_some_ranges_and_changes_only_their_fences() {
        let membership = Membership::from_seed_ids("n1", &ids(4), 16, 3);
        let before = membership.load();
        let joining =
            Entry { version: 1, status: Status::Joining, addr: "h:1".into(), tokens: hashed_tokens("n9", 16) };
        assert!(membership.set_other("n9", joining.clone()));
        assert!(!membership.set_other("n9", joining.clone()), "the same entry again changes nothing");
        let during = membership.load();
        let (mut moving, mut still) = (0, 0);
        for i in 0..2_000 {
            let key = format!("k{i}");
            let (old, new) = (before.placement(key.as_bytes()), during.placement(key.as_bytes()));
            assert_eq!(old.now, new.now, "reads use the current ring until the switch");
            match new.is_moving() {
                true => {
                    moving += 1;
                    assert!(new.next.contains(&"n9".to_owned()));
                    assert_ne!(old.fence(), new.fence());
                    assert_eq!(new.targets().len(), 4);
                }
                false => {
                    still += 1;
                    assert_eq!(old.fence(), new.fence());
                }
            }
        }
        assert!(moving > 200 && still > 200, "moving {moving}, still {still}");
        let normal = Entry { version: 2, status: Status::Normal, ..joining };
        membership.set_other("n9", normal);
        let after = membership.load();
        assert!(!after.is_changing());
        assert!((0..500).all(|i| !after.placement(format!("k{i}").as_bytes()).is_moving()));
    }

    /// A node started with a seed list naming itself, beside a running
    /// cluster, is not taken in: it never joined.
    #[test]
    fn a_member_that_never_joined_is_ignored() {
        let membership = Membership::from_seed_ids("n1", &ids(3), 16, 3);
        let stranger = Membership::from_seed_ids("n9", &[ids(3), vec!["n9".to_owned()]].concat(), 16, 3);
        assert!(!membership.merge(stranger.load().view()), "nothing new but the stranger, which is ignored");
        assert!(membership.load().view().entry("n9").is_none());
        let joined = Entry { version: 1, status: Status::Joining, addr: "h:1".into(), tokens: hashed_tokens("n9", 16) };
        assert!(membership.set_other("n9", joined), "a member that announced a join is taken");
    }

    #[test]
    fn a_cluster_of_joiners_only_uses_its_next_ring() {
        let membership = Membership::new("n1", View::default(), 3);
        let joining = Entry { version: 1, status: Status::Joining, addr: "h:1".into(), tokens: hashed_tokens("n1", 4) };
        membership.set_own(joining);
        let placement = membership.load().placement(b"k");
        assert_eq!(placement.now, ["n1"]);
        assert!(!placement.is_moving());
    }

    /// The fence a replica computes without a placement is the placement's
    /// fence, in every state a view can be in (fixed, a join and a leave
    /// under way, joiners only); and the fence tells apart what it must:
    /// the same members in another order fence alike, other members or the
    /// same ones moved between `now` and `next` do not.
    #[test]
    fn the_fence_without_a_placement_is_the_placements() {
        let fixed = Membership::from_seed_ids("n1", &ids(5), 16, 3);
        let joining = Membership::from_seed_ids("n1", &ids(4), 16, 3);
        let entry = Entry { version: 1, status: Status::Joining, addr: "h:1".into(), tokens: hashed_tokens("n9", 16) };
        joining.set_other("n9", entry);
        let leaving = Membership::from_seed_ids("n1", &ids(5), 16, 3);
        let entry =
            leaving.load().view().entry("n2").cloned().map(|e| Entry { version: 9, status: Status::Leaving, ..e });
        leaving.set_other("n2", entry.expect("n2 is a member"));
        let alone = Membership::new("n1", View::default(), 3);
        alone.set_own(Entry {
            version: 1,
            status: Status::Joining,
            addr: "h:1".into(),
            tokens: hashed_tokens("n1", 4),
        });
        let mut moving = 0;
        for membership in [&fixed, &joining, &leaving, &alone] {
            let topology = membership.load();
            for i in 0..2_000 {
                let key = format!("k{i}");
                let placement = topology.placement(key.as_bytes());
                moving += usize::from(placement.is_moving());
                assert_eq!(topology.fence(key.as_bytes()), placement.fence(), "{key}: {placement:?}");
            }
        }
        assert!(moving > 400, "moving keys tried: {moving}");
        let set = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<String>>();
        let placement = |now: &[&str], next: &[&str]| Placement { now: set(now), next: set(next) };
        let fence = placement(&["n1", "n2", "n3"], &["n1", "n2", "n4"]).fence();
        assert_eq!(fence, placement(&["n3", "n1", "n2"], &["n4", "n2", "n1"]).fence());
        assert_ne!(fence, placement(&["n1", "n2", "n4"], &["n1", "n2", "n3"]).fence(), "now and next swapped");
        assert_ne!(fence, placement(&["n1", "n2", "n3"], &["n1", "n2", "n3"]).fence());
        assert_ne!(fence, placement(&["n1", "n2"], &["n1", "n2", "n4"]).fence());
        assert_ne!(placement(&[], &[]).fence(), 0, "0 means not fenced");
    }
}
