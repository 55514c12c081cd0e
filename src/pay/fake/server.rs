//! The fake's HTTP side: merchant signature checks, the APIv3 routes, and
//! signed replies.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{FakeOrder, FakePayFailure, FakeRequest, Shared, Signer};
use crate::pay::aead;
use crate::pay::orders::valid_out_trade_no;
use crate::pay::sign::{self, reply_message, request_message, SCHEME};

/// The answer before signing: status and body (empty for 204).
struct Answer {
    status: u16,
    body: Vec<u8>,
}

fn json_answer(status: u16, v: Value) -> Answer {
    Answer {
        status,
        body: serde_json::to_vec(&v).expect("json"),
    }
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    json_answer(status, json!({"code": code, "message": message}))
}

/// How the answer is signed.
enum Signing {
    Normal,
    Bad,
    UnknownSerial,
    None,
}

pub(super) async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let wechatpay_serial = header("wechatpay-serial");
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let route = format!("{method} {}", path.split('?').next().unwrap_or(""));
    let failure = {
        let mut st = shared.lock();
        st.requests.push(FakeRequest {
            method: method.clone(),
            path: path.clone(),
            authorization: authorization.clone(),
            wechatpay_serial: wechatpay_serial.clone(),
            body: body.clone(),
        });
        *st.calls.entry(route.clone()).or_default() += 1;
        st.failures.pop_front()
    };
    let mut signing = Signing::Normal;
    let answer = match failure {
        Some(FakePayFailure::Status(status, code)) => error(status, &code, "scripted failure"),
        other => {
            match other {
                Some(FakePayFailure::Delay(d)) => tokio::time::sleep(d).await,
                Some(FakePayFailure::BadSignature) => signing = Signing::Bad,
                Some(FakePayFailure::UnknownSerial) => signing = Signing::UnknownSerial,
                Some(FakePayFailure::Unsigned) => signing = Signing::None,
                _ => {}
            }
            match check_authorization(shared, &method, &path, authorization.as_deref(), &body) {
                Err(why) => error(401, "SIGN_ERROR", why),
                Ok(()) => route_request(shared, &method, &path, &body),
            }
        }
    };
    let signer: &Signer = match wechatpay_serial.as_deref() {
        Some(id) if id == shared.public_key_signer.serial => &shared.public_key_signer,
        _ => shared.platform_signer(),
    };
    respond(signer, answer, signing)
}

fn respond(signer: &Signer, answer: Answer, signing: Signing) -> Response<Full<Bytes>> {
    let timestamp = crate::clock::now_secs().to_string();
    let nonce = sign::nonce();
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("request-id", format!("fake-{nonce}"));
    if !answer.body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    let (serial, signature) = match signing {
        Signing::None => (None, None),
        Signing::Normal => (
            Some(signer.serial.to_owned()),
            Some(
                signer
                    .key
                    .sign(&reply_message(&timestamp, &nonce, &answer.body)),
            ),
        ),
        Signing::Bad => (
            Some(signer.serial.to_owned()),
            Some(
                signer
                    .key
                    .sign(&reply_message(&timestamp, &nonce, b"something else")),
            ),
        ),
        Signing::UnknownSerial => (
            Some("0123456789ABCDEF0123456789ABCDEF01234567".to_owned()),
            Some(
                signer
                    .key
                    .sign(&reply_message(&timestamp, &nonce, &answer.body)),
            ),
        ),
    };
    if let (Some(serial), Some(signature)) = (serial, signature) {
        builder = builder
            .header("wechatpay-timestamp", timestamp)
            .header("wechatpay-nonce", nonce)
            .header("wechatpay-serial", serial)
            .header("wechatpay-signature", signature)
            .header("wechatpay-signature-type", SCHEME);
    }
    builder
        .body(Full::new(Bytes::from(answer.body)))
        .expect("valid response parts")
}

