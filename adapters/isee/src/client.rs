//! The client: validated config, one pooled HTTP client, the voucher provider and the cache.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::EncodingKey;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::{redirect, Client, Response, Url};
use tracing::Instrument as _;

use crate::attestazione::{decode_base64, Attestazione};
use crate::cache::AttestazioneCache;
use crate::clock::{Clock, SystemClock};
use crate::config::{redact_url, ConfigError, IseeConfig};
use crate::error::{from_inps, IseeError};
use crate::pdnd::{PdndSettings, VoucherProvider};
use crate::request::RicercaCf;
use crate::soap::{parse_answer, request_envelope, EsitoInps, SoapAnswer};
use crate::values::rome_date;

/// Header carrying the codice fiscale of the ente (or operator) to INPS.
pub const HEADER_USER_ID: &str = "INPS-Identity-UserId";
/// Header carrying the office code to INPS.
pub const HEADER_CODICE_UFFICIO: &str = "INPS-Identity-CodiceUfficio";

const KIND: &str = "isee";
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const HTTP_REASON_CHARS: usize = 200;

/// Where an attestation comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origine {
    /// Asked to INPS now; `id_richiesta` is INPS's `IdRichiesta`, when given.
    Inps {
        /// INPS's id of the consultation.
        id_richiesta: Option<String>,
    },
    /// Served from the cache.
    Cache,
}

/// The outcome of a consultation that INPS answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consultazione {
    /// `OK`: the attestation valid for the request.
    Attestazione {
        /// The decoded attestation.
        attestazione: Arc<Attestazione>,
        /// INPS or the cache.
        origine: Origine,
    },
    /// `DATI_NON_TROVATI`: no valid attestation for this person and day (no DSU presented, or
    /// not yet processed). Not an error.
    NessunaAttestazione {
        /// INPS's `DescrizioneErrore`, when given (one line, codici fiscali removed).
        descrizione: Option<String>,
        /// INPS's `IdRichiesta`, when given.
        id_richiesta: Option<String>,
    },
}

impl Consultazione {
    /// The attestation, when there is one.
    pub fn attestazione(&self) -> Option<&Arc<Attestazione>> {
        match self {
            Self::Attestazione { attestazione, .. } => Some(attestazione),
            Self::NessunaAttestazione { .. } => None,
        }
    }
}

