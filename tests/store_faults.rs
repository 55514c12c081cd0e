//! A failing Redis under load, over real HTTP on loopback (issue 5, point 3).
//!
//! tests/redis_outage.rs covers a stalled Redis (SIGSTOP) and a killed and
//! restarted one, one request at a time. This file covers the other faults,
//! with concurrent clients running the whole time:
//!
//! - a Redis nothing listens for (connections refused), at start-up and
//!   while serving;
//! - connections dropped mid-command: the command runs in Redis but its
//!   reply is cut halfway and the connection closed;
//! - a partition: open connections close, and new ones connect but never
//!   get an answer (the reconnect itself hangs);
//! - `CLIENT KILL` in a loop on the real Redis, racing the requests.
//!
//! Faults that depend on the network sit in a small TCP proxy between the
//! app and Redis ([`FaultProxy`]), so each is injected deterministically.
//! For every fault: requests get only 200 or 503 `store_unavailable`, never a
//! 401 and never a hang past the store timeout (each request's time is
//! checked); a login gets 200 with a token or 503 with none; logouts get 204
//! or 503. Which of the two depends on when a request ran against the fault,
//! so the proxy's faults also check the requests that ran wholly inside the
//! fault (after it was set, before it was lifted): every login and logout
//! among them is 503, as no store write can succeed then (a read may still
//! be served from the cache). Once the fault ends, service comes back by itself, every session
//! stored before the fault still works, every token a login handed out
//! (before or during the fault) works, and every logged-out token is refused.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, fake_wechat, get_json, login};
use redis_harness::{logout, unique_prefix, wait_for_status, Instance, RedisServer, TOKEN_KEY};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wxlogin::mock::FakeWeChat;
use wxlogin::store::RedisStore;

/// The store timeout of every app in this file.
const STORE_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest any request may take while the store fails: a few store
/// calls' timeouts plus a wide margin for a loaded 2-core machine. A request
/// that waited on a hung connection would take the reqwest timeout (20 s).
const REQUEST_BOUND: Duration = Duration::from_secs(3);
/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(2);
/// Sessions logged in before the fault.
const BEFORE: usize = 16;
/// Concurrent clients during the fault.
const WORKERS: usize = 6;

// ---------------------------------------------------------------------------
// The fault proxy.

/// What the proxy does to the traffic between the app and Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Forwards both ways.
    Pass = 0,
    /// Nothing listens on the port: connects are refused (`ECONNREFUSED`)
    /// and open connections are closed.
    Refuse = 1,
    /// Commands reach Redis and run, but each reply is cut halfway and the
    /// connection closed.
    CutReplies = 2,
    /// A partition: open connections are closed; new ones are accepted but
    /// nothing is forwarded either way (so a reconnect hangs).
    BlackHole = 3,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Refuse,
            2 => Mode::CutReplies,
            3 => Mode::BlackHole,
            _ => Mode::Pass,
        }
    }
}

struct ProxyShared {
    upstream: u16,
    mode: AtomicU8,
    /// Bumped to close every open connection.
    cut: watch::Sender<u64>,
    /// Connections accepted so far.
    accepted: AtomicUsize,
}

impl ProxyShared {
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }
}

