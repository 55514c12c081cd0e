//! The signed APIv3 calls: prepay, query, close, refund. Each request is
//! signed over the exact bytes sent; 5xx, 429 and network errors are sent
//! again (same body) inside the deadline; the final reply's signature is
//! verified before anything in it is used.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::config::WxPay;
use super::error::{PayError, UNVERIFIED};
use super::sign::{self, authorization, request_message, sign_off_worker};
use super::verify;
use crate::random::random_bytes;

/// A reply as received.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// The prepay of a mini-program (JSAPI) order. The payer's openid is a
/// field of the call, not of this struct: [`WxPay::checkout`] takes it from
/// the order, which took it from the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepayRequest {
    /// The merchant's order number (6–32 of `0-9A-Za-z_-|*`).
    pub out_trade_no: String,
    /// Shown in the payer's bill (≤ 127 characters).
    pub description: String,
    /// The amount in fen (分).
    pub total: i64,
    /// Echoed in query and notification, ≤ 128 characters.
    pub attach: Option<String>,
    /// RFC 3339 expiry, like `2026-12-02T20:00:00+08:00`.
    pub time_expire: Option<String>,
}

#[derive(Serialize)]
struct PrepayBody<'a> {
    appid: &'a str,
    mchid: &'a str,
    description: &'a str,
    out_trade_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_expire: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attach: Option<&'a str>,
    notify_url: &'a str,
    amount: AmountBody,
    payer: PayerBody<'a>,
}

#[derive(Serialize)]
struct AmountBody {
    total: i64,
    currency: &'static str,
}

#[derive(Serialize)]
struct PayerBody<'a> {
    openid: &'a str,
}

/// A transaction as query and notification show it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Transaction {
    /// The appid of the order.
    #[serde(default)]
    pub appid: String,
    /// The merchant id.
    #[serde(default)]
    pub mchid: String,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// WeChat Pay's transaction id (once paid).
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// `SUCCESS`, `REFUND`, `NOTPAY`, `CLOSED`, `REVOKED`, `USERPAYING`, `PAYERROR`.
    pub trade_state: String,
    /// WeChat's description of the state.
    #[serde(default)]
    pub trade_state_desc: Option<String>,
    /// When it was paid.
    #[serde(default)]
    pub success_time: Option<String>,
    /// The payer (once paid).
    #[serde(default)]
    pub payer: Option<Payer>,
    /// The amounts (once paid).
    #[serde(default)]
    pub amount: Option<Amount>,
    /// The `attach` of the prepay.
    #[serde(default)]
    pub attach: Option<String>,
}

/// The payer of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Payer {
    /// The payer's openid under the order's appid.
    pub openid: String,
}

/// Amounts of a transaction, in fen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Amount {
    /// The order total.
    pub total: i64,
    /// What the payer paid.
    #[serde(default)]
    pub payer_total: Option<i64>,
    /// `CNY`.
    #[serde(default)]
    pub currency: Option<String>,
}

/// A refund to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The paid order.
    pub out_trade_no: String,
    /// The merchant's refund number (unique).
    pub out_refund_no: String,
    /// Refund amount in fen.
    pub refund: i64,
    /// The order total in fen.
    pub total: i64,
    /// Shown to the payer.
    pub reason: Option<String>,
    /// Where the refund notification goes (`None`: the merchant's default).
    pub notify_url: Option<String>,
}

#[derive(Serialize)]
struct RefundBody<'a> {
    out_trade_no: &'a str,
    out_refund_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notify_url: Option<&'a str>,
    amount: RefundAmountBody,
}

#[derive(Serialize)]
struct RefundAmountBody {
    refund: i64,
    total: i64,
    currency: &'static str,
}

/// A refund as WeChat Pay reports it (reply, query and notification).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Refund {
    /// WeChat Pay's refund id.
    #[serde(default)]
    pub refund_id: Option<String>,
    /// The merchant's refund number.
    pub out_refund_no: String,
    /// The order.
    #[serde(default)]
    pub out_trade_no: Option<String>,
    /// `SUCCESS`, `CLOSED`, `PROCESSING`, `ABNORMAL` (`status`, or `refund_status` in a notification).
    #[serde(default, alias = "refund_status")]
    pub status: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct PrepayReply {
    prepay_id: String,
}

