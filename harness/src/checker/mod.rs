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
