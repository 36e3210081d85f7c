//! The attestation: the typed form of `XmlEsitoAttestazione` (namespace
//! `http://inps.it/ISEERiforma`, root `EsitoAttestazione`) and its decoder.
//!
//! Shape, as INPS returns it and public clients read it (the XSD was not found in a primary
//! source; elements this adapter does not use are skipped):
//!
//! ```text
//! EsitoAttestazione
//! ├── Attestazione @CodiceFiscaleDichiarante @NumeroProtocolloDSU @DataPresentazione @DataValidita
//! │   ├── Ordinario
//! │   │   ├── NucleoFamiliare/ComponenteNucleo* @RapportoConDichiarante @CodiceFiscale
//! │   │   ├── ISEEOrdinario @DataRilascio / Valori @ISE @ScalaEquivalenza @ISEE @ISR @ISP
//! │   │   ├── ISEEMin/ComponenteMinorenne*     @CodiceFiscale @ISEE / ISEEOrd | ISEEMinAttr | ISEEMinAgg | ISEENonCalcolabile
//! │   │   ├── ISEEUni/StudenteUniversitario*   @CodiceFiscale @ISEE / ISEEOrd | ISEEUniAttr | … | ISEENonCalcolabile
//! │   │   └── ISEESocioSanRes/*                @CodiceFiscale @ISEE / ISEEOrd | ISEESocioSanRes | … (entry name unconfirmed)
//! │   ├── Ridotto* @CodiceFiscaleBeneficiario / ISEERistretto/Valori
//! │   └── OmissioneDifformita* @TipoOmissioneDifformita
//! └── Ricerca/RicercaCF (echo of the request, not read)
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use time::Date;

use crate::values::{parse_date, CodiceFiscale, Importo, ProtocolloDsu, ScalaEquivalenza, ValueError};
use crate::xml::{self, Element};

/// The namespace of the attestation document.
pub const NS_ISEE_RIFORMA: &str = "http://inps.it/ISEERiforma";

/// The five values of an indicator (`Valori`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valori {
    /// `@ISE`, indicatore della situazione economica.
    pub ise: Importo,
    /// `@ScalaEquivalenza`.
    pub scala_equivalenza: ScalaEquivalenza,
    /// `@ISEE`.
    pub isee: Importo,
    /// `@ISR`, indicatore della situazione reddituale.
    pub isr: Importo,
    /// `@ISP`, indicatore della situazione patrimoniale.
    pub isp: Importo,
}

/// An indicator with its release date (`ISEEOrdinario`, `ISEERistretto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicatore {
    /// `@DataRilascio`, when present.
    pub data_rilascio: Option<Date>,
    /// `Valori`.
    pub valori: Valori,
}

/// One member of the household (`ComponenteNucleo`). Names are not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponenteNucleo {
    /// `@CodiceFiscale`, when present and well formed.
    pub codice_fiscale: Option<CodiceFiscale>,
    /// `@RapportoConDichiarante`: `D` dichiarante, `C` coniuge, `F` figlio minorenne, `MA` in
    /// affidamento preadottivo, `FC` figlio maggiorenne convivente, `FNC` non convivente a carico,
    /// `P` altra persona convivente, `GNC` genitore non coniugato e non convivente (as public
    /// clients document them; **unconfirmed**).
    pub rapporto_con_dichiarante: String,
}

/// How the indicator of one variant entry is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Calcolo {
    /// `ISEEOrd`: same as the ISEE ordinario.
    Ordinario,
    /// A specific computation (`ISEEMinAttr`, `ISEEUniAgg`, `ISEESocioSanRes`, …), with its
    /// `Valori` when given.
    Specifico {
        /// The element that carries it, e.g. `ISEEMinAttr`.
        elemento: String,
        /// Its `Valori`.
        valori: Option<Valori>,
    },
    /// `ISEENonCalcolabile`: the indicator cannot be computed (e.g. a non-cohabiting parent's
    /// data are missing).
    NonCalcolabile,
}

