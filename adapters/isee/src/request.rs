//! The `RicercaCF` request of `ConsultazioneAttestazione`.

use std::fmt;
use std::str::FromStr;

use time::Date;

use crate::values::{CodiceFiscale, ValueError};

/// The codes INPS accepts in `PrestazioneDaErogare`, as the public clients of the service send
/// them (A1.01–A1.20, A2.01–A2.12, A3.01–A3.03, Z9.99 "altro"). The official WSDL enumeration was
/// not found in a primary source: **unconfirmed**, see the README.
pub const PRESTAZIONI_DA_EROGARE: &[&str] = &[
    "A1.01", "A1.02", "A1.03", "A1.04", "A1.05", "A1.06", "A1.07", "A1.08", "A1.09", "A1.10", "A1.11",
    "A1.12", "A1.13", "A1.14", "A1.15", "A1.16", "A1.17", "A1.18", "A1.19", "A1.20", "A2.01", "A2.02",
    "A2.03", "A2.04", "A2.05", "A2.06", "A2.07", "A2.08", "A2.09", "A2.10", "A2.11", "A2.12", "A3.01",
    "A3.02", "A3.03", "Z9.99",
];

/// The prestazione the attestation is asked for (`PrestazioneDaErogare`), one of
/// [`PRESTAZIONI_DA_EROGARE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrestazioneDaErogare(&'static str);

impl PrestazioneDaErogare {
    /// `Z9.99`, "altra prestazione".
    pub const ALTRO: Self = Self("Z9.99");

    /// The code as INPS writes it (`A1.01`).
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl FromStr for PrestazioneDaErogare {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PRESTAZIONI_DA_EROGARE
            .iter()
            .find(|code| **code == s)
            .map(|code| Self(code))
            .ok_or(ValueError("must be one of A1.01–A1.20, A2.01–A2.12, A3.01–A3.03, Z9.99"))
    }
}

impl fmt::Display for PrestazioneDaErogare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// `StatodomandaPrestazione`: whether the prestazione is still to be granted or already granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatoDomanda {
    /// `Da Erogare`.
    DaErogare,
    /// `Erogata`.
    Erogata,
}

impl StatoDomanda {
    /// The value as INPS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DaErogare => "Da Erogare",
            Self::Erogata => "Erogata",
        }
    }
}

/// The longest `ProtocolloDomandaEnteErogatore` this adapter sends. The WSDL limit is not known;
/// 100 characters holds every protocollo numbering in use at the comuni.
pub const MAX_PROTOCOLLO_DOMANDA_CHARS: usize = 100;

/// One `RicercaCF`: the attestation of the person with `codice_fiscale`, for `prestazione`,
/// valid on `data_validita` (today when absent), for the comune's domanda
/// `protocollo_domanda`.
///
/// `Debug` hides the codice fiscale.
#[derive(Clone, PartialEq, Eq)]
pub struct RicercaCf {
    /// `CodiceFiscale`: the person the prestazione is for.
    pub codice_fiscale: CodiceFiscale,
    /// `DataValidita`: the day the attestation must be valid on. When absent, the element is
    /// not sent and INPS uses the current day; the cache uses the current day in Italy.
    pub data_validita: Option<Date>,
    /// `PrestazioneDaErogare`.
    pub prestazione: PrestazioneDaErogare,
    /// `ProtocolloDomandaEnteErogatore`: the comune's reference of the domanda, recorded by INPS
    /// with the consultation. 1–100 characters, no control characters.
    pub protocollo_domanda: String,
    /// `StatodomandaPrestazione`.
    pub stato_domanda: StatoDomanda,
}

impl RicercaCf {
    /// A request for the attestation valid today, for a domanda still to be granted.
    pub fn new(
        codice_fiscale: CodiceFiscale,
        prestazione: PrestazioneDaErogare,
        protocollo_domanda: impl Into<String>,
    ) -> Self {
        Self {
            codice_fiscale,
            data_validita: None,
            prestazione,
            protocollo_domanda: protocollo_domanda.into(),
            stato_domanda: StatoDomanda::DaErogare,
        }
    }

    /// Asks for the attestation valid on `date`.
    #[must_use]
    pub fn with_data_validita(mut self, date: Date) -> Self {
        self.data_validita = Some(date);
        self
    }

    /// Sets `StatodomandaPrestazione`.
    #[must_use]
    pub fn with_stato(mut self, stato: StatoDomanda) -> Self {
        self.stato_domanda = stato;
        self
    }

    /// Checks what the types do not hold; the error names the request field.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let p = &self.protocollo_domanda;
        if p.trim().is_empty() {
            return Err(("protocollo_domanda", "must not be empty"));
        }
        if p.chars().count() > MAX_PROTOCOLLO_DOMANDA_CHARS {
            return Err(("protocollo_domanda", "must be at most 100 characters"));
        }
        if p.chars().any(char::is_control) {
            return Err(("protocollo_domanda", "must not contain control characters"));
        }
        Ok(())
    }
}

impl fmt::Debug for RicercaCf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RicercaCf")
            .field("codice_fiscale", &self.codice_fiscale)
            .field("data_validita", &self.data_validita)
            .field("prestazione", &self.prestazione)
            .field("protocollo_domanda", &self.protocollo_domanda)
            .field("stato_domanda", &self.stato_domanda)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf() -> CodiceFiscale {
        CodiceFiscale::parse("RSSMRA85T10A562S").unwrap()
    }

    #[test]
    fn prestazione_codes_are_the_known_ones() {
        assert_eq!("A1.01".parse::<PrestazioneDaErogare>().unwrap().as_str(), "A1.01");
        assert_eq!("Z9.99".parse::<PrestazioneDaErogare>().unwrap(), PrestazioneDaErogare::ALTRO);
        assert!("A1.21".parse::<PrestazioneDaErogare>().is_err());
        assert!("A3.04".parse::<PrestazioneDaErogare>().is_err());
        assert!("a1.01".parse::<PrestazioneDaErogare>().is_err());
        assert_eq!(PRESTAZIONI_DA_EROGARE.len(), 36);
    }

    #[test]
    fn protocollo_domanda_is_checked_and_debug_hides_the_codice_fiscale() {
        let ok = RicercaCf::new(cf(), PrestazioneDaErogare::ALTRO, "PG/2025/0001234");
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(
            RicercaCf::new(cf(), PrestazioneDaErogare::ALTRO, " ").check().unwrap_err().0,
            "protocollo_domanda"
        );
        assert!(RicercaCf::new(cf(), PrestazioneDaErogare::ALTRO, "a\nb").check().is_err());
        assert!(RicercaCf::new(cf(), PrestazioneDaErogare::ALTRO, "x".repeat(101)).check().is_err());
        assert!(!format!("{ok:?}").contains("RSSMRA"));
        assert_eq!(ok.with_stato(StatoDomanda::Erogata).stato_domanda.as_str(), "Erogata");
    }
}
