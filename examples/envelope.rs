//! Every answer in the app's own `{"code","msg","data"}` envelope:
//! `cargo run --example envelope`.
//!
//! Many mini program back ends wrap every response the same way, and the
//! client checks `code == 0` before touching `data`. Here:
//!
//! - errors from the layer, the extractors, login and logout go through
//!   [`WxLoginBuilder::render_rejection`](wxlogin::WxLoginBuilder::render_rejection):
//!   `{"code": 40101, "msg": "...", "data": {"error": "missing_token", "relogin": true}}`,
//!   with the HTTP status, `WWW-Authenticate` and `Retry-After` kept;
//! - successes are wrapped by the app: `{"code": 0, "msg": "ok", "data": {...}}`,
//!   for `/api/me` in its handler and for `/wx/login` by a small handler
//!   around the crate's login service.
//!
//! The client logs in again (`wx.login()`) when `data.relogin` is true
//! (codes 40101 to 40103).
//!
//! Environment (all optional): `WXLOGIN_BIND` (default `127.0.0.1:3003`),
//! `WXLOGIN_TOKEN_KEY`, `WXLOGIN_SESSION_TTL` (seconds), and
//! `WXLOGIN_ENVELOPE_STATUS`: `kept` (the default: an error keeps its HTTP
//! status) or `200` (every JSON error is answered with HTTP 200, as some
//! back ends do, so only `code` tells). It runs against the crate's fake
//! WeChat.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;
use tower::ServiceExt;
use wxlogin::mock::FakeWeChat;
use wxlogin::{ErrorCode, Rejection, WxLogin, WxUser};

const APP_ID: &str = "wxdemo0000000000";
const APP_SECRET: &str = "demo-secret";

/// The app's envelope.
#[derive(Serialize)]
struct Envelope<T> {
    code: u32,
    msg: String,
    data: T,
}

/// The success envelope: `code` 0.
fn ok<T: Serialize>(data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        code: 0,
        msg: "ok".to_owned(),
        data,
    })
}

/// The app's numeric code for each row of the crate's error table.
fn business_code(code: ErrorCode) -> u32 {
    match code {
        ErrorCode::MissingToken => 40101,
        ErrorCode::InvalidToken => 40102,
        ErrorCode::SessionExpired => 40103,
        ErrorCode::BadRequest => 40001,
        ErrorCode::InvalidCode => 40002,
        ErrorCode::LoginRefused => 40301,
        ErrorCode::UserRestricted => 40302,
        ErrorCode::RateLimited => 42901,
        ErrorCode::Misconfigured => 50001,
        ErrorCode::StoreUnavailable => 50301,
        ErrorCode::WeChatUnavailable => 50302,
        // ErrorCode is non-exhaustive: a row added later is still an error.
        _ => 50000,
    }
}

/// The rejection renderer: the crate calls it for every error it answers.
fn render(rejection: &Rejection) -> http::Response<Bytes> {
    let body = Envelope {
        code: business_code(rejection.code()),
        msg: rejection.message().to_owned(),
        data: serde_json::json!({
            "error": rejection.code().as_str(),
            "relogin": rejection.relogin(),
        }),
    };
    let body = serde_json::to_vec(&body).expect("the envelope serializes");
    // Keep the HTTP status: proxies and monitoring read it. An app that wants
    // HTTP 200 for everything would set StatusCode::OK here instead.
    http::Response::builder()
        .status(rejection.status())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(body))
        .expect("a valid response")
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn fail(msg: &str) -> ! {
    eprintln!("envelope example: {msg}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    // Logs go to stderr; stdout carries only the two address lines.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let fake = FakeWeChat::start(APP_ID, APP_SECRET)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot start the fake WeChat: {e}")));
    println!("fake wechat on {}", fake.base_url());

    let mut builder = WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(APP_SECRET)
        .api_base(fake.base_url())
        .render_rejection(render);
    if let Some(key) = env("WXLOGIN_TOKEN_KEY") {
        builder = builder.token_key(key);
    }
    if let Some(ttl) = env("WXLOGIN_SESSION_TTL") {
        let secs: u64 = ttl
            .parse()
            .unwrap_or_else(|_| fail("WXLOGIN_SESSION_TTL must be a number of seconds"));
        builder = builder.session_ttl(Duration::from_secs(secs));
    }
    let wx = builder.build().unwrap_or_else(|e| fail(&e.to_string()));
    let always_200 = match env("WXLOGIN_ENVELOPE_STATUS").as_deref() {
        None | Some("kept") => false,
        Some("200") => true,
        Some(_) => fail("WXLOGIN_ENVELOPE_STATUS must be `kept` or `200`"),
    };

    let app = Router::new()
        .route("/api/me", get(me))
        .layer(wx.layer())
        .route("/wx/login", post(login))
        .route_service("/wx/logout", wx.logout_service())
        .with_state(wx)
        // Outermost, so the login handler above still sees the real status.
        .layer(map_response(move |res: Response| async move {
            if always_200 {
                status_200(res)
            } else {
                res
            }
        }));

    let bind = env("WXLOGIN_BIND").unwrap_or_else(|| "127.0.0.1:3003".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {bind}: {e}")));
    let addr = listener.local_addr().expect("bound address");
    println!("listening on http://{addr}");
    // With each connection's peer address, the key of the per-client login limits.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .unwrap_or_else(|e| fail(&format!("server error: {e}")));
    drop(fake);
}

/// In the "always 200" mode: an error in the envelope answered with HTTP 200
/// (its headers, such as `WWW-Authenticate` and `Retry-After`, kept).
fn status_200(mut res: Response) -> Response {
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json && (res.status().is_client_error() || res.status().is_server_error()) {
        *res.status_mut() = StatusCode::OK;
    }
    res
}

/// `POST /wx/login`: the crate's login service, its success wrapped in the
/// envelope (its errors are already rendered by `render`).
async fn login(State(wx): State<WxLogin>, req: Request) -> Response {
    // Both errors below are `Infallible`.
    let res = wx
        .login_service()
        .oneshot(req)
        .await
        .unwrap_or_else(|never| match never {});
    if res.status() != StatusCode::OK {
        return res.map(Body::new);
    }
    let (mut parts, body) = res.into_parts();
    let bytes = body
        .collect()
        .await
        .unwrap_or_else(|never| match never {})
        .to_bytes();
    let Ok(data) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        // Cannot happen (the crate answers JSON), but never answer half an envelope.
        return (StatusCode::INTERNAL_SERVER_ERROR, "unexpected login reply").into_response();
    };
    let body = serde_json::to_vec(&Envelope {
        code: 0,
        msg: "ok".to_owned(),
        data,
    })
    .expect("the envelope serializes");
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// `GET /api/me`, in the envelope.
async fn me(user: WxUser) -> Json<Envelope<serde_json::Value>> {
    ok(serde_json::json!({
        "openid": user.openid(),
        "unionid": user.unionid(),
    }))
}
