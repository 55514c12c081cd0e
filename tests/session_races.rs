//! Sessions under races and partial failures, on the memory store (and
//! stores wrapped around it), over real HTTP on loopback. The same
//! contracts on Redis are in tests/redis_races.rs.
//!
//! - `revoke_user` racing logins of the same user: every session created
//!   before the revoke began is refused once it returns; a second revoke
//!   ends everything.
//! - `single_session`: concurrent logins leave exactly one live session.
//! - Sessions per user are capped, the oldest ended first.
//! - A login racing the revocation of its own new session does not cache it.
//! - A revoke cut by the store timeout after the store deleted still
//!   invalidates the local cache.
//! - A failed idle extension is retried and does not log an active user out.
//! - A record the store cannot decode is a 401, not a 503.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{builder, fake_wechat, get_json, login, Forward, Forwarding};
use redis_harness::{all_refused_by, live, try_login, Instance, TOKEN_KEY};
use tokio::sync::Notify;
use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreError, StoreFuture, StoreId};

const ONE_SECOND: Duration = Duration::from_secs(1);
const LONG_CACHE: Duration = Duration::from_secs(60);

/// `revoke_user` while logins of the same user keep landing: after each
/// revoke returns, every token minted before it began is refused; a second
/// revoke, once the logins stop, ends every session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_user_racing_logins_on_the_memory_store() {
    let fake = fake_wechat().await;
    let inst = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .cache_ttl(LONG_CACHE)
            .login_rate(0)
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    for round in 0..20 {
        let openid = format!("o-race-{round}");
        let minted = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (client, base, fake, openid) = (
                client.clone(),
                inst.base.clone(),
                fake.clone(),
                openid.clone(),
            );
            let (minted, stop) = (minted.clone(), stop.clone());
            workers.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(t) = try_login(&client, &base, &fake, &openid).await {
                        minted.lock().unwrap().push((Instant::now(), t));
                    }
                }
            });
        }
        while minted.lock().unwrap().len() < 4 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let started = Instant::now();
        inst.wx.revoke_user(&openid).await.unwrap();
        let returned = Instant::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
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
            &[&inst],
            &before,
            returned + ONE_SECOND,
            &format!("round {round}, minted before the revoke"),
        )
        .await;
        inst.wx.revoke_user(&openid).await.unwrap();
        let again = Instant::now();
        let tokens: Vec<String> = all.into_iter().map(|(_, t)| t).collect();
        all_refused_by(
            &client,
            &[&inst],
            &tokens,
            again + ONE_SECOND,
            &format!("round {round}, after the second revoke"),
        )
        .await;
    }
}

/// `single_session`: logins of one user at once leave exactly one live session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_session_concurrent_logins_leave_one_on_the_memory_store() {
    let fake = fake_wechat().await;
    let inst = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .single_session(true)
            .cache_ttl(LONG_CACHE)
            .login_rate(0)
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    for round in 0..5 {
        let openid = format!("o-single-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(12));
        let mut logins = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (client, base, fake, openid, barrier) = (
                client.clone(),
                inst.base.clone(),
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
        let live = live(&client, &[&inst], &tokens).await;
        assert_eq!(live.len(), 1, "round {round}: live sessions {live:?}");
    }
}

/// 200 logins of one user leave only the cap (20 by default), the newest;
/// the older ones are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_user_are_capped_oldest_first_on_the_memory_store() {
    let fake = fake_wechat().await;
    let store = MemoryStore::new();
    let inst = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(store.clone())
            .cache_ttl(LONG_CACHE)
            .login_rate(0)
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for _ in 0..200 {
        tokens.push(login(&client, &inst.base, &fake, "o-many").await);
    }
    let alive = live(&client, &[&inst], &tokens).await;
    assert_eq!(alive, (180..200).collect::<Vec<_>>(), "the newest 20 live");
    assert_eq!(store.len(), 20, "the store holds the cap");

    // A cap of its own.
    let three = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .max_sessions_per_user(3)
            .login_rate(0)
            .build()
            .unwrap(),
    )
    .await;
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(login(&client, &three.base, &fake, "o-three").await);
    }
    assert_eq!(live(&client, &[&three], &tokens).await, vec![2, 3, 4]);
}

