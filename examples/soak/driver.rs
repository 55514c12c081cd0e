//! The soak run: a demo-like app and its clients in one process, on loopback.
//!
//! Shared by `examples/soak.rs` (the bounded 2-minute run of
//! `scripts/soak.sh`) and `tests/soak_short.rs` (a few seconds in CI), which
//! includes this file with `#[path]`.
//!
//! The app serves two logins on one store: the main one (long sessions) on
//! `/wx/login`, `/wx/logout`, `/api/me`, and a short one (2 s sessions) on
//! `/short/login`, `/short/logout`, `/short/me`. Concurrent clients drive a
//! mix of logins, good tokens, expired tokens, forged tokens, missing
//! tokens, bad codes, logouts and logged-out tokens, and check every
//! response against the status (and error code) the contract gives it. A
//! pool of long-lived sessions, made at the start, must answer 200 on every
//! use and at the end: a 401 there is a lost session. Resident memory is
//! sampled every few seconds.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wxlogin::mock::FakeWeChat;
use wxlogin::store::{MemoryStore, RedisStore, SessionStore};
use wxlogin::{Identity, WxLogin, WxUser};

const APP_ID: &str = "wxsoak0000000000";
const APP_SECRET: &str = "soak-app-secret";
/// Lifetime of the short login's sessions.
pub const SHORT_TTL: Duration = Duration::from_secs(2);
/// How long after a short session's end the clients check that it is refused.
const EXPIRY_MARGIN: Duration = Duration::from_millis(300);
/// How many distinct users log in (bounds the app's and the fake's per-user state).
const USERS: u64 = 500;

/// What a soak run does.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long the clients run.
    pub duration: Duration,
    /// Concurrent clients.
    pub workers: usize,
    /// Long-lived sessions made at the start and checked throughout.
    pub pool: usize,
    /// Sessions in Redis at this URL (else in memory).
    pub redis_url: Option<String>,
    /// How often resident memory is sampled.
    pub sample_every: Duration,
    /// Memory samples before this are warm-up.
    pub warmup: Duration,
    /// Print progress lines while running.
    pub verbose: bool,
}

impl SoakConfig {
    /// A run of `duration` with defaults scaled to it.
    pub fn new(duration: Duration) -> Self {
        let secs = duration.as_secs_f64();
        SoakConfig {
            duration,
            workers: 16,
            pool: 200,
            redis_url: None,
            // About 24 samples, at least one a second, at most one every 5 s.
            sample_every: Duration::from_secs_f64((secs / 24.0).clamp(1.0, 5.0)),
            // Half the run, at most 60 s: the process reaches its plateau
            // (cache TTL 30 s, the memory store's sweep every 10 s here, the
            // allocator's high-water marks) within about a minute.
            warmup: (duration / 2)
                .min(Duration::from_secs(60))
                .max(duration / 4),
            verbose: false,
        }
    }

    /// From the environment: `SOAK_SECONDS` (default 120), `SOAK_WORKERS`
    /// (16), `SOAK_POOL` (200), `SOAK_WARMUP_SECONDS` (half the run, at
    /// most 60 s), `WXLOGIN_REDIS_URL` (Redis store; memory if unset).
    pub fn from_env() -> Result<Self, String> {
        fn num(name: &str) -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}")),
                _ => Ok(None),
            }
        }
        let secs = num("SOAK_SECONDS")?.unwrap_or(120).max(1);
        let mut config = SoakConfig::new(Duration::from_secs(secs));
        if let Some(w) = num("SOAK_WORKERS")? {
            config.workers = (w as usize).max(1);
        }
        if let Some(p) = num("SOAK_POOL")? {
            config.pool = (p as usize).max(1);
        }
        if let Some(w) = num("SOAK_WARMUP_SECONDS")? {
            config.warmup = Duration::from_secs(w);
        }
        config.redis_url = std::env::var("WXLOGIN_REDIS_URL")
            .ok()
            .filter(|v| !v.trim().is_empty());
        config.verbose = true;
        Ok(config)
    }
}

