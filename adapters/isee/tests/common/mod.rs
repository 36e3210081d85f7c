//! A loopback stand-in for PDND and INPS: the PDND token endpoint (verifies the client assertion
//! with the client's public key, checks `purposeId`) and the `SvcConsultazione` SOAP service
//! (checks the voucher and the `INPS-Identity-*` headers, answers from fixtures by codice
//! fiscale), counting every call.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use csi_gateway_isee::{ClientAssertionClaims, IseeConfig, PdndConfig, CLIENT_ASSERTION_TYPE, SOAP_ACTION};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

pub const PRIVATE_KEY: &str = include_str!("../fixtures/pdnd-client.key.pem");
pub const PUBLIC_KEY: &str = include_str!("../fixtures/pdnd-client.pub.pem");
pub const ATTESTAZIONE_MINORE: &str = include_str!("../fixtures/attestazione-minore.xml");
pub const ATTESTAZIONE_PROTOCOLLO_ERRATO: &str =
    include_str!("../fixtures/attestazione-protocollo-errato.xml");

pub const CLIENT_ID: &str = "9b361d49-33f4-4f1e-a88b-4e12661f2309";
pub const AUDIENCE: &str = "auth.interop.pagopa.it/client-assertion";
pub const PURPOSE_ID: &str = "1b361d49-33f4-4f1e-a88b-4e12661f2300";
pub const KID: &str = "test-kid-isee";
pub const USER_ID: &str = "01199250158";
pub const CODICE_UFFICIO: &str = "001";

/// The minor of the fixture: OK with Ordinario, ISEEMin and OmissioneDifformita.
pub const CF_OK: &str = "CLMMTT12B15F205O";
pub const CF_NON_TROVATI: &str = "RSSMRA85T10A562S";
pub const CF_INVALIDA: &str = "FRRNNA41C52F205P";
pub const CF_OFFLINE: &str = "CLMLCU80H04B157I";
pub const CF_ERRORE_INTERNO: &str = "MRNSRA88E50L219F";
pub const CF_FAULT: &str = "SPSCHR83S63A794B";
pub const CF_FAULT_CLIENT: &str = "BRMFBA05T20F205I";
pub const CF_503: &str = "BNCGNN60A01F205S";
pub const CF_BASE64: &str = "VRDLGU75M12B157T";
pub const CF_PROTOCOLLO: &str = "NRILRA90D45A794Z";
pub const CF_LENTO: &str = "GLLPLA70C10F205S";

#[derive(Default)]
pub struct Counters {
    pub token_calls: AtomicUsize,
    pub soap_calls: AtomicUsize,
    pub by_cf: Mutex<HashMap<String, usize>>,
    /// Requests the token endpoint refused, with the reason.
    pub token_refusals: Mutex<Vec<String>>,
}

pub struct Sim {
    public_key: DecodingKey,
    vouchers: Mutex<HashSet<String>>,
    pub expires_in: AtomicU64,
    pub counters: Counters,
    /// Headers and body of the last SOAP request.
    pub last_request: Mutex<Option<(HeaderMap, String)>>,
}

impl Sim {
    pub fn soap_calls_for(&self, cf: &str) -> usize {
        self.counters.by_cf.lock().unwrap().get(cf).copied().unwrap_or(0)
    }

    pub fn token_calls(&self) -> usize {
        self.counters.token_calls.load(Ordering::SeqCst)
    }

    pub fn soap_calls(&self) -> usize {
        self.counters.soap_calls.load(Ordering::SeqCst)
    }

    /// Forgets every voucher issued, as if they had been revoked.
    pub fn revoke_vouchers(&self) {
        self.vouchers.lock().unwrap().clear();
    }
}

pub struct Simulator {
    pub base: String,
    pub sim: Arc<Sim>,
}

impl Simulator {
    pub fn token_url(&self) -> String {
        format!("{}/token.oauth2", self.base)
    }

    pub fn endpoint(&self) -> String {
        format!("{}/WSServiziISEE/SvcConsultazione.svc", self.base)
    }

    /// A client config pointing at this simulator.
    pub fn config(&self) -> IseeConfig {
        let pdnd = PdndConfig::new(self.token_url(), CLIENT_ID, AUDIENCE, PURPOSE_ID, KID, PRIVATE_KEY);
        IseeConfig::new(self.endpoint(), USER_ID, CODICE_UFFICIO, pdnd)
    }
}

pub async fn start() -> Simulator {
    let sim = Arc::new(Sim {
        public_key: DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).expect("public key"),
        vouchers: Mutex::new(HashSet::new()),
        expires_in: AtomicU64::new(600),
        counters: Counters::default(),
        last_request: Mutex::new(None),
    });
    let app = Router::new()
        .route("/token.oauth2", post(token))
        .route("/WSServiziISEE/SvcConsultazione.svc", post(soap))
        .with_state(sim.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Simulator { base: format!("http://{addr}"), sim }
}

