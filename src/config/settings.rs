//! The builder's settings (everything but the login hook) with their
//! defaults, and the steps of [`WxLoginBuilder::build`](super::WxLoginBuilder::build)
//! that check them and make the engine's parts.

use std::sync::Arc;
use std::time::Duration;

use super::DEFAULT_API_BASE;
use crate::engine::App;
use crate::error::{BuildError, Renderer};
use crate::limit::{ClientKeyFn, ClientLimits, LoginLimiter};
use crate::session::MAX_APPS;
use crate::store::SessionStore;
use crate::token::{key_is_strong, TokenKeys, TokenSource, WEAK_KEY};
use crate::wechat::{parse_api_base, ClientConfig, WeChatClient};
use crate::Secret;

/// Code exchanges per second one client may start by default (and as many
/// at once): twice the ten a second that many users behind one carrier NAT
/// may need.
const DEFAULT_CLIENT_RATE: u32 = 20;

/// Code exchanges one client may have in flight by default.
const DEFAULT_CLIENT_CONCURRENCY: usize = 16;

/// The default of [`WxLoginBuilder::max_sessions_per_user`](super::WxLoginBuilder::max_sessions_per_user).
const DEFAULT_MAX_SESSIONS_PER_USER: usize = 20;

/// Every setting of the builder but the login hook. Not generic, so that
/// [`WxLoginBuilder::on_login`](super::WxLoginBuilder::on_login) moves it whole to a builder of another type.
pub(super) struct Settings {
    pub(super) app_id: Option<String>,
    pub(super) app_secret: Option<Secret>,
    pub(super) more_apps: Vec<(String, Secret)>,
    pub(super) api_base: String,
    pub(super) token_source: TokenSource,
    pub(super) session_ttl: Duration,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) cache_capacity: u64,
    pub(super) cache_ttl: Duration,
    pub(super) token_keys: Vec<Secret>,
    pub(super) store: Option<Arc<dyn SessionStore>>,
    pub(super) store_timeout: Duration,
    pub(super) renderer: Option<Renderer>,
    pub(super) body_limit: usize,
    pub(super) wechat_connect_timeout: Duration,
    pub(super) wechat_request_timeout: Duration,
    pub(super) wechat_deadline: Duration,
    pub(super) wechat_attempts: u32,
    pub(super) single_session: bool,
    pub(super) record_devices: bool,
    pub(super) max_sessions_per_user: usize,
    pub(super) login_concurrency: usize,
    pub(super) login_rate: u32,
    pub(super) login_client_rate: u32,
    pub(super) login_client_concurrency: usize,
    pub(super) client_key: Option<ClientKeyFn>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            app_id: None,
            app_secret: None,
            more_apps: Vec::new(),
            api_base: DEFAULT_API_BASE.to_owned(),
            token_source: TokenSource::Bearer,
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            idle_timeout: None,
            cache_capacity: 100_000,
            cache_ttl: Duration::from_secs(30),
            token_keys: Vec::new(),
            store: None,
            store_timeout: Duration::from_secs(1),
            renderer: None,
            body_limit: 16 * 1024,
            wechat_connect_timeout: Duration::from_secs(2),
            wechat_request_timeout: Duration::from_secs(3),
            wechat_deadline: Duration::from_secs(5),
            wechat_attempts: 3,
            single_session: false,
            record_devices: true,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            login_concurrency: 256,
            login_rate: 500,
            login_client_rate: DEFAULT_CLIENT_RATE,
            login_client_concurrency: DEFAULT_CLIENT_CONCURRENCY,
            client_key: None,
        }
    }
}

fn invalid(field: &'static str, reason: &'static str) -> BuildError {
    BuildError::InvalidValue { field, reason }
}

/// The steps of [`WxLoginBuilder::build`], in the order it checks them.
impl Settings {
    /// Every app served, the default first, each checked.
    pub(super) fn apps(&self) -> Result<Vec<App>, BuildError> {
        let app_id = self
            .app_id
            .clone()
            .filter(|a| !a.trim().is_empty())
            .ok_or(BuildError::MissingAppId)?;
        let secret = self
            .app_secret
            .clone()
            .filter(|s| !s.expose().trim().is_empty())
            .ok_or(BuildError::MissingAppSecret)?;
        let mut apps = vec![App { app_id, secret }];
        for (id, secret) in &self.more_apps {
            if id.trim().is_empty() || id.len() > 64 {
                return Err(invalid("add_app", "the app id must be 1 to 64 characters"));
            }
            if secret.expose().trim().is_empty() {
                return Err(invalid("add_app", "the app secret must not be empty"));
            }
            if apps.iter().any(|a| &a.app_id == id) {
                return Err(invalid("add_app", "an app id is configured twice"));
            }
            if apps.len() == MAX_APPS {
                return Err(invalid(
                    "add_app",
                    "at most 64 apps are served by one login",
                ));
            }
            apps.push(App {
                app_id: id.clone(),
                secret: secret.clone(),
            });
        }
        Ok(apps)
    }

