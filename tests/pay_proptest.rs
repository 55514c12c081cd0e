//! Property tests of the notification parser and decryption (no network):
//! they never panic, refuse with a 4xx only, and accept exactly the
//! well-formed, correctly encrypted envelopes.

use proptest::prelude::*;
use serde_json::json;
use wxlogin::pay::fuzzing;

const KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";

fn envelope(nonce: &str, aad: &str, ciphertext: &str, algorithm: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "EV-2018022511223320873",
        "create_time": "2015-05-20T13:29:35+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": algorithm,
            "ciphertext": ciphertext,
            "associated_data": aad,
            "nonce": nonce,
        }
    }))
    .unwrap()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_refuse_with_4xx(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        match fuzzing::parse_notification(&data) {
            Ok(_) => {}
            Err(status) => prop_assert!((400..500).contains(&status)),
        }
        match fuzzing::open_notification(KEY, &data) {
            Ok(_) => {}
            Err(status) => prop_assert!((400..500).contains(&status)),
        }
    }

    #[test]
    fn a_well_formed_encrypted_transaction_opens(no in "[0-9A-Za-z_\\-|*]{6,32}", total in 1i64..1_000_000, nonce in "[0-9a-zA-Z]{12}", aad in "[a-z]{0,16}") {
        let plain = serde_json::to_vec(&json!({
            "appid": "wx1", "mchid": "1900000001", "out_trade_no": no, "transaction_id": "4200",
            "trade_state": "SUCCESS", "amount": {"total": total}, "payer": {"openid": "o"}
        })).unwrap();
        let ct = fuzzing::encrypt(KEY, &nonce, &aad, &plain).unwrap();
        let body = envelope(&nonce, &aad, &ct, "AEAD_AES_256_GCM");
        prop_assert_eq!(fuzzing::open_notification(KEY, &body), Ok(no.clone()));
        // Another algorithm, another AAD, or any changed ciphertext byte: refused.
        prop_assert_eq!(fuzzing::parse_notification(&envelope(&nonce, &aad, &ct, "AEAD_AES_128_GCM")).map(|_| ()), Err(400));
        let other_aad = format!("{aad}x");
        prop_assert_eq!(fuzzing::open_notification(KEY, &envelope(&nonce, &other_aad, &ct, "AEAD_AES_256_GCM")), Err(400));
    }

    #[test]
    fn a_flipped_ciphertext_bit_is_refused(nonce in "[0-9a-zA-Z]{12}", byte in 0usize..40, bit in 0u8..8) {
        let plain = br#"{"out_trade_no":"abcdef","trade_state":"SUCCESS"}"#;
        let ct = fuzzing::encrypt(KEY, &nonce, "transaction", plain).unwrap();
        use base64::Engine as _;
        let mut raw = base64::engine::general_purpose::STANDARD.decode(&ct).unwrap();
        let i = byte % raw.len();
        raw[i] ^= 1 << bit;
        let bad = base64::engine::general_purpose::STANDARD.encode(raw);
        prop_assert_eq!(fuzzing::open_notification(KEY, &envelope(&nonce, "transaction", &bad, "AEAD_AES_256_GCM")), Err(400));
    }

    #[test]
    fn nonces_other_than_12_bytes_are_refused(nonce in "[0-9a-z]{0,11}|[0-9a-z]{13,20}") {
        let body = envelope(&nonce, "", "AAAAAAAAAAAAAAAAAAAAAA==", "AEAD_AES_256_GCM");
        prop_assert_eq!(fuzzing::parse_notification(&body).map(|_| ()), Err(400));
    }

    #[test]
    fn the_window_is_symmetric(now in 1_000_000_000u64..3_000_000_000, delta in 0u64..1000) {
        let ahead = (now + delta).to_string();
        let behind = (now - delta).to_string();
        prop_assert_eq!(fuzzing::in_window(&ahead, now), delta <= 300);
        prop_assert_eq!(fuzzing::in_window(&behind, now), delta <= 300);
    }
}

/// The fuzz target's seeds (and any regressions) pass through its entry point.
#[test]
fn fuzz_seeds_and_regressions_replay() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for dir in ["seeds/pay_notification", "regressions/pay_notification"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            fuzzing::notification(&data);
            replayed += 1;
        }
    }
    assert!(
        replayed >= 2,
        "the seeds are in fuzz/seeds/pay_notification"
    );
    // The transaction seed parses (V5's resource) and its resource is V5's message, not JSON.
    let seed = std::fs::read(root.join("seeds/pay_notification/transaction")).unwrap();
    assert!(fuzzing::parse_notification(&seed).is_ok());
    assert_eq!(fuzzing::open_notification(KEY, &seed), Err(400));
}
