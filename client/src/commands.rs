//! The commands, in the redis-rs style: `cmd_*` functions build the exact
//! argv, and three extension traits send them, all three generated from
//! one list ([`rate_limit_commands!`]): [`RateLimitCommands`] for any sync
//! [`redis::ConnectionLike`], [`AsyncRateLimitCommands`] for any async one
//! (multiplexed connection, `ConnectionManager`, cluster async
//! connection) and [`RateLimitPipeline`] for [`redis::Pipeline`] and
//! [`redis::cluster::ClusterPipeline`]. Every word after a command's name
//! and key is written by core's renderer (`redis_ratelimit_core::render`),
//! the one that writes a policy's definition and that the module's grammar
//! reads back: options are keywords after the positional arguments,
//! defaults are left out, so `RL.SLIDING k 10 60` is sent as a user would
//! type it.

use redis::{Cmd, ConnectionLike, RedisFuture, RedisResult, ToSingleRedisArg, Value};

use std::time::Duration;

use crate::limits::{
    Concurrency, FixedWindow, Gcra, NamedPolicy, Policy, SlidingWindow, Throttle, TokenBucket,
};
use crate::reply::{AllDecision, Decision, Settlement};
use redis_ratelimit_core::bounds::MAX_BLOCK_MS;
use redis_ratelimit_core::grammar::{RequestArgs, DEFAULT_COST};
use redis_ratelimit_core::num::Decimal;
use redis_ratelimit_core::render::{self, Charge, ClauseArgs, LimitArgs};

/// The commands' names, as the module registers them (an algorithm's own
/// command is its syntax's, in core).
pub(crate) mod name {
    use redis_ratelimit_core::names;
    pub const TAKE: &str = names::TAKE.as_str();
    pub const ALL: &str = names::ALL.as_str();
    pub const RELEASE: &str = names::RELEASE.as_str();
    pub const RENEW: &str = names::RENEW.as_str();
    pub const THROTTLE: &str = names::THROTTLE.as_str();
    pub const SETTLE: &str = names::SETTLE.as_str();
    /// `RL.POLICY`'s subcommands, as `COMMAND INFO` names them.
    pub const SET: names::Name = names::POLICY_SET;
    pub const GET: names::Name = names::POLICY_GET;
    pub const DEL: names::Name = names::POLICY_DEL;
    pub const LIST: names::Name = names::POLICY_LIST;
}

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

/// The longest `BLOCK` the module takes: 31 days.
pub const MAX_BLOCK: Duration = Duration::from_millis(MAX_BLOCK_MS);

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

    /// The request's options as the module reads them, for a limit that
    /// takes a cost (`costs`), or for a lease (`RL.ACQUIRE` takes one slot:
    /// a cost of 0, a dry run or a refund is sent as `DRYRUN`). A cost of
    /// 1 and a `BLOCK` outside a take are left out.
    fn args(&self, costs: bool) -> RequestArgs {
        let block = self.block_timeout().and(self.block_ms);
        if !costs {
            let take = self.mode == Mode::Consume && self.cost > 0;
            return RequestArgs {
                block: block.filter(|_| take),
                dry_run: !take,
                ..RequestArgs::default()
            };
        }
        RequestArgs {
            cost: Some(self.cost).filter(|c| *c != DEFAULT_COST),
            dry_run: self.mode == Mode::DryRun,
            refund: self.mode == Mode::Refund,
            block,
        }
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
    limits: Vec<(Vec<u8>, Policy, Charge)>,
}

