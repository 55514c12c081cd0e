//! Where sessions live: the [`SessionStore`] trait and its implementations.
//!
//! A store owns expiry: it must not return a session past
//! [`SessionRecord::ends_at_ms`] for long, and should free its memory. The
//! layer checks expiry against the server clock on every request anyway.
//! Sessions are keyed by a [`StoreId`], a hash of the token's random part, so
//! what a store holds never reconstructs a token.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub mod codec;
mod memory;
mod record;
#[cfg(feature = "redis")]
pub mod redis;
mod shared_token;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use memory::MemoryStore;
pub use shared_token::{AccessTokenCache, SharedAccessToken};

use crate::token::SessionId;
use crate::Secret;
pub use record::SessionRecord;

/// A store call bounded by `timeout`; errors as log text (for callers that
/// fall back when the store is in trouble: the shared access token and the
/// shared payment certificates).
pub(crate) async fn timed<T>(
    timeout: std::time::Duration,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the store timed out".to_owned()),
    }
}

/// The future a store method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The key of a session in a store: SHA-256 of the session id, truncated to 128 bits.
///
/// Printable as 32 hex digits with `Display`.
///
/// ```
/// use wxlogin::store::StoreId;
/// let id = StoreId([0xab; 16]);
/// assert_eq!(id.to_string(), "ab".repeat(16));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId(pub [u8; 16]);

impl StoreId {
    pub(crate) fn of(id: &SessionId) -> Self {
        let digest = Sha256::new()
            .chain_update(b"wxlogin-store-id\0")
            .chain_update(id)
            .finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        StoreId(out)
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::token::hex(&self.0))
    }
}

impl fmt::Debug for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreId({self})")
    }
}

/// A store failure (I/O error, timeout): requests see `503 store_unavailable`.
/// Or a record the store holds but cannot decode ([`StoreError::bad_record`]):
/// its token is then `401 invalid_token`, since no retry can fix it.
///
/// ```
/// use wxlogin::store::StoreError;
/// let e = StoreError::new("redis: connection refused");
/// assert_eq!(e.to_string(), "session store error: redis: connection refused");
/// assert!(!e.is_bad_record());
/// ```
#[derive(Debug, Clone)]
pub struct StoreError {
    message: String,
    bad_record: bool,
    unsupported: bool,
    ended: Vec<StoreId>,
}

impl StoreError {
    /// A store error with a message for the log. Never put a secret in it.
    ///
    /// ```
    /// use wxlogin::store::StoreError;
    /// let e = StoreError::new(format_args!("timed out after {} ms", 1000));
    /// assert!(e.to_string().ends_with("timed out after 1000 ms"));
    /// ```
    pub fn new(message: impl fmt::Display) -> Self {
        StoreError {
            message: message.to_string(),
            bad_record: false,
            unsupported: false,
            ended: Vec::new(),
        }
    }

    /// What this store does not do at all (a provided method it does not
    /// implement): no retry helps, so the caller answers `misconfigured`
    /// (500) rather than `store_unavailable`.
    ///
    /// ```
    /// use wxlogin::store::StoreError;
    /// let e = StoreError::unsupported("replace_data is not implemented");
    /// assert!(e.is_unsupported() && !StoreError::new("timeout").is_unsupported());
    /// ```
    pub fn unsupported(message: impl fmt::Display) -> Self {
        StoreError {
            unsupported: true,
            ..StoreError::new(message)
        }
    }

    /// Whether this is a [`StoreError::unsupported`].
    pub fn is_unsupported(&self) -> bool {
        self.unsupported
    }

    /// A record that cannot be decoded (damaged, or of an unknown version).
    /// [`SessionStore::load`] returns it for such a record; the layer answers
    /// the token `invalid_token` (and logs a warning) instead of 503.
    ///
    /// ```
    /// use wxlogin::store::StoreError;
    /// let e = StoreError::bad_record("unknown session record version");
    /// assert!(e.is_bad_record());
    /// ```
    pub fn bad_record(message: impl fmt::Display) -> Self {
        StoreError {
            bad_record: true,
            ..StoreError::new(message)
        }
    }

    /// Whether this is a [`StoreError::bad_record`].
    ///
    /// ```
    /// use wxlogin::store::StoreError;
    /// assert!(!StoreError::new("timeout").is_bad_record());
    /// ```
    pub fn is_bad_record(&self) -> bool {
        self.bad_record
    }

