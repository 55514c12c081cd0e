//! Several mini programs in one backend: one login route that reads the
//! body's `appid`, or one route per app; sessions say which app they are for.

mod common;

use axum::routing::get;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};
use wxlogin::{BuildError, Identity, WxLogin, WxUser};

const SHOP: &str = APP_ID;
const GAME: &str = "wxgame0000000002";
const GAME_SECRET: &str = "game-secret-do-not-leak";

async fn setup() -> (String, wxlogin::mock::FakeWeChat, WxLogin<String>) {
    let fake = fake_wechat().await;
    fake.add_app(GAME, GAME_SECRET);
    let wx = WxLogin::builder()
        .app_id(SHOP)
        .app_secret(APP_SECRET)
        .add_app(GAME, GAME_SECRET)
        .api_base(fake.base_url())
        // The hook sees which app the user logged in to.
        .on_login(|who: Identity| async move { Ok(format!("{}:{}", who.app_id, who.openid)) })
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/api/me",
            get(|u: WxUser<String>| async move {
                Json(json!({"openid": u.openid(), "app_id": u.app_id(), "data": u.data()}))
            }),
        )
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service())
        .route_service("/wx/game/login", wx.login_service_for(GAME).unwrap());
    (serve(app).await, fake, wx)
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let res = client.post(url).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn one_route_serves_every_app_by_the_body_appid() {
    let (base, fake, _wx) = setup().await;
    let client = reqwest::Client::new();

    // No appid: the default app.
    let code = fake.mint_code_for(SHOP, "o-shop-user");
    let (status, body) = post(&client, &format!("{base}/wx/login"), json!({"code": code})).await;
    assert_eq!(status, 200, "{body}");
    let shop_token = body["token"].as_str().unwrap().to_owned();

    // The game's code with its appid.
    let code = fake.mint_code_for(GAME, "o-game-user");
    let (status, body) = post(
        &client,
        &format!("{base}/wx/login"),
        json!({"code": code, "appid": GAME}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let game_token = body["token"].as_str().unwrap().to_owned();

    let (status, me) = get_json(&client, &format!("{base}/api/me"), Some(&shop_token)).await;
    assert_eq!(status, 200);
    assert_eq!(me["app_id"], SHOP);
    assert_eq!(me["data"], format!("{SHOP}:o-shop-user"));
    let (status, me) = get_json(&client, &format!("{base}/api/me"), Some(&game_token)).await;
    assert_eq!(status, 200);
    assert_eq!(me["app_id"], GAME);
    assert_eq!(me["data"], format!("{GAME}:o-game-user"));

    // A game code sent without its appid is exchanged as the shop's: WeChat
    // refuses it, as it would a code of another mini program.
    let code = fake.mint_code_for(GAME, "o-game-user");
    let (status, body) = post(&client, &format!("{base}/wx/login"), json!({"code": code})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_code");

    // An app the server does not serve is a bad request, not a WeChat call.
    let calls = fake.code2session_calls();
    let (status, body) = post(
        &client,
        &format!("{base}/wx/login"),
        json!({"code": "abc", "appid": "wxunknown00000000"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_request");
    assert_eq!(fake.code2session_calls(), calls);
}

#[tokio::test]
async fn a_route_per_app() {
    let (base, fake, wx) = setup().await;
    let client = reqwest::Client::new();
    assert!(wx.login_service_for("wxnotconfigured00").is_none());
    assert_eq!(wx.app_ids().collect::<Vec<_>>(), [SHOP, GAME]);

    let code = fake.mint_code_for(GAME, "o-game-2");
    let (status, body) = post(
        &client,
        &format!("{base}/wx/game/login"),
        json!({"code": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let (_, me) = get_json(&client, &format!("{base}/api/me"), Some(token)).await;
    assert_eq!(me["app_id"], GAME);

    // The game's route refuses a body naming another app.
    let code = fake.mint_code_for(SHOP, "o-shop-2");
    let (status, body) = post(
        &client,
        &format!("{base}/wx/game/login"),
        json!({"code": code, "appid": SHOP}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_request");
}

#[test]
fn duplicate_or_empty_extra_apps_are_refused() {
    let dup = WxLogin::builder()
        .app_id(SHOP)
        .app_secret(APP_SECRET)
        .add_app(SHOP, "x")
        .build()
        .unwrap_err();
    assert!(matches!(
        dup,
        BuildError::InvalidValue {
            field: "add_app",
            ..
        }
    ));
    let empty = WxLogin::builder()
        .app_id(SHOP)
        .app_secret(APP_SECRET)
        .add_app(GAME, " ")
        .build()
        .unwrap_err();
    assert!(matches!(
        empty,
        BuildError::InvalidValue {
            field: "add_app",
            ..
        }
    ));
    // Secrets of extra apps stay out of Debug too.
    let wx = WxLogin::builder()
        .app_id(SHOP)
        .app_secret(APP_SECRET)
        .add_app(GAME, GAME_SECRET);
    assert!(!format!("{wx:?}").contains(GAME_SECRET));
}
