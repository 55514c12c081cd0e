//! Every non-stable hook of the crate, behind the `fuzzing` feature: entry
//! points into the crate's parsers for the cargo-fuzz targets in `fuzz/` and
//! the property tests in `tests/proptest_parsers.rs`, and the `bench_*`
//! methods of [`WxLogin`] for the benchmarks and the profiling examples.
//! **Not a stable API**: it exists so that crate-private code can be driven
//! from outside, and may change in any release. The constants it exports
//! are the crate's own (referenced, never copied).
//!
//! Two kinds of functions:
//!
//! - thin wrappers around one internal parser ([`verify_token`],
//!   [`read_token`], [`parse_login_body`], [`parse_wechat_reply`]), which
//!   return what the crate itself would see;
//! - one fuzz target per parser ([`token`], [`token_header`],
//!   [`login_body`], [`wechat_reply`], [`decrypt_json`]), taking arbitrary
//!   bytes and panicking only when an invariant breaks (an independent
//!   oracle disagrees, a tampered token verifies, an error quotes its
//!   input...). A panic out of one of these is a bug in the crate.
//!
//! ```
//! use wxlogin::fuzzing;
//! fuzzing::token(b"not a token");
//! fuzzing::login_body(br#"{"code":"0716AVll20uHk94SLDml27etM946AVlq"}"#);
//! assert_eq!(
//!     fuzzing::parse_login_body(br#"{"code":"0716AVll20uHk94SLDml27etM946AVlq"}"#).unwrap(),
//!     "0716AVll20uHk94SLDml27etM946AVlq"
//! );
//! ```

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use http::{header, HeaderMap, HeaderName, HeaderValue};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::login::{body_messages, MAX_CODE_LEN as CODE_MAX, MIN_CODE_LEN as CODE_MIN};
use crate::store::StoreError;
use crate::token::{SessionId, TokenKeys, ID_LEN};
use crate::wechat::WeChatError;
use crate::{ErrorCode, Secret, TokenSource, WxLogin};

/// The key that signs the fuzzing tokens.
const KEY: &str = "fuzzing-key-0123456789abcdef0123";
/// An older key that still verifies (rotation).
const OLD_KEY: &str = "fuzzing-old-key-0123456789abcdef";

/// Length of every token, in characters.
pub const TOKEN_LEN: usize = crate::token::TOKEN_LEN;

/// The characters a token may hold (base64url without padding).
pub const TOKEN_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Every message the login body parser may answer with.
pub const LOGIN_BODY_MESSAGES: [&str; 5] = body_messages::ALL;

/// Shortest login code accepted.
pub const MIN_CODE_LEN: usize = CODE_MIN;

/// Longest login code accepted.
pub const MAX_CODE_LEN: usize = CODE_MAX;

/// The app id that [`decrypt_json`]'s round trips put in the watermark.
pub const APP_ID: &str = "wxfuzz0000000001";

/// The current keys: [`KEY`] signs, [`OLD_KEY`] still verifies.
fn keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::new(&[Secret::new(KEY), Secret::new(OLD_KEY)]))
}

/// The keys before rotation: only [`OLD_KEY`].
fn old_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::new(&[Secret::new(OLD_KEY)]))
}

/// The token for session `id`, signed by the current key.
pub fn mint_token(id: [u8; ID_LEN]) -> String {
    keys().token_for(&id)
}

/// The token for session `id`, signed by the old key (still accepted).
pub fn mint_old_token(id: [u8; ID_LEN]) -> String {
    old_keys().token_for(&id)
}

/// The session id in `token` if its shape and MAC check out under the
/// current keys (the new one and the old one), as the layer checks it.
pub fn verify_token(token: &str) -> Option<[u8; ID_LEN]> {
    keys().verify(token).ok()
}

/// The token in `headers` as the layer and the logout route read it, or the
/// error-table code they would answer.
pub fn read_token<'a>(source: &TokenSource, headers: &'a HeaderMap) -> Result<&'a str, ErrorCode> {
    source.read(headers)
}

