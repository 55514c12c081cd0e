//! A hostile WeChat: the login route over real HTTP on loopback against
//! replies that a real network produces on a bad day. Each case checks the
//! four things a client and an operator rely on:
//!
//! 1. the client gets the error-table row it can act on (status, `error`,
//!    `relogin`, `Retry-After` only on 429), in the default wire format;
//! 2. within the WeChat deadline (with a generous margin for a loaded machine);
//! 3. no panic in the test's own server (a panic hook records the thread of
//!    each; another test's panic does not count here), and the server keeps
//!    serving: a normal login works right after;
//! 4. nothing is stored: the counting store saw no `create`, and the memory
//!    store behind it holds no session.
//!
//! `tests/login_route.rs` already maps WeChat's error codes (numbers and
//! strings), busy retries, a slow reply and non-JSON bodies to the error
//! table; this file adds what it leaves out: huge and endless replies,
//! dripping bodies, reset connections, empty bodies, 5xx replies with JSON
//! bodies (success-shaped ones included), late replies after the deadline,
//! and the store check on every one of them. The fake WeChat plays most of
//! the roles; a few raw TCP servers here play the ones it cannot (a body
//! that never ends, or arrives one byte at a time).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wxlogin::mock::{FakeReply, FakeWeChat};
use wxlogin::WxLoginBuilder;

use common::{
    app, assert_rejection, builder_at, fake_wechat, serve, CountingStore, Reply, APP_SECRET,
};

/// The overall WeChat deadline of these tests.
const DEADLINE: Duration = Duration::from_secs(4);
/// One attempt's limit: three attempts and their pauses (at most 225 ms)
/// fit in the deadline with seconds to spare, so in the rig the attempt
/// limit, not the deadline, ends a slow attempt.
const ATTEMPT: Duration = Duration::from_millis(500);
/// Attempts per exchange.
const ATTEMPTS: u32 = 3;
/// Slack on top of the deadline for a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(5);
/// The largest reply the client reads (the builder's fixed 64 KiB).
const MAX_REPLY: usize = 64 * 1024;
/// A code of the real shape, for WeChats that answer whatever it is.
const ANY_CODE: &str = "0716AVll20uHk94SLDml27etM946AVlq";

// ---------------------------------------------------------------- panic count

/// The threads of this process's tests (each `#[tokio::test]` runs its
/// current-thread runtime, and so its server, fake and client tasks, on the
/// test's own thread), and the thread of every panic so far.
#[derive(Default)]
struct Panics {
    tests: HashSet<ThreadId>,
    seen: Vec<(ThreadId, String)>,
}

fn panics() -> MutexGuard<'static, Panics> {
    static PANICS: OnceLock<Mutex<Panics>> = OnceLock::new();
    // A panic while the lock is held must not fail every later test.
    PANICS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records the thread of every panic in this test process, then prints it
/// as usual (the hook is installed once), and registers the calling test.
fn count_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = thread::current();
            let name = thread.name().unwrap_or("unnamed").to_owned();
            panics().seen.push((thread.id(), name));
            previous(info);
        }));
    });
    panics().tests.insert(thread::current().id());
}

/// No panic on this test's thread, nor on a thread that belongs to no test
/// (a runtime worker, a blocking pool): another test's failed assertion
/// does not fail this one.
fn assert_no_panic() {
    let me = thread::current().id();
    let mine: Vec<String> = {
        // Released before asserting: the hook takes the same lock.
        let p = panics();
        p.seen
            .iter()
            .filter(|(id, _)| *id == me || !p.tests.contains(id))
            .map(|(_, name)| name.clone())
            .collect()
    };
    assert!(mine.is_empty(), "something panicked, on threads {mine:?}");
}

// ---------------------------------------------------------------- rig

/// An app on loopback with a counting store, talking to `api_base`.
struct Rig {
    store: CountingStore,
    base: String,
    client: reqwest::Client,
}

