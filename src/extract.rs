//! Extractors: [`WxUser`], `Option<WxUser>` and [`WxSession`].
//!
//! They read what the layer put in the request extensions; used on a route
//! the layer does not wrap, they answer `500 misconfigured` naming the
//! missing layer.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::crypto::{self, CryptoError};
use crate::error::{ErrorCode, Rejection};
use crate::layer::AuthState;
use crate::session::{ms_to_system_time, ErasedSession, SessionState};
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
/// ```
/// use axum::{routing::get, Router};
/// use wxlogin::{WxLogin, WxUser};
///
/// async fn me(user: WxUser) -> String {
///     format!("hello {}", user.openid())
/// }
/// let wx = WxLogin::builder().app_id("wx1").app_secret("s").build().unwrap();
/// let app: Router = Router::new().route("/api/me", get(me)).layer(wx.layer());
/// # let _ = app;
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
    /// The user's openid in this mini program.
    pub fn openid(&self) -> &str {
        &self.state.core.openid
    }

    /// The user's unionid, when WeChat gave one.
    pub fn unionid(&self) -> Option<&str> {
        self.state.core.unionid.as_deref()
    }

    /// The mini program this session belongs to.
    pub fn app_id(&self) -> &str {
        &self.state.core.app_id
    }

    /// The app's own user data, from the login hook.
    pub fn data(&self) -> &T {
        &self.state.data
    }

    /// The app's data, cloned out.
    pub fn into_data(self) -> T
    where
        T: Clone,
    {
        self.state.data.clone()
    }

    /// When the session ends at the latest (its lifetime; an idle timeout may end it sooner).
    pub fn expires_at(&self) -> SystemTime {
        ms_to_system_time(self.state.core.expires_at_ms)
    }

    /// When the session was created (the login).
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
    pub fn openid(&self) -> &str {
        &self.state.core().openid
    }

    /// The user's unionid, when WeChat gave one.
    pub fn unionid(&self) -> Option<&str> {
        self.state.core().unionid.as_deref()
    }

    /// The mini program this session belongs to.
    pub fn app_id(&self) -> &str {
        &self.state.core().app_id
    }

    /// WeChat's `session_key` from this session's login. Never send it to a client.
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
