//! The one TOML configuration file, with every value overridable by `CSI_GATEWAY_*` environment
//! variables (nested keys joined by `__`, e.g. `CSI_GATEWAY_SERVER__LISTEN=0.0.0.0:8080`).
//!
//! With no file at all the defaults describe embedded mode on 127.0.0.1:8080 with `./data`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// `CSI_GATEWAY_*` variables read by the command line itself, not configuration keys.
pub const NOT_CONFIG: &[&str] =
    &["LOG", "CONFIG", "URL", "API_KEY", "REFERENCE", "SCHEMATHESIS", "TEST_POSTGRES", "TEST_AMQP"];

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub coop: CoopConfig,
    /// INPS SIUSS over WaaS. Absent: the WaaS endpoints answer 404 and no flusso is built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inps: Option<InpsConfig>,
    /// INPS ISEE consultation (`ConsultazioneAttestazione`). Absent: its endpoint answers 404.
    #[serde(default, skip_serializing)]
    pub isee: Option<csi_gateway_isee::IseeConfig>,
    /// Where events, delivery state and the audit chain live.
    #[serde(default)]
    pub store: StoreConfig,
    /// How deliveries travel to the workers.
    #[serde(default)]
    pub queue: QueueConfig,
}

/// The storage engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file in `server.data_dir` (embedded mode).
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by every instance (cluster mode).
    Postgres,
}

/// `[store]`. Its `Debug` output hides the password of `url`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    /// `postgres://user:password@host:port/database` (required when `kind = "postgres"`).
    #[serde(default, skip_serializing)]
    pub url: Option<String>,
    /// Connections per instance.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    16
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("kind", &self.kind)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// A URL with its password (and anything else between `:` and `@` in the authority) replaced by
/// `***`, fit for logs and `Debug` output. A `password=` query parameter is hidden as well.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &userinfo[..colon], &authority[at..]),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    let tail = match tail.find('?') {
        Some(q) => {
            let (path, query) = tail.split_at(q + 1);
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { kind: StoreKind::default(), url: None, pool_size: default_pool_size() }
    }
}

/// The delivery transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// The store's own delivery table (SQLite or PostgreSQL).
    #[default]
    Store,
    /// RabbitMQ: quorum queue per destination, TTL retry tiers, parking queue.
    Rabbitmq,
}

/// `[queue]`. `Debug` hides the broker password.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default)]
    pub kind: QueueKind,
    /// `amqp://user:password@host:port/vhost` (required when `kind = "rabbitmq"`).
    #[serde(default, skip_serializing)]
    pub url: Option<String>,
    /// Topic exchange the events are published to, keyed by event type.
    #[serde(default = "default_exchange")]
    pub exchange: String,
    /// Unacknowledged messages a consumer holds; 0 = four times the destination's concurrency
    /// (while `concurrency` are attempted, the others are recorded and settled).
    #[serde(default)]
    pub prefetch: u16,
    /// `x-delivery-limit` of the destination queues: a message redelivered this many times
    /// (crashing consumers) is parked as a poison message.
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// How long an accepting request waits for RabbitMQ's publisher confirm before it answers
    /// 503 (the event stays committed and is published later).
    #[serde(default = "default_confirm_timeout_ms")]
    pub confirm_timeout_ms: u64,
}

fn default_confirm_timeout_ms() -> u64 {
    5_000
}

fn default_exchange() -> String {
    "csi.events".into()
}

fn default_delivery_limit() -> u32 {
    20
}

impl std::fmt::Debug for QueueConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueConfig")
            .field("kind", &self.kind)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("exchange", &self.exchange)
            .field("prefetch", &self.prefetch)
            .field("delivery_limit", &self.delivery_limit)
            .field("confirm_timeout_ms", &self.confirm_timeout_ms)
            .finish()
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            kind: QueueKind::default(),
            url: None,
            exchange: default_exchange(),
            prefetch: 0,
            delivery_limit: default_delivery_limit(),
            confirm_timeout_ms: default_confirm_timeout_ms(),
        }
    }
}

/// What to do with a delivery that breaks its progetto (service not authorized, date outside the
/// period, monthly hours exceeded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    /// Accept it, flagged for the social worker.
    #[default]
    Flag,
    /// Reject the row.
    Reject,
}