/// The login code in a login request body, or the `bad_request` message.
pub fn parse_login_body(body: &[u8]) -> Result<String, &'static str> {
    crate::engine::login::parse_login_body(body)
}

/// The login code and the optional `appid` (which mini program) in a login
/// request body, or the `bad_request` message.
pub fn parse_login_request(body: &[u8]) -> Result<(String, Option<String>), &'static str> {
    crate::engine::login::parse_login_request(body).map(|login| (login.code, login.appid))
}

/// What the login route makes of one `code2Session` reply body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeChatReply {
    /// A usable exchange (the `session_key` is left out).
    Session {
        /// The user's openid.
        openid: String,
        /// The user's unionid, when WeChat sent a non-empty one.
        unionid: Option<String>,
    },
    /// A failure.
    Error {
        /// The error-table row the client gets.
        code: ErrorCode,
        /// Whether the client tries WeChat again.
        retry: bool,
        /// The error as logged (`Display`).
        message: String,
    },
}

/// Reads a `code2Session` reply body as the WeChat client does.
pub fn parse_wechat_reply(body: &[u8]) -> WeChatReply {
    match crate::wechat::parse_code2session_reply(body) {
        Ok(s) => WeChatReply::Session {
            openid: s.openid,
            unionid: s.unionid,
        },
        Err((error, retry)) => {
            let code = match error {
                WeChatError::InvalidCode { .. } => ErrorCode::InvalidCode,
                WeChatError::RateLimited { .. } => ErrorCode::RateLimited,
                WeChatError::UserRestricted => ErrorCode::UserRestricted,
                WeChatError::Unavailable { .. } => ErrorCode::WeChatUnavailable,
                WeChatError::Misconfigured { .. } => ErrorCode::Misconfigured,
            };
            WeChatReply::Error {
                code,
                retry,
                message: error.to_string(),
            }
        }
    }
}

/// Encrypts `plaintext` the way WeChat makes `encryptedData`
/// (AES-128-CBC, PKCS#7); returns `(session_key, encrypted_data, iv)` in
/// standard base64, ready for [`crate::crypto::decrypt`].
pub fn encrypt(key: [u8; 16], iv: [u8; 16], plaintext: &[u8]) -> (String, String, String) {
    let data = cbc::Encryptor::<aes::Aes128>::new(&key.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    (
        STANDARD.encode(key),
        STANDARD.encode(data),
        STANDARD.encode(iv),
    )
}

// ------------------------------------------------------------ bench hooks

/// Session creation without WeChat, for benchmarks and memory measurements
/// that need a million sessions (feature `fuzzing`; **not a stable API**).
impl<T> WxLogin<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Creates a session for `openid` in the default app as a successful
    /// login does once WeChat has answered and the hook returned `data`
    /// (the steps after the code exchange and the hook in `Engine::login`,
    /// which it calls: `Engine::create_session`):
    /// the record, the single-session revocation if configured, a fresh
    /// token, the store `create`, the newest `session_key`, and the cache
    /// entry. Returns the token.
    #[doc(hidden)]
    pub async fn bench_create_session(
        &self,
        openid: &str,
        unionid: Option<&str>,
        session_key: Secret,
        data: T,
    ) -> Result<String, StoreError> {
        let who = crate::Identity {
            unionid: unionid.map(str::to_owned),
            ..crate::Identity::new(openid)
        };
        self.bench_create_session_for(who, session_key, data).await
    }

    /// [`bench_create_session`](Self::bench_create_session) for any
    /// identity, with its `User-Agent` and IP (the device list's fields).
    #[doc(hidden)]
    pub async fn bench_create_session_for(
        &self,
        mut who: crate::Identity,
        session_key: Secret,
        data: T,
    ) -> Result<String, StoreError> {
        let engine = &*self.engine;
        if who.app_id.is_empty() {
            who.app_id = engine.default_app().app_id.clone();
        }
        let data_json = serde_json::to_vec(&data)
            .map_err(|e| StoreError::new(format_args!("data does not serialize: {e}")))?;
        let (token, _) = engine
            .create_session(who, session_key, data_json, data)
            .await?;
        Ok(token)
    }

    /// A well-formed token, signed by this login's key, for a random session
    /// id that no store holds: the layer answers it `invalid_token` after a
    /// store lookup.
    #[doc(hidden)]
    pub fn bench_unknown_token(&self) -> String {
        self.engine.keys.mint().1
    }
}

