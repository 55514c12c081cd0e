//! What a WeChat Pay call can end in, mapped onto the error table:
//! `payment_failed` (502), `payment_unavailable` (503) or `misconfigured` (500),
//! always with WeChat Pay's own code when it sent one.

use std::fmt;

use crate::{ErrorCode, Rejection};

/// WeChat Pay codes that mean this server is set up wrong, not that the
/// order or WeChat Pay failed: answered `misconfigured` and never retried.
pub const MISCONFIGURED_CODES: &[&str] = &[
    "SIGN_ERROR",
    "APPID_MCHID_NOT_MATCH",
    "MCH_NOT_EXISTS",
    "NO_AUTH",
    "OPENID_MISMATCH",
];

/// The failure of a WeChat Pay call.
///
/// ```
/// use wxlogin::pay::PayError;
/// use wxlogin::ErrorCode;
/// let e = PayError::from_reply(403, "OUT_TRADE_NO_USED", "商户订单号重复");
/// assert_eq!(e.error_code(), ErrorCode::PaymentFailed);
/// assert_eq!(e.wechat_code(), Some("OUT_TRADE_NO_USED"));
/// let e = PayError::from_reply(401, "SIGN_ERROR", "签名错误");
/// assert_eq!(e.error_code(), ErrorCode::Misconfigured);
/// let e = PayError::from_reply(500, "SYSTEM_ERROR", "系统繁忙");
/// assert_eq!(e.error_code(), ErrorCode::PaymentUnavailable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayError {
    /// WeChat Pay refused the request with a business code (4xx).
    Failed {
        /// HTTP status of the reply.
        status: u16,
        /// WeChat Pay's `code`, like `ORDER_CLOSED`.
        code: String,
        /// WeChat Pay's `message` (logged; may echo merchant input).
        message: String,
    },
    /// WeChat Pay did not answer usably: 5xx or 429 after retries, a
    /// timeout, a network error, a reply that does not verify or parse.
    Unavailable {
        /// WeChat Pay's `code` when the reply had one.
        code: Option<String>,
        /// What happened, for the log.
        reason: String,
    },
    /// The server's configuration is wrong (`SIGN_ERROR`, `APPID_MCHID_NOT_MATCH`, ...).
    Misconfigured {
        /// WeChat Pay's `code`, or `None` for a local problem.
        code: Option<String>,
        /// What happened, for the log.
        message: String,
    },
}

impl PayError {
    /// Maps a WeChat Pay error reply (`status` with `{"code", "message"}`).
    pub fn from_reply(status: u16, code: &str, message: &str) -> PayError {
        let message: String = message.chars().take(200).collect();
        if MISCONFIGURED_CODES.contains(&code) {
            return PayError::Misconfigured {
                code: Some(code.to_owned()),
                message,
            };
        }
        if status >= 500 || status == 429 || code == "FREQUENCY_LIMITED" {
            return PayError::Unavailable {
                code: Some(code.to_owned()),
                reason: format!("WeChat Pay answered {status} {code}: {message}"),
            };
        }
        PayError::Failed {
            status,
            code: code.to_owned(),
            message,
        }
    }

    pub(crate) fn unavailable(code: Option<&str>, reason: impl Into<String>) -> PayError {
        PayError::Unavailable {
            code: code.map(str::to_owned),
            reason: reason.into(),
        }
    }

    /// Whether the same request may be sent again (5xx, 429, network).
    pub(crate) fn retryable(&self) -> bool {
        match self {
            PayError::Unavailable { reason, .. } => !reason.starts_with(UNVERIFIED),
            _ => false,
        }
    }

    /// The error-table row.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            PayError::Failed { .. } => ErrorCode::PaymentFailed,
            PayError::Unavailable { .. } => ErrorCode::PaymentUnavailable,
            PayError::Misconfigured { .. } => ErrorCode::Misconfigured,
        }
    }

    /// WeChat Pay's code, when the reply carried one.
    pub fn wechat_code(&self) -> Option<&str> {
        match self {
            PayError::Failed { code, .. } => Some(code),
            PayError::Unavailable { code, .. } | PayError::Misconfigured { code, .. } => {
                code.as_deref()
            }
        }
    }

    /// The client's answer: the error-table row, a fixed message (WeChat
    /// Pay's own message may echo input and is only logged), and WeChat
    /// Pay's code as `detail`.
    ///
    /// ```
    /// use wxlogin::pay::PayError;
    /// let r = PayError::from_reply(400, "ORDER_CLOSED", "订单已关闭").to_rejection();
    /// assert_eq!(r.status(), http::StatusCode::BAD_GATEWAY);
    /// assert_eq!(r.body_json()["detail"]["code"], "ORDER_CLOSED");
    /// ```
    pub fn to_rejection(&self) -> Rejection {
        let message = match self {
            PayError::Failed { .. } => "WeChat Pay refused the order",
            PayError::Unavailable { .. } => "WeChat Pay is unavailable, try again later",
            PayError::Misconfigured { .. } => "the payment configuration is wrong",
        };
        let r = Rejection::new(self.error_code(), message);
        match self.wechat_code() {
            Some(code) => r.with_detail(code.to_owned()),
            None => r,
        }
    }
}

/// Prefix of the reason of a reply that did not verify: never retried (a
/// forged reply must not turn into more requests).
pub(crate) const UNVERIFIED: &str = "unverified reply: ";

impl fmt::Display for PayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayError::Failed {
                status,
                code,
                message,
            } => write!(f, "WeChat Pay refused ({status} {code}): {message}"),
            PayError::Unavailable { reason, .. } => write!(f, "WeChat Pay unavailable: {reason}"),
            PayError::Misconfigured { code, message } => match code {
                Some(code) => write!(f, "WeChat Pay configuration wrong ({code}): {message}"),
                None => write!(f, "WeChat Pay configuration wrong: {message}"),
            },
        }
    }
}

impl std::error::Error for PayError {}

impl axum_core::response::IntoResponse for PayError {
    fn into_response(self) -> axum_core::response::Response {
        tracing::warn!(error = %self, "wxlogin::pay: WeChat Pay call failed");
        self.to_rejection().into_response()
    }
}
