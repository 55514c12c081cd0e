//! The one rejection type of every request-time failure, and its wire format.
//!
//! Every failure a client can see (layer, extractors, login, logout) is a
//! [`Rejection`]: an [`ErrorCode`] from the error table, a human message, and
//! the HTTP status. The default body is
//! `{"error": CODE, "message": TEXT, "relogin": BOOL}`; 401s carry
//! `WWW-Authenticate`, 429s carry `Retry-After`. An app may re-render them
//! through [`WxLoginBuilder::render_rejection`](crate::WxLoginBuilder::render_rejection).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// The error table: one row per [`ErrorCode`], with the code's text (the
/// `error` field, the metric label), its HTTP status, its `relogin` flag,
/// and the layer's fixed rejections of that code (name = message; their
/// bodies are rendered at compile time, so a bad token costs no JSON
/// serialization). Everything about a code is generated from here:
/// [`ErrorCode`] and its methods, [`refusals`], and the literal metric
/// labels of `observe.rs`. axum-core's `__define_rejection!` is the model.
///
/// `error_table!(callback, args..)` expands to `callback! { (args..) rows.. }`;
/// a fixed message must need no JSON escaping (a test checks every body
/// against the serializer).
macro_rules! error_table {
    ($callback:ident $(, $arg:tt)*) => {
        $callback! { ($($arg),*)
            /// 401: no token, or an empty one.
            MissingToken = "missing_token", UNAUTHORIZED, relogin: true, fixed {
                MISSING = "no session token; log in first",
            };
            /// 401: malformed, forged, tampered, unknown or revoked token.
            InvalidToken = "invalid_token", UNAUTHORIZED, relogin: true, fixed {
                NOT_TEXT = "the token header is not valid text; log in again",
                FORGED = "the token is malformed or forged; log in again",
                UNKNOWN = "the session does not exist or was revoked; log in again",
                OTHER_APP = "the session is not for this mini program; log in again",
            };
            /// 401: the session's lifetime (or idle limit) has passed.
            SessionExpired = "session_expired", UNAUTHORIZED, relogin: true, fixed {
                EXPIRED = "the session has expired; log in again",
            };
            /// 503: the store errored or timed out. Never a 401: an outage must not log everyone out.
            StoreUnavailable = "store_unavailable", SERVICE_UNAVAILABLE, relogin: false, fixed {
                STORE_DOWN = "the session store is unavailable; try again shortly",
            };
            /// 400: the login body is not JSON, has no `code`, or the code is not sane (413 when too large).
            BadRequest = "bad_request", BAD_REQUEST, relogin: false, fixed {};
            /// 400: WeChat said the code is invalid (40029) or already used (40163).
            InvalidCode = "invalid_code", BAD_REQUEST, relogin: true, fixed {};
            /// 429: WeChat's minute quota (45011), or this server's login limit; with `Retry-After`.
            RateLimited = "rate_limited", TOO_MANY_REQUESTS, relogin: false, fixed {};
            /// 403: WeChat blocked a high-risk user (40226).
            UserRestricted = "user_restricted", FORBIDDEN, relogin: false, fixed {};
            /// 403: the app's login hook refused the user.
            LoginRefused = "login_refused", FORBIDDEN, relogin: false, fixed {};
            /// 503: WeChat busy after retries, timeouts, network errors, unparseable replies.
            WeChatUnavailable = "wechat_unavailable", SERVICE_UNAVAILABLE, relogin: false, fixed {};
            /// 500: the server is misconfigured (wrong app id or secret, a missing layer,
            /// or a WeChat Pay code such as `SIGN_ERROR` or `APPID_MCHID_NOT_MATCH`).
            Misconfigured = "misconfigured", INTERNAL_SERVER_ERROR, relogin: false, fixed {};
            /// 502: WeChat Pay refused the order (a business code such as `ORDER_CLOSED`
            /// or `OUT_TRADE_NO_USED`); WeChat Pay's code is in the body's `detail`.
            PaymentFailed = "payment_failed", BAD_GATEWAY, relogin: false, fixed {};
            /// 503: WeChat Pay 5xx, 429, timeout or network error after retries, or a
            /// reply whose signature does not verify.
            PaymentUnavailable = "payment_unavailable", SERVICE_UNAVAILABLE, relogin: false, fixed {};
        }
    };
}
// Used by observe.rs (feature `metrics`) for the literal metric labels.
#[cfg_attr(not(feature = "metrics"), allow(unused_imports))]
pub(crate) use error_table;

