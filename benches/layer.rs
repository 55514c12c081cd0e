//! Per-request cost of the layer, against the same router without it.
//!
//! `cargo bench --bench layer`. Every line drives an axum router in process
//! with `ready().call()` on a current-thread runtime; compare each line with
//! `bare` from the same run (machines here are shared and noisy).
#![allow(missing_docs)]

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use tower::{Service, ServiceExt};
use wxlogin::mock::FakeWeChat;
use wxlogin::{WxLogin, WxUser};

const APP_ID: &str = "wxbench000000000";
const SECRET: &str = "bench-secret";

async fn call(app: &mut Router, req: Request<Body>) -> axum::response::Response {
    ServiceExt::<Request<Body>>::ready(app)
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
}

async fn login(app: &mut Router, fake: &FakeWeChat, openid: &str) -> String {
    let code = fake.mint_code(openid);
    let req = Request::post("/wx/login")
        .body(Body::from(format!(r#"{{"code":"{code}"}}"#)))
        .unwrap();
    let res = call(app, req).await;
    assert_eq!(res.status(), 200);
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn request(token: &str) -> Request<Body> {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (fake, wx) = rt.block_on(async {
        let fake = FakeWeChat::start(APP_ID, SECRET).await.unwrap();
        let wx = WxLogin::builder()
            .app_id(APP_ID)
            .app_secret(SECRET)
            .api_base(fake.base_url())
            .cache_ttl(Duration::from_secs(3600))
            .build()
            .unwrap();
        (fake, wx)
    });
    let mut app: Router = Router::new()
        .route(
            "/",
            get(|u: WxUser| async move { format!("hello {}", u.openid()) }),
        )
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service());
    let mut bare: Router = Router::new().route(
        "/",
        get(|| async move { format!("hello {}", "o-bench-user") }),
    );
    let token = rt.block_on(async {
        for i in 0..1000 {
            login(&mut app, &fake, &format!("o-user-{i}")).await;
        }
        login(&mut app, &fake, "o-bench-user").await
    });
    let forged = {
        let mut t = token.clone().into_bytes();
        let last = t.len() - 1;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).unwrap()
    };

    let mut g = c.benchmark_group("per_request");
    g.bench_function("bare", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = call(&mut bare, request(&token)).await;
                assert_eq!(res.status(), 200);
            })
        })
    });
    g.bench_function("layer_cache_hit_1k_sessions", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = call(&mut app, request(&token)).await;
                assert_eq!(res.status(), 200);
            })
        })
    });
    g.bench_function("layer_forged_token", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = call(&mut app, request(&forged)).await;
                assert_eq!(res.status(), 401);
            })
        })
    });
    g.finish();
    drop(fake);
}

criterion_group!(benches, bench);
criterion_main!(benches);