/// A TCP proxy on a loopback port in front of a Redis, with injectable faults.
struct FaultProxy {
    port: u16,
    shared: Arc<ProxyShared>,
    accept: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl FaultProxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(ProxyShared {
            upstream,
            mode: AtomicU8::new(Mode::Pass as u8),
            cut: watch::channel(0).0,
            accepted: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        FaultProxy {
            port,
            shared,
            accept: tokio::sync::Mutex::new(Some(task)),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection.
    fn cut(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    async fn set(&self, mode: Mode) {
        let old = Mode::from_u8(self.shared.mode.swap(mode as u8, Ordering::SeqCst));
        let mut accept = self.accept.lock().await;
        match mode {
            Mode::Refuse => {
                // Close the listening socket, then the connections.
                if let Some(task) = accept.take() {
                    task.abort();
                    let _ = task.await;
                }
                self.cut();
            }
            Mode::BlackHole => self.cut(),
            Mode::CutReplies => {}
            Mode::Pass => {
                // Held connections lost replies: never let them resume.
                if old == Mode::BlackHole {
                    self.cut();
                }
                if accept.is_none() {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let listener = loop {
                        match TcpListener::bind(("127.0.0.1", self.port)).await {
                            Ok(l) => break l,
                            Err(e) => {
                                assert!(
                                    Instant::now() < deadline,
                                    "the proxy cannot listen on port {} again: {e}",
                                    self.port
                                );
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    };
                    *accept = Some(tokio::spawn(accept_loop(listener, self.shared.clone())));
                }
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(relay(conn, shared.clone()));
    }
}

/// Relays one connection until either side closes, a cut, or a fault.
async fn relay(client: TcpStream, shared: Arc<ProxyShared>) {
    let mut cut = shared.cut.subscribe();
    match shared.mode() {
        Mode::Refuse => return,
        Mode::BlackHole => {
            // Accept, swallow, never answer; until the next cut.
            let (mut r, _w) = client.into_split();
            let hold = async {
                let mut buf = [0u8; 4096];
                while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
            };
            tokio::select! {
                _ = hold => {}
                _ = cut.changed() => {}
            }
            return;
        }
        Mode::Pass | Mode::CutReplies => {}
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", shared.upstream)).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let shared = &shared;
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !matches!(shared.mode(), Mode::Pass | Mode::CutReplies) {
                return;
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            match shared.mode() {
                Mode::Pass => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Mode::CutReplies => {
                    // The command ran; its reply stops halfway.
                    let _ = cw.write_all(&buf[..n / 2]).await;
                    return;
                }
                Mode::Refuse | Mode::BlackHole => return,
            }
        }
    };
    // Returning drops both sockets: the app sees the connection close.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {}
    }
}

// ---------------------------------------------------------------------------
// The app, and clients that run during a fault.

async fn instance(url: &str, fake: &FakeWeChat) -> Instance {
    let store = RedisStore::connect(url)
        .await
        .expect("connect to Redis")
        .with_prefix(&unique_prefix("faults"));
    Instance::serve(
        builder(fake)
            .token_key(TOKEN_KEY)
            .store(store)
            .store_timeout(STORE_TIMEOUT)
            // Short, so most requests ask Redis during the fault.
            .cache_ttl(Duration::from_millis(300))
            // The workers log in far below WeChat's quota; no 429 here.
            .login_rate(0)
            .build()
            .unwrap(),
    )
    .await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Before the fault, during it (until service is back), after it.
const PHASE_BEFORE: u8 = 0;
const PHASE_FAULT: u8 = 1;

/// What the clients saw, by route and status.
#[derive(Default)]
struct Tally {
    statuses: HashMap<(&'static str, u16), usize>,
    /// Tokens handed out by logins while the clients ran, with their openid.
    logged_in: Vec<(String, String)>,
    /// Tokens logged out with 204.
    logged_out: Vec<String>,
    /// Tokens whose logout got 503 (to retry after the fault).
    logout_failed: Vec<String>,
    slowest: Duration,
    /// Logins and logouts that ran wholly inside a total fault.
    inside: usize,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.logged_in.extend(other.logged_in);
        self.logged_out.extend(other.logged_out);
        self.logout_failed.extend(other.logout_failed);
        self.slowest = self.slowest.max(other.slowest);
        self.inside += other.inside;
    }

    fn count(&self, route: &'static str, status: u16) -> usize {
        self.statuses.get(&(route, status)).copied().unwrap_or(0)
    }
}

struct Ctx {
    client: reqwest::Client,
    base: String,
    fake: FakeWeChat,
    before: Vec<(String, String)>,
    phase: AtomicU8,
    stop: AtomicBool,
    seq: AtomicU64,
    /// Whether the fault blocks every store call while it is set (the
    /// proxy's do; `CLIENT KILL` in a loop lets calls through between kills).
    total: bool,
    /// When the fault was fully set, and when its lifting began, in ms from
    /// `epoch` (`u64::MAX` until then).
    epoch: Instant,
    fault_set_ms: AtomicU64,
    fault_lifted_ms: AtomicU64,
}

impl Ctx {
    fn me(&self) -> String {
        format!("{}/api/me", self.base)
    }

    fn ms(&self, at: Instant) -> u64 {
        at.duration_since(self.epoch).as_millis() as u64
    }

    /// Whether a request from `started` to now ran wholly inside a total fault.
    fn inside_total_fault(&self, started: Instant) -> bool {
        self.total
            && self.ms(started) > self.fault_set_ms.load(Ordering::SeqCst)
            && self.ms(Instant::now()) < self.fault_lifted_ms.load(Ordering::SeqCst)
    }
}

/// Checks one outcome of the fault's rules; panics with the details otherwise.
fn check(
    ctx: &Ctx,
    tally: &mut Tally,
    route: &'static str,
    started: Instant,
    status: u16,
    body: &Value,
    ok: u16,
) {
    let elapsed = started.elapsed();
    tally.slowest = tally.slowest.max(elapsed);
    *tally.statuses.entry((route, status)).or_default() += 1;
    assert!(
        elapsed < REQUEST_BOUND,
        "{route} took {elapsed:?} (store timeout {STORE_TIMEOUT:?}); answered {status} {body}"
    );
    // While nothing failed yet, everything must succeed.
    if ctx.phase.load(Ordering::SeqCst) == PHASE_BEFORE {
        assert_eq!(status, ok, "{route} before any fault: {body}");
        return;
    }
    // A write inside a total fault cannot have reached the store.
    if route != "me" && ctx.inside_total_fault(started) {
        assert_eq!(
            status, 503,
            "{route} wholly inside the fault must fail: {body}"
        );
        tally.inside += 1;
    }
    if status == ok {
        return;
    }
    assert_eq!(
        status, 503,
        "{route} during a store fault must answer {ok} or 503, never this: {body}"
    );
    assert_eq!(body["error"], "store_unavailable", "{route}: {body}");
    assert_eq!(
        body["relogin"], false,
        "a store fault must not ask for a new login: {body}"
    );
}

/// One client: reads with an old session, logs in, reads with the new one,
/// and logs every third new session out; until told to stop.
async fn worker(ctx: Arc<Ctx>, w: usize) -> Tally {
    let mut tally = Tally::default();
    let mut round = 0usize;
    while !ctx.stop.load(Ordering::SeqCst) {
        round += 1;
        // A session from before the fault.
        let (token, openid) = &ctx.before[(w + round) % ctx.before.len()];
        let started = Instant::now();
        let (status, body) = get_json(&ctx.client, &ctx.me(), Some(token)).await;
        check(&ctx, &mut tally, "me", started, status, &body, 200);
        if status == 200 {
            assert_eq!(body["openid"], openid.as_str(), "another user's session");
        }

        // A login.
        let n = ctx.seq.fetch_add(1, Ordering::SeqCst);
        let openid = format!("o-load-{w}-{n}");
        let code = ctx.fake.mint_code(&openid);
        let started = Instant::now();
        let res = ctx
            .client
            .post(format!("{}/wx/login", ctx.base))
            .body(format!(r#"{{"code":"{code}"}}"#))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        check(&ctx, &mut tally, "login", started, status, &body, 200);
        let fresh = if status == 200 {
            let token = body["token"].as_str().expect("a 200 login has a token");
            assert_eq!(body["openid"], openid.as_str());
            tally.logged_in.push((token.to_owned(), openid.clone()));
            Some(token.to_owned())
        } else {
            assert!(
                body.get("token").is_none(),
                "a failed login handed out a token: {body}"
            );
            None
        };

        if let Some(token) = fresh {
            let started = Instant::now();
            let (status, body) = get_json(&ctx.client, &ctx.me(), Some(&token)).await;
            check(&ctx, &mut tally, "me", started, status, &body, 200);
            if status == 200 {
                assert_eq!(body["openid"], openid.as_str());
            }
            if round % 3 == 0 {
                let started = Instant::now();
                let res = ctx
                    .client
                    .post(format!("{}/wx/logout", ctx.base))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                check(&ctx, &mut tally, "logout", started, status, &body, 204);
                if status == 204 {
                    tally.logged_out.push(token);
                } else {
                    tally.logout_failed.push(token);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    tally
}

/// How a test injects its fault and ends it.
enum Fault<'a> {
    Proxy(&'a FaultProxy, Mode),
    /// `CLIENT KILL TYPE normal` and `TYPE pubsub` every 25 ms on this port.
    ClientKill(u16),
}

/// Runs clients through a fault: before (all must succeed), during (200/503),
/// until a session from before works again; then checks every session.
/// Returns what the clients saw.
async fn run_through_fault(inst: &Instance, fake: &FakeWeChat, fault: Fault<'_>) -> Tally {
    let client = client();
    let mut before = Vec::new();
    for i in 0..BEFORE {
        let openid = format!("o-before-{i}");
        let token = login(&client, &inst.base, fake, &openid).await;
        before.push((token, openid));
    }
    for (token, openid) in &before {
        let (status, body) = get_json(&client, &inst.me(), Some(token)).await;
        assert_eq!(
            (status, body["openid"].as_str()),
            (200, Some(openid.as_str()))
        );
    }
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        base: inst.base.clone(),
        fake: fake.clone(),
        before: before.clone(),
        phase: AtomicU8::new(PHASE_BEFORE),
        stop: AtomicBool::new(false),
        seq: AtomicU64::new(0),
        total: matches!(fault, Fault::Proxy(..)),
        epoch: Instant::now(),
        fault_set_ms: AtomicU64::new(u64::MAX),
        fault_lifted_ms: AtomicU64::new(u64::MAX),
    });
    let workers: Vec<JoinHandle<Tally>> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(ctx.clone(), w)))
        .collect();

    // Some traffic with a healthy store first.
    tokio::time::sleep(Duration::from_millis(400)).await;
    ctx.phase.store(PHASE_FAULT, Ordering::SeqCst);
    let fault_started = Instant::now();
    match fault {
        Fault::Proxy(proxy, mode) => {
            proxy.set(mode).await;
            ctx.fault_set_ms
                .store(ctx.ms(Instant::now()), Ordering::SeqCst);
            tokio::time::sleep(FAULT).await;
            ctx.fault_lifted_ms
                .store(ctx.ms(Instant::now()), Ordering::SeqCst);
            proxy.set(Mode::Pass).await;
        }
        Fault::ClientKill(port) => {
            let killed = tokio::task::spawn_blocking(move || {
                let mut killed = 0i64;
                while fault_started.elapsed() < FAULT {
                    for kind in ["normal", "pubsub"] {
                        killed += client_kill(port, kind);
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                killed
            })
            .await
            .unwrap();
            assert!(killed > 0, "CLIENT KILL found no connection to kill");
            eprintln!("CLIENT KILL closed {killed} connections in {FAULT:?}");
        }
    }
    let ended = Instant::now();

    // Service comes back by itself, with the clients still running.
    let (token, _) = &before[0];
    let (back, body) =
        wait_for_status(&client, &inst.me(), token, 200, Duration::from_secs(15)).await;
    assert_eq!(body["openid"], before[0].1);
    eprintln!(
        "fault lasted {:?}; a session from before worked again {back:?} after it ended",
        ended - fault_started
    );
    // Let the clients run a little on the recovered store.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.stop.store(true, Ordering::SeqCst);
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await.expect("a client panicked"));
    }
    eprintln!(
        "statuses {:?}; logins {}; logouts {} (+{} failed); {} writes wholly inside the fault; slowest request {:?}",
        tally.statuses,
        tally.logged_in.len(),
        tally.logged_out.len(),
        tally.logout_failed.len(),
        tally.inside,
        tally.slowest
    );

    // Nothing stored before the fault was lost.
    for (token, openid) in &before {
        let (status, body) = get_json(&client, &inst.me(), Some(token)).await;
        assert_eq!(
            (status, body["openid"].as_str()),
            (200, Some(openid.as_str())),
            "a session from before the fault: {body}"
        );
    }
    // Every token a login handed out was stored.
    let out: std::collections::HashSet<&String> = tally
        .logged_out
        .iter()
        .chain(&tally.logout_failed)
        .collect();
    for (token, openid) in &tally.logged_in {
        if out.contains(token) {
            continue;
        }
        let (status, body) = get_json(&client, &inst.me(), Some(token)).await;
        assert_eq!(
            (status, body["openid"].as_str()),
            (200, Some(openid.as_str())),
            "a login answered 200 but its session is not there: {body}"
        );
    }
    // A logout that failed can be retried; a logged-out token stays out.
    for token in &tally.logout_failed {
        assert_eq!(logout(&client, &inst.base, token).await, 204);
    }
    for token in tally.logged_out.iter().chain(&tally.logout_failed) {
        let (status, body) = get_json(&client, &inst.me(), Some(token)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "a logged-out token: {body}"
        );
    }
    // And a fresh login works.
    let fresh = login(&client, &inst.base, fake, "o-after").await;
    assert_eq!(get_json(&client, &inst.me(), Some(&fresh)).await.0, 200);
    assert!(tally.count("me", 200) > 0 && tally.count("login", 200) > 0);
    if ctx.total {
        assert!(
            tally.inside > 0,
            "no login or logout ran wholly inside the fault: {:?}",
            tally.statuses
        );
    }
    tally
}

/// `CLIENT KILL TYPE <kind>` on the Redis at `port`; how many it closed.
fn client_kill(port: u16, kind: &str) -> i64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "CLIENT", "KILL", "TYPE", kind])
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

async fn start_redis() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_redis_that_refuses_fails_fast_with_an_error() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let result = RedisStore::connect(&format!("redis://127.0.0.1:{port}")).await;
    let elapsed = started.elapsed();
    let err = result.expect_err("nothing listens there");
    assert!(err.to_string().contains("redis"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_give_503_and_lose_nothing() {
    let redis = start_redis().await;
    let proxy = FaultProxy::start(redis.port()).await;
    let fake = fake_wechat().await;
    let inst = instance(&proxy.url(), &fake).await;
    let tally = run_through_fault(&inst, &fake, Fault::Proxy(&proxy, Mode::Refuse)).await;
    assert!(
        tally.count("me", 503) > 0 && tally.count("login", 503) > 0,
        "the fault was never seen: {:?}",
        tally.statuses
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_cut_mid_command_give_503_and_no_unstored_token() {
    let redis = start_redis().await;
    let proxy = FaultProxy::start(redis.port()).await;
    let fake = fake_wechat().await;
    let inst = instance(&proxy.url(), &fake).await;
    let accepted = proxy.accepted();
    let tally = run_through_fault(&inst, &fake, Fault::Proxy(&proxy, Mode::CutReplies)).await;
    assert!(
        tally.count("me", 503) > 0 && tally.count("login", 503) > 0,
        "the fault was never seen: {:?}",
        tally.statuses
    );
    // The app reconnected after each cut.
    assert!(
        proxy.accepted() > accepted + 1,
        "no reconnection went through the proxy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_where_reconnects_hang_gives_503_within_the_timeout() {
    let redis = start_redis().await;
    let proxy = FaultProxy::start(redis.port()).await;
    let fake = fake_wechat().await;
    let inst = instance(&proxy.url(), &fake).await;
    let tally = run_through_fault(&inst, &fake, Fault::Proxy(&proxy, Mode::BlackHole)).await;
    assert!(
        tally.count("me", 503) > 0 && tally.count("login", 503) > 0,
        "the fault was never seen: {:?}",
        tally.statuses
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_in_a_loop_gives_only_200_or_503_and_loses_nothing() {
    let redis = start_redis().await;
    let fake = fake_wechat().await;
    let inst = instance(&redis.url(), &fake).await;
    run_through_fault(&inst, &fake, Fault::ClientKill(redis.port())).await;
}

/// Guards against a proxy that passes nothing: a plain run through it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_passes_traffic_when_no_fault_is_set() {
    let redis = start_redis().await;
    let proxy = FaultProxy::start(redis.port()).await;
    let fake = fake_wechat().await;
    let inst = instance(&proxy.url(), &fake).await;
    let client = client();
    let token = login(&client, &inst.base, &fake, "o-pass").await;
    tokio::time::sleep(Duration::from_millis(400)).await; // past the cache TTL
    let (status, body) = get_json(&client, &inst.me(), Some(&token)).await;
    assert_eq!((status, body["openid"].as_str()), (200, Some("o-pass")));
    assert!(
        proxy.accepted() >= 2,
        "the app and its subscriber connect through it"
    );
}
