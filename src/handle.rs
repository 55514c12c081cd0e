//! The handle of a configured login, [`WxLogin`]: what the app holds, and
//! every public method on it (the layers, the routes, revocation, WeChat's
//! server APIs). Each is a thin front over the [`Engine`]. The one
//! constructor, [`WxLogin::builder`], lives with the builder in `config.rs`
//! (imports run from the builder to the handle, never back).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::Engine;
use crate::error::Rejection;
use crate::extract::WxUser;
use crate::layer::WxLoginLayer;
use crate::login::{LoginService, LogoutService};
use crate::session::Identity;
use crate::store::{SessionStore, StoreError};
use crate::wechat::{PhoneInfo, WeChatApiError};
use crate::Secret;

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
    pub(crate) engine: Arc<Engine<T>>,
}

impl<T> Clone for WxLogin<T> {
    fn clone(&self) -> Self {
        WxLogin {
            engine: self.engine.clone(),
        }
    }
}

impl<T> std::fmt::Debug for WxLogin<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxLogin")
            .field("app_id", &self.engine.default_app().app_id)
            .field("app_secret", &self.engine.default_app().secret)
            .field("token_source", &self.engine.token_source)
            .field("session_ttl", &self.engine.session_ttl)
            .field("keys", &self.engine.keys)
            .finish_non_exhaustive()
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
    /// [`WxLoginBuilder::add_app`](crate::WxLoginBuilder::add_app)); [`WxLogin::layer_for`] takes one app's.
    /// A session of an app this login does not serve (another deployment on
    /// the same store and key) is `401 invalid_token` everywhere.
    pub fn layer(&self) -> WxLoginLayer<T> {
        WxLoginLayer::new(self.engine.clone(), false, self.engine.all_apps())
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
        let bit = self.engine.app_mask(app_id)?;
        Some(WxLoginLayer::new(self.engine.clone(), false, bit))
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
        let bit = self.engine.app_mask(app_id)?;
        Some(WxLoginLayer::new(self.engine.clone(), true, bit))
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
        WxLoginLayer::new(self.engine.clone(), true, self.engine.all_apps())
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
        LoginService::new(self.engine.clone(), None)
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
        let i = self.engine.app_index(app_id)?;
        Some(LoginService::new(self.engine.clone(), Some(i)))
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
        self.engine.apps.iter().map(|a| a.app_id.as_str())
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
        LogoutService::new(self.engine.clone())
    }

    /// The configured app id.
    ///
    /// ```
    /// let wx = wxlogin::WxLogin::builder().app_id("wx1").app_secret("s").build()?;
    /// assert_eq!(wx.app_id(), "wx1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn app_id(&self) -> &str {
        &self.engine.default_app().app_id
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
        self.engine.sessions.store()
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
        self.engine.revoke_user(openid).await
    }

    /// Issues a session for an identity the app has verified itself (an
    /// SMS code, a password, an official-account OAuth, a hand-off to a
    /// web-view page): the same token format, layer, caps and revocation
    /// as a WeChat login, with the app's `data`. `who.openid` is the key
    /// that [`revoke_user`](Self::revoke_user) and the per-user cap go by:
    /// give a user's WeChat openid and one revoke ends all their sessions.
    /// The session has no WeChat `session_key` (the user's newest one, from
    /// their last WeChat login, is kept as it was). Answers the token and
    /// its lifetime; a store failure is `store_unavailable` (503), an
    /// `openid` that is empty or over 128 bytes, an unknown app id or data
    /// that does not serialize is `misconfigured`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, routing::get, Router};
    /// use http::{Request, StatusCode};
    /// use tower::ServiceExt as _;
    /// use wxlogin::{Identity, WxLogin, WxUser};
    ///
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .on_login(|_who: Identity| async move { Ok(String::new()) })
    ///     .build()?;
    /// // The app checked an SMS code for +86 138 0013 8000, whose account is "u42".
    /// let issued = wx.issue_session(Identity::new("u42"), "sms".to_owned()).await?;
    /// assert_eq!(issued.expires_in(), 7 * 24 * 3600);
    ///
    /// let app = Router::new()
    ///     .route("/api/me", get(|user: WxUser<String>| async move { format!("{} via {}", user.openid(), *user) }))
    ///     .layer(wx.layer());
    /// let me = Request::get("/api/me")
    ///     .header("authorization", format!("Bearer {}", issued.token()))
    ///     .body(Body::empty())?;
    /// let res = app.oneshot(me).await?;
    /// assert_eq!(res.status(), StatusCode::OK);
    ///
    /// assert_eq!(wx.revoke_user("u42").await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn issue_session(&self, who: Identity, data: T) -> Result<IssuedSession, Rejection> {
        let token = self.engine.issue(who, data).await?;
        Ok(IssuedSession {
            token,
            expires_in: self.engine.session_ttl.as_secs(),
        })
    }
}

