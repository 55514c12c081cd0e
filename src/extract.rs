//! Extractors: [`WxUser`], `Option<WxUser>` and [`WxSession`].
//!
//! They read what the layer put in the request extensions. Every rejection
//! they answer goes through the app's renderer
//! ([`WxLoginBuilder::render_rejection`](crate::WxLoginBuilder::render_rejection))
//! but one: used on a route the layer does not wrap, they answer
//! `500 misconfigured` naming the missing layer in the default format,
//! since without the layer no configured login (and no renderer) is in
//! reach. That is a bug of the app's routing, not a client's error.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::clock::ms_to_system_time;
use crate::crypto::{self, CryptoError};
use crate::error::{ErrorCode, Rejection};
use crate::layer::AuthState;
use crate::session::{ErasedSession, SessionState};
use crate::wechat::{PhoneInfo, WeChatApiError};
use crate::Secret;

fn missing_layer(what: &'static str) -> Rejection {
    tracing::error!("wxlogin: {what} extracted on a route without the wxlogin layer");
    Rejection::new(
        ErrorCode::Misconfigured,
        match what {
            "WxSession" => {
                "WxSession needs the wxlogin layer on this route (Router::layer(wx.layer()))"
            }
            _ => "WxUser needs the wxlogin layer on this route (Router::layer(wx.layer()))",
        },
    )
}

/// The authenticated user: openid, unionid, the app's data `T`, and expiry.
///
/// Cheap to extract: it shares the cached session (an `Arc`), nothing is copied.
///
/// Its rejections (the layer's verdict in optional mode, `500 misconfigured`
/// for a `T` other than the login hook's) go through the app's renderer
/// ([`WxLoginBuilder::render_rejection`](crate::WxLoginBuilder::render_rejection)),
/// with one exception: on a route the layer does not wrap, no configured
/// login is in reach, so its `500 misconfigured` (naming the missing layer)
/// is in the default format.
///
/// ```
/// use axum::{body::Body, routing::get, Router};
/// use http::{header, Request, StatusCode};
/// use tower::ServiceExt as _;
/// use wxlogin::{WxLogin, WxUser};
/// # #[cfg(feature = "mock")]
/// use wxlogin::mock::FakeWeChat;
///
/// async fn me(user: WxUser) -> String {
///     format!("hello {}", user.openid())
/// }
///
/// # #[cfg(feature = "mock")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let wechat = FakeWeChat::start("wx1", "s").await?;
/// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
/// let app = Router::new()
///     .route("/api/me", get(me))
///     .layer(wx.layer())
///     .route_service("/wx/login", wx.login_service());
///
/// let code = wechat.mint_code("o-alice");
/// let res = app.clone()
///     .oneshot(Request::post("/wx/login").body(Body::from(format!(r#"{{"code":"{code}"}}"#)))?)
///     .await?;
/// assert_eq!(res.status(), StatusCode::OK);
/// let reply: serde_json::Value =
///     serde_json::from_slice(&axum::body::to_bytes(res.into_body(), 4096).await?)?;
/// let token = reply["token"].as_str().unwrap();
///
/// let req = Request::get("/api/me")
///     .header(header::AUTHORIZATION, format!("Bearer {token}"))
///     .body(Body::empty())?;
/// let res = app.clone().oneshot(req).await?;
/// assert_eq!(res.status(), StatusCode::OK);
/// assert_eq!(&axum::body::to_bytes(res.into_body(), 4096).await?[..], b"hello o-alice");
///
/// // Without a token the handler never runs.
/// let res = app.oneshot(Request::get("/api/me").body(Body::empty())?).await?;
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "mock"))]
/// # fn main() {}
/// ```
pub struct WxUser<T = ()> {
    state: Arc<SessionState<T>>,
}

impl<T> Clone for WxUser<T> {
    fn clone(&self) -> Self {
        WxUser {
            state: self.state.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for WxUser<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WxUser")
            .field("openid", &self.openid())
            .field("unionid", &self.unionid())
            .field("app_id", &self.app_id())
            .field("data", &self.state.data)
            .field("expires_at", &self.expires_at())
            .finish()
    }
}

impl<T> WxUser<T> {
    /// The session's id in the store.
    pub(crate) fn store_id(&self) -> crate::store::StoreId {
        self.state.core.store_id
    }

