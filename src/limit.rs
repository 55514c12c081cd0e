//! Abuse limits on the login route: a cap on concurrent code exchanges and a
//! token bucket on exchanges per second. Over either, the client gets
//! `429 rate_limited` with `Retry-After` at once instead of queuing, which
//! protects the app's WeChat quota and the server's memory.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct LoginLimiter {
    concurrent: Arc<Semaphore>,
    bucket: Option<Mutex<Bucket>>,
}

struct Bucket {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

/// Which limit refused an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Concurrency,
    Rate,
}

impl LoginLimiter {
    /// `per_second` of 0 disables the rate limit; the burst equals one second's worth.
    pub(crate) fn new(concurrent: usize, per_second: u32) -> Self {
        LoginLimiter {
            concurrent: Arc::new(Semaphore::new(concurrent)),
            bucket: (per_second > 0).then(|| {
                Mutex::new(Bucket {
                    per_second: f64::from(per_second),
                    tokens: f64::from(per_second),
                    last: Instant::now(),
                })
            }),
        }
    }

    /// A permit for one exchange, held until it ends; or why not.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, Refused> {
        let permit = self
            .concurrent
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Concurrency)?;
        if let Some(bucket) = &self.bucket {
            let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(b.last).as_secs_f64() * b.per_second;
            b.tokens = (b.tokens + refill).min(b.per_second);
            b.last = now;
            if b.tokens < 1.0 {
                return Err(Refused::Rate);
            }
            b.tokens -= 1.0;
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_cap_releases_on_drop() {
        let l = LoginLimiter::new(2, 0);
        let a = l.admit().unwrap();
        let _b = l.admit().unwrap();
        assert_eq!(l.admit().unwrap_err(), Refused::Concurrency);
        drop(a);
        assert!(l.admit().is_ok());
    }

    #[test]
    fn rate_limit_allows_a_burst_then_refuses() {
        let l = LoginLimiter::new(1000, 5);
        let admitted = (0..20).filter(|_| l.admit().is_ok()).count();
        assert_eq!(admitted, 5);
    }
}
