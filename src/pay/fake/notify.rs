//! The fake's notifications: a payment or refund result, encrypted with the
//! APIv3 key, signed like WeChat Pay, posted to the notify URL. Tests can
//! take one apart (headers, body) to tamper with it before sending.

use serde_json::{json, Value};

use super::{FakeWeChatPay, Signer};
use crate::pay::aead;
use crate::pay::sign::{self, reply_message, SCHEME};

/// A notification ready to send: the URL, headers and raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeNotification {
    /// Where it goes.
    pub url: String,
    /// `Wechatpay-Timestamp`, `-Nonce`, `-Serial`, `-Signature`, `-Signature-Type`, `Content-Type`.
    pub headers: Vec<(String, String)>,
    /// The raw JSON body.
    pub body: Vec<u8>,
}

impl FakeNotification {
    /// Replaces (or adds) a header.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.into()));
    }

    /// Removes a header.
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Posts it; answers the status and the body.
    pub async fn send(&self) -> Result<(u16, String), reqwest::Error> {
        let client = reqwest::Client::new();
        let mut req = client.post(&self.url).body(self.body.clone());
        for (n, v) in &self.headers {
            req = req.header(n.as_str(), v.as_str());
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        Ok((status, res.text().await?))
    }
}

impl FakeWeChatPay {
    fn notify_signer(&self) -> &Signer {
        let shared = self.shared();
        if shared.lock().notify_with_certificate {
            shared.platform_signer()
        } else {
            &shared.public_key_signer
        }
    }

    /// Signs `body` as a notification to `url`, with the timestamp `timestamp`.
    pub fn sign_notification(&self, url: &str, body: Vec<u8>, timestamp: u64) -> FakeNotification {
        let signer = self.notify_signer();
        let ts = timestamp.to_string();
        let nonce = sign::nonce();
        let signature = signer.key.sign(&reply_message(&ts, &nonce, &body));
        FakeNotification {
            url: url.to_owned(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Wechatpay-Timestamp".into(), ts),
                ("Wechatpay-Nonce".into(), nonce),
                ("Wechatpay-Serial".into(), signer.serial.to_owned()),
                ("Wechatpay-Signature".into(), signature),
                ("Wechatpay-Signature-Type".into(), SCHEME.to_owned()),
            ],
            body,
        }
    }

    /// An envelope around `plaintext`, encrypted with the APIv3 key.
    pub fn envelope(&self, event_type: &str, original_type: &str, plaintext: &Value) -> Vec<u8> {
        let nonce = &sign::nonce()[..12];
        let ciphertext = aead::encrypt(
            &self.shared().api_v3_key,
            nonce,
            original_type,
            &serde_json::to_vec(plaintext).expect("json"),
        )
        .expect("12-byte nonce");
        let id = format!("EV-{}", &sign::nonce()[..20]);
        serde_json::to_vec(&json!({
            "id": id,
            "create_time": "2026-12-02T18:00:00+08:00",
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": if event_type.starts_with("REFUND") { "退款成功" } else { "支付成功" },
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": original_type,
                "nonce": nonce,
            }
        }))
        .expect("json")
    }

    /// The paid-transaction notification of an order, after `edit` changed
    /// its plaintext (to forge a mismatch); the order is not marked paid.
    pub fn payment_notification_with(
        &self,
        out_trade_no: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Option<FakeNotification> {
        let shared = self.shared();
        let mut order = shared.lock().orders.get(out_trade_no)?.clone();
        order.trade_state = "SUCCESS".into();
        order.transaction_id = Some(transaction_id(out_trade_no));
        let mut plain = super::server::transaction_json(shared, &order);
        edit(&mut plain);
        let body = self.envelope("TRANSACTION.SUCCESS", "transaction", &plain);
        Some(self.sign_notification(&order.notify_url, body, crate::clock::now_secs()))
    }

    /// The paid-transaction notification of an order, as WeChat Pay would send it.
    pub fn payment_notification(&self, out_trade_no: &str) -> Option<FakeNotification> {
        self.payment_notification_with(out_trade_no, |_| {})
    }

    /// The user pays: the order becomes `SUCCESS` here and its notification
    /// is posted to the notify URL. Answers the notify route's status.
    pub async fn pay(&self, out_trade_no: &str) -> Result<u16, String> {
        let n = self
            .payment_notification(out_trade_no)
            .ok_or_else(|| format!("no prepaid order {out_trade_no}"))?;
        {
            let mut st = self.shared().lock();
            if let Some(o) = st.orders.get_mut(out_trade_no) {
                o.trade_state = "SUCCESS".into();
                o.transaction_id = Some(transaction_id(out_trade_no));
            }
        }
        n.send()
            .await
            .map(|(status, _)| status)
            .map_err(|e| e.to_string())
    }

    /// Pays the order that holds this prepay id (what the WeChat client
    /// does after `wx.requestPayment`).
    pub async fn pay_prepay_id(&self, prepay_id: &str) -> Result<u16, String> {
        let no = self
            .shared()
            .lock()
            .orders
            .values()
            .find(|o| o.prepay_id == prepay_id)
            .map(|o| o.out_trade_no.clone())
            .ok_or_else(|| format!("unknown prepay id {prepay_id}"))?;
        self.pay(&no).await
    }

    /// A `WECHATPAY/SIGNTEST/` probe to `url`, as WeChat Pay sends to test the route.
    pub fn probe_notification(&self, url: &str) -> FakeNotification {
        let body = self.envelope(
            "TRANSACTION.SUCCESS",
            "transaction",
            &json!({"probe": true}),
        );
        let mut n = self.sign_notification(url, body, crate::clock::now_secs());
        n.set_header(
            "Wechatpay-Signature",
            format!("WECHATPAY/SIGNTEST/{}", sign::nonce()),
        );
        n
    }

    /// Completes a refund: marks it `SUCCESS` (the order `REFUND`) and posts
    /// `REFUND.SUCCESS` to its notify URL (or the order's). Answers the status.
    pub async fn complete_refund(&self, out_refund_no: &str) -> Result<u16, String> {
        let (no, amount, url) = {
            let mut st = self.shared().lock();
            let (no, amount, url, status) = st
                .refunds
                .get_mut(out_refund_no)
                .ok_or_else(|| format!("unknown refund {out_refund_no}"))?;
            *status = "SUCCESS".into();
            (no.clone(), *amount, url.clone())
        };
        let (url, total) = {
            let mut st = self.shared().lock();
            let order = st.orders.get_mut(&no).ok_or("refund of an unknown order")?;
            order.trade_state = "REFUND".into();
            (url.unwrap_or_else(|| order.notify_url.clone()), order.total)
        };
        let plain = json!({
            "mchid": self.mchid(),
            "out_trade_no": no,
            "transaction_id": transaction_id(&no),
            "out_refund_no": out_refund_no,
            "refund_id": format!("50{out_refund_no}"),
            "refund_status": "SUCCESS",
            "success_time": "2026-12-02T18:10:00+08:00",
            "user_received_account": "支付用户零钱",
            "amount": {"total": total, "refund": amount, "payer_total": total, "payer_refund": amount},
        });
        let body = self.envelope("REFUND.SUCCESS", "refund", &plain);
        let n = self.sign_notification(&url, body, crate::clock::now_secs());
        n.send().await.map(|(s, _)| s).map_err(|e| e.to_string())
    }
}

fn transaction_id(out_trade_no: &str) -> String {
    let digits: String = out_trade_no
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    format!("4200{digits}")
}
