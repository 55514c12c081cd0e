//! The checkout and the fail-closed notify route over real HTTP: a server
//! with the login layer, an order route (openid from the session), and the
//! notify route; the fake WeChat Pay pays, or sends tampered notifications.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use wxlogin::mock::FakeWeChat;
use wxlogin::pay::fake::{FakeNotification, FakeWeChatPay};
use wxlogin::pay::{
    MarkPaid, MemoryOrders, Order, OrderError, OrderFuture, OrderState, OrderStore, WxPay,
};
use wxlogin::{Rejection, WxLogin, WxUser};

const MCHID: &str = "1900000001";
const APPID: &str = "wxdemo0000000000";

/// Orders that can be told to fail, to check that a failed hook is never a 2xx.
#[derive(Clone, Default)]
struct FlakyOrders {
    inner: MemoryOrders,
    down: Arc<AtomicBool>,
}

impl OrderStore for FlakyOrders {
    fn create(&self, order: Order) -> OrderFuture<'_, ()> {
        self.inner.create(order)
    }
    fn find<'a>(&'a self, no: &'a str) -> OrderFuture<'a, Option<Order>> {
        self.inner.find(no)
    }
    fn set_prepay<'a>(&'a self, no: &'a str, id: &'a str, at: SystemTime) -> OrderFuture<'a, ()> {
        self.inner.set_prepay(no, id, at)
    }
    fn mark_paid<'a>(&'a self, no: &'a str, tx: &'a str) -> OrderFuture<'a, MarkPaid> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err(OrderError("database down".into())) });
        }
        self.inner.mark_paid(no, tx)
    }
    fn mark_refunded<'a>(&'a self, no: &'a str) -> OrderFuture<'a, ()> {
        self.inner.mark_refunded(no)
    }
}

struct App {
    base: String,
    wechat: FakeWeChat,
    wxpay: FakeWeChatPay,
    pay: WxPay,
    orders: FlakyOrders,
    http: reqwest::Client,
}

#[derive(Clone)]
struct AppState {
    pay: WxPay,
    orders: FlakyOrders,
}

async fn create_order(
    State(st): State<AppState>,
    user: WxUser,
    Json(body): Json<Value>,
) -> Result<Json<Value>, Rejection> {
    // The body may say anything about openid or amount: only these count.
    let qty = body["quantity"].as_i64().unwrap_or(1);
    let order = Order::for_user(&user, "p1", 100 * qty);
    st.orders.create(order.clone()).await.unwrap();
    let args = st
        .pay
        .checkout(&st.orders, &order)
        .await
        .map_err(|e| e.to_rejection())?;
    Ok(Json(
        json!({"out_trade_no": order.out_trade_no, "payment": args}),
    ))
}

async fn checkout_again(
    State(st): State<AppState>,
    _user: WxUser,
    Json(body): Json<Value>,
) -> Result<Json<Value>, Rejection> {
    let order = st
        .orders
        .inner
        .get(body["out_trade_no"].as_str().unwrap())
        .unwrap();
    let args = st
        .pay
        .checkout(&st.orders, &order)
        .await
        .map_err(|e| e.to_rejection())?;
    Ok(Json(json!({"payment": args})))
}

async fn app() -> App {
    let wechat = FakeWeChat::start(APPID, "secret").await.unwrap();
    let wx = WxLogin::builder()
        .app_id(APPID)
        .app_secret("secret")
        .api_base(wechat.base_url())
        .build()
        .unwrap();
    let wxpay = FakeWeChatPay::start(MCHID, APPID).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let pay = wxpay
        .configure(WxPay::builder())
        .notify_url(format!("{base}/wx/pay/notify"))
        .build()
        .unwrap();
    let orders = FlakyOrders::default();
    let state = AppState {
        pay: pay.clone(),
        orders: orders.clone(),
    };
    let router = Router::new()
        .route("/api/pay/orders", post(create_order))
        .route("/api/pay/checkout", post(checkout_again))
        .with_state(state)
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service())
        .route_service(
            "/wx/pay/notify",
            pay.notify_service(Arc::new(orders.clone())),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    App {
        base,
        wechat,
        wxpay,
        pay,
        orders,
        http: reqwest::Client::new(),
    }
}

