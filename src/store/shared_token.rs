//! Sharing the WeChat access token between instances through the store.

use std::fmt;
use std::time::Duration;

use super::StoreFuture;
use crate::Secret;

/// An access token as instances share it: the token and when it was
/// obtained and ends (milliseconds since the Unix epoch).
///
/// `Debug` redacts the token.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedAccessToken {
    /// The access token. A secret: never log it.
    pub token: Secret,
    /// When WeChat issued it (by the obtaining instance's clock).
    pub obtained_at_ms: u64,
    /// When WeChat says it ends.
    pub expires_at_ms: u64,
}

impl fmt::Debug for SharedAccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAccessToken")
            .field("token", &self.token)
            .field("obtained_at_ms", &self.obtained_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A place where instances share one WeChat access token per app id, so
/// that they fetch it once between them instead of once each.
///
/// A [`SessionStore`](super::SessionStore) offers one through
/// [`SessionStore::access_token_cache`](super::SessionStore::access_token_cache);
/// [`RedisStore`] does (feature `redis`). The refreshing instance takes a
/// lock with an expiry ([`try_lock`](Self::try_lock)), fetches the token,
/// [`put`](Self::put)s it and unlocks; the others poll [`get`](Self::get)
/// until it appears (or the lock expires, and they fetch themselves).
///
/// Every method gets the app id, so one store can serve several mini programs.
///
#[cfg_attr(feature = "redis", doc = "[`RedisStore`]: super::RedisStore")]
#[cfg_attr(
    not(feature = "redis"),
    doc = "[`RedisStore`]: https://docs.rs/wxlogin/latest/wxlogin/store/struct.RedisStore.html"
)]
pub trait AccessTokenCache: Send + Sync {
    /// The shared token, if any (an ended one may be returned; the caller checks).
    fn get<'a>(&'a self, app_id: &'a str) -> StoreFuture<'a, Option<SharedAccessToken>>;

    /// Shares a token; it should disappear by itself at `expires_at_ms`.
    fn put<'a>(&'a self, app_id: &'a str, token: &'a SharedAccessToken) -> StoreFuture<'a, ()>;

    /// Removes the shared token if it is still `token` (WeChat rejected it);
    /// a newer one stays.
    fn discard<'a>(&'a self, app_id: &'a str, token: &'a str) -> StoreFuture<'a, ()>;

    /// Takes the refresh lock for `ttl` on behalf of `owner` (a random
    /// string); `false` if another owner holds it.
    fn try_lock<'a>(
        &'a self,
        app_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Releases the refresh lock if `owner` still holds it.
    fn unlock<'a>(&'a self, app_id: &'a str, owner: &'a str) -> StoreFuture<'a, ()>;
}
