//! Bytes per live session, for `docs/performance.md`.
//!
//! ```text
//! cargo run --release --example session_memory                 # memory store + cache, 200k sessions
//! cargo run --release --example session_memory -- 500000
//! cargo run --release --example session_memory -- 200000 nocache   # the store alone
//! cargo run --release --example session_memory -- 100000 redis://127.0.0.1:6390
//! SESSION_MEMORY_DEVICE=1 cargo run --release --example session_memory   # with a device
//! ```
//!
//! With `SESSION_MEMORY_DEVICE=1` each session also records a device for the
//! device list: a 120-byte `User-Agent` like WeChat's on a phone and an IPv4
//! address.
//!
//! Each session belongs to its own user (the worst case: every session also
//! costs a per-user index entry and a newest-`session_key` entry), with a
//! 28-character openid like WeChat's, a 24-character `session_key`, no
//! unionid and no app data (`()`), created the way a login creates it
//! (`WxLogin::bench_create_session`, feature `fuzzing`).
//!
//! Memory store: the resident set size (`/proc/self/statm`) before and after,
//! divided by the count; it covers the store's maps, the cache (moka) and the
//! allocator's overhead. Redis: `used_memory` from `INFO memory` before and
//! after, and `MEMORY USAGE` of one session key and one user index.

use std::time::{Duration, Instant};

use wxlogin::store::redis::client as redis;
use wxlogin::store::RedisStore;
use wxlogin::{Identity, Secret, WxLogin};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A WeChat-on-iPhone `User-Agent`, 120 bytes.
const DEVICE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) MicroMessenger/8.0.50(0x";

/// Creates session `i` as a login does, with a device if asked for.
async fn create(wx: &WxLogin, i: usize) -> String {
    let mut who = Identity::new(openid(i));
    if std::env::var("SESSION_MEMORY_DEVICE").is_ok_and(|v| !v.is_empty() && v != "0") {
        who = who
            .with_user_agent(DEVICE_UA)
            .with_ip(std::net::IpAddr::from([203, 0, 113, (i % 250) as u8]));
    }
    wx.bench_create_session_for(who, Secret::new("c2Vzc2lvbmtleTAxMjM0NTY3"), ())
        .await
        .unwrap()
}

fn openid(i: usize) -> String {
    // 28 characters, like WeChat's openids.
    format!("oMem{i:024}")
}

async fn memory(n: usize, cache: bool) {
    let wx = WxLogin::builder()
        .app_id("wxmemory00000000")
        .app_secret("memory-secret")
        .api_base("http://127.0.0.1:9")
        .cache_capacity(if cache { n as u64 * 2 } else { 0 })
        .cache_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    // Warm the allocator and the maps' first growth steps.
    for i in 0..1000 {
        wx.bench_create_session(&format!("oWarm{i:023}"), None, Secret::new("x"), ())
            .await
            .unwrap();
    }
    let before = rss_bytes();
    let started = Instant::now();
    let mut tokens = Vec::with_capacity(16);
    for i in 0..n {
        let t = create(&wx, i).await;
        if tokens.len() < 16 {
            tokens.push(t);
        }
    }
    // Let moka apply its pending writes (its memory is then in place).
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes();
    let store = wx.store().clone();
    println!(
        "memory store{}: {n} sessions in {:.1} s; RSS {:.1} MiB -> {:.1} MiB; {:.0} bytes per session",
        if cache { " + cache" } else { " alone (cache capacity 0)" },
        started.elapsed().as_secs_f64(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / n as f64
    );
    drop(store);
    std::hint::black_box(tokens);
}

fn info_used_memory(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

async fn redis_store(n: usize, url: &str) {
    // As long as the default prefix `wxlogin`: key names are part of the
    // cost, and a longer prefix can move a key into a larger allocation.
    let prefix = format!("wxm{:04}", std::process::id() % 10_000);
    let store = RedisStore::connect(url).await.unwrap().with_prefix(&prefix);
    let keys = store.clone();
    let wx = WxLogin::builder()
        .app_id("wxmemory00000000")
        .app_secret("memory-secret")
        .api_base("http://127.0.0.1:9")
        .token_key("memory-token-key-0123456789abcdef")
        .cache_capacity(1000)
        .store(store)
        .build()
        .unwrap();
    let before = info_used_memory(url);
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let futs = chunk.iter().map(|&i| {
            let wx = wx.clone();
            async move { create(&wx, i).await }
        });
        futures_util::future::join_all(futs).await;
    }
    let after = info_used_memory(url);
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    let user_key = keys.user_key(&openid(0));
    let pattern = format!("{prefix}:s:*");
    let session_key: String = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(&pattern)
        .arg("COUNT")
        .arg(100_000)
        .query::<(String, Vec<String>)>(&mut con)
        .unwrap()
        .1
        .into_iter()
        .next()
        .unwrap();
    let mut usage = |k: &str| -> i64 {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(k)
            .query::<Option<i64>>(&mut con)
            .unwrap()
            .unwrap_or(0)
    };
    let (s, u) = (usage(&session_key), usage(&user_key));
    let strlen: i64 = redis::cmd("STRLEN")
        .arg(&session_key)
        .query(&mut redis::Client::open(url).unwrap().get_connection().unwrap())
        .unwrap();
    println!(
        "redis: {n} sessions in {:.1} s; used_memory {:.1} MiB -> {:.1} MiB; {:.0} bytes per session (all keys)",
        started.elapsed().as_secs_f64(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after.saturating_sub(before)) as f64 / n as f64
    );
    println!(
        "redis MEMORY USAGE: session key {s} (value {strlen} bytes), user index (sorted set: the session and the newest session_key) {u}"
    );
    println!("(keys left under prefix {prefix}: delete with redis-cli --scan --pattern '{prefix}:*' | xargs redis-cli del)");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    match args.next() {
        Some(arg) if arg == "nocache" => memory(n, false).await,
        Some(url) => redis_store(n, &url).await,
        None => memory(n, true).await,
    }
}
