//! Session tokens: minting, parsing and MAC verification, with key rotation,
//! and where a request carries one ([`TokenSource`], the hot path's header read).
//!
//! A token is `base64url(version ‖ kid ‖ id ‖ mac)` without padding, 46 ASCII
//! characters:
//!
//! | bytes | meaning |
//! |---|---|
//! | 1 | format version (1) |
//! | 1 | key id: the first byte of SHA-256 over the key, picks the verifying key |
//! | 16 | session id, from the OS CSPRNG (128 bits) |
//! | 16 | HMAC-SHA256(key, version ‖ kid ‖ id), truncated to 128 bits |
//!
//! Verification needs no store or cache lookup, so forged, truncated or
//! tampered tokens cost one HMAC and nothing else. The store never sees the
//! MAC (and only a hash of the id, see [`crate::store::StoreId`]), so a leaked
//! store gives no working token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use http::{header, HeaderMap, HeaderName};

use crate::error::ErrorCode;
use crate::random::random_bytes;
use crate::Secret;

/// Format version carried in the first byte.
const VERSION: u8 = 1;
/// Length of the random session id.
pub(crate) const ID_LEN: usize = 16;
const MAC_LEN: usize = 16;
const RAW_LEN: usize = 2 + ID_LEN + MAC_LEN;
/// Length of the signed part: version, key id and session id.
const SIGNED_LEN: usize = 2 + ID_LEN;
/// The first byte of the message behind a device-list handle
/// ([`TokenKeys::handle_for`]); tokens start with [`VERSION`].
const HANDLE_DOMAIN: u8 = 0xFE;
/// Length of a token in characters.
pub(crate) const TOKEN_LEN: usize = (RAW_LEN * 4).div_ceil(3);
/// Fewest bits of key accepted.
const MIN_KEY_BITS: usize = 128;

/// Whether a configured key carries at least 128 bits: an even-length,
/// all-hex key counts 4 bits a digit (32 digits, 16 bytes, at least); any
/// other text must have at least 32 characters.
///
/// The key's text bytes stay the HMAC key either way (hex is not decoded):
/// decoding would change the MAC key of every hex key already deployed and
/// end its live tokens on upgrade, and HMAC is as strong under the 64 bytes
/// of a hex text as under the 32 bytes it spells.
pub(crate) fn key_is_strong(key: &str) -> bool {
    let is_hex = key.len() % 2 == 0 && key.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        key.len() * 4 >= MIN_KEY_BITS
    } else {
        key.chars().count() >= MIN_KEY_BITS / 4
    }
}

/// The builder's message for a key [`key_is_strong`] refuses.
pub(crate) const WEAK_KEY: &str = "must carry at least 128 bits: 32 or more hex digits \
     (`openssl rand -hex 32`), or at least 32 characters of other text";

/// The random part of a token: identifies one session in the cache.
pub(crate) type SessionId = [u8; ID_LEN];

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Wrong length, characters, version, unknown key or bad MAC.
    Invalid,
}

struct Key {
    kid: u8,
    /// SHA-256 states after the key's inner and outer pad blocks: what HMAC
    /// computes first for every message, done once here.
    inner: [u32; 8],
    outer: [u32; 8],
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

impl Key {
    fn new(bytes: &[u8]) -> Key {
        // RFC 2104: a key longer than the block is hashed first, then padded.
        let mut block = [0u8; 64];
        if bytes.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(bytes));
        } else {
            block[..bytes.len()].copy_from_slice(bytes);
        }
        let pad = |byte: u8| {
            let mut padded = block;
            padded.iter_mut().for_each(|b| *b ^= byte);
            let mut state = SHA256_IV;
            sha2::compress256(&mut state, &[GenericArray::from(padded)]);
            state
        };
        Key {
            kid: Sha256::digest(bytes)[0],
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }
}

