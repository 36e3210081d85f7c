//! The ISEE adapter against the loopback PDND + INPS simulator (`common`).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use csi_gateway_isee::{
    isee_acquisito, Calcolo, CodiceFiscale, Consultazione, EsitoInps, IseeClient, IseeError, ManualClock,
    Origine, PdndConfig, PrestazioneDaErogare, RicercaCf, DATA_SCHEMA, EVENT_TYPE,
};
use csi_gateway_sdk::DeliveryError;
use jsonschema::{Retrieve, Uri, Validator};
use serde_json::{json, Value};
use time::macros::date;

/// 2025-03-04T09:00:00+01:00.
fn march_4th() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_741_075_200)
}

fn ricerca(cf: &str) -> RicercaCf {
    RicercaCf::new(CodiceFiscale::parse(cf).unwrap(), "A1.07".parse().unwrap(), "DOM-2025-000214")
}

struct Fixture {
    sim: Simulator,
    clock: Arc<ManualClock>,
    client: IseeClient,
}

async fn fixture() -> Fixture {
    let sim = common::start().await;
    let clock = Arc::new(ManualClock::new(march_4th()));
    let client = IseeClient::with_clock(sim.config(), clock.clone()).unwrap();
    Fixture { sim, clock, client }
}

async fn failure(f: &Fixture, cf: &str) -> IseeError {
    f.client.consulta(&ricerca(cf)).await.unwrap_err()
}

/// No error text holds a codice fiscale or an amount from the fixtures.
fn assert_clean(err: &IseeError) {
    let text = format!("{err} {err:?}");
    for cf in [CF_OK, CF_INVALIDA, CF_OFFLINE, CF_FAULT, CF_503, CF_BASE64, CF_PROTOCOLLO, USER_ID] {
        assert!(!text.contains(cf), "{text}");
    }
    for amount in ["9850.81", "9420.15", "20095.65"] {
        assert!(!text.contains(amount), "{text}");
    }
    assert!(!text.contains("voucher-"), "{text}");
}

// ---------------------------------------------------------------- contracts

struct InMemory(HashMap<String, Value>);

impl Retrieve for InMemory {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0.get(uri.as_str()).cloned().ok_or_else(|| format!("no contract with $id {uri}").into())
    }
}

/// The envelope and the isee data validators, compiled from `contracts/` as the hub does.
fn contract_validators() -> (Validator, Validator) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let mut by_id = HashMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".schema.json") {
                let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let id = value["$id"].as_str().unwrap().to_owned();
                by_id.insert(id, value);
            }
        }
    }
    let compile = |id: &str| {
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .with_format("codice-fiscale", |s: &str| CodiceFiscale::parse(s).is_ok())
            .with_retriever(InMemory(by_id.clone()))
            .build(&by_id[id])
            .unwrap()
    };
    (compile("https://csi-gateway.invalid/contracts/envelope.schema.json"), compile(DATA_SCHEMA))
}

fn cloud_event(data: &Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": "01JNB3C5D7E9F1G3H5J7K9M1N3",
        "source": "/csi-gateway/isee",
        "type": EVENT_TYPE,
        "tenant": "F205",
        "subject": "ass-5d7a1b68",
        "datacontenttype": "application/json",
        "dataschema": DATA_SCHEMA,
        "data": data,
    })
}

fn contract_errors(event: &Value) -> Vec<String> {
    static VALIDATORS: OnceLock<(Validator, Validator)> = OnceLock::new();
    let (envelope, data) = VALIDATORS.get_or_init(contract_validators);
    envelope
        .iter_errors(event)
        .chain(data.iter_errors(&event["data"]))
        .map(|e| format!("{} {}", e.instance_path(), e.masked()))
        .collect()
}

// ---------------------------------------------------------------- Esito OK

