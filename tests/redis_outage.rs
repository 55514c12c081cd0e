//! Redis outages over real HTTP on loopback, on a Redis this test owns.
//!
//! Stalled Redis (SIGSTOP): a session that is not cached gets 503
//! `store_unavailable` within two seconds (never a 401), a cached one keeps
//! serving, a login gets 503 and no token; on SIGCONT the same token works
//! again with no restart. Killed Redis, restarted on the same port: service
//! comes back by itself (the connection manager reconnects).

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::time::{Duration, Instant};

use common::{fake_wechat, get_json, login};
use redis_harness::{builder, unique_prefix, wait_for_status, Instance, RedisCli, RedisServer};
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
