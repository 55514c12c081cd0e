//! The Redis (or Valkey) store, for sessions shared by many instances (feature `redis`).
//!
//! Layout, with the default prefix `wxlogin`:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `wxlogin:s:{<store id hex>}` | string | the [compact record](super::codec) | at the session's end (`PXAT`), moved by idle extension |
//! | `wxlogin:u:{<openid>}` | hash | a field per session (store id hex → its end, ms), and field `k`: the newest `session_key` (`<until ms>:<key>`) | at the latest end among its fields |
//! | channel `wxlogin:revoked` | pub/sub | comma-separated store ids, or `*` | |
//! | `wxlogin:at:{<appid>}` | string | the shared WeChat access token, `<obtained ms>:<expires ms>:<token>` | with the token (`PXAT`) |
//! | `wxlogin:at:{<appid>}:lock` | string | the refreshing instance's random id (`SET NX PX`) | after a fetch's deadline plus 2 s |
//!
//! Every command touches one key, so the store works on Redis Cluster; the
//! braces are hash tags that keep each key's slot explicit.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands as _, Script};

use super::codec::IDLE_OFFSET;
use super::{
    AccessTokenCache, Invalidation, InvalidationSink, SessionRecord, SessionStore,
    SharedAccessToken, StoreError, StoreFuture, StoreId,
};
use crate::Secret;

/// The `redis` client crate, re-exported for apps that need to name its types.
pub use ::redis as client;

/// Sessions in Redis (or Valkey), shared by every instance of the app.
///
/// A session lives in Redis until its end (Redis expires it by `PXAT`), so
/// any instance serves any token and a restarted instance loses nothing.
/// Logouts and revocations are published on a channel; every [`WxLogin`]
/// built on the store subscribes and drops the session from its cache at
/// once (and forgets its whole cache after a lost subscription, which comes
/// back by itself). A store is shared, so the builder requires a token key.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use wxlogin::{store::RedisStore, WxLogin};
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("myapp");
/// let wx = WxLogin::builder()
///     .app_id("wx1").app_secret("secret")
///     .token_key("0123456789abcdef0123456789abcdef")
///     .store(store)
///     .build()?;
/// # let _ = wx; Ok(()) }
/// ```
///
/// [`WxLogin`]: crate::WxLogin
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// Where the invalidation subscriber connects (a cluster's first node).
    pubsub: redis::Client,
    prefix: Arc<str>,
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field(
                "mode",
                &match self.conn {
                    Conn::Single(_) => "single",
                    Conn::Cluster(_) => "cluster",
                },
            )
            .finish()
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

fn err(e: redis::RedisError) -> StoreError {
    // Redis errors carry no secrets (no URL password, no values); keep the kind and text.
    StoreError::new(format_args!("redis: {e}"))
}

/// A user's hash: one field per session (store id in hex → when it ends,
/// ms) and the field `k` (`<until ms>:<session_key>`, the newest
/// `session_key`). One key per user instead of two (an index and a key of
/// its own for the `session_key`) saves ~150 bytes of Redis memory per
/// user (docs/performance.md).
///
/// `USER_PUT` sets one field (`ARGV[1]`) to `ARGV[2]`, whose end is
/// `ARGV[3]`; drops fields that have ended by `ARGV[4]` (now); and keeps the
/// hash alive until its last field ends.
const USER_PUT: &str = r"
local now = tonumber(ARGV[4])
local last = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ends = tonumber(string.match(all[i + 1], '^%d+')) or 0
  if ends <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif ends > last then
    last = ends
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], last)
return 1
";

/// The field of a user's hash that holds the newest `session_key`.
const NEWEST_KEY_FIELD: &str = "k";

/// Moves the idle deadline inside the record and the key's expiry with it.
const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SETRANGE', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
";

