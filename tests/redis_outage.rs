//! Redis outages over real HTTP on loopback, on a Redis this test owns.
//!
//! Stalled Redis (SIGSTOP): a session that is not cached gets 503
//! `store_unavailable` within two seconds (never a 401), a cached one keeps
//! serving, a login gets 503 and no token; on SIGCONT the same token works
//! again with no restart. Killed Redis, restarted on the same port: service
//! comes back by itself (the connection manager reconnects).
//!
//! Outages do not amplify: while Redis (or only the subscription) is gone,
//! cached sessions keep serving within their cache TTL; once the
//! subscription is back, what may have been missed is dropped. A
//! subscription that stops answering (its connection open, nothing coming
//! through) is noticed by its PING, and replaced.

mod common;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/redis.rs"]
mod redis_harness;

use std::time::{Duration, Instant};

use common::{builder, fake_wechat, get_json, login, wait_for};
use proxy::Proxy;
use redis_harness::{
    logout, unique_prefix, wait_for_status, wait_numsub, Instance, RedisCli, RedisServer, TOKEN_KEY,
};
use serde_json::Value;
use wxlogin::mock::FakeWeChat;
use wxlogin::store::RedisStore;

const STORE_TIMEOUT: Duration = Duration::from_millis(500);

async fn instance(url: &str, prefix: &str, fake: &FakeWeChat, cache_ttl: Duration) -> Instance {
    let store = RedisStore::connect(url)
        .await
        .expect("connect to Redis")
        .with_prefix(prefix);
    Instance::serve(
        builder(fake)
            .token_key(TOKEN_KEY)
            .store(store)
            .store_timeout(STORE_TIMEOUT)
            .cache_ttl(cache_ttl)
            .build()
            .unwrap(),
    )
    .await
}

