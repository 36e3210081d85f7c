//! The mapping from an attestation to the `data` of an `it.lombardia.csi.isee.acquisito.v1`
//! interchange event (`contracts/events/it.lombardia.csi.isee.acquisito.v1.schema.json`).
//!
//! Only the beneficiary's own values travel: the variants are those whose entry carries the
//! codice fiscale of the request; other members of the household appear only as a count. The
//! beneficiary is named by pseudonym, never by codice fiscale.

use std::fmt;

use serde::Serialize;

use crate::attestazione::{Attestazione, Calcolo, VoceVariante};
use crate::request::RicercaCf;
use crate::values::{format_date, looks_like_codice_fiscale, Importo};

/// The event type.
pub const EVENT_TYPE: &str = "it.lombardia.csi.isee.acquisito.v1";
/// The `$id` of its data schema (the CloudEvent `dataschema`).
pub const DATA_SCHEMA: &str =
    "https://csi-gateway.invalid/contracts/events/it.lombardia.csi.isee.acquisito.v1.schema.json";

/// The `RapportoConDichiarante` codes of `codes/rapporto-dichiarante-isee.schema.json`.
const RAPPORTI: &[&str] = &["D", "C", "F", "MA", "FC", "FNC", "P", "GNC"];

/// `beneficiario`: the pseudonym only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Beneficiario {
    /// The person's pseudonym in the tenant.
    pub pseudonimo: String,
}

/// `iseeOrdinario`.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IseeOrdinarioEvento {
    /// ISEE, two decimals.
    pub isee: String,
    /// ISE.
    pub ise: String,
    /// ISR.
    pub isr: String,
    /// ISP.
    pub isp: String,
    /// Scala di equivalenza.
    pub scala_equivalenza: String,
}

/// One item of `varianti`.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VarianteEvento {
    /// Code of `codes/isee-variante.schema.json`.
    pub tipo: &'static str,
    /// false for `ISEENonCalcolabile`.
    pub calcolabile: bool,
    /// The ISEE that applies, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isee: Option<String>,
    /// Whether it coincides with the ISEE ordinario; absent when not computable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub come_ordinario: Option<bool>,
}

/// The `data` of an `it.lombardia.csi.isee.acquisito.v1` event. Serialize it with serde.
///
/// `Debug` shows neither amounts nor the protocollo.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IseeAcquisito {
    /// The person the attestation was asked for.
    pub beneficiario: Beneficiario,
    /// `NumeroProtocolloDSU`.
    #[serde(rename = "protocolloDSU")]
    pub protocollo_dsu: String,
    /// `DataPresentazione`.
    pub data_presentazione: String,
    /// Last day of validity.
    pub data_validita: String,
    /// `ISEEOrdinario@DataRilascio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_rilascio: Option<String>,
    /// The day asked for in the request, when it named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_riferimento: Option<String>,
    /// `PrestazioneDaErogare` of the request.
    pub prestazione_da_erogare: String,
    /// The ISEE ordinario.
    pub isee_ordinario: IseeOrdinarioEvento,
    /// Household size (1–50), when INPS lists the household.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numero_componenti: Option<u32>,
    /// The beneficiary's `RapportoConDichiarante`, when in the household and a known code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rapporto_con_dichiarante: Option<String>,
    /// The variants for the beneficiary.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub varianti: Vec<VarianteEvento>,
    /// The variant sections present in the attestation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub varianti_presenti: Vec<&'static str>,
    /// Whether the DSU has omissioni or difformità.
    pub omissioni_difformita: bool,
}

impl fmt::Debug for IseeAcquisito {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IseeAcquisito")
            .field("beneficiario", &self.beneficiario)
            .field("data_validita", &self.data_validita)
            .field("prestazione_da_erogare", &self.prestazione_da_erogare)
            .field("varianti", &self.varianti.len())
            .field("omissioni_difformita", &self.omissioni_difformita)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for IseeOrdinarioEvento {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IseeOrdinarioEvento(<redacted>)")
    }
}

impl fmt::Debug for VarianteEvento {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VarianteEvento")
            .field("tipo", &self.tipo)
            .field("calcolabile", &self.calcolabile)
            .finish_non_exhaustive()
    }
}

/// Why an attestation cannot become an event; `field` is the JSON pointer in `data`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the isee event: `{field}` {rule}")]
pub struct MappingError {
    /// The JSON pointer in `data` (`/beneficiario/pseudonimo`).
    pub field: &'static str,
    /// The rule.
    pub rule: &'static str,
}

/// Whether `p` may name a person in an event: 1–64 of `A-Z a-z 0-9 _ . : -`, and not a codice
/// fiscale. Check it before asking INPS: [`isee_acquisito`] refuses what fails it.
pub fn pseudonimo_ok(p: &str) -> bool {
    (1..=64).contains(&p.len())
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        && !looks_like_codice_fiscale(p)
}

