//! A real `redis-server` (or a three-master Redis Cluster) on loopback for
//! the Redis tests, plus the app those tests serve.
//!
//! Included by the Redis test files as
//! `#[path = "common/redis.rs"] mod redis_harness;` next to `mod common;`.
//!
//! `redis-server` and `redis-cli` must be on `PATH`; without them every
//! test panics with instructions (they never skip). Tests that only need
//! *a* Redis use [`some_redis`], which honours `WXLOGIN_TEST_REDIS_URL`;
//! tests that pause, kill or restart Redis always start their own.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wxlogin::store::{InvalidationSink, RedisStore, SessionStore, StoreId};
use wxlogin::{WxLogin, WxLoginBuilder};

use wxlogin::mock::FakeWeChat;

use crate::common::{get_json, wait_for, Forwarding};

/// The environment variable naming an external Redis for tests that only need one.
pub const URL_ENV: &str = "WXLOGIN_TEST_REDIS_URL";

const INSTALL_HINT: &str = "the Redis tests need `redis-server` and `redis-cli` on PATH \
     (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`; \
     or Valkey with redis-* symlinks). They never skip.";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh pseudo-random number (no extra crates: std's randomly keyed hasher).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A key prefix no other test uses, so tests can share one Redis.
pub fn unique_prefix(tag: &str) -> String {
    format!("wxt-{tag}-{:08x}", random_u64() as u32)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wxlogin-{tag}-{}-{:016x}",
        std::process::id(),
        random_u64()
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir for redis-server");
    dir
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free loopback port; for a cluster node, its bus port (`+10000`) must be free too.
fn free_port(with_bus: bool) -> u16 {
    if !with_bus {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
        return l.local_addr().unwrap().port();
    }
    for _ in 0..1000 {
        let port = 20_000 + (random_u64() % 10_000) as u16;
        if port_is_free(port) && port_is_free(port + 10_000) {
            return port;
        }
    }
    panic!("no free loopback port pair for a Redis Cluster node");
}

/// Whether a Redis answers PING on this port (plain RESP over TCP).
fn pings(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"+PONG"),
        Err(_) => false,
    }
}

fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!("`redis-cli` not found: {INSTALL_HINT}");
            }
            panic!("cannot run redis-cli: {e}");
        });
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    text.trim().to_owned()
}

/// Runs redis-cli and parses one integer reply.
fn int_reply(reply: &str, args: &[&str]) -> i64 {
    reply
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("redis-cli {args:?}: expected an integer, got {reply:?}"))
}

/// Anything redis-cli can talk to.
pub trait RedisCli {
    /// Runs `redis-cli <connection args> <args>` and returns its trimmed output.
    fn cli(&self, args: &[&str]) -> String;

    /// An integer reply (`PTTL`, `EXISTS`, ...).
    fn cli_int(&self, args: &[&str]) -> i64 {
        int_reply(&self.cli(args), args)
    }

    /// How many clients subscribe to `channel` (on the node the cli talks to).
    fn numsub(&self, channel: &str) -> i64 {
        let out = self.cli(&["PUBSUB", "NUMSUB", channel]);
        int_reply(&out, &["PUBSUB", "NUMSUB", channel])
    }
}

/// A `redis-server` child process on a free loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a throwaway Redis (no persistence) and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(Vec::new(), false)
    }

    fn start_with(extra: Vec<String>, cluster_node: bool) -> Self {
        let dir = temp_dir("redis");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port(cluster_node);
            let extra: Vec<String> = extra
                .iter()
                .map(|a| {
                    a.replace("{dir}", dir.to_str().unwrap())
                        .replace("{port}", &port.to_string())
                })
                .collect();
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
                extra,
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start; its last log:\n{last_log}");
    }

    /// Spawns the server on `self.port`; `Err(log)` if it exited (port taken, ...).
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.dir.join(format!("redis-{}.log", self.port));
        let log = std::fs::File::create(&log_path).expect("create the redis-server log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!("`redis-server` not found: {INSTALL_HINT}");
            }
            panic!("cannot start redis-server: {e}");
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("(exited with {status})\n{log}"));
            }
            if pings(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "redis-server on port {} never answered PING:\n{log}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// The server's working directory (where `SAVE` writes `dump.rdb`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {} failed", self.pid());
    }

    /// Stalls the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server (SIGKILL) and waits for it; the port is then closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (it loads
    /// `dump.rdb` if a `SAVE` wrote one).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !port_is_free(self.port) {
            assert!(Instant::now() < deadline, "port {} stays busy", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(log) = self.spawn_and_wait() {
            panic!("redis-server did not restart on port {}: {log}", self.port);
        }
    }
}

