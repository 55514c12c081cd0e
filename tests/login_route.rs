//! The login route over real HTTP on loopback against the fake WeChat: the
//! success body, what it accepts and refuses, body limits, and how WeChat's
//! failures (busy, slow, rate limited, odd replies) reach the client. Last,
//! the same route served by plain hyper, without axum.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use wxlogin::mock::{FakeReply, FakeWeChat};
use wxlogin::{LoginService, WxLoginBuilder};

use common::{app, assert_rejection, builder, fake_wechat, keys, serve, Reply};

/// The login body limit of the contract (the builder's default).
const BODY_LIMIT: usize = 16 * 1024;

/// Asserts a successful login body; returns it.
fn assert_logged_in(reply: &Reply, openid: &str, unionid: Option<&str>) -> Value {
    assert_eq!(reply.status, 200, "body: {}", reply.text);
    let body = reply.json();
    assert_eq!(
        keys(&body),
        ["expires_in", "openid", "token", "unionid"],
        "{body}"
    );
    assert_eq!(body["openid"], openid);
    assert_eq!(body["unionid"], json!(unionid));
    let token = body["token"].as_str().unwrap();
    assert!(!token.is_empty() && token.len() < 100, "{token}");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0), "{body}");
    body
}

/// A fake WeChat and an app on loopback, built from `configure(builder)`.
async fn setup(
    configure: impl FnOnce(WxLoginBuilder<()>) -> WxLoginBuilder<()>,
) -> (FakeWeChat, String) {
    let fake = fake_wechat().await;
    let wx = configure(builder(&fake)).build().unwrap();
    let base = serve(app(&wx)).await;
    (fake, base)
}

async fn post(base: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/wx/login"))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    Reply::of(req.send().await.unwrap()).await
}

async fn login_code(base: &str, code: &str) -> Reply {
    post(
        base,
        Some("application/json"),
        json!({ "code": code }).to_string(),
    )
    .await
}

// ---------------------------------------------------------------- success

