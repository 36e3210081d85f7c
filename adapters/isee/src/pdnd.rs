//! The PDND voucher: a client assertion (JWT, RS256) exchanged at the PDND token endpoint for a
//! bearer voucher, kept until shortly before it expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, Url};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::error::{from_inps, IseeError};

/// `client_assertion_type` of a JWT client assertion (RFC 7523).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The most of a token endpoint answer this adapter reads.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// The longest a voucher is kept, whatever `expires_in` says. PDND vouchers live minutes; a
/// bigger answer is a mistake, and unbounded it would overflow the clock arithmetic.
const MAX_VOUCHER_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The claims of the client assertion. `purposeId` is PDND's extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAssertionClaims {
    /// The client id.
    pub iss: String,
    /// The client id.
    pub sub: String,
    /// The PDND audience of client assertions.
    pub aud: String,
    /// A fresh UUID per assertion.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// The PDND purpose (finalità) the voucher is for.
    #[serde(rename = "purposeId")]
    pub purpose_id: String,
}

/// What the voucher provider needs, already validated.
pub(crate) struct PdndSettings {
    pub token_url: Url,
    pub client_id: String,
    pub audience: String,
    pub purpose_id: String,
    pub kid: String,
    pub key: EncodingKey,
    pub assertion_ttl: Duration,
    pub refresh_margin: Duration,
}

#[derive(Clone)]
struct Voucher {
    token: Arc<str>,
    /// When to stop using it (expiry minus the margin).
    use_until: SystemTime,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Obtains and caches vouchers. One fetch at a time: concurrent callers wait for it and share
/// the result.
pub(crate) struct VoucherProvider {
    settings: PdndSettings,
    current: Mutex<Option<Voucher>>,
    /// `host:port` of the token endpoint, the only part of its URL that goes into errors.
    target: String,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl VoucherProvider {
    pub fn new(settings: PdndSettings) -> Self {
        let target = match (settings.token_url.host_str(), settings.token_url.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => "the PDND token endpoint".to_owned(),
        };
        Self { settings, current: Mutex::new(None), target }
    }

    /// The signed client assertion for `now`.
    pub fn client_assertion(&self, now: SystemTime) -> Result<String, IseeError> {
        let s = &self.settings;
        let iat = unix(now);
        let claims = ClientAssertionClaims {
            iss: s.client_id.clone(),
            sub: s.client_id.clone(),
            aud: s.audience.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat,
            exp: iat + s.assertion_ttl.as_secs(),
            purpose_id: s.purpose_id.clone(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(s.kid.clone());
        header.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(&header, &claims, &s.key).map_err(|e| IseeError::Voucher {
            reason: format!("cannot sign the client assertion: {e}"),
            transient: false,
        })
    }

    /// A voucher valid now: the cached one, or a new one from the token endpoint.
    pub async fn voucher(&self, client: &Client, clock: &dyn Clock) -> Result<Arc<str>, IseeError> {
        let mut current = self.current.lock().await;
        let now = clock.now();
        if let Some(v) = current.as_ref() {
            if now < v.use_until {
                return Ok(v.token.clone());
            }
        }
        let fresh = self.fetch(client, now).await?;
        let token = fresh.token.clone();
        *current = Some(fresh);
        Ok(token)
    }

    /// Forgets `refused` (INPS did not accept it), unless a newer voucher already replaced it.
    pub async fn invalidate(&self, refused: &str) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|v| &*v.token == refused) {
            *current = None;
        }
    }

    async fn fetch(&self, client: &Client, now: SystemTime) -> Result<Voucher, IseeError> {
        let assertion = self.client_assertion(now)?;
        let form = [
            ("client_id", self.settings.client_id.as_str()),
            ("client_assertion", assertion.as_str()),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("grant_type", "client_credentials"),
        ];
        let target = &self.target;
        let response =
            client.post(self.settings.token_url.clone()).form(&form).send().await.map_err(|e| {
                IseeError::Voucher {
                    reason: format!(
                        "token request to {target} failed: {}",
                        crate::client::describe_transport(&e)
                    ),
                    transient: !e.is_builder(),
                }
            })?;
        let status = response.status();
        let body = crate::client::read_limited(response, MAX_TOKEN_RESPONSE_BYTES).await.map_err(|e| {
            IseeError::Voucher {
                reason: format!("reading the answer of {target} failed: {e}"),
                transient: matches!(e, crate::client::ReadError::Failed(_)),
            }
        })?;
        if !status.is_success() {
            // OAuth errors (RFC 6749 §5.2) carry `error` and `error_description`, no secrets.
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .map(|v| {
                    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
                    from_inps(&format!("{} {}", field("error"), field("error_description")))
                })
                .unwrap_or_default();
            let code = status.as_u16();
            let transient = status.is_server_error() || matches!(code, 408 | 425 | 429);
            return Err(IseeError::Voucher {
                reason: format!(
                    "{target} answered HTTP {code}{}{detail}",
                    if detail.is_empty() { "" } else { ": " }
                ),
                transient,
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| IseeError::Voucher {
            reason: format!("{target} answered without a usable access_token"),
            transient: false,
        })?;
        if answer.access_token.is_empty()
            || answer.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(IseeError::Voucher {
                reason: format!("{target} answered a token that is not a bearer voucher"),
                transient: false,
            });
        }
        // Without `expires_in`, assume a short lifetime (10 minutes) rather than guess a long one.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(600)).min(MAX_VOUCHER_LIFETIME);
        let margin = self.settings.refresh_margin.min(lifetime / 2);
        // A clock set past what `SystemTime` can add to: use the voucher for this call only.
        let use_until = now.checked_add(lifetime - margin).unwrap_or(now);
        Ok(Voucher { token: Arc::from(answer.access_token), use_until })
    }
}
