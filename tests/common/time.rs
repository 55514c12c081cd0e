//! Time: the wall clock in milliseconds, and waiting for a condition with a
//! deadline instead of a fixed sleep.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (the clock session records use).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// How often [`wait_for`] polls.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it gives `Ok`; returns its value and how long that
/// took. Panics once `within` has passed, with the last `Err` (what the
/// probe saw instead).
pub async fn wait_for<T, F, Fut>(within: Duration, mut probe: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let seen = probe().await;
        let elapsed = started.elapsed();
        match seen {
            Ok(value) => return (value, elapsed),
            Err(seen) => assert!(elapsed < within, "after {elapsed:?}: {seen}"),
        }
        tokio::time::sleep(POLL).await;
    }
}
