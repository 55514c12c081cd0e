//! A fake WeChat API on loopback, for your own tests and for the demo
//! (feature `mock`).
//!
//! [`FakeWeChat`] is a real HTTP server on `127.0.0.1` that answers
//! `GET /sns/jscode2session` the way WeChat does: JSON bodies sent as
//! `Content-Type: text/plain`, errors as HTTP 200 with an `errcode`, login
//! codes that are single use and expire after five minutes, and a fresh
//! `session_key` for the user on every successful exchange. Point the crate
//! (or any WeChat client) at [`FakeWeChat::base_url`] instead of
//! `https://api.weixin.qq.com`, and play the mini program's `wx.login()`
//! with [`FakeWeChat::mint_code`].
//!
//! To test failure handling, queue replies with [`FakeWeChat::push_reply`]
//! (busy WeChat, rate limits, 502 pages, truncated JSON, dropped
//! connections), slow every reply down with [`FakeWeChat::set_latency`], and
//! count the calls that reached it with [`FakeWeChat::code2session_calls`].
//!
//! The APIs behind the access token behave like WeChat's too:
//! `POST /cgi-bin/stable_token` (JSON body; normal mode hands out the same
//! token while it is valid; [`FakeWeChat::set_access_token_lifetime`],
//! [`FakeWeChat::expire_access_tokens`], [`FakeWeChat::stable_token_calls`]),
//! `GET /wxa/checksession` (40001 for a bad access token, 87009 unless the
//! signature is the HMAC of the user's *current* `session_key`) and
//! `POST /wxa/business/getuserphonenumber` (codes from
//! [`FakeWeChat::mint_phone_code`], single use: 40029 on reuse).
//!
//! For curl users and the demo it also serves `POST /_fake/wx.login` with a
//! JSON body `{"openid": "...", "unionid": "..."}` (both optional; a random
//! openid is made up when none is given), answering `{"code": "..."}`, and
//! `POST /_fake/phone_code` with `{"phoneNumber": "...", "countryCode": "86"}`
//! (both optional), answering a phone-number code as `{"code": "..."}`.
//!
//! ```
//! use wxlogin::mock::{FakeReply, FakeWeChat};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let wechat = FakeWeChat::start("wx-test-appid", "test-secret").await?;
//! let code = wechat.mint_code("o-alice");
//! let url = format!(
//!     "{}/sns/jscode2session?appid=wx-test-appid&secret=test-secret&js_code={code}&grant_type=authorization_code",
//!     wechat.base_url(),
//! );
//!
//! let reply = reqwest::get(&url).await?.text().await?;
//! assert!(reply.contains(r#""openid":"o-alice""#));
//!
//! // A code is good for one exchange only.
//! let reply = reqwest::get(&url).await?.text().await?;
//! assert!(reply.contains(r#""errcode":40163"#));
//!
//! // Make WeChat busy for the next call.
//! wechat.push_reply(FakeReply::Errcode(-1));
//! let reply = reqwest::get(&url).await?.text().await?;
//! assert!(reply.contains(r#""errcode":-1"#));
//! assert_eq!(wechat.code2session_calls(), 3);
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a minted code stays valid unless changed with
/// [`FakeWeChat::set_code_lifetime`]: five minutes, like WeChat's.
pub const CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How long an access token from `/cgi-bin/stable_token` lives unless
/// changed with [`FakeWeChat::set_access_token_lifetime`]: two hours, like WeChat's.
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

/// How long a phone-number code stays valid: five minutes, like WeChat's.
pub const PHONE_CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Largest body accepted by `POST /_fake/wx.login`.
const MAX_LOGIN_BODY: usize = 16 * 1024;

/// A fake WeChat API server on a loopback port.
///
/// Clones share one server. It stops when the last clone is dropped or on
/// [`FakeWeChat::shutdown`]; it runs on the Tokio runtime that started it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{body::Body, Router};
/// use http::{Request, StatusCode};
/// use tower::ServiceExt as _;
/// use wxlogin::{mock::FakeWeChat, WxLogin};
///
/// // In a test: the app under test talks to the fake instead of WeChat.
/// let wechat = FakeWeChat::start("wx1", "s").await?;
/// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
/// let app = Router::new().route_service("/wx/login", wx.login_service());
///
/// let code = wechat.mint_code("o-alice");
/// let res = app
///     .oneshot(Request::post("/wx/login").body(Body::from(format!(r#"{{"code":"{code}"}}"#)))?)
///     .await?;
/// assert_eq!(res.status(), StatusCode::OK);
/// assert_eq!(wechat.code2session_calls(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FakeWeChat {
    handle: Arc<Handle>,
}

