//! One test per row of the error table (DESIGN.md, "Wire format of every
//! error"), over real HTTP on loopback against the fake WeChat: the status,
//! the exact `{"error","message","relogin"}` body, `WWW-Authenticate` on every
//! 401 and `Retry-After` on 429. Then the same rows through an app renderer.

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde_json::json;
use wxlogin::mock::{FakeReply, FakeWeChat};
use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreError, StoreFuture, StoreId};
use wxlogin::{Identity, LoginError, Rejection, Secret, WxLogin, WxSession, WxUser};

use common::{
    app, assert_rejection, builder, fake_wechat, keys, login, serve, CountingStore, Forward,
    Forwarding, Reply, APP_SECRET,
};

/// A token key shared by the instances of one test (a shared store needs one).
const TOKEN_KEY: &str = "0123456789abcdef0123456789abcdef";

async fn start(wx: &WxLogin) -> String {
    serve(app(wx)).await
}

async fn me(client: &reqwest::Client, base: &str, authorization: Option<&str>) -> Reply {
    let mut req = client.get(format!("{base}/api/me"));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    Reply::of(req.send().await.unwrap()).await
}

async fn post_login(client: &reqwest::Client, base: &str, body: impl Into<String>) -> Reply {
    let res = client
        .post(format!("{base}/wx/login"))
        .header("content-type", "application/json")
        .body(body.into())
        .send()
        .await
        .unwrap();
    Reply::of(res).await
}

async fn login_code(client: &reqwest::Client, base: &str, code: &str) -> Reply {
    post_login(client, base, json!({ "code": code }).to_string()).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------- 401 rows

#[tokio::test]
async fn missing_token_is_401_with_relogin() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake).store(store.clone()).build().unwrap();
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    for authorization in [
        None,
        Some("Bearer"),
        Some("Bearer    "),
        Some("Basic dXNlcjpwdw=="),
    ] {
        let reply = me(&client, &base, authorization).await;
        assert_rejection(&reply, 401, "missing_token", true);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"wxlogin\""),
            "{authorization:?}"
        );
    }
    assert_eq!(store.total(), 0, "a missing token must not reach the store");
}

#[tokio::test]
async fn invalid_token_is_401_for_forged_tampered_unknown_and_revoked_tokens() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake)
        .token_key(TOKEN_KEY)
        .store(store.clone())
        .build()
        .unwrap();
    let base = start(&wx).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;
    assert_eq!(me(&client, &base, Some(&bearer(&token))).await.status, 200);

    // Forged, truncated and tampered tokens fail the MAC: no store lookup at all.
    let mid = token.len() / 2;
    let flipped = if token.as_bytes()[mid] == b'A' {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{flipped}{}", &token[..mid], &token[mid + 1..]);
    let before = store.total();
    for bad in [
        "not-a-token".to_owned(),
        token[..token.len() - 4].to_owned(),
        tampered,
        format!("{token}x"),
    ] {
        let reply = me(&client, &base, Some(&bearer(&bad))).await;
        let body = assert_rejection(&reply, 401, "invalid_token", true);
        assert!(!body.to_string().contains(&token), "{body}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"wxlogin\", error=\"invalid_token\"")
        );
    }
    assert_eq!(store.total(), before, "a bad MAC must not reach the store");

    // A well-signed token whose session this store never had.
    let other = builder(&fake)
        .token_key(TOKEN_KEY)
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let other_base = start(&other).await;
    let unknown = login(&client, &other_base, &fake, "o-bob").await;
    let reply = me(&client, &base, Some(&bearer(&unknown))).await;
    assert_rejection(&reply, 401, "invalid_token", true);

    // A revoked (logged out) token.
    let res = client
        .post(format!("{base}/wx/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let reply = me(&client, &base, Some(&bearer(&token))).await;
    assert_rejection(&reply, 401, "invalid_token", true);
}

#[tokio::test]
async fn session_expired_is_401_after_the_session_ttl() {
    let fake = fake_wechat().await;
    // Two instances on one store: one answers from its cache, the other from the store.
    let store = MemoryStore::new();
    let make = || {
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(store.clone())
            .session_ttl(Duration::from_secs(1))
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    let (base_a, base_b) = (start(&a).await, start(&b).await);
    let client = reqwest::Client::new();
    let token = login(&client, &base_a, &fake, "o-alice").await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    for base in [&base_a, &base_b] {
        let reply = me(&client, base, Some(&bearer(&token))).await;
        let body = assert_rejection(&reply, 401, "session_expired", true);
        assert!(
            body["message"].as_str().unwrap().contains("expired"),
            "{body}"
        );
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"wxlogin\", error=\"invalid_token\"")
        );
    }
}

