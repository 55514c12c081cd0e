//! The engine: what one configured login is at run time ([`Engine`]), and
//! everything it does. The layer, the extractors, the routes and the
//! [`WxLogin`](crate::WxLogin) handle are thin fronts over it.
//!
//! - `mod.rs`: the engine's state, its rejections, creating and ending sessions;
//! - `resolve.rs`: what the layer asks of it (freshness, idle extension, store lookup);
//! - `login.rs`: what the login and logout routes ask of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache::SessionCache;
use crate::clock::now_ms;
use crate::error::{refusals, ErrorCode, Fixed, LoginError, Rejection, Renderer};
use crate::limit::{ClientKeyFn, LoginLimiter};
use crate::session::{Identity, SessionState};
use crate::store::{Invalidation, SessionRecord, StoreError, StoreId};
use crate::token::{SessionId, TokenKeys, TokenSource};
use crate::wechat::{WeChatApi, WeChatClient};
use crate::Secret;

pub(crate) mod login;
mod resolve;

pub(crate) use resolve::Freshness;

/// What a hook answers: the session's data and the login reply's extra fields.
pub(crate) type HookOutput<T> = (T, serde_json::Map<String, serde_json::Value>);
type HookFuture<T> = Pin<Box<dyn Future<Output = Result<HookOutput<T>, LoginError>> + Send>>;
/// The app's login hook, boxed: sees who logged in, returns the app's data
/// and any reply fields.
pub(crate) type Hook<T> = Arc<dyn Fn(Identity) -> HookFuture<T> + Send + Sync>;

/// One mini program the backend serves.
pub(crate) struct App {
    pub(crate) app_id: String,
    pub(crate) secret: Secret,
}

/// What one configured login is at run time: everything the layer, the
/// extractors, the routes and the handle share, behind one `Arc`.
pub(crate) struct Engine<T> {
    pub(crate) token_source: TokenSource,
    pub(crate) session_ttl: Duration,
    pub(crate) idle_timeout_ms: Option<u64>,
    pub(crate) idle_refresh_ms: u64,
    pub(crate) keys: Arc<TokenKeys>,
    pub(crate) sessions: SessionCache<T>,
    pub(crate) wechat: WeChatClient,
    /// Every app served; the first is the default one.
    pub(crate) apps: Vec<App>,
    pub(crate) hook: Hook<T>,
    pub(crate) body_limit: usize,
    pub(crate) single_session: bool,
    /// Whether records keep the login's `User-Agent` and IP.
    pub(crate) record_devices: bool,
    /// The most sessions a user keeps; a login beyond it ends the oldest.
    pub(crate) max_sessions_per_user: usize,
    pub(crate) login_limit: LoginLimiter,
    /// The app's own client key for the login limits, if it set one.
    pub(crate) client_key_fn: Option<ClientKeyFn>,
    /// This engine itself, for store calls that finish after their caller
    /// gave up (they still drop from the cache what they ended).
    pub(crate) me: Weak<Engine<T>>,
}

impl<T> Engine<T> {
    /// The app's renderer of rejections, if it set one.
    #[inline]
    pub(crate) fn renderer(&self) -> Option<&Renderer> {
        self.sessions.ctx().renderer.as_ref()
    }

    /// A rejection, answered through the app's renderer.
    pub(crate) fn reject(&self, code: ErrorCode, message: &'static str) -> Rejection {
        Rejection::new(code, message).with_renderer(self.renderer())
    }

    /// A rejection with a body rendered at compile time (the layer's own).
    pub(crate) fn reject_fixed(&self, fixed: &Fixed) -> Rejection {
        fixed.rejection(self.renderer())
    }

    /// The idle deadline of a session used at `now`: a refresh interval past
    /// the minimum (so the next write is one interval away however often the
    /// session is used), never past the session's end.
    pub(crate) fn idle_target(&self, now: u64, idle_ms: u64, ends_at_ms: u64) -> u64 {
        now.saturating_add(idle_ms)
            .saturating_add(self.idle_refresh_ms)
            .min(ends_at_ms)
    }

    /// The default app (the builder's `app_id` and `app_secret`).
    pub(crate) fn default_app(&self) -> &App {
        &self.apps[0]
    }

    /// The WeChat APIs of the default app (checksession, phone number).
    pub(crate) fn default_api(&self) -> &Arc<WeChatApi> {
        &self.sessions.ctx().apis[0].1
    }

    /// Every configured app's bit: the mask of a layer taking them all.
    pub(crate) fn all_apps(&self) -> u64 {
        crate::session::all_apps(self.apps.len())
    }

    /// Where a configured app is among the apps (its index; the default is 0).
    pub(crate) fn app_index(&self, app_id: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.app_id == app_id)
    }

    /// The mask bit of a configured app.
    pub(crate) fn app_mask(&self, app_id: &str) -> Option<u64> {
        Some(1u64 << self.app_index(app_id)?)
    }
}

