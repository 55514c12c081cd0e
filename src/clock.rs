//! The server clock: milliseconds since the Unix epoch, the unit of every
//! session time and store deadline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, by the server clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, by the server clock (WeChat's timestamps).
#[cfg(any(feature = "mock", feature = "pay"))]
pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}

pub(crate) fn ms_to_system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
