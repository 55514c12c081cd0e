//! The Redis (or Valkey) store, for sessions shared by many instances (feature `redis`).
//!
//! Layout, with the default prefix `wxlogin`:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `wxlogin:s:{<store id hex>}` | string | the [compact record](super::codec) | at the session's end (`PXAT`), moved by idle extension |
//! | `wxlogin:u:{<openid>}` | sorted set | the user's index: a member per session (store id hex, scored by its end, ms), and one member `k:<session_key>` scored by minus its end: the newest `session_key` | at the latest end among its members |
//! | `wxlogin:u:{<openid>}:ending` | sorted set | sessions taken out of the index to be ended (by a revoke or the cap) until they are deleted and announced; empty, so absent, between revocations | at the latest end among its members |
//! | channel `wxlogin:revoked` | pub/sub | comma-separated store ids | |
//! | `wxlogin:at:{<appid>}` | string | the shared WeChat access token, `<obtained ms>:<expires ms>:<token>` | with the token (`PXAT`) |
//! | `wxlogin:at:{<appid>}:lock` | string | the refreshing instance's random id (`SET NX PX`) | after a fetch's deadline plus 2 s |
//!
//! Scripts touch one user's two keys, which share a hash slot (the braces
//! are hash tags); every other command touches one key. So the store works
//! on Redis Cluster. An index left by an earlier release (a hash) is turned
//! into the sorted set the first time a script touches it.
//!
//! How a login and a revoke see each other (docs/design.md): a login adds
//! its session to the index (one script, which also ends the oldest beyond
//! the cap), writes the session, then checks that it is still indexed; a
//! revoke moves the whole index to the user's `ending` set in one script,
//! then deletes and announces those sessions, and only then removes them
//! from `ending`. Whichever script runs first, the other sees it: a login
//! whose session a revoke took out of the index ends that session itself.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands as _, IntoConnectionInfo as _, Script};

use super::codec::{openid_of, IDLE_OFFSET};
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
/// once. While the subscription is down, cached sessions keep serving
/// (within their cache TTL); once it is back, the cache is dropped, since
/// messages may have been missed. A store is shared, so the builder
/// requires a token key.
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
    /// Where the invalidation subscriber may connect: the server, or the
    /// cluster's seed nodes (it also finds the others with `CLUSTER SLOTS`).
    subscribe_to: Arc<[redis::ConnectionInfo]>,
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
/// How long the subscription may be silent before a PING checks it.
const PING_AFTER: Duration = Duration::from_secs(1);
/// How long that PING may take before the subscription counts as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

fn err(e: redis::RedisError) -> StoreError {
    // Redis errors carry no secrets (no URL password, no values); keep the kind and text.
    StoreError::new(format_args!("redis: {e}"))
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

/// Lua shared by the scripts on a user's index (`KEYS[1]`).
///
/// - `index(key)`: turns an index left by an earlier release (a hash: store
///   id → end, and `k` → `<until>:<session_key>`) into the sorted set.
/// - `keep_until(key, floor)`: makes the index live until its last member
///   ends (and at least until `floor`).
/// - `ending(key)`: every member of an `ending` set, which lives until its
///   last member ends.
macro_rules! index_lib {
    () => {
        r"
local function keep_until(key, floor)
  local last = floor
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) > last then last = tonumber(top[2]) end
  local k = redis.call('ZRANGEBYSCORE', key, '-inf', '(0', 'WITHSCORES', 'LIMIT', 0, 1)
  if k[2] and -tonumber(k[2]) > last then last = -tonumber(k[2]) end
  if last > 0 then redis.call('PEXPIREAT', key, last) end
end
local function index(key)
  if redis.call('TYPE', key).ok ~= 'hash' then return end
  local all = redis.call('HGETALL', key)
  redis.call('DEL', key)
  for i = 1, #all, 2 do
    if all[i] == 'k' then
      local ms, k = string.match(all[i + 1], '^(%d+):(.*)$')
      if ms then redis.call('ZADD', key, -tonumber(ms), 'k:' .. k) end
    else
      local ends = tonumber(string.match(all[i + 1], '^%d+'))
      if ends then redis.call('ZADD', key, ends, all[i]) end
    end
  end
  keep_until(key, 0)
end
local function ending(key)
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local ids = {}
  for i = 1, #all, 2 do ids[#ids + 1] = all[i] end
  if #all > 0 then redis.call('PEXPIREAT', key, all[#all]) end
  return ids
end
"
    };
}

