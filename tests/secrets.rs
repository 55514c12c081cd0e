//! No secret leaves the server: not in the logs (captured at TRACE, every
//! crate in the process), not in any response body, not in any `Debug`.
//!
//! Secrets: the app secret (right and wrong), the token key, every
//! `session_key` the fake WeChat handed out, and the issued tokens (which
//! may appear in the login reply that issues them, and nowhere else).

mod common;

use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use common::{fake_wechat, get_json, login, serve, APP_ID, APP_SECRET};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing_subscriber::fmt::MakeWriter;
use wxlogin::mock::{FakeReply, FakeWeChat};
use wxlogin::store::SessionRecord;
use wxlogin::{Identity, Secret, WxLogin, WxSession, WxUser};

const TOKEN_KEY: &str = "secret-token-key-0123456789abcdef-XYZ";
const WRONG_SECRET: &str = "wrong-app-secret-also-never-logged";

/// Everything written by the global subscriber.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Shared by every test in this binary: a poisoned lock must not
        // turn one test's panic into every other test's.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The process-wide subscriber: TRACE for every target, so events from
/// spawned tasks on any runtime thread are captured too.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(capture.clone())
            .init();
        capture
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    id: u64,
}

async fn me(user: WxUser<Account>) -> Json<Value> {
    Json(json!({
        "openid": user.openid(),
        "unionid": user.unionid(),
        "id": user.id,
        "debug": format!("{user:?}"),
    }))
}

async fn session(s: WxSession) -> Json<Value> {
    tracing::info!(session = ?s, "handler saw a session");
    Json(json!({ "openid": s.openid(), "debug": format!("{s:?}"), "alt": format!("{s:#?}") }))
}

fn app(wx: &WxLogin<Account>) -> Router {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/session", get(session))
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service())
        .route_service("/wx/logout", wx.logout_service())
}

fn build(fake: &FakeWeChat, secret: &str) -> WxLogin<Account> {
    WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(secret)
        .api_base(fake.base_url())
        .token_key(TOKEN_KEY)
        .session_ttl(Duration::from_secs(2))
        .idle_timeout(Duration::from_millis(1500))
        .cache_ttl(Duration::from_millis(200))
        .wechat_timeouts(
            Duration::from_millis(500),
            Duration::from_millis(500),
            Duration::from_secs(2),
        )
        .on_login(|who: Identity| async move {
            tracing::info!(?who, "app hook: login");
            Ok(Account { id: 7 })
        })
        .build()
        .unwrap()
}