/// [`error_table!`]'s callback that defines [`ErrorCode`] and [`refusals`].
macro_rules! define_error_codes {
    (() $(
        $(#[$doc:meta])*
        $code:ident = $text:literal, $status:ident, relogin: $relogin:literal, fixed {
            $($fixed:ident = $message:literal,)*
        };
    )*) => {
        /// The codes of the error table. Each maps to one status and one `relogin` flag.
        ///
        /// ```
        /// use http::StatusCode;
        /// use wxlogin::ErrorCode;
        ///
        /// let code = ErrorCode::SessionExpired;
        /// assert_eq!(code.as_str(), "session_expired");
        /// assert_eq!(code.status(), StatusCode::UNAUTHORIZED);
        /// assert!(code.relogin());
        /// // An outage is a 503 to retry, never a logout.
        /// assert_eq!(ErrorCode::StoreUnavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        /// assert!(!ErrorCode::StoreUnavailable.relogin());
        /// ```
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            #[cfg(test)]
            pub(crate) const ALL: &'static [ErrorCode] = &[$(ErrorCode::$code),*];

            /// The code as it appears in the `error` field.
            ///
            /// ```
            /// use wxlogin::ErrorCode;
            /// assert_eq!(ErrorCode::InvalidCode.as_str(), "invalid_code");
            /// assert_eq!(ErrorCode::InvalidCode.to_string(), "invalid_code");
            /// ```
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$code => $text,)*
                }
            }

            /// The default HTTP status of the code.
            ///
            /// ```
            /// use wxlogin::ErrorCode;
            /// assert_eq!(ErrorCode::RateLimited.status(), http::StatusCode::TOO_MANY_REQUESTS);
            /// ```
            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$code => StatusCode::$status,)*
                }
            }

            /// Whether the client should run `wx.login()` again and retry.
            ///
            /// ```
            /// use wxlogin::ErrorCode;
            /// assert!(ErrorCode::InvalidToken.relogin());
            /// assert!(!ErrorCode::WeChatUnavailable.relogin());
            /// ```
            pub const fn relogin(self) -> bool {
                match self {
                    $(ErrorCode::$code => $relogin,)*
                }
            }
        }

        /// The layer's own rejections, their default bodies rendered at compile time.
        pub(crate) mod refusals {
            use super::{ErrorCode, Fixed};

            $($(
                pub(crate) const $fixed: Fixed = Fixed {
                    code: ErrorCode::$code,
                    message: $message,
                    body: concat!(
                        "{\"error\":\"", $text, "\",\"message\":\"", $message,
                        "\",\"relogin\":", $relogin, "}"
                    ),
                };
            )*)*

            /// Every one of them, for the test that checks them against the serializer.
            #[cfg(test)]
            pub(crate) const ALL: &[&Fixed] = &[$($(&$fixed,)*)*];
        }
    };
}

error_table!(define_error_codes);

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Renders a rejection into a response; see
/// [`WxLoginBuilder::render_rejection`](crate::WxLoginBuilder::render_rejection).
pub type Renderer = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync>;

