//! The commands, in the redis-rs style: `cmd_*` functions build the exact
//! argv (use them in pipelines), and two extension traits send them:
//! [`RateLimitCommands`] for any sync [`redis::ConnectionLike`] and
//! [`AsyncRateLimitCommands`] for any async one (multiplexed connection,
//! `ConnectionManager`, cluster async connection). Options are keywords
//! appended after the positional arguments; defaults are left out, so
//! `RL.SLIDING k 10 60` is sent as a user would type it.

use redis::{Cmd, ConnectionLike, RedisFuture, RedisResult, ToSingleRedisArg, Value};

use std::time::Duration;

use crate::limits::{
    Concurrency, FixedWindow, Gcra, NamedPolicy, Policy, SlidingWindow, Throttle, TokenBucket,
};
use crate::reply::{AllDecision, Decision};
use redis_ratelimit_core::num::Decimal;

/// What a call does with its cost.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Take `cost` units if they fit (the normal call).
    #[default]
    Consume,
    /// Answer as if the request were made, change nothing (`DRYRUN`).
    DryRun,
    /// Give `cost` units back: the work did not happen (`REFUND`).
    Refund,
}

/// The cost of a call and what to do with it. A bare integer converts:
/// `con.sliding("k", &policy, 1)`.
///
/// ```
/// # use redis_ratelimit_client::Request;
/// let take_three = Request::new(3);
/// let would_three_fit = Request::new(3).dry_run();
/// let give_back = Request::new(3).refund();
/// let peek = Request::new(0);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Request {
    cost: u64,
    mode: Mode,
    block_ms: Option<u64>,
}

/// The longest `BLOCK` the module takes: 31 days, in milliseconds.
pub const MAX_BLOCK: Duration = Duration::from_millis(2_678_400_000);

impl Request {
    /// `cost` units (0 is a peek: it answers and changes nothing).
    pub const fn new(cost: u64) -> Request {
        Request {
            cost,
            mode: Mode::Consume,
            block_ms: None,
        }
    }
    /// Wait in line inside the server (`BLOCK ms`) up to `timeout` if the
    /// request would be denied now: the reply comes when it is admitted,
    /// or the denial as of the timeout. Rounded up to the millisecond (at
    /// least 1 ms, at most [`MAX_BLOCK`]). Only a request that takes waits:
    /// with [`dry_run`](Self::dry_run) or [`refund`](Self::refund) it is
    /// not sent. The connection waits with it: send it on a connection of
    /// its own, never on one shared with other requests.
    pub fn block(mut self, timeout: Duration) -> Request {
        let ms = timeout.as_nanos().div_ceil(1_000_000).max(1);
        let max = u128::from(MAX_BLOCK.as_millis() as u64);
        self.block_ms = Some(u64::try_from(ms.min(max)).unwrap_or(u64::MAX));
        self
    }
    /// The `BLOCK` timeout, if the request waits in line.
    pub fn block_timeout(&self) -> Option<Duration> {
        self.block_ms
            .filter(|_| self.mode == Mode::Consume)
            .map(Duration::from_millis)
    }
    /// Answer as if, change nothing (`DRYRUN`).
    pub const fn dry_run(mut self) -> Request {
        self.mode = Mode::DryRun;
        self
    }
    /// Give the cost back (`REFUND`).
    pub const fn refund(mut self) -> Request {
        self.mode = Mode::Refund;
        self
    }
    /// The units the request takes (or gives back).
    pub const fn cost(&self) -> u64 {
        self.cost
    }
    /// What the request does with its cost.
    pub const fn mode(&self) -> Mode {
        self.mode
    }
}

impl Default for Request {
    /// A cost of 1.
    fn default() -> Request {
        Request::new(1)
    }
}

impl From<u64> for Request {
    fn from(cost: u64) -> Request {
        Request::new(cost)
    }
}

/// Several limits checked together, all or nothing: `RL.ALL`. Keys of one
/// call must share a hash slot in a cluster (use hash tags:
/// `{user42}:min`, `{user42}:day`).
///
/// ```
/// # use redis_ratelimit_client::{All, SlidingWindow, FixedWindow, CalendarUnit};
/// # use std::time::Duration;
/// let all = All::new("{user42}:min", SlidingWindow::new(10, Duration::from_secs(60))?)
///     .and("{user42}:day", FixedWindow::calendar(500, CalendarUnit::Day)?)
///     .cost(1);
/// # Ok::<(), redis_ratelimit_client::PolicyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct All {
    request: Request,
    limits: Vec<(Vec<u8>, Policy, Option<u64>)>,
}

