//! The moka cache in front of the store, with single-flight misses.
//!
//! Hits are a synchronous `moka::sync::Cache::get` keyed by the 16-byte
//! session id: no allocation, no future. Misses go to the store once per id
//! however many requests wait for it. A cache entry lives at most the cache
//! TTL and never past its session's end. Revoked ids leave a tombstone for one
//! cache TTL, so a load that raced a logout cannot put the session back.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::clock::now_ms;
use crate::random::random_bytes;
use crate::session::{SessionContext, SessionState};
use crate::store::{SessionRecord, SessionStore, StoreError, StoreId};
use crate::token::SessionId;

/// The outcome of a lookup, or a store failure.
pub(crate) type Lookup<T> = Result<Found<T>, StoreError>;

/// What the store knows of a session id.
pub(crate) enum Found<T> {
    /// A session that has not ended.
    Live(Arc<SessionState<T>>),
    /// A session the store still remembers, but whose lifetime or idle limit has passed.
    Expired,
    /// No such session: never issued, deleted, revoked, or forgotten after expiry.
    Unknown,
}

impl<T> Clone for Found<T> {
    fn clone(&self) -> Self {
        match self {
            Found::Live(s) => Found::Live(s.clone()),
            Found::Expired => Found::Expired,
            Found::Unknown => Found::Unknown,
        }
    }
}

type Flight<T> = Arc<OnceCell<Lookup<T>>>;

/// The hasher of the caches' keys. Every key is already uniformly random: a
/// session id is 128 bits from the OS CSPRNG, a store id a truncated SHA-256
/// of one. And no client chooses one: a session id reaches the cache only
/// after its token's MAC verified, so it was minted by this deployment, and
/// store ids come from such ids or from the store's own invalidations. So
/// folding the bytes is as good a hash as SipHash here, at a fraction of its
/// cost on every hit; there is nothing to flood. The fold still starts from
/// a per-process random seed, so that even ids from a trusted channel (a
/// custom store's invalidations) cannot be lined up into one bucket run.
#[derive(Clone, Copy)]
pub(crate) struct RandomKeys {
    seed: u64,
}

impl RandomKeys {
    fn new() -> Self {
        RandomKeys {
            seed: u64::from_le_bytes(random_bytes::<8>()),
        }
    }
}

impl BuildHasher for RandomKeys {
    type Hasher = FoldHasher;

    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher(self.seed)
    }
}

/// See [`RandomKeys`].
pub(crate) struct FoldHasher(u64);

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word))
                .rotate_left(29)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        // The length prefix of an array key: the same for every key.
        self.0 ^= n as u64;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

pub(crate) struct SessionCache<T> {
    entries: Cache<SessionId, Arc<SessionState<T>>, RandomKeys>,
    revoked: Cache<StoreId, (), RandomKeys>,
    /// Counts data changes (and cache-wide drops); a load notes it before
    /// it reads the store, and one that saw it move does not cache what it
    /// read: it may be the data from before the change.
    epoch: AtomicU64,
    /// Finds the cached entry of a store id, for invalidations that name store ids.
    by_store_id: Mutex<ByStoreId>,
    inflight: Mutex<HashMap<SessionId, Flight<T>>>,
    ctx: Arc<SessionContext>,
}

/// Store id → session id of the cached sessions. A plain map: ~40 bytes an
/// entry where a second moka cache cost ~300, and no second moka insert per
/// login. A mapping is added with its session and lives as long as the
/// cache holds that session: whenever the map has doubled since the last
/// pruning and the cache holds less than three quarters as many sessions as
/// the map has mappings, mappings of sessions the cache no longer holds are
/// dropped: an amortized O(1) per insert. Hits never touch it.
struct ByStoreId {
    map: HashMap<StoreId, SessionId, RandomKeys>,
    prune_at: usize,
}

/// The size below which the store-id map is never pruned.
const PRUNE_MIN: usize = 1024;