fn oauth_error(sim: &Sim, status: StatusCode, description: &str) -> Response {
    sim.counters.token_refusals.lock().unwrap().push(description.to_owned());
    let body = serde_json::json!({ "error": "invalid_client", "error_description": description });
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn token(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    sim.counters.token_calls.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "client_credentials" || field("client_assertion_type") != CLIENT_ASSERTION_TYPE
    {
        return oauth_error(&sim, StatusCode::BAD_REQUEST, "unsupported grant");
    }
    if field("client_id") != CLIENT_ID {
        return oauth_error(&sim, StatusCode::UNAUTHORIZED, "unknown client");
    }
    let assertion = field("client_assertion");
    let header = match jsonwebtoken::decode_header(assertion) {
        Ok(h) => h,
        Err(_) => return oauth_error(&sim, StatusCode::BAD_REQUEST, "not a JWT"),
    };
    if header.alg != Algorithm::RS256
        || header.kid.as_deref() != Some(KID)
        || header.typ.as_deref() != Some("JWT")
    {
        return oauth_error(
            &sim,
            StatusCode::BAD_REQUEST,
            "header must be RS256, JWT, with the registered kid",
        );
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.sub = Some(CLIENT_ID.to_owned());
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud", "jti"]);
    // The client's clock may be a test clock: judge exp against iat, not against the wall.
    validation.validate_exp = false;
    let claims = match jsonwebtoken::decode::<ClientAssertionClaims>(assertion, &sim.public_key, &validation)
    {
        Ok(data) => data.claims,
        Err(e) => return oauth_error(&sim, StatusCode::BAD_REQUEST, &format!("assertion refused: {e}")),
    };
    if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 || claims.jti.is_empty() {
        return oauth_error(&sim, StatusCode::BAD_REQUEST, "bad lifetime or jti");
    }
    if claims.purpose_id != PURPOSE_ID {
        return oauth_error(&sim, StatusCode::BAD_REQUEST, "purposeId not authorised for this client");
    }
    let n = sim.counters.token_calls.load(Ordering::SeqCst);
    let voucher = format!("voucher-{n}-{}", claims.jti);
    sim.vouchers.lock().unwrap().insert(voucher.clone());
    let body = serde_json::json!({
        "access_token": voucher,
        "token_type": "Bearer",
        "expires_in": sim.expires_in.load(Ordering::SeqCst),
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

fn element_text<'a>(xml: &'a str, local: &str) -> Option<&'a str> {
    let open = format!(":{local}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find('<')? + start;
    Some(&xml[start..end])
}

fn envelope(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{inner}</s:Body></s:Envelope>"#
    )
}

fn result(esito: &str, descrizione: Option<&str>, xml_b64: Option<&str>) -> Response {
    let descr =
        descrizione.map(|d| format!("<DescrizioneErrore>{d}</DescrizioneErrore>")).unwrap_or_default();
    let xml =
        xml_b64.map(|x| format!("<XmlEsitoAttestazione>{x}</XmlEsitoAttestazione>")).unwrap_or_default();
    let body = envelope(&format!(
        r#"<ConsultazioneAttestazioneResponse xmlns="http://inps.it/ConsultazioneISEE"><ConsultazioneAttestazioneResult><IdRichiesta>4711</IdRichiesta><Esito>{esito}</Esito>{descr}{xml}</ConsultazioneAttestazioneResult></ConsultazioneAttestazioneResponse>"#
    ));
    ([("content-type", "text/xml; charset=utf-8")], body).into_response()
}

fn fault(code: &str, string: &str) -> Response {
    let body = envelope(&format!(
        "<s:Fault><faultcode>s:{code}</faultcode><faultstring xml:lang=\"it-IT\">{string}</faultstring></s:Fault>"
    ));
    (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/xml; charset=utf-8")], body).into_response()
}

fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml.as_bytes())
}

async fn soap(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    sim.counters.soap_calls.fetch_add(1, Ordering::SeqCst);
    let text = String::from_utf8_lossy(&body).into_owned();
    *sim.last_request.lock().unwrap() = Some((headers.clone(), text.clone()));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();

    let bearer = header("authorization");
    let voucher = bearer.strip_prefix("Bearer ").unwrap_or_default();
    if !sim.vouchers.lock().unwrap().contains(voucher) {
        return (StatusCode::UNAUTHORIZED, "voucher non valido").into_response();
    }
    if header("INPS-Identity-UserId") != USER_ID || header("INPS-Identity-CodiceUfficio") != CODICE_UFFICIO {
        return (StatusCode::FORBIDDEN, "identity headers missing").into_response();
    }
    if header("soapaction") != format!("\"{SOAP_ACTION}\"") || !header("content-type").starts_with("text/xml")
    {
        return fault("Client", "The message with Action cannot be processed at the receiver");
    }
    let Some(cf) = element_text(&text, "CodiceFiscale").map(str::to_owned) else {
        return fault("Client", "RicercaCF senza CodiceFiscale");
    };
    *sim.counters.by_cf.lock().unwrap().entry(cf.clone()).or_default() += 1;

    match cf.as_str() {
        CF_OK => result("OK", None, Some(&b64(ATTESTAZIONE_MINORE))),
        CF_NON_TROVATI => {
            result("DATI_NON_TROVATI", Some("Nessuna attestazione valida per il soggetto"), None)
        }
        CF_INVALIDA => result(
            "RICHIESTA_INVALIDA",
            Some(&format!(
                "Il codice fiscale {CF_INVALIDA} non e&apos; abilitato alla prestazione richiesta"
            )),
            None,
        ),
        CF_OFFLINE => result("DATABASE_OFFLINE", Some("Base dati temporaneamente non disponibile"), None),
        CF_ERRORE_INTERNO => result("ERRORE_INTERNO", None, None),
        CF_FAULT => fault("Server", "Errore interno del servizio SvcConsultazione"),
        CF_FAULT_CLIENT => fault("Client", "Richiesta non conforme allo schema"),
        CF_503 => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "30")],
            "<html><body>Service Unavailable</body></html>",
        )
            .into_response(),
        CF_BASE64 => result("OK", None, Some("PD94bWwg***non-base64***")),
        CF_PROTOCOLLO => result("OK", None, Some(&b64(ATTESTAZIONE_PROTOCOLLO_ERRATO))),
        CF_LENTO => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            result("DATI_NON_TROVATI", None, None)
        }
        _ => result("DATI_NON_TROVATI", None, None),
    }
}