/// `[coop]`: the cooperatives adapter.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoopConfig {
    /// Folder of the cooperatives' mappings (`<name>.toml`) and code tables. Defaults to
    /// `./mappings/coop`, else the one in the source tree.
    #[serde(default)]
    pub mappings_dir: Option<PathBuf>,
    /// Default policy for deliveries that break their progetto.
    #[serde(default)]
    pub on_violation: OnViolation,
    /// Per-tenant policy, e.g. `[coop.tenants.F205] on_violation = "reject"`.
    #[serde(default)]
    pub tenants: std::collections::BTreeMap<String, CoopTenantConfig>,
    /// Largest upload in bytes (default 64 MiB).
    #[serde(default)]
    pub max_upload_bytes: Option<usize>,
    /// A watched folder for cooperatives that can only copy files.
    #[serde(default)]
    pub drop: Option<DropConfig>,
}

/// `[coop.tenants.<code>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoopTenantConfig {
    pub on_violation: OnViolation,
}

/// `[coop.drop]`: files copied into `dir` are uploaded as `client` with `mapping` for `tenant`,
/// then moved to `dir/processed/` (report beside them, `<file>.report.json`) or `dir/failed/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    pub dir: PathBuf,
    /// The `[[clients]]` name whose rights apply.
    pub client: String,
    pub mapping: String,
    pub tenant: String,
    /// Seconds between scans (default 5).
    #[serde(default)]
    pub interval_secs: Option<u64>,
}

impl CoopConfig {
    pub fn policy(&self, tenant: &str) -> OnViolation {
        self.tenants.get(tenant).map(|t| t.on_violation).unwrap_or(self.on_violation)
    }
}

/// `[server]`: where the gateway listens and keeps its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port of the HTTP API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Folder of the embedded store (`gateway.db`, SQLite in WAL mode).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Folder of the interchange contracts (JSON Schemas). Defaults to the `contracts/` folder
    /// next to the working directory, then the one shipped with the source tree.
    #[serde(default)]
    pub contracts_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { listen: default_listen(), data_dir: default_data_dir(), contracts_dir: None }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

/// `[limits]`: what one request may contain. Anything beyond gets a problem+json answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body in bytes (413 beyond).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most events in one batch request.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Deepest JSON nesting of objects and arrays.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Longest JSON string value, in characters.
    #[serde(default = "default_max_string")]
    pub max_string_chars: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            max_batch: default_max_batch(),
            max_depth: default_max_depth(),
            max_string_chars: default_max_string(),
        }
    }
}

fn default_max_body() -> usize {
    4 * 1024 * 1024
}
fn default_max_batch() -> usize {
    1000
}
fn default_max_depth() -> usize {
    32
}
fn default_max_string() -> usize {
    16 * 1024
}

/// Roles a client may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May publish events for its tenants.
    Publisher,
    /// May read events of its tenants.
    Reader,
    /// May list and replay dead letters of its tenants.
    Operator,
    /// May read and verify the audit log of its tenants.
    Auditor,
    /// Everything, on every tenant it is bound to.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// `[[clients]]`: who may call the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Name shown in the audit log.
    pub name: String,
    /// Lower-case hex SHA-256 of the API key; the key itself is never stored.
    pub api_key_sha256: String,
    /// Tenants (Belfiore/ISTAT/Ambito codes) the client may act on; `"*"` means all.
    pub tenants: Vec<String>,
    /// Roles held by the client.
    pub roles: BTreeSet<Role>,
    /// For a cooperative's client: its code. The client may submit deliveries only as this
    /// cooperative and only for progetti whose interventi name it.
    #[serde(default)]
    pub cooperativa: Option<String>,
}

