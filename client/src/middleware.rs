//! A tower middleware (feature `tower`): for each request, a key from the
//! request (an API key, the peer's IP, a tenant), one [`Limiter`] call,
//! then either `429 Too Many Requests` with `RateLimit-Policy`,
//! `RateLimit` and `Retry-After`, or the inner service's response with
//! `RateLimit-Policy` and `RateLimit` added. A request without a key
//! (the extractor answers `None`) passes unlimited. A limiter error that
//! is not an outage (outages are the failure policy's job) answers `500`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::headers::RateLimitHeaders;
use crate::limiter::Limiter;

/// Finds the rate-limit key of a request. Any
/// `Fn(&http::Request<B>) -> Option<String>` is one; [`HeaderKey`] reads a
/// header.
pub trait KeyExtractor<B>: Send + Sync + 'static {
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

/// The key is a request header's value (say `x-api-key`); requests
/// without it (or with a non-text value) pass unlimited.
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    pub fn new(name: HeaderName) -> HeaderKey {
        HeaderKey { name }
    }
}

impl<B> KeyExtractor<B> for HeaderKey {
    fn key(&self, request: &Request<B>) -> Option<String> {
        let v = request.headers().get(&self.name)?.to_str().ok()?;
        (!v.is_empty()).then(|| v.to_string())
    }
}

/// The layer: wraps a service in a [`RateLimitService`].
///
/// ```no_run
/// # #[cfg(feature = "tower")]
/// # async fn f(limiter: redis_ratelimit_client::Limiter<redis::aio::ConnectionManager>) {
/// use redis_ratelimit_client::middleware::{HeaderKey, RateLimitLayer};
/// let layer = RateLimitLayer::new(limiter, HeaderKey::new(http::HeaderName::from_static("x-api-key")));
/// # }
/// ```
pub struct RateLimitLayer<C, K> {
    limiter: Limiter<C>,
    key: Arc<K>,
}

impl<C: Clone, K> Clone for RateLimitLayer<C, K> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
        }
    }
}

impl<C, K> RateLimitLayer<C, K> {
    pub fn new(limiter: Limiter<C>, key: K) -> RateLimitLayer<C, K> {
        RateLimitLayer {
            limiter,
            key: Arc::new(key),
        }
    }
}

impl<S, C: Clone, K> Layer<S> for RateLimitLayer<C, K> {
    type Service = RateLimitService<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] makes.
pub struct RateLimitService<S, C, K> {
    inner: S,
    limiter: Limiter<C>,
    key: Arc<K>,
}

impl<S: Clone, C: Clone, K> Clone for RateLimitService<S, C, K> {
    fn clone(&self) -> Self {
        RateLimitService {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            key: self.key.clone(),
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

fn status<RB: Default>(code: StatusCode) -> Response<RB> {
    let mut r = Response::new(RB::default());
    *r.status_mut() = code;
    r
}

impl<S, C, K, B, RB> Service<Request<B>> for RateLimitService<S, C, K>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    K: KeyExtractor<B>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let key = self.key.key(&request);
        // The service polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        Box::pin(async move {
            let Some(key) = key else {
                return inner.call(request).await;
            };
            let verdict = match limiter.check(&key).await {
                Ok(v) => v,
                Err(_) => return Ok(status(StatusCode::INTERNAL_SERVER_ERROR)),
            };
            let headers = RateLimitHeaders::new(limiter.limits(), &verdict);
            if !verdict.decision.allowed {
                let mut r = status(StatusCode::TOO_MANY_REQUESTS);
                insert(r.headers_mut(), &headers);
                return Ok(r);
            }
            let mut r = inner.call(request).await?;
            insert(r.headers_mut(), &headers);
            Ok(r)
        })
    }
}
