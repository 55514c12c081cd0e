//! What a server does with a session's `session_key`: decrypt a mini
//! program's `encryptedData`, check a `rawData` signature, and sign for
//! `/wxa/checksession`.
//!
//! Free functions, usable without the layer; in a handler,
//! [`WxSession::decrypt`](crate::WxSession::decrypt) and
//! [`WxSession::verify_raw_data`](crate::WxSession::verify_raw_data) pass the
//! session's key and app id for you. Every failure is a [`CryptoError`] value,
//! never a panic, whatever the input.
//!
//! WeChat's official demo vector decrypts like this:
//!
//! ```
//! use serde::Deserialize;
//! use wxlogin::crypto::{self, CryptoError};
//!
//! let session_key = "tiihtNczf5v6AKRyjwEUhQ==";
//! let iv = "r7BXXKkLb8qrSNn05n0qiA==";
//! let encrypted_data = concat!(
//!     "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==",
//! );
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct UserInfo {
//!     open_id: String,
//!     nick_name: String,
//! }
//!
//! let user: UserInfo =
//!     crypto::decrypt_json(session_key, encrypted_data, iv, "wx4f4bc4dec97d474b")?;
//! assert_eq!(user.open_id, "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
//! assert_eq!(user.nick_name, "Band");
//!
//! // Data of another mini program is refused, whatever the key.
//! let foreign = crypto::decrypt_json::<UserInfo>(session_key, encrypted_data, iv, "wxother");
//! assert!(matches!(foreign, Err(CryptoError::WatermarkMismatch)));
//!
//! // A stale session_key (the user ran wx.login again) fails, and says so.
//! let stale_key = "HyVFkGl5F5OQWJZZaNzBBg==";
//! let stale = crypto::decrypt_json::<UserInfo>(stale_key, encrypted_data, iv, "wx4f4bc4dec97d474b");
//! assert!(matches!(stale, Err(e) if e.relogin()));
//! # Ok::<(), CryptoError>(())
//! ```
//!
//! # Getting decryption right
//!
//! Almost every decryption failure in practice is a `session_key` other than
//! the one WeChat encrypted with: the mini program called `wx.login` after it
//! got `encryptedData` (that rotates the key), or the server kept an old key.
//! Those failures report [`CryptoError::relogin`]: the client should run
//! `wx.login`, log in again, then fetch the data again. The other classic is
//! base64 `+` turned into a space by URL or form encoding; send `encryptedData`
//! and `iv` in a JSON body (the errors for that case say so).
//!
//! # Security
//!
//! - [`decrypt_json`] checks `watermark.appid`, so data made for another mini
//!   program is refused.
//! - Show the client one and the same answer for every error whose
//!   [`relogin`](CryptoError::relogin) is true and log the detail server
//!   side: telling "bad padding" from "not JSON" to a client would hand it a
//!   padding oracle, enough to forge `encryptedData` under its own key.
//! - [`verify_raw_data`] compares in constant time. No error's `Display` or
//!   `Debug` contains key material.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// AES block size; the key and the IV are one block each.
const BLOCK: usize = 16;

/// Why decryption or its checks failed. Its `Display` names the problem and
/// never contains key material or decrypted data.
///
/// ```
/// use wxlogin::crypto::{decrypt_json, CryptoError};
/// let iv = "r7BXXKkLb8qrSNn05n0qiA==";
/// let err = decrypt_json::<serde_json::Value>("not base64!", "AAAA", iv, "wx1").unwrap_err();
/// assert!(matches!(err, CryptoError::InvalidKey(_)));
/// assert!(err.to_string().starts_with("session_key is not valid"));
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The `session_key` is not standard base64 of exactly 16 bytes.
    #[error("session_key is not valid: {0}")]
    InvalidKey(&'static str),
    /// The `iv` is not standard base64 of exactly 16 bytes.
    #[error("iv is not valid: {0}")]
    InvalidIv(&'static str),
    /// `encryptedData` is not standard base64, is empty, or is not a whole
    /// number of 16-byte blocks.
    #[error("encryptedData is not valid: {0}")]
    InvalidCiphertext(&'static str),
    /// The PKCS#7 padding is wrong; almost always a `session_key` other than
    /// the one the data was encrypted with.
    #[error("decryption failed (bad padding): the session_key is not the one the data was encrypted with; call wx.login and log in again, then fetch the data again")]
    BadPadding,
    /// The plaintext is not UTF-8 JSON; with a wrong key the padding can look
    /// valid by chance, so this too usually means a stale `session_key`.
    #[error("decrypted data is not JSON: the session_key is probably not the one the data was encrypted with; call wx.login and log in again, then fetch the data again")]
    InvalidJson,
    /// The JSON has no `watermark.appid` string.
    #[error("decrypted JSON has no watermark.appid")]
    MissingWatermark,
    /// `watermark.appid` is not this mini program's app id.
    #[error("decrypted data belongs to another mini program (watermark.appid does not match)")]
    WatermarkMismatch,
    /// The JSON does not fit the requested type. The `Display` leaves out
    /// serde's message (it may quote the user's data); it is the `source`.
    #[error("decrypted JSON does not have the expected shape")]
    Deserialize(#[source] serde_json::Error),
}

impl CryptoError {
    /// True when the usual cause is a stale `session_key` (the client ran
    /// `wx.login` again, or the server holds an old key): the client should
    /// log in again and fetch the data anew. False for malformed input, which
    /// a new login would not fix.
    ///
    /// ```
    /// use wxlogin::crypto::CryptoError;
    /// assert!(CryptoError::BadPadding.relogin());
    /// assert!(!CryptoError::InvalidIv("not base64").relogin());
    /// ```
    pub fn relogin(&self) -> bool {
        matches!(
            self,
            CryptoError::BadPadding | CryptoError::InvalidJson | CryptoError::WatermarkMismatch
        )
    }
}

/// Why a base64 field failed to decode, with the `+`-became-space hint.
fn base64_problem(text: &str) -> &'static str {
    if text.contains(' ') {
        "not standard base64: it contains a space, usually a '+' turned into a space by URL or form encoding (send it in a JSON body)"
    } else {
        "not standard base64"
    }
}

/// Decodes one 16-byte block (the key or the IV).
fn decode_block(text: &str) -> Result<[u8; BLOCK], &'static str> {
    let bytes = STANDARD.decode(text).map_err(|_| base64_problem(text))?;
    bytes
        .try_into()
        .map_err(|_| "does not decode to exactly 16 bytes")
}

/// Decrypts `encrypted_data` (AES-128-CBC, PKCS#7) with the `session_key`
/// and `iv`, all three standard base64 as WeChat sends them; returns the
/// plaintext bytes. Checks no watermark: prefer [`decrypt_json`].
///
/// ```
/// use wxlogin::crypto::{decrypt, CryptoError};
/// let err = decrypt("tiihtNczf5v6AKRyjwEUhQ==", "", "r7BXXKkLb8qrSNn05n0qiA==").unwrap_err();
/// assert!(matches!(err, CryptoError::InvalidCiphertext(_)));
/// ```
pub fn decrypt(session_key: &str, encrypted_data: &str, iv: &str) -> Result<Vec<u8>, CryptoError> {
    let key = decode_block(session_key).map_err(CryptoError::InvalidKey)?;
    let iv_bytes = decode_block(iv).map_err(CryptoError::InvalidIv)?;
    let mut data = STANDARD
        .decode(encrypted_data)
        .map_err(|_| CryptoError::InvalidCiphertext(base64_problem(encrypted_data)))?;
    if data.is_empty() {
        return Err(CryptoError::InvalidCiphertext("empty"));
    }
    if data.len() % BLOCK != 0 {
        return Err(CryptoError::InvalidCiphertext(
            "not a whole number of 16-byte blocks (truncated or altered)",
        ));
    }
    let len = Aes128CbcDec::new(&key.into(), &iv_bytes.into())
        .decrypt_padded_mut::<Pkcs7>(&mut data)
        .map_err(|_| CryptoError::BadPadding)?
        .len();
    data.truncate(len);
    Ok(data)
}

/// [`decrypt`]s, parses the plaintext as JSON, requires `watermark.appid`
/// to equal `appid`, then deserializes `T` from it. Unknown fields are
/// ignored unless `T` denies them (WeChat adds fields over time).
///
/// See the [module example](self).
///
/// ```
/// use serde::Deserialize;
/// use wxlogin::crypto::decrypt_json;
///
/// #[derive(Deserialize)]
/// #[serde(rename_all = "camelCase")]
/// struct UserInfo { open_id: String }
///
/// # let (session_key, encrypted_data, iv) = ("tiihtNczf5v6AKRyjwEUhQ==", "AAAAAAAAAAAAAAAAAAAAAA==", "r7BXXKkLb8qrSNn05n0qiA==");
/// // `encrypted_data` and `iv` come from the mini program, `session_key` from the session.
/// match decrypt_json::<UserInfo>(session_key, encrypted_data, iv, "wx1") {
///     Ok(info) => println!("{}", info.open_id),
///     Err(e) if e.relogin() => println!("stale session_key: log in again"),
///     Err(e) => println!("bad data: {e}"),
/// }
/// ```
pub fn decrypt_json<T: DeserializeOwned>(
    session_key: &str,
    encrypted_data: &str,
    iv: &str,
    appid: &str,
) -> Result<T, CryptoError> {
    let plaintext = decrypt(session_key, encrypted_data, iv)?;
    let value: serde_json::Value =
        serde_json::from_slice(&plaintext).map_err(|_| CryptoError::InvalidJson)?;
    let watermark = value
        .get("watermark")
        .and_then(|w| w.get("appid"))
        .and_then(serde_json::Value::as_str)
        .ok_or(CryptoError::MissingWatermark)?;
    if watermark != appid {
        return Err(CryptoError::WatermarkMismatch);
    }
    serde_json::from_value(value).map_err(CryptoError::Deserialize)
}

/// Checks the `signature` of a `rawData` string (`wx.getUserInfo`):
/// `sha1(raw_data + session_key)` in lowercase hex, compared in constant
/// time. `raw_data` must be the exact string the client received. A
/// signature of the wrong length, or in upper case, is simply `false`.
///
/// ```
/// let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
/// let key = "HyVFkGl5F5OQWJZZaNzBBg==";
/// assert!(wxlogin::crypto::verify_raw_data(raw, "75e81ceda165f4ffa64f4068af58c64b8f54b88c", key));
/// assert!(!wxlogin::crypto::verify_raw_data(raw, "75e81ced", key));
/// ```
pub fn verify_raw_data(raw_data: &str, signature: &str, session_key: &str) -> bool {
    let mut sha = Sha1::new();
    sha.update(raw_data.as_bytes());
    sha.update(session_key.as_bytes());
    let expected = to_hex(&sha.finalize());
    // Lengths are public (always 40); ct_eq answers false for a mismatch.
    expected.as_bytes().ct_eq(signature.as_bytes()).into()
}

/// The login-state signature `/wxa/checksession` wants: lowercase hex
/// HMAC-SHA256 over the empty message, keyed by the `session_key` **text**
/// (its base64 characters, not the decoded bytes).
///
/// ```
/// assert_eq!(
///     wxlogin::crypto::session_signature("tiihtNczf5v6AKRyjwEUhQ=="),
///     "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735",
/// );
/// ```
pub fn session_signature(session_key: &str) -> String {
    hmac_sha256_hex(session_key, b"")
}

/// WeChat's "用户登录态签名": lowercase hex HMAC-SHA256 of `message`, keyed
/// by the `session_key` text. `/wxa/checksession` signs the empty message.
pub(crate) fn hmac_sha256_hex(session_key: &str, message: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(session_key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(message);
    to_hex(&mac.finalize().into_bytes())
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_state_signature_is_keyed_by_the_session_key_text() {
        // The official POST example: only key = the base64 text reproduces it.
        assert_eq!(
            hmac_sha256_hex("o0q0otL8aEzpcZL/FT9WsQ==", br#"{"foo":"bar"}"#),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
        assert_eq!(
            session_signature("tiihtNczf5v6AKRyjwEUhQ=="),
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        );
        assert_eq!(session_signature(""), hmac_sha256_hex("", b""));
    }

    #[test]
    fn hex_is_lowercase_and_complete() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(to_hex(&[]), "");
    }

    #[test]
    fn block_decoding() {
        assert_eq!(decode_block("AAAAAAAAAAAAAAAAAAAAAA=="), Ok([0u8; 16]));
        assert!(decode_block("AAAAAAAAAAAAAAAAAAAA").is_err()); // 15 bytes
        assert!(decode_block("AAAAAAAAAAAAAAAAAAAAAAA=").is_err()); // 17 bytes
        assert!(decode_block("").is_err());
        assert!(decode_block("AAAA AAAAAAAAAAAAAAAAA==")
            .unwrap_err()
            .contains("'+'"));
    }

    #[test]
    fn relogin_hint() {
        assert!(CryptoError::BadPadding.relogin());
        assert!(CryptoError::InvalidJson.relogin());
        assert!(CryptoError::WatermarkMismatch.relogin());
        assert!(!CryptoError::MissingWatermark.relogin());
        assert!(!CryptoError::InvalidKey("x").relogin());
        assert!(!CryptoError::InvalidIv("x").relogin());
        assert!(!CryptoError::InvalidCiphertext("x").relogin());
        let de = serde_json::from_str::<u8>("\"x\"").unwrap_err();
        assert!(!CryptoError::Deserialize(de).relogin());
    }
}
