//! WeChat Pay for mini programs (feature `pay`), tied to the login session.
//!
//! The flow: the mini program asks for an order naming only the product and
//! quantity; the server prices it, makes an [`Order`] for the session's user
//! ([`Order::for_user`] takes the openid from [`WxUser`](crate::WxUser),
//! never from the request), and [`WxPay::checkout`] prepays it
//! (`POST /v3/pay/transactions/jsapi`, signed, reply verified) and answers
//! the [`RequestPayment`] arguments for `wx.requestPayment`. WeChat Pay then
//! posts the result to the [`NotifyService`], which verifies, decrypts,
//! cross-checks and marks the order paid through the app's [`OrderStore`].
//!
//! | file | concern |
//! |---|---|
//! | `config.rs` | [`WxPay`] and its builder: keys parsed once, both key modes |
//! | `keys.rs` | PEM, the merchant key, public keys, certificates, the APIv3 key |
//! | `sign.rs` / `verify.rs` | request signatures; reply and notification signatures |
//! | `aead.rs` | AEAD_AES_256_GCM resources |
//! | `certs.rs` | platform certificate download, rotation, single-flight |
//! | `client.rs` | prepay, query, close, refund, with retries inside a deadline |
//! | `checkout.rs` | `wx.requestPayment` arguments and `paySign` |
//! | `notify.rs` | the fail-closed notify route |
//! | `orders.rs` | the app's order store trait, an in-memory one, `out_trade_no` |
//! | `fake/` | the fake WeChat Pay (features `pay` + `mock`) |
//!
//! See docs/payment.md for set-up, key modes, migration and failures.

mod aead;
mod certs;
mod checkout;
mod client;
mod config;
mod error;
mod keys;
mod notify;
mod orders;
mod sign;
mod verify;

#[cfg(feature = "mock")]
pub mod fake;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use checkout::RequestPayment;
pub use client::{Amount, Payer, PrepayRequest, Refund, RefundRequest, Transaction};
pub use config::{WxPay, WxPayBuilder, DEFAULT_CERTIFICATE_REFRESH, DEFAULT_PAY_API_BASE};
pub use error::{PayError, MISCONFIGURED_CODES};
pub use notify::{NotifyResponse, NotifyService, NOTIFY_BODY_LIMIT};
pub use orders::{
    new_out_trade_no, valid_out_trade_no, MarkPaid, MemoryOrders, Order, OrderError, OrderFuture,
    OrderState, OrderStore, PREPAY_ID_LIFETIME,
};
pub use verify::TIMESTAMP_WINDOW_SECS;
