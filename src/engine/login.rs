//! What a login and a logout do, behind the routes of [`crate::login`]:
//! the body, the limits, the code exchange, the hook, the new session.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Instant;

use bytes::Buf as _;
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{App, Engine};
use crate::error::{refusals, ErrorCode, LoginError, Rejection};
use crate::limit::{ClientKey, Refused};
use crate::session::{Identity, RESERVED_REPLY_FIELDS};
use crate::store::StoreId;
use crate::wechat::WeChatError;

/// The error of a request body, boxed.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Shortest login code accepted. Every `wx.login()` code seen is 32
/// characters (docs/security.md says where they were seen); half of that
/// is kept as margin for a format change.
pub(crate) const MIN_CODE_LEN: usize = 16;

/// Longest login code accepted: four times the real length, as margin.
pub(crate) const MAX_CODE_LEN: usize = 128;

/// Whether `code` could be a `wx.login()` code: 16 to 128 ASCII letters,
/// digits, `-` or `_`. Real codes are 32 letters and digits; the rule keeps
/// a margin on both sides and the URL-safe punctuation, so that it refuses
/// only what WeChat would refuse anyway (with a `jscode2session` call spent
/// on it): the devtools' `"the code is a mock one"`, guesses, and text
/// carrying query syntax.
pub(crate) fn has_code_shape(code: &str) -> bool {
    (MIN_CODE_LEN..=MAX_CODE_LEN).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Most bytes of an over-limit body read (and dropped) before its 413.
const DRAIN_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Longest time spent reading an over-limit body before its 413.
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what is left of a body, up to `max` bytes and
/// [`DRAIN_MAX_TIME`], so that the connection is not reset under a client
/// still sending it. Whether it got to the end does not matter to the caller:
/// past the bounds the server closes the connection as before.
async fn drain<B: Body>(mut body: Pin<&mut B>, max: u64) {
    let mut left = max;
    let all = async {
        // The error is dropped at once: it need not be `Send`.
        while let Some(frame) = body.frame().await.map(Result::ok) {
            let Some(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                let n = data.remaining() as u64;
                if n > left {
                    return false;
                }
                left -= n;
            }
        }
        true
    };
    let drained = tokio::time::timeout(DRAIN_MAX_TIME, all)
        .await
        .unwrap_or(false);
    tracing::debug!(
        drained,
        bytes = max - left,
        "wxlogin: over-limit body read before the 413"
    );
}

/// The `bad_request` messages of the login body parser.
pub(crate) mod body_messages {
    pub(crate) const NOT_JSON: &str = "the body must be a JSON object with a \"code\" string";
    pub(crate) const BAD_APPID: &str = "\"appid\" must be the mini program's app id";
    pub(crate) const NO_CODE: &str = "the body has no \"code\"";
    pub(crate) const BAD_CODE: &str = "\"code\" must be the code from wx.login()";
    pub(crate) const CODE_NOT_STRING: &str = "\"code\" must be a string";
    /// Every one of them (the fuzz targets check that the parser answers no other).
    #[cfg(feature = "fuzzing")]
    pub(crate) const ALL: [&str; 5] = [NOT_JSON, BAD_APPID, NO_CODE, BAD_CODE, CODE_NOT_STRING];
}

/// The login code from a login body (JSON `{"code": "..."}`, whatever the
/// content type), or the `bad_request` message saying what is wrong.
///
/// A code has the shape of a WeChat code ([`has_code_shape`]); `appid` is
/// checked as [`parse_login_request`] does, other fields are ignored. (The
/// route itself uses [`parse_login_request`].)
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_login_body(body: &[u8]) -> Result<String, &'static str> {
    parse_login_request(body).map(|login| login.code)
}

/// A login body, read.
pub(crate) struct LoginRequest {
    pub(crate) code: String,
    /// Which mini program, for a backend serving several.
    pub(crate) appid: Option<String>,
    /// Every other field, for the hook.
    pub(crate) fields: serde_json::Map<String, serde_json::Value>,
}

