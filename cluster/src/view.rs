//! The membership view (docs/MEMBERSHIP.md): each member's entry, merged
//! entry by entry, and the two rings a view gives. Pure: `topology` places
//! keys by it, gossip spreads it.
//!
//! Why entry by entry: only a member raises its own entry's version (an
//! operator's removal of a dead member is the one exception, written with a
//! higher version), so the merge is a per-entry maximum, which is
//! commutative, associative and idempotent: views gossiped in any order,
//! any number of times, through any node, end the same, and a stale view
//! loses wherever it is stale.

use crate::ring::{hash64, hashed_tokens, Ring};
use std::collections::BTreeMap;

/// Per member id, its entry's version and hash: what gossip sends first.
pub type ViewDigest = BTreeMap<String, (u64, u64)>;

/// Where a member is in its life; ordered as it moves on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Announced; takes writes for the ranges it will own, answers no reads.
    Joining,
    Normal,
    /// Handing its ranges over; still an owner until they are held elsewhere.
    Leaving,
    /// Gone; kept so that an older entry cannot bring it back.
    Left,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// Raised by the member itself at each change of its entry.
    pub version: u64,
    pub status: Status,
    pub addr: String,
    pub tokens: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    entries: BTreeMap<String, Entry>,
}

impl View {
    /// The view of a seed list: every member normal, at version 0, with
    /// hashed tokens (the placement of a cluster started from `--peers`).
    pub fn from_seeds(members: &[(String, String)], vnodes: usize) -> View {
        let entries = members
            .iter()
            .map(|(id, addr)| {
                let entry =
                    Entry { version: 0, status: Status::Normal, addr: addr.clone(), tokens: hashed_tokens(id, vnodes) };
                (id.clone(), entry)
            })
            .collect();
        View { entries }
    }

    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Each member's entry version and hash (see `crate::gossip`). A
    /// topology computes it once per view change: at 1,200 members of 256
    /// tokens it is 2.5 MB of hashing.
    pub fn digest(&self) -> ViewDigest {
        self.entries.iter().map(|(id, entry)| (id.clone(), (entry.version, entry.hash()))).collect()
    }

    /// Every entry, by member id.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> + '_ {
        self.entries.iter().map(|(id, entry)| (id.as_str(), entry))
    }

    /// Sets `id`'s entry if it is newer than the one held; returns whether
    /// it was.
    pub fn offer(&mut self, id: &str, entry: Entry) -> bool {
        match self.entries.get(id) {
            Some(held) if !newer(&entry, held) => false,
            _ => {
                self.entries.insert(id.to_owned(), entry);
                true
            }
        }
    }

    /// Takes every entry of `other` that is newer than this view's;
    /// returns whether anything changed.
    pub fn merge(&mut self, other: &View) -> bool {
        let mut changed = false;
        for (id, entry) in &other.entries {
            changed |= self.offer(id, entry.clone());
        }
        changed
    }

    /// The ring reads use: normal and leaving members (`None` if empty).
    pub fn current_ring(&self, depth: usize) -> Option<Ring> {
        self.ring(depth, |status| matches!(status, Status::Normal | Status::Leaving))
    }

    /// The ring once every change under way is done: normal and joining
    /// members (`None` if empty).
    pub fn next_ring(&self, depth: usize) -> Option<Ring> {
        self.ring(depth, |status| matches!(status, Status::Normal | Status::Joining))
    }

    fn ring(&self, depth: usize, member: impl Fn(Status) -> bool) -> Option<Ring> {
        let members: Vec<(String, Vec<u64>)> = self
            .entries
            .iter()
            .filter(|(_, entry)| member(entry.status) && !entry.tokens.is_empty())
            .map(|(id, entry)| (id.clone(), entry.tokens.clone()))
            .collect();
        (!members.is_empty()).then(|| Ring::from_tokens(&members, depth))
    }
}