impl All {
    /// The first limit (a set is never empty).
    pub fn new(key: impl AsRef<[u8]>, policy: impl Into<Policy>) -> All {
        All {
            request: Request::new(1),
            limits: vec![(key.as_ref().to_vec(), policy.into(), None)],
        }
    }
    /// Another limit.
    pub fn and(mut self, key: impl AsRef<[u8]>, policy: impl Into<Policy>) -> All {
        self.limits
            .push((key.as_ref().to_vec(), policy.into(), None));
        self
    }
    /// Another limit with its own cost (overrides the call's cost).
    pub fn and_with_cost(
        mut self,
        key: impl AsRef<[u8]>,
        policy: impl Into<Policy>,
        cost: u64,
    ) -> All {
        self.limits
            .push((key.as_ref().to_vec(), policy.into(), Some(cost)));
        self
    }
    /// The cost for every limit without its own (default 1).
    pub fn cost(mut self, cost: u64) -> All {
        self.request.cost = cost;
        self
    }
    /// Cost and mode at once.
    pub fn request(mut self, request: Request) -> All {
        self.request = request;
        self
    }
    /// Answer as if, change nothing (`DRYRUN`).
    pub fn dry_run(mut self) -> All {
        self.request.mode = Mode::DryRun;
        self
    }
    /// Give the cost back (`REFUND`).
    pub fn refund(mut self) -> All {
        self.request.mode = Mode::Refund;
        self
    }
    /// The number of limits.
    pub fn len(&self) -> usize {
        self.limits.len()
    }
    /// Never true: an `All` holds at least one limit.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }
}

/// The request's flags: `DRYRUN`, `REFUND`, or `BLOCK ms` for a take.
fn flags(cmd: &mut Cmd, req: Request) {
    match req.mode {
        Mode::Consume => {
            if let Some(ms) = req.block_ms {
                cmd.arg("BLOCK").arg(ms);
            }
        }
        Mode::DryRun => {
            cmd.arg("DRYRUN");
        }
        Mode::Refund => {
            cmd.arg("REFUND");
        }
    }
}

fn cost_option(cmd: &mut Cmd, cost: u64) {
    if cost != 1 {
        cmd.arg("COST").arg(cost);
    }
}

fn dec(d: Decimal) -> String {
    d.to_string()
}

fn one_second(d: Decimal) -> bool {
    d == Decimal::from_u64(1)
}

/// The arguments after the key that describe a policy, as `RL.ALL` reads
/// them: its keyword, then [`Policy::definition`].
fn spec(cmd: &mut Cmd, policy: &Policy) {
    if let Policy::Named(p) = policy {
        cmd.arg("POLICY").arg(p.name());
        return;
    }
    let (syntax, words) = policy.definition();
    cmd.arg(syntax.keyword);
    for w in words {
        cmd.arg(w);
    }
}

/// `RL.TOKENBUCKET key capacity rate cost [PERIOD seconds] [DRYRUN|REFUND]`
/// (`PERIOD` left out when it is 1 s).
pub fn cmd_token_bucket<K: ToSingleRedisArg>(key: K, p: &TokenBucket, req: Request) -> Cmd {
    let mut c = redis::cmd("RL.TOKENBUCKET");
    c.arg(key)
        .arg(p.capacity())
        .arg(dec(p.rate()))
        .arg(req.cost);
    if !one_second(p.period_secs) {
        c.arg("PERIOD").arg(dec(p.period_secs));
    }
    flags(&mut c, req);
    c
}

/// `RL.SLIDING key limit window [COST n] [DRYRUN|REFUND]`
pub fn cmd_sliding<K: ToSingleRedisArg>(key: K, p: &SlidingWindow, req: Request) -> Cmd {
    let mut c = redis::cmd("RL.SLIDING");
    c.arg(key).arg(p.limit()).arg(dec(p.window_secs));
    cost_option(&mut c, req.cost);
    flags(&mut c, req);
    c
}

/// `RL.GCRA key burst rate period [COST n] [DRYRUN|REFUND]`
pub fn cmd_gcra<K: ToSingleRedisArg>(key: K, p: &Gcra, req: Request) -> Cmd {
    let mut c = redis::cmd("RL.GCRA");
    c.arg(key)
        .arg(p.burst())
        .arg(dec(p.rate()))
        .arg(dec(p.period_secs));
    cost_option(&mut c, req.cost);
    flags(&mut c, req);
    c
}

