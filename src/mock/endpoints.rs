//! The fake's endpoints, answering as WeChat does (and the `/_fake/` ones
//! that play the mini program).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::server::{Reply, ResetConnection};
use super::state::{hex, Shared};
use super::*;
use crate::clock::now_secs;
use crate::random::random_bytes;

pub(super) async fn jscode2session(shared: &Shared, query: &str) -> Reply {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    let (queued, latency) = {
        let mut state = shared.state();
        (state.replies.pop_front(), state.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(match queued {
        None => exchange(shared, query),
        Some(FakeReply::Errcode(errcode)) => wechat_error(errcode, false),
        Some(FakeReply::ErrcodeAsString(errcode)) => wechat_error(errcode, true),
        Some(FakeReply::Status(status, body)) => respond(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "text/plain",
            body,
        ),
        Some(FakeReply::Body(body)) => respond(StatusCode::OK, "text/plain", body),
        Some(FakeReply::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            exchange(shared, query)
        }
        Some(FakeReply::Reset) => return Err(ResetConnection),
    })
}

/// The normal behaviour of `jscode2session`.
pub(super) fn exchange(shared: &Shared, query: &str) -> Response<Full<Bytes>> {
    let params = parse_query(query);
    let param = |name: &str| non_empty(&params, name);
    let Some(app_id) = param("appid") else {
        return wechat_error(41002, false);
    };
    let app_secret = if app_id == shared.app_id {
        shared.app_secret.clone()
    } else {
        match shared.state().more_apps.iter().find(|(id, _)| id == app_id) {
            Some((_, secret)) => secret.clone(),
            None => return wechat_error(40013, false),
        }
    };
    match param("secret") {
        None => return wechat_error(41004, false),
        Some(secret) if secret != app_secret => return wechat_error(40125, false),
        Some(_) => {}
    }
    let code_app = (app_id != shared.app_id).then(|| app_id.to_owned());
    if param("grant_type") != Some("authorization_code") {
        return wechat_error(40002, false);
    }
    let Some(code) = param("js_code") else {
        return wechat_error(41008, false);
    };

    let mut state = shared.state();
    let minted = match state.codes.get_mut(code) {
        Some(minted) if minted.expires > Instant::now() && minted.app_id == code_app => minted,
        _ => return wechat_error(40029, false),
    };
    if minted.used {
        return wechat_error(40163, false);
    }
    minted.used = true;
    let openid = minted.openid.clone();
    let unionid = minted.unionid.clone();
    // WeChat rotates the user's session_key on a new login.
    let session_key = STANDARD.encode(random_bytes::<16>());
    state
        .session_keys
        .insert(openid.clone(), session_key.clone());
    drop(state);

    let mut body = json!({ "session_key": session_key, "openid": openid });
    if let Some(unionid) = unionid {
        body["unionid"] = json!(unionid);
    }
    respond(StatusCode::OK, "text/plain", body.to_string())
}

/// Reads a small request body as JSON; `None` if it is unreadable, too long or not JSON.
pub(super) async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Option<T> {
    let body = Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
        .ok()?
        .to_bytes();
    serde_json::from_slice(&body).ok()
}

/// A successful reply of the newer APIs: HTTP 200, JSON.
pub(super) fn wechat_ok(mut body: serde_json::Value) -> Response<Full<Bytes>> {
    body["errcode"] = json!(0);
    body["errmsg"] = json!("ok");
    respond(
        StatusCode::OK,
        "application/json; encoding=utf-8",
        body.to_string(),
    )
}

/// `POST /cgi-bin/stable_token`: the app's access token. Normal mode hands
/// out the current token until its last stretch (the last five minutes,
/// or half its lifetime if that is shorter), then a new one, the old one
/// staying valid until it ends; `force_refresh` ends every older token.
pub(super) async fn stable_token(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    struct TokenRequest {
        grant_type: Option<String>,
        appid: Option<String>,
        secret: Option<String>,
        #[serde(default)]
        force_refresh: bool,
    }
    shared.stable_token_calls.fetch_add(1, Ordering::SeqCst);
    if req.method() != Method::POST {
        return wechat_error(43002, false);
    }
    let Some(request) = json_body::<TokenRequest>(req).await else {
        return wechat_error(47001, false);
    };
    let filled = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    match filled(&request.appid) {
        None => return wechat_error(41002, false),
        Some(appid) if appid != shared.app_id => return wechat_error(40013, false),
        Some(_) => {}
    }
    match filled(&request.secret) {
        None => return wechat_error(41004, false),
        Some(secret) if secret != shared.app_secret => return wechat_error(40125, false),
        Some(_) => {}
    }
    if request.grant_type.as_deref() != Some("client_credential") {
        return wechat_error(40002, false);
    }

    let now = Instant::now();
    let mut state = shared.state();
    let lifetime = state.access_token_lifetime;
    let last_stretch = (lifetime / 2).min(Duration::from_secs(5 * 60));
    state.access_tokens.retain(|_, expires| *expires > now);
    if request.force_refresh {
        state.access_tokens.clear();
        state.current_access_token = None;
    }
    let current = state.current_access_token.as_ref().and_then(|token| {
        let expires = *state.access_tokens.get(token)?;
        let remaining = expires - now;
        (remaining > last_stretch).then(|| (token.clone(), remaining))
    });
    let (token, remaining) = match current {
        Some(current) => current,
        None => {
            let token = URL_SAFE_NO_PAD.encode(random_bytes::<96>());
            state.access_tokens.insert(token.clone(), now + lifetime);
            state.current_access_token = Some(token.clone());
            (token, lifetime)
        }
    };
    drop(state);
    let expires_in = remaining.as_secs().max(1);
    respond(
        StatusCode::OK,
        "application/json; encoding=utf-8",
        json!({ "access_token": token, "expires_in": expires_in }).to_string(),
    )
}

/// `GET /wxa/checksession`: whether `signature` is the HMAC of the user's
/// current session_key (40001 for a bad access token, 87009 otherwise).
pub(super) fn checksession(shared: &Shared, query: &str) -> Response<Full<Bytes>> {
    shared.checksession_calls.fetch_add(1, Ordering::SeqCst);
    let params = parse_query(query);
    let param = |name: &str| non_empty(&params, name);
    if !shared.access_token_valid(param("access_token")) {
        return wechat_error(40001, false);
    }
    if param("sig_method") != Some("hmac_sha256") {
        return wechat_error(87008, false);
    }
    let (Some(openid), Some(signature)) = (param("openid"), param("signature")) else {
        return wechat_error(40097, false);
    };
    let Some(session_key) = shared.state().session_keys.get(openid).cloned() else {
        return wechat_error(87009, false);
    };
    if crate::crypto::session_signature(&session_key) != signature {
        return wechat_error(87009, false);
    }
    wechat_ok(json!({}))
}

/// `POST /wxa/business/getuserphonenumber?access_token=...` with `{"code"}`:
/// the number behind a minted phone code, once (40029 after that).
pub(super) async fn phone_number(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    struct PhoneRequest {
        code: Option<String>,
    }
    shared.phone_number_calls.fetch_add(1, Ordering::SeqCst);
    if req.method() != Method::POST {
        return wechat_error(43002, false);
    }
    let params = parse_query(req.uri().query().unwrap_or(""));
    if !shared.access_token_valid(params.get("access_token").map(String::as_str)) {
        return wechat_error(40001, false);
    }
    let Some(request) = json_body::<PhoneRequest>(req).await else {
        return wechat_error(47001, false);
    };
    let Some(code) = request.code.filter(|c| !c.is_empty()) else {
        return wechat_error(40029, false);
    };
    let mut state = shared.state();
    let minted = match state.phone_codes.get_mut(&code) {
        Some(minted) if !minted.used && minted.expires > Instant::now() => minted,
        _ => return wechat_error(40029, false),
    };
    minted.used = true;
    let pure = minted.phone_number.clone();
    let country_code = minted.country_code.clone();
    let as_number = minted.country_code_as_number;
    drop(state);
    let full = if country_code == "86" {
        pure.clone()
    } else {
        format!("+{country_code}{pure}")
    };
    let country = match country_code.parse::<u64>() {
        Ok(n) if as_number => json!(n),
        _ => json!(country_code),
    };
    let timestamp = now_secs();
    wechat_ok(json!({
        "phone_info": {
            "phoneNumber": full,
            "purePhoneNumber": pure,
            "countryCode": country,
            "watermark": { "timestamp": timestamp, "appid": shared.app_id },
        }
    }))
}

/// `POST /_fake/phone_code` with `{"phoneNumber": "...", "countryCode": "86"}`
/// (both optional): mints a phone-number code like the mini program's
/// `getPhoneNumber` button, answering `{"code": "..."}`.
pub(super) async fn fake_phone_code(
    shared: &Shared,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct PhoneCodeRequest {
        phone_number: Option<String>,
        country_code: Option<String>,
    }
    let empty = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .is_some_and(|len| len == "0");
    let request = if empty {
        Some(PhoneCodeRequest::default())
    } else {
        json_body::<PhoneCodeRequest>(req).await
    };
    let Some(request) = request else {
        return respond(
            StatusCode::BAD_REQUEST,
            "application/json",
            json!({ "error": r#"expected JSON {"phoneNumber": "...", "countryCode": "86"}, both optional"# })
                .to_string(),
        );
    };
    let phone = request
        .phone_number
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "13800138000".to_owned());
    let country = request
        .country_code
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "86".to_owned());
    let code = shared.mint_phone_code(&phone, &country, false);
    respond(
        StatusCode::OK,
        "application/json",
        json!({ "code": code }).to_string(),
    )
}

/// `POST /_fake/wx.login`: mints a code like `wx.login()` in the mini program.
pub(super) async fn wx_login(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize, Default)]
    struct LoginRequest {
        openid: Option<String>,
        unionid: Option<String>,
    }
    let bad_request = |message: &str| {
        respond(
            StatusCode::BAD_REQUEST,
            "application/json",
            json!({ "error": message }).to_string(),
        )
    };
    let body = match Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return bad_request("body unreadable or over 16 KiB"),
    };
    let request: LoginRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LoginRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(_) => {
                return bad_request(
                    r#"expected JSON {"openid": "...", "unionid": "..."}, both optional"#,
                )
            }
        }
    };
    let openid = match request.openid.filter(|o| !o.is_empty()) {
        Some(openid) => openid,
        // Shaped like a real openid: 28 characters starting with "o".
        None => format!("o{}", URL_SAFE_NO_PAD.encode(random_bytes::<20>())),
    };
    let unionid = request.unionid.filter(|u| !u.is_empty());
    let code = shared.mint(&openid, unionid.as_deref());
    respond(
        StatusCode::OK,
        "application/json",
        json!({ "code": code }).to_string(),
    )
}