/// `[[destinations]]`: where routed events are delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Unique name, used in routes, timelines and metrics.
    pub name: String,
    /// Outbound adapter kind. Available: `webhook`, `siuss` (builds the INPS SIUSS flussi served
    /// over WaaS; needs `[inps]`).
    pub adapter: String,
    /// Receiver URL (webhook only).
    #[serde(default)]
    pub url: String,
    /// Standard Webhooks signing secret (`whsec_…`, webhook only). Never logged.
    #[serde(default)]
    pub secret: String,
    /// Attempts before the event becomes a dead letter.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Seconds after acceptance (or replay) after which no further retry is made.
    #[serde(default = "default_max_age")]
    pub max_age_secs: u64,
    /// First retry delay in milliseconds; doubles at each attempt (full jitter).
    #[serde(default = "default_backoff_min")]
    pub backoff_min_ms: u64,
    /// Largest retry delay in milliseconds.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Deliveries in flight at once to this destination.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Timeout of one attempt in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_max_attempts() -> u32 {
    12
}
fn default_max_age() -> u64 {
    24 * 3600
}
fn default_backoff_min() -> u64 {
    500
}
fn default_backoff_max() -> u64 {
    300_000
}
fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> u64 {
    10_000
}

/// `[[routes]]`: which events go to which destinations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Event types, exact or `"*"`, or a prefix ending in `*` (`it.lombardia.csi.cartella.*`).
    pub types: Vec<String>,
    /// Tenants, exact or `"*"`.
    #[serde(default = "star")]
    pub tenants: Vec<String>,
    /// Destination names.
    pub to: Vec<String>,
}

fn star() -> Vec<String> {
    vec!["*".into()]
}

// Upper bounds of values used in time and size arithmetic later: past them a typo would overflow
// or panic in a worker instead of being refused here, and no real setting comes near them.
const MAX_CONCURRENCY: usize = 10_000;
const MAX_TIMEOUT_MS: u64 = 3_600_000;
const MAX_AGE_SECS: u64 = 30 * 24 * 3600;
const MAX_LEEWAY_SECS: u64 = 300;

/// A configuration that cannot be used, with the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
}

