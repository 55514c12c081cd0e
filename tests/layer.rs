//! The layer over real HTTP: the cache in front of the store (warm hits,
//! expiry, single-flight misses, never past the session's end), optional
//! mode, idle timeouts, logout and revocation.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use common::{
    app, builder, fake_wechat, get_json, login, me, now_ms, serve, CountingStore, Forward,
    Forwarding,
};
use serde_json::{json, Value};
use tokio::sync::watch;
use wxlogin::mock::FakeWeChat;
use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreFuture, StoreId};
use wxlogin::{WxLogin, WxUser};

const KEY: &str = "layer-test-token-key-0123456789ab";

async fn maybe_me(user: Option<WxUser>) -> Json<Value> {
    Json(json!({ "openid": user.as_ref().map(|u| u.openid().to_owned()) }))
}

/// A store whose loads wait until every request of a burst is parked in the
/// layer (see [`count_parked`]), so concurrent misses overlap by
/// construction rather than by timing. It counts the loads that started.
#[derive(Clone)]
struct GatedLoads {
    inner: MemoryStore,
    loads: Arc<AtomicUsize>,
    open: watch::Receiver<bool>,
    /// Set if a load gave up waiting: the burst never all arrived.
    gave_up: Arc<AtomicBool>,
}

impl Forwarding for GatedLoads {
    fn inner(&self) -> &dyn SessionStore {
        &self.inner
    }
    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.clone();
        Box::pin(async move {
            let all_parked = open.wait_for(|open| *open);
            if tokio::time::timeout(Duration::from_secs(20), all_parked)
                .await
                .is_err()
            {
                self.gave_up.store(true, Ordering::SeqCst);
            }
            self.inner.load(id).await
        })
    }
}

/// Requests whose handling is under way and waiting (the first poll of the
/// rest of the stack returned `Pending`: in the layer, that is a store load
/// or the single flight of one); opens the gate once `want` are.
#[derive(Clone)]
struct Parked {
    count: Arc<AtomicUsize>,
    want: usize,
    open: Arc<watch::Sender<bool>>,
}

async fn count_parked(State(parked): State<Parked>, req: Request, next: Next) -> Response {
    let mut rest = std::pin::pin!(next.run(req));
    match std::future::poll_fn(|cx| Poll::Ready(rest.as_mut().poll(cx))).await {
        Poll::Ready(res) => res,
        Poll::Pending => {
            if parked.count.fetch_add(1, Ordering::SeqCst) + 1 == parked.want {
                parked.open.send_replace(true);
            }
            rest.await
        }
    }
}

/// An instance with a cold cache in front of `shared` through [`GatedLoads`],
/// served on loopback; its loads wait until `burst` requests are parked.
async fn gated_instance(
    fake: &FakeWeChat,
    shared: &MemoryStore,
    burst: usize,
) -> (WxLogin, String, GatedLoads) {
    let (open, gate) = watch::channel(false);
    let store = GatedLoads {
        inner: shared.clone(),
        loads: Arc::default(),
        open: gate,
        gave_up: Arc::default(),
    };
    let wx = builder(fake)
        .token_key(KEY)
        .store(Forward(store.clone()))
        .build()
        .unwrap();
    let parked = Parked {
        count: Arc::default(),
        want: burst,
        open: Arc::new(open),
    };
    let routes = app(&wx).layer(middleware::from_fn_with_state(parked, count_parked));
    (wx.clone(), serve(routes).await, store)
}

