//! The WeChat Pay client against the fake WeChat Pay over loopback HTTP:
//! start-up checks, signed prepay, reply verification, retries, error
//! mapping, query/close/refund, and both key modes with certificate rotation.

use std::time::Duration;

use wxlogin::pay::fake::{self, FakePayFailure, FakeWeChatPay};
use wxlogin::pay::{PayError, PrepayRequest, RefundRequest, WxPay};
use wxlogin::{BuildError, ErrorCode};

const MCHID: &str = "1900000001";
const APPID: &str = "wxdemo0000000000";
const NOTIFY: &str = "http://127.0.0.1:9/wx/pay/notify";

async fn fake() -> FakeWeChatPay {
    FakeWeChatPay::start(MCHID, APPID).await.unwrap()
}

fn client(wxpay: &FakeWeChatPay) -> WxPay {
    wxpay
        .configure(WxPay::builder())
        .notify_url(NOTIFY)
        .deadline(Duration::from_secs(3))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

fn order(no: &str, total: i64) -> PrepayRequest {
    PrepayRequest {
        out_trade_no: no.into(),
        description: "demo p1".into(),
        total,
        attach: None,
        time_expire: None,
    }
}

fn field(err: BuildError) -> &'static str {
    match err {
        BuildError::InvalidValue { field, .. } => field,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn build_checks_every_key_at_start_up() {
    let wxpay = fake().await;
    let base = || wxpay.configure(WxPay::builder()).notify_url(NOTIFY);
    assert!(base().build().is_ok());
    // APIv3 key: exactly 32 bytes.
    assert_eq!(
        field(base().api_v3_key("0123456789abcdef").build().unwrap_err()),
        "api_v3_key"
    );
    assert_eq!(
        field(
            base()
                .api_v3_key(format!("{}x", fake::TEST_API_V3_KEY))
                .build()
                .unwrap_err()
        ),
        "api_v3_key"
    );
    // A merchant key that is not a key.
    assert_eq!(
        field(
            base()
                .merchant_key_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .build()
                .unwrap_err()
        ),
        "merchant_key_pem"
    );
    assert_eq!(
        field(
            base()
                .merchant_key_pem(fake::TEST_PUBLIC_KEY_PEM)
                .build()
                .unwrap_err()
        ),
        "merchant_key_pem"
    );
    // A public key id must be PUB_KEY_ID_…, and the key must parse.
    assert_eq!(
        field(
            base()
                .public_key("1234", fake::TEST_PUBLIC_KEY_PEM)
                .build()
                .unwrap_err()
        ),
        "public_key"
    );
    assert_eq!(
        field(
            base()
                .public_key(fake::TEST_PUBLIC_KEY_ID, "junk")
                .build()
                .unwrap_err()
        ),
        "public_key"
    );
    // No way to verify WeChat Pay at all.
    let none = wxpay
        .configure_without_public_key(WxPay::builder())
        .notify_url(NOTIFY)
        .build();
    assert_eq!(field(none.unwrap_err()), "public_key");
    // Missing fields and a notify URL with a query.
    assert_eq!(field(WxPay::builder().build().unwrap_err()), "mchid");
    assert_eq!(
        field(
            base()
                .notify_url("https://x.example/notify?a=1")
                .build()
                .unwrap_err()
        ),
        "notify_url"
    );
    assert_eq!(
        field(
            base()
                .certificate_refresh(Duration::from_secs(13 * 3600))
                .build()
                .unwrap_err()
        ),
        "certificate_refresh"
    );
}

#[tokio::test]
async fn secrets_are_redacted_in_debug_and_build_errors() {
    let wxpay = fake().await;
    let builder = wxpay.configure(WxPay::builder()).notify_url(NOTIFY);
    let debug = format!("{builder:?}");
    let pay = builder.build().unwrap();
    let debug_pay = format!("{pay:?}");
    let key_body = fake::TEST_MERCHANT_KEY_PEM.lines().nth(1).unwrap();
    for d in [&debug, &debug_pay] {
        assert!(!d.contains(fake::TEST_API_V3_KEY), "{d}");
        assert!(!d.contains(key_body), "{d}");
        assert!(d.contains("redacted"), "{d}");
        assert!(d.contains(MCHID), "{d}");
    }
    let err = wxpay
        .configure(WxPay::builder())
        .notify_url(NOTIFY)
        .api_v3_key("s3cr3t-but-short")
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn prepay_is_signed_over_the_bytes_sent_and_the_reply_verified() {
    let wxpay = fake().await;
    let pay = client(&wxpay);
    let id = pay
        .prepay(&order("T20261202000001", 100), "o-alice")
        .await
        .unwrap();
    assert!(id.starts_with("wx"));
    let o = wxpay.order("T20261202000001").unwrap();
    assert_eq!(
        (o.prepay_id.as_str(), o.openid.as_str(), o.total),
        (id.as_str(), "o-alice", 100)
    );
    assert_eq!(o.notify_url, NOTIFY);
    let reqs = wxpay.requests();
    let last = reqs.last().unwrap();
    assert_eq!(last.path, "/v3/pay/transactions/jsapi");
    let auth = last.authorization.as_deref().unwrap();
    assert!(
        auth.starts_with("WECHATPAY2-SHA256-RSA2048 mchid=\"1900000001\","),
        "{auth}"
    );
    assert!(auth.contains(&format!("serial_no=\"{}\"", fake::TEST_MERCHANT_SERIAL)));
    // Public-key mode: the request names the public key.
    assert_eq!(
        last.wechatpay_serial.as_deref(),
        Some(fake::TEST_PUBLIC_KEY_ID)
    );
    let body: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(body["payer"]["openid"], "o-alice");
    assert_eq!(
        body["amount"],
        serde_json::json!({"total": 100, "currency": "CNY"})
    );
    assert_eq!(body["appid"], APPID);
    assert!(body.get("attach").is_none(), "no nulls are sent");
    // The same parameters again: the same prepay id.
    assert_eq!(
        pay.prepay(&order("T20261202000001", 100), "o-alice")
            .await
            .unwrap(),
        id
    );
    // Changed parameters: 403 OUT_TRADE_NO_USED, payment_failed with the code.
    let err = pay
        .prepay(&order("T20261202000001", 200), "o-alice")
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::PaymentFailed);
    assert_eq!(err.wechat_code(), Some("OUT_TRADE_NO_USED"));
    let r = err.to_rejection();
    assert_eq!(r.status().as_u16(), 502);
    assert_eq!(r.body_json()["detail"]["code"], "OUT_TRADE_NO_USED");
    assert_eq!(r.body_json()["relogin"], false);
}

#[tokio::test]
async fn a_wrong_merchant_key_is_sign_error_and_misconfigured() {
    let wxpay = fake().await;
    let pay = wxpay
        .configure(WxPay::builder())
        .merchant_key_pem(include_str!("fixtures/pay/v7_merchant_private_key.pem"))
        .notify_url(NOTIFY)
        .build()
        .unwrap();
    let err = pay
        .prepay(&order("T20261202000002", 100), "o-alice")
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::Misconfigured);
    assert_eq!(err.wechat_code(), Some("SIGN_ERROR"));
    assert_eq!(
        wxpay.calls("POST /v3/pay/transactions/jsapi"),
        1,
        "SIGN_ERROR is not retried"
    );
    assert!(wxpay.order("T20261202000002").is_none());
}

#[tokio::test]
async fn an_unverifiable_reply_never_yields_a_prepay_id() {
    let wxpay = fake().await;
    let pay = client(&wxpay);
    for (i, failure) in [
        FakePayFailure::BadSignature,
        FakePayFailure::UnknownSerial,
        FakePayFailure::Unsigned,
    ]
    .into_iter()
    .enumerate()
    {
        wxpay.push_failure(failure.clone());
        let err = pay
            .prepay(&order(&format!("T2026120200010{i}"), 100), "o-alice")
            .await
            .unwrap_err();
        assert_eq!(
            err.error_code(),
            ErrorCode::PaymentUnavailable,
            "{failure:?}: {err}"
        );
        assert!(matches!(err, PayError::Unavailable { .. }));
    }
}

#[tokio::test]
async fn five_hundreds_and_429_are_retried_with_the_same_body() {
    let wxpay = fake().await;
    let pay = client(&wxpay);
    wxpay.push_failure(FakePayFailure::Status(500, "SYSTEM_ERROR".into()));
    wxpay.push_failure(FakePayFailure::Status(429, "FREQUENCY_LIMITED".into()));
    wxpay.push_failure(FakePayFailure::Status(503, "SERVICE_UNAVAILABLE".into()));
    let id = pay
        .prepay(&order("T20261202000200", 100), "o-bob")
        .await
        .unwrap();
    assert_eq!(wxpay.order("T20261202000200").unwrap().prepay_id, id);
    let reqs = wxpay.requests();
    assert_eq!(reqs.len(), 4);
    assert!(
        reqs.windows(2).all(|w| w[0].body == w[1].body),
        "every attempt sends the same bytes"
    );
    // Persistent 500s: payment_unavailable with WeChat's code, within the deadline.
    for _ in 0..10 {
        wxpay.push_failure(FakePayFailure::Status(500, "SYSTEM_ERROR".into()));
    }
    let started = std::time::Instant::now();
    let err = pay
        .prepay(&order("T20261202000201", 100), "o-bob")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(err.error_code(), ErrorCode::PaymentUnavailable);
    assert_eq!(err.wechat_code(), Some("SYSTEM_ERROR"));
    assert_eq!(err.to_rejection().status().as_u16(), 503);
}

#[tokio::test]
async fn a_hung_wechat_pay_is_unavailable_inside_the_deadline() {
    let wxpay = fake().await;
    let pay = wxpay
        .configure(WxPay::builder())
        .notify_url(NOTIFY)
        .deadline(Duration::from_millis(1500))
        .attempt_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    for _ in 0..8 {
        wxpay.push_failure(FakePayFailure::Delay(Duration::from_secs(5)));
    }
    let started = std::time::Instant::now();
    let err = pay
        .prepay(&order("T20261202000300", 100), "o-bob")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.error_code(), ErrorCode::PaymentUnavailable);
}

