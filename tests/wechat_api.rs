//! `WxSession::check_with_wechat` and the phone-number API over real HTTP
//! against the fake WeChat: a rotated session_key gives 87009, phone codes
//! are single use, `countryCode` is read as a string or a number.

mod common;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{app_with, builder, fake_wechat, get_json, login, serve, APP_ID};
use serde_json::{json, Value};
use wxlogin::mock::FakeWeChat;
use wxlogin::{PhoneInfo, WeChatApiError, WxLogin, WxSession};

async fn check(session: WxSession) -> (StatusCode, Json<Value>) {
    match session.check_with_wechat().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "valid": true }))),
        Err(e) => (
            StatusCode::OK,
            Json(json!({
                "valid": false,
                "relogin": e.relogin(),
                "errcode": e.errcode(),
                "message": e.to_string(),
                "session_key_invalid": e == WeChatApiError::SessionKeyInvalid,
            })),
        ),
    }
}

#[derive(serde::Deserialize)]
struct PhoneRequest {
    code: String,
}

async fn phone(
    session: WxSession,
    Json(req): Json<PhoneRequest>,
) -> Result<Json<PhoneInfo>, (StatusCode, Json<Value>)> {
    session
        .phone_number(&req.code)
        .await
        .map(Json)
        .map_err(|e| {
            let status = match e {
                WeChatApiError::InvalidCode { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            (
                status,
                Json(json!({ "errcode": e.errcode(), "message": e.to_string() })),
            )
        })
}

struct App {
    fake: FakeWeChat,
    wx: WxLogin,
    base: String,
    client: reqwest::Client,
}

async fn setup() -> App {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let routes = Router::new()
        .route("/api/check", get(check))
        .route("/api/phone", post(phone));
    let base = serve(app_with(&wx, routes)).await;
    App {
        fake,
        wx,
        base,
        client: reqwest::Client::new(),
    }
}

impl App {
    async fn check(&self, token: &str) -> Value {
        let (status, body) = get_json(
            &self.client,
            &format!("{}/api/check", self.base),
            Some(token),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn phone(&self, token: &str, code: &str) -> (u16, Value) {
        let res = self
            .client
            .post(format!("{}/api/phone", self.base))
            .bearer_auth(token)
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }
}

#[tokio::test]
async fn checksession_is_valid_until_a_new_login_rotates_the_key() {
    let app = setup().await;
    let old = login(&app.client, &app.base, &app.fake, "o-alice").await;
    assert_eq!(app.check(&old).await, json!({ "valid": true }));

    // The user logs in again (another wx.login): WeChat rotates session_key.
    let new = login(&app.client, &app.base, &app.fake, "o-alice").await;
    let body = app.check(&old).await;
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["session_key_invalid"], true, "{body}");
    assert_eq!(body["relogin"], true, "{body}");
    assert_eq!(body["errcode"], 87009, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("session_key no longer valid"),
        "{body}"
    );
    // The new session's key is the current one.
    assert_eq!(app.check(&new).await, json!({ "valid": true }));
    // Another user is not affected.
    let bob = login(&app.client, &app.base, &app.fake, "o-bob").await;
    assert_eq!(app.check(&bob).await, json!({ "valid": true }));
    assert_eq!(app.fake.stable_token_calls(), 1);
    assert_eq!(app.fake.checksession_calls(), 4);
}

#[tokio::test]
async fn checksession_sends_the_hmac_of_the_session_key_text() {
    let app = setup().await;
    let _ = login(&app.client, &app.base, &app.fake, "o-carol").await;
    let key = app.fake.session_key("o-carol").unwrap();
    // The fake checks the signature itself; the handle agrees with it.
    app.wx
        .check_session_key("o-carol", &wxlogin::Secret::new(key.clone()))
        .await
        .unwrap();
    let err = app
        .wx
        .check_session_key("o-carol", &wxlogin::Secret::new(format!("{key}x")))
        .await
        .unwrap_err();
    assert_eq!(err, WeChatApiError::SessionKeyInvalid);
    // By hand, over plain HTTP: the lowercase hex HMAC-SHA256 of "" keyed by the text.
    let token = app.wx.access_token().await.unwrap();
    let url = format!(
        "{}/wxa/checksession?access_token={}&openid=o-carol&signature={}&sig_method=hmac_sha256",
        app.fake.base_url(),
        token.expose(),
        wxlogin::crypto::session_signature(&key)
    );
    let body: Value = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["errcode"], 0, "{body}");
}

#[tokio::test]
async fn phone_number_with_country_code_as_string_or_number() {
    let app = setup().await;
    let token = login(&app.client, &app.base, &app.fake, "o-dave").await;

    let code = app.fake.mint_phone_code("13580006666", "86");
    let (status, body) = app.phone(&token, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["phoneNumber"], "13580006666");
    assert_eq!(body["purePhoneNumber"], "13580006666");
    assert_eq!(body["countryCode"], "86");
    assert_eq!(body["watermark"]["appid"], APP_ID);
    assert!(body["watermark"]["timestamp"].as_u64().unwrap() > 1_600_000_000);

    let code = app.fake.mint_phone_code_numeric("13580006667", 86);
    let (status, body) = app.phone(&token, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["countryCode"], "86", "a number becomes its text");
    assert_eq!(body["purePhoneNumber"], "13580006667");

    // Outside China the full number carries the country code.
    let code = app.fake.mint_phone_code_numeric("2025550123", 1);
    let info = app.wx.phone_number(&code).await.unwrap();
    assert_eq!(info.country_code, "1");
    assert_eq!(info.pure_phone_number, "2025550123");
    assert_eq!(info.phone_number, "+12025550123");
    assert_eq!(app.fake.stable_token_calls(), 1);
    assert_eq!(app.fake.phone_number_calls(), 3);
}

#[tokio::test]
async fn phone_code_is_single_use() {
    let app = setup().await;
    let token = login(&app.client, &app.base, &app.fake, "o-erin").await;
    let code = app.fake.mint_phone_code("13800138000", "86");
    let (status, _) = app.phone(&token, &code).await;
    assert_eq!(status, 200);

    let (status, body) = app.phone(&token, &code).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], 40029, "{body}");
    let err = app.wx.phone_number(&code).await.unwrap_err();
    assert_eq!(err, WeChatApiError::InvalidCode { errcode: 40029 });
    assert!(!err.relogin());

    let (status, body) = app.phone(&token, "never-minted").await;
    assert_eq!((status, &body["errcode"]), (400, &json!(40029)), "{body}");
    // A spent code is not retried, and the token was fetched once.
    assert_eq!(app.fake.phone_number_calls(), 4);
    assert_eq!(app.fake.stable_token_calls(), 1);
}

#[tokio::test]
async fn api_routes_need_a_session_and_never_show_the_access_token() {
    let app = setup().await;
    let (status, body) = get_json(&app.client, &format!("{}/api/check", app.base), None).await;
    assert_eq!((status, &body["error"]), (401, &json!("missing_token")));
    assert_eq!(app.fake.stable_token_calls(), 0);

    let token = login(&app.client, &app.base, &app.fake, "o-frank").await;
    let code = app.fake.mint_phone_code("13800138000", "86");
    let (_, body) = app.phone(&token, &code).await;
    let (_, reused) = app.phone(&token, &code).await;
    let access_token = app.wx.access_token().await.unwrap();
    assert!(!format!("{access_token:?}").contains(access_token.expose()));
    for text in [
        body.to_string(),
        reused.to_string(),
        format!("{:?}", app.wx),
    ] {
        assert!(!text.contains(access_token.expose()), "{text}");
    }
}
