//! Many instances on one Redis, over real HTTP on loopback: two `WxLogin`
//! builds (each with its own cache, the same token key, their own Redis
//! connections) behind two servers, sharing one fake WeChat.
//!
//! Shows: tokens work on every instance; a logout or `revoke_user` on one
//! instance is refused by the other within a second through pub/sub (with a
//! cache TTL of 60 s, so nothing else can explain it); one session per user;
//! the cache TTL backstop when no message arrives; a killed subscription
//! that comes back by itself; a restarted instance that accepts every
//! earlier token; and idle extension with few store writes.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{builder, fake_wechat, get_json, login, CountingStore, Forward};
use redis_harness::{
    index_members, logout, some_redis, unique_prefix, wait_for_status, wait_numsub, Deaf, Instance,
    RedisCli, RedisServer, TOKEN_KEY,
};
use wxlogin::mock::FakeWeChat;
use wxlogin::store::RedisStore;
use wxlogin::WxLoginBuilder;

const LONG_CACHE: Duration = Duration::from_secs(60);
const ONE_SECOND: Duration = Duration::from_secs(1);

async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect(url)
        .await
        .expect("connect to Redis")
        .with_prefix(prefix)
}

/// Builds and serves one instance on its own Redis connection.
async fn instance(
    url: &str,
    prefix: &str,
    fake: &FakeWeChat,
    tune: impl FnOnce(WxLoginBuilder<()>) -> WxLoginBuilder<()>,
) -> Instance {
    let wx = tune(
        builder(fake)
            .token_key(TOKEN_KEY)
            .store(store(url, prefix).await),
    )
    .build()
    .unwrap();
    Instance::serve(wx).await
}

/// Two instances with 60 s caches; returns once both listen for invalidations.
async fn pair(
    redis: &impl RedisCli,
    url: &str,
    fake: &FakeWeChat,
    tune: impl Fn(WxLoginBuilder<()>) -> WxLoginBuilder<()>,
) -> (Instance, Instance, String) {
    let prefix = unique_prefix("inst");
    let a = instance(url, &prefix, fake, |b| tune(b.cache_ttl(LONG_CACHE))).await;
    let b = instance(url, &prefix, fake, |b| tune(b.cache_ttl(LONG_CACHE))).await;
    let channel = format!("{prefix}:revoked");
    wait_numsub(redis, &channel, 2, Duration::from_secs(5)).await;
    (a, b, channel)
}

