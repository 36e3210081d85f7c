//! Who may call the WaaS endpoints.
//!
//! - `pdnd`: the PDND voucher (ModI `AUTH_REST_01`), `Authorization: Bearer <JWT>`, RS256, verified
//!   against the configured JWKS (a file, and/or a URL fetched at start and again — at most every
//!   30 s — when a voucher names an unknown `kid`), with `iss`, `aud`, `exp`/`nbf`/`iat` (with
//!   leeway) and a `purposeId` among the configured ones.
//! - `trusted-gateway`: an API gateway in front (e.g. GovWay) already verified the voucher; a request
//!   is accepted only from one of its addresses and only with its header.
//!
//! The gateway's API keys open nothing here. Nothing of the token is logged or audited.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::{header, HeaderMap, HeaderName};
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{InpsAuthConfig, InpsAuthMode};

/// Why a caller is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, or credentials that do not verify: 401.
    Unauthorized(String),
    /// Valid credentials without the right to call: 403.
    Forbidden(String),
}

impl Refusal {
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Unauthorized(r) | Refusal::Forbidden(r) => r,
        }
    }
}

/// The authenticated WaaS caller, as named in the audit (`pdnd:<client_id>` or `trusted-gateway`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaasCaller {
    pub actor: String,
}

/// The configured check.
pub enum Access {
    Pdnd(Box<Pdnd>),
    TrustedGateway(TrustedGateway),
}

impl Access {
    pub fn new(cfg: &InpsAuthConfig) -> anyhow::Result<Self> {
        Ok(match cfg.mode {
            InpsAuthMode::Pdnd => Access::Pdnd(Box::new(Pdnd::new(cfg)?)),
            InpsAuthMode::TrustedGateway => Access::TrustedGateway(TrustedGateway::new(cfg)?),
        })
    }

    /// For `check-config`.
    pub fn describe(&self) -> String {
        match self {
            Access::Pdnd(p) => format!("pdnd ({} keys loaded)", p.key_count()),
            Access::TrustedGateway(t) => {
                format!("trusted-gateway ({} peers, header {})", t.peers.len(), t.header)
            }
        }
    }

    /// Checks one request.
    pub async fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<WaasCaller, Refusal> {
        match self {
            Access::Pdnd(p) => {
                let token = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        Refusal::Unauthorized("send the PDND voucher as 'Authorization: Bearer <JWT>'".into())
                    })?;
                p.verify(token).await
            }
            Access::TrustedGateway(t) => t.check(headers, peer),
        }
    }
}

/// The API gateway in front.
pub struct TrustedGateway {
    peers: Vec<ipnet::IpNet>,
    header: HeaderName,
}

impl TrustedGateway {
    fn new(cfg: &InpsAuthConfig) -> anyhow::Result<Self> {
        let peers = cfg
            .trusted_peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| format!("inps.auth.trusted_peers[{i}]: not an IP address or CIDR"))
            })
            .collect::<anyhow::Result<_>>()?;
        let header = HeaderName::from_bytes(cfg.gateway_header().as_bytes()).context("inps.auth.header")?;
        Ok(Self { peers, header })
    }

    fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<WaasCaller, Refusal> {
        let trusted =
            peer.map(|p| p.to_canonical()).is_some_and(|p| self.peers.iter().any(|n| n.contains(&p)));
        if !trusted {
            return Err(Refusal::Forbidden(
                "WaaS is served only through the API gateway that checks the PDND voucher".into(),
            ));
        }
        let present =
            headers.get(&self.header).and_then(|v| v.to_str().ok()).is_some_and(|v| !v.trim().is_empty());
        if !present {
            return Err(Refusal::Unauthorized(format!(
                "the API gateway did not mark the request (header {} missing)",
                self.header
            )));
        }
        Ok(WaasCaller { actor: "trusted-gateway".into() })
    }
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    /// Keys without a `kid`, tried when the voucher names none.
    unnamed: Vec<DecodingKey>,
}

impl Keys {
    fn parse(bytes: &[u8]) -> anyhow::Result<Keys> {
        let set: JwkSet =
            serde_json::from_slice(bytes).context("not a JWKS (a JSON object with \"keys\")")?;
        let mut keys = Keys::default();
        for (i, jwk) in set.keys.iter().enumerate() {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                tracing::warn!(index = i, "JWKS key skipped: not a usable public key");
                continue;
            };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), key);
                }
                None => keys.unnamed.push(key),
            }
        }
        Ok(keys)
    }

    fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }
}

/// The claims of a PDND voucher this gateway reads (the library checks `iss`, `aud`, `exp`, `nbf`).
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(rename = "purposeId")]
    purpose_id: Option<String>,
    client_id: Option<String>,
    sub: Option<String>,
    iat: Option<i64>,
}

