//! Abuse limits on the login route, under a burst over real HTTP.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use common::*;
use wxlogin::mock::FakeReply;
use wxlogin::WxLogin;

async fn app(concurrency: usize, rate: u32) -> (String, wxlogin::mock::FakeWeChat) {
    let fake = fake_wechat().await;
    let wx = WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(APP_SECRET)
        .api_base(fake.base_url())
        .login_concurrency(concurrency)
        .login_rate(rate)
        .build()
        .unwrap();
    let router = Router::new().route_service("/wx/login", wx.login_service());
    (serve(router).await, fake)
}

async fn burst(
    base: &str,
    fake: &wxlogin::mock::FakeWeChat,
    n: usize,
) -> Vec<(u16, Option<String>, String)> {
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            let code = fake.mint_code(&format!("o-burst-{i}"));
            let url = format!("{base}/wx/login");
            tokio::spawn(async move {
                let res = client
                    .post(url)
                    .body(format!(r#"{{"code":"{code}"}}"#))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let retry = res
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body = res.text().await.unwrap();
                (status, retry, body)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exchanges_over_the_cap_get_429_at_once() {
    let (base, fake) = app(4, 0).await;
    // The cap's worth of exchanges, each held at WeChat for 2 s.
    for _ in 0..4 {
        fake.push_reply(FakeReply::Delay(Duration::from_secs(2)));
    }
    let held = {
        let (base, fake) = (base.clone(), fake.clone());
        tokio::spawn(async move { burst(&base, &fake, 4).await })
    };
    // Once all four are at WeChat the cap is full: every further login is
    // refused at once, whatever the timing.
    let started = Instant::now();
    while fake.code2session_calls() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the held logins never reached WeChat"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = burst(&base, &fake, 16).await;
    for (status, retry, body) in &refused {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "rate_limited");
        assert_eq!(v["relogin"], false);
    }
    // Refused logins never reached WeChat: the quota is protected.
    assert_eq!(fake.code2session_calls(), 4);
    for (status, _, body) in held.await.unwrap() {
        assert_eq!(status, 200, "{body}");
    }
    // The permits came back with the answers.
    assert_eq!(burst(&base, &fake, 1).await[0].0, 200);
}

#[tokio::test]
async fn exchanges_per_second_over_the_rate_get_429() {
    let (base, fake) = app(1000, 5).await;
    let started = Instant::now();
    let results = burst(&base, &fake, 15).await;
    let elapsed = started.elapsed();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let limited = results.iter().filter(|r| r.0 == 429).count();
    assert_eq!(ok + limited, 15);
    // The bucket's burst of 5, plus what it refilled (5 a second) while the
    // burst ran: exactly 5 when the burst takes under 200 ms.
    let refilled = (elapsed.as_secs_f64() * 5.0).floor() as usize;
    assert!(
        ok >= 5 && ok <= 5 + refilled,
        "{ok} admitted in {elapsed:?}: the burst is 5, and {refilled} refilled"
    );
    assert_eq!(fake.code2session_calls(), ok);
    // After a second the bucket has refilled.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = burst(&base, &fake, 1).await;
    assert_eq!(again[0].0, 200);
}

#[tokio::test]
async fn the_limits_are_checked_after_the_body_so_bad_requests_do_not_use_them() {
    let (base, fake) = app(1, 1).await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let res = client
            .post(format!("{base}/wx/login"))
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
    }
    let token = login(&client, &base, &fake, "o-after-bad").await;
    assert!(!token.is_empty());
}