// ---------------------------------------------------------------- store outage

const STORE_OK: u8 = 0;
const STORE_FAILS: u8 = 1;
const STORE_HANGS: u8 = 2;

/// A memory store that can be switched to fail every call or never answer.
#[derive(Clone)]
struct FlakyStore {
    inner: MemoryStore,
    mode: Arc<AtomicU8>,
}

impl FlakyStore {
    fn new() -> Self {
        FlakyStore {
            inner: MemoryStore::new(),
            mode: Arc::new(AtomicU8::new(STORE_OK)),
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// The inner call when the store is up; it is not even started otherwise
    /// (a memory store does its work when called, not when polled).
    fn guard<'a, T: Send + 'a>(
        &'a self,
        call: impl FnOnce() -> StoreFuture<'a, T>,
    ) -> StoreFuture<'a, T> {
        match self.mode.load(Ordering::SeqCst) {
            STORE_FAILS => Box::pin(async { Err(StoreError::new("connection refused (test)")) }),
            STORE_HANGS => Box::pin(std::future::pending()),
            _ => call(),
        }
    }
}

/// Every call that reads or writes the store goes through `guard`.
impl Forwarding for FlakyStore {
    fn inner(&self) -> &dyn SessionStore {
        &self.inner
    }
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        self.guard(|| self.inner.create(id, record))
    }
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        self.guard(|| self.inner.create_capped(id, record, max_per_user))
    }
    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        self.guard(|| self.inner.load(id))
    }
    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        self.guard(|| self.inner.delete(id))
    }
    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        self.guard(|| self.inner.touch(id, idle_expires_at_ms))
    }
    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        self.guard(|| self.inner.delete_user(openid))
    }
    fn put_latest_session_key(
        &self,
        openid: &str,
        session_key: Secret,
        until_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.guard(|| {
            self.inner
                .put_latest_session_key(openid, session_key, until_ms)
        })
    }
    fn latest_session_key(&self, openid: &str) -> StoreFuture<'_, Option<Secret>> {
        self.guard(|| self.inner.latest_session_key(openid))
    }
}

