//! The access token manager over real HTTP against the fake WeChat:
//! lazy (login never fetches), one fetch for many concurrent callers,
//! refresh before it ends, drop-and-replay-once on 40001, and one fetch
//! between two instances sharing a real Redis.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::{app_with, builder, fake_wechat, get_json, login, serve, APP_ID};
use redis_harness::{some_redis, unique_prefix, RedisCli};
use serde_json::{json, Value};
use wxlogin::store::SessionStore;
use wxlogin::{WeChatApiError, WxLogin, WxSession};

/// `GET /api/check`: `{"valid": bool}`, or 502 with the error.
async fn check(session: WxSession) -> (StatusCode, Json<Value>) {
    match session.check_with_wechat().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "valid": true }))),
        Err(WeChatApiError::SessionKeyInvalid) => (
            StatusCode::OK,
            Json(json!({ "valid": false, "relogin": true })),
        ),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "error": e.to_string(), "errcode": e.errcode() })),
        ),
    }
}

/// The standard app with `/api/check` behind the layer too.
fn router(wx: &WxLogin) -> Router {
    app_with(wx, Router::new().route("/api/check", get(check)))
}

async fn assert_valid(client: &reqwest::Client, base: &str, token: &str) {
    let (status, body) = get_json(client, &format!("{base}/api/check"), Some(token)).await;
    assert_eq!((status, &body), (200, &json!({ "valid": true })));
}

#[tokio::test]
async fn hundred_concurrent_callers_cause_one_fetch() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = serve(router(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;
    // Login never touches the access token.
    assert_eq!(fake.stable_token_calls(), 0);

    let checks = (0..100).map(|_| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        tokio::spawn(
            async move { get_json(&client, &format!("{base}/api/check"), Some(&token)).await },
        )
    });
    for check in futures_util::future::join_all(checks).await {
        let (status, body) = check.unwrap();
        assert_eq!((status, body), (200, json!({ "valid": true })));
    }
    assert_eq!(fake.stable_token_calls(), 1);
    assert_eq!(fake.checksession_calls(), 100);

    // And through the handle too: still the cached token.
    let direct = (0..100).map(|_| {
        let wx = wx.clone();
        tokio::spawn(async move { wx.access_token().await })
    });
    let tokens: Vec<String> = futures_util::future::join_all(direct)
        .await
        .into_iter()
        .map(|t| t.unwrap().unwrap().expose().to_owned())
        .collect();
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(fake.stable_token_calls(), 1);
}

#[tokio::test]
async fn concurrent_first_use_without_any_cached_token_fetches_once() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let direct = (0..100).map(|_| {
        let wx = wx.clone();
        tokio::spawn(async move { wx.access_token().await.map(|t| t.expose().to_owned()) })
    });
    for token in futures_util::future::join_all(direct).await {
        assert!(!token.unwrap().unwrap().is_empty());
    }
    assert_eq!(fake.stable_token_calls(), 1);
}

