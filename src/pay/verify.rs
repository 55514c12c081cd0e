//! Checking a WeChat Pay signature (replies and notifications use the same
//! rule): the four `Wechatpay-*` headers present and single-valued, the
//! signature type, a 5-minute window on the server clock, then
//! SHA256withRSA over `timestamp\nnonce\nbody\n` with the raw body bytes.

use std::fmt;

use http::HeaderMap;

use super::keys::VerifyKey;
use super::sign::{reply_message, SCHEME};

/// The replay window: a signature more than this many seconds off the server clock is refused.
pub const TIMESTAMP_WINDOW_SECS: u64 = 300;

/// The signed headers of a reply or notification.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signed<'a> {
    pub(crate) timestamp: &'a str,
    pub(crate) nonce: &'a str,
    pub(crate) signature: &'a str,
    pub(crate) serial: &'a str,
}

/// Why a signature was refused (said in the notify route's `message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyError {
    Missing(&'static str),
    Repeated(&'static str),
    SignatureType,
    Timestamp,
    Stale,
    UnknownSerial,
    Signature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Missing(h) => write!(f, "missing header {h}"),
            VerifyError::Repeated(h) => write!(f, "header {h} sent more than once"),
            VerifyError::SignatureType => f.write_str("unsupported Wechatpay-Signature-Type"),
            VerifyError::Timestamp => f.write_str("Wechatpay-Timestamp is not a number of seconds"),
            VerifyError::Stale => f.write_str("Wechatpay-Timestamp is more than 5 minutes off"),
            VerifyError::UnknownSerial => f.write_str("unknown Wechatpay-Serial"),
            VerifyError::Signature => f.write_str("bad signature"),
        }
    }
}

fn single<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(VerifyError::Repeated(name));
    }
    // A value that is not visible ASCII cannot be one WeChat Pay signed.
    let v = first.to_str().map_err(|_| VerifyError::Signature)?;
    Ok(Some(v))
}

fn required<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    match single(headers, name)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(VerifyError::Missing(name)),
    }
}

/// Reads the signed headers: each present once; the signature type, when
/// sent, must be `WECHATPAY2-SHA256-RSA2048`.
pub(crate) fn signed_headers(headers: &HeaderMap) -> Result<Signed<'_>, VerifyError> {
    let signed = Signed {
        timestamp: required(headers, "wechatpay-timestamp")?,
        nonce: required(headers, "wechatpay-nonce")?,
        signature: required(headers, "wechatpay-signature")?,
        serial: required(headers, "wechatpay-serial")?,
    };
    if let Some(kind) = single(headers, "wechatpay-signature-type")? {
        if kind != SCHEME {
            return Err(VerifyError::SignatureType);
        }
    }
    Ok(signed)
}

/// The timestamp, if it is within [`TIMESTAMP_WINDOW_SECS`] of `now`.
pub(crate) fn check_window(timestamp: &str, now: u64) -> Result<u64, VerifyError> {
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(VerifyError::Timestamp);
    }
    let ts: u64 = timestamp.parse().map_err(|_| VerifyError::Timestamp)?;
    if ts.abs_diff(now) > TIMESTAMP_WINDOW_SECS {
        return Err(VerifyError::Stale);
    }
    Ok(ts)
}

/// Verifies the signature over the raw body with `key`.
pub(crate) fn check_signature(
    signed: &Signed<'_>,
    body: &[u8],
    key: &VerifyKey,
) -> Result<(), VerifyError> {
    let message = reply_message(signed.timestamp, signed.nonce, body);
    if key.verify(&message, signed.signature) {
        Ok(())
    } else {
        Err(VerifyError::Signature)
    }
}
