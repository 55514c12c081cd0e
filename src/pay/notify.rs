//! The notify route: a tower `Service` WeChat Pay posts payment and refund
//! results to. It fails closed, in this order: method; the signed headers
//! present and single-valued; the 5-minute timestamp window on the server
//! clock; the serial names a known key; the raw body (under a size limit)
//! verifies; only then is anything parsed: `algorithm` checked, the resource
//! decrypted (AES-256-GCM, the APIv3 key), `mchid`/`appid`/`out_trade_no`/
//! `amount.total` cross-checked against the app's order; then the order
//! store marks it paid (idempotently). 2xx only after that succeeded; any
//! failure is 4xx/5xx with `{"code":"FAIL","message":…}` and no change.
//! `WECHATPAY/SIGNTEST/` probes are bad signatures like any other.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use serde::Deserialize;

use super::aead;
use super::certs::EncryptedResource;
use super::client::{Refund, Transaction};
use super::config::WxPay;
use super::orders::{MarkPaid, OrderStore};
use super::verify;

/// The largest notification body read (WeChat's are about 1 KiB).
pub const NOTIFY_BODY_LIMIT: usize = 64 * 1024;

/// A notification's envelope (before decryption).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Notification {
    /// Unique per notification (≤ 36 characters).
    pub(crate) id: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`.
    pub(crate) event_type: String,
    /// The encrypted payload.
    pub(crate) resource: Resource,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Resource {
    #[serde(default)]
    pub(crate) original_type: String,
    #[serde(flatten)]
    pub(crate) encrypted: EncryptedResource,
}

/// Why a notification was refused: its status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRefusal {
    /// 4xx or 5xx.
    pub status: StatusCode,
    /// The `message` of `{"code":"FAIL",…}`.
    pub message: String,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> NotifyRefusal {
    NotifyRefusal {
        status,
        message: message.into(),
    }
}

/// Parses a (verified) notification body: JSON, an `AEAD_AES_256_GCM`
/// resource, sane field sizes. Pure: property tests and the fuzz target
/// call it through `wxlogin::pay::fuzzing`.
pub(crate) fn parse_notification(body: &[u8]) -> Result<Notification, NotifyRefusal> {
    let n: Notification = serde_json::from_slice(body).map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            "notification is not the expected JSON",
        )
    })?;
    let r = &n.resource.encrypted;
    if r.algorithm != "AEAD_AES_256_GCM" {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "unsupported resource algorithm",
        ));
    }
    if n.id.len() > 64 || r.nonce.len() != 12 || r.associated_data.len() > 256 {
        return Err(refuse(StatusCode::BAD_REQUEST, "malformed resource"));
    }
    Ok(n)
}

/// What a verified, decrypted notification carries.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Transaction(Transaction),
    Refund(Refund),
}

/// Decrypts a parsed notification's resource and reads its payload.
pub(crate) fn open_resource(
    key: &super::keys::ApiV3Key,
    n: &Notification,
) -> Result<Event, NotifyRefusal> {
    let r = &n.resource.encrypted;
    let plain = aead::decrypt(key, &r.nonce, &r.associated_data, &r.ciphertext)
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "resource does not decrypt"))?;
    let bad = || refuse(StatusCode::BAD_REQUEST, "resource is not the expected JSON");
    if n.event_type.starts_with("REFUND.") || n.resource.original_type == "refund" {
        serde_json::from_slice(&plain)
            .map(Event::Refund)
            .map_err(|_| bad())
    } else if n.event_type.starts_with("TRANSACTION.") || n.resource.original_type == "transaction"
    {
        serde_json::from_slice(&plain)
            .map(Event::Transaction)
            .map_err(|_| bad())
    } else {
        Err(refuse(StatusCode::BAD_REQUEST, "unknown event_type"))
    }
}

/// The notify route. It fails closed, in this order: `POST`; the four
/// `Wechatpay-*` headers present once each; the timestamp within 5 minutes
/// of the server clock; the serial names a known key; the raw body (under
/// [`NOTIFY_BODY_LIMIT`]) verifies; the resource's algorithm is
/// `AEAD_AES_256_GCM` and it decrypts with the APIv3 key; `mchid`, `appid`,
/// `out_trade_no`, `amount.total` and the payer match the order; then
/// [`OrderStore::mark_paid`]. 204 only after that succeeded; otherwise
/// 4xx/5xx with `{"code":"FAIL","message":…}` and nothing changed.
///
/// Mount it with axum's `route_service("/wx/pay/notify",
/// pay.notify_service(orders))`, or serve it with hyper (any body type).
#[derive(Clone)]
pub struct NotifyService {
    pay: WxPay,
    orders: Arc<dyn OrderStore>,
    limit: usize,
}

impl std::fmt::Debug for NotifyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyService")
            .field("pay", &self.pay)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl WxPay {
    /// The notify route over the app's orders.
    pub fn notify_service(&self, orders: Arc<dyn OrderStore>) -> NotifyService {
        NotifyService {
            pay: self.clone(),
            orders,
            limit: NOTIFY_BODY_LIMIT,
        }
    }
}

impl NotifyService {
    /// A smaller (or larger) body limit than [`NOTIFY_BODY_LIMIT`].
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    async fn handle<B>(self, req: Request<B>) -> Result<(), NotifyRefusal>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.method() != Method::POST {
            return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "POST only"));
        }
        let (parts, body) = req.into_parts();
        let unauthorized = |e: verify::VerifyError| refuse(StatusCode::UNAUTHORIZED, e.to_string());
        let signed = verify::signed_headers(&parts.headers).map_err(|e| match e {
            verify::VerifyError::Missing(_) | verify::VerifyError::Repeated(_) => {
                refuse(StatusCode::BAD_REQUEST, e.to_string())
            }
            _ => unauthorized(e),
        })?;
        verify::check_window(signed.timestamp, crate::clock::now_secs()).map_err(unauthorized)?;
        let key = self
            .pay
            .verify_key(signed.serial)
            .await
            .ok_or_else(|| unauthorized(verify::VerifyError::UnknownSerial))?;
        let raw = match Limited::new(body, self.limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "notification body too large",
                ))
            }
            Err(_) => return Err(refuse(StatusCode::BAD_REQUEST, "could not read the body")),
        };
        verify::check_signature(&signed, &raw, &key).map_err(unauthorized)?;
        let notification = parse_notification(&raw)?;
        let event = open_resource(&self.pay.inner.api_v3_key, &notification)?;
        let inner = &self.pay.inner;
        let store_down = |e: super::orders::OrderError| {
            tracing::error!(error = %e, "wxlogin::pay: order store failed in the notify route");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "order store unavailable")
        };
        match event {
            Event::Transaction(tx) => {
                if tx.mchid != inner.mchid || tx.appid != inner.app_id {
                    return Err(refuse(StatusCode::BAD_REQUEST, "mchid or appid mismatch"));
                }
                let order = self
                    .orders
                    .find(&tx.out_trade_no)
                    .await
                    .map_err(store_down)?
                    .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "unknown out_trade_no"))?;
                if tx.amount.as_ref().map(|a| a.total) != Some(order.total) {
                    return Err(refuse(StatusCode::BAD_REQUEST, "amount mismatch"));
                }
                if let Some(payer) = &tx.payer {
                    if payer.openid != order.openid {
                        return Err(refuse(StatusCode::BAD_REQUEST, "payer mismatch"));
                    }
                }
                if tx.trade_state != "SUCCESS" {
                    // Nothing to record; acknowledge so WeChat Pay stops.
                    return Ok(());
                }
                let transaction_id = tx.transaction_id.as_deref().unwrap_or("");
                if transaction_id.is_empty() {
                    return Err(refuse(StatusCode::BAD_REQUEST, "no transaction_id"));
                }
                match self
                    .orders
                    .mark_paid(&tx.out_trade_no, transaction_id)
                    .await
                    .map_err(store_down)?
                {
                    MarkPaid::Updated => {
                        tracing::info!(out_trade_no = %tx.out_trade_no, "wxlogin::pay: order paid")
                    }
                    MarkPaid::AlreadyPaid => {
                        tracing::debug!(out_trade_no = %tx.out_trade_no, "wxlogin::pay: duplicate notification")
                    }
                }
                Ok(())
            }
            Event::Refund(refund) => {
                let Some(no) = refund.out_trade_no.as_deref() else {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "refund without out_trade_no",
                    ));
                };
                if self.orders.find(no).await.map_err(store_down)?.is_none() {
                    return Err(refuse(StatusCode::NOT_FOUND, "unknown out_trade_no"));
                }
                if refund.status.as_deref() == Some("SUCCESS") {
                    self.orders.mark_refunded(no).await.map_err(store_down)?;
                }
                Ok(())
            }
        }
    }
}

/// The notify route's response.
pub type NotifyResponse = Response<Full<Bytes>>;

impl<B> tower_service::Service<Request<B>> for NotifyService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = NotifyResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<NotifyResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let res = match this.handle(req).await {
                Ok(()) => {
                    let mut res = Response::new(Full::new(Bytes::new()));
                    *res.status_mut() = StatusCode::NO_CONTENT;
                    res
                }
                Err(refusal) => {
                    tracing::warn!(status = %refusal.status, message = %refusal.message, "wxlogin::pay: notification refused");
                    let body = serde_json::to_vec(&serde_json::json!({
                        "code": "FAIL",
                        "message": refusal.message,
                    }))
                    .expect("two strings serialize");
                    let mut res = Response::new(Full::new(Bytes::from(body)));
                    *res.status_mut() = refusal.status;
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    res
                }
            };
            Ok(res)
        })
    }
}