/// One person's entry in a variant (`ComponenteMinorenne`, `StudenteUniversitario`, the
/// socio-sanitario residenziale entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoceVariante {
    /// `@CodiceFiscale` of the person the variant is for.
    pub codice_fiscale: Option<CodiceFiscale>,
    /// The ISEE that applies: `@ISEE`, else the `Valori@ISEE` of the computation, else the ISEE
    /// ordinario for `ISEEOrd`; absent when not computable.
    pub isee: Option<Importo>,
    /// How it is computed.
    pub calcolo: Calcolo,
}

/// The `Ordinario` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ordinario {
    /// `NucleoFamiliare`.
    pub nucleo: Vec<ComponenteNucleo>,
    /// `ISEEOrdinario`.
    pub isee_ordinario: Option<Indicatore>,
    /// `ISEEMin` (minorenni), when present.
    pub isee_min: Option<Vec<VoceVariante>>,
    /// `ISEEUni` (università), when present.
    pub isee_uni: Option<Vec<VoceVariante>>,
    /// `ISEESocioSanRes` (prestazioni socio-sanitarie residenziali), when present.
    pub isee_socio_san_res: Option<Vec<VoceVariante>>,
}

/// One `Ridotto` section (nucleo ristretto, for prestazioni socio-sanitarie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ridotto {
    /// `@CodiceFiscaleBeneficiario`.
    pub codice_fiscale_beneficiario: Option<CodiceFiscale>,
    /// `ISEERistretto`.
    pub isee_ristretto: Option<Indicatore>,
}

/// One `OmissioneDifformita`: an omission or a difference the Agenzia delle Entrate or INPS
/// found in the DSU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OmissioneDifformita {
    /// `@TipoOmissioneDifformita`, when given.
    pub tipo: Option<String>,
}

/// A decoded attestation.
///
/// `Debug` of the codici fiscali, the protocollo and the amounts prints placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestazione {
    /// `@CodiceFiscaleDichiarante`.
    pub codice_fiscale_dichiarante: CodiceFiscale,
    /// `@NumeroProtocolloDSU`, checked against its pattern.
    pub protocollo_dsu: ProtocolloDsu,
    /// `@DataPresentazione` of the DSU.
    pub data_presentazione: Date,
    /// The last day the attestation is valid: `@DataValidita`, or by rule when absent (see
    /// [`validita_per_legge`]).
    pub data_validita: Date,
    /// `Ordinario`, when present.
    pub ordinario: Option<Ordinario>,
    /// `Ridotto` sections.
    pub ridotti: Vec<Ridotto>,
    /// `OmissioneDifformita` entries; empty when the DSU has none.
    pub omissioni_difformita: Vec<OmissioneDifformita>,
}

impl Attestazione {
    /// Whether the DSU has omissioni or difformità.
    pub fn ha_omissioni_difformita(&self) -> bool {
        !self.omissioni_difformita.is_empty()
    }

    /// The ISEE ordinario, when present.
    pub fn isee_ordinario(&self) -> Option<&Indicatore> {
        self.ordinario.as_ref().and_then(|o| o.isee_ordinario.as_ref())
    }

    /// Whether the attestation is valid on `day`: from the presentation to `data_validita`,
    /// both included.
    pub fn valida_il(&self, day: Date) -> bool {
        self.data_presentazione <= day && day <= self.data_validita
    }
}

/// The last day of validity of a DSU presented on `presentazione`, when INPS does not say:
/// 31 December of the year of presentation (art. 10 c. 1 d.lgs. 147/2017 as amended by
/// art. 10 DL 34/2019, for DSU presented from 1 January 2020). DSU presented earlier were
/// valid until 15 January of the following year.
pub fn validita_per_legge(presentazione: Date) -> Date {
    let year = presentazione.year();
    let (y, m, d) =
        if year >= 2020 { (year, time::Month::December, 31) } else { (year + 1, time::Month::January, 15) };
    Date::from_calendar_date(y, m, d).unwrap_or(presentazione)
}

/// Why `XmlEsitoAttestazione` could not be decoded. `path` names the element or attribute
/// (`EsitoAttestazione/Attestazione/@NumeroProtocolloDSU`); `problem` says what is wrong and
/// never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}` {problem}")]
pub struct DecodeError {
    /// The element or attribute, as a path from the root.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

impl DecodeError {
    fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { path: path.into(), problem: problem.into() }
    }
}

const ROOT: &str = "EsitoAttestazione";

