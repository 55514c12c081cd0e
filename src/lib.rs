#![doc = include_str!("../docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

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

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use config::{TokenSource, WxLogin, WxLoginBuilder, DEFAULT_API_BASE};
pub use error::{BuildError, ErrorCode, LoginError, Rejection, Renderer};
pub use extract::{WxSession, WxUser};
pub use layer::{ResponseFuture, WxLoginLayer, WxLoginService};
pub use login::{LoginService, LogoutService, RouteFuture};
pub use secret::Secret;
pub use session::{Identity, SessionRecord};
pub use wechat::{PhoneInfo, Watermark, WeChatApiError};
