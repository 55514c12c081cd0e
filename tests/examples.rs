//! Runs the example binaries as real processes and drives them over HTTP:
//! the demo's contract (DESIGN.md "The demo"), the hyper example, the sqlx
//! example (SQLite, and PostgreSQL when `WXLOGIN_TEST_POSTGRES_URL` names a
//! server) and the envelope example.
//!
//! `cargo test --test examples` builds only this test, not the examples, so
//! the first test to need a binary runs `cargo build --examples` once (a
//! no-op when they are fresh). Each example is started with
//! `WXLOGIN_BIND=127.0.0.1:0`; its stdout gives the fake WeChat's URL and the
//! listening address. A guard kills every child, even when a test fails.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Generous: a noisy machine may be slow to start a binary.
const START_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- harness

/// The directory holding the example binaries: the test executable lives in
/// `target/<profile>/deps/`, the examples in `target/<profile>/examples/`.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in target/<profile>/deps");
    profile_dir.join("examples")
}

/// Builds the examples once per test run, with the features of this test.
fn build_examples() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        if std::env::var_os("WXLOGIN_SKIP_EXAMPLE_BUILD").is_some() {
            return Ok(());
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile_dir = examples_dir()
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "debug".into());
        let profile = match profile_dir.as_str() {
            "debug" => "dev".to_owned(),
            other => other.to_owned(),
        };
        let out = Command::new(cargo)
            .args(["build", "--quiet", "--examples", "--all-features"])
            .args(["--profile", &profile])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run cargo to build the examples: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`cargo build --examples` failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The path of an example binary; fails clearly when it is missing.
fn example_bin(name: &str) -> PathBuf {
    build_examples();
    let path = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "example binary {} is missing: build it with `cargo build --examples --all-features` \
         (or run plain `cargo test`, which builds the examples)",
        path.display()
    );
    path
}

fn command(name: &str, envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(example_bin(name));
    // A developer's shell must not turn the fake WeChat off or change the store.
    for var in [
        "WX_APPID",
        "WX_SECRET",
        "WX_API_BASE",
        "WXLOGIN_REDIS_URL",
        "WXLOGIN_TOKEN_KEY",
        "WXLOGIN_SESSION_TTL",
        "DATABASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("WXLOGIN_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied());
    cmd
}

/// A running example. Dropping it kills the process.
struct Example {
    name: String,
    child: Child,
    /// `http://127.0.0.1:PORT` of the app.
    base: String,
    /// The fake WeChat's base URL.
    fake: String,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects a child's stderr in the background, for failure messages.
fn drain_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    if let Some(mut stderr) = child.stderr.take() {
        let buf = buf.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut b = buf.lock().unwrap();
                // Keep the head: that is where start-up errors are.
                if b.len() < 64 * 1024 {
                    b.push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }
        });
    }
    buf
}