/// How many store timeouts a detached store call may run before it is
/// abandoned (a store that never answers must not pile up tasks).
pub(crate) const DETACHED_TIMEOUTS: u32 = 10;

struct UntilSessionEnd {
    ttl: Duration,
}

impl<T> Expiry<SessionId, Arc<SessionState<T>>> for UntilSessionEnd {
    fn expire_after_create(
        &self,
        _key: &SessionId,
        value: &Arc<SessionState<T>>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let left = value.core.expires_at_ms.saturating_sub(now_ms());
        Some(self.ttl.min(Duration::from_millis(left)))
    }
}

impl<T> SessionCache<T> {
    /// What every session of this login shares (store, WeChat APIs, renderer).
    #[inline]
    pub(crate) fn ctx(&self) -> &Arc<SessionContext> {
        &self.ctx
    }

    fn lock_inflight(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Flight<T>>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T> SessionCache<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    pub(crate) fn new(ctx: Arc<SessionContext>, capacity: u64, ttl: Duration) -> Self {
        let hasher = RandomKeys::new();
        SessionCache {
            entries: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilSessionEnd { ttl })
                .build_with_hasher(hasher),
            revoked: Cache::builder()
                .max_capacity(capacity.max(1024))
                .time_to_live(ttl)
                .build_with_hasher(hasher),
            epoch: AtomicU64::new(0),
            by_store_id: Mutex::new(ByStoreId {
                map: HashMap::with_hasher(hasher),
                prune_at: PRUNE_MIN,
            }),
            inflight: Mutex::new(HashMap::new()),
            ctx,
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn SessionStore> {
        &self.ctx.store
    }

    pub(crate) fn store_timeout(&self) -> Duration {
        self.ctx.store_timeout
    }

    /// The hit path: a cached session, if any.
    #[inline]
    pub(crate) fn get(&self, id: &SessionId) -> Option<Arc<SessionState<T>>> {
        self.entries.get(id)
    }

    /// Puts a session in the cache: one just created by a login, or loaded
    /// for a token whose MAC was checked; unless it was revoked. A tombstone
    /// set before or during the insert wins: the session is not cached.
    /// Returns whether it is.
    pub(crate) fn insert(&self, id: SessionId, state: Arc<SessionState<T>>) -> bool {
        let store_id = state.core.store_id;
        if self.revoked.contains_key(&store_id) {
            return false;
        }
        // The session first: a pruning pass that sees the mapping (under the
        // lock, after this insert) then also sees the session, and keeps it.
        self.entries.insert(id, state);
        {
            let mut by = self.lock_by_store_id();
            by.map.insert(store_id, id);
            if by.map.len() >= by.prune_at {
                // While the cache still holds most of the mapped sessions (it is
                // filling up), a pass would find little to drop: skip it. moka's
                // count may lag; the map stays within a few times the capacity.
                let held = usize::try_from(self.entries.entry_count()).unwrap_or(usize::MAX);
                if held < by.map.len() - by.map.len() / 4 {
                    by.map.retain(|_, id| self.entries.contains_key(id));
                }
                by.prune_at = (by.map.len() * 2).max(PRUNE_MIN);
            }
        }
        // An invalidation that landed between the check above and the
        // mapping found nothing to evict: look again, so it cannot be missed
        // (an invalidation sets its tombstone before it looks up the mapping).
        if self.revoked.contains_key(&store_id) {
            self.entries.invalidate(&id);
            return false;
        }
        true
    }

    /// Drops the cached copy of a session and blocks reloading it for a while.
    pub(crate) fn invalidate(&self, id: &SessionId, store_id: StoreId) {
        self.revoked.insert(store_id, ());
        self.lock_by_store_id().map.remove(&store_id);
        self.entries.invalidate(id);
        self.lock_inflight().remove(id);
    }

    /// After a store call that ends sessions (a capped create, a user's
    /// revocation): drops what it ended, all of it when it succeeded, what
    /// it got done when it failed part-way.
    pub(crate) fn invalidate_ended(&self, result: &Result<Vec<StoreId>, StoreError>) {
        match result {
            Ok(ids) => self.invalidate_store_ids(ids),
            Err(e) => self.invalidate_store_ids(e.ended()),
        }
    }

    /// Drops the cached copies of sessions known by their store ids (a user's
    /// revocation, or another instance's logout) and blocks reloading them.
    pub(crate) fn invalidate_store_ids(&self, ids: &[StoreId]) {
        for store_id in ids {
            self.revoked.insert(*store_id, ());
            self.evict(store_id);
        }
    }

    /// Drops the cached copy of a session known by its store id, and any
    /// load of it under way from the single-flight map.
    fn evict(&self, store_id: &StoreId) {
        let found = self.lock_by_store_id().map.remove(store_id);
        if let Some(id) = found {
            self.entries.invalidate(&id);
            self.lock_inflight().remove(&id);
        }
    }

    /// Drops the cached copies of sessions whose data changed, without a
    /// tombstone: they stay valid and are loaded anew on next use. A load
    /// already under way may have read the old data: it serves its own
    /// request but is not cached (the epoch moved while it ran). The test
    /// is global, not per session: a bounded per-session record could lose
    /// an entry under a burst, and changes are rare next to loads.
    pub(crate) fn changed_store_ids(&self, ids: &[StoreId]) {
        if ids.is_empty() {
            return;
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for store_id in ids {
            self.evict(store_id);
        }
    }

    /// Whether any data changed (or the cache was dropped) after a load noted `epoch`.
    fn changed_since(&self, epoch: u64) -> bool {
        self.epoch.load(Ordering::SeqCst) != epoch
    }

    /// Drops every cached session: after invalidation messages may have been lost.
    pub(crate) fn invalidate_all(&self) {
        // Loads under way may have read what the lost messages changed.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
        self.lock_by_store_id().map.clear();
        self.lock_inflight().clear();
    }

    /// Drops the cached copy only (the session may still be valid in the store).
    pub(crate) fn forget(&self, id: &SessionId) {
        self.entries.invalidate(id);
    }

    /// Runs a store call under the store timeout, and reports its latency.
    /// `op` names the store method (`load`, `create`, ...).
    pub(crate) async fn timed<R>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<R, StoreError>>,
    ) -> Result<R, StoreError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.ctx.store_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::new(format_args!(
                "store {op} timed out after {:?}",
                self.ctx.store_timeout
            ))),
        };
        let elapsed = started.elapsed();
        crate::observe::store(op, elapsed, result.is_ok());
        tracing::trace!(
            op,
            ok = result.is_ok(),
            store_us = elapsed.as_micros() as u64,
            "wxlogin: store call"
        );
        result
    }

    /// Runs a store call that must not stop half-way (it deletes, ends a
    /// user's other sessions, or announces), under the store timeout like
    /// [`SessionCache::timed`], but as its own task: when the timeout
    /// answers the caller, the call goes on (for up to
    /// [`DETACHED_TIMEOUTS`] store timeouts), and `done` sees its outcome
    /// either way, to drop from the cache what it ended. A call that is
    /// done when first polled (the memory store's) needs no task.
    pub(crate) async fn timed_detached<R: Send + 'static>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<R, StoreError>> + Send + 'static,
        done: impl FnOnce(&Result<R, StoreError>) + Send + 'static,
    ) -> Result<R, StoreError> {
        let bound = self.ctx.store_timeout.saturating_mul(DETACHED_TIMEOUTS);
        let mut fut = Box::pin(fut);
        self.timed(op, async move {
            let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            if let Poll::Ready(result) = first {
                done(&result);
                return result;
            }
            let task = tokio::spawn(async move {
                let result = match tokio::time::timeout(bound, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::new(format_args!(
                        "store {op} still unfinished after {bound:?}; abandoned"
                    ))),
                };
                done(&result);
                result
            });
            task.await.unwrap_or_else(|e| {
                Err(StoreError::new(format_args!("store {op} task failed: {e}")))
            })
        })
        .await
    }

    /// The miss path: load from the store once for all concurrent callers.
    /// `id` comes from a token whose MAC was checked.
    pub(crate) async fn resolve(&self, id: SessionId) -> Lookup<T> {
        if let Some(hit) = self.entries.get(&id) {
            return Ok(Found::Live(hit));
        }
        let flight = self
            .lock_inflight()
            .entry(id)
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        // Removes the flight when done, and also if this caller is cancelled,
        // so abandoned lookups leave nothing behind.
        let _guard = FlightGuard {
            cache: self,
            id,
            flight: &flight,
        };
        // Check the cache again inside the flight: a caller that missed just
        // before the previous flight finished (and was removed) must not load again.
        flight
            .get_or_init(|| async {
                match self.entries.get(&id) {
                    Some(hit) => Ok(Found::Live(hit)),
                    None => self.load(id).await,
                }
            })
            .await
            .clone()
    }

    async fn load(&self, id: SessionId) -> Lookup<T> {
        let store_id = StoreId::of(&id);
        let epoch = self.epoch.load(Ordering::SeqCst);
        let record = match self.timed("load", self.ctx.store.load(store_id)).await {
            Ok(r) => r,
            Err(e) if e.is_bad_record() => {
                // No retry can make it decode: the client logs in again.
                tracing::warn!(error = %e, "wxlogin: a stored session does not decode; treating it as invalid");
                return Ok(Found::Unknown);
            }
            Err(e) => {
                tracing::warn!(error = %e, "wxlogin: session store load failed");
                return Err(e);
            }
        };
        let Some(record) = record else {
            return Ok(Found::Unknown);
        };
        if self.revoked.contains_key(&store_id) {
            return Ok(Found::Unknown);
        }
        if record.is_expired_at(now_ms()) {
            return Ok(Found::Expired);
        }
        let Some(state) = decode(&self.ctx, store_id, record) else {
            return Ok(Found::Unknown);
        };
        let state = Arc::new(state);
        if self.changed_since(epoch) {
            // Maybe read before a change of its data: good for this request only.
            return Ok(Found::Live(state));
        }
        if !self.insert(id, state.clone()) {
            return Ok(Found::Unknown);
        }
        // A change that landed during the insert found no mapping to drop
        // (it stamps before it looks): look again.
        if self.changed_since(epoch) {
            self.entries.invalidate(&id);
        }
        Ok(Found::Live(state))
    }

    fn lock_by_store_id(&self) -> std::sync::MutexGuard<'_, ByStoreId> {
        self.by_store_id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct FlightGuard<'a, T> {
    cache: &'a SessionCache<T>,
    id: SessionId,
    flight: &'a Flight<T>,
}

impl<T> Drop for FlightGuard<'_, T> {
    fn drop(&mut self) {
        let mut inflight = self.cache.lock_inflight();
        if inflight
            .get(&self.id)
            .is_some_and(|f| Arc::ptr_eq(f, self.flight))
        {
            inflight.remove(&self.id);
        }
    }
}

fn decode<T: DeserializeOwned>(
    ctx: &Arc<SessionContext>,
    store_id: StoreId,
    mut record: SessionRecord,
) -> Option<SessionState<T>> {
    let data = match serde_json::from_slice::<T>(&record.data) {
        Ok(d) => d,
        Err(e) => {
            // The app changed its data type, or the store was edited: the
            // session cannot be served, so the client logs in again.
            tracing::warn!(error = %e, "wxlogin: session data does not decode; treating the session as invalid");
            return None;
        }
    };
    record.data = Vec::new();
    Some(SessionState::from_record(
        ctx.clone(),
        store_id,
        record,
        data,
    ))
}
