//! The extractors over real HTTP: typed user data from the login hook,
//! `Option<WxUser<T>>`, `WxSession` and its session_key, and the 500s of a
//! misconfigured app (no layer, wrong data type).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use common::{builder, fake_wechat, get_json, login, serve, APP_ID};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wxlogin::mock::FakeWeChat;
use wxlogin::{Identity, WxLogin, WxSession, WxUser};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    id: u64,
    name: String,
    roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Other {
    something: u8,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn me(user: WxUser<Account>) -> Json<Value> {
    Json(json!({
        "openid": user.openid(),
        "unionid": user.unionid(),
        "app_id": user.app_id(),
        "id": user.data().id,
        "name": user.name, // through Deref
        "roles": user.data().roles,
        "expires_at": unix_secs(user.expires_at()),
        "created_at": unix_secs(user.created_at()),
    }))
}

async fn maybe(user: Option<WxUser<Account>>) -> Json<Value> {
    Json(json!({ "id": user.map(|u| u.into_data().id) }))
}

async fn session(s: WxSession) -> Json<Value> {
    Json(json!({
        "openid": s.openid(),
        "unionid": s.unionid(),
        "app_id": s.app_id(),
        "session_key": s.session_key().expose(),
        "debug": format!("{s:?}"),
        "debug_alt": format!("{s:#?}"),
    }))
}

async fn wrong_type(user: WxUser<Other>) -> Json<Value> {
    Json(json!({ "something": user.something }))
}

async fn unit_user(user: WxUser) -> Json<Value> {
    Json(json!({ "openid": user.openid() }))
}

fn wx(fake: &FakeWeChat) -> WxLogin<Account> {
    builder(fake)
        .on_login(|who: Identity| async move {
            let id = if who.openid == "o-alice" { 1 } else { 2 };
            Ok(Account {
                id,
                name: format!("user of {}", who.openid),
                roles: vec!["reader".into(), "writer".into()],
            })
        })
        .build()
        .unwrap()
}

fn router(wx: &WxLogin<Account>) -> Router {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/maybe", get(maybe))
        .route("/api/session", get(session))
        .route("/api/wrong-type", get(wrong_type))
        .route("/api/unit-user", get(unit_user))
        .layer(wx.layer())
        // Routes added after `.layer` are not wrapped.
        .route("/open/me", get(me))
        .route("/open/maybe", get(maybe))
        .route("/open/session", get(session))
        .route_service("/wx/login", wx.login_service())
        .route_service("/wx/logout", wx.logout_service())
}

async fn login_with_unionid(
    client: &reqwest::Client,
    base: &str,
    fake: &FakeWeChat,
    openid: &str,
    unionid: &str,
) -> String {
    let code = fake.mint_code_with_unionid(openid, unionid);
    let res = client
        .post(format!("{base}/wx/login"))
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["openid"], openid);
    assert_eq!(body["unionid"], unionid);
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn typed_user_data_from_the_login_hook() {
    let fake = fake_wechat().await;
    let wx = wx(&fake);
    let base = serve(router(&wx)).await;
    let client = reqwest::Client::new();
    let now = unix_secs(SystemTime::now());

    let token = login_with_unionid(&client, &base, &fake, "o-alice", "u-alice").await;
    let (status, body) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["openid"], "o-alice");
    assert_eq!(body["unionid"], "u-alice");
    assert_eq!(body["app_id"], APP_ID);
    assert_eq!(body["id"], 1);
    assert_eq!(body["name"], "user of o-alice");
    assert_eq!(body["roles"], json!(["reader", "writer"]));
    let expires_at = body["expires_at"].as_u64().unwrap();
    let created_at = body["created_at"].as_u64().unwrap();
    assert!(expires_at > now, "expires_at is in the future");
    // Default session lifetime: 7 days.
    assert!(expires_at >= now + 7 * 24 * 3600 - 60);
    assert!(created_at + 60 >= now && created_at <= now + 60);

    // Without a unionid it is null.
    let token = login(&client, &base, &fake, "o-bob").await;
    let (status, body) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["openid"], "o-bob");
    assert!(body["unionid"].is_null());
    assert_eq!(body["id"], 2);
}

