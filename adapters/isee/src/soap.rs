//! SOAP 1.1 for `ConsultazioneAttestazione`: the request envelope and the reading of the answer
//! (`Esito`, `DescrizioneErrore`, `XmlEsitoAttestazione`, or a `Fault`).

use std::fmt;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use crate::request::RicercaCf;
use crate::values::format_date;
use crate::xml::{self, Element};

/// The SOAP 1.1 envelope namespace.
pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The service namespace.
pub const NS_CONSULTAZIONE_ISEE: &str = "http://inps.it/ConsultazioneISEE";
/// The `SOAPAction` of the operation (WCF service `SvcConsultazione`, contract
/// `ISvcConsultazione`).
pub const SOAP_ACTION: &str = "http://inps.it/ConsultazioneISEE/ISvcConsultazione/ConsultazioneAttestazione";

/// The `Esito` values of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EsitoInps {
    /// `OK`: the attestation is in `XmlEsitoAttestazione`.
    Ok,
    /// `RICHIESTA_INVALIDA`: the request was refused.
    RichiestaInvalida,
    /// `DATI_NON_TROVATI`: no valid attestation for the request.
    DatiNonTrovati,
    /// `DATABASE_OFFLINE`.
    DatabaseOffline,
    /// `ERRORE_INTERNO`.
    ErroreInterno,
    /// `RISCONTRO_NON_VALIDO`: listed in the service's `Esito` type (used by other operations).
    RiscontroNonValido,
}

impl EsitoInps {
    /// Reads the `Esito` text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "OK" => Self::Ok,
            "RICHIESTA_INVALIDA" => Self::RichiestaInvalida,
            "DATI_NON_TROVATI" => Self::DatiNonTrovati,
            "DATABASE_OFFLINE" => Self::DatabaseOffline,
            "ERRORE_INTERNO" => Self::ErroreInterno,
            "RISCONTRO_NON_VALIDO" => Self::RiscontroNonValido,
            _ => return None,
        })
    }

    /// The value as INPS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::RichiestaInvalida => "RICHIESTA_INVALIDA",
            Self::DatiNonTrovati => "DATI_NON_TROVATI",
            Self::DatabaseOffline => "DATABASE_OFFLINE",
            Self::ErroreInterno => "ERRORE_INTERNO",
            Self::RiscontroNonValido => "RISCONTRO_NON_VALIDO",
        }
    }
}

impl fmt::Display for EsitoInps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request envelope.
pub fn request_envelope(ricerca: &RicercaCf) -> Vec<u8> {
    // Writing into a Vec cannot fail; the results are ignored on purpose.
    let mut w = Writer::new(Vec::with_capacity(1024));
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)));
    let _ = w
        .create_element("soapenv:Envelope")
        .with_attributes([("xmlns:soapenv", NS_SOAP11), ("xmlns:con", NS_CONSULTAZIONE_ISEE)])
        .write_inner_content(|w| {
            w.create_element("soapenv:Header").write_empty()?;
            w.create_element("soapenv:Body").write_inner_content(|w| {
                w.create_element("con:ConsultazioneAttestazione").write_inner_content(|w| {
                    w.create_element("con:request").write_inner_content(|w| {
                        w.create_element("con:RicercaCF").write_inner_content(|w| {
                            let text = |w: &mut Writer<Vec<u8>>, name: &str, value: &str| {
                                w.create_element(name).write_text_content(BytesText::new(value)).map(|_| ())
                            };
                            text(w, "con:CodiceFiscale", ricerca.codice_fiscale.as_str())?;
                            if let Some(d) = ricerca.data_validita {
                                text(w, "con:DataValidita", &format_date(d))?;
                            }
                            text(w, "con:PrestazioneDaErogare", ricerca.prestazione.as_str())?;
                            text(w, "con:ProtocolloDomandaEnteErogatore", &ricerca.protocollo_domanda)?;
                            text(w, "con:StatodomandaPrestazione", ricerca.stato_domanda.as_str())?;
                            Ok(())
                        })?;
                        Ok(())
                    })?;
                    Ok(())
                })?;
                Ok(())
            })?;
            Ok(())
        });
    w.into_inner()
}

/// What the SOAP answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapAnswer {
    /// A `ConsultazioneAttestazioneResult`.
    Result(EsitoResult),
    /// A SOAP 1.1 `Fault`.
    Fault(Fault),
}

/// The `ConsultazioneAttestazioneResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsitoResult {
    /// `Esito`, as written (checked by the caller).
    pub esito: String,
    /// `IdRichiesta`, INPS's id of the consultation, when given.
    pub id_richiesta: Option<String>,
    /// `DescrizioneErrore`, when given.
    pub descrizione_errore: Option<String>,
    /// `XmlEsitoAttestazione` (base64), when given.
    pub xml_esito_attestazione: Option<String>,
}

/// A SOAP 1.1 fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `faultcode` (`s:Client`, `s:Server`, …).
    pub code: String,
    /// `faultstring`.
    pub string: String,
}

impl Fault {
    /// A `Server` fault (or a code that does not say) may go away; a `Client` fault will not.
    pub fn is_transient(&self) -> bool {
        let local = self.code.rsplit(':').next().unwrap_or_default();
        !local.starts_with("Client")
    }
}

/// Why the SOAP answer could not be read: `element` names where, `problem` what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapError {
    /// The element, as a path (`Envelope/Body/ConsultazioneAttestazioneResponse`).
    pub element: String,
    /// What is wrong.
    pub problem: String,
}

fn soap_error(element: &str, problem: impl Into<String>) -> SoapError {
    SoapError { element: element.to_owned(), problem: problem.into() }
}