/// `RL.FIXED key limit window [COST n] [TZ zone] [DRYRUN|REFUND]`
pub fn cmd_fixed<K: ToSingleRedisArg>(key: K, p: &FixedWindow, req: Request) -> Cmd {
    let mut c = redis::cmd("RL.FIXED");
    c.arg(key).arg(p.limit());
    // The syntax line's order: window, COST, TZ.
    c.arg(p.window_arg());
    cost_option(&mut c, req.cost);
    if let Some(tz) = p.time_zone() {
        c.arg("TZ").arg(tz);
    }
    flags(&mut c, req);
    c
}

/// The command for any [`Policy`].
pub fn cmd_limit<K: ToSingleRedisArg>(key: K, policy: &Policy, req: Request) -> Cmd {
    match policy {
        Policy::TokenBucket(p) => cmd_token_bucket(key, p, req),
        Policy::Sliding(p) => cmd_sliding(key, p, req),
        Policy::Gcra(p) => cmd_gcra(key, p, req),
        Policy::Fixed(p) => cmd_fixed(key, p, req),
        Policy::Throttle(p) => match p.as_gcra() {
            Ok(g) => cmd_gcra(key, &g, req),
            Err(_) => cmd_throttle(key, p, req.cost),
        },
        Policy::Concurrency(p) => cmd_acquire(key, p, req),
        Policy::Named(p) => cmd_take(key, p.name(), req),
    }
}

/// `RL.ACQUIRE key limit lease_seconds [BLOCK ms] [DRYRUN]`: the cost is
/// one slot (a cost of 0 is a peek, sent as `DRYRUN`); no `REFUND`
/// (`RL.RELEASE` gives a slot back).
pub fn cmd_acquire<K: ToSingleRedisArg>(key: K, p: &Concurrency, req: Request) -> Cmd {
    let mut c = redis::cmd("RL.ACQUIRE");
    c.arg(key).arg(p.limit()).arg(dec(p.lease_secs));
    match req.mode {
        Mode::Consume if req.cost > 0 => flags(&mut c, req),
        _ => {
            c.arg("DRYRUN");
        }
    }
    c
}

/// `RL.RELEASE key lease_id`: 1 if the lease was live.
pub fn cmd_release<K: ToSingleRedisArg>(key: K, lease_id: u64) -> Cmd {
    let mut c = redis::cmd("RL.RELEASE");
    c.arg(key).arg(lease_id);
    c
}

/// `RL.RENEW key lease_id lease_seconds`: 1 if the lease was live.
pub fn cmd_renew<K: ToSingleRedisArg>(key: K, lease_id: u64, lease: Duration) -> Cmd {
    let mut c = redis::cmd("RL.RENEW");
    c.arg(key)
        .arg(lease_id)
        .arg(Decimal::from_duration_secs(lease).map_or_else(|| "0".to_string(), dec));
    c
}

/// `RL.TAKE key policy [COST n] [DRYRUN|REFUND|BLOCK ms]`: a named policy.
pub fn cmd_take<K: ToSingleRedisArg>(key: K, policy: &str, req: Request) -> Cmd {
    let mut c = redis::cmd("RL.TAKE");
    c.arg(key).arg(policy);
    cost_option(&mut c, req.cost);
    flags(&mut c, req);
    c
}

/// `RL.POLICY SET name <definition>`
pub fn cmd_policy_set(p: &NamedPolicy) -> Cmd {
    let mut c = redis::cmd("RL.POLICY");
    c.arg("SET").arg(p.name());
    for w in p.definition_args() {
        c.arg(w);
    }
    c
}

/// `RL.POLICY GET name`: the definition, or nil.
pub fn cmd_policy_get(name: &str) -> Cmd {
    let mut c = redis::cmd("RL.POLICY");
    c.arg("GET").arg(name);
    c
}

/// `RL.POLICY DEL name`: 1 if it was defined.
pub fn cmd_policy_del(name: &str) -> Cmd {
    let mut c = redis::cmd("RL.POLICY");
    c.arg("DEL").arg(name);
    c
}

/// `RL.POLICY LIST`: `[name, definition]` pairs, by name.
pub fn cmd_policy_list() -> Cmd {
    let mut c = redis::cmd("RL.POLICY");
    c.arg("LIST");
    c
}

