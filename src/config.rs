//! Start-up configuration: the [`WxLogin`] builder and the handle it returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{BuildError, ErrorCode, LoginError, Rejection, Renderer};
use crate::layer::WxLoginLayer;
use crate::login::{LoginService, LogoutService};
use crate::session::{Identity, SessionContext};
use crate::store::cache::SessionCache;
use crate::store::{Invalidation, MemoryStore, SessionStore, StoreError};
use crate::token::{key_is_strong, TokenKeys, WEAK_KEY};
use crate::wechat::{ClientConfig, WeChatApi, WeChatClient};
use crate::Secret;

/// The default WeChat API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

/// Code exchanges per second one client may start by default (and as many
/// at once): twice the ten a second that many users behind one carrier NAT
/// may need.
const DEFAULT_CLIENT_RATE: u32 = 20;

/// Code exchanges one client may have in flight by default.
const DEFAULT_CLIENT_CONCURRENCY: usize = 16;

type HookFuture<T> = Pin<Box<dyn Future<Output = Result<T, LoginError>> + Send>>;
pub(crate) type Hook<T> = Arc<dyn Fn(Identity) -> HookFuture<T> + Send + Sync>;

/// Where the layer and the logout route read the session token.
///
/// ```
/// use wxlogin::TokenSource;
/// let bearer = TokenSource::Bearer; // `Authorization: Bearer <token>`, the default
/// let custom = TokenSource::header("X-WX-Session").unwrap();
/// # let _ = (bearer, custom);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` (scheme matched case-insensitively).
    #[default]
    Bearer,
    /// The whole value of a named header, such as `X-WX-Session`.
    Header(HeaderName),
}

impl TokenSource {
    /// A named header; `None` if the name is not a valid header name.
    ///
    /// ```
    /// use wxlogin::TokenSource;
    /// assert!(TokenSource::header("X-WX-Session").is_some());
    /// assert!(TokenSource::header("not a header name").is_none());
    /// ```
    pub fn header(name: &str) -> Option<Self> {
        HeaderName::from_bytes(name.as_bytes())
            .ok()
            .map(TokenSource::Header)
    }

    /// The token in these headers, or the error-table code for its absence.
    #[inline]
    pub(crate) fn read<'a>(&self, headers: &'a HeaderMap) -> Result<&'a str, ErrorCode> {
        let value = match self {
            TokenSource::Bearer => headers.get(header::AUTHORIZATION),
            TokenSource::Header(name) => headers.get(name),
        };
        let Some(value) = value else {
            return Err(ErrorCode::MissingToken);
        };
        let text = value.to_str().map_err(|_| ErrorCode::InvalidToken)?.trim();
        let token = match self {
            TokenSource::Bearer => {
                let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(ErrorCode::MissingToken);
                }
                rest.trim_start()
            }
            TokenSource::Header(_) => text,
        };
        if token.is_empty() {
            Err(ErrorCode::MissingToken)
        } else {
            Ok(token)
        }
    }
}

/// One mini program the backend serves.
pub(crate) struct App {
    pub(crate) app_id: String,
    pub(crate) secret: Secret,
}

/// Everything the layer, the extractors and the routes share.
pub(crate) struct Shared<T> {
    pub(crate) app_id: String,
    pub(crate) app_secret: Secret,
    pub(crate) token_source: TokenSource,
    pub(crate) session_ttl: Duration,
    pub(crate) idle_timeout_ms: Option<u64>,
    pub(crate) idle_refresh_ms: u64,
    pub(crate) keys: Arc<TokenKeys>,
    pub(crate) sessions: SessionCache<T>,
    pub(crate) wechat: WeChatClient,
    /// The APIs behind the access token (checksession, phone number).
    pub(crate) api: Arc<WeChatApi>,
    /// Every app served; the first is the default (`app_id`/`app_secret`).
    pub(crate) apps: Vec<App>,
    pub(crate) hook: Hook<T>,
    pub(crate) renderer: Option<Renderer>,
    pub(crate) body_limit: usize,
    pub(crate) single_session: bool,
    /// The most sessions a user keeps; a login beyond it ends the oldest.
    pub(crate) max_sessions_per_user: usize,
    pub(crate) login_limit: crate::limit::LoginLimiter,
    /// The app's own client key for the login limits, if it set one.
    pub(crate) client_key_fn: Option<crate::limit::ClientKeyFn>,
    /// Every configured app's bit, the mask of [`WxLogin::layer`].
    pub(crate) all_apps: u64,
    /// This `Shared` itself, for store calls that finish after their caller
    /// gave up (they still drop from the cache what they ended).
    pub(crate) me: Weak<Shared<T>>,
}

impl<T> Shared<T> {
    pub(crate) fn reject(&self, code: ErrorCode, message: &'static str) -> Rejection {
        Rejection::new(code, message).with_renderer(self.renderer.as_ref())
    }

    /// A rejection with a body rendered at compile time (the layer's own).
    pub(crate) fn reject_fixed(&self, fixed: &crate::error::Fixed) -> Rejection {
        fixed.rejection(self.renderer.as_ref())
    }
}

/// The default of [`WxLoginBuilder::max_sessions_per_user`].
pub(crate) const DEFAULT_MAX_SESSIONS_PER_USER: usize = 20;