/// The INPS `ConsultazioneAttestazione` client.
///
/// Cheap to share (`Arc<IseeClient>`) and safe to call concurrently. Each call to INPS is one
/// POST (after at most one call to the PDND token endpoint), never follows redirects, and is
/// bounded by the configured timeouts. It does not retry: [`IseeError::is_transient`] says
/// whether the caller may.
pub struct IseeClient {
    http: Client,
    endpoint: Url,
    target: String,
    headers: HeaderMap,
    timeout_ms: u64,
    connect_timeout_ms: u64,
    max_response_bytes: usize,
    vouchers: VoucherProvider,
    cache: AttestazioneCache,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for IseeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IseeClient")
            .field("endpoint", &redact_url(self.endpoint.as_str()))
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

fn http_url(field: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value.trim())
        .map_err(|e| ConfigError::invalid(field, format!("must be an absolute https URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(field, "must be an absolute https URL with a host"));
    }
    Ok(url)
}

fn not_empty(field: &'static str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    Ok(v.to_owned())
}

fn header(field: &'static str, value: &str) -> Result<HeaderValue, ConfigError> {
    let v = not_empty(field, value)?;
    HeaderValue::from_str(&v)
        .map_err(|_| ConfigError::invalid(field, "must be visible ASCII (it is sent as a header)"))
}

fn target_of(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => "INPS".to_owned(),
    }
}

impl IseeClient {
    /// Validates `config`, reads the private key, and builds the HTTP client, with the system
    /// clock.
    ///
    /// Fails with [`ConfigError::Invalid`] naming the field (`endpoint`, `user_id`,
    /// `pdnd.private_key_file`, …) and the rule it breaks.
    pub fn new(config: IseeConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// As [`new`](Self::new), reading the time from `clock` (cache expiry, voucher lifetime,
    /// client assertion claims).
    pub fn with_clock(config: IseeConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let endpoint = http_url("endpoint", &config.endpoint)?;
        let token_url = http_url("pdnd.token_url", &config.pdnd.token_url)?;
        let user_id = header("user_id", &config.user_id)?;
        let codice_ufficio = header("codice_ufficio", &config.codice_ufficio)?;
        let soap_action = header("soap_action", &format!("\"{}\"", config.soap_action.trim()))?;
        if config.timeout_ms == 0 {
            return Err(ConfigError::invalid("timeout_ms", "must be greater than zero"));
        }
        if config.connect_timeout_ms == 0 {
            return Err(ConfigError::invalid("connect_timeout_ms", "must be greater than zero"));
        }
        if config.max_response_bytes < 1024 {
            return Err(ConfigError::invalid("max_response_bytes", "must be at least 1024"));
        }
        if config.cache_max_age_secs == Some(0) {
            return Err(ConfigError::invalid("cache_max_age_secs", "must be greater than zero when set"));
        }
        let p = &config.pdnd;
        if !(1..=3600).contains(&p.assertion_ttl_secs) {
            return Err(ConfigError::invalid("pdnd.assertion_ttl_secs", "must be between 1 and 3600"));
        }
        let pem = match (&p.private_key_pem, &p.private_key_file) {
            (Some(pem), None) => pem.clone().into_bytes(),
            (None, Some(path)) => std::fs::read(path).map_err(|e| {
                ConfigError::invalid("pdnd.private_key_file", format!("cannot be read ({})", e.kind()))
            })?,
            _ => {
                return Err(ConfigError::invalid(
                    "pdnd.private_key_pem",
                    "exactly one of `pdnd.private_key_pem` and `pdnd.private_key_file` must be set",
                ))
            }
        };
        let key_field =
            if p.private_key_pem.is_some() { "pdnd.private_key_pem" } else { "pdnd.private_key_file" };
        let not_a_key =
            || ConfigError::invalid(key_field, "must hold an RSA private key in PEM (PKCS#8 or PKCS#1)");
        let key = EncodingKey::from_rsa_pem(&pem).map_err(|_| not_a_key())?;
        // A public key parses too: only signing tells them apart.
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &[0u8; 0], &key)
            .map_err(|_| not_a_key())?;
        let settings = PdndSettings {
            token_url,
            client_id: not_empty("pdnd.client_id", &p.client_id)?,
            audience: not_empty("pdnd.audience", &p.audience)?,
            purpose_id: not_empty("pdnd.purpose_id", &p.purpose_id)?,
            kid: not_empty("pdnd.kid", &p.kid)?,
            key,
            assertion_ttl: Duration::from_secs(p.assertion_ttl_secs),
            refresh_margin: Duration::from_secs(p.voucher_refresh_margin_secs),
        };

        let mut headers = HeaderMap::new();
        headers.insert(HEADER_USER_ID, user_id);
        headers.insert(HEADER_CODICE_UFFICIO, codice_ufficio);
        headers.insert("SOAPAction", soap_action);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("csi-gateway-isee/", env!("CARGO_PKG_VERSION"))),
        );

        let http = Client::builder()
            .redirect(redirect::Policy::none())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(ConfigError::Client)?;