/// A memory store whose login write (`create_capped`) stops after storing
/// the session until the test lets it go: the test revokes the user in that gap.
#[derive(Clone)]
struct Gated {
    inner: MemoryStore,
    armed: Arc<AtomicBool>,
    created: Arc<Notify>,
    go: Arc<Notify>,
}

impl Forwarding for Gated {
    fn inner(&self) -> &dyn SessionStore {
        &self.inner
    }
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        Box::pin(async move {
            let ended = self.inner.create_capped(id, record, max_per_user).await?;
            if self.armed.swap(false, Ordering::SeqCst) {
                self.created.notify_one();
                self.go.notified().await;
            }
            Ok(ended)
        })
    }
}

/// A login whose new session is revoked between the store's write and the
/// login's cache insert must not cache it: its token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_the_revocation_of_its_own_session_does_not_cache_it() {
    let fake = fake_wechat().await;
    let store = Gated {
        inner: MemoryStore::new(),
        armed: Arc::new(AtomicBool::new(true)),
        created: Arc::new(Notify::new()),
        go: Arc::new(Notify::new()),
    };
    let inst = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(Forward(store.clone()))
            .cache_ttl(LONG_CACHE)
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    let pending = {
        let (client, base, fake) = (client.clone(), inst.base.clone(), fake.clone());
        tokio::spawn(async move { login(&client, &base, &fake, "o-gap").await })
    };
    store.created.notified().await;
    assert_eq!(inst.wx.revoke_user("o-gap").await.unwrap(), 1);
    store.go.notify_one();
    let token = pending.await.unwrap();
    let (status, body) = get_json(&client, &inst.me(), Some(&token)).await;
    assert_eq!(status, 401, "a revoked session was cached: {body}");
    assert_eq!(body["error"], "invalid_token");
}

/// A memory store whose `delete_user` deletes at once but answers only
/// after `delay`: longer than the store timeout, so the caller gives up on
/// a call that already did its work.
#[derive(Clone)]
struct SlowAnswer {
    inner: MemoryStore,
    delay: Duration,
}

impl Forwarding for SlowAnswer {
    fn inner(&self) -> &dyn SessionStore {
        &self.inner
    }
    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        let openid = openid.to_owned();
        Box::pin(async move {
            let ids = self.inner.delete_user(&openid).await?;
            tokio::time::sleep(self.delay).await;
            Ok(ids)
        })
    }
}

/// `revoke_user` cut by the store timeout after the store deleted the
/// sessions: it reports the timeout, and the local cache still drops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_cut_by_the_timeout_still_invalidates_the_local_cache() {
    let fake = fake_wechat().await;
    let store = SlowAnswer {
        inner: MemoryStore::new(),
        delay: Duration::from_millis(600),
    };
    let inst = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(Forward(store.clone()))
            .store_timeout(Duration::from_millis(200))
            .cache_ttl(LONG_CACHE)
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    let tokens = vec![
        login(&client, &inst.base, &fake, "o-cut").await,
        login(&client, &inst.base, &fake, "o-cut").await,
    ];
    let other = login(&client, &inst.base, &fake, "o-cut-other").await;
    for t in tokens.iter().chain([&other]) {
        assert_eq!(get_json(&client, &inst.me(), Some(t)).await.0, 200);
    }
    assert!(
        inst.wx.revoke_user("o-cut").await.is_err(),
        "the store answered after the timeout"
    );
    assert_eq!(store.inner.len(), 1, "the store deleted both sessions");
    all_refused_by(
        &client,
        &[&inst],
        &tokens,
        Instant::now() + Duration::from_secs(3),
        "revoked sessions after a cut revoke",
    )
    .await;
    assert_eq!(get_json(&client, &inst.me(), Some(&other)).await.0, 200);
}

/// A memory store whose first `touch` fails, counting touches.
#[derive(Clone)]
struct FailFirstTouch {
    inner: MemoryStore,
    fail: Arc<AtomicBool>,
    touches: Arc<AtomicUsize>,
}