/// `CL.THROTTLE key max_burst count_per_period period quantity`
pub fn cmd_throttle<K: ToSingleRedisArg>(key: K, p: &Throttle, quantity: u64) -> Cmd {
    let mut c = redis::cmd("CL.THROTTLE");
    c.arg(key)
        .arg(p.max_burst())
        .arg(p.count_per_period())
        .arg(p.period().as_secs())
        .arg(quantity);
    c
}

/// `RL.ALL [COST n] [DRYRUN|REFUND] LIMIT key <spec> [COST n] ...`
pub fn cmd_all(all: &All) -> Cmd {
    let limits = all.limits.iter().map(|(k, p, c)| (k.as_slice(), p, *c));
    all_parts(all.request, limits)
}

/// `RL.ALL` from its parts: the call's request, then (key, policy, own cost).
pub(crate) fn all_parts<'a>(
    request: Request,
    limits: impl Iterator<Item = (&'a [u8], &'a Policy, Option<u64>)>,
) -> Cmd {
    let mut c = redis::cmd("RL.ALL");
    cost_option(&mut c, request.cost);
    flags(&mut c, request);
    for (key, policy, cost) in limits {
        c.arg("LIMIT").arg(key);
        spec(&mut c, policy);
        // A lease limit takes one slot a request: no COST of its own.
        if let (Some(n), false) = (cost, policy.is_concurrency()) {
            c.arg("COST").arg(n);
        }
    }
    c
}

/// The rate-limit commands on any sync connection.
///
/// ```no_run
/// use redis_ratelimit_client::{redis, RateLimitCommands, SlidingWindow, Request};
/// use std::time::Duration;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut con = redis::Client::open("redis://127.0.0.1/")?.get_connection()?;
/// let policy = SlidingWindow::new(5, Duration::from_secs(60))?;
/// let d = con.sliding("login:alice", &policy, 1)?;
/// if !d.allowed {
///     println!("try again in {:?}", d.retry_after);
/// }
/// // Would 3 more fit? Changes nothing.
/// let peek = con.sliding("login:alice", &policy, Request::new(3).dry_run())?;
/// # Ok(()) }
/// ```
pub trait RateLimitCommands: ConnectionLike + Sized {
    /// `RL.TOKENBUCKET`
    fn token_bucket<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &TokenBucket,
        req: impl Into<Request>,
    ) -> RedisResult<Decision> {
        cmd_token_bucket(key, policy, req.into()).query(self)
    }

    /// `RL.SLIDING`
    fn sliding<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &SlidingWindow,
        req: impl Into<Request>,
    ) -> RedisResult<Decision> {
        cmd_sliding(key, policy, req.into()).query(self)
    }

    /// `RL.GCRA`
    fn gcra<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &Gcra,
        req: impl Into<Request>,
    ) -> RedisResult<Decision> {
        cmd_gcra(key, policy, req.into()).query(self)
    }

    /// `RL.FIXED`
    fn fixed<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &FixedWindow,
        req: impl Into<Request>,
    ) -> RedisResult<Decision> {
        cmd_fixed(key, policy, req.into()).query(self)
    }

    /// Whichever command `policy` needs.
    fn limit<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &Policy,
        req: impl Into<Request>,
    ) -> RedisResult<Decision> {
        cmd_limit(key, policy, req.into()).query(self)
    }

    /// `RL.ALL`: every limit allows and all consume, or none changes.
    fn all(&mut self, all: &All) -> RedisResult<AllDecision> {
        cmd_all(all).query(self)
    }

    /// `CL.THROTTLE` (redis-cell compatible).
    fn throttle<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &Throttle,
        quantity: u64,
    ) -> RedisResult<Decision> {
        let v: Value = cmd_throttle(key, policy, quantity).query(self)?;
        Ok(Decision::from_throttle_reply(&v)?)
    }

    /// `RL.ACQUIRE`: one of `limit` slots; the decision's `lease` is its id.
    fn acquire<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &Concurrency,
        req: impl Into<Request>,
    ) -> RedisResult<Decision> {
        cmd_acquire(key, policy, req.into()).query(self)
    }

    /// `RL.RELEASE`: true if the lease was live.
    fn release<K: ToSingleRedisArg>(&mut self, key: K, lease_id: u64) -> RedisResult<bool> {
        cmd_release(key, lease_id).query(self)
    }

    /// `RL.RENEW`: true if the lease was live (it now ends `lease` from now).
    fn renew<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        lease_id: u64,
        lease: Duration,
    ) -> RedisResult<bool> {
        cmd_renew(key, lease_id, lease).query(self)
    }

    /// `RL.TAKE`: the named policy `policy` on `key`.
    fn take<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &str,
        req: impl Into<Request>,
    ) -> RedisResult<Decision> {
        cmd_take(key, policy, req.into()).query(self)
    }

    /// `RL.POLICY SET`: stores the policy in this server. On a cluster,
    /// every primary needs it: see [`store_policy`](crate::store_policy).
    fn policy_set(&mut self, policy: &NamedPolicy) -> RedisResult<()> {
        cmd_policy_set(policy).query(self)
    }

    /// `RL.POLICY GET`: the definition the server holds, if any.
    fn policy_get(&mut self, name: &str) -> RedisResult<Option<String>> {
        cmd_policy_get(name).query(self)
    }

    /// `RL.POLICY DEL`: true if it was defined.
    fn policy_del(&mut self, name: &str) -> RedisResult<bool> {
        cmd_policy_del(name).query(self)
    }

    /// `RL.POLICY LIST`: every (name, definition), by name.
    fn policy_list(&mut self) -> RedisResult<Vec<(String, String)>> {
        cmd_policy_list().query(self)
    }
}