#[tokio::test]
async fn success_body_is_token_expires_in_openid_unionid_and_never_the_session_key() {
    let (fake, base) = setup(|b| b.session_ttl(Duration::from_secs(3600))).await;

    let reply = login_code(&base, &fake.mint_code("o-alice")).await;
    let body = assert_logged_in(&reply, "o-alice", None);
    assert!(body["unionid"].is_null());
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let session_key = fake.session_key("o-alice").expect("the fake minted a key");
    assert!(!reply.text.contains(&session_key), "{}", reply.text);
    assert!(!reply.text.contains("session_key"), "{}", reply.text);

    let code = fake.mint_code_with_unionid("o-bob", "u-bob");
    let reply = login_code(&base, &code).await;
    let body = assert_logged_in(&reply, "o-bob", Some("u-bob"));
    let session_key = fake.session_key("o-bob").unwrap();
    assert!(!reply.text.contains(&session_key), "{}", reply.text);

    // The token opens the protected route as that user.
    let res = reqwest::Client::new()
        .get(format!("{base}/api/me"))
        .bearer_auth(body["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let me = Reply::of(res).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json(), json!({"openid": "o-bob", "unionid": "u-bob"}));
    assert!(!me.text.contains(&session_key));
}

#[tokio::test]
async fn the_body_is_json_whatever_the_content_type() {
    let (fake, base) = setup(|b| b).await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let body = json!({ "code": fake.mint_code("o-alice") }).to_string();
        let reply = post(&base, content_type, body).await;
        assert_logged_in(&reply, "o-alice", None);
    }
    assert_eq!(fake.code2session_calls(), 4);
}

// ---------------------------------------------------------------- refused input

#[tokio::test]
async fn bad_bodies_are_400_bad_request_without_calling_wechat() {
    let (fake, base) = setup(|b| b).await;
    let long_code = json!({ "code": "a".repeat(10 * 1024) }).to_string();
    assert!(long_code.len() < BODY_LIMIT);
    let bodies = [
        ("empty body", String::new()),
        ("not JSON", "code=abc".to_owned()),
        ("truncated JSON", r#"{"code":"abc""#.to_owned()),
        ("JSON array", r#"["abc"]"#.to_owned()),
        ("JSON string", r#""abc""#.to_owned()),
        ("no code", r#"{"js_code":"abc"}"#.to_owned()),
        ("code null", r#"{"code":null}"#.to_owned()),
        ("code number", r#"{"code":12345}"#.to_owned()),
        ("code object", r#"{"code":{"v":"abc"}}"#.to_owned()),
        ("empty code", r#"{"code":""}"#.to_owned()),
        ("10 KB code", long_code),
        ("code with a space", r#"{"code":"abc def"}"#.to_owned()),
        ("code with a tab", r#"{"code":"abc\tdef"}"#.to_owned()),
        (
            "code with a control char",
            r#"{"code":"abc\u0001def"}"#.to_owned(),
        ),
        ("code with a newline", r#"{"code":"abc\ndef"}"#.to_owned()),
        ("non-ASCII code", r#"{"code":"кодкод"}"#.to_owned()),
        // Not the shape of a wx.login() code (32 letters and digits): refused
        // before any jscode2session call, which would cost WeChat quota.
        (
            "a 15-character code",
            r#"{"code":"0716AVll20uHk94"}"#.to_owned(),
        ),
        (
            "the devtools' mock code",
            r#"{"code":"the code is a mock one"}"#.to_owned(),
        ),
        (
            "a code with a '+'",
            r#"{"code":"0716AVll20uHk94S+Dml27etM946AVlq"}"#.to_owned(),
        ),
        (
            "a code with a '/'",
            r#"{"code":"0716AVll20uHk94S/Dml27etM946AVlq"}"#.to_owned(),
        ),
        (
            "a code with '='",
            r#"{"code":"0716AVll20uHk94SLDml27etM946AV=="}"#.to_owned(),
        ),
        (
            "a code with '&'",
            r#"{"code":"0716AVll20uHk94S&appid=wx0000000000"}"#.to_owned(),
        ),
        (
            "a code with '%'",
            r#"{"code":"0716AVll20uHk94S%26Dml27etM946AVlq"}"#.to_owned(),
        ),
        (
            "a code with a quote",
            r#"{"code":"0716AVll20uHk94S'Dml27etM946AVlq"}"#.to_owned(),
        ),
        (
            "a code with a dot",
            r#"{"code":"0716AVll20uHk94S.Dml27etM946AVlq"}"#.to_owned(),
        ),
        (
            "129 characters",
            json!({ "code": "a".repeat(129) }).to_string(),
        ),
    ];
    for (what, body) in bodies {
        let reply = post(&base, Some("application/json"), body).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text);
        assert_rejection(&reply, 400, "bad_request", false);
    }
    assert_eq!(fake.code2session_calls(), 0, "a bad body reached WeChat");

    // Every real code seen has this shape, and so do the fake's: accepted
    // (WeChat then says whether it is valid), as is the whole margin kept
    // around it (16 to 128 letters, digits, `-` and `_`).
    for code in [
        "0716AVll20uHk94SLDml27etM946AVlq".to_owned(),
        "081HonW91tM3MN1NizW91F0mW91HonWu".to_owned(),
        "a".repeat(16),
        "A-b_0".repeat(25) + "xyz",
    ] {
        let reply = login_code(&base, &code).await;
        assert_rejection(&reply, 400, "invalid_code", true);
    }
    assert_eq!(fake.code2session_calls(), 4);
    let code = fake.mint_code("o-alice");
    assert!(
        code.len() == 32 && code.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{code}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_content_length() {
    let (fake, base) = setup(|b| b).await;
    let body = json!({ "code": "a".repeat(BODY_LIMIT) }).to_string();
    let reply = post(&base, Some("application/json"), body).await;
    assert_rejection(&reply, 413, "bad_request", false);
    assert_eq!(fake.code2session_calls(), 0);
}

/// Sends a raw HTTP/1.1 request on a fresh connection; returns the status and
/// the whole response text.
async fn raw_request(base: &str, request: &[u8]) -> (u16, String) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                // The server may reset a connection whose body it did not read.
                Err(_) if !response.is_empty() => break,
                Err(e) => panic!("no response: {e}"),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413() {
    let (fake, base) = setup(|b| b).await;
    let body = json!({ "code": "a".repeat(BODY_LIMIT) }).to_string();
    let mut request = b"POST /wx/login HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n"
        .to_vec();
    for chunk in body.as_bytes().chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");

    let (status, text) = raw_request(&base, &request).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains(r#""error":"bad_request""#), "{text}");
    assert_eq!(fake.code2session_calls(), 0);

    // A chunked body under the limit is read and logged in.
    let body = json!({ "code": fake.mint_code("o-alice") }).to_string();
    let mut request = b"POST /wx/login HTTP/1.1\r\nHost: localhost\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for chunk in body.as_bytes().chunks(7) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw_request(&base, &request).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""openid":"o-alice""#), "{text}");
}

/// A connection whose send buffer is small (128 KiB asked), as on a slow
/// link: the body is still on its way when the server answers (on loopback
/// the kernel would otherwise swallow megabytes at once and hide the reset).
async fn slow_link(base: &str) -> TcpStream {
    let addr = base.strip_prefix("http://").unwrap().parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(128 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
}

/// A body of `len` bytes that is a JSON login body with a huge code.
fn huge_login_body(len: usize) -> Vec<u8> {
    let mut body = br#"{"code":""#.to_vec();
    body.resize(len - 2, b'a');
    body.extend_from_slice(br#""}"#);
    body
}

/// Checks a 413 `bad_request` response's status and JSON body.
fn assert_413(what: &str, status: u16, body: &[u8]) {
    assert_eq!(status, 413, "{what}");
    let json: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    assert_eq!(json["error"], "bad_request", "{what}");
    assert_eq!(json["relogin"], false, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_2_mib_bodies_in_a_row_all_read_their_413() {
    // Over the limit, the server answers 413 before the client has sent its
    // body. Closing with the body unread resets the connection under the
    // client, which then fails to send and never reads the answer; the
    // server drains a bounded amount of the body first, so the request
    // completes and the 413 is read.
    let (fake, base) = setup(|b| b).await;
    let payload = huge_login_body(2 * 1024 * 1024);
    let mut chunked = Vec::new();
    for piece in payload.chunks(32 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let with_length = format!(
        "POST /wx/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        payload.len()
    );
    let with_chunks = "POST /wx/login HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

    // A raw client: the whole request, then the response.
    for (kind, head, body) in [
        ("content-length", with_length.as_bytes(), &payload),
        ("chunked", with_chunks.as_bytes(), &chunked),
    ] {
        for i in 0..30 {
            let what = format!("raw {kind} body {i}");
            let mut stream = slow_link(&base).await;
            let mut request = head.to_vec();
            request.extend_from_slice(body);
            let wrote = stream.write_all(&request).await;
            assert!(wrote.is_ok(), "{what}: reset while sending: {wrote:?}");
            let mut response = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), async {
                let mut buf = [0u8; 8192];
                loop {
                    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .expect("a content-length");
                        if response.len() >= end + 4 + length {
                            return Ok(end + 4);
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) => return Err(format!("closed after {} bytes", response.len())),
                        Ok(n) => response.extend_from_slice(&buf[..n]),
                        Err(e) => return Err(format!("{e} after {} bytes", response.len())),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"));
            let body_at = read.unwrap_or_else(|e| panic!("{what}: the 413 was lost: {e}"));
            let status = String::from_utf8_lossy(&response[9..12]).parse().unwrap();
            assert_413(&what, status, &response[body_at..]);
        }
    }

    // hyper's client (what reqwest runs on), which gives up on a failed send.
    for kind in ["content-length", "chunked"] {
        for i in 0..30 {
            let what = format!("hyper {kind} body {i}");
            let stream = slow_link(&base).await;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let body = match kind {
                "content-length" => http_body_util::Full::new(bytes::Bytes::from(payload.clone()))
                    .map_err(|never| match never {})
                    .boxed(),
                _ => {
                    // No size hint: hyper sends it chunked.
                    let frames: Vec<Result<_, std::convert::Infallible>> = payload
                        .chunks(32 * 1024)
                        .map(|c| Ok(hyper::body::Frame::data(bytes::Bytes::copy_from_slice(c))))
                        .collect();
                    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
                }
            };
            let req = hyper::Request::post("/wx/login")
                .header("host", "localhost")
                .body(body)
                .unwrap();
            let res = sender
                .send_request(req)
                .await
                .unwrap_or_else(|e| panic!("{what}: the 413 was lost: {e:?}"));
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_413(&what, status, &body);
        }
    }
    assert_eq!(fake.code2session_calls(), 0);
}

#[tokio::test]
async fn an_over_limit_body_behind_expect_100_continue_is_refused_unsent() {
    // The client waits for `100 Continue` before sending: the 413 comes
    // instead, at once, and the body is never asked for.
    let (fake, base) = setup(|b| b).await;
    let mut stream = slow_link(&base).await;
    stream
        .write_all(
            b"POST /wx/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2097152\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.contains(r#""error":"bad_request""#), "{text}");
    assert_eq!(fake.code2session_calls(), 0);
}

#[tokio::test]
async fn get_is_405() {
    let (fake, base) = setup(|b| b).await;
    let res = reqwest::Client::new()
        .get(format!("{base}/wx/login"))
        .send()
        .await
        .unwrap();
    let reply = Reply::of(res).await;
    assert_rejection(&reply, 405, "bad_request", false);
    assert_eq!(reply.header("allow"), Some("POST"));
    assert_eq!(fake.code2session_calls(), 0);
}

#[tokio::test]
async fn a_login_hook_that_panics_is_500_misconfigured_before_or_inside_its_future() {
    // A hook is app code: whether the closure itself panics (before it
    // returns a future) or its future does, the client gets 500
    // `misconfigured`, the connection stays usable, and nothing is stored.
    let fake = fake_wechat().await;
    let store = common::CountingStore::new();
    let wx = builder(&fake)
        .store(store.clone())
        .on_login(|who: wxlogin::Identity| {
            if who.openid == "o-panics-in-the-closure" {
                panic!("app bug in the hook closure");
            }
            async move {
                if who.openid == "o-panics-in-the-future" {
                    panic!("app bug in the hook future");
                }
                Ok(who.openid)
            }
        })
        .build()
        .unwrap();
    let app = Router::new().route_service("/wx/login", wx.login_service());
    let base = serve(app).await;
    for openid in ["o-panics-in-the-closure", "o-panics-in-the-future"] {
        let reply = login_code(&base, &fake.mint_code(openid)).await;
        assert_rejection(&reply, 500, "misconfigured", false);
        assert!(!reply.text.contains("app bug"), "{}", reply.text);
    }
    assert_eq!(store.creates.load(std::sync::atomic::Ordering::SeqCst), 0);
    let reply = login_code(&base, &fake.mint_code("o-fine")).await;
    assert_logged_in(&reply, "o-fine", None);
}

// ---------------------------------------------------------------- WeChat failures

#[tokio::test]
async fn wechat_busy_once_is_retried_to_success() {
    let (fake, base) = setup(|b| b).await;
    fake.push_reply(FakeReply::Errcode(-1));
    let reply = login_code(&base, &fake.mint_code("o-alice")).await;
    assert_logged_in(&reply, "o-alice", None);
    assert_eq!(fake.code2session_calls(), 2);
}

#[tokio::test]
async fn wechat_busy_every_time_is_503_after_the_configured_attempts() {
    for attempts in [1, 3] {
        let (fake, base) = setup(|b| b.wechat_attempts(attempts)).await;
        for _ in 0..10 {
            fake.push_reply(FakeReply::Errcode(-1));
        }
        let reply = login_code(&base, &fake.mint_code("o-alice")).await;
        assert_rejection(&reply, 503, "wechat_unavailable", false);
        assert_eq!(fake.code2session_calls(), attempts as usize);
    }
}

#[tokio::test]
async fn a_reply_slower_than_the_deadline_is_503_within_the_deadline() {
    let deadline = Duration::from_millis(1500);
    let (fake, base) =
        setup(|b| b.wechat_timeouts(Duration::from_secs(1), Duration::from_secs(20), deadline))
            .await;
    fake.set_latency(Duration::from_secs(30));

    let started = Instant::now();
    let reply = login_code(&base, &fake.mint_code("o-alice")).await;
    let elapsed = started.elapsed();
    assert_rejection(&reply, 503, "wechat_unavailable", false);
    // Generous margin for a loaded machine; WeChat's reply would take 30 s.
    assert!(elapsed < deadline + Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(fake.code2session_calls(), 1);
}

#[tokio::test]
async fn rate_limit_45011_is_429_with_retry_after() {
    let (fake, base) = setup(|b| b).await;
    fake.push_reply(FakeReply::Errcode(45011));
    let reply = login_code(&base, &fake.mint_code("o-alice")).await;
    assert_rejection(&reply, 429, "rate_limited", false);
    // WeChat's quota is per minute.
    assert_eq!(reply.header("retry-after"), Some("60"));
    assert_eq!(fake.code2session_calls(), 1);
}

#[tokio::test]
async fn a_reused_code_40163_is_invalid_code() {
    let (fake, base) = setup(|b| b).await;
    let code = fake.mint_code("o-alice");
    assert_logged_in(&login_code(&base, &code).await, "o-alice", None);
    let reply = login_code(&base, &code).await;
    assert_rejection(&reply, 400, "invalid_code", true);
    assert_eq!(fake.code2session_calls(), 2);

    fake.push_reply(FakeReply::Errcode(40163));
    let reply = login_code(&base, &fake.mint_code("o-bob")).await;
    assert_rejection(&reply, 400, "invalid_code", true);
}

#[tokio::test]
async fn errcode_as_a_string_maps_like_a_number() {
    let (fake, base) = setup(|b| b).await;
    let cases: [(i64, u16, &str, bool); 5] = [
        (40029, 400, "invalid_code", true),
        (40163, 400, "invalid_code", true),
        (45011, 429, "rate_limited", false),
        (40226, 403, "user_restricted", false),
        (40125, 500, "misconfigured", false),
    ];
    for (errcode, status, code, relogin) in cases {
        fake.push_reply(FakeReply::ErrcodeAsString(errcode));
        let reply = login_code(&base, &fake.mint_code("o-alice")).await;
        assert_rejection(&reply, status, code, relogin);
    }
    assert_eq!(fake.code2session_calls(), cases.len());

    // "-1" is busy: retried, then the normal reply logs in.
    fake.push_reply(FakeReply::ErrcodeAsString(-1));
    let reply = login_code(&base, &fake.mint_code("o-alice")).await;
    assert_logged_in(&reply, "o-alice", None);
    assert_eq!(fake.code2session_calls(), cases.len() + 2);
}

#[tokio::test]
async fn a_non_json_reply_is_503_wechat_unavailable() {
    let (fake, base) = setup(|b| b.wechat_attempts(3)).await;
    for reply in [
        FakeReply::Body("<html><body>502 Bad Gateway</body></html>".into()),
        FakeReply::Body(r#"{"openid":"o-alice","session_"#.into()),
        FakeReply::Status(502, "<html>bad gateway</html>".into()),
    ] {
        let before = fake.code2session_calls();
        for _ in 0..3 {
            fake.push_reply(reply.clone());
        }
        let res = login_code(&base, &fake.mint_code("o-alice")).await;
        assert_rejection(&res, 503, "wechat_unavailable", false);
        assert!(!res.text.contains("502"), "{}", res.text);
        assert_eq!(fake.code2session_calls() - before, 3, "{reply:?}");
    }
}

// ---------------------------------------------------------------- plain hyper

/// Serves the login service with hyper 1 and hyper-util, no axum.
async fn serve_hyper(login: LoginService<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let login = login.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| login.clone().oneshot(req),
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_login_service_runs_on_plain_hyper() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = serve_hyper(wx.login_service()).await;

    let code = fake.mint_code_with_unionid("o-alice", "u-alice");
    let reply = login_code(&base, &code).await;
    assert_logged_in(&reply, "o-alice", Some("u-alice"));
    assert!(!reply.text.contains(&fake.session_key("o-alice").unwrap()));

    let reply = post(&base, None, "not json").await;
    assert_rejection(&reply, 400, "bad_request", false);
    let body = json!({ "code": "a".repeat(BODY_LIMIT) }).to_string();
    let reply = post(&base, None, body).await;
    assert_rejection(&reply, 413, "bad_request", false);
    let res = reqwest::get(&base).await.unwrap();
    assert_rejection(&Reply::of(res).await, 405, "bad_request", false);
    assert_eq!(fake.code2session_calls(), 1);
}