impl Config {
    /// Loads defaults, then the TOML file (when given), then `CSI_GATEWAY_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Invalid {
                    field: "--config".into(),
                    rule: format!("file {} does not exist", path.display()),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("CSI_GATEWAY_").ignore(NOT_CONFIG).split("__"));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.check()?;
        Ok(config)
    }

    /// Cross-field rules that serde alone cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, rule: &str| Err(ConfigError::Invalid { field, rule: rule.into() });
        if self.store.kind == StoreKind::Postgres {
            match self.store.url.as_deref() {
                None => return invalid("store.url".into(), "is required when store.kind = \"postgres\""),
                Some(u) if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) => {
                    return invalid("store.url".into(), "must start with postgres:// or postgresql://")
                }
                _ => {}
            }
        }
        if self.store.pool_size == 0 {
            return invalid("store.pool_size".into(), "must be at least 1");
        }
        if self.queue.kind == QueueKind::Rabbitmq {
            match self.queue.url.as_deref() {
                None => return invalid("queue.url".into(), "is required when queue.kind = \"rabbitmq\""),
                Some(u) if !(u.starts_with("amqp://") || u.starts_with("amqps://")) => {
                    return invalid("queue.url".into(), "must start with amqp:// or amqps://")
                }
                _ => {}
            }
            if self.queue.delivery_limit == 0 {
                return invalid("queue.delivery_limit".into(), "must be at least 1");
            }
            if self.queue.confirm_timeout_ms == 0 {
                return invalid("queue.confirm_timeout_ms".into(), "must be at least 1");
            }
            if self.store.kind == StoreKind::Sqlite {
                return invalid(
                    "queue.kind".into(),
                    "\"rabbitmq\" needs store.kind = \"postgres\": instances sharing a broker must share the store",
                );
            }
        }
        let mut names = BTreeSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = &c.api_key_sha256;
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(
                    format!("clients[{i}].api_key_sha256"),
                    "must be 64 hex characters (sha256 of the key)",
                );
            }
            if c.tenants.is_empty() {
                return invalid(format!("clients[{i}].tenants"), "must list at least one tenant or \"*\"");
            }
            if !names.insert(c.name.as_str()) {
                return invalid(format!("clients[{i}].name"), "must be unique");
            }
            // Any other role reads beyond the cooperative's own submissions (other cooperatives'
            // deliveries among the tenant's events, their liquidazione, the audit log).
            if c.cooperativa.is_some() && c.roles.iter().any(|r| *r != Role::Publisher) {
                return invalid(
                    format!("clients[{i}].roles"),
                    "a cooperative's client (with cooperativa) may hold only the publisher role: any other \
                     would let it read beyond its own submissions",
                );
            }
        }
        if let Some(d) = &self.coop.drop {
            if !names.contains(d.client.as_str()) {
                return invalid("coop.drop.client".into(), "names no configured client");
            }
        }
        let mut dests = BTreeSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            if !dests.insert(d.name.as_str()) {
                return invalid(format!("destinations[{i}].name"), "must be unique");
            }
            if self.queue.kind == QueueKind::Rabbitmq && d.name.contains(['.', '*', '#']) {
                return invalid(
                    format!("destinations[{i}].name"),
                    "must not contain '.', '*' or '#' with queue.kind = \"rabbitmq\" (it starts the routing key)",
                );
            }
            match d.adapter.as_str() {
                "webhook" => {
                    if d.url.trim().is_empty() {
                        return invalid(format!("destinations[{i}].url"), "required for adapter webhook");
                    }
                    if d.secret.is_empty() {
                        return invalid(format!("destinations[{i}].secret"), "required for adapter webhook");
                    }
                }
                "siuss" => {
                    if self.inps.is_none() {
                        return invalid(
                            format!("destinations[{i}].adapter"),
                            "adapter siuss needs an [inps] section (enti, auth)",
                        );
                    }
                    if self.destinations[..i].iter().any(|o| o.adapter == "siuss") {
                        return invalid(
                            format!("destinations[{i}].adapter"),
                            "only one destination may use adapter siuss (each would publish every flusso again)",
                        );
                    }
                    if !d.url.is_empty() || !d.secret.is_empty() {
                        return invalid(
                            format!("destinations[{i}].url"),
                            "url and secret are for webhooks only",
                        );
                    }
                }
                _ => {
                    return invalid(
                        format!("destinations[{i}].adapter"),
                        "unknown adapter (available: webhook, siuss)",
                    )
                }
            }
            if d.max_attempts == 0 {
                return invalid(format!("destinations[{i}].max_attempts"), "must be at least 1");
            }
            if !(1..=MAX_CONCURRENCY).contains(&d.concurrency) {
                return invalid(format!("destinations[{i}].concurrency"), "must be 1-10000");
            }
            if d.timeout_ms > MAX_TIMEOUT_MS {
                return invalid(format!("destinations[{i}].timeout_ms"), "must be at most 3600000 (1 hour)");
            }
            if d.max_age_secs > MAX_AGE_SECS {
                return invalid(
                    format!("destinations[{i}].max_age_secs"),
                    "must be at most 2592000 (30 days)",
                );
            }
            if d.backoff_min_ms == 0 {
                // Doubling 0 stays 0: every attempt would be spent at once.
                return invalid(format!("destinations[{i}].backoff_min_ms"), "must be at least 1");
            }
            if d.backoff_min_ms > d.backoff_max_ms {
                return invalid(
                    format!("destinations[{i}].backoff_min_ms"),
                    "must not exceed backoff_max_ms",
                );
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            for (j, to) in r.to.iter().enumerate() {
                if !dests.contains(to.as_str()) {
                    return invalid(format!("routes[{i}].to[{j}]"), "names no configured destination");
                }
            }
        }
        if let Some(inps) = &self.inps {
            inps.check().map_err(|(field, rule)| ConfigError::Invalid { field, rule })?;
        }
        // The ISEE adapter checks the rest of its section when it starts.
        if self.isee.as_ref().and_then(|i| i.cache_max_age_secs).is_some_and(|s| s > MAX_AGE_SECS) {
            return invalid("isee.cache_max_age_secs".into(), "must be at most 2592000 (30 days)");
        }
        Ok(())
    }
}