#[tokio::test]
async fn typed_data_survives_a_store_round_trip() {
    // A second instance on the same store reads the data back from JSON.
    let fake = fake_wechat().await;
    let store = wxlogin::store::MemoryStore::new();
    let key = "extractor-test-key-0123456789abcdef";
    let first = builder(&fake)
        .token_key(key)
        .store(store.clone())
        .on_login(|_who: Identity| async move {
            Ok(Account {
                id: 42,
                name: "stored".into(),
                roles: vec!["admin".into()],
            })
        })
        .build()
        .unwrap();
    let second = builder(&fake)
        .token_key(key)
        .store(store.clone())
        .on_login(|_who: Identity| async move {
            Ok(Account {
                id: 0,
                name: String::new(),
                roles: vec![],
            })
        })
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let first_base = serve(router(&first)).await;
    let second_base = serve(router(&second)).await;
    let token = login(&client, &first_base, &fake, "o-alice").await;
    let (status, body) = get_json(&client, &format!("{second_base}/api/me"), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], 42);
    assert_eq!(body["name"], "stored");
    assert_eq!(body["roles"], json!(["admin"]));
}

#[tokio::test]
async fn option_wx_user_under_the_required_layer() {
    let fake = fake_wechat().await;
    let wx = wx(&fake);
    let base = serve(router(&wx)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/maybe");

    let token = login(&client, &base, &fake, "o-alice").await;
    let (status, body) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], 1);

    // The required layer answers before the handler runs.
    let (status, body) = get_json(&client, &url, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing_token");
    let (status, body) = get_json(&client, &url, Some("not-a-token")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn wx_session_gives_this_logins_session_key() {
    let fake = fake_wechat().await;
    let wx = wx(&fake);
    let base = serve(router(&wx)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/session");

    let first = login_with_unionid(&client, &base, &fake, "o-alice", "u-alice").await;
    let first_key = fake
        .session_key("o-alice")
        .expect("the fake handed out a key");
    let (status, body) = get_json(&client, &url, Some(&first)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["openid"], "o-alice");
    assert_eq!(body["unionid"], "u-alice");
    assert_eq!(body["app_id"], APP_ID);
    assert_eq!(body["session_key"], first_key.as_str());

    // Debug of the session never shows the key.
    for field in ["debug", "debug_alt"] {
        let debug = body[field].as_str().unwrap();
        assert!(!debug.contains(&first_key), "{field}: {debug}");
        assert!(debug.contains("o-alice"), "{field}: {debug}");
        assert!(debug.contains("redacted"), "{field}: {debug}");
    }

    // A second login of the same user gets a new key, in the new session only.
    let second = login(&client, &base, &fake, "o-alice").await;
    let second_key = fake.session_key("o-alice").unwrap();
    assert_ne!(first_key, second_key, "the fake hands out a fresh key");
    let (status, body) = get_json(&client, &url, Some(&second)).await;
    assert_eq!(status, 200);
    assert_eq!(body["session_key"], second_key.as_str());
    assert!(body["unionid"].is_null());
    let (status, body) = get_json(&client, &url, Some(&first)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["session_key"],
        first_key.as_str(),
        "the old session keeps its key"
    );

    // Another user's session has that user's key.
    let bob = login(&client, &base, &fake, "o-bob").await;
    let (status, body) = get_json(&client, &url, Some(&bob)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["session_key"],
        fake.session_key("o-bob").unwrap().as_str()
    );
}

#[tokio::test]
async fn extractors_without_the_layer_are_misconfigured() {
    let fake = fake_wechat().await;
    let wx = wx(&fake);
    let base = serve(router(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;

    for (path, names) in [
        ("/open/me", "WxUser"),
        ("/open/maybe", "WxUser"),
        ("/open/session", "WxSession"),
    ] {
        for token in [None, Some(token.as_str())] {
            let (status, body) = get_json(&client, &format!("{base}{path}"), token).await;
            assert_eq!(status, 500, "{path}: {body}");
            assert_eq!(body["error"], "misconfigured", "{path}");
            assert_eq!(body["relogin"], false, "{path}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(names), "{path}: {message}");
            assert!(message.contains("layer"), "{path}: {message}");
        }
    }
}

#[tokio::test]
async fn wx_user_of_another_type_is_misconfigured() {
    let fake = fake_wechat().await;
    let wx = wx(&fake);
    let base = serve(router(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;

    for path in ["/api/wrong-type", "/api/unit-user"] {
        let (status, body) = get_json(&client, &format!("{base}{path}"), Some(&token)).await;
        assert_eq!(status, 500, "{path}: {body}");
        assert_eq!(body["error"], "misconfigured", "{path}");
        assert!(
            body["message"].as_str().unwrap().contains("type"),
            "{path}: {body}"
        );
    }
    // The right type on the same app still works.
    let (status, _) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
    assert_eq!(status, 200);
}