/// Decodes the base64 `XmlEsitoAttestazione` (standard alphabet; whitespace and line breaks
/// inside it are ignored).
pub fn decode_base64(text: &str) -> Result<Attestazione, DecodeError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| DecodeError::new("XmlEsitoAttestazione", "is not valid base64"))?;
    decode_xml(&bytes)
}

/// Decodes the attestation document.
pub fn decode_xml(bytes: &[u8]) -> Result<Attestazione, DecodeError> {
    let root = xml::parse(bytes).map_err(|e| DecodeError::new("XmlEsitoAttestazione", e.0))?;
    if root.name != ROOT || !root.is_in(NS_ISEE_RIFORMA) {
        return Err(DecodeError::new(
            "XmlEsitoAttestazione",
            format!("root must be `{ROOT}` in namespace {NS_ISEE_RIFORMA}"),
        ));
    }
    let path = format!("{ROOT}/Attestazione");
    let att = root.child("Attestazione").ok_or_else(|| DecodeError::new(&path, "is missing"))?;

    let codice_fiscale_dichiarante = cf_attr(att, &path, "CodiceFiscaleDichiarante")?
        .ok_or_else(|| missing(&path, "CodiceFiscaleDichiarante"))?;
    let protocollo = required(att, &path, "NumeroProtocolloDSU")?;
    let protocollo_dsu =
        ProtocolloDsu::parse(protocollo).map_err(|e| value_error(&path, "NumeroProtocolloDSU", &e))?;
    let data_presentazione =
        date_attr(att, &path, "DataPresentazione")?.ok_or_else(|| missing(&path, "DataPresentazione"))?;
    let data_validita =
        date_attr(att, &path, "DataValidita")?.unwrap_or_else(|| validita_per_legge(data_presentazione));
    if data_validita < data_presentazione {
        return Err(DecodeError::new(
            format!("{path}/@DataValidita"),
            "must not be before @DataPresentazione",
        ));
    }

    let ordinario = match att.child("Ordinario") {
        Some(o) => Some(ordinario(o, &format!("{path}/Ordinario"))?),
        None => None,
    };
    let ridotti = att
        .children_named("Ridotto")
        .enumerate()
        .map(|(i, r)| ridotto(r, &format!("{path}/Ridotto[{}]", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut omissioni_difformita = Vec::new();
    for o in att.children_named("OmissioneDifformita") {
        // Some clients read a wrapper holding the entries; accept both shapes.
        let nested: Vec<&Element> = o.children_named("OmissioneDifformita").collect();
        if nested.is_empty() {
            omissioni_difformita
                .push(OmissioneDifformita { tipo: o.attr("TipoOmissioneDifformita").map(str::to_owned) });
        } else {
            omissioni_difformita.extend(
                nested.into_iter().map(|n| OmissioneDifformita {
                    tipo: n.attr("TipoOmissioneDifformita").map(str::to_owned),
                }),
            );
        }
    }

    Ok(Attestazione {
        codice_fiscale_dichiarante,
        protocollo_dsu,
        data_presentazione,
        data_validita,
        ordinario,
        ridotti,
        omissioni_difformita,
    })
}

fn missing(path: &str, attr: &str) -> DecodeError {
    DecodeError::new(format!("{path}/@{attr}"), "is missing")
}

fn value_error(path: &str, attr: &str, e: &ValueError) -> DecodeError {
    DecodeError::new(format!("{path}/@{attr}"), e.0)
}

fn required<'a>(e: &'a Element, path: &str, attr: &str) -> Result<&'a str, DecodeError> {
    e.attr(attr).ok_or_else(|| missing(path, attr))
}

fn cf_attr(e: &Element, path: &str, attr: &str) -> Result<Option<CodiceFiscale>, DecodeError> {
    e.attr(attr)
        .map(|v| CodiceFiscale::parse(v.trim()).map_err(|err| value_error(path, attr, &err)))
        .transpose()
}

fn date_attr(e: &Element, path: &str, attr: &str) -> Result<Option<Date>, DecodeError> {
    e.attr(attr).map(|v| parse_date(v).map_err(|err| value_error(path, attr, &err))).transpose()
}

fn importo_attr(e: &Element, path: &str, attr: &str) -> Result<Option<Importo>, DecodeError> {
    e.attr(attr).map(|v| v.trim().parse().map_err(|err| value_error(path, attr, &err))).transpose()
}

fn valori(e: &Element, path: &str) -> Result<Valori, DecodeError> {
    let amount = |attr: &str| -> Result<Importo, DecodeError> {
        importo_attr(e, path, attr)?.ok_or_else(|| missing(path, attr))
    };
    let scala = required(e, path, "ScalaEquivalenza")?;
    Ok(Valori {
        ise: amount("ISE")?,
        scala_equivalenza: scala.trim().parse().map_err(|err| value_error(path, "ScalaEquivalenza", &err))?,
        isee: amount("ISEE")?,
        isr: amount("ISR")?,
        isp: amount("ISP")?,
    })
}

fn indicatore(e: &Element, path: &str) -> Result<Indicatore, DecodeError> {
    let vpath = format!("{path}/Valori");
    let v = e.child("Valori").ok_or_else(|| DecodeError::new(&vpath, "is missing"))?;
    Ok(Indicatore { data_rilascio: date_attr(e, path, "DataRilascio")?, valori: valori(v, &vpath)? })
}

fn ordinario(o: &Element, path: &str) -> Result<Ordinario, DecodeError> {
    let mut out = Ordinario::default();
    if let Some(nucleo) = o.child("NucleoFamiliare") {
        for (i, c) in nucleo.children_named("ComponenteNucleo").enumerate() {
            let cpath = format!("{path}/NucleoFamiliare/ComponenteNucleo[{}]", i + 1);
            out.nucleo.push(ComponenteNucleo {
                codice_fiscale: cf_attr(c, &cpath, "CodiceFiscale")?,
                rapporto_con_dichiarante: required(c, &cpath, "RapportoConDichiarante")?.trim().to_owned(),
            });
        }
    }
    if let Some(ord) = o.child("ISEEOrdinario") {
        out.isee_ordinario = Some(indicatore(ord, &format!("{path}/ISEEOrdinario"))?);
    }
    let isee_ord = out.isee_ordinario.as_ref().map(|i| i.valori.isee);
    let variant = |name: &str| -> Result<Option<Vec<VoceVariante>>, DecodeError> {
        o.child(name).map(|v| voci(v, &format!("{path}/{name}"), isee_ord)).transpose()
    };
    out.isee_min = variant("ISEEMin")?;
    out.isee_uni = variant("ISEEUni")?;
    out.isee_socio_san_res = variant("ISEESocioSanRes")?;
    Ok(out)
}

/// The entries of a variant section: every child element (its name differs per variant).
fn voci(section: &Element, path: &str, isee_ord: Option<Importo>) -> Result<Vec<VoceVariante>, DecodeError> {
    let mut out = Vec::new();
    for (i, entry) in section.children.iter().enumerate() {
        let epath = format!("{path}/{}[{}]", entry.name, i + 1);
        let calcolo = match entry.children.first() {
            None => Calcolo::Ordinario,
            Some(c) if c.name == "ISEEOrd" => Calcolo::Ordinario,
            Some(c) if c.name == "ISEENonCalcolabile" => Calcolo::NonCalcolabile,
            Some(c) => Calcolo::Specifico {
                elemento: c.name.clone(),
                valori: match c.child("Valori") {
                    Some(v) => Some(valori(v, &format!("{epath}/{}/Valori", c.name))?),
                    None => None,
                },
            },
        };
        let isee = match (&calcolo, importo_attr(entry, &epath, "ISEE")?) {
            (Calcolo::NonCalcolabile, _) => None,
            (_, Some(v)) => Some(v),
            (Calcolo::Specifico { valori: Some(v), .. }, None) => Some(v.isee),
            (Calcolo::Ordinario, None) => isee_ord,
            (Calcolo::Specifico { valori: None, .. }, None) => None,
        };
        out.push(VoceVariante { codice_fiscale: cf_attr(entry, &epath, "CodiceFiscale")?, isee, calcolo });
    }
    Ok(out)
}

fn ridotto(r: &Element, path: &str) -> Result<Ridotto, DecodeError> {
    Ok(Ridotto {
        codice_fiscale_beneficiario: cf_attr(r, path, "CodiceFiscaleBeneficiario")?,
        isee_ristretto: match r.child("ISEERistretto") {
            Some(i) => Some(indicatore(i, &format!("{path}/ISEERistretto"))?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<EsitoAttestazione xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://inps.it/ISEERiforma">
  <Attestazione CodiceFiscaleDichiarante="RSSMRA85T10A562S" NumeroProtocolloDSU="INPS-ISEE-2025-00123456A-00" DataPresentazione="2025-01-20" DataValidita="2025-12-31" ProtocolloMittente="CAF00001-X-2025-N1">
    <Ordinario>
      <NucleoFamiliare>
        <ComponenteNucleo RapportoConDichiarante="D" Cognome="R" Nome="M" CodiceFiscale="RSSMRA85T10A562S"/>
      </NucleoFamiliare>
      <ISEEOrdinario DataRilascio="2025-01-22">
        <Valori ISE="20000.00" ScalaEquivalenza="1.57" ISEE="12738.85" ISR="15000.00" ISP="25000.00"/>
      </ISEEOrdinario>
    </Ordinario>
  </Attestazione>
  <Ricerca><RicercaCF CodiceFiscale="RSSMRA85T10A562S"/></Ricerca>
</EsitoAttestazione>"#;

    #[test]
    fn decodes_the_ordinario() {
        let a = decode_xml(DOC.as_bytes()).unwrap();
        assert_eq!(a.protocollo_dsu.as_str(), "INPS-ISEE-2025-00123456A-00");
        assert_eq!(a.data_validita, date!(2025 - 12 - 31));
        let ord = a.isee_ordinario().unwrap();
        assert_eq!(ord.valori.isee.to_string(), "12738.85");
        assert_eq!(ord.valori.scala_equivalenza.to_string(), "1.57");
        assert_eq!(ord.data_rilascio, Some(date!(2025 - 01 - 22)));
        assert!(!a.ha_omissioni_difformita());
        assert!(a.valida_il(date!(2025 - 06 - 01)));
        assert!(!a.valida_il(date!(2026 - 01 - 01)));
        assert!(!a.valida_il(date!(2025 - 01 - 19)));
    }

    #[test]
    fn errors_name_the_attribute_and_never_the_value() {
        let bad = DOC.replace("INPS-ISEE-2025-00123456A-00", "INPS-ISEE-2025-123-00");
        let err = decode_xml(bad.as_bytes()).unwrap_err();
        assert_eq!(err.path, "EsitoAttestazione/Attestazione/@NumeroProtocolloDSU");
        assert!(!err.to_string().contains("123-00"), "{err}");

        let bad = DOC.replace(r#"ISEE="12738.85""#, r#"ISEE="12.738,85""#);
        let err = decode_xml(bad.as_bytes()).unwrap_err();
        assert_eq!(err.path, "EsitoAttestazione/Attestazione/Ordinario/ISEEOrdinario/Valori/@ISEE");
        assert!(!err.to_string().contains("738"), "{err}");

        let bad = DOC.replace(r#" DataValidita="2025-12-31""#, r#" DataValidita="2024-12-31""#);
        assert_eq!(
            decode_xml(bad.as_bytes()).unwrap_err().path,
            "EsitoAttestazione/Attestazione/@DataValidita"
        );

        let bad = DOC.replace("http://inps.it/ISEERiforma", "urn:other");
        assert_eq!(decode_xml(bad.as_bytes()).unwrap_err().path, "XmlEsitoAttestazione");

        let err = decode_base64("not base64!").unwrap_err();
        assert_eq!(err.path, "XmlEsitoAttestazione");
    }

    #[test]
    fn missing_data_validita_follows_the_rule_in_force() {
        let doc = DOC.replace(r#" DataValidita="2025-12-31""#, "");
        assert_eq!(decode_xml(doc.as_bytes()).unwrap().data_validita, date!(2025 - 12 - 31));
        assert_eq!(validita_per_legge(date!(2019 - 09 - 26)), date!(2020 - 01 - 15));
    }

    #[test]
    fn base64_with_line_breaks_is_accepted() {
        let encoded = STANDARD.encode(DOC.as_bytes());
        let wrapped: String = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        assert!(decode_base64(&wrapped).is_ok());
    }
}