/// `[inps]`: the INPS SIUSS flussi, served to INPS over WaaS (`GET /flussi`, `POST /esiti`,
/// `GET /status`). One gateway may serve several enti (an Ambito), each fed by one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InpsConfig {
    /// The enti whose flussi this gateway publishes.
    pub enti: Vec<InpsEnteConfig>,
    /// The codice prestazione table (`codice;denominazione[;presenza_prova_mezzi]`). Defaults to
    /// `./mappings/inps/codici-prestazione.csv`, else the one in the source tree. Its denominazione
    /// wins over the event's.
    #[serde(default)]
    pub codici_prestazione: Option<PathBuf>,
    /// The states table (`istat;siuss[;nome]`, 3 digits each: ISTAT state code → SIUSS
    /// CodiceNazione/CodiceCittadinanza). The built-in one holds a few states only: a person of
    /// a state it lacks cannot be reported until this names a complete table.
    #[serde(default)]
    pub nazioni: Option<PathBuf>,
    /// Who may call the WaaS endpoints.
    pub auth: InpsAuthConfig,
}

/// `[[inps.enti]]`: one ente at INPS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InpsEnteConfig {
    /// Belfiore code of the ente (`codice_ente`, `Ente@Indirizzo`, the `id_flusso` prefix).
    pub belfiore: String,
    /// `denominazione_ente` and `Ente@Denominazione` (1–100 characters).
    pub denominazione: String,
    /// The gateway tenant whose `prestazione` events feed this ente.
    pub tenant: String,
    /// `Ente@CFOperatore`: codice fiscale (or 11-digit partita IVA) of the operator responsible.
    pub cf_operatore: String,
    /// `PresenzaProvaMezzi` (`1`–`4`) when the codice prestazione table does not say.
    pub presenza_prova_mezzi: String,
    /// `Ente@Codice`, the ente's code at INPS (1–32 characters). Defaults to `belfiore`.
    #[serde(default)]
    pub codice: Option<String>,
}

/// How the WaaS caller is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InpsAuthMode {
    /// The PDND voucher: `Authorization: Bearer <JWT>` (RS256) checked against a JWKS.
    Pdnd,
    /// An API gateway in front (e.g. GovWay) already checked the voucher.
    TrustedGateway,
}

/// `[inps.auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InpsAuthConfig {
    pub mode: InpsAuthMode,
    /// pdnd: expected `iss` of the voucher (the PDND authorization server).
    #[serde(default)]
    pub issuer: Option<String>,
    /// pdnd: expected `aud` (this e-service's audience as registered on PDND).
    #[serde(default)]
    pub audience: Option<String>,
    /// pdnd: accepted `purposeId` claims (INPS's finalità).
    #[serde(default)]
    pub purpose_ids: Vec<String>,
    /// pdnd: a JWKS JSON file with the signing keys.
    #[serde(default)]
    pub jwks_path: Option<PathBuf>,
    /// pdnd: a JWKS URL, fetched at start and again when a voucher names an unknown `kid`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// pdnd: clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// trusted-gateway: addresses or CIDRs of the API gateway (`10.0.0.5`, `10.0.0.0/24`).
    #[serde(default)]
    pub trusted_peers: Vec<String>,
    /// trusted-gateway: the header the API gateway adds to every request it let through.
    #[serde(default)]
    pub header: Option<String>,
}

fn default_leeway() -> u64 {
    60
}

impl InpsAuthConfig {
    /// The header required in trusted-gateway mode.
    pub fn gateway_header(&self) -> &str {
        self.header.as_deref().unwrap_or("GovWay-Transaction-ID")
    }
}

fn belfiore(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 4 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit)
}

fn cf_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let cf = b.len() == 16
        && b.iter().enumerate().all(|(i, c)| match i {
            0..=5 | 8 | 11 | 15 => c.is_ascii_uppercase(),
            _ => c.is_ascii_digit() || b"LMNPQRSTUV".contains(c),
        });
    cf || (b.len() == 11 && b.iter().all(u8::is_ascii_digit))
}

