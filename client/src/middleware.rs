//! A tower middleware (feature `tower`) over a [`Limiter`]. For each
//! request: a key (an API key, the peer's IP, a tenant found by an async
//! lookup) and a cost, one limiter call, then the inner service's response
//! with `RateLimit-Policy` and `RateLimit` added, or a response from a hook
//! with those headers (and `Retry-After`) added: `429` with a problem
//! details body by default. While Redis is away the limiter's
//! [`FailurePolicy`](crate::FailurePolicy) decides: a fail-closed denial
//! is not the caller's fault and is answered by the unavailable hook
//! (`503 Service Unavailable` with `Retry-After` by default, never `429`);
//! the in-process fallback's decisions are limits like any other, their
//! `RateLimit` field marked `;fallback`. A limiter error that is not an
//! outage is logged through `tracing` and answered by the error hook
//! (`500` by default). A request
//! without a key gets what [`NoKey`] says, by default a `400`: never a
//! silent pass. Each layer can keep its keys under its own namespace, and
//! building a layer whose keys a live layer already uses under another
//! policy is an error, not two limits silently sharing one key.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::Error;
use crate::headers::{ceil_secs, RateLimitHeaders};
use crate::limiter::{Estimate, Limiter, Reserved};
use crate::limits::{valid_name, Limits, Policy};
use crate::reply::{AllDecision, Settlement, Source};

/// A boxed future, as [`AsyncKeyExtractor`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Finds the rate-limit key of a request, for
/// [`key_extractor`](RateLimitLayerBuilder::key_extractor): [`HeaderKey`]
/// reads a header; implement it for a type of yours. (A closure or a
/// function goes to [`key`](RateLimitLayerBuilder::key), which infers its
/// argument's type.) `None` (or an empty key): the request has no key, see
/// [`NoKey`].
pub trait KeyExtractor<B>: Send + Sync + 'static {
    /// The key of `request`, or `None` if it has none.
    fn key(&self, request: &Request<B>) -> Option<String>;
}

impl<B, F> KeyExtractor<B> for F
where
    F: Fn(&Request<B>) -> Option<String> + Send + Sync + 'static,
{
    fn key(&self, request: &Request<B>) -> Option<String> {
        self(request)
    }
}

/// Finds the rate-limit key of a request asynchronously: the tenant a
/// token belongs to, from a database or a cache, for
/// [`key_extractor_async`](RateLimitLayerBuilder::key_extractor_async).
/// Any `Fn(&http::Request<B>) -> impl Future<Output = Option<String>>`
/// whose future owns what it needs (clone it out of the request first) is
/// one; a closure goes to [`key_async`](RateLimitLayerBuilder::key_async),
/// which infers its argument's type.
///
/// The future may borrow the extractor but not the request: bodies such as
/// axum's are not `Sync`, so a future holding `&Request` would not be
/// `Send`.
pub trait AsyncKeyExtractor<B>: Send + Sync + 'static {
    /// The key of `request`, or `None` if it has none.
    fn key<'a>(&'a self, request: &Request<B>) -> BoxFuture<'a, Option<String>>;
}

impl<B, F, Fut> AsyncKeyExtractor<B> for F
where
    F: Fn(&Request<B>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    fn key<'a>(&'a self, request: &Request<B>) -> BoxFuture<'a, Option<String>> {
        Box::pin(self(request))
    }
}

/// The key is a request header's value (say `x-api-key`); a request
/// without it (or with an empty or non-text value) has no key.
///
/// ```
/// use redis_ratelimit_client::middleware::HeaderKey;
/// let by_api_key = HeaderKey::new("x-api-key");
/// assert_eq!(by_api_key.name().map(|n| n.as_str()), Some("x-api-key"));
/// ```
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: Option<HeaderName>,
}

impl HeaderKey {
    /// The header `name`: a `&str` or `String` (any case: header names are
    /// compared in lower case) or a `HeaderName`. A string that is not a
    /// header name (a space in it, say) matches no request, so every
    /// request has no key and [`NoKey`] decides (by default, `400`): check
    /// with [`name`](Self::name).
    pub fn new<N>(name: N) -> HeaderKey
    where
        HeaderName: TryFrom<N>,
    {
        HeaderKey {
            name: HeaderName::try_from(name).ok(),
        }
    }

    /// The header read, `None` if the name given was not a header name.
    pub fn name(&self) -> Option<&HeaderName> {
        self.name.as_ref()
    }
}