    /// Every other value that cannot work.
    pub(super) fn check(&self) -> Result<(), BuildError> {
        if parse_api_base(&self.api_base).is_none() {
            return Err(invalid(
                "api_base",
                "must be an http:// or https:// URL without a query or fragment",
            ));
        }
        if self.session_ttl.is_zero() {
            return Err(invalid("session_ttl", "must be longer than zero"));
        }
        if self.cache_ttl.is_zero() {
            return Err(invalid("cache_ttl", "must be longer than zero"));
        }
        if self.store_timeout.is_zero() {
            return Err(invalid("store_timeout", "must be longer than zero"));
        }
        if let Some(idle) = self.idle_timeout {
            if idle.is_zero() {
                return Err(invalid("idle_timeout", "must be longer than zero"));
            }
        }
        if self.body_limit < 64 {
            return Err(invalid("body_limit", "must be at least 64 bytes"));
        }
        if self.login_concurrency == 0 {
            return Err(invalid("login_concurrency", "must be at least 1"));
        }
        if self.max_sessions_per_user == 0 {
            return Err(invalid("max_sessions_per_user", "must be at least 1"));
        }
        if self.login_client_concurrency == 0 {
            return Err(invalid("login_client_concurrency", "must be at least 1"));
        }
        if self.wechat_attempts == 0 {
            return Err(invalid("wechat_attempts", "must be at least 1"));
        }
        if self.wechat_connect_timeout.is_zero()
            || self.wechat_request_timeout.is_zero()
            || self.wechat_deadline.is_zero()
        {
            return Err(invalid("wechat_timeouts", "must be longer than zero"));
        }
        if self.token_keys.iter().any(|k| !key_is_strong(k.expose())) {
            return Err(invalid("token_key", WEAK_KEY));
        }
        Ok(())
    }

    /// The token keys: the configured ones, or one made at start for a
    /// store that is not shared between instances.
    pub(super) fn keys(&self, store: &dyn SessionStore) -> Result<Arc<TokenKeys>, BuildError> {
        if store.is_shared() && self.token_keys.is_empty() {
            return Err(BuildError::SharedStoreWithoutKey);
        }
        Ok(Arc::new(if self.token_keys.is_empty() {
            TokenKeys::new(&[TokenKeys::random_key()])
        } else {
            TokenKeys::new(&self.token_keys)
        }))
    }

    /// The HTTP client for WeChat.
    pub(super) fn wechat_client(&self) -> Result<WeChatClient, BuildError> {
        WeChatClient::new(ClientConfig {
            api_base: self.api_base.clone(),
            connect_timeout: self.wechat_connect_timeout,
            request_timeout: self.wechat_request_timeout,
            deadline: self.wechat_deadline,
            max_attempts: self.wechat_attempts,
            max_reply_bytes: 64 * 1024,
        })
        .map_err(|e| BuildError::HttpClient(e.without_url().to_string()))
    }

    /// The idle timeout and its refresh interval, in milliseconds (0: none).
    pub(super) fn idle_ms(&self) -> (Option<u64>, u64) {
        let idle_timeout_ms = self.idle_timeout.map(|d| d.as_millis().max(1) as u64);
        // A session ends between `idle` and `idle + refresh` after its last
        // use, and costs one store write per refresh interval while in use.
        let idle_refresh_ms = idle_timeout_ms
            .map(|ms| (ms / 2).clamp(1, 300_000))
            .unwrap_or(0);
        (idle_timeout_ms, idle_refresh_ms)
    }

    /// The login limits.
    pub(super) fn login_limiter(&self) -> LoginLimiter {
        LoginLimiter::new(
            self.login_concurrency,
            self.login_rate,
            ClientLimits {
                per_second: self.login_client_rate,
                concurrency: self.login_client_concurrency,
            },
        )
    }
}
