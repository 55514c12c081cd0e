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

/// `/api/me` behind `layer()` (every configured app), `/api/{app}/me`
/// behind `layer_for(app)` (that app only), and `/api/{app}/maybe` behind
/// `optional_layer_for(app)`.
async fn per_app_routes(
    store: wxlogin::store::MemoryStore,
) -> (String, wxlogin::mock::FakeWeChat, WxLogin<String>) {
    let fake = fake_wechat().await;
    fake.add_app(GAME, GAME_SECRET);
    let wx = WxLogin::builder()
        .app_id(SHOP)
        .app_secret(APP_SECRET)
        .add_app(GAME, GAME_SECRET)
        .api_base(fake.base_url())
        .store(store)
        .token_key(MULTI_APP_KEY)
        .on_login(|who: Identity| async move { Ok(who.openid) })
        .build()
        .unwrap();
    let me = || get(|u: WxUser<String>| async move { Json(json!({"app_id": u.app_id()})) });
    let maybe = || {
        get(|u: Option<WxUser<String>>| async move {
            Json(json!({"app_id": u.as_ref().map(|u| u.app_id().to_owned())}))
        })
    };
    let mut app = Router::new().merge(Router::new().route("/api/me", me()).layer(wx.layer()));
    for (name, id) in [("shop", SHOP), ("game", GAME)] {
        let only = Router::new()
            .route(&format!("/api/{name}/me"), me())
            .layer(wx.layer_for(id).expect("a configured app"));
        let optional = Router::new()
            .route(&format!("/api/{name}/maybe"), maybe())
            .layer(wx.optional_layer_for(id).expect("a configured app"));
        app = app.merge(only).merge(optional);
    }
    let app = app.route_service("/wx/login", wx.login_service());
    (serve(app).await, fake, wx)
}

const MULTI_APP_KEY: &str = "multi-app-token-key-0123456789abcdef";

async fn login_to(
    client: &reqwest::Client,
    base: &str,
    fake: &wxlogin::mock::FakeWeChat,
    app: &str,
    openid: &str,
) -> String {
    let code = fake.mint_code_for(app, openid);
    let (status, body) = post(
        client,
        &format!("{base}/wx/login"),
        json!({"code": code, "appid": app}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_of_one_app_is_refused_where_only_another_is_meant() {
    let (base, fake, wx) = per_app_routes(wxlogin::store::MemoryStore::new()).await;
    assert!(wx.layer_for("wxnotconfigured00").is_none());
    assert!(wx.optional_layer_for("wxnotconfigured00").is_none());
    let client = reqwest::Client::new();
    let shop = login_to(&client, &base, &fake, SHOP, "o-shopper").await;
    let game = login_to(&client, &base, &fake, GAME, "o-gamer").await;

    // Twice each: the first resolves through the store, the second is a cache hit.
    for _ in 0..2 {
        for (token, own, other, app) in
            [(&shop, "shop", "game", SHOP), (&game, "game", "shop", GAME)]
        {
            // `layer()` takes every configured app.
            let (status, me) = get_json(&client, &format!("{base}/api/me"), Some(token)).await;
            assert_eq!((status, me["app_id"].as_str()), (200, Some(app)), "{me}");
            // Its own app's route takes it.
            let (status, me) =
                get_json(&client, &format!("{base}/api/{own}/me"), Some(token)).await;
            assert_eq!((status, me["app_id"].as_str()), (200, Some(app)), "{me}");
            // The other app's route refuses it: 401 invalid_token, log in again.
            let (status, body) =
                get_json(&client, &format!("{base}/api/{other}/me"), Some(token)).await;
            assert_eq!(status, 401, "{app} session on /api/{other}/me: {body}");
            assert_eq!(body["error"], "invalid_token", "{body}");
            assert_eq!(body["relogin"], true, "{body}");
            // So does an optional route of the other app (its extractor answers).
            let (status, body) =
                get_json(&client, &format!("{base}/api/{other}/maybe"), Some(token)).await;
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["error"], "invalid_token", "{body}");
            let (status, body) =
                get_json(&client, &format!("{base}/api/{own}/maybe"), Some(token)).await;
            assert_eq!(
                (status, body["app_id"].as_str()),
                (200, Some(app)),
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn a_session_of_an_app_this_server_does_not_serve_is_refused() {
    // Another deployment on the same store and key serves another mini
    // program: its sessions are not accepted here, not even by `layer()`.
    let store = wxlogin::store::MemoryStore::new();
    let (base, _fake, _wx) = per_app_routes(store.clone()).await;
    let other_fake = wxlogin::mock::FakeWeChat::start("wxother000000003", "other-secret")
        .await
        .unwrap();
    let other = WxLogin::builder()
        .app_id("wxother000000003")
        .app_secret("other-secret")
        .api_base(other_fake.base_url())
        .store(store)
        .token_key(MULTI_APP_KEY)
        .build()
        .unwrap();
    let other_base = serve(Router::new().route_service("/wx/login", other.login_service())).await;
    let client = reqwest::Client::new();
    let code = other_fake.mint_code("o-elsewhere");
    let (status, body) = post(
        &client,
        &format!("{other_base}/wx/login"),
        json!({"code": code}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    for path in ["/api/me", "/api/shop/me", "/api/game/me"] {
        let (status, body) = get_json(&client, &format!("{base}{path}"), Some(token)).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"], "invalid_token", "{path}: {body}");
    }
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
    // One login serves at most 64 apps (a bit each in a layer's mask).
    let with_apps = |n: usize| {
        (1..n).fold(
            WxLogin::builder().app_id(SHOP).app_secret(APP_SECRET),
            |b, i| b.add_app(format!("wxapp{i:011}"), "s"),
        )
    };
    let wx = with_apps(64).build().unwrap();
    assert!(wx.layer_for("wxapp00000000063").is_some());
    assert!(matches!(
        with_apps(65).build().unwrap_err(),
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
