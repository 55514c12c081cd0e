//! Per-request cost of the layer, against the same router without it.
//!
//! `cargo bench --bench layer` runs every line below in one process and ends
//! with a summary table (median ns per request and the ratio to `bare` from
//! the same run; machines here are shared and noisy, so compare within a run).
//!
//! | group | line | what it measures |
//! |---|---|---|
//! | `st` | `bare` | the router without the layer |
//! | `st` | `hit_1k` | layer, cache hit, 1k live sessions (real logins), tokens in rotation |
//! | `st` | `hit_1m` | layer, cache hit, 1M live sessions, 100k distinct tokens in rotation |
//! | `st` | `unknown_token` | valid MAC, no such session: cache miss, store says unknown, 401 |
//! | `st` | `forged_token` | bad MAC: 401 without any lookup |
//! | `st` | `miss_memory` | every request misses the cache (capacity 0), memory store serves it |
//! | `st` | `miss_redis` | same, Redis store (only with `WXLOGIN_BENCH_REDIS_URL`) |
//! | `mt64` | `bare`, `hit_1k` | 64 tasks on a 2-worker runtime, per-request time |
//! | `login100` | `direct`, `route` | 100 concurrent logins against the fake WeChat with 20 ms latency: `jscode2session` called with reqwest vs the login route |
//!
//! The `st` lines drive an axum router in process with `ready().call()` on a
//! current-thread runtime, the whole timed loop inside one `block_on`.
//! `WXLOGIN_BENCH_SESSIONS` changes the 1M. Under `cargo test --benches`
//! (criterion's test mode) every line runs once with 10k sessions instead.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::Criterion;
use http::{HeaderValue, Request};
use tower::{Service, ServiceExt};
use wxlogin::mock::FakeWeChat;
use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreFuture, StoreId};
use wxlogin::{Secret, WxLogin, WxUser};

const APP_ID: &str = "wxbench000000000";
const SECRET: &str = "bench-secret";
const TOKEN_KEY: &str = "bench-token-key-0123456789abcdef";

/// Lines that ran in this process, in order, for the summary.
static RAN: Mutex<Vec<(&'static str, &'static str)>> = Mutex::new(Vec::new());

/// Per-round ratios to `bare`: (group, line) → ratios, one per round.
static ROUNDS: Mutex<Vec<(&'static str, &'static str, Vec<f64>)>> = Mutex::new(Vec::new());

/// A line of the interleaved pass: its name, requests per round, and a
/// closure that times that many requests.
type Line<'a> = (&'static str, u64, &'a dyn Fn(u64) -> Duration);

/// The interleaved pass: every line of a group timed in turn, `rounds`
/// times, each ratio taken against `bare` (the first line) of the same
/// round. Criterion times its lines one after the other, seconds or
/// minutes apart, and a shared machine's speed drifts by more than the
/// differences measured here; a drift slower than a round cancels out of
/// these ratios.
fn interleave(group: &'static str, rounds: usize, lines: &[Line<'_>]) {
    let mut ratios = vec![Vec::with_capacity(rounds); lines.len()];
    for _ in 0..rounds {
        let ns: Vec<f64> = lines
            .iter()
            .map(|(_, n, run)| run(*n).as_nanos() as f64 / *n as f64)
            .collect();
        for (i, v) in ns.iter().enumerate() {
            ratios[i].push(v / ns[0]);
        }
    }
    let mut out = ROUNDS.lock().unwrap();
    for ((name, _, _), r) in lines.iter().zip(ratios).skip(1) {
        out.push((group, name, r));
    }
}

/// Median and quartiles of a line's per-round ratios.
fn quartiles(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.25), at(0.75))
}

fn ran(group: &'static str, name: &'static str) {
    let mut r = RAN.lock().unwrap();
    if !r.contains(&(group, name)) {
        r.push((group, name));
    }
}