// ---------------------------------------------------------------- fuzz targets

/// Fuzz target `token`: the token parser and MAC check.
///
/// Invariants: verification never panics; a token that verifies is exactly
/// the canonical token minted for its id (no second spelling of a token is
/// accepted); a token minted from the input verifies, under rotation too;
/// any one-character change, truncation or extension of it is refused.
pub fn token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(id) = verify_token(&text) {
        assert!(
            text == mint_token(id) || text == mint_old_token(id),
            "a non-canonical token verified: {text:?}"
        );
    }
    let _ = old_keys().verify(&text);

    if data.len() < ID_LEN + 2 {
        return;
    }
    let id: SessionId = data[..ID_LEN].try_into().expect("16 bytes");
    let (pos, replacement) = (data[ID_LEN], data[ID_LEN + 1]);
    let old = mint_old_token(id);
    assert_eq!(verify_token(&old), Some(id), "an old-key token was refused");
    let minted = mint_token(id);
    assert_eq!(minted.len(), TOKEN_LEN);
    assert!(minted.bytes().all(|b| TOKEN_ALPHABET.contains(&b)));
    assert_eq!(verify_token(&minted), Some(id), "a fresh token was refused");
    assert_eq!(
        old_keys().verify(&minted),
        Err(crate::token::TokenError::Invalid)
    );

    let mut tampered = minted.clone().into_bytes();
    let pos = usize::from(pos) % TOKEN_LEN;
    tampered[pos] = TOKEN_ALPHABET[usize::from(replacement) % 64];
    let tampered = String::from_utf8(tampered).expect("ASCII");
    if tampered != minted {
        assert_eq!(verify_token(&tampered), None, "tampered token verified");
    }
    assert_eq!(
        verify_token(&minted[..pos]),
        None,
        "truncated token verified"
    );
    let longer = format!(
        "{minted}{}",
        TOKEN_ALPHABET[usize::from(replacement) % 64] as char
    );
    assert_eq!(verify_token(&longer), None, "extended token verified");
}

/// Fuzz target `token_header`: reading the token from its header.
///
/// The first byte picks the source (`Authorization: Bearer` or
/// `X-WX-Session`); the rest, split at `\n`, gives up to four values of
/// that header. Invariants: the reader never panics; with no header the
/// answer is `missing_token`; a token read is non-empty, has no spaces
/// around it, is part of the first header's value (after `Bearer ` for
/// that scheme), and its MAC check never panics; the only errors are
/// `missing_token` and `invalid_token`.
pub fn token_header(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let source = if selector & 1 == 0 {
        TokenSource::Bearer
    } else {
        TokenSource::Header(HeaderName::from_static("x-wx-session"))
    };
    let name = match &source {
        TokenSource::Bearer => header::AUTHORIZATION,
        TokenSource::Header(name) => name.clone(),
    };
    let mut headers = HeaderMap::new();
    for part in rest.split(|&b| b == b'\n').take(4) {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(name.clone(), value);
        }
    }
    if selector & 2 != 0 {
        // An unrelated header must not matter.
        headers.insert(header::COOKIE, HeaderValue::from_static("token=x"));
    }
    match read_token(&source, &headers) {
        Ok(token) => {
            assert!(!token.is_empty());
            assert_eq!(token, token.trim(), "the token keeps surrounding spaces");
            let first = headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .expect("a token came from a text header");
            assert!(first.contains(token), "{token:?} is not in {first:?}");
            if matches!(source, TokenSource::Bearer) {
                let (scheme, after) = first.trim().split_once(' ').expect("scheme and token");
                assert!(scheme.eq_ignore_ascii_case("bearer"), "{first:?}");
                assert_eq!(after.trim(), token);
            } else {
                assert_eq!(first.trim(), token);
            }
            let _ = verify_token(token);
        }
        Err(code) => {
            assert!(
                matches!(code, ErrorCode::MissingToken | ErrorCode::InvalidToken),
                "{code:?}"
            );
            if headers.get(&name).is_none() {
                assert_eq!(code, ErrorCode::MissingToken);
            }
        }
    }
}

