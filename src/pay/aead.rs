//! AEAD_AES_256_GCM, as WeChat Pay encrypts notification resources and
//! platform certificates: the 32-byte APIv3 key used raw, a 12-byte nonce,
//! the `associated_data` as AAD, Base64(ciphertext ‖ 16-byte tag).

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::keys::ApiV3Key;

/// Why a resource did not decrypt. Never says more than that to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AeadError {
    /// The nonce is not 12 bytes.
    Nonce,
    /// The ciphertext is not Base64, or shorter than the tag.
    Encoding,
    /// The tag does not match: wrong key, AAD, nonce or a tampered ciphertext.
    Tag,
}

fn key(api_v3_key: &ApiV3Key) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, api_v3_key.bytes()).expect("a 32-byte AES-256 key"),
    )
}

/// Decrypts one resource; the plaintext only if the tag verifies.
pub(crate) fn decrypt(
    api_v3_key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, AeadError> {
    let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes()).map_err(|_| AeadError::Nonce)?;
    let mut buf = base64::engine::general_purpose::STANDARD
        .decode(ciphertext_b64.as_bytes())
        .map_err(|_| AeadError::Encoding)?;
    if buf.len() < AES_256_GCM.tag_len() {
        return Err(AeadError::Encoding);
    }
    let plain_len = key(api_v3_key)
        .open_in_place(nonce, Aad::from(associated_data.as_bytes()), &mut buf)
        .map_err(|_| AeadError::Tag)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// Encrypts like WeChat Pay does (for the fake WeChat Pay and tests).
#[cfg_attr(not(feature = "mock"), allow(dead_code))]
pub(crate) fn encrypt(
    api_v3_key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<String, AeadError> {
    let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes()).map_err(|_| AeadError::Nonce)?;
    let mut buf = plaintext.to_vec();
    key(api_v3_key)
        .seal_in_place_append_tag(nonce, Aad::from(associated_data.as_bytes()), &mut buf)
        .map_err(|_| AeadError::Encoding)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}
