//! Typed Rust client for the redis-ratelimit module: native, atomic rate
//! limiting commands (`RL.TOKENBUCKET`, `RL.SLIDING`, `RL.GCRA`,
//! `RL.FIXED`, `RL.ACQUIRE`, `RL.TAKE`, `RL.ALL`, `CL.THROTTLE`) on any
//! redis-rs connection, plus a [`Limiter`] that survives Redis outages with
//! a stated behaviour, waits in line inside the server, hands out
//! concurrency leases, and (feature `tower`) a middleware that answers
//! `429` with the draft IETF `RateLimit` headers (and `503` while Redis is
//! away and the limiter fails closed).
//!
//! # The pieces
//!
//! - **Policies** ([`TokenBucket`], [`SlidingWindow`], [`Gcra`],
//!   [`FixedWindow`], [`Throttle`], [`Concurrency`], and [`NamedPolicy`]
//!   for a limit stored in the server under a name): small values checked
//!   at construction by the module's own grammar; a policy that exists is
//!   one the server accepts. Rates are exact [`Decimal`]s, never floats on
//!   the wire.
//! - **Commands**: [`RateLimitCommands`] (sync) and
//!   [`AsyncRateLimitCommands`] (async) add every command to every
//!   connection (`token_bucket`, `sliding`, `gcra`, `fixed`, `limit`,
//!   `all`, `throttle`, `acquire`/`release`/`renew`, `take`,
//!   `policy_set`/`get`/`del`/`list`), returning a [`Decision`];
//!   [`RateLimitPipeline`] adds the same to a pipeline. All three come from
//!   one list of the commands, and every word they send is written by the
//!   module's own grammar (core's renderer). A [`Request`] carries the
//!   cost, `DRYRUN`/`REFUND` and `BLOCK`. The `cmd_*` functions build the
//!   commands as [`redis::Cmd`]s.
//! - **[`Limiter`]**: a named set of [`Limits`] (several are checked all or
//!   nothing with `RL.ALL`), a per-call timeout and a [`FailurePolicy`]
//!   (fail open, fail closed, or an in-process fallback that keeps each
//!   algorithm's guarantee, sharing the quota as [`Share`] says, in a map
//!   of at most [`DEFAULT_FALLBACK_KEYS`] keys, each starting from the
//!   last decision Redis gave for it).
//!   [`Limiter::connect`] owns a connection that reconnects by itself: a
//!   Redis outage ends for the limiter within [`BACK_TO_REDIS`] of its end;
//!   [`Limiter::is_degraded`] and [`Limiter::on_health_change`] tell when
//!   the failure policy decides. [`Limiter::new`] takes only connections
//!   that reconnect ([`Reconnecting`]). [`blocking::Limiter`] is the same
//!   for code without an async runtime.
//! - **Waiting**: [`Limiter::wait`] waits in line inside the server
//!   (`BLOCK`, first come first served across processes), or polls in line
//!   per key in this process where it cannot; a deadline is always waited
//!   out, never cut short. [`wait::Wait`] polls any call.
//! - **Leases**: a [`Concurrency`] limit in [`Limits`]; [`Limiter::acquire`]
//!   gives a [`Lease`] that holds its slot while it lives (renewing it in
//!   the background, unless [`Limiter::with_lease_keep_alive`] says not
//!   to) and releases it when dropped; an admission that holds no slot
//!   (FailOpen, a SHADOW policy) is a lease with id 0.
//! - **Named policies**: [`NamedPolicy`] in [`Limits`] is sent as `RL.TAKE`
//!   / `POLICY name`; [`Limiter::store_policies`] stores them on every
//!   primary and checks that all agree ([`check_policy`]).
//! - **HTTP**: [`headers`] formats `RateLimit-Policy`, `RateLimit` and
//!   `Retry-After`; `middleware` (feature `tower`) applies them: a tower
//!   layer with a sync or async key extractor, a per-request cost, a key
//!   namespace per layer, an explicit choice for requests without a key
//!   (refused by default), and hooks that shape the `429`, the `503` of a
//!   fail-closed outage and the response to a limiter error (logged
//!   through `tracing`). Decisions of the in-process fallback are marked
//!   in the `RateLimit` field (`;fallback`).
//! - **Cluster**: [`Limiter::connect_cluster`]; single-key commands route
//!   as usual, and [`ClusterRouted`] sends `RL.ALL` straight to its keys'
//!   node. Keys of one `RL.ALL` share a slot: the limiter's keys
//!   (`rl:{user42}:minute`, `rl:{user42}:day`) do, by their hash tag.
//! - **redis-rs**: re-exported as [`redis`], so an application uses the
//!   same version (any 1.x from 1.8): `use redis_ratelimit_client::redis;`
//!   rather than a `redis` dependency of its own.
//!
//! # Cargo.toml
//!
//! The crate is not on crates.io: take it from a clone of its repository
//! (the one whose `make run` serves Redis with the module), next to your
//! project, or from git (`git = "https://github.com/redis-ratelimit/redis-ratelimit"`).
//! The examples below need tokio's `macros` and `rt-multi-thread`:
//!
//! ```toml
//! [dependencies]
//! redis-ratelimit-client = { path = "../redis-ratelimit/client" }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! With the tower middleware (feature `tower`) in an axum 0.8 app:
//!
//! ```toml
//! [dependencies]
//! redis-ratelimit-client = { path = "../redis-ratelimit/client", features = ["tower"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! axum = "0.8"
//! ```
//!
//! # Protect my API: a per-user limit on an HTTP API
//!
//! Every app server shares the limit through Redis. If Redis is down, this
//! API chooses to stay up (fail open); a request is denied with `429`, its
//! `Retry-After` and the `RateLimit` headers. With the `tower` feature,
//! `middleware::RateLimitLayer` does exactly this for a whole router
//! (see `examples/axum_api.rs`):
//!
//! ```no_run
//! # #[cfg(feature = "tower")]
//! # use redis_ratelimit_client::redis;
//! # fn app(limiter: redis_ratelimit_client::Limiter<redis::aio::ConnectionManager>)
//! # -> Result<axum::Router, Box<dyn std::error::Error>> {
//! use axum::{http::Method, routing::get, Router};
//! use redis_ratelimit_client::middleware::{HeaderKey, NoKey, RateLimitLayer};
//!
//! let layer = RateLimitLayer::builder(limiter)
//!     .namespace("api") // keys rl:api:{<key>}:<limit>
//!     .key_extractor(HeaderKey::new("x-api-key"))
//!     .cost(|req| if req.method() == Method::POST { 5 } else { 1 })
//!     .no_key(NoKey::shared("anonymous")) // default: NoKey::Reject (400)
//!     .build()?;
//! let app = Router::new().route("/", get(|| async { "hello" })).layer(layer);
//! # Ok(app) }
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_ratelimit_client::redis;
//! use redis_ratelimit_client::{
//!     headers::RateLimitHeaders, FailurePolicy, Limiter, Limits, SlidingWindow, TokenBucket,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1:6379/")?;
//! let limits = Limits::builder()
//!     // Bursts of 20, then 5 a second.
//!     .limit("burst", TokenBucket::new(20, 5, Duration::from_secs(1))?)
//!     // And never more than 1000 in any hour.
//!     .limit("hour", SlidingWindow::new(1000, Duration::from_secs(3600))?)
//!     .build()?;
//! // Reconnects by itself; answers by the failure policy while Redis is away.
//! let limiter = Limiter::connect(&client, limits, FailurePolicy::FailOpen)?
//!     .with_timeout(Duration::from_millis(50));
//!
//! // In the request handler:
//! let user = "user42";
//! let verdict = limiter.check(user).await?;
//! let headers = RateLimitHeaders::new(limiter.limits(), &verdict);
//! if verdict.allowed() {
//!     // ... serve, adding headers.pairs() to the response
//! } else {
//!     // ... answer 429 Too Many Requests with headers.pairs()
//!     // (RateLimit-Policy, RateLimit, Retry-After)
//! }
//! # Ok(()) }
//! ```
//!
//! # Throttle my calls to someone else's API
//!
//! The partner allows 10 calls a minute and 500 a day, the day starting at
//! midnight New York time. Every worker waits in line inside Redis for both
//! limits at once (`RL.ALL ... BLOCK`: either both take the call or
//! neither does; first come, first served across every worker of every
//! process), so no call is made that would be refused. If Redis is down
//! the workers stop calling (fail closed): going over a partner's quota is
//! worse than waiting; they resume by themselves when it is back. A
//! runnable pool of 8 workers is `examples/worker_pool.rs`.
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_ratelimit_client::redis;
//! use redis_ratelimit_client::{
//!     CalendarUnit, Error, FailurePolicy, FixedWindow, Limiter, Limits, SlidingWindow,
//! };
//!
//! # async fn call_partner() {}
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1:6379/")?;
//! let limits = Limits::builder()
//!     .limit("minute", SlidingWindow::new(10, Duration::from_secs(60))?)
//!     .limit(
//!         "day",
//!         FixedWindow::calendar(500, CalendarUnit::Day)?.in_time_zone("America/New_York")?,
//!     )
//!     .build()?;
//! let limiter = Limiter::connect(&client, limits, FailurePolicy::FailClosed)?;
//!
//! // Keys rl:{partner-api}:minute and rl:{partner-api}:day: one hash slot.
//! match limiter.wait("partner-api", Duration::from_secs(120)).await {
//!     Ok(_) => call_partner().await,
//!     Err(Error::TimedOut { last }) => {
//!         // The daily quota is spent (or two minutes were not enough).
//!         println!("no slot before the deadline; retry in {:?}", last.retry_after());
//!     }
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```
//!
//! The same call without a [`Limiter`], on any connection:
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_ratelimit_client::redis;
//! use redis_ratelimit_client::{
//!     wait::Wait, All, AsyncRateLimitCommands, CalendarUnit, FixedWindow, SlidingWindow,
//! };
//!
//! # async fn run(con: redis::aio::MultiplexedConnection) -> Result<(), Box<dyn std::error::Error>> {
//! let all = All::new("{partner}:minute", SlidingWindow::new(10, Duration::from_secs(60))?).and(
//!     "{partner}:day",
//!     FixedWindow::calendar(500, CalendarUnit::Day)?.in_time_zone("America/New_York")?,
//! );
//! let verdict = Wait::up_to(Duration::from_secs(120))
//!     .until_allowed(|| {
//!         let mut con = con.clone();
//!         let all = all.clone();
//!         async move { con.all(&all).await }
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

// The README's programs are doctests too: they compile, or the build says so.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod blocking;
mod cluster;
mod commands;
mod error;
pub mod headers;
mod limiter;
mod limits;
mod local;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod middleware;
mod reply;
pub mod wait;

pub use cluster::{slot, ClusterRouted};
pub use commands::{
    cmd_acquire, cmd_all, cmd_fixed, cmd_gcra, cmd_limit, cmd_policy_del, cmd_policy_get,
    cmd_policy_list, cmd_policy_set, cmd_release, cmd_renew, cmd_settle, cmd_sliding, cmd_take,
    cmd_throttle, cmd_token_bucket, All, AsyncRateLimitCommands, Mode, RateLimitCommands,
    RateLimitPipeline, Request, MAX_BLOCK,
};
pub use error::{Error, PolicyError};
pub use limiter::{
    check_policy, policies_everywhere, store_policy, Acquired, Estimate, FailurePolicy, Health,
    Lease, Limiter, LimiterConnection, Reconnecting, Reservation, Reserved, BACK_TO_REDIS,
    CONNECT_TIMEOUT, DEFAULT_COOLDOWN, DEFAULT_FALLBACK_KEYS, DEFAULT_PREFIX, DEFAULT_TIMEOUT,
    RECONNECT_MAX_DELAY,
};
pub use limits::{
    CalendarUnit, Concurrency, FixedSpan, FixedWindow, Gcra, Limit, Limits, LimitsBuilder,
    NamedPolicy, Policy, SlidingWindow, Throttle, TokenBucket, MAX_INT,
};
pub use local::Share;
/// The redis-rs crate this one is built on: use it for connections
/// (`redis_ratelimit_client::redis::Client`) so both agree on its version.
pub use redis;
pub use redis_ratelimit_core::num::{Decimal, DecimalError};
pub use reply::{AllDecision, Decision, Settlement, Source};
