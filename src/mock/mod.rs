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

use std::time::Duration;

mod endpoints;
mod handle;
pub(crate) mod server;
mod state;

pub use handle::FakeWeChat;

/// How long a minted code stays valid unless changed with
/// [`FakeWeChat::set_code_lifetime`]: five minutes, like WeChat's.
pub const CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How long an access token from `/cgi-bin/stable_token` lives unless
/// changed with [`FakeWeChat::set_access_token_lifetime`]: two hours, like WeChat's.
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

/// How long a phone-number code stays valid: five minutes, like WeChat's.
pub const PHONE_CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Largest body accepted by `POST /_fake/wx.login`.
pub(crate) const MAX_LOGIN_BODY: usize = 16 * 1024;

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
