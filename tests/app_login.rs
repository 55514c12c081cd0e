//! The app's own login on the crate's sessions, over real HTTP on loopback:
//! the hook sees the login body's other fields, the client's address and
//! its `User-Agent`; what it returns for the reply is merged into the login
//! answer (never over the crate's own fields); and a session the app issues
//! itself for a login it verified (`WxLogin::issue_session`) works with the
//! same layer, caps and revocation.

mod common;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::{Json, Router};
use common::{assert_rejection, builder, fake_wechat, get_json, serve_with_peers, Reply};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wxlogin::{ErrorCode, Identity, LoginError, LoginOk, WxLogin, WxUser};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Account {
    user_id: u64,
    via: String,
}

async fn me(user: WxUser<Account>) -> Json<Value> {
    Json(json!({ "openid": user.openid(), "user_id": user.user_id, "via": user.via }))
}

fn app(wx: &WxLogin<Account>) -> Router {
    Router::new()
        .route("/api/me", get(me))
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service())
        .route_service("/wx/logout", wx.logout_service())
}

async fn post_login(client: &reqwest::Client, base: &str, body: Value, ua: Option<&str>) -> Reply {
    let mut req = client.post(format!("{base}/wx/login")).json(&body);
    if let Some(ua) = ua {
        req = req.header("user-agent", ua);
    }
    Reply::send(req).await
}

#[tokio::test]
async fn the_hook_sees_the_request_and_answers_reply_fields() {
    let fake = fake_wechat().await;
    let seen: Arc<Mutex<Vec<Identity>>> = Arc::default();
    let wx = builder(&fake)
        .on_login({
            let seen = seen.clone();
            move |who: Identity| {
                seen.lock().unwrap().push(who.clone());
                async move {
                    if who.fields.get("invite") == Some(&json!("refuse-me")) {
                        return Err(LoginError::refused("invites of that kind are closed"));
                    }
                    let account = Account {
                        user_id: 42,
                        via: "wechat".into(),
                    };
                    Ok(LoginOk::new(account)
                        .reply("user_id", 42)
                        .reply("is_new", true)
                        // None of these may override the crate's own fields.
                        .reply("token", "forged")
                        .reply("openid", "someone-else")
                        .reply("expires_in", 1)
                        .reply("unionid", "u-forged"))
                }
            }
        })
        .build()
        .unwrap();
    let base = serve_with_peers(app(&wx)).await;
    let client = reqwest::Client::new();

    let code = fake.mint_code("o-ann");
    let long_ua = format!(
        "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50 {}",
        "é".repeat(300)
    );
    let reply = post_login(
        &client,
        &base,
        json!({ "code": code, "invite": "X7", "scene": 1047, "appid": null }),
        Some(&long_ua),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["user_id"], 42);
    assert_eq!(body["is_new"], true);
    assert_eq!(body["openid"], "o-ann", "a hook cannot override openid");
    assert_eq!(body["unionid"], Value::Null);
    assert_eq!(body["expires_in"], 7 * 24 * 3600);
    let token = body["token"].as_str().unwrap();
    assert_ne!(token, "forged");
    let (status, me) = get_json(&client, &format!("{base}/api/me"), Some(token)).await;
    assert_eq!(status, 200);
    assert_eq!(me["user_id"], 42);

    let who = seen.lock().unwrap()[0].clone();
    assert_eq!(who.openid, "o-ann");
    assert_eq!(
        who.fields,
        json!({ "invite": "X7", "scene": 1047 })
            .as_object()
            .unwrap()
            .clone(),
        "every field but code and appid"
    );
    assert_eq!(who.ip, Some("127.0.0.1".parse::<IpAddr>().unwrap()));
    let shown = format!("{who:?}");
    assert!(
        shown.contains("invite") && !shown.contains("X7"),
        "Debug names the fields only: {shown}"
    );
    let ua = who.user_agent.expect("the User-Agent");
    assert!(
        ua.len() <= Identity::USER_AGENT_MAX && ua.len() > 200,
        "{}",
        ua.len()
    );
    assert!(long_ua.starts_with(&ua), "cut at a character boundary");

    // The hook still refuses as before.
    let code = fake.mint_code("o-bob");
    let reply = post_login(
        &client,
        &base,
        json!({ "code": code, "invite": "refuse-me" }),
        None,
    )
    .await;
    assert_rejection(&reply, 403, "login_refused", false);
    assert_eq!(seen.lock().unwrap()[1].user_agent, None);
}