/// Changing what sessions hold after login.
impl<T> WxLogin<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Replaces the app data of the session a handler serves (after a phone
    /// binding, a profile edit): the store first, then this instance's
    /// cache at once, and every other instance's through the store's
    /// announcement (the same path as a revocation, without ending the
    /// session; within the cache TTL if that message is lost). The
    /// `WxUser` in hand keeps the old data; the next request sees the new.
    /// Answers `false` if the session ended meanwhile. A store failure is
    /// `store_unavailable` (503); data that does not serialize, or a store
    /// that cannot change data (a custom store without `replace_data`),
    /// `misconfigured`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, extract::State, routing::{get, post}, Json, Router};
    /// use http::{Request, StatusCode};
    /// use serde::{Deserialize, Serialize};
    /// use tower::ServiceExt as _;
    /// use wxlogin::{Identity, Rejection, WxLogin, WxUser};
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct Profile { nickname: Option<String> }
    ///
    /// async fn set_nickname(
    ///     State(wx): State<WxLogin<Profile>>,
    ///     user: WxUser<Profile>,
    ///     Json(nickname): Json<String>,
    /// ) -> Result<StatusCode, Rejection> {
    ///     wx.set_session_data(&user, &Profile { nickname: Some(nickname) }).await?;
    ///     Ok(StatusCode::NO_CONTENT)
    /// }
    ///
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s")
    ///     .on_login(|_who: Identity| async move { Ok(Profile { nickname: None }) })
    ///     .build()?;
    /// let token = wx.issue_session(Identity::new("o1"), Profile { nickname: None }).await?;
    /// let app = Router::new()
    ///     .route("/profile", post(set_nickname).with_state(wx.clone()))
    ///     .route("/me", get(|user: WxUser<Profile>| async move { format!("{:?}", user.nickname) }))
    ///     .layer(wx.layer());
    /// let auth = format!("Bearer {}", token.token());
    /// let set = Request::post("/profile").header("authorization", &auth)
    ///     .header("content-type", "application/json").body(Body::from(r#""Ann""#))?;
    /// assert_eq!(app.clone().oneshot(set).await?.status(), StatusCode::NO_CONTENT);
    /// let me = Request::get("/me").header("authorization", &auth).body(Body::empty())?;
    /// let body = axum::body::to_bytes(app.oneshot(me).await?.into_body(), 1024).await?;
    /// assert_eq!(&body[..], br#"Some("Ann")"#);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_session_data(&self, session: &WxUser<T>, data: &T) -> Result<bool, Rejection> {
        let changed = self.engine.set_data(&[session.store_id()], data).await?;
        Ok(changed == 1)
    }

    /// Replaces the app data of every session of a user (all their
    /// devices, including sessions [`issue_session`](Self::issue_session)
    /// made), as [`set_session_data`](Self::set_session_data) does for one;
    /// answers how many sessions were changed.
    ///
    /// A login of the user that runs at the same time may still store what
    /// its hook read: update the app's own table first, then call this, so
    /// that a hook reading the table sees the new data. Sessions a login
    /// added while the first changes ran are listed again and changed too.
    pub async fn set_user_data(&self, openid: &str, data: &T) -> Result<usize, Rejection> {
        let ids = self.engine.user_sessions(openid).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut changed = self.engine.set_data(&ids, data).await?;
        let again = self.engine.user_sessions(openid).await?;
        let added: Vec<_> = again.into_iter().filter(|id| !ids.contains(id)).collect();
        if !added.is_empty() {
            changed += self.engine.set_data(&added, data).await?;
        }
        Ok(changed)
    }
}