/// Owned by the clones only, so that dropping the last clone stops the server.
struct Handle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// What the handles and the server tasks share.
struct Shared {
    app_id: String,
    app_secret: String,
    addr: SocketAddr,
    calls: AtomicUsize,
    stable_token_calls: AtomicUsize,
    checksession_calls: AtomicUsize,
    phone_number_calls: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    /// Mini programs served besides the first, with their secrets.
    more_apps: Vec<(String, String)>,
    codes: HashMap<String, MintedCode>,
    /// `codes` is purged of expired codes when it reaches this size.
    codes_purge_at: usize,
    /// The latest session_key handed out per openid.
    session_keys: HashMap<String, String>,
    replies: VecDeque<FakeReply>,
    latency: Duration,
    code_lifetime: Duration,
    /// Every access token still valid, and when it ends.
    access_tokens: HashMap<String, Instant>,
    /// The newest access token, handed out again in normal mode.
    current_access_token: Option<String>,
    access_token_lifetime: Duration,
    phone_codes: HashMap<String, PhoneCode>,
    phone_codes_purge_at: usize,
}

/// Forgets a code map's expired entries once it has doubled since the last
/// pass, so a mint costs O(1) amortized (a pass on every mint made a long
/// load test's minting quadratic). Expired codes left in between answer
/// 40029 anyway: the exchange checks the expiry.
fn purge_when_grown<V>(
    map: &mut HashMap<String, V>,
    purge_at: &mut usize,
    live: impl Fn(&V) -> bool,
) {
    if map.len() >= *purge_at {
        map.retain(|_, v| live(v));
        *purge_at = (map.len() * 2).max(PURGE_MIN);
    }
}

/// The size below which code maps are never purged.
const PURGE_MIN: usize = 1024;

struct PhoneCode {
    phone_number: String,
    country_code: String,
    country_code_as_number: bool,
    expires: Instant,
    used: bool,
}

struct MintedCode {
    /// The mini program the code was minted for; `None` is the first app.
    app_id: Option<String>,
    openid: String,
    unionid: Option<String>,
    expires: Instant,
    used: bool,
}

/// A reply to queue with [`FakeWeChat::push_reply`]: the next
/// `jscode2session` call answers with it instead of the normal behaviour
/// (the code in that call is then left untouched).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{body::Body, Router};
/// use http::{Request, StatusCode};
/// use tower::ServiceExt as _;
/// use wxlogin::mock::{FakeReply, FakeWeChat};
/// use wxlogin::WxLogin;
///
/// let wechat = FakeWeChat::start("wx1", "s").await?;
/// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
/// let app = Router::new().route_service("/wx/login", wx.login_service());
/// let login = |code: String| Request::post("/wx/login").body(Body::from(format!(r#"{{"code":"{code}"}}"#)));
///
/// // WeChat's minute quota is spent: 429 `rate_limited`, and no retry.
/// wechat.push_reply(FakeReply::Errcode(45011));
/// let res = app.clone().oneshot(login(wechat.mint_code("o-alice"))?).await?;
/// assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
///
/// // A high-risk user: 403 `user_restricted`.
/// wechat.push_reply(FakeReply::Errcode(40226));
/// let res = app.oneshot(login(wechat.mint_code("o-bob"))?).await?;
/// assert_eq!(res.status(), StatusCode::FORBIDDEN);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeReply {
    /// HTTP 200 with `{"errcode":N,"errmsg":"..."}`, using WeChat's message
    /// for the well-known codes (`-1` "system error", `40029` "invalid code",
    /// `40163` "code been used", `45011`, `40226` "code blocked", ...).
    Errcode(i64),
    /// Like [`FakeReply::Errcode`] with the errcode as a JSON string:
    /// `{"errcode":"40029",...}`, as some WeChat APIs send it.
    ErrcodeAsString(i64),
    /// This HTTP status (an invalid one becomes 500) with this body, as
    /// `text/plain`: a 500 with JSON, a 502 page from a proxy, ...
    Status(u16, String),
    /// HTTP 200, `text/plain`, with this raw body (truncated JSON, empty, HTML, ...).
    Body(String),
    /// Waits this long, then answers normally.
    Delay(Duration),
    /// Closes the connection without answering.
    Reset,
}

