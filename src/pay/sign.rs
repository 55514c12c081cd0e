//! Merchant signatures (`WECHATPAY2-SHA256-RSA2048`): the request's
//! `Authorization` header over the exact bytes sent, and the message every
//! WeChat Pay signature covers.

use std::sync::Arc;

use super::error::PayError;
use super::keys::MerchantKey;
use crate::random::random_alnum;

/// The `Authorization` scheme of APIv3.
pub(crate) const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// `METHOD\nPATH[?QUERY]\nTIMESTAMP\nNONCE\nBODY\n`: what a request signature covers.
pub(crate) fn request_message(
    method: &str,
    path_and_query: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(method.len() + path_and_query.len() + nonce.len() + body.len() + 32);
    m.extend_from_slice(method.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(path_and_query.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(timestamp.to_string().as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// `TIMESTAMP\nNONCE\nBODY\n`: what a reply or notification signature covers.
pub(crate) fn reply_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// `appId\ntimeStamp\nnonceStr\npackage\n`: what `paySign` covers.
pub(crate) fn pay_sign_message(
    app_id: &str,
    time_stamp: &str,
    nonce: &str,
    package: &str,
) -> Vec<u8> {
    format!("{app_id}\n{time_stamp}\n{nonce}\n{package}\n").into_bytes()
}

/// The `Authorization` header value.
pub(crate) fn authorization(
    mchid: &str,
    serial: &str,
    nonce: &str,
    timestamp: u64,
    signature: &str,
) -> String {
    format!(
        "{SCHEME} mchid=\"{mchid}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{serial}\",signature=\"{signature}\""
    )
}

/// 32 random characters of `[0-9A-Za-z]` from the OS CSPRNG.
pub(crate) fn nonce() -> String {
    random_alnum(32)
}

/// Signs on tokio's blocking pool: an RSA-2048 private-key operation takes
/// about a millisecond (docs/payment.md), far too long for an async worker.
/// Outside a runtime it signs inline.
pub(crate) async fn sign_off_worker(
    key: Arc<MerchantKey>,
    message: Vec<u8>,
) -> Result<String, PayError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(key.sign(&message));
    }
    tokio::task::spawn_blocking(move || key.sign(&message))
        .await
        .map_err(|_| PayError::unavailable(None, "the signing task did not finish"))
}