/// One resident-memory sample.
#[derive(Debug, Clone, Copy)]
pub struct RssSample {
    /// Seconds since the clients started.
    pub at_secs: f64,
    /// Resident set size in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Sessions the memory store held (expired ones until its sweep), or
    /// keys in the Redis database.
    pub stored: u64,
}

/// What a soak run saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// `memory` or `redis`.
    pub store: &'static str,
    pub workers: usize,
    pub pool: usize,
    /// How long the clients ran.
    pub elapsed: Duration,
    /// Requests by kind (`kind status`).
    pub requests: BTreeMap<String, u64>,
    /// Responses other than the expected one.
    pub unexpected: u64,
    /// The first few unexpected responses, described.
    pub unexpected_samples: Vec<String>,
    /// Sessions that should have been valid but were refused.
    pub lost_sessions: u64,
    /// Short sessions used near their end, where 200 and 401 are both right.
    pub borderline: u64,
    /// Expired sessions checked (each was refused).
    pub expired_checked: u64,
    /// Resident memory over the run.
    pub rss: Vec<RssSample>,
    pub warmup: Duration,
}

impl SoakReport {
    /// Total requests.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// No unexpected status and no lost session.
    pub fn passed(&self) -> bool {
        self.unexpected == 0 && self.lost_sessions == 0
    }

    /// The first sample at or after the warm-up.
    pub fn rss_after_warmup(&self) -> Option<RssSample> {
        let warm = self.warmup.as_secs_f64();
        self.rss
            .iter()
            .find(|s| s.at_secs >= warm)
            .or(self.rss.last())
            .copied()
    }

    /// The last sample.
    pub fn rss_end(&self) -> Option<RssSample> {
        self.rss.last().copied()
    }

    /// Growth of resident memory from the end of warm-up to the end, in percent.
    pub fn rss_growth_percent(&self) -> f64 {
        match (self.rss_after_warmup(), self.rss_end()) {
            (Some(w), Some(e)) if w.rss_kib > 0 => {
                (e.rss_kib as f64 - w.rss_kib as f64) * 100.0 / w.rss_kib as f64
            }
            _ => 0.0,
        }
    }

    /// The summary, as printed by the example.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let secs = self.elapsed.as_secs_f64().max(0.001);
        let _ = writeln!(
            s,
            "soak: {} store, {} clients, {} pooled sessions, {:.1} s",
            self.store, self.workers, self.pool, secs
        );
        let _ = writeln!(
            s,
            "requests: {} ({:.0}/s)",
            self.total(),
            self.total() as f64 / secs
        );
        for (kind, n) in &self.requests {
            let _ = writeln!(s, "  {kind:<28} {n:>9}");
        }
        let _ = writeln!(
            s,
            "expired sessions checked: {}; borderline (used at their end, 200 or 401 both right): {}",
            self.expired_checked, self.borderline
        );
        let _ = writeln!(s, "unexpected statuses: {}", self.unexpected);
        for u in &self.unexpected_samples {
            let _ = writeln!(s, "  {u}");
        }
        let _ = writeln!(s, "lost sessions: {}", self.lost_sessions);
        let series: Vec<String> = self
            .rss
            .iter()
            .map(|r| format!("{:.0}s:{:.1}", r.at_secs, r.rss_kib as f64 / 1024.0))
            .collect();
        let _ = writeln!(s, "rss MiB series: {}", series.join(" "));
        let stored: Vec<String> = self
            .rss
            .iter()
            .map(|r| format!("{:.0}s:{}", r.at_secs, r.stored))
            .collect();
        let _ = writeln!(
            s,
            "{} series: {}",
            if self.store == "redis" {
                "redis keys"
            } else {
                "stored sessions"
            },
            stored.join(" ")
        );
        if let (Some(w), Some(e)) = (self.rss_after_warmup(), self.rss_end()) {
            let _ = writeln!(
                s,
                "rss after warm-up ({:.0} s): {:.1} MiB; at the end ({:.0} s): {:.1} MiB; growth {:+.1}%",
                w.at_secs,
                w.rss_kib as f64 / 1024.0,
                e.at_secs,
                e.rss_kib as f64 / 1024.0,
                self.rss_growth_percent()
            );
        }
        let _ = write!(s, "result: {}", if self.passed() { "PASS" } else { "FAIL" });
        s
    }
}

