//! The ring at the size the store is meant for: 1,200 members of 256
//! tokens each (`make bench`). Grows a ring from 3 seed members to 1,200 by
//! joins, each joining member's tokens chosen by `allocate_tokens`, and
//! prints, each against its target:
//!
//! - owner lookup: the first 3 owners of a key (the table, no allocation),
//!   median ns per lookup over 5 rounds of 1M keys; and `owners` (which
//!   copies the names) for comparison;
//! - balance: max/mean of what the members store (their shares among each
//!   range's 3 owners), for the allocated ring and for 1,200 members of
//!   hashed tokens; and, for information, the shares as first owner;
//! - a view change: one more member joins (its tokens allocated, the ring
//!   rebuilt), median of 5.
//!
//! Exits non-zero when a target is missed; the timings are never asserted
//! in tests.

use cluster::ring::{allocate_tokens, hashed_tokens, Ring, DEFAULT_DEPTH};
use cluster::topology::Topology;
use cluster::view::{Entry, Status, View};
use std::time::{Duration, Instant};

const MEMBERS: usize = 1_200;
const VNODES: usize = 256;
const LOOKUP_TARGET_NS: f64 = 1_000.0;
const BALANCE_TARGET: f64 = 1.1;
const VIEW_CHANGE_TARGET: Duration = Duration::from_millis(100);