/// A configured WeChat login: hands out the layer and the login and logout
/// routes, all sharing one cache, store and WeChat client.
///
/// `T` is the app's own user data, returned by the login hook and stored in
/// the session (`()` when there is no hook). Cloning is cheap.
///
/// ```
/// use std::time::Duration;
/// use wxlogin::WxLogin;
///
/// let wx = WxLogin::builder()
///     .app_id("wx0123456789abcdef")
///     .app_secret("app-secret")
///     .session_ttl(Duration::from_secs(7 * 24 * 3600))
///     .build()
///     .unwrap();
/// let _layer = wx.layer();
/// let _login = wx.login_service();
/// ```
pub struct WxLogin<T = ()> {
    pub(crate) shared: Arc<Shared<T>>,
}

impl<T> Clone for WxLogin<T> {
    fn clone(&self) -> Self {
        WxLogin {
            shared: self.shared.clone(),
        }
    }
}

impl<T> std::fmt::Debug for WxLogin<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxLogin")
            .field("app_id", &self.shared.app_id)
            .field("app_secret", &self.shared.app_secret)
            .field("token_source", &self.shared.token_source)
            .field("session_ttl", &self.shared.session_ttl)
            .field("keys", &self.shared.keys)
            .finish_non_exhaustive()
    }
}

impl WxLogin<()> {
    /// Starts a configuration. App id and secret are required; the rest has defaults.
    ///
    /// ```
    /// use wxlogin::WxLogin;
    /// let wx = WxLogin::builder()
    ///     .app_id("wx0123456789abcdef")
    ///     .app_secret("app-secret")
    ///     .build()?;
    /// assert_eq!(wx.app_id(), "wx0123456789abcdef");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> WxLoginBuilder<()> {
        WxLoginBuilder::new()
    }
}