/// Whether `code` is a login code the route accepts: the oracle's own
/// reading of the rule (16 to 128 of `[A-Za-z0-9_-]`).
fn sane_code(code: &str) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    code.len() >= MIN_CODE_LEN
        && code.len() <= MAX_CODE_LEN
        && code.bytes().all(|b| ALPHABET.contains(&b))
}

/// Fuzz target `login_body`: the login request body parser.
///
/// Invariants: never panics; answers one of [`LOGIN_BODY_MESSAGES`] or a
/// code (and app id); accepts exactly the bodies that an independent
/// reading (JSON value, object, `code` a sane string, `appid` absent, null
/// or a string of 1 to 64 bytes) accepts, with the same code and app id;
/// [`parse_login_body`] agrees with it.
pub fn login_body(data: &[u8]) {
    use serde_json::Value;
    let parsed = parse_login_request(data);
    let oracle = match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(map)) => {
            let appid = match map.get("appid") {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(a)) if !a.is_empty() && a.len() <= 64 => Some(Some(a.clone())),
                Some(_) => None,
            };
            match (appid, map.get("code")) {
                (Some(appid), Some(Value::String(code))) if sane_code(code) => {
                    Some((code.clone(), appid))
                }
                _ => None,
            }
        }
        _ => None,
    };
    assert_eq!(
        parse_login_body(data),
        parsed.clone().map(|(code, _)| code),
        "the two entry points disagree"
    );
    match parsed {
        Ok(request) => {
            assert!(sane_code(&request.0), "{request:?}");
            assert_eq!(Some(request), oracle, "accepted a body the oracle refuses");
        }
        Err(msg) => {
            assert!(LOGIN_BODY_MESSAGES.contains(&msg), "{msg:?}");
            assert_eq!(oracle, None, "refused a body the oracle accepts ({msg})");
        }
    }
}

/// Fuzz target `wechat_reply`: the `code2Session` reply parser.
///
/// Invariants: never panics; a success has a non-empty openid (and unionid
/// when present), read from a JSON object whose `openid` it is; only
/// `wechat_unavailable` is ever retried; `misconfigured` keeps at most 200
/// characters of WeChat's errmsg; other errors never quote the body.
pub fn wechat_reply(data: &[u8]) {
    match parse_wechat_reply(data) {
        WeChatReply::Session { openid, unionid } => {
            assert!(!openid.is_empty());
            if let Some(unionid) = &unionid {
                assert!(!unionid.is_empty());
            }
            let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
            let value: serde_json::Value = serde_json::from_slice(body).expect("a success is JSON");
            assert_eq!(value.get("openid").and_then(|o| o.as_str()), Some(&*openid));
        }
        WeChatReply::Error {
            code,
            retry,
            message,
        } => {
            assert!(
                !retry || code == ErrorCode::WeChatUnavailable,
                "{code:?} retried"
            );
            match code {
                ErrorCode::Misconfigured => {
                    // "WeChat refused the request (errcode N: MSG)".
                    assert!(message.chars().count() <= 200 + 64, "{message}");
                }
                ErrorCode::WeChatUnavailable => {
                    let known = [
                        "WeChat unavailable: unparseable reply (",
                        "WeChat unavailable: success reply without openid or session_key",
                        "WeChat unavailable: WeChat is busy (errcode -1)",
                    ];
                    assert!(
                        known.iter().any(|k| message.starts_with(k)),
                        "unexpected message {message:?}"
                    );
                    assert!(!message.contains('"'), "quotes the body: {message:?}");
                }
                ErrorCode::InvalidCode | ErrorCode::RateLimited | ErrorCode::UserRestricted => {}
                other => panic!("a WeChat reply became {other:?}"),
            }
        }
    }
}

