//! Abuse limits on the login route: per client, a token bucket and a share
//! of the concurrency; for the whole process, a cap on concurrent code
//! exchanges and a token bucket on exchanges per second. Over any of them,
//! the client gets `429 rate_limited` with `Retry-After` at once instead of
//! queuing, which protects the app's WeChat quota and the server's memory.
//!
//! A client's own limits are checked first, so a client over them uses
//! none of the global budget: one address flooding the route with codes is
//! refused by its own bucket while other addresses keep logging in.
//!
//! The clients are kept in a bounded map: an entry whose bucket has filled
//! up again and has no exchange in flight carries no information, so it is
//! dropped when the map is full; if the map is still full of live entries
//! (a flood from many addresses), new keys share one overflow entry, limited
//! as one client, rather than growing memory or going unlimited.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::request::Parts;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many clients the per-client limits remember at most.
pub(crate) const MAX_CLIENTS: usize = 65_536;

/// How often a full client map may be swept of entries that carry nothing.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Who a login comes from, for the per-client login limits: an IP address
/// (IPv6 by its /64, which one subscriber usually holds whole), or any
/// text the app chooses (kept as a keyed hash, so its length costs nothing).
///
/// By default the key is the peer address of the connection; an app behind
/// a proxy builds its own with
/// [`WxLoginBuilder::login_client_key`](crate::WxLoginBuilder::login_client_key).
///
/// ```
/// use std::net::IpAddr;
/// use wxlogin::ClientKey;
///
/// let a = ClientKey::from("203.0.113.7".parse::<IpAddr>()?);
/// assert_eq!(a, ClientKey::from("203.0.113.7:51234".parse::<std::net::SocketAddr>()?));
/// // IPv6: one /64 is one client.
/// let b = ClientKey::from("2001:db8:1:2::1".parse::<IpAddr>()?);
/// assert_eq!(b, ClientKey::from("2001:db8:1:2:ffff::9".parse::<IpAddr>()?));
/// assert_ne!(b, ClientKey::from("2001:db8:1:3::1".parse::<IpAddr>()?));
/// // An IPv4 address seen through an IPv6 socket is the same client.
/// assert_eq!(a, ClientKey::from("::ffff:203.0.113.7".parse::<IpAddr>()?));
/// // Any other key, such as an API gateway's client id.
/// assert_eq!(ClientKey::from("tenant-42"), ClientKey::from("tenant-42".to_owned()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(Key);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
    /// A keyed hash of the app's text.
    Text(u64),
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Key::V4(a) => write!(f, "ClientKey({})", std::net::Ipv4Addr::from(a)),
            Key::V6(p) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(&p);
                write!(f, "ClientKey({}/64)", std::net::Ipv6Addr::from(full))
            }
            Key::Text(_) => f.write_str("ClientKey(text)"),
        }
    }
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey(Key::V4(v4.octets())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(Key::V4(v4.octets())),
                None => {
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&v6.octets()[..8]);
                    ClientKey(Key::V6(net))
                }
            },
        }
    }
}

impl From<SocketAddr> for ClientKey {
    fn from(addr: SocketAddr) -> Self {
        addr.ip().into()
    }
}

impl From<&str> for ClientKey {
    fn from(text: &str) -> Self {
        // Keyed per process: nobody outside can aim two keys at one slot.
        static HASHER: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        ClientKey(Key::Text(
            HASHER
                .get_or_init(std::collections::hash_map::RandomState::new)
                .hash_one(text),
        ))
    }
}

impl From<String> for ClientKey {
    fn from(text: String) -> Self {
        text.as_str().into()
    }
}

/// The app's own client key: given the request's parts, the key, or `None`
/// to fall back to the connection's peer address.
pub(crate) type ClientKeyFn = Arc<dyn Fn(&Parts) -> Option<ClientKey> + Send + Sync>;

/// The peer address a server put in the request extensions: a
/// `std::net::SocketAddr` (what a hyper app inserts), or axum's
/// `ConnectInfo<SocketAddr>` (from `into_make_service_with_connect_info`).
pub(crate) fn peer_key(parts: &Parts) -> Option<ClientKey> {
    peer_addr(parts).map(ClientKey::from)
}

/// The peer address the server put in the extensions: a `SocketAddr`, or
/// axum's `ConnectInfo<SocketAddr>`.
pub(crate) fn peer_addr(parts: &Parts) -> Option<SocketAddr> {
    if let Some(addr) = parts.extensions.get::<SocketAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0);
    }
    None
}