/// The common builder with `store` and the WeChat limits of these tests,
/// talking to `api_base`.
fn configured(api_base: String, store: &CountingStore) -> WxLoginBuilder<()> {
    builder_at(api_base)
        .store(store.clone())
        .wechat_timeouts(Duration::from_secs(1), ATTEMPT, DEADLINE)
        .wechat_attempts(ATTEMPTS)
}

async fn rig_for(api_base: String) -> Rig {
    rig_timed(api_base, ATTEMPT, DEADLINE).await
}

/// A rig whose WeChat client has its own attempt limit and deadline.
async fn rig_timed(api_base: String, attempt: Duration, deadline: Duration) -> Rig {
    count_panics();
    let store = CountingStore::new();
    let wx = configured(api_base, &store)
        .wechat_timeouts(Duration::from_secs(1), attempt, deadline)
        .build()
        .unwrap();
    Rig {
        store,
        base: serve(app(&wx)).await,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

async fn rig() -> (FakeWeChat, Rig) {
    let fake = fake_wechat().await;
    let rig = rig_for(fake.base_url()).await;
    (fake, rig)
}

/// What the client saw (its body as JSON, Null if not JSON), and how long
/// it waited.
struct Timed {
    reply: Reply,
    body: Value,
    elapsed: Duration,
}

impl std::ops::Deref for Timed {
    type Target = Reply;
    fn deref(&self) -> &Reply {
        &self.reply
    }
}

impl Rig {
    async fn login(&self, code: &str) -> Timed {
        let started = Instant::now();
        let res = self
            .client
            .post(format!("{}/wx/login", self.base))
            .header("content-type", "application/json")
            .body(json!({ "code": code }).to_string())
            .send()
            .await
            .expect("the server answered (no dropped connection)");
        let reply = Reply::of(res).await;
        Timed {
            body: serde_json::from_str(&reply.text).unwrap_or(Value::Null),
            reply,
            elapsed: started.elapsed(),
        }
    }

    fn creates(&self) -> usize {
        self.store.creates.load(Ordering::SeqCst)
    }

    /// Nothing stored: no create call, and no session in the store.
    fn assert_nothing_stored(&self, what: &str) {
        assert_eq!(self.creates(), 0, "{what}: a session was created");
        assert_eq!(
            self.store.inner.len(),
            0,
            "{what}: the store holds a session"
        );
    }

    /// A normal login after the hostile one works, and its token opens /api/me.
    async fn assert_still_serves(&self, fake: &FakeWeChat, openid: &str) {
        let before = self.creates();
        let reply = self.login(&fake.mint_code(openid)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["openid"], openid);
        let token = reply.body["token"].as_str().unwrap();
        let me = self
            .client
            .get(format!("{}/api/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        assert_eq!(self.creates(), before + 1);
        assert_eq!(self.store.inner.len(), before + 1);
    }
}

/// Asserts the error-table row, the wire format and the time bound.
fn assert_row(what: &str, reply: &Timed, status: u16, code: &str, relogin: bool) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert_eq!(reply.body["error"], code, "{what}: {}", reply.text);
    // The default wire format: body, relogin, WWW-Authenticate, Retry-After.
    assert_rejection(reply, status, code, relogin);
    assert!(
        reply.elapsed < DEADLINE + MARGIN,
        "{what}: answered after {:?}",
        reply.elapsed
    );
    // Whatever WeChat sent never reaches the client.
    for leaked in ["html", "Gateway", "o-mallory", "session_key", APP_SECRET] {
        assert!(!reply.text.contains(leaked), "{what}: {}", reply.text);
    }
}

/// Queues `replies` in front of the fake's normal behaviour, logs in once,
/// and checks the row, the WeChat call count and that nothing was stored.
async fn hostile(what: &str, replies: &[FakeReply], row: Row, calls: usize) -> (FakeWeChat, Rig) {
    let (fake, rig) = rig().await;
    for reply in replies {
        fake.push_reply(reply.clone());
    }
    let reply = rig.login(&fake.mint_code("o-alice")).await;
    assert_row(what, &reply, row.0, row.1, row.2);
    assert_eq!(fake.code2session_calls(), calls, "{what}: WeChat calls");
    rig.assert_nothing_stored(what);
    assert_no_panic();
    (fake, rig)
}

/// An error-table row: status, `error` code, `relogin`.
type Row = (u16, &'static str, bool);

const UNAVAILABLE: Row = (503, "wechat_unavailable", false);

fn repeat(reply: FakeReply) -> Vec<FakeReply> {
    vec![reply; ATTEMPTS as usize]
}

// ---------------------------------------------------------------- raw servers

/// A WeChat that answers every request with `head` and then `body_chunk`
/// forever (or until the client goes away), pausing `pause` between chunks.
struct RawWeChat {
    base: String,
    /// Body bytes written, over all connections.
    written: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
    /// Set once a write failed: the client closed the connection.
    client_gone: Arc<AtomicBool>,
}

async fn raw_wechat(head: &'static str, body_chunk: Vec<u8>, pause: Duration) -> RawWeChat {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let client_gone = Arc::new(AtomicBool::new(false));
    let (w, c, g) = (written.clone(), connections.clone(), client_gone.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (w, g, chunk) = (w.clone(), g.clone(), body_chunk.clone());
            tokio::spawn(async move {
                // Read the request head (a GET: no body).
                let mut buf = Vec::new();
                let mut byte = [0u8; 1024];
                while !buf.windows(4).any(|win| win == b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&byte[..n]),
                    }
                }
                if stream.write_all(head.as_bytes()).await.is_err() {
                    g.store(true, Ordering::SeqCst);
                    return;
                }
                loop {
                    if stream.write_all(&chunk).await.is_err() {
                        g.store(true, Ordering::SeqCst);
                        return;
                    }
                    w.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            });
        }
    });
    RawWeChat {
        base: format!("http://{addr}"),
        written,
        connections,
        client_gone,
    }
}

impl RawWeChat {
    /// Waits (up to 10 s) until the client has closed the connection.
    async fn wait_client_gone(&self) {
        let started = Instant::now();
        while !self.client_gone.load(Ordering::SeqCst) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the client kept reading: {} bytes so far",
                self.written.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A 16 KiB chunk of what looks like the start of a success reply's padding.
fn padding_chunk() -> Vec<u8> {
    b"x".repeat(16 * 1024)
}

// ---------------------------------------------------------------- huge replies

#[tokio::test]
async fn a_huge_reply_is_refused_after_a_bounded_read_and_not_retried() {
    // 1 MiB of a success-shaped reply, from the fake: too long, so refused
    // whole, even though it holds an openid and a session_key.
    let huge = format!(
        r#"{{"openid":"o-mallory","session_key":"k","pad":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let (fake, rig) = hostile(
        "1 MiB reply",
        &[FakeReply::Body(huge)],
        UNAVAILABLE,
        // The same reply would come again: a huge reply is not retried.
        1,
    )
    .await;
    rig.assert_still_serves(&fake, "o-bob").await;
    assert_no_panic();
}

#[tokio::test]
async fn an_endless_reply_is_cut_off_at_the_read_limit() {
    // 200, chunked, and a body that never ends.
    let raw = raw_wechat(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
        {
            let chunk = padding_chunk();
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            framed
        },
        Duration::ZERO,
    )
    .await;
    let rig = rig_for(raw.base.clone()).await;
    let reply = rig.login(ANY_CODE).await;
    assert_row(
        "endless chunked reply",
        &reply,
        503,
        "wechat_unavailable",
        false,
    );
    raw.wait_client_gone().await;
    // The client stopped at 64 KiB; what the server got out is that plus
    // what the loopback socket buffers absorbed, nowhere near unbounded.
    let written = raw.written.load(Ordering::SeqCst);
    assert!(written >= MAX_REPLY as u64, "{written}");
    assert!(written < 64 * 1024 * 1024, "read {written} bytes");
    assert_eq!(raw.connections.load(Ordering::SeqCst), 1, "retried");
    rig.assert_nothing_stored("endless chunked reply");
    assert_no_panic();
}

#[tokio::test]
async fn a_declared_huge_length_is_refused_before_reading_the_body() {
    let raw = raw_wechat(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n",
        padding_chunk(),
        Duration::ZERO,
    )
    .await;
    let rig = rig_for(raw.base.clone()).await;
    let reply = rig.login(ANY_CODE).await;
    assert_row(
        "1 GiB content-length",
        &reply,
        503,
        "wechat_unavailable",
        false,
    );
    raw.wait_client_gone().await;
    assert!(raw.written.load(Ordering::SeqCst) < 64 * 1024 * 1024);
    assert_eq!(raw.connections.load(Ordering::SeqCst), 1, "retried");
    rig.assert_nothing_stored("1 GiB content-length");
    assert_no_panic();
}

// ---------------------------------------------------------------- slow replies

#[tokio::test]
async fn a_reply_dripping_one_byte_at_a_time_times_out_at_each_attempts_limit() {
    // Headers at once, then a byte every 100 ms of a 200-byte body (20 s):
    // the attempt limit covers the body too, so each attempt is cut at its
    // own limit and retried; all three fit in the rig's deadline.
    let raw = raw_wechat(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 200\r\n\r\n",
        b" ".to_vec(),
        Duration::from_millis(100),
    )
    .await;
    let rig = rig_for(raw.base.clone()).await;
    let reply = rig.login(ANY_CODE).await;
    assert_row("dripping body", &reply, 503, "wechat_unavailable", false);
    assert_eq!(
        raw.connections.load(Ordering::SeqCst),
        ATTEMPTS as usize,
        "every attempt was cut at its limit and retried"
    );
    assert!(
        reply.elapsed >= ATTEMPT * ATTEMPTS,
        "three attempts cut at {ATTEMPT:?} each took only {:?}",
        reply.elapsed
    );
    raw.wait_client_gone().await;
    rig.assert_nothing_stored("dripping body");
    assert_no_panic();
}

/// Which limit ended a call to a WeChat slower than every limit, told
/// apart by what can be observed: the attempts WeChat received, and how
/// long the client waited measured against the limits. A timer never fires
/// early, so the lower bounds hold on any machine; the upper bounds leave
/// seconds of slack.
#[tokio::test]
async fn slow_attempts_end_at_the_attempt_limit_three_times_when_the_deadline_is_far() {
    let attempt = Duration::from_millis(300);
    // Under the client's 30 s timeout, so a missing attempt limit shows as
    // a 503 after 20 s rather than a dropped request.
    let deadline = Duration::from_secs(20);
    let fake = fake_wechat().await;
    let rig = rig_timed(fake.base_url(), attempt, deadline).await;
    fake.set_latency(Duration::from_secs(60));
    let reply = rig.login(&fake.mint_code("o-alice")).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.body["error"], "wechat_unavailable", "{}", reply.text);
    // Three attempts, each cut at its limit: at least 900 ms in all, and
    // far less than the deadline, which never came into play.
    assert_eq!(fake.code2session_calls(), ATTEMPTS as usize);
    assert!(reply.elapsed >= attempt * ATTEMPTS, "{:?}", reply.elapsed);
    assert!(
        reply.elapsed < deadline / 2,
        "waited {:?}: the deadline, not the attempt limit, ended it",
        reply.elapsed
    );
    rig.assert_nothing_stored("slow every time, far deadline");
    fake.set_latency(Duration::ZERO);
    rig.assert_still_serves(&fake, "o-bob").await;
    assert_no_panic();
}

#[tokio::test]
async fn the_deadline_ends_slow_attempts_before_three_full_ones() {
    // Three full attempts would take 4.5 s; the deadline cuts the second
    // one at 2.5 s, and no third is made.
    let attempt = Duration::from_millis(1500);
    let deadline = Duration::from_millis(2500);
    let fake = fake_wechat().await;
    let rig = rig_timed(fake.base_url(), attempt, deadline).await;
    fake.set_latency(Duration::from_secs(60));
    let reply = rig.login(&fake.mint_code("o-alice")).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.body["error"], "wechat_unavailable", "{}", reply.text);
    assert_eq!(
        fake.code2session_calls(),
        2,
        "the first attempt ends at its limit, the second at the deadline"
    );
    assert!(reply.elapsed >= deadline, "{:?}", reply.elapsed);
    assert!(
        reply.elapsed < attempt * ATTEMPTS,
        "waited {:?}, as long as three full attempts: the deadline did not end the call",
        reply.elapsed
    );
    rig.assert_nothing_stored("slow every time, near deadline");
    fake.set_latency(Duration::ZERO);
    rig.assert_still_serves(&fake, "o-bob").await;
    assert_no_panic();
}

/// A WeChat that reads one request, waits `delay`, then answers `body`
/// (200, JSON) on that connection. It reports whether the client hung up
/// before the answer was due.
async fn late_wechat(delay: Duration, body: &'static str) -> (String, oneshot::Receiver<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let hung_up = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            read = stream.read(&mut buf) => matches!(read, Ok(0) | Err(_)),
        };
        let _ = tx.send(hung_up);
        if !hung_up {
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (base, rx)
}

#[tokio::test]
async fn a_success_arriving_after_the_deadline_stores_nothing_later() {
    // WeChat consumes the code and answers a success, but only after the
    // deadline: the client must have given the call up by then (closed the
    // connection, so the late answer cannot reach it), and stored nothing.
    let (base, hung_up) = late_wechat(
        Duration::from_millis(1500),
        r#"{"openid":"o-alice","session_key":"a2V5a2V5a2V5a2V5a2V5aw=="}"#,
    )
    .await;
    let store = CountingStore::new();
    count_panics();
    let wx = configured(base, &store)
        .wechat_timeouts(
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_millis(800),
        )
        .build()
        .unwrap();
    let app = Router::new().route_service("/wx/login", wx.login_service());
    let rig = Rig {
        store,
        base: serve(app).await,
        client: reqwest::Client::new(),
    };
    let reply = rig.login(ANY_CODE).await;
    assert_row("late success", &reply, 503, "wechat_unavailable", false);
    let hung_up = tokio::time::timeout(Duration::from_secs(10), hung_up)
        .await
        .expect("the late WeChat got its request")
        .unwrap();
    assert!(
        hung_up,
        "the client still waited for WeChat past its deadline"
    );
    rig.assert_nothing_stored("late success");
    assert_no_panic();
}

// ---------------------------------------------------------------- broken connections

#[tokio::test]
async fn a_reset_connection_every_time_is_503_after_the_attempts() {
    let (fake, rig) = hostile(
        "reset every time",
        &repeat(FakeReply::Reset),
        UNAVAILABLE,
        ATTEMPTS as usize,
    )
    .await;
    rig.assert_still_serves(&fake, "o-bob").await;
}

#[tokio::test]
async fn a_single_reset_is_retried_to_a_stored_session() {
    let (fake, rig) = rig().await;
    fake.push_reply(FakeReply::Reset);
    let reply = rig.login(&fake.mint_code("o-alice")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["openid"], "o-alice");
    assert_eq!(fake.code2session_calls(), 2);
    assert_eq!(rig.creates(), 1);
    assert_no_panic();
}

#[tokio::test]
async fn a_wechat_that_is_not_listening_is_503() {
    // Bind, learn the port, close: connections are refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let rig = rig_for(base).await;
    let reply = rig.login(ANY_CODE).await;
    assert_row(
        "connection refused",
        &reply,
        503,
        "wechat_unavailable",
        false,
    );
    rig.assert_nothing_stored("connection refused");
    assert_no_panic();
}

// ---------------------------------------------------------------- odd bodies

#[tokio::test]
async fn html_error_pages_are_503_and_store_nothing() {
    let page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>\
                <body><center><h1>502 Bad Gateway</h1></center><hr>nginx</body></html>";
    // A 200 with a page (a captive portal or a misrouted proxy) and a 502
    // page are retried; a 404 page is final.
    hostile(
        "200 HTML page",
        &repeat(FakeReply::Body(page.into())),
        UNAVAILABLE,
        3,
    )
    .await;
    hostile(
        "502 HTML page",
        &repeat(FakeReply::Status(502, page.into())),
        UNAVAILABLE,
        3,
    )
    .await;
    let (fake, rig) = hostile(
        "404 HTML page",
        &[FakeReply::Status(404, page.into())],
        UNAVAILABLE,
        1,
    )
    .await;
    rig.assert_still_serves(&fake, "o-bob").await;
}

#[tokio::test]
async fn empty_bodies_are_503_and_store_nothing() {
    hostile(
        "200 empty",
        &repeat(FakeReply::Body(String::new())),
        UNAVAILABLE,
        3,
    )
    .await;
    hostile(
        "204 no content",
        &repeat(FakeReply::Status(204, String::new())),
        UNAVAILABLE,
        3,
    )
    .await;
    let (fake, rig) = hostile(
        "whitespace only",
        &repeat(FakeReply::Body(" \r\n\t ".into())),
        UNAVAILABLE,
        3,
    )
    .await;
    rig.assert_still_serves(&fake, "o-bob").await;
}

#[tokio::test]
async fn truncated_json_is_503_and_stores_nothing() {
    // Everything a success needs is there but the closing brace.
    let cut = r#"{"openid":"o-mallory","session_key":"a2V5a2V5a2V5a2V5a2V5aw==""#;
    for (what, body) in [
        ("truncated success", cut.to_owned()),
        ("truncated errcode", r#"{"errcode":400"#.to_owned()),
        ("truncated mid-string", r#"{"openid":"o-mall"#.to_owned()),
        ("lone brace", "{".to_owned()),
    ] {
        hostile(
            what,
            &repeat(FakeReply::Body(body)),
            UNAVAILABLE,
            ATTEMPTS as usize,
        )
        .await;
    }
    // A success without a session_key is complete JSON but unusable; WeChat
    // may have consumed the code, so it is final.
    hostile(
        "no session_key",
        &[FakeReply::Body(r#"{"openid":"o-mallory"}"#.into())],
        UNAVAILABLE,
        1,
    )
    .await;
}

#[tokio::test]
async fn errcode_as_an_odd_string_is_handled_and_stores_nothing() {
    // Numeric strings map like numbers (also in login_route.rs); these add
    // the store check and the strings that are not numbers.
    let cases: [(&str, Vec<FakeReply>, Row, usize); 6] = [
        (
            "\"40029\"",
            vec![FakeReply::ErrcodeAsString(40029)],
            (400, "invalid_code", true),
            1,
        ),
        (
            "\"45011\"",
            vec![FakeReply::ErrcodeAsString(45011)],
            (429, "rate_limited", false),
            1,
        ),
        (
            "\"40013\"",
            vec![FakeReply::ErrcodeAsString(40013)],
            (500, "misconfigured", false),
            1,
        ),
        (
            "\"-1\" every time",
            repeat(FakeReply::ErrcodeAsString(-1)),
            UNAVAILABLE,
            3,
        ),
        (
            "non-numeric errcode",
            repeat(FakeReply::Body(
                r#"{"errcode":"busy","errmsg":"system error"}"#.into(),
            )),
            UNAVAILABLE,
            3,
        ),
        (
            "errcode string with a success body",
            repeat(FakeReply::Body(
                r#"{"errcode":"oops","openid":"o-mallory","session_key":"k"}"#.into(),
            )),
            UNAVAILABLE,
            3,
        ),
    ];
    for (what, replies, row, calls) in cases {
        hostile(what, &replies, row, calls).await;
    }
}

#[tokio::test]
async fn a_5xx_with_a_json_body_is_503_whatever_the_body_says() {
    // The status wins: a 500 is never read as a success, nor as an errcode.
    let cases = [
        (
            "500 success-shaped",
            r#"{"errcode":0,"openid":"o-mallory","session_key":"a2V5a2V5a2V5a2V5a2V5aw=="}"#,
        ),
        (
            "500 errcode 40029",
            r#"{"errcode":40029,"errmsg":"invalid code"}"#,
        ),
        (
            "500 errcode -1",
            r#"{"errcode":-1,"errmsg":"system error"}"#,
        ),
        ("500 empty object", "{}"),
    ];
    for (what, body) in cases {
        hostile(
            what,
            &repeat(FakeReply::Status(500, body.into())),
            UNAVAILABLE,
            ATTEMPTS as usize,
        )
        .await;
    }
    // One 500 then the normal reply: retried to a real session.
    let (fake, rig) = rig().await;
    fake.push_reply(FakeReply::Status(500, cases[0].1.into()));
    let reply = rig.login(&fake.mint_code("o-alice")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["openid"], "o-alice", "the 500's body was used");
    assert_eq!(rig.creates(), 1);
    assert_no_panic();
}

// ---------------------------------------------------------------- redirects and numbers

/// A second loopback listener that must never be reached: it counts the
/// connections it accepts (and answers a success, so that a client that
/// followed a redirect to it would visibly log in).
struct Trap {
    base: String,
    connections: Arc<AtomicUsize>,
}

async fn trap() -> Trap {
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let body = r#"{"openid":"o-mallory","session_key":"a2V5a2V5a2V5a2V5a2V5aw==","access_token":"AT-stolen","expires_in":7200}"#;
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    Trap { base, connections }
}

/// A WeChat that answers every request with `status` and `Location: target`
/// plus the path and query it was asked for (what a hijacked API base would send).
async fn redirecting_wechat(status: u16, target: String) -> String {
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let target = target.clone();
        async move {
            let location = format!(
                "{target}{}",
                uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [(axum::http::header::LOCATION, location)],
                "",
            )
        }
    });
    serve(app).await
}

#[tokio::test]
async fn a_redirect_from_wechat_is_never_followed() {
    // A 3xx from the API base would re-send the request, and its query holds
    // the app secret, to wherever it points. None is followed; each is a
    // final `wechat_unavailable`, and the target never sees a connection.
    count_panics();
    for status in [301, 302, 303, 307, 308] {
        let trap = trap().await;
        let base = redirecting_wechat(status, trap.base.clone()).await;
        let rig = rig_for(base.clone()).await;
        let reply = rig.login("0716AVll20uHk94SLDml27etM946AVlq").await;
        let what = format!("{status} redirect");
        assert_row(&what, &reply, 503, "wechat_unavailable", false);
        rig.assert_nothing_stored(&what);

        // The access token call (the secret in a POST body) does not follow either.
        let store = CountingStore::new();
        let wx = configured(base, &store).build().unwrap();
        let err = wx.access_token().await.unwrap_err();
        assert!(
            matches!(err, wxlogin::WeChatApiError::Unavailable { .. }),
            "{what}: {err:?}"
        );
        assert_eq!(
            trap.connections.load(Ordering::SeqCst),
            0,
            "{what}: followed"
        );
    }
    assert_no_panic();
}

/// A WeChat whose `stable_token` answers `expires_in` as the given JSON
/// number text; counts the calls.
async fn stable_token_wechat(expires_in: &'static str) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/cgi-bin/stable_token",
        axum::routing::post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain")],
                    format!(r#"{{"access_token":"AT-huge-lifetime","expires_in":{expires_in}}}"#),
                )
            }
        }),
    );
    (serve(app).await, calls)
}

#[tokio::test]
async fn a_huge_expires_in_is_clamped_not_overflowed() {
    // Tests run in debug builds, where `expires_in * 1000` on u64::MAX panics.
    count_panics();
    for expires_in in ["18446744073709551615", "18446744073709551", "0"] {
        let (base, calls) = stable_token_wechat(expires_in).await;
        let store = CountingStore::new();
        let wx = configured(base, &store).build().unwrap();
        let token = wx.access_token().await.expect(expires_in);
        assert_eq!(token.expose(), "AT-huge-lifetime");
        // Cached: the clamped lifetime is still in the future.
        wx.access_token().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "expires_in {expires_in}");
    }
    assert_no_panic();
}