/// Fuzz target `decrypt_json`: `crypto::decrypt` and `crypto::decrypt_json`.
///
/// Even first byte: the rest, split at `0x00`, is `session_key`,
/// `encryptedData`, `iv` and `appid` (lossy UTF-8); nothing may panic, and
/// a JSON success carries the requested `watermark.appid`. Odd first byte:
/// the rest is a plaintext, encrypted under a key from the input; decryption
/// gives it back exactly, `decrypt_json` succeeds exactly when it is JSON
/// with `watermark.appid` equal to [`APP_ID`], and a different key never
/// yields the plaintext's JSON.
pub fn decrypt_json(data: &[u8]) {
    use crate::crypto::{self, CryptoError};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let mut fields = rest.splitn(4, |&b| b == 0).map(String::from_utf8_lossy);
        let mut next = || fields.next().unwrap_or_default();
        let (key, encrypted, iv, appid) = (next(), next(), next(), next());
        let plain = crypto::decrypt(&key, &encrypted, &iv);
        match crypto::decrypt_json::<serde_json::Value>(&key, &encrypted, &iv, &appid) {
            Ok(value) => {
                assert!(plain.is_ok());
                assert_eq!(value["watermark"]["appid"].as_str(), Some(&*appid));
            }
            Err(e) => {
                let _ = (e.to_string(), format!("{e:?}"), e.relogin());
            }
        }
        return;
    }
    let mut key = [0u8; 16];
    let mut iv = [0u8; 16];
    for (i, b) in rest.iter().take(32).enumerate() {
        if i < 16 {
            key[i] ^= b;
        } else {
            iv[i - 16] ^= b;
        }
    }
    let plaintext = rest.get(32..).unwrap_or_default();
    let (k, e, v) = encrypt(key, iv, plaintext);
    assert_eq!(crypto::decrypt(&k, &e, &v).expect("round trip"), plaintext);
    let oracle = serde_json::from_slice::<serde_json::Value>(plaintext).ok();
    let watermark = oracle
        .as_ref()
        .and_then(|v| v.get("watermark"))
        .and_then(|w| w.get("appid"))
        .and_then(|a| a.as_str());
    match crypto::decrypt_json::<serde_json::Value>(&k, &e, &v, APP_ID) {
        Ok(value) => {
            assert_eq!(watermark, Some(APP_ID));
            assert_eq!(Some(value), oracle);
        }
        Err(CryptoError::InvalidJson) => assert!(oracle.is_none()),
        Err(CryptoError::MissingWatermark) => assert!(oracle.is_some() && watermark.is_none()),
        Err(CryptoError::WatermarkMismatch) => {
            assert!(watermark.is_some_and(|w| w != APP_ID))
        }
        Err(other) => panic!("round trip failed: {other:?}"),
    }
    // The same data under another key: any outcome but a panic, and never
    // the original JSON with its watermark.
    let mut wrong = key;
    wrong[0] ^= 0x80;
    let (wk, _, _) = encrypt(wrong, iv, b"");
    if let Ok(value) = crypto::decrypt_json::<serde_json::Value>(&wk, &e, &v, APP_ID) {
        assert_ne!(Some(value), oracle, "a wrong key decrypted the data");
    }
}
