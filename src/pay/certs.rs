//! The keys that verify WeChat Pay: the `PUB_KEY_ID_…` public key and/or
//! platform certificates downloaded from `/v3/certificates`.
//!
//! Certificates are downloaded on first need and again once older than the
//! refresh interval (under 12 hours), and on an unknown serial at most once
//! a minute. A download keeps every older certificate that is still valid,
//! so old and new both verify during a rotation. Downloads are single-flight
//! per instance: callers that arrive while one runs wait for it and use its
//! result. With [`WxPayBuilder::share_certificates`] they are single-flight
//! across instances too: one instance takes a lock in the store, downloads,
//! and shares the list *as WeChat Pay sent it* (still encrypted under the
//! APIv3 key); the others wait for it and decrypt it themselves. The AES-GCM
//! tag is what makes the shared copy trustworthy: a store writer without the
//! APIv3 key cannot make a certificate that decrypts, so a damaged or forged
//! copy is ignored (and the instance downloads for itself), never installed.
//!
//! [`WxPayBuilder::share_certificates`]: super::WxPayBuilder::share_certificates

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::store::{timed, AccessTokenCache, SessionStore, SharedAccessToken};
use crate::Secret;

use serde::Deserialize;

use super::aead;
use super::config::WxPay;
use super::error::{PayError, UNVERIFIED};
use super::keys::{ApiV3Key, Certificate, VerifyKey};
use super::verify;

/// An unknown serial triggers a download at most this often.
const UNKNOWN_SERIAL_RETRY: Duration = Duration::from_secs(60);

/// How often an instance waiting for another's download looks for it.
const SHARED_POLL: Duration = Duration::from_millis(50);

/// Where the shared list goes: certificates through the store's shared
/// value slot.
pub(crate) struct SharedCertificates {
    pub(crate) store: Arc<dyn SessionStore>,
    /// The slot's name (`wxpay-certs:<mchid>`); a Redis store keeps it under
    /// `<prefix>:at:{wxpay-certs:<mchid>}`.
    pub(crate) slot: String,
    /// Bounds each store call.
    pub(crate) timeout: Duration,
}

/// What a refresh is for, which says whether a list another instance
/// shared will do.
#[derive(Clone, Copy)]
enum Want<'a> {
    /// The loaded set is older than the refresh interval.
    Fresh,
    /// A serial the loaded set does not know.
    Serial(&'a str),
    /// An explicit refresh: only a list obtained after it was asked.
    Since(u64),
}

pub(crate) struct KeyRing {
    public_key: Option<(String, VerifyKey)>,
    download: bool,
    certs: RwLock<Arc<Vec<Certificate>>>,
    /// When the last download finished (successfully or not).
    last_download: Mutex<Option<Instant>>,
    single_flight: tokio::sync::Mutex<()>,
    refresh: Duration,
    downloads: AtomicUsize,
    shared: Option<SharedCertificates>,
}