/// What [`pseudonimo_ok`] asks, in words.
pub const PSEUDONIMO_RULE: &str = "must be 1-64 of A-Z a-z 0-9 _ . : - and not a codice fiscale";

/// Builds the event `data` for the attestation INPS returned for `ricerca`, about the person
/// with `pseudonimo`.
pub fn isee_acquisito(
    attestazione: &Attestazione,
    ricerca: &RicercaCf,
    pseudonimo: &str,
) -> Result<IseeAcquisito, MappingError> {
    if !pseudonimo_ok(pseudonimo) {
        return Err(MappingError { field: "/beneficiario/pseudonimo", rule: PSEUDONIMO_RULE });
    }
    let ordinario = attestazione.isee_ordinario().ok_or(MappingError {
        field: "/iseeOrdinario",
        rule: "is required: the attestation has no Ordinario/ISEEOrdinario",
    })?;
    let v = &ordinario.valori;
    let cf = &ricerca.codice_fiscale;

    let mut varianti = Vec::new();
    let mut presenti = Vec::new();
    if let Some(o) = &attestazione.ordinario {
        for (tipo, voci) in [
            ("minorenni", &o.isee_min),
            ("universitario", &o.isee_uni),
            ("socio_sanitario_residenziale", &o.isee_socio_san_res),
        ] {
            let Some(voci) = voci else { continue };
            if !voci.is_empty() {
                presenti.push(tipo);
            }
            varianti.extend(
                voci.iter()
                    .filter(|voce| voce.codice_fiscale.as_ref() == Some(cf))
                    .map(|voce| variante(tipo, voce)),
            );
        }
    }
    if !attestazione.ridotti.is_empty() {
        presenti.push("socio_sanitario_ristretto");
    }
    for r in attestazione.ridotti.iter().filter(|r| r.codice_fiscale_beneficiario.as_ref() == Some(cf)) {
        let isee = r.isee_ristretto.as_ref().map(|i| i.valori.isee);
        varianti.push(VarianteEvento {
            tipo: "socio_sanitario_ristretto",
            calcolabile: true,
            isee: isee.map(|i| i.to_string()),
            come_ordinario: isee.map(|i| i == v.isee),
        });
    }

    let nucleo = attestazione.ordinario.as_ref().map(|o| o.nucleo.as_slice()).unwrap_or_default();
    let numero_componenti = u32::try_from(nucleo.len()).ok().filter(|n| (1..=50).contains(n));
    let rapporto_con_dichiarante = nucleo
        .iter()
        .find(|c| c.codice_fiscale.as_ref() == Some(cf))
        .map(|c| c.rapporto_con_dichiarante.as_str())
        .filter(|r| RAPPORTI.contains(r))
        .map(str::to_owned);

    Ok(IseeAcquisito {
        beneficiario: Beneficiario { pseudonimo: pseudonimo.to_owned() },
        protocollo_dsu: attestazione.protocollo_dsu.as_str().to_owned(),
        data_presentazione: format_date(attestazione.data_presentazione),
        data_validita: format_date(attestazione.data_validita),
        data_rilascio: ordinario.data_rilascio.map(format_date),
        data_riferimento: ricerca.data_validita.map(format_date),
        prestazione_da_erogare: ricerca.prestazione.as_str().to_owned(),
        isee_ordinario: IseeOrdinarioEvento {
            isee: v.isee.to_string(),
            ise: v.ise.to_string(),
            isr: v.isr.to_string(),
            isp: v.isp.to_string(),
            scala_equivalenza: v.scala_equivalenza.to_string(),
        },
        numero_componenti,
        rapporto_con_dichiarante,
        varianti,
        varianti_presenti: presenti,
        omissioni_difformita: attestazione.ha_omissioni_difformita(),
    })
}

fn variante(tipo: &'static str, voce: &VoceVariante) -> VarianteEvento {
    let calcolabile = !matches!(voce.calcolo, Calcolo::NonCalcolabile);
    VarianteEvento {
        tipo,
        calcolabile,
        isee: voce.isee.filter(|_| calcolabile).as_ref().map(Importo::to_string),
        come_ordinario: calcolabile.then_some(matches!(voce.calcolo, Calcolo::Ordinario)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_follow_the_contract() {
        assert!(pseudonimo_ok("ass-5d7a1b68"));
        assert!(!pseudonimo_ok(""));
        assert!(!pseudonimo_ok("ass 1"));
        assert!(!pseudonimo_ok("RSSMRA85T10A562S"));
        assert!(!pseudonimo_ok(&"a".repeat(65)));
    }
}
