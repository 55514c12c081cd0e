//! One store test suite, run against every store: the memory store, the
//! Redis store on one server, and the Redis store on a three-master Redis
//! Cluster. Each case gets a fresh store (a fresh key prefix on Redis).
//! On Redis the suite also looks at the keys themselves with redis-cli:
//! expiry by TTL at the session's end, the user index's TTL, the prefix,
//! and the compact encoding.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::sync::Arc;
use std::time::Duration;

use common::{now_ms, Forward, Passthrough};

use redis_harness::{
    index_members, some_redis, unique_prefix, wait_numsub, RedisCli, RedisCluster,
};
use wxlogin::store::{Invalidation, MemoryStore, RedisStore, SessionRecord, SessionStore, StoreId};
use wxlogin::Secret;

fn new_id() -> StoreId {
    let a = redis_harness::random_u64().to_be_bytes();
    let b = redis_harness::random_u64().to_be_bytes();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a);
    out[8..].copy_from_slice(&b);
    StoreId(out)
}

/// A record for `openid` ending in `ttl_ms`, with an idle deadline in `idle_ms` if given.
fn record(openid: &str, ttl_ms: u64, idle_ms: Option<u64>) -> SessionRecord {
    let now = now_ms();
    SessionRecord {
        openid: openid.to_owned(),
        unionid: Some(format!("union-{openid}")),
        app_id: common::APP_ID.to_owned(),
        session_key: Secret::new("c2Vzc2lvbi1rZXktMTIzNA=="),
        data: br#"{"id":42,"name":"\u5f20\u4e09","vip":true}"#.to_vec(),
        created_at_ms: now,
        expires_at_ms: now + ttl_ms,
        idle_expires_at_ms: idle_ms.map(|i| now + i),
        user_agent: None,
        ip: None,
    }
}

/// What a case can see of Redis, when the store is a Redis store.
struct RedisSide<'a> {
    store: RedisStore,
    cli: &'a dyn RedisCli,
    /// `KEYS pattern` over every node.
    keys: &'a (dyn Fn(&str) -> Vec<String> + Sync),
}

impl RedisSide<'_> {
    fn pttl(&self, key: &str) -> i64 {
        self.cli.cli_int(&["PTTL", key])
    }
    fn exists(&self, key: &str) -> bool {
        self.cli.cli_int(&["EXISTS", key]) == 1
    }
}

/// A fresh store under test.
struct Subject<'a> {
    store: Box<dyn SessionStore>,
    redis: Option<RedisSide<'a>>,
}

async fn case_round_trip(s: &Subject<'_>) {
    let full = record("o-rt", 3_600_000, Some(600_000));
    let mut bare = record("o-rt2", 3_600_000, None);
    bare.unionid = None;
    bare.data = Vec::new();
    for rec in [full, bare] {
        let id = new_id();
        s.store.create(id, rec.clone()).await.unwrap();
        let loaded = s
            .store
            .load(id)
            .await
            .unwrap()
            .expect("the created session loads");
        assert_eq!(loaded, rec, "every field survives the round trip");
        assert_eq!(loaded.session_key.expose(), "c2Vzc2lvbi1rZXktMTIzNA==");
        assert_eq!(loaded.data, rec.data);
    }
}

async fn case_create_does_not_overwrite(s: &Subject<'_>) {
    let id = new_id();
    let first = record("o-dup", 3_600_000, None);
    s.store.create(id, first.clone()).await.unwrap();
    let mut second = record("o-dup-other", 3_600_000, None);
    second.data = b"{\"other\":1}".to_vec();
    assert!(
        s.store.create(id, second).await.is_err(),
        "creating an existing id must fail"
    );
    assert_eq!(
        s.store.load(id).await.unwrap(),
        Some(first),
        "the first record stays"
    );
}

async fn case_load_unknown(s: &Subject<'_>) {
    assert_eq!(s.store.load(new_id()).await.unwrap(), None);
}