    /// The user's openid in this mini program.
    ///
    /// ```
    /// use wxlogin::WxUser;
    /// async fn me(user: WxUser) -> String {
    ///     format!("openid {}", user.openid())
    /// }
    /// ```
    pub fn openid(&self) -> &str {
        &self.state.core.openid
    }

    /// The user's unionid, when WeChat gave one.
    ///
    /// ```
    /// use wxlogin::WxUser;
    /// async fn me(user: WxUser) -> String {
    ///     user.unionid().unwrap_or("no unionid: the app is not bound to an Open Platform account").to_owned()
    /// }
    /// ```
    pub fn unionid(&self) -> Option<&str> {
        self.state.core.unionid.as_deref()
    }

    /// The mini program this session belongs to.
    ///
    /// ```
    /// use wxlogin::WxUser;
    /// async fn me(user: WxUser) -> String {
    ///     format!("{} in {}", user.openid(), user.app_id())
    /// }
    /// ```
    pub fn app_id(&self) -> &str {
        &self.state.core.app_id
    }

    /// The app's own user data, from the login hook.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use wxlogin::WxUser;
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct Account { id: i64 }
    ///
    /// async fn orders(user: WxUser<Account>) -> String {
    ///     let account: &Account = user.data();
    ///     format!("orders of user {}", account.id) // or `user.id`, through `Deref`
    /// }
    /// ```
    pub fn data(&self) -> &T {
        &self.state.data
    }

    /// The app's data, cloned out.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use wxlogin::WxUser;
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct Account { id: i64 }
    ///
    /// async fn orders(user: WxUser<Account>) -> String {
    ///     let account: Account = user.into_data();
    ///     format!("orders of user {}", account.id)
    /// }
    /// ```
    pub fn into_data(self) -> T
    where
        T: Clone,
    {
        self.state.data.clone()
    }

    /// When the session ends at the latest (its lifetime; an idle timeout may end it sooner).
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use wxlogin::WxUser;
    /// async fn me(user: WxUser) -> String {
    ///     let left = user.expires_at().duration_since(SystemTime::now()).unwrap_or_default();
    ///     format!("session ends in {} s", left.as_secs())
    /// }
    /// ```
    pub fn expires_at(&self) -> SystemTime {
        ms_to_system_time(self.state.core.expires_at_ms)
    }

    /// When the session was created (the login).
    ///
    /// ```
    /// use wxlogin::WxUser;
    /// async fn me(user: WxUser) -> String {
    ///     let age = user.created_at().elapsed().unwrap_or_default();
    ///     format!("logged in {} s ago", age.as_secs())
    /// }
    /// ```
    pub fn created_at(&self) -> SystemTime {
        ms_to_system_time(self.state.core.created_at_ms)
    }
}

impl<T> std::ops::Deref for WxUser<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.state.data
    }
}

fn state_of(parts: &Parts) -> Option<&AuthState> {
    parts.extensions.get::<AuthState>()
}

fn downcast<T: Send + Sync + 'static>(s: &Arc<dyn ErasedSession>) -> Result<WxUser<T>, Rejection> {
    s.clone()
        .into_any()
        .downcast::<SessionState<T>>()
        .map(|state| WxUser { state })
        .map_err(|_| {
            tracing::error!("wxlogin: WxUser<T> names a type other than the login hook's");
            Rejection::new(
                ErrorCode::Misconfigured,
                "WxUser<T> names a data type other than the one the login hook returns",
            )
            // Read only here: a hit's extraction does not pay for it.
            .with_renderer(s.core().ctx.renderer.as_ref())
        })
}

impl<S, T> FromRequestParts<S> for WxUser<T>
where
    S: Send + Sync,
    T: Send + Sync + 'static,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        match state_of(parts) {
            Some(AuthState::Authenticated(s)) => downcast(s),
            Some(AuthState::Rejected(r)) => Err(r.clone()),
            None => Err(missing_layer("WxUser")),
        }
    }
}

