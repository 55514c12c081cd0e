//! A tight loop over one request kind, for profilers (`perf`, callgrind):
//! what `benches/layer.rs` measures, without criterion around it.
//!
//! ```text
//! cargo build --release --example hit_path
//! target/release/examples/hit_path hit 1000000        # bare | hit | hit1k | hit1m | forged | unknown | miss
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='hit_path::run*' \
//!     target/release/examples/hit_path hit 20000
//! ```
//!
//! Prints the mean ns per request. Under callgrind, the instructions of
//! `run` divided by the count are the (deterministic) cost per request.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{HeaderValue, Request, StatusCode};
use tower::{Service, ServiceExt};
use wxlogin::{Secret, WxLogin, WxUser};

#[inline(never)]
async fn run(app: &mut Router, auths: &[HeaderValue], status: StatusCode, n: u64) {
    for i in 0..n as usize {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.headers_mut()
            .insert("authorization", auths[i % auths.len()].clone());
        let res = ServiceExt::<Request<Body>>::ready(&mut *app)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        assert_eq!(res.status(), status);
        std::hint::black_box(res);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "hit".into());
    let n: u64 = args
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let wx = WxLogin::builder()
            .app_id("wxprofile0000000")
            .app_secret("profile-secret")
            .api_base("http://127.0.0.1:9")
            .cache_ttl(Duration::from_secs(3600))
            .cache_capacity(match mode.as_str() {
                "miss" => 0,
                "hit1m" => 2_000_000,
                _ => 100_000,
            })
            .build()
            .unwrap();
        let token = wx
            .bench_create_session("o-profile-user", None, Secret::new("a2V5"), ())
            .await
            .unwrap();
        let forged = {
            let mut t = token.clone().into_bytes();
            // Inside the MAC: the last character only carries 2 bits.
            let i = t.len() - 6;
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(t).unwrap()
        };
        let (mut app, token, status): (Router, String, StatusCode) = match mode.as_str() {
            "bare" => (
                Router::new().route(
                    "/",
                    get(|| async move { format!("hello {}", "o-profile-user") }),
                ),
                token,
                StatusCode::OK,
            ),
            "hit" | "hit1k" | "hit1m" | "miss" | "forged" | "unknown" => {
                let app = Router::new()
                    .route(
                        "/",
                        get(|u: WxUser| async move { format!("hello {}", u.openid()) }),
                    )
                    .layer(wx.layer());
                match mode.as_str() {
                    "forged" => (app, forged, StatusCode::UNAUTHORIZED),
                    "unknown" => (app, wx.bench_unknown_token(), StatusCode::UNAUTHORIZED),
                    _ => (app, token, StatusCode::OK),
                }
            }
            other => {
                eprintln!(
                    "hit_path: unknown mode {other}; bare | hit | hit1k | hit1m | forged | unknown | miss"
                );
                std::process::exit(2);
            }
        };
        // Static, as in benches/layer.rs: a clone writes no reference count.
        let bearer = |token: &str| {
            HeaderValue::from_static(Box::leak(format!("Bearer {token}").into_boxed_str()))
        };
        let mut auths = vec![bearer(&token)];
        // As the bench's `st/hit_1k` (1000 sessions, all in rotation) and
        // `st/hit_1m` (a million, every tenth in rotation).
        let (sessions, step) = match mode.as_str() {
            "hit1k" => (1_000, 1),
            "hit1m" => (1_000_000, 10),
            _ => (1, 1),
        };
        for i in 1..sessions {
            let t = wx
                .bench_create_session(&format!("o-profile-{i}"), None, Secret::new("a2V5"), ())
                .await
                .unwrap();
            if i % step == 0 {
                auths.push(bearer(&t));
            }
        }
        // Warm up: the first requests allocate what later ones reuse.
        run(&mut app, &auths, status, 1000.min(n)).await;
        let start = Instant::now();
        run(&mut app, &auths, status, n).await;
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!("{mode}: {ns:.1} ns/request over {n}");
        // Freeing a million sessions would take seconds and land in a profile.
        std::mem::forget(app);
        std::mem::forget(wx);
    });
}