/// How often the JWKS URL may be fetched because of an unknown `kid`.
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// The PDND voucher check.
pub struct Pdnd {
    validation: Validation,
    leeway: u64,
    purpose_ids: BTreeSet<String>,
    keys: RwLock<Keys>,
    jwks_url: Option<String>,
    jwks_path: Option<PathBuf>,
    http: reqwest::Client,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Pdnd {
    fn new(cfg: &InpsAuthConfig) -> anyhow::Result<Self> {
        // The process-wide crypto provider: RustCrypto (no C build). Installing it explicitly keeps
        // verification working even if another crate in the build enables a second backend.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
        );
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[cfg.issuer.clone().unwrap_or_default()]);
        validation.set_audience(&[cfg.audience.clone().unwrap_or_default()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = cfg.leeway_secs;
        let keys = match &cfg.jwks_path {
            Some(p) => {
                let bytes = std::fs::read(p)
                    .with_context(|| format!("inps.auth.jwks_path: cannot read {}", p.display()))?;
                Keys::parse(&bytes).with_context(|| format!("inps.auth.jwks_path: {}", p.display()))?
            }
            None => Keys::default(),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("HTTP client for inps.auth.jwks_url")?;
        let pdnd = Self {
            validation,
            leeway: cfg.leeway_secs,
            purpose_ids: cfg.purpose_ids.iter().cloned().collect(),
            keys: RwLock::new(keys),
            jwks_url: cfg.jwks_url.clone(),
            jwks_path: cfg.jwks_path.clone(),
            http,
            last_fetch: tokio::sync::Mutex::new(None),
        };
        Ok(pdnd)
    }

    fn key_count(&self) -> usize {
        self.keys.read().map(|k| k.len()).unwrap_or(0)
    }

    /// Fetches the JWKS URL (if any) and merges its keys over the file's. Rate-limited.
    pub async fn refresh(&self) -> bool {
        let Some(url) = &self.jwks_url else { return false };
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        let fetched = async {
            let resp = self.http.get(url).send().await?.error_for_status()?;
            anyhow::Ok(Keys::parse(&resp.bytes().await?)?)
        }
        .await;
        match fetched {
            Ok(mut keys) => {
                // The file's keys stay valid alongside the fetched ones.
                if let Some(p) = &self.jwks_path {
                    if let Ok(file) =
                        std::fs::read(p).map_err(anyhow::Error::from).and_then(|b| Keys::parse(&b))
                    {
                        for (k, v) in file.by_kid {
                            keys.by_kid.entry(k).or_insert(v);
                        }
                        keys.unnamed.extend(file.unnamed);
                    }
                }
                tracing::info!(keys = keys.len(), "PDND JWKS refreshed");
                if let Ok(mut k) = self.keys.write() {
                    *k = keys;
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch inps.auth.jwks_url; keeping the keys already loaded");
                false
            }
        }
    }

    fn key_for(&self, kid: Option<&str>) -> Result<Option<DecodingKey>, Refusal> {
        let keys = self.keys.read().map_err(|_| Refusal::Unauthorized("key store unavailable".into()))?;
        Ok(match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None if keys.len() == 1 => keys.by_kid.values().chain(keys.unnamed.iter()).next().cloned(),
            None => keys.unnamed.first().cloned(),
        })
    }

    async fn verify(&self, token: &str) -> Result<WaasCaller, Refusal> {
        let unauthorized = |r: &str| Refusal::Unauthorized(r.to_string());
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized("the bearer token is not a PDND voucher (a JWT)"))?;
        if header.alg != Algorithm::RS256 {
            return Err(unauthorized("the voucher must be signed with RS256"));
        }
        let kid = header.kid.as_deref();
        let key = match self.key_for(kid)? {
            Some(k) => k,
            None => {
                self.refresh().await;
                self.key_for(kid)?
                    .ok_or_else(|| unauthorized("the voucher is signed by an unknown key (kid)"))?
            }
        };
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the voucher has expired",
                ErrorKind::ImmatureSignature => "the voucher is not valid yet (nbf)",
                ErrorKind::InvalidIssuer => "the voucher was not issued by the configured PDND issuer",
                ErrorKind::InvalidAudience => "the voucher is not meant for this e-service (aud)",
                ErrorKind::InvalidSignature => "the voucher's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the voucher lacks exp, iss or aud",
                _ => "the voucher is not a valid RS256 JWT",
            })
        })?;
        let claims = data.claims;
        let now = crate::store::now_ms() / 1000;
        if claims.iat.is_some_and(|iat| iat > now + self.leeway as i64) {
            return Err(unauthorized("the voucher is issued in the future (iat)"));
        }
        let purpose =
            claims.purpose_id.ok_or_else(|| Refusal::Forbidden("the voucher carries no purposeId".into()))?;
        if !self.purpose_ids.contains(&purpose) {
            return Err(Refusal::Forbidden(
                "the voucher's purposeId is not one this e-service accepts (inps.auth.purpose_ids)".into(),
            ));
        }
        let who = claims.client_id.or(claims.sub).unwrap_or_else(|| "unknown".into());
        let who: String = who.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
        Ok(WaasCaller { actor: format!("pdnd:{who}") })
    }
}
