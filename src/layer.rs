//! The tower layer: token → MAC check → cache → store → request extensions.
//!
//! The hit path (valid MAC, cached live session) calls the inner service
//! directly and returns its future wrapped in [`ResponseFuture`], with no
//! boxing and no allocation of its own beyond the extension slot. Only a
//! cache miss boxes a future, for the store lookup.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::config::Shared;
use crate::error::{ErrorCode, Rejection};
use crate::session::{now_ms, ErasedSession, SessionState};
use crate::store::cache::Found;
use crate::store::StoreId;
use crate::token::SessionId;

/// What the layer learned about a request, in its extensions.
#[derive(Clone)]
pub(crate) enum AuthState {
    /// A live session, and the WeChat APIs [`WxSession`](crate::WxSession) calls.
    Authenticated(Arc<dyn ErasedSession>),
    /// No token, or one that failed (optional mode only): the extractors answer it.
    Rejected(Rejection),
}

/// The layer's own rejections, their bodies rendered at compile time.
pub(crate) mod refusals {
    use crate::error::{fixed, Fixed};

    pub(crate) const MISSING: Fixed = fixed!(
        MissingToken,
        "missing_token",
        true,
        "no session token; log in first"
    );
    pub(crate) const NOT_TEXT: Fixed = fixed!(
        InvalidToken,
        "invalid_token",
        true,
        "the token header is not valid text; log in again"
    );
    pub(crate) const FORGED: Fixed = fixed!(
        InvalidToken,
        "invalid_token",
        true,
        "the token is malformed or forged; log in again"
    );
    pub(crate) const UNKNOWN: Fixed = fixed!(
        InvalidToken,
        "invalid_token",
        true,
        "the session does not exist or was revoked; log in again"
    );
    pub(crate) const EXPIRED: Fixed = fixed!(
        SessionExpired,
        "session_expired",
        true,
        "the session has expired; log in again"
    );
    pub(crate) const OTHER_APP: Fixed = fixed!(
        InvalidToken,
        "invalid_token",
        true,
        "the session is not for this mini program; log in again"
    );
    pub(crate) const STORE_DOWN: Fixed = fixed!(
        StoreUnavailable,
        "store_unavailable",
        false,
        "the session store is unavailable; try again shortly"
    );

    /// Every one of them, for the test that checks them against the serializer.
    #[cfg(test)]
    pub(crate) const ALL: [&Fixed; 7] = [
        &MISSING,
        &NOT_TEXT,
        &FORGED,
        &UNKNOWN,
        &EXPIRED,
        &OTHER_APP,
        &STORE_DOWN,
    ];
}

/// A [`Layer`] that authenticates requests by their session token.
///
/// Made by [`WxLogin::layer`](crate::WxLogin::layer) (a session is required)
/// or [`WxLogin::optional_layer`](crate::WxLogin::optional_layer).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{service_fn, ServiceBuilder, ServiceExt as _};
///
/// // Any tower service over `http` types, no axum needed (the response body
/// // must be `From<Bytes>`, for the rejections).
/// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s").build()?;
/// let svc = ServiceBuilder::new()
///     .layer(wx.layer())
///     .service(service_fn(|_req: Request<Full<Bytes>>| async {
///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("secret stuff"))))
///     }));
/// let res = svc.oneshot(Request::new(Full::default())).await?;
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// # Ok(())
/// # }
/// ```
pub struct WxLoginLayer<T> {
    shared: Arc<Shared<T>>,
    optional: bool,
    /// The apps whose sessions it takes, one bit each (see `SessionCore::app_bit`).
    apps: u64,
}

impl<T> Clone for WxLoginLayer<T> {
    fn clone(&self) -> Self {
        WxLoginLayer {
            shared: self.shared.clone(),
            optional: self.optional,
            apps: self.apps,
        }
    }
}

impl<T> std::fmt::Debug for WxLoginLayer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxLoginLayer")
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

impl<T> WxLoginLayer<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>, optional: bool, apps: u64) -> Self {
        WxLoginLayer {
            shared,
            optional,
            apps,
        }
    }
}

impl<S, T> Layer<S> for WxLoginLayer<T> {
    type Service = WxLoginService<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        WxLoginService {
            inner,
            shared: self.shared.clone(),
            optional: self.optional,
            apps: self.apps,
        }
    }
}

/// The service made by [`WxLoginLayer`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{service_fn, Layer as _, ServiceExt as _};
///
/// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s").build()?;
/// let inner = service_fn(|_req: Request<Full<Bytes>>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
/// });
/// let svc = wx.optional_layer().layer(inner); // a `WxLoginService`
/// // Optional mode: an anonymous request reaches the inner service.
/// let res = svc.oneshot(Request::new(Full::default())).await?;
/// assert_eq!(res.status(), StatusCode::OK);
/// # Ok(())
/// # }
/// ```
pub struct WxLoginService<S, T> {
    inner: S,
    shared: Arc<Shared<T>>,
    optional: bool,
    apps: u64,
}

