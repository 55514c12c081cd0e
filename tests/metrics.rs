//! The `metrics` feature: counters and histograms a recorder can read.

mod common;

use std::collections::HashMap;

use axum::routing::get;
use axum::Router;
use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use wxlogin::{WxLogin, WxUser};

/// (name, sorted labels) → value, for counters; histograms → sample count.
fn read(snapshotter: &metrics_util::debugging::Snapshotter) -> HashMap<(String, Vec<String>), u64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let v = match (kind, value) {
                (MetricKind::Counter, DebugValue::Counter(c)) => c,
                (_, DebugValue::Histogram(h)) => h.len() as u64,
                _ => 0,
            };
            ((key.name().to_owned(), labels), v)
        })
        .collect()
}

fn get_metric(m: &HashMap<(String, Vec<String>), u64>, name: &str, label: &str) -> u64 {
    m.get(&(name.to_owned(), vec![label.to_owned()]))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn counters_follow_logins_cache_and_rejections() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");

    let fake = fake_wechat().await;
    let wx = WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(APP_SECRET)
        .api_base(fake.base_url())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/api/me",
            get(|u: WxUser| async move { u.openid().to_owned() }),
        )
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service());
    let base = serve(app).await;
    let client = reqwest::Client::new();

    let token = login(&client, &base, &fake, "o-metrics").await;
    for _ in 0..3 {
        let (status, _) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
        assert_eq!(status, 200);
    }
    let (status, _) = get_json(&client, &format!("{base}/api/me"), None).await;
    assert_eq!(status, 401);
    // A reused code: WeChat says 40163.
    let code = fake.mint_code("o-twice");
    for expected in [200, 400] {
        let res = client
            .post(format!("{base}/wx/login"))
            .body(format!(r#"{{"code":"{code}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected);
    }

    let m = read(&snapshotter);
    assert_eq!(get_metric(&m, "wxlogin_logins_total", "outcome=ok"), 2);
    assert_eq!(
        get_metric(&m, "wxlogin_logins_total", "outcome=invalid_code"),
        1
    );
    // The login warmed the cache: three hits, no miss.
    assert_eq!(get_metric(&m, "wxlogin_cache_total", "result=hit"), 3);
    assert_eq!(get_metric(&m, "wxlogin_cache_total", "result=miss"), 0);
    assert_eq!(
        get_metric(&m, "wxlogin_rejections_total", "error=missing_token"),
        1
    );
    // WeChat latency was observed for every exchange, by outcome.
    assert_eq!(get_metric(&m, "wxlogin_wechat_seconds", "outcome=ok"), 2);
    assert_eq!(
        get_metric(&m, "wxlogin_wechat_seconds", "outcome=invalid_code"),
        1
    );
    // Two session creates, timed; no store errors.
    assert_eq!(get_metric(&m, "wxlogin_store_seconds", "op=create"), 2);
    assert_eq!(get_metric(&m, "wxlogin_store_errors_total", "op=create"), 0);
    // No label carries a user id or a token.
    for (name, labels) in m.keys() {
        for l in labels {
            assert!(
                !l.contains("o-metrics") && !l.contains(&token),
                "{name} {l}"
            );
        }
    }
}