/// The rejection of a request: an error-table row plus a message.
///
/// It implements axum's `IntoResponse`, so handlers can return it too:
///
/// ```
/// use wxlogin::{ErrorCode, Rejection};
/// let r = Rejection::new(ErrorCode::SessionExpired, "session expired");
/// assert_eq!(r.status(), http::StatusCode::UNAUTHORIZED);
/// assert!(r.relogin());
/// let res = r.to_response();
/// assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"wxlogin\", error=\"invalid_token\"");
/// ```
#[derive(Clone)]
pub struct Rejection {
    code: ErrorCode,
    status: StatusCode,
    message: Cow<'static, str>,
    retry_after: Option<u64>,
    /// The upstream code (WeChat Pay's `code`), sent as `"detail": {"code": ..}`.
    detail: Option<Cow<'static, str>>,
    renderer: Option<Renderer>,
    /// The default body, when it was rendered at compile time ([`refusals`]).
    body: Option<&'static str>,
}

/// The default body's fields, in the order the wire format shows them.
#[derive(serde::Serialize)]
struct Body<'a> {
    error: &'static str,
    message: &'a str,
    relogin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Detail<'a>>,
}

/// The `detail` of a body: the upstream service's own code.
#[derive(serde::Serialize)]
struct Detail<'a> {
    code: &'a str,
}

/// A rejection whose code and message are constants, with its default body
/// rendered at compile time: what the layer answers to a bad token, with no
/// JSON serialization per request.
pub(crate) struct Fixed {
    pub(crate) code: ErrorCode,
    pub(crate) message: &'static str,
    pub(crate) body: &'static str,
}

