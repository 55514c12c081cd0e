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
//! | `WXLOGIN_REDIS_URL` | use the Redis store at this URL (sessions shared by every demo process) |
//! | `WXLOGIN_TOKEN_KEY` | token MAC key, hex of at least 32 digits (`openssl rand -hex 32`) |
//! | `WXLOGIN_SESSION_TTL` | session lifetime in seconds |
//!
//! Routes: `POST /wx/login`, `POST /wx/logout`, `GET /api/me`, and, for
//! what a session's `session_key` and the app's access token are for:
//!
//! - `GET /api/check`: asks WeChat whether the session's `session_key` is
//!   still current (`/wxa/checksession`) → `{"valid": bool}`.
//! - `POST /api/phone` with `{"code"}` from `<button open-type="getPhoneNumber">`
//!   → the phone number (`phoneNumber`, `purePhoneNumber`, `countryCode`, `watermark`).
//! - `POST /api/decrypt` with `{"encryptedData", "iv"}` (in a JSON body, so
//!   base64 `+` survives) → the decrypted JSON; a stale `session_key` gives
//!   400 with `"relogin": true`.
//! - `POST /api/werun` with the `encryptedData` and `iv` of `wx.getWeRunData`
//!   → the steps, read into a typed [`WeRun`].
//! - `POST /api/upload`, a `multipart/form-data` body as `wx.uploadFile`
//!   sends it → `{"openid", "fields", "files"}`: the text fields, and per
//!   file its field, file name, size and SHA-256 (so a client can check what
//!   arrived).
//!
//! The app's own login (DESIGN.md "The app's own login"): the login answer
//! adds `user_id` (stable per openid) and `is_new` (first login only); a
//! first login's `{"code", "invite": "X"}` is kept and `GET /api/me` shows
//! `"invite"`; `POST /api/profile` with `{"nickname"}` changes the
//! signed-in user's data (every session of theirs, at once) → 204, and
//! `GET /api/me` shows `"nickname"`; `GET /api/sessions` lists the
//! signed-in user's sessions (`[{"id", "created_at", "user_agent", "ip",
//! "current"}]`, `id` an opaque handle) and `DELETE /api/sessions/{id}` ends
//! one (204; another user's or an unknown id: 404); `POST /api/sessions`
//! issues one more session for the signed-in user → `{"token", "expires_in"}`.
//!
//! With the fake WeChat, `POST {fake}/_fake/wx.login` makes a login code and
//! `POST {fake}/_fake/phone_code` a phone-number code (the log says how).
//!
//! Payment (DESIGN.md "Payment", [`pay`]): `POST /api/pay/orders` with
//! `{"product_id", "quantity"}` → `{"out_trade_no", "payment"}` (the
//! `wx.requestPayment` arguments), `GET /api/pay/orders/{out_trade_no}`,
//! and `POST /wx/pay/notify` for WeChat Pay. Without `WXPAY_MCHID` the
//! crate's fake WeChat Pay is started (the log and stdout say so).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wxlogin::mock::FakeWeChat;
use wxlogin::store::RedisStore;
use wxlogin::{
    DeviceSession, Identity, IssuedSession, LoginOk, PhoneInfo, Rejection, WeChatApiError, WxLogin,
    WxSession, WxUser,
};

#[path = "demo/pay.rs"]
mod pay;

/// What the demo app keeps about a user: a number given at first login,
/// and the invite code that first login brought (`{"code", "invite"}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DemoUser {
    user_id: u64,
    first_login_unix: u64,
    invite: Option<String>,
    /// Set by `POST /api/profile`.
    nickname: Option<String>,
}

