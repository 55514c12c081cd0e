//! The access token for WeChat's server APIs: `getStableAccessToken`
//! (`POST /cgi-bin/stable_token`, normal mode), cached until a safety
//! margin before it ends, refreshed by one caller at a time, and shared
//! between instances through the store when the store can
//! ([`AccessTokenCache`]).
//!
//! Normal mode never invalidates a token another instance holds (only
//! `force_refresh` does), so instances that cannot share still work; sharing
//! just saves the calls. Login never touches any of this.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use serde::Deserialize;

use super::reply::parse_reply;
use super::{AttemptError, WeChatClient, WeChatError};
use crate::clock::now_ms;
use crate::store::{AccessTokenCache, SessionStore, SharedAccessToken};
use crate::Secret;

/// The most a token is refreshed before it ends: WeChat hands out a new
/// one in the last five minutes, and keeps the old one valid meanwhile.
const MAX_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The lifetime assumed when WeChat's reply gives none: the shortest it
/// promises (`expires_in >= 300`).
const FALLBACK_LIFETIME_SECS: u64 = 300;

/// The longest lifetime believed: WeChat documents `expires_in` as "currently
/// within 7200 seconds". A larger value (a hostile or broken upstream, up to
/// `u64::MAX`) is clamped, so no arithmetic on it overflows and a token is
/// at worst refreshed early.
const MAX_LIFETIME_SECS: u64 = 7200;

/// How often an instance waiting for another one's refresh looks for the
/// shared token.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long a failed refresh is remembered: callers that queued behind it
/// get its error instead of trying again at once, one after the other.
const FAILURE_MEMORY: Duration = Duration::from_millis(500);

/// An access token this instance uses.
#[derive(Clone)]
pub(crate) struct AccessToken {
    /// The token. A secret: never logged.
    pub(crate) value: Secret,
    /// When to fetch a new one (ms since the epoch).
    refresh_at_ms: u64,
    /// When WeChat stops taking it; until then it stands in if a refresh fails.
    expires_at_ms: u64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &self.value)
            .field("refresh_at_ms", &self.refresh_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

impl AccessToken {
    fn from_shared(shared: &SharedAccessToken) -> Self {
        let lifetime = shared.expires_at_ms.saturating_sub(shared.obtained_at_ms);
        let margin = (MAX_MARGIN.as_millis() as u64).min(lifetime / 2);
        AccessToken {
            value: shared.token.clone(),
            refresh_at_ms: shared.expires_at_ms.saturating_sub(margin),
            expires_at_ms: shared.expires_at_ms,
        }
    }

    fn is_fresh_at(&self, now_ms: u64) -> bool {
        now_ms < self.refresh_at_ms
    }
}

/// A refresh that failed, for the callers queued behind it.
struct Failure {
    attempt: u64,
    at_ms: u64,
    error: WeChatError,
}

/// Caches one app's access token and refreshes it, one refresh at a time.
pub(crate) struct AccessTokenManager {
    client: WeChatClient,
    app_id: String,
    secret: Secret,
    store: Arc<dyn SessionStore>,
    current: RwLock<Option<Arc<AccessToken>>>,
    /// Held by the one caller refreshing; the failure of the last attempt.
    refresh: tokio::sync::Mutex<Option<Failure>>,
    /// Refresh attempts started, to tell a waiter that one ran meanwhile.
    attempts: AtomicU64,
    /// How long the cross-instance refresh lock lasts (a fetch's deadline and then some).
    lock_ttl: Duration,
    /// Limit on one call to the shared cache.
    store_timeout: Duration,
}

impl fmt::Debug for AccessTokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenManager")
            .field("app_id", &self.app_id)
            .field("secret", &self.secret)
            .field("current", &self.cached())
            .finish_non_exhaustive()
    }
}

