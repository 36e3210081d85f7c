//! # csi-gateway-isee
//!
//! The **INPS ISEE adapter**: it asks INPS `ConsultazioneAttestazione` (SOAP 1.1, namespace
//! `http://inps.it/ConsultazioneISEE`, service `SvcConsultazione`) for the ISEE attestation of a
//! person, authenticated with a PDND voucher, decodes the attestation (base64
//! `XmlEsitoAttestazione`, namespace `http://inps.it/ISEERiforma`) into typed values and into the
//! `data` of an `it.lombardia.csi.isee.acquisito.v1` interchange event, and keeps attestations
//! until their validity ends.
//!
//! What it does:
//! - [`IseeConfig`] / [`PdndConfig`]: serde-typed config whose `Debug` hides the key and the
//!   `INPS-Identity-UserId`;
//! - [`IseeClient::consulta`]: one [`RicercaCf`] → [`Consultazione`] (`OK` → an
//!   [`Attestazione`]; `DATI_NON_TROVATI` → no attestation, not an error) or an [`IseeError`]
//!   classified transient or permanent (`IseeError::to_delivery_error` gives the SDK's
//!   [`DeliveryError`](csi_gateway_sdk::DeliveryError));
//! - the PDND voucher: client assertion signed RS256 (`kid`, `iss`/`sub` = client id, `aud`,
//!   `jti`, `iat`, `exp`, `purposeId`), exchanged at the token endpoint, reused until shortly
//!   before it expires;
//! - [`AttestazioneCache`]: per (codice fiscale, prestazione), until the end of the
//!   attestation's last valid day in Italy, with an injectable [`Clock`];
//! - [`isee_acquisito`]: the event `data`, with only the beneficiary's values.
//!
//! What it does not do: retries (the caller decides from [`IseeError::is_transient`]), the
//! CloudEvent envelope, storage, HTTP endpoints or CLI (the hub's), the other operations of the
//! service (`ConsultazioneIndicatore`, `ConsultazioneDichiarazione`, …), the `Identity` SOAP header of
//! the pre-PDND channel. It never puts a codice fiscale, an ISEE value or the voucher into an
//! error or a log line, and `Debug` of the values that hold them prints placeholders.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attestazione;
mod cache;
mod client;
mod clock;
mod config;
mod error;
mod event;
mod pdnd;
mod request;
mod soap;
mod values;
mod xml;

pub use attestazione::{
    decode_base64, decode_xml, validita_per_legge, Attestazione, Calcolo, ComponenteNucleo, DecodeError,
    Indicatore, OmissioneDifformita, Ordinario, Ridotto, Valori, VoceVariante, NS_ISEE_RIFORMA,
};
pub use cache::AttestazioneCache;
pub use client::{Consultazione, IseeClient, Origine, HEADER_CODICE_UFFICIO, HEADER_USER_ID};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, IseeConfig, PdndConfig};
pub use error::IseeError;
pub use event::{
    isee_acquisito, pseudonimo_ok, Beneficiario, IseeAcquisito, IseeOrdinarioEvento, MappingError,
    VarianteEvento, DATA_SCHEMA, EVENT_TYPE, PSEUDONIMO_RULE,
};
pub use pdnd::{ClientAssertionClaims, CLIENT_ASSERTION_TYPE};
pub use request::{
    PrestazioneDaErogare, RicercaCf, StatoDomanda, MAX_PROTOCOLLO_DOMANDA_CHARS, PRESTAZIONI_DA_EROGARE,
};
pub use soap::{EsitoInps, NS_CONSULTAZIONE_ISEE, NS_SOAP11, SOAP_ACTION};
pub use values::{
    codice_fiscale_is_valid, format_date, parse_date, rome_date, rome_end_of_day, CodiceFiscale, Importo,
    ProtocolloDsu, ScalaEquivalenza, ValueError,
};