/// The device list: a user's sessions, and ending one of them.
impl<T> WxLogin<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The live sessions of the signed-in user, oldest first: when each was
    /// made, from which `User-Agent` and address, and which one is making
    /// this call, each with an opaque [`DeviceSession::id`] (not the token;
    /// no one without the token key can make one) for
    /// [`end_session`](Self::end_session). A store failure is
    /// `store_unavailable` (503).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{body::Body, extract::State, routing::get, Json, Router};
    /// use http::{Request, StatusCode};
    /// use tower::ServiceExt as _;
    /// use wxlogin::{DeviceSession, Identity, Rejection, WxLogin, WxUser};
    ///
    /// async fn sessions(State(wx): State<WxLogin>, user: WxUser) -> Result<Json<Vec<DeviceSession>>, Rejection> {
    ///     Ok(Json(wx.list_sessions(&user).await?))
    /// }
    ///
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").build()?;
    /// let phone = wx.issue_session(Identity::new("o1").with_user_agent("iPhone"), ()).await?;
    /// let web = wx.issue_session(Identity::new("o1").with_user_agent("H5"), ()).await?;
    /// let app = Router::new().route("/api/sessions", get(sessions).with_state(wx.clone())).layer(wx.layer());
    /// let req = Request::get("/api/sessions").header("authorization", format!("Bearer {}", web.token())).body(Body::empty())?;
    /// let body = axum::body::to_bytes(app.oneshot(req).await?.into_body(), 4096).await?;
    /// let list: serde_json::Value = serde_json::from_slice(&body)?;
    /// assert_eq!(list[0]["user_agent"], "iPhone");
    /// assert_eq!((list[0]["current"].as_bool(), list[1]["current"].as_bool()), (Some(false), Some(true)));
    /// assert!(!body.windows(web.token().len()).any(|w| w == web.token().as_bytes()), "no token in the list");
    /// # let _ = phone;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list_sessions(&self, user: &WxUser<T>) -> Result<Vec<DeviceSession>, Rejection> {
        let current = user.store_id();
        let devices = self.engine.devices(user.openid()).await?;
        Ok(devices
            .into_iter()
            .map(|(id, record)| DeviceSession {
                id: self.engine.keys.handle_for(&id.0),
                created_at: record.created_at_ms / 1000,
                user_agent: record.user_agent,
                ip: record.ip,
                current: id == current,
            })
            .collect())
    }

    /// Ends one of the signed-in user's sessions by its
    /// [`DeviceSession::id`] ("log out that phone"), on every instance like a
    /// logout. Answers `false` for a handle that names no live session of
    /// this user (another user's, an ended one, garbage): the app answers
    /// 404. Ending the current session is allowed (it is a logout).
    pub async fn end_session(&self, user: &WxUser<T>, id: &str) -> Result<bool, Rejection> {
        let ids = self.engine.user_sessions(user.openid()).await?;
        let Some(found) = ids
            .into_iter()
            .find(|s| self.engine.keys.handle_for(&s.0) == id)
        else {
            return Ok(false);
        };
        self.engine.revoke_store_id(found).await
    }
}

/// One session of a user, as [`WxLogin::list_sessions`] shows it; it
/// serializes as `{"id", "created_at", "user_agent", "ip", "current"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeviceSession {
    /// An opaque handle for [`WxLogin::end_session`]: not the token, and
    /// not the store's key. It changes when the token key rotates.
    pub id: String,
    /// When the session was made, in Unix seconds.
    pub created_at: u64,
    /// The `User-Agent` at login (at most 256 bytes), if the client sent one.
    pub user_agent: Option<String>,
    /// The client's address at login, if the server had connection info.
    pub ip: Option<std::net::IpAddr>,
    /// Whether this is the session making the call.
    pub current: bool,
}