/// Resident set size of this process in KiB (`VmRSS` of `/proc/self/status`;
/// 0 where there is no procfs).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------- the app

/// The app's own user data, as in the demo: a number given at first login.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SoakUser {
    user_id: u64,
}

async fn me(user: WxUser<SoakUser>) -> Json<Value> {
    Json(json!({ "openid": user.openid(), "user_id": user.user_id }))
}

fn build(
    fake: &FakeWeChat,
    store: impl SessionStore,
    ttl: Duration,
    key: &str,
    users: Arc<Mutex<HashMap<String, u64>>>,
) -> WxLogin<SoakUser> {
    WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(APP_SECRET)
        .api_base(fake.base_url())
        .token_key(key)
        .store(store)
        .session_ttl(ttl)
        // The soak is the only client; the quota caps are tested in tests/abuse.rs.
        .login_rate(0)
        .on_login(move |who: Identity| {
            let users = users.clone();
            async move {
                let mut users = users.lock().unwrap();
                let next = users.len() as u64 + 1;
                let user_id = *users.entry(who.openid).or_insert(next);
                Ok(SoakUser { user_id })
            }
        })
        .build()
        .expect("the soak app builds")
}

/// What the clients need to reach the app and check stored state.
struct App {
    base: String,
    fake: FakeWeChat,
    memory: Option<MemoryStore>,
    redis: Option<wxlogin::store::redis::client::aio::MultiplexedConnection>,
    server: tokio::task::JoinHandle<()>,
}

impl App {
    async fn start(config: &SoakConfig) -> Result<App, String> {
        let fake = FakeWeChat::start(APP_ID, APP_SECRET)
            .await
            .map_err(|e| format!("cannot start the fake WeChat: {e}"))?;
        // The fake keeps minted codes until they expire; a short lifetime
        // keeps its own memory flat (codes are used within milliseconds).
        fake.set_code_lifetime(Duration::from_secs(5));
        let users: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let long_ttl = (config.duration + Duration::from_secs(600)).max(Duration::from_secs(3600));
        let (main, short, memory, redis) = match &config.redis_url {
            None => {
                let store = MemoryStore::with_sweep_interval(Duration::from_secs(10));
                (
                    build(&fake, store.clone(), long_ttl, KEY_MAIN, users.clone()),
                    build(&fake, store.clone(), SHORT_TTL, KEY_SHORT, users),
                    Some(store),
                    None,
                )
            }
            Some(url) => {
                let prefix = format!("wxsoak-{:x}", rand_u64() as u32);
                let store = RedisStore::connect(url)
                    .await
                    .map_err(|e| format!("cannot connect to Redis at {url}: {e}"))?
                    .with_prefix(&prefix);
                let client = wxlogin::store::redis::client::Client::open(url.as_str())
                    .map_err(|e| format!("bad Redis URL: {e}"))?;
                let conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("cannot connect to Redis at {url}: {e}"))?;
                (
                    build(&fake, store.clone(), long_ttl, KEY_MAIN, users.clone()),
                    build(&fake, store, SHORT_TTL, KEY_SHORT, users),
                    None,
                    Some(conn),
                )
            }
        };
        let app = Router::new()
            .route("/api/me", get(me))
            .layer(main.layer())
            .route_service("/wx/login", main.login_service())
            .route_service("/wx/logout", main.logout_service())
            .merge(
                Router::new()
                    .route("/short/me", get(me))
                    .layer(short.layer())
                    .route_service("/short/login", short.login_service())
                    .route_service("/short/logout", short.logout_service()),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on loopback: {e}"))?;
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the soak app serves");
        });
        Ok(App {
            base,
            fake,
            memory,
            redis,
            server,
        })
    }

    async fn stored(&self) -> u64 {
        if let Some(m) = &self.memory {
            return m.len() as u64;
        }
        if let Some(conn) = &self.redis {
            let mut conn = conn.clone();
            return wxlogin::store::redis::client::cmd("DBSIZE")
                .query_async::<u64>(&mut conn)
                .await
                .unwrap_or(0);
        }
        0
    }
}

