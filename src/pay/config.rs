//! Start-up configuration of WeChat Pay: the [`WxPay`] builder and handle.
//! Keys are parsed once here; a bad one is a [`BuildError`], never a
//! failure at the first payment.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::certs::{KeyRing, SharedCertificates};
use super::keys::{ApiV3Key, Certificate, KeyError, MerchantKey, VerifyKey};
use crate::store::SessionStore;
use crate::{BuildError, Secret};

/// WeChat Pay's API host.
pub const DEFAULT_PAY_API_BASE: &str = "https://api.mch.weixin.qq.com";

/// How often platform certificates are downloaded again (WeChat asks for under 12 hours).
pub const DEFAULT_CERTIFICATE_REFRESH: Duration = Duration::from_secs(6 * 3600);

/// The WeChat Pay client of one merchant and one mini program: signs
/// requests, verifies replies and notifications, signs `wx.requestPayment`.
/// Cheap to clone.
///
/// ```
/// # #[cfg(feature = "mock")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wxlogin::pay::{fake, WxPay};
/// let pay = WxPay::builder()
///     .mchid("1900000001")
///     .app_id("wx1")
///     .merchant_serial(fake::TEST_MERCHANT_SERIAL)
///     .merchant_key_pem(fake::TEST_MERCHANT_KEY_PEM)
///     .api_v3_key(fake::TEST_API_V3_KEY)
///     .public_key(fake::TEST_PUBLIC_KEY_ID, fake::TEST_PUBLIC_KEY_PEM)
///     .notify_url("https://example.com/wx/pay/notify")
///     .build()?;
/// // Secrets never show.
/// assert!(!format!("{pay:?}").contains(fake::TEST_API_V3_KEY));
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "mock"))]
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct WxPay {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) mchid: String,
    pub(crate) app_id: String,
    pub(crate) merchant_serial: String,
    pub(crate) key: Arc<MerchantKey>,
    pub(crate) api_v3_key: ApiV3Key,
    pub(crate) keys: KeyRing,
    pub(crate) api_base: String,
    pub(crate) notify_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) deadline: Duration,
    pub(crate) attempt_timeout: Duration,
}

impl fmt::Debug for WxPay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("WxPay")
            .field("mchid", &i.mchid)
            .field("app_id", &i.app_id)
            .field("merchant_serial", &i.merchant_serial)
            .field("merchant_key", &i.key)
            .field("api_v3_key", &i.api_v3_key)
            .field("public_key_id", &i.keys.public_key_id())
            .field("platform_certificates", &i.keys.downloads_certificates())
            .field("api_base", &i.api_base)
            .field("notify_url", &i.notify_url)
            .finish()
    }
}

/// Builds a [`WxPay`]; see [`WxPay::builder`].
#[must_use]
pub struct WxPayBuilder {
    mchid: Option<String>,
    app_id: Option<String>,
    merchant_serial: Option<String>,
    merchant_key_pem: Option<Secret>,
    api_v3_key: Option<Secret>,
    public_key: Option<(String, String)>,
    platform_certificates: bool,
    certificates: Vec<String>,
    api_base: String,
    notify_url: Option<String>,
    deadline: Duration,
    attempt_timeout: Duration,
    refresh: Duration,
    shared: Option<(Arc<dyn SessionStore>, Duration)>,
}

impl fmt::Debug for WxPayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WxPayBuilder")
            .field("mchid", &self.mchid)
            .field("app_id", &self.app_id)
            .field("merchant_serial", &self.merchant_serial)
            .field("merchant_key_pem", &self.merchant_key_pem)
            .field("api_v3_key", &self.api_v3_key)
            .field("public_key_id", &self.public_key.as_ref().map(|(id, _)| id))
            .field("platform_certificates", &self.platform_certificates)
            .field("api_base", &self.api_base)
            .finish()
    }
}

fn invalid(field: &'static str) -> impl Fn(KeyError) -> BuildError {
    move |e| BuildError::InvalidValue { field, reason: e.0 }
}

