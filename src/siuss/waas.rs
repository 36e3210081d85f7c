//! The WaaS service (INPS `api-comuni.yaml` v2.0.1) without HTTP: reading the query of
//! `GET /flussi`, the feed, checking and recording the body of `POST /esiti`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::Value;

use super::voucher::{Access, Refusal, WaasCaller};
use crate::config::InpsConfig;
use crate::metrics::{EsitoLabel, Metrics};
use crate::store::siuss::{parse_rfc3339_ms, EsitiOutcome, EsitoIn, FeedEntry, SiussStore};
use crate::store::StoreResult;

/// `UnixTimestamp.maximum` in the OpenAPI.
const SINCE_MAX: u128 = 100_000_000_000_000_000_000;
/// Entries per page when INPS does not say.
pub const LIMIT_DEFAULT: usize = 10;
/// Largest page (`limit.maximum`, `Entries.elenco_flussi.maxItems`).
pub const LIMIT_MAX: usize = 100;
/// `ElencoEsiti.elenco_esiti.maxItems`.
pub const ESITI_MAX: usize = 100;
/// The outcomes INPS may report.
pub const CODICI_ESITO: [&str; 4] = ["OK", "DATI_NON_TROVATI", "RICHIESTA_INVALIDA", "ERRORE_GENERICO"];

/// A request that does not follow the OpenAPI: the parameter or JSON pointer, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub at: String,
    pub message: String,
}

fn bad(at: impl Into<String>, message: impl Into<String>) -> BadRequest {
    BadRequest { at: at.into(), message: message.into() }
}

/// The WaaS service.
pub struct Waas {
    access: Access,
    store: Arc<dyn SiussStore>,
    metrics: Arc<Metrics>,
    enti: usize,
    /// Refusals per caller address since its last audit record (see [`Waas::denial_to_audit`]).
    denials: std::sync::Mutex<HashMap<Option<IpAddr>, (std::time::Instant, u64)>>,
}

/// How often refusals of one caller address are written to the audit log: the endpoints face the
/// network, and anyone reaching them could otherwise grow the audit chain at will.
const DENIAL_AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Caller addresses remembered at most (the oldest are forgotten first).
const DENIAL_PEERS_MAX: usize = 4096;

impl Waas {
    pub fn new(
        config: &InpsConfig,
        store: Arc<dyn SiussStore>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            access: Access::new(&config.auth)?,
            store,
            metrics,
            enti: config.enti.len(),
            denials: Default::default(),
        })
    }

    /// Whether a refusal of a request from `peer` is written to the audit log now: the first of
    /// each address in [`DENIAL_AUDIT_EVERY`], which says how many were refused since its last
    /// record. `None`: counted, not written.
    pub fn denial_to_audit(&self, peer: Option<IpAddr>) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut denials = self.denials.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((since, skipped)) = denials.get_mut(&peer) {
            if now.duration_since(*since) < DENIAL_AUDIT_EVERY {
                *skipped += 1;
                return None;
            }
            let earlier = *skipped;
            *since = now;
            *skipped = 0;
            return Some(earlier);
        }
        if denials.len() >= DENIAL_PEERS_MAX {
            if let Some(oldest) = denials.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k) {
                denials.remove(&oldest);
            }
        }
        denials.insert(peer, (now, 0));
        Some(0)
    }

    /// Fetches the JWKS URL when one is configured (at start; later only on an unknown `kid`).
    pub async fn fetch_keys(&self) {
        if let Access::Pdnd(p) = &self.access {
            p.refresh().await;
        }
    }

    pub fn enti(&self) -> usize {
        self.enti
    }

    pub fn pdnd(&self) -> bool {
        matches!(self.access, Access::Pdnd(_))
    }

    /// Checks the caller of one request.
    pub async fn authorize(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<WaasCaller, Refusal> {
        self.access.check(headers, peer).await
    }

    /// The flussi with `ts_flusso > since`, oldest first.
    pub async fn feed(&self, since: i64, limit: usize) -> StoreResult<Vec<FeedEntry>> {
        self.metrics.siuss_polls.inc();
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.store.siuss_feed(since, limit).await
    }

    /// Records INPS's outcomes.
    pub async fn esiti(&self, esiti: Vec<EsitoIn>, actor: String) -> StoreResult<EsitiOutcome> {
        let outcome = self.store.siuss_esiti(esiti, actor).await?;
        for a in &outcome.applied {
            self.metrics.siuss_esiti.get_or_create(&EsitoLabel { esito: a.codice.clone() }).inc();
        }
        Ok(outcome)
    }
}