impl FakeWeChat {
    /// Starts the server on `127.0.0.1` with a free port, accepting this
    /// appid and app secret.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx-test-appid", "test-secret").await?;
    /// assert!(wechat.base_url().starts_with("http://127.0.0.1:"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(
        app_id: impl Into<String>,
        app_secret: impl Into<String>,
    ) -> std::io::Result<FakeWeChat> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let shared = Arc::new(Shared {
            app_id: app_id.into(),
            app_secret: app_secret.into(),
            addr: listener.local_addr()?,
            calls: AtomicUsize::new(0),
            stable_token_calls: AtomicUsize::new(0),
            checksession_calls: AtomicUsize::new(0),
            phone_number_calls: AtomicUsize::new(0),
            state: Mutex::new(State {
                more_apps: Vec::new(),
                codes: HashMap::new(),
                codes_purge_at: PURGE_MIN,
                session_keys: HashMap::new(),
                replies: VecDeque::new(),
                latency: Duration::ZERO,
                code_lifetime: CODE_LIFETIME,
                access_tokens: HashMap::new(),
                current_access_token: None,
                access_token_lifetime: ACCESS_TOKEN_LIFETIME,
                phone_codes: HashMap::new(),
                phone_codes_purge_at: PURGE_MIN,
            }),
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, shared.clone(), stopped));
        Ok(FakeWeChat {
            handle: Arc::new(Handle { shared, stop }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The base URL to use instead of `https://api.weixin.qq.com`, like
    /// `http://127.0.0.1:41234` (no trailing slash).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    /// # let _ = wx;
    /// assert!(!wechat.base_url().ends_with('/'));
    /// # Ok(())
    /// # }
    /// ```
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared().addr)
    }

    /// The appid this fake accepts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// assert_eq!(wechat.app_id(), "wx1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn app_id(&self) -> &str {
        &self.shared().app_id
    }

    /// A fresh login code for this user, as `wx.login()` would give the mini
    /// program: of a real code's shape (32 ASCII letters and digits), unique,
    /// single use, valid for [`CODE_LIFETIME`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn exchange(base: &str, appid: &str, secret: &str, code: &str) -> reqwest::Result<String> {
    /// #     let url = format!("{base}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code");
    /// #     reqwest::get(url).await?.text().await
    /// # }
    ///
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let code = wechat.mint_code("o-alice");
    /// assert_eq!(code.len(), 32);
    /// assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
    /// assert_ne!(code, wechat.mint_code("o-alice"));
    /// let reply = exchange(&wechat.base_url(), "wx1", "s", &code).await?;
    /// assert!(reply.contains(r#""openid":"o-alice""#));
    /// # Ok(())
    /// # }
    /// ```
    pub fn mint_code(&self, openid: &str) -> String {
        self.shared().mint(openid, None)
    }

    /// Like [`FakeWeChat::mint_code`], for a user whose exchange also returns
    /// this `unionid` (the mini program is bound to an Open Platform account).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn exchange(base: &str, appid: &str, secret: &str, code: &str) -> reqwest::Result<String> {
    /// #     let url = format!("{base}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code");
    /// #     reqwest::get(url).await?.text().await
    /// # }
    ///
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let code = wechat.mint_code_with_unionid("o-alice", "u-alice");
    /// let reply = exchange(&wechat.base_url(), "wx1", "s", &code).await?;
    /// assert!(reply.contains(r#""unionid":"u-alice""#));
    /// # Ok(())
    /// # }
    /// ```
    pub fn mint_code_with_unionid(&self, openid: &str, unionid: &str) -> String {
        self.shared().mint(openid, Some(unionid))
    }

    /// Serves another mini program too (a backend with several apps): its
    /// credentials are accepted, and [`FakeWeChat::mint_code_for`] mints its
    /// codes. A code only exchanges under the app it was minted for, as on
    /// WeChat (another app's credentials get 40029).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn exchange(base: &str, appid: &str, secret: &str, code: &str) -> reqwest::Result<String> {
    /// #     let url = format!("{base}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code");
    /// #     reqwest::get(url).await?.text().await
    /// # }
    ///
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx_shop", "shop-secret").await?;
    /// wechat.add_app("wx_game", "game-secret");
    /// let code = wechat.mint_code_for("wx_game", "o-alice");
    /// let reply = exchange(&wechat.base_url(), "wx_game", "game-secret", &code).await?;
    /// assert!(reply.contains(r#""openid":"o-alice""#));
    /// # Ok(())
    /// # }
    /// ```
    pub fn add_app(&self, app_id: &str, app_secret: &str) {
        self.shared()
            .state()
            .more_apps
            .push((app_id.to_owned(), app_secret.to_owned()));
    }

    /// What `wx.login()` returns in the mini program `app_id` (one added
    /// with [`FakeWeChat::add_app`], or the first) for this user.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn exchange(base: &str, appid: &str, secret: &str, code: &str) -> reqwest::Result<String> {
    /// #     let url = format!("{base}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code");
    /// #     reqwest::get(url).await?.text().await
    /// # }
    ///
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx_shop", "shop-secret").await?;
    /// wechat.add_app("wx_game", "game-secret");
    /// // A code only exchanges under the app it was minted for.
    /// let code = wechat.mint_code_for("wx_game", "o-alice");
    /// let reply = exchange(&wechat.base_url(), "wx_shop", "shop-secret", &code).await?;
    /// assert!(reply.contains(r#""errcode":40029"#));
    /// # Ok(())
    /// # }
    /// ```
    pub fn mint_code_for(&self, app_id: &str, openid: &str) -> String {
        let shared = self.shared();
        let app = (app_id != shared.app_id).then_some(app_id);
        shared.mint_for(app, openid, None)
    }

    /// The latest `session_key` handed out for this user, if any; tests use
    /// it to encrypt data the way WeChat would for the mini program.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn exchange(base: &str, appid: &str, secret: &str, code: &str) -> reqwest::Result<String> {
    /// #     let url = format!("{base}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code");
    /// #     reqwest::get(url).await?.text().await
    /// # }
    ///
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// assert!(wechat.session_key("o-alice").is_none());
    /// let code = wechat.mint_code("o-alice");
    /// exchange(&wechat.base_url(), "wx1", "s", &code).await?;
    /// let key = wechat.session_key("o-alice").expect("handed out");
    /// assert_eq!(key.len(), 24); // base64 of 16 bytes
    /// # Ok(())
    /// # }
    /// ```
    pub fn session_key(&self, openid: &str) -> Option<String> {
        self.shared().state().session_keys.get(openid).cloned()
    }

    /// Queues a reply: the next `jscode2session` call answers with it
    /// instead of the normal behaviour. Replies are used in the order pushed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn exchange(base: &str, appid: &str, secret: &str, code: &str) -> reqwest::Result<String> {
    /// #     let url = format!("{base}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code");
    /// #     reqwest::get(url).await?.text().await
    /// # }
    ///
    /// use wxlogin::mock::{FakeReply, FakeWeChat};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// wechat.push_reply(FakeReply::Errcode(-1)); // "system error": WeChat is busy
    /// let code = wechat.mint_code("o-alice");
    /// let reply = exchange(&wechat.base_url(), "wx1", "s", &code).await?;
    /// assert!(reply.contains(r#""errcode":-1"#));
    /// // The code was left untouched: it still works.
    /// let reply = exchange(&wechat.base_url(), "wx1", "s", &code).await?;
    /// assert!(reply.contains(r#""openid":"o-alice""#));
    /// # Ok(())
    /// # }
    /// ```
    pub fn push_reply(&self, reply: FakeReply) {
        self.shared().state().replies.push_back(reply);
    }

    /// Waits this long before every `jscode2session` reply, queued ones
    /// included (the `/_fake/` routes answer at once). Zero by default.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn exchange(base: &str, appid: &str, secret: &str, code: &str) -> reqwest::Result<String> {
    /// #     let url = format!("{base}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code");
    /// #     reqwest::get(url).await?.text().await
    /// # }
    ///
    /// use std::time::{Duration, Instant};
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// wechat.set_latency(Duration::from_millis(50));
    /// let started = Instant::now();
    /// exchange(&wechat.base_url(), "wx1", "s", &wechat.mint_code("o-alice")).await?;
    /// assert!(started.elapsed() >= Duration::from_millis(50));
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_latency(&self, latency: Duration) {
        self.shared().state().latency = latency;
    }

    /// How long codes minted from now on stay valid (default [`CODE_LIFETIME`]);
    /// a short one lets a test see an expired code (40029).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn exchange(base: &str, appid: &str, secret: &str, code: &str) -> reqwest::Result<String> {
    /// #     let url = format!("{base}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code");
    /// #     reqwest::get(url).await?.text().await
    /// # }
    ///
    /// use std::time::Duration;
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// wechat.set_code_lifetime(Duration::from_millis(1));
    /// let code = wechat.mint_code("o-alice");
    /// tokio::time::sleep(Duration::from_millis(20)).await;
    /// let reply = exchange(&wechat.base_url(), "wx1", "s", &code).await?;
    /// assert!(reply.contains(r#""errcode":40029"#)); // expired
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_code_lifetime(&self, lifetime: Duration) {
        self.shared().state().code_lifetime = lifetime;
    }

    /// How many `jscode2session` requests reached the fake, whatever they
    /// were answered (retries each count).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn exchange(base: &str, appid: &str, secret: &str, code: &str) -> reqwest::Result<String> {
    /// #     let url = format!("{base}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code");
    /// #     reqwest::get(url).await?.text().await
    /// # }
    ///
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// exchange(&wechat.base_url(), "wx1", "s", "not-a-code").await?;
    /// exchange(&wechat.base_url(), "wx1", "s", &wechat.mint_code("o-alice")).await?;
    /// assert_eq!(wechat.code2session_calls(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn code2session_calls(&self) -> usize {
        self.shared().calls.load(Ordering::SeqCst)
    }

    /// How many `/cgi-bin/stable_token` requests reached the fake.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    /// assert_eq!(wechat.stable_token_calls(), 0); // fetched on first use, not at build
    /// wx.access_token().await?;
    /// assert_eq!(wechat.stable_token_calls(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stable_token_calls(&self) -> usize {
        self.shared().stable_token_calls.load(Ordering::SeqCst)
    }

    /// How many `/wxa/checksession` requests reached the fake.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{mock::FakeWeChat, Secret, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    /// let _ = wx.check_session_key("o-alice", &Secret::new("c3RhbGU=")).await;
    /// assert_eq!(wechat.checksession_calls(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn checksession_calls(&self) -> usize {
        self.shared().checksession_calls.load(Ordering::SeqCst)
    }

    /// How many `/wxa/business/getuserphonenumber` requests reached the fake.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    /// wx.phone_number(&wechat.mint_phone_code("13800138000", "86")).await?;
    /// assert_eq!(wechat.phone_number_calls(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn phone_number_calls(&self) -> usize {
        self.shared().phone_number_calls.load(Ordering::SeqCst)
    }

    /// How long access tokens issued from now on live (default
    /// [`ACCESS_TOKEN_LIFETIME`]; at least one second). `stable_token`
    /// reports it in whole seconds as `expires_in`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// wechat.set_access_token_lifetime(Duration::from_secs(60));
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    /// assert!(!wx.access_token().await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.shared().state().access_token_lifetime = lifetime.max(Duration::from_secs(1));
    }

    /// Ends every access token at once, as if they had expired: the next
    /// API call with one gets `40001`, and the next `stable_token` call
    /// issues a new token.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn stable_token(base: &str) -> Result<String, Box<dyn std::error::Error>> {
    /// #     let body = serde_json::json!({"grant_type": "client_credential", "appid": "wx1", "secret": "s"});
    /// #     let reply: serde_json::Value = reqwest::Client::new()
    /// #         .post(format!("{base}/cgi-bin/stable_token")).body(body.to_string()).send().await?.json().await?;
    /// #     Ok(reply["access_token"].as_str().ok_or("no access_token")?.to_owned())
    /// # }
    ///
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let first = stable_token(&wechat.base_url()).await?;
    /// assert_eq!(stable_token(&wechat.base_url()).await?, first); // the same while valid
    /// wechat.expire_access_tokens();
    /// assert_ne!(stable_token(&wechat.base_url()).await?, first);
    /// # Ok(())
    /// # }
    /// ```
    pub fn expire_access_tokens(&self) {
        let mut state = self.shared().state();
        state.access_tokens.clear();
        state.current_access_token = None;
    }

    /// A phone-number code, as `<button open-type="getPhoneNumber">` gives
    /// the mini program (`e.detail.code`): single use, valid for
    /// [`PHONE_CODE_LIFETIME`]. `getuserphonenumber` answers it with this
    /// number (`purePhoneNumber`; `phoneNumber` adds `+<country code>`
    /// outside China) and `countryCode` as a JSON string, like `"86"`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    /// let phone = wx.phone_number(&wechat.mint_phone_code("13800138000", "86")).await?;
    /// assert_eq!(phone.phone_number, "13800138000");
    /// assert_eq!(phone.country_code, "86");
    /// # Ok(())
    /// # }
    /// ```
    pub fn mint_phone_code(&self, phone_number: &str, country_code: &str) -> String {
        self.shared()
            .mint_phone_code(phone_number, country_code, false)
    }

    /// Like [`FakeWeChat::mint_phone_code`], with `countryCode` sent as a
    /// bare JSON number (`86`), as in WeChat's own example reply.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use wxlogin::{mock::FakeWeChat, WxLogin};
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let wx = WxLogin::builder().app_id("wx1").app_secret("s").api_base(wechat.base_url()).build()?;
    /// let phone = wx.phone_number(&wechat.mint_phone_code_numeric("13800138000", 86)).await?;
    /// assert_eq!(phone.country_code, "86"); // read as a string either way
    /// # Ok(())
    /// # }
    /// ```
    pub fn mint_phone_code_numeric(&self, phone_number: &str, country_code: u32) -> String {
        self.shared()
            .mint_phone_code(phone_number, &country_code.to_string(), true)
    }

    /// Stops the server: the port stops accepting and open connections are
    /// closed. Dropping the last clone does the same.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use wxlogin::mock::FakeWeChat;
    /// let wechat = FakeWeChat::start("wx1", "s").await?;
    /// let url = format!("{}/sns/jscode2session", wechat.base_url());
    /// wechat.shutdown();
    /// // Connections are refused from now on (allowing the accept loop a moment to stop).
    /// let mut refused = false;
    /// for _ in 0..100 {
    ///     if reqwest::get(&url).await.is_err() {
    ///         refused = true;
    ///         break;
    ///     }
    ///     tokio::time::sleep(Duration::from_millis(20)).await;
    /// }
    /// assert!(refused);
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown(&self) {
        self.handle.stop.send_replace(true);
    }
}