    /// Says which sessions a call that failed part-way may already have
    /// ended (a [`SessionStore::delete_user`] whose deletes ran before its
    /// connection died): the layer drops them from its cache all the same.
    ///
    /// ```
    /// use wxlogin::store::{StoreError, StoreId};
    /// let e = StoreError::new("connection reset").with_ended(vec![StoreId([7; 16])]);
    /// assert_eq!(e.ended(), &[StoreId([7; 16])]);
    /// ```
    pub fn with_ended(mut self, ids: Vec<StoreId>) -> Self {
        self.ended = ids;
        self
    }

    /// The sessions given to [`StoreError::with_ended`] (usually none).
    ///
    /// ```
    /// use wxlogin::store::StoreError;
    /// assert!(StoreError::new("timeout").ended().is_empty());
    /// ```
    pub fn ended(&self) -> &[StoreId] {
        &self.ended
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session store error: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// Word from a shared store that cached sessions are no longer valid.
///
/// ```
/// use std::sync::Arc;
/// use wxlogin::store::{Invalidation, InvalidationSink, StoreId};
///
/// // What a store's `watch_invalidations` is handed: call it per message.
/// let sink: InvalidationSink = Arc::new(|msg: Invalidation| {
///     match msg {
///         Invalidation::Sessions(ids) => println!("{} sessions revoked", ids.len()),
///         Invalidation::All => println!("forget every cached session"),
///         _ => {}
///     }
///     true // keep listening
/// });
/// assert!(sink(Invalidation::Sessions(vec![StoreId([1; 16])])));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// These sessions were deleted or revoked (by any instance).
    Sessions(Vec<StoreId>),
    /// Messages may have been lost (the subscription was down and is back):
    /// forget every cached session. A store sends it once it listens again,
    /// not while it cannot: until then the cache TTL bounds staleness, and
    /// cached sessions keep serving through a store outage.
    All,
    /// These sessions' data changed ([`SessionStore::replace_data`]): drop
    /// the cached copies; the sessions stay valid and are loaded again on
    /// next use.
    Changed(Vec<StoreId>),
}

/// Where a store delivers [`Invalidation`]s; answers `false` once nobody
/// listens any more (the store may then stop its subscription).
pub type InvalidationSink = Arc<dyn Fn(Invalidation) -> bool + Send + Sync>;

/// A place to keep sessions: in memory, Redis, or an app's own.
///
/// Methods return boxed futures so stores can be used as `Arc<dyn SessionStore>`;
/// the layer calls them only on a cache miss, a login or a logout.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreFuture, StoreId};
/// use wxlogin::WxLogin;
///
/// /// An app's own store: here it keeps sessions in a `MemoryStore` and counts loads.
/// struct CountingStore {
///     inner: MemoryStore,
///     loads: Arc<AtomicUsize>,
/// }
///
/// impl SessionStore for CountingStore {
///     fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
///         self.inner.create(id, record)
///     }
///     fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
///         self.loads.fetch_add(1, Ordering::Relaxed);
///         self.inner.load(id)
///     }
///     fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
///         self.inner.delete(id)
///     }
///     fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
///         self.inner.touch(id, idle_expires_at_ms)
///     }
///     fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
///         self.inner.delete_user(openid)
///     }
///     fn is_shared(&self) -> bool {
///         false // one process: a shared store (a database) says `true`
///     }
/// }
///
/// let loads = Arc::new(AtomicUsize::new(0));
/// let wx = WxLogin::builder()
///     .app_id("wx1").app_secret("s")
///     .store(CountingStore { inner: MemoryStore::new(), loads: loads.clone() })
///     .build()?;
/// # let _ = wx;
/// # Ok(())
/// # }
/// ```
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session. It must not overwrite an existing one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::{Secret, SessionRecord};
    /// # fn record(openid: &str) -> SessionRecord {
    /// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    /// #     SessionRecord {
    /// #         openid: openid.into(), unionid: None, app_id: "wx1".into(),
    /// #         session_key: Secret::new("k"), data: b"null".to_vec(),
    /// #         created_at_ms: now, expires_at_ms: now + 3_600_000, idle_expires_at_ms: None, user_agent: None, ip: None,
    /// #     }
    /// # }
    ///
    /// use wxlogin::store::{MemoryStore, SessionStore, StoreId};
    /// let store = MemoryStore::new();
    /// store.create(StoreId([1; 16]), record("o-alice")).await?;
    /// assert_eq!(store.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()>;

