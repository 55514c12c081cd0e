//! Costs of `wxlogin::pay`: one RSA-2048 signature and verification, the
//! notify route (verify + decrypt + order-store hook), and a prepay against
//! the fake WeChat Pay on loopback with and without the client (the bare
//! line sends the same signed request with reqwest and does not verify the reply).
//!
//! `cargo bench --bench pay`; results in docs/performance.md ("Payment").
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use http::Request;
use http_body_util::Full;
use tower::ServiceExt as _;
use wxlogin::pay::fake::{self, FakeWeChatPay};
use wxlogin::pay::{fuzzing, MemoryOrders, OrderStore, PrepayRequest, WxPay};

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let sign = fuzzing::signer(fake::TEST_MERCHANT_KEY_PEM).unwrap();
    let message = b"POST\n/v3/pay/transactions/jsapi\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n{\"appid\":\"wx1\"}\n";
    c.bench_function("pay/rsa2048_sign", |b| b.iter(|| sign(message)));
    let sig = sign(b"1\n2\nbody\n");
    c.bench_function("pay/rsa2048_verify", |b| {
        b.iter(|| fuzzing::verify(fake::TEST_MERCHANT_CERT_PEM, "1", "2", b"body", &sig))
    });

    // The notify route in process: a paid order's notification, sent again
    // and again (a duplicate: verified, decrypted, cross-checked, the hook
    // says "already paid").
    let (wxpay, pay, orders, notification) = rt.block_on(async {
        let wxpay = FakeWeChatPay::start("1900000001", "wxbench").await.unwrap();
        let pay = wxpay
            .configure(WxPay::builder())
            .notify_url("http://127.0.0.1:9/notify")
            .build()
            .unwrap();
        let orders = MemoryOrders::new();
        let mut order = wxlogin::pay::Order {
            out_trade_no: "BENCH0000000001".into(),
            openid: "o-bench".into(),
            description: "bench".into(),
            total: 100,
            state: wxlogin::pay::OrderState::Notpay,
            prepay: None,
            transaction_id: None,
        };
        orders.create(order.clone()).await.unwrap();
        pay.checkout(&orders, &order).await.unwrap();
        order = orders.get("BENCH0000000001").unwrap();
        let n = wxpay.payment_notification(&order.out_trade_no).unwrap();
        (wxpay, pay, orders, n)
    });
    let svc = pay.notify_service(Arc::new(orders.clone()));
    let request = |n: &fake::FakeNotification| {
        let mut b = Request::post("/notify");
        for (k, v) in &n.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(Full::new(bytes::Bytes::from(n.body.clone())))
            .unwrap()
    };
    c.bench_function("pay/notify_route", |b| {
        b.to_async(&rt).iter(|| {
            let svc = svc.clone();
            let req = request(&notification);
            async move {
                let res = svc.oneshot(req).await.unwrap();
                assert!(res.status().is_success());
            }
        })
    });

    let mut i = 0u64;
    c.bench_function("pay/prepay_client", |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            let pay = pay.clone();
            let req = PrepayRequest {
                out_trade_no: format!("BENCHP{i:012}"),
                description: "bench".into(),
                total: 100,
                attach: None,
                time_expire: None,
            };
            async move { pay.prepay(&req, "o-bench").await.unwrap() }
        })
    });
    let http = reqwest::Client::new();
    let base = wxpay.base_url();
    let mut j = 0u64;
    c.bench_function("pay/prepay_bare_signed", |b| {
        b.to_async(&rt).iter(|| {
            j += 1;
            let body = format!(
                r#"{{"appid":"wxbench","mchid":"1900000001","description":"bench","out_trade_no":"BENCHB{j:012}","notify_url":"http://127.0.0.1:9/notify","amount":{{"total":100,"currency":"CNY"}},"payer":{{"openid":"o-bench"}}}}"#
            );
            let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let nonce = format!("{j:032}");
            let msg = format!("POST\n/v3/pay/transactions/jsapi\n{ts}\n{nonce}\n{body}\n");
            let signature = sign(msg.as_bytes());
            let auth = format!(
                "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000001\",nonce_str=\"{nonce}\",timestamp=\"{ts}\",serial_no=\"{}\",signature=\"{signature}\"",
                fake::TEST_MERCHANT_SERIAL
            );
            let req = http
                .post(format!("{base}/v3/pay/transactions/jsapi"))
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(body);
            async move {
                let res = req.send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.bytes().await.unwrap()
            }
        })
    });
    c.final_summary();
}