impl AccessTokenManager {
    pub(crate) fn new(
        client: WeChatClient,
        app_id: String,
        secret: Secret,
        store: Arc<dyn SessionStore>,
        store_timeout: Duration,
    ) -> Self {
        let lock_ttl = client.cfg.deadline + Duration::from_secs(2);
        AccessTokenManager {
            client,
            app_id,
            secret,
            store,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            attempts: AtomicU64::new(0),
            lock_ttl,
            store_timeout,
        }
    }

    fn cached(&self) -> Option<Arc<AccessToken>> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn fresh(&self) -> Option<Arc<AccessToken>> {
        self.cached().filter(|t| t.is_fresh_at(now_ms()))
    }

    fn install(&self, token: AccessToken) -> Arc<AccessToken> {
        let token = Arc::new(token);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(token.clone());
        token
    }

    /// A token that is not due for refresh, fetching one if needed. Of many
    /// concurrent callers, one fetches and the others wait for its result.
    /// If the refresh fails while the old token has not ended yet (the
    /// margin is there for this), the old one is used meanwhile.
    pub(crate) async fn get(&self) -> Result<Arc<AccessToken>, WeChatError> {
        match self.get_fresh().await {
            Ok(token) => Ok(token),
            Err(error) => match self.cached().filter(|t| now_ms() < t.expires_at_ms) {
                Some(token) => Ok(token),
                None => Err(error),
            },
        }
    }