impl<B> KeyExtractor<B> for HeaderKey {
    fn key(&self, request: &Request<B>) -> Option<String> {
        let v = request.headers().get(self.name.as_ref()?)?.to_str().ok()?;
        (!v.is_empty()).then(|| v.to_string())
    }
}

/// What happens to a request whose extractor finds no key.
///
/// The default is [`Reject`](NoKey::Reject): a request the layer cannot
/// attribute to anyone is one it cannot limit, and letting it through
/// unlimited is how a misconfiguration (an IP extractor on a server
/// started without `into_make_service_with_connect_info`, a header renamed
/// by a proxy) turns the limit off without anyone noticing.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum NoKey {
    /// Answer with the no-key hook: `400 Bad Request` by default (the
    /// client did not say who it is; a server misconfiguration shows up at
    /// once, as every request failing).
    #[default]
    Reject,
    /// Limit every request without a key under this one key, together: all
    /// anonymous callers share one quota. Pick a key no caller can have
    /// (make the extractor's keys `key:...`, this one `anonymous`).
    Shared(String),
    /// Let the request through unlimited, without RateLimit headers.
    Pass,
}

impl NoKey {
    /// [`NoKey::Shared`] from any string.
    pub fn shared(key: impl Into<String>) -> NoKey {
        NoKey::Shared(key.into())
    }
}

/// What the limited and unavailable hooks see: the verdict, the headers
/// the response will carry, and the request (without its body, which is
/// dropped).
#[derive(Debug)]
#[non_exhaustive]
pub struct Limited<'a> {
    /// The denial: the binding limit's decision and position.
    pub verdict: &'a AllDecision,
    /// `RateLimit-Policy`, `RateLimit` and `Retry-After`, added to the
    /// hook's response after it returns.
    pub headers: &'a RateLimitHeaders,
    /// The layer's limits (`limits.get(verdict.binding)` is the one that
    /// denied).
    pub limits: &'a Limits,
    /// The caller's key (the shared key for [`NoKey::Shared`]).
    pub key: &'a str,
    /// The units this request asked for.
    pub cost: u64,
    /// The request's method, URI, headers and extensions.
    pub request: &'a Parts,
}

impl Limited<'_> {
    /// The name of the limit that denied.
    pub fn limit_name(&self) -> Option<&str> {
        self.limits.get(self.verdict.binding).map(|l| l.name())
    }

    /// Was the request denied because Redis could not be asked
    /// ([`FailurePolicy::FailClosed`](crate::FailurePolicy::FailClosed)),
    /// not because the caller is over a limit? Such denials go to the
    /// unavailable hook.
    pub fn is_unavailable(&self) -> bool {
        self.verdict.decision.source == Source::FailClosed
    }
}

/// What the error hook sees: a limiter error that is not an outage (say
/// `WRONGTYPE`: something else wrote the limiter's key), already logged.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failed<'a> {
    /// The limiter's error.
    pub error: &'a Error,
    /// The caller's key.
    pub key: &'a str,
    /// The request's method, URI, headers and extensions.
    pub request: &'a Parts,
}

/// Why a [`RateLimitLayer`] could not be built.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// None of [`key`](RateLimitLayerBuilder::key),
    /// [`key_async`](RateLimitLayerBuilder::key_async),
    /// [`key_extractor`](RateLimitLayerBuilder::key_extractor) or
    /// [`key_extractor_async`](RateLimitLayerBuilder::key_extractor_async)
    /// was given.
    NoKeyExtractor,
    /// A namespace must be 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
    InvalidNamespace {
        /// The namespace given.
        namespace: String,
    },
    /// [`NoKey::Shared`] with an empty key.
    EmptySharedKey,
    /// [`charge`](RateLimitLayerBuilder::charge) without
    /// [`reserve`](RateLimitLayerBuilder::reserve): a cost read from the
    /// response settles a reservation.
    ChargeWithoutReserve,
    /// A layer built earlier, and still alive in this process, uses the
    /// same Redis keys for a limit of the same name with another policy.
    SharedKeys {
        /// The keys both layers would use, `*` standing for any caller's
        /// key: `rl:{*}:rate`.
        keys: String,
        /// This layer's namespace and policy.
        namespace: Option<String>,
        /// This layer's policy.
        policy: Box<Policy>,
        /// The earlier layer's namespace and policy.
        other_namespace: Option<String>,
        /// The earlier layer's policy.
        other_policy: Box<Policy>,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoKeyExtractor => {
                f.write_str("no key extractor: call .key(..), .key_async(..), .key_extractor(..) or .key_extractor_async(..)")
            }
            BuildError::InvalidNamespace { namespace } => write!(
                f,
                "namespace {namespace:?} must be 1 to 64 characters of A-Z a-z 0-9 _ - . :"
            ),
            BuildError::EmptySharedKey => f.write_str("NoKey::Shared needs a non-empty key"),
            BuildError::ChargeWithoutReserve => {
                f.write_str("charge(..) settles a reservation: call .reserve(..) too")
            }
            BuildError::SharedKeys {
                keys,
                namespace,
                policy,
                other_namespace,
                other_policy,
            } => write!(
                f,
                "this layer ({}) would share the keys {keys} with a layer built earlier ({}) \
                 under another policy ({policy:?} here, {other_policy:?} there); \
                 give the layers different namespaces",
                describe(namespace.as_deref()),
                describe(other_namespace.as_deref()),
            ),
        }
    }
}

