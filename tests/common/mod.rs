//! Shared test support: a counting store, a loopback server, a login helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::Router;
use wxlogin::mock::FakeWeChat;
use wxlogin::store::{MemoryStore, SessionRecord, SessionStore, StoreFuture, StoreId};

pub const APP_ID: &str = "wxtest0000000001";
pub const APP_SECRET: &str = "test-app-secret-do-not-leak";

/// Counts every store call, then delegates to an inner store.
#[derive(Clone, Default)]
pub struct CountingStore<S = MemoryStore> {
    pub inner: S,
    pub creates: Arc<AtomicUsize>,
    pub loads: Arc<AtomicUsize>,
    pub deletes: Arc<AtomicUsize>,
    pub touches: Arc<AtomicUsize>,
    pub delete_users: Arc<AtomicUsize>,
}

impl CountingStore<MemoryStore> {
    pub fn new() -> Self {
        Self::wrap(MemoryStore::new())
    }
}

impl<S> CountingStore<S> {
    pub fn wrap(inner: S) -> Self {
        CountingStore {
            inner,
            creates: Arc::default(),
            loads: Arc::default(),
            deletes: Arc::default(),
            touches: Arc::default(),
            delete_users: Arc::default(),
        }
    }

    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    pub fn total(&self) -> usize {
        self.creates.load(Ordering::SeqCst)
            + self.loads.load(Ordering::SeqCst)
            + self.deletes.load(Ordering::SeqCst)
            + self.touches.load(Ordering::SeqCst)
            + self.delete_users.load(Ordering::SeqCst)
    }
}

impl<S: SessionStore> SessionStore for CountingStore<S> {
    fn create(&self, id: StoreId, record: SessionRecord) -> StoreFuture<'_, ()> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.inner.create(id, record)
    }
    fn load(&self, id: StoreId) -> StoreFuture<'_, Option<SessionRecord>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id)
    }
    fn delete(&self, id: StoreId) -> StoreFuture<'_, bool> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(id)
    }
    fn touch(&self, id: StoreId, idle_expires_at_ms: u64) -> StoreFuture<'_, bool> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.inner.touch(id, idle_expires_at_ms)
    }
    fn delete_user(&self, openid: &str) -> StoreFuture<'_, Vec<StoreId>> {
        self.delete_users.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_user(openid)
    }
    fn create_capped(
        &self,
        id: StoreId,
        record: SessionRecord,
        max_per_user: usize,
    ) -> StoreFuture<'_, Vec<StoreId>> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.inner.create_capped(id, record, max_per_user)
    }
    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
    fn put_latest_session_key(
        &self,
        openid: &str,
        session_key: wxlogin::Secret,
        until_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.inner
            .put_latest_session_key(openid, session_key, until_ms)
    }
    fn latest_session_key(&self, openid: &str) -> StoreFuture<'_, Option<wxlogin::Secret>> {
        self.inner.latest_session_key(openid)
    }
    fn access_token_cache(&self) -> Option<&dyn wxlogin::store::AccessTokenCache> {
        self.inner.access_token_cache()
    }
    fn watch_invalidations(&self, sink: wxlogin::store::InvalidationSink) {
        self.inner.watch_invalidations(sink)
    }
}

/// Serves a router on a free loopback port; returns `http://127.0.0.1:PORT`.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// Like [`serve`], with each connection's peer address in the request
/// extensions (axum's `ConnectInfo<SocketAddr>`), as the demo serves.
pub async fn serve_with_peers(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// A client whose connections come from `local` (any 127.x.y.z works on
/// loopback), so that a server sees it as its own address.
pub fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A fake WeChat for APP_ID / APP_SECRET.
pub async fn fake_wechat() -> FakeWeChat {
    FakeWeChat::start(APP_ID, APP_SECRET).await.unwrap()
}

/// Logs `openid` in through the login route at `base`; returns the token.
pub async fn login(
    client: &reqwest::Client,
    base: &str,
    fake: &FakeWeChat,
    openid: &str,
) -> String {
    let code = fake.mint_code(openid);
    let res = client
        .post(format!("{base}/wx/login"))
        .body(format!(r#"{{"code":"{code}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login of {openid} failed");
    let body: serde_json::Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// GETs `path` with a bearer token (or none); returns status and JSON body (Null if not JSON).
pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}