const KEY_MAIN: &str = "soak-main-token-key-0123456789abcdef";
const KEY_SHORT: &str = "soak-short-token-key-0123456789abcdef";

// ---------------------------------------------------------------- clients

/// A small xorshift generator (no extra crates), seeded per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() | 1
}

/// What every client shares.
struct Shared {
    client: reqwest::Client,
    base: String,
    fake: FakeWeChat,
    /// Long-lived sessions: (token, openid).
    pool: Vec<(String, String)>,
    /// Short sessions waiting to be checked once ended: (token, check after).
    expiring: Mutex<VecDeque<(String, Instant)>>,
    /// What an ended session answers on this store.
    ended: &'static [(u16, Option<&'static str>)],
    stop: AtomicBool,
    seq: AtomicU64,
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    requests: BTreeMap<String, u64>,
    unexpected: u64,
    samples: Vec<String>,
    lost: u64,
    borderline: u64,
    expired_checked: u64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        for (k, v) in o.requests {
            *self.requests.entry(k).or_default() += v;
        }
        self.unexpected += o.unexpected;
        for s in o.samples {
            if self.samples.len() < 20 {
                self.samples.push(s);
            }
        }
        self.lost += o.lost;
        self.borderline += o.borderline;
        self.expired_checked += o.expired_checked;
    }

    /// Records one response of `kind`; true when it is one of `want`
    /// (status and, for errors, the JSON `error` code).
    fn expect(&mut self, kind: &str, got: &Reply, want: &[(u16, Option<&str>)]) -> bool {
        *self
            .requests
            .entry(format!("{kind} {}", got.status))
            .or_default() += 1;
        let ok = want.iter().any(|(status, code)| {
            got.status == *status && code.is_none_or(|c| got.body["error"] == c)
        });
        if !ok {
            self.unexpected += 1;
            if self.samples.len() < 20 {
                self.samples.push(format!(
                    "{kind}: got {} {} (wanted {want:?})",
                    got.status, got.body
                ));
            }
        }
        ok
    }

    /// A session that must be valid was refused.
    fn lost(&mut self, kind: &str, got: &Reply) {
        self.lost += 1;
        if self.samples.len() < 20 {
            self.samples
                .push(format!("{kind}: LOST session: {} {}", got.status, got.body));
        }
    }
}

