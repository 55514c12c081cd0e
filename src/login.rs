//! The login and logout routes, as tower services.
//!
//! Both are plain `Service<http::Request<B>>` for any body type, answering
//! `Response<Full<Bytes>>` and never failing (`Error = Infallible`), so axum
//! mounts them with `Router::route_service` and a hyper app calls them directly.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower_service::Service;
use tracing::Instrument as _;

use crate::engine::login::BoxError;
use crate::engine::Engine;

/// The future of the login and logout services.
pub type RouteFuture =
    Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// The login route: `POST` JSON `{"code": "..."}` from `wx.login()`.
///
/// Answers `200 {"token","expires_in","openid","unionid"}` or a rejection
/// from the error table. Made by [`WxLogin::login_service`](crate::WxLogin::login_service).
///
/// ```
/// use axum::Router;
/// use wxlogin::WxLogin;
/// let wx = WxLogin::builder().app_id("wx1").app_secret("s").build().unwrap();
/// let app: Router = Router::new().route_service("/wx/login", wx.login_service());
/// # let _ = app;
/// ```
pub struct LoginService<T> {
    engine: Arc<Engine<T>>,
    /// The app this route serves; `None` serves every configured app
    /// (chosen by the body's `appid`, else the default app).
    app: Option<usize>,
}

/// The logout route: `POST` with the session token → 204.
///
/// The session is deleted from the store and the cache at once; the user's
/// other sessions keep working. Made by [`WxLogin::logout_service`](crate::WxLogin::logout_service).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{body::Body, Router};
/// use http::{Request, StatusCode};
/// use tower::ServiceExt as _;
///
/// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s").build()?;
/// let app = Router::new().route_service("/wx/logout", wx.logout_service());
/// // Without a token there is nothing to log out: 401 `missing_token`.
/// let res = app.clone().oneshot(Request::post("/wx/logout").body(Body::empty())?).await?;
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// // Only POST.
/// let res = app.oneshot(Request::get("/wx/logout").body(Body::empty())?).await?;
/// assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
/// # Ok(())
/// # }
/// ```
pub struct LogoutService<T> {
    engine: Arc<Engine<T>>,
}

impl<T> LoginService<T> {
    pub(crate) fn new(engine: Arc<Engine<T>>, app: Option<usize>) -> Self {
        LoginService { engine, app }
    }
}

impl<T> Clone for LoginService<T> {
    fn clone(&self) -> Self {
        LoginService {
            engine: self.engine.clone(),
            app: self.app,
        }
    }
}

impl<T> std::fmt::Debug for LoginService<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let app = self.app.map(|i| self.engine.apps[i].app_id.as_str());
        f.debug_struct("LoginService")
            .field("app", &app)
            .finish_non_exhaustive()
    }
}

impl<T> LogoutService<T> {
    pub(crate) fn new(engine: Arc<Engine<T>>) -> Self {
        LogoutService { engine }
    }
}

impl<T> Clone for LogoutService<T> {
    fn clone(&self) -> Self {
        LogoutService {
            engine: self.engine.clone(),
        }
    }
}

impl<T> std::fmt::Debug for LogoutService<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutService").finish_non_exhaustive()
    }
}

impl<T, B> Service<Request<B>> for LoginService<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let engine = self.engine.clone();
        let app = self.app;
        let span = tracing::info_span!(
            "wxlogin.login",
            outcome = tracing::field::Empty,
            error = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        Box::pin(
            async move {
                let started = Instant::now();
                let result = engine.login(req, app).await;
                let span = tracing::Span::current();
                span.record("elapsed_ms", started.elapsed().as_millis() as u64);
                let res = match result {
                    Ok(res) => {
                        span.record("outcome", "ok");
                        crate::observe::login(None);
                        res
                    }
                    Err(rej) => {
                        let code = rej.code().as_str();
                        span.record("outcome", "rejected");
                        span.record("error", code);
                        crate::observe::login(Some(rej.code()));
                        tracing::info!(outcome = "rejected", error = code, "wxlogin: login");
                        rej.to_response().map(Full::new)
                    }
                };
                Ok(res)
            }
            .instrument(span),
        )
    }
}

impl<T, B> Service<Request<B>> for LogoutService<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    B: Send + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let engine = self.engine.clone();
        Box::pin(async move {
            Ok(
                match engine
                    .logout(req)
                    .instrument(tracing::info_span!("wxlogin.logout"))
                    .await
                {
                    Ok(()) => {
                        let mut res = Response::new(Full::new(Bytes::new()));
                        *res.status_mut() = StatusCode::NO_CONTENT;
                        res
                    }
                    Err(rej) => {
                        crate::observe::rejected(rej.code());
                        rej.to_response().map(Full::new)
                    }
                },
            )
        })
    }
}