/// Parses `WECHATPAY2-SHA256-RSA2048 k="v",...` and verifies it like WeChat Pay.
fn check_authorization(
    shared: &Shared,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<(), &'static str> {
    let auth = authorization.ok_or("no Authorization header")?;
    let params = auth
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or("unknown Authorization scheme")?;
    let mut fields = std::collections::HashMap::new();
    for item in params.split(',') {
        let (k, v) = item.split_once('=').ok_or("malformed Authorization")?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or("Authorization value not quoted")?;
        if fields.insert(k.trim(), v).is_some() {
            return Err("repeated Authorization field");
        }
    }
    let get = |k: &str| fields.get(k).copied().ok_or("missing Authorization field");
    if get("mchid")? != shared.mchid {
        return Err("mchid does not match");
    }
    if get("serial_no")? != super::TEST_MERCHANT_SERIAL {
        return Err("unknown merchant serial_no");
    }
    let ts: u64 = get("timestamp")?.parse().map_err(|_| "bad timestamp")?;
    if ts.abs_diff(crate::clock::now_secs()) > crate::pay::verify::TIMESTAMP_WINDOW_SECS {
        return Err("timestamp expired");
    }
    let nonce = get("nonce_str")?;
    let message = request_message(method, path, ts, nonce, body);
    if shared.merchant_key.verify(&message, get("signature")?) {
        Ok(())
    } else {
        Err("signature does not verify")
    }
}

fn route_request(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Answer {
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    let segments: Vec<&str> = path_only.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["v3", "pay", "transactions", "jsapi"]) => prepay(shared, body),
        ("GET", ["v3", "pay", "transactions", "out-trade-no", no]) => {
            if query != format!("mchid={}", shared.mchid) {
                return error(400, "PARAM_ERROR", "mchid query parameter missing or wrong");
            }
            query_order(shared, &decode(no))
        }
        ("POST", ["v3", "pay", "transactions", "out-trade-no", no, "close"]) => {
            close(shared, &decode(no), body)
        }
        ("POST", ["v3", "refund", "domestic", "refunds"]) => refund(shared, body),
        ("GET", ["v3", "refund", "domestic", "refunds", no]) => {
            let st = shared.lock();
            match st.refunds.get(&decode(no)) {
                Some((trade, _, _, status)) => json_answer(
                    200,
                    json!({"refund_id": format!("50{}", decode(no)), "out_refund_no": decode(no), "out_trade_no": trade, "status": status}),
                ),
                None => error(404, "RESOURCE_NOT_EXISTS", "退款单不存在"),
            }
        }
        ("GET", ["v3", "certificates"]) => certificates(shared),
        _ => error(404, "NOT_FOUND", "no such API in the fake"),
    }
}

fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The string at a JSON pointer of a request body; empty when absent (the
/// checks that follow refuse it).
fn text_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// The integer at a JSON pointer of a request body; 0 when absent.
fn number_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn prepay(shared: &Shared, body: &[u8]) -> Answer {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(400, "PARAM_ERROR", "body is not JSON");
    };
    let (appid, mchid, out_trade_no, description, notify_url) = (
        text_at(&v, "/appid"),
        text_at(&v, "/mchid"),
        text_at(&v, "/out_trade_no"),
        text_at(&v, "/description"),
        text_at(&v, "/notify_url"),
    );
    let total = number_at(&v, "/amount/total");
    let openid = text_at(&v, "/payer/openid");
    if mchid != shared.mchid {
        return error(400, "MCH_NOT_EXISTS", "商户号不存在");
    }
    if appid != shared.app_id {
        return error(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配");
    }
    if !valid_out_trade_no(&out_trade_no)
        || description.is_empty()
        || notify_url.is_empty()
        || total <= 0
        || openid.is_empty()
    {
        return error(400, "PARAM_ERROR", "参数错误");
    }
    let mut st = shared.lock();
    if let Some(existing) = st.orders.get(&out_trade_no) {
        if existing.total != total
            || existing.description != description
            || existing.openid != openid
        {
            return error(403, "OUT_TRADE_NO_USED", "商户订单号重复");
        }
        if existing.trade_state != "NOTPAY" {
            return error(400, "ORDER_CLOSED", "订单已关闭");
        }
        return json_answer(200, json!({"prepay_id": existing.prepay_id}));
    }
    let id = st.next_id;
    st.next_id += 1;
    let prepay_id = format!("wx{}{:010}", crate::clock::now_secs(), id);
    st.orders.insert(
        out_trade_no.clone(),
        FakeOrder {
            out_trade_no,
            prepay_id: prepay_id.clone(),
            openid,
            total,
            description,
            notify_url,
            trade_state: "NOTPAY".into(),
            transaction_id: None,
        },
    );
    json_answer(200, json!({"prepay_id": prepay_id}))
}

pub(crate) fn transaction_json(shared: &Shared, o: &FakeOrder) -> Value {
    let mut v = json!({
        "appid": shared.app_id,
        "mchid": shared.mchid,
        "out_trade_no": o.out_trade_no,
        "trade_type": "JSAPI",
        "trade_state": o.trade_state,
        "trade_state_desc": if o.trade_state == "SUCCESS" { "支付成功" } else { "订单未支付" },
        "payer": {"openid": o.openid},
    });
    if let Some(tx) = &o.transaction_id {
        v["transaction_id"] = json!(tx);
        v["bank_type"] = json!("OTHERS");
        v["success_time"] = json!("2026-12-02T18:00:00+08:00");
        v["amount"] = json!({"total": o.total, "payer_total": o.total, "currency": "CNY", "payer_currency": "CNY"});
    }
    v
}

fn query_order(shared: &Shared, no: &str) -> Answer {
    let st = shared.lock();
    match st.orders.get(no) {
        Some(o) => json_answer(200, transaction_json(shared, o)),
        None => error(404, "ORDER_NOT_EXIST", "订单不存在"),
    }
}

fn close(shared: &Shared, no: &str, body: &[u8]) -> Answer {
    let mchid_ok = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("mchid")
                .and_then(Value::as_str)
                .map(|m| m == shared.mchid)
        })
        .unwrap_or(false);
    if !mchid_ok {
        return error(400, "PARAM_ERROR", "mchid missing or wrong");
    }
    let mut st = shared.lock();
    match st.orders.get_mut(no) {
        None => error(404, "ORDER_NOT_EXIST", "订单不存在"),
        Some(o) if o.trade_state == "SUCCESS" || o.trade_state == "REFUND" => {
            error(400, "ORDER_PAID", "订单已支付")
        }
        Some(o) => {
            o.trade_state = "CLOSED".into();
            Answer {
                status: 204,
                body: Vec::new(),
            }
        }
    }
}

