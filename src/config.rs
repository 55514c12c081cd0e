//! Start-up configuration: the [`WxLoginBuilder`], which checks every
//! setting and builds the [`Engine`] behind a [`WxLogin`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache::SessionCache;
use crate::engine::{Engine, Hook};
use crate::error::{BuildError, LoginError, Rejection};
use crate::handle::WxLogin;
use crate::session::{Identity, LoginOutput, SessionContext};
use crate::store::{MemoryStore, SessionStore};
use crate::token::TokenSource;
use crate::wechat::WeChatApi;
use crate::Secret;

mod settings;

use settings::Settings;

/// The default WeChat API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

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
    settings: Settings,
    hook: Hook<T>,
}

impl<T> std::fmt::Debug for WxLoginBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxLoginBuilder")
            .field("app_id", &self.settings.app_id)
            .field("app_secret", &self.settings.app_secret)
            .field("api_base", &self.settings.api_base)
            .field("token_source", &self.settings.token_source)
            .field("session_ttl", &self.settings.session_ttl)
            .field("token_keys", &self.settings.token_keys)
            .finish_non_exhaustive()
    }
}

impl WxLoginBuilder<()> {
    pub(crate) fn new() -> Self {
        WxLoginBuilder {
            settings: Settings::default(),
            hook: Arc::new(|_| Box::pin(std::future::ready(Ok(((), serde_json::Map::new()))))),
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
        self.settings.app_id = Some(app_id.into());
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
        self.settings.app_secret = Some(secret.into());
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
        self.settings.more_apps.push((app_id.into(), secret.into()));
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
        self.settings.api_base = url.into().trim_end_matches('/').to_owned();
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
        self.settings.token_source = source;
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
        self.settings.session_ttl = ttl;
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
        self.settings.idle_timeout = Some(idle);
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
        self.settings.cache_capacity = capacity;
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
        self.settings.cache_ttl = ttl;
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
        self.settings.token_keys.push(key.into());
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
        self.settings.store = Some(Arc::new(store));
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
        self.settings.store_timeout = timeout;
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
        self.settings.body_limit = bytes;
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
        self.settings.wechat_connect_timeout = connect;
        self.settings.wechat_request_timeout = attempt;
        self.settings.wechat_deadline = overall;
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
        self.settings.wechat_attempts = attempts;
        self
    }

    /// Whether sessions record their login's `User-Agent` and IP for the
    /// device list (default: on). Records with a device are the store
    /// format's version 3, which releases before it cannot read: when
    /// upgrading a fleet that shares a store, deploy with this off first
    /// (the new release reads both and writes what the old one reads),
    /// then turn it on once no old instance is left.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .record_devices(false)
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record_devices(mut self, on: bool) -> Self {
        self.settings.record_devices = on;
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
        self.settings.single_session = on;
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
        self.settings.max_sessions_per_user = max;
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
        self.settings.login_concurrency = max;
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
        self.settings.login_rate = per_second;
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
        self.settings.login_client_rate = per_second;
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
        self.settings.login_client_concurrency = max;
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
        self.settings.client_key = Some(Arc::new(key));
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
        self.settings.renderer = Some(Arc::new(render));
        self
    }

    /// The login hook: sees who WeChat says logged in, with the login
    /// body's other fields, the client's address and `User-Agent`
    /// ([`Identity`]), and returns the app's own user data (stored in the
    /// session, handed to handlers as `WxUser<U>`), or a [`LoginOk`] with
    /// that data and fields for the login answer; or refuses with
    /// [`LoginError`].
    ///
    /// [`LoginOk`]: crate::LoginOk
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
    pub fn on_login<O, F, Fut>(self, hook: F) -> WxLoginBuilder<O::Data>
    where
        O: LoginOutput,
        F: Fn(Identity) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, LoginError>> + Send + 'static,
    {
        WxLoginBuilder {
            settings: self.settings,
            hook: Arc::new(move |who| {
                let answer = hook(who);
                Box::pin(async move { answer.await.map(LoginOutput::into_parts) })
            }),
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
        let WxLoginBuilder { settings, hook } = self;
        let apps = settings.apps()?;
        settings.check()?;
        let store: Arc<dyn SessionStore> = match &settings.store {
            Some(s) => s.clone(),
            None => Arc::new(MemoryStore::new()),
        };
        let keys = settings.keys(store.as_ref())?;
        let wechat = settings.wechat_client()?;
        // Lazy: the access token is fetched on the first API call, never at login.
        let apis = apps
            .iter()
            .map(|a| {
                let api = WeChatApi::new(
                    wechat.clone(),
                    a.app_id.clone(),
                    a.secret.clone(),
                    store.clone(),
                    settings.store_timeout,
                );
                (a.app_id.clone(), Arc::new(api))
            })
            .collect();
        let ctx = Arc::new(SessionContext {
            apis,
            store,
            store_timeout: settings.store_timeout,
            renderer: settings.renderer.clone(),
        });
        let (idle_timeout_ms, idle_refresh_ms) = settings.idle_ms();
        let engine = Arc::new_cyclic(|me| Engine {
            token_source: settings.token_source.clone(),
            session_ttl: settings.session_ttl,
            idle_timeout_ms,
            idle_refresh_ms,
            keys,
            sessions: SessionCache::new(ctx, settings.cache_capacity, settings.cache_ttl),
            wechat,
            apps,
            hook,
            body_limit: settings.body_limit,
            single_session: settings.single_session,
            record_devices: settings.record_devices,
            max_sessions_per_user: settings.max_sessions_per_user,
            login_limit: settings.login_limiter(),
            client_key_fn: settings.client_key.clone(),
            me: me.clone(),
        });
        engine.watch_store();
        Ok(WxLogin { engine })
    }
}