impl<S: Clone, T> Clone for WxLoginService<S, T> {
    fn clone(&self) -> Self {
        WxLoginService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            optional: self.optional,
            apps: self.apps,
        }
    }
}

impl<S, T> std::fmt::Debug for WxLoginService<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxLoginService")
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

type MissFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

pin_project! {
    /// The response future of [`WxLoginService`]: the inner future on a cache
    /// hit, a boxed lookup on a miss, or a ready rejection.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] fut: F },
        Miss { fut: MissFuture<Response<B>, E> },
        Rejected { res: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx),
            KindProj::Miss { fut } => fut.as_mut().poll(cx),
            KindProj::Rejected { res } => Poll::Ready(Ok(res
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

/// What a cached session says at this moment.
enum Freshness {
    Live,
    /// Past its absolute end.
    Expired,
    /// Past the idle deadline this process knows; another instance may have
    /// extended it, so the store decides.
    IdleUnsure,
}

impl<T> Shared<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    #[inline]
    fn freshness(&self, state: &SessionState<T>, now: u64) -> Freshness {
        if now >= state.core.expires_at_ms {
            return Freshness::Expired;
        }
        match state.core.idle_deadline() {
            Some(idle) if now >= idle => Freshness::IdleUnsure,
            _ => Freshness::Live,
        }
    }

    /// Extends an idle deadline on use, writing to the store at most once per
    /// refresh interval per session (per process).
    #[inline]
    fn touch_on_use(&self, state: &Arc<SessionState<T>>, now: u64) {
        let Some(idle_ms) = self.idle_timeout_ms else {
            return;
        };
        let current = state.core.idle_expires_at_ms.load(Ordering::Relaxed);
        // Still at least `idle` ahead: nothing to write.
        if now.saturating_add(idle_ms) <= current {
            return;
        }
        self.extend_idle(state, now, idle_ms, current);
    }

    /// The write behind `touch_on_use`, out of line: the hit path
    /// only reads the deadline.
    #[inline(never)]
    fn extend_idle(&self, state: &Arc<SessionState<T>>, now: u64, idle_ms: u64, current: u64) {
        // Jump a refresh interval past the minimum, so the next write is one
        // interval away however often the session is used.
        let target = now
            .saturating_add(idle_ms)
            .saturating_add(self.idle_refresh_ms)
            .min(state.core.expires_at_ms);
        if target <= current {
            return;
        }
        if state
            .core
            .idle_expires_at_ms
            .compare_exchange(current, target, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another request is writing it
        }
        let store = self.sessions.store().clone();
        let state = state.clone();
        let timeout = self.sessions.store_timeout();
        tokio::spawn(async move {
            let store_id = state.core.store_id;
            let failed = match tokio::time::timeout(timeout, store.touch(store_id, target)).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("timed out after {timeout:?}"),
            };
            // The store still has the old deadline: put it back here too, so
            // the next request writes again instead of trusting a deadline
            // that only this process knows (and the store ending the session
            // under an active user).
            let restored = state
                .core
                .idle_expires_at_ms
                .compare_exchange(target, current, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
            tracing::warn!(error = %failed, retried_on_next_use = restored, "wxlogin: idle extension failed");
        });
    }

    /// The slow path: resolve through the store (single-flight), for a
    /// layer taking the sessions of the `apps` mask.
    pub(crate) async fn resolve_slow(
        &self,
        id: SessionId,
        apps: u64,
    ) -> Result<Arc<SessionState<T>>, Rejection> {
        let now = now_ms();
        match self.sessions.resolve(id).await {
            Ok(Found::Live(state)) if state.core.app_bit & apps == 0 => {
                Err(self.reject_fixed(&refusals::OTHER_APP))
            }
            Ok(Found::Live(state)) => match self.freshness(&state, now) {
                Freshness::Live => {
                    self.touch_on_use(&state, now);
                    tracing::trace!(cache = "miss", outcome = "ok", "wxlogin: session resolved");
                    Ok(state)
                }
                _ => {
                    self.sessions.forget(&id);
                    Err(self.reject_fixed(&refusals::EXPIRED))
                }
            },
            Ok(Found::Expired) => Err(self.reject_fixed(&refusals::EXPIRED)),
            Ok(Found::Unknown) => Err(self.reject_fixed(&refusals::UNKNOWN)),
            Err(_) => Err(self.reject_fixed(&refusals::STORE_DOWN)),
        }
    }

    /// Ends one session: cache (and tombstone), then store. The store call
    /// is detached: cut by the timeout, it still deletes and announces, and
    /// renews the tombstone when it is done.
    pub(crate) async fn revoke_id(&self, id: SessionId) -> Result<bool, Rejection> {
        let store_id = StoreId::of(&id);
        self.sessions.invalidate(&id, store_id);
        let store = self.sessions.store().clone();
        let me = self.me.clone();
        let deleted = self
            .sessions
            .timed_detached(
                "delete",
                async move { store.delete(store_id).await },
                move |_| {
                    if let Some(shared) = me.upgrade() {
                        shared.sessions.invalidate(&id, store_id);
                    }
                },
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "wxlogin: logout failed");
                self.reject_fixed(&refusals::STORE_DOWN)
            })?;
        Ok(deleted)
    }
}