/// The per-client limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientLimits {
    /// Exchanges per second, and as many at once (the burst).
    pub(crate) per_second: u32,
    /// Exchanges in flight at once.
    pub(crate) concurrency: usize,
}

pub(crate) struct LoginLimiter {
    concurrent: Arc<Semaphore>,
    bucket: Option<Mutex<Bucket>>,
    clients: Option<Mutex<Clients>>,
    client_limits: ClientLimits,
    /// Set once the "no client key" warning was logged.
    warned_keyless: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(per_second: u32, now: Instant) -> Self {
        Bucket {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            last: now,
        }
    }

    /// Refills for the time passed; the burst is one second's worth.
    fn refill(&mut self, now: Instant) {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second);
        self.last = now;
    }

    /// Whole seconds until a token is there (at least 1).
    fn wait_secs(&self) -> u64 {
        let missing = (1.0 - self.tokens).max(0.0);
        ((missing / self.per_second).ceil() as u64).max(1)
    }

    /// Whether the bucket will be full by `now` (an entry that forgets nothing).
    fn is_full_at(&self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens + refill >= self.per_second
    }
}

struct ClientState {
    bucket: Bucket,
    in_flight: usize,
}

/// Where a client's state lives: its own entry, or the shared overflow one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Own(ClientKey),
    Overflow,
}

struct Clients {
    map: HashMap<ClientKey, ClientState>,
    overflow: ClientState,
    next_prune: Instant,
}

/// Which limit refused an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Concurrency,
    Rate,
    ClientConcurrency,
    /// With the seconds until the client's bucket has a token again.
    ClientRate(u64),
}

impl Refused {
    /// The `Retry-After` to send, in seconds.
    pub(crate) fn retry_after(self) -> u64 {
        match self {
            Refused::ClientRate(secs) => secs,
            _ => 1,
        }
    }
}

/// A permit for one exchange: gives back its share of the concurrency when dropped.
pub(crate) struct LoginPermit<'a> {
    _global: OwnedSemaphorePermit,
    client: Option<(&'a LoginLimiter, Slot)>,
}

