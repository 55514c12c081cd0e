//! The WeChat access token shared between instances through Redis.

use std::time::Duration;

use redis::{AsyncCommands as _, Script};

use crate::store::{AccessTokenCache, SharedAccessToken, StoreError, StoreFuture};
use crate::Secret;

use super::scripts::{DISCARD_TOKEN, UNLOCK};
use super::{err, Conn, RedisStore};

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

    /// Runs a compare-and-delete script (one key, one argument): the
    /// discard of a stale token and the release of the refresh lock.
    async fn delete_if(&self, script: &Script, key: String, arg: &str) -> Result<(), StoreError> {
        let _: i64 = on_conn!(self.conn, |c| script
            .key(&key)
            .arg(arg)
            .invoke_async(&mut c)
            .await)
        .map_err(err)?;
        Ok(())
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
            if token.expires_at_ms <= crate::clock::now_ms() {
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
        Box::pin(self.delete_if(&DISCARD_TOKEN, self.access_token_key(app_id), token))
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
        Box::pin(self.delete_if(&UNLOCK, self.access_token_lock_key(app_id), owner))
    }
}
