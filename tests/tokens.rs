//! Session tokens over real HTTP: every forged, damaged or foreign token is
//! refused with a 401 before any store (or cache) lookup, keys rotate, and
//! the token can come from a custom header.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{app, builder, fake_wechat, get_json, login, serve, CountingStore};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::Value;
use wxlogin::store::MemoryStore;

const KEY_A: &str = "token-key-A-0123456789abcdef0123";
const KEY_B: &str = "token-key-B-fedcba9876543210fedc";

/// Sends GET /api/me with exactly this Authorization value (raw bytes allowed).
async fn get_with_auth(
    client: &reqwest::Client,
    base: &str,
    value: HeaderValue,
) -> (u16, Value, bool) {
    let res = client
        .get(format!("{base}/api/me"))
        .header(AUTHORIZATION, value)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let has_www_auth = res.headers().contains_key("www-authenticate");
    let body = serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null);
    (status, body, has_www_auth)
}

fn random_token_like(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::getrandom(&mut bytes).unwrap();
    // Map each byte onto the URL-safe base64 alphabet.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % 64] as char)
        .collect()
}

/// Replaces the character at `i` with a different URL-safe one.
fn change_char(token: &str, i: usize) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn issued_tokens_are_short_url_safe_ascii() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    for openid in ["o-alice", "o-bob", "o-carol"] {
        let token = login(&client, &base, &fake, openid).await;
        assert!(token.len() < 100, "token too long: {} bytes", token.len());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "token is not URL-safe: {token:?}"
        );
        let (status, body) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
        assert_eq!(status, 200);
        assert_eq!(body["openid"], openid);
    }
}

#[tokio::test]
async fn bad_tokens_are_401_without_any_store_call() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake)
        .token_key(KEY_A)
        .store(store.clone())
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;
    assert_eq!(token.len(), 46);

    // A token from another app with another key, for the same user.
    let other_fake = fake_wechat().await;
    let other = builder(&other_fake).token_key(KEY_B).build().unwrap();
    let other_base = serve(app(&other)).await;
    let foreign = login(&client, &other_base, &other_fake, "o-alice").await;
    let (status, _) = get_json(&client, &format!("{other_base}/api/me"), Some(&foreign)).await;
    assert_eq!(status, 200, "the foreign token works on its own app");

    let calls_after_login = store.total();
    assert_eq!(store.creates.load(std::sync::atomic::Ordering::SeqCst), 1);

    let mut bearer_cases: Vec<(&str, String)> = vec![
        ("forged", random_token_like(46)),
        ("forged, another", random_token_like(46)),
        ("truncated by one", token[..45].to_owned()),
        ("truncated to half", token[..23].to_owned()),
        ("one character of the id changed", change_char(&token, 10)),
        ("one character of the MAC changed", change_char(&token, 40)),
        ("version byte changed", change_char(&token, 0)),
        ("extra characters", format!("{token}AAAA")),
        ("one extra character", format!("{token}A")),
        ("signed with another key", foreign.clone()),
        ("not base64", "!!!!not-a-token@@@@".to_owned()),
        ("very long", "A".repeat(4000)),
    ];
    // A syntactically valid token whose MAC is made up.
    let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    for b in &mut raw[18..] {
        *b ^= 0x5a;
    }
    bearer_cases.push(("valid id, forged MAC", URL_SAFE_NO_PAD.encode(&raw)));

    for (what, bad) in &bearer_cases {
        assert_ne!(bad, &token);
        let value = HeaderValue::from_str(&format!("Bearer {bad}")).unwrap();
        let (status, body, www) = get_with_auth(&client, &base, value).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], "invalid_token", "{what}: {body}");
        assert_eq!(body["relogin"], true, "{what}");
        assert!(www, "{what}: a 401 carries WWW-Authenticate");
    }

    // Raw header values: non-ASCII bytes, other schemes, empty tokens.
    let raw_cases: Vec<(&str, HeaderValue, &str)> = vec![
        (
            "non-ASCII bytes",
            HeaderValue::from_bytes(b"Bearer \xff\xfe\x80garbage").unwrap(),
            "invalid_token",
        ),
        (
            "non-ASCII inside a real token",
            HeaderValue::from_bytes(
                &[
                    b"Bearer ".as_slice(),
                    &token.as_bytes()[..20],
                    b"\xe9",
                    &token.as_bytes()[21..],
                ]
                .concat(),
            )
            .unwrap(),
            "invalid_token",
        ),
        (
            "Basic credentials",
            HeaderValue::from_static("Basic dXNlcjpwYXNzd29yZA=="),
            "missing_token",
        ),
        (
            "Basic with a real token",
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
            "missing_token",
        ),
        (
            "Bearer alone",
            HeaderValue::from_static("Bearer"),
            "missing_token",
        ),
        (
            "Bearer and spaces",
            HeaderValue::from_static("Bearer    "),
            "missing_token",
        ),
        (
            "empty header",
            HeaderValue::from_static(""),
            "missing_token",
        ),
        (
            "the token without a scheme",
            HeaderValue::from_str(&token).unwrap(),
            "missing_token",
        ),
    ];
    for (what, value, code) in raw_cases {
        let (status, body, www) = get_with_auth(&client, &base, value).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], code, "{what}: {body}");
        assert!(www, "{what}: a 401 carries WWW-Authenticate");
    }

    // No Authorization header at all.
    let (status, body) = get_json(&client, &format!("{base}/api/me"), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing_token");

    assert_eq!(
        store.total(),
        calls_after_login,
        "bad tokens must not reach the store"
    );

    // The real token still works (and is served from the cache).
    let (status, body) = get_json(&client, &format!("{base}/api/me"), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["openid"], "o-alice");
    assert_eq!(store.total(), calls_after_login);
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let fake = fake_wechat().await;
    let wx = builder(&fake).build().unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = HeaderValue::from_str(&format!("{scheme} {token}")).unwrap();
        let (status, body, _) = get_with_auth(&client, &base, value).await;
        assert_eq!(status, 200, "{scheme}: {body}");
    }
}