/// POSTs a login with a fresh code; returns status and JSON body.
async fn try_login(
    client: &reqwest::Client,
    base: &str,
    fake: &FakeWeChat,
    openid: &str,
) -> (u16, Value) {
    let res = client
        .post(format!("{base}/wx/login"))
        .body(format!(r#"{{"code":"{}"}}"#, fake.mint_code(openid)))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Pauses Redis for the life of the guard, so a failing assertion cannot
/// leave it stopped.
struct Paused<'a>(&'a RedisServer);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_gives_503_not_401_and_service_resumes() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("stall");
    // `cold` forgets sessions after 300 ms; `warm` keeps them for 30 s.
    let cold = instance(&redis.url(), &prefix, &fake, Duration::from_millis(300)).await;
    let warm = instance(&redis.url(), &prefix, &fake, Duration::from_secs(30)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let token = login(&client, &cold.base, &fake, "o-stall").await;
    let cached = login(&client, &warm.base, &fake, "o-cached").await;
    assert_eq!(get_json(&client, &warm.me(), Some(&cached)).await.0, 200);
    // Let `cold`'s cache entry lapse, so the next request must ask Redis.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let paused = Paused(&redis);
    redis.pause();
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = get_json(&client, &cold.me(), Some(&token)).await;
        let elapsed = started.elapsed();
        assert_eq!(status, 503, "a stalled store is not a logout: {body}");
        assert_eq!(body["error"], "store_unavailable");
        assert!(
            elapsed < Duration::from_secs(2),
            "503 only after {elapsed:?}"
        );
    }
    // The cached session keeps serving during the stall.
    for _ in 0..5 {
        let (status, body) = get_json(&client, &warm.me(), Some(&cached)).await;
        assert_eq!((status, body["openid"].as_str()), (200, Some("o-cached")));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A login cannot store its session: 503 and no token.
    let started = Instant::now();
    let (status, body) = try_login(&client, &cold.base, &fake, "o-stall-login").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "store_unavailable");
    assert!(
        body.get("token").is_none(),
        "no token without a stored session: {body}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    drop(paused); // SIGCONT
    let (elapsed, body) =
        wait_for_status(&client, &cold.me(), &token, 200, Duration::from_secs(5)).await;
    assert_eq!(body["openid"], "o-stall");
    eprintln!("the token worked again {elapsed:?} after Redis resumed");
    let after = login(&client, &cold.base, &fake, "o-after-stall").await;
    assert_eq!(get_json(&client, &warm.me(), Some(&after)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_redis_comes_back_by_itself() {
    let mut redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("restart");
    let inst = instance(&redis.url(), &prefix, &fake, Duration::from_millis(200)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let token = login(&client, &inst.base, &fake, "o-restart").await;
    // Keep the data across the restart (the server runs without persistence).
    assert_eq!(redis.cli(&["SAVE"]), "OK");
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.kill();
    let started = Instant::now();
    let (status, body) = get_json(&client, &inst.me(), Some(&token)).await;
    assert_eq!(status, 503, "Redis down is not a logout: {body}");
    assert_eq!(body["error"], "store_unavailable");
    assert!(started.elapsed() < Duration::from_secs(2));
    let (status, _) = try_login(&client, &inst.base, &fake, "o-while-down").await;
    assert_eq!(status, 503);

    let _redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    let (elapsed, body) =
        wait_for_status(&client, &inst.me(), &token, 200, Duration::from_secs(10)).await;
    assert_eq!(body["openid"], "o-restart");
    eprintln!("the token worked again {elapsed:?} after Redis restarted");
    let fresh = login(&client, &inst.base, &fake, "o-after-restart").await;
    assert_eq!(get_json(&client, &inst.me(), Some(&fresh)).await.0, 200);
}

/// Redis killed: a session cached on this instance keeps answering 200
/// (within its cache TTL) while one that is not cached gets 503; nothing
/// empties the cache just because Redis went away. Back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_leaves_cached_sessions_serving() {
    let mut redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("kill");
    let a = instance(&redis.url(), &prefix, &fake, Duration::from_secs(30)).await;
    let b = instance(&redis.url(), &prefix, &fake, Duration::from_secs(30)).await;
    wait_numsub(
        &redis,
        &format!("{prefix}:revoked"),
        2,
        Duration::from_secs(5),
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // `cached` is in A's cache (its login ran there); `uncached` only in B's.
    let cached = login(&client, &a.base, &fake, "o-cached").await;
    let uncached = login(&client, &b.base, &fake, "o-uncached").await;
    assert_eq!(get_json(&client, &a.me(), Some(&cached)).await.0, 200);
    assert_eq!(redis.cli(&["SAVE"]), "OK");

    redis.kill();
    // Long enough for every subscriber to see its connection close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        let (status, body) = get_json(&client, &a.me(), Some(&cached)).await;
        assert_eq!(status, 200, "a cached session while Redis is down: {body}");
        assert_eq!(body["openid"], "o-cached");
        let (status, body) = get_json(&client, &a.me(), Some(&uncached)).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "store_unavailable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let _redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    let (_, body) =
        wait_for_status(&client, &a.me(), &uncached, 200, Duration::from_secs(10)).await;
    assert_eq!(body["openid"], "o-uncached");
    assert_eq!(get_json(&client, &a.me(), Some(&cached)).await.0, 200);
}

/// Instance A reaches Redis through a proxy that then refuses everything,
/// so A has no subscription (and no store); B still has both. A keeps
/// serving its cached session. B revokes that user: A cannot hear of it.
/// Once A's subscription is back, A drops what it may have missed, so the
/// revoked session is refused there too, while the 60 s cache would
/// otherwise still hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_while_the_subscription_was_down_is_dropped_when_it_is_back() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let proxy = Proxy::start(redis.port()).await;
    let fake = fake_wechat().await;
    let prefix = unique_prefix("gone");
    let channel = format!("{prefix}:revoked");
    let a = instance(&proxy.url(), &prefix, &fake, Duration::from_secs(60)).await;
    let b = instance(&redis.url(), &prefix, &fake, Duration::from_secs(60)).await;
    wait_numsub(&redis, &channel, 2, Duration::from_secs(5)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let token = login(&client, &a.base, &fake, "o-missed").await;
    assert_eq!(get_json(&client, &a.me(), Some(&token)).await.0, 200);

    proxy.refuse().await;
    wait_until_numsub(&redis, &channel, 1).await;
    for _ in 0..3 {
        let (status, body) = get_json(&client, &a.me(), Some(&token)).await;
        assert_eq!(
            status, 200,
            "A's cached session while A cannot reach Redis: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(b.wx.revoke_user("o-missed").await.unwrap(), 1);
    assert_eq!(get_json(&client, &b.me(), Some(&token)).await.0, 401);

    proxy.pass().await;
    wait_numsub(&redis, &channel, 2, Duration::from_secs(10)).await;
    let (_, body) = wait_for_status(&client, &a.me(), &token, 401, Duration::from_secs(3)).await;
    assert_eq!(body["error"], "invalid_token");
}

/// Waits until `channel` has at most `n` subscribers.
async fn wait_until_numsub(redis: &RedisServer, channel: &str, n: i64) {
    wait_for(Duration::from_secs(5), || async {
        match redis.numsub(channel) {
            have if have <= n => Ok(()),
            have => Err(format!(
                "{channel}: {have} subscribers stay, wanted at most {n}"
            )),
        }
    })
    .await;
}

/// A's subscription connection stays open but nothing comes through it any
/// more (a half-dead connection: a NAT that forgot it, a stalled proxy).
/// A's PING notices, A subscribes again on a new connection and drops what
/// it may have missed: a logout made on B meanwhile is refused on A, and a
/// later one reaches A by message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_dead_subscription_is_noticed_and_replaced() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let proxy = Proxy::start(redis.port()).await;
    let fake = fake_wechat().await;
    let prefix = unique_prefix("halfdead");
    let channel = format!("{prefix}:revoked");
    let a = instance(&proxy.url(), &prefix, &fake, Duration::from_secs(60)).await;
    let b = instance(&redis.url(), &prefix, &fake, Duration::from_secs(60)).await;
    wait_numsub(&redis, &channel, 2, Duration::from_secs(5)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let token = login(&client, &b.base, &fake, "o-halfdead").await;
    assert_eq!(get_json(&client, &a.me(), Some(&token)).await.0, 200);
    let accepted = proxy.accepted();

    proxy.stall_subscribers();
    assert_eq!(logout(&client, &b.base, &token).await, 204);
    // Redis still counts the stalled connection as a subscriber until A
    // replaces it; the new connection shows A noticed.
    let started = Instant::now();
    while proxy.accepted() == accepted {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "A never noticed its subscription stopped answering"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, body) = wait_for_status(&client, &a.me(), &token, 401, Duration::from_secs(5)).await;
    assert_eq!(body["error"], "invalid_token");

    let later = login(&client, &b.base, &fake, "o-halfdead-later").await;
    assert_eq!(get_json(&client, &a.me(), Some(&later)).await.0, 200);
    wait_numsub(&redis, &channel, 3, Duration::from_secs(5)).await;
    assert_eq!(logout(&client, &b.base, &later).await, 204);
    let (elapsed, _) = wait_for_status(&client, &a.me(), &later, 401, Duration::from_secs(3)).await;
    assert!(
        elapsed < Duration::from_secs(1),
        "refused only after {elapsed:?}"
    );
}