impl App {
    async fn login(&self, openid: &str) -> String {
        let code = self.wechat.mint_code(openid);
        let res: Value = self
            .http
            .post(format!("{}/wx/login", self.base))
            .body(format!(r#"{{"code":"{code}"}}"#))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        res["token"].as_str().unwrap().to_owned()
    }

    /// Logs in and creates an order; answers its number and the reply.
    async fn order(&self, openid: &str) -> (String, Value) {
        let token = self.login(openid).await;
        let res = self
            .http
            .post(format!("{}/api/pay/orders", self.base))
            .bearer_auth(&token)
            .json(&json!({"product_id": "p1", "quantity": 2, "openid": "o-mallory", "amount": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        (v["out_trade_no"].as_str().unwrap().to_owned(), v)
    }

    fn state(&self, no: &str) -> OrderState {
        self.orders.inner.get(no).unwrap().state
    }
}

async fn refused(n: &FakeNotification) -> (u16, Value) {
    let (status, body) = n.send().await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert!(status >= 400, "{status} {body}");
    assert_eq!(v["code"], "FAIL", "{body}");
    assert!(v["message"].is_string());
    (status, v)
}

#[tokio::test]
async fn the_session_pays_and_the_notification_marks_the_order_once() {
    let app = app().await;
    let (no, reply) = app.order("o-alice").await;
    assert!((6..=32).contains(&no.len()));
    // The payer and the amount are the server's, not the body's.
    let fake_order = app.wxpay.order(&no).unwrap();
    assert_eq!(
        (fake_order.openid.as_str(), fake_order.total),
        ("o-alice", 200)
    );
    let payment = &reply["payment"];
    assert_eq!(
        payment["package"],
        format!("prepay_id={}", fake_order.prepay_id)
    );
    assert_eq!(payment["signType"], "RSA");
    assert!(payment["timeStamp"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert_eq!(payment["nonceStr"].as_str().unwrap().len(), 32);
    assert!(payment["paySign"].as_str().unwrap().len() > 300);

    assert_eq!(app.state(&no), OrderState::Notpay);
    let n = app.wxpay.payment_notification(&no).unwrap();
    let (status, _) = n.send().await.unwrap();
    assert!((200..300).contains(&status), "{status}");
    let paid = app.orders.inner.get(&no).unwrap();
    assert_eq!(paid.state, OrderState::Success);
    // The same notification again: 2xx, nothing changes.
    let (status, _) = n.send().await.unwrap();
    assert!((200..300).contains(&status));
    assert_eq!(app.orders.inner.get(&no).unwrap(), paid);
    // And through the fake's own pay.
    let (no2, _) = app.order("o-bob").await;
    assert_eq!(app.wxpay.pay(&no2).await.unwrap(), 204);
    assert_eq!(app.state(&no2), OrderState::Success);
}

#[tokio::test]
async fn a_stored_prepay_id_is_reused() {
    let app = app().await;
    let (no, first) = app.order("o-alice").await;
    let token = app.login("o-alice").await;
    let again: Value = app
        .http
        .post(format!("{}/api/pay/checkout", app.base))
        .bearer_auth(&token)
        .json(&json!({"out_trade_no": no}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["payment"]["package"], first["payment"]["package"]);
    assert_eq!(
        app.wxpay.calls("POST /v3/pay/transactions/jsapi"),
        1,
        "no second prepay"
    );
    let _ = &app.pay;
}

#[tokio::test]
async fn headers_are_required_once_each() {
    let app = app().await;
    let (no, _) = app.order("o-alice").await;
    for h in [
        "Wechatpay-Timestamp",
        "Wechatpay-Nonce",
        "Wechatpay-Signature",
        "Wechatpay-Serial",
    ] {
        let mut n = app.wxpay.payment_notification(&no).unwrap();
        n.remove_header(h);
        assert_eq!(refused(&n).await.0, 400, "{h}");
        let mut n = app.wxpay.payment_notification(&no).unwrap();
        let v = n.header(h).unwrap().to_owned();
        n.headers.push((h.to_owned(), v));
        assert_eq!(refused(&n).await.0, 400, "repeated {h}");
    }
    let mut n = app.wxpay.payment_notification(&no).unwrap();
    n.set_header("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA4096");
    refused(&n).await;
    assert_eq!(app.state(&no), OrderState::Notpay);
}

#[tokio::test]
async fn stale_unknown_forged_and_probe_notifications_change_nothing() {
    let app = app().await;
    let (no, _) = app.order("o-alice").await;
    let good = app.wxpay.payment_notification(&no).unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Signed correctly, but 6 minutes old / 6 minutes ahead.
    for ts in [now - 360, now + 360] {
        let stale = app
            .wxpay
            .sign_notification(&good.url, good.body.clone(), ts);
        assert_eq!(refused(&stale).await.0, 401);
    }
    // Just inside the window is fine — checked last, below.
    let mut n = good.clone();
    n.set_header(
        "Wechatpay-Serial",
        "PUB_KEY_ID_0114232134912410000000000000009999",
    );
    refused(&n).await;
    let mut n = good.clone();
    n.set_header("Wechatpay-Timestamp", (now + 1).to_string());
    refused(&n).await;
    let mut n = good.clone();
    n.body.push(b' ');
    refused(&n).await;
    let probe = app.wxpay.probe_notification(&good.url);
    assert!(probe
        .header("Wechatpay-Signature")
        .unwrap()
        .starts_with("WECHATPAY/SIGNTEST/"));
    assert_eq!(refused(&probe).await.0, 401);
    assert_eq!(app.state(&no), OrderState::Notpay);
    let inside = app
        .wxpay
        .sign_notification(&good.url, good.body.clone(), now - 240);
    assert_eq!(inside.send().await.unwrap().0, 204);
    assert_eq!(app.state(&no), OrderState::Success);
}

#[tokio::test]
async fn the_body_is_limited_and_checked_after_verification() {
    let app = app().await;
    let (no, _) = app.order("o-alice").await;
    let url = app.wxpay.payment_notification(&no).unwrap().url;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let big = app
        .wxpay
        .sign_notification(&url, vec![b' '; 70 * 1024], now);
    assert_eq!(refused(&big).await.0, 413);
    // Signed, but not a notification / a wrong algorithm / a broken tag.
    let junk = app
        .wxpay
        .sign_notification(&url, b"{\"id\":1}".to_vec(), now);
    assert_eq!(refused(&junk).await.0, 400);
    let good = app.wxpay.payment_notification(&no).unwrap();
    let mut v: Value = serde_json::from_slice(&good.body).unwrap();
    v["resource"]["algorithm"] = json!("AEAD_AES_128_GCM");
    let n = app
        .wxpay
        .sign_notification(&url, serde_json::to_vec(&v).unwrap(), now);
    assert_eq!(refused(&n).await.0, 400);
    let mut v: Value = serde_json::from_slice(&good.body).unwrap();
    let ct = v["resource"]["ciphertext"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if ct.starts_with('A') { "B" } else { "A" },
        &ct[1..]
    );
    v["resource"]["ciphertext"] = json!(flipped);
    let n = app
        .wxpay
        .sign_notification(&url, serde_json::to_vec(&v).unwrap(), now);
    assert_eq!(refused(&n).await.0, 400);
    assert_eq!(app.state(&no), OrderState::Notpay);
}

/// A change to a notification's plaintext.
type Edit = Box<dyn FnOnce(&mut Value)>;

#[tokio::test]
async fn the_payload_is_cross_checked_against_the_order() {
    let app = app().await;
    let (no, _) = app.order("o-alice").await;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "amount",
            Box::new(|v: &mut Value| v["amount"]["total"] = json!(1)),
        ),
        (
            "mchid",
            Box::new(|v: &mut Value| v["mchid"] = json!("1900000002")),
        ),
        (
            "appid",
            Box::new(|v: &mut Value| v["appid"] = json!("wxother")),
        ),
        (
            "payer",
            Box::new(|v: &mut Value| v["payer"]["openid"] = json!("o-mallory")),
        ),
        (
            "out_trade_no",
            Box::new(|v: &mut Value| v["out_trade_no"] = json!("WX00000000unknown")),
        ),
    ];
    for (what, edit) in edits {
        let n = app.wxpay.payment_notification_with(&no, edit).unwrap();
        let (status, _) = refused(&n).await;
        assert!(status == 400 || status == 404, "{what}: {status}");
        assert_eq!(app.state(&no), OrderState::Notpay, "{what}");
    }
}

#[tokio::test]
async fn a_failing_order_store_is_never_acknowledged() {
    let app = app().await;
    let (no, _) = app.order("o-alice").await;
    app.orders.down.store(true, Ordering::SeqCst);
    let n = app.wxpay.payment_notification(&no).unwrap();
    assert_eq!(refused(&n).await.0, 500);
    app.orders.down.store(false, Ordering::SeqCst);
    // WeChat Pay's retry then succeeds.
    assert_eq!(n.send().await.unwrap().0, 204);
    assert_eq!(app.state(&no), OrderState::Success);
}

#[tokio::test]
async fn a_refund_notification_marks_the_order_refunded() {
    let app = app().await;
    let (no, _) = app.order("o-alice").await;
    assert_eq!(app.wxpay.pay(&no).await.unwrap(), 204);
    let refund = app
        .pay
        .refund(&wxlogin::pay::RefundRequest {
            out_trade_no: no.clone(),
            out_refund_no: format!("R{}", &no[1..]),
            refund: 200,
            total: 200,
            reason: None,
            notify_url: None,
        })
        .await
        .unwrap();
    assert_eq!(
        app.wxpay
            .complete_refund(&refund.out_refund_no)
            .await
            .unwrap(),
        204
    );
    assert_eq!(app.state(&no), OrderState::Refund);
}

#[tokio::test]
async fn certificate_signed_notifications_verify_in_both_modes() {
    let app = app().await;
    let (no, _) = app.order("o-alice").await;
    // Public-key mode only: a certificate-signed notification has an unknown serial.
    app.wxpay.sign_notifications_with_certificate(true);
    let n = app.wxpay.payment_notification(&no).unwrap();
    assert_eq!(refused(&n).await.0, 401);
    // Both modes (the 7-day migration): it verifies.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let both = app
        .wxpay
        .configure(WxPay::builder())
        .platform_certificates()
        .notify_url(url.clone())
        .build()
        .unwrap();
    let svc = both.notify_service(Arc::new(app.orders.clone()));
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route_service("/notify", svc))
            .await
            .unwrap()
    });
    let mut n = app.wxpay.payment_notification(&no).unwrap();
    n.url = url.clone();
    assert_eq!(n.send().await.unwrap().0, 204);
    assert_eq!(app.state(&no), OrderState::Success);
}

#[tokio::test]
async fn the_notify_service_runs_under_plain_hyper() {
    let app = app().await;
    let (no, _) = app.order("o-alice").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let svc = app.pay.notify_service(Arc::new(app.orders.clone()));
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc =
            hyper::service::service_fn(move |req| tower::ServiceExt::oneshot(svc.clone(), req));
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
            .await
            .unwrap();
    });
    let mut n = app.wxpay.payment_notification(&no).unwrap();
    n.url = url;
    assert_eq!(n.send().await.unwrap().0, 204);
    assert_eq!(app.state(&no), OrderState::Success);
}
