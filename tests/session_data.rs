//! Session data that changes after login, over real HTTP on loopback:
//! `POST /api/profile` replaces the signed-in session's data
//! (`WxLogin::set_session_data`) and `GET /api/me` with the same token
//! shows it at once on this instance, and within one second on another
//! instance sharing a real `redis-server`; `set_user_data` changes every
//! session of a user. A change does not end the session.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{builder, fake_wechat, get_json, login, serve, Forward, Forwarding};
use redis_harness::{fleet_builder, status_of, store_at, unique_prefix, RedisServer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wxlogin::mock::FakeWeChat;
use wxlogin::store::{MemoryStore, RedisStore, SessionStore, StoreError, StoreFuture, StoreId};
use wxlogin::{Identity, Rejection, WxLogin, WxUser};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Profile {
    nickname: Option<String>,
}

async fn me(user: WxUser<Profile>) -> Json<Value> {
    Json(json!({ "openid": user.openid(), "nickname": user.nickname }))
}

async fn set_profile(
    State(wx): State<WxLogin<Profile>>,
    user: WxUser<Profile>,
    Json(body): Json<Value>,
) -> Result<StatusCode, Rejection> {
    let profile = Profile {
        nickname: body["nickname"].as_str().map(str::to_owned),
    };
    let changed = wx.set_session_data(&user, &profile).await?;
    assert!(changed, "the session making the call is live");
    Ok(StatusCode::NO_CONTENT)
}

fn app(wx: &WxLogin<Profile>) -> Router {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/profile", post(set_profile).with_state(wx.clone()))
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service())
}

async fn profile_login(fake: &FakeWeChat, store: Option<RedisStore>) -> WxLogin<Profile> {
    let b = match store {
        // A long cache TTL: only the announcement can refresh another instance in time.
        Some(store) => fleet_builder(fake, store).cache_ttl(Duration::from_secs(60)),
        None => builder(fake),
    };
    b.on_login(|_who: Identity| async move { Ok(Profile::default()) })
        .build()
        .unwrap()
}

async fn post_profile(client: &reqwest::Client, base: &str, token: &str, nickname: &str) -> u16 {
    let req = client.post(format!("{base}/api/profile"));
    status_of(
        req.bearer_auth(token)
            .json(&json!({ "nickname": nickname })),
    )
    .await
}

async fn nickname(client: &reqwest::Client, base: &str, token: &str) -> Value {
    let (status, me) = get_json(client, &format!("{base}/api/me"), Some(token)).await;
    assert_eq!(status, 200, "{me}");
    me["nickname"].clone()
}

#[tokio::test]
async fn a_profile_change_shows_at_once_on_this_instance() {
    let fake = fake_wechat().await;
    let wx = profile_login(&fake, None).await;
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-ann").await;
    let other = login(&client, &base, &fake, "o-ann").await;
    assert_eq!(nickname(&client, &base, &token).await, Value::Null);

    assert_eq!(post_profile(&client, &base, &token, "Ann").await, 204);
    assert_eq!(nickname(&client, &base, &token).await, "Ann", "at once");
    assert_eq!(
        nickname(&client, &base, &other).await,
        Value::Null,
        "one session's change leaves the user's other sessions"
    );

    // Every session of the user at once.
    let n = wx
        .set_user_data(
            "o-ann",
            &Profile {
                nickname: Some("A.".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(nickname(&client, &base, &token).await, "A.");
    assert_eq!(nickname(&client, &base, &other).await, "A.");
    assert_eq!(
        wx.set_user_data("o-nobody", &Profile::default())
            .await
            .unwrap(),
        0
    );

    // A revoked session's data cannot be brought back by a change.
    assert_eq!(wx.revoke_user("o-ann").await.unwrap(), 2);
    assert_eq!(
        wx.set_user_data("o-ann", &Profile::default())
            .await
            .unwrap(),
        0
    );
    let (status, _) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_change_reaches_the_other_instance_within_a_second() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("data");
    let fake = fake_wechat().await;
    let a = profile_login(&fake, Some(store_at(&redis.url(), &prefix).await)).await;
    let b = profile_login(&fake, Some(store_at(&redis.url(), &prefix).await)).await;
    let (base_a, base_b) = (serve(app(&a)).await, serve(app(&b)).await);
    let client = reqwest::Client::new();
    let token = login(&client, &base_a, &fake, "o-bob").await;
    // Both instances have it cached, with no nickname.
    assert_eq!(nickname(&client, &base_a, &token).await, Value::Null);
    assert_eq!(nickname(&client, &base_b, &token).await, Value::Null);
    redis_harness::wait_numsub(
        &redis,
        &format!("{prefix}:revoked"),
        2,
        Duration::from_secs(5),
    )
    .await;

    for (round, name) in ["Bob", "Bobby", "Robert"].iter().enumerate() {
        let (on, other) = if round % 2 == 0 {
            (&base_a, &base_b)
        } else {
            (&base_b, &base_a)
        };
        assert_eq!(post_profile(&client, on, &token, name).await, 204);
        assert_eq!(
            nickname(&client, on, &token).await,
            *name,
            "at once where it changed"
        );
        let started = Instant::now();
        loop {
            if nickname(&client, other, &token).await == *name {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "round {round}: the other instance still shows the old nickname after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Still the same live session everywhere.
    let (status, _) = get_json(&client, &format!("{base_b}/api/me"), Some(&token)).await;
    assert_eq!(status, 200);
}

/// A custom store that does not implement the new methods (their provided
/// versions fail as unsupported).
struct OldStore(MemoryStore);

impl Forwarding for OldStore {
    fn inner(&self) -> &dyn SessionStore {
        &self.0
    }
    fn replace_data(&self, id: StoreId, data: Vec<u8>) -> StoreFuture<'_, bool> {
        let _ = (id, data);
        Box::pin(async { Err(StoreError::unsupported("not implemented")) })
    }
}

#[tokio::test]
async fn a_store_that_cannot_change_data_is_misconfigured_not_unavailable() {
    let fake = fake_wechat().await;
    let wx = builder(&fake)
        .store(Forward(OldStore(MemoryStore::new())))
        .on_login(|_who: Identity| async move { Ok(Profile::default()) })
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-old").await;
    let res = client
        .post(format!("{base}/api/profile"))
        .bearer_auth(&token)
        .json(&json!({ "nickname": "X" }))
        .send()
        .await
        .unwrap();
    let reply = common::Reply::of(res).await;
    common::assert_rejection(&reply, 500, "misconfigured", false);
    // Nothing changed, nothing ended.
    assert_eq!(nickname(&client, &base, &token).await, Value::Null);
}
