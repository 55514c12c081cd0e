//! The default memory store: expired sessions are swept in the background
//! and by `purge_expired`, unknown ids load as `None`, and `delete_user`
//! removes only that user's sessions.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{app, builder, fake_wechat, get_json, login, now_ms, serve, wait_for, APP_ID};
use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreId};
use wxlogin::Secret;

fn id(n: u64) -> StoreId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    bytes[8] = 0xa5;
    StoreId(bytes)
}

fn record(openid: &str, expires_at_ms: u64) -> SessionRecord {
    SessionRecord {
        openid: openid.to_owned(),
        unionid: None,
        app_id: APP_ID.to_owned(),
        session_key: Secret::new("c2Vzc2lvbi1rZXktMTIzNA=="),
        data: b"null".to_vec(),
        created_at_ms: now_ms(),
        expires_at_ms,
        idle_expires_at_ms: None,
        user_agent: None,
        ip: None,
    }
}

/// Polls `len()` (which does not sweep) until it is 0 or the deadline passes.
async fn wait_empty(store: &MemoryStore, within: Duration) -> Duration {
    wait_for(within, || async {
        match store.len() {
            0 => Ok(()),
            n => Err(format!("{n} sessions still held")),
        }
    })
    .await
    .1
}

#[tokio::test]
async fn background_sweep_frees_expired_sessions() {
    let store = MemoryStore::with_sweep_interval(Duration::from_millis(100));
    let lifetime = 300;
    let ends = now_ms() + lifetime;
    for n in 0..2000u64 {
        let openid = format!("o-user-{}", n % 100);
        store.create(id(n), record(&openid, ends)).await.unwrap();
    }
    assert_eq!(store.len(), 2000);
    assert!(store.load(id(1999)).await.unwrap().is_some());

    // Nothing calls the store from here on: only the background sweep can free them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_empty(&store, Duration::from_secs(5)).await;
    assert_eq!(store.len(), 0);
    assert!(store.load(id(0)).await.unwrap().is_none());
    // The per-user index went too: a user's delete finds nothing.
    assert!(store.delete_user("o-user-1").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_sweep_on_a_multi_thread_runtime() {
    let store = MemoryStore::with_sweep_interval(Duration::from_millis(100));
    let ends = now_ms() + 200;
    for n in 0..500u64 {
        store.create(id(n), record("o-alice", ends)).await.unwrap();
    }
    // One long-lived session survives the sweeps.
    store
        .create(id(10_000), record("o-bob", now_ms() + 60_000))
        .await
        .unwrap();
    assert_eq!(store.len(), 501);
    wait_for(Duration::from_secs(5), || async {
        match store.len() {
            n if n > 1 => Err(format!("{n} left")),
            _ => Ok(()),
        }
    })
    .await;
    assert_eq!(store.len(), 1);
    assert!(store.load(id(10_000)).await.unwrap().is_some());
}

#[tokio::test]
async fn logins_with_short_sessions_are_swept() {
    let fake = fake_wechat().await;
    let store = MemoryStore::with_sweep_interval(Duration::from_millis(100));
    let wx = builder(&fake)
        .store(store.clone())
        .session_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for n in 0..30 {
        tokens.push(login(&client, &base, &fake, &format!("o-{}", n % 5)).await);
    }
    assert!(!store.is_empty() && store.len() <= 30);
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_empty(&store, Duration::from_secs(5)).await;
    // Swept sessions are refused (unknown now, so invalid_token).
    let (status, body) = get_json(&client, &format!("{base}/api/me"), Some(&tokens[29])).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token", "{body}");
}

#[tokio::test]
async fn purge_expired_removes_only_ended_sessions() {
    // A long sweep interval: only the explicit purge runs.
    let store = MemoryStore::with_sweep_interval(Duration::from_secs(3600));
    let now = now_ms();
    store.create(id(1), record("o-a", now - 1)).await.unwrap();
    store
        .create(id(2), record("o-a", now - 60_000))
        .await
        .unwrap();
    store
        .create(id(3), record("o-b", now + 60_000))
        .await
        .unwrap();
    store
        .create(id(4), record("o-c", now + 60_000))
        .await
        .unwrap();
    // Alive by lifetime, but past its idle deadline.
    let mut idle = record("o-d", now + 60_000);
    idle.idle_expires_at_ms = Some(now - 1);
    store.create(id(5), idle).await.unwrap();
    // Idle deadline still ahead.
    let mut busy = record("o-d", now + 60_000);
    busy.idle_expires_at_ms = Some(now + 30_000);
    store.create(id(6), busy).await.unwrap();
    assert_eq!(store.len(), 6);

    // Expired records are still returned until purged (the caller checks).
    let expired = store.load(id(1)).await.unwrap().expect("still held");
    assert!(expired.is_expired_at(now_ms()));

    assert_eq!(store.purge_expired(), 3);
    assert_eq!(store.len(), 3);
    for gone in [1, 2, 5] {
        assert!(store.load(id(gone)).await.unwrap().is_none(), "{gone}");
    }
    for kept in [3, 4, 6] {
        assert!(store.load(id(kept)).await.unwrap().is_some(), "{kept}");
    }
    assert_eq!(store.purge_expired(), 0);
    // The index of a fully purged user is gone; a partly purged one keeps the rest.
    assert!(store.delete_user("o-a").await.unwrap().is_empty());
    assert_eq!(store.delete_user("o-d").await.unwrap(), vec![id(6)]);
}

#[tokio::test]
async fn load_of_an_unknown_id_is_none() {
    let store = MemoryStore::new();
    assert!(store.load(id(42)).await.unwrap().is_none());
    store
        .create(id(1), record("o-a", now_ms() + 60_000))
        .await
        .unwrap();
    assert!(store.load(id(42)).await.unwrap().is_none());
    assert!(store.load(StoreId([0xff; 16])).await.unwrap().is_none());
    let loaded = store.load(id(1)).await.unwrap().unwrap();
    assert_eq!(loaded.openid, "o-a");
    assert_eq!(loaded.session_key.expose(), "c2Vzc2lvbi1rZXktMTIzNA==");
    // Unknown ids: delete and touch say so.
    assert!(!store.delete(id(42)).await.unwrap());
    assert!(!store.touch(id(42), now_ms() + 1000).await.unwrap());
    // A duplicate create is refused and does not overwrite.
    assert!(store
        .create(id(1), record("o-intruder", now_ms() + 60_000))
        .await
        .is_err());
    assert_eq!(store.load(id(1)).await.unwrap().unwrap().openid, "o-a");
}

#[tokio::test]
async fn delete_user_removes_only_that_users_sessions() {
    let store = MemoryStore::new();
    let ends = now_ms() + 60_000;
    let mut alice = HashSet::new();
    for n in 0..5u64 {
        store.create(id(n), record("o-alice", ends)).await.unwrap();
        alice.insert(id(n));
    }
    for n in 10..13u64 {
        store.create(id(n), record("o-bob", ends)).await.unwrap();
    }
    store
        .create(id(20), record("o-alice2", ends))
        .await
        .unwrap();
    assert_eq!(store.len(), 9);

    let deleted: HashSet<StoreId> = store
        .delete_user("o-alice")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(deleted, alice);
    assert_eq!(store.len(), 4);
    for n in 0..5u64 {
        assert!(store.load(id(n)).await.unwrap().is_none());
    }
    for n in [10u64, 11, 12, 20] {
        assert!(store.load(id(n)).await.unwrap().is_some(), "{n}");
    }
    // Again: nothing left for her; an unknown user: nothing.
    assert!(store.delete_user("o-alice").await.unwrap().is_empty());
    assert!(store.delete_user("o-nobody").await.unwrap().is_empty());
    assert_eq!(store.len(), 4);

    // A single delete keeps the user's index right.
    assert!(store.delete(id(10)).await.unwrap());
    let rest: HashSet<StoreId> = store
        .delete_user("o-bob")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(rest, HashSet::from([id(11), id(12)]));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn clones_share_sessions() {
    let store = MemoryStore::new();
    let clone = store.clone();
    store
        .create(id(1), record("o-a", now_ms() + 60_000))
        .await
        .unwrap();
    assert_eq!(clone.len(), 1);
    assert!(clone.load(id(1)).await.unwrap().is_some());
    assert!(clone.delete(id(1)).await.unwrap());
    assert!(store.is_empty());
}

#[tokio::test]
async fn touch_moves_the_idle_deadline_within_the_lifetime() {
    let store = MemoryStore::new();
    let now = now_ms();
    let mut rec = record("o-a", now + 10_000);
    rec.idle_expires_at_ms = Some(now + 1_000);
    store.create(id(1), rec).await.unwrap();
    assert!(store.touch(id(1), now + 5_000).await.unwrap());
    let loaded = store.load(id(1)).await.unwrap().unwrap();
    assert_eq!(loaded.idle_expires_at_ms, Some(now + 5_000));
    // Never past the absolute end.
    assert!(store.touch(id(1), now + 50_000).await.unwrap());
    let loaded = store.load(id(1)).await.unwrap().unwrap();
    assert_eq!(loaded.idle_expires_at_ms, Some(now + 10_000));
    assert_eq!(loaded.ends_at_ms(), now + 10_000);

    // An ended session cannot be revived by a touch.
    let mut ended = record("o-b", now + 10_000);
    ended.idle_expires_at_ms = Some(now - 1);
    store.create(id(2), ended).await.unwrap();
    assert!(!store.touch(id(2), now + 5_000).await.unwrap());
}

#[tokio::test]
async fn purge_keeps_each_users_index_and_newest_key_right() {
    let store = MemoryStore::new();
    let now = now_ms();
    // One user with many sessions, most already ended: one purge pass
    // removes them and leaves the live ones revocable.
    for n in 0..2_000u64 {
        let ends = if n % 100 == 0 { now + 60_000 } else { now + 20 };
        store.create(id(n), record("o-many", ends)).await.unwrap();
    }
    store
        .put_latest_session_key("o-many", Secret::new("bmV3ZXN0LWtleQ=="), now + 60_000)
        .await
        .unwrap();
    // Another user whose newest key outlives their only session.
    store
        .create(id(5_000), record("o-keyed", now + 20))
        .await
        .unwrap();
    store
        .put_latest_session_key("o-keyed", Secret::new("a2VwdC1rZXk="), now + 60_000)
        .await
        .unwrap();
    // A user whose key ends with their session.
    store
        .create(id(6_000), record("o-gone", now + 20))
        .await
        .unwrap();
    store
        .put_latest_session_key("o-gone", Secret::new("Z29uZS1rZXk="), now + 20)
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(store.purge_expired(), 1_980 + 2);
    assert_eq!(store.len(), 20);

    let key = store.latest_session_key("o-many").await.unwrap();
    assert_eq!(
        key.map(|k| k.expose().to_owned()).as_deref(),
        Some("bmV3ZXN0LWtleQ==")
    );
    let key = store.latest_session_key("o-keyed").await.unwrap();
    assert_eq!(
        key.map(|k| k.expose().to_owned()).as_deref(),
        Some("a2VwdC1rZXk=")
    );
    assert!(store.latest_session_key("o-gone").await.unwrap().is_none());

    let live: HashSet<StoreId> = (0..2_000u64).step_by(100).map(id).collect();
    let revoked: HashSet<StoreId> = store
        .delete_user("o-many")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(revoked, live, "exactly the live sessions are still indexed");
    assert!(store.is_empty());
    assert!(
        store.latest_session_key("o-many").await.unwrap().is_none(),
        "revoking a user forgets their newest key"
    );
}
