//! Partition shapes, as Jepsen names them. Pure: node list + rng in, a
//! grudge out. A grudge maps each node to the nodes it must not exchange
//! packets with; every shape here is symmetric.

use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

pub type Grudge = BTreeMap<String, BTreeSet<String>>;

/// The grudge that cuts every link between different `components`.
pub fn between(components: &[Vec<String>]) -> Grudge {
    let mut grudge = Grudge::new();
    for (i, component) in components.iter().enumerate() {
        for node in component {
            let others = components.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, c)| c.iter().cloned());
            grudge.entry(node.clone()).or_default().extend(others);
        }
    }
    grudge
}

/// One random node cut from all the others.
pub fn isolate_one(nodes: &[String], rng: &mut impl Rng) -> Grudge {
    let lonely = nodes[rng.random_range(0..nodes.len())].clone();
    let rest = nodes.iter().filter(|n| **n != lonely).cloned().collect();
    between(&[vec![lonely], rest])
}

/// Two random halves (the larger one is a majority when N is odd).
pub fn random_halves(nodes: &[String], rng: &mut impl Rng) -> Grudge {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let (left, right) = shuffled.split_at(nodes.len() / 2);
    between(&[left.to_vec(), right.to_vec()])
}

/// A random minority (1 to ⌊(N-1)/2⌋ nodes, at least 1) against the rest.
pub fn majority_minority(nodes: &[String], rng: &mut impl Rng) -> Grudge {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let minority = rng.random_range(1..=((nodes.len() - 1) / 2).max(1));
    let (left, right) = shuffled.split_at(minority);
    between(&[left.to_vec(), right.to_vec()])
}

/// Every node sees a majority (itself and its ring neighbours), but no two
/// nodes see the same majority. Needs five nodes or more; with fewer it is
/// [`isolate_one`].
pub fn majorities_ring(nodes: &[String], rng: &mut impl Rng) -> Grudge {
    let n = nodes.len();
    if n < 5 {
        return isolate_one(nodes, rng);
    }
    let mut ring = nodes.to_vec();
    ring.shuffle(rng);
    // Itself and `reach` neighbours on each side: 2 * reach + 1 > n / 2,
    // while the farthest nodes stay cut.
    let reach = (n / 2).div_ceil(2);
    let mut grudge = Grudge::new();
    for (i, node) in ring.iter().enumerate() {
        let far = ring.iter().enumerate().filter(|(j, _)| {
            let distance = (i as isize - *j as isize).rem_euclid(n as isize) as usize;
            distance.min(n - distance) > reach
        });
        grudge.insert(node.clone(), far.map(|(_, other)| other.clone()).collect());
    }
    grudge
}

/// Two halves that cannot talk, and one bridge node that talks to both.
pub fn bridge(nodes: &[String], rng: &mut impl Rng) -> Grudge {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let bridge = shuffled.pop().expect("nodes");
    let (left, right) = shuffled.split_at(shuffled.len() / 2);
    let mut grudge = between(&[left.to_vec(), right.to_vec()]);
    grudge.insert(bridge, BTreeSet::new());
    grudge
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn symmetric(grudge: &Grudge) -> bool {
        grudge.iter().all(|(a, cut)| cut.iter().all(|b| grudge.get(b).is_some_and(|back| back.contains(a))))
    }

    fn sees(grudge: &Grudge, node: &str, all: &[String]) -> usize {
        all.len() - grudge.get(node).map_or(0, BTreeSet::len)
    }

    #[test]
    fn every_shape_is_symmetric_and_never_cuts_a_node_from_itself() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            for n in [3, 5, 7] {
                let all = nodes(n);
                for grudge in [
                    isolate_one(&all, &mut rng),
                    random_halves(&all, &mut rng),
                    majority_minority(&all, &mut rng),
                    majorities_ring(&all, &mut rng),
                    bridge(&all, &mut rng),
                ] {
                    assert!(symmetric(&grudge), "{grudge:?}");
                    assert!(grudge.iter().all(|(node, cut)| !cut.contains(node)));
                    assert!(grudge.values().any(|cut| !cut.is_empty()), "a partition cuts something");
                }
            }
        }
    }

    #[test]
    fn majorities_ring_gives_everyone_a_different_majority() {
        let all = nodes(5);
        let grudge = majorities_ring(&all, &mut StdRng::seed_from_u64(1));
        let mut views = BTreeSet::new();
        for node in &all {
            assert!(sees(&grudge, node, &all) > all.len() / 2, "{node} sees no majority: {grudge:?}");
            views.insert(grudge[node].clone());
        }
        assert_eq!(views.len(), all.len(), "two nodes see the same majority");
    }

    #[test]
    fn bridge_node_sees_everyone_and_halves_do_not_meet() {
        let all = nodes(5);
        let grudge = bridge(&all, &mut StdRng::seed_from_u64(3));
        let bridges: Vec<_> = grudge.iter().filter(|(_, cut)| cut.is_empty()).collect();
        assert_eq!(bridges.len(), 1);
        assert!(grudge.values().filter(|cut| !cut.is_empty()).all(|cut| cut.len() == 2));
    }
}