impl<T: ConnectionLike> RateLimitCommands for T {}

/// The rate-limit commands on any async connection. The command is built
/// before the returned future, so keys and policies need not outlive it.
///
/// ```no_run
/// use redis_ratelimit_client::{redis, AsyncRateLimitCommands, TokenBucket};
/// use std::time::Duration;
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1/")?;
/// let mut con = client.get_multiplexed_async_connection().await?;
/// let bucket = TokenBucket::new(10, 1, Duration::from_secs(1))?;
/// let d = con.token_bucket("user:42", &bucket, 1).await?;
/// # Ok(()) }
/// ```
pub trait AsyncRateLimitCommands: redis::aio::ConnectionLike + Send + Sized {
    /// `RL.TOKENBUCKET`
    fn token_bucket<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &TokenBucket,
        req: impl Into<Request>,
    ) -> RedisFuture<'_, Decision> {
        let cmd = cmd_token_bucket(key, policy, req.into());
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.SLIDING`
    fn sliding<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &SlidingWindow,
        req: impl Into<Request>,
    ) -> RedisFuture<'_, Decision> {
        let cmd = cmd_sliding(key, policy, req.into());
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.GCRA`
    fn gcra<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &Gcra,
        req: impl Into<Request>,
    ) -> RedisFuture<'_, Decision> {
        let cmd = cmd_gcra(key, policy, req.into());
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.FIXED`
    fn fixed<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &FixedWindow,
        req: impl Into<Request>,
    ) -> RedisFuture<'_, Decision> {
        let cmd = cmd_fixed(key, policy, req.into());
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// Whichever command `policy` needs.
    fn limit<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &Policy,
        req: impl Into<Request>,
    ) -> RedisFuture<'_, Decision> {
        let cmd = cmd_limit(key, policy, req.into());
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.ALL`: every limit allows and all consume, or none changes. On a
    /// cluster, wrap the connection in [`ClusterRouted`](crate::ClusterRouted)
    /// so the command goes straight to its keys' node.
    fn all(&mut self, all: &All) -> RedisFuture<'_, AllDecision> {
        let cmd = cmd_all(all);
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `CL.THROTTLE` (redis-cell compatible).
    fn throttle<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &Throttle,
        quantity: u64,
    ) -> RedisFuture<'_, Decision> {
        let cmd = cmd_throttle(key, policy, quantity);
        Box::pin(async move {
            let v: Value = cmd.query_async(self).await?;
            Ok(Decision::from_throttle_reply(&v)?)
        })
    }

    /// `RL.ACQUIRE`: one of `limit` slots; the decision's `lease` is its id.
    fn acquire<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &Concurrency,
        req: impl Into<Request>,
    ) -> RedisFuture<'_, Decision> {
        let cmd = cmd_acquire(key, policy, req.into());
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.RELEASE`: true if the lease was live.
    fn release<K: ToSingleRedisArg>(&mut self, key: K, lease_id: u64) -> RedisFuture<'_, bool> {
        let cmd = cmd_release(key, lease_id);
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.RENEW`: true if the lease was live (it now ends `lease` from now).
    fn renew<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        lease_id: u64,
        lease: Duration,
    ) -> RedisFuture<'_, bool> {
        let cmd = cmd_renew(key, lease_id, lease);
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.TAKE`: the named policy `policy` on `key`.
    fn take<K: ToSingleRedisArg>(
        &mut self,
        key: K,
        policy: &str,
        req: impl Into<Request>,
    ) -> RedisFuture<'_, Decision> {
        let cmd = cmd_take(key, policy, req.into());
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.POLICY SET`: stores the policy in this server. On a cluster,
    /// every primary needs it: see [`store_policy`](crate::store_policy).
    fn policy_set(&mut self, policy: &NamedPolicy) -> RedisFuture<'_, ()> {
        let cmd = cmd_policy_set(policy);
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.POLICY GET`: the definition the server holds, if any.
    fn policy_get(&mut self, name: &str) -> RedisFuture<'_, Option<String>> {
        let cmd = cmd_policy_get(name);
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.POLICY DEL`: true if it was defined.
    fn policy_del(&mut self, name: &str) -> RedisFuture<'_, bool> {
        let cmd = cmd_policy_del(name);
        Box::pin(async move { cmd.query_async(self).await })
    }

    /// `RL.POLICY LIST`: every (name, definition), by name.
    fn policy_list(&mut self) -> RedisFuture<'_, Vec<(String, String)>> {
        let cmd = cmd_policy_list();
        Box::pin(async move { cmd.query_async(self).await })
    }
}