/// Sends `n` concurrent `GET /api/me` with `token`; returns status and body of each.
async fn concurrent_me(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, token) = (client.clone(), format!("{base}/api/me"), token.to_owned());
            tokio::spawn(async move { get_json(&client, &url, Some(&token)).await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

async fn logout(client: &reqwest::Client, base: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client.post(format!("{base}/wx/logout"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn warm_cache_makes_no_store_loads_and_expired_entry_makes_one() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake)
        .store(store.clone())
        .cache_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/me");

    let token = login(&client, &base, &fake, "o-alice").await;
    // Right after login the session is cached; the burst must finish inside
    // the 300 ms cache TTL to say anything, so retry on a very slow machine.
    let mut warm = false;
    for _ in 0..5 {
        let started = Instant::now();
        let before = store.loads();
        for _ in 0..20 {
            let (status, body) = get_json(&client, &url, Some(&token)).await;
            assert_eq!(status, 200, "{body}");
        }
        if started.elapsed() < Duration::from_millis(250) {
            assert_eq!(store.loads(), before, "warm cache: no store loads");
            warm = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (status, _) = get_json(&client, &url, Some(&token)).await; // re-warm
        assert_eq!(status, 200);
    }
    assert!(warm, "could not make 20 requests within 250 ms");

    // Let the cache entry expire: the next request loads once, then it is warm again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = store.loads();
    let (status, body) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["openid"], "o-alice");
    assert_eq!(
        store.loads(),
        before + 1,
        "one load after the cache entry expired"
    );
    let (status, _) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 200);
    assert!(store.loads() <= before + 2);
}

/// Single flight: however many requests miss the cache on one session id at
/// once, the store is asked once. The store's load is held until all of
/// them are parked in the layer, so they overlap by construction; a layer
/// without single flight would start one load per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_store_load() {
    const BURST: usize = 50;
    let fake = fake_wechat().await;
    let shared = MemoryStore::new();
    let client = reqwest::Client::new();

    // Instance 1 issues the token (and caches it itself).
    let issuer = builder(&fake)
        .token_key(KEY)
        .store(shared.clone())
        .build()
        .unwrap();
    let issuer_base = serve(app(&issuer)).await;
    let token = login(&client, &issuer_base, &fake, "o-alice").await;

    // Instance 2 has never seen it: a cold cache in front of the gated store.
    let (_cold, base, store) = gated_instance(&fake, &shared, BURST).await;
    for (status, body) in concurrent_me(&client, &base, &token, BURST).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["openid"], "o-alice");
    }
    assert!(
        !store.gave_up.load(Ordering::SeqCst),
        "the burst never all arrived"
    );
    assert_eq!(
        store.loads.load(Ordering::SeqCst),
        1,
        "{BURST} concurrent misses, one store load"
    );
}

/// The same for a well-formed, well-signed token whose session no store
/// holds: the answer (`invalid_token`) is not cached, so only single flight
/// keeps a burst of them from becoming a burst of store loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_tokens_make_one_store_load() {
    const BURST: usize = 20;
    let fake = fake_wechat().await;
    let client = reqwest::Client::new();
    let (cold, base, store) = gated_instance(&fake, &MemoryStore::new(), BURST).await;
    let unknown = cold.bench_unknown_token();
    for (status, body) in concurrent_me(&client, &base, &unknown, BURST).await {
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_token");
    }
    assert!(
        !store.gave_up.load(Ordering::SeqCst),
        "the burst never all arrived"
    );
    assert_eq!(
        store.loads.load(Ordering::SeqCst),
        1,
        "{BURST} concurrent lookups of one unknown token, one store load"
    );
    // Nothing was cached for it: the next lookup asks the store again (the
    // gate stays open).
    let (status, _) = get_json(&client, &format!("{base}/api/me"), Some(&unknown)).await;
    assert_eq!(status, 401);
    assert_eq!(store.loads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn cache_entry_never_outlives_its_session() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake)
        .store(store.clone())
        .session_ttl(Duration::from_secs(1))
        .cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/me");
    let token = login(&client, &base, &fake, "o-alice").await;
    let (status, _) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 200);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 401, "{body}");
    // The cache entry ended with the session; the store (swept once a
    // minute) still holds the ended record, so it is expired, not unknown.
    assert_eq!(store.inner.len(), 1, "the ended record is still stored");
    assert_eq!(body["error"], "session_expired", "{body}");
    assert_eq!(body["relogin"], true);
    // And it stays refused.
    let (status, _) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn login_reports_expires_in() {
    let fake = fake_wechat().await;
    let wx = builder(&fake)
        .session_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let code = fake.mint_code("o-alice");
    let res = client
        .post(format!("{base}/wx/login"))
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["openid"], "o-alice");
    assert!(body["unionid"].is_null());
    assert!(body.get("session_key").is_none());
}

