//! Entry points for the known-answer tests, property tests and the fuzz
//! target (feature `fuzzing`); not a stable API.

use std::time::SystemTime;

use super::keys::{ApiV3Key, MerchantKey, VerifyKey};

/// SHA256withRSA of `message` with a PEM private key, Base64.
pub fn sign(private_key_pem: &str, message: &[u8]) -> Option<String> {
    Some(MerchantKey::from_pem(private_key_pem).ok()?.sign(message))
}

/// A signer with the key parsed once (benchmarks).
pub fn signer(private_key_pem: &str) -> Option<impl Fn(&[u8]) -> String> {
    let key = MerchantKey::from_pem(private_key_pem).ok()?;
    Some(move |message: &[u8]| key.sign(message))
}

/// Verifies `timestamp\nnonce\nbody\n` against a Base64 signature with a PEM public key or certificate.
pub fn verify(
    public_key_pem: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    let Ok(key) = VerifyKey::from_pem(public_key_pem) else {
        return false;
    };
    key.verify(
        &super::sign::reply_message(timestamp, nonce, body),
        signature,
    )
}

/// AEAD_AES_256_GCM decryption; `None` for a key that is not 32 bytes or a bad tag.
pub fn decrypt(
    api_v3_key: &str,
    nonce: &str,
    associated_data: &str,
    ciphertext: &str,
) -> Option<Vec<u8>> {
    let key = ApiV3Key::new(api_v3_key.as_bytes()).ok()?;
    super::aead::decrypt(&key, nonce, associated_data, ciphertext).ok()
}

/// AEAD_AES_256_GCM encryption, Base64.
pub fn encrypt(
    api_v3_key: &str,
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Option<String> {
    let key = ApiV3Key::new(api_v3_key.as_bytes()).ok()?;
    super::aead::encrypt(&key, nonce, associated_data, plaintext).ok()
}

/// A `/v3/certificates` body decrypted: `(serial, not_before, not_after)` of each certificate.
pub fn certificates(
    api_v3_key: &str,
    body: &[u8],
) -> Result<Vec<(String, SystemTime, SystemTime)>, String> {
    let key = ApiV3Key::new(api_v3_key.as_bytes()).map_err(|e| e.0.to_owned())?;
    let certs = super::certs::decrypt_certificates(&key, body).map_err(|e| e.to_string())?;
    Ok(certs
        .into_iter()
        .map(|c| (c.serial, c.not_before, c.not_after))
        .collect())
}

/// The notification parser: `Ok((id, event_type))` or the refusal's status.
pub fn parse_notification(body: &[u8]) -> Result<(String, String), u16> {
    super::notify::parse_notification(body)
        .map(|n| (n.id, n.event_type))
        .map_err(|r| r.status.as_u16())
}

/// The notification parser and resource decryption with `api_v3_key`:
/// `Ok(out_trade_no)` of the transaction or refund, or the refusal's status.
pub fn open_notification(api_v3_key: &str, body: &[u8]) -> Result<String, u16> {
    let key = ApiV3Key::new(api_v3_key.as_bytes()).map_err(|_| 500u16)?;
    let n = super::notify::parse_notification(body).map_err(|r| r.status.as_u16())?;
    match super::notify::open_resource(&key, &n).map_err(|r| r.status.as_u16())? {
        super::notify::Event::Transaction(t) => Ok(t.out_trade_no),
        super::notify::Event::Refund(r) => Ok(r.out_trade_no.unwrap_or_default()),
    }
}

/// Whether a timestamp is inside the 5-minute window around `now`.
pub fn in_window(timestamp: &str, now: u64) -> bool {
    super::verify::check_window(timestamp, now).is_ok()
}

/// Fuzz target: the notification parser and decryption never panic; a
/// parsed notification always has the one algorithm and a 12-byte nonce,
/// and only a 4xx ever comes out.
pub fn notification(data: &[u8]) {
    match super::notify::parse_notification(data) {
        Ok(n) => {
            assert_eq!(n.resource.encrypted.algorithm, "AEAD_AES_256_GCM");
            assert_eq!(n.resource.encrypted.nonce.len(), 12);
            let key = ApiV3Key::new(b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").expect("32 bytes");
            if let Err(r) = super::notify::open_resource(&key, &n) {
                assert!(r.status.is_client_error());
            }
        }
        Err(r) => assert!(r.status.is_client_error()),
    }
}
