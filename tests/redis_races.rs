//! Sessions under races and partial failures on Redis, over real HTTP on
//! loopback, with two instances on one `redis-server` (each its own cache
//! and connections). The memory store's side is in tests/session_races.rs.
//!
//! - `revoke_user` racing logins of the same user on both instances: every
//!   token minted before the revoke began is refused on both within a
//!   second of its return; a second revoke ends every session.
//! - `single_session`: concurrent logins on both instances leave one.
//! - Sessions per user are capped (oldest first), with no `HGETALL` (no
//!   read of the whole user index) on the login path, and `revoke_user`
//!   deletes in one pipelined round trip.
//! - A revoke cut after its deletes (the connection dies before `PUBLISH`)
//!   invalidates the local cache, and its retry announces the ids.
//! - A damaged or unknown-version record is `invalid_token`, not a 503.

mod common;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/redis.rs"]
mod redis_harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{builder, fake_wechat, get_json, login};
use proxy::Proxy;
use redis_harness::{
    all_refused_by, live, some_redis, try_login, unique_prefix, wait_numsub, Instance, RedisCli,
    RedisServer, TOKEN_KEY,
};
use wxlogin::mock::FakeWeChat;
use wxlogin::store::RedisStore;
use wxlogin::WxLoginBuilder;

const ONE_SECOND: Duration = Duration::from_secs(1);
const LONG_CACHE: Duration = Duration::from_secs(60);

async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect(url)
        .await
        .expect("connect to Redis")
        .with_prefix(prefix)
}

async fn instance(
    url: &str,
    prefix: &str,
    fake: &FakeWeChat,
    tune: impl FnOnce(WxLoginBuilder<()>) -> WxLoginBuilder<()>,
) -> Instance {
    let wx = tune(
        builder(fake)
            .token_key(TOKEN_KEY)
            .store(store(url, prefix).await)
            .cache_ttl(LONG_CACHE)
            .login_rate(0),
    )
    .build()
    .unwrap();
    Instance::serve(wx).await
}

