//! WeChat server APIs that take the access token: `checkSessionKey`
//! (`GET /wxa/checksession`) and `getPhoneNumber`
//! (`POST /wxa/business/getuserphonenumber`), with the token manager's
//! replay: on 40001/40014/42001 the token is dropped (if it is still the
//! one used) and the call made once more with a fresh one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};

use super::access_token::{AccessToken, AccessTokenManager};
use super::reply::parse_reply;
use super::{AttemptError, WeChatClient, WeChatError};
use crate::store::SessionStore;
use crate::Secret;

/// The errcodes that say the access token is invalid or expired.
const ACCESS_TOKEN_ERRCODES: [i64; 3] = [40001, 40014, 42001];

/// Why a WeChat API call (checksession, phone number, the access token
/// behind them) failed. Messages never hold the access token, the app
/// secret or a `session_key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeChatApiError {
    /// WeChat says the session's `session_key` is no longer valid (87009):
    /// the user logged in again elsewhere or the key expired. The client
    /// should run `wx.login()` and log in again.
    #[error("session_key no longer valid; log in again (errcode 87009)")]
    SessionKeyInvalid,
    /// The phone-number code is invalid, expired or already used (40029).
    #[error("WeChat rejected the code (errcode {errcode}); get a new one")]
    InvalidCode {
        /// WeChat's errcode.
        errcode: i64,
    },
    /// WeChat's quota is spent (45011).
    #[error("WeChat rate limit reached, retry after {} s", retry_after.as_secs())]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// WeChat did not give a usable answer: busy after retries, a timeout,
    /// a network error, an unparseable reply.
    #[error("WeChat unavailable: {reason}")]
    Unavailable {
        /// What went wrong (no URL, no secret).
        reason: String,
    },
    /// WeChat refused the call with another errcode: wrong appid or secret
    /// for the access token, an access token still rejected after one
    /// refresh, a missing permission, ...
    #[error("WeChat refused the call (errcode {errcode}: {errmsg})")]
    Refused {
        /// WeChat's errcode.
        errcode: i64,
        /// WeChat's errmsg (at most 200 characters).
        errmsg: String,
    },
}

impl WeChatApiError {
    /// Whether the client should log in again (`wx.login()`): true for
    /// [`WeChatApiError::SessionKeyInvalid`].
    pub fn relogin(&self) -> bool {
        matches!(self, WeChatApiError::SessionKeyInvalid)
    }

    /// WeChat's errcode, when the failure is one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WeChatApiError::SessionKeyInvalid => Some(87009),
            WeChatApiError::InvalidCode { errcode } | WeChatApiError::Refused { errcode, .. } => {
                Some(*errcode)
            }
            WeChatApiError::RateLimited { .. } => Some(45011),
            WeChatApiError::Unavailable { .. } => None,
        }
    }
}

impl From<WeChatError> for WeChatApiError {
    fn from(error: WeChatError) -> Self {
        match error {
            WeChatError::InvalidCode { errcode } => WeChatApiError::InvalidCode { errcode },
            WeChatError::RateLimited { retry_after } => WeChatApiError::RateLimited { retry_after },
            WeChatError::UserRestricted => WeChatApiError::Refused {
                errcode: 40226,
                errmsg: "user restricted".to_owned(),
            },
            WeChatError::Unavailable { reason } => WeChatApiError::Unavailable { reason },
            WeChatError::Misconfigured { errcode: 87009, .. } => WeChatApiError::SessionKeyInvalid,
            WeChatError::Misconfigured { errcode, errmsg } => {
                WeChatApiError::Refused { errcode, errmsg }
            }
        }
    }
}

/// A user's phone number, from [`WxSession::phone_number`](crate::WxSession::phone_number)
/// or [`WxLogin::phone_number`](crate::WxLogin::phone_number). Serializes with WeChat's field names
/// (`phoneNumber`, `purePhoneNumber`, `countryCode`, `watermark`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PhoneInfo {
    /// The number with its country code for numbers outside mainland China.
    #[serde(deserialize_with = "string_or_number")]
    pub phone_number: String,
    /// The number without country code.
    #[serde(deserialize_with = "string_or_number")]
    pub pure_phone_number: String,
    /// The country code, like `"86"` (WeChat sends a string or a bare number).
    #[serde(deserialize_with = "string_or_number")]
    pub country_code: String,
    /// Which mini program asked, and when.
    #[serde(default)]
    pub watermark: Watermark,
}

/// WeChat's watermark on user data: the mini program it is for and when it was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Watermark {
    /// Unix seconds.
    #[serde(default)]
    pub timestamp: u64,
    /// The mini program's app id.
    #[serde(default)]
    pub appid: String,
}

/// A JSON string, or a number written as its decimal text.
fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(match Value::deserialize(deserializer)? {
        Value::Text(text) => text,
        Value::Unsigned(n) => n.to_string(),
        Value::Signed(n) => n.to_string(),
    })
}

/// What handlers need to call WeChat's APIs: the client and the token
/// manager. One per [`WxLogin`](crate::WxLogin); the layer hands it to [`WxSession`](crate::WxSession).
#[derive(Debug)]
pub(crate) struct WeChatApi {
    client: WeChatClient,
    tokens: AccessTokenManager,
}