impl<T: redis::aio::ConnectionLike + Send + Sized> AsyncRateLimitCommands for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CalendarUnit;

    fn argv(c: &Cmd) -> Vec<String> {
        c.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8(b.to_vec()).unwrap(),
                _ => "<cursor>".into(),
            })
            .collect()
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn token_bucket_argv() {
        let b = TokenBucket::new(10, 1, S(1)).unwrap();
        assert_eq!(
            argv(&cmd_token_bucket("user:42", &b, Request::new(1))),
            ["RL.TOKENBUCKET", "user:42", "10", "1", "1"]
        );
        let m = TokenBucket::new(10, 10, S(60)).unwrap();
        assert_eq!(
            argv(&cmd_token_bucket("m", &m, Request::new(3).dry_run())),
            [
                "RL.TOKENBUCKET",
                "m",
                "10",
                "10",
                "3",
                "PERIOD",
                "60",
                "DRYRUN"
            ]
        );
        let h = TokenBucket::new(1, dec("0.5"), Duration::from_millis(1500)).unwrap();
        assert_eq!(
            argv(&cmd_token_bucket("h", &h, Request::new(2).refund())),
            [
                "RL.TOKENBUCKET",
                "h",
                "1",
                "0.5",
                "2",
                "PERIOD",
                "1.5",
                "REFUND"
            ]
        );
        let f = TokenBucket::new(3, dec("1e4"), S(1)).unwrap();
        assert_eq!(
            argv(&cmd_token_bucket("fast", &f, Request::new(0))),
            ["RL.TOKENBUCKET", "fast", "3", "10000", "0"]
        );
        // A float rate goes out as its shortest decimal.
        let fl = TokenBucket::new(3, Decimal::try_from(0.3).unwrap(), S(1)).unwrap();
        assert_eq!(argv(&cmd_token_bucket("f", &fl, Request::new(1)))[3], "0.3");
        // Binary keys pass through untouched.
        let k = cmd_token_bucket(&b"\x00\xff"[..], &b, Request::new(1));
        assert_eq!(
            k.args_iter()
                .nth(1)
                .map(|a| matches!(a, redis::Arg::Simple(b) if b == b"\x00\xff")),
            Some(true)
        );
    }

    #[test]
    fn sliding_argv() {
        let w = SlidingWindow::new(100, Duration::from_millis(250)).unwrap();
        assert_eq!(
            argv(&cmd_sliding("upload:bob", &w, Request::new(10))),
            ["RL.SLIDING", "upload:bob", "100", "0.25", "COST", "10"]
        );
        let d = SlidingWindow::new(5, S(86_400)).unwrap();
        assert_eq!(
            argv(&cmd_sliding("k", &d, 1.into())),
            ["RL.SLIDING", "k", "5", "86400"]
        );
        assert_eq!(
            argv(&cmd_sliding("k", &d, Request::new(1).dry_run())),
            ["RL.SLIDING", "k", "5", "86400", "DRYRUN"]
        );
        assert_eq!(
            argv(&cmd_sliding("k", &d, Request::new(0).refund())),
            ["RL.SLIDING", "k", "5", "86400", "COST", "0", "REFUND"]
        );
    }

    #[test]
    fn gcra_argv() {
        let g = Gcra::new(15, 30, S(60)).unwrap();
        assert_eq!(
            argv(&cmd_gcra("k", &g, Request::new(1))),
            ["RL.GCRA", "k", "15", "30", "60"]
        );
        let g = Gcra::new(5, dec("2.5"), Duration::from_millis(100)).unwrap();
        assert_eq!(
            argv(&cmd_gcra("k", &g, Request::new(2).dry_run())),
            ["RL.GCRA", "k", "5", "2.5", "0.1", "COST", "2", "DRYRUN"]
        );
    }

    #[test]
    fn fixed_argv() {
        let f = FixedWindow::new(10, Duration::from_millis(60_500)).unwrap();
        assert_eq!(
            argv(&cmd_fixed("k", &f, Request::new(1))),
            ["RL.FIXED", "k", "10", "60.5"]
        );
        let day = FixedWindow::calendar(500, CalendarUnit::Day)
            .unwrap()
            .in_time_zone("America/New_York")
            .unwrap();
        assert_eq!(
            argv(&cmd_fixed("k", &day, Request::new(2).refund())),
            [
                "RL.FIXED",
                "k",
                "500",
                "DAY",
                "COST",
                "2",
                "TZ",
                "America/New_York",
                "REFUND"
            ]
        );
        let month = FixedWindow::calendar(1, CalendarUnit::Month).unwrap();
        assert_eq!(
            argv(&cmd_fixed("k", &month, Request::new(1))),
            ["RL.FIXED", "k", "1", "MONTH"]
        );
    }

    #[test]
    fn throttle_argv() {
        let t = Throttle::new(15, 30, S(60)).unwrap();
        assert_eq!(
            argv(&cmd_throttle("user123", &t, 1)),
            ["CL.THROTTLE", "user123", "15", "30", "60", "1"]
        );
    }

    #[test]
    fn all_argv() {
        let a = All::new("{u}:min", SlidingWindow::new(10, S(60)).unwrap()).and(
            "{u}:day",
            FixedWindow::calendar(500, CalendarUnit::Day)
                .unwrap()
                .in_time_zone("America/New_York")
                .unwrap(),
        );
        assert_eq!(
            argv(&cmd_all(&a)),
            [
                "RL.ALL",
                "LIMIT",
                "{u}:min",
                "SLIDING",
                "10",
                "60",
                "LIMIT",
                "{u}:day",
                "FIXED",
                "500",
                "DAY",
                "TZ",
                "America/New_York"
            ]
        );
        let b = All::new("a", TokenBucket::new(10, 1, S(60)).unwrap())
            .and_with_cost("b", Gcra::new(5, 1, S(1)).unwrap(), 0)
            .and("c", FixedWindow::new(3, S(10)).unwrap())
            .and("d", TokenBucket::new(2, 2, S(1)).unwrap())
            .cost(2)
            .dry_run();
        assert_eq!(
            argv(&cmd_all(&b)),
            [
                "RL.ALL",
                "COST",
                "2",
                "DRYRUN",
                "LIMIT",
                "a",
                "TOKENBUCKET",
                "10",
                "1",
                "PERIOD",
                "60",
                "LIMIT",
                "b",
                "GCRA",
                "5",
                "1",
                "1",
                "COST",
                "0",
                "LIMIT",
                "c",
                "FIXED",
                "3",
                "10",
                "LIMIT",
                "d",
                "TOKENBUCKET",
                "2",
                "2"
            ]
        );
        let r = All::new("a", SlidingWindow::new(1, S(1)).unwrap()).refund();
        assert_eq!(
            argv(&cmd_all(&r)),
            ["RL.ALL", "REFUND", "LIMIT", "a", "SLIDING", "1", "1"]
        );
    }

    #[test]
    fn policy_dispatch() {
        let p: Policy = SlidingWindow::new(5, S(60)).unwrap().into();
        assert_eq!(
            argv(&cmd_limit("k", &p, Request::default())),
            ["RL.SLIDING", "k", "5", "60"]
        );
    }
}