impl<S, T, ReqB, ResB> Service<Request<ReqB>> for WxLoginService<S, T>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: From<Bytes> + Send + 'static,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let shared = &*self.shared;
        // DESIGN.md's token contract: a forged, truncated or tampered token is
        // refused on its MAC before any cache or store lookup.
        let parsed = match shared.token_source.read(req.headers()) {
            Ok(token) => match shared.keys.parse(token) {
                Ok(parsed) => parsed,
                Err(_) => {
                    let rej = shared.reject_fixed(&refusals::FORGED);
                    return self.refuse(req, rej);
                }
            },
            Err(code) => {
                let rej = if code == ErrorCode::MissingToken {
                    shared.reject_fixed(&refusals::MISSING)
                } else {
                    shared.reject_fixed(&refusals::NOT_TEXT)
                };
                return self.refuse(req, rej);
            }
        };

        if !shared.keys.check(&parsed) {
            let rej = shared.reject_fixed(&refusals::FORGED);
            return self.refuse(req, rej);
        }
        let id = parsed.id();
        let cached = shared.sessions.get(&id);

        if let Some(state) = cached {
            crate::observe::cache(true);
            if state.core.app_bit & self.apps == 0 {
                let rej = shared.reject_fixed(&refusals::OTHER_APP);
                return self.refuse(req, rej);
            }
            let now = now_ms();
            match shared.freshness(&state, now) {
                Freshness::Live => {
                    shared.touch_on_use(&state, now);
                    req.extensions_mut().insert(AuthState::Authenticated(state));
                    return ResponseFuture {
                        kind: Kind::Inner {
                            fut: self.inner.call(req),
                        },
                    };
                }
                Freshness::Expired => {
                    shared.sessions.forget(&id);
                    let rej = shared.reject_fixed(&refusals::EXPIRED);
                    return self.refuse(req, rej);
                }
                Freshness::IdleUnsure => shared.sessions.forget(&id),
            }
        }

        // Miss: take the service that was polled ready, leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let optional = self.optional;
        let apps = self.apps;
        crate::observe::cache(false);
        let span = tracing::debug_span!(
            "wxlogin.resolve",
            cache = "miss",
            outcome = tracing::field::Empty
        );
        ResponseFuture {
            kind: Kind::Miss {
                fut: Box::pin(async move {
                    let resolved = shared.resolve_slow(id, apps).instrument(span.clone()).await;
                    span.record(
                        "outcome",
                        match &resolved {
                            Ok(_) => "ok",
                            Err(rej) => rej.code().as_str(),
                        },
                    );
                    match resolved {
                        Ok(state) => {
                            req.extensions_mut().insert(AuthState::Authenticated(state));
                        }
                        Err(rej) if optional => {
                            req.extensions_mut().insert(AuthState::Rejected(rej));
                        }
                        Err(rej) => {
                            crate::observe::rejected(rej.code());
                            return Ok(rej.to_response().map(ResB::from));
                        }
                    }
                    inner.call(req).await
                }),
            },
        }
    }
}

impl<S, T> WxLoginService<S, T> {
    #[inline(never)]
    #[allow(clippy::type_complexity)]
    fn refuse<ReqB, ResB>(
        &mut self,
        mut req: Request<ReqB>,
        rej: Rejection,
    ) -> ResponseFuture<
        <S as Service<Request<ReqB>>>::Future,
        ResB,
        <S as Service<Request<ReqB>>>::Error,
    >
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        ResB: From<Bytes>,
    {
        tracing::debug!(error = rej.code().as_str(), "wxlogin: request rejected");
        crate::observe::rejected(rej.code());
        if self.optional {
            req.extensions_mut().insert(AuthState::Rejected(rej));
            return ResponseFuture {
                kind: Kind::Inner {
                    fut: self.inner.call(req),
                },
            };
        }
        ResponseFuture {
            kind: Kind::Rejected {
                res: Some(rej.to_response().map(ResB::from)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Rejection;

    #[test]
    fn fixed_bodies_are_what_the_serializer_writes() {
        for fixed in super::refusals::ALL {
            let by_serializer = Rejection::new(fixed.code, fixed.message).default_response();
            let prerendered = fixed.rejection(None).default_response();
            assert_eq!(prerendered.body(), by_serializer.body(), "{}", fixed.body);
            assert_eq!(prerendered.headers(), by_serializer.headers());
            assert_eq!(prerendered.status(), by_serializer.status());
            let body: serde_json::Value = serde_json::from_str(fixed.body).unwrap();
            assert_eq!(body["error"], fixed.code.as_str());
            assert_eq!(body["relogin"], fixed.code.relogin());
        }
    }
}