impl<S, T> OptionalFromRequestParts<S> for WxUser<T>
where
    S: Send + Sync,
    T: Send + Sync + 'static,
{
    type Rejection = Rejection;

    /// No token gives `None`; a bad or expired token still gives its 401, so
    /// the client logs in again rather than silently browsing anonymously.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Rejection> {
        match state_of(parts) {
            Some(AuthState::Authenticated(s)) => downcast(s).map(Some),
            Some(AuthState::Rejected(r)) if r.code() == ErrorCode::MissingToken => Ok(None),
            Some(AuthState::Rejected(r)) => Err(r.clone()),
            None => Err(missing_layer("WxUser")),
        }
    }
}

/// Server-side access to the session's WeChat `session_key`, for decrypting
/// `encryptedData` and checking signatures.
///
/// Like [`WxUser`], its rejections go through the app's renderer, except on
/// a route the layer does not wrap (`500 misconfigured`, default format).
///
/// It implements neither `Serialize` nor a revealing `Debug`: the key only
/// leaves through [`WxSession::session_key`] and [`Secret::expose`].
///
/// ```
/// use wxlogin::WxSession;
/// async fn handler(session: WxSession) -> String {
///     let key_len = session.session_key().expose().len();
///     format!("{} has a {key_len}-character session_key", session.openid())
/// }
/// ```
#[derive(Clone)]
pub struct WxSession {
    state: Arc<dyn ErasedSession>,
}

impl fmt::Debug for WxSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WxSession")
            .field("openid", &self.openid())
            .field("session_key", &"[redacted]")
            .finish()
    }
}

impl WxSession {
    /// The user's openid.
    ///
    /// ```
    /// use wxlogin::WxSession;
    /// async fn handler(session: WxSession) -> String {
    ///     session.openid().to_owned()
    /// }
    /// ```
    pub fn openid(&self) -> &str {
        &self.state.core().openid
    }

    /// The user's unionid, when WeChat gave one.
    ///
    /// ```
    /// use wxlogin::WxSession;
    /// async fn handler(session: WxSession) -> String {
    ///     session.unionid().unwrap_or("-").to_owned()
    /// }
    /// ```
    pub fn unionid(&self) -> Option<&str> {
        self.state.core().unionid.as_deref()
    }

    /// The mini program this session belongs to.
    ///
    /// ```
    /// use wxlogin::WxSession;
    /// async fn handler(session: WxSession) -> String {
    ///     session.app_id().to_owned()
    /// }
    /// ```
    pub fn app_id(&self) -> &str {
        &self.state.core().app_id
    }

    /// WeChat's `session_key` from this session's login. Never send it to a client.
    ///
    /// ```
    /// use wxlogin::WxSession;
    /// async fn handler(session: WxSession) -> &'static str {
    ///     let key: &wxlogin::Secret = session.session_key();
    ///     assert_eq!(format!("{key}"), "[redacted]"); // safe to log by accident
    ///     "ok"
    /// }
    /// ```
    pub fn session_key(&self) -> &Secret {
        &self.state.core().session_key
    }

    /// Decrypts a mini program's `encryptedData` with this session's
    /// `session_key` and checks that its `watermark.appid` is this app's;
    /// see [`crypto::decrypt_json`].
    ///
    /// WeChat keeps one valid `session_key` per user, and a login on any
    /// device replaces it; when this session's key fails, the user's newest
    /// key (kept by the store at every login) is tried too, so data
    /// encrypted after the latest `wx.login` decrypts. When that fails too
    /// and [`CryptoError::relogin`] is true, the client holds a key WeChat no
    /// longer uses (it ran `wx.login` without posting the code): tell it to
    /// log in again.
    ///
    /// ```
    /// use axum::{http::StatusCode, Json};
    /// use serde::Deserialize;
    /// use serde_json::{json, Value};
    /// use wxlogin::WxSession;
    ///
    /// #[derive(Deserialize)]
    /// #[serde(rename_all = "camelCase")]
    /// struct Encrypted { encrypted_data: String, iv: String }
    ///
    /// async fn decrypt(session: WxSession, Json(body): Json<Encrypted>) -> (StatusCode, Json<Value>) {
    ///     match session.decrypt::<Value>(&body.encrypted_data, &body.iv).await {
    ///         Ok(data) => (StatusCode::OK, Json(data)),
    ///         Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "relogin": e.relogin() }))),
    ///     }
    /// }
    /// ```
    pub async fn decrypt<T: DeserializeOwned>(
        &self,
        encrypted_data: &str,
        iv: &str,
    ) -> Result<T, CryptoError> {
        let core = self.state.core();
        let first =
            crypto::decrypt_json(core.session_key.expose(), encrypted_data, iv, &core.app_id);
        let err = match first {
            Err(e) if e.relogin() => e,
            other => return other,
        };
        // WeChat keeps one valid session_key per user: a later login (maybe
        // on another device) replaced this session's key, and the data was
        // encrypted with the newest one, which the store remembers.
        let ctx = &core.ctx;
        let latest = tokio::time::timeout(
            ctx.store_timeout,
            ctx.store.latest_session_key(&core.openid),
        )
        .await;
        match latest {
            Ok(Ok(Some(key))) if key != core.session_key => {
                crypto::decrypt_json(key.expose(), encrypted_data, iv, &core.app_id)
                    .map_err(|_| err)
            }
            _ => Err(err),
        }
    }