fn refund(shared: &Shared, body: &[u8]) -> Answer {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(400, "PARAM_ERROR", "body is not JSON");
    };
    let no = text_at(&v, "/out_trade_no");
    let refund_no = text_at(&v, "/out_refund_no");
    let amount = number_at(&v, "/amount/refund");
    let total = number_at(&v, "/amount/total");
    let notify_url = v
        .get("notify_url")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut st = shared.lock();
    let Some(order) = st.orders.get(&no) else {
        return error(404, "RESOURCE_NOT_EXISTS", "订单不存在");
    };
    if order.trade_state != "SUCCESS" {
        return error(403, "NOT_ENOUGH", "订单未支付");
    }
    if total != order.total || amount <= 0 || amount > total || refund_no.is_empty() {
        return error(400, "PARAM_ERROR", "金额错误");
    }
    st.refunds.insert(
        refund_no.clone(),
        (no.clone(), amount, notify_url, "PROCESSING".into()),
    );
    json_answer(
        200,
        json!({"refund_id": format!("50{refund_no}"), "out_refund_no": refund_no, "out_trade_no": no, "status": "PROCESSING"}),
    )
}

fn certificates(shared: &Shared) -> Answer {
    if shared.lock().no_certificates {
        return error(
            404,
            "RESOURCE_NOT_EXISTS",
            "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥",
        );
    }
    let rotated = shared.lock().rotated;
    let mut data = vec![cert_entry(
        shared,
        super::keys::PLATFORM1_SERIAL,
        super::keys::PLATFORM1_CERT_PEM,
    )];
    if rotated {
        data.push(cert_entry(
            shared,
            super::keys::PLATFORM2_SERIAL,
            super::keys::PLATFORM2_CERT_PEM,
        ));
    }
    json_answer(200, json!({"data": data}))
}

fn cert_entry(shared: &Shared, serial: &str, pem: &str) -> Value {
    let nonce = &sign::nonce()[..12];
    let ciphertext = aead::encrypt(&shared.api_v3_key, nonce, "certificate", pem.as_bytes())
        .expect("12-byte nonce");
    json!({
        "serial_no": serial,
        "effective_time": "2026-01-01T00:00:00+08:00",
        "expire_time": "2126-01-01T00:00:00+08:00",
        "encrypt_certificate": {
            "algorithm": "AEAD_AES_256_GCM",
            "nonce": nonce,
            "associated_data": "certificate",
            "ciphertext": ciphertext,
        }
    })
}
