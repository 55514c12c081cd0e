//! Many users at once, end to end: the demo binary as a real process, 200
//! concurrent logins (codes minted over HTTP from the fake WeChat) from 25
//! loopback addresses (the demo limits logins per client address), then
//! 2,000 authenticated `GET /api/me` in shuffled order, each answered with
//! its own token owner's identity.
//!
//! Like `tests/examples.rs`, it builds the examples once (`cargo build
//! --examples`, a no-op when fresh) because `cargo test --test concurrency`
//! does not. The whole run is bounded by [`RUN_TIMEOUT`].

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const USERS: usize = 200;
/// Source addresses the logins come from (127.0.0.100 and on): eight users
/// each, within one address's default share (20 at once).
const ADDRESSES: usize = 25;
const REQUESTS_PER_USER: usize = 10;
/// In-flight `/api/me` requests: high enough to overlap heavily, low enough
/// for a 1024 file-descriptor limit.
const MAX_IN_FLIGHT: usize = 200;
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The demo binary, built if needed: the test executable lives in
/// `target/<profile>/deps/`, the examples in `target/<profile>/examples/`.
fn demo_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in target/<profile>/deps")
        .to_owned();
    if std::env::var_os("WXLOGIN_SKIP_EXAMPLE_BUILD").is_none() {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet", "--examples", "--all-features"])
            .args(["--profile", &profile])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("cannot run cargo to build the examples");
        assert!(
            out.status.success(),
            "`cargo build --examples` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = profile_dir
        .join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "example binary {} is missing: build it with `cargo build --examples --all-features`",
        path.display()
    );
    path
}

/// The running demo; dropping it kills the process.
struct Demo {
    child: Child,
    base: String,
    fake: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Demo {
        let mut cmd = Command::new(demo_bin());
        for var in [
            "WX_APPID",
            "WX_SECRET",
            "WX_API_BASE",
            "WXLOGIN_REDIS_URL",
            "WXLOGIN_TOKEN_KEY",
            "WXLOGIN_SESSION_TTL",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .env("WXLOGIN_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the demo");

        let stderr_text = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let sink = stderr_text.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap();
                if s.len() < 64 * 1024 {
                    s.push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }
        });
        // Lines go to the test until both addresses are known; the thread
        // keeps draining afterwards so the demo never blocks on its stdout.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });

        let mut demo = Demo {
            child,
            base: String::new(),
            fake: String::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while demo.base.is_empty() || demo.fake.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                panic!(
                    "the demo did not print its addresses within {START_TIMEOUT:?} (exited: {:?}); stderr:\n{}",
                    demo.child.try_wait().ok().flatten(),
                    stderr_text.lock().unwrap()
                );
            };
            for (marker, slot) in [
                ("fake wechat on ", &mut demo.fake),
                ("listening on ", &mut demo.base),
            ] {
                if let Some(at) = line.find(marker) {
                    if let Some(url) = line[at + marker.len()..].split_whitespace().next() {
                        *slot = url.to_owned();
                    }
                }
            }
        }
        demo
    }
}

/// Fisher-Yates with xorshift64*: enough to interleave users, no extra crate.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..items.len()).rev() {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        items.swap(i, (r % (i as u64 + 1)) as usize);
    }
}

async fn login(client: reqwest::Client, demo_base: String, fake: String, openid: String) -> String {
    let res = client
        .post(format!("{fake}/_fake/wx.login"))
        .body(json!({ "openid": openid }).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("minting a code for {openid}: {e}"));
    assert_eq!(res.status(), 200, "minting a code for {openid}");
    let code = res.json::<Value>().await.unwrap()["code"]
        .as_str()
        .expect("a code")
        .to_owned();

    let res = client
        .post(format!("{demo_base}/wx/login"))
        .body(json!({ "code": code }).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("login of {openid}: {e}"));
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "login of {openid}: {body}");
    assert_eq!(body["openid"], openid.as_str(), "login of {openid}: {body}");
    body["token"].as_str().expect("a token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_logins_and_requests_stay_separate() {
    let demo = Demo::start();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let from: Vec<reqwest::Client> = (0..ADDRESSES)
        .map(|a| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 0, 100 + a as u8]))
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap()
        })
        .collect();

    let run = async {
        // 200 concurrent logins, distinct openids.
        let mut logins = JoinSet::new();
        for i in 0..USERS {
            let openid = format!("o-user-{i:03}");
            let fut = login(
                from[i % ADDRESSES].clone(),
                demo.base.clone(),
                demo.fake.clone(),
                openid.clone(),
            );
            logins.spawn(async move { (openid, fut.await) });
        }
        let mut tokens: HashMap<String, String> = HashMap::new();
        while let Some(joined) = logins.join_next().await {
            let (openid, token) = joined.expect("a login task panicked");
            tokens.insert(openid, token);
        }
        assert_eq!(tokens.len(), USERS);
        let distinct: HashSet<&String> = tokens.values().collect();
        assert_eq!(distinct.len(), USERS, "two logins got the same token");

        // 2,000 authenticated requests, users interleaved.
        let mut plan: Vec<(String, String)> = tokens
            .iter()
            .flat_map(|(o, t)| std::iter::repeat_n((o.clone(), t.clone()), REQUESTS_PER_USER))
            .collect();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        shuffle(&mut plan, seed);

        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut requests = JoinSet::new();
        for (openid, token) in plan {
            let client = client.clone();
            let url = format!("{}/api/me", demo.base);
            let permits = permits.clone();
            requests.spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                let res = client
                    .get(url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("/api/me for {openid}: {e}"));
                let status = res.status();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                assert_eq!(status, 200, "/api/me for {openid}: {body}");
                assert_eq!(
                    body["openid"],
                    openid.as_str(),
                    "/api/me answered another user's identity"
                );
                (
                    openid,
                    body["user_id"].as_u64().expect("the demo's user_id"),
                )
            });
        }
        let mut user_ids: HashMap<String, HashSet<u64>> = HashMap::new();
        let mut answered = 0;
        while let Some(joined) = requests.join_next().await {
            let (openid, user_id) = joined.expect("a request task panicked");
            user_ids.entry(openid).or_default().insert(user_id);
            answered += 1;
        }
        assert_eq!(answered, USERS * REQUESTS_PER_USER);

        // Each user kept one app user id, and the demo's hook gave 200 different ones.
        assert_eq!(user_ids.len(), USERS);
        let mut all = HashSet::new();
        for (openid, ids) in &user_ids {
            assert_eq!(ids.len(), 1, "{openid} saw several user ids: {ids:?}");
            all.extend(ids.iter().copied());
        }
        assert_eq!(all.len(), USERS, "two users share an app user id");
    };
    tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("the run did not finish within {RUN_TIMEOUT:?}"));
}