    async fn get_fresh(&self) -> Result<Arc<AccessToken>, WeChatError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last_failure = self.refresh.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        if let Some(failure) = last_failure.as_ref() {
            // A refresh ran while this caller waited, and failed: share its fate.
            if failure.attempt > seen
                && now_ms() < failure.at_ms + FAILURE_MEMORY.as_millis() as u64
            {
                return Err(clone_error(&failure.error));
            }
        }
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        let result = match self.store.access_token_cache() {
            Some(cache) => self.refresh_shared(cache).await,
            None => self.fetch().await.map(|s| AccessToken::from_shared(&s)),
        };
        match result {
            Ok(token) => {
                *last_failure = None;
                Ok(self.install(token))
            }
            Err(error) => {
                tracing::warn!(%error, "wxlogin: access token refresh failed");
                *last_failure = Some(Failure {
                    attempt,
                    at_ms: now_ms(),
                    error: clone_error(&error),
                });
                Err(error)
            }
        }
    }

    /// Drops `used` after WeChat rejected it (40001, 40014, 42001), unless a
    /// newer token replaced it meanwhile; the shared copy goes too.
    pub(crate) async fn invalidate(&self, used: &AccessToken) {
        {
            let mut current = self
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if current
                .as_ref()
                .is_some_and(|t| t.value.expose() == used.value.expose())
            {
                *current = None;
            }
        }
        if let Some(cache) = self.store.access_token_cache() {
            match self
                .timed(cache.discard(&self.app_id, used.value.expose()))
                .await
            {
                Ok(()) => {}
                Err(reason) => {
                    tracing::warn!(%reason, "wxlogin: dropping the shared access token failed")
                }
            }
        }
    }

    /// Refreshes through the shared cache: take a token another instance
    /// shared, or take the lock and fetch, or wait for the holder's token.
    /// Trouble with the store falls back to fetching directly (normal mode
    /// does not disturb the other instances).
    async fn refresh_shared(
        &self,
        cache: &dyn AccessTokenCache,
    ) -> Result<AccessToken, WeChatError> {
        let owner = lock_owner();
        let give_up_at = now_ms() + self.lock_ttl.as_millis() as u64 + 1_000;
        loop {
            match self.shared_fresh(cache).await {
                Ok(Some(token)) => return Ok(token),
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(%reason, "wxlogin: shared access token unreadable; fetching directly");
                    return self.fetch().await.map(|s| AccessToken::from_shared(&s));
                }
            }
            let locked = match self
                .timed(cache.try_lock(&self.app_id, &owner, self.lock_ttl))
                .await
            {
                Ok(locked) => locked,
                Err(reason) => {
                    tracing::warn!(%reason, "wxlogin: access token lock unavailable; fetching directly");
                    return self.fetch().await.map(|s| AccessToken::from_shared(&s));
                }
            };
            if locked {
                return self.refresh_locked(cache, &owner).await;
            }
            if now_ms() >= give_up_at {
                tracing::warn!("wxlogin: the instance refreshing the access token did not finish; fetching directly");
                return self.fetch().await.map(|s| AccessToken::from_shared(&s));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Holding the lock: fetch, share, unlock.
    async fn refresh_locked(
        &self,
        cache: &dyn AccessTokenCache,
        owner: &str,
    ) -> Result<AccessToken, WeChatError> {
        // Another instance may have shared one between our look and our lock.
        let result = match self.shared_fresh(cache).await {
            Ok(Some(token)) => Ok(token),
            _ => match self.fetch().await {
                Ok(shared) => {
                    if let Err(reason) = self.timed(cache.put(&self.app_id, &shared)).await {
                        tracing::warn!(%reason, "wxlogin: sharing the access token failed");
                    }
                    Ok(AccessToken::from_shared(&shared))
                }
                Err(error) => Err(error),
            },
        };
        if let Err(reason) = self.timed(cache.unlock(&self.app_id, owner)).await {
            tracing::warn!(%reason, "wxlogin: releasing the access token lock failed (it expires by itself)");
        }
        result
    }

    /// The shared token, if it is not due for refresh.
    async fn shared_fresh(
        &self,
        cache: &dyn AccessTokenCache,
    ) -> Result<Option<AccessToken>, String> {
        let shared = self.timed(cache.get(&self.app_id)).await?;
        Ok(shared
            .map(|s| AccessToken::from_shared(&s))
            .filter(|t| t.is_fresh_at(now_ms())))
    }

    /// A store call bounded by the store timeout; errors as log text.
    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Result<T, String> {
        crate::store::timed(self.store_timeout, fut).await
    }

    /// One `stable_token` call (normal mode).
    async fn fetch(&self) -> Result<SharedAccessToken, WeChatError> {
        let result = self.client.stable_token(&self.app_id, &self.secret).await;
        match &result {
            Ok(token) => tracing::info!(
                expires_in_s = token.expires_at_ms.saturating_sub(token.obtained_at_ms) / 1000,
                "wxlogin: access token fetched"
            ),
            Err(WeChatError::Misconfigured { errcode, errmsg }) => tracing::warn!(
                errcode,
                errmsg,
                "wxlogin: stable_token refused: check the appid and secret"
            ),
            Err(_) => {}
        }
        result
    }
}

/// A random owner name for the cross-instance lock.
fn lock_owner() -> String {
    let mut bytes = [0u8; 12];
    // Without randomness the time still tells instances apart well enough.
    if getrandom::getrandom(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&now_ms().to_le_bytes());
    }
    crate::token::hex(&bytes)
}

/// [`WeChatError`] is not `Clone` (its callers never needed it); this is.
fn clone_error(error: &WeChatError) -> WeChatError {
    match error {
        WeChatError::InvalidCode { errcode } => WeChatError::InvalidCode { errcode: *errcode },
        WeChatError::RateLimited { retry_after } => WeChatError::RateLimited {
            retry_after: *retry_after,
        },
        WeChatError::UserRestricted => WeChatError::UserRestricted,
        WeChatError::Unavailable { reason } => WeChatError::Unavailable {
            reason: reason.clone(),
        },
        WeChatError::Misconfigured { errcode, errmsg } => WeChatError::Misconfigured {
            errcode: *errcode,
            errmsg: errmsg.clone(),
        },
    }
}

/// The request body of `stable_token`. No `Debug`: it holds the secret.
#[derive(serde::Serialize)]
struct StableTokenRequest<'a> {
    grant_type: &'static str,
    appid: &'a str,
    secret: &'a str,
    force_refresh: bool,
}