impl InpsConfig {
    /// Cross-field rules; the error names the field.
    fn check(&self) -> Result<(), (String, String)> {
        let bad = |f: String, r: &str| Err((f, r.to_string()));
        if self.enti.is_empty() {
            return bad("inps.enti".into(), "must list at least one ente");
        }
        let (mut codes, mut tenants) = (BTreeSet::new(), BTreeSet::new());
        for (i, e) in self.enti.iter().enumerate() {
            let f = |k: &str| format!("inps.enti[{i}].{k}");
            if !belfiore(&e.belfiore) {
                return bad(f("belfiore"), "must be a Belfiore code ^[A-Z][0-9]{3}$");
            }
            if !codes.insert(e.belfiore.as_str()) {
                return bad(f("belfiore"), "must be unique");
            }
            if e.tenant.trim().is_empty() {
                return bad(f("tenant"), "must name the tenant whose events feed the ente");
            }
            if !tenants.insert(e.tenant.as_str()) {
                return bad(f("tenant"), "must be unique: one tenant feeds one ente");
            }
            if !(1..=100).contains(&e.denominazione.trim().chars().count()) {
                return bad(f("denominazione"), "must be 1-100 characters");
            }
            // The XSD's pattern, not only a codice fiscale's shape: an omocodia letter where the
            // XSD wants a digit would make every flusso of the ente invalid.
            if !cf_shape(&e.cf_operatore) || !csi_gateway_inps::rules::is_xsd_codice_fiscale(&e.cf_operatore)
            {
                return bad(
                    f("cf_operatore"),
                    "must be a codice fiscale (16 characters, digits where the SIUSS XSD wants them: no \
                     omocodia letters) or an 11-digit partita IVA",
                );
            }
            if !["1", "2", "3", "4"].contains(&e.presenza_prova_mezzi.as_str()) {
                return bad(f("presenza_prova_mezzi"), "must be \"1\", \"2\", \"3\" or \"4\"");
            }
            if let Some(c) = &e.codice {
                if !(1..=32).contains(&c.chars().count()) {
                    return bad(f("codice"), "must be 1-32 characters");
                }
            }
        }
        let a = &self.auth;
        match a.mode {
            InpsAuthMode::Pdnd => {
                if a.issuer.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    return bad("inps.auth.issuer".into(), "required when mode = \"pdnd\"");
                }
                if a.audience.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    return bad("inps.auth.audience".into(), "required when mode = \"pdnd\"");
                }
                if a.purpose_ids.is_empty() {
                    return bad(
                        "inps.auth.purpose_ids".into(),
                        "must list at least one purposeId when mode = \"pdnd\"",
                    );
                }
                if a.jwks_path.is_none() && a.jwks_url.is_none() {
                    return bad(
                        "inps.auth.jwks_path".into(),
                        "a JWKS file (or jwks_url) is required when mode = \"pdnd\"",
                    );
                }
                if a.leeway_secs > MAX_LEEWAY_SECS {
                    return bad("inps.auth.leeway_secs".into(), "must be at most 300 (5 minutes)");
                }
                if let Some(u) = &a.jwks_url {
                    if !(u.starts_with("https://") || u.starts_with("http://")) {
                        return bad("inps.auth.jwks_url".into(), "must be an http(s) URL");
                    }
                }
                if !a.trusted_peers.is_empty() || a.header.is_some() {
                    return bad("inps.auth.trusted_peers".into(), "only for mode = \"trusted-gateway\"");
                }
            }
            InpsAuthMode::TrustedGateway => {
                if a.trusted_peers.is_empty() {
                    return bad(
                        "inps.auth.trusted_peers".into(),
                        "must list the API gateway's addresses when mode = \"trusted-gateway\"",
                    );
                }
                for (i, p) in a.trusted_peers.iter().enumerate() {
                    if p.parse::<ipnet::IpNet>().is_err() && p.parse::<std::net::IpAddr>().is_err() {
                        return bad(format!("inps.auth.trusted_peers[{i}]"), "not an IP address or CIDR");
                    }
                }
                if a.gateway_header().trim().is_empty()
                    || axum::http::HeaderName::from_bytes(a.gateway_header().as_bytes()).is_err()
                {
                    return bad("inps.auth.header".into(), "must be a valid HTTP header name");
                }
                if a.issuer.is_some()
                    || a.audience.is_some()
                    || !a.purpose_ids.is_empty()
                    || a.jwks_path.is_some()
                    || a.jwks_url.is_some()
                {
                    return bad("inps.auth.issuer".into(), "voucher settings are only for mode = \"pdnd\"");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_config_means_embedded_defaults() {
        let c = Config::load(None).expect("defaults load");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.data_dir, PathBuf::from("./data"));
    }

    fn with_inps(toml: &str) -> Result<Config, String> {
        let c: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())?;
        c.check().map_err(|e| e.to_string())?;
        Ok(c)
    }