fn flaky_instance(fake: &FakeWeChat, store: &FlakyStore) -> WxLogin {
    builder(fake)
        .token_key(TOKEN_KEY)
        .store(Forward(store.clone()))
        .store_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

#[tokio::test]
async fn store_unavailable_on_a_cache_miss_is_503_never_401() {
    let fake = fake_wechat().await;
    let store = FlakyStore::new();
    // `a` logs in (and caches the session); `b` has never seen it, so it asks the store.
    let (a, b) = (flaky_instance(&fake, &store), flaky_instance(&fake, &store));
    let (base_a, base_b) = (start(&a).await, start(&b).await);
    let client = reqwest::Client::new();
    let token = login(&client, &base_a, &fake, "o-alice").await;
    let auth = bearer(&token);

    for mode in [STORE_FAILS, STORE_HANGS] {
        store.set(mode);
        let reply = me(&client, &base_b, Some(&auth)).await;
        assert_rejection(&reply, 503, "store_unavailable", false);
        // The instance that has the session cached keeps serving it.
        assert_eq!(me(&client, &base_a, Some(&auth)).await.status, 200);
    }

    // The outage logged nobody out: once the store is back the token works everywhere.
    store.set(STORE_OK);
    let reply = me(&client, &base_b, Some(&auth)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["openid"], "o-alice");
}

#[tokio::test]
async fn store_unavailable_on_login_is_503_without_a_token() {
    let fake = fake_wechat().await;
    let store = FlakyStore::new();
    let wx = flaky_instance(&fake, &store);
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    for mode in [STORE_FAILS, STORE_HANGS] {
        store.set(mode);
        let reply = login_code(&client, &base, &fake.mint_code("o-alice")).await;
        let body = assert_rejection(&reply, 503, "store_unavailable", false);
        assert!(body.get("token").is_none(), "{body}");
        assert!(!reply.text.contains("token\""), "{}", reply.text);
    }
    assert_eq!(fake.code2session_calls(), 2);
    assert_eq!(store.inner.len(), 0, "a failed login left a session behind");

    store.set(STORE_OK);
    let reply = login_code(&client, &base, &fake.mint_code("o-alice")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(store.inner.len(), 1);
}

// ---------------------------------------------------------------- login rows

#[tokio::test]
async fn bad_request_is_400_without_relogin() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    for body in ["not json", r#"{"code":""}"#, r#"{"nocode":"x"}"#] {
        let reply = post_login(&client, &base, body).await;
        assert_rejection(&reply, 400, "bad_request", false);
    }
    assert_eq!(
        fake.code2session_calls(),
        0,
        "a bad body must not reach WeChat"
    );
}

#[tokio::test]
async fn invalid_code_is_400_with_relogin() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    // 40029: a code WeChat never issued.
    let reply = login_code(&client, &base, "never-minted-code-0123456789ab").await;
    assert_rejection(&reply, 400, "invalid_code", true);
    // 40163: a code already exchanged.
    let code = fake.mint_code("o-alice");
    assert_eq!(login_code(&client, &base, &code).await.status, 200);
    let reply = login_code(&client, &base, &code).await;
    assert_rejection(&reply, 400, "invalid_code", true);
    assert_eq!(
        fake.code2session_calls(),
        3,
        "invalid codes are not retried"
    );
}

#[tokio::test]
async fn rate_limited_is_429_with_retry_after() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    fake.push_reply(FakeReply::Errcode(45011));
    let reply = login_code(&client, &base, &fake.mint_code("o-alice")).await;
    assert_rejection(&reply, 429, "rate_limited", false);
    assert_eq!(reply.header("retry-after"), Some("60"));
    assert_eq!(fake.code2session_calls(), 1, "45011 is not retried");
}

#[tokio::test]
async fn user_restricted_is_403() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    fake.push_reply(FakeReply::Errcode(40226));
    let reply = login_code(&client, &base, &fake.mint_code("o-risky")).await;
    assert_rejection(&reply, 403, "user_restricted", false);
    assert_eq!(fake.code2session_calls(), 1);
}

#[tokio::test]
async fn login_refused_is_403_with_the_hooks_message() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake)
        .store(store.clone())
        .on_login(|who: Identity| async move {
            if who.openid == "o-banned" {
                Err(LoginError::refused("this account is suspended"))
            } else {
                Ok(())
            }
        })
        .build()
        .unwrap();
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    let reply = login_code(&client, &base, &fake.mint_code("o-banned")).await;
    let body = assert_rejection(&reply, 403, "login_refused", false);
    assert_eq!(body["message"], "this account is suspended");
    assert_eq!(store.inner.len(), 0, "a refused user got a session");

    let reply = login_code(&client, &base, &fake.mint_code("o-welcome")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn wechat_unavailable_is_503_after_the_retries() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).wechat_attempts(3).build().unwrap();
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    for _ in 0..3 {
        fake.push_reply(FakeReply::Errcode(-1));
    }
    let reply = login_code(&client, &base, &fake.mint_code("o-alice")).await;
    assert_rejection(&reply, 503, "wechat_unavailable", false);
    assert_eq!(fake.code2session_calls(), 3);
}

