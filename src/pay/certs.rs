//! The keys that verify WeChat Pay: the `PUB_KEY_ID_…` public key and/or
//! platform certificates downloaded from `/v3/certificates`.
//!
//! Certificates are downloaded on first need and again once older than the
//! refresh interval (under 12 hours), and on an unknown serial at most once
//! a minute. A download keeps every older certificate that is still valid,
//! so old and new both verify during a rotation. Downloads are single-flight
//! per instance: callers that arrive while one runs wait for it and use its
//! result. (Across instances each downloads for itself; the endpoint allows
//! 1000 requests a second, so N instances cost N calls per interval.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::aead;
use super::config::WxPay;
use super::error::{PayError, UNVERIFIED};
use super::keys::{ApiV3Key, Certificate, VerifyKey};
use super::verify;

/// An unknown serial triggers a download at most this often.
const UNKNOWN_SERIAL_RETRY: Duration = Duration::from_secs(60);

pub(crate) struct KeyRing {
    public_key: Option<(String, VerifyKey)>,
    download: bool,
    certs: RwLock<Arc<Vec<Certificate>>>,
    /// When the last download finished (successfully or not).
    last_download: Mutex<Option<Instant>>,
    single_flight: tokio::sync::Mutex<()>,
    refresh: Duration,
    downloads: AtomicUsize,
}

impl KeyRing {
    pub(crate) fn new(
        public_key: Option<(String, VerifyKey)>,
        download: bool,
        certificates: Vec<Certificate>,
        refresh: Duration,
    ) -> Self {
        KeyRing {
            public_key,
            download,
            certs: RwLock::new(Arc::new(certificates)),
            last_download: Mutex::new(None),
            single_flight: tokio::sync::Mutex::new(()),
            refresh,
            downloads: AtomicUsize::new(0),
        }
    }

    pub(crate) fn public_key_id(&self) -> Option<&str> {
        self.public_key.as_ref().map(|(id, _)| id.as_str())
    }

    pub(crate) fn downloads_certificates(&self) -> bool {
        self.download
    }

    /// The key a serial names, among what is loaded now.
    pub(crate) fn lookup(&self, serial: &str) -> Option<VerifyKey> {
        if let Some((id, key)) = &self.public_key {
            if id == serial {
                return Some(key.clone());
            }
        }
        let now = SystemTime::now();
        self.certs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|c| c.serial.eq_ignore_ascii_case(serial) && c.valid_at(now))
            .map(|c| c.key.clone())
    }

    /// Serials of the loaded certificates.
    pub(crate) fn serials(&self) -> Vec<String> {
        self.certs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.serial.clone())
            .collect()
    }

    fn since_download(&self) -> Option<Duration> {
        self.last_download
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.elapsed())
    }

    fn install(&self, fresh: Vec<Certificate>) {
        let now = SystemTime::now();
        let mut guard = self.certs.write().unwrap_or_else(|e| e.into_inner());
        let mut merged: Vec<Certificate> = fresh;
        for old in guard.iter() {
            if old.not_after > now && !merged.iter().any(|c| c.serial == old.serial) {
                merged.push(old.clone());
            }
        }
        *guard = Arc::new(merged);
    }
}

