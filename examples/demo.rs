//! The runnable demo: `cargo run --example demo`.
//!
//! With no configuration it serves the login flow on an in-memory store
//! against the crate's own fake WeChat on loopback. Environment (all optional):
//!
//! | variable | meaning |
//! |---|---|
//! | `WX_APPID`, `WX_SECRET` | real credentials; when set, the fake WeChat is not started |
//! | `WX_API_BASE` | WeChat API base URL (default `https://api.weixin.qq.com`) |
//! | `WXLOGIN_BIND` | listen address, default `127.0.0.1:3000` |
//! | `WXLOGIN_REDIS_URL` | use the Redis store at this URL (not available in this build yet) |
//! | `WXLOGIN_TOKEN_KEY` | token MAC key, hex |
//! | `WXLOGIN_SESSION_TTL` | session lifetime in seconds |
//!
//! Routes: `POST /wx/login`, `POST /wx/logout`, `GET /api/me`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use wxlogin::mock::FakeWeChat;
use wxlogin::{Identity, WxLogin, WxUser};

/// What the demo app keeps about a user: a number given at first login.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DemoUser {
    user_id: u64,
    first_login_unix: u64,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn fail(msg: &str) -> ! {
    eprintln!("demo: {msg}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info".into()),
        )
        .init();

    // Real credentials, or the fake WeChat (kept alive for the whole run).
    let mut _fake = None;
    let (app_id, secret, api_base) = match (env("WX_APPID"), env("WX_SECRET")) {
        (Some(id), Some(secret)) => {
            let base = env("WX_API_BASE").unwrap_or_else(|| wxlogin::DEFAULT_API_BASE.into());
            tracing::info!(api_base = %base, "demo: using real WeChat credentials");
            (id, secret, base)
        }
        (None, None) => {
            let fake = FakeWeChat::start("wxdemo0000000000", "demo-secret")
                .await
                .unwrap_or_else(|e| fail(&format!("cannot start the fake WeChat: {e}")));
            let base = fake.base_url();
            tracing::info!(
                fake_wechat = %base,
                "demo: no WX_APPID/WX_SECRET, so using the built-in fake WeChat; get a login code with: curl -s -X POST {base}/_fake/wx.login -d '{{\"openid\":\"alice\"}}'"
            );
            println!("fake wechat on {base}");
            _fake = Some(fake);
            ("wxdemo0000000000".to_owned(), "demo-secret".to_owned(), base)
        }
        _ => fail("set both WX_APPID and WX_SECRET, or neither (to use the fake WeChat)"),
    };

    if env("WXLOGIN_REDIS_URL").is_some() {
        fail("WXLOGIN_REDIS_URL is set, but this build has no Redis store yet");
    }

    // The app's own "database": user numbers by openid.
    let users: Arc<Mutex<HashMap<String, DemoUser>>> = Arc::default();

    let mut builder = WxLogin::builder()
        .app_id(app_id)
        .app_secret(secret)
        .api_base(api_base);
    if let Some(key) = env("WXLOGIN_TOKEN_KEY") {
        builder = builder.token_key(key);
    }
    if let Some(ttl) = env("WXLOGIN_SESSION_TTL") {
        let secs: u64 = ttl
            .parse()
            .unwrap_or_else(|_| fail("WXLOGIN_SESSION_TTL must be a number of seconds"));
        builder = builder.session_ttl(Duration::from_secs(secs));
    }
    let wx = builder
        .on_login(move |who: Identity| {
            let users = users.clone();
            async move {
                let mut users = users.lock().unwrap();
                let next = users.len() as u64 + 1;
                let user = users.entry(who.openid).or_insert_with(|| DemoUser {
                    user_id: next,
                    first_login_unix: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                });
                Ok(user.clone())
            }
        })
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));

    let app = Router::new()
        .route("/api/me", get(me))
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service())
        .route_service("/wx/logout", wx.logout_service());

    let bind = env("WXLOGIN_BIND").unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {bind}: {e}")));
    let addr = listener.local_addr().expect("bound address");
    println!("listening on http://{addr}");
    tracing::info!("demo: routes POST /wx/login, POST /wx/logout, GET /api/me");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .unwrap_or_else(|e| fail(&format!("server error: {e}")));
}

async fn me(user: WxUser<DemoUser>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "openid": user.openid(),
        "unionid": user.unionid(),
        "user_id": user.user_id,
        "first_login_unix": user.first_login_unix,
    }))
}
