//! Key material, parsed once at start-up: the merchant's API private key,
//! WeChat Pay's public keys (the `PUB_KEY_ID_…` key or platform
//! certificates), and the APIv3 key. `Debug` never shows a secret.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use x509_cert::der::Decode as _;
use zeroize::Zeroizing;

/// Why a key did not parse; the builder turns it into a `BuildError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyError(pub(crate) &'static str);

/// One PEM block: its label and DER bytes. Text around the block is ignored.
pub(crate) fn pem_block(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let start = text
        .find("-----BEGIN ")
        .ok_or(KeyError("no PEM block (-----BEGIN ...-----)"))?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or(KeyError("broken PEM header"))?;
    let label = rest[..label_end].to_owned();
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body
        .find(&end_marker)
        .ok_or(KeyError("PEM block without its END line"))?;
    let b64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| KeyError("PEM block is not base64"))?;
    Ok((label, der))
}

/// The merchant API private key (`apiclient_key.pem`), RSA 2048+.
pub(crate) struct MerchantKey {
    pair: RsaKeyPair,
    rng: SystemRandom,
}

impl MerchantKey {
    /// Parses PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub(crate) fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_block(pem)?;
        let der = Zeroizing::new(der);
        let pair = match label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            _ => {
                return Err(KeyError(
                    "expected a PRIVATE KEY or RSA PRIVATE KEY PEM block",
                ))
            }
        }
        .map_err(|_| KeyError("not an RSA private key ring accepts (RSA 2048..8192)"))?;
        Ok(MerchantKey {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// SHA256withRSA (PKCS#1 v1.5) of `message`, Base64. Deterministic.
    /// Costs about a millisecond: async callers go through
    /// [`sign_off_worker`](crate::pay::sign::sign_off_worker).
    pub(crate) fn sign(&self, message: &[u8]) -> String {
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
            .expect("RSA signing with a valid key and a buffer of the modulus length");
        base64::engine::general_purpose::STANDARD.encode(sig)
    }
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MerchantKey([redacted])")
    }
}

/// A WeChat Pay RSA public key (the `PUB_KEY_ID_…` key, or a platform
/// certificate's), as the PKCS#1 `RSAPublicKey` DER ring verifies with.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct VerifyKey {
    rsa_public_key: Vec<u8>,
}

impl VerifyKey {
    /// From a `BEGIN PUBLIC KEY` (SPKI) or `BEGIN RSA PUBLIC KEY` (PKCS#1) PEM.
    pub(crate) fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_block(pem)?;
        match label.as_str() {
            "PUBLIC KEY" => Self::from_spki_der(&der),
            "RSA PUBLIC KEY" => Ok(VerifyKey {
                rsa_public_key: der,
            }),
            "CERTIFICATE" => Ok(Certificate::from_der(&der)?.key),
            _ => Err(KeyError("expected a PUBLIC KEY PEM block")),
        }
    }

    fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(der)
            .map_err(|_| KeyError("not a SubjectPublicKeyInfo"))?;
        Self::from_spki(&spki)
    }

    fn from_spki(spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Result<Self, KeyError> {
        // rsaEncryption, 1.2.840.113549.1.1.1
        if spki.algorithm.oid.to_string() != "1.2.840.113549.1.1.1" {
            return Err(KeyError("not an RSA public key"));
        }
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or(KeyError("public key bit string has unused bits"))?;
        let key = VerifyKey {
            rsa_public_key: raw.to_vec(),
        };
        // A key ring refuses (too short, malformed) is refused here, at start-up.
        if key.modulus_bits().is_none() {
            return Err(KeyError(
                "RSA public key ring does not accept (2048..8192 bits)",
            ));
        }
        Ok(key)
    }

    fn modulus_bits(&self) -> Option<usize> {
        let bits = self.modulus()?.len() * 8;
        (2048..=8192).contains(&bits).then_some(bits)
    }

    fn modulus(&self) -> Option<&[u8]> {
        let mut reader = Der(&self.rsa_public_key);
        let mut seq = Der(reader.take(0x30)?);
        let n = seq.take(0x02)?;
        seq.take(0x02)?;
        let n = n.strip_prefix(&[0]).unwrap_or(n);
        Some(n)
    }

    /// Verifies a Base64 SHA256withRSA signature over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.rsa_public_key)
            .verify(message, &sig)
            .is_ok()
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyKey(RSA)")
    }
}

/// A tiny DER reader: enough to find an RSA modulus.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn take(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&t, rest) = self.0.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let (value, tail) = rest.split_at(len);
        self.0 = tail;
        Some(value)
    }
}

/// A platform certificate: its serial (upper-case hex, as in
/// `Wechatpay-Serial`), validity and public key.
#[derive(Debug, Clone)]
pub(crate) struct Certificate {
    pub(crate) serial: String,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    pub(crate) key: VerifyKey,
}

impl Certificate {
    pub(crate) fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_block(pem)?;
        if label != "CERTIFICATE" {
            return Err(KeyError("expected a CERTIFICATE PEM block"));
        }
        Self::from_der(&der)
    }

    pub(crate) fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|_| KeyError("not an X.509 certificate"))?;
        let tbs = &cert.tbs_certificate;
        let serial = tbs
            .serial_number
            .as_bytes()
            .iter()
            .skip_while(|b| **b == 0)
            .map(|b| format!("{b:02X}"))
            .collect::<String>();
        let time = |t: x509_cert::time::Time| UNIX_EPOCH + t.to_unix_duration();
        Ok(Certificate {
            serial,
            not_before: time(tbs.validity.not_before),
            not_after: time(tbs.validity.not_after),
            key: VerifyKey::from_spki(&tbs.subject_public_key_info)?,
        })
    }

    /// Whether the certificate is valid at `now`.
    pub(crate) fn valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now + Duration::from_secs(300) && now <= self.not_after
    }
}

/// The APIv3 key: exactly 32 bytes, used raw as the AES-256-GCM key.
#[derive(Clone)]
pub(crate) struct ApiV3Key(Zeroizing<[u8; 32]>);

impl ApiV3Key {
    pub(crate) fn new(key: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = key
            .try_into()
            .map_err(|_| KeyError("the APIv3 key must be exactly 32 bytes"))?;
        Ok(ApiV3Key(Zeroizing::new(bytes)))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