/// Reads the answer envelope.
pub fn parse_answer(body: &[u8]) -> Result<SoapAnswer, SoapError> {
    let root = xml::parse(body).map_err(|e| soap_error("Envelope", e.0))?;
    if root.name != "Envelope" || !root.is_in(NS_SOAP11) {
        return Err(soap_error("Envelope", format!("the root must be a SOAP 1.1 Envelope ({NS_SOAP11})")));
    }
    let body = root
        .children
        .iter()
        .find(|c| c.name == "Body" && c.is_in(NS_SOAP11))
        .ok_or_else(|| soap_error("Envelope/Body", "is missing"))?;
    let first = body.children.first().ok_or_else(|| soap_error("Envelope/Body", "is empty"))?;
    if first.name == "Fault" && first.is_in(NS_SOAP11) {
        let text = |name: &str| first.child(name).map(|c| c.text.trim().to_owned()).unwrap_or_default();
        return Ok(SoapAnswer::Fault(Fault { code: text("faultcode"), string: text("faultstring") }));
    }
    const RESPONSE: &str = "ConsultazioneAttestazioneResponse";
    const RESULT: &str = "ConsultazioneAttestazioneResult";
    let response = body
        .children
        .iter()
        .find(|c| c.name == RESPONSE)
        .ok_or_else(|| soap_error("Envelope/Body", format!("holds no {RESPONSE}")))?;
    let path = format!("Envelope/Body/{RESPONSE}/{RESULT}");
    let result = response.child(RESULT).ok_or_else(|| soap_error(&path, "is missing"))?;
    let field = |name: &str| -> Option<String> {
        result.child(name).map(|c: &Element| c.text.trim().to_owned()).filter(|t| !t.is_empty())
    };
    let esito = field("Esito").ok_or_else(|| soap_error(&format!("{path}/Esito"), "is missing"))?;
    Ok(SoapAnswer::Result(EsitoResult {
        esito,
        id_richiesta: field("IdRichiesta"),
        descrizione_errore: field("DescrizioneErrore"),
        xml_esito_attestazione: field("XmlEsitoAttestazione"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{PrestazioneDaErogare, StatoDomanda};
    use crate::values::CodiceFiscale;
    use time::macros::date;

    #[test]
    fn request_carries_the_ricerca_in_the_service_namespace() {
        let ricerca = RicercaCf::new(
            CodiceFiscale::parse("RSSMRA85T10A562S").unwrap(),
            "A1.01".parse::<PrestazioneDaErogare>().unwrap(),
            "PG/2025 <0001> & co",
        )
        .with_data_validita(date!(2025 - 03 - 04))
        .with_stato(StatoDomanda::DaErogare);
        let bytes = request_envelope(&ricerca);
        let root = xml::parse(&bytes).unwrap();
        assert!(root.is_in(NS_SOAP11));
        let r = root
            .child("Body")
            .and_then(|b| b.child("ConsultazioneAttestazione"))
            .and_then(|c| c.child("request"))
            .and_then(|r| r.child("RicercaCF"))
            .unwrap();
        assert!(r.is_in(NS_CONSULTAZIONE_ISEE));
        let text = |n: &str| r.child(n).unwrap().text.clone();
        assert_eq!(text("CodiceFiscale"), "RSSMRA85T10A562S");
        assert_eq!(text("DataValidita"), "2025-03-04");
        assert_eq!(text("PrestazioneDaErogare"), "A1.01");
        assert_eq!(text("ProtocolloDomandaEnteErogatore"), "PG/2025 <0001> & co");
        assert_eq!(text("StatodomandaPrestazione"), "Da Erogare");
        let order: Vec<&str> = r.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            order,
            [
                "CodiceFiscale",
                "DataValidita",
                "PrestazioneDaErogare",
                "ProtocolloDomandaEnteErogatore",
                "StatodomandaPrestazione"
            ]
        );
    }

    #[test]
    fn reads_results_and_faults() {
        let ok = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
            <ConsultazioneAttestazioneResponse xmlns="http://inps.it/ConsultazioneISEE">
            <ConsultazioneAttestazioneResult><IdRichiesta>37</IdRichiesta><Esito>DATI_NON_TROVATI</Esito>
            <DescrizioneErrore>Nessuna attestazione</DescrizioneErrore></ConsultazioneAttestazioneResult>
            </ConsultazioneAttestazioneResponse></s:Body></s:Envelope>"#;
        let SoapAnswer::Result(r) = parse_answer(ok).unwrap() else { panic!("result") };
        assert_eq!(r.esito, "DATI_NON_TROVATI");
        assert_eq!(r.id_richiesta.as_deref(), Some("37"));
        assert_eq!(r.descrizione_errore.as_deref(), Some("Nessuna attestazione"));
        assert_eq!(r.xml_esito_attestazione, None);

        let fault = br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
            <soap:Fault><faultcode>soap:Client</faultcode><faultstring>Bad</faultstring></soap:Fault>
            </soap:Body></soap:Envelope>"#;
        let SoapAnswer::Fault(f) = parse_answer(fault).unwrap() else { panic!("fault") };
        assert_eq!(f.string, "Bad");
        assert!(!f.is_transient());
        assert!(Fault { code: "s:Server".into(), string: String::new() }.is_transient());

        let err = parse_answer(b"<html>oops</html>").unwrap_err();
        assert_eq!(err.element, "Envelope");
        let empty =
            br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#;
        assert_eq!(parse_answer(empty).unwrap_err().element, "Envelope/Body");
    }
}