#[tokio::test]
async fn expired_token_gets_40001_then_one_refresh_and_the_call_succeeds() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = serve(router(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-bob").await;

    assert_valid(&client, &base, &token).await;
    let first = wx.access_token().await.unwrap();
    assert_eq!(
        (fake.stable_token_calls(), fake.checksession_calls()),
        (1, 1)
    );

    fake.expire_access_tokens();
    assert_valid(&client, &base, &token).await;
    // One 40001, one refresh, one replay.
    assert_eq!(
        (fake.stable_token_calls(), fake.checksession_calls()),
        (2, 3)
    );
    let second = wx.access_token().await.unwrap();
    assert_ne!(first.expose(), second.expose());

    // The new token is cached again.
    assert_valid(&client, &base, &token).await;
    assert_eq!(
        (fake.stable_token_calls(), fake.checksession_calls()),
        (2, 4)
    );

    // The phone number API replays the same way.
    fake.expire_access_tokens();
    let code = fake.mint_phone_code("13800138000", "86");
    let info = wx.phone_number(&code).await.unwrap();
    assert_eq!(info.pure_phone_number, "13800138000");
    assert_eq!(
        (fake.stable_token_calls(), fake.phone_number_calls()),
        (3, 2)
    );
}

#[tokio::test]
async fn token_is_refreshed_before_it_ends_without_a_rejection() {
    let fake = fake_wechat().await;
    // A 2 s token is refreshed after half its life (the margin is at most 5 min).
    fake.set_access_token_lifetime(Duration::from_secs(2));
    let wx = builder(&fake).build().unwrap();
    let base = serve(router(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-carol").await;

    assert_valid(&client, &base, &token).await;
    let first = wx.access_token().await.unwrap();
    assert_eq!(fake.stable_token_calls(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_valid(&client, &base, &token).await;
    assert_eq!(fake.stable_token_calls(), 2);
    // No 40001 was needed: one checksession per check.
    assert_eq!(fake.checksession_calls(), 2);
    assert_ne!(wx.access_token().await.unwrap().expose(), first.expose());
}

#[tokio::test]
async fn refused_credentials_are_an_error_without_the_secret() {
    let fake = fake_wechat().await;
    let wx = builder(&fake)
        .app_secret("wrong-secret-value")
        .build()
        .unwrap();
    let err = wx.access_token().await.unwrap_err();
    assert!(
        matches!(err, WeChatApiError::Refused { errcode: 40125, .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-secret-value"), "{text}");
    let err = wx.phone_number("any").await.unwrap_err();
    assert_eq!(err.errcode(), Some(40125));
    assert_eq!(fake.phone_number_calls(), 0);
}

#[tokio::test]
async fn two_instances_on_one_redis_fetch_once_between_them() {
    let redis = some_redis();
    let prefix = unique_prefix("at");
    let fake = fake_wechat().await;
    let mut bases = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..2 {
        // Each instance has its own connection, as separate processes would.
        let store = redis_harness::store_at(&redis.url(), &prefix).await;
        let wx = redis_harness::fleet_builder(&fake, store).build().unwrap();
        bases.push(serve(router(&wx)).await);
        handles.push(wx);
    }
    let client = reqwest::Client::new();
    let token = login(&client, &bases[0], &fake, "o-dave").await;
    assert_eq!(fake.stable_token_calls(), 0);

    // Both instances at once, twenty requests each.
    let checks = (0..40).map(|i| {
        let (client, base, token) = (client.clone(), bases[i % 2].clone(), token.clone());
        tokio::spawn(
            async move { get_json(&client, &format!("{base}/api/check"), Some(&token)).await },
        )
    });
    for check in futures_util::future::join_all(checks).await {
        assert_eq!(check.unwrap(), (200, json!({ "valid": true })));
    }
    assert_eq!(fake.stable_token_calls(), 1);

    // The token lives in Redis under the documented key, the lock is gone.
    let store = redis_harness::store_at(&redis.url(), &prefix).await;
    let key = store.access_token_key(APP_ID);
    assert_eq!(key, format!("{prefix}:at:{{{APP_ID}}}"));
    let shared = store
        .access_token_cache()
        .unwrap()
        .get(APP_ID)
        .await
        .unwrap()
        .expect("the token is shared");
    let a = handles[0].access_token().await.unwrap();
    let b = handles[1].access_token().await.unwrap();
    assert_eq!(a.expose(), shared.token.expose());
    assert_eq!(b.expose(), shared.token.expose());
    assert_eq!(
        redis.cli_int(&["EXISTS", &store.access_token_lock_key(APP_ID)]),
        0
    );
    let pttl = redis.cli_int(&["PTTL", &key]);
    assert!(pttl > 7_000_000 && pttl <= 7_200_000, "{pttl}");

    // A third instance starting later takes the shared token.
    let late = builder(&fake)
        .token_key(redis_harness::TOKEN_KEY)
        .store(store)
        .build()
        .unwrap();
    assert_eq!(late.access_token().await.unwrap().expose(), a.expose());
    assert_eq!(fake.stable_token_calls(), 1);

    // After expiry, the first instance to hear 40001 refreshes; the other
    // hears 40001 with its old token, finds the new one shared, and does
    // not fetch again (nor drop the newer token).
    fake.expire_access_tokens();
    assert_valid(&client, &bases[0], &token).await;
    assert_eq!(fake.stable_token_calls(), 2);
    assert_valid(&client, &bases[1], &token).await;
    assert_eq!(fake.stable_token_calls(), 2);
    let a2 = handles[0].access_token().await.unwrap();
    let b2 = handles[1].access_token().await.unwrap();
    assert_eq!(a2.expose(), b2.expose());
    assert_ne!(a2.expose(), a.expose());
}