impl RedisStore {
    /// Connects to one Redis server (`redis://[:password@]host:port[/db]`),
    /// with automatic reconnection.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{store::RedisStore, WxLogin};
    /// let store = RedisStore::connect("redis://127.0.0.1:6379/0").await?;
    /// let wx = WxLogin::builder()
    ///     .app_id("wx1").app_secret("s")
    ///     .token_key(std::env::var("WXLOGIN_TOKEN_KEY")?) // the same on every instance
    ///     .store(store)
    ///     .build()?;
    /// # let _ = wx;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(err)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(2)
            .set_max_delay(500);
        let manager = tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| StoreError::new("redis: connect timed out"))?
        .map_err(err)?;
        Ok(RedisStore {
            conn: Conn::Single(manager),
            pubsub: client,
            prefix: Arc::from("wxlogin"),
        })
    }

    /// Connects to a Redis Cluster through any of its nodes.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::store::RedisStore;
    /// let store = RedisStore::connect_cluster(&["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]).await?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_cluster(urls: &[&str]) -> Result<Self, StoreError> {
        let first = urls
            .first()
            .ok_or_else(|| StoreError::new("redis: no cluster node given"))?;
        let client = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .map_err(err)?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT * 2, client.get_async_connection())
            .await
            .map_err(|_| StoreError::new("redis: cluster connect timed out"))?
            .map_err(err)?;
        Ok(RedisStore {
            conn: Conn::Cluster(conn),
            pubsub: redis::Client::open(*first).map_err(err)?,
            prefix: Arc::from("wxlogin"),
        })
    }

    /// Prefixes every key and the channel (default `wxlogin`), to share a
    /// Redis between apps.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::store::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("shop");
    /// assert_eq!(store.channel(), "shop:revoked");
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// The key of a session.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::store::RedisStore;
    ///
    /// use wxlogin::store::StoreId;
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.session_key(StoreId([0; 16])), format!("wxlogin:s:{{{}}}", "00".repeat(16)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn session_key(&self, id: StoreId) -> String {
        format!("{}:s:{{{id}}}", self.prefix)
    }

    /// The key of a user's hash: their sessions' store ids, and their newest
    /// `session_key` (field `k`).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::store::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.user_key("o-alice"), "wxlogin:u:{o-alice}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn user_key(&self, openid: &str) -> String {
        format!("{}:u:{{{openid}}}", self.prefix)
    }

    /// The invalidation channel.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::store::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.channel(), "wxlogin:revoked");
    /// # Ok(())
    /// # }
    /// ```
    pub fn channel(&self) -> String {
        format!("{}:revoked", self.prefix)
    }

    async fn publish(&self, message: String) -> Result<(), StoreError> {
        let channel = self.channel();
        match self.conn.clone() {
            Conn::Single(mut c) => c.publish::<_, _, ()>(channel, message).await,
            Conn::Cluster(mut c) => c.publish::<_, _, ()>(channel, message).await,
        }
        .map_err(err)
    }
}

/// Runs one command or script on either kind of connection.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn.clone() {
            Conn::Single(mut $c) => $body,
            Conn::Cluster(mut $c) => $body,
        }
    };
}

