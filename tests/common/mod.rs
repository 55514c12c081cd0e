//! Shared test support, included by every test file as `mod common;`:
//!
//! - the app under test: [`builder`] (for a fake WeChat), [`app`] (the
//!   standard routes), [`serve`] on loopback, [`login`];
//! - what a client sees: [`Reply`], [`get_json`], and the one
//!   [`assert_rejection`] for the default error wire format;
//! - time: [`now_ms`] and [`wait_for`] (poll a condition up to a deadline
//!   instead of sleeping a fixed time);
//! - stores: [`Forward`], which forwards every `SessionStore` method to an
//!   inner store so that a test store overrides only what it changes, and
//!   [`CountingStore`] built on it.
//!
//! The Redis harness (`common/redis.rs`) and the TCP proxy
//! (`common/proxy.rs`) are included by the files that need them.
#![allow(dead_code)]

mod forward;
mod reply;
mod time;

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use wxlogin::mock::FakeWeChat;
use wxlogin::{WxLogin, WxLoginBuilder, WxUser};

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use forward::{CountingStore, Counts, Forward, Forwarding, Passthrough};
#[allow(unused_imports)]
pub use reply::{assert_rejection, get_json, keys, Reply};
#[allow(unused_imports)]
pub use time::{now_ms, wait_for};

pub const APP_ID: &str = "wxtest0000000001";
pub const APP_SECRET: &str = "test-app-secret-do-not-leak";

/// A fake WeChat for APP_ID / APP_SECRET.
pub async fn fake_wechat() -> FakeWeChat {
    FakeWeChat::start(APP_ID, APP_SECRET).await.unwrap()
}

/// A builder for APP_ID / APP_SECRET talking to `fake`.
pub fn builder(fake: &FakeWeChat) -> WxLoginBuilder<()> {
    builder_at(fake.base_url())
}

/// A builder for APP_ID / APP_SECRET talking to the WeChat at `api_base`
/// (a hostile server of a test's own).
pub fn builder_at(api_base: impl Into<String>) -> WxLoginBuilder<()> {
    WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(APP_SECRET)
        .api_base(api_base)
}

/// `GET /api/me` behind the layer (`{"openid", "unionid"}` of the session),
/// `POST /wx/login` and `POST /wx/logout`.
pub fn app(wx: &WxLogin) -> Router {
    app_with(wx, Router::new())
}

/// [`app`] with the routes of `protected` behind the layer as well.
pub fn app_with(wx: &WxLogin, protected: Router) -> Router {
    protected
        .route("/api/me", get(me))
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service())
        .route_service("/wx/logout", wx.logout_service())
}

/// The handler of `/api/me`: `{"openid", "unionid"}` of the session.
pub async fn me(user: WxUser) -> Json<serde_json::Value> {
    Json(json!({ "openid": user.openid(), "unionid": user.unionid() }))
}

/// Serves a router on a free loopback port; returns `http://127.0.0.1:PORT`.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// Like [`serve`], with each connection's peer address in the request
/// extensions (axum's `ConnectInfo<SocketAddr>`), as the demo serves.
pub async fn serve_with_peers(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// A client whose connections come from `local` (any 127.x.y.z works on
/// loopback), so that a server sees it as its own address.
pub fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Logs `openid` in through the login route at `base`; returns the token.
pub async fn login(
    client: &reqwest::Client,
    base: &str,
    fake: &FakeWeChat,
    openid: &str,
) -> String {
    let code = fake.mint_code(openid);
    let res = client
        .post(format!("{base}/wx/login"))
        .body(format!(r#"{{"code":"{code}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login of {openid} failed");
    let body: serde_json::Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}
