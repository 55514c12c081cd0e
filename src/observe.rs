//! What the crate reports about itself: `metrics` counters (feature
//! `metrics`) beside the `tracing` events and spans in the code paths.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `wxlogin_logins_total` | counter | `outcome`: `ok` or an error-table code |
//! | `wxlogin_cache_total` | counter | `result`: `hit` or `miss` |
//! | `wxlogin_rejections_total` | counter | `error`: an error-table code (layer and logout) |
//! | `wxlogin_store_errors_total` | counter | `op`: `load`, `create`, `delete`, `touch`, `delete_user` |
//! | `wxlogin_store_seconds` | histogram | `op` |
//! | `wxlogin_wechat_seconds` | histogram | `outcome`: `ok` or an error-table code |
//!
//! No metric has a user-specific label (no openid, no token): cardinality
//! stays fixed. Without the feature every function here is empty and inlined
//! away.

#[cfg(feature = "metrics")]
mod imp {
    use std::time::Duration;

    #[inline]
    pub(crate) fn login(outcome: &'static str) {
        metrics::counter!("wxlogin_logins_total", "outcome" => outcome).increment(1);
    }

    // Literal label values make the metric's key a constant; a label value
    // from a variable would build (and allocate) the key on every call.

    #[inline]
    pub(crate) fn cache(hit: bool) {
        if hit {
            metrics::counter!("wxlogin_cache_total", "result" => "hit").increment(1);
        } else {
            metrics::counter!("wxlogin_cache_total", "result" => "miss").increment(1);
        }
    }

    #[inline]
    pub(crate) fn rejected(code: &'static str) {
        macro_rules! count {
            ($($code:literal),*) => {
                match code {
                    $($code => metrics::counter!("wxlogin_rejections_total", "error" => $code).increment(1),)*
                    other => metrics::counter!("wxlogin_rejections_total", "error" => other).increment(1),
                }
            };
        }
        // The layer's codes, the ones a flood of bad tokens produces.
        count!(
            "missing_token",
            "invalid_token",
            "session_expired",
            "store_unavailable"
        );
    }

    pub(crate) fn store(op: &'static str, elapsed: Duration, ok: bool) {
        metrics::histogram!("wxlogin_store_seconds", "op" => op).record(elapsed.as_secs_f64());
        if !ok {
            metrics::counter!("wxlogin_store_errors_total", "op" => op).increment(1);
        }
    }

    pub(crate) fn wechat(outcome: &'static str, elapsed: Duration) {
        metrics::histogram!("wxlogin_wechat_seconds", "outcome" => outcome)
            .record(elapsed.as_secs_f64());
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use std::time::Duration;

    #[inline(always)]
    pub(crate) fn login(_outcome: &'static str) {}
    #[inline(always)]
    pub(crate) fn cache(_hit: bool) {}
    #[inline(always)]
    pub(crate) fn rejected(_code: &'static str) {}
    #[inline(always)]
    pub(crate) fn store(_op: &'static str, _elapsed: Duration, _ok: bool) {}
    #[inline(always)]
    pub(crate) fn wechat(_outcome: &'static str, _elapsed: Duration) {}
}

pub(crate) use imp::*;
