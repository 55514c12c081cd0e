//! The default store: sessions in this process's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::codec::{openid_of, EXPIRES_OFFSET, IDLE_OFFSET};
use super::{SessionRecord, SessionStore, StoreError, StoreFuture, StoreId};
use crate::clock::now_ms;
use crate::Secret;

/// Sessions in process memory: the default store, for a single instance.
///
/// Expired sessions are purged by a background sweep (every minute by
/// default, started when the store is created inside a Tokio runtime) and on
/// writes once the sweep interval has passed, so memory does not grow without
/// bound. Sessions do not survive a restart and are not shared between
/// processes: use a Redis store for that.
///
/// ```
/// use wxlogin::store::MemoryStore;
/// let store = MemoryStore::new();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.len())
            .finish()
    }
}

struct Inner {
    state: Mutex<State>,
    sweep_every_ms: u64,
    last_sweep_ms: AtomicU64,
}

/// What the store holds, compactly: memory per session is most of what a
/// single-instance deployment spends on its users (see docs/performance.md).
#[derive(Default)]
struct State {
    /// Each session as the binary record of [`SessionRecord::encode`] (one
    /// allocation, about 100 bytes), whose idle deadline and expiry sit at
    /// fixed offsets: the sweep and `touch` read and write them in place.
    sessions: HashMap<StoreId, Box<[u8]>>,
    users: HashMap<Box<str>, User>,
}

/// A user's sessions and newest `session_key`.
#[derive(Default)]
struct User {
    /// Oldest first. Few per user (capped by `max_sessions_per_user`, one
    /// with `single_session`); a `Vec` is a quarter of a set's size for one id.
    ids: Vec<StoreId>,
    /// The newest session_key, and until when to keep it.
    key: Option<(Secret, u64)>,
}

impl User {
    fn is_unused(&self, now: u64) -> bool {
        self.ids.is_empty() && self.key.as_ref().is_none_or(|(_, until)| *until <= now)
    }
}

/// The record's end (expiry, or the idle deadline if sooner), read in place.
fn ends_at_ms(bytes: &[u8]) -> u64 {
    let field = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    };
    match (field(IDLE_OFFSET), field(EXPIRES_OFFSET)) {
        (Some(0), Some(expires)) => expires,
        (Some(idle), Some(expires)) => idle.min(expires),
        // Not a record this store wrote: treat it as ended.
        _ => 0,
    }
}

impl State {
    fn remove(&mut self, id: &StoreId) -> bool {
        let Some(bytes) = self.sessions.remove(id) else {
            return false;
        };
        if let Some(openid) = openid_of(&bytes) {
            if let Some(user) = self.users.get_mut(openid) {
                if let Some(at) = user.ids.iter().position(|i| i == id) {
                    // In order: the oldest stays first, for the cap.
                    user.ids.remove(at);
                }
                if user.is_unused(now_ms()) {
                    self.users.remove(openid);
                }
            }
        }
        true
    }

    /// Drops ended sessions and the users left with nothing, in one pass
    /// over each map (however many sessions one user has).
    fn purge(&mut self, now: u64) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|_, bytes| ends_at_ms(bytes) > now);
        let sessions = &self.sessions;
        self.users.retain(|_, user| {
            user.ids.retain(|id| sessions.contains_key(id));
            if user.key.as_ref().is_some_and(|(_, until)| *until <= now) {
                user.key = None;
            }
            !user.is_unused(now)
        });
        before - self.sessions.len()
    }

    fn user(&mut self, openid: &str) -> &mut User {
        if !self.users.contains_key(openid) {
            self.users.insert(openid.into(), User::default());
        }
        self.users.get_mut(openid).expect("just inserted")
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store that sweeps expired sessions every minute.
    pub fn new() -> Self {
        Self::with_sweep_interval(Duration::from_secs(60))
    }

    /// An empty store that sweeps expired sessions at this interval.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let store = wxlogin::store::MemoryStore::with_sweep_interval(Duration::from_secs(5));
    /// # let _ = store;
    /// ```
    pub fn with_sweep_interval(every: Duration) -> Self {
        let every = every.max(Duration::from_millis(10));
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            sweep_every_ms: every.as_millis() as u64,
            last_sweep_ms: AtomicU64::new(now_ms()),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(inner) = weak.upgrade() else { break };
                    inner.sweep();
                }
            });
        }
        MemoryStore { inner }
    }

    /// Number of sessions held, expired or not (until the next sweep).
    pub fn len(&self) -> usize {
        self.inner.lock().sessions.len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired session now; returns how many.
    pub fn purge_expired(&self) -> usize {
        self.inner.sweep()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // in a way that matters more than losing every session would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sweep(&self) -> usize {
        let now = now_ms();
        self.last_sweep_ms.store(now, Ordering::Relaxed);
        let removed = self.lock().purge(now);
        if removed > 0 {
            tracing::debug!(removed, "wxlogin: purged expired sessions from memory");
        }
        removed
    }

    fn maybe_sweep(&self, now: u64) {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.sweep_every_ms
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.lock().purge(now);
        }
    }
}

