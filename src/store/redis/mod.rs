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

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands as _, IntoConnectionInfo as _};

use super::codec::{openid_of, IDLE_OFFSET};
use super::{
    AccessTokenCache, InvalidationSink, SessionRecord, SessionStore, StoreError, StoreFuture,
    StoreId,
};
use crate::Secret;

/// The `redis` client crate, re-exported for apps that need to name its types.
pub use ::redis as client;

/// Runs one command or script on either kind of connection.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn.clone() {
            Conn::Single(mut $c) => $body,
            Conn::Cluster(mut $c) => $body,
        }
    };
}

mod access_token;
mod scripts;
mod subscriber;

use scripts::{GET_KEY, KEY_MEMBER, LIST, PUT_KEY, REPLACE, RESERVE, SESSIONS, TOUCH};
use subscriber::{parse_id, subscribe};

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
pub(super) enum Conn {
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

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the subscription may be silent before a PING checks it.
pub(super) const PING_AFTER: Duration = Duration::from_secs(1);
/// How long that PING may take before the subscription counts as lost.
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn err(e: redis::RedisError) -> StoreError {
    // Redis errors carry no secrets (no URL password, no values); keep the kind and text.
    StoreError::new(format_args!("redis: {e}"))
}

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
        let now = crate::clock::now_ms();
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

/// How often a data change is tried against concurrent idle extensions.
const REPLACE_ATTEMPTS: usize = 8;

/// The prefix of a message announcing changed (not ended) sessions.
pub(super) const CHANGED: &str = "c:";

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

    /// `GET`, then a compare-and-set script that keeps the key's expiry and
    /// the idle deadline as it is then (tried again only when another data
    /// change came between), then `PUBLISH c:<id>` so that the other
    /// instances load it anew.
    fn replace_data(&self, id: StoreId, data: Vec<u8>) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let key = self.session_key(id);
            for _ in 0..REPLACE_ATTEMPTS {
                let bytes: Option<Vec<u8>> =
                    on_conn!(self.conn, |c| c.get(&key).await).map_err(err)?;
                let Some(bytes) = bytes else {
                    return Ok(false);
                };
                let mut record = SessionRecord::decode(&bytes)?;
                if record.is_expired_at(crate::clock::now_ms()) {
                    return Ok(false);
                }
                record.data = data.clone();
                let replaced: i64 = self
                    .run(
                        REPLACE
                            .key(&key)
                            .arg(&bytes)
                            .arg(record.encode())
                            .arg(IDLE_OFFSET),
                    )
                    .await?;
                if replaced == 1 {
                    // Changed: an unsent announcement leaves the other
                    // instances' copies to their cache TTL, not a failure.
                    if let Err(e) = self.publish(format!("{CHANGED}{id}")).await {
                        tracing::warn!(error = %e, "wxlogin: announcing a data change failed; other instances see it within their cache TTL");
                    }
                    return Ok(true);
                }
            }
            Err(StoreError::new(
                "the session changed under every attempt to replace its data",
            ))
        })
    }

    /// The live members of the user's index (`ZRANGEBYSCORE` from now, in
    /// a script that first converts an index of the previous layout).
    fn user_sessions(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        let index = self.user_key(openid);
        Box::pin(async move {
            let now = crate::clock::now_ms();
            let members: Vec<String> = self.run(SESSIONS.key(&index).arg(now)).await?;
            Ok(members.iter().filter_map(|m| parse_id(m)).collect())
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
            let now = crate::clock::now_ms();
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
