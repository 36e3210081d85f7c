//! Identifiers: the WaaS `id_flusso` and the SINBA pseudonym `IDBeneficiario`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::Date;

/// Flow type as it appears in `id_flusso` (`PS` or `SINBA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tipo {
    /// `PS_PSA_SINA` (`PS` in the id, `PS_PSA_SINA` as WaaS `tipo`).
    Ps,
    /// `SINBA`.
    Sinba,
}

impl Tipo {
    /// The segment in `id_flusso`.
    pub fn id_segment(self) -> &'static str {
        match self {
            Tipo::Ps => "PS",
            Tipo::Sinba => "SINBA",
        }
    }
    /// The WaaS `tipo` value (`TipoFlusso` in api-comuni.yaml).
    pub fn waas_tipo(self) -> &'static str {
        match self {
            Tipo::Ps => "PS_PSA_SINA",
            Tipo::Sinba => "SINBA",
        }
    }
}

/// `id_flusso` could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdFlussoError {
    /// The ente code is not a Belfiore code.
    #[error("codice ente {0:?} is not a Belfiore code ^[A-Z][0-9]{{3}}$")]
    Ente(String),
    /// The daily progressive does not fit 7 digits (or is 0).
    #[error("progressivo {0} is outside 1..=9999999")]
    Progressivo(u32),
}

/// The WaaS `id_flusso`: `EEEE.TIPO.AAAAMMGG.NNNNNNN` (api-comuni.yaml v2.0.1, `Flusso.id_flusso`):
/// Belfiore code of the ente, `PS` or `SINBA`, creation date, 7-digit zero-padded daily progressive.
/// e.g. `id_flusso("H501", Tipo::Ps, 2016-04-23, 1) == "H501.PS.20160423.0000001"`.
pub fn id_flusso(ente: &str, tipo: Tipo, date: Date, progressivo: u32) -> Result<String, IdFlussoError> {
    let b = ente.as_bytes();
    if !(b.len() == 4 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit)) {
        return Err(IdFlussoError::Ente(ente.to_string()));
    }
    if progressivo == 0 || progressivo > 9_999_999 {
        return Err(IdFlussoError::Progressivo(progressivo));
    }
    Ok(format!(
        "{ente}.{}.{:04}{:02}{:02}.{progressivo:07}",
        tipo.id_segment(),
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// Stable pseudonymous SINBA `IDBeneficiario`: the first 20 characters of the upper-case hex
/// HMAC-SHA256 of the (upper-cased, trimmed) codice fiscale under the ente's secret (80 bits).
/// The same minor gets the same id in every flusso of the ente; without the secret the id cannot
/// be linked back to the codice fiscale. The secret must be per ente, kept out of logs and config
/// dumps, and never rotated without a plan (rotation changes every id).
pub fn sinba_id(secret: &[u8], cf: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(cf.trim().to_ascii_uppercase().as_bytes());
    let mut h = hex::encode_upper(mac.finalize().into_bytes());
    h.truncate(20);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn id_flusso_matches_openapi_example() {
        assert_eq!(
            id_flusso("H501", Tipo::Ps, date!(2016 - 04 - 23), 1).unwrap(),
            "H501.PS.20160423.0000001"
        );
        assert_eq!(
            id_flusso("F205", Tipo::Sinba, date!(2025 - 12 - 31), 9_999_999).unwrap(),
            "F205.SINBA.20251231.9999999"
        );
    }

    #[test]
    fn id_flusso_refuses_bad_input() {
        assert!(id_flusso("015146", Tipo::Ps, date!(2025 - 01 - 01), 1).is_err());
        assert!(id_flusso("f205", Tipo::Ps, date!(2025 - 01 - 01), 1).is_err());
        assert!(id_flusso("F205", Tipo::Ps, date!(2025 - 01 - 01), 0).is_err());
        assert!(id_flusso("F205", Tipo::Ps, date!(2025 - 01 - 01), 10_000_000).is_err());
    }

    #[test]
    fn sinba_id_is_stable_short_and_keyed() {
        let a = sinba_id(b"secret-F205", "CLMMTT12B15F205O");
        assert_eq!(a.len(), 20);
        assert_eq!(a, sinba_id(b"secret-F205", " clmmtt12b15f205o "));
        assert_ne!(a, sinba_id(b"secret-B157", "CLMMTT12B15F205O"));
        assert!(!a.contains("CLMMTT"));
    }
}