fn describe(namespace: Option<&str>) -> String {
    namespace.map_or_else(
        || "no namespace".to_string(),
        |n| format!("namespace {n:?}"),
    )
}

impl std::error::Error for BuildError {}

type OnLimited<RB> = Box<dyn Fn(&Limited<'_>) -> Response<RB> + Send + Sync>;
type OnUnavailable<RB> = OnLimited<RB>;
type OnError<RB> = Box<dyn Fn(&Failed<'_>) -> Response<RB> + Send + Sync>;
type OnNoKey<RB> = Box<dyn Fn(&Parts) -> Response<RB> + Send + Sync>;
type Cost<B> = Box<dyn Fn(&Request<B>) -> u64 + Send + Sync>;
type Reserve<B> = Box<dyn Fn(&Request<B>) -> Estimate + Send + Sync>;
type Charge<RB> = Box<dyn Fn(&Response<RB>) -> Option<u64> + Send + Sync>;

enum KeySource<B> {
    Sync(Box<dyn KeyExtractor<B>>),
    Async(Box<dyn AsyncKeyExtractor<B>>),
}

/// Everything a layer's services share.
struct Config<B, RB> {
    key: KeySource<B>,
    cost: Cost<B>,
    reserve: Option<Reserve<B>>,
    charge: Option<Charge<RB>>,
    no_key: NoKey,
    on_limited: OnLimited<RB>,
    on_unavailable: OnUnavailable<RB>,
    on_error: OnError<RB>,
    on_no_key: OnNoKey<RB>,
    /// The layer's keys with `*` for the caller's key, for the error log
    /// (which does not print callers' keys: they may be API keys).
    pattern: String,
    /// Keeps this layer's keys claimed while the layer lives.
    _claim: Arc<Claim>,
}

/// The layer: wraps a service in a [`RateLimitService`]. Built by
/// [`RateLimitLayer::builder`]. `C` is the limiter's connection, `B` the
/// request body and `RB` the response body (inferred from the service it
/// wraps: `axum::body::Body` for both in axum).
///
/// ```no_run
/// # use redis_ratelimit_client::redis;
/// # async fn f(limiter: redis_ratelimit_client::Limiter<redis::aio::ConnectionManager>)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// use redis_ratelimit_client::middleware::{HeaderKey, NoKey, RateLimitLayer};
/// # type Body = String;
/// let layer = RateLimitLayer::builder(limiter)
///     .namespace("search") // keys rl:search:{<key>}:<limit>
///     .key_extractor(HeaderKey::new("x-api-key"))
///     .cost(|req| if req.uri().path().ends_with("/bulk") { 10 } else { 1 })
///     .no_key(NoKey::shared("anonymous"))
///     .build()?;
/// # let _: redis_ratelimit_client::middleware::RateLimitLayer<_, Body, Body> = layer;
/// # Ok(()) }
/// ```
///
/// Clones share everything: apply one layer to several routes and they
/// share one quota per key; build one layer per route, each with its own
/// namespace, to give each route its own quota.
pub struct RateLimitLayer<C, B, RB> {
    limiter: Limiter<C>,
    config: Arc<Config<B, RB>>,
}

impl<C: Clone, B, RB> Clone for RateLimitLayer<C, B, RB> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: self.limiter.clone(),
            config: self.config.clone(),
        }
    }
}