impl<T> WxLogin<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The layer that requires a valid session on every request it wraps.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, routing::get, Router};
    /// use http::{header, Request, StatusCode};
    /// use tower::ServiceExt as _;
    ///
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s").build()?;
    /// let app = Router::new()
    ///     .route("/api/orders", get(|| async { "[]" }))
    ///     .layer(wx.layer()); // every route above needs a session
    ///
    /// // No token, or a forged one: 401, and the handler never runs.
    /// let res = app.clone().oneshot(Request::get("/api/orders").body(Body::empty())?).await?;
    /// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    /// assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    /// let forged = Request::get("/api/orders")
    ///     .header(header::AUTHORIZATION, "Bearer forged")
    ///     .body(Body::empty())?;
    /// assert_eq!(app.oneshot(forged).await?.status(), StatusCode::UNAUTHORIZED);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// It takes the sessions of every configured app (see
    /// [`WxLoginBuilder::add_app`]); [`WxLogin::layer_for`] takes one app's.
    /// A session of an app this login does not serve (another deployment on
    /// the same store and key) is `401 invalid_token` everywhere.
    pub fn layer(&self) -> WxLoginLayer<T> {
        WxLoginLayer::new(self.shared.clone(), false, self.shared.all_apps)
    }

    /// The layer for routes of one mini program: a session of another
    /// configured app is `401 invalid_token` (with `relogin: true`), as if
    /// unknown. `None` if the app id was not configured.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{routing::get, Router};
    /// use wxlogin::WxLogin;
    ///
    /// let wx = WxLogin::builder()
    ///     .app_id("wx_shop_00000000").app_secret("shop-secret")
    ///     .add_app("wx_game_00000000", "game-secret")
    ///     .build()?;
    /// let shop_api = Router::new()
    ///     .route("/api/shop/orders", get(|| async { "[]" }))
    ///     .layer(wx.layer_for("wx_shop_00000000").expect("configured")); // shop sessions only
    /// let both = Router::new()
    ///     .route("/api/profile", get(|| async { "{}" }))
    ///     .layer(wx.layer()); // either app's sessions
    /// let app: Router = shop_api.merge(both);
    /// assert!(wx.layer_for("wx_unknown").is_none());
    /// # let _ = app;
    /// # Ok(())
    /// # }
    /// ```
    pub fn layer_for(&self, app_id: &str) -> Option<WxLoginLayer<T>> {
        let bit = self.app_mask(app_id)?;
        Some(WxLoginLayer::new(self.shared.clone(), false, bit))
    }

    /// [`WxLogin::optional_layer`] for one mini program's routes: no token
    /// passes anonymously, a session of another app is refused as
    /// [`WxLogin::layer_for`] refuses it (the extractors answer its 401).
    /// `None` if the app id was not configured.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use wxlogin::{WxLogin, WxUser};
    ///
    /// let wx = WxLogin::builder()
    ///     .app_id("wx_shop_00000000").app_secret("shop-secret")
    ///     .add_app("wx_game_00000000", "game-secret")
    ///     .build()?;
    /// let home = Router::new()
    ///     .route("/game/home", get(|u: Option<WxUser>| async move { format!("{}", u.is_some()) }))
    ///     .layer(wx.optional_layer_for("wx_game_00000000").expect("configured"));
    /// # let _: Router = home;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn optional_layer_for(&self, app_id: &str) -> Option<WxLoginLayer<T>> {
        let bit = self.app_mask(app_id)?;
        Some(WxLoginLayer::new(self.shared.clone(), true, bit))
    }

    /// The mask bit of a configured app.
    fn app_mask(&self, app_id: &str) -> Option<u64> {
        let i = self.shared.apps.iter().position(|a| a.app_id == app_id)?;
        Some(1u64 << i)
    }

    /// The layer that lets requests without a token through anonymously.
    ///
    /// A request with a bad or expired token still reaches the handler, and
    /// the extractors (`WxUser`, `Option<WxUser>`) answer its 401.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, routing::get, Router};
    /// use http::{header, Request, StatusCode};
    /// use tower::ServiceExt as _;
    /// use wxlogin::{WxLogin, WxUser};
    ///
    /// async fn home(user: Option<WxUser>) -> String {
    ///     match user {
    ///         Some(user) => format!("hello {}", user.openid()),
    ///         None => "hello stranger".to_owned(),
    ///     }
    /// }
    ///
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").build()?;
    /// let app = Router::new().route("/", get(home)).layer(wx.optional_layer());
    ///
    /// // Anonymous: the handler runs with `None`.
    /// let res = app.clone().oneshot(Request::get("/").body(Body::empty())?).await?;
    /// assert_eq!(res.status(), StatusCode::OK);
    /// // A bad token is still a 401: the client should log in again.
    /// let forged = Request::get("/")
    ///     .header(header::AUTHORIZATION, "Bearer forged")
    ///     .body(Body::empty())?;
    /// assert_eq!(app.oneshot(forged).await?.status(), StatusCode::UNAUTHORIZED);
    /// # Ok(())
    /// # }
    /// ```
    pub fn optional_layer(&self) -> WxLoginLayer<T> {
        WxLoginLayer::new(self.shared.clone(), true, self.shared.all_apps)
    }

    /// The login route: `POST {"code"}` → `{"token","expires_in","openid","unionid"}`.
    ///
    /// ```
    /// # #[cfg(feature = "mock")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, Router};
    /// use http::{Request, StatusCode};
    /// use tower::ServiceExt as _;
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    ///
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder()
    ///     .app_id("wx1")
    ///     .app_secret("s")
    ///     .api_base(wechat.base_url())
    ///     .build()?;
    /// let app = Router::new().route_service("/wx/login", wx.login_service());
    ///
    /// let code = wechat.mint_code("o-alice"); // what `wx.login()` gives the mini program
    /// let login = || Request::post("/wx/login").body(Body::from(format!(r#"{{"code":"{code}"}}"#)));
    /// let res = app.clone().oneshot(login()?).await?;
    /// assert_eq!(res.status(), StatusCode::OK);
    /// // A code is single use: 400 `invalid_code`, with `relogin: true`.
    /// assert_eq!(app.oneshot(login()?).await?.status(), StatusCode::BAD_REQUEST);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "mock"))]
    /// # fn main() {}
    /// ```
    pub fn login_service(&self) -> LoginService<T> {
        LoginService::new(self.shared.clone(), None)
    }

    /// A login route for one of the configured mini programs (a backend
    /// serving several can mount one per app, e.g. `/wx/{appid}/login`);
    /// `None` if the app id was not configured.
    ///
    /// [`WxLogin::login_service`] serves them all instead: the body names
    /// its app with `{"code", "appid"}` (the default app when absent).
    ///
    /// ```
    /// use axum::Router;
    /// use wxlogin::WxLogin;
    ///
    /// let wx = WxLogin::builder()
    ///     .app_id("wx_shop_00000000").app_secret("shop-secret")
    ///     .add_app("wx_game_00000000", "game-secret")
    ///     .build()?;
    /// let mut app = Router::new();
    /// for app_id in wx.app_ids() {
    ///     let login = wx.login_service_for(app_id).expect("a configured app");
    ///     app = app.route_service(&format!("/wx/{app_id}/login"), login);
    /// }
    /// assert!(wx.login_service_for("wx_unknown").is_none());
    /// # let _: Router = app;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn login_service_for(&self, app_id: &str) -> Option<LoginService<T>> {
        let i = self.shared.apps.iter().position(|a| a.app_id == app_id)?;
        Some(LoginService::new(self.shared.clone(), Some(i)))
    }

    /// Every app id this login serves, the default first.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder()
    ///     .app_id("wx1").app_secret("s1")
    ///     .add_app("wx2", "s2")
    ///     .build()?;
    /// assert_eq!(wx.app_ids().collect::<Vec<_>>(), ["wx1", "wx2"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn app_ids(&self) -> impl Iterator<Item = &str> {
        self.shared.apps.iter().map(|a| a.app_id.as_str())
    }

    /// The logout route: `POST` with the token → 204.
    ///
    /// ```
    /// # #[cfg(feature = "mock")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, routing::get, Router};
    /// use http::{header, Request, StatusCode};
    /// use tower::ServiceExt as _;
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    ///
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    /// let app = Router::new()
    ///     .route("/api/me", get(|| async { "me" }))
    ///     .layer(wx.layer())
    ///     .route_service("/wx/login", wx.login_service())
    ///     .route_service("/wx/logout", wx.logout_service());
    ///
    /// let code = wechat.mint_code("o-alice");
    /// let res = app.clone()
    ///     .oneshot(Request::post("/wx/login").body(Body::from(format!(r#"{{"code":"{code}"}}"#)))?)
    ///     .await?;
    /// let bytes = axum::body::to_bytes(res.into_body(), 4096).await?;
    /// let token = serde_json::from_slice::<serde_json::Value>(&bytes)?["token"]
    ///     .as_str().unwrap().to_owned();
    /// let with_token = |req: http::request::Builder| {
    ///     req.header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty())
    /// };
    ///
    /// let res = app.clone().oneshot(with_token(Request::post("/wx/logout"))?).await?;
    /// assert_eq!(res.status(), StatusCode::NO_CONTENT);
    /// // The token is dead at once.
    /// let res = app.oneshot(with_token(Request::get("/api/me"))?).await?;
    /// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "mock"))]
    /// # fn main() {}
    /// ```
    pub fn logout_service(&self) -> LogoutService<T> {
        LogoutService::new(self.shared.clone())
    }

    /// The configured app id.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s").build()?;
    /// assert_eq!(wx.app_id(), "wx1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    /// The session store.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s").build()?;
    /// // The default store is a `MemoryStore`, private to this process.
    /// assert!(!wx.store().is_shared());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        self.shared.sessions.store()
    }

    /// Ends every session of a user (log out everywhere); returns how many.
    ///
    /// ```
    /// # #[cfg(feature = "mock")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, Router};
    /// use http::{Request, StatusCode};
    /// use tower::ServiceExt as _;
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    ///
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    /// let app = Router::new().route_service("/wx/login", wx.login_service());
    /// for _device in 0..2 {
    ///     let code = wechat.mint_code("o-alice");
    ///     let login = Request::post("/wx/login").body(Body::from(format!(r#"{{"code":"{code}"}}"#)))?;
    ///     assert_eq!(app.clone().oneshot(login).await?.status(), StatusCode::OK);
    /// }
    ///
    /// assert_eq!(wx.revoke_user("o-alice").await?, 2);
    /// assert_eq!(wx.revoke_user("o-alice").await?, 0);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "mock"))]
    /// # fn main() {}
    /// ```
    pub async fn revoke_user(&self, openid: &str) -> Result<usize, StoreError> {
        self.shared.revoke_user(openid).await
    }
}

