//! The server `scripts/load.sh` drives: one handler served twice, bare and
//! behind the layer, on two loopback ports, with the fake WeChat for logins.
//!
//! `cargo run --release --example bare_and_layer` prints
//!
//! ```text
//! fake wechat on http://127.0.0.1:PORT
//! bare on http://127.0.0.1:PORT
//! layer on http://127.0.0.1:PORT
//! ```
//!
//! - bare: `GET /` → `hello o-load-user`, no authentication;
//! - layer: `GET /` → `hello <openid>` behind `wx.layer()`, and `POST /wx/login`.
//!
//! A login code comes from the fake: `POST {fake}/_fake/wx.login` with
//! `{"openid":"o-load-user"}` answers `{"code":"..."}`. Nothing is logged per
//! request, so both servers do the same work apart from the layer.
//! `WXLOGIN_BARE_BIND` and `WXLOGIN_LAYER_BIND` choose the addresses
//! (default `127.0.0.1:0`, a free port each).

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use wxlogin::mock::FakeWeChat;
use wxlogin::{WxLogin, WxUser};

const APP_ID: &str = "wxload0000000000";
const SECRET: &str = "load-secret";

fn bind_addr(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:0".into())
}

#[tokio::main]
async fn main() {
    let fake = FakeWeChat::start(APP_ID, SECRET)
        .await
        .expect("start the fake WeChat");
    let wx = WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(SECRET)
        .api_base(fake.base_url())
        .build()
        .expect("configuration");

    let bare: Router = Router::new().route(
        "/",
        get(|| async move { format!("hello {}", "o-load-user") }),
    );
    let layered: Router = Router::new()
        .route(
            "/",
            get(|u: WxUser| async move { format!("hello {}", u.openid()) }),
        )
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service());

    let bare_listener = TcpListener::bind(bind_addr("WXLOGIN_BARE_BIND"))
        .await
        .expect("bind the bare server");
    let layer_listener = TcpListener::bind(bind_addr("WXLOGIN_LAYER_BIND"))
        .await
        .expect("bind the layer server");
    println!("fake wechat on {}", fake.base_url());
    println!("bare on http://{}", bare_listener.local_addr().unwrap());
    println!("layer on http://{}", layer_listener.local_addr().unwrap());

    let bare = tokio::spawn(async move { axum::serve(bare_listener, bare).await });
    let layered = tokio::spawn(async move { axum::serve(layer_listener, layered).await });
    tokio::select! {
        r = bare => r.unwrap().expect("bare server"),
        r = layered => r.unwrap().expect("layer server"),
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(fake);
}