impl<C, B, RB> fmt::Debug for RateLimitLayer<C, B, RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("keys", &self.config.pattern)
            .field("no_key", &self.config.no_key)
            .finish_non_exhaustive()
    }
}

impl<C, B, RB> RateLimitLayer<C, B, RB> {
    /// Starts a layer over `limiter`; [`key`](RateLimitLayerBuilder::key)
    /// (or [`key_async`](RateLimitLayerBuilder::key_async)) is required.
    pub fn builder(limiter: Limiter<C>) -> RateLimitLayerBuilder<C, B, RB> {
        RateLimitLayerBuilder {
            limiter,
            namespace: None,
            key: None,
            cost: None,
            reserve: None,
            charge: None,
            no_key: NoKey::default(),
            on_limited: None,
            on_unavailable: None,
            on_error: None,
            on_no_key: None,
        }
    }

    /// The layer's limiter: the one given to the builder, with the
    /// namespace in its prefix. Use it to refund a request whose work did
    /// not happen: it takes the same keys.
    pub fn limiter(&self) -> &Limiter<C> {
        &self.limiter
    }
}

impl<C, B, RB> RateLimitLayer<C, B, RB>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    /// The Redis keys this layer uses for a caller's key, one per limit
    /// (`rl:search:{key}:rate`).
    pub fn keys(&self, key: &str) -> Vec<String> {
        self.limiter.keys(key)
    }
}

/// Builds a [`RateLimitLayer`]. Defaults: cost 1, [`NoKey::Reject`], the
/// limiter's keys as they are (no namespace), and the default responses
/// described on each hook.
pub struct RateLimitLayerBuilder<C, B, RB> {
    limiter: Limiter<C>,
    namespace: Option<String>,
    key: Option<KeySource<B>>,
    cost: Option<Cost<B>>,
    reserve: Option<Reserve<B>>,
    charge: Option<Charge<RB>>,
    no_key: NoKey,
    on_limited: Option<OnLimited<RB>>,
    on_unavailable: Option<OnUnavailable<RB>>,
    on_error: Option<OnError<RB>>,
    on_no_key: Option<OnNoKey<RB>>,
}

impl<C, B, RB> RateLimitLayerBuilder<C, B, RB> {
    /// Keeps this layer's keys apart from every other layer's: the
    /// limiter's prefix gets `namespace:` appended (`rl:` becomes
    /// `rl:search:`, so limit `rate` of caller `k` is `rl:search:{k}:rate`).
    /// 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The key of each request, found by a closure or a function:
    /// `.key(|req| req.headers().get("x-tenant")?.to_str().ok().map(String::from))`
    /// (the argument's type is inferred). For [`HeaderKey`] or an extractor
    /// type of yours: [`key_extractor`](Self::key_extractor).
    pub fn key(self, key: impl Fn(&Request<B>) -> Option<String> + Send + Sync + 'static) -> Self {
        self.key_extractor(key)
    }

    /// The key of each request, found by a [`KeyExtractor`]:
    /// `.key_extractor(HeaderKey::new("x-api-key"))`.
    pub fn key_extractor(mut self, key: impl KeyExtractor<B>) -> Self {
        self.key = Some(KeySource::Sync(Box::new(key)));
        self
    }

