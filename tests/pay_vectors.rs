//! Known answers (wechat-pay.md §5) through the crate's own code: V1
//! (SHA256withRSA), V5 (AES-256-GCM), V6 (certificate download: decrypt and
//! X.509 serial), V10 (paySign and a request signature).

use std::time::{Duration, UNIX_EPOCH};

use wxlogin::pay::fuzzing;
use wxlogin::pay::WxPay;

const V1_KEY: &str = include_str!("fixtures/pay/v1_go_test_key.pem");
const V1_PUB: &str = include_str!("fixtures/pay/v1_go_test_public_key.pem");
const V1_SIGNATURE: &str = "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg==";

const V5_KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
const V5_NONCE: &str = "uluk4a9R25RW";
const V5_AAD: &str = "associatedData";
const V5_CT: &str = "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=";

const V7_KEY: &str = include_str!("fixtures/pay/v7_merchant_private_key.pem");
const V7_PUB: &str = include_str!("fixtures/pay/v7_merchant_public_key.pem");
const V10_PAY_SIGN: &str = "MniRW+VZZllqtFP55u2DIegY5lKkwmgS60r+QONmy4CYwBo2O3Ld5IIkTQvOc5sb2j7AVIhliIRMemWxcHiHxi2VTgwcVslcBddrYgX0pGCDo/RjBOAETVJfb5Yep1wBdwuVApUcoz6OipWBdkfHvYZbbkkOtNFhN/81YkOUsx3ORm2jaxo7gLFFYWwls3zG4OIqz9UzzP/iueG12be5/w/jrMcnMDe6K9ayCcQ4oe8KgXNe/vQpcRcfb9Gu4cI1PP9hObmuDxJuP4unRhky2uT93lptvU3CvcJuwQZKA7A3/m5HwmAB5iCCaU3+72wCSmaSuHeljSAiIpRl5pmGVA==";

#[test]
fn v1_sha256_with_rsa_signature() {
    assert_eq!(
        fuzzing::sign(V1_KEY, b"source").as_deref(),
        Some(V1_SIGNATURE)
    );
    // The verifier checks `timestamp\nnonce\nbody\n` over the exact body bytes.
    let sig = fuzzing::sign(V1_KEY, b"1624523846\nEcZ9Cmy4\n{\"a\":1}\n").unwrap();
    assert!(fuzzing::verify(
        V1_PUB,
        "1624523846",
        "EcZ9Cmy4",
        br#"{"a":1}"#,
        &sig
    ));
    assert!(!fuzzing::verify(
        V1_PUB,
        "1624523846",
        "EcZ9Cmy4",
        br#"{"a": 1}"#,
        &sig
    ));
    assert!(!fuzzing::verify(
        V1_PUB,
        "1624523847",
        "EcZ9Cmy4",
        br#"{"a":1}"#,
        &sig
    ));
    assert!(!fuzzing::verify(
        V1_PUB,
        "1624523846",
        "EcZ9Cmy4",
        br#"{"a":1}"#,
        V1_SIGNATURE
    ));
    assert!(!fuzzing::verify(
        V1_PUB,
        "1624523846",
        "EcZ9Cmy4",
        br#"{"a":1}"#,
        "WECHATPAY/SIGNTEST/abc"
    ));
}

#[test]
fn v5_aes_256_gcm() {
    assert_eq!(
        fuzzing::decrypt(V5_KEY, V5_NONCE, V5_AAD, V5_CT).as_deref(),
        Some(&b"message"[..])
    );
    assert_eq!(
        fuzzing::encrypt(V5_KEY, V5_NONCE, V5_AAD, b"message").as_deref(),
        Some(V5_CT)
    );
    // Negatives: wrong AAD, nonce, ciphertext, key length.
    assert!(fuzzing::decrypt(V5_KEY, V5_NONCE, "associatedDatA", V5_CT).is_none());
    assert!(fuzzing::decrypt(V5_KEY, "uluk4a9R25RX", V5_AAD, V5_CT).is_none());
    assert!(
        fuzzing::decrypt(V5_KEY, V5_NONCE, V5_AAD, "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwA=").is_none()
    );
    assert!(
        fuzzing::decrypt("testAPIv3Key0000", V5_NONCE, V5_AAD, V5_CT).is_none(),
        "a 16-byte key must not silently mean AES-128"
    );
    assert!(fuzzing::decrypt(V5_KEY, "short", V5_AAD, V5_CT).is_none());
}

