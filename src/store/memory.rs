//! The default store: sessions in this process's memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::{SessionRecord, SessionStore, StoreError, StoreFuture, StoreId};
use crate::session::now_ms;
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

#[derive(Default)]
struct State {
    sessions: HashMap<StoreId, SessionRecord>,
    by_user: HashMap<String, HashSet<StoreId>>,
    /// The newest session_key per user, and until when to keep it.
    user_keys: HashMap<String, (Secret, u64)>,
}

impl State {
    fn remove(&mut self, id: &StoreId) -> Option<SessionRecord> {
        let rec = self.sessions.remove(id)?;
        if let Some(ids) = self.by_user.get_mut(&rec.openid) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_user.remove(&rec.openid);
            }
        }
        Some(rec)
    }

    fn purge(&mut self, now: u64) -> usize {
        let dead: Vec<StoreId> = self
            .sessions
            .iter()
            .filter(|(_, r)| r.is_expired_at(now))
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            self.remove(id);
        }
        self.user_keys.retain(|_, (_, until)| *until > now);
        dead.len()
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
        let mut st = self.inner.lock();
        let result = if st.sessions.contains_key(&id) {
            Err(StoreError::new("session id already exists"))
        } else {
            st.by_user
                .entry(record.openid.clone())
                .or_default()
                .insert(id);
            st.sessions.insert(id, record);
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        // Expired records are returned until the sweep removes them, so the
        // layer can answer `session_expired` rather than `invalid_token`.
        let found = self.inner.lock().sessions.get(&id).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        let existed = self.inner.lock().remove(&id).is_some();
        Box::pin(std::future::ready(Ok(existed)))
    }

    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        let now = now_ms();
        let mut st = self.inner.lock();
        let alive = match st.sessions.get_mut(&id) {
            Some(r) if !r.is_expired_at(now) => {
                r.idle_expires_at_ms = Some(idle_expires_at_ms.min(r.expires_at_ms));
                true
            }
            _ => false,
        };
        Box::pin(std::future::ready(Ok(alive)))
    }

    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        let mut st = self.inner.lock();
        let ids: Vec<StoreId> = st
            .by_user
            .remove(openid)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for id in &ids {
            st.sessions.remove(id);
        }
        st.user_keys.remove(openid);
        Box::pin(std::future::ready(Ok(ids)))
    }

    fn put_latest_session_key(
        &self,
        openid: &str,
        session_key: Secret,
        until_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.inner
            .lock()
            .user_keys
            .insert(openid.to_owned(), (session_key, until_ms));
        Box::pin(std::future::ready(Ok(())))
    }

    fn latest_session_key(&self, openid: &str) -> StoreFuture<'_, Option<Secret>> {
        let now = now_ms();
        let key = self
            .inner
            .lock()
            .user_keys
            .get(openid)
            .filter(|(_, until)| *until > now)
            .map(|(k, _)| k.clone());
        Box::pin(std::future::ready(Ok(key)))
    }
}