    /// The key of each request, found asynchronously by a closure that
    /// returns a future (say the tenant of a bearer token, from a
    /// database): `.key_async(|req| { let token = ...; async move { .. } })`
    /// (the argument's type is inferred; the future owns what it needs).
    pub fn key_async<Fut>(self, key: impl Fn(&Request<B>) -> Fut + Send + Sync + 'static) -> Self
    where
        Fut: Future<Output = Option<String>> + Send + 'static,
    {
        self.key_extractor_async(key)
    }

    /// The key of each request, found by an [`AsyncKeyExtractor`] type.
    pub fn key_extractor_async(mut self, key: impl AsyncKeyExtractor<B>) -> Self {
        self.key = Some(KeySource::Async(Box::new(key)));
        self
    }

    /// The units each request takes (default 1): say the `x-batch-size`
    /// header, or `content-length` in kilobytes. 0 only reads the limit
    /// (a peek); a cost above a limit is denied with no `Retry-After`.
    pub fn cost(mut self, cost: impl Fn(&Request<B>) -> u64 + Send + Sync + 'static) -> Self {
        self.cost = Some(Box::new(cost));
        self
    }

    /// Costs known only from the response (tokens of a language-model
    /// call, bytes of a download): each request reserves the estimate this
    /// closure gives ([`Limiter::reserve`]: the limiter's limits need a
    /// CONCURRENCY limit, whose slot the request holds while the inner
    /// service works), and is settled when the inner service has answered,
    /// at what [`charge`](Self::charge) reads from the response (at the
    /// estimate if it reads nothing, or if the service fails). Replaces
    /// [`cost`](Self::cost). The `RateLimit` field of the response is the
    /// settlement's when it binds: a settlement beyond the limit (debt)
    /// shows `r=0` and `t` the wait the module answered.
    pub fn reserve(
        mut self,
        estimate: impl Fn(&Request<B>) -> Estimate + Send + Sync + 'static,
    ) -> Self {
        self.reserve = Some(Box::new(estimate));
        self
    }

    /// The actual cost of a request, read from its response (a usage
    /// header, an extension the handler set): `None` settles at the
    /// estimate. Needs [`reserve`](Self::reserve)
    /// ([`BuildError::ChargeWithoutReserve`] otherwise).
    pub fn charge(
        mut self,
        actual: impl Fn(&Response<RB>) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.charge = Some(Box::new(actual));
        self
    }

    /// What to do with a request without a key (default
    /// [`NoKey::Reject`]).
    pub fn no_key(mut self, no_key: NoKey) -> Self {
        self.no_key = no_key;
        self
    }

    /// The response to a request denied by a limit (by Redis, or by the
    /// in-process fallback while Redis is away). `RateLimit-Policy`,
    /// `RateLimit` and `Retry-After` are added to it. Default: `429 Too
    /// Many Requests` with an `application/problem+json` body (RFC 9457)
    /// naming the limit and the wait.
    pub fn on_limited(
        mut self,
        hook: impl Fn(&Limited<'_>) -> Response<RB> + Send + Sync + 'static,
    ) -> Self {
        self.on_limited = Some(Box::new(move |l: &Limited<'_>| hook(l)));
        self
    }

    /// The response to a request denied because Redis could not be asked
    /// and the limiter fails closed ([`Limited::is_unavailable`]): the
    /// caller is not over its limit, the service cannot tell. `Retry-After`
    /// (the limiter's cooldown, at least 1 s) and `RateLimit-Policy` are
    /// added to it. Default: `503 Service Unavailable` with a problem
    /// details body saying the limits cannot be checked now.
    pub fn on_unavailable(
        mut self,
        hook: impl Fn(&Limited<'_>) -> Response<RB> + Send + Sync + 'static,
    ) -> Self {
        self.on_unavailable = Some(Box::new(move |l: &Limited<'_>| hook(l)));
        self
    }

    /// The response when the limiter fails with an error that is not an
    /// outage (the error is logged with `tracing::error!` first). Outages
    /// never get here: the limiter's failure policy answers them. Default:
    /// `500 Internal Server Error` with a problem details body that does
    /// not reveal the error.
    pub fn on_error(
        mut self,
        hook: impl Fn(&Failed<'_>) -> Response<RB> + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Box::new(move |f: &Failed<'_>| hook(f)));
        self
    }

    /// The response to a request without a key under [`NoKey::Reject`].
    /// Default: `400 Bad Request` with a problem details body.
    pub fn on_no_key(
        mut self,
        hook: impl Fn(&Parts) -> Response<RB> + Send + Sync + 'static,
    ) -> Self {
        self.on_no_key = Some(Box::new(hook));
        self
    }
}

impl<C, B, RB> RateLimitLayerBuilder<C, B, RB>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    B: 'static,
    RB: From<String> + 'static,
{
    /// Checks the options and claims the layer's keys: if a layer built
    /// earlier in this process, and still alive, uses one of them for a
    /// limit with another policy, this is [`BuildError::SharedKeys`].
    /// (The same keys with the same policy are allowed: that is the same
    /// limit, as when each test builds the app anew. Whether two limits
    /// are one quota or two is the namespace's job.)
    ///
    /// The default responses need a response body made from a `String`
    /// (`RB: From<String>`): axum's `Body`, `String`, `Full<Bytes>`.
    pub fn build(self) -> Result<RateLimitLayer<C, B, RB>, BuildError> {
        let key = self.key.ok_or(BuildError::NoKeyExtractor)?;
        if self.charge.is_some() && self.reserve.is_none() {
            return Err(BuildError::ChargeWithoutReserve);
        }
        if let NoKey::Shared(k) = &self.no_key {
            if k.is_empty() {
                return Err(BuildError::EmptySharedKey);
            }
        }
        let limiter = match &self.namespace {
            None => self.limiter,
            Some(ns) => {
                let invalid = || BuildError::InvalidNamespace {
                    namespace: ns.clone(),
                };
                if !valid_name(ns) {
                    return Err(invalid());
                }
                let prefix = format!("{}{ns}:", prefix(&self.limiter));
                self.limiter.with_prefix(&prefix).map_err(|_| invalid())?
            }
        };
        let claim = claim(&limiter, self.namespace.as_deref())?;
        let config = Config {
            key,
            cost: self.cost.unwrap_or_else(|| Box::new(|_: &Request<B>| 1)),
            reserve: self.reserve,
            charge: self.charge,
            no_key: self.no_key,
            on_limited: self.on_limited.unwrap_or_else(|| Box::new(default_limited)),
            on_unavailable: self
                .on_unavailable
                .unwrap_or_else(|| Box::new(default_unavailable)),
            on_error: self.on_error.unwrap_or_else(|| {
                Box::new(|_: &Failed<'_>| {
                    problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the rate limiter failed".to_string(),
                    )
                })
            }),
            on_no_key: self.on_no_key.unwrap_or_else(|| {
                Box::new(|_: &Parts| {
                    problem(
                        StatusCode::BAD_REQUEST,
                        "the request carries no rate-limit key".to_string(),
                    )
                })
            }),
            pattern: limiter.keys("*").join(" "),
            _claim: claim,
        };
        Ok(RateLimitLayer {
            limiter,
            config: Arc::new(config),
        })
    }
}

/// The limiter's key prefix: its keys are `{prefix}{{key}}:{name}`.
fn prefix<C>(limiter: &Limiter<C>) -> String
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    limiter.prefix().to_string()
}

/// Held by every live layer that uses some keys; the registry keeps only
/// weak references, so dropping a layer (and its services) frees its keys.
struct Claim;

struct Claimed {
    policy: Policy,
    namespace: Option<String>,
    owners: Vec<Weak<Claim>>,
}

/// Every key pattern (`rl:{*}:rate`) a layer in this process has used,
/// with its policy.
static CLAIMS: Mutex<BTreeMap<String, Claimed>> = Mutex::new(BTreeMap::new());

fn claim<C>(limiter: &Limiter<C>, namespace: Option<&str>) -> Result<Arc<Claim>, BuildError>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let wanted: Vec<(String, &Policy)> = limiter
        .keys("*")
        .into_iter()
        .zip(limiter.limits().iter().map(|l| l.policy()))
        .collect();
    // A poisoned lock only means a panic elsewhere; the map is still whole.
    let mut claims = CLAIMS.lock().unwrap_or_else(PoisonError::into_inner);
    for (keys, policy) in &wanted {
        if let Some(c) = claims.get_mut(keys) {
            c.owners.retain(|o| o.strong_count() > 0);
            if !c.owners.is_empty() && c.policy != **policy {
                return Err(BuildError::SharedKeys {
                    keys: keys.clone(),
                    namespace: namespace.map(str::to_string),
                    policy: Box::new((*policy).clone()),
                    other_namespace: c.namespace.clone(),
                    other_policy: Box::new(c.policy.clone()),
                });
            }
        }
    }
    let claim = Arc::new(Claim);
    for (keys, policy) in wanted {
        let c = claims.entry(keys).or_insert_with(|| Claimed {
            policy: policy.clone(),
            namespace: None,
            owners: Vec::new(),
        });
        if c.owners.is_empty() {
            c.policy = policy.clone();
            c.namespace = namespace.map(str::to_string);
        }
        c.owners.push(Arc::downgrade(&claim));
    }
    Ok(claim)
}

/// A problem details response (RFC 9457) with `title`, `status` and
/// `detail`.
fn problem<RB: From<String>>(status: StatusCode, detail: String) -> Response<RB> {
    let body = format!(
        "{{\"title\":{},\"status\":{},\"detail\":{}}}",
        json_string(status.canonical_reason().unwrap_or("")),
        status.as_u16(),
        json_string(&detail),
    );
    let mut r = Response::new(RB::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn default_limited<RB: From<String>>(l: &Limited<'_>) -> Response<RB> {
    let name = l.limit_name().unwrap_or("rate");
    let d = &l.verdict.decision;
    let detail = match d.retry_after {
        Some(wait) => format!(
            "rate limit \"{name}\" exceeded; retry in {} s",
            ceil_secs(wait)
        ),
        None => format!(
            "this request (cost {}) exceeds rate limit \"{name}\" and will never be allowed",
            l.cost
        ),
    };
    problem(StatusCode::TOO_MANY_REQUESTS, detail)
}

fn default_unavailable<RB: From<String>>(l: &Limited<'_>) -> Response<RB> {
    let wait = l.verdict.decision.retry_after.unwrap_or_default();
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the rate limits cannot be checked now; retry in {} s",
            ceil_secs(wait).max(1)
        ),
    )
}

/// The service [`RateLimitLayer`] makes.
pub struct RateLimitService<S, C, B, RB> {
    inner: S,
    limiter: Limiter<C>,
    config: Arc<Config<B, RB>>,
}

impl<S: Clone, C: Clone, B, RB> Clone for RateLimitService<S, C, B, RB> {
    fn clone(&self) -> Self {
        RateLimitService {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, C: Clone, B, RB> Layer<S> for RateLimitLayer<C, B, RB> {
    type Service = RateLimitService<S, C, B, RB>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
            config: self.config.clone(),
        }
    }
}

fn insert(headers: &mut HeaderMap, h: &RateLimitHeaders) {
    for (name, value) in h.pairs() {
        // Our values are printable ASCII; a value that were not is skipped.
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(lower(name)), v);
        }
    }
}

/// The header names in the lower case `HeaderName::from_static` needs.
fn lower(name: &'static str) -> &'static str {
    match name {
        crate::headers::RATELIMIT_POLICY => "ratelimit-policy",
        crate::headers::RATELIMIT => "ratelimit",
        _ => "retry-after",
    }
}

impl<S, C, B, RB> Service<Request<B>> for RateLimitService<S, C, B, RB>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        let config = self.config.clone();
        Box::pin(async move {
            let estimate = config.reserve.as_ref().map(|r| r(&request));
            let cost = match &estimate {
                Some(e) => e.units(),
                None => (config.cost)(&request),
            };
            let key = match &config.key {
                KeySource::Sync(k) => k.key(&request),
                KeySource::Async(k) => {
                    // A separate statement: `&request` must not live
                    // across the await (bodies need not be `Sync`).
                    let found = k.key(&request);
                    found.await
                }
            };
            let key = match (key.filter(|k| !k.is_empty()), &config.no_key) {
                (Some(key), _) => key,
                (None, NoKey::Shared(shared)) => shared.clone(),
                (None, NoKey::Pass) => return inner.call(request).await,
                (None, NoKey::Reject) => {
                    tracing::debug!(keys = %config.pattern, "request without a rate-limit key rejected");
                    let (parts, _body) = request.into_parts();
                    return Ok((config.on_no_key)(&parts));
                }
            };
            let (parts, body) = request.into_parts();
            let outcome = match estimate {
                Some(estimate) => limiter.reserve(&key, estimate).await,
                None => limiter
                    .check_with(&key, crate::commands::Request::new(cost))
                    .await
                    .map(Reserved::Denied),
            };
            let (verdict, reservation) = match outcome {
                // A plain check comes back as `Denied` whatever it says.
                Ok(Reserved::Denied(v)) => (v, None),
                Ok(Reserved::Granted(r)) => (*r.decision(), Some(r)),
                Err(error) => {
                    tracing::error!(
                        error = %error,
                        keys = %config.pattern,
                        method = %parts.method,
                        path = parts.uri.path(),
                        "rate limiter failed",
                    );
                    let failed = Failed {
                        error: &error,
                        key: &key,
                        request: &parts,
                    };
                    return Ok((config.on_error)(&failed));
                }
            };
            let headers = RateLimitHeaders::new(limiter.limits(), &verdict);
            if !verdict.decision.allowed {
                let limited = Limited {
                    verdict: &verdict,
                    headers: &headers,
                    limits: limiter.limits(),
                    key: &key,
                    cost,
                    request: &parts,
                };
                let mut r = if limited.is_unavailable() {
                    (config.on_unavailable)(&limited)
                } else {
                    (config.on_limited)(&limited)
                };
                insert(r.headers_mut(), &headers);
                return Ok(r);
            }
            let mut r = match inner.call(Request::from_parts(parts, body)).await {
                Ok(r) => r,
                Err(e) => {
                    // A reservation dropped is settled at its estimate
                    // (released) in the background.
                    drop(reservation);
                    return Err(e);
                }
            };
            let Some(reservation) = reservation else {
                insert(r.headers_mut(), &headers);
                return Ok(r);
            };
            let actual = config.charge.as_ref().and_then(|charge| charge(&r));
            let reserved = reservation.positions().to_vec();
            let settled = reservation.settle(actual.unwrap_or(cost)).await;
            let after = match settled {
                Ok(s) => after_settlement(limiter.limits(), &reserved, &verdict, &s),
                Err(error) => {
                    tracing::error!(
                        error = %error,
                        keys = %config.pattern,
                        "settling a reservation failed",
                    );
                    verdict
                }
            };
            let mut headers = RateLimitHeaders::new(limiter.limits(), &after);
            // The request was served: a wait is the next request's, told
            // by `RateLimit`'s `t`.
            headers.retry_after = None;
            insert(r.headers_mut(), &headers);
            Ok(r)
        })
    }
}