impl fmt::Debug for FakeWeChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeWeChat")
            .field("base_url", &self.base_url())
            .field("app_id", &self.app_id())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge the other tests' fake.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn mint_phone_code(&self, phone_number: &str, country_code: &str, as_number: bool) -> String {
        // Shaped like WeChat's: 64 hex digits.
        let code = hex(&random_bytes::<32>());
        let now = Instant::now();
        let mut state = self.state();
        let state = &mut *state;
        purge_when_grown(
            &mut state.phone_codes,
            &mut state.phone_codes_purge_at,
            |minted| minted.expires > now,
        );
        state.phone_codes.insert(
            code.clone(),
            PhoneCode {
                phone_number: phone_number.to_owned(),
                country_code: country_code.to_owned(),
                country_code_as_number: as_number,
                expires: now + PHONE_CODE_LIFETIME,
                used: false,
            },
        );
        code
    }

    /// Whether WeChat would accept this access token now.
    fn access_token_valid(&self, token: Option<&str>) -> bool {
        let Some(token) = token else {
            return false;
        };
        self.state()
            .access_tokens
            .get(token)
            .is_some_and(|expires| *expires > Instant::now())
    }

    fn mint(&self, openid: &str, unionid: Option<&str>) -> String {
        self.mint_for(None, openid, unionid)
    }

    fn mint_for(&self, app_id: Option<&str>, openid: &str, unionid: Option<&str>) -> String {
        let code = random_code();
        let mut state = self.state();
        let now = Instant::now();
        let expires = now + state.code_lifetime;
        // Expired codes answer 40029 like unknown ones: forget them.
        let state = &mut *state;
        purge_when_grown(&mut state.codes, &mut state.codes_purge_at, |minted| {
            minted.expires > now
        });
        state.codes.insert(
            code.clone(),
            MintedCode {
                app_id: app_id.map(str::to_owned),
                openid: openid.to_owned(),
                unionid: unionid.map(str::to_owned),
                expires,
                used: false,
            },
        );
        code
    }
}