/// The token keys: the first signs, all verify.
pub(crate) struct TokenKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys as raw bytes; the first one signs. Callers check lengths first.
    pub(crate) fn new(keys: &[Secret]) -> Self {
        let keys = keys
            .iter()
            .map(|k| Key::new(k.expose().as_bytes()))
            .collect();
        TokenKeys { keys }
    }

    /// A fresh random key for a single-instance deployment.
    pub(crate) fn random_key() -> Secret {
        Secret::new(hex(&random_bytes::<32>()))
    }

    /// Mints a token for a new random session id.
    pub(crate) fn mint(&self) -> (SessionId, String) {
        let id = random_bytes::<ID_LEN>();
        (id, self.token_for(&id))
    }

    pub(crate) fn token_for(&self, id: &SessionId) -> String {
        let key = &self.keys[0];
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1] = key.kid;
        raw[2..SIGNED_LEN].copy_from_slice(id);
        let signed: [u8; SIGNED_LEN] = raw[..SIGNED_LEN].try_into().expect("fixed length");
        raw[SIGNED_LEN..].copy_from_slice(&mac(key, &signed));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The opaque handle a device list shows for a session, by its store
    /// id: the MAC under the signing key over a message no token has (its
    /// first byte is [`HANDLE_DOMAIN`], never a token version), in hex. It
    /// names the session without being its token or its store key, and
    /// nobody without the key can make one. A key rotation changes it.
    pub(crate) fn handle_for(&self, store_id: &[u8; ID_LEN]) -> String {
        let mut msg = [0u8; SIGNED_LEN];
        msg[0] = HANDLE_DOMAIN;
        msg[2..].copy_from_slice(store_id);
        hex(&mac(&self.keys[0], &msg))
    }

    /// Checks a token's shape and MAC, in constant time over the MAC.
    pub(crate) fn verify(&self, token: &str) -> Result<SessionId, TokenError> {
        let parsed = self.parse(token)?;
        if self.check(&parsed) {
            Ok(parsed.id())
        } else {
            Err(TokenError::Invalid)
        }
    }

    /// Checks a token's shape only (length, alphabet, version): no MAC yet.
    #[inline]
    pub(crate) fn parse(&self, token: &str) -> Result<Parsed, TokenError> {
        let raw = token
            .as_bytes()
            .try_into()
            .ok()
            .and_then(decode)
            .ok_or(TokenError::Invalid)?;
        if raw[0] != VERSION {
            return Err(TokenError::Invalid);
        }
        Ok(Parsed { raw })
    }

    /// Checks a parsed token's MAC against every key with its key id, in
    /// constant time over the MAC.
    pub(crate) fn check(&self, parsed: &Parsed) -> bool {
        let raw = &parsed.raw;
        let signed: &[u8; SIGNED_LEN] = raw[..SIGNED_LEN].try_into().expect("fixed length");
        let given = &raw[SIGNED_LEN..RAW_LEN];
        let mut ok = false;
        for key in self.keys.iter().filter(|k| k.kid == raw[1]) {
            ok |= bool::from(mac(key, signed).ct_eq(given));
        }
        ok
    }
}

/// A token of the right shape whose MAC is not checked yet.
pub(crate) struct Parsed {
    raw: [u8; RAW_LEN],
}

impl Parsed {
    /// The session id the token names (not yet authenticated).
    #[inline]
    pub(crate) fn id(&self) -> SessionId {
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&self.raw[2..2 + ID_LEN]);
        id
    }
}

/// Values of the URL-safe base64 alphabet; 0xff marks every other byte.
static BASE64URL: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes a token's 46 characters (unpadded URL-safe base64) into its 34
/// bytes, refusing any other character and non-zero trailing bits, as the
/// `base64` crate's `URL_SAFE_NO_PAD` does (checked in the tests), in a
/// straight line for this one length.
#[inline]
fn decode(text: &[u8; TOKEN_LEN]) -> Option<[u8; RAW_LEN]> {
    let mut raw = [0u8; RAW_LEN];
    let mut seen = 0u8;
    for i in 0..11 {
        let a = BASE64URL[text[4 * i] as usize];
        let b = BASE64URL[text[4 * i + 1] as usize];
        let c = BASE64URL[text[4 * i + 2] as usize];
        let d = BASE64URL[text[4 * i + 3] as usize];
        seen |= a | b | c | d;
        let n = (a as u32) << 18 | (b as u32) << 12 | (c as u32) << 6 | d as u32;
        raw[3 * i] = (n >> 16) as u8;
        raw[3 * i + 1] = (n >> 8) as u8;
        raw[3 * i + 2] = n as u8;
    }
    // The last two characters carry one byte and four bits that must be zero.
    let (a, b) = (BASE64URL[text[44] as usize], BASE64URL[text[45] as usize]);
    seen |= a | b;
    raw[RAW_LEN - 1] = a << 2 | b >> 4;
    (seen < 64 && b & 0x0f == 0).then_some(raw)
}

