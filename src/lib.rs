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

mod config;
pub mod crypto;
mod error;
mod extract;
mod layer;
mod limit;
mod login;
mod observe;
mod secret;
mod session;
pub mod store;
mod token;
pub(crate) mod wechat;

#[cfg(feature = "mock")]
pub mod mock;

#[cfg(feature = "pay")]
#[cfg_attr(docsrs, doc(cfg(feature = "pay")))]
pub mod pay;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use config::{TokenSource, WxLogin, WxLoginBuilder, DEFAULT_API_BASE};
pub use error::{BuildError, ErrorCode, LoginError, Rejection, Renderer};
pub use extract::{WxSession, WxUser};
pub use layer::{ResponseFuture, WxLoginLayer, WxLoginService};
pub use limit::ClientKey;
pub use login::{LoginService, LogoutService, RouteFuture};
pub use secret::Secret;
pub use session::{Identity, SessionRecord};
pub use wechat::{PhoneInfo, Watermark, WeChatApiError};
