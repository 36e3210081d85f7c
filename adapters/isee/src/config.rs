//! The user-facing configuration: the INPS endpoint and identity headers, the PDND client, the
//! timeouts and the cache.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::soap::SOAP_ACTION;

/// Default bound on a whole HTTP exchange (connect, send, read the answer), in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 15_000;
/// Default bound on establishing the connection, in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3_000;
/// Default limit on the size of an answer.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Default number of attestations kept.
pub const DEFAULT_CACHE_MAX_ENTRIES: usize = 10_000;
/// Default lifetime of a client assertion, in seconds.
pub const DEFAULT_ASSERTION_TTL_SECS: u64 = 120;
/// Default margin before the voucher's expiry at which a new one is asked, in seconds.
pub const DEFAULT_VOUCHER_REFRESH_MARGIN_SECS: u64 = 60;

/// Configuration of the ISEE adapter.
///
/// ```toml
/// endpoint = "https://<INPS e-service address from the PDND catalogue>/SvcConsultazione.svc"
/// user_id = "01199250158"          # INPS-Identity-UserId: codice fiscale of the ente (or operator)
/// codice_ufficio = "001"           # INPS-Identity-CodiceUfficio
/// timeout_ms = 15000
/// connect_timeout_ms = 3000
/// cache_max_entries = 10000
/// # cache_max_age_secs = 86400     # optional cap below the attestation's validity
///
/// [pdnd]
/// token_url = "https://auth.interop.pagopa.it/token.oauth2"
/// client_id = "9b361d49-33f4-4f1e-a88b-4e12661f2309"
/// audience = "auth.interop.pagopa.it/client-assertion"
/// purpose_id = "1b361d49-33f4-4f1e-a88b-4e12661f2300"
/// kid = "ZmYxZGE2YjQtMzY2Yy00NWI5LThjNGItMDJmYmQyZGIyMmZh"
/// private_key_file = "/etc/csi-gateway/pdnd-isee.key.pem"
/// ```
///
/// `Debug` prints neither the private key nor `user_id`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IseeConfig {
    /// The SOAP endpoint of `SvcConsultazione` (the e-service address published in the PDND
    /// catalogue). Absolute `https` URL (`http` is accepted for loopback tests).
    pub endpoint: String,
    /// `INPS-Identity-UserId`: the codice fiscale of the ente, or of the operator when the
    /// agreement with INPS says so. Never logged.
    pub user_id: String,
    /// `INPS-Identity-CodiceUfficio`: the office code agreed with INPS.
    pub codice_ufficio: String,
    /// The `SOAPAction`. Default: `http://inps.it/ConsultazioneISEE/ISvcConsultazione/ConsultazioneAttestazione`.
    #[serde(default = "default_soap_action")]
    pub soap_action: String,
    /// Upper bound on one HTTP exchange (token or SOAP), in milliseconds, > 0. Default: 15000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Upper bound on establishing the connection, in milliseconds, > 0. Default: 3000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The largest answer read, in bytes, ≥ 1024. Default: 4 MiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// How many attestations the cache keeps; 0 disables it. Default: 10000.
    #[serde(default = "default_cache_max_entries")]
    pub cache_max_entries: usize,
    /// When set, an attestation is kept at most this many seconds (> 0), even if still valid.
    /// Default: unset (kept until its validity ends).
    #[serde(default)]
    pub cache_max_age_secs: Option<u64>,
    /// The PDND client.
    pub pdnd: PdndConfig,
}

/// The PDND client that obtains vouchers for the ISEE e-service.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdndConfig {
    /// The PDND token endpoint. Absolute `https` URL (`http` for loopback tests).
    pub token_url: String,
    /// The client id (`iss` and `sub` of the client assertion, `client_id` of the request).
    pub client_id: String,
    /// The `aud` of the client assertion, as the PDND back-office shows it.
    pub audience: String,
    /// The purpose (finalità) id authorised for the ISEE e-service (`purposeId` claim).
    pub purpose_id: String,
    /// The id of the public key loaded on PDND (`kid` header).
    pub kid: String,
    /// The RSA private key, PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`). Exactly one
    /// of `private_key_pem` and `private_key_file`.
    #[serde(default)]
    pub private_key_pem: Option<String>,
    /// A file holding the RSA private key in PEM.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// Lifetime of each client assertion, in seconds, 1–3600. Default: 120.
    #[serde(default = "default_assertion_ttl_secs")]
    pub assertion_ttl_secs: u64,
    /// How long before the voucher expires a new one is asked, in seconds (at most half the
    /// voucher's lifetime is used). Default: 60.
    #[serde(default = "default_voucher_refresh_margin_secs")]
    pub voucher_refresh_margin_secs: u64,
}