/// `since` (required) and `limit` — or `max_entries`, its name in the PDF specification — from
/// the query pairs.
pub fn feed_query(pairs: &[(String, String)]) -> Result<(i64, usize), BadRequest> {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim());
    let since = get("since").ok_or_else(|| {
        bad(
            "since",
            "required: the ts_flusso (Unix milliseconds) of the last flusso acquired, 0 the first time",
        )
    })?;
    let since: u128 = since
        .parse()
        .ok()
        .filter(|v| *v <= SINCE_MAX)
        .ok_or_else(|| bad("since", "must be an integer number of milliseconds, 0 to 1e20"))?;
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let limit =
        match get("limit").map(|v| ("limit", v)).or_else(|| get("max_entries").map(|v| ("max_entries", v))) {
            None => LIMIT_DEFAULT,
            Some((name, v)) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= LIMIT_MAX)
                .ok_or_else(|| bad(name, format!("must be an integer from 0 to {LIMIT_MAX}")))?,
        };
    Ok((since, limit))
}

/// A date-time as the OpenAPI types it (RFC 3339), or Unix milliseconds as the PDF specification
/// does; normalized to milliseconds.
fn timestamp(v: &Value, at: &str) -> Result<i64, BadRequest> {
    match v {
        Value::String(s) => {
            let upper = s.to_ascii_uppercase();
            parse_rfc3339_ms(&upper)
                .or_else(|| parse_rfc3339_ms(&upper.replace(":60", ":59")))
                .ok_or_else(|| bad(at, "must be an RFC 3339 date-time (2023-11-27T11:04:56.852Z)"))
        }
        Value::Number(n) => n
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad(at, "must be an RFC 3339 date-time or Unix milliseconds")),
        _ => Err(bad(at, "must be an RFC 3339 date-time")),
    }
}

