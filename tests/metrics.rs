//! The `metrics` feature: counters and histograms a recorder can read.

mod common;

use std::collections::HashMap;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use wxlogin::mock::FakeWeChat;
use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreError, StoreFuture, StoreId};
use wxlogin::WxLogin;

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

/// A store whose loads fail: a store outage on the miss path.
#[derive(Clone, Default)]
struct FailingLoads(MemoryStore);

impl Forwarding for FailingLoads {
    fn inner(&self) -> &dyn SessionStore {
        &self.0
    }
    fn load(&self, _id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        Box::pin(async { Err(StoreError::new("connection refused (test)")) })
    }
}

const KEY: &str = "metrics-test-token-key-0123456789";

fn instance(fake: &FakeWeChat, store: impl SessionStore) -> WxLogin {
    builder(fake).token_key(KEY).store(store).build().unwrap()
}

async fn start(wx: &WxLogin) -> String {
    serve(common::app(wx)).await
}

#[tokio::test]
async fn counters_follow_logins_cache_and_rejections() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");

    let fake = fake_wechat().await;
    // `a` logs in and serves from its cache; `b` shares its store and key
    // (a miss, then a hit); `c` has the key but a store whose loads fail.
    let shared = MemoryStore::new();
    let a = instance(&fake, shared.clone());
    let b = instance(&fake, shared.clone());
    let c = instance(&fake, Forward(FailingLoads::default()));
    let (base, base_b, base_c) = (start(&a).await, start(&b).await, start(&c).await);
    let client = reqwest::Client::new();

    let token = login(&client, &base, &fake, "o-metrics").await;
    for _ in 0..3 {
        let (status, _) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
        assert_eq!(status, 200);
    }
    let (status, _) = get_json(&client, &format!("{base}/api/me"), None).await;
    assert_eq!(status, 401);
    // A forged token is refused on its MAC, before the cache.
    let (status, _) = get_json(&client, &format!("{base}/api/me"), Some("forged")).await;
    assert_eq!(status, 401);
    // A reused code: WeChat says 40163.
    let code = fake.mint_code("o-twice");
    let mut twice = String::new();
    for expected in [200, 400] {
        let res = client
            .post(format!("{base}/wx/login"))
            .body(format!(r#"{{"code":"{code}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected);
        if expected == 200 {
            let body: serde_json::Value = res.json().await.unwrap();
            twice = body["token"].as_str().unwrap().to_owned();
        }
    }
    let res = client
        .post(format!("{base}/wx/logout"))
        .bearer_auth(&twice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for expected in [200, 200] {
        let (status, _) = get_json(&client, &format!("{base_b}/api/me"), Some(&token)).await;
        assert_eq!(status, expected);
    }
    let (status, _) = get_json(&client, &format!("{base_c}/api/me"), Some(&token)).await;
    assert_eq!(status, 503);

    // Every metric the run must have emitted, with its value (histograms:
    // their sample count), and nothing else: a counter never emitted fails
    // as surely as a wrong count.
    let expected: HashMap<(String, Vec<String>), u64> = [
        ("wxlogin_logins_total", "outcome=ok", 2),
        ("wxlogin_logins_total", "outcome=invalid_code", 1),
        ("wxlogin_wechat_seconds", "outcome=ok", 2),
        ("wxlogin_wechat_seconds", "outcome=invalid_code", 1),
        // Three on `a` after its login warmed the cache, one on `b` after its miss.
        ("wxlogin_cache_total", "result=hit", 4),
        // `b`'s first request and `c`'s.
        ("wxlogin_cache_total", "result=miss", 2),
        ("wxlogin_rejections_total", "error=missing_token", 1),
        ("wxlogin_rejections_total", "error=invalid_token", 1),
        ("wxlogin_rejections_total", "error=store_unavailable", 1),
        // A login's one store step also keeps the newest `session_key`.
        ("wxlogin_store_seconds", "op=create", 2),
        ("wxlogin_store_seconds", "op=delete", 1),
        ("wxlogin_store_seconds", "op=load", 2),
        ("wxlogin_store_errors_total", "op=load", 1),
    ]
    .into_iter()
    .map(|(name, label, v)| ((name.to_owned(), vec![label.to_owned()]), v))
    .collect();
    let m = read(&snapshotter);
    let mut wrong = Vec::new();
    for (key, want) in &expected {
        match m.get(key) {
            None => wrong.push(format!("{key:?}: never emitted, want {want}")),
            Some(got) if got != want => wrong.push(format!("{key:?}: {got}, want {want}")),
            Some(_) => {}
        }
    }
    for (key, got) in &m {
        if !expected.contains_key(key) {
            wrong.push(format!("{key:?}: {got}, not expected"));
        }
    }
    wrong.sort();
    assert!(wrong.is_empty(), "metrics differ:\n{}", wrong.join("\n"));

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