impl All {
    /// The first limit (a set is never empty).
    pub fn new(key: impl AsRef<[u8]>, policy: impl Into<Policy>) -> All {
        All {
            request: Request::new(1),
            limits: vec![(key.as_ref().to_vec(), policy.into(), Charge::Call)],
        }
    }
    /// Another limit.
    pub fn and(mut self, key: impl AsRef<[u8]>, policy: impl Into<Policy>) -> All {
        self.limits
            .push((key.as_ref().to_vec(), policy.into(), Charge::Call));
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
            .push((key.as_ref().to_vec(), policy.into(), Charge::Cost(cost)));
        self
    }
    /// Another limit on which the call reserves `estimate` units
    /// (`ESTIMATE n`), settled later with the actual cost by
    /// [`settle`](RateLimitCommands::settle). A reservation needs exactly one
    /// [`Concurrency`] limit in the call: its lease id (the reply's
    /// [`lease`](AllDecision::lease)) is the handle.
    pub fn and_with_estimate(
        mut self,
        key: impl AsRef<[u8]>,
        policy: impl Into<Policy>,
        estimate: u64,
    ) -> All {
        self.limits.push((
            key.as_ref().to_vec(),
            policy.into(),
            Charge::Estimate(estimate),
        ));
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

/// Appends what core's renderer writes to `cmd`.
fn with(mut cmd: Cmd, render: impl FnOnce(&mut dyn FnMut(&[u8]))) -> Cmd {
    render(&mut |w: &[u8]| {
        cmd.arg(w);
    });
    cmd
}

/// A limit's own command: `<command> key <params> [cost] <options>
/// <request options>`.
fn limit_cmd<K: ToSingleRedisArg>(key: K, args: &LimitArgs<'_>, req: Request) -> Cmd {
    let mut c = redis::cmd(args.syntax.command);
    c.arg(key);
    let request = req.args(args.syntax.costs);
    with(c, |out| args.command(&request, &mut |w| out(w)))
}

/// `RL.TOKENBUCKET key capacity rate cost [PERIOD seconds] [DRYRUN|REFUND|BLOCK ms]`
/// (`PERIOD` left out when it is 1 s).
pub fn cmd_token_bucket<K: ToSingleRedisArg>(key: K, p: &TokenBucket, req: Request) -> Cmd {
    limit_cmd(key, &p.args(), req)
}

/// `RL.SLIDING key limit window [COST n] [DRYRUN|REFUND|BLOCK ms]`
pub fn cmd_sliding<K: ToSingleRedisArg>(key: K, p: &SlidingWindow, req: Request) -> Cmd {
    limit_cmd(key, &p.args(), req)
}

/// `RL.GCRA key burst rate period [COST n] [DRYRUN|REFUND|BLOCK ms]`
pub fn cmd_gcra<K: ToSingleRedisArg>(key: K, p: &Gcra, req: Request) -> Cmd {
    limit_cmd(key, &p.args(), req)
}

/// `RL.FIXED key limit window [TZ zone] [COST n] [DRYRUN|REFUND|BLOCK ms]`
pub fn cmd_fixed<K: ToSingleRedisArg>(key: K, p: &FixedWindow, req: Request) -> Cmd {
    limit_cmd(key, &p.args(), req)
}

/// The command for any [`Policy`] (a [`Throttle`] as the `RL.GCRA` it is,
/// a [`NamedPolicy`] as `RL.TAKE`).
pub fn cmd_limit<K: ToSingleRedisArg>(key: K, policy: &Policy, req: Request) -> Cmd {
    match policy {
        Policy::Named(p) => cmd_take(key, p.name(), req),
        other => limit_cmd(key, &other.args(), req),
    }
}

/// `RL.ACQUIRE key limit lease_seconds [BLOCK ms] [DRYRUN]`: the cost is
/// one slot (a cost of 0 is a peek, sent as `DRYRUN`); no `REFUND`
/// (`RL.RELEASE` gives a slot back).
pub fn cmd_acquire<K: ToSingleRedisArg>(key: K, p: &Concurrency, req: Request) -> Cmd {
    limit_cmd(key, &p.args(), req)
}

/// `RL.RELEASE key lease_id`: 1 if the lease was live.
pub fn cmd_release<K: ToSingleRedisArg>(key: K, lease_id: u64) -> Cmd {
    let mut c = redis::cmd(name::RELEASE);
    c.arg(key).arg(lease_id);
    c
}

/// `RL.RENEW key lease_id lease_seconds`: 1 if the lease was live.
pub fn cmd_renew<K: ToSingleRedisArg>(key: K, lease_id: u64, lease: Duration) -> Cmd {
    let mut c = redis::cmd(name::RENEW);
    // A lease no decimal holds (finer than a nanosecond, zero) is sent as
    // 0, which the module refuses.
    let secs = Decimal::from_duration_secs(lease).unwrap_or(Decimal::ZERO);
    c.arg(key).arg(lease_id).arg(secs.to_string());
    c
}

/// `RL.TAKE key policy [COST n] [DRYRUN|REFUND|BLOCK ms]`: a named policy.
pub fn cmd_take<K: ToSingleRedisArg>(key: K, policy: &str, req: Request) -> Cmd {
    let mut c = redis::cmd(name::TAKE);
    c.arg(key).arg(policy);
    with(c, |out| req.args(true).render(true, &mut |w| out(w)))
}

/// `RL.POLICY SET name <definition>`
pub fn cmd_policy_set(p: &NamedPolicy) -> Cmd {
    let mut c = subcommand(name::SET);
    c.arg(p.name());
    with(c, |out| p.render(&mut |w| out(w)))
}

/// `RL.POLICY GET name`: the definition, or nil.
pub fn cmd_policy_get(policy: &str) -> Cmd {
    let mut c = subcommand(name::GET);
    c.arg(policy);
    c
}

/// `RL.POLICY DEL name`: 1 if it was defined.
pub fn cmd_policy_del(policy: &str) -> Cmd {
    let mut c = subcommand(name::DEL);
    c.arg(policy);
    c
}

/// `RL.POLICY LIST`: `[name, definition]` pairs, by name.
pub fn cmd_policy_list() -> Cmd {
    subcommand(name::LIST)
}

/// A subcommand's call: its parent's name, then its own word.
fn subcommand(n: redis_ratelimit_core::names::Name) -> Cmd {
    let (parent, sub) = n.parts();
    let mut c = redis::cmd(parent);
    if let Some(sub) = sub {
        c.arg(sub);
    }
    c
}

/// `CL.THROTTLE key max_burst count_per_period period quantity`
pub fn cmd_throttle<K: ToSingleRedisArg>(key: K, p: &Throttle, quantity: u64) -> Cmd {
    let mut c = redis::cmd(name::THROTTLE);
    c.arg(key);
    for w in p.words(quantity) {
        c.arg(w);
    }
    c
}

/// `RL.ALL [COST n] [DRYRUN|REFUND|BLOCK ms] LIMIT key <spec> [COST n | ESTIMATE n] ...`
pub fn cmd_all(all: &All) -> Cmd {
    let limits = all.limits.iter().map(|(k, p, c)| (k.as_slice(), p, *c));
    all_parts(all.request, limits)
}

/// `RL.ALL` from its parts: the call's request, then (key, policy, own
/// cost or estimate).
pub(crate) fn all_parts<'a>(
    request: Request,
    limits: impl Iterator<Item = (&'a [u8], &'a Policy, Charge)>,
) -> Cmd {
    let clauses = limits.map(|(key, policy, cost)| {
        let limit = match policy {
            Policy::Named(p) => ClauseArgs::Policy(p.name()),
            other => ClauseArgs::Inline(other.args()),
        };
        // A lease limit takes one slot a request: no COST of its own.
        let cost = if policy.is_concurrency() {
            Charge::Call
        } else {
            cost
        };
        (key, limit, cost)
    });
    let req = request.args(true);
    with(redis::cmd(name::ALL), |out| {
        render::all(&req, clauses, &mut |w| out(w))
    })
}

/// `RL.SETTLE anchor key [key ...] LEASE lease_id ACTUAL n`: settles the
/// reservation `lease_id` (made by `RL.ALL` with `ESTIMATE` clauses) at
/// `actual` units. `keys` are every key it reserved on (its ESTIMATE
/// clauses'), `anchor` the key of its CONCURRENCY limit.
pub fn cmd_settle<K: ToSingleRedisArg>(
    anchor: K,
    keys: impl IntoIterator<Item = K>,
    lease_id: u64,
    actual: u64,
) -> Cmd {
    let mut c = redis::cmd(name::SETTLE);
    c.arg(anchor);
    for k in keys {
        c.arg(k);
    }
    with(c, |out| render::settle(lease_id, actual, &mut |w| out(w)))
}

/// `CL.THROTTLE`'s reply (redis-cell's five integers) as a decision.
fn throttle_reply(v: Value) -> RedisResult<Decision> {
    Ok(Decision::from_throttle_reply(&v)?)
}

/// What a command's reply is read as: its own type, or a raw one it is
/// converted from.
macro_rules! reply_type {
    ($ret:ty) => {
        $ret
    };
    ($ret:ty, $raw:ty) => {
        $raw
    };
}

/// The reply, converted when the command names a conversion.
macro_rules! reply {
    ($reply:expr) => {
        $reply
    };
    ($reply:expr, $conv:ident) => {
        $reply.and_then($conv)
    };
}

/// Every command, described once: the method's name and arguments, its
/// reply (with `[Raw => conversion]` when the reply is read as another
/// type first), and the `cmd_*` expression that builds it. From this one
/// list come the sync trait, the async trait and the pipeline trait, as
/// redis-rs makes its JSON commands.
macro_rules! rate_limit_commands {
    ($(
        $(#[$doc:meta])*
        fn $name:ident $(<$($g:ident: $bound:path),*>)? ($($arg:ident: $argty:ty),* $(,)?)
            -> $ret:ty $([$raw:ty => $conv:ident])? = $build:expr;
    )*) => {
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
            $(
                $(#[$doc])*
                fn $name$(<$($g: $bound),*>)?(&mut self, $($arg: $argty),*) -> RedisResult<$ret> {
                    let cmd = $build;
                    reply!(cmd.query::<reply_type!($ret $(, $raw)?)>(self) $(, $conv)?)
                }
            )*
        }

        impl<T: ConnectionLike> RateLimitCommands for T {}

        /// The rate-limit commands on any async connection. The command is
        /// built before the returned future, so keys and policies need not
        /// outlive it.
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
            $(
                $(#[$doc])*
                fn $name$(<$($g: $bound),*>)?(&mut self, $($arg: $argty),*) -> RedisFuture<'_, $ret> {
                    let cmd = $build;
                    Box::pin(async move {
                        reply!(cmd.query_async::<reply_type!($ret $(, $raw)?)>(self).await $(, $conv)?)
                    })
                }
            )*
        }

        impl<T: redis::aio::ConnectionLike + Send + Sized> AsyncRateLimitCommands for T {}

        /// The rate-limit commands added to a pipeline (a
        /// [`redis::Pipeline`], atomic or not, or a sync
        /// [`redis::cluster::ClusterPipeline`]): each method adds its
        /// command and returns the pipeline. Replies come back in order, read
        /// as the sync trait's (a [`Decision`], an [`AllDecision`], ...),
        /// except `CL.THROTTLE`'s: read it as a [`redis::Value`] and convert
        /// it with [`Decision::from_throttle_reply`].
        ///
        /// ```no_run
        /// use redis_ratelimit_client::{redis, Decision, RateLimitPipeline, SlidingWindow};
        /// use std::time::Duration;
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let mut con = redis::Client::open("redis://127.0.0.1/")?.get_connection()?;
        /// let policy = SlidingWindow::new(5, Duration::from_secs(60))?;
        /// let (a, b): (Decision, Decision) = redis::pipe()
        ///     .sliding("login:alice", &policy, 1)
        ///     .sliding("login:bob", &policy, 1)
        ///     .query(&mut con)?;
        /// # Ok(()) }
        /// ```
        pub trait RateLimitPipeline: sealed::Pipe + Sized {
            $(
                $(#[$doc])*
                fn $name$(<$($g: $bound),*>)?(&mut self, $($arg: $argty),*) -> &mut Self {
                    self.push($build);
                    self
                }
            )*
        }

        impl<P: sealed::Pipe> RateLimitPipeline for P {}
    };
}

/// What a pipeline is to [`RateLimitPipeline`]: something commands are
/// added to (sealed: implemented here only).
mod sealed {
    pub trait Pipe {
        fn push(&mut self, cmd: redis::Cmd);
    }
    impl Pipe for redis::Pipeline {
        fn push(&mut self, cmd: redis::Cmd) {
            self.add_command(cmd);
        }
    }
    impl Pipe for redis::cluster::ClusterPipeline {
        fn push(&mut self, cmd: redis::Cmd) {
            self.add_command(cmd);
        }
    }
}

rate_limit_commands! {
    /// `RL.TOKENBUCKET`
    fn token_bucket<K: ToSingleRedisArg>(key: K, policy: &TokenBucket, req: impl Into<Request>)
        -> Decision = cmd_token_bucket(key, policy, req.into());

    /// `RL.SLIDING`
    fn sliding<K: ToSingleRedisArg>(key: K, policy: &SlidingWindow, req: impl Into<Request>)
        -> Decision = cmd_sliding(key, policy, req.into());

    /// `RL.GCRA`
    fn gcra<K: ToSingleRedisArg>(key: K, policy: &Gcra, req: impl Into<Request>)
        -> Decision = cmd_gcra(key, policy, req.into());

    /// `RL.FIXED`
    fn fixed<K: ToSingleRedisArg>(key: K, policy: &FixedWindow, req: impl Into<Request>)
        -> Decision = cmd_fixed(key, policy, req.into());

    /// Whichever command `policy` needs.
    fn limit<K: ToSingleRedisArg>(key: K, policy: &Policy, req: impl Into<Request>)
        -> Decision = cmd_limit(key, policy, req.into());

    /// `RL.ALL`: every limit allows and all consume, or none changes. On an
    /// async cluster connection, wrap it in [`ClusterRouted`](crate::ClusterRouted)
    /// so the command goes straight to its keys' node.
    fn all(all: &All) -> AllDecision = cmd_all(all);

    /// `CL.THROTTLE` (redis-cell compatible).
    fn throttle<K: ToSingleRedisArg>(key: K, policy: &Throttle, quantity: u64)
        -> Decision [Value => throttle_reply] = cmd_throttle(key, policy, quantity);

    /// `RL.ACQUIRE`: one of `limit` slots; the decision's `lease` is its id.
    fn acquire<K: ToSingleRedisArg>(key: K, policy: &Concurrency, req: impl Into<Request>)
        -> Decision = cmd_acquire(key, policy, req.into());

    /// `RL.RELEASE`: true if the lease was live.
    fn release<K: ToSingleRedisArg>(key: K, lease_id: u64) -> bool = cmd_release(key, lease_id);

    /// `RL.RENEW`: true if the lease was live (it now ends `lease` from now).
    fn renew<K: ToSingleRedisArg>(key: K, lease_id: u64, lease: Duration)
        -> bool = cmd_renew(key, lease_id, lease);

    /// `RL.SETTLE`: settles a reservation (see [`cmd_settle`]); `settled`
    /// is false when the handle is unknown, already settled or ended.
    fn settle<K: ToSingleRedisArg>(anchor: K, keys: impl IntoIterator<Item = K>, lease_id: u64, actual: u64)
        -> Settlement = cmd_settle(anchor, keys, lease_id, actual);

    /// `RL.TAKE`: the named policy `policy` on `key`.
    fn take<K: ToSingleRedisArg>(key: K, policy: &str, req: impl Into<Request>)
        -> Decision = cmd_take(key, policy, req.into());

    /// `RL.POLICY SET`: stores the policy in this server. On a cluster,
    /// every primary needs it: see [`store_policy`](crate::store_policy).
    fn policy_set(policy: &NamedPolicy) -> () = cmd_policy_set(policy);

    /// `RL.POLICY GET`: the definition the server holds, if any.
    fn policy_get(name: &str) -> Option<String> = cmd_policy_get(name);

    /// `RL.POLICY DEL`: true if it was defined.
    fn policy_del(name: &str) -> bool = cmd_policy_del(name);

    /// `RL.POLICY LIST`: every (name, definition), by name.
    fn policy_list() -> Vec<(String, String)> = cmd_policy_list();
}

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
                "TZ",
                "America/New_York",
                "COST",
                "2",
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
    fn reservations_argv() {
        let a = All::new("{k}:in", Concurrency::new(10, S(120)).unwrap())
            .and("{k}:rpm", SlidingWindow::new(60, S(60)).unwrap())
            .and_with_estimate("{k}:tpm", TokenBucket::new(100, 100, S(60)).unwrap(), 2000);
        assert_eq!(
            argv(&cmd_all(&a)).join(" "),
            "RL.ALL LIMIT {k}:in CONCURRENCY 10 120 LIMIT {k}:rpm SLIDING 60 60 \
             LIMIT {k}:tpm TOKENBUCKET 100 100 PERIOD 60 ESTIMATE 2000"
        );
        assert_eq!(
            argv(&cmd_settle("{k}:in", ["{k}:tpm", "{k}:tpd"], 17, 3500)),
            [
                "RL.SETTLE",
                "{k}:in",
                "{k}:tpm",
                "{k}:tpd",
                "LEASE",
                "17",
                "ACTUAL",
                "3500"
            ]
        );
    }

    #[test]
    fn block_and_leases() {
        let w = SlidingWindow::new(5, S(60)).unwrap();
        let wait = Request::new(2).block(Duration::from_micros(1500));
        assert_eq!(
            argv(&cmd_sliding("k", &w, wait)),
            ["RL.SLIDING", "k", "5", "60", "COST", "2", "BLOCK", "2"]
        );
        // BLOCK only with a take; at most MAX_BLOCK.
        assert_eq!(
            argv(&cmd_sliding("k", &w, wait.dry_run())),
            ["RL.SLIDING", "k", "5", "60", "COST", "2", "DRYRUN"]
        );
        let long = Request::new(1).block(Duration::from_secs(365 * 86_400));
        assert_eq!(
            argv(&cmd_take("k", "api", long))[3..],
            ["BLOCK", "2678400000"]
        );
        let c = Concurrency::new(3, Duration::from_millis(1500)).unwrap();
        assert_eq!(
            argv(&cmd_acquire("k", &c, Request::new(1).block(S(1)))),
            ["RL.ACQUIRE", "k", "3", "1.5", "BLOCK", "1000"]
        );
        for peek in [
            Request::new(0),
            Request::new(1).dry_run(),
            Request::new(1).refund(),
        ] {
            assert_eq!(
                argv(&cmd_acquire("k", &c, peek)),
                ["RL.ACQUIRE", "k", "3", "1.5", "DRYRUN"]
            );
        }
        assert_eq!(
            argv(&cmd_renew("k", 7, Duration::from_millis(2500))),
            ["RL.RENEW", "k", "7", "2.5"]
        );
    }

    /// A limit is written one way: its own command, its RL.ALL clause and
    /// a policy holding it carry the same words after the key, and those
    /// are the words the module keeps for a stored policy.
    #[test]
    fn one_rendering_of_a_limit() {
        let policies: Vec<Policy> = vec![
            TokenBucket::new(10, 1, S(1)).unwrap().into(),
            TokenBucket::new(10, dec("0.5"), S(60)).unwrap().into(),
            SlidingWindow::new(100, Duration::from_millis(250))
                .unwrap()
                .into(),
            Gcra::new(5, dec("2.5"), Duration::from_millis(100))
                .unwrap()
                .into(),
            FixedWindow::calendar(500, CalendarUnit::Day)
                .unwrap()
                .in_time_zone("America/New_York")
                .unwrap()
                .into(),
            Throttle::new(15, 30, S(60)).unwrap().into(),
        ];
        for p in policies {
            let named = NamedPolicy::new("p", p.clone()).unwrap();
            let definition = named.definition_args();
            let own = argv(&cmd_limit("k", &p, Request::new(1).dry_run()));
            let mut own_words: Vec<String> = own[2..].to_vec();
            own_words.retain(|w| w != "DRYRUN");
            if definition[0] == "TOKENBUCKET" {
                own_words.remove(2); // its positional cost
            }
            assert_eq!(own_words, definition[1..], "{own:?}");
            let all = argv(&cmd_all(&All::new("k", p)));
            assert_eq!(all[3..], definition[..], "{all:?}");
            let w: Vec<&[u8]> = definition.iter().map(|s| s.as_bytes()).collect();
            let stored = redis_ratelimit_core::policy::read_definition(
                &w[..],
                0,
                redis_ratelimit_core::grammar::Settings::default(),
            )
            .unwrap();
            let kept: Vec<String> = stored
                .words
                .iter()
                .map(|w| String::from_utf8(w.clone()).unwrap())
                .collect();
            assert_eq!(kept, definition);
        }
    }

    #[test]
    fn pipelines_carry_the_same_commands() {
        let w = SlidingWindow::new(5, S(60)).unwrap();
        let t = Throttle::new(15, 30, S(60)).unwrap();
        let mut pipe = redis::pipe();
        pipe.sliding("a", &w, 3).throttle("b", &t, 1).policy_list();
        let expected = [
            cmd_sliding("a", &w, Request::new(3)),
            cmd_throttle("b", &t, 1),
            cmd_policy_list(),
        ];
        let got: Vec<Vec<String>> = pipe.cmd_iter().map(argv).collect();
        let want: Vec<Vec<String>> = expected.iter().map(argv).collect();
        assert_eq!(got, want);
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
