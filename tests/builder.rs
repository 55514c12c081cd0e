//! `WxLoginBuilder::build` refuses configurations that cannot work with a
//! typed `BuildError`, and neither the builder nor the built handle shows the
//! app secret or a token key in `Debug`.

mod common;

use std::time::Duration;

use wxlogin::store::{MemoryStore, SessionStore};
use wxlogin::{BuildError, WxLogin, WxLoginBuilder};

use common::{app, builder, fake_wechat, login, serve, Forward, Forwarding, APP_ID, APP_SECRET};

const TOKEN_KEY: &str = "token-key-must-not-leak-0123456789";

/// A valid configuration, to break one setting at a time.
fn valid() -> WxLoginBuilder<()> {
    WxLogin::builder().app_id(APP_ID).app_secret(APP_SECRET)
}

fn build_err(builder: WxLoginBuilder<()>) -> BuildError {
    builder
        .build()
        .expect_err("the configuration should be refused")
}

fn assert_invalid(builder: WxLoginBuilder<()>, expected: &str) {
    match build_err(builder) {
        BuildError::InvalidValue { field, reason } => {
            assert_eq!(field, expected, "{reason}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected InvalidValue {{ field: {expected:?} }}, got {other:?}"),
    }
}

/// A memory store that says it is shared between processes, like Redis.
#[derive(Clone, Default)]
struct SharedStore(MemoryStore);

impl Forwarding for SharedStore {
    fn inner(&self) -> &dyn SessionStore {
        &self.0
    }
    fn is_shared(&self) -> bool {
        true
    }
}

#[test]
fn a_valid_configuration_builds() {
    let wx = valid().build().unwrap();
    assert_eq!(wx.app_id(), APP_ID);
}

#[test]
fn missing_app_id_is_refused() {
    let err = build_err(WxLogin::builder().app_secret(APP_SECRET));
    assert!(matches!(err, BuildError::MissingAppId), "{err:?}");
    let err = build_err(valid().app_id(""));
    assert!(matches!(err, BuildError::MissingAppId), "{err:?}");
}

#[test]
fn missing_or_empty_app_secret_is_refused() {
    let err = build_err(WxLogin::builder().app_id(APP_ID));
    assert!(matches!(err, BuildError::MissingAppSecret), "{err:?}");
    for empty in ["", "   "] {
        let err = build_err(valid().app_secret(empty));
        assert!(
            matches!(err, BuildError::MissingAppSecret),
            "{empty:?}: {err:?}"
        );
    }
}

#[test]
fn a_cap_of_zero_sessions_per_user_is_refused() {
    assert_invalid(valid().max_sessions_per_user(0), "max_sessions_per_user");
    valid().max_sessions_per_user(1).build().unwrap();
}

#[test]
fn zero_durations_are_refused() {
    assert_invalid(valid().session_ttl(Duration::ZERO), "session_ttl");
    assert_invalid(valid().cache_ttl(Duration::ZERO), "cache_ttl");
    assert_invalid(valid().idle_timeout(Duration::ZERO), "idle_timeout");
    // Non-zero values of the same settings build.
    valid()
        .session_ttl(Duration::from_secs(1))
        .cache_ttl(Duration::from_millis(1))
        .idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
}

#[test]
fn a_token_key_under_128_bits_is_refused() {
    // 128 bits: 32 hex digits (16 bytes), or 32 characters of any other text.
    for short in [
        "",
        "short",
        "0123456789abcdef", // 16 hex digits: 64 bits (accepted before)
        "0123456789abcdef0123456789abcde", // 31 hex digits
        "9f86d081884c7d659a2feaa0c55ad0", // 30 hex digits: 15 bytes
        "a-passphrase-of-31-characters!!", // 31 characters of text
    ] {
        assert_invalid(valid().token_key(short), "token_key");
        // One short key among good ones is refused too.
        assert_invalid(valid().token_key(TOKEN_KEY).token_key(short), "token_key");
    }
    let err = build_err(valid().token_key("0123456789abcdef"));
    assert_eq!(
        err.to_string(),
        "wxlogin: invalid token_key: must carry at least 128 bits: 32 or more hex digits \
         (`openssl rand -hex 32`), or at least 32 characters of other text"
    );
    for good in [
        "0123456789abcdef0123456789abcdef", // 32 hex digits
        "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", // 64, upper case
        "a-passphrase-of-32-characters!!!", // 32 characters
        TOKEN_KEY,
    ] {
        valid().token_key(good).build().unwrap();
    }
}

#[test]
fn a_non_http_api_base_is_refused() {
    for base in [
        "ftp://api.weixin.qq.com",
        "api.weixin.qq.com",
        "",
        "file:///etc",
        "http://",
        "https://proxy.internal/wechat?token=x",
        "https://proxy.internal/wechat?",
        "https://proxy.internal/wechat#part",
    ] {
        let builder = valid().api_base(base);
        match build_err(builder) {
            BuildError::InvalidValue { field, .. } => assert_eq!(field, "api_base", "{base:?}"),
            other => panic!("{base:?}: {other:?}"),
        }
    }
    valid().api_base("http://127.0.0.1:9").build().unwrap();
    valid()
        .api_base("https://api.weixin.qq.com/")
        .build()
        .unwrap();
    valid()
        .api_base("https://proxy.internal:8443/wechat/")
        .build()
        .unwrap();
}

#[test]
fn a_shared_store_needs_a_token_key() {
    let err = build_err(valid().store(Forward(SharedStore::default())));
    assert!(matches!(err, BuildError::SharedStoreWithoutKey), "{err:?}");
    assert!(err.to_string().contains("token key"), "{err}");

    valid()
        .store(Forward(SharedStore::default()))
        .token_key(TOKEN_KEY)
        .build()
        .unwrap();
    // A memory store may make its own key.
    valid().store(MemoryStore::new()).build().unwrap();
}

#[tokio::test]
async fn instances_on_a_shared_store_with_one_key_accept_each_others_tokens() {
    let fake = fake_wechat().await;
    let store = Forward(SharedStore::default());
    let make = || {
        builder(&fake)
            .store(store.clone())
            .token_key(TOKEN_KEY)
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    let (base_a, base_b) = (serve(app(&a)).await, serve(app(&b)).await);
    let client = reqwest::Client::new();
    let token = login(&client, &base_a, &fake, "o-alice").await;

    let res = client
        .get(format!("{base_b}/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        me,
        serde_json::json!({"openid": "o-alice", "unionid": null})
    );
}

#[test]
fn debug_output_never_shows_the_secret_or_the_token_key() {
    let rotated = "older-token-key-must-not-leak-42";
    let builder = valid().token_key(TOKEN_KEY).token_key(rotated);
    let wx = valid()
        .token_key(TOKEN_KEY)
        .token_key(rotated)
        .build()
        .unwrap();
    for text in [
        format!("{builder:?}"),
        format!("{builder:#?}"),
        format!("{wx:?}"),
        format!("{wx:#?}"),
    ] {
        for secret in [APP_SECRET, TOKEN_KEY, rotated] {
            assert!(!text.contains(secret), "{secret:?} in {text}");
        }
        // The output is still useful: it names the app.
        assert!(text.contains(APP_ID), "{text}");
    }

    // Nor do build errors, whatever was refused.
    let errors = [
        build_err(valid().token_key(TOKEN_KEY).session_ttl(Duration::ZERO)),
        build_err(valid().token_key("short-key")),
        build_err(valid().store(Forward(SharedStore::default()))),
    ];
    for err in errors {
        let text = format!("{err} {err:?}");
        for secret in [APP_SECRET, TOKEN_KEY, "short-key"] {
            assert!(!text.contains(secret), "{secret:?} in {text}");
        }
    }
}