impl WeChatApi {
    pub(crate) fn new(
        client: WeChatClient,
        app_id: String,
        secret: Secret,
        store: Arc<dyn SessionStore>,
        store_timeout: Duration,
    ) -> Self {
        WeChatApi {
            tokens: AccessTokenManager::new(client.clone(), app_id, secret, store, store_timeout),
            client,
        }
    }

    /// Runs `call` with the access token; if WeChat says the token is
    /// invalid or expired, drops it and runs `call` once more with a new one.
    async fn with_token<T, F, Fut>(&self, what: &'static str, call: F) -> Result<T, WeChatApiError>
    where
        F: Fn(Arc<AccessToken>) -> Fut,
        Fut: Future<Output = Result<T, WeChatError>>,
    {
        let token = self.tokens.get().await?;
        match call(token.clone()).await {
            Err(WeChatError::Misconfigured { errcode, .. })
                if ACCESS_TOKEN_ERRCODES.contains(&errcode) =>
            {
                tracing::info!(
                    call = what,
                    errcode,
                    "wxlogin: WeChat rejected the access token; refreshing and retrying once"
                );
                self.tokens.invalidate(&token).await;
                let token = self.tokens.get().await?;
                Ok(call(token).await?)
            }
            result => Ok(result?),
        }
    }

    /// A valid access token.
    pub(crate) async fn access_token(&self) -> Result<Secret, WeChatApiError> {
        Ok(self.tokens.get().await?.value.clone())
    }

    /// `checkSessionKey`: whether `session_key` is still the user's valid key.
    pub(crate) async fn check_session_key(
        &self,
        openid: &str,
        session_key: &Secret,
    ) -> Result<(), WeChatApiError> {
        let signature = crate::crypto::session_signature(session_key.expose());
        self.with_token("checksession", |token| {
            let signature = &signature;
            async move {
                self.client
                    .check_session(&token.value, openid, signature)
                    .await
            }
        })
        .await
    }

    /// `getPhoneNumber`: the phone number behind a code from the mini
    /// program's `<button open-type="getPhoneNumber">`.
    pub(crate) async fn phone_number(&self, code: &str) -> Result<PhoneInfo, WeChatApiError> {
        self.with_token("getuserphonenumber", |token| async move {
            self.client.phone_number(&token.value, code).await
        })
        .await
    }
}

#[derive(Deserialize)]
struct PhoneReply {
    phone_info: Option<PhoneInfo>,
}

impl WeChatClient {
    /// `GET /wxa/checksession`. The URL holds the access token: never logged.
    async fn check_session(
        &self,
        access_token: &Secret,
        openid: &str,
        signature: &str,
    ) -> Result<(), WeChatError> {
        let url = self.endpoint(
            "/wxa/checksession",
            &[
                ("access_token", access_token.expose()),
                ("openid", openid),
                ("signature", signature),
                ("sig_method", "hmac_sha256"),
            ],
        )?;
        self.call(
            "checksession",
            &[access_token.expose(), signature],
            |http| http.get(url.clone()),
            |body| parse_reply::<IgnoredAny>(body).map(|_| ()),
        )
        .await
    }

    /// `POST /wxa/business/getuserphonenumber` with a JSON body `{"code"}`.
    async fn phone_number(
        &self,
        access_token: &Secret,
        code: &str,
    ) -> Result<PhoneInfo, WeChatError> {
        let url = self.endpoint(
            "/wxa/business/getuserphonenumber",
            &[("access_token", access_token.expose())],
        )?;
        let body = Bytes::from(serde_json::json!({ "code": code }).to_string());
        self.call(
            "getuserphonenumber",
            &[access_token.expose(), code],
            |http| {
                http.post(url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            },
            |body| {
                let reply: PhoneReply = parse_reply(body)?;
                // The code is spent by now, so another attempt would not help.
                reply.phone_info.ok_or_else(|| {
                    AttemptError::fatal(WeChatError::Unavailable {
                        reason: "success reply without phone_info".to_owned(),
                    })
                })
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_info_accepts_country_code_as_string_or_number() {
        for cc in [r#""86""#, "86"] {
            let body = format!(
                r#"{{"errcode":0,"errmsg":"ok","phone_info":{{"phoneNumber":"13580006666","purePhoneNumber":"13580006666","countryCode":{cc},"watermark":{{"timestamp":1637744274,"appid":"wx1"}}}}}}"#
            );
            let reply: PhoneReply = parse_reply(body.as_bytes()).ok().unwrap();
            let info = reply.phone_info.unwrap();
            assert_eq!(info.country_code, "86");
            assert_eq!(info.pure_phone_number, "13580006666");
            assert_eq!(info.watermark.appid, "wx1");
            let json = serde_json::to_value(&info).unwrap();
            assert_eq!(json["countryCode"], "86");
            assert_eq!(json["phoneNumber"], "13580006666");
        }
    }

    #[test]
    fn errors_map() {
        let e = |errcode| {
            WeChatApiError::from(WeChatError::Misconfigured {
                errcode,
                errmsg: "m".into(),
            })
        };
        assert_eq!(e(87009), WeChatApiError::SessionKeyInvalid);
        assert!(e(87009).relogin());
        assert!(!e(40001).relogin());
        assert_eq!(e(40001).errcode(), Some(40001));
        assert_eq!(
            WeChatApiError::from(WeChatError::InvalidCode { errcode: 40029 }),
            WeChatApiError::InvalidCode { errcode: 40029 }
        );
    }
}