impl<T> Shared<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub(crate) async fn revoke_user(&self, openid: &str) -> Result<usize, StoreError> {
        let store = self.sessions.store().clone();
        let openid = openid.to_owned();
        let me = self.me.clone();
        // Detached: cut by the timeout, the revoke still finishes, and the
        // cache drops what it ended, even when it failed part-way.
        self.sessions
            .timed_detached(
                "delete_user",
                async move { store.delete_user(&openid).await },
                move |result| {
                    if let Some(shared) = me.upgrade() {
                        match result {
                            Ok(ids) => shared.sessions.invalidate_store_ids(ids),
                            Err(e) => shared.sessions.invalidate_store_ids(e.ended()),
                        }
                    }
                },
            )
            .await
            .map(|ids| ids.len())
    }
}

/// Session creation without WeChat, for benchmarks and memory measurements
/// that need a million sessions (feature `fuzzing`; **not a stable API**).
#[cfg(feature = "fuzzing")]
impl<T> WxLogin<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Creates a session for `openid` in the default app as a successful
    /// login does once WeChat has answered and the hook returned `data`
    /// (the steps after the code exchange and the hook in `Shared::login`):
    /// the record, the single-session revocation if configured, a fresh
    /// token, the store `create`, the newest `session_key`, and the cache
    /// entry. Returns the token.
    #[doc(hidden)]
    pub async fn bench_create_session(
        &self,
        openid: &str,
        unionid: Option<&str>,
        session_key: Secret,
        data: T,
    ) -> Result<String, StoreError> {
        let shared = &*self.shared;
        let data_json = serde_json::to_vec(&data)
            .map_err(|e| StoreError::new(format_args!("data does not serialize: {e}")))?;
        let (token, _) = shared
            .create_session(
                shared.app_id.clone(),
                openid.to_owned(),
                unionid.map(str::to_owned),
                session_key,
                data_json,
                data,
            )
            .await?;
        Ok(token)
    }

    /// A well-formed token, signed by this login's key, for a random session
    /// id that no store holds: the layer answers it `invalid_token` after a
    /// store lookup.
    #[doc(hidden)]
    pub fn bench_unknown_token(&self) -> String {
        self.shared.keys.mint().1
    }
}

/// Builds a [`WxLogin`]; start with [`WxLogin::builder`].
///
/// ```
/// use std::time::Duration;
/// use wxlogin::WxLogin;
///
/// let wx = WxLogin::builder()
///     .app_id("wx0123456789abcdef")
///     .app_secret("app-secret")
///     .token_key("0123456789abcdef0123456789abcdef") // from your secret store
///     .session_ttl(Duration::from_secs(30 * 24 * 3600))
///     .idle_timeout(Duration::from_secs(7 * 24 * 3600))
///     .token_header("X-WX-Session")
///     .build()?;
/// # let _ = wx;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WxLoginBuilder<T> {
    app_id: Option<String>,
    app_secret: Option<Secret>,
    more_apps: Vec<(String, Secret)>,
    api_base: String,
    token_source: TokenSource,
    session_ttl: Duration,
    idle_timeout: Option<Duration>,
    cache_capacity: u64,
    cache_ttl: Duration,
    token_keys: Vec<Secret>,
    store: Option<Arc<dyn SessionStore>>,
    store_timeout: Duration,
    hook: Hook<T>,
    renderer: Option<Renderer>,
    body_limit: usize,
    wechat_connect_timeout: Duration,
    wechat_request_timeout: Duration,
    wechat_deadline: Duration,
    wechat_attempts: u32,
    single_session: bool,
    max_sessions_per_user: usize,
    login_concurrency: usize,
    login_rate: u32,
    login_client_rate: u32,
    login_client_concurrency: usize,
    client_key: Option<crate::limit::ClientKeyFn>,
}

