//! FNV-1a, 64 bits: a hash fixed by its definition, so that what it
//! decides (a history's shard, a plot's file name, a replica to read from)
//! is the same on every machine and run, unlike std's seeded hasher.

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}
