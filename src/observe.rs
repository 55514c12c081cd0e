//! What the crate reports about itself: `metrics` counters (feature
//! `metrics`) beside the `tracing` events and spans in the code paths.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `wxlogin_logins_total` | counter | `outcome`: `ok` or an error-table code |
//! | `wxlogin_cache_total` | counter | `result`: `hit` or `miss` |
//! | `wxlogin_rejections_total` | counter | `error`: an error-table code (layer and logout) |
//! | `wxlogin_store_errors_total` | counter | `op`: `load`, `create` (a login's one store step), `delete`, `touch`, `delete_user` |
//! | `wxlogin_store_seconds` | histogram | `op` |
//! | `wxlogin_wechat_seconds` | histogram | `outcome`: `ok` or an error-table code |
//!
//! No metric has a user-specific label (no openid, no token): cardinality
//! stays fixed. Without the feature every function here is empty and inlined
//! away.

#[cfg(feature = "metrics")]
mod imp {
    use std::time::Duration;

    use crate::ErrorCode;

    // Every label value below is a literal, which makes the metric's key a
    // constant; a label value from a variable builds (and allocates) the key
    // on every call.

    /// `metrics::$kind!($name, $label => ..)` with `ok` for `None` and the
    /// error-table code for `Some(code)`: a jump on the enum, no string compare.
    macro_rules! by_outcome {
        ($kind:ident, $name:literal, $label:literal, $outcome:expr) => {
            match $outcome {
                None => metrics::$kind!($name, $label => "ok"),
                Some(ErrorCode::MissingToken) => metrics::$kind!($name, $label => "missing_token"),
                Some(ErrorCode::InvalidToken) => metrics::$kind!($name, $label => "invalid_token"),
                Some(ErrorCode::SessionExpired) => metrics::$kind!($name, $label => "session_expired"),
                Some(ErrorCode::StoreUnavailable) => metrics::$kind!($name, $label => "store_unavailable"),
                Some(ErrorCode::BadRequest) => metrics::$kind!($name, $label => "bad_request"),
                Some(ErrorCode::InvalidCode) => metrics::$kind!($name, $label => "invalid_code"),
                Some(ErrorCode::RateLimited) => metrics::$kind!($name, $label => "rate_limited"),
                Some(ErrorCode::UserRestricted) => metrics::$kind!($name, $label => "user_restricted"),
                Some(ErrorCode::LoginRefused) => metrics::$kind!($name, $label => "login_refused"),
                Some(ErrorCode::WeChatUnavailable) => metrics::$kind!($name, $label => "wechat_unavailable"),
                Some(ErrorCode::Misconfigured) => metrics::$kind!($name, $label => "misconfigured"),
                Some(ErrorCode::PaymentFailed) => metrics::$kind!($name, $label => "payment_failed"),
                Some(ErrorCode::PaymentUnavailable) => metrics::$kind!($name, $label => "payment_unavailable"),
            }
        };
    }

    #[inline]
    pub(crate) fn login(outcome: Option<ErrorCode>) {
        by_outcome!(counter, "wxlogin_logins_total", "outcome", outcome).increment(1);
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
    pub(crate) fn rejected(code: ErrorCode) {
        by_outcome!(counter, "wxlogin_rejections_total", "error", Some(code)).increment(1);
    }

    pub(crate) fn store(op: &'static str, elapsed: Duration, ok: bool) {
        // `metrics::$kind!($name, "op" => op)`, a literal for every store method.
        macro_rules! store_op {
            ($kind:ident, $name:literal) => {
                store_op!(@ $kind, $name, [
                    "load", "create", "delete", "delete_user", "touch"
                ])
            };
            (@ $kind:ident, $name:literal, [$($known:literal),*]) => {
                match op {
                    $($known => metrics::$kind!($name, "op" => $known),)*
                    other => metrics::$kind!($name, "op" => other),
                }
            };
        }
        store_op!(histogram, "wxlogin_store_seconds").record(elapsed.as_secs_f64());
        if !ok {
            store_op!(counter, "wxlogin_store_errors_total").increment(1);
        }
    }

    pub(crate) fn wechat(outcome: Option<ErrorCode>, elapsed: Duration) {
        by_outcome!(histogram, "wxlogin_wechat_seconds", "outcome", outcome)
            .record(elapsed.as_secs_f64());
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use metrics_util::debugging::DebuggingRecorder;

        /// The literal label of every code is the code's own text.
        #[test]
        fn every_outcome_label_is_the_codes_text() {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            let codes = [
                ErrorCode::MissingToken,
                ErrorCode::InvalidToken,
                ErrorCode::SessionExpired,
                ErrorCode::StoreUnavailable,
                ErrorCode::BadRequest,
                ErrorCode::InvalidCode,
                ErrorCode::RateLimited,
                ErrorCode::UserRestricted,
                ErrorCode::LoginRefused,
                ErrorCode::WeChatUnavailable,
                ErrorCode::Misconfigured,
            ];
            metrics::with_local_recorder(&recorder, || {
                login(None);
                for code in codes {
                    rejected(code);
                }
            });
            let mut seen: Vec<(String, String)> = snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, _)| {
                    let key = key.key().clone();
                    let label = key.labels().next().unwrap();
                    (key.name().to_owned(), label.value().to_owned())
                })
                .collect();
            seen.sort();
            let mut want: Vec<(String, String)> = codes
                .iter()
                .map(|c| ("wxlogin_rejections_total".into(), c.as_str().into()))
                .chain([("wxlogin_logins_total".into(), "ok".into())])
                .collect();
            want.sort();
            assert_eq!(seen, want);
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use std::time::Duration;

    use crate::ErrorCode;

    #[inline(always)]
    pub(crate) fn login(_outcome: Option<ErrorCode>) {}
    #[inline(always)]
    pub(crate) fn cache(_hit: bool) {}
    #[inline(always)]
    pub(crate) fn rejected(_code: ErrorCode) {}
    #[inline(always)]
    pub(crate) fn store(_op: &'static str, _elapsed: Duration, _ok: bool) {}
    #[inline(always)]
    pub(crate) fn wechat(_outcome: Option<ErrorCode>, _elapsed: Duration) {}
}

pub(crate) use imp::*;
