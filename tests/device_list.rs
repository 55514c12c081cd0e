//! The device list over real HTTP on loopback, on the memory store and on a
//! real `redis-server`: each session records when it was made, its
//! `User-Agent` and its IP; `GET /api/sessions` lists the signed-in user's
//! live sessions with an opaque id (never the token) and which one is
//! calling; `DELETE /api/sessions/{id}` ends one (404 for another user's or
//! an unknown id), on every instance.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::{builder, client_from, fake_wechat, get_json, now_ms, serve_with_peers};
use redis_harness::{fleet_builder, status_of, store_at, unique_prefix, RedisCli, RedisServer};
use serde_json::Value;
use wxlogin::mock::FakeWeChat;
use wxlogin::{DeviceSession, Identity, Rejection, WxLogin, WxUser};

async fn list(
    State(wx): State<WxLogin>,
    user: WxUser,
) -> Result<Json<Vec<DeviceSession>>, Rejection> {
    Ok(Json(wx.list_sessions(&user).await?))
}

async fn end(
    State(wx): State<WxLogin>,
    user: WxUser,
    Path(id): Path<String>,
) -> Result<StatusCode, Rejection> {
    Ok(match wx.end_session(&user, &id).await? {
        true => StatusCode::NO_CONTENT,
        false => StatusCode::NOT_FOUND,
    })
}

fn app(wx: &WxLogin) -> Router {
    common::app_with(
        wx,
        Router::new()
            .route("/api/sessions", get(list).with_state(wx.clone()))
            .route(
                "/api/sessions/{id}",
                axum::routing::delete(end).with_state(wx.clone()),
            ),
    )
}