impl WxPay {
    /// The key for `serial`: the public key, a loaded certificate, or (in
    /// certificate mode) one from a download made now because the loaded
    /// set is stale or does not know the serial.
    pub(crate) fn verify_key<'a>(
        &'a self,
        serial: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<VerifyKey>> + Send + 'a>> {
        // Boxed: a download verifies its own error replies through here.
        Box::pin(async move {
            let keys = &self.inner.keys;
            if keys.download && keys.since_download().is_none_or(|d| d >= keys.refresh) {
                let _ = self.refresh_certificates().await;
            }
            if let Some(key) = keys.lookup(serial) {
                return Some(key);
            }
            if keys.download
                && !serial.starts_with("PUB_KEY_ID_")
                && keys
                    .since_download()
                    .is_none_or(|d| d >= UNKNOWN_SERIAL_RETRY)
            {
                let _ = self.refresh_certificates().await;
                return keys.lookup(serial);
            }
            None
        })
    }

    /// Downloads the platform certificates now (single-flight: a caller that
    /// waited for a running download uses its result). Answers the serials
    /// loaded afterwards.
    pub async fn refresh_certificates(&self) -> Result<Vec<String>, PayError> {
        let keys = &self.inner.keys;
        let asked = Instant::now();
        let _flight = keys.single_flight.lock().await;
        let done_meanwhile = keys
            .last_download
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at >= asked);
        if done_meanwhile {
            return Ok(keys.serials());
        }
        let result = self.download_certificates().await;
        *keys.last_download.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        match result {
            Ok(fresh) => {
                keys.install(fresh);
                Ok(keys.serials())
            }
            Err(e) => {
                tracing::warn!(error = %e, "wxlogin::pay: platform certificate download failed");
                Err(e)
            }
        }
    }

    /// How many certificate downloads this client has made.
    pub fn certificate_downloads(&self) -> usize {
        self.inner.keys.downloads.load(Ordering::Relaxed)
    }

    async fn download_certificates(&self) -> Result<Vec<Certificate>, PayError> {
        self.inner.keys.downloads.fetch_add(1, Ordering::Relaxed);
        let reply = self
            .send_with_retries("GET", "/v3/certificates", None)
            .await?;
        if reply.status != 200 {
            return Err(self.download_error_reply(&reply).await);
        }
        let fresh = decrypt_certificates(&self.inner.api_v3_key, &reply.body)?;
        // The reply is signed by one of the certificates it brings (or one we
        // already trust): verify it before installing anything.
        let signed = verify::signed_headers(&reply.headers)
            .map_err(|e| PayError::unavailable(None, format!("{UNVERIFIED}{e}")))?;
        verify::check_window(signed.timestamp, crate::clock::now_secs())
            .map_err(|e| PayError::unavailable(None, format!("{UNVERIFIED}{e}")))?;
        let key = fresh
            .iter()
            .find(|c| c.serial.eq_ignore_ascii_case(signed.serial))
            .map(|c| c.key.clone())
            .or_else(|| self.inner.keys.lookup(signed.serial))
            .ok_or_else(|| PayError::unavailable(None, format!("{UNVERIFIED}unknown serial")))?;
        verify::check_signature(&signed, &reply.body, &key)
            .map_err(|e| PayError::unavailable(None, format!("{UNVERIFIED}{e}")))?;
        Ok(fresh)
    }
}

#[derive(Deserialize)]
struct CertificateList {
    data: Vec<CertificateEntry>,
}

#[derive(Deserialize)]
struct CertificateEntry {
    serial_no: String,
    encrypt_certificate: EncryptedResource,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EncryptedResource {
    pub(crate) algorithm: String,
    pub(crate) ciphertext: String,
    #[serde(default)]
    pub(crate) associated_data: String,
    pub(crate) nonce: String,
}

/// Decrypts and parses a `/v3/certificates` body; each certificate's serial
/// must be the `serial_no` it is listed under.
pub(crate) fn decrypt_certificates(
    api_v3_key: &ApiV3Key,
    body: &[u8],
) -> Result<Vec<Certificate>, PayError> {
    let bad = |why: &str| PayError::unavailable(None, format!("certificate list: {why}"));
    let list: CertificateList = serde_json::from_slice(body).map_err(|_| bad("not JSON"))?;
    let mut out = Vec::with_capacity(list.data.len());
    for entry in list.data {
        let r = &entry.encrypt_certificate;
        if r.algorithm != "AEAD_AES_256_GCM" {
            return Err(bad("unsupported algorithm"));
        }
        let pem = aead::decrypt(api_v3_key, &r.nonce, &r.associated_data, &r.ciphertext)
            .map_err(|_| bad("does not decrypt with the APIv3 key"))?;
        let pem = String::from_utf8(pem).map_err(|_| bad("not a PEM"))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| bad(e.0))?;
        if !cert.serial.eq_ignore_ascii_case(&entry.serial_no) {
            return Err(bad("serial_no does not match the certificate"));
        }
        out.push(cert);
    }
    Ok(out)
}