/// Sends a request; returns status and raw body text.
async fn send(req: reqwest::RequestBuilder) -> (u16, String) {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

#[tokio::test]
async fn no_secret_in_logs_or_response_bodies() {
    let capture = capture();
    let fake = fake_wechat().await;
    let wx = build(&fake, APP_SECRET);
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let me_url = format!("{base}/api/me");
    let session_url = format!("{base}/api/session");

    let mut tokens: Vec<String> = Vec::new();
    let mut session_keys: Vec<String> = Vec::new();
    // Bodies that must contain no secret at all (every reply but a login's).
    let mut bodies: Vec<String> = Vec::new();
    // Login replies: they carry their own token, nothing else secret.
    let mut login_bodies: Vec<String> = Vec::new();

    // Logins, one with a unionid.
    for openid in ["o-alice", "o-alice", "o-bob"] {
        let code = if openid == "o-bob" {
            fake.mint_code_with_unionid(openid, "u-bob")
        } else {
            fake.mint_code(openid)
        };
        let (status, body) = send(
            client
                .post(format!("{base}/wx/login"))
                .json(&json!({ "code": code })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let parsed: Value = serde_json::from_str(&body).unwrap();
        tokens.push(parsed["token"].as_str().unwrap().to_owned());
        session_keys.push(fake.session_key(openid).unwrap());
        login_bodies.push(body);
    }

    // Authenticated requests, a WxSession handler that logs the session.
    for token in &tokens {
        for url in [&me_url, &session_url] {
            let (status, body) = send(client.get(url).bearer_auth(token)).await;
            assert_eq!(status, 200, "{body}");
            bodies.push(body);
        }
    }
    // A cache miss (cache TTL 200 ms) goes through the store path.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = send(client.get(&me_url).bearer_auth(&tokens[0])).await;
    assert_eq!(status, 200);
    bodies.push(body);

    // Logout, then the dead token.
    let (status, body) = send(
        client
            .post(format!("{base}/wx/logout"))
            .bearer_auth(&tokens[1]),
    )
    .await;
    assert_eq!(status, 204);
    bodies.push(body);
    let (status, body) = send(client.get(&me_url).bearer_auth(&tokens[1])).await;
    assert_eq!(status, 401);
    bodies.push(body);

    // Bad tokens of every kind.
    let mut tampered = tokens[0].clone().into_bytes();
    tampered[30] = if tampered[30] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        &tokens[0][..40],
        "garbage-token",
        &format!("{}x", tokens[2]),
    ] {
        let (status, body) = send(client.get(&me_url).bearer_auth(bad)).await;
        assert_eq!(status, 401, "{body}");
        bodies.push(body);
    }
    let (status, body) = send(
        client
            .get(&me_url)
            .header("authorization", format!("Basic {}", tokens[0])),
    )
    .await;
    assert_eq!(status, 401);
    bodies.push(body);
    let (status, body) = send(
        client
            .post(format!("{base}/wx/logout"))
            .bearer_auth(&tampered),
    )
    .await;
    assert_eq!(status, 401);
    bodies.push(body);

    // Bad login requests.
    for bad in [
        r#"{"code": 5}"#,
        "not json",
        r#"{"code":"already-used-or-unknown"}"#,
    ] {
        let (status, body) = send(client.post(format!("{base}/wx/login")).body(bad)).await;
        assert_eq!(status, 400, "{body}");
        bodies.push(body);
    }

    // WeChat trouble: a dropped connection, a 502 page, busy; the client
    // makes its three attempts (one per queued reply, each failing fast)
    // and gives up with wechat_unavailable.
    for reply in [
        FakeReply::Reset,
        FakeReply::Status(502, "<html>bad gateway</html>".into()),
        FakeReply::Errcode(-1),
    ] {
        fake.push_reply(reply);
    }
    let calls = fake.code2session_calls();
    let code = fake.mint_code("o-carol");
    let (status, body) = send(
        client
            .post(format!("{base}/wx/login"))
            .json(&json!({ "code": code })),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("wechat_unavailable"), "{body}");
    assert_eq!(fake.code2session_calls() - calls, 3);
    bodies.push(body);
    for _ in 0..3 {
        fake.push_reply(FakeReply::Reset);
    }
    let code = fake.mint_code("o-dave");
    let (status, body) = send(
        client
            .post(format!("{base}/wx/login"))
            .json(&json!({ "code": code })),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("wechat_unavailable"), "{body}");
    bodies.push(body);

    // A wrong app secret: WeChat refuses it, the server says misconfigured.
    let wrong = build(&fake, WRONG_SECRET);
    let wrong_base = serve(app(&wrong)).await;
    let code = fake.mint_code("o-alice");
    let (status, body) = send(
        client
            .post(format!("{wrong_base}/wx/login"))
            .json(&json!({ "code": code })),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("misconfigured"), "{body}");
    bodies.push(body);

    // An expired session (2 s lifetime, 1.5 s idle).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = send(client.get(&me_url).bearer_auth(&tokens[0])).await;
    assert_eq!(status, 401);
    assert!(body.contains("session_expired"), "{body}");
    bodies.push(body);

    // Let spawned tasks (idle extensions, connection tasks) log what they will.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let logs = capture.text();
    assert!(
        logs.contains("wxlogin: login") && logs.contains("TRACE"),
        "the capture works and saw the crate's logs:\n{logs}"
    );
    assert!(logs.contains("handler saw a session"));

    let mut secrets: Vec<(&str, String)> = vec![
        ("app secret", APP_SECRET.to_owned()),
        ("wrong app secret", WRONG_SECRET.to_owned()),
        ("token key", TOKEN_KEY.to_owned()),
    ];
    for k in &session_keys {
        secrets.push(("session_key", k.clone()));
    }
    assert_eq!(session_keys.len(), tokens.len());
    for t in &tokens {
        secrets.push(("token", t.clone()));
    }

    for (what, secret) in &secrets {
        assert!(!secret.is_empty());
        assert!(!logs.contains(secret.as_str()), "the logs contain a {what}");
        for body in &bodies {
            assert!(
                !body.contains(secret.as_str()),
                "a response contains a {what}: {body}"
            );
        }
    }
    // A login reply holds its own token, and no other secret.
    for (i, body) in login_bodies.iter().enumerate() {
        assert!(body.contains(&tokens[i]));
        for (what, secret) in &secrets {
            if secret != &tokens[i] {
                assert!(
                    !body.contains(secret.as_str()),
                    "a login reply contains a {what}: {body}"
                );
            }
        }
        assert!(!body.contains("session_key"), "{body}");
    }
}

#[tokio::test]
async fn debug_output_prints_no_secret() {
    let key = "debug-token-key-0123456789abcdef";
    let secret = "debug-app-secret-value";
    let session_key = "c2Vzc2lvbi1rZXktMTIzNA==";

    let s = Secret::new(secret);
    assert!(!format!("{s:?}").contains(secret));
    assert!(!format!("{s}").contains(secret));
    assert!(!format!("{s:#?}").contains(secret));

    let builder = WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(secret)
        .token_key(key)
        .token_key(format!("{key}-older"));
    for text in [format!("{builder:?}"), format!("{builder:#?}")] {
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(key), "{text}");
        assert!(text.contains(APP_ID), "{text}");
    }
    let wx = builder.build().unwrap();
    for text in [format!("{wx:?}"), format!("{wx:#?}")] {
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(key), "{text}");
    }
    for text in [
        format!("{:?}", wx.layer()),
        format!("{:?}", wx.login_service()),
        format!("{:?}", wx.logout_service()),
    ] {
        assert!(!text.contains(secret) && !text.contains(key), "{text}");
    }

    let record = SessionRecord {
        openid: "o-alice".into(),
        unionid: Some("u-alice".into()),
        app_id: APP_ID.into(),
        session_key: Secret::new(session_key),
        data: br#"{"id":1}"#.to_vec(),
        created_at_ms: 1,
        expires_at_ms: 2,
        idle_expires_at_ms: None,
        user_agent: None,
        ip: None,
    };
    for text in [format!("{record:?}"), format!("{record:#?}")] {
        assert!(!text.contains(session_key), "{text}");
        assert!(text.contains("o-alice"), "{text}");
    }

    // WxSession and WxUser, from a live request.
    let fake = fake_wechat().await;
    let wx = build(&fake, APP_SECRET);
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;
    let key = fake.session_key("o-alice").unwrap();
    let (status, body) = get_json(&client, &format!("{base}/api/session"), Some(&token)).await;
    assert_eq!(status, 200);
    for field in ["debug", "alt"] {
        let text = body[field].as_str().unwrap();
        assert!(!text.contains(&key), "{text}");
        assert!(!text.contains(&token), "{text}");
    }
    let (status, body) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
    assert_eq!(status, 200);
    let text = body["debug"].as_str().unwrap();
    assert!(!text.contains(&key) && !text.contains(&token), "{text}");
    assert!(text.contains("o-alice"), "{text}");
}

