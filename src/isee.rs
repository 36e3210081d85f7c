//! The ISEE adapter inside the hub: a CSI asks the gateway for the ISEE attestation of a person;
//! the gateway asks INPS (`ConsultazioneAttestazione`, through `csi-gateway-isee`, cached until
//! the attestation's validity ends) and publishes what INPS answered as an
//! `it.lombardia.csi.isee.acquisito.v1` interchange event, routed like any other.
//!
//! *Invariant:* the codice fiscale goes to INPS and nowhere else: the event names the person by
//! pseudonym, and no error or log line holds a codice fiscale or an ISEE value.

use csi_gateway_isee::{
    isee_acquisito, Consultazione, IseeClient, IseeConfig, IseeError, Origine, PrestazioneDaErogare,
    RicercaCf, StatoDomanda,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::contracts::FieldError;
use crate::ingest::{EventResult, IngestError, Pipeline};

/// What a CSI asks: whose attestation, for which prestazione and domanda.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Richiesta {
    /// Tenant (Belfiore code); defaults to the client's only tenant.
    pub tenant: Option<String>,
    /// The person's codice fiscale (sent to INPS only).
    pub codice_fiscale: String,
    /// The person's pseudonym in the CSI: the event names the person by it.
    pub pseudonimo: String,
    /// `PrestazioneDaErogare` (`A1.01` … `A3.03`, `Z9.99`).
    pub prestazione: String,
    /// The comune's reference of the domanda (`ProtocolloDomandaEnteErogatore`).
    pub protocollo_domanda: String,
    /// The day the attestation must be valid on (`YYYY-MM-DD`); today when absent.
    pub data_validita: Option<String>,
    /// `da_erogare` (default) or `erogata`.
    pub stato_domanda: Option<String>,
}

/// What INPS answered, and the event the gateway published.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Esito {
    /// `OK` (an attestation) or `DATI_NON_TROVATI` (no valid attestation: not an error).
    pub esito: &'static str,
    /// `inps` (asked now) or `cache` (an attestation still valid, asked earlier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origine: Option<&'static str>,
    /// INPS's id of the consultation, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_richiesta: Option<String>,
    /// Id of the `isee.acquisito` event (the same id when the same attestation is asked again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Whether the event had been published before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// The event's `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// INPS's words, for `DATI_NON_TROVATI`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descrizione: Option<String>,
}

