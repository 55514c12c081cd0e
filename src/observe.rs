//! What the crate reports about itself: `metrics` counters (feature
//! `metrics`) beside the `tracing` events and spans in the code paths.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `wxlogin_logins_total` | counter | `outcome`: `ok` or an error-table code |
//! | `wxlogin_cache_total` | counter | `result`: `hit` or `miss` |
//! | `wxlogin_rejections_total` | counter | `error`: an error-table code (layer and logout) |
//! | `wxlogin_store_errors_total` | counter | `op`: `load`, `create`, `delete`, `touch`, `delete_user`, `put_latest_session_key` |
//! | `wxlogin_store_seconds` | histogram | `op` |
//! | `wxlogin_wechat_seconds` | histogram | `outcome`: `ok` or an error-table code |
//!
//! No metric has a user-specific label (no openid, no token): cardinality
//! stays fixed. Without the feature every function here is empty and inlined
//! away.

#[cfg(feature = "metrics")]
mod imp {
    use std::time::Duration;

    /// `metrics::$kind!($name, $label => value)`, with a literal label value
    /// when `value` is one of `$known`. A literal makes the metric's key a
    /// constant; a label value from a variable builds (and allocates) the key
    /// on every call.
    macro_rules! labelled {
        ($kind:ident, $name:literal, $label:literal, $value:expr, [$($known:literal),* $(,)?]) => {
            match $value {
                $($known => metrics::$kind!($name, $label => $known),)*
                other => metrics::$kind!($name, $label => other),
            }
        };
    }

    /// Every error-table code, and `ok`.
    macro_rules! outcome {
        ($kind:ident, $name:literal, $label:literal, $value:expr) => {
            labelled!(
                $kind,
                $name,
                $label,
                $value,
                [
                    "ok",
                    "missing_token",
                    "invalid_token",
                    "session_expired",
                    "store_unavailable",
                    "bad_request",
                    "invalid_code",
                    "rate_limited",
                    "user_restricted",
                    "login_refused",
                    "wechat_unavailable",
                    "misconfigured",
                ]
            )
        };
    }

    #[inline]
    pub(crate) fn login(outcome: &'static str) {
        outcome!(counter, "wxlogin_logins_total", "outcome", outcome).increment(1);
    }

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
        outcome!(counter, "wxlogin_rejections_total", "error", code).increment(1);
    }

    pub(crate) fn store(op: &'static str, elapsed: Duration, ok: bool) {
        macro_rules! by_op {
            ($kind:ident, $name:literal) => {
                labelled!(
                    $kind,
                    $name,
                    "op",
                    op,
                    [
                        "load",
                        "create",
                        "delete",
                        "delete_user",
                        "touch",
                        "put_latest_session_key",
                    ]
                )
            };
        }
        by_op!(histogram, "wxlogin_store_seconds").record(elapsed.as_secs_f64());
        if !ok {
            by_op!(counter, "wxlogin_store_errors_total").increment(1);
        }
    }

    pub(crate) fn wechat(outcome: &'static str, elapsed: Duration) {
        outcome!(histogram, "wxlogin_wechat_seconds", "outcome", outcome)
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
