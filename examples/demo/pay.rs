//! The demo's payment routes (DESIGN.md "Payment"): orders priced from the
//! demo's catalogue, the payer from the session, WeChat Pay (or the crate's
//! fake WeChat Pay when `WXPAY_MCHID` is unset), and the notify route.
//!
//! | variable | meaning |
//! |---|---|
//! | `WXPAY_MCHID` | merchant id; unset: the fake WeChat Pay is started |
//! | `WXPAY_MERCHANT_SERIAL` | serial of the merchant API certificate |
//! | `WXPAY_MERCHANT_KEY` | path of the merchant API private key (PEM) |
//! | `WXPAY_API_V3_KEY` | the 32-character APIv3 key |
//! | `WXPAY_PUBLIC_KEY`, `WXPAY_PUBLIC_KEY_ID` | WeChat Pay public key (path) and id: public-key mode |
//! | `WXPAY_PLATFORM_CERTIFICATES` | `1`: platform-certificate mode (also with the public key: both) |
//! | `WXPAY_API_BASE` | WeChat Pay base URL |
//! | `WXPAY_NOTIFY_URL` | notify URL (default `http://<bind>/wx/pay/notify`) |
//!
//! With the fake, `POST {fake}/_fake/pay` with `{"prepay_id"}` (or
//! `{"package": "prepay_id=…"}`) plays the WeChat client paying: the fake
//! sends the signed, encrypted notification to the notify route.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use wxlogin::pay::fake::FakeWeChatPay;
use wxlogin::pay::{MemoryOrders, Order, OrderStore, WxPay};
use wxlogin::store::RedisStore;
use wxlogin::{ErrorCode, Rejection, WxUser};

use super::env;

/// The demo's catalogue: product id → (description, price in fen).
fn price(product_id: &str) -> Option<(&'static str, i64)> {
    match product_id {
        "p1" => Some(("wxlogin demo p1", 100)),
        "p2" => Some(("wxlogin demo p2", 2500)),
        _ => None,
    }
}

#[derive(Clone)]
pub struct PayState {
    pay: WxPay,
    orders: MemoryOrders,
}

/// What `main` keeps alive: the fake (if any) and its control server.
pub struct Running {
    pub _fake: Option<FakeWeChatPay>,
}

fn read(path_var: &str) -> Result<String, String> {
    let path = env(path_var).ok_or_else(|| format!("{path_var} is required with WXPAY_MCHID"))?;
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path_var} ({path}): {e}"))
}

/// Builds the WeChat Pay client (or starts the fake) and answers the routes
/// to merge (`/api/pay/...` behind the login layer) and the notify service.
pub async fn setup(
    app_id: &str,
    bind: &str,
    redis: Option<RedisStore>,
) -> Result<(Router<()>, wxlogin::pay::NotifyService, Running), String> {
    let notify_url =
        env("WXPAY_NOTIFY_URL").unwrap_or_else(|| format!("http://{bind}/wx/pay/notify"));
    let (pay, fake) = match env("WXPAY_MCHID") {
        Some(mchid) => {
            let mut b = WxPay::builder()
                .mchid(mchid)
                .app_id(app_id)
                .merchant_serial(
                    env("WXPAY_MERCHANT_SERIAL").ok_or("WXPAY_MERCHANT_SERIAL is required")?,
                )
                .merchant_key_pem(read("WXPAY_MERCHANT_KEY")?)
                .api_v3_key(env("WXPAY_API_V3_KEY").ok_or("WXPAY_API_V3_KEY is required")?)
                .notify_url(notify_url);
            if let Some(id) = env("WXPAY_PUBLIC_KEY_ID") {
                b = b.public_key(id, read("WXPAY_PUBLIC_KEY")?);
            }
            if env("WXPAY_PLATFORM_CERTIFICATES").as_deref() == Some("1") {
                b = b.platform_certificates();
                if let Some(store) = redis {
                    // One download per refresh for all the instances.
                    b = b.share_certificates(store, Duration::from_secs(1));
                }
            }
            if let Some(base) = env("WXPAY_API_BASE") {
                b = b.api_base(base);
            }
            tracing::info!("demo: using real WeChat Pay credentials");
            (b.build().map_err(|e| e.to_string())?, None)
        }
        None => {
            let fake = FakeWeChatPay::start("1900000001", app_id)
                .await
                .map_err(|e| format!("cannot start the fake WeChat Pay: {e}"))?;
            let pay = fake
                .configure(WxPay::builder())
                .notify_url(notify_url)
                .build()
                .map_err(|e| e.to_string())?;
            let control = start_control(fake.clone()).await?;
            println!("fake wechat pay on {} (control {control})", fake.base_url());
            tracing::info!(
                fake_wechat_pay = %fake.base_url(),
                "demo: no WXPAY_MCHID, so using the built-in fake WeChat Pay; pay an order with: curl -s -X POST {control}/_fake/pay -d '{{\"prepay_id\":\"…\"}}'"
            );
            (pay, Some(fake))
        }
    };
    let orders = MemoryOrders::new();
    let notify = pay.notify_service(Arc::new(orders.clone()));
    let state = PayState { pay, orders };
    let routes = Router::new()
        .route("/api/pay/orders", post(create_order))
        .route("/api/pay/orders/{out_trade_no}", get(get_order))
        .with_state(state);
    Ok((routes, notify, Running { _fake: fake }))
}