/// Why a consultation gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum IseeFailure {
    /// The request breaks a rule; nothing was sent to INPS.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// INPS (or the voucher, or the network) failed; `transient` says whether to try again.
    #[error(transparent)]
    Inps(#[from] IseeError),
    /// The attestation INPS sent lacks what the event needs (an element at fault).
    #[error("{0}")]
    Attestation(String),
    /// The attestation could not become an event.
    #[error("{0}")]
    Event(String),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// The adapter: one INPS client, its voucher and cache shared by every request.
pub struct Isee {
    client: IseeClient,
}

impl Isee {
    pub fn new(config: IseeConfig) -> anyhow::Result<Self> {
        Ok(Self { client: IseeClient::new(config)? })
    }

    /// Asks INPS (or the cache) and publishes the attestation as an event of `tenant`.
    pub async fn consulta(
        &self,
        pipeline: &Pipeline,
        caller: &Caller,
        tenant: String,
        r: Richiesta,
    ) -> Result<Esito, IseeFailure> {
        let ricerca = ricerca(&r)?;
        // Cached per tenant: an attestation INPS gave one ente is not served to another.
        match self.client.consulta_for(&tenant, &ricerca).await? {
            Consultazione::NessunaAttestazione { descrizione, id_richiesta } => Ok(Esito {
                esito: "DATI_NON_TROVATI",
                origine: Some("inps"),
                id_richiesta,
                event_id: None,
                duplicate: None,
                data: None,
                descrizione,
            }),
            Consultazione::Attestazione { attestazione, origine } => {
                // The pseudonimo was checked before asking: what fails here is INPS's attestation.
                let data = isee_acquisito(&attestazione, &ricerca, &r.pseudonimo)
                    .map_err(|e| IseeFailure::Attestation(e.to_string()))?;
                let data = serde_json::to_value(&data).map_err(|e| IseeFailure::Event(e.to_string()))?;
                let protocollo = data["protocolloDSU"].as_str().unwrap_or_default().to_string();
                let event = json!({
                    "specversion": "1.0",
                    "id": uuid::Uuid::now_v7().to_string(),
                    "source": "/adapters/isee",
                    "type": csi_gateway_isee::EVENT_TYPE,
                    "tenant": tenant,
                    "subject": r.pseudonimo,
                    "datacontenttype": "application/json",
                    "dataschema": csi_gateway_isee::DATA_SCHEMA,
                    "correlationid": r.protocollo_domanda,
                    // The same attestation for the same person and prestazione is one fact.
                    "idempotencykey": format!("isee:{}:{}:{}", r.pseudonimo, protocollo, r.prestazione),
                    "data": data.clone(),
                });
                let digest = crate::audit::digest(event.to_string().as_bytes());
                let result = pipeline.submit(caller, &digest, vec![(event, Vec::new())]).await?;
                let (event_id, duplicate) = match result.into_iter().next() {
                    Some(EventResult::Accepted { id, duplicate }) => (id, duplicate),
                    Some(EventResult::Rejected { errors }) => return Err(IseeFailure::Invalid(errors)),
                    None => return Err(IseeFailure::Event("no result for the event".into())),
                };
                let (origine, id_richiesta) = match origine {
                    Origine::Inps { id_richiesta } => ("inps", id_richiesta),
                    Origine::Cache => ("cache", None),
                };
                Ok(Esito {
                    esito: "OK",
                    origine: Some(origine),
                    id_richiesta,
                    event_id: Some(event_id),
                    duplicate: Some(duplicate),
                    data: Some(data),
                    descrizione: None,
                })
            }
        }
    }
}

/// The INPS request, every field checked; errors name the request field.
fn ricerca(r: &Richiesta) -> Result<RicercaCf, IseeFailure> {
    let mut errors = Vec::new();
    let cf = r
        .codice_fiscale
        .parse()
        .map_err(|e: csi_gateway_isee::ValueError| {
            errors.push(FieldError::new("/codiceFiscale", "codice_fiscale", e.to_string()))
        })
        .ok();
    let prestazione: Option<PrestazioneDaErogare> = r
        .prestazione
        .parse()
        .map_err(|e: csi_gateway_isee::ValueError| {
            errors.push(FieldError::new("/prestazione", "enum", e.to_string()))
        })
        .ok();
    let data = match r.data_validita.as_deref() {
        None => None,
        Some(d) => match csi_gateway_isee::parse_date(d) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(FieldError::new("/dataValidita", "date", e.to_string()));
                None
            }
        },
    };
    if !csi_gateway_isee::pseudonimo_ok(&r.pseudonimo) {
        errors.push(FieldError::new("/pseudonimo", "pseudonimo", csi_gateway_isee::PSEUDONIMO_RULE));
    }
    let stato = match r.stato_domanda.as_deref() {
        None | Some("da_erogare") => StatoDomanda::DaErogare,
        Some("erogata") => StatoDomanda::Erogata,
        Some(_) => {
            errors.push(FieldError::new("/statoDomanda", "enum", "must be da_erogare or erogata"));
            StatoDomanda::DaErogare
        }
    };
    let (Some(cf), Some(prestazione), true) = (cf, prestazione, errors.is_empty()) else {
        return Err(IseeFailure::Invalid(errors));
    };
    let mut ricerca = RicercaCf::new(cf, prestazione, r.protocollo_domanda.clone()).with_stato(stato);
    if let Some(d) = data {
        ricerca = ricerca.with_data_validita(d);
    }
    if let Err((field, rule)) = ricerca.check() {
        return Err(IseeFailure::Invalid(vec![FieldError::new(
            format!("/{}", camel(field)),
            "invalid",
            rule,
        )]));
    }
    Ok(ricerca)
}

/// `protocollo_domanda` → `protocolloDomanda`.
fn camel(field: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in field.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}