#[tokio::test]
async fn misconfigured_credentials_are_500_without_the_secret_or_wechats_detail() {
    let fake = fake_wechat().await;
    let client = reqwest::Client::new();
    let wrong_secret = "wrong-secret-must-not-leak-9876";

    // Wrong secret (40125), then wrong app id (40013).
    let wrong_secret_wx = builder(&fake).app_secret(wrong_secret).build().unwrap();
    let wrong_app_wx = builder(&fake).app_id("wx-not-this-app").build().unwrap();
    for wx in [wrong_secret_wx, wrong_app_wx] {
        let base = start(&wx).await;
        let reply = login_code(&client, &base, &fake.mint_code("o-alice")).await;
        assert_rejection(&reply, 500, "misconfigured", false);
        let text = reply.text.to_lowercase();
        for leak in [
            wrong_secret,
            APP_SECRET,
            "invalid appsecret",
            "invalid appid",
            "rid:",
            "40125",
            "40013",
        ] {
            assert!(!text.contains(leak), "{leak:?} leaked: {}", reply.text);
        }
    }
    assert_eq!(
        fake.code2session_calls(),
        2,
        "misconfiguration is not retried"
    );
}

#[tokio::test]
async fn extractors_without_the_layer_are_500_misconfigured_naming_the_layer() {
    let app = Router::new()
        .route(
            "/user",
            get(|user: WxUser| async move { user.openid().to_owned() }),
        )
        .route(
            "/maybe",
            get(|user: Option<WxUser>| async move { format!("{}", user.is_some()) }),
        )
        .route(
            "/session",
            get(|s: WxSession| async move { s.openid().to_owned() }),
        );
    let base = serve(app).await;
    let client = reqwest::Client::new();

    for path in ["/user", "/maybe", "/session"] {
        let res = client
            .get(format!("{base}{path}"))
            .bearer_auth("anything")
            .send()
            .await
            .unwrap();
        let reply = Reply::of(res).await;
        let body = assert_rejection(&reply, 500, "misconfigured", false);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("layer"), "{path}: {message}");
    }
}

// ---------------------------------------------------------------- renderer

/// An app envelope `{"code","msg","data"}` with no protocol headers of its own.
fn envelope(r: &Rejection) -> http::Response<Bytes> {
    let body = json!({"code": r.code().as_str(), "msg": r.message(), "data": null});
    http::Response::builder()
        .status(r.status())
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

fn assert_envelope(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    let body = reply.json();
    assert_eq!(keys(&body), ["code", "data", "msg"], "{body}");
    assert_eq!(body["code"], code);
    assert!(body["data"].is_null());
    assert!(body["msg"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_custom_renderer_wraps_errors_and_keeps_the_protocol_headers() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).render_rejection(envelope).build().unwrap();
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    let reply = me(&client, &base, None).await;
    assert_envelope(&reply, 401, "missing_token");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"wxlogin\"")
    );

    let reply = me(&client, &base, Some("Bearer forged")).await;
    assert_envelope(&reply, 401, "invalid_token");
    assert!(reply.header("www-authenticate").is_some());

    let reply = post_login(&client, &base, "not json").await;
    assert_envelope(&reply, 400, "bad_request");
    assert!(reply.header("www-authenticate").is_none());

    fake.push_reply(FakeReply::Errcode(45011));
    let reply = login_code(&client, &base, &fake.mint_code("o-alice")).await;
    assert_envelope(&reply, 429, "rate_limited");
    assert_eq!(reply.header("retry-after"), Some("60"));

    // Success responses are not touched by the renderer.
    let token = login(&client, &base, &fake, "o-alice").await;
    let reply = me(&client, &base, Some(&bearer(&token))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["openid"], "o-alice");
}
