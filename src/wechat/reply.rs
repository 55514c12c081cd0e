//! Reading a WeChat reply body: every endpoint answers JSON (whatever its
//! Content-Type says), with an optional `errcode` (a number, or sometimes a
//! numeric string) and `errmsg`; `errcode` 0 or absent means success.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{errcode_error, AttemptError};

/// `errcode` as WeChat sends it: a number, or sometimes a numeric string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Errcode {
    Number(i64),
    Text(String),
}

/// The part of every reply that says whether the call succeeded.
#[derive(Deserialize)]
struct Envelope {
    errcode: Option<Errcode>,
    errmsg: Option<String>,
}

/// Parses a reply body: a failure for a body that is not JSON (retried:
/// proxies answer HTML pages) or carries a non-zero `errcode` (mapped by
/// [`errcode_error`]), else the body read as `T`.
///
/// Error messages give only positions and lengths, never the body (it may
/// hold a `session_key` or an access token).
pub(super) fn parse_reply<T: DeserializeOwned>(body: &[u8]) -> Result<T, AttemptError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    // serde_json's message can quote the body, so only its position is kept.
    let unparseable = |err: serde_json::Error| {
        AttemptError::transient(format!(
            "unparseable reply ({} bytes, {:?} error at line {} column {})",
            body.len(),
            err.classify(),
            err.line(),
            err.column()
        ))
    };
    // JSON is UTF-8. A body that is not (corrupted, or re-encoded by a proxy)
    // is refused whole, even where the bad bytes sit in a field nobody reads:
    // serde skips ignored fields without checking them.
    let body = std::str::from_utf8(body).map_err(|err| {
        AttemptError::transient(format!(
            "unparseable reply ({} bytes, not UTF-8 at byte {})",
            body.len(),
            err.valid_up_to()
        ))
    })?;
    let envelope: Envelope = serde_json::from_str(body).map_err(unparseable)?;
    let errcode = match envelope.errcode {
        None => 0,
        Some(Errcode::Number(n)) => n,
        Some(Errcode::Text(text)) => text.trim().parse().map_err(|_| {
            AttemptError::transient(format!(
                "unparseable reply (non-numeric errcode, {} bytes)",
                body.len()
            ))
        })?,
    };
    if errcode != 0 {
        return Err(errcode_error(errcode, envelope.errmsg));
    }
    serde_json::from_str(body).map_err(unparseable)
}