    const INPS: &str = r#"
[[destinations]]
name = "inps"
adapter = "siuss"
[inps]
[[inps.enti]]
belfiore = "F205"
denominazione = "Comune di Milano"
tenant = "F205"
cf_operatore = "RSSMRA80A01F205X"
presenza_prova_mezzi = "1"
[inps.auth]
mode = "pdnd"
issuer = "https://auth.interop.pagopa.it"
audience = "https://comune.example/waas/v1"
purpose_ids = ["p-1"]
jwks_path = "/etc/csi/pdnd-jwks.json"
"#;

    #[test]
    fn inps_section_loads_and_its_rules_name_the_field() {
        let c = with_inps(INPS).expect("valid [inps]");
        let inps = c.inps.expect("inps");
        assert_eq!(inps.auth.mode, InpsAuthMode::Pdnd);
        assert_eq!(inps.auth.leeway_secs, 60);
        for (from, to, field) in [
            ("issuer = \"https://auth.interop.pagopa.it\"\n", "", "inps.auth.issuer"),
            ("purpose_ids = [\"p-1\"]", "purpose_ids = []", "inps.auth.purpose_ids"),
            ("jwks_path = \"/etc/csi/pdnd-jwks.json\"", "", "inps.auth.jwks_path"),
            ("belfiore = \"F205\"", "belfiore = \"015146\"", "inps.enti[0].belfiore"),
            ("cf_operatore = \"RSSMRA80A01F205X\"", "cf_operatore = \"nobody\"", "inps.enti[0].cf_operatore"),
            (
                "cf_operatore = \"RSSMRA80A01F205X\"",
                "cf_operatore = \"RSSMRALTA0MF205X\"",
                "inps.enti[0].cf_operatore",
            ),
            (
                "presenza_prova_mezzi = \"1\"",
                "presenza_prova_mezzi = \"5\"",
                "inps.enti[0].presenza_prova_mezzi",
            ),
            ("mode = \"pdnd\"", "mode = \"trusted-gateway\"", "inps.auth.trusted_peers"),
        ] {
            let err = with_inps(&INPS.replace(from, to)).unwrap_err();
            assert!(err.contains(field), "{field}: {err}");
        }
        let trusted =
            "[inps.auth]\nmode = \"trusted-gateway\"\ntrusted_peers = [\"10.0.0.0/24\", \"192.0.2.7\"]\n";
        let base = &INPS[..INPS.find("[inps.auth]").unwrap()];
        let c = with_inps(&format!("{base}{trusted}")).expect("trusted-gateway");
        assert_eq!(c.inps.unwrap().auth.gateway_header(), "GovWay-Transaction-ID");
        let err = with_inps(&format!("{base}{}", trusted.replace("192.0.2.7", "gateway.local"))).unwrap_err();
        assert!(err.contains("inps.auth.trusted_peers[1]"), "{err}");
    }

    /// A webhook destination with `setting` added.
    fn with_webhook(setting: &str) -> Result<Config, String> {
        with_inps(&format!(
            "[[destinations]]\nname = \"w\"\nadapter = \"webhook\"\nurl = \"http://x\"\nsecret = \"s\"\n{setting}\n"
        ))
    }

    /// An `[isee]` section with `setting` added.
    fn with_isee(setting: &str) -> Result<Config, String> {
        with_inps(&format!(
            "[isee]\nendpoint = \"https://inps.example/svc\"\nuser_id = \"01199250158\"\n\
             codice_ufficio = \"001\"\n{setting}\n[isee.pdnd]\ntoken_url = \"https://pdnd.example/token\"\n\
             client_id = \"c\"\naudience = \"a\"\npurpose_id = \"p\"\nkid = \"k\"\n\
             private_key_file = \"/etc/key.pem\"\n"
        ))
    }