impl Fixed {
    /// The rejection, answered through `renderer` when the app set one.
    pub(crate) fn rejection(&self, renderer: Option<&Renderer>) -> Rejection {
        let mut rej = Rejection::new(self.code, self.message).with_renderer(renderer);
        rej.body = Some(self.body);
        rej
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("code", &self.code)
            .field("status", &self.status)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after)
            .field("detail", &self.detail)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    /// A rejection with the code's default status.
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// let r = Rejection::new(ErrorCode::LoginRefused, "this account is suspended");
    /// assert_eq!(r.status(), http::StatusCode::FORBIDDEN);
    /// ```
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            code,
            status: code.status(),
            message: message.into(),
            retry_after: None,
            detail: None,
            renderer: None,
            body: None,
        }
    }

    /// Adds the upstream service's code (WeChat Pay's `code`, like
    /// `ORDER_CLOSED`), answered as `"detail": {"code": ..}` in the body.
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// let r = Rejection::new(ErrorCode::PaymentFailed, "WeChat Pay refused the order")
    ///     .with_detail("ORDER_CLOSED");
    /// assert_eq!(r.detail(), Some("ORDER_CLOSED"));
    /// assert_eq!(r.body_json()["detail"]["code"], "ORDER_CLOSED");
    /// assert_eq!(r.status(), http::StatusCode::BAD_GATEWAY);
    /// ```
    pub fn with_detail(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(code.into());
        self
    }

    /// The upstream service's code set by [`Rejection::with_detail`].
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// assert_eq!(Rejection::new(ErrorCode::BadRequest, "no").detail(), None);
    /// ```
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn with_renderer(mut self, renderer: Option<&Renderer>) -> Self {
        self.renderer = renderer.cloned();
        self
    }

    /// The error-table code.
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// let r = Rejection::new(ErrorCode::MissingToken, "log in first");
    /// assert_eq!(r.code(), ErrorCode::MissingToken);
    /// ```
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status (the code's, or 413 for an oversized body, 405 for a wrong method).
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// let r = Rejection::new(ErrorCode::BadRequest, "no code in the body");
    /// assert_eq!(r.status(), http::StatusCode::BAD_REQUEST);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable message. It never contains a secret.
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// let r = Rejection::new(ErrorCode::BadRequest, "no code in the body");
    /// assert_eq!(r.message(), "no code in the body");
    /// assert_eq!(r.to_string(), "bad_request: no code in the body");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the client should log in again.
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// assert!(Rejection::new(ErrorCode::SessionExpired, "expired").relogin());
    /// assert!(!Rejection::new(ErrorCode::StoreUnavailable, "try later").relogin());
    /// ```
    pub fn relogin(&self) -> bool {
        self.code.relogin()
    }

    /// Seconds the client should wait, for `rate_limited`.
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// // Set by the login route on its own 429s; a rejection made by hand has none.
    /// let r = Rejection::new(ErrorCode::RateLimited, "slow down");
    /// assert_eq!(r.retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The default JSON body `{"error","message","relogin"}`.
    ///
    /// ```
    /// use serde_json::json;
    /// use wxlogin::{ErrorCode, Rejection};
    /// let r = Rejection::new(ErrorCode::InvalidToken, "the token is malformed or forged");
    /// assert_eq!(
    ///     r.body_json(),
    ///     json!({"error": "invalid_token", "message": "the token is malformed or forged", "relogin": true})
    /// );
    /// ```
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::to_value(self.wire_body()).expect("plain fields always serialize")
    }

    /// The response in the default wire format, ignoring any renderer.
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// let res = Rejection::new(ErrorCode::MissingToken, "log in first").default_response();
    /// assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
    /// assert_eq!(res.headers()["content-type"], "application/json");
    /// assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"wxlogin\"");
    /// let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    /// assert_eq!(body["error"], "missing_token");
    /// ```
    pub fn default_response(&self) -> Response<Bytes> {
        let body = match self.body {
            Some(fixed) => Bytes::from_static(fixed.as_bytes()),
            None => Bytes::from(self.render_body()),
        };
        let mut res = Response::new(body);
        *res.status_mut() = self.status;
        self.add_headers(&mut res);
        res
    }

    fn render_body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.wire_body()).expect("plain fields always serialize")
    }

    /// The default body's fields: one definition for both the bytes and the
    /// [`Rejection::body_json`] value.
    fn wire_body(&self) -> Body<'_> {
        Body {
            error: self.code.as_str(),
            message: &self.message,
            relogin: self.relogin(),
            detail: self.detail.as_deref().map(|code| Detail { code }),
        }
    }

    /// Adds the protocol headers (`WWW-Authenticate` on 401, `Retry-After`) a
    /// renderer should keep; [`Rejection::default_response`] already has them.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use wxlogin::{ErrorCode, Rejection};
    /// let r = Rejection::new(ErrorCode::SessionExpired, "expired");
    /// // An app's own envelope ...
    /// let mut res = http::Response::new(Bytes::from_static(br#"{"code":40103}"#));
    /// *res.status_mut() = r.status();
    /// // ... keeps the protocol headers.
    /// r.add_headers(&mut res);
    /// assert_eq!(res.headers()["content-type"], "application/json");
    /// assert!(res.headers().contains_key("www-authenticate"));
    /// ```
    pub fn add_headers<B>(&self, res: &mut Response<B>) {
        let h = res.headers_mut();
        if !h.contains_key(header::CONTENT_TYPE) {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let v = match self.code {
                ErrorCode::MissingToken => "Bearer realm=\"wxlogin\"",
                _ => "Bearer realm=\"wxlogin\", error=\"invalid_token\"",
            };
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
    }

    /// The response, through the app's renderer when one is configured.
    ///
    /// ```
    /// use wxlogin::{ErrorCode, Rejection};
    /// let res = Rejection::new(ErrorCode::WeChatUnavailable, "WeChat is busy").to_response();
    /// assert_eq!(res.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub fn to_response(&self) -> Response<Bytes> {
        match &self.renderer {
            Some(render) => {
                let mut res = render(self);
                self.add_headers(&mut res);
                res
            }
            None => self.default_response(),
        }
    }
}

impl axum_core::response::IntoResponse for Rejection {
    fn into_response(self) -> axum_core::response::Response {
        self.to_response().map(axum_core::body::Body::from)
    }
}