/// Asserts `token` is refused by `inst` within a second, as `invalid_token`.
async fn refused_within_a_second(client: &reqwest::Client, inst: &Instance, token: &str) {
    let (elapsed, body) = wait_for_status(client, &inst.me(), token, 401, ONE_SECOND * 3).await;
    assert!(elapsed < ONE_SECOND, "refused only after {elapsed:?}");
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_one_instance_works_on_the_other() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let (a, b, _) = pair(&redis, &redis.url(), &fake, |b| b).await;
    let client = reqwest::Client::new();

    let token = login(&client, &a.base, &fake, "o-roam").await;
    let (status, body) = get_json(&client, &b.me(), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["openid"], "o-roam");
    let token_b = login(&client, &b.base, &fake, "o-roam-b").await;
    let (status, body) = get_json(&client, &a.me(), Some(&token_b)).await;
    assert_eq!((status, body["openid"].as_str()), (200, Some("o-roam-b")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_instance_is_refused_by_the_other_within_a_second() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let (a, b, _) = pair(&redis, &redis.url(), &fake, |b| b).await;
    let client = reqwest::Client::new();

    let token = login(&client, &a.base, &fake, "o-leave").await;
    let other = login(&client, &a.base, &fake, "o-stay").await;
    // Warm B's cache: from now on B serves these from memory for 60 s.
    assert_eq!(get_json(&client, &b.me(), Some(&token)).await.0, 200);
    assert_eq!(get_json(&client, &b.me(), Some(&other)).await.0, 200);

    assert_eq!(logout(&client, &a.base, &token).await, 204);
    refused_within_a_second(&client, &b, &token).await;
    assert_eq!(get_json(&client, &a.me(), Some(&token)).await.0, 401);
    // Only that session was dropped.
    assert_eq!(get_json(&client, &b.me(), Some(&other)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_user_on_one_instance_is_refused_by_the_other_within_a_second() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let (a, b, _) = pair(&redis, &redis.url(), &fake, |b| b).await;
    let client = reqwest::Client::new();

    let phone = login(&client, &a.base, &fake, "o-stolen").await;
    let laptop = login(&client, &b.base, &fake, "o-stolen").await;
    let bystander = login(&client, &b.base, &fake, "o-bystander").await;
    for t in [&phone, &laptop, &bystander] {
        assert_eq!(get_json(&client, &a.me(), Some(t)).await.0, 200);
        assert_eq!(get_json(&client, &b.me(), Some(t)).await.0, 200);
    }

    assert_eq!(a.wx.revoke_user("o-stolen").await.unwrap(), 2);
    refused_within_a_second(&client, &b, &phone).await;
    refused_within_a_second(&client, &b, &laptop).await;
    assert_eq!(get_json(&client, &a.me(), Some(&phone)).await.0, 401);
    assert_eq!(get_json(&client, &a.me(), Some(&laptop)).await.0, 401);
    assert_eq!(get_json(&client, &b.me(), Some(&bystander)).await.0, 200);
    let index = a.wx.store().delete_user("o-stolen").await.unwrap();
    assert!(index.is_empty(), "nothing of the user is left: {index:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_session_a_new_login_ends_the_old_one_everywhere() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let (a, b, _) = pair(&redis, &redis.url(), &fake, |b| b.single_session(true)).await;
    let client = reqwest::Client::new();

    let first = login(&client, &a.base, &fake, "o-single").await;
    let other_user = login(&client, &a.base, &fake, "o-single-other").await;
    assert_eq!(get_json(&client, &a.me(), Some(&first)).await.0, 200);
    assert_eq!(get_json(&client, &b.me(), Some(&first)).await.0, 200);

    let second = login(&client, &b.base, &fake, "o-single").await;
    refused_within_a_second(&client, &a, &first).await;
    refused_within_a_second(&client, &b, &first).await;
    for inst in [&a, &b] {
        let (status, body) = get_json(&client, &inst.me(), Some(&second)).await;
        assert_eq!((status, body["openid"].as_str()), (200, Some("o-single")));
        assert_eq!(
            get_json(&client, &inst.me(), Some(&other_user)).await.0,
            200
        );
    }
}

/// The cache TTL alone bounds staleness: an instance that never hears of
/// the logout (its store does not subscribe) refuses the token once its
/// 1 s cache entry lapses. The control: with a 60 s cache and no messages
/// the token is still served, so in the tests above (60 s caches) only the
/// message explains the quick refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_messages_the_cache_ttl_is_the_backstop() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("deaf");
    let a = instance(&redis.url(), &prefix, &fake, |b| b).await;
    let mut deaf = Vec::new();
    for ttl in [ONE_SECOND, LONG_CACHE] {
        let store = Forward(Deaf(store(&redis.url(), &prefix).await));
        let wx = builder(&fake)
            .token_key(TOKEN_KEY)
            .store(store)
            .cache_ttl(ttl)
            .build()
            .unwrap();
        deaf.push(Instance::serve(wx).await);
    }
    let (short, long) = (&deaf[0], &deaf[1]);
    let client = reqwest::Client::new();

    let token = login(&client, &a.base, &fake, "o-deaf").await;
    assert_eq!(get_json(&client, &short.me(), Some(&token)).await.0, 200);
    assert_eq!(get_json(&client, &long.me(), Some(&token)).await.0, 200);
    assert_eq!(logout(&client, &a.base, &token).await, 204);
    let (elapsed, body) = wait_for_status(&client, &short.me(), &token, 401, ONE_SECOND * 4).await;
    assert!(elapsed < ONE_SECOND * 2, "refused only after {elapsed:?}");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(
        get_json(&client, &long.me(), Some(&token)).await.0,
        200,
        "control: a 60 s cache that hears nothing still serves the token"
    );
}

/// `CLIENT KILL TYPE pubsub` cuts every instance's subscription: a logout
/// made right then is still refused everywhere within ~2 s (the cache is
/// cleared after a lost subscription, and the 1 s cache TTL bounds it
/// anyway); the subscriptions come back by themselves, and a later logout
/// travels by message again, with a 60 s cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_comes_back_by_itself() {
    // Always our own server: CLIENT KILL would cut other tests' subscriptions.
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let url = redis.url();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("kill");
    let channel = format!("{prefix}:revoked");
    let a = instance(&url, &prefix, &fake, |b| b.cache_ttl(LONG_CACHE)).await;
    let short = instance(&url, &prefix, &fake, |b| b.cache_ttl(ONE_SECOND)).await;
    let long = instance(&url, &prefix, &fake, |b| b.cache_ttl(LONG_CACHE)).await;
    wait_numsub(&redis, &channel, 3, Duration::from_secs(5)).await;
    let client = reqwest::Client::new();

    let token = login(&client, &a.base, &fake, "o-kill").await;
    assert_eq!(get_json(&client, &short.me(), Some(&token)).await.0, 200);
    assert_eq!(get_json(&client, &long.me(), Some(&token)).await.0, 200);

    let killed = redis.cli_int(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(killed >= 3, "killed {killed} subscriber connections");
    assert_eq!(logout(&client, &a.base, &token).await, 204);
    for inst in [&short, &long] {
        let (elapsed, body) =
            wait_for_status(&client, &inst.me(), &token, 401, ONE_SECOND * 5).await;
        assert!(elapsed < ONE_SECOND * 2, "refused only after {elapsed:?}");
        assert_eq!(body["error"], "invalid_token");
    }

    // Nobody restarts anything: the subscriptions come back.
    wait_numsub(&redis, &channel, 3, Duration::from_secs(10)).await;

    let later = login(&client, &a.base, &fake, "o-kill-later").await;
    assert_eq!(get_json(&client, &long.me(), Some(&later)).await.0, 200);
    assert_eq!(logout(&client, &a.base, &later).await, 204);
    refused_within_a_second(&client, &long, &later).await;
}

/// Nothing lives only in memory: a new instance (new cache, new connection,
/// same Redis and token key) accepts every token issued before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_accepts_every_earlier_token() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("restart");
    let client = reqwest::Client::new();

    let first = instance(&redis.url(), &prefix, &fake, |b| b).await;
    let mut issued = Vec::new();
    for i in 0..5 {
        let openid = format!("o-restart-{i}");
        let token = login(&client, &first.base, &fake, &openid).await;
        issued.push((openid, token));
    }
    // The first instance stops; the second has its own cache and connection.
    drop(first.stop());

    let second = instance(&redis.url(), &prefix, &fake, |b| b).await;
    for (openid, token) in &issued {
        let (status, body) = get_json(&client, &second.me(), Some(token)).await;
        assert_eq!(status, 200, "{openid}: {body}");
        assert_eq!(body["openid"], openid.as_str());
    }
    // And logging out there still works.
    assert_eq!(logout(&client, &second.base, &issued[0].1).await, 204);
    assert_eq!(
        get_json(&client, &second.me(), Some(&issued[0].1)).await.0,
        401
    );
}

/// Idle timeout on Redis: use keeps a session alive past the idle timeout
/// with at most one store write per refresh interval (half the timeout,
/// 1 s here), not one per request; an unused session ends (between `idle`
/// and `idle + refresh` after its last use, so the test waits past that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_extends_on_use_with_few_writes() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("idle");
    let redis_store = store(&redis.url(), &prefix).await;
    let counting = CountingStore::wrap(redis_store.clone());
    let touches = counting.touches.clone();
    let inst = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(counting)
            .idle_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();

    let busy = login(&client, &inst.base, &fake, "o-busy").await;
    let unused = login(&client, &inst.base, &fake, "o-unused").await;
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(3_200) {
        let (status, body) = get_json(&client, &inst.me(), Some(&busy)).await;
        assert_eq!(
            status,
            200,
            "request {requests} after {:?}: {body}",
            started.elapsed()
        );
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed_ms = started.elapsed().as_millis() as usize;
    let writes = touches.load(Ordering::SeqCst);
    eprintln!("{requests} requests in {elapsed_ms} ms made {writes} touch writes");
    assert!(requests >= 20, "only {requests} requests");
    assert!(writes >= 1, "the session was never extended");
    assert!(
        writes <= elapsed_ms / 1_000 + 1,
        "{writes} touch writes in {elapsed_ms} ms: more than one per second"
    );
    assert!(
        writes * 10 <= requests,
        "{writes} touch writes for {requests} requests"
    );

    // Redis holds the extended deadline: the key lives on past the first
    // one (login + idle + refresh, already behind us).
    let members = index_members(&redis, &redis_store.user_key("o-busy"));
    assert_eq!(members.len(), 1);
    let key = redis_store.session_key(redis_harness::parse_store_id(&members[0]));
    let pttl = redis.cli_int(&["PTTL", &key]);
    assert!(pttl > 1_000, "the key's expiry moved with use, PTTL {pttl}");

    // The session nobody used ended after its idle time, in Redis too.
    // Redis expired its key at the idle deadline, so the id is unknown now.
    let (status, body) = get_json(&client, &inst.me(), Some(&unused)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token", "{body}");

    // And the busy one ends once it is left alone for the idle time (plus
    // the refresh interval).
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    let (status, body) = get_json(&client, &inst.me(), Some(&busy)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert_eq!(redis.cli_int(&["EXISTS", &key]), 0, "Redis expired the key");
}