impl SessionStore for RedisStore {
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let end = record.ends_at_ms();
            let now = crate::session::now_ms();
            let index = self.user_key(&record.openid);
            // Index first: a session that exists is always revocable.
            let script = Script::new(USER_PUT);
            on_conn!(self.conn, |c| script
                .key(&index)
                .arg(id.to_string())
                .arg(record.expires_at_ms)
                .arg(record.expires_at_ms)
                .arg(now)
                .invoke_async::<i64>(&mut c)
                .await)
            .map_err(err)?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.session_key(id))
                .arg(record.encode())
                .arg("PXAT")
                .arg(end)
                .arg("NX");
            let set: Option<String> =
                on_conn!(self.conn, |c| cmd.query_async(&mut c).await).map_err(err)?;
            match set {
                Some(_) => Ok(()),
                None => Err(StoreError::new("session id already exists")),
            }
        })
    }

    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        Box::pin(async move {
            let key = self.session_key(id);
            let bytes: Option<Vec<u8>> = on_conn!(self.conn, |c| c.get(&key).await).map_err(err)?;
            bytes.map(|b| SessionRecord::decode(&b)).transpose()
        })
    }

    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let key = self.session_key(id);
            let n: i64 = on_conn!(self.conn, |c| c.del(&key).await).map_err(err)?;
            self.publish(id.to_string()).await?;
            Ok(n > 0)
        })
    }

    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let script = Script::new(TOUCH);
            let done: i64 = on_conn!(self.conn, |c| script
                .key(self.session_key(id))
                .arg(IDLE_OFFSET)
                .arg(&idle_expires_at_ms.to_be_bytes()[..])
                .arg(idle_expires_at_ms)
                .invoke_async(&mut c)
                .await)
            .map_err(err)?;
            Ok(done == 1)
        })
    }

    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        let index = self.user_key(openid);
        Box::pin(async move {
            let members: Vec<String> =
                on_conn!(self.conn, |c| c.hkeys(&index).await).map_err(err)?;
            let listed: Vec<StoreId> = members.iter().filter_map(|m| parse_id(m)).collect();
            // One key per command, so this works across cluster slots. The
            // index may still list sessions already logged out or ended:
            // return only those this call deleted.
            let mut ids = Vec::with_capacity(listed.len());
            for id in listed {
                let key = self.session_key(id);
                let n: i64 = on_conn!(self.conn, |c| c.del(&key).await).map_err(err)?;
                if n > 0 {
                    ids.push(id);
                }
            }
            // The hash goes, and the newest `session_key` with it.
            let _: i64 = on_conn!(self.conn, |c| c.del(&index).await).map_err(err)?;
            if !ids.is_empty() {
                let msg = ids
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                self.publish(msg).await?;
            }
            Ok(ids)
        })
    }

    fn put_latest_session_key(
        &self,
        openid: &str,
        session_key: Secret,
        until_ms: u64,
    ) -> StoreFuture<'_, ()> {
        let index = self.user_key(openid);
        Box::pin(async move {
            let script = Script::new(USER_PUT);
            let value = format!("{until_ms}:{}", session_key.expose());
            on_conn!(self.conn, |c| script
                .key(&index)
                .arg(NEWEST_KEY_FIELD)
                .arg(&value)
                .arg(until_ms)
                .arg(crate::session::now_ms())
                .invoke_async::<i64>(&mut c)
                .await)
            .map(|_| ())
            .map_err(err)
        })
    }

    fn latest_session_key(&self, openid: &str) -> StoreFuture<'_, Option<Secret>> {
        let index = self.user_key(openid);
        Box::pin(async move {
            let value: Option<String> =
                on_conn!(self.conn, |c| c.hget(&index, NEWEST_KEY_FIELD).await).map_err(err)?;
            let now = crate::session::now_ms();
            Ok(value.and_then(|v| {
                let (until, key) = v.split_once(':')?;
                (until.parse::<u64>().ok()? > now).then(|| Secret::new(key))
            }))
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn access_token_cache(&self) -> Option<&dyn AccessTokenCache> {
        Some(self)
    }

    fn watch_invalidations(&self, sink: InvalidationSink) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("wxlogin: no Tokio runtime; cross-instance invalidation is off (cache TTL still bounds staleness)");
            return;
        };
        rt.spawn(subscribe(self.pubsub.clone(), self.channel(), sink));
    }
}

/// Deletes the shared access token if it is still the given one.
/// The value is `<obtained ms>:<expires ms>:<token>`.
const DISCARD_TOKEN: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.match(v, '^%d+:%d+:(.*)$') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Deletes the refresh lock if the caller still owns it.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

impl RedisStore {
    /// The key of the shared WeChat access token of an app:
    /// `<prefix>:at:{<appid>}`, holding `<obtained ms>:<expires ms>:<token>`
    /// and expiring with the token.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::store::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.access_token_key("wx1"), "wxlogin:at:{wx1}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn access_token_key(&self, app_id: &str) -> String {
        format!("{}:at:{{{app_id}}}", self.prefix)
    }

    /// The key of the access-token refresh lock (same hash slot as the token).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::store::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.access_token_lock_key("wx1"), "wxlogin:at:{wx1}:lock");
    /// # Ok(())
    /// # }
    /// ```
    pub fn access_token_lock_key(&self, app_id: &str) -> String {
        format!("{}:at:{{{app_id}}}:lock", self.prefix)
    }
}

