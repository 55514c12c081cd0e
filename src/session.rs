//! The resolved session: what the layer caches and the extractors read
//! (the stored form is [`SessionRecord`](crate::store::SessionRecord)).

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::Renderer;
use crate::store::codec::cut;
use crate::store::{SessionRecord, SessionStore, StoreId};
use crate::wechat::WeChatApi;
use crate::Secret;

/// Who WeChat says logged in, and what the login request said besides the
/// code; what a login hook sees. Also what [`WxLogin::issue_session`] takes
/// for a login the app verified itself (build one with [`Identity::new`]).
///
/// ```
/// use wxlogin::{Identity, WxLogin};
/// let wx = WxLogin::builder()
///     .app_id("wx1").app_secret("s")
///     .on_login(|who: Identity| async move {
///         // `who.unionid` is set when the app is bound to an Open Platform account.
///         let invite = who.fields.get("invite").and_then(|v| v.as_str()).map(str::to_owned);
///         Ok(format!("{}@{} invited by {invite:?} from {:?}", who.openid, who.app_id, who.ip))
///     })
///     .build()?;
/// # let _ = wx;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`WxLogin::issue_session`]: crate::WxLogin::issue_session
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user's id within this mini program (for a session the app issues
    /// itself, the key its revocation and caps go by).
    pub openid: String,
    /// The user's id across the apps of one WeChat open platform account, when bound.
    pub unionid: Option<String>,
    /// The mini program the user logged in to.
    pub app_id: String,
    /// The login body's other fields: everything but `code` and `appid`
    /// (an invite code, a scene, a phone code), as the client sent them.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The client's address, when the server provides connection info
    /// (axum's `ConnectInfo<SocketAddr>`, or a `SocketAddr` in the request
    /// extensions, which a middleware behind a trusted proxy can set from
    /// `X-Forwarded-For`).
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, when it is text; at most
    /// [`USER_AGENT_MAX`](Self::USER_AGENT_MAX) bytes (longer is cut at a
    /// character boundary).
    pub user_agent: Option<String>,
}

/// `fields` shows only its field names: a login body may carry a phone
/// code or an invite that an app logging `?who` should not write out.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("openid", &self.openid)
            .field("unionid", &self.unionid)
            .field("app_id", &self.app_id)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .field("ip", &self.ip)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

impl Identity {
    /// Longest `User-Agent` kept, in bytes.
    pub const USER_AGENT_MAX: usize = 256;

    /// An identity the app has verified itself (an SMS code, a password,
    /// an official-account OAuth), for [`WxLogin::issue_session`]: `openid`
    /// is the key the session's revocation and caps go by (give a user's
    /// WeChat openid, and one `revoke_user` ends every session of theirs).
    /// The app is the default one unless [`with_app_id`](Self::with_app_id).
    ///
    /// ```
    /// let who = wxlogin::Identity::new("o-alice").with_user_agent("Mozilla/5.0");
    /// assert_eq!(who.openid, "o-alice");
    /// assert!(who.app_id.is_empty() && who.unionid.is_none());
    /// ```
    ///
    /// [`WxLogin::issue_session`]: crate::WxLogin::issue_session
    pub fn new(openid: impl Into<String>) -> Self {
        Identity {
            openid: openid.into(),
            unionid: None,
            app_id: String::new(),
            fields: serde_json::Map::new(),
            ip: None,
            user_agent: None,
        }
    }

    /// With a unionid.
    pub fn with_unionid(mut self, unionid: impl Into<String>) -> Self {
        self.unionid = Some(unionid.into());
        self
    }

    /// For this configured mini program instead of the default one.
    pub fn with_app_id(mut self, app_id: impl Into<String>) -> Self {
        self.app_id = app_id.into();
        self
    }

    /// With the client's address.
    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// With the client's `User-Agent` (cut to [`USER_AGENT_MAX`](Self::USER_AGENT_MAX) bytes).
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        let user_agent = user_agent.into();
        self.user_agent = Some(cut(&user_agent, Self::USER_AGENT_MAX).to_owned());
        self
    }
}

/// The reply fields a login answer always has; a hook's fields by these
/// names are dropped (with a warning).
pub(crate) const RESERVED_REPLY_FIELDS: [&str; 4] = ["token", "expires_in", "openid", "unionid"];

/// A login hook's answer with fields for the login reply: the session's
/// data, plus what the mini program should see in the login answer (the
/// app's `user_id`, an `is_new` flag). A hook that returns only the data
/// needs none of this.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use wxlogin::{Identity, LoginOk, WxLogin};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Account { user_id: u64 }
///
/// let wx = WxLogin::builder()
///     .app_id("wx1").app_secret("s")
///     .on_login(|who: Identity| async move {
///         let account = Account { user_id: 7 };
///         Ok(LoginOk::new(account.clone())
///             .reply("user_id", account.user_id)
///             .reply("is_new", true))
///     })
///     .build()?;
/// # let _ = wx;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct LoginOk<U> {
    data: U,
    reply: serde_json::Map<String, serde_json::Value>,
}

impl<U> LoginOk<U> {
    /// The session's data, with no reply fields yet.
    pub fn new(data: U) -> Self {
        LoginOk {
            data,
            reply: serde_json::Map::new(),
        }
    }

    /// Adds a field to the login answer. `token`, `expires_in`, `openid`
    /// and `unionid` are the crate's and are never overridden: a field by
    /// one of these names is dropped, with a warning. A value that does not
    /// serialize to JSON is dropped the same way.
    pub fn reply(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        let name = name.into();
        match serde_json::to_value(value) {
            Ok(value) => {
                self.reply.insert(name, value);
            }
            Err(e) => {
                tracing::warn!(field = %name, error = %e, "wxlogin: a login reply field does not serialize; dropped")
            }
        }
        self
    }
}

