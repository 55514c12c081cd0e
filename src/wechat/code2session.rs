//! `auth.code2Session` (`GET /sns/jscode2session`): exchanges the one-time
//! code from `wx.login()` for the user's `openid`, `unionid` and `session_key`.

use serde::Deserialize;

use super::reply::parse_reply as parse_json_reply;
use super::{AttemptError, WeChatClient, WeChatError};
use crate::Secret;

/// A successful code exchange.
#[derive(Debug, Clone)]
pub(crate) struct Code2Session {
    /// The user's id within this mini program.
    pub openid: String,
    /// The user's id across the apps of one WeChat Open Platform account, when bound.
    pub unionid: Option<String>,
    /// The key of the user's WeChat session; it never leaves the server.
    pub session_key: Secret,
}

impl WeChatClient {
    /// Exchanges a `wx.login()` code. Busy replies (-1) and transport
    /// failures are retried; the code itself is single use, so a retry after
    /// WeChat consumed it answers [`WeChatError::InvalidCode`].
    pub(crate) async fn code2session(
        &self,
        app_id: &str,
        secret: &Secret,
        code: &str,
    ) -> Result<Code2Session, WeChatError> {
        // This URL holds the secret: it is never logged nor put in an error.
        let url = self.endpoint(
            "/sns/jscode2session",
            &[
                ("appid", app_id),
                ("secret", secret.expose()),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ],
        )?;
        let result = self
            .call(
                "code2session",
                &[secret.expose(), code],
                |http| http.get(url.clone()),
                parse_reply,
            )
            .await;
        match &result {
            Ok(session) => tracing::debug!(
                has_unionid = session.unionid.is_some(),
                "code2session succeeded"
            ),
            Err(WeChatError::Misconfigured { errcode, errmsg }) => {
                tracing::warn!(
                    errcode,
                    errmsg,
                    "code2session refused: check the appid and secret"
                )
            }
            Err(error) => tracing::debug!(%error, "code2session failed"),
        }
        result
    }
}