/// Accepts connections until the server is stopped.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            () = wait_stop(&mut stopped) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: let it pass.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| serve(shared.clone(), req));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                // Errors (including FakeReply::Reset) just close the connection.
                _ = connection => {}
                () = wait_stop(&mut stopped) => {}
            }
        });
    }
}

/// Resolves once the server is stopped or every handle is gone.
async fn wait_stop(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The service error that makes hyper drop the connection unanswered.
#[derive(Debug)]
struct ResetConnection;

impl fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection reset by FakeReply::Reset")
    }
}

impl std::error::Error for ResetConnection {}

type Reply = Result<Response<Full<Bytes>>, ResetConnection>;

async fn serve(shared: Arc<Shared>, req: Request<Incoming>) -> Reply {
    match (req.method(), req.uri().path()) {
        // WeChat reads the query whatever the method (a POST body gives 41002).
        (_, "/sns/jscode2session") => {
            let query = req.uri().query().unwrap_or("").to_owned();
            jscode2session(&shared, &query).await
        }
        (_, "/cgi-bin/stable_token") => Ok(stable_token(&shared, req).await),
        (_, "/wxa/checksession") => {
            let query = req.uri().query().unwrap_or("").to_owned();
            Ok(checksession(&shared, &query))
        }
        (_, "/wxa/business/getuserphonenumber") => Ok(phone_number(&shared, req).await),
        (&Method::POST, "/_fake/wx.login") => Ok(wx_login(&shared, req).await),
        (&Method::POST, "/_fake/phone_code") => Ok(fake_phone_code(&shared, req).await),
        _ => Ok(respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found".into(),
        )),
    }
}