impl Forwarding for FailFirstTouch {
    fn inner(&self) -> &dyn SessionStore {
        &self.inner
    }
    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        if self.fail.swap(false, Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(StoreError::new(
                "injected touch failure",
            ))));
        }
        self.inner.touch(id, idle_expires_at_ms)
    }
}

/// Idle timeout 4 s (so a 2 s refresh interval): the login's session ends at
/// +6 s unless extended. The extension written at +2.5 s fails; the next
/// request (+4.2 s) must retry it, so that another instance reading the
/// store at +6.5 s, 2.3 s after the user's last request, still finds the
/// session (before the fix the in-memory deadline said "extended" and no
/// write was retried, so the store ended the session at +6 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_idle_extension_is_retried_and_keeps_the_user_logged_in() {
    let fake = fake_wechat().await;
    let shared = MemoryStore::new();
    let store = FailFirstTouch {
        inner: shared.clone(),
        fail: Arc::new(AtomicBool::new(true)),
        touches: Arc::new(AtomicUsize::new(0)),
    };
    let idle = Duration::from_secs(4);
    let a = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(Forward(store.clone()))
            .idle_timeout(idle)
            .cache_ttl(LONG_CACHE)
            .build()
            .unwrap(),
    )
    .await;
    let b = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(shared.clone())
            .idle_timeout(idle)
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    let token = login(&client, &a.base, &fake, "o-idle").await;
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    tokio::time::sleep_until(at(2_500).into()).await;
    assert_eq!(get_json(&client, &a.me(), Some(&token)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.touches.load(Ordering::SeqCst),
        1,
        "the first extension ran (and failed)"
    );
    tokio::time::sleep_until(at(4_200).into()).await;
    assert_eq!(get_json(&client, &a.me(), Some(&token)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        store.touches.load(Ordering::SeqCst) >= 2,
        "the failed extension was retried on the next request"
    );
    tokio::time::sleep_until(at(6_500).into()).await;
    let (status, body) = get_json(&client, &b.me(), Some(&token)).await;
    assert_eq!(status, 200, "an active user was logged out: {body}");
}

/// A memory store whose loads fail, in one of two ways, once told to.
#[derive(Clone)]
struct FailingLoads {
    inner: MemoryStore,
    /// 0: load normally; 1: a bad record; 2: an outage.
    mode: Arc<AtomicUsize>,
}

impl Forwarding for FailingLoads {
    fn inner(&self) -> &dyn SessionStore {
        &self.inner
    }
    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        match self.mode.load(Ordering::SeqCst) {
            1 => Box::pin(std::future::ready(Err(StoreError::bad_record(
                "this app's record has a field the build does not know",
            )))),
            2 => Box::pin(std::future::ready(Err(StoreError::new("db down")))),
            _ => self.inner.load(id),
        }
    }
}

/// A custom store says "this record is bad" with `StoreError::bad_record`:
/// the token is `invalid_token` (401, log in again), where any other store
/// error stays a 503 `store_unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_stores_bad_record_is_invalid_token() {
    let fake = fake_wechat().await;
    let store = FailingLoads {
        inner: MemoryStore::new(),
        mode: Arc::new(AtomicUsize::new(0)),
    };
    let login_side = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(Forward(store.clone()))
            .build()
            .unwrap(),
    )
    .await;
    // A second instance on the same store, so that every request loads.
    let reader = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(Forward(store.clone()))
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    let token = login(&client, &login_side.base, &fake, "o-bad").await;
    store.mode.store(1, Ordering::SeqCst);
    for _ in 0..2 {
        let (status, body) = get_json(&client, &reader.me(), Some(&token)).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["relogin"], true);
    }
    store.mode.store(2, Ordering::SeqCst);
    let (status, body) = get_json(&client, &reader.me(), Some(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "store_unavailable");
    store.mode.store(0, Ordering::SeqCst);
    assert_eq!(get_json(&client, &reader.me(), Some(&token)).await.0, 200);
}
