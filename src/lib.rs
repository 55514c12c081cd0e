#![doc = include_str!("../docs/crate.md")]
// Links from the crate docs to feature-gated items: intra-doc links when the
// feature is on (docs.rs builds with every feature), docs.rs pages otherwise,
// so that a plain `cargo doc` has no broken links either.
#![cfg_attr(feature = "mock", doc = "\n[FakeWeChat]: mock::FakeWeChat")]
#![cfg_attr(
    not(feature = "mock"),
    doc = "\n[FakeWeChat]: https://docs.rs/wxlogin/latest/wxlogin/mock/struct.FakeWeChat.html"
)]
#![cfg_attr(feature = "redis", doc = "[RedisStore]: store::RedisStore")]
#![cfg_attr(
    not(feature = "redis"),
    doc = "[RedisStore]: https://docs.rs/wxlogin/latest/wxlogin/store/struct.RedisStore.html"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

// Layout. One concern a module, listed bottom-up: each module uses only
// the modules above it, so imports run one way (tests/layout.rs checks it,
// and that no file of src/ is over 900 lines, config.rs under 750).
//
//   secret      Secret: the wrapper whose Debug and Display redact
//   random      the OS random source: bytes, unbiased alphanumeric strings
//   clock       the server clock, in ms since the Unix epoch
//   error       the error table (one macro: codes, statuses, relogin flags,
//               metric labels, the layer's fixed bodies), Rejection, BuildError
//   observe     metrics (feature `metrics`), labels from the error table
//   crypto      open-data decryption, rawData and checksession signatures
//   mock        (feature `mock`) the fake WeChat: handle, state, server, endpoints
//   token       the token format (mint, parse, MAC) and its header read (TokenSource)
//   store       SessionStore and SessionRecord; memory, codec, redis/, the
//               shared access token
//   wechat      the WeChat API client: code2session, access token, APIs
//   session     the resolved session (core + typed data) and its context
//   cache       the moka cache in front of the store, single-flight misses
//   limit       the login limits (global and per client)
//   engine      Engine: the run-time state of one login and everything it
//               does (resolve, create, revoke, the login flow)
//   layer       the tower Layer, Service and response future
//   extract     the WxUser and WxSession extractors
//   login       the login and logout routes as tower services
//   handle      WxLogin, the handle the app holds, and its methods
//   config      WxLoginBuilder (and WxLogin::builder), over non-generic settings
//   pay         (feature `pay`) WeChat Pay: client, keys, signing, checkout,
//               the notify route, orders, the fake WeChat Pay (with `mock`)
//   fuzzing     (feature `fuzzing`) every non-stable hook; may use any module

mod cache;
mod clock;
mod config;
pub mod crypto;
mod engine;
mod error;
mod extract;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod layer;
mod limit;
mod login;
#[cfg(feature = "mock")]
pub mod mock;
mod observe;
#[cfg(feature = "pay")]
#[cfg_attr(docsrs, doc(cfg(feature = "pay")))]
pub mod pay;
mod random;
mod secret;
mod session;
pub mod store;
mod token;
pub(crate) mod wechat;

pub use config::{WxLoginBuilder, DEFAULT_API_BASE};
pub use error::{BuildError, ErrorCode, LoginError, Rejection, Renderer};
pub use extract::{WxSession, WxUser};
pub use handle::{DeviceSession, IssuedSession, WxLogin};
pub use layer::{ResponseFuture, WxLoginLayer, WxLoginService};
pub use limit::ClientKey;
pub use login::{LoginService, LogoutService, RouteFuture};
pub use secret::Secret;
pub use session::{Identity, LoginOk, LoginOutput};
pub use store::SessionRecord;
pub use token::TokenSource;
pub use wechat::{PhoneInfo, Watermark, WeChatApiError};
