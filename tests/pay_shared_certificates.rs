//! Platform certificates shared between instances through a real
//! `redis-server` (`WxPayBuilder::share_certificates`): of several
//! instances refreshing at once, one downloads and the others use its list;
//! a forged or damaged shared list is never installed; a store in trouble
//! makes an instance download for itself instead of failing.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::time::Duration;

use redis_harness::{store_at, unique_prefix, RedisCli, RedisServer};
use wxlogin::pay::fake::{FakePayFailure, FakeWeChatPay};
use wxlogin::pay::{PrepayRequest, WxPay};

const MCHID: &str = "1900000001";
const APPID: &str = "wxdemo0000000000";
const NOTIFY: &str = "http://127.0.0.1:9/wx/pay/notify";

/// One instance: its own connection to the shared Redis, certificate mode.
async fn instance(wxpay: &FakeWeChatPay, redis: &RedisServer, prefix: &str) -> WxPay {
    let store = store_at(&redis.url(), prefix).await;
    wxpay
        .configure_without_public_key(WxPay::builder())
        .platform_certificates()
        .share_certificates(store, Duration::from_millis(300))
        .notify_url(NOTIFY)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap()
}

fn order(no: &str) -> PrepayRequest {
    PrepayRequest {
        out_trade_no: no.into(),
        description: "demo p1".into(),
        total: 100,
        attach: None,
        time_expire: None,
    }
}

fn slot(prefix: &str) -> String {
    format!("{prefix}:at:{{wxpay-certs:{MCHID}}}")
}

#[tokio::test]
async fn instances_refreshing_at_once_download_once() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("paycerts");
    let wxpay = FakeWeChatPay::start(MCHID, APPID).await.unwrap();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(&wxpay, &redis, &prefix).await);
    }
    // The download is slow, so the others arrive while it runs.
    wxpay.push_failure(FakePayFailure::Delay(Duration::from_millis(300)));
    let mut tasks = Vec::new();
    for pay in &instances {
        for _ in 0..2 {
            let pay = pay.clone();
            tasks.push(tokio::spawn(
                async move { pay.refresh_certificates().await },
            ));
        }
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap(),
            wxpay.certificate_serials(),
            "every instance loads the certificates"
        );
    }
    assert_eq!(
        wxpay.calls("GET /v3/certificates"),
        1,
        "three instances, one download"
    );
    let downloads: usize = instances.iter().map(|p| p.certificate_downloads()).sum();
    assert_eq!(downloads, 1);
    // The shared copy is the list as sent, still encrypted: no PEM in Redis.
    let shared = redis.cli(&["GET", &slot(&prefix)]);
    assert!(shared.contains("ciphertext"), "{shared}");
    assert!(!shared.contains("BEGIN CERTIFICATE"), "{shared}");
    // And what was loaded from it verifies WeChat Pay's replies.
    for (i, pay) in instances.iter().enumerate() {
        pay.prepay(&order(&format!("T2026120300010{i}")), "o-ann")
            .await
            .unwrap();
    }
    assert_eq!(wxpay.calls("GET /v3/certificates"), 1);

    // A later first call on a new instance uses the shared list too.
    let late = instance(&wxpay, &redis, &prefix).await;
    late.prepay(&order("T20261203000199"), "o-ann")
        .await
        .unwrap();
    assert_eq!(late.certificate_downloads(), 0);
    assert_eq!(wxpay.calls("GET /v3/certificates"), 1);
}

#[tokio::test]
async fn a_forged_shared_list_is_never_installed() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("paycerts");
    let wxpay = FakeWeChatPay::start(MCHID, APPID).await.unwrap();
    // Someone who can write to Redis but has no APIv3 key: a list in the
    // right shape whose ciphertext does not decrypt, and plain garbage.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let forged = format!(
        r#"{now}:{}:{{"data":[{{"serial_no":"FORGED","effective_time":"","expire_time":"","encrypt_certificate":{{"algorithm":"AEAD_AES_256_GCM","nonce":"0123456789ab","associated_data":"certificate","ciphertext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}}}]}}"#,
        now + 3_600_000
    );
    for value in [forged.as_str(), "garbage", "1:2:3"] {
        redis.cli(&["SET", &slot(&prefix), value]);
        let pay = instance(&wxpay, &redis, &prefix).await;
        let before = wxpay.calls("GET /v3/certificates");
        let serials = pay.refresh_certificates().await.unwrap();
        assert_eq!(serials, wxpay.certificate_serials(), "for {value:?}");
        assert_eq!(
            wxpay.calls("GET /v3/certificates"),
            before + 1,
            "the instance downloaded for itself instead ({value:?})"
        );
        assert!(!serials.iter().any(|s| s == "FORGED"));
        pay.prepay(&order("T20261203000200"), "o-bob")
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_store_in_trouble_means_downloading_directly() {
    let mut redis = RedisServer::start();
    let prefix = unique_prefix("paycerts");
    let wxpay = FakeWeChatPay::start(MCHID, APPID).await.unwrap();
    let pay = instance(&wxpay, &redis, &prefix).await;
    redis.pause();
    // Stalled Redis: each store call gives up after its 300 ms.
    let serials = tokio::time::timeout(Duration::from_secs(3), pay.refresh_certificates())
        .await
        .expect("the refresh does not wait on a stalled store beyond its timeouts")
        .unwrap();
    assert_eq!(serials, wxpay.certificate_serials());
    assert_eq!(pay.certificate_downloads(), 1);
    redis.resume();
    redis.kill();
    // Redis gone: a refresh still downloads, and replies still verify.
    let serials = tokio::time::timeout(Duration::from_secs(3), pay.refresh_certificates())
        .await
        .expect("the refresh does not wait on a dead store beyond its timeouts")
        .unwrap();
    assert_eq!(serials, wxpay.certificate_serials());
    assert_eq!(pay.certificate_downloads(), 2);
    pay.prepay(&order("T20261203000300"), "o-cat")
        .await
        .unwrap();
}
