//! The demo's routes on plain hyper 1, without axum: `cargo run --example hyper`.
//!
//! The layer is an ordinary tower `Layer`, so it wraps a tower `service_fn`;
//! the login and logout routes are tower services too, called straight from
//! hyper's connection service. The handler for `/api/me` reads the user with
//! the same extractor axum would use, `FromRequestParts`, called by hand.
//!
//! With no configuration it runs against the crate's fake WeChat on loopback.
//! Environment (all optional): `WXLOGIN_BIND` (default `127.0.0.1:3001`),
//! `WXLOGIN_TOKEN_KEY` (token MAC key), `WXLOGIN_SESSION_TTL` (seconds).
//!
//! Routes: `POST /wx/login`, `POST /wx/logout`, `GET /api/me`.
//!
//! Each request carries its connection's peer address (`SocketAddr`) in its
//! extensions: the client key of the login route's per-client limits.
//!
//! ```text
//! $ cargo run --example hyper
//! fake wechat on http://127.0.0.1:41234
//! listening on http://127.0.0.1:3001
//! $ code=$(curl -s -X POST http://127.0.0.1:41234/_fake/wx.login -d '{"openid":"alice"}' | jq -r .code)
//! $ token=$(curl -s -X POST localhost:3001/wx/login -d "{\"code\":\"$code\"}" | jq -r .token)
//! $ curl -s localhost:3001/api/me -H "Authorization: Bearer $token"
//! {"openid":"alice","unionid":null}
//! ```

use std::convert::Infallible;
use std::time::Duration;

use axum_core::extract::FromRequestParts;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tower::{Layer, ServiceExt};
use wxlogin::mock::FakeWeChat;
use wxlogin::{WxLogin, WxUser};

const APP_ID: &str = "wxdemo0000000000";
const APP_SECRET: &str = "demo-secret";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn fail(msg: &str) -> ! {
    eprintln!("hyper example: {msg}");
    std::process::exit(2)
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `GET /api/me`, behind the layer: the extractor reads what the layer put in
/// the request extensions.
async fn me(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "method_not_allowed"}),
        ));
    }
    let (mut parts, _body) = req.into_parts();
    let user = match <WxUser as FromRequestParts<()>>::from_request_parts(&mut parts, &()).await {
        Ok(user) => user,
        // Only reachable when the layer is missing: the layer answers bad tokens itself.
        Err(rejection) => return Ok(rejection.to_response().map(Full::new)),
    };
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "openid": user.openid(),
            "unionid": user.unionid(),
        }),
    ))
}

#[tokio::main]
async fn main() {
    // Logs go to stderr; stdout carries only the two address lines.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // Kept alive for the whole run: dropping it stops the fake.
    let fake = FakeWeChat::start(APP_ID, APP_SECRET)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot start the fake WeChat: {e}")));
    println!("fake wechat on {}", fake.base_url());

    let mut builder = WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(APP_SECRET)
        .api_base(fake.base_url());
    if let Some(key) = env("WXLOGIN_TOKEN_KEY") {
        builder = builder.token_key(key);
    }
    if let Some(ttl) = env("WXLOGIN_SESSION_TTL") {
        let secs: u64 = ttl
            .parse()
            .unwrap_or_else(|_| fail("WXLOGIN_SESSION_TTL must be a number of seconds"));
        builder = builder.session_ttl(Duration::from_secs(secs));
    }
    let wx = builder.build().unwrap_or_else(|e| fail(&e.to_string()));

    // Three tower services; each is cloned per request (the clones are cheap).
    let login = wx.login_service();
    let logout = wx.logout_service();
    let api_me = wx.layer().layer(tower::service_fn(me));

    let bind = env("WXLOGIN_BIND").unwrap_or_else(|| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {bind}: {e}")));
    let addr = listener.local_addr().expect("bound address");
    println!("listening on http://{addr}");
    tracing::info!("hyper example: routes POST /wx/login, POST /wx/logout, GET /api/me");

    let router = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (login, logout, api_me) = (login.clone(), logout.clone(), api_me.clone());
        async move {
            match req.uri().path() {
                "/wx/login" => login.oneshot(req).await,
                "/wx/logout" => logout.oneshot(req).await,
                "/api/me" => api_me.oneshot(req).await,
                _ => Ok(json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "not_found"}),
                )),
            }
        }
    });

    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "hyper example: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        // The peer address in each request's extensions: the client key of
        // the per-client login limits (without it only the global ones apply).
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(peer);
            hyper::service::Service::call(&router, req)
        });
        tokio::spawn(async move {
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "hyper example: connection ended with an error");
            }
        });
    }
    drop(fake);
}