#[test]
fn v6_certificate_download_decrypts_to_the_tenpay_certificate() {
    let body = include_bytes!("fixtures/pay/v6_certificates_response.json");
    let certs = fuzzing::certificates(V5_KEY, body).expect("V6 decrypts");
    assert_eq!(certs.len(), 1);
    let (serial, not_before, not_after) = &certs[0];
    assert_eq!(serial, "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC");
    // 2023-09-19T15:15:58Z .. 2028-09-17T15:15:58Z
    assert_eq!(*not_before, UNIX_EPOCH + Duration::from_secs(1_695_136_558));
    assert_eq!(*not_after, UNIX_EPOCH + Duration::from_secs(1_852_816_558));
    // Another APIv3 key: refused, nothing parsed.
    assert!(fuzzing::certificates("b7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", body).is_err());
    // A tampered serial_no: refused.
    let tampered = String::from_utf8(body.to_vec()).unwrap().replace(
        "\"serial_no\": \"5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC\"",
        "\"serial_no\": \"5DEA10EF55877E3CF6C33255C2E7DEFFF7E427ED\"",
    );
    assert!(fuzzing::certificates(V5_KEY, tampered.as_bytes()).is_err());
}

#[tokio::test]
async fn v10_pay_sign_through_request_payment() {
    let pay = WxPay::builder()
        .mchid("1234567891")
        .app_id("wx2421b1c4370ec43b")
        .merchant_serial("5F1C72E2A8931B72A2E13AF8DEE92471EB397115")
        .merchant_key_pem(V7_KEY)
        .api_v3_key(V5_KEY)
        .public_key("PUB_KEY_ID_0000000000000000000000000000000001", V7_PUB)
        .notify_url("https://example.com/wx/pay/notify")
        .build()
        .unwrap();
    let args = pay
        .request_payment_at(
            "wx201410272009395522657a690389285100",
            1_554_208_460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
        )
        .await
        .unwrap();
    assert_eq!(args.time_stamp, "1554208460");
    assert_eq!(args.nonce_str, "593BEC0C930BF1AFEB40B4A08C8FB242");
    assert_eq!(
        args.package,
        "prepay_id=wx201410272009395522657a690389285100"
    );
    assert_eq!(args.sign_type, "RSA");
    assert_eq!(args.pay_sign, V10_PAY_SIGN);
    // The JSON the mini program gets: camelCase, timeStamp a string.
    let json = serde_json::to_value(&args).unwrap();
    assert_eq!(json["timeStamp"], "1554208460");
    assert_eq!(json["signType"], "RSA");
    assert!(json.get("appId").is_none());
}

#[test]
fn v10_request_signature_prefix() {
    let sig = fuzzing::sign(
        V7_KEY,
        b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n",
    )
    .unwrap();
    assert!(
        sig.starts_with("Yql2HJi5R+/B/WzOlH5KqIUNOCTrECi808qopAT8Pk2v"),
        "{sig}"
    );
    assert!(sig.ends_with("yLcKA=="), "{sig}");
}

#[test]
fn timestamp_window_is_five_minutes() {
    let now = 1_800_000_000;
    assert!(fuzzing::in_window("1800000000", now));
    assert!(fuzzing::in_window("1800000300", now));
    assert!(fuzzing::in_window("1799999700", now));
    assert!(!fuzzing::in_window("1800000301", now));
    assert!(!fuzzing::in_window("1799999699", now));
    assert!(!fuzzing::in_window("", now));
    assert!(!fuzzing::in_window("+1800000000", now));
    assert!(!fuzzing::in_window("18e8", now));
}
