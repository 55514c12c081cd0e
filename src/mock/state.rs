//! What the fake knows: its apps, the codes and tokens it minted, the
//! queued replies, the call counts; and the minting.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::*;
use crate::random::{random_alnum, random_bytes};

/// What the handles and the server tasks share.
pub(super) struct Shared {
    pub(super) app_id: String,
    pub(super) app_secret: String,
    pub(super) addr: SocketAddr,
    pub(super) calls: AtomicUsize,
    pub(super) stable_token_calls: AtomicUsize,
    pub(super) checksession_calls: AtomicUsize,
    pub(super) phone_number_calls: AtomicUsize,
    pub(super) state: Mutex<State>,
}

pub(super) struct State {
    /// Mini programs served besides the first, with their secrets.
    pub(super) more_apps: Vec<(String, String)>,
    pub(super) codes: HashMap<String, MintedCode>,
    /// `codes` is purged of expired codes when it reaches this size.
    pub(super) codes_purge_at: usize,
    /// The latest session_key handed out per openid.
    pub(super) session_keys: HashMap<String, String>,
    pub(super) replies: VecDeque<FakeReply>,
    pub(super) latency: Duration,
    pub(super) code_lifetime: Duration,
    /// Every access token still valid, and when it ends.
    pub(super) access_tokens: HashMap<String, Instant>,
    /// The newest access token, handed out again in normal mode.
    pub(super) current_access_token: Option<String>,
    pub(super) access_token_lifetime: Duration,
    pub(super) phone_codes: HashMap<String, PhoneCode>,
    pub(super) phone_codes_purge_at: usize,
}

/// Forgets a code map's expired entries once it has doubled since the last
/// pass, so a mint costs O(1) amortized (a pass on every mint made a long
/// load test's minting quadratic). Expired codes left in between answer
/// 40029 anyway: the exchange checks the expiry.
pub(super) fn purge_when_grown<V>(
    map: &mut HashMap<String, V>,
    purge_at: &mut usize,
    live: impl Fn(&V) -> bool,
) {
    if map.len() >= *purge_at {
        map.retain(|_, v| live(v));
        *purge_at = (map.len() * 2).max(PURGE_MIN);
    }
}

/// The size below which code maps are never purged.
pub(super) const PURGE_MIN: usize = 1024;

pub(super) struct PhoneCode {
    pub(super) phone_number: String,
    pub(super) country_code: String,
    pub(super) country_code_as_number: bool,
    pub(super) expires: Instant,
    pub(super) used: bool,
}

pub(super) struct MintedCode {
    /// The mini program the code was minted for; `None` is the first app.
    pub(super) app_id: Option<String>,
    pub(super) openid: String,
    pub(super) unionid: Option<String>,
    pub(super) expires: Instant,
    pub(super) used: bool,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge the other tests' fake.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn mint_phone_code(
        &self,
        phone_number: &str,
        country_code: &str,
        as_number: bool,
    ) -> String {
        // Shaped like WeChat's: 64 hex digits.
        let code = hex(&random_bytes::<32>());
        let now = Instant::now();
        let mut state = self.state();
        let state = &mut *state;
        purge_when_grown(
            &mut state.phone_codes,
            &mut state.phone_codes_purge_at,
            |minted| minted.expires > now,
        );
        state.phone_codes.insert(
            code.clone(),
            PhoneCode {
                phone_number: phone_number.to_owned(),
                country_code: country_code.to_owned(),
                country_code_as_number: as_number,
                expires: now + PHONE_CODE_LIFETIME,
                used: false,
            },
        );
        code
    }

    /// Whether WeChat would accept this access token now.
    pub(super) fn access_token_valid(&self, token: Option<&str>) -> bool {
        let Some(token) = token else {
            return false;
        };
        self.state()
            .access_tokens
            .get(token)
            .is_some_and(|expires| *expires > Instant::now())
    }

    pub(super) fn mint(&self, openid: &str, unionid: Option<&str>) -> String {
        self.mint_for(None, openid, unionid)
    }

    pub(super) fn mint_for(
        &self,
        app_id: Option<&str>,
        openid: &str,
        unionid: Option<&str>,
    ) -> String {
        let code = random_code();
        let mut state = self.state();
        let now = Instant::now();
        let expires = now + state.code_lifetime;
        // Expired codes answer 40029 like unknown ones: forget them.
        let state = &mut *state;
        purge_when_grown(&mut state.codes, &mut state.codes_purge_at, |minted| {
            minted.expires > now
        });
        state.codes.insert(
            code.clone(),
            MintedCode {
                app_id: app_id.map(str::to_owned),
                openid: openid.to_owned(),
                unionid: unionid.map(str::to_owned),
                expires,
                used: false,
            },
        );
        code
    }
}

/// 32 random ASCII letters and digits, the shape of a real `wx.login()`
/// code (about 190 bits).
pub(super) fn random_code() -> String {
    random_alnum(32)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