/// Session keys under `prefix` (a fresh prefix holds only this test's).
fn session_keys(redis: &impl RedisCli, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis
        .cli(&["KEYS", &format!("{prefix}:s:*")])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_user_racing_logins_on_two_instances() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("race");
    let a = instance(&redis.url(), &prefix, &fake, |b| b).await;
    let b = instance(&redis.url(), &prefix, &fake, |b| b).await;
    wait_numsub(
        &redis,
        &format!("{prefix}:revoked"),
        2,
        Duration::from_secs(5),
    )
    .await;
    let client = reqwest::Client::new();
    let both = [&a, &b];
    for round in 0..20 {
        let openid = format!("o-race-{round}");
        let minted = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..6 {
            let base = both[w % 2].base.clone();
            let (client, fake, openid) = (client.clone(), fake.clone(), openid.clone());
            let (minted, stop) = (minted.clone(), stop.clone());
            workers.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(t) = try_login(&client, &base, &fake, &openid).await {
                        minted.lock().unwrap().push((Instant::now(), t));
                    }
                }
            });
        }
        while minted.lock().unwrap().len() < 6 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let revoker = both[round % 2];
        let started = Instant::now();
        revoker.wx.revoke_user(&openid).await.unwrap();
        let returned = Instant::now();
        tokio::time::sleep(Duration::from_millis(30)).await;
        stop.store(true, Ordering::SeqCst);
        while workers.join_next().await.is_some() {}
        let all: Vec<(Instant, String)> = minted.lock().unwrap().clone();
        let before: Vec<String> = all
            .iter()
            .filter(|(at, _)| *at < started)
            .map(|(_, t)| t.clone())
            .collect();
        all_refused_by(
            &client,
            &both,
            &before,
            returned + ONE_SECOND,
            &format!(
                "round {round}: {} tokens minted before the revoke",
                before.len()
            ),
        )
        .await;
        both[(round + 1) % 2].wx.revoke_user(&openid).await.unwrap();
        let again = Instant::now();
        let tokens: Vec<String> = all.into_iter().map(|(_, t)| t).collect();
        all_refused_by(
            &client,
            &both,
            &tokens,
            again + ONE_SECOND,
            &format!(
                "round {round}: {} tokens after the second revoke",
                tokens.len()
            ),
        )
        .await;
    }
    assert!(
        session_keys(&redis, &prefix).is_empty(),
        "no session is left in Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_session_concurrent_logins_on_two_instances_leave_one() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("single");
    let a = instance(&redis.url(), &prefix, &fake, |b| b.single_session(true)).await;
    let b = instance(&redis.url(), &prefix, &fake, |b| b.single_session(true)).await;
    wait_numsub(
        &redis,
        &format!("{prefix}:revoked"),
        2,
        Duration::from_secs(5),
    )
    .await;
    let client = reqwest::Client::new();
    let both = [&a, &b];
    for round in 0..5 {
        let openid = format!("o-single-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut logins = tokio::task::JoinSet::new();
        for w in 0..8 {
            let base = both[w % 2].base.clone();
            let (client, fake, openid, barrier) = (
                client.clone(),
                fake.clone(),
                openid.clone(),
                barrier.clone(),
            );
            logins.spawn(async move {
                barrier.wait().await;
                try_login(&client, &base, &fake, &openid).await
            });
        }
        let mut tokens = Vec::new();
        while let Some(t) = logins.join_next().await {
            tokens.push(t.unwrap().expect("every login answers 200"));
        }
        // Others' announcements take a moment to reach the other instance.
        let deadline = Instant::now() + ONE_SECOND;
        let alive = loop {
            let alive = live(&client, &both, &tokens).await;
            if alive.len() <= 1 || Instant::now() > deadline {
                break alive;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(alive.len(), 1, "round {round}: live sessions {alive:?}");
        let keys = session_keys(&redis, &prefix);
        assert_eq!(
            keys.len(),
            1,
            "round {round}: one session in Redis: {keys:?}"
        );
        for inst in both {
            assert_eq!(
                get_json(&client, &inst.me(), Some(&tokens[alive[0]]))
                    .await
                    .0,
                200
            );
        }
        redis.cli(&["DEL", &keys[0]]);
    }
}

/// `INFO commandstats` as command → calls.
fn command_calls(redis: &RedisServer) -> HashMap<String, u64> {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn delta(after: &HashMap<String, u64>, before: &HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut d: Vec<(String, u64)> = after
        .iter()
        .filter(|(k, _)| k.as_str() != "ping" && k.as_str() != "info")
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    d.sort();
    d
}

/// 200 logins of one user: the newest 20 (the default cap) stay, the others
/// are refused on both instances. The login path never reads the whole
/// user index (no `HGETALL`, `HKEYS` or `HVALS`), and ten logins with 20
/// sessions run the same commands as ten logins with 20 sessions later on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_user_are_capped_without_reading_the_whole_index() {
    // Our own server: CONFIG RESETSTAT would disturb other tests' counts.
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("cap");
    let a = instance(&redis.url(), &prefix, &fake, |b| b).await;
    let b = instance(&redis.url(), &prefix, &fake, |b| b).await;
    wait_numsub(
        &redis,
        &format!("{prefix}:revoked"),
        2,
        Duration::from_secs(5),
    )
    .await;
    let client = reqwest::Client::new();
    assert_eq!(redis.cli(&["CONFIG", "RESETSTAT"]), "OK");
    let mut tokens = Vec::new();
    let mut snapshots = HashMap::new();
    for n in 0..200 {
        if [40, 50, 190].contains(&n) {
            snapshots.insert(n, command_calls(&redis));
        }
        tokens.push(login(&client, &a.base, &fake, "o-many").await);
    }
    snapshots.insert(200, command_calls(&redis));
    let whole_reads: Vec<(String, u64)> = snapshots[&200]
        .iter()
        .filter(|(k, _)| ["hgetall", "hkeys", "hvals", "smembers"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(
        whole_reads.is_empty(),
        "logins read a whole index: {whole_reads:?}"
    );
    assert_eq!(
        delta(&snapshots[&50], &snapshots[&40]),
        delta(&snapshots[&200], &snapshots[&190]),
        "ten logins cost the same commands however long the user has had the cap"
    );
    all_refused_by(
        &client,
        &[&a, &b],
        &tokens[..180],
        Instant::now() + ONE_SECOND,
        "sessions over the cap",
    )
    .await;
    let alive = live(&client, &[&b], &tokens).await;
    assert_eq!(alive, (180..200).collect::<Vec<_>>(), "the newest 20 live");
    assert_eq!(session_keys(&redis, &prefix).len(), 20);
}

/// `revoke_user` of a user with 20 sessions: one pipelined round trip for
/// the deletes (and the announcement), not one per session. Logins, too,
/// are two round trips once the user has reached the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_user_pipelines_its_deletes() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let proxy = Proxy::start(redis.port()).await;
    let fake = fake_wechat().await;
    let prefix = unique_prefix("pipe");
    let a = instance(&proxy.url(), &prefix, &fake, |b| b).await;
    let client = reqwest::Client::new();
    // Warm up: the scripts are loaded on first use.
    login(&client, &a.base, &fake, "o-warm").await;
    a.wx.revoke_user("o-warm").await.unwrap();
    for _ in 0..20 {
        login(&client, &a.base, &fake, "o-twenty").await;
    }
    // A login over the cap ends the oldest session in the same round trips.
    let before = proxy.round_trips();
    let capped = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(store(&proxy.url(), &prefix).await)
            .max_sessions_per_user(20)
            .login_rate(0)
            .build()
            .unwrap(),
    )
    .await;
    // Both subscribers in place (their connections are not counted once
    // subscribed, but their set-up would be).
    wait_numsub(
        &redis,
        &format!("{prefix}:revoked"),
        2,
        Duration::from_secs(5),
    )
    .await;
    let connect = proxy.round_trips() - before;
    let before = proxy.round_trips();
    login(&client, &capped.base, &fake, "o-twenty").await;
    let trips = proxy.round_trips() - before;
    assert!(trips <= 2, "a login over the cap took {trips} round trips");
    eprintln!("a login over the cap took {trips} round trips (connecting took {connect})");
    let before = proxy.round_trips();
    assert_eq!(a.wx.revoke_user("o-twenty").await.unwrap(), 20);
    let trips = proxy.round_trips() - before;
    eprintln!("revoking 20 sessions took {trips} round trips");
    // The listing script, then one pipeline of the deletes, the
    // announcement and the clean-up.
    assert!(
        trips <= 2,
        "revoking 20 sessions took {trips} round trips to Redis"
    );
    assert!(session_keys(&redis, &prefix).is_empty());
}

/// The connection dies in the middle of a revoke, after the deletes reached
/// Redis and before `PUBLISH` did. The revoke reports the failure, the
/// revoking instance's cache drops the sessions anyway, and a retry
/// announces them, so the other instance drops them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_cut_before_its_announcement_is_announced_by_its_retry() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let proxy = Proxy::start(redis.port()).await;
    let fake = fake_wechat().await;
    let prefix = unique_prefix("cut");
    let a = instance(&proxy.url(), &prefix, &fake, |b| b).await;
    let b = instance(&redis.url(), &prefix, &fake, |b| b).await;
    wait_numsub(
        &redis,
        &format!("{prefix}:revoked"),
        2,
        Duration::from_secs(5),
    )
    .await;
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(login(&client, &a.base, &fake, "o-cut").await);
    }
    for t in &tokens {
        for inst in [&a, &b] {
            assert_eq!(get_json(&client, &inst.me(), Some(t)).await.0, 200);
        }
    }
    proxy.cut_once_at(b"PUBLISH");
    assert!(
        a.wx.revoke_user("o-cut").await.is_err(),
        "the revoke was cut"
    );
    assert!(proxy.cut_done());
    assert!(
        session_keys(&redis, &prefix).is_empty(),
        "the deletes ran before the cut"
    );
    all_refused_by(
        &client,
        &[&a],
        &tokens,
        Instant::now() + ONE_SECOND,
        "the revoking instance after a cut revoke",
    )
    .await;
    // The retry finds what the cut revoke listed and announces it.
    a.wx.revoke_user("o-cut").await.unwrap();
    all_refused_by(
        &client,
        &[&a, &b],
        &tokens,
        Instant::now() + ONE_SECOND,
        "both instances after the retry",
    )
    .await;
}

/// A logout whose replies come back slower than the store timeout: the
/// client gets 503, but the logout goes on and announces the session, so
/// the other instance drops it (before, the timeout dropped the logout
/// between its `DEL` and its `PUBLISH`: deleted, never announced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_cut_by_the_store_timeout_is_still_announced() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let proxy = Proxy::start(redis.port()).await;
    let fake = fake_wechat().await;
    let prefix = unique_prefix("slowout");
    let a = instance(&proxy.url(), &prefix, &fake, |b| {
        b.store_timeout(Duration::from_millis(300))
    })
    .await;
    let b = instance(&redis.url(), &prefix, &fake, |b| b).await;
    wait_numsub(
        &redis,
        &format!("{prefix}:revoked"),
        2,
        Duration::from_secs(5),
    )
    .await;
    let client = reqwest::Client::new();
    let token = login(&client, &a.base, &fake, "o-slow").await;
    assert_eq!(get_json(&client, &b.me(), Some(&token)).await.0, 200);

    proxy.delay_replies(Duration::from_millis(800));
    let res = client
        .post(format!("{}/wx/logout", a.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        503,
        "the logout answered after the store timeout"
    );
    all_refused_by(
        &client,
        &[&b],
        &[token],
        Instant::now() + Duration::from_secs(3),
        "the other instance after a logout cut by the timeout",
    )
    .await;
    assert!(session_keys(&redis, &prefix).is_empty());
}

/// A record damaged in Redis, or of a version this build does not know,
/// is `invalid_token` for its token, on every request; not a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_unknown_version_records_are_invalid_token() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("bad");
    let a = instance(&redis.url(), &prefix, &fake, |b| b).await;
    let client = reqwest::Client::new();
    let damaged = login(&client, &a.base, &fake, "o-damaged").await;
    let damaged_key = session_keys(&redis, &prefix).pop().unwrap();
    let versioned = login(&client, &a.base, &fake, "o-version").await;
    let versioned_key = session_keys(&redis, &prefix)
        .into_iter()
        .find(|k| *k != damaged_key)
        .unwrap();
    let fine = login(&client, &a.base, &fake, "o-fine").await;
    redis.cli(&["SET", &damaged_key, "garbage"]);
    // Version byte 9 (a tab), the rest intact.
    redis.cli(&["SETRANGE", &versioned_key, "0", "\t"]);
    // A fresh instance: nothing cached, every lookup reads the records.
    let b = instance(&redis.url(), &prefix, &fake, |b| b).await;
    for _ in 0..2 {
        for t in [&damaged, &versioned] {
            let (status, body) = get_json(&client, &b.me(), Some(t)).await;
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["error"], "invalid_token");
        }
        assert_eq!(get_json(&client, &b.me(), Some(&fine)).await.0, 200);
    }
}
