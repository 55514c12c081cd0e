//! The client for WeChat's server API (`api.weixin.qq.com`).
//!
//! It owns the transport rules every WeChat call shares: one pooled HTTP
//! client with connect and request timeouts, a bounded read of the reply
//! body, retries of transient failures with jittered exponential backoff
//! inside an overall deadline, no redirects followed (a 3xx is a final
//! failure: following it would send the secret to the `Location`), numbers
//! from WeChat clamped before any arithmetic, and errors that never carry the app secret
//! (reqwest errors name the URL, whose query holds it, so their URL is
//! always stripped). Each endpoint lives in its own file and only says how
//! to build its request and read its reply.

mod access_token;
mod api;
mod code2session;
mod reply;

use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response, Url};
use tokio::time::Instant;

pub(crate) use api::WeChatApi;
pub use api::{PhoneInfo, Watermark, WeChatApiError};
#[allow(unused_imports)]
pub(crate) use code2session::Code2Session;

/// Where WeChat is and how long to wait for it.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    /// Base URL of the API, e.g. `https://api.weixin.qq.com` (a trailing slash is fine).
    pub api_base: String,
    /// Limit on opening a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Limit on one attempt, from sending the request to the end of the reply body.
    pub request_timeout: Duration,
    /// Limit on a whole call, across all its attempts and the pauses between them.
    pub deadline: Duration,
    /// Most attempts per call (at least one is always made).
    pub max_attempts: u32,
    /// Largest reply body read; a longer one is a failure.
    pub max_reply_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            api_base: "https://api.weixin.qq.com".to_owned(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            deadline: Duration::from_secs(8),
            max_attempts: 3,
            max_reply_bytes: 64 * 1024,
        }
    }
}

/// Why a WeChat call failed. Each variant maps to one row of the error table
/// in DESIGN.md; none of them holds the app secret, the login code or a
/// `session_key`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WeChatError {
    /// The login code is invalid, expired or already used (40029, 40163):
    /// the mini program must call `wx.login()` again.
    #[error("WeChat rejected the login code (errcode {errcode})")]
    InvalidCode { errcode: i64 },
    /// WeChat's minute quota is spent (45011).
    #[error("WeChat rate limit reached, retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// WeChat blocks the login of this high-risk user (40226).
    #[error("WeChat blocked the login of this user (errcode 40226)")]
    UserRestricted,
    /// WeChat did not give a usable answer: busy (-1) after retries, a
    /// timeout, a network error, a non-2xx status, an unparseable or
    /// oversized reply, or a success without the expected fields.
    #[error("WeChat unavailable: {reason}")]
    Unavailable { reason: String },
    /// WeChat refused the app's own request (wrong appid or secret, missing
    /// parameter, frozen secret, or an errcode this client does not know).
    #[error("WeChat refused the request (errcode {errcode}: {errmsg})")]
    Misconfigured { errcode: i64, errmsg: String },
}

/// How long to wait after WeChat's 45011: its message says "retry next minute".
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(60);

/// First backoff pause; it doubles on every further attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(50);

/// Longest errmsg kept in [`WeChatError::Misconfigured`].
const MAX_ERRMSG_CHARS: usize = 200;

/// The outcome of one failed attempt.
struct AttemptError {
    error: WeChatError,
    /// Whether another attempt may succeed (WeChat busy, network trouble, 5xx).
    retry: bool,
    /// Whether the attempt's time limit ended it.
    timed_out: bool,
}

impl AttemptError {
    /// A failure another attempt may cure.
    fn transient(reason: impl Into<String>) -> Self {
        AttemptError {
            error: WeChatError::Unavailable {
                reason: reason.into(),
            },
            retry: true,
            timed_out: false,
        }
    }

    /// A transport failure (connecting, sending, reading, or the time limit).
    fn transport(err: reqwest::Error) -> Self {
        let timed_out = err.is_timeout();
        AttemptError {
            timed_out,
            ..AttemptError::transient(transport_reason(err))
        }
    }

    /// A failure that repeats on every attempt.
    fn fatal(error: WeChatError) -> Self {
        AttemptError {
            error,
            retry: false,
            timed_out: false,
        }
    }
}

