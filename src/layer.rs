//! The tower layer: token → MAC check → cache → store → request extensions.
//!
//! The hit path (valid MAC, cached live session) calls the inner service
//! directly and returns its future wrapped in [`ResponseFuture`], with no
//! boxing and no allocation of its own beyond the extension slot. Only a
//! cache miss boxes a future, for the store lookup.

use std::future::Future;
use std::pin::Pin;
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

use crate::clock::now_ms;
use crate::engine::{Engine, Freshness};
use crate::error::{refusals, ErrorCode, Rejection};
use crate::session::ErasedSession;

/// What the layer learned about a request, in its extensions.
#[derive(Clone)]
pub(crate) enum AuthState {
    /// A live session, and the WeChat APIs [`WxSession`](crate::WxSession) calls.
    Authenticated(Arc<dyn ErasedSession>),
    /// No token, or one that failed (optional mode only): the extractors answer it.
    Rejected(Rejection),
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
    engine: Arc<Engine<T>>,
    optional: bool,
    /// The apps whose sessions it takes, one bit each (see `SessionCore::app_bit`).
    apps: u64,
}

impl<T> Clone for WxLoginLayer<T> {
    fn clone(&self) -> Self {
        WxLoginLayer {
            engine: self.engine.clone(),
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
    pub(crate) fn new(engine: Arc<Engine<T>>, optional: bool, apps: u64) -> Self {
        WxLoginLayer {
            engine,
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
            engine: self.engine.clone(),
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
    engine: Arc<Engine<T>>,
    optional: bool,
    apps: u64,
}

impl<S: Clone, T> Clone for WxLoginService<S, T> {
    fn clone(&self) -> Self {
        WxLoginService {
            inner: self.inner.clone(),
            engine: self.engine.clone(),
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

    // Out of line: inlined into axum's router, the router's own moves of
    // the request grow (callgrind: +1 memcpy a request), costing more than
    // the call saves (docs/performance.md).
    #[inline(never)]
    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let engine = &*self.engine;
        // DESIGN.md's token contract: a forged, truncated or tampered token is
        // refused on its MAC before any cache or store lookup.
        let parsed = match engine.token_source.read(req.headers()) {
            Ok(token) => match engine.keys.parse(token) {
                Ok(parsed) => parsed,
                Err(_) => {
                    let rej = engine.reject_fixed(&refusals::FORGED);
                    return self.refuse(req, rej);
                }
            },
            Err(code) => {
                let rej = if code == ErrorCode::MissingToken {
                    engine.reject_fixed(&refusals::MISSING)
                } else {
                    engine.reject_fixed(&refusals::NOT_TEXT)
                };
                return self.refuse(req, rej);
            }
        };

        if !engine.keys.check(&parsed) {
            let rej = engine.reject_fixed(&refusals::FORGED);
            return self.refuse(req, rej);
        }
        let id = parsed.id();
        let cached = engine.sessions.get(&id);

        if let Some(state) = cached {
            crate::observe::cache(true);
            if state.core.app_bit & self.apps == 0 {
                let rej = engine.reject_fixed(&refusals::OTHER_APP);
                return self.refuse(req, rej);
            }
            let now = now_ms();
            match engine.freshness(&state, now) {
                Freshness::Live => {
                    engine.touch_on_use(&state, now);
                    req.extensions_mut().insert(AuthState::Authenticated(state));
                    return ResponseFuture {
                        kind: Kind::Inner {
                            fut: self.inner.call(req),
                        },
                    };
                }
                Freshness::Expired => {
                    engine.sessions.forget(&id);
                    let rej = engine.reject_fixed(&refusals::EXPIRED);
                    return self.refuse(req, rej);
                }
                Freshness::IdleUnsure => engine.sessions.forget(&id),
            }
        }

        // Miss: take the service that was polled ready, leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let engine = self.engine.clone();
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
                    let resolved = engine.resolve_slow(id, apps).instrument(span.clone()).await;
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
