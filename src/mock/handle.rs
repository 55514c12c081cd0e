//! The handle of the fake: [`FakeWeChat`], what a test holds: start,
//! mint codes, queue replies, count calls, stop.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use super::server::{serve, spawn_server, StopOnDrop};
use super::state::{Shared, State, PURGE_MIN};
use super::*;

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
    stop: StopOnDrop,
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
        let served = shared.clone();
        let stop = spawn_server(listener, move |req| serve(served.clone(), req));
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
        self.handle.stop.stop();
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