/// The success reply; unknown fields (`expires_in`, ...) are ignored.
/// No `Debug`: it holds the session_key in clear.
#[derive(Deserialize)]
struct Reply {
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

/// Reads a code2Session reply body, whatever its Content-Type said.
pub(super) fn parse_reply(body: &[u8]) -> Result<Code2Session, AttemptError> {
    let reply: Reply = parse_json_reply(body)?;
    match (reply.openid, reply.session_key) {
        (Some(openid), Some(session_key)) if !openid.is_empty() && !session_key.is_empty() => {
            Ok(Code2Session {
                openid,
                unionid: reply.unionid.filter(|u| !u.is_empty()),
                session_key: Secret::new(session_key),
            })
        }
        // The code may be consumed already, so another attempt would not help.
        _ => Err(AttemptError::fatal(WeChatError::Unavailable {
            reason: "success reply without openid or session_key".to_owned(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Code2Session, AttemptError> {
        parse_reply(body.as_bytes())
    }

    fn error(body: &str) -> (WeChatError, bool) {
        match parse(body) {
            Ok(_) => panic!("{body} parsed as a success"),
            Err(failure) => (failure.error, failure.retry),
        }
    }

    #[test]
    fn success_without_errcode() {
        let s = parse(
            r#"{"session_key":"nzoqhc3OnwHzeTxJs+inbQ==","openid":"oVBkZ0aYgDMDIywRdgPW8-joxXc4"}"#,
        )
        .ok()
        .unwrap();
        assert_eq!(s.openid, "oVBkZ0aYgDMDIywRdgPW8-joxXc4");
        assert_eq!(s.session_key.expose(), "nzoqhc3OnwHzeTxJs+inbQ==");
        assert_eq!(s.unionid, None);
        let debug = format!("{s:?}");
        assert!(!debug.contains("nzoqhc3"), "{debug}");
    }

    #[test]
    fn success_with_errcode_zero_unionid_and_unknown_fields() {
        for errcode in ["0", "\"0\"", "null"] {
            let body = format!(
                r#"{{"openid":"o1","session_key":"k","unionid":"u1","errcode":{errcode},"errmsg":"ok","expires_in":7200,"extra":{{"a":[1]}}}}"#
            );
            let s = parse(&body).ok().unwrap();
            assert_eq!(
                (s.openid.as_str(), s.unionid.as_deref()),
                ("o1", Some("u1"))
            );
        }
    }

    #[test]
    fn empty_unionid_is_none_and_bom_is_skipped() {
        let s = parse("\u{feff} {\"openid\":\"o1\",\"session_key\":\"k\",\"unionid\":\"\"}\n")
            .ok()
            .unwrap();
        assert_eq!(s.unionid, None);
    }

    #[test]
    fn errcode_as_number_or_string() {
        for body in [
            r#"{"errcode":40029,"errmsg":"invalid code, rid: 623ea70a-74b9b592-3e3d489a"}"#,
            r#"{"errcode":"40029","errmsg":"invalid code"}"#,
            r#"{"errcode":" 40029 "}"#,
        ] {
            let (err, retry) = error(body);
            assert!(
                matches!(err, WeChatError::InvalidCode { errcode: 40029 }),
                "{body}"
            );
            assert!(!retry);
        }
        let (err, retry) = error(r#"{"errcode":"-1","errmsg":"system error"}"#);
        assert!(matches!(err, WeChatError::Unavailable { .. }));
        assert!(retry);
    }

    #[test]
    fn misconfigured_keeps_errmsg() {
        let (err, retry) = error(r#"{"errcode":40125,"errmsg":"invalid appsecret, rid: x"}"#);
        assert!(!retry);
        match err {
            WeChatError::Misconfigured { errcode, errmsg } => {
                assert_eq!(
                    (errcode, errmsg.as_str()),
                    (40125, "invalid appsecret, rid: x")
                );
            }
            other => panic!("{other:?}"),
        }
        let (err, _) = error(r#"{"errcode":99999}"#);
        assert!(
            matches!(err, WeChatError::Misconfigured { errcode: 99999, ref errmsg } if errmsg.is_empty())
        );
    }

    #[test]
    fn success_without_identity_is_unavailable_and_final() {
        for body in [
            r#"{}"#,
            r#"{"errcode":0,"openid":"o1"}"#,
            r#"{"session_key":"k"}"#,
            r#"{"openid":"","session_key":"k"}"#,
            r#"{"openid":"o1","session_key":""}"#,
        ] {
            let (err, retry) = error(body);
            assert!(matches!(err, WeChatError::Unavailable { .. }), "{body}");
            assert!(!retry, "{body}");
        }
    }

    #[test]
    fn garbage_is_unavailable_and_retried_without_quoting_the_body() {
        for body in [
            "",
            "<html><body>502 Bad Gateway secret=abc</body></html>",
            r#"{"openid":"o1","session_key":"#,
            r#"{"errcode":"secret=abc"}"#,
            r#"{"errcode":{"x":1}}"#,
            "[1,2]",
        ] {
            let (err, retry) = error(body);
            assert!(retry, "{body}");
            let text = format!("{err} {err:?}");
            assert!(matches!(err, WeChatError::Unavailable { .. }), "{body}");
            assert!(!text.contains("secret"), "{text}");
        }
    }
}

/// The client against the loopback fake: retries, deadlines, limits, redaction.
#[cfg(all(test, feature = "mock"))]
mod http_tests {
    use std::time::Duration;

    use super::super::{ClientConfig, WeChatClient, WeChatError};
    use crate::mock::{FakeReply, FakeWeChat};
    use crate::Secret;

    const APP_ID: &str = "wx0123456789abcdef";
    const SECRET: &str = "s3cr3t-app-secret-value";

    fn client(base: String) -> WeChatClient {
        WeChatClient::new(ClientConfig {
            api_base: base,
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(400),
            deadline: Duration::from_secs(2),
            max_attempts: 3,
            max_reply_bytes: 1024,
        })
        .unwrap()
    }

    async fn setup() -> (FakeWeChat, WeChatClient) {
        let fake = FakeWeChat::start(APP_ID, SECRET).await.unwrap();
        let client = client(fake.base_url());
        (fake, client)
    }

    fn assert_no_secret(err: &WeChatError) {
        let text = format!("{err} {err:?}");
        assert!(!text.contains(SECRET), "{text}");
    }

    #[tokio::test]
    async fn exchanges_a_code_once() {
        let (fake, client) = setup().await;
        let code = fake.mint_code_with_unionid("o-user-1", "u-user-1");
        let s = client
            .code2session(APP_ID, &Secret::new(SECRET), &code)
            .await
            .unwrap();
        assert_eq!(s.openid, "o-user-1");
        assert_eq!(s.unionid.as_deref(), Some("u-user-1"));
        assert_eq!(
            Some(s.session_key.expose()),
            fake.session_key("o-user-1").as_deref()
        );
        let err = client
            .code2session(APP_ID, &Secret::new(SECRET), &code)
            .await
            .unwrap_err();
        assert!(
            matches!(err, WeChatError::InvalidCode { errcode: 40163 }),
            "{err:?}"
        );
        assert_eq!(fake.code2session_calls(), 2);
    }

    #[tokio::test]
    async fn secret_and_code_are_url_encoded() {
        let secret = "a&b=c d+e%f";
        let fake = FakeWeChat::start(APP_ID, secret).await.unwrap();
        let client = client(format!("{}/", fake.base_url()));
        let code = fake.mint_code("o1");
        let s = client
            .code2session(APP_ID, &Secret::new(secret), &code)
            .await
            .unwrap();
        assert_eq!(s.openid, "o1");
        let err = client
            .code2session(APP_ID, &Secret::new(secret), "x&appid=other")
            .await
            .unwrap_err();
        assert!(
            matches!(err, WeChatError::InvalidCode { errcode: 40029 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn busy_and_broken_replies_are_retried() {
        let (fake, client) = setup().await;
        fake.push_reply(FakeReply::Errcode(-1));
        fake.push_reply(FakeReply::Status(502, "<html>bad gateway</html>".into()));
        let code = fake.mint_code("o1");
        let s = client
            .code2session(APP_ID, &Secret::new(SECRET), &code)
            .await
            .unwrap();
        assert_eq!(s.openid, "o1");
        assert_eq!(fake.code2session_calls(), 3);

        fake.push_reply(FakeReply::Reset);
        fake.push_reply(FakeReply::Body("{\"openid\":".into()));
        let code = fake.mint_code("o2");
        let s = client
            .code2session(APP_ID, &Secret::new(SECRET), &code)
            .await
            .unwrap();
        assert_eq!(s.openid, "o2");
        assert_eq!(fake.code2session_calls(), 6);
    }

    #[tokio::test]
    async fn retries_stop_at_max_attempts() {
        let (fake, client) = setup().await;
        for _ in 0..5 {
            fake.push_reply(FakeReply::Errcode(-1));
        }
        let err = client
            .code2session(APP_ID, &Secret::new(SECRET), "any")
            .await
            .unwrap_err();
        assert!(matches!(err, WeChatError::Unavailable { .. }), "{err:?}");
        assert_eq!(fake.code2session_calls(), 3);
    }

    #[tokio::test]
    async fn final_errors_are_not_retried() {
        let (fake, client) = setup().await;
        type Check = fn(&WeChatError) -> bool;
        let cases: [(FakeReply, Check); 6] = [
            (FakeReply::Errcode(40029), |e| {
                matches!(e, WeChatError::InvalidCode { errcode: 40029 })
            }),
            (FakeReply::ErrcodeAsString(40163), |e| {
                matches!(e, WeChatError::InvalidCode { errcode: 40163 })
            }),
            (
                FakeReply::Errcode(45011),
                |e| matches!(e, WeChatError::RateLimited { retry_after } if *retry_after == Duration::from_secs(60)),
            ),
            (FakeReply::Errcode(40226), |e| {
                matches!(e, WeChatError::UserRestricted)
            }),
            (FakeReply::Errcode(40243), |e| {
                matches!(e, WeChatError::Misconfigured { errcode: 40243, .. })
            }),
            (FakeReply::Status(404, "not found".into()), |e| {
                matches!(e, WeChatError::Unavailable { .. })
            }),
        ];
        for (n, (reply, check)) in cases.into_iter().enumerate() {
            fake.push_reply(reply);
            let err = client
                .code2session(APP_ID, &Secret::new(SECRET), "any")
                .await
                .unwrap_err();
            assert!(check(&err), "{err:?}");
            assert_eq!(fake.code2session_calls(), n + 1, "{err:?}");
        }
    }

    #[tokio::test]
    async fn wrong_credentials_are_misconfigured_without_the_secret() {
        let (fake, client) = setup().await;
        let err = client
            .code2session(APP_ID, &Secret::new("wrong-secret"), &fake.mint_code("o1"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, WeChatError::Misconfigured { errcode: 40125, .. }),
            "{err:?}"
        );
        let err = client
            .code2session("wx-other", &Secret::new(SECRET), &fake.mint_code("o1"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, WeChatError::Misconfigured { errcode: 40013, .. }),
            "{err:?}"
        );
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn slow_replies_time_out_within_the_deadline() {
        let (fake, client) = setup().await;
        fake.set_latency(Duration::from_secs(5));
        let started = std::time::Instant::now();
        let err = client
            .code2session(APP_ID, &Secret::new(SECRET), "any")
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, WeChatError::Unavailable { .. }), "{err:?}");
        assert_no_secret(&err);
        assert_eq!(fake.code2session_calls(), 3);
    }

    #[tokio::test]
    async fn overall_deadline_bounds_the_retries() {
        let (fake, _) = setup().await;
        let client = WeChatClient::new(ClientConfig {
            api_base: fake.base_url(),
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_millis(300),
            max_attempts: 10,
            ..ClientConfig::default()
        })
        .unwrap();
        fake.set_latency(Duration::from_millis(200));
        for _ in 0..10 {
            fake.push_reply(FakeReply::Errcode(-1));
        }
        let started = std::time::Instant::now();
        let err = client
            .code2session(APP_ID, &Secret::new(SECRET), "any")
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, WeChatError::Unavailable { .. }), "{err:?}");
        assert!(fake.code2session_calls() <= 2);
    }

    #[tokio::test]
    async fn oversized_replies_are_refused() {
        let (fake, client) = setup().await;
        fake.push_reply(FakeReply::Body(format!(
            "{{\"openid\":\"o1\",\"session_key\":\"k\",\"pad\":\"{}\"}}",
            "x".repeat(2000)
        )));
        let err = client
            .code2session(APP_ID, &Secret::new(SECRET), "any")
            .await
            .unwrap_err();
        assert!(
            matches!(err, WeChatError::Unavailable { ref reason } if reason.contains("longer than 1024")),
            "{err:?}"
        );
        assert_eq!(fake.code2session_calls(), 1);
    }

    #[tokio::test]
    async fn network_errors_do_not_leak_the_secret() {
        let (fake, _) = setup().await;
        let base = fake.base_url();
        fake.shutdown();
        drop(fake);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let client = client(base);
        let err = client
            .code2session(APP_ID, &Secret::new(SECRET), "the-code")
            .await
            .unwrap_err();
        assert!(
            matches!(err, WeChatError::Unavailable { ref reason } if reason.starts_with("connection failed")),
            "{err:?}"
        );
        assert_no_secret(&err);
        assert!(!format!("{err:?}").contains("the-code"));

        let err = super::super::WeChatClient::new(ClientConfig {
            api_base: "not a url".into(),
            ..ClientConfig::default()
        })
        .unwrap()
        .code2session(APP_ID, &Secret::new(SECRET), "c")
        .await
        .unwrap_err();
        assert!(
            matches!(err, WeChatError::Misconfigured { errcode: 0, .. }),
            "{err:?}"
        );
        assert_no_secret(&err);
    }
}