/// The demo's user table: openid → what it keeps (a database in a real app).
type Users = Arc<Mutex<HashMap<String, DemoUser>>>;

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
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // Real credentials, or the fake WeChat (kept alive for the whole run).
    let mut _fake = None;
    let bind = env("WXLOGIN_BIND").unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {bind}: {e}")));
    let addr = listener.local_addr().expect("bound address");

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
            tracing::info!(
                "demo: get a phone-number code for POST /api/phone (FakeWeChat::mint_phone_code) with: curl -s -X POST {base}/_fake/phone_code -d '{{\"phoneNumber\":\"13800138000\",\"countryCode\":\"86\"}}'"
            );
            println!("fake wechat on {base}");
            _fake = Some(fake);
            (
                "wxdemo0000000000".to_owned(),
                "demo-secret".to_owned(),
                base,
            )
        }
        _ => fail("set both WX_APPID and WX_SECRET, or neither (to use the fake WeChat)"),
    };

    // The app's own "database": user numbers by openid.
    let users: Users = Arc::default();

    let mut builder = WxLogin::builder()
        .app_id(app_id.clone())
        .app_secret(secret)
        .api_base(api_base);
    if let Some(key) = env("WXLOGIN_TOKEN_KEY") {
        // Hex, as documented: a typo'd or pasted non-hex value fails here
        // rather than becoming a weaker key. The hex text itself is the MAC key.
        if key.len() % 2 != 0 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            fail("WXLOGIN_TOKEN_KEY must be hex (e.g. `openssl rand -hex 32`); the token_key is refused");
        }
        builder = builder.token_key(key);
    }
    let mut redis = None;
    if let Some(url) = env("WXLOGIN_REDIS_URL") {
        let store = RedisStore::connect(&url)
            .await
            .unwrap_or_else(|e| fail(&format!("cannot connect to Redis: {e}")));
        tracing::info!("demo: sessions in Redis (shared by every instance)");
        // Logouts reach other instances by pub/sub at once; the short cache
        // TTL bounds staleness should a message be lost.
        builder = builder
            .store(store.clone())
            .cache_ttl(Duration::from_secs(5));
        redis = Some(store);
    } else {
        tracing::info!("demo: sessions in memory (set WXLOGIN_REDIS_URL to share them)");
    }
    if let Some(ttl) = env("WXLOGIN_SESSION_TTL") {
        let secs: u64 = ttl
            .parse()
            .unwrap_or_else(|_| fail("WXLOGIN_SESSION_TTL must be a number of seconds"));
        builder = builder.session_ttl(Duration::from_secs(secs));
    }
    let (pay_routes, pay_notify, _pay) = pay::setup(&app_id, &addr.to_string(), redis)
        .await
        .unwrap_or_else(|e| fail(&e));

    let wx = builder
        .on_login({
            let users = users.clone();
            move |who: Identity| {
                let users = users.clone();
                async move {
                    let mut users = users.lock().unwrap();
                    let next = users.len() as u64 + 1;
                    let is_new = !users.contains_key(&who.openid);
                    // A first login's invite code is kept; later ones are ignored.
                    let invite = who.fields.get("invite").and_then(|v| v.as_str());
                    let user = users.entry(who.openid.clone()).or_insert_with(|| DemoUser {
                        user_id: next,
                        first_login_unix: SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0),
                        invite: invite.map(|i| i.chars().take(64).collect()),
                        nickname: None,
                    });
                    Ok(LoginOk::new(user.clone())
                        .reply("user_id", user.user_id)
                        .reply("is_new", is_new))
                }
            }
        })
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));

    let app = Router::new()
        .route("/api/me", get(me))
        .route("/api/check", get(check))
        .route("/api/phone", post(phone))
        .route("/api/decrypt", post(decrypt))
        .route("/api/werun", post(werun))
        .route("/api/upload", post(upload))
        .route(
            "/api/sessions",
            get(list_sessions)
                .post(another_session)
                .with_state(wx.clone()),
        )
        .route(
            "/api/sessions/{id}",
            delete(end_session).with_state(wx.clone()),
        )
        .route(
            "/api/profile",
            post(set_profile).with_state((wx.clone(), users.clone())),
        )
        .merge(pay_routes)
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service())
        .route_service("/wx/logout", wx.logout_service())
        .route_service("/wx/pay/notify", pay_notify);

    println!("listening on http://{addr}");
    tracing::info!("demo: routes POST /wx/login, POST /wx/logout, GET /api/me, GET /api/check, POST /api/phone, POST /api/decrypt, POST /api/werun, POST /api/upload, POST /api/profile, GET /api/sessions, POST /api/sessions, DELETE /api/sessions/{{id}}, POST /api/pay/orders, GET /api/pay/orders/{{out_trade_no}}, POST /wx/pay/notify");
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
}

async fn me(user: WxUser<DemoUser>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "openid": user.openid(),
        "unionid": user.unionid(),
        "user_id": user.user_id,
        "first_login_unix": user.first_login_unix,
        "invite": user.invite,
        "nickname": user.nickname,
    }))
}