fn default_soap_action() -> String {
    SOAP_ACTION.to_owned()
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}
fn default_max_response_bytes() -> usize {
    DEFAULT_MAX_RESPONSE_BYTES
}
fn default_cache_max_entries() -> usize {
    DEFAULT_CACHE_MAX_ENTRIES
}
fn default_assertion_ttl_secs() -> u64 {
    DEFAULT_ASSERTION_TTL_SECS
}
fn default_voucher_refresh_margin_secs() -> u64 {
    DEFAULT_VOUCHER_REFRESH_MARGIN_SECS
}

impl PdndConfig {
    /// A PDND client config with the key given inline and default lifetimes.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        audience: impl Into<String>,
        purpose_id: impl Into<String>,
        kid: impl Into<String>,
        private_key_pem: impl Into<String>,
    ) -> Self {
        Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            audience: audience.into(),
            purpose_id: purpose_id.into(),
            kid: kid.into(),
            private_key_pem: Some(private_key_pem.into()),
            private_key_file: None,
            assertion_ttl_secs: DEFAULT_ASSERTION_TTL_SECS,
            voucher_refresh_margin_secs: DEFAULT_VOUCHER_REFRESH_MARGIN_SECS,
        }
    }
}

impl IseeConfig {
    /// A config with defaults for everything optional. Nothing is validated until
    /// [`IseeClient::new`](crate::IseeClient::new).
    pub fn new(
        endpoint: impl Into<String>,
        user_id: impl Into<String>,
        codice_ufficio: impl Into<String>,
        pdnd: PdndConfig,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            user_id: user_id.into(),
            codice_ufficio: codice_ufficio.into(),
            soap_action: default_soap_action(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            cache_max_entries: DEFAULT_CACHE_MAX_ENTRIES,
            cache_max_age_secs: None,
            pdnd,
        }
    }
}

impl fmt::Debug for IseeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IseeConfig")
            .field("endpoint", &redact_url(&self.endpoint))
            .field("user_id", &"<redacted>")
            .field("codice_ufficio", &self.codice_ufficio)
            .field("soap_action", &self.soap_action)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("cache_max_entries", &self.cache_max_entries)
            .field("cache_max_age_secs", &self.cache_max_age_secs)
            .field("pdnd", &self.pdnd)
            .finish()
    }
}

impl fmt::Debug for PdndConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PdndConfig")
            .field("token_url", &redact_url(&self.token_url))
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("purpose_id", &self.purpose_id)
            .field("kid", &self.kid)
            .field("private_key_pem", &self.private_key_pem.as_ref().map(|_| "<redacted>"))
            .field("private_key_file", &self.private_key_file)
            .field("assertion_ttl_secs", &self.assertion_ttl_secs)
            .field("voucher_refresh_margin_secs", &self.voucher_refresh_margin_secs)
            .finish()
    }
}

/// The URL with any password replaced; unparseable URLs as a placeholder.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("redacted"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparseable>".to_owned(),
    }
}

/// A config that cannot be used. Each variant names the field and the rule.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field breaks a rule; `field` is the config key (`endpoint`, `pdnd.purpose_id`, …).
    #[error("invalid ISEE adapter config: `{field}` {rule}")]
    Invalid {
        /// The config key at fault.
        field: &'static str,
        /// What the value must be, in plain words.
        rule: String,
    },
    /// The HTTP client could not be built (e.g. no TLS roots on this system).
    #[error("ISEE adapter: cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, rule: impl Into<String>) -> Self {
        Self::Invalid { field, rule: rule.into() }
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
    fn debug_hides_the_key_and_the_user_id() {
        let config = IseeConfig::new(
            "https://u:pw@inps.example/svc",
            "RSSMRA85T10A562S",
            "001",
            PdndConfig::new(
                "https://pdnd.example/token",
                "c",
                "a",
                "p",
                "k",
                "-----BEGIN PRIVATE KEY-----SECRET",
            ),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("RSSMRA"), "{shown}");
        assert!(!shown.contains("pw@"), "{shown}");
    }

    #[test]
    fn toml_shape_with_defaults() {
        let config: IseeConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "https://inps.example/svc",
            "user_id": "01199250158",
            "codice_ufficio": "001",
            "pdnd": {
                "token_url": "https://pdnd.example/token",
                "client_id": "c", "audience": "a", "purpose_id": "p", "kid": "k",
                "private_key_file": "/etc/key.pem"
            }
        }))
        .unwrap();
        assert_eq!(config.soap_action, SOAP_ACTION);
        assert_eq!(config.cache_max_entries, DEFAULT_CACHE_MAX_ENTRIES);
        assert_eq!(config.pdnd.assertion_ttl_secs, DEFAULT_ASSERTION_TTL_SECS);
        let typo = serde_json::from_value::<IseeConfig>(serde_json::json!({
            "endpoint": "x", "user_id": "x", "codice_ufficio": "x", "enpoint": "x",
            "pdnd": {"token_url": "x", "client_id": "c", "audience": "a", "purpose_id": "p", "kid": "k"}
        }));
        assert!(typo.is_err(), "unknown fields are refused");
    }
}