impl<U: fmt::Debug> fmt::Debug for LoginOk<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginOk")
            .field("data", &self.data)
            .field("reply", &self.reply)
            .finish()
    }
}

/// What a login hook may return: the session's data alone (any
/// `Serialize` type), or a [`LoginOk`] with fields for the login answer.
pub trait LoginOutput: Send + 'static {
    /// The session's data type (`WxUser<Data>` in handlers).
    type Data;
    /// The data and the reply fields.
    fn into_parts(self) -> (Self::Data, serde_json::Map<String, serde_json::Value>);
}

impl<U: Serialize + Send + 'static> LoginOutput for U {
    type Data = U;
    fn into_parts(self) -> (U, serde_json::Map<String, serde_json::Value>) {
        (self, serde_json::Map::new())
    }
}

impl<U: Send + 'static> LoginOutput for LoginOk<U> {
    type Data = U;
    fn into_parts(self) -> (U, serde_json::Map<String, serde_json::Value>) {
        (self.data, self.reply)
    }
}

/// What every resolved session of one [`WxLogin`](crate::WxLogin) shares:
/// made once at build, referenced (not copied) by each cached session, so
/// extractors reach the store and WeChat without another request extension.
pub(crate) struct SessionContext {
    /// WeChat's APIs per configured app id; the first is the default app.
    pub(crate) apis: Vec<(String, Arc<WeChatApi>)>,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) store_timeout: Duration,
    /// The app's renderer of rejections, for the extractors' own (a data
    /// type other than the hook's).
    pub(crate) renderer: Option<Renderer>,
}

/// Most apps one [`WxLogin`](crate::WxLogin) serves: each has one bit of a `u64` mask.
pub(crate) const MAX_APPS: usize = 64;

/// The bit of every configured app, for a layer that takes them all.
pub(crate) fn all_apps(count: usize) -> u64 {
    match count {
        MAX_APPS => u64::MAX,
        n => (1u64 << n) - 1,
    }
}

impl SessionContext {
    /// The bit of an app in a layer's mask: its place among the configured
    /// apps; 0 for an app this login does not serve (no layer takes it).
    pub(crate) fn app_bit(&self, app_id: &str) -> u64 {
        self.apis
            .iter()
            .position(|(id, _)| id == app_id)
            .filter(|&i| i < MAX_APPS)
            .map_or(0, |i| 1u64 << i)
    }

    /// The API client of a session's app (the default app if unknown).
    pub(crate) fn api_for(&self, app_id: &str) -> &Arc<WeChatApi> {
        self.apis
            .iter()
            .find(|(id, _)| id == app_id)
            .map(|(_, api)| api)
            .unwrap_or(&self.apis[0].1)
    }
}

/// What every session has whatever the app data type.
///
/// `repr(C)` puts the fields a cache hit reads (the expiry and idle deadline
/// for the freshness check, `openid` for the handler, `ctx` for the
/// extractors, the app bit for the layer) first: with the `Arc`'s two
/// counts, which the hit writes, they are the allocation's first 72 bytes,
/// at most two cache lines at the allocator's 16-byte alignment, where the
/// compiler's own field order put the expiry behind every string.
#[repr(C)]
pub(crate) struct SessionCore {
    pub(crate) expires_at_ms: u64,
    /// 0 when there is no idle timeout; else the idle deadline last written to the store.
    pub(crate) idle_expires_at_ms: AtomicU64,
    pub(crate) openid: String,
    pub(crate) ctx: Arc<SessionContext>,
    /// The session's app as one bit ([`SessionContext::app_bit`]): a layer
    /// takes the session when this bit is in its mask, one AND on a hit.
    pub(crate) app_bit: u64,
    pub(crate) store_id: StoreId,
    pub(crate) unionid: Option<String>,
    pub(crate) app_id: String,
    pub(crate) session_key: Secret,
    pub(crate) created_at_ms: u64,
}

impl SessionCore {
    pub(crate) fn idle_deadline(&self) -> Option<u64> {
        match self.idle_expires_at_ms.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v),
        }
    }
}

/// A session resolved by the layer: the core plus the app's typed data
/// (`repr(C)`: the core first, see [`SessionCore`]).
#[repr(C)]
pub(crate) struct SessionState<T> {
    pub(crate) core: SessionCore,
    pub(crate) data: T,
}

impl<T> SessionState<T> {
    pub(crate) fn from_record(
        ctx: Arc<SessionContext>,
        store_id: StoreId,
        rec: SessionRecord,
        data: T,
    ) -> Self {
        SessionState {
            core: SessionCore {
                app_bit: ctx.app_bit(&rec.app_id),
                ctx,
                store_id,
                openid: rec.openid,
                unionid: rec.unionid,
                app_id: rec.app_id,
                session_key: rec.session_key,
                created_at_ms: rec.created_at_ms,
                expires_at_ms: rec.expires_at_ms,
                idle_expires_at_ms: AtomicU64::new(rec.idle_expires_at_ms.unwrap_or(0)),
            },
            data,
        }
    }
}

/// A session with its data type erased, as the layer puts it in request extensions.
pub(crate) trait ErasedSession: Send + Sync + 'static {
    fn core(&self) -> &SessionCore;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: Send + Sync + 'static> ErasedSession for SessionState<T> {
    fn core(&self) -> &SessionCore {
        &self.core
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