/// Percent-encodes a path segment (everything but `0-9A-Za-z-_.~`).
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl WxPay {
    async fn send_once(&self, method: &str, path: &str, body: &[u8]) -> Result<Reply, PayError> {
        let i = &self.inner;
        let timestamp = crate::clock::now_secs();
        let nonce = sign::nonce();
        let message = request_message(method, path, timestamp, &nonce, body);
        let signature = sign_off_worker(i.key.clone(), message).await?;
        let url = format!("{}{}", i.api_base, path);
        let method = http::Method::from_bytes(method.as_bytes()).expect("a constant method");
        let mut req = i
            .http
            .request(method, url)
            .header(
                http::header::AUTHORIZATION,
                authorization(&i.mchid, &i.merchant_serial, &nonce, timestamp, &signature),
            )
            .header(http::header::ACCEPT, "application/json")
            .timeout(i.attempt_timeout);
        if let Some(id) = i.keys.public_key_id() {
            req = req.header("Wechatpay-Serial", id);
        }
        if !body.is_empty() {
            req = req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let res = req
            .send()
            .await
            .map_err(|e| PayError::unavailable(None, format!("network: {}", e.without_url())))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await.map_err(|e| {
            PayError::unavailable(None, format!("reading the reply: {}", e.without_url()))
        })?;
        if let Some(id) = headers.get("request-id").and_then(|v| v.to_str().ok()) {
            tracing::debug!(request_id = id, status, "wxlogin::pay: WeChat Pay replied");
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Sends until a reply that is not 5xx or 429, four attempts, or the
    /// deadline; answers the last reply (maybe a 5xx) or error.
    pub(crate) async fn send_with_retries(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Reply, PayError> {
        let deadline = Instant::now() + self.inner.deadline;
        let body = body.unwrap_or_default();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome =
                match tokio::time::timeout(remaining, self.send_once(method, path, body)).await {
                    Ok(r) => r,
                    Err(_) => Err(PayError::unavailable(None, "deadline passed")),
                };
            let retry = match &outcome {
                Ok(r) => (r.status >= 500 || r.status == 429) && !names_misconfiguration(&r.body),
                Err(e) => e.retryable(),
            };
            if !retry {
                return outcome;
            }
            let backoff = Duration::from_millis(50u64 << attempt.min(5)) + jitter();
            if attempt >= 4 || Instant::now() + backoff >= deadline {
                // The last 5xx/429 reply itself: the caller maps it.
                return outcome;
            }
            tracing::debug!(attempt, "wxlogin::pay: retrying WeChat Pay call");
            tokio::time::sleep(backoff).await;
        }
    }

    /// Verifies a reply's signature with the key its serial names.
    pub(crate) async fn verify_reply(&self, reply: &Reply) -> Result<(), PayError> {
        self.verify_reply_with(reply, true).await
    }

    /// `may_download`: whether an unknown serial may start a certificate
    /// download (not while verifying a download's own reply).
    async fn verify_reply_with(&self, reply: &Reply, may_download: bool) -> Result<(), PayError> {
        let unverified =
            |e: verify::VerifyError| PayError::unavailable(None, format!("{UNVERIFIED}{e}"));
        let signed = verify::signed_headers(&reply.headers).map_err(unverified)?;
        verify::check_window(signed.timestamp, crate::clock::now_secs()).map_err(unverified)?;
        let key = if may_download {
            self.verify_key(signed.serial).await
        } else {
            self.inner.keys.lookup(signed.serial)
        };
        let key = key
            .ok_or(verify::VerifyError::UnknownSerial)
            .map_err(unverified)?;
        verify::check_signature(&signed, &reply.body, &key).map_err(unverified)
    }

    /// The error of a non-2xx reply. A 4xx must verify before its code is
    /// believed; 5xx/429 need not (they only ever mean "try later").
    pub(crate) async fn error_reply(&self, reply: &Reply) -> PayError {
        self.error_reply_with(reply, true).await
    }

    /// [`error_reply`](Self::error_reply) of a certificate download: verified
    /// with the keys already loaded only.
    pub(crate) async fn download_error_reply(&self, reply: &Reply) -> PayError {
        self.error_reply_with(reply, false).await
    }

    async fn error_reply_with(&self, reply: &Reply, may_download: bool) -> PayError {
        let parsed: Option<ErrorBody> = serde_json::from_slice(&reply.body).ok();
        let code = parsed.as_ref().map(|b| b.code.as_str()).unwrap_or("");
        let message = parsed.as_ref().map(|b| b.message.as_str()).unwrap_or("");
        if reply.status >= 500 || reply.status == 429 {
            let code = if code.is_empty() { None } else { Some(code) };
            if code.is_some_and(|c| super::error::MISCONFIGURED_CODES.contains(&c)) {
                if let Err(e) = self.verify_reply_with(reply, may_download).await {
                    return e;
                }
                return PayError::from_reply(reply.status, code.unwrap_or(""), message);
            }
            return PayError::unavailable(code, format!("WeChat Pay answered {}", reply.status));
        }
        if let Err(e) = self.verify_reply_with(reply, may_download).await {
            return e;
        }
        if code.is_empty() {
            return PayError::unavailable(
                None,
                format!("WeChat Pay answered {} without a code", reply.status),
            );
        }
        PayError::from_reply(reply.status, code, message)
    }

    /// One verified call: 2xx with a verified body, or the mapped error.
    async fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Reply, PayError> {
        let reply = self.send_with_retries(method, path, body).await?;
        // A misconfiguration code (even on a 5xx, like OPENID_MISMATCH) is not
        // retried: it is mapped at once.
        if !(200..300).contains(&reply.status) {
            return Err(self.error_reply(&reply).await);
        }
        self.verify_reply(&reply).await?;
        Ok(reply)
    }

    /// `POST /v3/pay/transactions/jsapi`: a prepay id for `openid` (who must
    /// be the session's user). The reply must verify, or no prepay id.
    pub async fn prepay(&self, req: &PrepayRequest, openid: &str) -> Result<String, PayError> {
        let i = &self.inner;
        let body = serde_json::to_vec(&PrepayBody {
            appid: &i.app_id,
            mchid: &i.mchid,
            description: &req.description,
            out_trade_no: &req.out_trade_no,
            time_expire: req.time_expire.as_deref(),
            attach: req.attach.as_deref(),
            notify_url: &i.notify_url,
            amount: AmountBody {
                total: req.total,
                currency: "CNY",
            },
            payer: PayerBody { openid },
        })
        .expect("plain fields serialize");
        let reply = self
            .call("POST", "/v3/pay/transactions/jsapi", Some(&body))
            .await?;
        let parsed: PrepayReply = serde_json::from_slice(&reply.body)
            .map_err(|_| PayError::unavailable(None, "prepay reply without prepay_id"))?;
        if parsed.prepay_id.is_empty() || parsed.prepay_id.len() > 64 {
            return Err(PayError::unavailable(
                None,
                "prepay reply with a bad prepay_id",
            ));
        }
        Ok(parsed.prepay_id)
    }

    /// `GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=…`: the
    /// order's state, for reconciliation when no notification came.
    pub async fn query_order(&self, out_trade_no: &str) -> Result<Transaction, PayError> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            path_segment(out_trade_no),
            path_segment(&self.inner.mchid)
        );
        let reply = self.call("GET", &path, None).await?;
        serde_json::from_slice(&reply.body)
            .map_err(|_| PayError::unavailable(None, "query reply does not parse"))
    }

    /// `POST …/out-trade-no/{out_trade_no}/close`: closes an unpaid order (204).
    pub async fn close_order(&self, out_trade_no: &str) -> Result<(), PayError> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}/close",
            path_segment(out_trade_no)
        );
        let body =
            serde_json::to_vec(&serde_json::json!({ "mchid": self.inner.mchid })).expect("json");
        self.call("POST", &path, Some(&body)).await.map(|_| ())
    }

    /// `POST /v3/refund/domestic/refunds`.
    pub async fn refund(&self, req: &RefundRequest) -> Result<Refund, PayError> {
        let body = serde_json::to_vec(&RefundBody {
            out_trade_no: &req.out_trade_no,
            out_refund_no: &req.out_refund_no,
            reason: req.reason.as_deref(),
            notify_url: req.notify_url.as_deref(),
            amount: RefundAmountBody {
                refund: req.refund,
                total: req.total,
                currency: "CNY",
            },
        })
        .expect("plain fields serialize");
        let reply = self
            .call("POST", "/v3/refund/domestic/refunds", Some(&body))
            .await?;
        serde_json::from_slice(&reply.body)
            .map_err(|_| PayError::unavailable(None, "refund reply does not parse"))
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    pub async fn query_refund(&self, out_refund_no: &str) -> Result<Refund, PayError> {
        let path = format!(
            "/v3/refund/domestic/refunds/{}",
            path_segment(out_refund_no)
        );
        let reply = self.call("GET", &path, None).await?;
        serde_json::from_slice(&reply.body)
            .map_err(|_| PayError::unavailable(None, "refund query does not parse"))
    }
}

/// Whether an error body's code is one of [`MISCONFIGURED_CODES`](super::error::MISCONFIGURED_CODES):
/// sending again cannot help.
fn names_misconfiguration(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody>(body)
        .is_ok_and(|b| super::error::MISCONFIGURED_CODES.contains(&b.code.as_str()))
}

fn jitter() -> Duration {
    Duration::from_millis(u64::from(random_bytes::<1>()[0] % 32))
}
