//! Tests for the rows of `docs/security.md` that no other test file shows:
//! what a leaked store is worth to an attacker, and why session fixation
//! does not apply. Over real HTTP on loopback against the fake WeChat.

mod common;

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreFuture, StoreId};

use common::{builder, fake_wechat, get_json, login, serve, Forward, Forwarding};

/// A memory store that also keeps a copy of everything written to it: the
/// attacker's dump.
#[derive(Clone, Default)]
struct DumpedStore {
    inner: MemoryStore,
    dump: Arc<Mutex<Vec<(StoreId, SessionRecord)>>>,
}

impl Forwarding for DumpedStore {
    fn inner(&self) -> &dyn SessionStore {
        &self.inner
    }
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        self.dump.lock().unwrap().push((id, record.clone()));
        self.inner.create(id, record)
    }
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        self.dump.lock().unwrap().push((id, record.clone()));
        self.inner.create_capped(id, record, max_per_user)
    }
}

async fn setup() -> (wxlogin::mock::FakeWeChat, DumpedStore, String) {
    let fake = fake_wechat().await;
    let store = DumpedStore::default();
    let wx = builder(&fake)
        .token_key("threat-model-token-key-0123456789")
        .store(Forward(store.clone()))
        .build()
        .unwrap();
    let base = serve(common::app(&wx)).await;
    (fake, store, base)
}

#[tokio::test]
async fn a_leaked_store_gives_no_working_token() {
    let (fake, store, base) = setup().await;
    let client = reqwest::Client::new();
    let me = format!("{base}/api/me");
    let victim = login(&client, &base, &fake, "o-victim").await;
    // The attacker has a session of their own, so they know the token format
    // and hold one valid version byte, key id and MAC.
    let own = login(&client, &base, &fake, "o-attacker").await;
    let own_raw = URL_SAFE_NO_PAD.decode(&own).unwrap();
    assert_eq!(own_raw.len(), 34);

    let dump = store.dump.lock().unwrap().clone();
    assert_eq!(dump.len(), 2);
    let (victim_id, victim_record) = dump
        .iter()
        .find(|(_, r)| r.openid == "o-victim")
        .cloned()
        .unwrap();

    // Nothing in the dump is, or contains, the victim's token.
    let record_text = format!(
        "{} {:?} {} {} {}",
        victim_record.openid,
        victim_record.unionid,
        victim_record.app_id,
        victim_record.session_key.expose(),
        String::from_utf8_lossy(&victim_record.data)
    );
    assert!(!record_text.contains(&victim), "{record_text}");
    assert!(!victim_id.to_string().contains(&victim));
    let victim_raw = URL_SAFE_NO_PAD.decode(&victim).unwrap();
    assert_ne!(
        &victim_raw[2..18],
        &victim_id.0[..],
        "the store keys by a hash, not the id"
    );

    // Every way to turn the dump into a token is refused.
    let mut candidates = vec![
        victim_id.to_string(),
        URL_SAFE_NO_PAD.encode(victim_id.0),
        victim_record.session_key.expose().to_owned(),
        victim_record.openid.clone(),
    ];
    // The store id in the id slot, with the attacker's own header and MAC,
    // and with an all-zero MAC.
    for mac in [own_raw[18..].to_vec(), vec![0u8; 16]] {
        let mut forged = own_raw[..2].to_vec();
        forged.extend_from_slice(&victim_id.0);
        forged.extend_from_slice(&mac);
        candidates.push(URL_SAFE_NO_PAD.encode(&forged));
    }
    for candidate in &candidates {
        let (status, body) = get_json(&client, &me, Some(candidate)).await;
        assert_eq!(status, 401, "{candidate}: {body}");
        assert_eq!(body["error"], "invalid_token", "{candidate}: {body}");
    }

    // The real tokens still work, each as its own user.
    let (status, body) = get_json(&client, &me, Some(&victim)).await;
    assert_eq!((status, &body["openid"]), (200, &Value::from("o-victim")));
    let (status, body) = get_json(&client, &me, Some(&own)).await;
    assert_eq!((status, &body["openid"]), (200, &Value::from("o-attacker")));
}

#[tokio::test]
async fn login_mints_a_fresh_token_whatever_token_the_request_carries() {
    // Session fixation needs the server to adopt a session id the attacker
    // chose. Here there is no anonymous session to plant, and login never
    // reads a token: it always mints a new random one.
    let (fake, store, base) = setup().await;
    let client = reqwest::Client::new();
    let me = format!("{base}/api/me");
    let attacker = login(&client, &base, &fake, "o-attacker").await;

    // The victim logs in on a client where the attacker planted their token.
    let res = client
        .post(format!("{base}/wx/login"))
        .bearer_auth(&attacker)
        .header("x-wx-session", &attacker)
        .header("cookie", format!("token={attacker}"))
        .body(json!({ "code": fake.mint_code("o-victim"), "token": attacker }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let victim = body["token"].as_str().unwrap().to_owned();
    assert_ne!(victim, attacker);

    // The planted token was not upgraded to the victim: it is still the
    // attacker's own session, and the victim's is a new one.
    let (status, body) = get_json(&client, &me, Some(&attacker)).await;
    assert_eq!((status, &body["openid"]), (200, &Value::from("o-attacker")));
    let (status, body) = get_json(&client, &me, Some(&victim)).await;
    assert_eq!((status, &body["openid"]), (200, &Value::from("o-victim")));
    let ids: Vec<StoreId> = store
        .dump
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);

    // Fifty logins of the same user: fifty different tokens.
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..50 {
        assert!(tokens.insert(login(&client, &base, &fake, "o-victim").await));
    }
}