async fn case_delete(s: &Subject<'_>) {
    let id = new_id();
    let other = new_id();
    s.store
        .create(id, record("o-del", 3_600_000, None))
        .await
        .unwrap();
    s.store
        .create(other, record("o-del", 3_600_000, None))
        .await
        .unwrap();
    assert!(s.store.delete(id).await.unwrap(), "first delete finds it");
    assert!(
        !s.store.delete(id).await.unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(s.store.load(id).await.unwrap(), None);
    assert!(
        s.store.load(other).await.unwrap().is_some(),
        "other sessions stay"
    );
    if let Some(r) = &s.redis {
        assert!(!r.exists(&r.store.session_key(id)));
    }
}

async fn case_touch(s: &Subject<'_>) {
    let id = new_id();
    let rec = record("o-touch", 3_600_000, Some(10_000));
    s.store.create(id, rec.clone()).await.unwrap();
    if let Some(r) = &s.redis {
        let pttl = r.pttl(&r.store.session_key(id));
        assert!(
            (1..=10_000).contains(&pttl),
            "the key expires at the idle deadline, PTTL {pttl}"
        );
    }
    let moved = now_ms() + 20_000;
    assert!(
        s.store.touch(id, moved).await.unwrap(),
        "touch finds the session"
    );
    let loaded = s.store.load(id).await.unwrap().unwrap();
    assert_eq!(
        loaded.idle_expires_at_ms,
        Some(moved),
        "load shows the new idle deadline"
    );
    assert_eq!(
        loaded.expires_at_ms, rec.expires_at_ms,
        "the absolute end does not move"
    );
    assert_eq!(
        loaded.data, rec.data,
        "touch leaves the rest of the record alone"
    );
    if let Some(r) = &s.redis {
        let pttl = r.pttl(&r.store.session_key(id));
        assert!(
            (10_001..=20_000).contains(&pttl),
            "the key's expiry moved with the idle deadline, PTTL {pttl}"
        );
    }
    let missing = new_id();
    assert!(
        !s.store.touch(missing, moved).await.unwrap(),
        "touch of a missing session"
    );
    assert_eq!(
        s.store.load(missing).await.unwrap(),
        None,
        "touch creates nothing"
    );
    if let Some(r) = &s.redis {
        assert!(!r.exists(&r.store.session_key(missing)));
    }
}

async fn case_delete_user(s: &Subject<'_>) {
    let (a1, a2, b1) = (new_id(), new_id(), new_id());
    s.store
        .create(a1, record("o-alice", 3_600_000, None))
        .await
        .unwrap();
    s.store
        .create(a2, record("o-alice", 7_200_000, Some(60_000)))
        .await
        .unwrap();
    s.store
        .create(b1, record("o-bob", 3_600_000, None))
        .await
        .unwrap();

    let mut deleted = s.store.delete_user("o-alice").await.unwrap();
    deleted.sort();
    let mut want = vec![a1, a2];
    want.sort();
    assert_eq!(deleted, want, "delete_user returns exactly the user's ids");
    assert_eq!(s.store.load(a1).await.unwrap(), None);
    assert_eq!(s.store.load(a2).await.unwrap(), None);
    assert!(
        s.store.load(b1).await.unwrap().is_some(),
        "another user's session stays"
    );
    assert!(
        s.store.delete_user("o-alice").await.unwrap().is_empty(),
        "nothing left"
    );
    assert!(s.store.delete_user("o-nobody").await.unwrap().is_empty());
    if let Some(r) = &s.redis {
        assert!(!r.exists(&r.store.user_key("o-alice")), "the index is gone");
        assert!(!r.exists(&r.store.session_key(a1)));
        assert!(!r.exists(&r.store.session_key(a2)));
        assert_eq!(
            index_members(r.cli, &r.store.user_key("o-bob")),
            vec![b1.to_string()]
        );
    }
}

/// A session logged out on its own (`delete`) is not counted again by a
/// later `delete_user`: it returns what it deleted.
async fn case_delete_user_after_delete(s: &Subject<'_>) {
    let (c1, c2) = (new_id(), new_id());
    s.store
        .create(c1, record("o-carol", 3_600_000, None))
        .await
        .unwrap();
    s.store
        .create(c2, record("o-carol", 3_600_000, None))
        .await
        .unwrap();
    assert!(s.store.delete(c1).await.unwrap());
    assert_eq!(s.store.delete_user("o-carol").await.unwrap(), vec![c2]);
}

async fn case_expiry(s: &Subject<'_>) {
    let by_end = new_id();
    let by_idle = new_id();
    let live = new_id();
    s.store
        .create(by_end, record("o-exp", 300, None))
        .await
        .unwrap();
    s.store
        .create(by_idle, record("o-exp-idle", 3_600_000, Some(300)))
        .await
        .unwrap();
    s.store
        .create(live, record("o-exp-live", 3_600_000, None))
        .await
        .unwrap();
    if let Some(r) = &s.redis {
        for id in [by_end, by_idle] {
            let pttl = r.pttl(&r.store.session_key(id));
            assert!(
                (1..=300).contains(&pttl),
                "expiry set on create, PTTL {pttl}"
            );
        }
        let pttl = r.pttl(&r.store.session_key(live));
        assert!(pttl > 3_500_000, "PTTL {pttl} of a one-hour session");
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        s.store.load(by_end).await.unwrap(),
        None,
        "ended session is gone"
    );
    assert_eq!(
        s.store.load(by_idle).await.unwrap(),
        None,
        "idle session is gone"
    );
    assert!(s.store.load(live).await.unwrap().is_some());
    if let Some(r) = &s.redis {
        assert!(
            !r.exists(&r.store.session_key(by_end)),
            "Redis expired the key"
        );
        assert!(
            !r.exists(&r.store.session_key(by_idle)),
            "Redis expired the key"
        );
    }
}

async fn newest(s: &Subject<'_>, openid: &str) -> Option<String> {
    let key = s.store.latest_session_key(openid).await.unwrap();
    key.map(|k| k.expose().to_owned())
}

/// The newest `session_key` per user: the last one put wins, it ends at its
/// own time, it shares the user's entry with their sessions without being
/// counted as one, and revoking the user forgets it. On Redis it is a field
/// of the user's hash, which lives as long as the longest of its fields.
async fn case_newest_session_key(s: &Subject<'_>) {
    let now = now_ms();
    assert_eq!(newest(s, "o-erin").await, None);
    let e1 = new_id();
    s.store
        .create(e1, record("o-erin", 60_000, None))
        .await
        .unwrap();
    s.store
        .put_latest_session_key("o-erin", Secret::new("b2xkZXIta2V5"), now + 60_000)
        .await
        .unwrap();
    s.store
        .put_latest_session_key("o-erin", Secret::new("bmV3ZXN0LWtleQ=="), now + 120_000)
        .await
        .unwrap();
    assert_eq!(
        newest(s, "o-erin").await.as_deref(),
        Some("bmV3ZXN0LWtleQ==")
    );
    if let Some(r) = &s.redis {
        let user_key = r.store.user_key("o-erin");
        let pttl = r.pttl(&user_key);
        assert!(
            (110_000..=120_000).contains(&pttl),
            "the user's hash lives as long as its newest key, PTTL {pttl}"
        );
        assert_eq!(index_members(r.cli, &user_key), vec![e1.to_string()]);
    }
    // A key whose time is up is not offered.
    s.store
        .put_latest_session_key("o-finn", Secret::new("c2hvcnQ="), now_ms() + 30)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(newest(s, "o-finn").await, None);
    // Revoking the user returns their sessions only, and forgets the key.
    assert_eq!(s.store.delete_user("o-erin").await.unwrap(), vec![e1]);
    assert_eq!(newest(s, "o-erin").await, None);
}

/// Redis only: the user index lives until its latest session ends, every
/// key carries the prefix, and records use the compact encoding.
async fn case_redis_layout(s: &Subject<'_>) {
    let Some(r) = &s.redis else { return };
    let (d1, d2) = (new_id(), new_id());
    let rec1 = record("o-dave", 60_000, None);
    s.store.create(d1, rec1.clone()).await.unwrap();
    let user_key = r.store.user_key("o-dave");
    let pttl = r.pttl(&user_key);
    assert!(
        (50_000..=60_000).contains(&pttl),
        "the index expires with its session, PTTL {pttl}"
    );
    s.store
        .create(d2, record("o-dave", 120_000, None))
        .await
        .unwrap();
    let pttl = r.pttl(&user_key);
    assert!(
        (110_000..=120_000).contains(&pttl),
        "the index expires with its latest session, PTTL {pttl}"
    );
    let mut members = index_members(r.cli, &user_key);
    members.sort();
    let mut want = vec![d1.to_string(), d2.to_string()];
    want.sort();
    assert_eq!(members, want);

    let prefix = r.store.channel().trim_end_matches(":revoked").to_owned();
    assert!(r.store.session_key(d1).starts_with(&format!("{prefix}:")));
    let keys = (r.keys)(&format!("{prefix}:*"));
    let mut want = vec![
        r.store.session_key(d1),
        r.store.session_key(d2),
        user_key.clone(),
    ];
    want.sort();
    assert_eq!(
        keys, want,
        "exactly the session keys and the index, all prefixed"
    );
    let default_prefixed = (r.keys)(&format!("wxlogin:*{d1}*"));
    assert!(
        default_prefixed.is_empty(),
        "nothing under the default prefix"
    );

    let strlen = r.cli.cli_int(&["STRLEN", &r.store.session_key(d1)]);
    assert_eq!(
        strlen as usize,
        rec1.encode().len(),
        "the value is the compact encoding"
    );
    assert!(strlen < 200, "a small session takes {strlen} bytes");
}

/// `create_capped`: each login beyond the cap ends the oldest session and
/// says so; the newest stay. On Redis the index holds exactly them, and
/// nothing is left in the user's `ending` set.
async fn case_create_capped(s: &Subject<'_>) {
    let ids: Vec<StoreId> = (0..5).map(|_| new_id()).collect();
    for (n, id) in ids.iter().enumerate() {
        // Later logins end later: the order the cap goes by.
        let mut rec = record("o-cap", 3_600_000 + n as u64, None);
        rec.session_key = Secret::new(format!("a2V5LXtuf{n}"));
        let ended = s.store.create_capped(*id, rec, 3).await.unwrap();
        let want: Vec<StoreId> = if n >= 3 { vec![ids[n - 3]] } else { vec![] };
        assert_eq!(ended, want, "login {n} ends the oldest beyond 3");
    }
    for (n, id) in ids.iter().enumerate() {
        let loaded = s.store.load(*id).await.unwrap();
        assert_eq!(loaded.is_some(), n >= 2, "session {n}");
    }
    assert_eq!(newest(s, "o-cap").await.as_deref(), Some("a2V5LXtuf4"));
    if let Some(r) = &s.redis {
        let mut members = index_members(r.cli, &r.store.user_key("o-cap"));
        members.sort();
        let mut want: Vec<String> = ids[2..].iter().map(|i| i.to_string()).collect();
        want.sort();
        assert_eq!(members, want);
        assert!(
            !r.exists(&r.store.ending_key("o-cap")),
            "nothing left to end"
        );
        for id in &ids[..2] {
            assert!(!r.exists(&r.store.session_key(*id)));
        }
    }
    let mut gone = s.store.delete_user("o-cap").await.unwrap();
    gone.sort();
    let mut want = ids[2..].to_vec();
    want.sort();
    assert_eq!(gone, want);
}

/// A cap of 1 (`single_session`): every login ends the one before.
async fn case_create_capped_single(s: &Subject<'_>) {
    let (a, b) = (new_id(), new_id());
    let none = s
        .store
        .create_capped(a, record("o-one", 3_600_000, None), 1)
        .await
        .unwrap();
    assert!(none.is_empty());
    let ended = s
        .store
        .create_capped(b, record("o-one", 3_600_001, None), 1)
        .await
        .unwrap();
    assert_eq!(ended, vec![a]);
    assert_eq!(s.store.load(a).await.unwrap(), None);
    assert!(s.store.load(b).await.unwrap().is_some());
}

/// A session logged out (or ended) does not count toward the cap, so the
/// next login ends nothing that is live.
async fn case_cap_counts_live_sessions(s: &Subject<'_>) {
    let ids: Vec<StoreId> = (0..3).map(|_| new_id()).collect();
    for (n, id) in ids.iter().enumerate() {
        let ended = s
            .store
            .create_capped(*id, record("o-live", 3_600_000 + n as u64, None), 3)
            .await
            .unwrap();
        assert!(ended.is_empty());
    }
    assert!(s.store.delete(ids[0]).await.unwrap());
    let short = new_id();
    s.store
        .create_capped(short, record("o-live", 100, None), 3)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fourth = new_id();
    let ended = s
        .store
        .create_capped(fourth, record("o-live", 3_600_010, None), 3)
        .await
        .unwrap();
    assert!(
        ended.is_empty(),
        "a logged-out and an ended session are not counted: {ended:?}"
    );
    for id in [ids[1], ids[2], fourth] {
        assert!(s.store.load(id).await.unwrap().is_some());
    }
}

/// Redis only: a record that does not decode is a bad-record error, not an
/// outage, whether damaged or of an unknown version.
async fn case_bad_record(s: &Subject<'_>) {
    let Some(r) = &s.redis else { return };
    let (damaged, versioned) = (new_id(), new_id());
    for id in [damaged, versioned] {
        s.store
            .create_capped(id, record("o-bad", 3_600_000, None), 20)
            .await
            .unwrap();
    }
    r.cli
        .cli(&["SET", &r.store.session_key(damaged), "garbage"]);
    r.cli
        .cli(&["SETRANGE", &r.store.session_key(versioned), "0", "\t"]);
    for id in [damaged, versioned] {
        let e = s.store.load(id).await.unwrap_err();
        assert!(e.is_bad_record(), "{e}");
    }
}

/// Redis only: a user index in the previous release's layout (a hash:
/// store id -> end, and `k` -> `<until>:<key>`) keeps working: revoking
/// finds its sessions, the newest key is read, and a login adds to it.
async fn case_previous_index_layout(s: &Subject<'_>) {
    let Some(r) = &s.redis else { return };
    let (old, new) = (new_id(), new_id());
    let rec = record("o-old", 3_600_000, None);
    s.store.create(old, rec.clone()).await.unwrap();
    let index = r.store.user_key("o-old");
    let until = rec.expires_at_ms.to_string();
    // Replace the index `create` wrote with the previous release's.
    r.cli.cli(&["DEL", &index]);
    r.cli.cli(&[
        "HSET",
        &index,
        &old.to_string(),
        &until,
        "k",
        &format!("{until}:b2xkLWtleQ=="),
    ]);
    r.cli.cli(&["PEXPIREAT", &index, &until]);
    // Listing the user's sessions reads the old layout too (and converts it).
    assert_eq!(s.store.user_sessions("o-old").await.unwrap(), vec![old]);
    assert_eq!(newest(s, "o-old").await.as_deref(), Some("b2xkLWtleQ=="));
    let pttl = r.pttl(&index);
    assert!(
        pttl > 3_500_000,
        "the converted index keeps its expiry, PTTL {pttl}"
    );
    let ended = s
        .store
        .create_capped(new, record("o-old", 3_600_001, None), 20)
        .await
        .unwrap();
    assert!(ended.is_empty());
    let mut members = index_members(r.cli, &index);
    members.sort();
    let mut want = vec![old.to_string(), new.to_string()];
    want.sort();
    assert_eq!(members, want);
    let mut gone = s.store.delete_user("o-old").await.unwrap();
    gone.sort();
    let mut want = vec![old, new];
    want.sort();
    assert_eq!(gone, want);
}

/// The data of a live session changes; nothing else does (lifetime, idle
/// deadline, the key's TTL on Redis). An unknown or ended session is not
/// changed. A concurrent idle extension is neither lost nor loses the data.
async fn case_replace_data(s: &Subject<'_>) {
    let id = new_id();
    let rec = record("o-data", 3_600_000, Some(600_000));
    s.store.create(id, rec.clone()).await.unwrap();
    let pttl_before = s.redis.as_ref().map(|r| r.pttl(&r.store.session_key(id)));
    assert!(s
        .store
        .replace_data(id, br#"{"nickname":"N"}"#.to_vec())
        .await
        .unwrap());
    let loaded = s.store.load(id).await.unwrap().unwrap();
    assert_eq!(loaded.data, br#"{"nickname":"N"}"#);
    let mut want = rec.clone();
    want.data = loaded.data.clone();
    assert_eq!(loaded, want, "only the data changed");
    if let (Some(r), Some(before)) = (&s.redis, pttl_before) {
        let after = r.pttl(&r.store.session_key(id));
        assert!(
            after > 0 && after <= before,
            "the TTL is kept: {before} then {after}"
        );
    }
    // Unknown, deleted and ended sessions are not changed (nor created).
    let unknown = new_id();
    assert!(!s.store.replace_data(unknown, b"1".to_vec()).await.unwrap());
    assert_eq!(s.store.load(unknown).await.unwrap(), None);
    let ended = new_id();
    s.store
        .create(ended, record("o-data", 3_600_000, Some(50)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(!s.store.replace_data(ended, b"1".to_vec()).await.unwrap());

    // Extensions and changes at once: the last of each wins, neither is lost.
    let idle_target = now_ms() + 900_000;
    let (touched, replaced) = tokio::join!(
        async {
            for n in 0..20 {
                s.store.touch(id, idle_target + n).await.unwrap();
            }
        },
        async {
            for n in 0..20 {
                let data = format!(r#"{{"n":{n}}}"#).into_bytes();
                assert!(s.store.replace_data(id, data).await.unwrap());
            }
        }
    );
    let ((), ()) = (touched, replaced);
    let loaded = s.store.load(id).await.unwrap().unwrap();
    assert_eq!(loaded.data, br#"{"n":19}"#);
    assert_eq!(loaded.idle_expires_at_ms, Some(idle_target + 19));
}

/// A user's live sessions, oldest first; ended and other users' are not listed.
async fn case_user_sessions(s: &Subject<'_>) {
    let (a, b, short, other) = (new_id(), new_id(), new_id(), new_id());
    s.store
        .create_capped(a, record("o-list", 3_600_000, None), 20)
        .await
        .unwrap();
    s.store
        .create_capped(b, record("o-list", 3_600_001, None), 20)
        .await
        .unwrap();
    s.store
        .create_capped(short, record("o-list", 50, None), 20)
        .await
        .unwrap();
    s.store
        .create_capped(other, record("o-list-other", 3_600_000, None), 20)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(s.store.user_sessions("o-list").await.unwrap(), vec![a, b]);
    assert!(s.store.delete(a).await.unwrap());
    assert_eq!(s.store.user_sessions("o-list").await.unwrap(), vec![b]);
    assert!(s.store.user_sessions("o-nobody").await.unwrap().is_empty());
}

macro_rules! run_cases {
    ($make:expr, $($case:ident),+ $(,)?) => {
        $(
            eprintln!("store suite: {}", stringify!($case));
            $case(&$make()).await;
        )+
    };
}

/// The suite: every case on a fresh store from `make`.
async fn run_suite<'a>(make: impl Fn() -> Subject<'a>) {
    run_cases!(
        make,
        case_round_trip,
        case_create_does_not_overwrite,
        case_load_unknown,
        case_delete,
        case_touch,
        case_delete_user,
        case_delete_user_after_delete,
        case_expiry,
        case_newest_session_key,
        case_redis_layout,
        case_create_capped,
        case_create_capped_single,
        case_cap_counts_live_sessions,
        case_bad_record,
        case_previous_index_layout,
        case_replace_data,
        case_user_sessions,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store() {
    run_suite(|| Subject {
        // A short sweep, so that ended sessions are gone as in Redis.
        store: Box::new(MemoryStore::with_sweep_interval(Duration::from_millis(50))),
        redis: None,
    })
    .await;
}

/// The memory store behind `common::Forward`, which test stores build on:
/// a wrapper that overrides nothing passes the whole suite, so it forwards
/// every method (the provided ones included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_through_forward() {
    run_suite(|| Subject {
        store: Box::new(Forward(Passthrough(MemoryStore::with_sweep_interval(
            Duration::from_millis(50),
        )))),
        redis: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_single() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let base = RedisStore::connect(&redis.url())
        .await
        .expect("connect to Redis");
    let keys = |pattern: &str| -> Vec<String> {
        let mut k: Vec<String> = redis
            .cli(&["KEYS", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        k.sort();
        k
    };
    run_suite(|| {
        let store = base.clone().with_prefix(&unique_prefix("suite"));
        Subject {
            store: Box::new(store.clone()),
            redis: Some(RedisSide {
                store,
                cli: &redis,
                keys: &keys,
            }),
        }
    })
    .await;
}

/// The Redis store behind `common::Forward` (see [`memory_store_through_forward`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_through_forward() {
    let redis = tokio::task::spawn_blocking(some_redis).await.unwrap();
    let base = RedisStore::connect(&redis.url())
        .await
        .expect("connect to Redis");
    let keys = |pattern: &str| -> Vec<String> {
        let mut k: Vec<String> = redis
            .cli(&["KEYS", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        k.sort();
        k
    };
    run_suite(|| {
        let store = base.clone().with_prefix(&unique_prefix("suite-fwd"));
        Subject {
            store: Box::new(Forward(Passthrough(store.clone()))),
            redis: Some(RedisSide {
                store,
                cli: &redis,
                keys: &keys,
            }),
        }
    })
    .await;

    // What the cases do not reach: sharing, the shared access-token cache
    // and the invalidation subscription.
    let store = base.clone().with_prefix(&unique_prefix("suite-fwd"));
    let forwarded = Forward(Passthrough(store.clone()));
    assert!(forwarded.is_shared());
    assert!(forwarded.access_token_cache().is_some());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    forwarded.watch_invalidations(Arc::new(move |msg| tx.send(msg).is_ok()));
    wait_numsub(&redis, &store.channel(), 1, Duration::from_secs(5)).await;
    let id = new_id();
    store
        .create(id, record("o-fwd", 60_000, None))
        .await
        .unwrap();
    assert!(store.delete(id).await.unwrap());
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = rx.recv().await {
            if msg == Invalidation::Sessions(vec![id]) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        heard,
        Ok(true),
        "the forwarded subscription heard the delete"
    );
    // A change of data is announced as a change, not an end.
    let id = new_id();
    store
        .create(id, record("o-fwd", 60_000, None))
        .await
        .unwrap();
    assert!(forwarded.replace_data(id, b"7".to_vec()).await.unwrap());
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = rx.recv().await {
            match msg {
                Invalidation::Changed(ids) if ids == vec![id] => return true,
                Invalidation::Sessions(ids) if ids.contains(&id) => return false,
                _ => {}
            }
        }
        false
    })
    .await;
    assert_eq!(heard, Ok(true), "the change was announced as a change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let base = RedisStore::connect_cluster(&urls)
        .await
        .expect("connect to the cluster");
    let keys = |pattern: &str| cluster.keys(pattern);
    run_suite(|| {
        let store = base.clone().with_prefix(&unique_prefix("suite"));
        Subject {
            store: Box::new(store.clone()),
            redis: Some(RedisSide {
                store,
                cli: &cluster,
                keys: &keys,
            }),
        }
    })
    .await;
}
