//! A fake WeChat Pay on loopback (features `pay` + `mock`), for tests and
//! the demo. Like WeChat Pay it verifies the merchant's
//! `WECHATPAY2-SHA256-RSA2048` signatures (401 `SIGN_ERROR` otherwise),
//! issues prepay ids (the same one for the same parameters, 403
//! `OUT_TRADE_NO_USED` for changed ones), signs every reply (with its
//! public key when the request names `PUB_KEY_ID_…`, else with its current
//! platform certificate), serves encrypted `/v3/certificates`, and pays an
//! order by posting a signed, encrypted notification to the order's
//! notify URL. Failures are scripted with [`FakePayFailure`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use wxlogin::pay::fake::{self, FakeWeChatPay};
//! use wxlogin::pay::{PrepayRequest, WxPay};
//!
//! let wxpay = FakeWeChatPay::start("1900000001", "wx1").await?;
//! let pay = wxpay.configure(WxPay::builder()).notify_url("http://127.0.0.1:1/notify").build()?;
//! let req = PrepayRequest {
//!     out_trade_no: "order-0001".into(),
//!     description: "p1".into(),
//!     total: 100,
//!     attach: None,
//!     time_expire: None,
//! };
//! let prepay_id = pay.prepay(&req, "o-alice").await?;
//! assert_eq!(wxpay.order("order-0001").unwrap().prepay_id, prepay_id);
//! # Ok(())
//! # }
//! ```

mod keys;
mod notify;
mod server;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::mock::server::{spawn_server, StopOnDrop};

pub use keys::{
    TEST_API_V3_KEY, TEST_MERCHANT_CERT_PEM, TEST_MERCHANT_KEY_PEM, TEST_MERCHANT_SERIAL,
    TEST_PUBLIC_KEY_ID, TEST_PUBLIC_KEY_PEM,
};
pub use notify::FakeNotification;

use super::keys::{ApiV3Key, MerchantKey, VerifyKey};
use super::WxPayBuilder;

/// A failure for the fake to answer with, queued by [`FakeWeChatPay::push_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakePayFailure {
    /// This status with `{"code", "message"}`, signed like a real error
    /// reply (`500 SYSTEM_ERROR`, `429 FREQUENCY_LIMITED`, `403 NO_AUTH`, ...).
    Status(u16, String),
    /// A normal reply whose signature does not verify.
    BadSignature,
    /// A normal reply signed under a serial nobody knows.
    UnknownSerial,
    /// A normal reply without the `Wechatpay-*` headers.
    Unsigned,
    /// Waits this long, then answers normally.
    Delay(Duration),
}

/// One order as the fake knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeOrder {
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The prepay id issued.
    pub prepay_id: String,
    /// The payer's openid, as the prepay named it.
    pub openid: String,
    /// The amount in fen.
    pub total: i64,
    /// The description.
    pub description: String,
    /// Where notifications go.
    pub notify_url: String,
    /// `NOTPAY`, `SUCCESS`, `CLOSED` or `REFUND`.
    pub trade_state: String,
    /// Set once paid.
    pub transaction_id: Option<String>,
}

/// A request the fake received (authorized or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRequest {
    /// `GET`, `POST`.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `Wechatpay-Serial` header.
    pub wechatpay_serial: Option<String>,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// The fake WeChat Pay; cheap to clone, stops when the last clone drops.