/// Maps a WeChat `errcode` (other than 0) to the error it means.
fn errcode_error(errcode: i64, errmsg: Option<String>) -> AttemptError {
    match errcode {
        -1 => AttemptError::transient("WeChat is busy (errcode -1)"),
        40029 | 40163 => AttemptError::fatal(WeChatError::InvalidCode { errcode }),
        45011 => AttemptError::fatal(WeChatError::RateLimited {
            retry_after: RATE_LIMIT_PAUSE,
        }),
        40226 => AttemptError::fatal(WeChatError::UserRestricted),
        _ => AttemptError::fatal(WeChatError::Misconfigured {
            errcode,
            errmsg: errmsg
                .unwrap_or_default()
                .chars()
                .take(MAX_ERRMSG_CHARS)
                .collect(),
        }),
    }
}

/// What stands in for a confidential value cut out of WeChat's text.
const REDACTED: &str = "[redacted]";

/// Shortest run of a secret's characters that is cut out when it appears
/// on its own (a prefix or a part of the secret, not the whole).
const MIN_REDACTED_RUN: usize = 8;

/// `text` without any of `secrets`: each whole occurrence, and each run of
/// token characters (letters, digits, `-_+/=.`) of at least
/// [`MIN_REDACTED_RUN`] that is a part of one of them, becomes `[redacted]`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret) {
            out = out.replace(secret, REDACTED);
        }
    }
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "-_+/=.".contains(c);
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(start) = rest.find(is_token_char) {
        result.push_str(&rest[..start]);
        let run_len = rest[start..]
            .find(|c: char| !is_token_char(c))
            .unwrap_or(rest.len() - start);
        let run = &rest[start..start + run_len];
        let secret_part = run.len() >= MIN_REDACTED_RUN && secrets.iter().any(|s| s.contains(run));
        result.push_str(if secret_part { REDACTED } else { run });
        rest = &rest[start + run_len..];
    }
    result.push_str(rest);
    result
}

/// The error with [`redact`] applied to the text WeChat (or the transport) wrote.
fn redact_error(error: WeChatError, secrets: &[&str]) -> WeChatError {
    match error {
        WeChatError::Misconfigured { errcode, errmsg } => WeChatError::Misconfigured {
            errcode,
            errmsg: redact(&errmsg, secrets),
        },
        WeChatError::Unavailable { reason } => WeChatError::Unavailable {
            reason: redact(&reason, secrets),
        },
        other => other,
    }
}

/// Reads a `code2Session` reply body: the exchange, or the error and whether
/// it would be retried. For the fuzz targets and property tests.
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_code2session_reply(body: &[u8]) -> Result<Code2Session, (WeChatError, bool)> {
    code2session::parse_reply(body).map_err(|f| (f.error, f.retry))
}

/// A reqwest error as a reason string, without the URL (its query holds the secret).
fn transport_reason(err: reqwest::Error) -> String {
    let err = err.without_url();
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "reading the reply failed"
    } else {
        "request failed"
    };
    // The sources (hyper, io) describe the failure; none of them holds the URL.
    let mut reason = kind.to_owned();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// The API base as a URL every call can append a path and a query to: an
/// `http://` or `https://` URL with a host, a path prefix if any, and no
/// query or fragment of its own. `None` for anything else. The builder
/// refuses what this refuses.
pub(crate) fn parse_api_base(base: &str) -> Option<Url> {
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return None;
    }
    Url::parse(base.trim_end_matches('/')).ok().filter(|url| {
        !url.cannot_be_a_base()
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.query().is_none()
            && url.fragment().is_none()
    })
}

/// The client for WeChat's API; clones share one connection pool.
#[derive(Debug, Clone)]
pub(crate) struct WeChatClient {
    http: Client,
    cfg: ClientConfig,
    /// `cfg.api_base` parsed once; `None` when [`parse_api_base`] refuses it
    /// (every call then answers `Misconfigured`).
    base: Option<Url>,
}