impl WxPay {
    /// A builder. Required: `mchid`, `app_id`, `merchant_serial`,
    /// `merchant_key_pem`, `api_v3_key`, `notify_url`, and at least one
    /// way to verify WeChat Pay: [`public_key`](WxPayBuilder::public_key)
    /// and/or [`platform_certificates`](WxPayBuilder::platform_certificates).
    pub fn builder() -> WxPayBuilder {
        WxPayBuilder {
            mchid: None,
            app_id: None,
            merchant_serial: None,
            merchant_key_pem: None,
            api_v3_key: None,
            public_key: None,
            platform_certificates: false,
            certificates: Vec::new(),
            api_base: DEFAULT_PAY_API_BASE.to_owned(),
            notify_url: None,
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(5),
            refresh: DEFAULT_CERTIFICATE_REFRESH,
            shared: None,
        }
    }

    /// The merchant id.
    pub fn mchid(&self) -> &str {
        &self.inner.mchid
    }

    /// The mini program's appid (the prepay `appid` and the paySign `appId`).
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// The notify URL sent with each prepay.
    pub fn notify_url(&self) -> &str {
        &self.inner.notify_url
    }
}

impl WxPayBuilder {
    /// The merchant id (`mchid`).
    pub fn mchid(mut self, mchid: impl Into<String>) -> Self {
        self.mchid = Some(mchid.into());
        self
    }

    /// The mini program's appid, bound to the merchant.
    pub fn app_id(mut self, app_id: impl Into<String>) -> Self {
        self.app_id = Some(app_id.into());
        self
    }

    /// The serial number of the merchant API certificate (sent as `serial_no`).
    pub fn merchant_serial(mut self, serial: impl Into<String>) -> Self {
        self.merchant_serial = Some(serial.into());
        self
    }

    /// The merchant API private key, PEM (`apiclient_key.pem`, PKCS#8; PKCS#1 accepted).
    pub fn merchant_key_pem(mut self, pem: impl Into<Secret>) -> Self {
        self.merchant_key_pem = Some(pem.into());
        self
    }

    /// The APIv3 key: exactly 32 bytes, or `build` fails.
    pub fn api_v3_key(mut self, key: impl Into<Secret>) -> Self {
        self.api_v3_key = Some(key.into());
        self
    }

    /// Public-key mode: the WeChat Pay public key (PEM) and its id
    /// `PUB_KEY_ID_…`. Requests then carry `Wechatpay-Serial: PUB_KEY_ID_…`.
    pub fn public_key(mut self, id: impl Into<String>, pem: impl Into<String>) -> Self {
        self.public_key = Some((id.into(), pem.into()));
        self
    }

    /// Platform-certificate mode: download `/v3/certificates` (decrypted with
    /// the APIv3 key, the reply verified with the certificates it brings) on
    /// first need and every [`certificate_refresh`](Self::certificate_refresh);
    /// old and new certificates are both kept while valid. With
    /// [`public_key`](Self::public_key) too, both verify (the 7-day migration).
    pub fn platform_certificates(mut self) -> Self {
        self.platform_certificates = true;
        self
    }

    /// A platform certificate known in advance (PEM), beside any downloaded.
    pub fn platform_certificate_pem(mut self, pem: impl Into<String>) -> Self {
        self.certificates.push(pem.into());
        self
    }

    /// How often certificates are downloaded again; at most 12 hours.
    pub fn certificate_refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// Shares the downloaded platform certificates between instances
    /// through `store` (a clone of the sessions' [`RedisStore`]), so that
    /// of N instances one downloads per refresh and the others wait for its
    /// list: one lock and one value under `<prefix>:at:{wxpay-certs:<mchid>}`
    /// (the slot the shared WeChat access token uses, named for the
    /// merchant). The list is shared as WeChat Pay sent it, still encrypted
    /// under the APIv3 key, and each instance decrypts it itself, so the
    /// store never holds a usable certificate that WeChat Pay did not issue
    /// (one that does not decrypt is ignored). Each store call is bounded by
    /// `store_timeout`; when the store is in trouble, or the lock holder
    /// does not finish within the [`deadline`](Self::deadline), the instance
    /// downloads for itself. A store without a shared slot (the memory
    /// store) changes nothing.
    ///
    /// [`RedisStore`]: crate::store::RedisStore
    pub fn share_certificates(mut self, store: impl SessionStore, store_timeout: Duration) -> Self {
        self.shared = Some((Arc::new(store), store_timeout));
        self
    }