/// What a served request's headers tell once its reservation is settled:
/// the settlement's answer (what the next request would see on the limits
/// it settled: `r=0` and the module's wait while one is in debt) when the
/// admission's binding limit was one the settlement changed (a reserved
/// one, or the CONCURRENCY slot it freed) or when it binds harder (in
/// debt, or less remaining); the admission's otherwise.
fn after_settlement(
    limits: &Limits,
    reserved: &[usize],
    admitted: &AllDecision,
    s: &Settlement,
) -> AllDecision {
    if !s.settled {
        return *admitted;
    }
    let d = &s.decision;
    let stale = reserved.contains(&admitted.binding)
        || limits
            .get(admitted.binding)
            .is_some_and(|l| l.policy().is_concurrency());
    // The settlement answers what a one-unit request would leave; the
    // header tells what is left now: that unit more, unless in debt.
    let mut now = *d;
    if now.decision.allowed {
        now.decision.remaining = now.decision.remaining.saturating_add(1);
    }
    if stale || !now.allowed() || now.remaining() < admitted.remaining() {
        now
    } else {
        *admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings() {
        assert_eq!(json_string("plain"), "\"plain\"");
        assert_eq!(json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(json_string("tab\tnl\n"), "\"tab\\u0009nl\\u000a\"");
        assert_eq!(json_string("é"), "\"é\"");
    }

    #[test]
    fn problem_details() {
        let r: Response<String> = problem(StatusCode::TOO_MANY_REQUESTS, "wait \"1\" s".into());
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(
            r.body(),
            "{\"title\":\"Too Many Requests\",\"status\":429,\"detail\":\"wait \\\"1\\\" s\"}"
        );
    }

    #[test]
    fn header_keys() {
        // A &str, in any case, or a HeaderName; a name that is not one
        // matches nothing.
        assert_eq!(
            HeaderKey::new("X-Api-Key").name(),
            Some(&HeaderName::from_static("x-api-key"))
        );
        assert_eq!(
            HeaderKey::new(String::from("x-api-key")).name(),
            Some(&HeaderName::from_static("x-api-key"))
        );
        let bad = HeaderKey::new("x api key");
        assert_eq!(bad.name(), None);
        let mut with = Request::new(());
        with.headers_mut()
            .insert("x-api-key", HeaderValue::from_static("alice"));
        assert_eq!(bad.key(&with), None);
        assert_eq!(
            HeaderKey::new("x-api-key").key(&with).as_deref(),
            Some("alice")
        );
        let k = HeaderKey::new(HeaderName::from_static("x-api-key"));
        let req = |v: &[u8]| {
            let mut r = Request::new(());
            if let Ok(v) = HeaderValue::from_bytes(v) {
                r.headers_mut().insert("x-api-key", v);
            }
            r
        };
        assert_eq!(k.key(&req(b"alice")), Some("alice".to_string()));
        assert_eq!(k.key(&req(b"")), None);
        assert_eq!(k.key(&req(b"caf\xc3\xa9")), None); // not visible ASCII
        assert_eq!(k.key(&Request::new(())), None);
    }
}