/// The errmsg WeChat sends with an errcode (before its `, rid: ...` suffix).
pub(super) fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        0 => "ok",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "code blocked",
        40243 => "AppSecret已被冻结，请登录小程序平台解冻后再次调用",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        40097 => "invalid args",
        43002 => "require POST method",
        47001 => "data format error",
        87008 => "invalid sig_method",
        87009 => "invalid signature",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        _ => "unknown error",
    }
}

/// An errcode reply as WeChat sends it: HTTP 200, text/plain, a request id in errmsg.
pub(super) fn wechat_error(errcode: i64, as_string: bool) -> Response<Full<Bytes>> {
    let rid = random_bytes::<12>();
    let rid = format!("{}-{}-{}", hex(&rid[..4]), hex(&rid[4..8]), hex(&rid[8..]));
    let errmsg = format!("{}, rid: {rid}", errmsg(errcode));
    let body = if as_string {
        json!({ "errcode": errcode.to_string(), "errmsg": errmsg })
    } else {
        json!({ "errcode": errcode, "errmsg": errmsg })
    };
    respond(StatusCode::OK, "text/plain", body.to_string())
}

pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A query parameter, when present and not empty (WeChat treats an empty
/// one as missing).
fn non_empty<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The query's parameters, percent-decoded; the first of a repeated name wins.
pub(super) fn parse_query(query: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let Ok(url) = reqwest::Url::parse(&format!("http://fake/?{query}")) else {
        return params;
    };
    for (name, value) in url.query_pairs() {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}