impl KeyRing {
    pub(crate) fn new(
        public_key: Option<(String, VerifyKey)>,
        download: bool,
        certificates: Vec<Certificate>,
        refresh: Duration,
        shared: Option<SharedCertificates>,
    ) -> Self {
        KeyRing {
            public_key,
            download,
            certs: RwLock::new(Arc::new(certificates)),
            last_download: Mutex::new(None),
            single_flight: tokio::sync::Mutex::new(()),
            refresh,
            downloads: AtomicUsize::new(0),
            shared,
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
                let _ = self.refresh(Want::Fresh).await;
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
                let _ = self.refresh(Want::Serial(serial)).await;
                return keys.lookup(serial);
            }
            None
        })
    }

    /// Downloads the platform certificates now (single-flight: a caller that
    /// waited for a running download uses its result, and with
    /// [`share_certificates`](super::WxPayBuilder::share_certificates) so
    /// does an instance that waited for another's). Answers the serials
    /// loaded afterwards.
    pub async fn refresh_certificates(&self) -> Result<Vec<String>, PayError> {
        self.refresh(Want::Since(crate::clock::now_ms())).await
    }

    async fn refresh(&self, want: Want<'_>) -> Result<Vec<String>, PayError> {
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
        let result = match &keys.shared {
            Some(shared) => self.refresh_shared(shared, want).await,
            None => self.download_here().await,
        };
        match result {
            Ok((fresh, age_ms)) => {
                // A list another instance obtained earlier counts from then.
                let at = Instant::now();
                let at = at.checked_sub(Duration::from_millis(age_ms)).unwrap_or(at);
                keys.install(fresh);
                *keys.last_download.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
                Ok(keys.serials())
            }
            Err(e) => {
                *keys.last_download.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Instant::now());
                tracing::warn!(error = %e, "wxlogin::pay: platform certificate download failed");
                Err(e)
            }
        }
    }

    /// Through the store: a shared list that will do, or the lock and a
    /// download that is then shared, or the lock holder's list once it
    /// appears. Trouble with the store, or a shared list that does not
    /// decrypt, falls back to downloading directly. Answers the list and
    /// its age in milliseconds.
    async fn refresh_shared(
        &self,
        shared: &SharedCertificates,
        want: Want<'_>,
    ) -> Result<(Vec<Certificate>, u64), PayError> {
        let Some(cache) = shared.store.access_token_cache() else {
            return self.download_here().await;
        };
        let owner = crate::random::random_alnum(24);
        let give_up_at = crate::clock::now_ms() + self.inner.deadline.as_millis() as u64;
        loop {
            match self.shared_list(shared, cache, want).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(%reason, "wxlogin::pay: shared certificates unreadable; downloading directly");
                    return self.download_here().await;
                }
            }
            let lock_ttl = self.inner.deadline + Duration::from_secs(1);
            match timed(
                shared.timeout,
                cache.try_lock(&shared.slot, &owner, lock_ttl),
            )
            .await
            {
                Ok(true) => return self.download_and_share(shared, cache, &owner).await,
                Ok(false) => {}
                Err(reason) => {
                    tracing::warn!(%reason, "wxlogin::pay: certificate lock unavailable; downloading directly");
                    return self.download_here().await;
                }
            }
            if crate::clock::now_ms() >= give_up_at {
                tracing::warn!("wxlogin::pay: the instance downloading certificates did not finish; downloading directly");
                return self.download_here().await;
            }
            tokio::time::sleep(SHARED_POLL).await;
        }
    }

    /// A download for this instance alone: the list, aged 0 ms.
    async fn download_here(&self) -> Result<(Vec<Certificate>, u64), PayError> {
        self.download_certificates()
            .await
            .map(|(fresh, _)| (fresh, 0))
    }

    /// Holding the lock: download, share the body as sent, unlock.
    async fn download_and_share(
        &self,
        shared: &SharedCertificates,
        cache: &dyn AccessTokenCache,
        owner: &str,
    ) -> Result<(Vec<Certificate>, u64), PayError> {
        let result = self.download_certificates().await;
        if let Ok((_, body)) = &result {
            match std::str::from_utf8(body) {
                Ok(text) => {
                    let now = crate::clock::now_ms();
                    let value = SharedAccessToken {
                        token: Secret::new(text),
                        obtained_at_ms: now,
                        expires_at_ms: now + self.inner.keys.refresh.as_millis() as u64,
                    };
                    if let Err(reason) =
                        timed(shared.timeout, cache.put(&shared.slot, &value)).await
                    {
                        tracing::warn!(%reason, "wxlogin::pay: sharing the certificates failed");
                    }
                }
                Err(_) => tracing::warn!("wxlogin::pay: certificate list is not UTF-8; not shared"),
            }
        }
        if let Err(reason) = timed(shared.timeout, cache.unlock(&shared.slot, owner)).await {
            tracing::warn!(%reason, "wxlogin::pay: releasing the certificate lock failed (it expires by itself)");
        }
        result.map(|(fresh, _)| (fresh, 0))
    }

    /// The shared list, decrypted, if it serves `want`.
    async fn shared_list(
        &self,
        shared: &SharedCertificates,
        cache: &dyn AccessTokenCache,
        want: Want<'_>,
    ) -> Result<Option<(Vec<Certificate>, u64)>, String> {
        let Some(value) = timed(shared.timeout, cache.get(&shared.slot)).await? else {
            return Ok(None);
        };
        let now = crate::clock::now_ms();
        let age_ms = now.saturating_sub(value.obtained_at_ms);
        let recent = match want {
            Want::Fresh | Want::Serial(_) => age_ms < self.inner.keys.refresh.as_millis() as u64,
            Want::Since(asked_ms) => value.obtained_at_ms >= asked_ms,
        };
        if !recent {
            return Ok(None);
        }
        let fresh = match decrypt_certificates(
            &self.inner.api_v3_key,
            value.token.expose().as_bytes(),
        ) {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "wxlogin::pay: the shared certificate list does not decrypt; ignored");
                return Ok(None);
            }
        };
        if let Want::Serial(serial) = want {
            if !fresh.iter().any(|c| c.serial.eq_ignore_ascii_case(serial)) {
                return Ok(None);
            }
        }
        Ok(Some((fresh, age_ms)))
    }

    /// How many certificate downloads this client has made.
    pub fn certificate_downloads(&self) -> usize {
        self.inner.keys.downloads.load(Ordering::Relaxed)
    }

    /// One verified download: the certificates and the body they came in.
    async fn download_certificates(&self) -> Result<(Vec<Certificate>, bytes::Bytes), PayError> {
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
        Ok((fresh, reply.body))
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
