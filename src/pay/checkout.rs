//! The arguments of `wx.requestPayment`, and the checkout that goes from an
//! order of the session's user to them (reusing a stored prepay id within
//! its 2 hours).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::client::PrepayRequest;
use super::config::WxPay;
use super::error::PayError;
use super::orders::{Order, OrderStore};
use super::sign::{self, pay_sign_message, sign_off_worker};

/// What the mini program passes to `wx.requestPayment`, as is.
///
/// `timeStamp` is a string of Unix seconds, `package` is `prepay_id=…`,
/// `signType` is `RSA`, and `paySign` covers
/// `appId\ntimeStamp\nnonceStr\npackage\n` (the appId is not sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestPayment {
    /// Unix seconds, as a string.
    pub time_stamp: String,
    /// 32 random characters.
    pub nonce_str: String,
    /// `prepay_id=…`.
    pub package: String,
    /// Always `RSA` for APIv3.
    pub sign_type: String,
    /// Base64 SHA256withRSA with the merchant key.
    pub pay_sign: String,
}

impl WxPay {
    /// Signs `wx.requestPayment` arguments for a prepay id, with a fresh
    /// timestamp and nonce (a stored prepay id needs a fresh signature).
    pub async fn request_payment(&self, prepay_id: &str) -> Result<RequestPayment, PayError> {
        self.request_payment_at(prepay_id, crate::clock::now_secs(), &sign::nonce())
            .await
    }

    /// [`request_payment`](Self::request_payment) with a given timestamp and
    /// nonce (known-answer tests).
    pub async fn request_payment_at(
        &self,
        prepay_id: &str,
        unix_seconds: u64,
        nonce: &str,
    ) -> Result<RequestPayment, PayError> {
        let time_stamp = unix_seconds.to_string();
        let package = format!("prepay_id={prepay_id}");
        let message = pay_sign_message(&self.inner.app_id, &time_stamp, nonce, &package);
        let pay_sign = sign_off_worker(self.inner.key.clone(), message).await?;
        Ok(RequestPayment {
            time_stamp,
            nonce_str: nonce.to_owned(),
            package,
            sign_type: "RSA".to_owned(),
            pay_sign,
        })
    }

    /// The checkout of a stored order: its live prepay id (under 2 hours
    /// old), or a new prepay for the order's payer (the session's openid,
    /// set when the order was made with [`Order::for_user`]), stored on the
    /// order; then the `wx.requestPayment` arguments.
    pub async fn checkout(
        &self,
        orders: &dyn OrderStore,
        order: &Order,
    ) -> Result<RequestPayment, PayError> {
        let store_err = |e: super::orders::OrderError| PayError::unavailable(None, e.to_string());
        let now = SystemTime::now();
        let prepay_id = match order.live_prepay_id(now) {
            Some(id) => id.to_owned(),
            None => {
                let req = PrepayRequest {
                    out_trade_no: order.out_trade_no.clone(),
                    description: order.description.clone(),
                    total: order.total,
                    attach: None,
                    time_expire: None,
                };
                let id = self.prepay(&req, &order.openid).await?;
                orders
                    .set_prepay(&order.out_trade_no, &id, now)
                    .await
                    .map_err(store_err)?;
                id
            }
        };
        self.request_payment(&prepay_id).await
    }
}
