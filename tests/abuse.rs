//! Abuse limits on the login route, under a burst over real HTTP.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use common::*;
use wxlogin::mock::FakeReply;

async fn app(concurrency: usize, rate: u32) -> (String, wxlogin::mock::FakeWeChat) {
    let fake = fake_wechat().await;
    let wx = builder(&fake)
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

// ---------------------------------------------------------------- per client

/// One login attempt: status, `Retry-After`, `error`.
async fn try_login(
    client: &reqwest::Client,
    base: &str,
    code: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<u64>, String) {
    let mut req = client
        .post(format!("{base}/wx/login"))
        .body(format!(r#"{{"code":"{code}"}}"#));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    (
        status,
        retry,
        body["error"].as_str().unwrap_or("").to_owned(),
    )
}

/// A random code of the real shape, unknown to WeChat (40029): what a flood sends.
fn random_code(i: usize) -> String {
    format!("{:0>32}", format!("0{i}flood{}", std::process::id())).replace(['-', '_'], "x")
}

/// Floods the login route from `client` with `workers` loops until `stop`;
/// returns every outcome.
fn flood(
    client: reqwest::Client,
    base: String,
    headers: Vec<(&'static str, &'static str)>,
    workers: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(u16, Option<u64>, String)>> {
    tokio::spawn(async move {
        let loops: Vec<_> = (0..workers)
            .map(|w| {
                let (client, base, headers, stop) =
                    (client.clone(), base.clone(), headers.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    let mut i = w * 1_000_000;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        i += 1;
                        out.push(try_login(&client, &base, &random_code(i), &headers).await);
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for l in loops {
            all.extend(l.await.unwrap());
        }
        all
    })
}

/// Checks a flood's outcomes: mostly refused with 429 `rate_limited` and a
/// `Retry-After`; the rest reached WeChat, which refused the random codes.
fn assert_flood_refused(outcomes: &[(u16, Option<u64>, String)], what: &str) -> usize {
    let limited = outcomes.iter().filter(|o| o.0 == 429).count();
    let exchanged = outcomes.iter().filter(|o| o.2 == "invalid_code").count();
    assert_eq!(limited + exchanged, outcomes.len(), "{what}: {outcomes:?}");
    assert!(
        limited * 2 > outcomes.len(),
        "{what}: only {limited} of {} refused",
        outcomes.len()
    );
    for (status, retry, error) in outcomes.iter().filter(|o| o.0 == 429) {
        assert_eq!(error, "rate_limited", "{what} {status}");
        assert!(retry.is_some_and(|s| s >= 1), "{what}: no Retry-After");
    }
    exchanged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_does_not_make_another_addresss_login_fail() {
    // The server's own cap (100 a second) is well above one client's share
    // (20 a second by default): a flood from 127.0.0.2 is refused by its own
    // bucket and leaves the server's budget to 127.0.0.3. (With one global
    // bucket, the flood emptied it and every other login got 429.)
    let fake = fake_wechat().await;
    let wx = builder(&fake).login_rate(100).build().unwrap();
    let base = serve_with_peers(Router::new().route_service("/wx/login", wx.login_service())).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = flood(
        client_from("127.0.0.2"),
        base.clone(),
        vec![],
        8,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let other = client_from("127.0.0.3");
    let mut statuses = Vec::new();
    for i in 0..8 {
        let code = fake.mint_code(&format!("o-other-{i}"));
        statuses.push(try_login(&other, &base, &code, &[]).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcomes = flooding.await.unwrap();
    assert!(
        statuses.iter().all(|s| s.0 == 200),
        "another address's logins failed during the flood: {statuses:?}"
    );
    let exchanged = assert_flood_refused(&outcomes, "flood");
    // The flood ran about 1.1 s: its WeChat calls are one client's burst and
    // refill (20 + 20 a second), with slack for a slow machine.
    assert!(
        exchanged <= 20 + 20 * 3,
        "{exchanged} flood codes reached WeChat"
    );
    assert_eq!(fake.code2session_calls(), exchanged + statuses.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_at_least_ten_logins_a_second() {
    // Many users behind one carrier NAT: ten at once, then ten a second.
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = serve_with_peers(Router::new().route_service("/wx/login", wx.login_service())).await;
    let nat = client_from("127.0.0.4");
    let burst: Vec<_> = (0..10)
        .map(|i| {
            let (nat, base, code) = (
                nat.clone(),
                base.clone(),
                fake.mint_code(&format!("o-nat-{i}")),
            );
            tokio::spawn(async move { try_login(&nat, &base, &code, &[]).await })
        })
        .collect();
    for b in burst {
        let outcome = b.await.unwrap();
        assert_eq!(outcome.0, 200, "{outcome:?}");
    }
    for i in 0..20 {
        let code = fake.mint_code(&format!("o-nat-paced-{i}"));
        let outcome = try_login(&nat, &base, &code, &[]).await;
        assert_eq!(outcome.0, 200, "paced login {i}: {outcome:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_app_keys_clients_by_the_header_it_trusts() {
    // No connection info at all (every request comes from the proxy); the
    // app reads the last X-Forwarded-For entry, the one its proxy appended.
    let fake = fake_wechat().await;
    let wx = builder(&fake)
        .login_rate(100)
        .login_client_key(|parts| {
            let xff = parts.headers.get("x-forwarded-for")?.to_str().ok()?;
            let last = xff.rsplit(',').next()?.trim();
            last.parse::<std::net::IpAddr>()
                .ok()
                .map(wxlogin::ClientKey::from)
        })
        .build()
        .unwrap();
    let base = serve(Router::new().route_service("/wx/login", wx.login_service())).await;
    let proxy = reqwest::Client::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The flooder forges its own first entry; the proxy's is what counts.
    let headers = vec![("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
    let flooding = flood(proxy.clone(), base.clone(), headers, 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let code = fake.mint_code(&format!("o-proxied-{i}"));
        // Claims the flooder's address first: still its own client.
        let xff = [("x-forwarded-for", "203.0.113.7, 198.51.100.9")];
        statuses.push(try_login(&proxy, &base, &code, &xff).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcomes = flooding.await.unwrap();
    assert!(statuses.iter().all(|s| s.0 == 200), "{statuses:?}");
    assert_flood_refused(&outcomes, "proxied flood");
}

/// Serves the login route on plain hyper, putting each connection's peer
/// address in the request extensions, as a hyper app does to key its clients.
async fn serve_hyper_with_peers(login: wxlogin::LoginService<()>) -> String {
    use tower::ServiceExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let login = login.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(peer);
                        login.clone().oneshot(req)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hyper_server_keys_clients_by_the_peer_address_it_inserts() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).login_rate(100).build().unwrap();
    let base = serve_hyper_with_peers(wx.login_service()).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = flood(
        client_from("127.0.0.5"),
        base.clone(),
        vec![],
        8,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = client_from("127.0.0.6");
    let mut statuses = Vec::new();
    for i in 0..8 {
        let code = fake.mint_code(&format!("o-hyper-{i}"));
        statuses.push(try_login(&other, &base, &code, &[]).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcomes = flooding.await.unwrap();
    assert!(statuses.iter().all(|s| s.0 == 200), "{statuses:?}");
    assert_flood_refused(&outcomes, "hyper flood");
}

#[tokio::test]
async fn without_connection_info_only_the_global_limits_apply() {
    // `axum::serve(listener, app)` without connect info: no client key, so
    // one address gets more than a client's share (the documented fallback,
    // logged once), and the global cap still holds.
    let (base, fake) = app(1000, 30).await;
    let results = burst(&base, &fake, 40).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert!((30..=35).contains(&ok), "ok = {ok}");
    assert!(results.iter().all(|r| r.0 == 200 || r.0 == 429));
}
