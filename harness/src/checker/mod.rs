//! Checkers: a history in, a verdict with its evidence out. Pure and
//! synchronous: checkers do no I/O.

mod cache;
pub mod durability;
pub mod linearizable;
pub mod ops;
pub mod pairing;
pub mod session;
pub mod staleness;
pub mod synthetic;
pub mod ttl;

use crate::history::Event;
use crate::verdict::CheckResult;

/// A check fed a history a group of keys at a time, so that a history
/// larger than memory is checked from disk shard by shard
/// ([`crate::history::shards`]). Each [`Tally::add`] gets every event of
/// the keys it holds (an operation's invocation and completion together);
/// [`Tally::finish`] gives the verdict the whole history would have had,
/// however it was split. Every checker's `check(events)` is one group.
pub trait Tally: Send {
    fn add(&mut self, events: &[Event]);
    fn finish(self: Box<Self>) -> CheckResult;
}

/// `tally`'s verdict on `events` as one group: a history held in memory.
pub fn one_group<'t>(mut tally: Box<dyn Tally + 't>, events: &[Event]) -> CheckResult {
    tally.add(events);
    tally.finish()
}
