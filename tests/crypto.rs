//! `wxlogin::crypto` against WeChat's published vectors, every malformed
//! input (an error value each, never a panic), property tests that encrypt
//! random JSON and decrypt it back, and `WxSession::decrypt` over real HTTP:
//! base64 `+` survives a JSON body, and a re-login's new session_key makes
//! data encrypted under the old one fail with `relogin: true`, while every
//! session of the user decrypts data made with the newest key.

mod common;

use aes::Aes128;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cbc::cipher::block_padding::{NoPadding, Pkcs7};
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use common::{app_with, builder, fake_wechat, login, serve, APP_ID};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use wxlogin::crypto::{decrypt, decrypt_json, session_signature, verify_raw_data, CryptoError};
use wxlogin::mock::FakeWeChat;
use wxlogin::WxSession;

// ---- The official demo vector (wechat-api.md §5.2) ----

const APPID: &str = "wx4f4bc4dec97d474b";
const KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
const DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
const PLAINTEXT: &str = r#"{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0","unionId":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA","watermark":{"timestamp":1477314187,"appid":"wx4f4bc4dec97d474b"}}"#;
const PLAINTEXT_SHA256: &str = "3237d8a5dbd413523c194882c7156544d8a06e2afcc97383cc300c17bd09391b";
/// The key of the official rawData example; wrong for the demo ciphertext.
const OTHER_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
const RAW_DATA: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
const RAW_SIGNATURE: &str = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// AES-128-CBC + PKCS#7, base64 out: what WeChat does to open data.
fn encrypt(key: &[u8; 16], iv: &[u8; 16], plaintext: &[u8]) -> String {
    let ct = cbc::Encryptor::<Aes128>::new(key.into(), iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    STANDARD.encode(ct)
}

/// Encrypts whole blocks as they are, so the test picks the "padding".
fn encrypt_unpadded(key: &[u8; 16], iv: &[u8; 16], blocks: &[u8]) -> String {
    assert_eq!(blocks.len() % 16, 0);
    let ct = cbc::Encryptor::<Aes128>::new(key.into(), iv.into())
        .encrypt_padded_vec_mut::<NoPadding>(blocks);
    STANDARD.encode(ct)
}

fn key_bytes(b64: &str) -> [u8; 16] {
    STANDARD.decode(b64).unwrap().try_into().unwrap()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserInfo {
    open_id: String,
    nick_name: String,
    gender: u8,
    union_id: String,
    watermark: Watermark,
}

#[derive(Debug, Deserialize)]
struct Watermark {
    appid: String,
    timestamp: u64,
}

#[test]
fn official_vector_decrypts_to_the_exact_plaintext() {
    let plaintext = decrypt(KEY, DATA, IV).unwrap();
    assert_eq!(plaintext.len(), 393);
    assert_eq!(std::str::from_utf8(&plaintext).unwrap(), PLAINTEXT);
    assert_eq!(hex(&Sha256::digest(&plaintext)), PLAINTEXT_SHA256);
}

#[test]
fn official_vector_decrypts_to_typed_json_with_the_watermark_checked() {
    let user: UserInfo = decrypt_json(KEY, DATA, IV, APPID).unwrap();
    assert_eq!(user.open_id, "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
    assert_eq!(user.nick_name, "Band");
    assert_eq!(user.gender, 1);
    assert_eq!(user.union_id, "ocMvos6NjeKLIBqg5Mr9QjxrP1FA");
    assert_eq!(user.watermark.appid, APPID);
    assert_eq!(user.watermark.timestamp, 1477314187);

    let value: Value = decrypt_json(KEY, DATA, IV, APPID).unwrap();
    assert_eq!(value, serde_json::from_str::<Value>(PLAINTEXT).unwrap());
}

#[test]
fn foreign_appid_is_refused() {
    let err = decrypt_json::<Value>(KEY, DATA, IV, "wx0000000000000000").unwrap_err();
    assert!(matches!(err, CryptoError::WatermarkMismatch), "{err:?}");
    assert!(err.relogin());
    // Prefix or case variants of the app id are other app ids.
    for near in [
        "wx4f4bc4dec97d474",
        "WX4F4BC4DEC97D474B",
        "",
        "wx4f4bc4dec97d474b ",
    ] {
        let err = decrypt_json::<Value>(KEY, DATA, IV, near).unwrap_err();
        assert!(
            matches!(err, CryptoError::WatermarkMismatch),
            "{near}: {err:?}"
        );
    }
}

#[test]
fn wrong_key_is_bad_padding_and_asks_for_a_relogin() {
    let err = decrypt(OTHER_KEY, DATA, IV).unwrap_err();
    assert!(matches!(err, CryptoError::BadPadding), "{err:?}");
    assert!(err.relogin());
    assert!(err.to_string().contains("wx.login"), "{err}");
    let err = decrypt_json::<Value>(OTHER_KEY, DATA, IV, APPID).unwrap_err();
    assert!(matches!(err, CryptoError::BadPadding), "{err:?}");
}

#[test]
fn wrong_iv_garbles_the_first_block_only_so_the_json_fails() {
    // CBC: another IV changes only the first block; the padding stays valid.
    let err = decrypt_json::<Value>(KEY, DATA, OTHER_KEY, APPID).unwrap_err();
    assert!(matches!(err, CryptoError::InvalidJson), "{err:?}");
    assert!(err.relogin());
    let bytes = decrypt(KEY, DATA, OTHER_KEY).unwrap();
    assert_eq!(&bytes[16..], &PLAINTEXT.as_bytes()[16..]);
}

#[test]
fn malformed_ciphertext_is_invalid_ciphertext() {
    let raw = STANDARD.decode(DATA).unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("'aaaa' + ciphertext (403 bytes)", format!("aaaa{DATA}")),
        (
            "truncated by 4 chars (399 bytes)",
            DATA[..DATA.len() - 4].to_owned(),
        ),
        ("truncated mid-quantum", DATA[..DATA.len() - 3].to_owned()),
        ("one byte short", STANDARD.encode(&raw[..raw.len() - 1])),
        (
            "one byte long",
            STANDARD.encode([&raw[..], &[0u8]].concat()),
        ),
        ("15 bytes", STANDARD.encode([0u8; 15])),
        ("not base64", "not base64 at all!".into()),
        (
            "url-safe alphabet",
            DATA.replace('+', "-").replace('/', "_"),
        ),
        ("missing padding", DATA.trim_end_matches('=').to_owned()),
        (
            "embedded newline",
            format!("{}\n{}", &DATA[..64], &DATA[64..]),
        ),
        ("non-ASCII", "密文密文密文密文".into()),
    ];
    for (what, data) in cases {
        let err = decrypt(KEY, &data, IV).unwrap_err();
        assert!(
            matches!(err, CryptoError::InvalidCiphertext(_)),
            "{what}: {err:?}"
        );
        assert!(!err.relogin(), "{what}: a new login would not fix {err}");
        let err = decrypt_json::<Value>(KEY, &data, IV, APPID).unwrap_err();
        assert!(
            matches!(err, CryptoError::InvalidCiphertext(_)),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn whole_blocks_cut_off_leave_a_bad_padding() {
    // Dropping the last block leaves a well-formed length; what ends the
    // data now is a block of JSON text, not a PKCS#7 pad.
    let raw = STANDARD.decode(DATA).unwrap();
    let shorter = STANDARD.encode(&raw[..raw.len() - 16]);
    let err = decrypt(KEY, &shorter, IV).unwrap_err();
    assert!(matches!(err, CryptoError::BadPadding), "{err:?}");
}

#[test]
fn plus_turned_into_space_is_named_in_the_error() {
    let mangled = DATA.replace('+', " ");
    let err = decrypt(KEY, &mangled, IV).unwrap_err();
    assert!(matches!(err, CryptoError::InvalidCiphertext(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("'+'") && text.contains("JSON body"), "{text}");

    let iv_with_space = "ab+cdefghijklmnopqrstu==".replace('+', " ");
    let err = decrypt(KEY, DATA, &iv_with_space).unwrap_err();
    assert!(matches!(err, CryptoError::InvalidIv(_)), "{err:?}");
    assert!(err.to_string().contains("'+'"), "{err}");
}

#[test]
fn keys_and_ivs_must_be_base64_of_exactly_16_bytes() {
    let b15 = STANDARD.encode([7u8; 15]);
    let b17 = STANDARD.encode([7u8; 17]);
    let b32 = STANDARD.encode([7u8; 32]);
    for bad in [
        b15.as_str(),
        b17.as_str(),
        b32.as_str(),
        "",
        "not base64!",
        "tiihtNczf5v6AKRyjwEUhQ", // padding stripped
        "tiihtNczf5v6AKRyjwEUhQ==\n",
    ] {
        let err = decrypt(bad, DATA, IV).unwrap_err();
        assert!(
            matches!(err, CryptoError::InvalidKey(_)),
            "key {bad:?}: {err:?}"
        );
        assert!(!err.relogin());
        let err = decrypt(KEY, DATA, bad).unwrap_err();
        assert!(
            matches!(err, CryptoError::InvalidIv(_)),
            "iv {bad:?}: {err:?}"
        );
        assert!(!err.relogin());
        let err = decrypt_json::<Value>(bad, DATA, IV, APPID).unwrap_err();
        assert!(
            matches!(err, CryptoError::InvalidKey(_)),
            "key {bad:?}: {err:?}"
        );
    }
    // The key is checked before the IV, the IV before the data.
    assert!(matches!(
        decrypt(&b15, "", &b17),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(
        decrypt(KEY, "", &b17),
        Err(CryptoError::InvalidIv(_))
    ));
}

#[test]
fn every_kind_of_bad_padding_is_refused() {
    let key = [0x11u8; 16];
    let iv = [0x22u8; 16];
    let key_b64 = STANDARD.encode(key);
    let iv_b64 = STANDARD.encode(iv);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut zero = vec![b'a'; 16];
    zero[15] = 0;
    cases.push(("pad byte 0", zero));
    let mut seventeen = vec![17u8; 32];
    seventeen[..15].copy_from_slice(b"hello, world!!!");
    cases.push(("pad byte 17 (> block)", seventeen));
    let mut inconsistent = b"0123456789abcdef".to_vec();
    inconsistent[13] = 3;
    inconsistent[14] = 2; // should be 3
    inconsistent[15] = 3;
    cases.push(("inconsistent pad bytes", inconsistent));
    let mut huge = vec![0xffu8; 16];
    huge[0] = b'{';
    cases.push(("pad byte 0xff", huge));
    for (what, blocks) in cases {
        let data = encrypt_unpadded(&key, &iv, &blocks);
        let err = decrypt(&key_b64, &data, &iv_b64).unwrap_err();
        assert!(matches!(err, CryptoError::BadPadding), "{what}: {err:?}");
    }
    // A full block of padding is valid and leaves nothing of it behind.
    let data = encrypt_unpadded(&key, &iv, &[&b"0123456789abcdef"[..], &[16u8; 16]].concat());
    assert_eq!(
        decrypt(&key_b64, &data, &iv_b64).unwrap(),
        b"0123456789abcdef"
    );
}

#[test]
fn non_json_plaintext_is_invalid_json() {
    let key = [0x5au8; 16];
    let iv = [0xa5u8; 16];
    let (k, i) = (STANDARD.encode(key), STANDARD.encode(iv));
    let cases: [&[u8]; 6] = [
        b"hello, not json",
        b"",
        b"{\"watermark\":{\"appid\":\"wx4f4bc4dec97d474b\"}", // truncated JSON
        b"\xff\xfe{\"a\":1}",                                 // not UTF-8
        b"{\"a\":\"\xc3\x28\"}",                              // invalid UTF-8 in a string
        b"{} trailing",
    ];
    for plaintext in cases {
        let data = encrypt(&key, &iv, plaintext);
        // decrypt itself succeeds: the bytes come back as they were.
        assert_eq!(decrypt(&k, &data, &i).unwrap(), plaintext);
        let err = decrypt_json::<Value>(&k, &data, &i, APPID).unwrap_err();
        assert!(
            matches!(err, CryptoError::InvalidJson),
            "{plaintext:?}: {err:?}"
        );
        assert!(err.relogin());
    }
}

#[test]
fn watermark_must_be_there_and_be_a_string() {
    let key = [1u8; 16];
    let iv = [2u8; 16];
    let (k, i) = (STANDARD.encode(key), STANDARD.encode(iv));
    for body in [
        json!({"openId": "o"}),
        json!({"watermark": {}}),
        json!({"watermark": {"appid": 42}}),
        json!({"watermark": {"appid": null}}),
        json!({"watermark": "wx4f4bc4dec97d474b"}),
        json!({"appid": "wx4f4bc4dec97d474b"}),
        json!(["watermark", {"appid": "wx4f4bc4dec97d474b"}]),
        json!("wx4f4bc4dec97d474b"),
    ] {
        let data = encrypt(&key, &iv, body.to_string().as_bytes());
        let err = decrypt_json::<Value>(&k, &data, &i, APPID).unwrap_err();
        assert!(
            matches!(err, CryptoError::MissingWatermark),
            "{body}: {err:?}"
        );
        assert!(!err.relogin());
    }
}

#[test]
fn json_of_another_shape_is_a_deserialize_error_without_the_data() {
    let key = [3u8; 16];
    let iv = [4u8; 16];
    let (k, i) = (STANDARD.encode(key), STANDARD.encode(iv));
    let body = json!({"openId": "secret-openid-13800138000", "watermark": {"appid": APPID}});
    let data = encrypt(&key, &iv, body.to_string().as_bytes());
    let err = decrypt_json::<UserInfo>(&k, &data, &i, APPID).unwrap_err();
    assert!(matches!(err, CryptoError::Deserialize(_)), "{err:?}");
    assert!(!err.relogin());
    assert!(!err.to_string().contains("13800138000"), "{err}");
    // The detail is the source, for the server's logs.
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("missing field"), "{source}");

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Phone {
        #[serde(rename = "openId")]
        open_id: u64,
    }
    let err = decrypt_json::<Phone>(&k, &data, &i, APPID).unwrap_err();
    assert!(matches!(err, CryptoError::Deserialize(_)), "{err:?}");
    assert!(!err.to_string().contains("13800138000"), "{err}");
}

#[test]
fn errors_never_show_key_material() {
    let key_hex = "b628a1b4d7337f9bfa00a4728f011485";
    let b17 = STANDARD.encode([9u8; 17]);
    let errors = vec![
        decrypt(OTHER_KEY, DATA, IV).unwrap_err(),
        decrypt(&b17, DATA, IV).unwrap_err(),
        decrypt("tiihtNczf5v6AKRyjwEUhQ=!", DATA, IV).unwrap_err(),
        decrypt(KEY, DATA, &b17).unwrap_err(),
        decrypt(KEY, "aaaa", IV).unwrap_err(),
        decrypt_json::<Value>(KEY, DATA, IV, "wxother").unwrap_err(),
        decrypt_json::<Value>(KEY, DATA, OTHER_KEY, APPID).unwrap_err(),
    ];
    for err in errors {
        for text in [err.to_string(), format!("{err:?}")] {
            for secret in [
                KEY,
                OTHER_KEY,
                &b17,
                "tiihtNczf5v6",
                "HyVFkGl5",
                key_hex,
                IV,
            ] {
                assert!(!text.contains(secret), "{text:?} shows {secret}");
            }
        }
    }
}

// ---- Signatures ----

#[test]
fn official_raw_data_signature_verifies() {
    assert!(verify_raw_data(RAW_DATA, RAW_SIGNATURE, OTHER_KEY));
}

#[test]
fn raw_data_signature_fails_on_any_change() {
    // A changed byte of the data, of the signature, or another key.
    let changed = RAW_DATA.replace("Band", "Bond");
    assert!(!verify_raw_data(&changed, RAW_SIGNATURE, OTHER_KEY));
    assert!(!verify_raw_data(
        &format!("{RAW_DATA} "),
        RAW_SIGNATURE,
        OTHER_KEY
    ));
    assert!(!verify_raw_data(RAW_DATA, RAW_SIGNATURE, KEY));
    for pos in [0, 17, 39] {
        let mut sig = RAW_SIGNATURE.as_bytes().to_vec();
        sig[pos] = if sig[pos] == b'0' { b'1' } else { b'0' };
        assert!(!verify_raw_data(
            RAW_DATA,
            std::str::from_utf8(&sig).unwrap(),
            OTHER_KEY
        ));
    }
    // Lowercase hex is what WeChat sends; anything else is false.
    assert!(!verify_raw_data(
        RAW_DATA,
        &RAW_SIGNATURE.to_uppercase(),
        OTHER_KEY
    ));
}

#[test]
fn wrong_length_signatures_are_false() {
    for sig in [
        "",
        &RAW_SIGNATURE[..39],
        &format!("{RAW_SIGNATURE}0"),
        &format!("{RAW_SIGNATURE}{RAW_SIGNATURE}"),
        "75e81ced",
    ] {
        assert!(!verify_raw_data(RAW_DATA, sig, OTHER_KEY), "{sig:?}");
    }
}

#[test]
fn session_signature_vector() {
    assert_eq!(
        session_signature(KEY),
        "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
    );
    let sig = session_signature("o0q0otL8aEzpcZL/FT9WsQ==");
    assert_eq!(sig.len(), 64);
    assert!(sig
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

/// HMAC-SHA256 keyed the same way `session_signature` keys it.
fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    hex(&mac.finalize().into_bytes())
}

#[test]
fn session_key_text_not_its_bytes_is_the_hmac_key() {
    // The official POST example only holds with key = the base64 text...
    let key = "o0q0otL8aEzpcZL/FT9WsQ==";
    let official = "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b";
    assert_eq!(hmac_hex(key.as_bytes(), br#"{"foo":"bar"}"#), official);
    assert_ne!(
        hmac_hex(&STANDARD.decode(key).unwrap(), br#"{"foo":"bar"}"#),
        official
    );
    // ...and session_signature is that same keying over the empty message.
    assert_eq!(session_signature(key), hmac_hex(key.as_bytes(), b""));
    assert_ne!(
        session_signature(key),
        hmac_hex(&STANDARD.decode(key).unwrap(), b"")
    );
    assert_eq!(session_signature(KEY), hmac_hex(KEY.as_bytes(), b""));
}

// ---- Properties ----

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with a `watermark.appid`, and that appid.
fn arb_payload() -> impl Strategy<Value = (Value, String)> {
    (
        prop::collection::btree_map(any::<String>(), arb_json(), 0..6),
        "wx[0-9a-f]{16}",
        any::<u32>(),
    )
        .prop_map(|(fields, appid, ts)| {
            let mut obj: serde_json::Map<String, Value> = fields.into_iter().collect();
            obj.insert("watermark".into(), json!({"appid": appid, "timestamp": ts}));
            (Value::Object(obj), appid)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_json_round_trips(
        (payload, appid) in arb_payload(),
        key in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
    ) {
        let data = encrypt(&key, &iv, payload.to_string().as_bytes());
        let (k, i) = (STANDARD.encode(key), STANDARD.encode(iv));
        let back: Value = decrypt_json(&k, &data, &i, &appid).unwrap();
        prop_assert_eq!(&back, &payload);
        // Another app id is refused with the same key.
        let other = format!("{appid}x");
        prop_assert!(matches!(
            decrypt_json::<Value>(&k, &data, &i, &other),
            Err(CryptoError::WatermarkMismatch)
        ));
    }

    #[test]
    fn random_text_inputs_never_panic(
        key in ".{0,40}",
        iv in ".{0,40}",
        data in ".{0,120}",
        appid in ".{0,20}",
    ) {
        let plain = decrypt(&key, &data, &iv);
        let json = decrypt_json::<Value>(&key, &data, &iv, &appid);
        // decrypt_json fails first wherever decrypt fails, with the same variant.
        if let Err(e) = &plain {
            let j = json.as_ref().unwrap_err();
            prop_assert_eq!(std::mem::discriminant(e), std::mem::discriminant(j));
        }
        // verify_raw_data(raw_data, signature, session_key): the data's own
        // signature under this key verifies; random text (the iv) does not.
        let genuine = hex(&Sha1::digest(format!("{data}{key}").as_bytes()));
        prop_assert!(verify_raw_data(&data, &genuine, &key));
        prop_assert_eq!(verify_raw_data(&data, &iv, &key), iv == genuine);
        prop_assert_eq!(session_signature(&key).len(), 64);
    }

    #[test]
    fn random_bytes_under_a_valid_key_never_panic(
        key in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        appid in ".{0,20}",
    ) {
        let (k, i) = (STANDARD.encode(key), STANDARD.encode(iv));
        let data = STANDARD.encode(&bytes);
        match decrypt(&k, &data, &i) {
            Ok(plain) => {
                prop_assert!(!bytes.is_empty() && bytes.len() % 16 == 0);
                prop_assert!(plain.len() < bytes.len() && plain.len() + 16 >= bytes.len());
            }
            Err(CryptoError::InvalidCiphertext(_)) => {
                prop_assert!(bytes.is_empty() || bytes.len() % 16 != 0)
            }
            Err(CryptoError::BadPadding) => prop_assert!(bytes.len() % 16 == 0),
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
        // Random ciphertext never passes as genuine open data.
        prop_assert!(decrypt_json::<Value>(&k, &data, &i, &appid).is_err());
    }

    #[test]
    fn random_key_lengths_are_checked(len in 0usize..40, iv_len in 0usize..40) {
        let k = STANDARD.encode(vec![0x42u8; len]);
        let i = STANDARD.encode(vec![0x24u8; iv_len]);
        let r = decrypt(&k, DATA, &i);
        match (len, iv_len) {
            // The demo ciphertext under a key that is not its own: the
            // last block decrypts to noise, which is not PKCS#7.
            (16, 16) => prop_assert!(matches!(r, Err(CryptoError::BadPadding)), "{:?}", r),
            (16, _) => prop_assert!(matches!(r, Err(CryptoError::InvalidIv(_)))),
            _ => prop_assert!(matches!(r, Err(CryptoError::InvalidKey(_)))),
        }
    }

    #[test]
    fn raw_data_signature_round_trips(raw in any::<String>(), key in "[A-Za-z0-9+/]{22}==") {
        let sig = hex(&Sha1::digest(format!("{raw}{key}").as_bytes()));
        prop_assert!(verify_raw_data(&raw, &sig, &key));
        let changed = format!("{raw}!");
        prop_assert!(!verify_raw_data(&changed, &sig, &key));
        // The key goes after the data: the other order is another signature.
        let swapped = hex(&Sha1::digest(format!("{key}{raw}").as_bytes()));
        prop_assert_eq!(verify_raw_data(&raw, &swapped, &key), swapped == sig);
    }
}

// ---- From a handler, over HTTP ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptedBody {
    encrypted_data: String,
    iv: String,
}

/// What the demo's `/api/decrypt` does: a relogin-hint error gets one fixed
/// answer (no padding oracle), other errors say what is malformed.
async fn decrypt_route(session: WxSession, Json(body): Json<EncryptedBody>) -> Response {
    match session.decrypt::<Value>(&body.encrypted_data, &body.iv).await {
        Ok(data) => Json(data).into_response(),
        Err(e) if e.relogin() => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "decrypt_failed",
                "message": "could not decrypt with this session's session_key; call wx.login, log in again, then fetch the data again",
                "relogin": true,
            })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "bad_request", "message": e.to_string(), "relogin": false })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDataBody {
    raw_data: String,
    signature: String,
}

async fn verify_route(session: WxSession, Json(body): Json<RawDataBody>) -> Json<Value> {
    Json(json!({ "valid": session.verify_raw_data(&body.raw_data, &body.signature) }))
}

/// The standard app with `/api/decrypt` and `/api/verify` behind the layer too.
fn crypto_app(fake: &FakeWeChat) -> Router {
    let wx = builder(fake).build().unwrap();
    app_with(
        &wx,
        Router::new()
            .route("/api/decrypt", post(decrypt_route))
            .route("/api/verify", post(verify_route)),
    )
}

async fn post_json(client: &reqwest::Client, url: &str, token: &str, body: &Value) -> (u16, Value) {
    let res = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Encrypts WeRun-like payloads under `key` until the base64 has a `+`.
fn encrypt_with_plus(key_b64: &str, appid: &str) -> (Value, String, String) {
    let key = key_bytes(key_b64);
    for n in 0u32..10_000 {
        let payload = json!({
            "stepInfoList": [{"timestamp": 1445866601 + n, "step": n}],
            "watermark": {"appid": appid, "timestamp": 1700000000},
        });
        let iv = [(n % 251) as u8; 16];
        let data = encrypt(&key, &iv, payload.to_string().as_bytes());
        if data.contains('+') {
            return (payload, data, STANDARD.encode(iv));
        }
    }
    panic!("no ciphertext with a '+' in 10000 tries");
}

#[tokio::test]
async fn decrypt_from_a_handler_and_a_relogin_rotates_the_key() {
    let fake = fake_wechat().await;
    let base = serve(crypto_app(&fake)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/decrypt");

    let token1 = login(&client, &base, &fake, "o-runner").await;
    let key1 = fake.session_key("o-runner").unwrap();

    // The mini program POSTs encryptedData/iv in a JSON body: '+' survives.
    let (payload, data1, iv1) = encrypt_with_plus(&key1, APP_ID);
    assert!(data1.contains('+'));
    let body1 = json!({ "encryptedData": data1, "iv": iv1 });
    let (status, got) = post_json(&client, &url, &token1, &body1).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, payload);

    // The same values mangled the way a query string would ('+' -> ' ')
    // are malformed input, not a stale key, and the message says why.
    let mangled = json!({ "encryptedData": data1.replace('+', " "), "iv": iv1 });
    let (status, got) = post_json(&client, &url, &token1, &mangled).await;
    assert_eq!(status, 400);
    assert_eq!(got["error"], "bad_request");
    assert_eq!(got["relogin"], false);
    assert!(got["message"].as_str().unwrap().contains("'+'"), "{got}");

    // Data made for another mini program is refused.
    let (_, foreign, foreign_iv) = encrypt_with_plus(&key1, "wxsomeoneelse0001");
    let (status, got) = post_json(
        &client,
        &url,
        &token1,
        &json!({ "encryptedData": foreign, "iv": foreign_iv }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(got["error"], "decrypt_failed");

    // The user logs in again: WeChat hands out a new session_key.
    let token2 = login(&client, &base, &fake, "o-runner").await;
    let key2 = fake.session_key("o-runner").unwrap();
    assert_ne!(key1, key2);

    // Data encrypted under the old key fails on the new session with a
    // clear "log in again"...
    let (status, got) = post_json(&client, &url, &token2, &body1).await;
    assert_eq!(status, 400, "{got}");
    assert_eq!(got["error"], "decrypt_failed");
    assert_eq!(got["relogin"], true);
    assert!(
        got["message"].as_str().unwrap().contains("wx.login"),
        "{got}"
    );

    // ...and data encrypted after the latest wx.login decrypts.
    let (payload2, data2, iv2) = encrypt_with_plus(&key2, APP_ID);
    let body2 = json!({ "encryptedData": data2, "iv": iv2 });
    let (status, got) = post_json(&client, &url, &token2, &body2).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, payload2);

    // The first session (another device, say) decrypts it too: WeChat keeps
    // one key per user, and the store remembers the newest.
    let (status, got) = post_json(&client, &url, &token1, &body2).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, payload2);

    // Without a token the layer answers first.
    let res = client.post(&url).json(&body2).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn verify_raw_data_from_a_handler() {
    let fake = fake_wechat().await;
    let base = serve(crypto_app(&fake)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/verify");

    let token = login(&client, &base, &fake, "o-profile").await;
    let key = fake.session_key("o-profile").unwrap();
    let signature = hex(&Sha1::digest(format!("{RAW_DATA}{key}").as_bytes()));

    let (status, got) = post_json(
        &client,
        &url,
        &token,
        &json!({ "rawData": RAW_DATA, "signature": signature }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["valid"], true);

    // The official example's signature was made with another key.
    let (status, got) = post_json(
        &client,
        &url,
        &token,
        &json!({ "rawData": RAW_DATA, "signature": RAW_SIGNATURE }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["valid"], false);
}