impl SessionStore for MemoryStore {
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        let now = now_ms();
        self.inner.maybe_sweep(now);
        let bytes = record.encode().into_boxed_slice();
        let mut st = self.inner.lock();
        let result = if st.sessions.contains_key(&id) {
            Err(StoreError::new("session id already exists"))
        } else {
            st.user(&record.openid).ids.push(id);
            st.sessions.insert(id, bytes);
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    /// Atomic under the store's lock: the user's live sessions beyond
    /// `max_per_user - 1` are ended, oldest first, as the new one is added.
    /// The work is bounded by the cap, not by how often the user logged in.
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        let now = now_ms();
        self.inner.maybe_sweep(now);
        let bytes = record.encode().into_boxed_slice();
        let mut st = self.inner.lock();
        if st.sessions.contains_key(&id) {
            return Box::pin(std::future::ready(Err(StoreError::new(
                "session id already exists",
            ))));
        }
        let State { sessions, users } = &mut *st;
        if !users.contains_key(record.openid.as_str()) {
            users.insert(record.openid.as_str().into(), User::default());
        }
        let user = users
            .get_mut(record.openid.as_str())
            .expect("just inserted");
        let is_live = |i: &StoreId| sessions.get(i).is_some_and(|b| ends_at_ms(b) > now);
        let live = user.ids.iter().filter(|i| is_live(i)).count();
        let mut over = (live + 1).saturating_sub(max_per_user.max(1));
        let mut ended = Vec::with_capacity(over);
        user.ids.retain(|i| {
            if over > 0 && is_live(i) {
                over -= 1;
                ended.push(*i);
                return false;
            }
            // Ended sessions stay until the sweep (they answer `session_expired`).
            sessions.contains_key(i)
        });
        for i in &ended {
            sessions.remove(i);
        }
        user.ids.push(id);
        if !record.session_key.expose().is_empty() {
            user.key = Some((record.session_key, record.expires_at_ms));
        }
        sessions.insert(id, bytes);
        Box::pin(std::future::ready(Ok(ended)))
    }

    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        // Expired records are returned until the sweep removes them, so the
        // layer can answer `session_expired` rather than `invalid_token`.
        let found = self.inner.lock().sessions.get(&id).cloned();
        let found = match found.map(|bytes| SessionRecord::decode(&bytes)) {
            Some(Ok(record)) => Ok(Some(record)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        };
        Box::pin(std::future::ready(found))
    }

    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        let existed = self.inner.lock().remove(&id);
        Box::pin(std::future::ready(Ok(existed)))
    }

    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        let now = now_ms();
        let mut st = self.inner.lock();
        let alive = match st.sessions.get_mut(&id) {
            Some(bytes) if ends_at_ms(bytes) > now => {
                let expires = u64::from_be_bytes(
                    bytes[EXPIRES_OFFSET..EXPIRES_OFFSET + 8]
                        .try_into()
                        .expect("eight bytes"),
                );
                bytes[IDLE_OFFSET..IDLE_OFFSET + 8]
                    .copy_from_slice(&idle_expires_at_ms.min(expires).max(1).to_be_bytes());
                true
            }
            _ => false,
        };
        Box::pin(std::future::ready(Ok(alive)))
    }

    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        let mut st = self.inner.lock();
        let ids = st.users.remove(openid).map(|u| u.ids).unwrap_or_default();
        for id in &ids {
            st.sessions.remove(id);
        }
        Box::pin(std::future::ready(Ok(ids)))
    }

    fn replace_data(&self, id: StoreId, data: Vec<u8>) -> StoreFuture<'_, bool> {
        let now = now_ms();
        let mut st = self.inner.lock();
        let result = match st.sessions.get_mut(&id) {
            Some(bytes) if ends_at_ms(bytes) > now => match SessionRecord::decode(bytes) {
                Ok(mut record) => {
                    record.data = data;
                    *bytes = record.encode().into_boxed_slice();
                    Ok(true)
                }
                Err(e) => Err(e),
            },
            _ => Ok(false),
        };
        Box::pin(std::future::ready(result))
    }

    fn user_sessions(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        let now = now_ms();
        let st = self.inner.lock();
        let ids = st
            .users
            .get(openid)
            .map(|u| {
                u.ids
                    .iter()
                    .filter(|i| st.sessions.get(i).is_some_and(|b| ends_at_ms(b) > now))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(ids)))
    }

    fn is_shared(&self) -> bool {
        false // one process's memory
    }

    fn put_latest_session_key(
        &self,
        openid: &str,
        session_key: Secret,
        until_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.inner.lock().user(openid).key = Some((session_key, until_ms));
        Box::pin(std::future::ready(Ok(())))
    }

    fn latest_session_key(&self, openid: &str) -> StoreFuture<'_, Option<Secret>> {
        let now = now_ms();
        let key = self
            .inner
            .lock()
            .users
            .get(openid)
            .and_then(|u| u.key.as_ref())
            .filter(|(_, until)| *until > now)
            .map(|(k, _)| k.clone());
        Box::pin(std::future::ready(Ok(key)))
    }
}
