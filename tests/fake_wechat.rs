//! The fake WeChat (`wxlogin::mock`) over real HTTP: it must behave like
//! WeChat's `jscode2session` for the crate's own tests to mean anything.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use wxlogin::mock::{FakeReply, FakeWeChat, CODE_LIFETIME};

const APP_ID: &str = "wx0123456789abcdef";
const SECRET: &str = "test-app-secret";

async fn fake() -> FakeWeChat {
    FakeWeChat::start(APP_ID, SECRET)
        .await
        .expect("fake WeChat starts")
}

fn url(fake: &FakeWeChat, appid: &str, secret: &str, code: &str) -> String {
    format!(
        "{}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code",
        fake.base_url()
    )
}

/// GETs the URL: status, Content-Type, body as JSON (Null when not JSON).
async fn get(url: &str) -> (u16, String, Value) {
    let response = reqwest::get(url).await.expect("request succeeds");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn exchange(fake: &FakeWeChat, code: &str) -> Value {
    let (status, content_type, body) = get(&url(fake, APP_ID, SECRET, code)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain");
    body
}

fn errcode(body: &Value) -> i64 {
    body["errcode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no errcode in {body}"))
}

#[tokio::test]
async fn a_code_exchanges_once_for_openid_and_session_key() {
    let fake = fake().await;
    assert_eq!(fake.app_id(), APP_ID);
    assert!(fake.base_url().starts_with("http://127.0.0.1:"));
    let code = fake.mint_code("o-alice");
    assert!(code.len() >= 32);
    assert!(code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    let body = exchange(&fake, &code).await;
    assert_eq!(body["openid"], "o-alice");
    assert!(body.get("unionid").is_none(), "{body}");
    assert!(body.get("errcode").is_none(), "{body}");
    let key = body["session_key"].as_str().unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    assert_eq!((key.len(), raw.len()), (24, 16));
    assert_eq!(fake.session_key("o-alice").as_deref(), Some(key));

    let again = exchange(&fake, &code).await;
    assert_eq!(errcode(&again), 40163, "{again}");
    assert!(again["errmsg"]
        .as_str()
        .unwrap()
        .starts_with("code been used, rid: "));
    assert_eq!(fake.code2session_calls(), 2);
}

#[tokio::test]
async fn each_login_rotates_the_session_key_and_unionid_is_returned_when_bound() {
    let fake = fake().await;
    assert_eq!(fake.session_key("o-bob"), None);
    let first = exchange(&fake, &fake.mint_code_with_unionid("o-bob", "u-bob")).await;
    assert_eq!(first["unionid"], "u-bob");
    let second = exchange(&fake, &fake.mint_code_with_unionid("o-bob", "u-bob")).await;
    assert_ne!(first["session_key"], second["session_key"]);
    assert_eq!(
        fake.session_key("o-bob").as_deref(),
        second["session_key"].as_str()
    );
    assert_ne!(fake.mint_code("o-bob"), fake.mint_code("o-bob"));
}

#[tokio::test]
async fn unknown_and_expired_codes_are_40029() {
    let fake = fake().await;
    assert_eq!(CODE_LIFETIME, Duration::from_secs(300));
    assert_eq!(errcode(&exchange(&fake, "no-such-code").await), 40029);

    let older = fake.mint_code("o-carol");
    fake.set_code_lifetime(Duration::from_millis(50));
    let code = fake.mint_code("o-carol");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let body = exchange(&fake, &code).await;
    assert_eq!(errcode(&body), 40029, "{body}");
    assert!(body["errmsg"].as_str().unwrap().starts_with("invalid code"));
    // The lifetime applies to codes minted after the change only.
    assert_eq!(exchange(&fake, &older).await["openid"], "o-carol");
}

#[tokio::test]
async fn request_parameters_are_checked_like_wechat() {
    let fake = fake().await;
    let code = fake.mint_code("o-dave");
    let base = fake.base_url();
    let cases = [
        (url(&fake, "wx-other", SECRET, &code), 40013, "invalid appid"),
        (url(&fake, APP_ID, "wrong", &code), 40125, "invalid appsecret"),
        (format!("{base}/sns/jscode2session?secret={SECRET}&js_code={code}&grant_type=authorization_code"), 41002, "appid missing"),
        (format!("{base}/sns/jscode2session?appid={APP_ID}&js_code={code}&grant_type=authorization_code"), 41004, "appsecret missing"),
        (format!("{base}/sns/jscode2session?appid={APP_ID}&secret={SECRET}&js_code={code}&grant_type=password"), 40002, "invalid grant_type"),
        (format!("{base}/sns/jscode2session?appid={APP_ID}&secret={SECRET}&code={code}&grant_type=authorization_code"), 41008, "missing code"),
    ];
    for (url, expected, message) in cases {
        let (status, content_type, body) = get(&url).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/plain"),
            "{url}"
        );
        assert_eq!(errcode(&body), expected, "{url}: {body}");
        assert!(
            body["errmsg"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{message}, rid: ")),
            "{body}"
        );
    }
    // Parameters in a POST body are not read, like WeChat.
    let response = reqwest::Client::new()
        .post(format!("{base}/sns/jscode2session"))
        .body(format!(
            "appid={APP_ID}&secret={SECRET}&js_code={code}&grant_type=authorization_code"
        ))
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(errcode(&body), 41002);
    // None of these consumed the code.
    assert_eq!(exchange(&fake, &code).await["openid"], "o-dave");
    assert_eq!(fake.code2session_calls(), 8);
}

#[tokio::test]
async fn percent_encoded_parameters_are_decoded() {
    let secret = "a&b=c d+e";
    let fake = FakeWeChat::start(APP_ID, secret).await.unwrap();
    let code = fake.mint_code("o-erin");
    let response = reqwest::Client::new()
        .get(format!("{}/sns/jscode2session", fake.base_url()))
        .query(&[
            ("appid", APP_ID),
            ("secret", secret),
            ("js_code", &code),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["openid"], "o-erin", "{body}");
}

#[tokio::test]
async fn queued_errcodes_use_wechat_messages_and_leave_the_code_valid() {
    let fake = fake().await;
    let code = fake.mint_code("o-frank");
    for (errcode, message) in [
        (-1, "system error"),
        (45011, "api minute-quota reach limit"),
        (40226, "code blocked"),
        (40029, "invalid code"),
    ] {
        fake.push_reply(FakeReply::Errcode(errcode));
        let body = exchange(&fake, &code).await;
        assert_eq!(body["errcode"], errcode, "{body}");
        assert!(
            body["errmsg"].as_str().unwrap().starts_with(message),
            "{body}"
        );
    }
    fake.push_reply(FakeReply::ErrcodeAsString(40029));
    let body = exchange(&fake, &code).await;
    assert_eq!(body["errcode"], "40029");
    assert!(body["errmsg"].as_str().unwrap().starts_with("invalid code"));

    assert_eq!(exchange(&fake, &code).await["openid"], "o-frank");
    assert_eq!(fake.code2session_calls(), 6);
}

#[tokio::test]
async fn queued_replies_are_used_in_order() {
    let fake = fake().await;
    let code = fake.mint_code("o-grace");
    let target = url(&fake, APP_ID, SECRET, &code);
    fake.push_reply(FakeReply::Status(
        502,
        "<html>502 Bad Gateway</html>".into(),
    ));
    fake.push_reply(FakeReply::Status(500, r#"{"errcode":-1}"#.into()));
    fake.push_reply(FakeReply::Status(1000, String::new()));
    fake.push_reply(FakeReply::Body(r#"{"openid":"o-gr"#.into()));
    fake.push_reply(FakeReply::Body(String::new()));

    let response = reqwest::get(&target).await.unwrap();
    assert_eq!(response.status().as_u16(), 502);
    assert_eq!(
        response.text().await.unwrap(),
        "<html>502 Bad Gateway</html>"
    );
    let (status, _, body) = get(&target).await;
    assert_eq!((status, errcode(&body)), (500, -1));
    let (status, _, _) = get(&target).await;
    assert_eq!(status, 500);
    let response = reqwest::get(&target).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await.unwrap(), r#"{"openid":"o-gr"#);
    let response = reqwest::get(&target).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "");

    assert_eq!(exchange(&fake, &code).await["openid"], "o-grace");
    assert_eq!(fake.code2session_calls(), 6);
}

#[tokio::test]
async fn reset_closes_the_connection_without_a_reply() {
    let fake = fake().await;
    fake.push_reply(FakeReply::Reset);
    let err = reqwest::get(url(&fake, APP_ID, SECRET, "x"))
        .await
        .unwrap_err();
    // The request was sent on an open connection that then closed with no
    // reply: a request error, not a connect, body or timeout error.
    assert!(err.is_request(), "{err:?}");
    assert!(
        !err.is_connect() && !err.is_body() && !err.is_timeout(),
        "{err:?}"
    );
    assert!(!err.is_status());
    // The server keeps serving new connections.
    let body = exchange(&fake, &fake.mint_code("o-heidi")).await;
    assert_eq!(body["openid"], "o-heidi");
    assert_eq!(fake.code2session_calls(), 2);
}

#[tokio::test]
async fn delay_and_latency_slow_the_reply() {
    let fake = fake().await;
    let code = fake.mint_code("o-ivan");
    fake.push_reply(FakeReply::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let body = exchange(&fake, &code).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        body["openid"], "o-ivan",
        "a delayed reply then answers normally"
    );

    fake.set_latency(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(errcode(&exchange(&fake, "unknown").await), 40029);
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Latency applies to queued replies too, and a client timeout sees it.
    fake.set_latency(Duration::from_secs(2));
    fake.push_reply(FakeReply::Errcode(-1));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .get(url(&fake, APP_ID, SECRET, "x"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(fake.code2session_calls(), 3);

    fake.set_latency(Duration::ZERO);
    let started = Instant::now();
    exchange(&fake, "unknown").await;
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn fake_wx_login_mints_codes_for_curl_users() {
    let fake = fake().await;
    let client = reqwest::Client::new();
    let login = format!("{}/_fake/wx.login", fake.base_url());

    let response = client
        .post(&login)
        .json(&serde_json::json!({"openid": "o-judy", "unionid": "u-judy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let reply: Value = response.json().await.unwrap();
    let code = reply["code"].as_str().unwrap();
    let body = exchange(&fake, code).await;
    assert_eq!(
        (&body["openid"], &body["unionid"]),
        (&"o-judy".into(), &"u-judy".into())
    );

    // No openid (or no body at all): a random, openid-shaped one.
    let mut openids = Vec::new();
    for request in [
        client.post(&login).json(&serde_json::json!({})),
        client.post(&login),
    ] {
        let reply: Value = request.send().await.unwrap().json().await.unwrap();
        let body = exchange(&fake, reply["code"].as_str().unwrap()).await;
        let openid = body["openid"].as_str().unwrap().to_owned();
        assert!(openid.starts_with('o') && openid.len() == 28, "{openid}");
        assert!(body.get("unionid").is_none());
        openids.push(openid);
    }
    assert_ne!(openids[0], openids[1]);

    let response = client.post(&login).body("not json").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = client.get(&login).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    // Only jscode2session calls are counted.
    assert_eq!(fake.code2session_calls(), 3);
}

#[tokio::test]
async fn shutdown_and_last_drop_stop_the_server() {
    let fake = fake().await;
    let clone = fake.clone();
    let target = url(&fake, APP_ID, SECRET, "x");
    drop(clone);
    assert_eq!(
        errcode(&get(&target).await.2),
        40029,
        "a clone's drop keeps it running"
    );

    fake.shutdown();
    refused_soon(&target).await;

    let fake = self::fake().await;
    let target = url(&fake, APP_ID, SECRET, "x");
    assert!(reqwest::get(&target).await.is_ok());
    drop(fake);
    refused_soon(&target).await;
}

/// Waits (up to 5 s, so a slow machine cannot fail it) until nothing
/// accepts connections at `url`'s port any more.
async fn refused_soon(url: &str) {
    let started = std::time::Instant::now();
    loop {
        match reqwest::get(url).await {
            Err(e) if e.is_connect() => return,
            other => assert!(
                started.elapsed() < Duration::from_secs(5),
                "still served after 5 s: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn debug_output_does_not_show_the_secret() {
    let fake = fake().await;
    let debug = format!("{fake:?}");
    assert!(debug.contains(APP_ID) && !debug.contains(SECRET), "{debug}");
}
