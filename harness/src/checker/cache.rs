//! The linearizability search's cache of explored configurations (a set of
//! linearized operations and the state after them), as Porcupine keeps it:
//! by a 64-bit hash, with the entries that share one chained and compared
//! in full, so a collision costs a comparison, never a wrong answer.
//!
//! The sets lie side by side in one arena instead of one allocation each:
//! an insert allocates nothing but the state's clone, and an entry costs
//! its words, not a vector's header and a heap block besides.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A fast non-cryptographic hasher (rotate, xor, multiply per word, then
/// MurmurHash3's finalizer so every bit of the result depends on every
/// input bit). The search hashes millions of small keys; SipHash's
/// resistance to chosen collisions buys nothing against a history.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut tail = [0; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail) ^ (bytes.len() as u64) << 56);
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Keys that are already hashes go through as they are.
#[derive(Default, Clone, Copy)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    /// Only `u64` keys are hashed here; other bytes still hash, plainly.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const END: u32 = u32::MAX;

/// Explored configurations of one key's search.
pub(crate) struct Cache<S> {
    /// Words of one set.
    words: usize,
    sets: Vec<u64>,
    states: Vec<S>,
    /// The next entry with the same hash, or `END`.
    chain: Vec<u32>,
    /// Hash of (set, state) to the newest entry with it.
    heads: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
}

impl<S> Cache<S> {
    /// A cache for sets of `words` words, with room for `expected`
    /// entries before it first grows (growing rehashes every entry).
    pub(crate) fn new(words: usize, expected: usize) -> Cache<S> {
        Cache {
            words,
            sets: Vec::with_capacity(expected * words),
            states: Vec::with_capacity(expected),
            chain: Vec::with_capacity(expected),
            heads: HashMap::with_capacity_and_hasher(expected, BuildHasherDefault::default()),
        }
    }

    /// Empties the cache for sets of `words` words and room for `expected`
    /// entries, keeping its memory unless it is far larger than that (a
    /// table's emptying costs its whole size).
    pub(crate) fn reset(&mut self, words: usize, expected: usize) {
        self.words = words;
        self.sets.clear();
        self.states.clear();
        self.chain.clear();
        if self.heads.capacity() > 4 * expected.max(64) {
            self.heads = HashMap::with_capacity_and_hasher(expected, BuildHasherDefault::default());
        } else {
            self.heads.clear();
            self.heads.reserve(expected);
        }
        self.sets.reserve(expected * words);
        self.states.reserve(expected);
        self.chain.reserve(expected);
    }

    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }
}

impl<S: Hash + Eq + Clone> Cache<S> {
    /// Adds the configuration (`set`, `state`); false when it was already
    /// there. Past `u32::MAX - 1` entries it answers true without adding
    /// (the search's memory budget ends it long before).
    pub(crate) fn insert(&mut self, set: &[u64], state: &S) -> bool {
        debug_assert_eq!(set.len(), self.words);
        let mut hasher = FastHasher::default();
        set.iter().for_each(|&w| hasher.add(w));
        state.hash(&mut hasher);
        let hash = hasher.finish();
        let Ok(new) = u32::try_from(self.states.len()) else { return true };
        if new == END {
            return true;
        }
        // One probe of the table, whether the entry is found or added.
        let head = match self.heads.entry(hash) {
            Entry::Vacant(vacant) => {
                vacant.insert(new);
                END
            }
            Entry::Occupied(mut occupied) => {
                let mut entry = *occupied.get();
                while entry != END {
                    let at = entry as usize;
                    if self.states[at] == *state && self.sets[at * self.words..(at + 1) * self.words] == *set {
                        return false;
                    }
                    entry = self.chain[at];
                }
                occupied.insert(new)
            }
        };
        self.sets.extend_from_slice(set);
        self.states.push(state.clone());
        self.chain.push(head);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_is_new_once() {
        let mut cache = Cache::new(2, 1);
        assert!(cache.insert(&[1, 0], &"a".to_owned()));
        assert!(!cache.insert(&[1, 0], &"a".to_owned()));
        assert!(cache.insert(&[1, 0], &"b".to_owned()));
        assert!(cache.insert(&[0, 1], &"a".to_owned()));
        assert!(!cache.insert(&[0, 1], &"a".to_owned()));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn entries_that_share_a_hash_are_told_apart() {
        // Force every entry into one chain: a state type whose hash is constant.
        #[derive(Clone, PartialEq, Eq)]
        struct Same(u8);
        impl Hash for Same {
            fn hash<H: Hasher>(&self, _: &mut H) {}
        }
        let mut cache = Cache::new(1, 0);
        for round in 0..2 {
            for s in 0..50 {
                assert_eq!(cache.insert(&[7], &Same(s)), round == 0, "state {s} round {round}");
            }
        }
        assert_eq!(cache.len(), 50);
    }
}