impl RedisCli for RedisServer {
    fn cli(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut all = vec!["-p", &port];
        all.extend_from_slice(args);
        redis_cli(&all)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis for tests that only need one: `WXLOGIN_TEST_REDIS_URL`, or our own server.
pub enum SomeRedis {
    /// A server this test started.
    Own(RedisServer),
    /// The URL from the environment.
    External(String),
}

/// A Redis to use: the one in `WXLOGIN_TEST_REDIS_URL` if set, else a new server.
pub fn some_redis() -> SomeRedis {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.trim().is_empty() => SomeRedis::External(url.trim().to_owned()),
        _ => SomeRedis::Own(RedisServer::start()),
    }
}

impl SomeRedis {
    /// The connection URL.
    pub fn url(&self) -> String {
        match self {
            SomeRedis::Own(s) => s.url(),
            SomeRedis::External(url) => url.clone(),
        }
    }
}

impl RedisCli for SomeRedis {
    fn cli(&self, args: &[&str]) -> String {
        match self {
            SomeRedis::Own(s) => s.cli(args),
            SomeRedis::External(url) => {
                let mut all = vec!["-u", url.as_str()];
                all.extend_from_slice(args);
                redis_cli(&all)
            }
        }
    }
}

/// A three-master Redis Cluster on loopback, torn down on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with
    /// `redis-cli --cluster create`, and waits for `cluster_state:ok` everywhere.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`RedisCluster::start`] with more `redis-server` arguments for every
    /// node (e.g. `--cluster-require-full-coverage no`, so that the other
    /// nodes keep serving their slots when one is killed).
    pub fn start_with(more: &[&str]) -> Self {
        let extra = || {
            let mut args = vec![
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                "{dir}/nodes-{port}.conf".to_owned(),
                "--cluster-node-timeout".to_owned(),
                "2000".to_owned(),
            ];
            args.extend(more.iter().map(|a| a.to_string()));
            args
        };
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(extra(), true))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = redis_cli(&args);
        assert!(
            out.contains("[OK]"),
            "redis-cli --cluster create failed:\n{out}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = node.cli(&["CLUSTER", "INFO"]);
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster never reached cluster_state:ok on port {}:\n{info}",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// `redis://127.0.0.1:PORT` of each node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Kills node `i` (SIGKILL); the others stay up.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Keys matching `pattern` on every node.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut all: Vec<String> = self
            .nodes
            .iter()
            .flat_map(|n| {
                n.cli(&["KEYS", pattern])
                    .lines()
                    .map(str::to_owned)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        all
    }
}

impl RedisCli for RedisCluster {
    /// Runs redis-cli in cluster mode (`-c`, following redirections) against the first node.
    fn cli(&self, args: &[&str]) -> String {
        let port = self.nodes[0].port.to_string();
        let mut all = vec!["-c", "-p", &port];
        all.extend_from_slice(args);
        redis_cli(&all)
    }
}

/// Waits until `channel` has at least `n` subscribers; returns how long that took.
pub async fn wait_numsub(
    redis: &(impl RedisCli + ?Sized),
    channel: &str,
    n: i64,
    within: Duration,
) -> Duration {
    let ((), took) = wait_for(within, || async {
        match redis.numsub(channel) {
            have if have >= n => Ok(()),
            have => Err(format!("{channel} has {have} subscribers, wanted {n}")),
        }
    })
    .await;
    took
}

/// A store that never subscribes to invalidations, so that only the cache
/// TTL bounds how long a revoked session stays cached.
pub struct Deaf<S>(pub S);

impl<S: SessionStore> Forwarding for Deaf<S> {
    fn inner(&self) -> &dyn SessionStore {
        &self.0
    }
    fn watch_invalidations(&self, _sink: InvalidationSink) {}
}

// ---------------------------------------------------------------------------
// The app the layer-level Redis tests serve: `common::app`, built by
// `common::builder(&fake).token_key(TOKEN_KEY)`.

/// The token key every instance of a test shares.
pub const TOKEN_KEY: &str = "redis-tests-token-key-0123456789abcdef";

/// An app instance served on loopback; stopping it drops its server task
/// (and with it the router's `WxLogin`).
pub struct Instance {
    pub wx: WxLogin,
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Instance {
    /// Serves `common::app(&wx)` on a free loopback port.
    pub async fn serve(wx: WxLogin) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = crate::common::app(&wx);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Instance { wx, base, task }
    }

    /// `{base}/api/me`.
    pub fn me(&self) -> String {
        format!("{}/api/me", self.base)
    }

    /// Stops serving; returns the `WxLogin` handle (drop it to end the instance).
    pub fn stop(self) -> WxLogin {
        self.task.abort();
        self.wx
    }
}

/// POSTs a logout with `token`; returns the status.
pub async fn logout(client: &reqwest::Client, base: &str, token: &str) -> u16 {
    status_of(client.post(format!("{base}/wx/logout")).bearer_auth(token)).await
}

/// Sends a request; returns the status.
pub async fn status_of(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.unwrap().status().as_u16()
}

/// A store with its own connection to `url` (as a separate process has),
/// under `prefix`.
pub async fn store_at(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect(url)
        .await
        .expect("connect to Redis")
        .with_prefix(prefix)
}

/// One instance of a fleet: `common::builder` with the shared token key
/// and `store`.
pub fn fleet_builder(fake: &FakeWeChat, store: RedisStore) -> WxLoginBuilder<()> {
    crate::common::builder(fake)
        .token_key(TOKEN_KEY)
        .store(store)
}

/// Polls `url` with `token` until it answers `want`; returns
/// how long that took, and the last body. Panics after `within`.
pub async fn wait_for_status(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    want: u16,
    within: Duration,
) -> (Duration, Value) {
    let (body, took) = wait_for(within, || async {
        match get_json(client, url, Some(token)).await {
            (status, body) if status == want => Ok(body),
            (status, body) => Err(format!(
                "{url} still answers {status} {body}, wanted {want}"
            )),
        }
    })
    .await;
    (took, body)
}

/// POSTs a login; the token on 200, else None.
pub async fn try_login(
    client: &reqwest::Client,
    base: &str,
    fake: &FakeWeChat,
    openid: &str,
) -> Option<String> {
    let res = client
        .post(format!("{base}/wx/login"))
        .body(format!(r#"{{"code":"{}"}}"#, fake.mint_code(openid)))
        .send()
        .await
        .ok()?;
    if res.status() != 200 {
        return None;
    }
    let body: serde_json::Value = res.json().await.ok()?;
    body["token"].as_str().map(str::to_owned)
}

/// Polls until every token in `tokens` gets 401 from every instance, or
/// panics once `deadline` has passed, naming the survivors.
pub async fn all_refused_by(
    client: &reqwest::Client,
    instances: &[&Instance],
    tokens: &[String],
    deadline: Instant,
    what: &str,
) {
    let mut left: Vec<(usize, &String)> = instances
        .iter()
        .enumerate()
        .flat_map(|(i, _)| tokens.iter().map(move |t| (i, t)))
        .collect();
    loop {
        let mut still = Vec::new();
        for (i, t) in left {
            let (status, body) = get_json(client, &instances[i].me(), Some(t)).await;
            if status != 401 {
                still.push((i, t));
            } else {
                assert_eq!(body["error"], "invalid_token", "{what}: {body}");
            }
        }
        if still.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {} token checks still accepted",
            still.len(),
            tokens.len() * instances.len()
        );
        left = still;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tokens of `tokens` that some instance still accepts.
pub async fn live(
    client: &reqwest::Client,
    instances: &[&Instance],
    tokens: &[String],
) -> Vec<usize> {
    let mut out = Vec::new();
    for (n, t) in tokens.iter().enumerate() {
        for inst in instances {
            if get_json(client, &inst.me(), Some(t)).await.0 == 200 {
                out.push(n);
                break;
            }
        }
    }
    out
}

/// The hex store ids listed in a user's index (`ZRANGE user_key 0 -1`,
/// without the newest-`session_key` member `k:<key>`).
pub fn index_members(redis: &(impl RedisCli + ?Sized), user_key: &str) -> Vec<String> {
    redis
        .cli(&["ZRANGE", user_key, "0", "-1"])
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty() && !l.starts_with("k:"))
        .collect()
}

/// A store id from its 32 hex digits (as Redis keys and indexes show it).
pub fn parse_store_id(hex: &str) -> StoreId {
    assert_eq!(hex.len(), 32, "not a store id: {hex:?}");
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex store id");
    }
    StoreId(out)
}