/// The access token is shared under `<prefix>:at:{<appid>}`; one instance
/// at a time refreshes it, under `<prefix>:at:{<appid>}:lock` (`SET NX PX`).
impl AccessTokenCache for RedisStore {
    fn get<'a>(&'a self, app_id: &'a str) -> StoreFuture<'a, Option<SharedAccessToken>> {
        Box::pin(async move {
            let key = self.access_token_key(app_id);
            let value: Option<String> = on_conn!(self.conn, |c| c.get(&key).await).map_err(err)?;
            Ok(value.and_then(|v| {
                let mut parts = v.splitn(3, ':');
                let obtained_at_ms = parts.next()?.parse().ok()?;
                let expires_at_ms = parts.next()?.parse().ok()?;
                let token = parts.next().filter(|t| !t.is_empty())?;
                Some(SharedAccessToken {
                    token: Secret::new(token),
                    obtained_at_ms,
                    expires_at_ms,
                })
            }))
        })
    }

    fn put<'a>(&'a self, app_id: &'a str, token: &'a SharedAccessToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if token.expires_at_ms <= crate::session::now_ms() {
                return Ok(());
            }
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.access_token_key(app_id))
                .arg(format!(
                    "{}:{}:{}",
                    token.obtained_at_ms,
                    token.expires_at_ms,
                    token.token.expose()
                ))
                .arg("PXAT")
                .arg(token.expires_at_ms);
            let _: Option<String> =
                on_conn!(self.conn, |c| cmd.query_async(&mut c).await).map_err(err)?;
            Ok(())
        })
    }

    fn discard<'a>(&'a self, app_id: &'a str, token: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let script = Script::new(DISCARD_TOKEN);
            let _: i64 = on_conn!(self.conn, |c| script
                .key(self.access_token_key(app_id))
                .arg(token)
                .invoke_async(&mut c)
                .await)
            .map_err(err)?;
            Ok(())
        })
    }

    fn try_lock<'a>(
        &'a self,
        app_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.access_token_lock_key(app_id))
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64);
            let set: Option<String> =
                on_conn!(self.conn, |c| cmd.query_async(&mut c).await).map_err(err)?;
            Ok(set.is_some())
        })
    }

    fn unlock<'a>(&'a self, app_id: &'a str, owner: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let script = Script::new(UNLOCK);
            let _: i64 = on_conn!(self.conn, |c| script
                .key(self.access_token_lock_key(app_id))
                .arg(owner)
                .invoke_async(&mut c)
                .await)
            .map_err(err)?;
            Ok(())
        })
    }
}

fn parse_id(hex: &str) -> Option<StoreId> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(StoreId(out))
}

/// Delivers invalidation messages until nobody listens; resubscribes after
/// any loss, and then tells the cache to forget everything (messages sent
/// while disconnected are gone).
async fn subscribe(client: redis::Client, channel: String, sink: InvalidationSink) {
    let mut backoff = Duration::from_millis(50);
    let mut connected_before = false;
    loop {
        // Stop once the WxLogin is gone.
        if !sink(Invalidation::Sessions(Vec::new())) {
            return;
        }
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(mut pubsub)) => {
                backoff = Duration::from_millis(50);
                if connected_before {
                    tracing::info!(
                        "wxlogin: invalidation subscription restored; clearing the session cache"
                    );
                    if !sink(Invalidation::All) {
                        return;
                    }
                } else {
                    tracing::debug!(channel = %channel, "wxlogin: subscribed to invalidations");
                }
                connected_before = true;
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let inv = if payload == "*" {
                        Invalidation::All
                    } else {
                        Invalidation::Sessions(payload.split(',').filter_map(parse_id).collect())
                    };
                    if !sink(inv) {
                        return;
                    }
                }
                tracing::warn!("wxlogin: invalidation subscription lost; reconnecting");
                if !sink(Invalidation::All) {
                    return;
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "wxlogin: cannot subscribe to invalidations"),
            Err(_) => tracing::warn!("wxlogin: subscribing to invalidations timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
