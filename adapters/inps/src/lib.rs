//! INPS SIUSS flows for csi-gateway: the typed model of `PS_PSA_SINA` and `SINBA`
//! (namespace `http://inps.it/Casellario`), their XML, and the checks a flusso must pass before it
//! is published.
//!
//! What it does:
//! - [`model`] and [`sinba`]: the two flows exactly as the XSDs define them; coded values are
//!   [`codes`] enums, money is [`Importo`] (integer cents), SINBA months are [`MeseAnno`];
//! - [`xml`]: [`FlussoWriter`] / [`SinbaWriter`] stream a flow with many records in flat memory
//!   (web upload); [`to_xml`] / [`to_base64`] write a whole flow (WaaS `flusso` field);
//! - [`mapping`]: builds flows from interchange events ([`from_events`], [`sinba_from_events`]),
//!   with replaceable code [`tables`]; [`cancellation`] and [`correction`];
//! - [`rules`]: [`check`], [`check_waas`], [`check_sinba`] report every broken rule by stable name;
//! - [`id`]: the WaaS [`id_flusso`] and the SINBA pseudonym [`sinba_id`].
//!
//! What it does not do: no I/O besides the writer it is given, no HTTP (the WaaS API is the hub's),
//! no storage of progressives or of what was published, no reading of XML, no logging. It never
//! puts a codice fiscale in a SINBA flow.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codes;
pub mod id;
pub mod mapping;
pub mod model;
pub mod rules;
pub mod sinba;
pub mod tables;
pub mod values;
pub mod xml;

pub use codes::*;
pub use id::{id_flusso, sinba_id, IdFlussoError, Tipo};
pub use mapping::{
    cancellation, correction, famiglia_from_nucleo, fascia_eta, from_events, from_events_with,
    sinba_from_events, sinba_record_from_events, BuildError, EnteInfo, SinbaEvents,
};
pub use model::*;
pub use rules::{check, check_beneficiario, check_sinba, check_sinba_record, check_waas, RuleViolation};
pub use sinba::{DatiSinba, Sinba, SinbaRecord};
pub use tables::{CodiciPrestazione, Nazioni, Regioni, TableError, Tables};
pub use values::{Importo, MeseAnno, Ore};
pub use xml::{to_base64, to_xml, Flusso, FlussoWriter, SinbaWriter, WriteError};