/// The code, the optional `appid` and the other fields of a login body.
pub(crate) fn parse_login_request(body: &[u8]) -> Result<LoginRequest, &'static str> {
    let mut parsed: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| body_messages::NOT_JSON)?;
    let appid = match parsed.remove("appid") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(a)) if !a.is_empty() && a.len() <= 64 => Some(a),
        Some(_) => return Err(body_messages::BAD_APPID),
    };
    let code = match parsed.remove("code") {
        None | Some(serde_json::Value::Null) => return Err(body_messages::NO_CODE),
        Some(serde_json::Value::String(code)) => {
            if !has_code_shape(&code) {
                return Err(body_messages::BAD_CODE);
            }
            code
        }
        Some(_) => return Err(body_messages::CODE_NOT_STRING),
    };
    Ok(LoginRequest {
        code,
        appid,
        fields: parsed,
    })
}

/// The `User-Agent` of a request, when it is UTF-8 text, cut to
/// [`Identity::USER_AGENT_MAX`] bytes.
pub(crate) fn user_agent(headers: &http::HeaderMap) -> Option<String> {
    let text = std::str::from_utf8(headers.get(header::USER_AGENT)?.as_bytes()).ok()?;
    Some(crate::store::codec::cut(text, Identity::USER_AGENT_MAX).to_owned())
}

/// The login answer: the hook's fields, then the crate's four, which no
/// hook field overrides (one by their names is dropped, with a warning).
fn login_reply(
    mut fields: serde_json::Map<String, serde_json::Value>,
    token: &str,
    expires_in: u64,
    openid: &str,
    unionid: Option<&str>,
) -> Vec<u8> {
    for name in RESERVED_REPLY_FIELDS {
        if fields.remove(name).is_some() {
            tracing::warn!(
                field = name,
                "wxlogin: the login hook's reply field would override the crate's; dropped"
            );
        }
    }
    fields.insert("token".into(), token.into());
    fields.insert("expires_in".into(), expires_in.into());
    fields.insert("openid".into(), openid.into());
    fields.insert("unionid".into(), unionid.into());
    serde_json::to_vec(&fields).expect("a JSON map serializes")
}