/// What a login hook answers instead of the app's user data.
///
/// ```
/// use wxlogin::LoginError;
/// let banned = LoginError::refused("this account is suspended");
/// let db_down = LoginError::unavailable("connection refused");
/// # let _ = (banned, db_down);
/// ```
#[derive(Debug, Clone)]
pub enum LoginError {
    /// The app refuses this user: 403 `login_refused` with this message.
    Refused(String),
    /// The app's own storage failed: 503 `store_unavailable`; the detail is logged, not sent.
    Unavailable(String),
}

impl LoginError {
    /// Refuse the user with a message the client may show.
    ///
    /// ```
    /// use wxlogin::LoginError;
    /// let e = LoginError::refused("this account is suspended");
    /// assert!(matches!(&e, LoginError::Refused(m) if m == "this account is suspended"));
    /// ```
    pub fn refused(message: impl Into<String>) -> Self {
        LoginError::Refused(message.into())
    }

    /// The app's storage failed; the detail goes to the log only.
    ///
    /// ```
    /// use wxlogin::LoginError;
    /// # fn find_user() -> Result<i64, std::io::Error> { Err(std::io::Error::other("connection refused")) }
    /// // In a login hook: `find_user().map_err(LoginError::unavailable)` answers 503.
    /// let e = find_user().map_err(LoginError::unavailable).unwrap_err();
    /// assert!(matches!(e, LoginError::Unavailable(_)));
    /// ```
    pub fn unavailable(detail: impl fmt::Display) -> Self {
        LoginError::Unavailable(detail.to_string())
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::Refused(m) => write!(f, "login refused: {m}"),
            LoginError::Unavailable(m) => write!(f, "user storage unavailable: {m}"),
        }
    }
}

impl std::error::Error for LoginError {}

/// Why [`WxLoginBuilder::build`](crate::WxLoginBuilder::build) refused a configuration.
///
/// ```
/// use wxlogin::{BuildError, WxLogin};
/// let err = WxLogin::builder().app_id("wx1").build().unwrap_err();
/// assert!(matches!(err, BuildError::MissingAppSecret));
/// assert!(err.to_string().contains("app_secret"));
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No app id was given.
    #[error("wxlogin: no app id configured (WxLogin::builder().app_id(..))")]
    MissingAppId,
    /// No app secret was given.
    #[error("wxlogin: no app secret configured (WxLogin::builder().app_secret(..))")]
    MissingAppSecret,
    /// A store shared between instances needs a configured token key, or each
    /// instance would reject the others' tokens.
    #[error("wxlogin: the store is shared between instances, so a token key must be configured (WxLogin::builder().token_key(..))")]
    SharedStoreWithoutKey,
    /// A setting has a value that cannot work.
    #[error("wxlogin: invalid {field}: {reason}")]
    InvalidValue {
        /// The builder setting.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client for WeChat could not be built.
    #[error("wxlogin: cannot build the HTTP client: {0}")]
    HttpClient(String),
}

#[cfg(test)]
mod tests {
    use super::{refusals, ErrorCode, Rejection};

    #[test]
    fn fixed_bodies_are_what_the_serializer_writes() {
        for fixed in refusals::ALL {
            let by_serializer = Rejection::new(fixed.code, fixed.message).default_response();
            let prerendered = fixed.rejection(None).default_response();
            assert_eq!(prerendered.body(), by_serializer.body(), "{}", fixed.body);
            assert_eq!(prerendered.headers(), by_serializer.headers());
            assert_eq!(prerendered.status(), by_serializer.status());
            let body: serde_json::Value = serde_json::from_str(fixed.body).unwrap();
            assert_eq!(body["error"], fixed.code.as_str());
            assert_eq!(body["relogin"], fixed.code.relogin());
        }
        assert_eq!(refusals::ALL.len(), 7);
        assert_eq!(ErrorCode::ALL.len(), 13);
    }
}