async fn jscode2session(shared: &Shared, query: &str) -> Reply {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    let (queued, latency) = {
        let mut state = shared.state();
        (state.replies.pop_front(), state.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(match queued {
        None => exchange(shared, query),
        Some(FakeReply::Errcode(errcode)) => wechat_error(errcode, false),
        Some(FakeReply::ErrcodeAsString(errcode)) => wechat_error(errcode, true),
        Some(FakeReply::Status(status, body)) => respond(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "text/plain",
            body,
        ),
        Some(FakeReply::Body(body)) => respond(StatusCode::OK, "text/plain", body),
        Some(FakeReply::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            exchange(shared, query)
        }
        Some(FakeReply::Reset) => return Err(ResetConnection),
    })
}

/// The normal behaviour of `jscode2session`.
fn exchange(shared: &Shared, query: &str) -> Response<Full<Bytes>> {
    let params = parse_query(query);
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let Some(app_id) = param("appid") else {
        return wechat_error(41002, false);
    };
    let app_secret = if app_id == shared.app_id {
        shared.app_secret.clone()
    } else {
        match shared.state().more_apps.iter().find(|(id, _)| id == app_id) {
            Some((_, secret)) => secret.clone(),
            None => return wechat_error(40013, false),
        }
    };
    match param("secret") {
        None => return wechat_error(41004, false),
        Some(secret) if secret != app_secret => return wechat_error(40125, false),
        Some(_) => {}
    }
    let code_app = (app_id != shared.app_id).then(|| app_id.to_owned());
    if param("grant_type") != Some("authorization_code") {
        return wechat_error(40002, false);
    }
    let Some(code) = param("js_code") else {
        return wechat_error(41008, false);
    };

    let mut state = shared.state();
    let minted = match state.codes.get_mut(code) {
        Some(minted) if minted.expires > Instant::now() && minted.app_id == code_app => minted,
        _ => return wechat_error(40029, false),
    };
    if minted.used {
        return wechat_error(40163, false);
    }
    minted.used = true;
    let openid = minted.openid.clone();
    let unionid = minted.unionid.clone();
    // WeChat rotates the user's session_key on a new login.
    let session_key = STANDARD.encode(random_bytes::<16>());
    state
        .session_keys
        .insert(openid.clone(), session_key.clone());
    drop(state);

    let mut body = json!({ "session_key": session_key, "openid": openid });
    if let Some(unionid) = unionid {
        body["unionid"] = json!(unionid);
    }
    respond(StatusCode::OK, "text/plain", body.to_string())
}

/// Reads a small request body as JSON; `None` if it is unreadable, too long or not JSON.
async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Option<T> {
    let body = Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
        .ok()?
        .to_bytes();
    serde_json::from_slice(&body).ok()
}

/// A successful reply of the newer APIs: HTTP 200, JSON.
fn wechat_ok(mut body: serde_json::Value) -> Response<Full<Bytes>> {
    body["errcode"] = json!(0);
    body["errmsg"] = json!("ok");
    respond(
        StatusCode::OK,
        "application/json; encoding=utf-8",
        body.to_string(),
    )
}

/// `POST /cgi-bin/stable_token`: the app's access token. Normal mode hands
/// out the current token until its last stretch (the last five minutes,
/// or half its lifetime if that is shorter), then a new one, the old one
/// staying valid until it ends; `force_refresh` ends every older token.
async fn stable_token(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    struct TokenRequest {
        grant_type: Option<String>,
        appid: Option<String>,
        secret: Option<String>,
        #[serde(default)]
        force_refresh: bool,
    }
    shared.stable_token_calls.fetch_add(1, Ordering::SeqCst);
    if req.method() != Method::POST {
        return wechat_error(43002, false);
    }
    let Some(request) = json_body::<TokenRequest>(req).await else {
        return wechat_error(47001, false);
    };
    let filled = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    match filled(&request.appid) {
        None => return wechat_error(41002, false),
        Some(appid) if appid != shared.app_id => return wechat_error(40013, false),
        Some(_) => {}
    }
    match filled(&request.secret) {
        None => return wechat_error(41004, false),
        Some(secret) if secret != shared.app_secret => return wechat_error(40125, false),
        Some(_) => {}
    }
    if request.grant_type.as_deref() != Some("client_credential") {
        return wechat_error(40002, false);
    }

    let now = Instant::now();
    let mut state = shared.state();
    let lifetime = state.access_token_lifetime;
    let last_stretch = (lifetime / 2).min(Duration::from_secs(5 * 60));
    state.access_tokens.retain(|_, expires| *expires > now);
    if request.force_refresh {
        state.access_tokens.clear();
        state.current_access_token = None;
    }
    let current = state.current_access_token.as_ref().and_then(|token| {
        let expires = *state.access_tokens.get(token)?;
        let remaining = expires - now;
        (remaining > last_stretch).then(|| (token.clone(), remaining))
    });
    let (token, remaining) = match current {
        Some(current) => current,
        None => {
            let token = URL_SAFE_NO_PAD.encode(random_bytes::<96>());
            state.access_tokens.insert(token.clone(), now + lifetime);
            state.current_access_token = Some(token.clone());
            (token, lifetime)
        }
    };
    drop(state);
    let expires_in = remaining.as_secs().max(1);
    respond(
        StatusCode::OK,
        "application/json; encoding=utf-8",
        json!({ "access_token": token, "expires_in": expires_in }).to_string(),
    )
}

/// `GET /wxa/checksession`: whether `signature` is the HMAC of the user's
/// current session_key (40001 for a bad access token, 87009 otherwise).
fn checksession(shared: &Shared, query: &str) -> Response<Full<Bytes>> {
    shared.checksession_calls.fetch_add(1, Ordering::SeqCst);
    let params = parse_query(query);
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    if !shared.access_token_valid(param("access_token")) {
        return wechat_error(40001, false);
    }
    if param("sig_method") != Some("hmac_sha256") {
        return wechat_error(87008, false);
    }
    let (Some(openid), Some(signature)) = (param("openid"), param("signature")) else {
        return wechat_error(40097, false);
    };
    let Some(session_key) = shared.state().session_keys.get(openid).cloned() else {
        return wechat_error(87009, false);
    };
    if crate::crypto::session_signature(&session_key) != signature {
        return wechat_error(87009, false);
    }
    wechat_ok(json!({}))
}

/// `POST /wxa/business/getuserphonenumber?access_token=...` with `{"code"}`:
/// the number behind a minted phone code, once (40029 after that).
async fn phone_number(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    struct PhoneRequest {
        code: Option<String>,
    }
    shared.phone_number_calls.fetch_add(1, Ordering::SeqCst);
    if req.method() != Method::POST {
        return wechat_error(43002, false);
    }
    let params = parse_query(req.uri().query().unwrap_or(""));
    if !shared.access_token_valid(params.get("access_token").map(String::as_str)) {
        return wechat_error(40001, false);
    }
    let Some(request) = json_body::<PhoneRequest>(req).await else {
        return wechat_error(47001, false);
    };
    let Some(code) = request.code.filter(|c| !c.is_empty()) else {
        return wechat_error(40029, false);
    };
    let mut state = shared.state();
    let minted = match state.phone_codes.get_mut(&code) {
        Some(minted) if !minted.used && minted.expires > Instant::now() => minted,
        _ => return wechat_error(40029, false),
    };
    minted.used = true;
    let pure = minted.phone_number.clone();
    let country_code = minted.country_code.clone();
    let as_number = minted.country_code_as_number;
    drop(state);
    let full = if country_code == "86" {
        pure.clone()
    } else {
        format!("+{country_code}{pure}")
    };
    let country = match country_code.parse::<u64>() {
        Ok(n) if as_number => json!(n),
        _ => json!(country_code),
    };
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    wechat_ok(json!({
        "phone_info": {
            "phoneNumber": full,
            "purePhoneNumber": pure,
            "countryCode": country,
            "watermark": { "timestamp": timestamp, "appid": shared.app_id },
        }
    }))
}

/// `POST /_fake/phone_code` with `{"phoneNumber": "...", "countryCode": "86"}`
/// (both optional): mints a phone-number code like the mini program's
/// `getPhoneNumber` button, answering `{"code": "..."}`.
async fn fake_phone_code(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct PhoneCodeRequest {
        phone_number: Option<String>,
        country_code: Option<String>,
    }
    let empty = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .is_some_and(|len| len == "0");
    let request = if empty {
        Some(PhoneCodeRequest::default())
    } else {
        json_body::<PhoneCodeRequest>(req).await
    };
    let Some(request) = request else {
        return respond(
            StatusCode::BAD_REQUEST,
            "application/json",
            json!({ "error": r#"expected JSON {"phoneNumber": "...", "countryCode": "86"}, both optional"# })
                .to_string(),
        );
    };
    let phone = request
        .phone_number
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "13800138000".to_owned());
    let country = request
        .country_code
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "86".to_owned());
    let code = shared.mint_phone_code(&phone, &country, false);
    respond(
        StatusCode::OK,
        "application/json",
        json!({ "code": code }).to_string(),
    )
}

/// `POST /_fake/wx.login`: mints a code like `wx.login()` in the mini program.
async fn wx_login(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize, Default)]
    struct LoginRequest {
        openid: Option<String>,
        unionid: Option<String>,
    }
    let bad_request = |message: &str| {
        respond(
            StatusCode::BAD_REQUEST,
            "application/json",
            json!({ "error": message }).to_string(),
        )
    };
    let body = match Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return bad_request("body unreadable or over 16 KiB"),
    };
    let request: LoginRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LoginRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(_) => {
                return bad_request(
                    r#"expected JSON {"openid": "...", "unionid": "..."}, both optional"#,
                )
            }
        }
    };
    let openid = match request.openid.filter(|o| !o.is_empty()) {
        Some(openid) => openid,
        // Shaped like a real openid: 28 characters starting with "o".
        None => format!("o{}", URL_SAFE_NO_PAD.encode(random_bytes::<20>())),
    };
    let unionid = request.unionid.filter(|u| !u.is_empty());
    let code = shared.mint(&openid, unionid.as_deref());
    respond(
        StatusCode::OK,
        "application/json",
        json!({ "code": code }).to_string(),
    )
}