#[tokio::test]
async fn optional_layer() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let app = Router::new()
        .route("/maybe", get(maybe_me))
        .layer(wx.optional_layer())
        .route_service("/wx/login", wx.login_service());
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/maybe");

    // No token: the handler runs anonymously.
    let (status, body) = get_json(&client, &url, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["openid"].is_null());

    // A valid token: Some.
    let token = login(&client, &base, &fake, "o-alice").await;
    let (status, body) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["openid"], "o-alice");

    // A bad token: 401 from the extractor, not an anonymous 200.
    let mut forged = token.clone().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let (status, body) = get_json(&client, &url, Some(&forged)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token");

    // A well-formed token this app never issued (unknown session): 401 too.
    let other = builder(&fake).token_key(KEY).build().unwrap();
    let other_base = serve(
        Router::new()
            .route("/maybe", get(maybe_me))
            .layer(other.optional_layer())
            .route_service("/wx/login", other.login_service()),
    )
    .await;
    let other_token = login(&client, &other_base, &fake, "o-bob").await;
    let (status, body) = get_json(&client, &url, Some(&other_token)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn optional_layer_with_required_extractor() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let app = Router::new()
        .route("/me", get(me))
        .layer(wx.optional_layer())
        .route_service("/wx/login", wx.login_service());
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/me");
    // Under the optional layer a plain WxUser still requires a session.
    let (status, body) = get_json(&client, &url, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing_token");
    let token = login(&client, &base, &fake, "o-alice").await;
    let (status, body) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["openid"], "o-alice");
}

#[tokio::test]
async fn idle_timeout_is_extended_by_use_with_few_store_writes() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake)
        .store(store.clone())
        .idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/me");

    let token = login(&client, &base, &fake, "o-alice").await;
    let idle_token = login(&client, &base, &fake, "o-bob").await;

    // Used every 50 ms for 4 s: twice the idle timeout, still valid.
    let started = Instant::now();
    let mut requests = 0usize;
    while started.elapsed() < Duration::from_secs(4) {
        let (status, body) = get_json(&client, &url, Some(&token)).await;
        assert_eq!(
            status,
            200,
            "used every 50 ms, yet refused after {:?}: {body}",
            started.elapsed()
        );
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed_ms = started.elapsed().as_millis() as usize;
    let touches = store.touches.load(Ordering::SeqCst);
    // At most one idle extension per refresh interval (half the timeout:
    // 1 s), per session.
    assert!(touches >= 1, "use must extend the idle deadline");
    assert!(
        touches <= elapsed_ms / 1000 + 2,
        "{touches} touches for {requests} requests over {elapsed_ms} ms"
    );
    assert!(
        touches * 2 < requests,
        "{touches} touches for {requests} requests"
    );

    // The other session, unused for 4 s (> idle + refresh = 3 s), has ended.
    let (status, body) = get_json(&client, &url, Some(&idle_token)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "session_expired");
}

#[tokio::test]
async fn idle_timeout_used_every_300ms() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake)
        .store(store.clone())
        .idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/me");
    let token = login(&client, &base, &fake, "o-alice").await;

    let started = Instant::now();
    let mut requests = 0usize;
    while started.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, body) = get_json(&client, &url, Some(&token)).await;
        assert_eq!(status, 200, "after {:?}: {body}", started.elapsed());
        requests += 1;
    }
    let touches = store.touches.load(Ordering::SeqCst);
    assert!(touches >= 1);
    assert!(
        touches <= requests,
        "{touches} touches for {requests} requests"
    );

    // Never more than one write per request, and far fewer: one a second.
    assert!(
        touches <= requests / 2 + 1,
        "{touches} touches for {requests} requests"
    );

    // Then unused for longer than idle + refresh (3 s): expired.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let (status, body) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "session_expired");
}