impl<T> std::fmt::Debug for WxLoginBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxLoginBuilder")
            .field("app_id", &self.app_id)
            .field("app_secret", &self.app_secret)
            .field("api_base", &self.api_base)
            .field("token_source", &self.token_source)
            .field("session_ttl", &self.session_ttl)
            .field("token_keys", &self.token_keys)
            .finish_non_exhaustive()
    }
}

impl WxLoginBuilder<()> {
    fn new() -> Self {
        WxLoginBuilder {
            app_id: None,
            app_secret: None,
            more_apps: Vec::new(),
            api_base: DEFAULT_API_BASE.to_owned(),
            token_source: TokenSource::Bearer,
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            idle_timeout: None,
            cache_capacity: 100_000,
            cache_ttl: Duration::from_secs(30),
            token_keys: Vec::new(),
            store: None,
            store_timeout: Duration::from_secs(1),
            hook: Arc::new(|_| Box::pin(std::future::ready(Ok(())))),
            renderer: None,
            body_limit: 16 * 1024,
            wechat_connect_timeout: Duration::from_secs(2),
            wechat_request_timeout: Duration::from_secs(3),
            wechat_deadline: Duration::from_secs(5),
            wechat_attempts: 3,
            single_session: false,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            login_concurrency: 256,
            login_rate: 500,
            login_client_rate: DEFAULT_CLIENT_RATE,
            login_client_concurrency: DEFAULT_CLIENT_CONCURRENCY,
            client_key: None,
        }
    }
}