    /// Stores a login's new session and keeps the user to at most
    /// `max_per_user` sessions (the new one included; 1 under
    /// `single_session`), ending the oldest others; keeps the record's
    /// `session_key` as the user's newest
    /// ([`SessionStore::put_latest_session_key`]), unless it is empty (a
    /// session the app issued itself, which has none). Returns the ids of the
    /// sessions it ended, which a shared store also announces to the other
    /// instances. The list includes the new session itself when a concurrent
    /// [`SessionStore::delete_user`] (or a newer login) ended it before this
    /// call returned: the layer then does not cache it.
    ///
    /// The memory and Redis stores do the "add mine, end the others" as one
    /// atomic step, so concurrent logins and revocations see each other. The
    /// default is not atomic: it calls `delete_user` first when
    /// `max_per_user` is 1, then `create`, then `put_latest_session_key`
    /// (whose failure it only logs), and does not cap otherwise. A custom
    /// store should override it to enforce the cap.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::{Secret, SessionRecord};
    /// # fn record(openid: &str, created_at_ms: u64) -> SessionRecord {
    /// #     SessionRecord {
    /// #         openid: openid.into(), unionid: None, app_id: "wx1".into(),
    /// #         session_key: Secret::new("k"), data: b"null".to_vec(),
    /// #         created_at_ms, expires_at_ms: created_at_ms + 3_600_000, idle_expires_at_ms: None, user_agent: None, ip: None,
    /// #     }
    /// # }
    /// use wxlogin::store::{MemoryStore, SessionStore, StoreId};
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    /// let store = MemoryStore::new();
    /// for n in 1..=3u8 {
    ///     let ended = store.create_capped(StoreId([n; 16]), record("o-alice", now + n as u64), 2).await?;
    ///     // The third login ends the oldest session.
    ///     assert_eq!(ended, if n == 3 { vec![StoreId([1; 16])] } else { vec![] });
    /// }
    /// assert_eq!(store.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        Box::pin(async move {
            let ended = if max_per_user <= 1 {
                self.delete_user(&record.openid).await?
            } else {
                Vec::new()
            };
            let openid = record.openid.clone();
            let (key, until) = (record.session_key.clone(), record.expires_at_ms);
            self.create(id, record).await?;
            if key.expose().is_empty() {
                // A session the app issued itself: no WeChat session_key to keep.
            } else if let Err(e) = self.put_latest_session_key(&openid, key, until).await {
                tracing::warn!(error = %e, "wxlogin: keeping the newest session_key failed");
            }
            Ok(ended)
        })
    }

    /// Loads a session; `None` when it is unknown or deleted.
    ///
    /// A store may return a record that has already ended (the caller checks
    /// [`SessionRecord::is_expired_at`]); that lets the layer answer
    /// `session_expired` instead of `invalid_token` while the store remembers it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::{Secret, SessionRecord};
    /// # fn record(openid: &str) -> SessionRecord {
    /// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    /// #     SessionRecord {
    /// #         openid: openid.into(), unionid: None, app_id: "wx1".into(),
    /// #         session_key: Secret::new("k"), data: b"null".to_vec(),
    /// #         created_at_ms: now, expires_at_ms: now + 3_600_000, idle_expires_at_ms: None, user_agent: None, ip: None,
    /// #     }
    /// # }
    ///
    /// use wxlogin::store::{MemoryStore, SessionStore, StoreId};
    /// let store = MemoryStore::new();
    /// store.create(StoreId([1; 16]), record("o-alice")).await?;
    /// let loaded = store.load(StoreId([1; 16])).await?.expect("stored");
    /// assert_eq!(loaded.openid, "o-alice");
    /// assert!(store.load(StoreId([2; 16])).await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>>;

    /// Deletes a session; `true` if it existed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::{Secret, SessionRecord};
    /// # fn record(openid: &str) -> SessionRecord {
    /// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    /// #     SessionRecord {
    /// #         openid: openid.into(), unionid: None, app_id: "wx1".into(),
    /// #         session_key: Secret::new("k"), data: b"null".to_vec(),
    /// #         created_at_ms: now, expires_at_ms: now + 3_600_000, idle_expires_at_ms: None, user_agent: None, ip: None,
    /// #     }
    /// # }
    ///
    /// use wxlogin::store::{MemoryStore, SessionStore, StoreId};
    /// let store = MemoryStore::new();
    /// store.create(StoreId([1; 16]), record("o-alice")).await?;
    /// assert!(store.delete(StoreId([1; 16])).await?);
    /// assert!(!store.delete(StoreId([1; 16])).await?);
    /// # Ok(())
    /// # }
    /// ```
    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool>;

    /// Moves the idle deadline of a session; `false` if it is gone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::{Secret, SessionRecord};
    /// # fn record(openid: &str) -> SessionRecord {
    /// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    /// #     SessionRecord {
    /// #         openid: openid.into(), unionid: None, app_id: "wx1".into(),
    /// #         session_key: Secret::new("k"), data: b"null".to_vec(),
    /// #         created_at_ms: now, expires_at_ms: now + 3_600_000, idle_expires_at_ms: None, user_agent: None, ip: None,
    /// #     }
    /// # }
    ///
    /// use wxlogin::store::{MemoryStore, SessionStore, StoreId};
    /// let store = MemoryStore::new();
    /// let rec = record("o-alice");
    /// let later = rec.created_at_ms + 60_000;
    /// store.create(StoreId([1; 16]), rec).await?;
    /// assert!(store.touch(StoreId([1; 16]), later).await?);
    /// assert_eq!(store.load(StoreId([1; 16])).await?.unwrap().idle_expires_at_ms, Some(later));
    /// assert!(!store.touch(StoreId([2; 16]), later).await?);
    /// # Ok(())
    /// # }
    /// ```
    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool>;

    /// Deletes every session of a user; returns the ids it deleted. A shared
    /// store announces every id it ended to the other instances, and a call
    /// that fails part-way says which sessions it may have ended
    /// ([`StoreError::with_ended`]); a retry then finds them again (the Redis
    /// store keeps their index entries until they are deleted and
    /// announced), so it announces them again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::{Secret, SessionRecord};
    /// # fn record(openid: &str) -> SessionRecord {
    /// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    /// #     SessionRecord {
    /// #         openid: openid.into(), unionid: None, app_id: "wx1".into(),
    /// #         session_key: Secret::new("k"), data: b"null".to_vec(),
    /// #         created_at_ms: now, expires_at_ms: now + 3_600_000, idle_expires_at_ms: None, user_agent: None, ip: None,
    /// #     }
    /// # }
    ///
    /// use wxlogin::store::{MemoryStore, SessionStore, StoreId};
    /// let store = MemoryStore::new();
    /// store.create(StoreId([1; 16]), record("o-alice")).await?;
    /// store.create(StoreId([2; 16]), record("o-alice")).await?;
    /// store.create(StoreId([3; 16]), record("o-bob")).await?;
    /// let mut gone = store.delete_user("o-alice").await?;
    /// gone.sort();
    /// assert_eq!(gone, [StoreId([1; 16]), StoreId([2; 16])]);
    /// assert_eq!(store.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>>;

    /// Whether several processes share this store. A shared store needs a
    /// configured token key, so that every instance accepts the same tokens:
    /// [`WxLogin`](crate::WxLogin)'s `build` refuses a shared store without
    /// one, and gives a private store a random key if none is configured.
    ///
    /// Every store must answer (there is no default): a store shared by
    /// several instances that said `false` by omission would get a random
    /// key per instance, and the instances would refuse each other's tokens.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::store::{MemoryStore, SessionStore};
    /// assert!(!MemoryStore::new().is_shared()); // one process only
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A store that does not say does not compile:
    ///
    /// ```compile_fail
    /// use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreFuture, StoreId};
    /// struct Forgetful(MemoryStore);
    /// impl SessionStore for Forgetful {
    ///     fn create(&self, id: StoreId, r: SessionRecord) -> StoreFuture<'_, ()> { self.0.create(id, r) }
    ///     fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> { self.0.load(id) }
    ///     fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> { self.0.delete(id) }
    ///     fn touch(&self, id: StoreId, t: u64) -> StoreFuture<'_, bool> { self.0.touch(id, t) }
    ///     fn delete_user(&self, o: &str) -> StoreFuture<'_, Vec<StoreId>> { self.0.delete_user(o) }
    ///     // no `fn is_shared`: error[E0046]: not all trait items implemented
    /// }
    /// ```
    fn is_shared(&self) -> bool;

    /// Starts delivering invalidations published by other instances (a shared
    /// store's logouts and revocations), so every instance's cache drops the
    /// session within moments. Called once per [`WxLogin`](crate::WxLogin)
    /// built on this store. Stores private to one process need not do anything.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use wxlogin::store::{Invalidation, MemoryStore, SessionStore};
    /// // `WxLogin::build` does this; a private store such as `MemoryStore` never calls the sink.
    /// MemoryStore::new().watch_invalidations(Arc::new(|_msg: Invalidation| true));
    /// # Ok(())
    /// # }
    /// ```
    fn watch_invalidations(&self, sink: InvalidationSink) {
        let _ = sink;
    }

    /// Remembers the newest `session_key` WeChat gave a user, until `until_ms`.
    ///
    /// WeChat keeps one valid key per user: a login on any device replaces
    /// it, and `encryptedData` is then encrypted with the new one. Sessions
    /// created earlier decrypt with the key kept here
    /// ([`WxSession::decrypt`](crate::WxSession::decrypt)). The default keeps
    /// nothing (each session then decrypts with its own login's key).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::store::{MemoryStore, SessionStore};
    /// use wxlogin::Secret;
    /// let store = MemoryStore::new();
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    /// store.put_latest_session_key("o-alice", Secret::new("new-key"), now + 60_000).await?;
    /// let latest = store.latest_session_key("o-alice").await?;
    /// assert_eq!(latest.as_ref().map(Secret::expose), Some("new-key"));
    /// # Ok(())
    /// # }
    /// ```
    fn put_latest_session_key(
        &self,
        openid: &str,
        session_key: Secret,
        until_ms: u64,
    ) -> StoreFuture<'_, ()> {
        let _ = (openid, session_key, until_ms);
        Box::pin(std::future::ready(Ok(())))
    }

    /// The newest `session_key` kept by [`SessionStore::put_latest_session_key`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::store::{MemoryStore, SessionStore};
    /// let store = MemoryStore::new();
    /// assert!(store.latest_session_key("o-nobody").await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    fn latest_session_key(&self, openid: &str) -> StoreFuture<'_, Option<Secret>> {
        let _ = openid;
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Replaces the app data of a session that has not ended (its
    /// lifetime, idle deadline and everything else stay); answers whether
    /// there was such a session. A shared store announces the change to
    /// the other instances ([`Invalidation::Changed`]), which drop their
    /// cached copy and load the new data on next use. The default cannot:
    /// it fails ([`StoreError::unsupported`]), and so does
    /// [`WxLogin::set_session_data`] on such a store (`misconfigured`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::{Secret, SessionRecord};
    /// use wxlogin::store::{MemoryStore, SessionStore, StoreId};
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    /// let store = MemoryStore::new();
    /// let record = SessionRecord {
    ///     openid: "o1".into(), unionid: None, app_id: "wx1".into(),
    ///     session_key: Secret::new("k"), data: br#"{"nickname":null}"#.to_vec(),
    ///     created_at_ms: now, expires_at_ms: now + 60_000, idle_expires_at_ms: None, user_agent: None, ip: None,
    /// };
    /// store.create(StoreId([1; 16]), record).await?;
    /// assert!(store.replace_data(StoreId([1; 16]), br#"{"nickname":"N"}"#.to_vec()).await?);
    /// let loaded = store.load(StoreId([1; 16])).await?.unwrap();
    /// assert_eq!(loaded.data, br#"{"nickname":"N"}"#);
    /// assert_eq!(loaded.expires_at_ms, now + 60_000);
    /// assert!(!store.replace_data(StoreId([2; 16]), b"null".to_vec()).await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`WxLogin::set_session_data`]: crate::WxLogin::set_session_data
    fn replace_data(&self, id: StoreId, data: Vec<u8>) -> StoreFuture<'_, bool> {
        let _ = (id, data);
        Box::pin(std::future::ready(Err(StoreError::unsupported(
            "this store cannot change a session's data (it does not implement replace_data)",
        ))))
    }

    /// The ids of a user's sessions that have not ended, oldest first (for
    /// changing all their data, and the device list). The default cannot:
    /// it fails ([`StoreError::unsupported`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::store::{MemoryStore, SessionStore};
    /// assert!(MemoryStore::new().user_sessions("o-nobody").await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    fn user_sessions(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        let _ = openid;
        Box::pin(std::future::ready(Err(StoreError::unsupported(
            "this store cannot list a user's sessions (it does not implement user_sessions)",
        ))))
    }

    /// Where instances share the WeChat access token, if this store can
    /// (default: nowhere; each instance then fetches and caches its own).
    /// A shared store should offer one, so that its instances fetch the
    /// token once between them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::store::{MemoryStore, SessionStore};
    /// // A private store shares nothing: each instance caches its own token.
    /// assert!(MemoryStore::new().access_token_cache().is_none());
    /// # Ok(())
    /// # }
    /// ```
    fn access_token_cache(&self) -> Option<&dyn AccessTokenCache> {
        None
    }
}