impl Example {
    /// Starts an example and waits for its two address lines.
    fn start(name: &str, envs: &[(&str, &str)]) -> Example {
        let mut child = command(name, envs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
        let stderr = drain_stderr(&mut child);

        // Read stdout on a thread: send the lines until both addresses are
        // seen, then keep draining so the child never blocks on a full pipe.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });

        let mut example = Example {
            name: name.to_owned(),
            child,
            base: String::new(),
            fake: String::new(),
            stderr,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while example.base.is_empty() || example.fake.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = find_after(&line, "fake wechat on ") {
                        example.fake = url;
                    } else if let Some(url) = find_after(&line, "listening on ") {
                        example.base = url;
                    }
                }
                Err(_) => panic!(
                    "example {name} did not print both `fake wechat on URL` and \
                     `listening on http://ADDR` within {START_TIMEOUT:?} (exited: {:?}); stderr:\n{}",
                    example.child.try_wait().ok().flatten(),
                    example.stderr.lock().unwrap()
                ),
            }
        }
        example
    }

    /// Mints a login code from the fake WeChat's `POST /_fake/wx.login`.
    async fn mint(&self, client: &reqwest::Client, openid: &str, unionid: Option<&str>) -> String {
        let mut body = json!({ "openid": openid });
        if let Some(u) = unionid {
            body["unionid"] = json!(u);
        }
        let res = client
            .post(format!("{}/_fake/wx.login", self.fake))
            .body(body.to_string())
            .send()
            .await
            .expect("fake wx.login request");
        assert_eq!(res.status(), 200, "{}: fake wx.login failed", self.name);
        let body: Value = res.json().await.expect("fake wx.login JSON");
        body["code"].as_str().expect("a code").to_owned()
    }

    /// POSTs a login code; returns status and JSON body.
    async fn login_code(&self, client: &reqwest::Client, code: &str) -> (u16, Value) {
        self.login_body(client, json!({ "code": code })).await
    }

    /// POSTs a login body (the code and any fields of the app's); returns
    /// status and JSON body.
    async fn login_body(&self, client: &reqwest::Client, body: Value) -> (u16, Value) {
        let res = client
            .post(format!("{}/wx/login", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("login request");
        status_json(res).await
    }

    /// Logs a user in; asserts 200 and returns the login reply.
    async fn login(&self, client: &reqwest::Client, openid: &str, unionid: Option<&str>) -> Value {
        let code = self.mint(client, openid, unionid).await;
        let (status, body) = self.login_code(client, &code).await;
        assert_eq!(
            status, 200,
            "{}: login of {openid} failed: {body}",
            self.name
        );
        body
    }

    async fn me(&self, client: &reqwest::Client, token: Option<&str>) -> reqwest::Response {
        let mut req = client.get(format!("{}/api/me", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("/api/me request")
    }

    async fn me_json(&self, client: &reqwest::Client, token: Option<&str>) -> (u16, Value) {
        status_json(self.me(client, token).await).await
    }

    async fn logout(&self, client: &reqwest::Client, token: &str) -> u16 {
        client
            .post(format!("{}/wx/logout", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("logout request")
            .status()
            .as_u16()
    }
}

/// `URL` in a line containing `marker URL` (log decorations before it are ignored).
fn find_after(line: &str, marker: &str) -> Option<String> {
    let at = line.find(marker)? + marker.len();
    let url = line[at..].split_whitespace().next()?;
    url.starts_with("http://").then(|| url.to_owned())
}

async fn status_json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

/// Runs an example that should refuse to start; returns its exit status and stderr.
fn run_to_exit(name: &str, envs: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = command(name, envs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
    // All of stderr, up to its end when the process exits.
    let mut pipe = child.stderr.take().expect("piped stderr");
    let stderr = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = pipe.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            let text = stderr.join().expect("the stderr reader");
            return (status, text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} kept running; it should have refused to start");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Asserts a default-format error: status, `error` code, `relogin`.
fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "body: {body}");
    assert_eq!(body["error"], want_code, "body: {body}");
    assert!(body["message"].is_string(), "body: {body}");
    assert!(body["relogin"].is_boolean(), "body: {body}");
}

/// The login reply shape of the contract: token, expires_in, openid, unionid;
/// never session_key.
fn assert_login_reply(body: &Value, openid: &str, unionid: Option<&str>, expires_in: u64) {
    let token = body["token"].as_str().expect("a token string");
    assert!(
        !token.is_empty() && token.len() < 100,
        "token length: {token}"
    );
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "token not URL-safe: {token}"
    );
    assert_eq!(body["expires_in"], expires_in, "body: {body}");
    assert_eq!(body["openid"], openid, "body: {body}");
    let obj = body.as_object().expect("a JSON object");
    assert!(obj.contains_key("unionid"), "unionid key absent: {body}");
    assert_eq!(body["unionid"], json!(unionid), "body: {body}");
    assert!(!body.to_string().contains("session_key"), "body: {body}");
}

// ---------------------------------------------------------------- demo

const WEEK_SECS: u64 = 7 * 24 * 3600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_login_me_logout_contract() {
    let demo = Example::start("demo", &[]);
    let client = client();

    // Login with and without a unionid.
    let alice = demo.login(&client, "o-alice", Some("u-alice")).await;
    assert_login_reply(&alice, "o-alice", Some("u-alice"), WEEK_SECS);
    let bob = demo.login(&client, "o-bob", None).await;
    assert_login_reply(&bob, "o-bob", None, WEEK_SECS);
    let alice_token = alice["token"].as_str().unwrap();
    let bob_token = bob["token"].as_str().unwrap();
    assert_ne!(alice_token, bob_token);

    // /api/me: openid and unionid, null when absent.
    let (status, me) = demo.me_json(&client, Some(alice_token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["openid"], "o-alice");
    assert_eq!(me["unionid"], "u-alice");
    assert!(!me.to_string().contains("session_key"));
    let (status, me) = demo.me_json(&client, Some(bob_token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["openid"], "o-bob");
    assert!(me.as_object().unwrap().contains_key("unionid"), "{me}");
    assert_eq!(me["unionid"], Value::Null);

    // No token, and a forged one: 401 with WWW-Authenticate.
    let res = demo.me(&client, None).await;
    assert!(res.headers().contains_key("www-authenticate"));
    let (status, body) = status_json(res).await;
    assert_error(status, &body, 401, "missing_token");
    assert_eq!(body["relogin"], true);
    let forged = format!("{}x", &alice_token[..alice_token.len() - 1]);
    let res = demo.me(&client, Some(&forged)).await;
    assert!(res.headers().contains_key("www-authenticate"));
    let (status, body) = status_json(res).await;
    assert_error(status, &body, 401, "invalid_token");

    // A login code is single use.
    let code = demo.mint(&client, "o-carol", None).await;
    let (status, _) = demo.login_code(&client, &code).await;
    assert_eq!(status, 200);
    let (status, body) = demo.login_code(&client, &code).await;
    assert_error(status, &body, 400, "invalid_code");
    assert_eq!(body["relogin"], true);

    // Not JSON: 400 bad_request.
    let res = client
        .post(format!("{}/wx/login", demo.base))
        .body("code=abc")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(res).await;
    assert_error(status, &body, 400, "bad_request");

    // Logout: 204, then the token is dead; the other user's is not.
    assert_eq!(demo.logout(&client, alice_token).await, 204);
    let (status, body) = demo.me_json(&client, Some(alice_token)).await;
    assert_error(status, &body, 401, "invalid_token");
    assert_eq!(body["relogin"], true);
    let (status, _) = demo.me_json(&client, Some(bob_token)).await;
    assert_eq!(status, 200);
}

/// DESIGN.md "The app's own login", with Redis: two demo processes share
/// the sessions; a profile change on one shows on the other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_profile_change_reaches_another_instance_through_redis() {
    const KEY: &str = "0123456789abcdef0123456789abcdef";
    let redis = redis_harness::RedisServer::start();
    let url = redis.url();
    let env = [
        ("WXLOGIN_REDIS_URL", url.as_str()),
        ("WXLOGIN_TOKEN_KEY", KEY),
    ];
    let (a, b) = (Example::start("demo", &env), Example::start("demo", &env));
    let client = client();
    let token = a.login(&client, "o-two", None).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, me) = b.me_json(&client, Some(&token)).await;
    assert_eq!((status, &me["nickname"]), (200, &Value::Null), "{me}");
    redis_harness::wait_numsub(&redis, "wxlogin:revoked", 2, Duration::from_secs(10)).await;
    let res = client
        .post(format!("{}/api/profile", a.base))
        .bearer_auth(&token)
        .json(&json!({ "nickname": "Two" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(a.me_json(&client, Some(&token)).await.1["nickname"], "Two");
    let started = Instant::now();
    loop {
        let (status, me) = b.me_json(&client, Some(&token)).await;
        assert_eq!(status, 200);
        if me["nickname"] == "Two" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the other demo still shows {me} after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// DESIGN.md "The app's own login": `user_id` and `is_new` in the login
/// answer, a first login's invite on `/api/me`, and `POST /api/sessions`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_app_login_reply_fields_invite_and_another_session() {
    let demo = Example::start("demo", &[]);
    let client = client();

    // First login with an invite: is_new, a user_id, the invite kept.
    let code = demo.mint(&client, "o-inv", None).await;
    let (status, first) = demo
        .login_body(&client, json!({ "code": code, "invite": "X" }))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_login_reply(&first, "o-inv", None, WEEK_SECS);
    assert_eq!(first["is_new"], true, "{first}");
    let user_id = first["user_id"].as_u64().expect("a user_id");
    let (_, me) = demo.me_json(&client, first["token"].as_str()).await;
    assert_eq!(me["invite"], "X", "{me}");
    assert_eq!(me["user_id"], user_id);

    // Second login, another invite: not new, the same user_id, the first invite.
    let code = demo.mint(&client, "o-inv", None).await;
    let (status, again) = demo
        .login_body(&client, json!({ "code": code, "invite": "Y" }))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["is_new"], false);
    assert_eq!(again["user_id"], user_id);
    let token = again["token"].as_str().unwrap();
    let (_, me) = demo.me_json(&client, Some(token)).await;
    assert_eq!(me["invite"], "X");

    // No invite: null.
    let other = demo.login(&client, "o-noinv", None).await;
    assert_ne!(other["user_id"], user_id);
    let (_, me) = demo.me_json(&client, other["token"].as_str()).await;
    assert!(me.as_object().unwrap().contains_key("invite"), "{me}");
    assert_eq!(me["invite"], Value::Null);

    // One more session for the signed-in user: a new token of the same user.
    let res = client
        .post(format!("{}/api/sessions", demo.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, issued) = status_json(res).await;
    assert_eq!(status, 200, "{issued}");
    let mut keys: Vec<&String> = issued.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["expires_in", "token"]);
    assert_eq!(issued["expires_in"], WEEK_SECS);
    let web = issued["token"].as_str().unwrap();
    assert_ne!(web, token);
    let (status, me) = demo.me_json(&client, Some(web)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&me["openid"], &me["user_id"]),
        (&json!("o-inv"), &json!(user_id))
    );
    // Without a session: 401, nothing issued.
    let res = client
        .post(format!("{}/api/sessions", demo.base))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(res).await;
    assert_error(status, &body, 401, "missing_token");
    // POST /api/profile: every session of the user shows the nickname at once.
    let profile = |token: &str, body: Value| {
        client
            .post(format!("{}/api/profile", demo.base))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let res = profile(token, json!({ "nickname": "N" })).await.unwrap();
    assert_eq!(res.status(), 204);
    for t in [token, web] {
        let (status, me) = demo.me_json(&client, Some(t)).await;
        assert_eq!(status, 200);
        assert_eq!(me["nickname"], "N", "{me}");
        assert_eq!(me["invite"], "X", "the rest of the data stays: {me}");
    }
    let (_, me) = demo.me_json(&client, other["token"].as_str()).await;
    assert_eq!(me["nickname"], Value::Null, "another user's data stays");
    for bad in [
        json!({}),
        json!({ "nickname": 7 }),
        json!({ "nickname": "x".repeat(33) }),
    ] {
        let (status, body) = status_json(profile(token, bad).await.unwrap()).await;
        assert_error(status, &body, 400, "bad_request");
    }
    // A new login of the user brings the profile from the table.
    let again = demo.login(&client, "o-inv", None).await;
    let (_, me) = demo.me_json(&client, again["token"].as_str()).await;
    assert_eq!(me["nickname"], "N");

    // GET /api/sessions: the user's sessions, the caller's marked, no token.
    let list_of = |t: &str| {
        let req = client
            .get(format!("{}/api/sessions", demo.base))
            .bearer_auth(t.to_owned());
        async move { status_json(req.send().await.unwrap()).await }
    };
    let (status, list) = list_of(web).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap().clone();
    assert_eq!(
        list.len(),
        4,
        "first, second, the one more, the latest login: {list:?}"
    );
    for s in &list {
        let mut keys: Vec<&String> = s.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["created_at", "current", "id", "ip", "user_agent"],
            "{s}"
        );
        assert_eq!(s["ip"], "127.0.0.1", "the demo serves with connection info");
        assert!(s["created_at"].as_u64().unwrap() > 1_700_000_000);
    }
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(!Value::Array(list.clone()).to_string().contains(web));
    let web_id = list.iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delete = |t: &str, id: &str| {
        let req = client
            .delete(format!("{}/api/sessions/{id}", demo.base))
            .bearer_auth(t.to_owned());
        async move { status_json(req.send().await.unwrap()).await }
    };
    // Another user's id and an unknown one: 404.
    let (_, theirs) = list_of(other["token"].as_str().unwrap()).await;
    let their_id = theirs[0]["id"].as_str().unwrap();
    let (status, body) = delete(token, their_id).await;
    assert_error(status, &body, 404, "not_found");
    assert_eq!(delete(token, &"0".repeat(32)).await.0, 404);
    assert_eq!(demo.me_json(&client, other["token"].as_str()).await.0, 200);
    // DELETE the web session from the other one: 204, then it is dead.
    assert_eq!(delete(token, &web_id).await.0, 204);
    assert_eq!(demo.me_json(&client, Some(web)).await.0, 401);
    assert_eq!(demo.me_json(&client, Some(token)).await.0, 200);
    assert_eq!(list_of(token).await.1.as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_session_ttl_from_env_expires_sessions() {
    let demo = Example::start("demo", &[("WXLOGIN_SESSION_TTL", "2")]);
    let client = client();

    let reply = demo.login(&client, "o-short", None).await;
    assert_login_reply(&reply, "o-short", None, 2);
    let token = reply["token"].as_str().unwrap();
    let (status, _) = demo.me_json(&client, Some(token)).await;
    assert_eq!(status, 200);

    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (status, body) = demo.me_json(&client, Some(token)).await;
    assert_error(status, &body, 401, "session_expired");
    assert_eq!(body["relogin"], true);
}

/// `WXLOGIN_TOKEN_KEY` is the key that signs tokens. The check recomputes the
/// MAC with the token layout documented in `src/token.rs`:
/// `base64url(version ‖ kid ‖ id[16] ‖ HMAC-SHA256(key, version ‖ kid ‖ id)[..16])`,
/// `kid` being the first byte of SHA-256 over the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_token_key_from_env_signs_tokens() {
    const KEY: &str = "6a1f0c9e3b7d52a48e0f1c2d3b4a59687766554433221100ffeeddccbbaa9988";
    let demo = Example::start("demo", &[("WXLOGIN_TOKEN_KEY", KEY)]);
    let client = client();

    let reply = demo.login(&client, "o-keyed", None).await;
    let token = reply["token"].as_str().unwrap();
    let (status, me) = demo.me_json(&client, Some(token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["openid"], "o-keyed");

    let raw = URL_SAFE_NO_PAD.decode(token).expect("token is base64url");
    assert_eq!(raw.len(), 34, "token layout changed? update this test");
    assert_eq!(raw[1], Sha256::digest(KEY.as_bytes())[0], "key id");
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(&raw[..18]);
    assert_eq!(
        &mac.finalize().into_bytes()[..16],
        &raw[18..],
        "the token is not signed with WXLOGIN_TOKEN_KEY"
    );

    // A key that is too short stops the demo at start, naming the setting.
    let (status, stderr) = run_to_exit("demo", &[("WXLOGIN_TOKEN_KEY", "abcd")]);
    assert!(!status.success(), "demo started with a 4-byte key");
    assert!(stderr.contains("token_key"), "stderr: {stderr}");
    // So do 16 hex digits (64 bits, short of 128) and a long key that is not hex.
    for key in ["0123456789abcdef", "not-hex-but-long-enough-0123456789-zz"] {
        let (status, stderr) = run_to_exit("demo", &[("WXLOGIN_TOKEN_KEY", key)]);
        assert!(!status.success(), "demo started with the key {key:?}");
        assert!(stderr.contains("token_key"), "stderr: {stderr}");
        assert!(!stderr.contains(key), "the key is printed: {stderr}");
    }
}

/// The demo serves with connection info, so its login limits are per
/// client by default: a burst from one loopback address over a client's
/// share (20) is refused with 429 and `Retry-After`, and another address
/// logs in meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_limits_logins_per_client_address() {
    let demo = Example::start("demo", &[]);
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let flooder = from("127.0.0.2");
    let url = format!("{}/wx/login", demo.base);
    let burst: Vec<_> = (0..60)
        .map(|i| {
            let (flooder, url) = (flooder.clone(), url.clone());
            // Codes of the real shape that WeChat does not know.
            let code = format!("{i:0>2}1HonW91tM3MN1NizW91F0mW91HonWu")[..32].to_owned();
            tokio::spawn(async move {
                let res = flooder
                    .post(url)
                    .body(json!({ "code": code }).to_string())
                    .send()
                    .await
                    .unwrap();
                let retry = res.headers().get("retry-after").is_some();
                let (status, body) = status_json(res).await;
                (status, retry, body)
            })
        })
        .collect();
    let mut limited = 0;
    for b in burst {
        let (status, retry, body) = b.await.unwrap();
        match status {
            429 => {
                assert!(retry, "{body}");
                assert_eq!(body["error"], "rate_limited");
                limited += 1;
            }
            400 => assert_eq!(body["error"], "invalid_code"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(limited >= 30, "only {limited} of 60 refused");
    let other = from("127.0.0.3");
    let reply = demo.login(&other, "o-elsewhere", None).await;
    assert_eq!(reply["openid"], "o-elsewhere");
}

// ---------------------------------------------------------------- hyper

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_example_serves_the_same_flow() {
    let app = Example::start("hyper", &[]);
    let client = client();

    let alice = app.login(&client, "o-alice", Some("u-alice")).await;
    assert_login_reply(&alice, "o-alice", Some("u-alice"), WEEK_SECS);
    let bob = app.login(&client, "o-bob", None).await;
    assert_login_reply(&bob, "o-bob", None, WEEK_SECS);
    let alice_token = alice["token"].as_str().unwrap();
    let bob_token = bob["token"].as_str().unwrap();

    let (status, me) = app.me_json(&client, Some(alice_token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({"openid": "o-alice", "unionid": "u-alice"}));
    let (status, me) = app.me_json(&client, Some(bob_token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({"openid": "o-bob", "unionid": null}));

    let res = app.me(&client, None).await;
    assert!(res.headers().contains_key("www-authenticate"));
    let (status, body) = status_json(res).await;
    assert_error(status, &body, 401, "missing_token");
    let (status, body) = app.me_json(&client, Some("not-a-token")).await;
    assert_error(status, &body, 401, "invalid_token");

    let code = app.mint(&client, "o-carol", None).await;
    assert_eq!(app.login_code(&client, &code).await.0, 200);
    let (status, body) = app.login_code(&client, &code).await;
    assert_error(status, &body, 400, "invalid_code");

    assert_eq!(app.logout(&client, alice_token).await, 204);
    let (status, body) = app.me_json(&client, Some(alice_token)).await;
    assert_error(status, &body, 401, "invalid_token");
    assert_eq!(app.me_json(&client, Some(bob_token)).await.0, 200);

    let res = client
        .get(format!("{}/nowhere", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

// ---------------------------------------------------------------- sqlx

async fn user_id(app: &Example, client: &reqwest::Client, token: &str) -> (i64, i64) {
    let (status, me) = app.me_json(client, Some(token)).await;
    assert_eq!(status, 200, "{me}");
    (
        me["user_id"].as_i64().expect("user_id"),
        me["login_count"].as_i64().expect("login_count"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_example_registers_then_finds_users() {
    let app = Example::start("sqlx_users", &[]);
    let client = client();

    let first = app.login(&client, "o-alice", Some("u-alice")).await;
    let first_token = first["token"].as_str().unwrap();
    let (alice_id, count) = user_id(&app, &client, first_token).await;
    assert_eq!(count, 1);

    // Same openid again: same row, one more login.
    let second = app.login(&client, "o-alice", None).await;
    let second_token = second["token"].as_str().unwrap();
    assert_ne!(first_token, second_token);
    let (again_id, count) = user_id(&app, &client, second_token).await;
    assert_eq!(again_id, alice_id);
    assert_eq!(count, 2);
    // The second session is Alice's too (that her row keeps the first
    // login's unionid is checked on PostgreSQL, where the test reads rows).
    let (_, me) = app.me_json(&client, Some(second_token)).await;
    assert_eq!(me["openid"], "o-alice");

    // Another openid: another row.
    let bob = app.login(&client, "o-bob", None).await;
    let (bob_id, count) = user_id(&app, &client, bob["token"].as_str().unwrap()).await;
    assert_ne!(bob_id, alice_id);
    assert_eq!(count, 1);

    // The first session still points at the same user.
    assert_eq!(user_id(&app, &client, first_token).await.0, alice_id);

    let (status, body) = app.me_json(&client, None).await;
    assert_error(status, &body, 401, "missing_token");
}

/// `DATABASE_URL` names a file: users survive a restart, and a database
/// failure during login is `503 store_unavailable`, not a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_example_uses_database_url_and_maps_failures() {
    let dir = std::env::temp_dir().join(format!(
        "wxlogin-sqlx-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = RemoveDir(dir.clone());
    let url = format!("sqlite://{}", dir.join("users.db").display());
    let client = client();

    let alice_id = {
        let app = Example::start("sqlx_users", &[("DATABASE_URL", &url)]);
        let alice = app.login(&client, "o-alice", None).await;
        user_id(&app, &client, alice["token"].as_str().unwrap())
            .await
            .0
    }; // killed here

    let app = Example::start("sqlx_users", &[("DATABASE_URL", &url)]);
    let alice = app.login(&client, "o-alice", None).await;
    let (id, count) = user_id(&app, &client, alice["token"].as_str().unwrap()).await;
    assert_eq!(id, alice_id, "the user row did not survive the restart");
    assert_eq!(count, 2);

    // Break the database under the running app: the hook fails.
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("DROP TABLE users").execute(&db).await.unwrap();
    db.close().await;
    let code = app.mint(&client, "o-dave", None).await;
    let (status, body) = app.login_code(&client, &code).await;
    assert_error(status, &body, 503, "store_unavailable");
    assert_eq!(body["relogin"], false);
    assert!(body.get("token").is_none(), "{body}");
}

/// The PostgreSQL server for [`sqlx_example_on_postgres`], from
/// `WXLOGIN_TEST_POSTGRES_URL` (`.ci/run` sets it, installing and starting
/// PostgreSQL where needed).
fn postgres_url() -> Option<String> {
    std::env::var("WXLOGIN_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The variable that says this run must include the PostgreSQL test, if
/// one does: `WXLOGIN_REQUIRE_POSTGRES` (set by `.ci/run`), or `CI` (set by
/// CI services, and for `.ci/run` in CI), unless empty, `0` or `false`.
fn postgres_required() -> Option<&'static str> {
    ["WXLOGIN_REQUIRE_POSTGRES", "CI"].into_iter().find(|var| {
        std::env::var(var).is_ok_and(|v| {
            let v = v.trim();
            !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
        })
    })
}

/// A schema of its own for one test run, so parallel runs on one server do
/// not share the `users` table. Dropping it drops the schema and the table
/// (on a thread of its own: `Drop` cannot await, and a panicking test must
/// clean up too).
struct PgSchema {
    admin_url: String,
    name: String,
}

impl PgSchema {
    async fn create(admin_url: &str) -> PgSchema {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("wxlogin_test_{}_{nanos}", std::process::id());
        let admin = sqlx::PgPool::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to WXLOGIN_TEST_POSTGRES_URL: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&admin)
            .await
            .expect("create the test schema");
        admin.close().await;
        PgSchema {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// The server URL with `search_path` set to this schema, for the example.
    fn url(&self) -> String {
        let sep = if self.admin_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.admin_url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let url = self.admin_url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(db) = sqlx::PgPool::connect(&url).await {
                    let _ = sqlx::query(&sql).execute(&db).await;
                    db.close().await;
                }
            });
        })
        .join();
    }
}

/// The sqlx example on PostgreSQL, through the same binary (sqlx's `Any`
/// driver): register and find users, the same row under concurrent first
/// logins, rows kept across a restart, and `503 store_unavailable` when the
/// table is gone. Without `WXLOGIN_TEST_POSTGRES_URL` it fails under CI
/// (see [`postgres_required`]) and is skipped, with a line on stderr,
/// elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_example_on_postgres() {
    let Some(admin_url) = postgres_url() else {
        if let Some(var) = postgres_required() {
            panic!(
                "{var} is set, so sqlx_example_on_postgres must run, but \
                 WXLOGIN_TEST_POSTGRES_URL is not: run .ci/run (it installs and starts \
                 PostgreSQL) or point the variable at a server, e.g. \
                 postgres://postgres@127.0.0.1:5432/test"
            );
        }
        eprintln!(
            "skipped: WXLOGIN_TEST_POSTGRES_URL not set (sqlx_example_on_postgres; \
             e.g. postgres://postgres@127.0.0.1:5432/test, as .ci/run sets it)"
        );
        return;
    };
    let schema = PgSchema::create(&admin_url).await;
    let url = schema.url();
    let client = client();

    let (alice_id, first_token) = {
        let app = Example::start("sqlx_users", &[("DATABASE_URL", &url)]);

        let first = app.login(&client, "o-alice", Some("u-alice")).await;
        let first_token = first["token"].as_str().unwrap().to_owned();
        let (alice_id, count) = user_id(&app, &client, &first_token).await;
        assert_eq!(count, 1);
        let (_, me) = app.me_json(&client, Some(&first_token)).await;
        assert_eq!(me["openid"], "o-alice", "{me}");
        assert_eq!(me["unionid"], "u-alice", "{me}");
        assert!(me["created_at"].as_i64().unwrap() > 1_600_000_000, "{me}");

        // Same openid again: same row, one more login, unionid kept.
        let second = app.login(&client, "o-alice", None).await;
        let (again_id, count) = user_id(&app, &client, second["token"].as_str().unwrap()).await;
        assert_eq!(again_id, alice_id);
        assert_eq!(count, 2);

        // Another openid: another row.
        let bob = app.login(&client, "o-bob", None).await;
        let (bob_id, count) = user_id(&app, &client, bob["token"].as_str().unwrap()).await;
        assert_ne!(bob_id, alice_id);
        assert_eq!(count, 1);

        // Six first logins of one openid at once: one row, six logins.
        let mut codes = Vec::new();
        for _ in 0..6 {
            codes.push(app.mint(&client, "o-race", None).await);
        }
        let replies =
            futures_util::future::join_all(codes.iter().map(|c| app.login_code(&client, c))).await;
        let mut race_ids = Vec::new();
        for (status, body) in &replies {
            assert_eq!(*status, 200, "{body}");
            race_ids.push(
                user_id(&app, &client, body["token"].as_str().unwrap())
                    .await
                    .0,
            );
        }
        race_ids.dedup();
        assert_eq!(
            race_ids.len(),
            1,
            "concurrent first logins made several rows"
        );

        (alice_id, first_token)
    }; // killed here

    // The rows are in PostgreSQL, in the test's schema.
    let db = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(&format!(
        "SELECT openid, unionid, login_count FROM {}.users ORDER BY openid",
        schema.name
    ))
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("o-alice".to_owned(), Some("u-alice".to_owned()), 2),
            ("o-bob".to_owned(), None, 1),
            ("o-race".to_owned(), None, 6),
        ]
    );

    // A restart keeps the users (the sessions were in memory: gone).
    let app = Example::start("sqlx_users", &[("DATABASE_URL", &url)]);
    let (status, body) = app.me_json(&client, Some(&first_token)).await;
    assert_error(status, &body, 401, "invalid_token");
    let alice = app.login(&client, "o-alice", None).await;
    let (id, count) = user_id(&app, &client, alice["token"].as_str().unwrap()).await;
    assert_eq!(id, alice_id, "the user row did not survive the restart");
    assert_eq!(count, 3);

    // Break the database under the running app: the hook fails.
    sqlx::query(&format!("DROP TABLE {}.users", schema.name))
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let code = app.mint(&client, "o-dave", None).await;
    let (status, body) = app.login_code(&client, &code).await;
    assert_error(status, &body, 503, "store_unavailable");
    assert_eq!(body["relogin"], false);
    assert!(body.get("token").is_none(), "{body}");
    drop(app);
    drop(schema);
}

// ---------------------------------------------------------------- envelope

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_example_wraps_errors_and_successes() {
    let app = Example::start("envelope", &[]);
    let client = client();

    // Errors: {"code","msg","data"}, status and WWW-Authenticate kept.
    let res = app.me(&client, None).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(res.headers()["content-type"], "application/json");
    let (_, body) = status_json(res).await;
    assert_eq!(body["code"], 40101, "{body}");
    assert!(
        body["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["data"],
        json!({"error": "missing_token", "relogin": true})
    );
    assert!(body.get("error").is_none(), "default format leaked: {body}");

    let (status, body) = app.me_json(&client, Some("forged")).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], 40102, "{body}");
    assert_eq!(body["data"]["error"], "invalid_token");

    let res = client
        .post(format!("{}/wx/login", app.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(res).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 40001, "{body}");
    assert_eq!(
        body["data"],
        json!({"error": "bad_request", "relogin": false})
    );

    // Success: code 0, the login reply in data.
    let code = app.mint(&client, "o-alice", Some("u-alice")).await;
    let (status, body) = app.login_code(&client, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["msg"], "ok");
    assert_login_reply(&body["data"], "o-alice", Some("u-alice"), WEEK_SECS);
    let token = body["data"]["token"].as_str().unwrap().to_owned();

    // The used code again: the login service's own error, in the envelope.
    let (status, body) = app.login_code(&client, &code).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 40002, "{body}");
    assert_eq!(body["data"]["relogin"], true);

    let (status, body) = app.me_json(&client, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"code": 0, "msg": "ok", "data": {"openid": "o-alice", "unionid": "u-alice"}})
    );

    assert_eq!(app.logout(&client, &token).await, 204);
    let (status, body) = app.me_json(&client, Some(&token)).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], 40102, "{body}");
    assert_eq!(body["data"]["relogin"], true);
}