    /// WeChat Pay's base URL (default [`DEFAULT_PAY_API_BASE`]), for proxies and the fake.
    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// The notify URL sent with each prepay (WeChat wants public HTTPS, no query).
    pub fn notify_url(mut self, url: impl Into<String>) -> Self {
        self.notify_url = Some(url.into());
        self
    }

    /// The overall deadline of one call, retries included (default 10 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The timeout of one attempt (default 5 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Checks and parses everything.
    pub fn build(self) -> Result<WxPay, BuildError> {
        let required = |v: Option<String>, field: &'static str| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or(BuildError::InvalidValue {
                    field,
                    reason: "required",
                })
        };
        let mchid = required(self.mchid, "mchid")?;
        let app_id = required(self.app_id, "app_id")?;
        let merchant_serial = required(self.merchant_serial, "merchant_serial")?;
        let notify_url = required(self.notify_url, "notify_url")?;
        if notify_url.contains('?') {
            return Err(BuildError::InvalidValue {
                field: "notify_url",
                reason: "WeChat Pay refuses a notify URL with a query string",
            });
        }
        let key_pem = self.merchant_key_pem.ok_or(BuildError::InvalidValue {
            field: "merchant_key_pem",
            reason: "required",
        })?;
        let key = MerchantKey::from_pem(key_pem.expose()).map_err(invalid("merchant_key_pem"))?;
        let api_v3_key = self.api_v3_key.ok_or(BuildError::InvalidValue {
            field: "api_v3_key",
            reason: "required",
        })?;
        let api_v3_key =
            ApiV3Key::new(api_v3_key.expose().as_bytes()).map_err(invalid("api_v3_key"))?;
        let public_key = match self.public_key {
            Some((id, pem)) => {
                if !id.starts_with("PUB_KEY_ID_") {
                    return Err(BuildError::InvalidValue {
                        field: "public_key",
                        reason: "the key id must start with PUB_KEY_ID_",
                    });
                }
                Some((
                    id,
                    VerifyKey::from_pem(&pem).map_err(invalid("public_key"))?,
                ))
            }
            None => None,
        };
        let mut certificates = Vec::new();
        for pem in &self.certificates {
            certificates
                .push(Certificate::from_pem(pem).map_err(invalid("platform_certificate_pem"))?);
        }
        if public_key.is_none() && !self.platform_certificates && certificates.is_empty() {
            return Err(BuildError::InvalidValue {
                field: "public_key",
                reason: "configure the WeChat Pay public key, platform certificates, or both",
            });
        }
        if self.refresh.is_zero() || self.refresh > Duration::from_secs(12 * 3600) {
            return Err(BuildError::InvalidValue {
                field: "certificate_refresh",
                reason: "must be more than zero and at most 12 hours",
            });
        }
        if !(self.api_base.starts_with("https://") || self.api_base.starts_with("http://")) {
            return Err(BuildError::InvalidValue {
                field: "api_base",
                reason: "must be an http(s) URL",
            });
        }
        // No redirects, as for WeChat (src/wechat): a 3xx would re-send the
        // signed request, body and all, to wherever `Location` points.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::HttpClient(e.to_string()))?;
        let shared = self.shared.map(|(store, timeout)| SharedCertificates {
            store,
            slot: format!("wxpay-certs:{mchid}"),
            timeout,
        });
        Ok(WxPay {
            inner: Arc::new(Inner {
                mchid,
                app_id,
                merchant_serial,
                key: Arc::new(key),
                api_v3_key,
                keys: KeyRing::new(
                    public_key,
                    self.platform_certificates,
                    certificates,
                    self.refresh,
                    shared,
                ),
                api_base: self.api_base,
                notify_url,
                http,
                deadline: self.deadline,
                attempt_timeout: self.attempt_timeout,
            }),
        })
    }
}