/// A login's one atomic step on the user's keys (`KEYS[1]` the index,
/// `KEYS[2]` its `ending` set): drops ended members, puts the newest
/// `session_key` (`ARGV[5]`, the member `k:<key>`, until `ARGV[6]`; none if
/// empty), adds the session `ARGV[1]` ending at `ARGV[2]`, and moves the
/// oldest others beyond `ARGV[4]` sessions (0: no cap) to `ending`;
/// `ARGV[3]` is now. Returns every
/// member of `ending` (this login's, and any a failed call left), for the
/// caller to delete and announce. Work: O(log n) in the index's size, plus
/// what it moves; never a read of the whole index.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        index_lib!(),
        r"
index(KEYS[1])
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now)
if ARGV[5] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(0')
  redis.call('ZADD', KEYS[1], -tonumber(ARGV[6]), ARGV[5])
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local over = 0
if tonumber(ARGV[4]) > 0 then
  over = redis.call('ZCOUNT', KEYS[1], '(0', '+inf') - tonumber(ARGV[4])
end
if over > 0 then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf', 'WITHSCORES', 'LIMIT', 0, over + 1)
  for i = 1, #oldest, 2 do
    if over > 0 and oldest[i] ~= ARGV[1] then
      redis.call('ZADD', KEYS[2], oldest[i + 1], oldest[i])
      redis.call('ZREM', KEYS[1], oldest[i])
      over = over - 1
    end
  end
end
keep_until(KEYS[1], tonumber(ARGV[2]))
return ending(KEYS[2])
"
    ))
});

/// A revoke's one atomic step: moves every session of the index to
/// `ending` and forgets the newest `session_key`; returns every member of
/// `ending`. Nothing leaves the index without being listed here.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        index_lib!(),
        r"
index(KEYS[1])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf', 'WITHSCORES')
for i = 1, #live, 2 do redis.call('ZADD', KEYS[2], live[i + 1], live[i]) end
redis.call('DEL', KEYS[1])
return ending(KEYS[2])
"
    ))
});

/// Puts the newest `session_key` (member `ARGV[1]`, until `ARGV[2]`).
static PUT_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        index_lib!(),
        r"
index(KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(0')
redis.call('ZADD', KEYS[1], -tonumber(ARGV[2]), ARGV[1])
keep_until(KEYS[1], tonumber(ARGV[2]))
return 1
"
    ))
});

/// The newest `session_key` member and its (negated) end.
static GET_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        index_lib!(),
        r"
index(KEYS[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(0', 'WITHSCORES', 'LIMIT', 0, 1)
"
    ))
});

/// The prefix of the newest-`session_key` member of an index.
const KEY_MEMBER: &str = "k:";