impl<T> Engine<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Stores a new session for a user WeChat vouched for and caches it:
    /// what a login does after the code exchange and the hook. Ends the
    /// user's oldest sessions beyond `max_sessions_per_user` (all others
    /// under `single_session`) in the same store step, and keeps the newest
    /// `session_key` for the user. Returns the token only once the session
    /// is stored.
    /// `who` gives the user and the device (`User-Agent`, IP) the session
    /// records; its `fields` are not kept.
    pub(crate) async fn create_session(
        &self,
        who: Identity,
        session_key: Secret,
        data_json: Vec<u8>,
        data: T,
    ) -> Result<(String, Arc<SessionState<T>>), StoreError> {
        let now = now_ms();
        let expires_at_ms = now.saturating_add(self.session_ttl.as_millis() as u64);
        let mut record = SessionRecord {
            openid: who.openid,
            unionid: who.unionid,
            app_id: who.app_id,
            session_key,
            user_agent: who.user_agent.filter(|_| self.record_devices),
            ip: who.ip.filter(|_| self.record_devices),
            data: data_json,
            created_at_ms: now,
            expires_at_ms,
            idle_expires_at_ms: self
                .idle_timeout_ms
                .map(|idle| self.idle_target(now, idle, expires_at_ms)),
        };
        let (id, token) = self.keys.mint();
        let store_id = StoreId::of(&id);
        let store = self.sessions.store().clone();
        let max_per_user = if self.single_session {
            1
        } else {
            self.max_sessions_per_user
        };
        let stored = record.clone();
        let me = self.me.clone();
        // One step in the store: add this session, end the user's oldest
        // beyond the cap (all others under `single_session`), keep the newest
        // `session_key`. Detached, so that a timeout does not stop it between
        // ending the others and announcing them.
        let ended = self
            .sessions
            .timed_detached(
                "create",
                async move { store.create_capped(store_id, stored, max_per_user).await },
                move |result| {
                    if let Some(engine) = me.upgrade() {
                        engine.sessions.invalidate_ended(result);
                    }
                },
            )
            .await?;
        record.data = Vec::new();
        let state = Arc::new(SessionState::from_record(
            self.sessions.ctx().clone(),
            store_id,
            record,
            data,
        ));
        // A concurrent revoke (or a newer login) may have ended it already:
        // its tombstone is set, and `insert` refuses it. The token is then
        // dead on first use, as if the revoke had come just after the login.
        if !ended.contains(&store_id) {
            self.sessions.insert(id, state.clone());
        }
        Ok((token, state))
    }

    /// Ends one session: cache (and tombstone), then store. The store call
    /// is detached: cut by the timeout, it still deletes and announces, and
    /// renews the tombstone when it is done.
    pub(crate) async fn revoke_id(&self, id: SessionId) -> Result<bool, Rejection> {
        let store_id = StoreId::of(&id);
        self.delete_announced(store_id, "logout", move |cache| {
            cache.invalidate(&id, store_id)
        })
        .await
    }

    /// Deletes one session from the store, with `evict` dropping it from
    /// this instance's cache (and tombstoning it) before the call and again
    /// once the call is done, even when the timeout has answered the caller
    /// by then (the delete is detached). `what` names it in the log.
    async fn delete_announced(
        &self,
        store_id: StoreId,
        what: &str,
        evict: impl Fn(&SessionCache<T>) + Send + 'static,
    ) -> Result<bool, Rejection> {
        evict(&self.sessions);
        let store = self.sessions.store().clone();
        let me = self.me.clone();
        self.sessions
            .timed_detached(
                "delete",
                async move { store.delete(store_id).await },
                move |_| {
                    if let Some(engine) = me.upgrade() {
                        evict(&engine.sessions);
                    }
                },
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "wxlogin: {what} failed");
                self.reject_fixed(&refusals::STORE_DOWN)
            })
    }
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
                    if let Some(engine) = me.upgrade() {
                        engine.sessions.invalidate_ended(result);
                    }
                },
            )
            .await
            .map(|ids| ids.len())
    }
}

impl<T> Engine<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    /// Subscribes the cache to the store's invalidations (sessions ended by
    /// another instance), for as long as this engine lives.
    pub(crate) fn watch_store(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.sessions
            .store()
            .watch_invalidations(Arc::new(move |inv: Invalidation| {
                let Some(engine) = weak.upgrade() else {
                    return false;
                };
                match inv {
                    Invalidation::Sessions(ids) => engine.sessions.invalidate_store_ids(&ids),
                    Invalidation::All => engine.sessions.invalidate_all(),
                    Invalidation::Changed(ids) => engine.sessions.changed_store_ids(&ids),
                }
                true
            }));
    }
}