#[tokio::test]
async fn a_hook_returning_only_data_answers_the_plain_reply() {
    let fake = fake_wechat().await;
    let wx = builder(&fake)
        .on_login(|who: Identity| async move {
            Ok(Account {
                user_id: who.openid.len() as u64,
                via: "wechat".into(),
            })
        })
        .build()
        .unwrap();
    let base = serve_with_peers(app(&wx)).await;
    let client = reqwest::Client::new();
    let code = fake.mint_code("o-cat");
    let reply = post_login(&client, &base, json!({ "code": code }), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut keys: Vec<String> = reply.json().as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["expires_in", "openid", "token", "unionid"]);
}

#[tokio::test]
async fn an_issued_session_is_a_session_like_any_other() {
    let fake = fake_wechat().await;
    let wx = builder(&fake)
        .max_sessions_per_user(2)
        .on_login(|_who: Identity| async move {
            Ok(Account {
                user_id: 1,
                via: "wechat".into(),
            })
        })
        .build()
        .unwrap();
    let base = serve_with_peers(app(&wx)).await;
    let client = reqwest::Client::new();

    // The app verified an SMS code for its user 7 itself.
    let sms = Account {
        user_id: 7,
        via: "sms".into(),
    };
    let issued = wx
        .issue_session(Identity::new("u7").with_user_agent("H5"), sms.clone())
        .await
        .unwrap();
    assert_eq!(issued.expires_in(), 7 * 24 * 3600);
    assert_eq!(issued.token().len(), 46, "the same token format");
    assert!(
        !format!("{issued:?}").contains(issued.token()),
        "Debug hides the token"
    );
    assert_eq!(
        serde_json::to_value(&issued).unwrap(),
        json!({ "token": issued.token(), "expires_in": 7 * 24 * 3600 })
    );
    let (status, me) = get_json(&client, &format!("{base}/api/me"), Some(issued.token())).await;
    assert_eq!(status, 200);
    assert_eq!(me, json!({ "openid": "u7", "user_id": 7, "via": "sms" }));

    // Logout works on it over HTTP.
    let res = client
        .post(format!("{base}/wx/logout"))
        .bearer_auth(issued.token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (status, _) = get_json(&client, &format!("{base}/api/me"), Some(issued.token())).await;
    assert_eq!(status, 401);

    // The per-user cap counts issued sessions: the third ends the first.
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(
            wx.issue_session(Identity::new("u7"), sms.clone())
                .await
                .unwrap(),
        );
    }
    let (first, _) = get_json(&client, &format!("{base}/api/me"), Some(tokens[0].token())).await;
    let (last, _) = get_json(&client, &format!("{base}/api/me"), Some(tokens[2].token())).await;
    assert_eq!((first, last), (401, 200));

    // One revoke ends them all.
    assert_eq!(wx.revoke_user("u7").await.unwrap(), 2);
    for t in &tokens {
        let (status, _) = get_json(&client, &format!("{base}/api/me"), Some(t.token())).await;
        assert_eq!(status, 401);
    }

    // Mistakes of the app are misconfigured, never a session.
    for who in [
        Identity::new(""),
        Identity::new("x".repeat(129)),
        Identity::new("u7").with_app_id("wx-not-served"),
    ] {
        let err = wx.issue_session(who, sms.clone()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Misconfigured);
    }
}

#[tokio::test]
async fn an_issued_session_keeps_the_users_wechat_session_key() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    // A WeChat login, then an issued session for the same user: the
    // newest session_key the store keeps is still WeChat's.
    let base = common::serve(common::app(&wx)).await;
    let client = reqwest::Client::new();
    let token = common::login(&client, &base, &fake, "o-dan").await;
    wx.issue_session(Identity::new("o-dan"), ()).await.unwrap();
    let kept = wx.store().latest_session_key("o-dan").await.unwrap();
    assert_eq!(
        kept.map(|k| k.expose().to_owned()),
        fake.session_key("o-dan")
    );
    let (status, _) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
    assert_eq!(status, 200);
}
