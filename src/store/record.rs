//! The session record: what a [`SessionStore`](crate::store::SessionStore)
//! keeps of a session.

use std::fmt;

use crate::Secret;

/// A session as a [`SessionStore`](crate::store::SessionStore) keeps it.
///
/// Times are milliseconds since the Unix epoch. `data` is the app's user
/// data, serialized as JSON by the layer. `Debug` redacts the `session_key`.
///
/// ```
/// use wxlogin::{Secret, SessionRecord};
/// let record = SessionRecord {
///     openid: "o-alice".into(),
///     unionid: None,
///     app_id: "wx1".into(),
///     session_key: Secret::new("tiihtNczf5v6AKRyjwEUhQ=="),
///     data: br#"{"id":7}"#.to_vec(),
///     created_at_ms: 1_700_000_000_000,
///     expires_at_ms: 1_700_604_800_000,
///     idle_expires_at_ms: None,
///     user_agent: None,
///     ip: None,
/// };
/// assert!(!format!("{record:?}").contains("tiihtNczf5v6AKRyjwEUhQ=="));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The user's openid.
    pub openid: String,
    /// The user's unionid, when WeChat gave one.
    pub unionid: Option<String>,
    /// The mini program's app id.
    pub app_id: String,
    /// WeChat's `session_key` for this login. Never leaves the server.
    pub session_key: Secret,
    /// The app's user data, as JSON.
    pub data: Vec<u8>,
    /// When the session was created.
    pub created_at_ms: u64,
    /// When the session ends, whatever the use.
    pub expires_at_ms: u64,
    /// When the session ends if not used before (idle timeout), if one is set.
    pub idle_expires_at_ms: Option<u64>,
    /// The client's `User-Agent` at login (at most 256 bytes), for the
    /// device list.
    pub user_agent: Option<String>,
    /// The client's address at login, for the device list.
    pub ip: Option<std::net::IpAddr>,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("openid", &self.openid)
            .field("unionid", &self.unionid)
            .field("app_id", &self.app_id)
            .field("session_key", &self.session_key)
            .field("data_len", &self.data.len())
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("idle_expires_at_ms", &self.idle_expires_at_ms)
            .field("user_agent", &self.user_agent)
            .field("ip", &self.ip)
            .finish()
    }
}

impl SessionRecord {
    /// The moment the session stops being valid, counting the idle limit.
    ///
    /// ```
    /// use wxlogin::{Secret, SessionRecord};
    /// let record = SessionRecord {
    ///     openid: "o1".into(), unionid: None, app_id: "wx1".into(),
    ///     session_key: Secret::new("k"), data: b"null".to_vec(),
    ///     created_at_ms: 0, expires_at_ms: 10_000, idle_expires_at_ms: Some(4_000), user_agent: None, ip: None,
    /// };
    /// assert_eq!(record.ends_at_ms(), 4_000);
    /// ```
    pub fn ends_at_ms(&self) -> u64 {
        match self.idle_expires_at_ms {
            Some(idle) => idle.min(self.expires_at_ms),
            None => self.expires_at_ms,
        }
    }

    /// Whether the session has ended at `now_ms`.
    ///
    /// ```
    /// use wxlogin::{Secret, SessionRecord};
    /// let record = SessionRecord {
    ///     openid: "o1".into(), unionid: None, app_id: "wx1".into(),
    ///     session_key: Secret::new("k"), data: b"null".to_vec(),
    ///     created_at_ms: 0, expires_at_ms: 10_000, idle_expires_at_ms: None, user_agent: None, ip: None,
    /// };
    /// assert!(!record.is_expired_at(9_999));
    /// assert!(record.is_expired_at(10_000));
    /// ```
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        now_ms >= self.ends_at_ms()
    }
}
