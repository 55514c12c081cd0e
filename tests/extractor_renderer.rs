//! The app's renderer (`render_rejection`) shapes the extractors'
//! rejections too, over real HTTP: a bad token behind the optional layer
//! (answered by `WxUser`), and `WxUser<T>` naming a type other than the
//! hook's. The one documented exception: an extractor on a route without
//! the layer has no configured login in reach, so it answers in the default
//! format.

mod common;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use common::{fake_wechat, get_json, login, serve, APP_ID, APP_SECRET};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wxlogin::mock::FakeWeChat;
use wxlogin::{Identity, Rejection, WxLogin, WxSession, WxUser};

#[derive(Clone, Serialize, Deserialize)]
struct Account {
    id: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct Other {
    something: u8,
}

/// An app's own envelope: `{"code", "msg", "data"}`.
fn envelope(r: &Rejection) -> http::Response<Bytes> {
    let body = json!({"code": r.code().as_str(), "msg": r.message(), "data": null});
    http::Response::builder()
        .status(r.status())
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

fn login_with_envelope(fake: &FakeWeChat) -> WxLogin<Account> {
    WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(APP_SECRET)
        .api_base(fake.base_url())
        .render_rejection(envelope)
        .on_login(|_: Identity| async move { Ok(Account { id: 7 }) })
        .build()
        .unwrap()
}

async fn start(wx: &WxLogin<Account>) -> String {
    let optional = Router::new()
        .route(
            "/opt/me",
            get(|u: WxUser<Account>| async move { u.id.to_string() }),
        )
        .route(
            "/opt/session",
            get(|s: WxSession| async move { s.openid().to_owned() }),
        )
        .layer(wx.optional_layer());
    let required = Router::new()
        .route(
            "/api/wrong",
            get(|u: WxUser<Other>| async move { u.something.to_string() }),
        )
        .layer(wx.layer());
    let bare = Router::new().route(
        "/bare/me",
        get(|u: WxUser<Account>| async move { u.id.to_string() }),
    );
    serve(
        optional
            .merge(required)
            .merge(bare)
            .route_service("/wx/login", wx.login_service()),
    )
    .await
}

#[tokio::test]
async fn the_renderer_shapes_the_extractors_rejections() {
    let fake = fake_wechat().await;
    let wx = login_with_envelope(&fake);
    let base = start(&wx).await;
    let client = reqwest::Client::new();

    // Behind the optional layer the extractor answers a forged token: in
    // the app's envelope, and with the protocol header kept.
    let res = client
        .get(format!("{base}/opt/me"))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_token", "{body}");
    assert!(body["data"].is_null());
    assert!(body.get("error").is_none(), "{body}");

    // Without a token, `WxSession` (no `Option`) answers missing_token, rendered.
    let (status, body) = get_json(&client, &format!("{base}/opt/session"), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "missing_token", "{body}");

    // A live session, but `WxUser<Other>` is not the hook's type: 500,
    // through the renderer too.
    let token = login(&client, &base, &fake, "o-alice").await;
    let (status, body) = get_json(&client, &format!("{base}/opt/me"), Some(&token)).await;
    assert_eq!((status, body), (200, json!(7)));
    let (status, body) = get_json(&client, &format!("{base}/api/wrong"), Some(&token)).await;
    assert_eq!(status, 500);
    assert_eq!(body["code"], "misconfigured", "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("WxUser<T>"),
        "{body}"
    );
    assert!(body.get("error").is_none(), "{body}");
}

#[tokio::test]
async fn without_the_layer_the_extractor_answers_in_the_default_format() {
    let fake = fake_wechat().await;
    let wx = login_with_envelope(&fake);
    let base = start(&wx).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;

    // No layer wraps /bare/me: no renderer is in reach (documented in the
    // extractor docs and docs/design.md), so the default body names the
    // missing layer.
    let (status, body) = get_json(&client, &format!("{base}/bare/me"), Some(&token)).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"], "misconfigured", "{body}");
    assert_eq!(body["relogin"], false);
    assert!(
        body["message"].as_str().unwrap().contains("layer"),
        "{body}"
    );
}