#[tokio::test]
async fn codes_map_to_the_error_table() {
    let wxpay = fake().await;
    let pay = client(&wxpay);
    let cases = [
        (401, "SIGN_ERROR", ErrorCode::Misconfigured),
        (400, "APPID_MCHID_NOT_MATCH", ErrorCode::Misconfigured),
        (400, "MCH_NOT_EXISTS", ErrorCode::Misconfigured),
        (403, "NO_AUTH", ErrorCode::Misconfigured),
        (500, "OPENID_MISMATCH", ErrorCode::Misconfigured),
        (400, "ORDER_CLOSED", ErrorCode::PaymentFailed),
        (403, "OUT_TRADE_NO_USED", ErrorCode::PaymentFailed),
        (403, "RULE_LIMIT", ErrorCode::PaymentFailed),
        (400, "PARAM_ERROR", ErrorCode::PaymentFailed),
        (404, "ORDER_NOT_EXIST", ErrorCode::PaymentFailed),
    ];
    for (i, (status, code, expected)) in cases.into_iter().enumerate() {
        let before = wxpay.calls("POST /v3/pay/transactions/jsapi");
        wxpay.push_failure(FakePayFailure::Status(status, code.into()));
        let err = pay
            .prepay(&order(&format!("T2026120200040{i}"), 100), "o-bob")
            .await
            .unwrap_err();
        assert_eq!(
            (err.error_code(), err.wechat_code()),
            (expected, Some(code)),
            "{status} {code}"
        );
        assert_eq!(
            wxpay.calls("POST /v3/pay/transactions/jsapi") - before,
            1,
            "{code} is not retried"
        );
        assert_eq!(err.to_rejection().detail(), Some(code));
    }
}

