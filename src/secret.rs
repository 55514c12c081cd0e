//! A string that must never be shown: the app secret, a `session_key`, a token key.

use std::fmt;

/// A secret string (app secret, `session_key`, token key) whose `Debug` and
/// `Display` print `[redacted]`.
///
/// The value is only reachable through [`Secret::expose`], so every place that
/// reads it is easy to find in review.
///
/// ```
/// use wxlogin::Secret;
/// let s = Secret::new("app-secret");
/// assert_eq!(format!("{s:?}"), "[redacted]");
/// assert_eq!(s.expose(), "app-secret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a secret value.
    ///
    /// ```
    /// use wxlogin::Secret;
    /// let key = Secret::new(std::env::var("WXLOGIN_TOKEN_KEY").unwrap_or_default());
    /// println!("token key: {key}"); // prints `[redacted]`
    /// ```
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().into_boxed_str())
    }

    /// The secret text. Call it only where the value is sent to WeChat or used as a key.
    ///
    /// ```
    /// use wxlogin::Secret;
    /// let s = Secret::from("app-secret");
    /// assert_eq!(s.expose(), "app-secret");
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    ///
    /// ```
    /// use wxlogin::Secret;
    /// assert!(Secret::new("").is_empty());
    /// assert!(!Secret::new("x").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}