/// `GET /api/sessions`: the signed-in user's live sessions,
/// `[{"id", "created_at", "user_agent", "ip", "current"}]`.
async fn list_sessions(
    State(wx): State<WxLogin<DemoUser>>,
    user: WxUser<DemoUser>,
) -> Result<Json<Vec<DeviceSession>>, Rejection> {
    Ok(Json(wx.list_sessions(&user).await?))
}

/// `DELETE /api/sessions/{id}`: ends that session of the signed-in user
/// (204); another user's or an unknown id is 404.
async fn end_session(
    State(wx): State<WxLogin<DemoUser>>,
    user: WxUser<DemoUser>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, axum::response::Response> {
    use axum::response::IntoResponse as _;
    match wx.end_session(&user, &id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no session of yours has this id",
            false,
        )
        .into_response()),
        Err(rejection) => Err(rejection.into_response()),
    }
}

/// `POST /api/profile` with `{"nickname": "N"}`: updates the signed-in
/// user's data in the demo's table and in every session of theirs, so
/// `GET /api/me` shows it at once here and within a second on every other
/// instance (Redis) → 204.
async fn set_profile(
    State((wx, users)): State<(WxLogin<DemoUser>, Users)>,
    user: WxUser<DemoUser>,
    // JSON whatever the content type, as the login route reads its body
    // (`curl -d` sends a form type).
    body: axum::body::Bytes,
) -> Result<StatusCode, axum::response::Response> {
    use axum::response::IntoResponse as _;
    let bad = |message: &str| {
        error(StatusCode::BAD_REQUEST, "bad_request", message, false).into_response()
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return Err(bad("the body must be JSON {\"nickname\": \"...\"}"));
    };
    let nickname = match body.get("nickname") {
        Some(Value::String(n)) if !n.trim().is_empty() && n.chars().count() <= 32 => n.clone(),
        _ => return Err(bad("\"nickname\" must be a string of 1 to 32 characters")),
    };
    let updated = {
        let mut users = users.lock().unwrap();
        let row = users
            .entry(user.openid().to_owned())
            .or_insert_with(|| user.data().clone());
        row.nickname = Some(nickname);
        row.clone()
    };
    wx.set_user_data(user.openid(), &updated)
        .await
        .map_err(|rejection| rejection.into_response())?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/sessions`: one more session for the signed-in user (to hand
/// the login to a web-view page, say), `{"token", "expires_in"}`; the same
/// call issues sessions for a login the app verified itself (SMS, password).
async fn another_session(
    State(wx): State<WxLogin<DemoUser>>,
    user: WxUser<DemoUser>,
    headers: axum::http::HeaderMap,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Result<Json<IssuedSession>, Rejection> {
    let mut who = Identity::new(user.openid()).with_app_id(user.app_id());
    if let Some(axum::Extension(axum::extract::ConnectInfo(addr))) = peer {
        who = who.with_ip(addr.ip());
    }
    if let Some(unionid) = user.unionid() {
        who = who.with_unionid(unionid);
    }
    if let Some(ua) = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        who = who.with_user_agent(ua);
    }
    let issued = wx.issue_session(who, user.data().clone()).await?;
    Ok(Json(issued))
}

/// An error in the crate's wire format `{"error","message","relogin"}`.
fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    relogin: bool,
) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({ "error": code, "message": message, "relogin": relogin })),
    )
}

/// A failed WeChat API call as a response (the message never holds a secret).
fn api_error(e: &WeChatApiError) -> (StatusCode, Json<Value>) {
    tracing::warn!(error = %e, "demo: WeChat API call failed");
    match e {
        WeChatApiError::SessionKeyInvalid => error(
            StatusCode::UNAUTHORIZED,
            "session_key_invalid",
            &e.to_string(),
            true,
        ),
        WeChatApiError::InvalidCode { .. } => error(
            StatusCode::BAD_REQUEST,
            "invalid_phone_code",
            "the phone-number code is invalid, expired or already used; ask the user again",
            false,
        ),
        WeChatApiError::RateLimited { .. } => error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &e.to_string(),
            false,
        ),
        WeChatApiError::Unavailable { .. } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "wechat_unavailable",
            &e.to_string(),
            false,
        ),
        _ => error(
            StatusCode::BAD_GATEWAY,
            "wechat_refused",
            &e.to_string(),
            false,
        ),
    }
}

/// `GET /api/check`: is this session's `session_key` still the user's current one?
async fn check(session: WxSession) -> (StatusCode, Json<Value>) {
    match session.check_with_wechat().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "valid": true }))),
        // A newer wx.login replaced the key: decrypting new data needs a new login.
        Err(WeChatApiError::SessionKeyInvalid) => (
            StatusCode::OK,
            Json(json!({ "valid": false, "relogin": true })),
        ),
        Err(e) => api_error(&e),
    }
}

#[derive(Deserialize)]
struct PhoneRequest {
    code: String,
}

/// `POST /api/phone` with `{"code"}`: the user's phone number.
async fn phone(
    session: WxSession,
    Json(req): Json<PhoneRequest>,
) -> Result<Json<PhoneInfo>, (StatusCode, Json<Value>)> {
    match session.phone_number(&req.code).await {
        Ok(info) => {
            tracing::info!(openid = %session.openid(), "demo: phone number read");
            Ok(Json(info))
        }
        Err(e) => Err(api_error(&e)),
    }
}

/// The body of `/api/decrypt` and `/api/werun`, as the mini program sends it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Encrypted {
    encrypted_data: String,
    iv: String,
}

/// A decryption failure: one answer for every stale-key case (telling them
/// apart would help an attacker), the detail for malformed input.
fn decrypt_error(e: &wxlogin::crypto::CryptoError) -> (StatusCode, Json<Value>) {
    tracing::info!(error = %e, "demo: decryption failed");
    if e.relogin() {
        error(
            StatusCode::BAD_REQUEST,
            "decrypt_failed",
            "the data does not decrypt with this session's session_key; call wx.login, log in again, then fetch the data again",
            true,
        )
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &e.to_string(),
            false,
        )
    }
}

/// `POST /api/decrypt` with `{"encryptedData","iv"}`: the decrypted JSON
/// (watermark checked against this app).
async fn decrypt(
    session: WxSession,
    Json(req): Json<Encrypted>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    session
        .decrypt::<Value>(&req.encrypted_data, &req.iv)
        .await
        .map(Json)
        .map_err(|e| decrypt_error(&e))
}

/// WeRun data (`wx.getWeRunData`): the user's steps of the last 30 days.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WeRun {
    step_info_list: Vec<StepInfo>,
}

/// One day of WeRun steps.
#[derive(Debug, Deserialize, Serialize)]
struct StepInfo {
    /// The day, as Unix seconds (midnight, China time).
    timestamp: u64,
    /// Steps walked that day.
    step: u64,
}

/// `POST /api/werun` with the `encryptedData` and `iv` of `wx.getWeRunData`.
async fn werun(
    session: WxSession,
    Json(req): Json<Encrypted>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let run: WeRun = session
        .decrypt(&req.encrypted_data, &req.iv)
        .await
        .map_err(|e| decrypt_error(&e))?;
    let total: u64 = run.step_info_list.iter().map(|d| d.step).sum();
    let latest = run.step_info_list.iter().max_by_key(|d| d.timestamp);
    Ok(Json(json!({
        "days": run.step_info_list.len(),
        "total_steps": total,
        "latest": latest,
    })))
}

/// A malformed upload as a `bad_request` in the crate's format (413 kept
/// for a body over axum's limit).
fn upload_error(status: StatusCode, detail: &str) -> (StatusCode, Json<Value>) {
    let status = if status == StatusCode::PAYLOAD_TOO_LARGE {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    error(status, "bad_request", detail, false)
}

/// `POST /api/upload`: a `multipart/form-data` body as `wx.uploadFile`
/// sends it (the file under its `name`, plus `formData` as text fields).
async fn upload(
    user: WxUser<DemoUser>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let mut form = form.map_err(|e| upload_error(e.status(), &e.body_text()))?;
    let mut fields = serde_json::Map::new();
    let mut files = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| upload_error(e.status(), &e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if let Some(file_name) = field.file_name().map(str::to_owned) {
            let bytes = field
                .bytes()
                .await
                .map_err(|e| upload_error(e.status(), &e.body_text()))?;
            let sha256: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            files.push(json!({
                "field": name,
                "file_name": file_name,
                "size": bytes.len(),
                "sha256": sha256,
            }));
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| upload_error(e.status(), &e.body_text()))?;
            fields.insert(name, Value::String(text));
        }
    }
    Ok(Json(json!({
        "openid": user.openid(),
        "user_id": user.user_id,
        "fields": fields,
        "files": files,
    })))
}