#[tokio::test]
async fn ok_decodes_ordinario_isee_min_and_difformita() {
    let f = fixture().await;
    let r = ricerca(CF_OK).with_data_validita(date!(2025 - 03 - 04));
    let outcome = f.client.consulta(&r).await.unwrap();
    let Consultazione::Attestazione { attestazione: a, origine } = outcome else { panic!("an attestation") };
    assert_eq!(origine, Origine::Inps { id_richiesta: Some("4711".into()) });

    assert_eq!(a.protocollo_dsu.as_str(), "INPS-ISEE-2025-00187342C-00");
    assert_eq!(a.codice_fiscale_dichiarante.as_str(), CF_OFFLINE);
    assert_eq!(a.data_presentazione, date!(2025 - 01 - 27));
    assert_eq!(a.data_validita, date!(2025 - 12 - 31));
    let ord = a.isee_ordinario().unwrap();
    assert_eq!(ord.data_rilascio, Some(date!(2025 - 01 - 29)));
    assert_eq!(ord.valori.isee.to_string(), "9850.81");
    assert_eq!(ord.valori.ise.to_string(), "20095.65");
    assert_eq!(ord.valori.isr.to_string(), "17842.10");
    assert_eq!(ord.valori.isp.to_string(), "11267.75");
    assert_eq!(ord.valori.scala_equivalenza.to_string(), "2.04");

    let o = a.ordinario.as_ref().unwrap();
    let rapporti: Vec<&str> = o.nucleo.iter().map(|c| c.rapporto_con_dichiarante.as_str()).collect();
    assert_eq!(rapporti, ["D", "C", "F"]);
    let min = o.isee_min.as_ref().unwrap();
    assert_eq!(min.len(), 1);
    assert_eq!(min[0].codice_fiscale.as_ref().map(CodiceFiscale::as_str), Some(CF_OK));
    assert_eq!(min[0].isee.unwrap().to_string(), "9420.15");
    assert!(
        matches!(&min[0].calcolo, Calcolo::Specifico { elemento, valori: Some(_) } if elemento == "ISEEMinAgg")
    );
    assert!(o.isee_uni.is_none() && o.isee_socio_san_res.is_none());
    assert!(a.ha_omissioni_difformita());
    assert_eq!(a.omissioni_difformita[0].tipo.as_deref(), Some("D"));

    // The request INPS saw.
    let (headers, body) = f.sim.sim.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(headers["INPS-Identity-UserId"], USER_ID);
    assert_eq!(headers["INPS-Identity-CodiceUfficio"], CODICE_UFFICIO);
    assert!(headers["authorization"].to_str().unwrap().starts_with("Bearer voucher-"));
    for part in [
        "<con:ConsultazioneAttestazione>",
        "<con:RicercaCF>",
        "<con:CodiceFiscale>CLMMTT12B15F205O</con:CodiceFiscale>",
        "<con:DataValidita>2025-03-04</con:DataValidita>",
        "<con:PrestazioneDaErogare>A1.07</con:PrestazioneDaErogare>",
        "<con:ProtocolloDomandaEnteErogatore>DOM-2025-000214</con:ProtocolloDomandaEnteErogatore>",
        "<con:StatodomandaPrestazione>Da Erogare</con:StatodomandaPrestazione>",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }

    // Debug shows none of the personal values.
    let shown = format!("{a:?}");
    for secret in [CF_OK, CF_OFFLINE, "9850.81", "INPS-ISEE-2025-00187342C-00"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[tokio::test]
async fn ok_becomes_an_isee_event_that_the_contract_accepts() {
    let f = fixture().await;
    let r = ricerca(CF_OK).with_data_validita(date!(2025 - 03 - 04));
    let outcome = f.client.consulta(&r).await.unwrap();
    let a = outcome.attestazione().unwrap();
    let data = serde_json::to_value(isee_acquisito(a, &r, "ass-5d7a1b68").unwrap()).unwrap();

    assert_eq!(
        data,
        json!({
            "beneficiario": { "pseudonimo": "ass-5d7a1b68" },
            "protocolloDSU": "INPS-ISEE-2025-00187342C-00",
            "dataPresentazione": "2025-01-27",
            "dataValidita": "2025-12-31",
            "dataRilascio": "2025-01-29",
            "dataRiferimento": "2025-03-04",
            "prestazioneDaErogare": "A1.07",
            "iseeOrdinario": {
                "isee": "9850.81", "ise": "20095.65", "isr": "17842.10", "isp": "11267.75", "scalaEquivalenza": "2.04"
            },
            "numeroComponenti": 3,
            "rapportoConDichiarante": "F",
            "varianti": [{ "tipo": "minorenni", "calcolabile": true, "isee": "9420.15", "comeOrdinario": false }],
            "variantiPresenti": ["minorenni"],
            "omissioniDifformita": true
        })
    );
    // No codice fiscale of anyone in the household travels.
    let text = data.to_string();
    for cf in [CF_OK, CF_OFFLINE, CF_FAULT, CF_LENTO] {
        assert!(!text.contains(cf), "{text}");
    }

    let event = cloud_event(&data);
    assert_eq!(contract_errors(&event), Vec::<String>::new());

    // The validation is real: a broken copy is refused where it breaks.
    let mut bad = event.clone();
    bad["data"]["protocolloDSU"] = json!("INPS-ISEE-2025-187342C-0");
    bad["data"]["iseeOrdinario"]["isee"] = json!(9850.81);
    let errors = contract_errors(&bad);
    assert!(errors.iter().any(|e| e.starts_with("/protocolloDSU")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("/iseeOrdinario/isee")), "{errors:?}");

    // The contract's own examples validate too.
    let schema: Value = serde_json::from_str(include_str!(
        "../../../contracts/events/it.lombardia.csi.isee.acquisito.v1.schema.json"
    ))
    .unwrap();
    for example in schema["examples"].as_array().unwrap() {
        assert_eq!(contract_errors(&cloud_event(example)), Vec::<String>::new());
    }
    let example: Value = serde_json::from_str(include_str!(
        "../../../contracts/examples/it.lombardia.csi.isee.acquisito.v1.json"
    ))
    .unwrap();
    assert_eq!(contract_errors(&example), Vec::<String>::new());

    // The event refuses a pseudonym shaped like a codice fiscale.
    let err = isee_acquisito(a, &r, CF_OK).unwrap_err();
    assert_eq!(err.field, "/beneficiario/pseudonimo");
    assert!(!err.to_string().contains(CF_OK));
}

#[test]
fn variants_of_other_household_members_stay_out_of_the_event() {
    // Asked for the father: the ISEEMin entry is his son's, so only its presence is reported.
    let xml_for_father = csi_gateway_isee::decode_xml(ATTESTAZIONE_MINORE.as_bytes()).unwrap();
    let r = ricerca(CF_OFFLINE);
    let data = serde_json::to_value(isee_acquisito(&xml_for_father, &r, "ass-8b41d07e").unwrap()).unwrap();
    assert_eq!(data["rapportoConDichiarante"], "D");
    assert!(data.get("varianti").is_none(), "{data}");
    assert_eq!(data["variantiPresenti"], json!(["minorenni"]));
    assert!(data.get("dataRiferimento").is_none());
    assert_eq!(contract_errors(&cloud_event(&data)), Vec::<String>::new());
}

// ---------------------------------------------------------------- other Esiti

#[tokio::test]
async fn dati_non_trovati_is_no_attestation_not_an_error() {
    let f = fixture().await;
    let outcome = f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    assert_eq!(
        outcome,
        Consultazione::NessunaAttestazione {
            descrizione: Some("Nessuna attestazione valida per il soggetto".into()),
            id_richiesta: Some("4711".into()),
        }
    );
    assert!(outcome.attestazione().is_none());
    // Not cached: the next call asks INPS again.
    f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    assert_eq!(f.sim.sim.soap_calls_for(CF_NON_TROVATI), 2);
}

#[tokio::test]
async fn richiesta_invalida_is_permanent_with_inps_text_without_the_codice_fiscale() {
    let f = fixture().await;
    let err = failure(&f, CF_INVALIDA).await;
    assert_eq!(
        err,
        IseeError::Refused {
            esito: EsitoInps::RichiestaInvalida,
            descrizione: "Il codice fiscale [codice fiscale] non e' abilitato alla prestazione richiesta"
                .into(),
        }
    );
    assert!(!err.is_transient());
    assert!(matches!(err.to_delivery_error(), DeliveryError::Permanent { .. }));
    assert_clean(&err);
}

#[tokio::test]
async fn database_offline_and_errore_interno_are_transient() {
    let f = fixture().await;
    let err = failure(&f, CF_OFFLINE).await;
    assert_eq!(
        err,
        IseeError::Unavailable {
            esito: EsitoInps::DatabaseOffline,
            descrizione: "Base dati temporaneamente non disponibile".into()
        }
    );
    assert!(err.is_transient());
    assert!(DeliveryError::from(err.clone()).is_transient());
    assert_clean(&err);

    let err = failure(&f, CF_ERRORE_INTERNO).await;
    assert!(matches!(err, IseeError::Unavailable { esito: EsitoInps::ErroreInterno, .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn soap_faults_are_classified_by_faultcode() {
    let f = fixture().await;
    let err = failure(&f, CF_FAULT).await;
    assert_eq!(
        err,
        IseeError::SoapFault {
            code: "s:Server".into(),
            string: "Errore interno del servizio SvcConsultazione".into(),
            transient: true,
        }
    );
    assert!(err.is_transient());
    assert_clean(&err);

    let err = failure(&f, CF_FAULT_CLIENT).await;
    assert!(
        matches!(&err, IseeError::SoapFault { code, transient: false, .. } if code == "s:Client"),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn http_503_is_transient_with_retry_after() {
    let f = fixture().await;
    let err = failure(&f, CF_503).await;
    assert_eq!(
        err,
        IseeError::Http {
            status: 503,
            reason: "<html><body>Service Unavailable</body></html>".into(),
            retry_after: Some(Duration::from_secs(30)),
        }
    );
    assert_eq!(
        err.to_delivery_error(),
        DeliveryError::Transient { reason: err.to_string(), retry_after: Some(Duration::from_secs(30)) }
    );
    assert_clean(&err);
}

#[tokio::test]
async fn malformed_base64_names_the_element() {
    let f = fixture().await;
    let err = failure(&f, CF_BASE64).await;
    assert_eq!(
        err,
        IseeError::Malformed {
            element: "XmlEsitoAttestazione".into(),
            problem: "is not valid base64".into()
        }
    );
    assert!(!err.is_transient());
    assert_clean(&err);
}

#[tokio::test]
async fn protocollo_dsu_pattern_violation_is_rejected_naming_the_attribute() {
    let f = fixture().await;
    let err = failure(&f, CF_PROTOCOLLO).await;
    let IseeError::Malformed { element, problem } = &err else { panic!("{err:?}") };
    assert_eq!(element, "EsitoAttestazione/Attestazione/@NumeroProtocolloDSU");
    assert_eq!(problem, r"must match INPS-ISEE-\d{4}-\d{8}[A-Z]-\d{2}");
    assert!(!err.to_string().contains("187342C"), "{err}");
    assert!(!err.is_transient());
    assert!(f.client.cache().is_empty(), "nothing unreadable is cached");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transient() {
    let sim = common::start().await;
    let mut config = sim.config();
    config.timeout_ms = 300;
    let client = IseeClient::new(config).unwrap();
    let err = client.consulta(&ricerca(CF_LENTO)).await.unwrap_err();
    assert!(matches!(&err, IseeError::Transport { reason } if reason.contains("timed out")), "{err:?}");
    assert!(err.is_transient());

    // Nothing listens on the endpoint: the voucher comes, the SOAP call is refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = sim.config();
    config.endpoint = format!("http://127.0.0.1:{port}/SvcConsultazione.svc");
    let client = IseeClient::new(config).unwrap();
    let err = client.consulta(&ricerca(CF_OK)).await.unwrap_err();
    assert!(matches!(&err, IseeError::Transport { reason } if reason.contains("refused")), "{err:?}");
    assert!(err.is_transient());
    assert_clean(&err);
}

#[tokio::test]
async fn an_invalid_request_is_refused_before_anything_is_sent() {
    let f = fixture().await;
    let r = RicercaCf::new(CodiceFiscale::parse(CF_OK).unwrap(), PrestazioneDaErogare::ALTRO, "  ");
    let err = f.client.consulta(&r).await.unwrap_err();
    assert!(matches!(err, IseeError::InvalidRequest { field: "protocollo_domanda", .. }), "{err:?}");
    assert_eq!(f.sim.sim.token_calls() + f.sim.sim.soap_calls(), 0);
}

// ---------------------------------------------------------------- cache

#[tokio::test]
async fn the_cache_serves_each_scope_only_what_inps_answered_to_it() {
    let f = fixture().await;
    let r = ricerca(CF_OK);
    f.client.consulta_for("F205", &r).await.unwrap();
    let again = f.client.consulta_for("F205", &r).await.unwrap();
    assert!(matches!(again, Consultazione::Attestazione { origine: Origine::Cache, .. }), "{again:?}");
    // Another ente asking about the same person is answered by INPS: a hit would tell it that
    // someone else asked.
    let other = f.client.consulta_for("B157", &r).await.unwrap();
    assert!(matches!(other, Consultazione::Attestazione { origine: Origine::Inps { .. }, .. }), "{other:?}");
    assert_eq!(f.sim.sim.soap_calls_for(CF_OK), 2);
}

#[tokio::test]
async fn a_valid_attestation_is_served_from_the_cache_until_its_validity_ends() {
    let f = fixture().await;
    let r = ricerca(CF_OK);
    let first = f.client.consulta(&r).await.unwrap();
    assert!(matches!(first, Consultazione::Attestazione { origine: Origine::Inps { .. }, .. }));

    let second = f.client.consulta(&r).await.unwrap();
    assert!(matches!(second, Consultazione::Attestazione { origine: Origine::Cache, .. }), "{second:?}");
    assert_eq!(second.attestazione(), first.attestazione());
    assert_eq!(f.sim.sim.soap_calls_for(CF_OK), 1);

    // Another prestazione, or a day outside the validity, goes to INPS.
    let other = RicercaCf { prestazione: "A1.01".parse().unwrap(), ..r.clone() };
    f.client.consulta(&other).await.unwrap();
    assert_eq!(f.sim.sim.soap_calls_for(CF_OK), 2);
    f.client.consulta(&r.clone().with_data_validita(date!(2026 - 02 - 01))).await.unwrap();
    assert_eq!(f.sim.sim.soap_calls_for(CF_OK), 3);

    // Still served on 31 December at 23:59 in Rome (22:59 UTC).
    f.clock.set(UNIX_EPOCH + Duration::from_secs(1_767_221_940));
    let late = f.client.consulta(&r).await.unwrap();
    assert!(matches!(late, Consultazione::Attestazione { origine: Origine::Cache, .. }), "{late:?}");
    assert_eq!(f.sim.sim.soap_calls_for(CF_OK), 3);

    // On 1 January in Rome it has expired: INPS is asked again.
    f.clock.advance(Duration::from_secs(60));
    let renewed = f.client.consulta(&r).await.unwrap();
    assert!(
        matches!(renewed, Consultazione::Attestazione { origine: Origine::Inps { .. }, .. }),
        "{renewed:?}"
    );
    assert_eq!(f.sim.sim.soap_calls_for(CF_OK), 4);

    // consulta_inps always asks.
    f.clock.set(march_4th());
    f.client.consulta_inps(&r).await.unwrap();
    assert_eq!(f.sim.sim.soap_calls_for(CF_OK), 5);
}

// ---------------------------------------------------------------- voucher

#[tokio::test]
async fn the_voucher_is_reused_until_shortly_before_it_expires() {
    let f = fixture().await;
    for _ in 0..3 {
        f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    }
    assert_eq!(f.sim.sim.soap_calls(), 3);
    assert_eq!(f.sim.sim.token_calls(), 1, "one voucher for three consultations");

    // expires_in 600 s, margin 60 s: renewed from 540 s on.
    f.clock.advance(Duration::from_secs(539));
    f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    assert_eq!(f.sim.sim.token_calls(), 1);
    f.clock.advance(Duration::from_secs(1));
    f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    assert_eq!(f.sim.sim.token_calls(), 2);
    assert!(f.sim.sim.counters.token_refusals.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_voucher_announced_for_ages_is_kept_one_day_at_most() {
    let f = fixture().await;
    f.sim.sim.expires_in.store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    assert_eq!(f.sim.sim.token_calls(), 1);

    // Kept as if it lived 24 h, margin 60 s: renewed from 23:59 on.
    f.clock.advance(Duration::from_secs(24 * 3600 - 61));
    f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    assert_eq!(f.sim.sim.token_calls(), 1);
    f.clock.advance(Duration::from_secs(1));
    f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    assert_eq!(f.sim.sim.token_calls(), 2);
}

#[tokio::test]
async fn concurrent_consultations_share_one_voucher() {
    let f = fixture().await;
    let client = Arc::new(f.client);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.consulta(&ricerca(CF_NON_TROVATI)).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(f.sim.sim.token_calls(), 1);
    assert_eq!(f.sim.sim.soap_calls(), 8);
}

#[tokio::test]
async fn a_refused_voucher_is_dropped_and_the_next_call_gets_a_new_one() {
    let f = fixture().await;
    f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    f.sim.sim.revoke_vouchers();
    let err = failure(&f, CF_NON_TROVATI).await;
    assert!(matches!(err, IseeError::Http { status: 401, .. }), "{err:?}");
    assert!(err.is_transient());
    f.client.consulta(&ricerca(CF_NON_TROVATI)).await.unwrap();
    assert_eq!(f.sim.sim.token_calls(), 2);
}

#[tokio::test]
async fn pdnd_refuses_a_purpose_the_client_is_not_authorised_for() {
    let sim = common::start().await;
    let mut config = sim.config();
    let key_file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pdnd-client.key.pem");
    config.pdnd = PdndConfig {
        purpose_id: "00000000-0000-0000-0000-000000000000".into(),
        private_key_pem: None,
        private_key_file: Some(key_file),
        ..config.pdnd
    };
    let client = IseeClient::new(config).unwrap();
    let err = client.consulta(&ricerca(CF_OK)).await.unwrap_err();
    let IseeError::Voucher { reason, transient } = &err else { panic!("{err:?}") };
    assert!(!transient);
    assert!(reason.contains("HTTP 400: invalid_client purposeId not authorised"), "{reason}");
    assert_eq!(sim.sim.soap_calls(), 0, "INPS is not called without a voucher");
    assert_eq!(
        *sim.sim.counters.token_refusals.lock().unwrap(),
        ["purposeId not authorised for this client".to_owned()],
        "the signature and the other claims were accepted"
    );
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_transient() {
    let sim = common::start().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = sim.config();
    config.pdnd.token_url = format!("http://127.0.0.1:{port}/token.oauth2");
    let client = IseeClient::new(config).unwrap();
    let err = client.consulta(&ricerca(CF_OK)).await.unwrap_err();
    assert!(matches!(&err, IseeError::Voucher { transient: true, .. }), "{err:?}");
}

// ---------------------------------------------------------------- config

#[tokio::test]
async fn config_errors_name_the_field() {
    let sim = common::start().await;
    let field_of = |config| IseeClient::new(config).unwrap_err().field().map(str::to_owned);

    let mut c = sim.config();
    c.endpoint = "ftp://inps.example/svc".into();
    assert_eq!(field_of(c).as_deref(), Some("endpoint"));
    let mut c = sim.config();
    c.user_id = " ".into();
    assert_eq!(field_of(c).as_deref(), Some("user_id"));
    let mut c = sim.config();
    c.pdnd.purpose_id = String::new();
    assert_eq!(field_of(c).as_deref(), Some("pdnd.purpose_id"));
    let mut c = sim.config();
    c.pdnd.private_key_pem = Some(PUBLIC_KEY.into());
    assert_eq!(field_of(c).as_deref(), Some("pdnd.private_key_pem"));
    let mut c = sim.config();
    c.pdnd.private_key_file = Some("/nonexistent/key.pem".into());
    assert_eq!(field_of(c).as_deref(), Some("pdnd.private_key_pem"), "both set");
    let mut c = sim.config();
    c.pdnd.private_key_pem = None;
    c.pdnd.private_key_file = Some("/nonexistent/key.pem".into());
    assert_eq!(field_of(c).as_deref(), Some("pdnd.private_key_file"));
    let mut c = sim.config();
    c.timeout_ms = 0;
    assert_eq!(field_of(c).as_deref(), Some("timeout_ms"));

    let client = IseeClient::new(sim.config()).unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("PRIVATE KEY") && !shown.contains(USER_ID), "{shown}");
}