#[inline(always)]
async fn call(app: &mut Router, req: Request<Body>) -> axum::response::Response {
    ServiceExt::<Request<Body>>::ready(app)
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
}

#[inline(always)]
fn request(auth: &HeaderValue) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.headers_mut().insert("authorization", auth.clone());
    req
}

/// A static header value, as every line uses: cloning it per request writes
/// no reference count. (With `from_str`, each clone bumps a count in the
/// value's own allocation: with 100k tokens in rotation that is a cache miss
/// per request which the harness, not the layer, adds. A server's header
/// values are slices of the buffer it has just read, which is in cache.)
fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_static(Box::leak(format!("Bearer {token}").into_boxed_str()))
}

async fn login(app: &mut Router, fake: &FakeWeChat, openid: &str) -> String {
    let code = fake.mint_code(openid);
    let req = Request::post("/wx/login")
        .body(Body::from(format!(r#"{{"code":"{code}"}}"#)))
        .unwrap();
    let res = call(app, req).await;
    assert_eq!(res.status(), 200);
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn builder(fake: &FakeWeChat) -> wxlogin::WxLoginBuilder<()> {
    WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(SECRET)
        .api_base(fake.base_url())
        .token_key(TOKEN_KEY)
        .cache_ttl(Duration::from_secs(3600))
        .login_rate(0)
}

fn app_router(wx: &WxLogin) -> Router {
    Router::new()
        .route(
            "/",
            get(|u: WxUser| async move { format!("hello {}", u.openid()) }),
        )
        .layer(wx.layer())
}

/// The login route on a router of its own, so that the measured router has
/// the same single route as the bare one.
fn login_router(wx: &WxLogin) -> Router {
    Router::new().route_service("/wx/login", wx.login_service())
}

fn bare_router() -> Router {
    Router::new().route(
        "/",
        get(|| async move { format!("hello {}", "o-bench-user") }),
    )
}

/// Times `iters` requests in one `block_on`, cycling through `auths`.
fn run_st(
    rt: &tokio::runtime::Runtime,
    app: &Router,
    auths: &[HeaderValue],
    status: u16,
    iters: u64,
) -> Duration {
    let mut app = app.clone();
    rt.block_on(async {
        let mut i = 0;
        let start = Instant::now();
        for _ in 0..iters {
            let res = call(&mut app, request(&auths[i])).await;
            debug_assert_eq!(res.status(), status);
            std::hint::black_box(res);
            i += 1;
            if i == auths.len() {
                i = 0;
            }
        }
        let elapsed = start.elapsed();
        // One checked request per sample, outside the timing.
        let res = call(&mut app, request(&auths[0])).await;
        assert_eq!(res.status(), status);
        elapsed
    })
}

/// 64 tasks on the runtime, each doing `iters / 64` requests (at least 1);
/// returns the time per `iters` requests.
fn run_mt(
    rt: &tokio::runtime::Runtime,
    app: &Router,
    auths: &Arc<Vec<HeaderValue>>,
    iters: u64,
) -> Duration {
    const TASKS: u64 = 64;
    let per_task = iters.div_ceil(TASKS).max(1);
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..TASKS)
            .map(|t| {
                let mut app = app.clone();
                let auths = auths.clone();
                tokio::spawn(async move {
                    let mut i = (t as usize * 997) % auths.len();
                    for _ in 0..per_task {
                        let res = call(&mut app, request(&auths[i])).await;
                        assert_eq!(res.status(), 200);
                        std::hint::black_box(res);
                        i += 1;
                        if i == auths.len() {
                            i = 0;
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    });
    elapsed.mul_f64(iters as f64 / (per_task * TASKS) as f64)
}

/// Counts loads, to check once that the miss lines really miss.
struct CountingLoads {
    inner: MemoryStore,
    loads: Arc<AtomicUsize>,
}

impl SessionStore for CountingLoads {
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        self.inner.create(id, record)
    }
    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.inner.load(id)
    }
    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        self.inner.delete(id)
    }
    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        self.inner.touch(id, idle_expires_at_ms)
    }
    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        self.inner.delete_user(openid)
    }
    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
}

fn single_threaded(c: &mut Criterion, full: bool, fake: &FakeWeChat) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // 1k sessions through the real login route.
    let wx_1k = rt.block_on(async { builder(fake).build().unwrap() });
    let app_1k = app_router(&wx_1k);
    let tokens_1k: Vec<HeaderValue> = rt.block_on(async {
        let mut app = login_router(&wx_1k);
        let mut v = Vec::new();
        for i in 0..1000 {
            v.push(bearer(&login(&mut app, fake, &format!("o-user-{i}")).await));
        }
        v
    });
    let forged = {
        let t = tokens_1k[0].to_str().unwrap();
        // A character inside the MAC (the last one only carries 2 bits
        // and changing it makes a malformed token, rejected before the MAC).
        let mut b = t.strip_prefix("Bearer ").unwrap().as_bytes().to_vec();
        let i = b.len() - 6;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        bearer(std::str::from_utf8(&b).unwrap())
    };
    let unknown = bearer(&wx_1k.bench_unknown_token());

    // Many sessions, created as login does after WeChat answers (see
    // `WxLogin::bench_create_session`): a login per session through the fake
    // would take minutes for a million.
    let many: usize = std::env::var("WXLOGIN_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 10_000 });
    let wx_many = rt.block_on(async {
        builder(fake)
            .cache_capacity(many as u64 * 2)
            .build()
            .unwrap()
    });
    let app_many = app_router(&wx_many);
    let started = Instant::now();
    let tokens_many: Vec<HeaderValue> = rt.block_on(async {
        let step = (many / 100_000).max(1);
        let mut v = Vec::with_capacity(many.min(100_000));
        for i in 0..many {
            let token = wx_many
                .bench_create_session(
                    &format!("o-many-{i:07}"),
                    None,
                    Secret::new("c2Vzc2lvbi1rZXktMDEyMw=="),
                    (),
                )
                .await
                .unwrap();
            if i % step == 0 && v.len() < 100_000 {
                v.push(bearer(&token));
            }
        }
        v
    });
    eprintln!(
        "created {many} sessions in {:.1} s; {} tokens in rotation",
        started.elapsed().as_secs_f64(),
        tokens_many.len()
    );

    // Every request misses: a cache of capacity 0 keeps nothing. Checked
    // once on a store that counts its loads; the timed line has a plain store.
    let loads = Arc::new(AtomicUsize::new(0));
    let (wx_check, check_token) = rt.block_on(async {
        let wx = builder(fake)
            .cache_capacity(0)
            .store(CountingLoads {
                inner: MemoryStore::new(),
                loads: loads.clone(),
            })
            .build()
            .unwrap();
        let token = wx
            .bench_create_session("o-miss", None, Secret::new("a2V5"), ())
            .await
            .unwrap();
        (wx, bearer(&token))
    });
    run_st(
        &rt,
        &app_router(&wx_check),
        std::slice::from_ref(&check_token),
        200,
        1000,
    );
    let n = loads.load(Ordering::Relaxed);
    assert!(
        n >= 1000,
        "capacity 0 should miss every time; 1001 requests made {n} loads"
    );
    let (wx_miss, miss_token) = rt.block_on(async {
        let wx = builder(fake).cache_capacity(0).build().unwrap();
        let token = wx
            .bench_create_session("o-miss", None, Secret::new("a2V5"), ())
            .await
            .unwrap();
        (wx, bearer(&token))
    });
    let app_miss = app_router(&wx_miss);

    let redis = std::env::var("WXLOGIN_BENCH_REDIS_URL").ok().map(|url| {
        rt.block_on(async {
            let store = wxlogin::store::RedisStore::connect(&url)
                .await
                .expect("WXLOGIN_BENCH_REDIS_URL: cannot connect")
                .with_prefix("wxbench:");
            let wx = builder(fake)
                .cache_capacity(0)
                .store(store)
                .build()
                .unwrap();
            let token = wx
                .bench_create_session("o-redis", None, Secret::new("a2V5"), ())
                .await
                .unwrap();
            (app_router(&wx), bearer(&token))
        })
    });

    let bare = bare_router();
    let mut g = c.benchmark_group("st");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    let same = std::slice::from_ref(&tokens_1k[0]);
    g.bench_function("bare", |b| {
        ran("st", "bare");
        b.iter_custom(|n| run_st(&rt, &bare, same, 200, n))
    });
    g.bench_function("hit_1k", |b| {
        ran("st", "hit_1k");
        b.iter_custom(|n| run_st(&rt, &app_1k, &tokens_1k, 200, n))
    });
    g.bench_function("hit_1m", |b| {
        ran("st", "hit_1m");
        b.iter_custom(|n| run_st(&rt, &app_many, &tokens_many, 200, n))
    });
    g.bench_function("unknown_token", |b| {
        ran("st", "unknown_token");
        b.iter_custom(|n| run_st(&rt, &app_1k, std::slice::from_ref(&unknown), 401, n))
    });
    g.bench_function("forged_token", |b| {
        ran("st", "forged_token");
        b.iter_custom(|n| run_st(&rt, &app_1k, std::slice::from_ref(&forged), 401, n))
    });
    g.bench_function("miss_memory", |b| {
        ran("st", "miss_memory");
        b.iter_custom(|n| run_st(&rt, &app_miss, std::slice::from_ref(&miss_token), 200, n))
    });
    if let Some((app_redis, token)) = &redis {
        g.bench_function("miss_redis", |b| {
            ran("st", "miss_redis");
            b.iter_custom(|n| run_st(&rt, app_redis, std::slice::from_ref(token), 200, n))
        });
    }
    g.finish();

    let rounds = if full { interleaved_rounds() } else { 1 };
    let n = |requests: u64| if full { requests } else { 10 };
    let rt = &rt;
    let one = |app: &Router, token: &HeaderValue, status: u16| {
        let (app, token) = (app.clone(), token.clone());
        move |n| run_st(rt, &app, std::slice::from_ref(&token), status, n)
    };
    let bare_line = one(&bare, &tokens_1k[0], 200);
    let hit_1k = |n| run_st(rt, &app_1k, &tokens_1k, 200, n);
    let hit_1m = |n| run_st(rt, &app_many, &tokens_many, 200, n);
    let unknown_line = one(&app_1k, &unknown, 401);
    let forged_line = one(&app_1k, &forged, 401);
    let miss_line = one(&app_miss, &miss_token, 200);
    let mut lines: Vec<Line<'_>> = vec![
        ("bare", n(20_000), &bare_line),
        ("hit_1k", n(20_000), &hit_1k),
        ("hit_1m", n(20_000), &hit_1m),
        ("unknown_token", n(20_000), &unknown_line),
        ("forged_token", n(20_000), &forged_line),
        ("miss_memory", n(20_000), &miss_line),
    ];
    let redis_line = redis.as_ref().map(|(app, token)| one(app, token, 200));
    if let Some(line) = &redis_line {
        lines.push(("miss_redis", n(500), line));
    }
    interleave("st", rounds, &lines);

    // 64 tasks on 2 worker threads, hit path. Sessions from real logins.
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let auths = Arc::new(tokens_1k.clone());
    let one_token = Arc::new(vec![tokens_1k[0].clone()]);
    let mut g = c.benchmark_group("mt64");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("bare", |b| {
        ran("mt64", "bare");
        b.iter_custom(|n| run_mt(&mt, &bare, &one_token, n))
    });
    g.bench_function("hit_1k", |b| {
        ran("mt64", "hit_1k");
        b.iter_custom(|n| run_mt(&mt, &app_1k, &auths, n))
    });
    g.finish();
    interleave(
        "mt64",
        rounds,
        &[
            ("bare", n(40_000), &|n| run_mt(&mt, &bare, &one_token, n)),
            ("hit_1k", n(40_000), &|n| run_mt(&mt, &app_1k, &auths, n)),
        ],
    );
    drop(tokens_many);
    // Dropping a million sessions takes a while; not worth waiting for.
    std::mem::forget(app_many);
    std::mem::forget(wx_many);
}

/// One login of the `login100` group, as a task.
type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// 100 concurrent logins per iteration against a fake WeChat answering in 20 ms.
fn logins(c: &mut Criterion, full: bool) {
    const CONCURRENT: usize = 100;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (fake, wx) = rt.block_on(async {
        let fake = FakeWeChat::start(APP_ID, SECRET).await.unwrap();
        fake.set_latency(Duration::from_millis(20));
        let wx = builder(&fake).build().unwrap();
        (fake, wx)
    });
    let app = login_router(&wx);
    let client = reqwest::Client::new();
    let url = format!("{}/sns/jscode2session", fake.base_url());
    let seq = AtomicUsize::new(0);

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Code2Session {
        openid: String,
        session_key: String,
    }

    // `iters` batches: each mints 100 codes (not timed), then times one
    // task per code, all spawned at once, until the last has finished.
    let batches = |iters: u64, login: &(dyn Fn(String) -> BoxFuture + Sync)| -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let codes: Vec<String> = (0..CONCURRENT)
                .map(|_| {
                    let i = seq.fetch_add(1, Ordering::Relaxed);
                    fake.mint_code(&format!("o-login-{i}"))
                })
                .collect();
            total += rt.block_on(async {
                let start = Instant::now();
                let handles: Vec<_> = codes.into_iter().map(|c| tokio::spawn(login(c))).collect();
                for h in handles {
                    h.await.unwrap();
                }
                start.elapsed()
            });
        }
        total
    };
    // `jscode2session` called directly.
    let direct_one = |code: String| -> BoxFuture {
        let client = client.clone();
        let url = url.clone();
        Box::pin(async move {
            let res = client
                .get(&url)
                .query(&[
                    ("appid", APP_ID),
                    ("secret", SECRET),
                    ("js_code", code.as_str()),
                    ("grant_type", "authorization_code"),
                ])
                .send()
                .await
                .unwrap();
            let body = res.bytes().await.unwrap();
            let reply: Code2Session = serde_json::from_slice(&body).unwrap();
            assert!(!reply.openid.is_empty());
        })
    };
    // The login route.
    let route_one = |code: String| -> BoxFuture {
        let app = app.clone();
        Box::pin(async move {
            let req = Request::post("/wx/login")
                .body(Body::from(format!(r#"{{"code":"{code}"}}"#)))
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200);
            let body = axum::body::to_bytes(res.into_body(), 1 << 16)
                .await
                .unwrap();
            assert!(body.starts_with(b"{\"token\""));
        })
    };
    let direct = |iters| batches(iters, &direct_one);
    let route = |iters| batches(iters, &route_one);

    let mut g = c.benchmark_group("login100");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("direct", |b| {
        ran("login100", "direct");
        b.iter_custom(&direct)
    });
    g.bench_function("route", |b| {
        ran("login100", "route");
        b.iter_custom(&route)
    });
    g.finish();
    // Interleaved: 8 batches of each in turn per round (about 0.4 s), so
    // that both lines of a round see the same machine.
    let rounds = if full { interleaved_rounds() } else { 1 };
    let per_round = if full { 8 } else { 1 };
    interleave(
        "login100",
        rounds,
        &[("direct", per_round, &direct), ("route", per_round, &route)],
    );
    drop(fake);
}

/// Where criterion writes: `$CARGO_TARGET_DIR/criterion`, else the `target`
/// directory this binary was built in.
fn criterion_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("criterion");
    }
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/layer-<hash>
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("criterion"))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