impl Drop for LoginPermit<'_> {
    fn drop(&mut self) {
        if let Some((limiter, slot)) = self.client {
            if let Some(clients) = &limiter.clients {
                let mut clients = lock(clients);
                let state = match slot {
                    Slot::Own(key) => clients.map.get_mut(&key),
                    Slot::Overflow => Some(&mut clients.overflow),
                };
                if let Some(state) = state {
                    state.in_flight = state.in_flight.saturating_sub(1);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LoginLimiter {
    /// `per_second` of 0 disables the global rate limit; a client
    /// `per_second` of 0 disables the per-client limits. Bursts equal one
    /// second's worth.
    pub(crate) fn new(concurrent: usize, per_second: u32, client_limits: ClientLimits) -> Self {
        let now = Instant::now();
        LoginLimiter {
            concurrent: Arc::new(Semaphore::new(concurrent)),
            bucket: (per_second > 0).then(|| Mutex::new(Bucket::full(per_second, now))),
            clients: (client_limits.per_second > 0).then(|| {
                Mutex::new(Clients {
                    map: HashMap::new(),
                    overflow: ClientState {
                        bucket: Bucket::full(client_limits.per_second, now),
                        in_flight: 0,
                    },
                    next_prune: now,
                })
            }),
            client_limits,
            warned_keyless: AtomicBool::new(false),
        }
    }

    /// A permit for one exchange by `client`, held until it ends; or why not.
    /// Without a key (the server gave no peer address, and the app no key)
    /// only the global limits apply, and that is logged once.
    pub(crate) fn admit(&self, client: Option<ClientKey>) -> Result<LoginPermit<'_>, Refused> {
        self.admit_at(client, Instant::now())
    }

    /// [`LoginLimiter::admit`] at the moment `now` (tests pass a fixed one).
    fn admit_at(
        &self,
        client: Option<ClientKey>,
        now: Instant,
    ) -> Result<LoginPermit<'_>, Refused> {
        let clients = match (&self.clients, client) {
            (Some(clients), Some(key)) => Some((clients, key)),
            (Some(_), None) => {
                if !self.warned_keyless.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "wxlogin: a login request carries no client address, so the per-client \
                         login limits are off (only the global ones apply): serve axum with \
                         into_make_service_with_connect_info::<SocketAddr>(), insert the peer \
                         SocketAddr into a hyper request's extensions, or set login_client_key"
                    );
                }
                None
            }
            (None, _) => None,
        };
        let Some((clients, key)) = clients else {
            return Ok(LoginPermit {
                _global: self.admit_global(now)?,
                client: None,
            });
        };
        // The client's limits first, under its lock: a refused client takes
        // nothing from the global budget.
        let mut clients = lock(clients);
        let slot = self.slot(&mut clients, key, now);
        let state = match slot {
            Slot::Own(key) => clients.map.get_mut(&key).expect("the slot was just made"),
            Slot::Overflow => &mut clients.overflow,
        };
        state.bucket.refill(now);
        if state.in_flight >= self.client_limits.concurrency {
            return Err(Refused::ClientConcurrency);
        }
        if state.bucket.tokens < 1.0 {
            return Err(Refused::ClientRate(state.bucket.wait_secs()));
        }
        let global = self.admit_global(now)?;
        state.bucket.tokens -= 1.0;
        state.in_flight += 1;
        Ok(LoginPermit {
            _global: global,
            client: Some((self, slot)),
        })
    }

    /// The global concurrency permit and rate token.
    fn admit_global(&self, now: Instant) -> Result<OwnedSemaphorePermit, Refused> {
        let permit = self
            .concurrent
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Concurrency)?;
        if let Some(bucket) = &self.bucket {
            let mut b = lock(bucket);
            b.refill(now);
            if b.tokens < 1.0 {
                return Err(Refused::Rate);
            }
            b.tokens -= 1.0;
        }
        Ok(permit)
    }

    /// The client's entry, made if new; the overflow entry if the map is
    /// full of entries that still carry something.
    fn slot(&self, clients: &mut Clients, key: ClientKey, now: Instant) -> Slot {
        if clients.map.contains_key(&key) {
            return Slot::Own(key);
        }
        if clients.map.len() >= MAX_CLIENTS && now >= clients.next_prune {
            clients
                .map
                .retain(|_, s| s.in_flight > 0 || !s.bucket.is_full_at(now));
            clients.next_prune = now + PRUNE_INTERVAL;
        }
        if clients.map.len() >= MAX_CLIENTS {
            return Slot::Overflow;
        }
        clients.map.insert(
            key,
            ClientState {
                bucket: Bucket::full(self.client_limits.per_second, now),
                in_flight: 0,
            },
        );
        Slot::Own(key)
    }

    /// How many clients are remembered (tests).
    #[cfg(test)]
    fn clients_len(&self) -> usize {
        self.clients.as_ref().map_or(0, |c| lock(c).map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_CLIENT_LIMITS: ClientLimits = ClientLimits {
        per_second: 0,
        concurrency: usize::MAX,
    };

    fn ip(text: &str) -> Option<ClientKey> {
        Some(text.parse::<IpAddr>().unwrap().into())
    }

    fn nth(i: u32) -> Option<ClientKey> {
        Some(ClientKey::from(IpAddr::from(i.to_be_bytes())))
    }

    /// A limiter and one moment after its making: no refill between calls at it.
    fn limiter(
        concurrent: usize,
        per_second: u32,
        client: ClientLimits,
    ) -> (LoginLimiter, Instant) {
        let l = LoginLimiter::new(concurrent, per_second, client);
        (l, Instant::now())
    }

    #[test]
    fn concurrency_cap_releases_on_drop() {
        let (l, now) = limiter(2, 0, NO_CLIENT_LIMITS);
        let a = l.admit_at(None, now).unwrap();
        let _b = l.admit_at(None, now).unwrap();
        assert_eq!(l.admit_at(None, now).err(), Some(Refused::Concurrency));
        drop(a);
        assert!(l.admit_at(None, now).is_ok());
    }

    #[test]
    fn rate_limit_allows_a_burst_then_refuses_then_refills() {
        let (l, now) = limiter(1000, 5, NO_CLIENT_LIMITS);
        let admitted = (0..20).filter(|_| l.admit_at(None, now).is_ok()).count();
        assert_eq!(admitted, 5);
        let later = now + Duration::from_millis(400);
        assert_eq!(
            (0..20).filter(|_| l.admit_at(None, later).is_ok()).count(),
            2
        );
    }

    #[test]
    fn each_client_has_its_own_bucket_and_share_before_the_global_ones() {
        let limits = ClientLimits {
            per_second: 3,
            concurrency: 2,
        };
        let (l, now) = limiter(100, 10, limits);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let first = l.admit_at(a, now).unwrap();
        let second = l.admit_at(a, now).unwrap();
        assert_eq!(l.admit_at(a, now).err(), Some(Refused::ClientConcurrency));
        drop((first, second));
        assert!(l.admit_at(a, now).is_ok());
        // Three tokens a second: the fourth waits a second.
        assert_eq!(l.admit_at(a, now).err(), Some(Refused::ClientRate(1)));
        assert_eq!(Refused::ClientRate(1).retry_after(), 1);
        // The refusals took nothing from the global bucket: b gets its three.
        assert_eq!((0..5).filter(|_| l.admit_at(b, now).is_ok()).count(), 3);
        // 3 + 3 of the 10 global tokens are spent; other clients share the rest.
        let admitted = (0..7).filter(|&i| l.admit_at(nth(i), now).is_ok()).count();
        assert_eq!(admitted, 4);
        assert_eq!(l.admit_at(nth(99), now).err(), Some(Refused::Rate));
        // A second later a's bucket is full again.
        let later = now + Duration::from_secs(1);
        assert_eq!((0..5).filter(|_| l.admit_at(a, later).is_ok()).count(), 3);
    }

    #[test]
    fn without_a_key_only_the_global_limits_apply() {
        let limits = ClientLimits {
            per_second: 1,
            concurrency: 1,
        };
        let (l, now) = limiter(100, 0, limits);
        let held: Vec<_> = (0..10).map(|_| l.admit_at(None, now).unwrap()).collect();
        assert_eq!(held.len(), 10);
        assert_eq!(l.clients_len(), 0);
    }

    #[test]
    fn memory_for_clients_is_bounded_under_a_flood_of_distinct_keys() {
        let limits = ClientLimits {
            per_second: 1,
            concurrency: 8,
        };
        let (l, now) = limiter(usize::MAX >> 4, 0, limits);
        // Every remembered client has an exchange in flight: none can be forgotten.
        let mut held = Vec::new();
        let mut overflowed = 0;
        for i in 0..(MAX_CLIENTS + 1000) as u32 {
            match l.admit_at(nth(i), now) {
                Ok(permit) => held.push(permit),
                Err(Refused::ClientRate(_)) => overflowed += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(l.clients_len(), MAX_CLIENTS);
        // Past the bound, new keys share one overflow entry, limited as one
        // client: its single token went to the first of them.
        assert_eq!(held.len(), MAX_CLIENTS + 1);
        assert_eq!(overflowed, 999);
        // A known client keeps its own entry.
        assert!(matches!(
            l.admit_at(nth(0), now),
            Err(Refused::ClientRate(_))
        ));
        // Their exchanges over, the overflow share comes back.
        drop(held);
        let later = now + Duration::from_secs(1);
        assert!(l.admit_at(nth(MAX_CLIENTS as u32 + 5000), later).is_ok());
    }

    #[test]
    fn entries_that_carry_nothing_are_swept_when_the_map_is_full() {
        let limits = ClientLimits {
            per_second: 10,
            concurrency: 8,
        };
        let (l, now) = limiter(usize::MAX >> 4, 0, limits);
        for i in 0..MAX_CLIENTS as u32 {
            drop(l.admit_at(nth(i), now).unwrap());
        }
        assert_eq!(l.clients_len(), MAX_CLIENTS);
        // Still refilling: nothing can be forgotten, the newcomer overflows.
        let newcomer = ip("192.0.2.77");
        drop(l.admit_at(newcomer, now).unwrap());
        assert_eq!(l.clients_len(), MAX_CLIENTS);
        // A second later every bucket is full again, so none carries anything.
        let later = now + Duration::from_secs(1);
        drop(l.admit_at(newcomer, later).unwrap());
        assert_eq!(l.clients_len(), 1, "full, idle entries were forgotten");
    }

    #[test]
    fn keys_group_ipv6_by_64_and_hash_text() {
        assert_eq!(ip("2001:db8::1"), ip("2001:db8::ffff:1"));
        assert_ne!(ip("2001:db8::1"), ip("2001:db8:0:1::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ClientKey::from("a"), ClientKey::from("b"));
        assert_eq!(
            format!("{:?}", ip("192.0.2.1").unwrap()),
            "ClientKey(192.0.2.1)"
        );
        assert_eq!(
            format!("{:?}", ip("2001:db8::1").unwrap()),
            "ClientKey(2001:db8::/64)"
        );
        assert_eq!(
            format!("{:?}", ClientKey::from("secret-tenant")),
            "ClientKey(text)"
        );
    }
}