/// Moves the idle deadline inside the record and the key's expiry with it.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SETRANGE', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
",
    )
});

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
            subscribe_to: Arc::from([client.get_connection_info().clone()]),
            prefix: Arc::from("wxlogin"),
        })
    }

    /// Connects to a Redis Cluster through any of its nodes.
    ///
    /// The invalidation subscriber connects to one node at a time (a
    /// cluster forwards every `PUBLISH` to all nodes): these, or the others
    /// the cluster names, moving on when its node is lost.
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
        if urls.is_empty() {
            return Err(StoreError::new("redis: no cluster node given"));
        }
        let seeds = urls
            .iter()
            .map(|u| u.into_connection_info())
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
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
            subscribe_to: Arc::from(seeds),
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

    /// The key of a user's index: a sorted set of their sessions' store ids
    /// (scored by their end, ms), and their newest `session_key` (the member
    /// `k:<key>`, scored by minus its end).
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

    /// The key of the sessions of a user being ended (taken out of the
    /// index by a revoke or the cap, not yet deleted and announced). It is
    /// in the same hash slot as [`RedisStore::user_key`].
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use wxlogin::store::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.ending_key("o-alice"), "wxlogin:u:{o-alice}:ending");
    /// # Ok(())
    /// # }
    /// ```
    pub fn ending_key(&self, openid: &str) -> String {
        format!("{}:u:{{{openid}}}:ending", self.prefix)
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

    /// Runs a script on either kind of connection.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        match self.conn.clone() {
            Conn::Single(mut c) => invocation.invoke_async(&mut c).await,
            Conn::Cluster(mut c) => invocation.invoke_async(&mut c).await,
        }
        .map_err(err)
    }

    /// Runs commands in phases, each after the one before it, and returns
    /// every reply in order. On one server the phases go as one pipeline: a
    /// connection's commands run in order, so one round trip keeps them in
    /// sequence. On a cluster each phase is a round trip, its commands sent
    /// at once to their nodes (their keys are in different slots, which a
    /// cluster pipeline refuses).
    async fn phases(&self, phases: &[Vec<redis::Cmd>]) -> redis::RedisResult<Vec<redis::Value>> {
        match self.conn.clone() {
            Conn::Single(mut c) => {
                let mut pipe = redis::pipe();
                for cmd in phases.iter().flatten() {
                    pipe.add_command(cmd.clone());
                }
                pipe.query_async(&mut c).await
            }
            Conn::Cluster(c) => {
                let mut replies = Vec::new();
                for phase in phases {
                    let sent = phase.iter().map(|cmd| {
                        let mut c = c.clone();
                        async move { cmd.query_async::<redis::Value>(&mut c).await }
                    });
                    replies.extend(futures_util::future::try_join_all(sent).await?);
                }
                Ok(replies)
            }
        }
    }

    /// The commands that end sessions taken out of a user's index: delete
    /// them and announce them; then (a later phase, so a failure in between
    /// leaves them listed for a retry) remove them from `ending`.
    fn ending_phases(&self, openid: &str, ids: &[StoreId]) -> [Vec<redis::Cmd>; 2] {
        let mut delete: Vec<redis::Cmd> = ids
            .iter()
            .map(|id| {
                let mut del = redis::cmd("DEL");
                del.arg(self.session_key(*id));
                del
            })
            .collect();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.channel()).arg(join_ids(ids));
        delete.push(publish);
        let mut unlist = redis::cmd("ZREM");
        unlist.arg(self.ending_key(openid));
        for id in ids {
            unlist.arg(id.to_string());
        }
        [delete, vec![unlist]]
    }

    /// What `create` and `create_capped` do: `max_per_user` 0 is no cap;
    /// `newest_key` also keeps the record's `session_key` as the user's newest.
    async fn create_indexed(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
        newest_key: bool,
    ) -> Result<Vec<StoreId>, StoreError> {
        let now = crate::session::now_ms();
        let index = self.user_key(&record.openid);
        let mine = id.to_string();
        let key_member = if newest_key {
            format!("{KEY_MEMBER}{}", record.session_key.expose())
        } else {
            String::new()
        };
        let listed: Vec<String> = self
            .run(
                RESERVE
                    .key(&index)
                    .key(self.ending_key(&record.openid))
                    .arg(&mine)
                    .arg(record.expires_at_ms)
                    .arg(now)
                    .arg(max_per_user)
                    .arg(key_member)
                    .arg(record.expires_at_ms),
            )
            .await?;
        let mut ended: Vec<StoreId> = listed.iter().filter_map(|m| parse_id(m)).collect();
        let mut set = redis::cmd("SET");
        set.arg(self.session_key(id))
            .arg(record.encode())
            .arg("PXAT")
            .arg(record.ends_at_ms())
            .arg("NX");
        let mut check = redis::cmd("ZSCORE");
        check.arg(&index).arg(&mine);
        let mut phases = vec![vec![set], vec![check]];
        if !ended.is_empty() {
            phases.extend(self.ending_phases(&record.openid, &ended));
        }
        let replies = self
            .phases(&phases)
            .await
            .map_err(|e| err(e).with_ended(ended.clone()))?;
        if replies.first() == Some(&redis::Value::Nil) {
            return Err(StoreError::new("session id already exists").with_ended(ended));
        }
        if replies.get(1) == Some(&redis::Value::Nil) {
            // A revoke (or a newer single-session login) took this session
            // out of the index, maybe before it was written, so its delete
            // may have missed it: end it here. Nobody holds its token yet,
            // so there is nothing to announce.
            let key = self.session_key(id);
            let _: i64 = on_conn!(self.conn, |c| c.del(&key).await)
                .map_err(|e| err(e).with_ended(ended.clone()))?;
            ended.push(id);
        }
        Ok(ended)
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

fn join_ids(ids: &[StoreId]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl SessionStore for RedisStore {
    /// Indexed like a login's session, without a cap and leaving the
    /// newest `session_key` alone.
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let ended = self.create_indexed(id, record, 0, false).await?;
            if ended.contains(&id) {
                return Err(StoreError::new("the session was revoked as it was created"));
            }
            Ok(())
        })
    }

    /// Two round trips on one server: the `RESERVE` script, then one
    /// pipeline that writes the session, checks it is still indexed (a
    /// revoke that moved it out first is then seen, and the session ended
    /// here), deletes and announces the sessions the cap ended, and clears
    /// them from `ending`.
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        Box::pin(self.create_indexed(id, record, max_per_user.max(1), true))
    }

    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        Box::pin(async move {
            let key = self.session_key(id);
            let bytes: Option<Vec<u8>> = on_conn!(self.conn, |c| c.get(&key).await).map_err(err)?;
            bytes.map(|b| SessionRecord::decode(&b)).transpose()
        })
    }

    /// `GETDEL`, `PUBLISH` (also when nothing was left to delete: a retry
    /// announces again), then the index entry goes (best effort: an entry
    /// left behind only waits for its end).
    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let key = self.session_key(id);
            let mut getdel = redis::cmd("GETDEL");
            getdel.arg(&key);
            let bytes: Option<Vec<u8>> =
                on_conn!(self.conn, |c| getdel.query_async(&mut c).await).map_err(err)?;
            self.publish(id.to_string()).await?;
            if let Some(openid) = bytes.as_deref().and_then(openid_of) {
                let index = self.user_key(openid);
                let unindexed: Result<i64, _> =
                    on_conn!(self.conn, |c| c.zrem(&index, id.to_string()).await);
                if let Err(e) = unindexed {
                    tracing::debug!(error = %e, "wxlogin: a logged-out session stays indexed until its end");
                }
            }
            Ok(bytes.is_some())
        })
    }

    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let done: i64 = self
                .run(
                    TOUCH
                        .key(self.session_key(id))
                        .arg(IDLE_OFFSET)
                        .arg(&idle_expires_at_ms.to_be_bytes()[..])
                        .arg(idle_expires_at_ms),
                )
                .await?;
            Ok(done == 1)
        })
    }

    /// Three round trips on one server, however many sessions: the `LIST`
    /// script, one pipeline of every `DEL` and the `PUBLISH`, and the `ZREM`
    /// that clears `ending` (in the same pipeline, after the `PUBLISH`).
    /// Returns the ids this call deleted; announces every id it listed.
    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        let openid = openid.to_owned();
        Box::pin(async move {
            let listed: Vec<String> = self
                .run(
                    LIST.key(self.user_key(&openid))
                        .key(self.ending_key(&openid)),
                )
                .await?;
            let ids: Vec<StoreId> = listed.iter().filter_map(|m| parse_id(m)).collect();
            if ids.is_empty() {
                return Ok(ids);
            }
            let replies = self
                .phases(&self.ending_phases(&openid, &ids))
                .await
                .map_err(|e| err(e).with_ended(ids.clone()))?;
            // The index may still have listed sessions already logged out
            // or ended: return only those this call deleted.
            Ok(ids
                .iter()
                .zip(&replies)
                .filter(|(_, r)| **r == redis::Value::Int(1))
                .map(|(id, _)| *id)
                .collect())
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
            let _: i64 = self
                .run(
                    PUT_KEY
                        .key(&index)
                        .arg(format!("{KEY_MEMBER}{}", session_key.expose()))
                        .arg(until_ms),
                )
                .await?;
            Ok(())
        })
    }

    fn latest_session_key(&self, openid: &str) -> StoreFuture<'_, Option<Secret>> {
        let index = self.user_key(openid);
        Box::pin(async move {
            let found: Vec<String> = self.run(&GET_KEY.key(&index)).await?;
            let now = crate::session::now_ms();
            Ok(match found.as_slice() {
                [member, score] => {
                    let until = score.parse::<f64>().map_or(0.0, |s| -s);
                    member
                        .strip_prefix(KEY_MEMBER)
                        .filter(|_| until > now as f64)
                        .map(Secret::new)
                }
                _ => None,
            })
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
        let cluster = match &self.conn {
            Conn::Cluster(c) => Some(c.clone()),
            Conn::Single(_) => None,
        };
        rt.spawn(subscribe(
            self.subscribe_to.clone(),
            cluster,
            self.channel(),
            sink,
        ));
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

/// Why a subscription stopped delivering.
enum Ended {
    /// Nobody listens any more (the `WxLogin` is gone).
    Unwanted,
    /// The connection closed or stopped answering.
    Lost(String),
}

/// Delivers invalidation messages until nobody listens, subscribing again
/// after any loss (on a cluster, on another node each time).
///
/// While it is down the cache is kept: cached sessions serve within their
/// cache TTL, which bounds how long a revocation can go unheard, and an
/// outage does not turn every cached session into a store lookup that fails
/// with it. Once subscribed again, the cache is dropped, since messages
/// sent meanwhile are lost: a reload is one `GET` per active session,
/// against a Redis that is back.
async fn subscribe(
    seeds: Arc<[redis::ConnectionInfo]>,
    cluster: Option<ClusterConnection>,
    channel: String,
    sink: InvalidationSink,
) {
    let mut nodes: Vec<redis::ConnectionInfo> = seeds.to_vec();
    let mut next = 0usize;
    let mut backoff = Duration::from_millis(50);
    // Whether messages may have been missed since the last subscription.
    let mut missed = false;
    loop {
        // Stop once the WxLogin is gone.
        if !sink(Invalidation::Sessions(Vec::new())) {
            return;
        }
        let node = nodes[next % nodes.len()].clone();
        let attempt = async {
            let mut pubsub = redis::Client::open(node)?.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(50);
                if missed {
                    tracing::info!(
                        "wxlogin: invalidation subscription restored; dropping the cached sessions (messages may have been missed)"
                    );
                    if !sink(Invalidation::All) {
                        return;
                    }
                } else {
                    tracing::debug!(channel = %channel, "wxlogin: subscribed to invalidations");
                }
                missed = true;
                match listen(pubsub, &sink).await {
                    Ended::Unwanted => return,
                    Ended::Lost(why) => tracing::warn!(
                        reason = %why,
                        "wxlogin: invalidation subscription lost; cached sessions keep serving until it is back"
                    ),
                }
            }
            Ok(Err(e)) => {
                missed = true;
                tracing::warn!(error = %e, "wxlogin: cannot subscribe to invalidations");
            }
            Err(_) => {
                missed = true;
                tracing::warn!("wxlogin: subscribing to invalidations timed out");
            }
        }
        // The next node: its own may be the one that is gone.
        next = next.wrapping_add(1);
        if let Some(c) = &cluster {
            if let Some(found) = cluster_nodes(c, &seeds).await {
                nodes = found;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Delivers messages until the connection is lost or nobody listens. After
/// [`PING_AFTER`] of silence it sends a PING: a connection that stays open
/// but no longer answers (a peer gone without a reset, a stalled proxy)
/// would otherwise look like a quiet channel forever.
async fn listen(pubsub: redis::aio::PubSub, sink: &InvalidationSink) -> Ended {
    let (mut control, mut messages) = pubsub.split();
    loop {
        match tokio::time::timeout(PING_AFTER, messages.next()).await {
            Ok(Some(msg)) => {
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                let inv = if payload == "*" {
                    Invalidation::All
                } else {
                    Invalidation::Sessions(payload.split(',').filter_map(parse_id).collect())
                };
                if !sink(inv) {
                    return Ended::Unwanted;
                }
            }
            Ok(None) => return Ended::Lost("connection closed".to_owned()),
            Err(_) => {
                if !sink(Invalidation::Sessions(Vec::new())) {
                    return Ended::Unwanted;
                }
                match tokio::time::timeout(PING_TIMEOUT, control.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Ended::Lost(format!("PING failed: {e}")),
                    Err(_) => {
                        return Ended::Lost(format!("no answer to PING within {PING_TIMEOUT:?}"))
                    }
                }
            }
        }
    }
}

/// The cluster's nodes, for the subscriber: the seeds first, then every
/// other node `CLUSTER SLOTS` names (reached like the seeds: same
/// credentials and TLS). `None` when the cluster cannot be asked.
async fn cluster_nodes(
    conn: &ClusterConnection,
    seeds: &[redis::ConnectionInfo],
) -> Option<Vec<redis::ConnectionInfo>> {
    let mut c = conn.clone();
    let reply: redis::Value = tokio::time::timeout(
        CONNECT_TIMEOUT,
        redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c),
    )
    .await
    .ok()?
    .ok()?;
    let template = seeds.first()?;
    let mut nodes = seeds.to_vec();
    let mut found: Vec<(String, u16)> = Vec::new();
    if let redis::Value::Array(ranges) = reply {
        for range in ranges {
            let redis::Value::Array(items) = range else {
                continue;
            };
            for node in items.iter().skip(2) {
                let redis::Value::Array(parts) = node else {
                    continue;
                };
                if let (Some(redis::Value::BulkString(host)), Some(redis::Value::Int(port))) =
                    (parts.first(), parts.get(1))
                {
                    let host = String::from_utf8_lossy(host).into_owned();
                    if let (false, Ok(port)) = (host.is_empty(), u16::try_from(*port)) {
                        found.push((host, port));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    for (host, port) in found {
        let addr = match &template.addr {
            redis::ConnectionAddr::Tcp(..) => redis::ConnectionAddr::Tcp(host, port),
            redis::ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => continue,
        };
        if nodes.iter().all(|n| n.addr != addr) {
            nodes.push(redis::ConnectionInfo {
                addr,
                redis: template.redis.clone(),
            });
        }
    }
    Some(nodes)
}