#[derive(Clone)]
pub struct FakeWeChatPay {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for FakeWeChatPay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeWeChatPay")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

/// Owned by the clones only, so that dropping the last clone stops the server.
struct Handle {
    shared: Arc<Shared>,
    _stop: StopOnDrop,
}

pub(crate) struct Signer {
    pub(crate) serial: &'static str,
    pub(crate) key: MerchantKey,
}

pub(crate) struct Shared {
    pub(crate) mchid: String,
    pub(crate) app_id: String,
    pub(crate) addr: SocketAddr,
    pub(crate) merchant_key: VerifyKey,
    pub(crate) api_v3_key: ApiV3Key,
    pub(crate) public_key_signer: Signer,
    pub(crate) platform: [Signer; 2],
    pub(crate) state: Mutex<State>,
}

pub(crate) struct State {
    pub(crate) orders: HashMap<String, FakeOrder>,
    pub(crate) refunds: HashMap<String, (String, i64, Option<String>, String)>,
    pub(crate) failures: VecDeque<FakePayFailure>,
    pub(crate) requests: Vec<FakeRequest>,
    pub(crate) calls: HashMap<String, usize>,
    /// Whether platform certificate 2 is listed and signs (after a rotation).
    pub(crate) rotated: bool,
    /// Whether `/v3/certificates` answers 404 (a public-key-only merchant).
    pub(crate) no_certificates: bool,
    /// Whether notifications are signed with a platform certificate instead of the public key.
    pub(crate) notify_with_certificate: bool,
    pub(crate) next_id: u64,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The platform certificate that signs now.
    pub(crate) fn platform_signer(&self) -> &Signer {
        if self.lock().rotated {
            &self.platform[1]
        } else {
            &self.platform[0]
        }
    }
}

impl FakeWeChatPay {
    /// Starts the fake on `127.0.0.1` with a free port, for this merchant
    /// and mini program, with the `TEST_*` keys of this module.
    pub async fn start(
        mchid: impl Into<String>,
        app_id: impl Into<String>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let parse = |pem: &str| MerchantKey::from_pem(pem).expect("the fake's own test key");
        let shared = Arc::new(Shared {
            mchid: mchid.into(),
            app_id: app_id.into(),
            addr: listener.local_addr()?,
            merchant_key: VerifyKey::from_pem(TEST_MERCHANT_CERT_PEM)
                .expect("the test merchant certificate"),
            api_v3_key: ApiV3Key::new(TEST_API_V3_KEY.as_bytes()).expect("32 bytes"),
            public_key_signer: Signer {
                serial: TEST_PUBLIC_KEY_ID,
                key: parse(keys::WXPAY_PRIVATE_KEY_PEM),
            },
            platform: [
                Signer {
                    serial: keys::PLATFORM1_SERIAL,
                    key: parse(keys::PLATFORM1_KEY_PEM),
                },
                Signer {
                    serial: keys::PLATFORM2_SERIAL,
                    key: parse(keys::PLATFORM2_KEY_PEM),
                },
            ],
            state: Mutex::new(State {
                orders: HashMap::new(),
                refunds: HashMap::new(),
                failures: VecDeque::new(),
                requests: Vec::new(),
                calls: HashMap::new(),
                rotated: false,
                no_certificates: false,
                notify_with_certificate: false,
                next_id: 1,
            }),
        });
        let served = shared.clone();
        let stop = spawn_server(listener, move |req| {
            let shared = served.clone();
            async move { Ok::<_, Infallible>(server::handle(&shared, req).await) }
        });
        Ok(FakeWeChatPay {
            handle: Arc::new(Handle {
                shared,
                _stop: stop,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// The base URL to use instead of `https://api.mch.weixin.qq.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared().addr)
    }

    /// The merchant id it serves.
    pub fn mchid(&self) -> &str {
        &self.shared().mchid
    }

    /// The mini program's appid it serves.
    pub fn app_id(&self) -> &str {
        &self.shared().app_id
    }

    /// A builder set up for this fake in public-key mode: mchid, appid,
    /// the test merchant key and serial, the APIv3 key, the public key, the
    /// base URL. Add the notify URL (and `.platform_certificates()` for
    /// certificate mode) and build.
    pub fn configure(&self, builder: WxPayBuilder) -> WxPayBuilder {
        self.configure_without_public_key(builder)
            .public_key(TEST_PUBLIC_KEY_ID, TEST_PUBLIC_KEY_PEM)
    }

    /// Like [`configure`](Self::configure) without the public key (certificate-only mode).
    pub fn configure_without_public_key(&self, builder: WxPayBuilder) -> WxPayBuilder {
        builder
            .mchid(self.mchid())
            .app_id(self.app_id())
            .merchant_serial(TEST_MERCHANT_SERIAL)
            .merchant_key_pem(TEST_MERCHANT_KEY_PEM)
            .api_v3_key(TEST_API_V3_KEY)
            .api_base(self.base_url())
    }

    /// The next API call answers with this failure instead (queued, one per call).
    pub fn push_failure(&self, failure: FakePayFailure) {
        self.shared().lock().failures.push_back(failure);
    }

    /// The order with this number, if a prepay created it.
    pub fn order(&self, out_trade_no: &str) -> Option<FakeOrder> {
        self.shared().lock().orders.get(out_trade_no).cloned()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.shared().lock().requests.clone()
    }

    /// How many requests hit `"METHOD /path"` (path without the query).
    pub fn calls(&self, route: &str) -> usize {
        self.shared().lock().calls.get(route).copied().unwrap_or(0)
    }

    /// Rotates the platform certificates: certificate 2 is listed beside
    /// certificate 1 and signs from now on.
    pub fn rotate_certificates(&self) {
        self.shared().lock().rotated = true;
    }

    /// The serials of the platform certificates `/v3/certificates` lists now.
    pub fn certificate_serials(&self) -> Vec<String> {
        let rotated = self.shared().lock().rotated;
        let mut v = vec![keys::PLATFORM1_SERIAL.to_owned()];
        if rotated {
            v.push(keys::PLATFORM2_SERIAL.to_owned());
        }
        v
    }

    /// `/v3/certificates` answers 404 `RESOURCE_NOT_EXISTS`, as for a merchant in public-key mode only.
    pub fn disable_certificates(&self) {
        self.shared().lock().no_certificates = true;
    }

    /// Signs notifications with the current platform certificate (`true`) or the public key (default).
    pub fn sign_notifications_with_certificate(&self, yes: bool) {
        self.shared().lock().notify_with_certificate = yes;
    }
}