    /// Checks a `rawData` signature against this session's `session_key`
    /// in constant time; see [`crypto::verify_raw_data`].
    ///
    /// ```
    /// use axum::{http::StatusCode, Json};
    /// use serde::Deserialize;
    /// use wxlogin::WxSession;
    ///
    /// #[derive(Deserialize)]
    /// #[serde(rename_all = "camelCase")]
    /// struct Profile { raw_data: String, signature: String }
    ///
    /// async fn profile(session: WxSession, Json(p): Json<Profile>) -> StatusCode {
    ///     if session.verify_raw_data(&p.raw_data, &p.signature) {
    ///         StatusCode::NO_CONTENT
    ///     } else {
    ///         StatusCode::BAD_REQUEST
    ///     }
    /// }
    /// ```
    pub fn verify_raw_data(&self, raw_data: &str, signature: &str) -> bool {
        crypto::verify_raw_data(raw_data, signature, self.session_key().expose())
    }
}

/// WeChat's server APIs for this session's user (they use the app's
/// access token, fetched on first use and shared by every request).
impl WxSession {
    /// Asks WeChat whether this session's `session_key` is still the user's
    /// current one (`/wxa/checksession`). A newer `wx.login()` (on this or
    /// another device) replaces the key: then this answers
    /// [`WeChatApiError::SessionKeyInvalid`] and `encryptedData` made since
    /// will not decrypt with this session; the client should log in again.
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use wxlogin::WxSession;
    ///
    /// async fn before_decrypting(session: WxSession) -> StatusCode {
    ///     match session.check_with_wechat().await {
    ///         Ok(()) => StatusCode::NO_CONTENT,
    ///         // The key was replaced by a newer `wx.login()`: log in again.
    ///         Err(e) if e.relogin() => StatusCode::UNAUTHORIZED,
    ///         Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    ///     }
    /// }
    /// ```
    pub async fn check_with_wechat(&self) -> Result<(), WeChatApiError> {
        let core = self.state.core();
        core.ctx
            .api_for(&core.app_id)
            .check_session_key(self.openid(), self.session_key())
            .await
    }

    /// The phone number behind a code from `<button open-type="getPhoneNumber">`
    /// (`e.detail.code`: single use, valid five minutes); see
    /// [`WxLogin::phone_number`](crate::WxLogin::phone_number).
    ///
    /// ```
    /// use axum::{http::StatusCode, Json};
    /// use serde::Deserialize;
    /// use wxlogin::WxSession;
    ///
    /// #[derive(Deserialize)]
    /// struct PhoneCode { code: String }
    ///
    /// async fn bind_phone(session: WxSession, Json(body): Json<PhoneCode>) -> Result<String, StatusCode> {
    ///     let phone = session.phone_number(&body.code).await.map_err(|_| StatusCode::BAD_REQUEST)?;
    ///     Ok(format!("{} is {}", session.openid(), phone.pure_phone_number))
    /// }
    /// ```
    pub async fn phone_number(&self, code: &str) -> Result<PhoneInfo, WeChatApiError> {
        let core = self.state.core();
        core.ctx.api_for(&core.app_id).phone_number(code).await
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WxSession {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        match state_of(parts) {
            Some(AuthState::Authenticated(s)) => Ok(WxSession { state: s.clone() }),
            Some(AuthState::Rejected(r)) => Err(r.clone()),
            None => Err(missing_layer("WxSession")),
        }
    }
}