impl<T> Engine<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub(crate) async fn login<B>(
        &self,
        req: Request<B>,
        route_app: Option<usize>,
    ) -> Result<Response<Full<Bytes>>, Rejection>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if req.method() != Method::POST {
            return Err(self
                .reject(ErrorCode::BadRequest, "log in with POST")
                .with_status(StatusCode::METHOD_NOT_ALLOWED));
        }
        let (parts, body) = req.into_parts();
        let client = self.client_key(&parts)?;
        let ip = crate::limit::peer_addr(&parts).map(|a| a.ip());
        let user_agent = user_agent(&parts.headers);
        let body = self.read_body(Request::from_parts(parts, body)).await?;
        let LoginRequest {
            code,
            appid,
            fields,
        } = parse_login_request(&body).map_err(|msg| self.reject(ErrorCode::BadRequest, msg))?;
        let app = self.pick_app(route_app, appid.as_deref())?;

        // After the body: a bad request uses none of the limits.
        let _permit = self.login_limit.admit(client).map_err(|why| {
            match why {
                // Per request of a flood: the route's own log line says it already.
                Refused::ClientRate(_) | Refused::ClientConcurrency => tracing::debug!(
                    limit = ?why,
                    "wxlogin: login over its client's limit (behind a proxy, set login_client_key)"
                ),
                Refused::Rate | Refused::Concurrency => {
                    tracing::warn!(limit = ?why, "wxlogin: login over the server's limit")
                }
            }
            self.reject(
                ErrorCode::RateLimited,
                "too many logins at once; retry in a moment",
            )
            .with_retry_after(why.retry_after())
        })?;
        let started = Instant::now();
        let exchanged = self
            .wechat
            .code2session(&app.app_id, &app.secret, &code)
            .await;
        let wechat_ms = started.elapsed().as_millis() as u64;
        let who = exchanged.map_err(|e| {
            let rej = self.wechat_rejection(e, wechat_ms, &app.app_id);
            crate::observe::wechat(Some(rej.code()), started.elapsed());
            rej
        })?;
        crate::observe::wechat(None, started.elapsed());
        tracing::debug!(openid = %who.openid, wechat_ms, "wxlogin: code exchanged");

        let identity = Identity {
            openid: who.openid.clone(),
            unionid: who.unionid.clone(),
            app_id: app.app_id.clone(),
            fields,
            ip,
            user_agent,
        };
        // A panicking hook is an app bug: answer 500 rather than drop the
        // connection, whether the closure panics or the future it returned.
        let hook_panicked = || {
            tracing::error!("wxlogin: the login hook panicked");
            self.reject(ErrorCode::Misconfigured, "the server's login hook failed")
        };
        // What the session records: the user and the device, not the fields.
        let device = Identity {
            openid: identity.openid.clone(),
            unionid: identity.unionid.clone(),
            app_id: identity.app_id.clone(),
            fields: serde_json::Map::new(),
            ip: identity.ip,
            user_agent: identity.user_agent.clone(),
        };
        let hook_future = std::panic::catch_unwind(AssertUnwindSafe(|| (self.hook)(identity)))
            .map_err(|_| hook_panicked())?;
        let hooked = AssertUnwindSafe(hook_future)
            .catch_unwind()
            .await
            .map_err(|_| hook_panicked())?;
        let (data, reply_fields) = hooked.map_err(|e| match e {
            LoginError::Refused(msg) => {
                Rejection::new(ErrorCode::LoginRefused, msg).with_renderer(self.renderer())
            }
            LoginError::Unavailable(detail) => {
                tracing::warn!(detail = %detail, "wxlogin: login hook failed");
                self.reject(
                    ErrorCode::StoreUnavailable,
                    "the user store is unavailable; try again shortly",
                )
            }
        })?;
        let data_json = self.data_json(&data, "the login hook's data")?;

        // Only a stored session yields a token: on any store failure the client gets 503.
        let (token, state) = self
            .create_session(device, who.session_key, data_json, data)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "wxlogin: creating the session failed");
                self.reject_fixed(&refusals::STORE_DOWN)
            })?;

        let body = login_reply(
            reply_fields,
            &token,
            self.session_ttl.as_secs(),
            &state.core.openid,
            state.core.unionid.as_deref(),
        );
        tracing::info!(outcome = "ok", wechat_ms, "wxlogin: login");
        let mut res = Response::new(Full::new(Bytes::from(body)));
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(res)
    }

    /// A session for an identity the app verified itself: the same token,
    /// record, caps and revocation as a WeChat login, with no WeChat
    /// `session_key`. Answers the token.
    pub(crate) async fn issue(&self, who: Identity, data: T) -> Result<String, Rejection> {
        if who.openid.is_empty() || who.openid.len() > 128 {
            return Err(self.reject(
                ErrorCode::Misconfigured,
                "a session needs a user id (openid) of 1 to 128 bytes",
            ));
        }
        let mut who = who;
        if who.app_id.is_empty() {
            who.app_id = self.default_app().app_id.clone();
        } else if self.app_index(&who.app_id).is_none() {
            return Err(self.reject(
                ErrorCode::Misconfigured,
                "the session's app id is not a mini program this login serves",
            ));
        }
        let data_json = self.data_json(&data, "the issued session's data")?;
        let (token, _) = self
            .create_session(who, crate::Secret::new(""), data_json, data)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "wxlogin: issuing a session failed");
                self.reject_fixed(&refusals::STORE_DOWN)
            })?;
        tracing::info!(outcome = "ok", "wxlogin: session issued");
        Ok(token)
    }

    /// Replaces the data of the sessions `ids` (one session's, or all of a
    /// user's): in the store, then out of this instance's cache (at once)
    /// and, through the store's announcement, the others'. Answers how many
    /// sessions were changed (a session that ended meanwhile is not).
    pub(crate) async fn set_data(&self, ids: &[StoreId], data: &T) -> Result<usize, Rejection> {
        let data_json = self.data_json(data, "the new session data")?;
        let mut changed = 0;
        for &id in ids {
            let store = self.sessions.store().clone();
            let me = self.me.clone();
            let data_json = data_json.clone();
            // Detached, like a revoke: cut by the timeout, the write still
            // lands, and the cache drops its copy once it has (a drop before
            // would let a load read the old record and cache it).
            let result = self
                .sessions
                .timed_detached(
                    "replace_data",
                    async move { store.replace_data(id, data_json).await },
                    move |_| {
                        if let Some(engine) = me.upgrade() {
                            engine.sessions.changed_store_ids(&[id]);
                        }
                    },
                )
                .await;
            match result {
                Ok(true) => changed += 1,
                Ok(false) => {}
                // A record that does not decode answers 401 on use: not changed.
                Err(e) if e.is_bad_record() => {}
                Err(e) => return Err(self.store_failure(&e, "changing session data")),
            }
        }
        Ok(changed)
    }

    /// The app's data as a session stores it; data that does not serialize
    /// (`what` names it in the log) is the app's bug: `misconfigured`.
    fn data_json(&self, data: &T, what: &str) -> Result<Vec<u8>, Rejection> {
        serde_json::to_vec(data).map_err(|e| {
            tracing::error!(error = %e, "wxlogin: {what} does not serialize");
            self.reject(
                ErrorCode::Misconfigured,
                "the server cannot store this session",
            )
        })
    }

    /// The answer to a failed store call of the handle's methods:
    /// `misconfigured` for what the store does not do at all, else
    /// `store_unavailable`.
    fn store_failure(&self, e: &crate::store::StoreError, doing: &str) -> Rejection {
        if e.is_unsupported() {
            tracing::error!(error = %e, "wxlogin: {doing}: the session store does not support it");
            return self.reject(
                ErrorCode::Misconfigured,
                "the server's session store cannot do this",
            );
        }
        tracing::warn!(error = %e, "wxlogin: {doing} failed");
        self.reject_fixed(&refusals::STORE_DOWN)
    }

    /// The live sessions of `openid` with their records, oldest first.
    pub(crate) async fn devices(
        &self,
        openid: &str,
    ) -> Result<Vec<(StoreId, crate::store::SessionRecord)>, Rejection> {
        let ids = self.user_sessions(openid).await?;
        let store = self.sessions.store();
        let now = crate::clock::now_ms();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.sessions.timed("load", store.load(id)).await {
                Ok(Some(record)) if !record.is_expired_at(now) && record.openid == openid => {
                    out.push((id, record))
                }
                Ok(_) => {}
                // Listed but undecodable: it answers 401 on use; leave it out.
                Err(e) if e.is_bad_record() => {}
                Err(e) => return Err(self.store_failure(&e, "loading a user's sessions")),
            }
        }
        // A store may list by end (Redis) rather than by creation.
        out.sort_by_key(|(_, record)| record.created_at_ms);
        Ok(out)
    }

    /// Ends one session by its store id (a device-list entry): as a
    /// logout does, without the token.
    pub(crate) async fn revoke_store_id(&self, store_id: StoreId) -> Result<bool, Rejection> {
        self.delete_announced(store_id, "ending a session", move |cache| {
            cache.invalidate_store_ids(&[store_id])
        })
        .await
    }

    /// The user's sessions that have not ended, from the store.
    pub(crate) async fn user_sessions(&self, openid: &str) -> Result<Vec<StoreId>, Rejection> {
        self.sessions
            .timed("user_sessions", self.sessions.store().user_sessions(openid))
            .await
            .map_err(|e| self.store_failure(&e, "listing a user's sessions"))
    }

    /// The body, at most `body_limit` bytes of it; over that, `413`.
    ///
    /// The 413 goes out once the rest of the body has been read and dropped
    /// (up to [`DRAIN_MAX_BYTES`] within [`DRAIN_MAX_TIME`]): closing a
    /// connection with unread bytes resets it, and a client still sending
    /// then fails on its write and never reads the answer. A client that
    /// waits for `100 Continue` has sent nothing yet, so it is answered at once.
    async fn read_body<B>(&self, req: Request<B>) -> Result<Bytes, Rejection>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let too_large = || {
            self.reject(ErrorCode::BadRequest, "the request body is too large")
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        };
        let limit = self.body_limit;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let awaits_continue = req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let mut body = std::pin::pin!(req.into_body());
        if let Some(declared) = declared.filter(|&n| n > limit as u64) {
            if !awaits_continue && declared <= DRAIN_MAX_BYTES {
                drain(body, declared).await;
            }
            return Err(too_large());
        }
        let mut read = Vec::new();
        while let Some(frame) = body.frame().await.map(Result::ok) {
            let Some(frame) = frame else {
                return Err(
                    self.reject(ErrorCode::BadRequest, "the request body could not be read")
                );
            };
            let Ok(mut data) = frame.into_data() else {
                continue; // trailers
            };
            if read.len() + data.remaining() > limit {
                drain(body, DRAIN_MAX_BYTES).await;
                return Err(too_large());
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                read.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
        }
        Ok(Bytes::from(read))
    }

    /// Who the login comes from: the app's key, else the peer address the
    /// server put in the extensions, else nobody (global limits only). A
    /// panicking key closure is an app bug, answered like a panicking hook.
    fn client_key(&self, parts: &http::request::Parts) -> Result<Option<ClientKey>, Rejection> {
        let own = match &self.client_key_fn {
            Some(key) => {
                std::panic::catch_unwind(AssertUnwindSafe(|| key(parts))).map_err(|_| {
                    tracing::error!("wxlogin: the login_client_key closure panicked");
                    self.reject(ErrorCode::Misconfigured, "the server's login limits failed")
                })?
            }
            None => None,
        };
        Ok(own.or_else(|| crate::limit::peer_key(parts)))
    }

    /// Which configured app a login is for: the route's, else the body's
    /// `appid`, else the default.
    fn pick_app(&self, route_app: Option<usize>, appid: Option<&str>) -> Result<&App, Rejection> {
        let app = match (route_app, appid) {
            (Some(i), None) => &self.apps[i],
            (Some(i), Some(a)) if self.apps[i].app_id == a => &self.apps[i],
            (Some(_), Some(_)) => {
                return Err(self.reject(
                    ErrorCode::BadRequest,
                    "this login route serves another mini program",
                ))
            }
            (None, Some(a)) => match self.app_index(a) {
                Some(i) => &self.apps[i],
                None => {
                    return Err(self.reject(
                        ErrorCode::BadRequest,
                        "\"appid\" is not a mini program this server serves",
                    ))
                }
            },
            (None, None) => &self.apps[0],
        };
        Ok(app)
    }

    fn wechat_rejection(&self, e: WeChatError, wechat_ms: u64, app_id: &str) -> Rejection {
        match e {
            WeChatError::InvalidCode { errcode } => {
                tracing::debug!(errcode, "wxlogin: WeChat refused the code");
                self.reject(
                    ErrorCode::InvalidCode,
                    "the login code is invalid or already used; call wx.login() again",
                )
            }
            WeChatError::RateLimited { retry_after } => self
                .reject(
                    ErrorCode::RateLimited,
                    "WeChat's login quota is exhausted; retry later",
                )
                .with_retry_after(retry_after.as_secs().max(1)),
            WeChatError::UserRestricted => self.reject(
                ErrorCode::UserRestricted,
                "WeChat blocked this login for a high-risk account",
            ),
            WeChatError::Unavailable { reason } => {
                tracing::warn!(reason = %reason, wechat_ms, "wxlogin: WeChat unavailable");
                self.reject(
                    ErrorCode::WeChatUnavailable,
                    "WeChat is unavailable; try again shortly",
                )
            }
            WeChatError::Misconfigured { errcode, errmsg } => {
                tracing::error!(
                    errcode,
                    errmsg = %errmsg,
                    app_id = %app_id,
                    "wxlogin: WeChat rejected the app credentials; check the app id and secret"
                );
                self.reject(
                    ErrorCode::Misconfigured,
                    "the server's WeChat configuration is wrong; the operator has been told",
                )
            }
        }
    }

    pub(crate) async fn logout<B>(&self, req: Request<B>) -> Result<(), Rejection> {
        if req.method() != Method::POST {
            return Err(self
                .reject(ErrorCode::BadRequest, "log out with POST")
                .with_status(StatusCode::METHOD_NOT_ALLOWED));
        }
        let token = self.token_source.read(req.headers()).map_err(|code| {
            if code == ErrorCode::MissingToken {
                self.reject(code, "no session token to log out")
            } else {
                self.reject(code, "the token header is not valid text")
            }
        })?;
        let id = self.keys.verify(token).map_err(|_| {
            self.reject(ErrorCode::InvalidToken, "the token is malformed or forged")
        })?;
        let existed = self.revoke_id(id).await?;
        tracing::info!(outcome = "ok", existed, "wxlogin: logout");
        Ok(())
    }
}
