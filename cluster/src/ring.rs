//! Placement: a consistent-hash ring with virtual nodes.
//!
//! Each node owns `vnodes` points on a 64-bit ring; a key's preference list
//! is the first N distinct nodes met walking clockwise from the key's hash.
//! Pure code: the same members give the same lists on every node.

/// FNV-1a then a SplitMix64 finaliser: fast, stable across platforms and
/// releases (unlike `std`'s hasher), and well spread.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[derive(Clone, Debug)]
pub struct Ring {
    /// Sorted by point; ties broken by node index so the order is total.
    points: Vec<(u64, usize)>,
    nodes: Vec<String>,
}

impl Ring {
    /// A ring of `nodes` (order does not matter) with `vnodes` points each.
    pub fn new(nodes: &[String], vnodes: usize) -> Ring {
        assert!(!nodes.is_empty() && vnodes > 0, "a ring needs nodes and points");
        let mut nodes = nodes.to_vec();
        nodes.sort();
        nodes.dedup();
        let mut points = Vec::with_capacity(nodes.len() * vnodes);
        for (index, node) in nodes.iter().enumerate() {
            for vnode in 0..vnodes {
                points.push((hash64(format!("{node}#{vnode}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Ring { points, nodes }
    }

    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The first `n` distinct nodes clockwise from `key`'s hash (all nodes
    /// if there are fewer than `n`).
    pub fn preference_list(&self, key: &[u8]) -> impl Iterator<Item = &str> + '_ {
        let start = self.points.partition_point(|(point, _)| *point < hash64(key));
        let mut seen = vec![false; self.nodes.len()];
        self.points[start..]
            .iter()
            .chain(&self.points[..start])
            .filter_map(move |(_, index)| (!std::mem::replace(&mut seen[*index], true)).then_some(*index))
            .map(|index| self.nodes[index].as_str())
    }

    /// `preference_list` cut at `n`, owned.
    pub fn owners(&self, key: &[u8], n: usize) -> Vec<String> {
        self.preference_list(key).take(n).map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn names(count: usize) -> Vec<String> {
        (1..=count).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn lists_are_distinct_stable_and_order_free() {
        let ring = Ring::new(&names(5), 64);
        let mut reversed = names(5);
        reversed.reverse();
        let other = Ring::new(&reversed, 64);
        for i in 0..1000 {
            let key = format!("key-{i}");
            let owners = ring.owners(key.as_bytes(), 3);
            assert_eq!(owners.len(), 3);
            let mut unique = owners.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 3, "{owners:?}");
            assert_eq!(owners, other.owners(key.as_bytes(), 3));
        }
        assert_eq!(Ring::new(&names(2), 8).owners(b"k", 3).len(), 2);
    }

    #[test]
    fn keys_spread_evenly() {
        let ring = Ring::new(&names(5), 128);
        let mut primaries: HashMap<String, usize> = HashMap::new();
        let keys = 100_000;
        for i in 0..keys {
            let owner = ring.owners(format!("key-{i}").as_bytes(), 1).remove(0);
            *primaries.entry(owner).or_default() += 1;
        }
        for (node, count) in primaries {
            let share = count as f64 / keys as f64;
            assert!((0.14..0.26).contains(&share), "{node} is primary for {share:.3} of keys");
        }
    }

    #[test]
    fn adding_a_node_moves_few_keys() {
        let before = Ring::new(&names(4), 128);
        let after = Ring::new(&names(5), 128);
        let keys = 20_000;
        let mut moved = 0;
        for i in 0..keys {
            let key = format!("key-{i}");
            let (old, new) = (before.owners(key.as_bytes(), 1), after.owners(key.as_bytes(), 1));
            if old != new {
                assert_eq!(new[0], "n5", "a key moved between old nodes");
                moved += 1;
            }
        }
        let share = moved as f64 / keys as f64;
        assert!((0.12..0.28).contains(&share), "{share:.3} of keys moved; ideal is 0.2");
    }
}