/// HMAC-SHA256(key, msg) truncated to 128 bits: two SHA-256 compressions
/// from the key's precomputed pad states, the same bytes as the `hmac`
/// crate gives (checked in the tests).
#[inline]
fn mac(key: &Key, msg: &[u8; SIGNED_LEN]) -> [u8; MAC_LEN] {
    // Inner hash: the message, 0x80, zeros, then the bit length of the pad
    // block plus the message, in one block (18 bytes fit with room to spare).
    let mut block = [0u8; 64];
    block[..SIGNED_LEN].copy_from_slice(msg);
    block[SIGNED_LEN] = 0x80;
    block[56..].copy_from_slice(&(((64 + SIGNED_LEN) * 8) as u64).to_be_bytes());
    let mut inner = key.inner;
    sha2::compress256(&mut inner, &[GenericArray::from(block)]);
    // Outer hash over the 32-byte inner digest, padded the same way.
    let mut block = [0u8; 64];
    for (chunk, word) in block[..32].chunks_exact_mut(4).zip(inner) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    block[32] = 0x80;
    block[56..].copy_from_slice(&(((64 + 32) * 8) as u64).to_be_bytes());
    let mut outer = key.outer;
    sha2::compress256(&mut outer, &[GenericArray::from(block)]);
    let mut out = [0u8; MAC_LEN];
    for (chunk, word) in out.chunks_exact_mut(4).zip(outer) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// `text` without leading and trailing spaces and tabs: what `str::trim`
/// does for a header value (`to_str` admits no other whitespace), inlined
/// into the hit path where the compiler may not inline `trim`.
#[inline(always)]
fn trim_ows(text: &str) -> &str {
    let bytes = text.as_bytes();
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    // Both ends are at ASCII bytes, so at character boundaries.
    &text[start..end]
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

// ------------------------------------------------- reading it from a request

/// Where the layer and the logout route read the session token.
///
/// ```
/// use wxlogin::TokenSource;
/// let bearer = TokenSource::Bearer; // `Authorization: Bearer <token>`, the default
/// let custom = TokenSource::header("X-WX-Session").unwrap();
/// # let _ = (bearer, custom);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` (scheme matched case-insensitively).
    #[default]
    Bearer,
    /// The whole value of a named header, such as `X-WX-Session`.
    Header(HeaderName),
}

impl TokenSource {
    /// A named header; `None` if the name is not a valid header name.
    ///
    /// ```
    /// use wxlogin::TokenSource;
    /// assert!(TokenSource::header("X-WX-Session").is_some());
    /// assert!(TokenSource::header("not a header name").is_none());
    /// ```
    pub fn header(name: &str) -> Option<Self> {
        HeaderName::from_bytes(name.as_bytes())
            .ok()
            .map(TokenSource::Header)
    }

    /// The token in these headers, or the error-table code for its absence.
    #[inline]
    pub(crate) fn read<'a>(&self, headers: &'a HeaderMap) -> Result<&'a str, ErrorCode> {
        let value = match self {
            TokenSource::Bearer => headers.get(header::AUTHORIZATION),
            TokenSource::Header(name) => headers.get(name),
        };
        let Some(value) = value else {
            return Err(ErrorCode::MissingToken);
        };
        let text = trim_ows(value.to_str().map_err(|_| ErrorCode::InvalidToken)?);
        let token = match self {
            TokenSource::Bearer => {
                let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(ErrorCode::MissingToken);
                }
                trim_ows(rest)
            }
            TokenSource::Header(_) => text,
        };
        if token.is_empty() {
            Err(ErrorCode::MissingToken)
        } else {
            Ok(token)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> TokenKeys {
        TokenKeys::new(&list.iter().map(|k| Secret::new(*k)).collect::<Vec<_>>())
    }

    #[test]
    fn key_strength_counts_hex_digits_and_characters() {
        for (key, strong) in [
            ("0123456789abcdef0123456789abcdef", true),
            ("0123456789abcdef0123456789abcde", false),
            ("0123456789ABCDEF0123456789abcdef01", true),
            ("0123456789abcdef", false),
            ("an-odd-length-hex-like-key-text!", true),
            ("short text", false),
            ("ключ-из-тридцати-двух-символов!!", true),
            ("", false),
        ] {
            assert_eq!(key_is_strong(key), strong, "{key}");
        }
    }

    #[test]
    fn decode_matches_the_base64_crate() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let by_crate = |text: &[u8]| {
            let mut out = [0u8; RAW_LEN + 2];
            match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
                Ok(RAW_LEN) => Some(out[..RAW_LEN].to_vec()),
                _ => None,
            }
        };
        for _ in 0..4 {
            let (_, token) = k.mint();
            // Every byte value at every position of a valid token.
            for i in 0..TOKEN_LEN {
                for byte in 0..=255u8 {
                    let mut text: [u8; TOKEN_LEN] = token.as_bytes().try_into().unwrap();
                    text[i] = byte;
                    assert_eq!(
                        decode(&text).map(|r| r.to_vec()),
                        by_crate(&text),
                        "byte {byte} at {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn mac_matches_the_hmac_crate() {
        use hmac::{Hmac, Mac};
        // Short, block-sized and longer-than-a-block keys (hashed first).
        for key in ["0123456789abcdef", &"k".repeat(64), &"long-key".repeat(20)] {
            let k = Key::new(key.as_bytes());
            for seed in 0u8..8 {
                let msg: [u8; SIGNED_LEN] =
                    std::array::from_fn(|i| seed.wrapping_mul(31) ^ i as u8);
                let mut reference = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
                reference.update(&msg);
                let full = reference.finalize().into_bytes();
                assert_eq!(mac(&k, &msg), full[..MAC_LEN], "key of {} bytes", key.len());
            }
        }
    }

    #[test]
    fn round_trip_and_shape() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let (id, token) = k.mint();
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(token.len() < 100);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(k.verify(&token), Ok(id));
    }

    #[test]
    fn every_single_byte_change_is_rejected() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let (_, token) = k.mint();
        for i in 0..token.len() {
            let mut b = token.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(b).unwrap();
            if t != token {
                assert_eq!(k.verify(&t), Err(TokenError::Invalid), "position {i}");
            }
        }
        assert_eq!(
            k.verify(&token[..token.len() - 1]),
            Err(TokenError::Invalid)
        );
        assert_eq!(k.verify(""), Err(TokenError::Invalid));
    }

    #[test]
    fn a_changed_mac_keeps_the_shape_but_fails_the_check() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let (id, token) = k.mint();
        let parsed = k.parse(&token).unwrap();
        assert_eq!(parsed.id(), id);
        assert!(k.check(&parsed));
        let mut b = token.clone().into_bytes();
        b[40] = if b[40] == b'A' { b'B' } else { b'A' };
        let forged = k.parse(std::str::from_utf8(&b).unwrap()).unwrap();
        assert_eq!(forged.id(), id);
        assert!(!k.check(&forged));
    }

    #[test]
    fn rotation_old_keys_verify_new_key_signs() {
        let old = keys(&["old-key-old-key-old-key-old-key!"]);
        let (id, old_token) = old.mint();
        let rotated = keys(&[
            "new-key-new-key-new-key-new-key!",
            "old-key-old-key-old-key-old-key!",
        ]);
        assert_eq!(rotated.verify(&old_token), Ok(id));
        let (id2, new_token) = rotated.mint();
        assert_eq!(rotated.verify(&new_token), Ok(id2));
        assert_eq!(old.verify(&new_token), Err(TokenError::Invalid));
        let other = keys(&["another-key-another-key-another!"]);
        assert_eq!(other.verify(&old_token), Err(TokenError::Invalid));
    }
}
