//! Typed Rust client for the redis-ratelimit module (work in progress).