impl<T> WxLoginBuilder<T> {
    /// The mini program's app id (`appid`). Required.
    ///
    /// ```
    /// use wxlogin::{BuildError, WxLogin};
    /// let wx = WxLogin::builder().app_id("wx0123456789abcdef").app_secret("s").build()?;
    /// assert_eq!(wx.app_id(), "wx0123456789abcdef");
    /// assert!(matches!(WxLogin::builder().app_secret("s").build(), Err(BuildError::MissingAppId)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn app_id(mut self, app_id: impl Into<String>) -> Self {
        self.app_id = Some(app_id.into());
        self
    }

    /// The mini program's app secret. Required; kept in a redacting [`Secret`].
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder()
    ///     .app_id("wx1")
    ///     .app_secret("app-secret")
    ///     .build()?;
    /// assert!(!format!("{wx:?}").contains("app-secret"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn app_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.app_secret = Some(secret.into());
        self
    }

    /// Serves another mini program from the same backend (and store): its
    /// users log in with `{"code", "appid"}` on [`WxLogin::login_service`],
    /// or on their own route from [`WxLogin::login_service_for`]. Sessions
    /// record their app ([`WxUser::app_id`](crate::WxUser::app_id)); openids
    /// differ between apps, unionids do not.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder()
    ///     .app_id("wx_shop_00000000").app_secret("shop-secret")
    ///     .add_app("wx_game_00000000", "game-secret")
    ///     .build().unwrap();
    /// assert_eq!(wx.app_ids().collect::<Vec<_>>(), ["wx_shop_00000000", "wx_game_00000000"]);
    /// ```
    pub fn add_app(mut self, app_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        self.more_apps.push((app_id.into(), secret.into()));
        self
    }

    /// The WeChat API base URL, for proxies and test doubles
    /// (default `https://api.weixin.qq.com`): an `http://` or `https://` URL,
    /// with a path prefix if the proxy needs one, and no query or fragment
    /// (`build` refuses them).
    ///
    /// ```
    /// use wxlogin::{BuildError, WxLogin};
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .api_base("http://wechat-proxy.internal:8080")
    ///     .build()?;
    /// # let _ = wx;
    /// let bad = WxLogin::builder().app_id("wx1").app_secret("s").api_base("wechat-proxy").build();
    /// assert!(matches!(bad, Err(BuildError::InvalidValue { field: "api_base", .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.api_base = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Where the token is read (default `Authorization: Bearer`).
    ///
    /// ```
    /// use wxlogin::{TokenSource, WxLogin};
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .token_source(TokenSource::header("X-WX-Session").unwrap())
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn token_source(mut self, source: TokenSource) -> Self {
        self.token_source = source;
        self
    }

    /// Reads the token from a named header such as `X-WX-Session`.
    ///
    /// # Panics
    /// If `name` is not a valid header name (a start-up programming error).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, routing::get, Router};
    /// use http::{header, Request, StatusCode};
    /// use serde_json::Value;
    /// use tower::ServiceExt as _;
    ///
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .token_header("X-WX-Session")
    ///     .build()?;
    /// let app = Router::new().route("/api/me", get(|| async { "me" })).layer(wx.layer());
    ///
    /// // A token in `X-WX-Session` is checked (this one is forged) ...
    /// let req = Request::get("/api/me").header("x-wx-session", "forged").body(Body::empty())?;
    /// let res = app.clone().oneshot(req).await?;
    /// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    /// let body: Value = serde_json::from_slice(&axum::body::to_bytes(res.into_body(), 4096).await?)?;
    /// assert_eq!(body["error"], "invalid_token");
    /// // ... and `Authorization` is not read at all.
    /// let req = Request::get("/api/me").header(header::AUTHORIZATION, "Bearer x").body(Body::empty())?;
    /// let res = app.oneshot(req).await?;
    /// let body: Value = serde_json::from_slice(&axum::body::to_bytes(res.into_body(), 4096).await?)?;
    /// assert_eq!(body["error"], "missing_token");
    /// # Ok(())
    /// # }
    /// ```
    pub fn token_header(self, name: &str) -> Self {
        let source = TokenSource::header(name).expect("invalid header name for token_header");
        self.token_source(source)
    }

    /// How long a session lives from login, whatever the use (default 7 days).
    ///
    /// ```
    /// use std::time::Duration;
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .session_ttl(Duration::from_secs(24 * 3600)) // `expires_in: 86400` in the login reply
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Ends sessions unused for this long (default: none). Use extends the
    /// session with at most one store write per refresh interval (half the
    /// timeout, at most 5 minutes), so a session ends between `idle` and
    /// `idle` plus that interval after its last use, never sooner.
    ///
    /// ```
    /// use std::time::Duration;
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .session_ttl(Duration::from_secs(30 * 24 * 3600))
    ///     .idle_timeout(Duration::from_secs(3 * 24 * 3600)) // log out after 3 days away
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// How many sessions the in-process cache holds (default 100 000; 0 disables it).
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .cache_capacity(10_000)
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// How long a cached session is served without asking the store (default 30 s).
    /// It bounds how stale another instance's view can be.
    ///
    /// ```
    /// use std::time::Duration;
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .cache_ttl(Duration::from_secs(5))
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Adds a token key: at least 128 bits, that is 32 or more hex digits, or
    /// at least 32 characters of other text (`openssl rand -hex 32` makes a
    /// good one). The key's text is the HMAC key as written; hex is not
    /// decoded. The first key signs new tokens; every key verifies, so a key
    /// can be rotated by putting the new one first. Without any, a random key
    /// is made at start, which only suits a single instance on a memory store.
    ///
    /// ```
    /// use wxlogin::{BuildError, WxLogin};
    /// // Rotation: the new key signs, the old one still verifies tokens it signed.
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .token_key("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    ///     .token_key("0123456789abcdef0123456789abcdef")
    ///     .build()?;
    /// # let _ = wx;
    /// // 16 hex digits are only 64 bits.
    /// let short = WxLogin::builder().app_id("wx1").app_secret("s").token_key("0123456789abcdef").build();
    /// assert!(matches!(short, Err(BuildError::InvalidValue { field: "token_key", .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn token_key(mut self, key: impl Into<Secret>) -> Self {
        self.token_keys.push(key.into());
        self
    }

    /// Where sessions are kept (default: a [`MemoryStore`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{store::MemoryStore, WxLogin};
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .store(MemoryStore::new())
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok(())
    /// # }
    /// ```
    pub fn store(mut self, store: impl SessionStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Every store call fails with `store_unavailable` after this long (default 1 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .store_timeout(Duration::from_millis(300))
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Largest login request body in bytes (default 16 KiB); larger gets 413.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .body_limit(4 * 1024)
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Time limits for WeChat: connect, one attempt, and the whole exchange
    /// with its retries (defaults 2 s, 3 s, 5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .wechat_timeouts(Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4))
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wechat_timeouts(
        mut self,
        connect: Duration,
        attempt: Duration,
        overall: Duration,
    ) -> Self {
        self.wechat_connect_timeout = connect;
        self.wechat_request_timeout = attempt;
        self.wechat_deadline = overall;
        self
    }

    /// How many times a code exchange is tried when WeChat is busy or unreachable (default 3).
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .wechat_attempts(1) // no retries
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wechat_attempts(mut self, attempts: u32) -> Self {
        self.wechat_attempts = attempts;
        self
    }

    /// One session per user: a new login ends the user's other sessions
    /// (default: off, a user may be logged in on several devices).
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .single_session(true)
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn single_session(mut self, on: bool) -> Self {
        self.single_session = on;
        self
    }

    /// The most sessions one user keeps at once (default 20, at least 1): a
    /// login beyond it ends the user's oldest session. Enough for a phone, a
    /// tablet and a few web-view hand-offs; it bounds what one account can
    /// hold in the store, and what a stolen code replayed in a loop can
    /// pile up. `single_session(true)` is a cap of 1.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .max_sessions_per_user(5)
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_sessions_per_user = max;
        self
    }

    /// Caps code exchanges with WeChat in flight at once (default 256); a
    /// login over the cap gets `429 rate_limited` at once rather than queuing.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .login_concurrency(32)
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn login_concurrency(mut self, max: usize) -> Self {
        self.login_concurrency = max;
        self
    }

    /// Caps code exchanges per second (default 500, with a burst of as many;
    /// 0 turns the cap off); over it a login gets `429 rate_limited` with
    /// `Retry-After: 1`. It protects the app's WeChat quota from a flood.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .login_rate(50)
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn login_rate(mut self, per_second: u32) -> Self {
        self.login_rate = per_second;
        self
    }

    /// Caps code exchanges per second from one client (default 20, with a
    /// burst of as many; 0 turns the per-client limits off). Over it, that
    /// client gets `429 rate_limited` with `Retry-After`, and uses none of
    /// the global budget ([`WxLoginBuilder::login_rate`]), so other clients
    /// keep logging in. A client is the peer address by default; see
    /// [`WxLoginBuilder::login_client_key`] for what that needs.
    ///
    /// Many users can share one address (a carrier's NAT, an office): keep
    /// the rate well above what one address's real users need. Each
    /// instance counts its own clients.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .login_client_rate(50) // a campus behind one address
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn login_client_rate(mut self, per_second: u32) -> Self {
        self.login_client_rate = per_second;
        self
    }

    /// Caps code exchanges one client may have in flight at once (default
    /// 16, a share of [`WxLoginBuilder::login_concurrency`]).
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .login_client_concurrency(4)
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn login_client_concurrency(mut self, max: usize) -> Self {
        self.login_client_concurrency = max;
        self
    }

    /// Who a login comes from, for the per-client limits, when the peer
    /// address is not the client (behind a reverse proxy or a load balancer
    /// every request comes from the proxy). The closure sees the request's
    /// head and returns the key, or `None` to use the peer address.
    ///
    /// Read only what the proxy sets and the client cannot forge: with one
    /// proxy that appends the client address to `X-Forwarded-For`, that is
    /// the last entry (earlier ones are the client's own claims).
    ///
    /// Without this, the key is the connection's peer address, which the
    /// server must put in the request extensions: axum does with
    /// `into_make_service_with_connect_info::<SocketAddr>()` (feature
    /// `axum`, on by default); a hyper app inserts the `SocketAddr` it got
    /// from `accept()` (`req.extensions_mut().insert(peer)`). With neither,
    /// only the global limits apply, and a warning says so once.
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use wxlogin::{ClientKey, WxLogin};
    ///
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s")
    ///     // Behind one nginx with `proxy_add_x_forwarded_for`.
    ///     .login_client_key(|parts| {
    ///         let xff = parts.headers.get("x-forwarded-for")?.to_str().ok()?;
    ///         let last = xff.rsplit(',').next()?.trim();
    ///         last.parse::<IpAddr>().ok().map(ClientKey::from)
    ///     })
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn login_client_key<F>(mut self, key: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<crate::ClientKey> + Send + Sync + 'static,
    {
        self.client_key = Some(Arc::new(key));
        self
    }

    /// Re-renders every rejection (layer, extractors, login, logout) into the
    /// app's own envelope. `WWW-Authenticate`, `Retry-After` and
    /// `Content-Type: application/json` are added unless the renderer set them.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use wxlogin::{Rejection, WxLogin};
    /// let wx = WxLogin::builder()
    ///     .app_id("wx1").app_secret("s")
    ///     .render_rejection(|r: &Rejection| {
    ///         let body = serde_json::json!({"code": r.code().as_str(), "msg": r.message(), "data": null});
    ///         http::Response::builder().status(r.status()).body(Bytes::from(body.to_string())).unwrap()
    ///     })
    ///     .build().unwrap();
    /// # let _ = wx;
    /// ```
    pub fn render_rejection<F>(mut self, render: F) -> Self
    where
        F: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.renderer = Some(Arc::new(render));
        self
    }

    /// The login hook: sees who WeChat says logged in and returns the app's
    /// own user data (stored in the session, handed to handlers as
    /// `WxUser<U>`), or refuses with [`LoginError`].
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use wxlogin::{Identity, LoginError, WxLogin};
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct Account { id: i64 }
    ///
    /// let wx = WxLogin::builder()
    ///     .app_id("wx1").app_secret("s")
    ///     .on_login(|who: Identity| async move {
    ///         if who.openid == "banned" { return Err(LoginError::refused("banned")); }
    ///         Ok(Account { id: 7 })
    ///     })
    ///     .build().unwrap();
    /// # let _ = wx;
    /// ```
    pub fn on_login<U, F, Fut>(self, hook: F) -> WxLoginBuilder<U>
    where
        F: Fn(Identity) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<U, LoginError>> + Send + 'static,
    {
        WxLoginBuilder {
            app_id: self.app_id,
            app_secret: self.app_secret,
            more_apps: self.more_apps,
            api_base: self.api_base,
            token_source: self.token_source,
            session_ttl: self.session_ttl,
            idle_timeout: self.idle_timeout,
            cache_capacity: self.cache_capacity,
            cache_ttl: self.cache_ttl,
            token_keys: self.token_keys,
            store: self.store,
            store_timeout: self.store_timeout,
            hook: Arc::new(move |who| Box::pin(hook(who))),
            renderer: self.renderer,
            body_limit: self.body_limit,
            wechat_connect_timeout: self.wechat_connect_timeout,
            wechat_request_timeout: self.wechat_request_timeout,
            wechat_deadline: self.wechat_deadline,
            wechat_attempts: self.wechat_attempts,
            single_session: self.single_session,
            max_sessions_per_user: self.max_sessions_per_user,
            login_concurrency: self.login_concurrency,
            login_rate: self.login_rate,
            login_client_rate: self.login_client_rate,
            login_client_concurrency: self.login_client_concurrency,
            client_key: self.client_key,
        }
    }

    /// Checks the configuration and builds the login.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wxlogin::{BuildError, WxLogin};
    ///
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").build()?;
    /// # let _ = wx;
    /// let err = WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .session_ttl(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidValue { field: "session_ttl", .. }));
    /// assert_eq!(err.to_string(), "wxlogin: invalid session_ttl: must be longer than zero");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<WxLogin<T>, BuildError>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        fn invalid(field: &'static str, reason: &'static str) -> BuildError {
            BuildError::InvalidValue { field, reason }
        }
        let app_id = self
            .app_id
            .filter(|a| !a.trim().is_empty())
            .ok_or(BuildError::MissingAppId)?;
        let app_secret = self
            .app_secret
            .filter(|s| !s.expose().trim().is_empty())
            .ok_or(BuildError::MissingAppSecret)?;
        let mut apps = vec![App {
            app_id: app_id.clone(),
            secret: app_secret.clone(),
        }];
        for (id, secret) in self.more_apps {
            if id.trim().is_empty() || id.len() > 64 {
                return Err(invalid("add_app", "the app id must be 1 to 64 characters"));
            }
            if secret.expose().trim().is_empty() {
                return Err(invalid("add_app", "the app secret must not be empty"));
            }
            if apps.iter().any(|a| a.app_id == id) {
                return Err(invalid("add_app", "an app id is configured twice"));
            }
            if apps.len() == crate::session::MAX_APPS {
                return Err(invalid(
                    "add_app",
                    "at most 64 apps are served by one login",
                ));
            }
            apps.push(App { app_id: id, secret });
        }
        if crate::wechat::parse_api_base(&self.api_base).is_none() {
            return Err(invalid(
                "api_base",
                "must be an http:// or https:// URL without a query or fragment",
            ));
        }
        if self.session_ttl.is_zero() {
            return Err(invalid("session_ttl", "must be longer than zero"));
        }
        if self.cache_ttl.is_zero() {
            return Err(invalid("cache_ttl", "must be longer than zero"));
        }
        if self.store_timeout.is_zero() {
            return Err(invalid("store_timeout", "must be longer than zero"));
        }
        if let Some(idle) = self.idle_timeout {
            if idle.is_zero() {
                return Err(invalid("idle_timeout", "must be longer than zero"));
            }
        }
        if self.body_limit < 64 {
            return Err(invalid("body_limit", "must be at least 64 bytes"));
        }
        if self.login_concurrency == 0 {
            return Err(invalid("login_concurrency", "must be at least 1"));
        }
        if self.max_sessions_per_user == 0 {
            return Err(invalid("max_sessions_per_user", "must be at least 1"));
        }
        if self.login_client_concurrency == 0 {
            return Err(invalid("login_client_concurrency", "must be at least 1"));
        }
        if self.wechat_attempts == 0 {
            return Err(invalid("wechat_attempts", "must be at least 1"));
        }
        if self.wechat_connect_timeout.is_zero()
            || self.wechat_request_timeout.is_zero()
            || self.wechat_deadline.is_zero()
        {
            return Err(invalid("wechat_timeouts", "must be longer than zero"));
        }
        if self.token_keys.iter().any(|k| !key_is_strong(k.expose())) {
            return Err(invalid("token_key", WEAK_KEY));
        }
        let store: Arc<dyn SessionStore> = match self.store {
            Some(s) => s,
            None => Arc::new(MemoryStore::new()),
        };
        if store.is_shared() && self.token_keys.is_empty() {
            return Err(BuildError::SharedStoreWithoutKey);
        }
        let keys = Arc::new(if self.token_keys.is_empty() {
            TokenKeys::new(&[TokenKeys::random_key()])
        } else {
            TokenKeys::new(&self.token_keys)
        });
        let wechat = WeChatClient::new(ClientConfig {
            api_base: self.api_base,
            connect_timeout: self.wechat_connect_timeout,
            request_timeout: self.wechat_request_timeout,
            deadline: self.wechat_deadline,
            max_attempts: self.wechat_attempts,
            max_reply_bytes: 64 * 1024,
        })
        .map_err(|e| BuildError::HttpClient(e.without_url().to_string()))?;
        // Lazy: the access token is fetched on the first API call, never at login.
        let apis: Vec<(String, Arc<WeChatApi>)> = apps
            .iter()
            .map(|a| {
                let api = WeChatApi::new(
                    wechat.clone(),
                    a.app_id.clone(),
                    a.secret.clone(),
                    store.clone(),
                    self.store_timeout,
                );
                (a.app_id.clone(), Arc::new(api))
            })
            .collect();
        let api = apis[0].1.clone();
        let app_count = apps.len();
        let idle_timeout_ms = self.idle_timeout.map(|d| d.as_millis().max(1) as u64);
        // A session ends between `idle` and `idle + refresh` after its last
        // use, and costs one store write per refresh interval while in use.
        let idle_refresh_ms = idle_timeout_ms
            .map(|ms| (ms / 2).clamp(1, 300_000))
            .unwrap_or(0);
        let shared = Arc::new_cyclic(|me| Shared {
            app_id,
            app_secret,
            token_source: self.token_source,
            session_ttl: self.session_ttl,
            idle_timeout_ms,
            idle_refresh_ms,
            keys,
            sessions: SessionCache::new(
                Arc::new(SessionContext {
                    apis,
                    store,
                    store_timeout: self.store_timeout,
                }),
                self.cache_capacity,
                self.cache_ttl,
            ),
            wechat,
            api,
            apps,
            hook: self.hook,
            renderer: self.renderer,
            body_limit: self.body_limit,
            single_session: self.single_session,
            max_sessions_per_user: self.max_sessions_per_user,
            login_limit: crate::limit::LoginLimiter::new(
                self.login_concurrency,
                self.login_rate,
                crate::limit::ClientLimits {
                    per_second: self.login_client_rate,
                    concurrency: self.login_client_concurrency,
                },
            ),
            client_key_fn: self.client_key,
            all_apps: crate::session::all_apps(app_count),
            me: me.clone(),
        });
        let weak = Arc::downgrade(&shared);
        shared
            .sessions
            .store()
            .watch_invalidations(Arc::new(move |inv: Invalidation| {
                let Some(shared) = weak.upgrade() else {
                    return false;
                };
                match inv {
                    Invalidation::Sessions(ids) => shared.sessions.invalidate_store_ids(&ids),
                    Invalidation::All => shared.sessions.invalidate_all(),
                }
                true
            }));
        Ok(WxLogin { shared })
    }
}