impl Entry {
    /// A hash of everything in the entry.
    pub fn hash(&self) -> u64 {
        let mut bytes = Vec::with_capacity(self.addr.len() + 16 + self.tokens.len() * 8);
        bytes.extend_from_slice(&self.version.to_le_bytes());
        bytes.push(self.status as u8);
        bytes.extend_from_slice(&(self.addr.len() as u64).to_le_bytes());
        bytes.extend_from_slice(self.addr.as_bytes());
        for token in &self.tokens {
            bytes.extend_from_slice(&token.to_le_bytes());
        }
        hash64(&bytes)
    }
}

/// Whether `offered` replaces `held`: a higher version, or at the same
/// version (two writers of one entry, which only an operator's removal
/// makes) the greater entry, so that every node picks the same one.
fn newer(offered: &Entry, held: &Entry) -> bool {
    offered > held
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn seeds(count: usize) -> View {
        let members: Vec<(String, String)> = (1..=count).map(|i| (format!("n{i}"), format!("h{i}:7000"))).collect();
        View::from_seeds(&members, 8)
    }

    fn random_view(rng: &mut StdRng) -> View {
        let mut view = View::default();
        for _ in 0..rng.random_range(0..6) {
            let id = format!("n{}", rng.random_range(1..5));
            let status = [Status::Joining, Status::Normal, Status::Leaving, Status::Left][rng.random_range(0..4)];
            let entry =
                Entry { version: rng.random_range(0..4), status, addr: "h:1".into(), tokens: vec![rng.random()] };
            view.entries.insert(id, entry);
        }
        view
    }

    fn merged(a: &View, b: &View) -> View {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    /// Gossip's order and repetition do not matter.
    #[test]
    fn merging_is_commutative_associative_and_idempotent() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..2_000 {
            let (a, b, c) = (random_view(&mut rng), random_view(&mut rng), random_view(&mut rng));
            assert_eq!(merged(&a, &b), merged(&b, &a));
            assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            assert_eq!(merged(&a, &a), a);
            let mut again = merged(&a, &b);
            assert!(!again.merge(&b), "a second merge of the same view changes nothing");
        }
    }

    #[test]
    fn a_stale_entry_loses() {
        let mut view = seeds(3);
        let leaving = Entry { version: 2, status: Status::Leaving, ..view.entry("n2").unwrap().clone() };
        assert!(view.offer("n2", leaving.clone()));
        let stale = Entry { version: 1, status: Status::Normal, ..leaving.clone() };
        assert!(!view.offer("n2", stale));
        assert_eq!(view.entry("n2"), Some(&leaving));
    }

    /// A joiner is in the next ring only, a leaver in the current one
    /// only, a member that left in neither.
    #[test]
    fn the_two_rings_follow_the_statuses() {
        let mut view = seeds(3);
        let joining =
            Entry { version: 1, status: Status::Joining, addr: "h4:7000".into(), tokens: hashed_tokens("n4", 8) };
        view.offer("n4", joining);
        let n3 = view.entry("n3").unwrap().clone();
        view.offer("n3", Entry { version: 1, status: Status::Leaving, ..n3.clone() });
        view.offer("n1", Entry { version: 1, status: Status::Left, ..view.entry("n1").unwrap().clone() });
        let current = view.current_ring(3).unwrap();
        let next = view.next_ring(3).unwrap();
        assert_eq!(current.nodes(), ["n2", "n3"]);
        assert_eq!(next.nodes(), ["n2", "n4"]);
        assert!(View::default().current_ring(3).is_none());
        // A seed view's ring is the seed list's ring.
        let seed_ring = seeds(3).current_ring(3).unwrap();
        let names: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
        let plain = Ring::new(&names, 8);
        for i in 0..200 {
            let key = format!("k{i}");
            assert_eq!(seed_ring.owners(key.as_bytes(), 3), plain.owners(key.as_bytes(), 3));
        }
    }
}