/// A session [`WxLogin::issue_session`] issued: the token to hand to the
/// client and its lifetime. Serializes as `{"token", "expires_in"}`, the
/// login answer's fields; `Debug` does not show the token.
#[derive(Clone, Serialize)]
pub struct IssuedSession {
    token: String,
    expires_in: u64,
}

impl IssuedSession {
    /// The token, for `Authorization: Bearer …`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Seconds until the session ends (its lifetime; an idle timeout may end it sooner).
    pub fn expires_in(&self) -> u64 {
        self.expires_in
    }
}

impl std::fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSession")
            .field("token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// WeChat's server APIs of the default app, behind its access token.
impl<T> WxLogin<T> {
    /// The phone number behind a code from the mini program's
    /// `<button open-type="getPhoneNumber">` (`e.detail.code`; single use,
    /// valid five minutes). Uses the access token, fetched on first use.
    ///
    /// ```
    /// # #[cfg(feature = "mock")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    ///
    /// let code = wechat.mint_phone_code("13800138000", "86"); // `e.detail.code` in the mini program
    /// let phone = wx.phone_number(&code).await?;
    /// assert_eq!(phone.pure_phone_number, "13800138000");
    /// assert_eq!(phone.country_code, "86");
    /// // Single use.
    /// assert!(wx.phone_number(&code).await.is_err());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "mock"))]
    /// # fn main() {}
    /// ```
    pub async fn phone_number(&self, code: &str) -> Result<PhoneInfo, WeChatApiError> {
        self.engine.default_api().phone_number(code).await
    }

    /// Asks WeChat whether `session_key` is still the user's current key
    /// (`/wxa/checksession`); [`WeChatApiError::SessionKeyInvalid`] if not.
    /// Handlers usually call [`WxSession::check_with_wechat`](crate::WxSession::check_with_wechat).
    ///
    /// ```
    /// # #[cfg(feature = "mock")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{mock::FakeWeChat, Secret, WeChatApiError, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    ///
    /// let stale = Secret::new("dGhpcyBpcyBub3QgaXQ=");
    /// let err = wx.check_session_key("o-alice", &stale).await.unwrap_err();
    /// assert_eq!(err, WeChatApiError::SessionKeyInvalid);
    /// assert!(err.relogin());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "mock"))]
    /// # fn main() {}
    /// ```
    pub async fn check_session_key(
        &self,
        openid: &str,
        session_key: &Secret,
    ) -> Result<(), WeChatApiError> {
        self.engine
            .default_api()
            .check_session_key(openid, session_key)
            .await
    }

    /// The app's access token, for WeChat APIs this crate does not wrap.
    /// Cached and refreshed by one caller at a time (shared between
    /// instances on a [`RedisStore`], feature `redis`); never log it.
    ///
    /// ```
    /// # #[cfg(feature = "mock")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    ///
    /// let token = wx.access_token().await?;
    /// let url = format!("https://api.weixin.qq.com/wxa/some_api?access_token={}", token.expose());
    /// # let _ = url;
    /// // Cached: a second call does not ask WeChat again.
    /// wx.access_token().await?;
    /// assert_eq!(wechat.stable_token_calls(), 1);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "mock"))]
    /// # fn main() {}
    /// ```
    ///
    #[cfg_attr(feature = "redis", doc = "[`RedisStore`]: crate::store::RedisStore")]
    #[cfg_attr(
        not(feature = "redis"),
        doc = "[`RedisStore`]: https://docs.rs/wxlogin/latest/wxlogin/store/struct.RedisStore.html"
    )]
    pub async fn access_token(&self) -> Result<Secret, WeChatApiError> {
        self.engine.default_api().access_token().await
    }
}