impl WeChatClient {
    /// Builds the HTTP client (rustls, pooled connections, the configured timeouts).
    pub(crate) fn new(cfg: ClientConfig) -> Result<Self, reqwest::Error> {
        // The request timeout is set per attempt (see `attempt`), where it is
        // also cut to what is left of the call's deadline: one timer per attempt.
        // No redirects: a 3xx would re-send the request, whose query or body
        // holds the app secret, to wherever `Location` points.
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.connect_timeout)
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = parse_api_base(&cfg.api_base);
        Ok(WeChatClient { http, cfg, base })
    }

    /// `{api_base}{path}?{query}` with every value URL-encoded, from the base
    /// parsed once: a call parses neither the base nor its own URL.
    fn endpoint(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, WeChatError> {
        // Only the base can be malformed; the message names neither it nor the query.
        let misconfigured = || WeChatError::Misconfigured {
            errcode: 0,
            errmsg: "the WeChat API base URL is not a valid URL".to_owned(),
        };
        let mut url = self.base.clone().ok_or_else(misconfigured)?;
        url.path_segments_mut()
            .map_err(|()| misconfigured())?
            .pop_if_empty()
            .extend(path.trim_start_matches('/').split('/'));
        url.query_pairs_mut().extend_pairs(query);
        Ok(url)
    }

    /// Sends the request built by `request` and reads the reply with `parse`,
    /// retrying transient failures within the attempt and deadline limits.
    ///
    /// `what` names the call in logs (never a URL). `secrets` are the
    /// request's confidential values (app secret, code, access token): WeChat
    /// may echo them in `errmsg`, so they are cut out of every error before
    /// it is logged or returned.
    async fn call<T>(
        &self,
        what: &'static str,
        secrets: &[&str],
        request: impl Fn(&Client) -> RequestBuilder,
        parse: impl Fn(&[u8]) -> Result<T, AttemptError>,
    ) -> Result<T, WeChatError> {
        let deadline = Instant::now() + self.cfg.deadline;
        let max_attempts = self.cfg.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            // One timer bounds the attempt, request and reply body: the
            // request timeout, or what is left of the deadline if that is less.
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = if left.is_zero() {
                Err(AttemptError::fatal(self.past_deadline()))
            } else {
                let limit = left.min(self.cfg.request_timeout);
                match self.attempt(&request, limit, &parse).await {
                    // The deadline, not the request timeout, ended it: final.
                    // (A connect timeout is a timeout too, but ends earlier.)
                    Err(failure) if failure.timed_out && Instant::now() >= deadline => {
                        Err(AttemptError::fatal(self.past_deadline()))
                    }
                    outcome => outcome,
                }
            };
            let mut failure = match outcome {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            failure.error = redact_error(failure.error, secrets);
            if !failure.retry {
                return Err(failure.error);
            }
            let pause = backoff(attempt);
            if attempt >= max_attempts || Instant::now() + pause >= deadline {
                tracing::warn!(call = what, attempt, error = %failure.error, "WeChat call failed, giving up");
                return Err(failure.error);
            }
            tracing::warn!(
                call = what,
                attempt,
                pause_ms = pause.as_millis() as u64,
                error = %failure.error,
                "WeChat call failed, retrying"
            );
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// The error of a call whose deadline passed.
    fn past_deadline(&self) -> WeChatError {
        WeChatError::Unavailable {
            reason: format!(
                "no answer within the {} ms deadline",
                self.cfg.deadline.as_millis()
            ),
        }
    }

    /// One request and its parsed reply, within `limit` from sending the
    /// request to the end of the reply body.
    async fn attempt<T>(
        &self,
        request: &impl Fn(&Client) -> RequestBuilder,
        limit: Duration,
        parse: &impl Fn(&[u8]) -> Result<T, AttemptError>,
    ) -> Result<T, AttemptError> {
        let response = request(&self.http)
            .timeout(limit)
            .send()
            .await
            .map_err(AttemptError::transport)?;
        let status = response.status();
        if status.is_redirection() {
            // Final: the same base would redirect again.
            return Err(AttemptError::fatal(WeChatError::Unavailable {
                reason: format!("HTTP status {} (redirect, not followed)", status.as_u16()),
            }));
        }
        if !status.is_success() {
            let reason = format!("HTTP status {}", status.as_u16());
            return Err(if status.is_server_error() {
                AttemptError::transient(reason)
            } else {
                AttemptError::fatal(WeChatError::Unavailable { reason })
            });
        }
        let body = self.read_body(response).await?;
        parse(&body)
    }

    /// The reply body, at most `max_reply_bytes` of it.
    async fn read_body(&self, mut response: Response) -> Result<Vec<u8>, AttemptError> {
        let limit = self.cfg.max_reply_bytes;
        let too_long = || {
            AttemptError::fatal(WeChatError::Unavailable {
                reason: format!("reply longer than {limit} bytes"),
            })
        };
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_long());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(AttemptError::transport)? {
            if body.len() + chunk.len() > limit {
                return Err(too_long());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The pause after failed attempt `attempt` (1-based): 50 ms · 2^(attempt-1),
/// spread at random over ±50 % so that instances do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_BASE.saturating_mul(1 << (attempt - 1).min(10));
    let mut bytes = [0u8; 8];
    // Without randomness the pause is simply the base: jitter is a nicety.
    let unit = match getrandom::getrandom(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    };
    base.mul_f64(0.5 + unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(api_base: &str) -> WeChatClient {
        WeChatClient::new(ClientConfig {
            api_base: api_base.to_owned(),
            ..ClientConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn endpoints_join_the_parsed_base_and_encode_every_value() {
        let query = [("appid", "wx1"), ("js_code", "a b&c=d/é")];
        for (base, want) in [
            (
                "http://127.0.0.1:9",
                "http://127.0.0.1:9/sns/jscode2session?appid=wx1&js_code=a+b%26c%3Dd%2F%C3%A9",
            ),
            (
                "https://proxy.internal/wechat/",
                "https://proxy.internal/wechat/sns/jscode2session?appid=wx1&js_code=a+b%26c%3Dd%2F%C3%A9",
            ),
        ] {
            let url = client(base)
                .endpoint("/sns/jscode2session", &query)
                .ok()
                .unwrap();
            assert_eq!(url.as_str(), want);
            // The same as building the whole URL from text.
            let from_text = Url::parse_with_params(
                &format!("{}/sns/jscode2session", base.trim_end_matches('/')),
                &query,
            )
            .unwrap();
            assert_eq!(url, from_text);
        }
        for base in [
            "not a url",
            "mailto:ops@example.com",
            "https://proxy.internal/wechat?t=x",
        ] {
            let err = client(base).endpoint("/sns/jscode2session", &query).err();
            assert!(
                matches!(err, Some(WeChatError::Misconfigured { errcode: 0, .. })),
                "{base}: {err:?}"
            );
        }
    }

    #[test]
    fn redaction_cuts_whole_secrets_and_their_parts() {
        let secret = "s3cr3t-app-secret-value";
        let code = "0716AVll20uHk94SLDml27etM946AVlq";
        let cases = [
            (
                "invalid appsecret s3cr3t-app-secret-value, rid: 1-2",
                "invalid appsecret [redacted], rid: 1-2",
            ),
            (
                "code 0716AVll20uHk94SLDml27etM946AVlq been used",
                "code [redacted] been used",
            ),
            (
                "prefix s3cr3t-app and tail 27etM946AVlq",
                "prefix [redacted] and tail [redacted]",
            ),
            // Short runs and unrelated words stay.
            (
                "invalid appid, hints: [ req_id: x ]",
                "invalid appid, hints: [ req_id: x ]",
            ),
            ("s3cr3t appsecret-value", "s3cr3t appsecret-value"),
            ("", ""),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text, &[secret, code, ""]), want, "{text}");
        }
        let err = redact_error(
            WeChatError::Misconfigured {
                errcode: 40125,
                errmsg: format!("bad {secret}"),
            },
            &[secret],
        );
        assert!(
            matches!(err, WeChatError::Misconfigured { errcode: 40125, ref errmsg } if errmsg == "bad [redacted]")
        );
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        for attempt in 1..=4 {
            let base = BACKOFF_BASE * (1 << (attempt - 1));
            for _ in 0..50 {
                let pause = backoff(attempt);
                assert!(pause >= base / 2 && pause <= base * 3 / 2, "{pause:?}");
            }
        }
        // Large attempt numbers do not overflow.
        assert!(backoff(u32::MAX) <= BACKOFF_BASE * 1024 * 3 / 2);
    }

    #[test]
    fn errcodes_map_to_the_error_table() {
        let e = |code| errcode_error(code, Some("msg".into()));
        assert!(e(-1).retry);
        assert!(matches!(e(-1).error, WeChatError::Unavailable { .. }));
        assert!(matches!(
            e(40029).error,
            WeChatError::InvalidCode { errcode: 40029 }
        ));
        assert!(matches!(
            e(40163).error,
            WeChatError::InvalidCode { errcode: 40163 }
        ));
        assert!(
            matches!(e(45011).error, WeChatError::RateLimited { retry_after } if retry_after == RATE_LIMIT_PAUSE)
        );
        assert!(matches!(e(40226).error, WeChatError::UserRestricted));
        for code in [40013, 40125, 40002, 41002, 41004, 40243, 12345] {
            let failure = e(code);
            assert!(!failure.retry);
            assert!(
                matches!(failure.error, WeChatError::Misconfigured { errcode, ref errmsg } if errcode == code && errmsg == "msg")
            );
        }
    }
}
