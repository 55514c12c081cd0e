//! What a client sees over HTTP, and the one check of the default error
//! wire format.

use serde_json::Value;

/// A response as the client saw it: status, headers and body text.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    /// Reads the whole response.
    pub async fn of(res: reqwest::Response) -> Reply {
        Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            text: res.text().await.unwrap(),
        }
    }

    /// Sends `req` and reads the whole response.
    pub async fn send(req: reqwest::RequestBuilder) -> Reply {
        Reply::of(req.send().await.expect("the server answered")).await
    }

    /// The body as JSON; panics (showing the body) if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text))
    }

    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sorted keys of a JSON object.
pub fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Asserts an error in the default wire format (DESIGN.md, "Wire format of
/// every error"): the status; exactly `{"error","message","relogin"}` with
/// this code, this relogin flag and a message; `application/json`;
/// `WWW-Authenticate: Bearer realm=…` on a 401 and only there; a
/// `Retry-After` of at least 1 s on a 429 and only there. Returns the body.
pub fn assert_rejection(reply: &Reply, status: u16, code: &str, relogin: bool) -> Value {
    assert_eq!(reply.status, status, "body: {}", reply.text);
    let body = reply.json();
    assert_eq!(keys(&body), ["error", "message", "relogin"], "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["relogin"], relogin, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    match reply.header("www-authenticate") {
        Some(v) => {
            assert_eq!(status, 401, "WWW-Authenticate on a {status}");
            assert!(v.starts_with("Bearer realm="), "{v}");
        }
        None => assert_ne!(status, 401, "a 401 without WWW-Authenticate"),
    }
    match reply.header("retry-after") {
        Some(v) => {
            assert_eq!(status, 429, "Retry-After on a {status}");
            assert!(v.parse::<u64>().is_ok_and(|s| s >= 1), "{v}");
        }
        None => assert_ne!(status, 429, "a 429 without Retry-After"),
    }
    body
}

/// GETs `url` with a bearer token (or none); returns status and JSON body
/// (Null if not JSON).
pub async fn get_json(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