        Ok(Self {
            http,
            target: target_of(&endpoint),
            endpoint,
            headers,
            timeout_ms: config.timeout_ms,
            connect_timeout_ms: config.connect_timeout_ms,
            max_response_bytes: config.max_response_bytes,
            vouchers: VoucherProvider::new(settings),
            cache: AttestazioneCache::new(
                config.cache_max_entries,
                config.cache_max_age_secs.map(Duration::from_secs),
            ),
            clock,
        })
    }

    /// The attestation for `ricerca`: from the cache when it holds one valid on the requested
    /// day (its `DataValidita`, else today in Italy), else from INPS (see
    /// [`consulta_inps`](Self::consulta_inps)).
    pub async fn consulta(&self, ricerca: &RicercaCf) -> Result<Consultazione, IseeError> {
        self.consulta_for("", ricerca).await
    }

    /// [`consulta`](Self::consulta) on behalf of `scope` (an ente, a tenant): the cache serves
    /// each scope only what INPS answered to it.
    pub async fn consulta_for(&self, scope: &str, ricerca: &RicercaCf) -> Result<Consultazione, IseeError> {
        check(ricerca)?;
        let now = self.clock.now();
        let day = ricerca.data_validita.unwrap_or_else(|| rome_date(now));
        if let Some(attestazione) =
            self.cache.get(scope, &ricerca.codice_fiscale, ricerca.prestazione, day, now)
        {
            tracing::debug!(adapter = KIND, prestazione = %ricerca.prestazione, "attestazione served from the cache");
            return Ok(Consultazione::Attestazione { attestazione, origine: Origine::Cache });
        }
        self.consulta_inps_for(scope, ricerca).await
    }

    /// Asks INPS, whatever the cache holds. An `OK` answer replaces the cached attestation for
    /// the person and prestazione; a `DATI_NON_TROVATI` removes it if it was valid on the day
    /// asked.
    pub async fn consulta_inps(&self, ricerca: &RicercaCf) -> Result<Consultazione, IseeError> {
        self.consulta_inps_for("", ricerca).await
    }

    /// [`consulta_inps`](Self::consulta_inps) on behalf of `scope`.
    pub async fn consulta_inps_for(
        &self,
        scope: &str,
        ricerca: &RicercaCf,
    ) -> Result<Consultazione, IseeError> {
        check(ricerca)?;
        let span = tracing::debug_span!("isee.consulta", adapter = KIND, prestazione = %ricerca.prestazione);
        async move {
            let outcome = self.ask(scope, ricerca).await;
            match &outcome {
                Ok(Consultazione::Attestazione { origine, .. }) => {
                    tracing::debug!(esito = "OK", id_richiesta = ?id_of(origine), "attestazione received")
                }
                Ok(Consultazione::NessunaAttestazione { id_richiesta, .. }) => {
                    tracing::debug!(esito = "DATI_NON_TROVATI", id_richiesta = ?id_richiesta, "no attestazione")
                }
                Err(err) => tracing::debug!(transient = err.is_transient(), reason = %err, "consultation failed"),
            }
            outcome
        }
        .instrument(span)
        .await
    }

    /// The cache, e.g. to forget a person's attestation when the ente learns it was replaced.
    pub fn cache(&self) -> &AttestazioneCache {
        &self.cache
    }

    async fn ask(&self, scope: &str, ricerca: &RicercaCf) -> Result<Consultazione, IseeError> {
        let voucher = self.vouchers.voucher(&self.http, self.clock.as_ref()).await?;
        let mut bearer =
            HeaderValue::from_str(&format!("Bearer {voucher}")).map_err(|_| IseeError::Voucher {
                reason: "the voucher holds characters HTTP headers do not allow".to_owned(),
                transient: false,
            })?;
        bearer.set_sensitive(true);

        let response = self
            .http
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(AUTHORIZATION, bearer)
            .body(request_envelope(ricerca))
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)));
        let body = match read_limited(response, self.max_response_bytes).await {
            Ok(body) => body,
            Err(ReadError::TooLarge) => {
                return Err(IseeError::Malformed {
                    element: "Envelope".to_owned(),
                    problem: format!("the answer is larger than {} bytes", self.max_response_bytes),
                })
            }
            Err(ReadError::Failed(reason)) => {
                return Err(IseeError::Transport {
                    reason: format!("reading the answer of {} failed: {reason}", self.target),
                })
            }
        };
        if status.as_u16() == 401 {
            // The voucher was refused (expired early, revoked): ask a new one next time.
            self.vouchers.invalidate(&voucher).await;
        }
        let answer = match parse_answer(&body) {
            Ok(SoapAnswer::Fault(fault)) => {
                return Err(IseeError::SoapFault {
                    transient: fault.is_transient(),
                    code: from_inps(&fault.code),
                    string: from_inps(&fault.string),
                })
            }
            Ok(SoapAnswer::Result(r)) if status.is_success() => r,
            Ok(SoapAnswer::Result(_)) | Err(_) if !status.is_success() => {
                let code = status.as_u16();
                let transient_hint = matches!(code, 429 | 503);
                return Err(IseeError::Http {
                    status: code,
                    reason: from_inps(&String::from_utf8_lossy(
                        &body[..body.len().min(4 * HTTP_REASON_CHARS)],
                    )),
                    retry_after: if transient_hint { retry_after } else { None },
                });
            }
            Ok(SoapAnswer::Result(r)) => r,
            Err(e) => return Err(IseeError::Malformed { element: e.element, problem: e.problem }),
        };

        let descrizione = answer.descrizione_errore.as_deref().map(from_inps);
        let Some(esito) = EsitoInps::parse(&answer.esito) else {
            return Err(IseeError::UnknownEsito {
                esito: from_inps(&answer.esito).chars().take(40).collect(),
            });
        };
        match esito {
            EsitoInps::Ok => {
                let encoded = answer.xml_esito_attestazione.ok_or_else(|| IseeError::Malformed {
                    element: "Envelope/Body/ConsultazioneAttestazioneResponse/ConsultazioneAttestazioneResult/XmlEsitoAttestazione".to_owned(),
                    problem: "is missing although Esito is OK".to_owned(),
                })?;
                let attestazione = Arc::new(decode_base64(&encoded)?);
                self.cache.insert(
                    scope,
                    &ricerca.codice_fiscale,
                    ricerca.prestazione,
                    attestazione.clone(),
                    self.clock.now(),
                );
                Ok(Consultazione::Attestazione {
                    attestazione,
                    origine: Origine::Inps { id_richiesta: answer.id_richiesta },
                })
            }
            EsitoInps::DatiNonTrovati => {
                // INPS has no attestation for that day: a kept one valid on it is stale.
                let now = self.clock.now();
                let day = ricerca.data_validita.unwrap_or_else(|| rome_date(now));
                if self.cache.get(scope, &ricerca.codice_fiscale, ricerca.prestazione, day, now).is_some() {
                    self.cache.remove(scope, &ricerca.codice_fiscale, ricerca.prestazione);
                }
                Ok(Consultazione::NessunaAttestazione { descrizione, id_richiesta: answer.id_richiesta })
            }
            EsitoInps::RichiestaInvalida | EsitoInps::RiscontroNonValido => {
                Err(IseeError::Refused { esito, descrizione: descrizione.unwrap_or_default() })
            }
            EsitoInps::DatabaseOffline | EsitoInps::ErroreInterno => {
                Err(IseeError::Unavailable { esito, descrizione: descrizione.unwrap_or_default() })
            }
        }
    }

    fn transport_error(&self, err: &reqwest::Error) -> IseeError {
        let target = &self.target;
        if err.is_timeout() {
            let reason = if err.is_connect() {
                format!("connecting to {target} timed out after {} ms", self.connect_timeout_ms)
            } else {
                format!("timed out after {} ms waiting for {target}", self.timeout_ms)
            };
            return IseeError::Transport { reason };
        }
        IseeError::Transport { reason: format!("request to {target} failed: {}", describe_transport(err)) }
    }
}