fn bad_request(message: &'static str) -> Rejection {
    Rejection::new(ErrorCode::BadRequest, message)
}

/// `POST /api/pay/orders` with `{"product_id", "quantity"}`: anything else
/// in the body (an `openid`, an `amount`) is ignored.
async fn create_order(
    State(st): State<PayState>,
    user: WxUser<super::DemoUser>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Rejection> {
    let Json(body) =
        body.map_err(|_| bad_request("the body must be JSON {\"product_id\", \"quantity\"}"))?;
    let (description, unit) = body["product_id"]
        .as_str()
        .and_then(price)
        .ok_or_else(|| bad_request("unknown product_id"))?;
    let quantity = body["quantity"]
        .as_i64()
        .filter(|q| (1..=99).contains(q))
        .ok_or_else(|| bad_request("quantity must be an integer 1..=99"))?;
    let order = Order::for_user(&user, description, unit * quantity);
    st.orders
        .create(order.clone())
        .await
        .map_err(|_| Rejection::new(ErrorCode::StoreUnavailable, "order store unavailable"))?;
    let payment = st.pay.checkout(&st.orders, &order).await.map_err(|e| {
        tracing::warn!(error = %e, "demo: checkout failed");
        e.to_rejection()
    })?;
    Ok(Json(
        json!({ "out_trade_no": order.out_trade_no, "payment": payment }),
    ))
}

/// `GET /api/pay/orders/{out_trade_no}`: the session's own orders only.
async fn get_order(
    State(st): State<PayState>,
    user: WxUser<super::DemoUser>,
    Path(no): Path<String>,
) -> Result<Json<Value>, (axum::http::StatusCode, Json<Value>)> {
    match st.orders.get(&no) {
        Some(o) if o.openid == user.openid() => Ok(Json(json!({
            "out_trade_no": o.out_trade_no,
            "state": o.state.as_str(),
            "total": o.total,
        }))),
        _ => Err(super::error(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such order",
            false,
        )),
    }
}

/// A small control server for the fake: `POST /_fake/pay` pays a prepay id
/// (what the WeChat client does once the user confirms).
async fn start_control(fake: FakeWeChatPay) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start the fake's control server: {e}"))?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let app = Router::new().route(
        "/_fake/pay",
        post(move |body: String| {
            let fake = fake.clone();
            async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let id = v["prepay_id"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| {
                        v["package"]
                            .as_str()
                            .and_then(|p| p.strip_prefix("prepay_id="))
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                match fake.pay_prepay_id(&id).await {
                    Ok(status) => (
                        axum::http::StatusCode::OK,
                        Json(json!({"notify_status": status})),
                    ),
                    Err(e) => (axum::http::StatusCode::NOT_FOUND, Json(json!({"error": e}))),
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}