fn max_over_mean(shares: &[f64]) -> f64 {
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    shares.iter().cloned().fold(0.0, f64::max) / mean
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    values[values.len() / 2]
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// A ring grown by joins from 3 hashed seed members.
fn grow(members: usize) -> (Vec<(String, Vec<u64>)>, Ring, Duration) {
    let started = Instant::now();
    let mut list: Vec<(String, Vec<u64>)> =
        (1..=3).map(|i| format!("n{i}")).map(|id| (id.clone(), hashed_tokens(&id, VNODES))).collect();
    let mut ring = Ring::from_tokens(&list, DEFAULT_DEPTH);
    for i in 4..=members {
        let tokens = allocate_tokens(&ring, VNODES);
        list.push((format!("n{i}"), tokens));
        ring = Ring::from_tokens(&list, DEFAULT_DEPTH);
    }
    (list, ring, started.elapsed())
}

/// The fence as replicas computed it before (issue 18): the placement
/// built, both sets copied, sorted, joined into text and hashed. Kept
/// here only as the A side of the A/B below.
fn fence_before(topology: &Topology, key: &[u8]) -> u64 {
    let placement = topology.placement(key);
    let (mut now, mut next) = (placement.now.clone(), placement.next.clone());
    now.sort();
    next.sort();
    cluster::ring::hash64(format!("{}|{}", now.join(","), next.join(",")).as_bytes()).max(1)
}

/// What a replica pays to check a call's fence, before and now, while a
/// member joins: ns per key, medians of 5 alternating rounds.
fn fence_costs(topology: &Topology, keys: &[Vec<u8>]) -> (f64, f64) {
    let (mut before, mut now) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = Instant::now();
        for key in keys {
            std::hint::black_box(fence_before(topology, key));
        }
        before.push(started.elapsed().as_nanos() as f64 / keys.len() as f64);
        let started = Instant::now();
        for key in keys {
            std::hint::black_box(topology.fence(key));
        }
        now.push(started.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    (median(before), median(now))
}

/// What a node pays when its view changes while a member joins (both
/// rings and the digest gossip sends), and a key's placement then.
fn topology_costs(list: &[(String, Vec<u64>)], ring: &Ring) -> (f64, f64) {
    let mut view = View::default();
    for (id, tokens) in list {
        view.offer(id, Entry { version: 0, status: Status::Normal, addr: String::new(), tokens: tokens.clone() });
    }
    let joining =
        Entry { version: 1, status: Status::Joining, addr: String::new(), tokens: allocate_tokens(ring, VNODES) };
    view.offer("joining", joining);
    let mut builds = Vec::new();
    let mut topology = None;
    for _ in 0..5 {
        let started = Instant::now();
        topology = Some(Topology::new(view.clone(), 3));
        builds.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let topology = topology.expect("built five times");
    let keys: Vec<Vec<u8>> = (0..200_000).map(|i| format!("key-{i}").into_bytes()).collect();
    let mut lookups = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for key in &keys {
            std::hint::black_box(topology.placement(key));
        }
        lookups.push(started.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    let (before_ns, now_ns) = fence_costs(&topology, &keys);
    println!(
        "a replica's fence check while a member joins: {now_ns:.0} ns median (was {before_ns:.0} ns with the sorted-text \
         fence; a put checks 4)"
    );
    let ids: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
    let three = cluster::topology::Membership::from_seed_ids("n1", &ids, 64, 3).load();
    let (before_ns, now_ns) = fence_costs(&three, &keys);
    println!("the same in a fixed 3-node cluster: {now_ns:.0} ns median (was {before_ns:.0} ns)");
    (median(builds), median(lookups))
}

fn main() {
    let (list, ring, grown_in) = grow(MEMBERS);
    println!("ring: {MEMBERS} members x {VNODES} tokens, grown from 3 by joins in {:.1} s", grown_in.as_secs_f64());

    let keys: Vec<Vec<u8>> = (0..1_000_000).map(|i| format!("key-{i}").into_bytes()).collect();
    let mut table_ns = Vec::new();
    let mut owners_ns = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut sum = 0u64;
        for key in &keys {
            sum += u64::from(ring.owner_indices(key)[0]);
        }
        table_ns.push(started.elapsed().as_nanos() as f64 / keys.len() as f64);
        std::hint::black_box(sum);
        let started = Instant::now();
        for key in keys.iter().take(200_000) {
            std::hint::black_box(ring.owners(key, 3));
        }
        owners_ns.push(started.elapsed().as_nanos() as f64 / 200_000.0);
    }
    let lookup_ns = median(table_ns);
    println!(
        "owner lookup (3 owners, table): {lookup_ns:.0} ns median   target < {LOOKUP_TARGET_NS:.0} ns   {}",
        verdict(lookup_ns < LOOKUP_TARGET_NS)
    );
    println!("owners(key, 3) with the names copied: {:.0} ns median", median(owners_ns));

    let names: Vec<String> = (1..=MEMBERS).map(|i| format!("n{i}")).collect();
    let hashed = Ring::new(&names, VNODES);
    let (primary, replica) = (max_over_mean(&ring.primary_shares()), max_over_mean(&ring.replica_shares(3)));
    let (hashed_primary, hashed_replica) =
        (max_over_mean(&hashed.primary_shares()), max_over_mean(&hashed.replica_shares(3)));
    println!(
        "balance, max/mean of what members store (N=3): allocated {replica:.3}   target < {BALANCE_TARGET}   {}",
        verdict(replica < BALANCE_TARGET)
    );
    println!("balance, max/mean share as first owner (not a target; see README): allocated {primary:.3}");
    println!(
        "balance, hashed tokens (what a seed list gets): {hashed_primary:.3} first owner, {hashed_replica:.3} at N=3"
    );

    let mut changes = Vec::new();
    for round in 0..5 {
        let started = Instant::now();
        let tokens = allocate_tokens(&ring, VNODES);
        let mut grown = list.clone();
        grown.push((format!("joining-{round}"), tokens));
        let after = Ring::from_tokens(&grown, DEFAULT_DEPTH);
        changes.push(started.elapsed());
        std::hint::black_box(after);
    }
    let change = median(changes);
    println!(
        "view change (one member joins: tokens allocated, ring rebuilt): {:.1} ms median   target < {} ms   {}",
        change.as_secs_f64() * 1e3,
        VIEW_CHANGE_TARGET.as_millis(),
        verdict(change < VIEW_CHANGE_TARGET)
    );
    let (topology_ms, placement_ns) = topology_costs(&list, &ring);
    println!(
        "view change at a node while one member joins (both rings and the gossip digest rebuilt): {topology_ms:.1} ms \
         median"
    );
    println!(
        "placement of a key (current and next owners, names copied) while a member joins: {placement_ns:.0} ns median"
    );
    let bytes = MEMBERS * VNODES * (8 + 4 + 4 * DEFAULT_DEPTH);
    println!(
        "ring memory: about {:.1} MiB (token, member, {DEFAULT_DEPTH} owners per token)",
        bytes as f64 / 1048576.0
    );
    let met = lookup_ns < LOOKUP_TARGET_NS && replica < BALANCE_TARGET && change < VIEW_CHANGE_TARGET;
    if !met {
        std::process::exit(1);
    }
}