fn id_of(origine: &Origine) -> Option<&str> {
    match origine {
        Origine::Inps { id_richiesta } => id_richiesta.as_deref(),
        Origine::Cache => None,
    }
}

fn check(ricerca: &RicercaCf) -> Result<(), IseeError> {
    ricerca.check().map_err(|(field, rule)| IseeError::InvalidRequest { field, rule: rule.to_owned() })
}

/// A transport failure in words, without the URL: timeout, refused, or the innermost cause.
pub(crate) fn describe_transport(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    if err.is_connect() {
        if let Some(io) = io_error(err) {
            if io.kind() == io::ErrorKind::ConnectionRefused {
                return "connection refused".to_owned();
            }
        }
    }
    let mut innermost = None;
    let mut source = err.source();
    while let Some(cause) = source {
        innermost = Some(cause);
        source = cause.source();
    }
    // reqwest's own message names the URL; the innermost cause does not.
    innermost.map_or_else(|| "the request could not be completed".to_owned(), |c| c.to_string())
}

fn io_error(err: &reqwest::Error) -> Option<&io::Error> {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        source = e.source();
    }
    None
}

pub(crate) enum ReadError {
    TooLarge,
    Failed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("the answer is too large"),
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(ReadError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(ReadError::Failed(describe_transport(&e))),
        }
    }
}