#[tokio::test]
async fn key_rotation_over_http() {
    let fake = fake_wechat().await;
    let store = MemoryStore::new(); // clones share their sessions
    let client = reqwest::Client::new();

    // The old deployment signs with A.
    let old = builder(&fake)
        .token_key(KEY_A)
        .store(store.clone())
        .build()
        .unwrap();
    let old_base = serve(app(&old)).await;
    let token_a = login(&client, &old_base, &fake, "o-alice").await;

    // The new deployment signs with B and still verifies A.
    let rotated = builder(&fake)
        .token_key(KEY_B)
        .token_key(KEY_A)
        .store(store.clone())
        .build()
        .unwrap();
    let rotated_base = serve(app(&rotated)).await;
    let (status, body) = get_json(&client, &format!("{rotated_base}/api/me"), Some(&token_a)).await;
    assert_eq!(
        status, 200,
        "a token signed with the old key still works: {body}"
    );
    assert_eq!(body["openid"], "o-alice");

    let token_b = login(&client, &rotated_base, &fake, "o-bob").await;
    assert_ne!(token_a, token_b);
    let (status, body) = get_json(&client, &format!("{rotated_base}/api/me"), Some(&token_b)).await;
    assert_eq!(status, 200);
    assert_eq!(body["openid"], "o-bob");

    // An instance that only knows A: its own tokens work, B-signed ones do not.
    let only_a_store = CountingStore::wrap(store.clone());
    let only_a = builder(&fake)
        .token_key(KEY_A)
        .store(only_a_store.clone())
        .build()
        .unwrap();
    let only_a_base = serve(app(&only_a)).await;
    let (status, body) = get_json(&client, &format!("{only_a_base}/api/me"), Some(&token_b)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(only_a_store.total(), 0, "refused by the MAC check alone");
    let (status, body) = get_json(&client, &format!("{only_a_base}/api/me"), Some(&token_a)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["openid"], "o-alice");

    // And an instance that only knows B refuses A-signed tokens.
    let only_b = builder(&fake)
        .token_key(KEY_B)
        .store(store.clone())
        .build()
        .unwrap();
    let only_b_base = serve(app(&only_b)).await;
    let (status, body) = get_json(&client, &format!("{only_b_base}/api/me"), Some(&token_a)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
    let (status, _) = get_json(&client, &format!("{only_b_base}/api/me"), Some(&token_b)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn custom_token_header() {
    let fake = fake_wechat().await;
    let store = CountingStore::new();
    let wx = builder(&fake)
        .token_header("X-WX-Session")
        .store(store.clone())
        .build()
        .unwrap();
    let base = serve(app(&wx)).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, &fake, "o-alice").await;
    let url = format!("{base}/api/me");

    let res = client
        .get(&url)
        .header("X-WX-Session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["openid"], "o-alice");

    // Bearer is ignored when a custom header is configured.
    let (status, body) = get_json(&client, &url, Some(&token)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing_token");

    // A bad value in the custom header is refused without a store call.
    let before = store.total();
    let res = client
        .get(&url)
        .header("X-WX-Session", random_token_like(46))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    let res = client
        .get(&url)
        .header("X-WX-Session", "")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "missing_token");
    assert_eq!(store.total(), before);

    // Logout reads the same header.
    let res = client
        .post(format!("{base}/wx/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "logout ignores Bearer too");
    let res = client
        .post(format!("{base}/wx/logout"))
        .header("X-WX-Session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = client
        .get(&url)
        .header("X-WX-Session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
}
