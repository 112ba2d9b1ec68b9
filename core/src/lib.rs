//! The pure core of redis-ratelimit: no Redis, no I/O, no clock.
//!
//! The module and the client crate both build on it, so they read numbers,
//! check limits and decide the same way by construction:
//! - [`algo`]: the algorithms, `(state, params, now, cost) -> (decision,
//!   new state)`;
//! - [`grammar`]: each algorithm's arguments, written once;
//! - [`names`]: every command's name, once;
//! - [`render`]: the same grammar written out, the words a client sends;
//! - [`limit`]: one limit on one stored state, and the write it calls for;
//! - [`settle`]: a reservation's actual cost, known afterwards, and debt;
//! - [`num`], [`time`], [`bounds`], [`error`]: exact decimals, absolute
//!   nanoseconds, the bounds every limit lives within, every error text.

#![forbid(unsafe_code)]

pub mod algo;
pub mod bounds;
pub mod error;
pub mod few;
pub mod grammar;
pub mod limit;
pub mod names;
pub mod num;
pub mod policy;
pub mod render;
pub mod reserve;
pub mod settle;
pub mod time;