struct Reply {
    status: u16,
    body: Value,
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Raw(&'a str),
}

impl Shared {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<String>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.bearer_auth(t),
            Auth::Raw(v) => req = req.header("authorization", v),
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let text = res.text().await.unwrap_or_default();
                Reply {
                    status,
                    body: serde_json::from_str(&text).unwrap_or(Value::Null),
                }
            }
            // A transport error is a status nobody expects.
            Err(e) => Reply {
                status: 0,
                body: Value::String(e.to_string()),
            },
        }
    }

    async fn get(&self, path: &str, auth: Auth<'_>) -> Reply {
        self.send(reqwest::Method::GET, path, auth, None).await
    }

    async fn post(&self, path: &str, auth: Auth<'_>, body: Option<String>) -> Reply {
        self.send(reqwest::Method::POST, path, auth, body).await
    }

    async fn login(&self, path: &str, openid: &str) -> Reply {
        let code = self.fake.mint_code(openid);
        self.post(path, Auth::None, Some(format!(r#"{{"code":"{code}"}}"#)))
            .await
    }

    fn next_openid(&self) -> String {
        format!(
            "o-soak-{}",
            self.seq.fetch_add(1, Ordering::Relaxed) % USERS
        )
    }
}

const OK: &[(u16, Option<&str>)] = &[(200, None)];
const NO_CONTENT: &[(u16, Option<&str>)] = &[(204, None)];
const INVALID: &[(u16, Option<&str>)] = &[(401, Some("invalid_token"))];
const MISSING: &[(u16, Option<&str>)] = &[(401, Some("missing_token"))];
/// An ended session on the memory store: `session_expired` while the store
/// still holds it, `invalid_token` once its sweep (every 10 s, at times the
/// clients cannot see) has removed it.
const ENDED_MEMORY: &[(u16, Option<&str>)] =
    &[(401, Some("session_expired")), (401, Some("invalid_token"))];
/// An ended session on Redis, which expires the key at the session's end
/// (and the cache entry ends with it): only `invalid_token`.
const ENDED_REDIS: &[(u16, Option<&str>)] = INVALID;

/// A token with one character in its middle changed.
fn tamper(token: &str, rng: &mut Rng) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = bytes.len() / 4 + rng.below(bytes.len() as u64 / 2) as usize;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// A token-shaped string no key signed.
fn garbage(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..46)
        .map(|_| ALPHABET[rng.below(64) as usize] as char)
        .collect()
}

async fn check_pool(sh: &Shared, t: &mut Tally, rng: &mut Rng) {
    let (token, openid) = &sh.pool[rng.below(sh.pool.len() as u64) as usize];
    let r = sh.get("/api/me", Auth::Bearer(token)).await;
    if r.status == 401 {
        t.lost("pool", &r);
    }
    if t.expect("good token", &r, OK) && r.body["openid"] != openid.as_str() {
        t.unexpected += 1;
        t.samples
            .push(format!("good token: another user's session: {}", r.body));
    }
}

/// Log in, use, log out, use the logged-out token, log out again.
async fn churn(sh: &Shared, t: &mut Tally) {
    let openid = sh.next_openid();
    let r = sh.login("/wx/login", &openid).await;
    if !t.expect("login", &r, OK) {
        return;
    }
    let Some(token) = r.body["token"].as_str().map(str::to_owned) else {
        t.unexpected += 1;
        t.samples.push(format!("login: no token in {}", r.body));
        return;
    };
    for _ in 0..3 {
        let r = sh.get("/api/me", Auth::Bearer(&token)).await;
        if r.status == 401 {
            t.lost("fresh session", &r);
        }
        t.expect("good token", &r, OK);
    }
    let r = sh.post("/wx/logout", Auth::Bearer(&token), None).await;
    t.expect("logout", &r, NO_CONTENT);
    let r = sh.get("/api/me", Auth::Bearer(&token)).await;
    t.expect("logged-out token", &r, INVALID);
    let r = sh.post("/wx/logout", Auth::Bearer(&token), None).await;
    t.expect("logout again", &r, NO_CONTENT);
}

/// Log in on the short login and use the session while it lives; queue it
/// for a check once it has ended.
async fn short_login(sh: &Shared, t: &mut Tally) {
    let started = Instant::now();
    let r = sh.login("/short/login", &sh.next_openid()).await;
    let answered = Instant::now();
    if !t.expect("short login", &r, OK) {
        return;
    }
    let Some(token) = r.body["token"].as_str().map(str::to_owned) else {
        return;
    };
    let r = sh.get("/short/me", Auth::Bearer(&token)).await;
    // The session ends SHORT_TTL after the server made it, which is after
    // `started`: an answer before `started + SHORT_TTL` must be 200.
    if started.elapsed() < SHORT_TTL {
        if r.status == 401 {
            t.lost("short session", &r);
        }
        t.expect("short token (live)", &r, OK);
    } else {
        t.borderline += 1;
        t.expect(
            "short token (at its end)",
            &r,
            // Right at its end a cached copy may still be read (and found
            // ended) on either store.
            &[
                (200, None),
                (401, Some("session_expired")),
                (401, Some("invalid_token")),
            ],
        );
    }
    sh.expiring
        .lock()
        .unwrap()
        .push_back((token, answered + SHORT_TTL + EXPIRY_MARGIN));
}

/// Uses a short session that has ended, if one is due; else a pool token.
async fn expired(sh: &Shared, t: &mut Tally, rng: &mut Rng) {
    let due = {
        let mut q = sh.expiring.lock().unwrap();
        match q.front() {
            Some((_, at)) if *at <= Instant::now() => q.pop_front(),
            _ => None,
        }
    };
    match due {
        Some((token, _)) => {
            let r = sh.get("/short/me", Auth::Bearer(&token)).await;
            t.expired_checked += 1;
            t.expect("expired token", &r, sh.ended);
        }
        None => check_pool(sh, t, rng).await,
    }
}

async fn forged(sh: &Shared, t: &mut Tally, rng: &mut Rng) {
    let (token, _) = &sh.pool[rng.below(sh.pool.len() as u64) as usize];
    let forged = match rng.below(4) {
        0 => tamper(token, rng),
        1 => garbage(rng),
        2 => token[..token.len() - 1 - rng.below(20) as usize].to_owned(),
        // A real token of the short login, signed by its key: not this login's.
        _ => match sh.expiring.lock().unwrap().back() {
            Some((short, _)) => short.clone(),
            None => garbage(rng),
        },
    };
    let r = sh.get("/api/me", Auth::Bearer(&forged)).await;
    t.expect("forged token", &r, INVALID);
}

async fn missing(sh: &Shared, t: &mut Tally, rng: &mut Rng) {
    let r = match rng.below(3) {
        0 => sh.get("/api/me", Auth::None).await,
        1 => sh.get("/api/me", Auth::Raw("Bearer ")).await,
        _ => sh.get("/api/me", Auth::Raw("Basic dXNlcjpwYXNz")).await,
    };
    t.expect("missing token", &r, MISSING);
}

async fn bad_login_or_logout(sh: &Shared, t: &mut Tally, rng: &mut Rng) {
    match rng.below(4) {
        0 => {
            let body = format!(r#"{{"code":"{}"}}"#, garbage(rng));
            let r = sh.post("/wx/login", Auth::None, Some(body)).await;
            t.expect("login, unknown code", &r, &[(400, Some("invalid_code"))]);
        }
        1 => {
            let r = sh
                .post("/wx/login", Auth::None, Some("not json".into()))
                .await;
            t.expect("login, bad body", &r, &[(400, Some("bad_request"))]);
        }
        2 => {
            let r = sh
                .post("/wx/logout", Auth::Bearer(&garbage(rng)), None)
                .await;
            t.expect("logout, forged token", &r, INVALID);
        }
        _ => {
            let r = sh.post("/wx/logout", Auth::None, None).await;
            t.expect("logout, no token", &r, MISSING);
        }
    }
}

async fn run_client(sh: Arc<Shared>, seed: u64) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng(seed | 1);
    while !sh.stop.load(Ordering::Relaxed) {
        match rng.below(100) {
            0..=29 => check_pool(&sh, &mut t, &mut rng).await,
            30..=44 => churn(&sh, &mut t).await,
            45..=54 => short_login(&sh, &mut t).await,
            55..=69 => expired(&sh, &mut t, &mut rng).await,
            70..=81 => forged(&sh, &mut t, &mut rng).await,
            82..=91 => missing(&sh, &mut t, &mut rng).await,
            _ => bad_login_or_logout(&sh, &mut t, &mut rng).await,
        }
    }
    t
}

/// Runs the soak; never panics on a bad response (it is counted instead).
pub async fn run(config: SoakConfig) -> Result<SoakReport, String> {
    let app = App::start(&config).await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(config.workers * 2)
        .build()
        .map_err(|e| e.to_string())?;

    let mut sh = Shared {
        client,
        base: app.base.clone(),
        fake: app.fake.clone(),
        pool: Vec::new(),
        expiring: Mutex::new(VecDeque::new()),
        ended: if config.redis_url.is_some() {
            ENDED_REDIS
        } else {
            ENDED_MEMORY
        },
        stop: AtomicBool::new(false),
        seq: AtomicU64::new(0),
    };
    let mut setup = Tally::default();
    for i in 0..config.pool {
        let openid = format!("o-pool-{i}");
        let r = sh.login("/wx/login", &openid).await;
        if !setup.expect("login (pool)", &r, OK) {
            return Err(format!("a pool login failed: {} {}", r.status, r.body));
        }
        let token = r.body["token"].as_str().unwrap_or_default().to_owned();
        sh.pool.push((token, openid));
    }
    let sh = Arc::new(sh);
    if config.verbose {
        eprintln!(
            "soak: {} store, app on {}, {} pooled sessions; running {} clients for {:?}",
            if config.redis_url.is_some() {
                "redis"
            } else {
                "memory"
            },
            app.base,
            sh.pool.len(),
            config.workers,
            config.duration
        );
    }

    let started = Instant::now();
    let seed = rand_u64();
    let clients: Vec<_> = (0..config.workers)
        .map(|w| {
            tokio::spawn(run_client(
                sh.clone(),
                seed.wrapping_mul(w as u64 * 2 + 1).wrapping_add(w as u64),
            ))
        })
        .collect();

    let mut rss = Vec::new();
    loop {
        let at = started.elapsed();
        let sample = RssSample {
            at_secs: at.as_secs_f64(),
            rss_kib: rss_kib(),
            stored: app.stored().await,
        };
        if config.verbose {
            eprintln!(
                "soak: {:>5.0} s  rss {:>6.1} MiB  stored {}",
                sample.at_secs,
                sample.rss_kib as f64 / 1024.0,
                sample.stored
            );
        }
        rss.push(sample);
        if at >= config.duration {
            break;
        }
        let next = (config.sample_every * rss.len() as u32).min(config.duration);
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + next)).await;
    }
    sh.stop.store(true, Ordering::Relaxed);
    let mut tally = setup;
    for c in clients {
        tally.merge(c.await.map_err(|e| format!("a client panicked: {e}"))?);
    }
    let elapsed = started.elapsed();

    // Every pooled session is still there.
    let mut end = Tally::default();
    for (token, openid) in &sh.pool {
        let r = sh.get("/api/me", Auth::Bearer(token)).await;
        if r.status == 401 {
            end.lost("pool at the end", &r);
        }
        if end.expect("good token (final check)", &r, OK) && r.body["openid"] != openid.as_str() {
            end.unexpected += 1;
        }
    }
    // Every short session still queued ends, and is refused.
    let queued: Vec<(String, Instant)> = sh.expiring.lock().unwrap().drain(..).collect();
    for (token, at) in queued {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        let r = sh.get("/short/me", Auth::Bearer(&token)).await;
        end.expired_checked += 1;
        end.expect("expired token (final check)", &r, sh.ended);
    }
    tally.merge(end);
    app.server.abort();

    Ok(SoakReport {
        store: if config.redis_url.is_some() {
            "redis"
        } else {
            "memory"
        },
        workers: config.workers,
        pool: config.pool,
        elapsed,
        requests: tally.requests,
        unexpected: tally.unexpected,
        unexpected_samples: tally.samples,
        lost_sessions: tally.lost,
        borderline: tally.borderline,
        expired_checked: tally.expired_checked,
        rss,
        warmup: config.warmup,
    })
}