fn median_ns(dir: &std::path::Path, group: &str, name: &str) -> Option<(f64, f64, f64)> {
    let path = dir.join(group).join(name).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let m = &v["median"];
    Some((
        m["point_estimate"].as_f64()?,
        m["confidence_interval"]["lower_bound"].as_f64()?,
        m["confidence_interval"]["upper_bound"].as_f64()?,
    ))
}

fn summary(dir: &std::path::Path) {
    let ran = RAN.lock().unwrap().clone();
    let base = |group: &str| -> Option<f64> {
        let name = if group == "login100" {
            "direct"
        } else {
            "bare"
        };
        median_ns(dir, group, name).map(|m| m.0)
    };
    println!();
    println!(
        "summary (medians of this run; ratio to `bare` of the same group, login100 to `direct`)"
    );
    println!(
        "| {:<22} | {:>14} | {:>25} | {:>6} |",
        "line", "ns/request", "95% CI of median", "ratio"
    );
    println!("|{:-<24}|{:->16}|{:->27}|{:->8}|", "", "", "", "");
    for (group, name) in ran {
        let Some((m, lo, hi)) = median_ns(dir, group, name) else {
            continue;
        };
        let (m, lo, hi, unit) = if group == "login100" {
            (m / 1e6, lo / 1e6, hi / 1e6, " ms/100")
        } else {
            (m, lo, hi, "")
        };
        let ratio = base(group)
            .map(|b| {
                let b = if group == "login100" { b / 1e6 } else { b };
                format!("{:.2}", m / b)
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "| {:<22} | {:>14} | {:>25} | {:>6} |",
            format!("{group}/{name}"),
            format!("{m:.1}{unit}"),
            format!("{lo:.1} .. {hi:.1}"),
            ratio
        );
    }
    if let (Some(k), Some(m)) = (
        median_ns(dir, "st", "hit_1k"),
        median_ns(dir, "st", "hit_1m"),
    ) {
        println!("hit_1m / hit_1k = {:.2}", m.0 / k.0);
    }

    let rounds = ROUNDS.lock().unwrap();
    let Some((_, _, first)) = rounds.first() else {
        return;
    };
    println!();
    println!(
        "interleaved: ratio to `bare` (login100: `direct`) of the same round, median and quartiles of {} rounds",
        first.len()
    );
    println!("| {:<22} | {:>6} | {:>15} |", "line", "ratio", "quartiles");
    println!("|{:-<24}|{:->8}|{:->17}|", "", "", "");
    for (group, name, r) in rounds.iter() {
        let (m, q1, q3) = quartiles(r);
        println!(
            "| {:<22} | {:>6} | {:>15} |",
            format!("{group}/{name}"),
            format!("{m:.2}"),
            format!("{q1:.2} .. {q3:.2}")
        );
    }
    let line = |name: &str| rounds.iter().find(|(g, n, _)| *g == "st" && *n == name);
    if let (Some(k), Some(m)) = (line("hit_1k"), line("hit_1m")) {
        let per_round: Vec<f64> = m.2.iter().zip(&k.2).map(|(m, k)| m / k).collect();
        let (m, q1, q3) = quartiles(&per_round);
        println!("hit_1m / hit_1k, per round: {m:.2} ({q1:.2} .. {q3:.2})");
    }
}

/// `WXLOGIN_BENCH_ROUNDS`, default 15.
fn interleaved_rounds() -> usize {
    std::env::var("WXLOGIN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(15)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full =
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list");
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    let fake_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = fake_rt.block_on(FakeWeChat::start(APP_ID, SECRET)).unwrap();
    single_threaded(&mut c, full, &fake);
    logins(&mut c, full);
    c.final_summary();
    if full {
        summary(&dir);
    }
    drop(fake);
}
