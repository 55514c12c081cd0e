//! tower-http's `CorsLayer` with the wxlogin layer, for H5 builds (a browser
//! calling the API from another origin), over real HTTP: with CORS outermost
//! the preflight is answered before the wxlogin layer sees it, and the 401
//! that asks for a new login carries the CORS headers, so the page can read
//! it. With the order reversed the preflight is refused (docs/guide.md,
//! "CORS for H5 builds").

mod common;

use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::{Json, Router};
use common::{app, builder, fake_wechat, login, serve};
use serde_json::{json, Value};
use tower_http::cors::{AllowOrigin, CorsLayer};
use wxlogin::{WxLogin, WxUser};

const ORIGIN: &str = "https://h5.example.com";

async fn me(user: WxUser) -> Json<Value> {
    Json(json!({ "openid": user.openid() }))
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list([HeaderValue::from_static(ORIGIN)]))
        .allow_methods([Method::GET, Method::POST])
        // The token header (or the custom one given to .token_header) and JSON bodies.
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        // So the page can read why it was refused and how long to wait.
        .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER])
}

fn wx(fake: &wxlogin::mock::FakeWeChat) -> WxLogin {
    builder(fake).build().unwrap()
}

/// The order docs/guide.md shows: CORS added last, so it runs first.
fn with_cors(wx: &WxLogin) -> Router {
    app(wx).layer(cors())
}

fn preflight(client: &reqwest::Client, url: String) -> reqwest::RequestBuilder {
    client
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
}

fn header_of(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
}

#[tokio::test]
async fn preflight_is_answered_before_the_wxlogin_layer() {
    let fake = fake_wechat().await;
    let base = serve(with_cors(&wx(&fake))).await;
    let client = reqwest::Client::new();

    for path in ["/api/me", "/wx/login", "/wx/logout"] {
        let res = preflight(&client, format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "preflight of {path}");
        assert_eq!(
            header_of(&res, "access-control-allow-origin").as_deref(),
            Some(ORIGIN)
        );
        let allowed = header_of(&res, "access-control-allow-headers").unwrap();
        assert!(allowed.contains("authorization"), "{allowed}");
        let methods = header_of(&res, "access-control-allow-methods").unwrap();
        assert!(
            methods.contains("get") && methods.contains("post"),
            "{methods}"
        );
        assert!(res.text().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn cross_origin_login_requests_and_the_relogin_401_carry_cors_headers() {
    let fake = fake_wechat().await;
    let base = serve(with_cors(&wx(&fake))).await;
    let client = reqwest::Client::new();

    // No token: the 401 the page must read to log in again is readable cross-origin.
    let res = client
        .get(format!("{base}/api/me"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        header_of(&res, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    let exposed = header_of(&res, "access-control-expose-headers").unwrap();
    assert!(exposed.contains("www-authenticate"), "{exposed}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "missing_token");
    assert_eq!(body["relogin"], true);

    // Login and an authenticated request across origins.
    let token = login(&client, &base, &fake, "o-h5-user").await;
    let res = client
        .get(format!("{base}/api/me"))
        .header("origin", ORIGIN)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        header_of(&res, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert_eq!(res.json::<Value>().await.unwrap()["openid"], "o-h5-user");

    // Another origin gets no allow-origin header (the browser hides the answer).
    let res = client
        .get(format!("{base}/api/me"))
        .header("origin", "https://evil.example")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header_of(&res, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn cors_inside_the_wxlogin_layer_refuses_the_preflight() {
    let fake = fake_wechat().await;
    let wx = wx(&fake);
    // The wrong order: the wxlogin layer added last runs first and wants a
    // token on the preflight, which a browser never sends.
    let wrong = Router::new()
        .route("/api/me", get(me))
        .layer(cors())
        .layer(wx.layer());
    let base = serve(wrong).await;
    let res = preflight(&reqwest::Client::new(), format!("{base}/api/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header_of(&res, "access-control-allow-origin"), None);
}