#[tokio::test]
async fn logout_ends_only_that_session() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake).store(store.clone()).build().unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/me");

    let phone = login(&client, &base, &fake, "o-alice").await;
    let laptop = login(&client, &base, &fake, "o-alice").await;
    assert_ne!(phone, laptop);
    for t in [&phone, &laptop] {
        let (status, _) = get_json(&client, &url, Some(t)).await;
        assert_eq!(status, 200);
    }

    let (status, body) = logout(&client, &base, Some(&phone)).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(store.deletes.load(Ordering::SeqCst), 1);

    // At once, no waiting for any cache.
    let (status, body) = get_json(&client, &url, Some(&phone)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
    let (status, body) = get_json(&client, &url, Some(&laptop)).await;
    assert_eq!(
        status, 200,
        "the other session of the same user keeps working"
    );
    assert_eq!(body["openid"], "o-alice");

    // Logout without a token.
    let (status, body) = logout(&client, &base, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing_token");
    let (status, _) = get_json(&client, &url, Some(&laptop)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn logout_on_one_instance_is_seen_by_the_store() {
    let fake = fake_wechat().await;
    let shared = MemoryStore::new();
    let wx = builder(&fake)
        .token_key(KEY)
        .store(shared.clone())
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;
    assert_eq!(shared.len(), 1);
    let (status, _) = logout(&client, &base, Some(&token)).await;
    assert_eq!(status, 204);
    assert_eq!(shared.len(), 0, "the session is gone from the store");

    // A second instance on the same store (cold cache) refuses it too.
    let second = builder(&fake)
        .token_key(KEY)
        .store(shared.clone())
        .build()
        .unwrap();
    let second_base = serve(app(&second)).await;
    let (status, body) = get_json(&client, &format!("{second_base}/api/me"), Some(&token)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
}

/// Revocation finds cached sessions by their store ids. That index is pruned
/// of sessions the cache has dropped as it grows; the sessions the cache
/// still holds must stay findable through any number of prunings, or a
/// revoked session would be served from the cache until its TTL.
#[tokio::test]
async fn revocation_finds_cached_sessions_after_the_index_is_pruned() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).cache_capacity(300).build().unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/me");

    let first = login(&client, &base, &fake, "o-first").await;
    let (status, _) = get_json(&client, &url, Some(&first)).await;
    assert_eq!(status, 200);
    // Thousands of sessions through a cache of 300: the index outgrows its
    // pruning threshold several times, and most sessions leave the cache.
    for i in 0..5_000 {
        wx.bench_create_session(
            &format!("o-filler-{i}"),
            None,
            wxlogin::Secret::new("a2V5"),
            (),
        )
        .await
        .unwrap();
    }
    let last = login(&client, &base, &fake, "o-last").await;
    for token in [&first, &last] {
        let (status, _) = get_json(&client, &url, Some(token)).await;
        assert_eq!(status, 200, "served (from the cache or the store)");
    }
    assert_eq!(wx.revoke_user("o-first").await.unwrap(), 1);
    assert_eq!(wx.revoke_user("o-last").await.unwrap(), 1);
    for token in [&first, &last] {
        let (status, body) = get_json(&client, &url, Some(token)).await;
        assert_eq!(status, 401, "a revoked session is refused at once: {body}");
        assert_eq!(body["error"], "invalid_token");
    }
}

#[tokio::test]
async fn revoke_user_ends_all_of_that_users_sessions() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake).store(store.clone()).build().unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/me");

    let alice: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(login(&client, &base, &fake, "o-alice").await);
        }
        v
    };
    let bob = login(&client, &base, &fake, "o-bob").await;
    for t in alice.iter().chain([&bob]) {
        let (status, _) = get_json(&client, &url, Some(t)).await;
        assert_eq!(status, 200);
    }

    let revoked = wx.revoke_user("o-alice").await.unwrap();
    assert_eq!(revoked, 3);
    assert_eq!(store.delete_users.load(Ordering::SeqCst), 1);
    for t in &alice {
        let (status, body) = get_json(&client, &url, Some(t)).await;
        assert_eq!(status, 401, "a revoked session is refused at once");
        assert_eq!(body["error"], "invalid_token");
    }
    let (status, body) = get_json(&client, &url, Some(&bob)).await;
    assert_eq!(status, 200);
    assert_eq!(body["openid"], "o-bob");

    // Revoking again finds nothing; a new login works.
    assert_eq!(wx.revoke_user("o-alice").await.unwrap(), 0);
    let fresh = login(&client, &base, &fake, "o-alice").await;
    let (status, _) = get_json(&client, &url, Some(&fresh)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn expired_record_in_store_is_session_expired() {
    // A session another instance created, whose lifetime has passed while
    // the store still holds it: session_expired, not invalid_token.
    let fake = fake_wechat().await;
    let shared = MemoryStore::new();
    let issuer = builder(&fake)
        .token_key(KEY)
        .store(shared.clone())
        .session_ttl(Duration::from_millis(500))
        .build()
        .unwrap();
    let issuer_base = serve(app(&issuer)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &issuer_base, &fake, "o-alice").await;
    let deadline = now_ms() + 500;

    let reader = builder(&fake)
        .token_key(KEY)
        .store(shared.clone())
        .build()
        .unwrap();
    let base = serve(app(&reader)).await;
    while now_ms() < deadline + 200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "session_expired");
}