/// The errmsg WeChat sends with an errcode (before its `, rid: ...` suffix).
fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        0 => "ok",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "code blocked",
        40243 => "AppSecret已被冻结，请登录小程序平台解冻后再次调用",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        40097 => "invalid args",
        43002 => "require POST method",
        47001 => "data format error",
        87008 => "invalid sig_method",
        87009 => "invalid signature",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        _ => "unknown error",
    }
}

/// An errcode reply as WeChat sends it: HTTP 200, text/plain, a request id in errmsg.
fn wechat_error(errcode: i64, as_string: bool) -> Response<Full<Bytes>> {
    let rid = random_bytes::<12>();
    let rid = format!("{}-{}-{}", hex(&rid[..4]), hex(&rid[4..8]), hex(&rid[8..]));
    let errmsg = format!("{}, rid: {rid}", errmsg(errcode));
    let body = if as_string {
        json!({ "errcode": errcode.to_string(), "errmsg": errmsg })
    } else {
        json!({ "errcode": errcode, "errmsg": errmsg })
    };
    respond(StatusCode::OK, "text/plain", body.to_string())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The query's parameters, percent-decoded; the first of a repeated name wins.
fn parse_query(query: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let Ok(url) = reqwest::Url::parse(&format!("http://fake/?{query}")) else {
        return params;
    };
    for (name, value) in url.query_pairs() {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

/// 32 random ASCII letters and digits, the shape of a real `wx.login()`
/// code (about 190 bits).
fn random_code() -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut code = String::with_capacity(32);
    while code.len() < 32 {
        for b in random_bytes::<48>() {
            // 248 = 4 * 62: keeping only bytes below it makes every letter equally likely.
            if b < 248 && code.len() < 32 {
                code.push(ALPHABET[usize::from(b % 62)] as char);
            }
        }
    }
    code
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
