//! A TCP proxy on loopback in front of a Redis, for the faults and counts
//! the race and outage tests need (tests/store_faults.rs has its own, for
//! faults under load).
//!
//! Included as `#[path = "common/proxy.rs"] mod proxy;`. It can:
//! - refuse: close its listening socket and every open connection, until
//!   [`Proxy::pass`];
//! - stall the subscriber connections (those that sent `SUBSCRIBE`): they
//!   stay open and forward nothing, a half-dead subscription, while new
//!   connections pass;
//! - cut a connection once, at the first command that contains a byte
//!   pattern: the bytes before it reach Redis, the rest never do;
//! - delay every reply on the command connections (not the subscriber's);
//! - count round trips on the command connections: a round trip is a client
//!   write after the proxy forwarded a reply.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Shared {
    upstream: u16,
    /// Bumped to close every open connection.
    cut: watch::Sender<u64>,
    /// Bumped to stall every open subscriber connection.
    stall: watch::Sender<u64>,
    /// Cut the connection whose command bytes contain this, once.
    cut_at: Mutex<Option<Vec<u8>>>,
    round_trips: AtomicUsize,
    accepted: AtomicUsize,
    /// Milliseconds each reply on a command connection waits.
    reply_delay_ms: AtomicU64,
}

/// See the module docs.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    /// A proxy to the Redis on `upstream`, forwarding everything.
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            cut: watch::channel(0).0,
            stall: watch::channel(0).0,
            cut_at: Mutex::new(None),
            round_trips: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            reply_delay_ms: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Proxy {
            port,
            shared,
            accept: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Round trips on command connections so far.
    pub fn round_trips(&self) -> usize {
        self.shared.round_trips.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every open connection.
    pub async fn refuse(&self) {
        if let Some(task) = self.accept.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// Listens again (after [`Proxy::refuse`]).
    pub async fn pass(&self) {
        let mut accept = self.accept.lock().await;
        if accept.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot listen again: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        *accept = Some(tokio::spawn(accept_loop(listener, self.shared.clone())));
    }

    /// Stalls every open subscriber connection for good: it stays open and
    /// nothing passes either way. New connections are not affected.
    pub fn stall_subscribers(&self) {
        self.shared.stall.send_modify(|n| *n += 1);
    }

    /// Cuts the next connection whose commands contain `pattern`: what
    /// precedes the pattern is forwarded, then both sides are closed.
    pub fn cut_once_at(&self, pattern: &[u8]) {
        *self.shared.cut_at.lock().unwrap() = Some(pattern.to_vec());
    }

    /// Holds every reply on the command connections for `delay` before
    /// passing it on (zero: none); the commands themselves reach Redis at once.
    pub fn delay_replies(&self, delay: Duration) {
        self.shared
            .reply_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Whether the armed cut has happened.
    pub fn cut_done(&self) -> bool {
        self.shared.cut_at.lock().unwrap().is_none()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(relay(conn, shared.clone()));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.cut.subscribe();
    let Ok(server) = TcpStream::connect(("127.0.0.1", shared.upstream)).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let subscriber = Arc::new(AtomicBool::new(false));
    // Set when a reply went out: the next client write starts a round trip.
    let replied = Arc::new(AtomicBool::new(true));
    let stalled = |rx: &mut watch::Receiver<u64>, sub: &AtomicBool| {
        rx.has_changed().unwrap_or(false) && sub.load(Ordering::SeqCst)
    };
    let up = {
        let shared = shared.clone();
        let subscriber = subscriber.clone();
        let replied = replied.clone();
        let mut stall = shared.stall.subscribe();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = tokio::select! {
                    r = cr.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    },
                    _ = stall.changed() => {
                        if subscriber.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        continue;
                    }
                };
                if stalled(&mut stall, &subscriber) {
                    std::future::pending::<()>().await;
                }
                let data = &buf[..n];
                if find(data, b"SUBSCRIBE").is_some() {
                    subscriber.store(true, Ordering::SeqCst);
                }
                if !subscriber.load(Ordering::SeqCst) && replied.swap(false, Ordering::SeqCst) {
                    shared.round_trips.fetch_add(1, Ordering::SeqCst);
                }
                let cut_here = {
                    let mut armed = shared.cut_at.lock().unwrap();
                    match armed.as_deref().and_then(|p| find(data, p)) {
                        Some(at) => {
                            *armed = None;
                            Some(at)
                        }
                        None => None,
                    }
                };
                if let Some(at) = cut_here {
                    // Back up to the start of the RESP array holding the pattern.
                    let start = data[..at].iter().rposition(|&b| b == b'*').unwrap_or(0);
                    let _ = sw.write_all(&data[..start]).await;
                    let _ = sw.flush().await;
                    // Let Redis run what it got before the connection closes.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return;
                }
                if sw.write_all(data).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = {
        let subscriber = subscriber.clone();
        let shared = shared.clone();
        let mut stall = shared.stall.subscribe();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = tokio::select! {
                    r = sr.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    },
                    _ = stall.changed() => {
                        if subscriber.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        continue;
                    }
                };
                if stalled(&mut stall, &subscriber) {
                    std::future::pending::<()>().await;
                }
                let delay = shared.reply_delay_ms.load(Ordering::SeqCst);
                if delay > 0 && !subscriber.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                replied.store(true, Ordering::SeqCst);
                if cw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    // Returning drops both sockets: the app sees the connection close.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {}
    }
}
