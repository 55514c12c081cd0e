//! Test stores: [`Forwarding`] forwards every `SessionStore` method to an
//! inner store, so a test store overrides only what it changes;
//! [`Forward`] makes one a `SessionStore`.
//!
//! ```ignore
//! #[derive(Clone)]
//! struct FailingLoads(MemoryStore);
//!
//! impl Forwarding for FailingLoads {
//!     fn inner(&self) -> &dyn SessionStore {
//!         &self.0
//!     }
//!     fn load(&self, _id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
//!         Box::pin(async { Err(StoreError::new("down")) })
//!     }
//! }
//!
//! builder(&fake).store(Forward(FailingLoads(MemoryStore::new())))
//! ```
//!
//! A login writes its session with `create_capped` (never `create`), so a
//! hook on a login's write goes there.

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use wxlogin::store::{
    AccessTokenCache, InvalidationSink, MemoryStore, SessionRecord, SessionStore, StoreFuture,
    StoreId,
};
use wxlogin::Secret;

/// A test store: every `SessionStore` method, provided ones included,
/// defaults to the same call on [`Forwarding::inner`].
pub trait Forwarding: Send + Sync + 'static {
    /// The store every method not overridden goes to.
    fn inner(&self) -> &dyn SessionStore;

    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        self.inner().create(id, record)
    }
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        self.inner().create_capped(id, record, max_per_user)
    }
    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        self.inner().load(id)
    }
    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        self.inner().delete(id)
    }
    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        self.inner().touch(id, idle_expires_at_ms)
    }
    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        self.inner().delete_user(openid)
    }
    fn is_shared(&self) -> bool {
        self.inner().is_shared()
    }
    fn watch_invalidations(&self, sink: InvalidationSink) {
        self.inner().watch_invalidations(sink)
    }
    fn put_latest_session_key(
        &self,
        openid: &str,
        session_key: Secret,
        until_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.inner()
            .put_latest_session_key(openid, session_key, until_ms)
    }
    fn latest_session_key(&self, openid: &str) -> StoreFuture<'_, Option<Secret>> {
        self.inner().latest_session_key(openid)
    }
    fn replace_data(&self, id: StoreId, data: Vec<u8>) -> StoreFuture<'_, bool> {
        self.inner().replace_data(id, data)
    }
    fn user_sessions(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        self.inner().user_sessions(openid)
    }
    fn access_token_cache(&self) -> Option<&dyn AccessTokenCache> {
        self.inner().access_token_cache()
    }
}

/// A [`Forwarding`] test store as a `SessionStore`: every method of the
/// trait goes to the [`Forwarding`] method of the same name. Derefs to the
/// test store, so its fields stay at hand.
#[derive(Clone, Default)]
pub struct Forward<T>(pub T);

impl<T> Deref for Forward<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Forwarding> SessionStore for Forward<T> {
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        self.0.create(id, record)
    }
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        self.0.create_capped(id, record, max_per_user)
    }
    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        self.0.load(id)
    }
    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        self.0.delete(id)
    }
    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        self.0.touch(id, idle_expires_at_ms)
    }
    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        self.0.delete_user(openid)
    }
    fn is_shared(&self) -> bool {
        self.0.is_shared()
    }
    fn watch_invalidations(&self, sink: InvalidationSink) {
        self.0.watch_invalidations(sink)
    }
    fn put_latest_session_key(
        &self,
        openid: &str,
        session_key: Secret,
        until_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.0.put_latest_session_key(openid, session_key, until_ms)
    }
    fn latest_session_key(&self, openid: &str) -> StoreFuture<'_, Option<Secret>> {
        self.0.latest_session_key(openid)
    }
    fn replace_data(&self, id: StoreId, data: Vec<u8>) -> StoreFuture<'_, bool> {
        self.0.replace_data(id, data)
    }
    fn user_sessions(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        self.0.user_sessions(openid)
    }
    fn access_token_cache(&self) -> Option<&dyn AccessTokenCache> {
        self.0.access_token_cache()
    }
}

/// A test store that changes nothing: `Forward(Passthrough(store))` must
/// behave as `store` does (the store suite runs on it to show that
/// [`Forward`] forwards every method).
#[derive(Clone, Default)]
pub struct Passthrough<S>(pub S);

impl<S: SessionStore> Forwarding for Passthrough<S> {
    fn inner(&self) -> &dyn SessionStore {
        &self.0
    }
}

/// A store that counts the calls that read or write sessions, then
/// forwards them (and everything else) to `inner`.
pub type CountingStore<S = MemoryStore> = Forward<Counts<S>>;

/// The counters of a [`CountingStore`]; `creates` counts `create` and
/// `create_capped`.
#[derive(Clone, Default)]
pub struct Counts<S> {
    pub inner: S,
    pub creates: Arc<AtomicUsize>,
    pub loads: Arc<AtomicUsize>,
    pub deletes: Arc<AtomicUsize>,
    pub touches: Arc<AtomicUsize>,
    pub delete_users: Arc<AtomicUsize>,
}

impl CountingStore<MemoryStore> {
    pub fn new() -> Self {
        Self::wrap(MemoryStore::new())
    }
}

impl<S> CountingStore<S> {
    pub fn wrap(inner: S) -> Self {
        Forward(Counts {
            inner,
            creates: Arc::default(),
            loads: Arc::default(),
            deletes: Arc::default(),
            touches: Arc::default(),
            delete_users: Arc::default(),
        })
    }

    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    pub fn total(&self) -> usize {
        [
            &self.creates,
            &self.loads,
            &self.deletes,
            &self.touches,
            &self.delete_users,
        ]
        .iter()
        .map(|n| n.load(Ordering::SeqCst))
        .sum()
    }
}

fn count(n: &AtomicUsize) {
    n.fetch_add(1, Ordering::SeqCst);
}

impl<S: SessionStore> Forwarding for Counts<S> {
    fn inner(&self) -> &dyn SessionStore {
        &self.inner
    }
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        count(&self.creates);
        self.inner.create(id, record)
    }
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        count(&self.creates);
        self.inner.create_capped(id, record, max_per_user)
    }
    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        count(&self.loads);
        self.inner.load(id)
    }
    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        count(&self.deletes);
        self.inner.delete(id)
    }
    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        count(&self.touches);
        self.inner.touch(id, idle_expires_at_ms)
    }
    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        count(&self.delete_users);
        self.inner.delete_user(openid)
    }
}