#[tokio::test]
async fn query_close_and_refund() {
    let wxpay = fake().await;
    let pay = client(&wxpay);
    pay.prepay(&order("T20261202000500", 2500), "o-carol")
        .await
        .unwrap();
    let tx = pay.query_order("T20261202000500").await.unwrap();
    assert_eq!(
        (tx.trade_state.as_str(), tx.out_trade_no.as_str()),
        ("NOTPAY", "T20261202000500")
    );
    let err = pay.query_order("T20261202999999").await.unwrap_err();
    assert_eq!(err.wechat_code(), Some("ORDER_NOT_EXIST"));

    // Closing answers 204 with a signed empty body.
    pay.prepay(&order("T20261202000501", 100), "o-carol")
        .await
        .unwrap();
    pay.close_order("T20261202000501").await.unwrap();
    assert_eq!(
        pay.query_order("T20261202000501")
            .await
            .unwrap()
            .trade_state,
        "CLOSED"
    );
    // An unsigned 204 is not believed.
    pay.prepay(&order("T20261202000502", 100), "o-carol")
        .await
        .unwrap();
    wxpay.push_failure(FakePayFailure::Unsigned);
    assert_eq!(
        pay.close_order("T20261202000502")
            .await
            .unwrap_err()
            .error_code(),
        ErrorCode::PaymentUnavailable
    );

    // Refund of a paid order.
    wxpay.pay("T20261202000500").await.ok(); // no notify route listens: the status does not matter here
    let paid = pay.query_order("T20261202000500").await.unwrap();
    assert_eq!(paid.trade_state, "SUCCESS");
    assert_eq!(paid.amount.unwrap().total, 2500);
    let refund = pay
        .refund(&RefundRequest {
            out_trade_no: "T20261202000500".into(),
            out_refund_no: "R20261202000500".into(),
            refund: 2500,
            total: 2500,
            reason: Some("test".into()),
            notify_url: None,
        })
        .await
        .unwrap();
    assert_eq!(refund.status.as_deref(), Some("PROCESSING"));
    assert_eq!(
        pay.query_refund("R20261202000500")
            .await
            .unwrap()
            .out_refund_no,
        "R20261202000500"
    );
    // A refund of an unpaid order is refused.
    let err = pay
        .refund(&RefundRequest {
            out_trade_no: "T20261202000502".into(),
            out_refund_no: "R20261202000502".into(),
            refund: 100,
            total: 100,
            reason: None,
            notify_url: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::PaymentFailed);
}

#[tokio::test]
async fn certificate_mode_downloads_verifies_and_rotates() {
    let wxpay = fake().await;
    let pay = wxpay
        .configure_without_public_key(WxPay::builder())
        .platform_certificates()
        .notify_url(NOTIFY)
        .build()
        .unwrap();
    // The first call needs a certificate: one download, then the reply verifies.
    pay.prepay(&order("T20261202000600", 100), "o-dan")
        .await
        .unwrap();
    assert_eq!(wxpay.calls("GET /v3/certificates"), 1);
    assert!(
        wxpay
            .requests()
            .iter()
            .all(|r| r.wechatpay_serial.is_none()),
        "no Wechatpay-Serial in certificate mode"
    );
    // Rotation: certificate 2 now signs; the unknown serial triggers one more
    // download, and both certificates are kept.
    wxpay.rotate_certificates();
    // (the unknown-serial download is rate limited to once a minute; force it)
    let serials = pay.refresh_certificates().await.unwrap();
    assert_eq!(serials.len(), 2, "{serials:?}");
    pay.prepay(&order("T20261202000601", 100), "o-dan")
        .await
        .unwrap();
    assert_eq!(wxpay.calls("GET /v3/certificates"), 2);
}

#[tokio::test]
async fn certificate_downloads_are_single_flight() {
    let wxpay = fake().await;
    let pay = wxpay
        .configure_without_public_key(WxPay::builder())
        .platform_certificates()
        .notify_url(NOTIFY)
        .build()
        .unwrap();
    wxpay.push_failure(FakePayFailure::Delay(Duration::from_millis(300)));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let pay = pay.clone();
        tasks.push(tokio::spawn(async move {
            pay.prepay(&order(&format!("T2026120200070{i}"), 100), "o-eve")
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        wxpay.calls("GET /v3/certificates"),
        1,
        "eight first calls, one download"
    );
    assert_eq!(pay.certificate_downloads(), 1);
}

#[tokio::test]
async fn a_certificate_download_that_does_not_verify_installs_nothing() {
    let wxpay = fake().await;
    let pay = wxpay
        .configure_without_public_key(WxPay::builder())
        .platform_certificates()
        .notify_url(NOTIFY)
        .build()
        .unwrap();
    wxpay.push_failure(FakePayFailure::BadSignature);
    assert!(pay.refresh_certificates().await.is_err());
    // A public-key-only merchant: 404, an error, not a panic (signed by a
    // key this client does not have, so its code is not believed).
    wxpay.disable_certificates();
    let err = pay.refresh_certificates().await.unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::PaymentUnavailable, "{err}");
    let err = pay
        .prepay(&order("T20261202000800", 100), "o-eve")
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::PaymentUnavailable, "{err}");
    assert_eq!(
        pay.certificate_downloads(),
        2,
        "the unknown serial waits a minute before another download"
    );
    // With the public key too, the 404 verifies and its code shows, and payments work.
    let both = wxpay
        .configure(WxPay::builder())
        .platform_certificates()
        .notify_url(NOTIFY)
        .build()
        .unwrap();
    let err = both.refresh_certificates().await.unwrap_err();
    assert_eq!(err.wechat_code(), Some("RESOURCE_NOT_EXISTS"));
    both.prepay(&order("T20261202000801", 100), "o-eve")
        .await
        .unwrap();
}

#[tokio::test]
async fn both_modes_at_once_verify_either_signer() {
    let wxpay = fake().await;
    let pay = wxpay
        .configure(WxPay::builder())
        .platform_certificates()
        .notify_url(NOTIFY)
        .build()
        .unwrap();
    // Replies follow the request's Wechatpay-Serial (the public key)...
    pay.prepay(&order("T20261202000900", 100), "o-fay")
        .await
        .unwrap();
    // ...and certificates are loaded too.
    let serials = pay.refresh_certificates().await.unwrap();
    assert_eq!(serials, wxpay.certificate_serials());
}

/// Collects every log line (all levels) of the test's thread.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_the_logs() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let wxpay = fake().await;
    let pay = client(&wxpay);
    tracing::info!(?pay, "configured");
    pay.prepay(&order("T20261202001000", 100), "o-log")
        .await
        .unwrap();
    wxpay.push_failure(FakePayFailure::Status(401, "SIGN_ERROR".into()));
    let err = pay
        .prepay(&order("T20261202001001", 100), "o-log")
        .await
        .unwrap_err();
    tracing::warn!(error = %err, ?err, "failed");
    let _ = axum::response::IntoResponse::into_response(err);
    wxpay.push_failure(FakePayFailure::BadSignature);
    let _ = pay.prepay(&order("T20261202001002", 100), "o-log").await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("configured"),
        "the subscriber captured nothing"
    );
    assert!(text.contains("SIGN_ERROR"), "{text}");
    assert!(!text.contains(fake::TEST_API_V3_KEY), "{text}");
    for line in fake::TEST_MERCHANT_KEY_PEM.lines().skip(1).take(3) {
        assert!(!text.contains(line), "a merchant key line is in the logs");
    }
}

/// A loopback listener that must never be reached: it counts connections.
async fn trap() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (base, connections)
}

#[tokio::test]
async fn a_redirect_from_wechat_pay_is_never_followed() {
    // A 3xx from the API base would re-send the signed request (the 307 and
    // 308 with its body) to wherever `Location` points. None is followed:
    // each is a final `payment_unavailable`, and the target sees nothing.
    let wxpay = fake().await;
    for status in [301, 302, 303, 307, 308] {
        let (target, connections) = trap().await;
        let redirector = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let location = format!("{target}{}", uri.path());
            async move {
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [(axum::http::header::LOCATION, location)],
                    "",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, redirector).await });
        let pay = wxpay
            .configure(WxPay::builder())
            .api_base(base)
            .notify_url(NOTIFY)
            .deadline(Duration::from_secs(3))
            .attempt_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let err = pay
            .prepay(&order(&format!("T2026120200{status}"), 100), "o-bob")
            .await
            .unwrap_err();
        assert_eq!(
            err.error_code(),
            ErrorCode::PaymentUnavailable,
            "{status}: {err:?}"
        );
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{status}: the redirect was followed"
        );
    }
}