/// Logs `openid` in from `client` with this `User-Agent`; the token.
async fn login_as(
    client: &reqwest::Client,
    base: &str,
    fake: &FakeWeChat,
    openid: &str,
    ua: &str,
) -> String {
    let code = fake.mint_code(openid);
    let res = client
        .post(format!("{base}/wx/login"))
        .header("user-agent", ua)
        .body(format!(r#"{{"code":"{code}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn sessions(client: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let (status, body) = get_json(client, &format!("{base}/api/sessions"), Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

async fn end_by(client: &reqwest::Client, base: &str, token: &str, id: &str) -> u16 {
    status_of(
        client
            .delete(format!("{base}/api/sessions/{id}"))
            .bearer_auth(token),
    )
    .await
}

/// The whole device-list story against `a` (and `b`, another instance
/// sharing the store, or `a` itself).
async fn device_list_story(fake: &FakeWeChat, a: &str, b: &str) {
    let phone = client_from("127.0.0.1");
    let laptop = client_from("127.0.0.2");
    let started_s = now_ms() / 1000;
    let t_phone = login_as(
        &phone,
        a,
        fake,
        "o-dev",
        "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50",
    )
    .await;
    let t_laptop = login_as(
        &laptop,
        a,
        fake,
        "o-dev",
        "Mozilla/5.0 (Windows) WindowsWechat",
    )
    .await;
    let t_other = login_as(&phone, a, fake, "o-someone-else", "Other").await;

    let list = sessions(&laptop, b, &t_laptop).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let by_ua = |ua: &str| {
        list.iter()
            .find(|s| s["user_agent"].as_str().is_some_and(|u| u.contains(ua)))
            .unwrap()
    };
    let (p, l) = (by_ua("iPhone"), by_ua("Windows"));
    assert_eq!(
        p["user_agent"],
        "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50"
    );
    assert_eq!(p["ip"], "127.0.0.1");
    assert_eq!(l["user_agent"], "Mozilla/5.0 (Windows) WindowsWechat");
    assert_eq!(l["ip"], "127.0.0.2");
    assert_eq!(
        (p["current"].as_bool(), l["current"].as_bool()),
        (Some(false), Some(true))
    );
    for s in &list {
        let created = s["created_at"].as_u64().unwrap();
        assert!(
            created >= started_s && created <= now_ms() / 1000 + 1,
            "{s}"
        );
        let id = s["id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert_ne!(id, t_phone);
        assert_ne!(id, t_laptop);
    }
    let listed = serde_json::to_string(&list).unwrap();
    assert!(
        !listed.contains(&t_phone) && !listed.contains(&t_laptop),
        "no token in the list"
    );
    // The same ids from the other session's point of view.
    let from_phone = sessions(&phone, a, &t_phone).await;
    let mine = from_phone.iter().find(|s| s["id"] == p["id"]).unwrap();
    assert_eq!(mine["current"], true);

    // Another user's id, an unknown one, garbage: 404, nothing ended.
    let others = sessions(&phone, a, &t_other).await;
    let other_id = others[0]["id"].as_str().unwrap();
    assert_eq!(end_by(&laptop, a, &t_laptop, other_id).await, 404);
    assert_eq!(end_by(&laptop, a, &t_laptop, &"0".repeat(32)).await, 404);
    assert_eq!(end_by(&laptop, a, &t_laptop, "not-a-handle").await, 404);
    assert_eq!(
        get_json(&phone, &format!("{a}/api/me"), Some(&t_other))
            .await
            .0,
        200
    );

    // The laptop ends the phone's session: gone on every instance within 1 s.
    assert_eq!(
        end_by(&laptop, a, &t_laptop, p["id"].as_str().unwrap()).await,
        204
    );
    assert_eq!(
        get_json(&phone, &format!("{a}/api/me"), Some(&t_phone))
            .await
            .0,
        401
    );
    let started = Instant::now();
    while get_json(&phone, &format!("{b}/api/me"), Some(&t_phone))
        .await
        .0
        != 401
    {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the other instance still serves it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = sessions(&laptop, b, &t_laptop).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], true);
    // Ending it again: 404.
    assert_eq!(
        end_by(&laptop, a, &t_laptop, p["id"].as_str().unwrap()).await,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_list_on_the_memory_store() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = serve_with_peers(app(&wx)).await;
    device_list_story(&fake, &base, &base).await;

    // A session the app issues shows what the app gave it.
    let issued = wx
        .issue_session(
            Identity::new("o-issued")
                .with_user_agent("SMS login")
                .with_ip("198.51.100.9".parse().unwrap()),
            (),
        )
        .await
        .unwrap();
    let list = sessions(&reqwest::Client::new(), &base, issued.token()).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["user_agent"], "SMS login");
    assert_eq!(list[0]["ip"], "198.51.100.9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_list_across_instances_on_redis() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("devices");
    let fake = fake_wechat().await;
    let mut bases = Vec::new();
    let mut logins = Vec::new();
    for _ in 0..2 {
        let wx = fleet_builder(&fake, store_at(&redis.url(), &prefix).await)
            .cache_ttl(Duration::from_secs(60))
            .build()
            .unwrap();
        bases.push(serve_with_peers(app(&wx)).await);
        logins.push(wx);
    }
    redis_harness::wait_numsub(
        &redis,
        &format!("{prefix}:revoked"),
        2,
        Duration::from_secs(5),
    )
    .await;
    device_list_story(&fake, &bases[0], &bases[1]).await;
}

/// `record_devices(false)`: no device is kept, and the records are in the
/// previous release's format (version 2), which an older instance reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_devices_records_stay_in_the_previous_format() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("nodev");
    let fake = fake_wechat().await;
    let wx = fleet_builder(&fake, store_at(&redis.url(), &prefix).await)
        .record_devices(false)
        .build()
        .unwrap();
    let base = serve_with_peers(app(&wx)).await;
    let client = reqwest::Client::new();
    let token = login_as(&client, &base, &fake, "o-nodev", "Mozilla/5.0 (iPhone)").await;
    let list = sessions(&client, &base, &token).await;
    assert_eq!(list.len(), 1);
    assert_eq!(
        (&list[0]["user_agent"], &list[0]["ip"]),
        (&Value::Null, &Value::Null)
    );
    let keys = redis.cli(&["KEYS", &format!("{prefix}:s:*")]);
    let key = keys.lines().next().expect("the session key");
    assert_eq!(
        redis.cli(&["GETRANGE", key, "0", "0"]),
        "\u{2}",
        "version 2"
    );
}
