//! The resolved session: what the layer caches and the extractors read
//! (the stored form is [`SessionRecord`](crate::store::SessionRecord)).

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Renderer;
use crate::store::{SessionRecord, SessionStore, StoreId};
use crate::wechat::WeChatApi;
use crate::Secret;

/// Who WeChat says logged in; what a login hook sees.
///
/// ```
/// use wxlogin::{Identity, WxLogin};
/// let wx = WxLogin::builder()
///     .app_id("wx1").app_secret("s")
///     .on_login(|who: Identity| async move {
///         // `who.unionid` is set when the app is bound to an Open Platform account.
///         Ok(format!("{}@{}", who.openid, who.app_id))
///     })
///     .build()?;
/// # let _ = wx;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user's id within this mini program.
    pub openid: String,
    /// The user's id across the apps of one WeChat open platform account, when bound.
    pub unionid: Option<String>,
    /// The mini program the user logged in to.
    pub app_id: String,
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
