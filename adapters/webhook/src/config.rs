//! The user-facing configuration of one webhook destination.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// Default bound on a whole attempt (connect, send, wait for the answer), in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default bound on establishing the TCP (and TLS) connection, in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3_000;

/// Configuration of one webhook destination.
///
/// The hub usually builds this with [`WebhookConfig::new`] from its own destination table; the
/// serde form (with `deny_unknown_fields`) is for configs that hold only the webhook part:
///
/// ```toml
/// url = "https://ente.example/hooks/csi"
/// secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
/// timeout_ms = 10000
/// connect_timeout_ms = 3000
/// headers = { "X-Tenant-Channel" = "csi" }
/// ```
///
/// `Debug` prints neither the secret, nor header values, nor a password in the URL.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint the events are POSTed to. Must be an absolute `http` or `https` URL.
    pub url: String,
    /// The Standard Webhooks signing secret: `whsec_` followed by standard base64 of the key
    /// bytes. A value without the `whsec_` prefix is used as is (its UTF-8 bytes are the key).
    pub secret: String,
    /// Upper bound on one whole attempt, from connecting to receiving the answer, in
    /// milliseconds. Must be greater than zero. Default: 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Upper bound on establishing the connection (TCP and TLS), in milliseconds. Must be
    /// greater than zero. Default: 3000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Extra static headers sent with every request, e.g. a routing hint the receiver needs.
    /// They may not replace the headers this adapter sets itself (`content-type`, `webhook-*`,
    /// `idempotency-key`, `x-csi-attempt`, `content-length`, `host`). Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

impl WebhookConfig {
    /// A config with the given URL and secret and default timeouts and no extra headers.
    /// Nothing is validated until [`WebhookSink::new`](crate::WebhookSink::new).
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            headers: BTreeMap::new(),
        }
    }

    /// Sets the bound on one whole attempt, in milliseconds.
    #[must_use]
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }

    /// Sets the bound on establishing the connection, in milliseconds.
    #[must_use]
    pub fn with_connect_timeout_ms(mut self, connect_timeout_ms: u64) -> Self {
        self.connect_timeout_ms = connect_timeout_ms;
        self
    }

    /// Adds (or replaces) one extra static header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The URL with any password replaced, for display. Unparseable URLs are shown as a placeholder,
/// since they could be anything (including a secret pasted in the wrong field).
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Cannot fail: a URL with a password has a host.
                let _ = parsed.set_password(Some("redacted"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparseable>".to_owned(),
    }
}

/// A webhook destination config that cannot be used. Each variant names the field and the rule.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field breaks a rule; `field` is the config key (e.g. `url`, `headers.X-Foo`).
    #[error("invalid webhook config: `{field}` {rule}")]
    Invalid {
        /// The config key at fault.
        field: String,
        /// What the value must be, in plain words.
        rule: String,
    },
    /// The HTTP client could not be built (e.g. no TLS roots available on this system).
    #[error("webhook adapter: cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), rule: rule.into() }
    }

    /// The config key at fault, if the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Client(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secret_header_values_and_url_password() {
        let config = WebhookConfig::new(
            "https://user:hunter2@ente.example/hook?x=1",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .with_header("Authorization", "Bearer top-secret-token");
        let shown = format!("{config:?}");
        assert!(!shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{shown}");
        assert!(!shown.contains("whsec_"), "{shown}");
        assert!(!shown.contains("top-secret-token"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ente.example"), "{shown}");
        assert!(shown.contains("Authorization"), "{shown}");
    }

    #[test]
    fn builder_sets_timeouts_and_headers() {
        let config = WebhookConfig::new("http://127.0.0.1:1/", "k")
            .with_timeout_ms(500)
            .with_connect_timeout_ms(100)
            .with_header("X-A", "b");
        assert_eq!(config.timeout_ms, 500);
        assert_eq!(config.connect_timeout_ms, 100);
        assert_eq!(config.headers.get("X-A").map(String::as_str), Some("b"));
    }
}