    #[test]
    fn a_cooperatives_client_is_a_publisher_only() {
        let client = |roles: &str| {
            with_inps(&format!(
                "[[clients]]\nname = \"coop\"\napi_key_sha256 = \"{}\"\ntenants = [\"F205\"]\n\
                 roles = {roles}\ncooperativa = \"AURORA\"\n",
                "a".repeat(64)
            ))
        };
        assert!(client(r#"["publisher"]"#).is_ok());
        let e = client(r#"["publisher", "reader"]"#).unwrap_err();
        assert!(e.starts_with("clients[0].roles: a cooperative's client"), "{e}");
    }

    #[test]
    fn values_past_their_upper_bound_are_refused_naming_the_key() {
        for (setting, error) in [
            ("concurrency = 10001", "destinations[0].concurrency: must be 1-10000"),
            ("concurrency = 0", "destinations[0].concurrency: must be 1-10000"),
            ("timeout_ms = 3600001", "destinations[0].timeout_ms: must be at most 3600000 (1 hour)"),
            ("max_age_secs = 2592001", "destinations[0].max_age_secs: must be at most 2592000 (30 days)"),
            ("backoff_min_ms = 0", "destinations[0].backoff_min_ms: must be at least 1"),
        ] {
            assert_eq!(with_webhook(setting).unwrap_err(), error);
        }
        assert!(with_webhook("concurrency = 10000\ntimeout_ms = 3600000\nmax_age_secs = 2592000").is_ok());

        let leeway = |secs: u64| {
            with_inps(&INPS.replace("[inps.auth]\n", &format!("[inps.auth]\nleeway_secs = {secs}\n")))
        };
        assert_eq!(leeway(301).unwrap_err(), "inps.auth.leeway_secs: must be at most 300 (5 minutes)");
        assert!(leeway(300).is_ok());

        assert_eq!(
            with_isee("cache_max_age_secs = 2592001").unwrap_err(),
            "isee.cache_max_age_secs: must be at most 2592000 (30 days)"
        );
        assert!(with_isee("cache_max_age_secs = 2592000").is_ok());
    }

    #[test]
    fn siuss_destination_needs_inps_and_webhook_needs_url() {
        let err = with_inps("[[destinations]]\nname = \"inps\"\nadapter = \"siuss\"\n").unwrap_err();
        assert!(err.contains("destinations[0].adapter") && err.contains("[inps]"), "{err}");
        let err =
            with_inps("[[destinations]]\nname = \"w\"\nadapter = \"webhook\"\nsecret = \"s\"\n").unwrap_err();
        assert!(err.contains("destinations[0].url"), "{err}");
        let twice = INPS.replace("[inps]", "[[destinations]]\nname = \"inps2\"\nadapter = \"siuss\"\n[inps]");
        assert!(with_inps(&twice).unwrap_err().contains("destinations[1].adapter"));
    }

    #[test]
    fn postgres_password_never_shows_in_debug_output() {
        let c = with_inps(
            "[store]\nkind = \"postgres\"\nurl = \"postgres://gw:s3cret@db.example:5432/csi?password=other\"\n",
        )
        .expect("postgres store");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("other"), "{debug}");
        assert!(debug.contains("postgres://gw:***@db.example:5432/csi?password=***"), "{debug}");
        assert_eq!(redact_url("postgres://gw@db/csi"), "postgres://gw@db/csi");
    }

    #[test]
    fn broker_password_never_shows_in_debug_output() {
        let q = QueueConfig {
            kind: QueueKind::Rabbitmq,
            url: Some("amqp://gw:br0ker@mq.example:5672/%2f".into()),
            ..QueueConfig::default()
        };
        let debug = format!("{q:?}");
        assert!(!debug.contains("br0ker"), "{debug}");
        assert!(debug.contains("amqp://gw:***@mq.example:5672/%2f"), "{debug}");
    }

    #[test]
    fn inps_runs_on_the_postgres_store_too() {
        let text = format!("{INPS}\n[store]\nkind = \"postgres\"\nurl = \"postgres://gw@db/csi\"\n");
        assert!(with_inps(&text).is_ok(), "cluster mode accepts [inps]");
    }

    #[test]
    fn route_to_unknown_destination_names_the_field() {
        let mut c = Config::default();
        c.routes.push(RouteConfig { types: vec!["*".into()], tenants: star(), to: vec!["nowhere".into()] });
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("routes[0].to[0]"), "{err}");
    }
}