/// Checks a `POST /esiti` body against `ElencoEsiti` and reads it.
pub fn esiti_body(body: &Value) -> Result<Vec<EsitoIn>, BadRequest> {
    let Value::Object(root) = body else {
        return Err(bad("", "the body must be a JSON object {\"elenco_esiti\": [...]}"));
    };
    if let Some(k) = root.keys().find(|k| *k != "elenco_esiti") {
        return Err(bad(format!("/{k}"), "unknown property: the body has elenco_esiti only"));
    }
    let items = match root.get("elenco_esiti") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("/elenco_esiti", "must be an array")),
    };
    if items.len() > ESITI_MAX {
        return Err(bad("/elenco_esiti", format!("at most {ESITI_MAX} esiti per request")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |k: &str| format!("/elenco_esiti/{i}/{k}");
            let Value::Object(o) = item else {
                return Err(bad(format!("/elenco_esiti/{i}"), "must be an object"));
            };
            let text = |k: &str, required: bool| -> Result<Option<String>, BadRequest> {
                match o.get(k) {
                    None if required => Err(bad(at(k), "required")),
                    None => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(bad(at(k), "must be a string")),
                }
            };
            let id_flusso = text("id_flusso", true)?.unwrap_or_default();
            text("tipo", true)?;
            let codice = text("codice_esito", true)?.unwrap_or_default();
            if !CODICI_ESITO.contains(&codice.as_str()) {
                return Err(bad(at("codice_esito"), format!("must be one of {}", CODICI_ESITO.join(", "))));
            }
            let ts_flusso = timestamp(
                o.get("ts_flusso").ok_or_else(|| bad(at("ts_flusso"), "required"))?,
                &at("ts_flusso"),
            )?;
            timestamp(
                o.get("ts_acquisizione").ok_or_else(|| bad(at("ts_acquisizione"), "required"))?,
                &at("ts_acquisizione"),
            )?;
            Ok(EsitoIn {
                id_flusso,
                codice,
                descrizione: text("descrizione_esito", false)?,
                id_acquisizione_siuss: text("id_acquisizione_siuss", false)?,
                codice_siuss: text("codice_siuss", false)?,
                ts_flusso: ts_flusso.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_one_address_are_audited_once_a_minute_with_a_count() {
        let config: InpsConfig = serde_json::from_value(serde_json::json!({
            "enti": [], "auth": {"mode": "trusted-gateway", "trusted_peers": ["127.0.0.1"]}
        }))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SiussStore> = crate::store::sqlite::SqliteStore::open(dir.path()).unwrap();
        let waas = Waas::new(&config, store, Arc::new(Metrics::default())).unwrap();
        let (a, b) = (Some("192.0.2.1".parse().unwrap()), Some("192.0.2.2".parse().unwrap()));
        assert_eq!(waas.denial_to_audit(a), Some(0));
        assert_eq!(waas.denial_to_audit(a), None);
        assert_eq!(waas.denial_to_audit(a), None);
        assert_eq!(waas.denial_to_audit(b), Some(0), "another address has its own record");
        // A minute later the next refusal is written, with the two counted in between.
        let mut denials = waas.denials.lock().unwrap();
        let since = &mut denials.get_mut(&a).unwrap().0;
        *since = since.checked_sub(DENIAL_AUDIT_EVERY).expect("a clock running for a minute");
        drop(denials);
        assert_eq!(waas.denial_to_audit(a), Some(2));
    }
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn feed_query_follows_the_openapi_and_the_pdf() {
        assert_eq!(feed_query(&q(&[("since", "0")])), Ok((0, 10)));
        assert_eq!(
            feed_query(&q(&[("since", "1490000000000"), ("limit", "100")])),
            Ok((1_490_000_000_000, 100))
        );
        assert_eq!(feed_query(&q(&[("since", "5"), ("max_entries", "3")])), Ok((5, 3)));
        assert_eq!(feed_query(&q(&[("since", "5"), ("limit", "0")])), Ok((5, 0)));
        assert_eq!(feed_query(&q(&[("since", "100000000000000000000")])), Ok((i64::MAX, 10)));
        for bad_q in [
            q(&[]),
            q(&[("since", "-1")]),
            q(&[("since", "abc")]),
            q(&[("since", "100000000000000000001")]),
            q(&[("since", "1"), ("limit", "101")]),
            q(&[("since", "1"), ("limit", "-1")]),
            q(&[("since", "1"), ("max_entries", "x")]),
        ] {
            assert!(feed_query(&bad_q).is_err(), "{bad_q:?}");
        }
        assert_eq!(feed_query(&q(&[("since", "1"), ("limit", "101")])).unwrap_err().at, "limit");
    }

    #[test]
    fn esiti_body_follows_elenco_esiti() {
        let ok = json!({"elenco_esiti": [{
            "id_flusso": "F205.PS.20260101.0000001", "tipo": "PS_PSA_SINA",
            "ts_flusso": "2023-11-27T11:04:56.852Z", "ts_acquisizione": "2023-11-27T11:05:00Z",
            "codice_esito": "OK", "id_acquisizione_siuss": "22738", "codice_siuss": "X1"}]});
        let e = esiti_body(&ok).unwrap();
        assert_eq!(e[0].ts_flusso, "1701083096852");
        assert_eq!(e[0].codice_siuss.as_deref(), Some("X1"));
        assert!(esiti_body(&json!({})).unwrap().is_empty());
        let mut unknown = ok.clone();
        unknown["x"] = json!(1);
        assert_eq!(esiti_body(&unknown).unwrap_err().at, "/x");
        let mut bad_code = ok.clone();
        bad_code["elenco_esiti"][0]["codice_esito"] = json!("KO");
        assert_eq!(esiti_body(&bad_code).unwrap_err().at, "/elenco_esiti/0/codice_esito");
        let mut bad_ts = ok.clone();
        bad_ts["elenco_esiti"][0]["ts_acquisizione"] = json!("ieri");
        assert_eq!(esiti_body(&bad_ts).unwrap_err().at, "/elenco_esiti/0/ts_acquisizione");
        let mut ms = ok.clone();
        ms["elenco_esiti"][0]["ts_flusso"] = json!(1_701_083_096_852i64);
        assert_eq!(esiti_body(&ms).unwrap()[0].ts_flusso, "1701083096852");
        let mut missing = ok;
        missing["elenco_esiti"][0].as_object_mut().unwrap().remove("tipo");
        assert_eq!(esiti_body(&missing).unwrap_err().at, "/elenco_esiti/0/tipo");
    }
}
