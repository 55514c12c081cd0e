//! Resolving a session id the token named: how fresh a cached session is,
//! the idle extension on use, and the slow path through the store.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Engine;
use crate::cache::Found;
use crate::clock::now_ms;
use crate::error::{refusals, Rejection};
use crate::session::SessionState;
use crate::token::SessionId;

/// What a cached session says at this moment.
pub(crate) enum Freshness {
    Live,
    /// Past its absolute end.
    Expired,
    /// Past the idle deadline this process knows; another instance may have
    /// extended it, so the store decides.
    IdleUnsure,
}

impl<T> Engine<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    #[inline]
    pub(crate) fn freshness(&self, state: &SessionState<T>, now: u64) -> Freshness {
        if now >= state.core.expires_at_ms {
            return Freshness::Expired;
        }
        match state.core.idle_deadline() {
            Some(idle) if now >= idle => Freshness::IdleUnsure,
            _ => Freshness::Live,
        }
    }

    /// Extends an idle deadline on use, writing to the store at most once per
    /// refresh interval per session (per process).
    #[inline]
    pub(crate) fn touch_on_use(&self, state: &Arc<SessionState<T>>, now: u64) {
        let Some(idle_ms) = self.idle_timeout_ms else {
            return;
        };
        let current = state.core.idle_expires_at_ms.load(Ordering::Relaxed);
        // Still at least `idle` ahead: nothing to write.
        if now.saturating_add(idle_ms) <= current {
            return;
        }
        self.extend_idle(state, now, idle_ms, current);
    }

    /// The write behind `touch_on_use`, out of line: the hit path
    /// only reads the deadline.
    #[inline(never)]
    fn extend_idle(&self, state: &Arc<SessionState<T>>, now: u64, idle_ms: u64, current: u64) {
        let target = self.idle_target(now, idle_ms, state.core.expires_at_ms);
        if target <= current {
            return;
        }
        if state
            .core
            .idle_expires_at_ms
            .compare_exchange(current, target, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another request is writing it
        }
        let store = self.sessions.store().clone();
        let state = state.clone();
        let timeout = self.sessions.store_timeout();
        tokio::spawn(async move {
            let store_id = state.core.store_id;
            let failed = match tokio::time::timeout(timeout, store.touch(store_id, target)).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("timed out after {timeout:?}"),
            };
            // The store still has the old deadline: put it back here too, so
            // the next request writes again instead of trusting a deadline
            // that only this process knows (and the store ending the session
            // under an active user).
            let restored = state
                .core
                .idle_expires_at_ms
                .compare_exchange(target, current, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
            tracing::warn!(error = %failed, retried_on_next_use = restored, "wxlogin: idle extension failed");
        });
    }

    /// The slow path: resolve through the store (single-flight), for a
    /// layer taking the sessions of the `apps` mask.
    pub(crate) async fn resolve_slow(
        &self,
        id: SessionId,
        apps: u64,
    ) -> Result<Arc<SessionState<T>>, Rejection> {
        let now = now_ms();
        match self.sessions.resolve(id).await {
            Ok(Found::Live(state)) if state.core.app_bit & apps == 0 => {
                Err(self.reject_fixed(&refusals::OTHER_APP))
            }
            Ok(Found::Live(state)) => match self.freshness(&state, now) {
                Freshness::Live => {
                    self.touch_on_use(&state, now);
                    tracing::trace!(cache = "miss", outcome = "ok", "wxlogin: session resolved");
                    Ok(state)
                }
                _ => {
                    self.sessions.forget(&id);
                    Err(self.reject_fixed(&refusals::EXPIRED))
                }
            },
            Ok(Found::Expired) => Err(self.reject_fixed(&refusals::EXPIRED)),
            Ok(Found::Unknown) => Err(self.reject_fixed(&refusals::UNKNOWN)),
            Err(_) => Err(self.reject_fixed(&refusals::STORE_DOWN)),
        }
    }
}