/// The success reply. No `Debug`: it holds the token.
#[derive(Deserialize)]
struct StableTokenReply {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl WeChatClient {
    /// `POST /cgi-bin/stable_token` in normal mode (`force_refresh: false`):
    /// the app's current token, or a new one in its last five minutes.
    pub(crate) async fn stable_token(
        &self,
        app_id: &str,
        secret: &Secret,
    ) -> Result<SharedAccessToken, WeChatError> {
        let url = self.endpoint("/cgi-bin/stable_token", &[])?;
        // This body holds the secret: it is never logged nor put in an error.
        let body = Bytes::from(
            serde_json::to_vec(&StableTokenRequest {
                grant_type: "client_credential",
                appid: app_id,
                secret: secret.expose(),
                force_refresh: false,
            })
            .map_err(|_| WeChatError::Unavailable {
                reason: "cannot encode the stable_token request".to_owned(),
            })?,
        );
        let sent_at_ms = now_ms();
        let (token, expires_in) = self
            .call(
                "stable_token",
                &[secret.expose()],
                |http| {
                    http.post(url.clone())
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone())
                },
                parse_stable_token,
            )
            .await?;
        // Counted from the request, so the token never outlives WeChat's view of it.
        Ok(SharedAccessToken {
            token,
            obtained_at_ms: sent_at_ms,
            expires_at_ms: sent_at_ms.saturating_add(expires_in.saturating_mul(1000)),
        })
    }
}

fn parse_stable_token(body: &[u8]) -> Result<(Secret, u64), AttemptError> {
    let reply: StableTokenReply = parse_reply(body)?;
    match reply.access_token {
        Some(token) if !token.is_empty() => Ok((
            Secret::new(token),
            reply
                .expires_in
                .filter(|&s| s > 0)
                .unwrap_or(FALLBACK_LIFETIME_SECS)
                .min(MAX_LIFETIME_SECS),
        )),
        _ => Err(AttemptError::transient(
            "stable_token success reply without access_token",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_five_minutes_or_half_the_lifetime() {
        let t = |obtained, expires| {
            AccessToken::from_shared(&SharedAccessToken {
                token: Secret::new("t"),
                obtained_at_ms: obtained,
                expires_at_ms: expires,
            })
            .refresh_at_ms
        };
        assert_eq!(t(0, 7_200_000), 6_900_000);
        assert_eq!(t(1_000, 3_000), 2_000);
        assert_eq!(t(0, 345_000), 172_500);
    }

    #[test]
    fn replies_parse_and_errors_map() {
        let (token, secs) = parse_stable_token(br#"{"access_token":"AT","expires_in":7200}"#)
            .ok()
            .unwrap();
        assert_eq!((token.expose(), secs), ("AT", 7200));
        let (_, secs) = parse_stable_token(br#"{"access_token":"AT"}"#)
            .ok()
            .unwrap();
        assert_eq!(secs, FALLBACK_LIFETIME_SECS);
        let (_, secs) =
            parse_stable_token(br#"{"access_token":"AT","expires_in":18446744073709551615}"#)
                .ok()
                .unwrap();
        assert_eq!(secs, MAX_LIFETIME_SECS);
        let err = parse_stable_token(br#"{"errcode":40125,"errmsg":"invalid appsecret"}"#)
            .err()
            .unwrap();
        assert!(!err.retry);
        assert!(matches!(
            err.error,
            WeChatError::Misconfigured { errcode: 40125, .. }
        ));
        assert!(
            parse_stable_token(br#"{"errcode":-1}"#)
                .err()
                .unwrap()
                .retry
        );
        assert!(
            parse_stable_token(br#"{"expires_in":7200}"#)
                .err()
                .unwrap()
                .retry
        );
        let debug = format!(
            "{:?}",
            AccessToken {
                value: Secret::new("AT-secret-value"),
                refresh_at_ms: 1,
                expires_at_ms: 2,
            }
        );
        assert!(!debug.contains("AT-secret-value"), "{debug}");
    }
}