#[tokio::test]
async fn an_errmsg_echoing_the_secret_or_the_code_is_logged_redacted() {
    // WeChat's errmsg can quote the request. Whatever it quotes of the app
    // secret (whole or a part) or of the login code is redacted before the
    // message is logged or handed to the app.
    let capture = capture();
    let secret = "echoed-app-secret-5f0c1e9d2b7a";
    let fake = FakeWeChat::start(APP_ID, secret).await.unwrap();
    let wx = build(&fake, secret);
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let code = fake.mint_code("o-echo");
    fake.push_reply(FakeReply::Body(format!(
        r#"{{"errcode":40125,"errmsg":"invalid appsecret {secret}, js_code {code}, prefix {} hints: [ rid: 6512c1f0-echo ]"}}"#,
        &secret[..14]
    )));
    let (status, body) = send(
        client
            .post(format!("{base}/wx/login"))
            .json(&json!({ "code": code })),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("misconfigured"), "{body}");

    // The access token path: stable_token refuses with the same echo.
    let stub = Router::new().route(
        "/cgi-bin/stable_token",
        axum::routing::post(move || async move {
            format!(
                r#"{{"errcode":40125,"errmsg":"invalid appsecret {secret} rid: 6512c1f0-token"}}"#
            )
        }),
    );
    let stub_base = serve(stub).await;
    let wx = WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(secret)
        .api_base(stub_base)
        .build()
        .unwrap();
    let err = wx.access_token().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert_eq!(err.errcode(), Some(40125), "{text}");
    assert!(
        text.contains("[redacted]") && text.contains("6512c1f0-token"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    let logs = capture.text();
    let ours: Vec<&str> = logs.lines().filter(|l| l.contains("6512c1f0")).collect();
    assert!(
        ours.iter()
            .any(|l| l.contains("40125") && l.contains("-echo")),
        "the refusal is logged:\n{logs}"
    );
    for line in &ours {
        for (what, leaked) in [
            ("secret", secret),
            ("secret prefix", &secret[..14]),
            ("code", &code),
        ] {
            assert!(
                !line.contains(leaked),
                "a log line holds the {what}: {line}"
            );
        }
    }
    assert!(!text.contains(&secret[..14]), "{text}");
}
