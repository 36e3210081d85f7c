//! What can go wrong, classified: transient (trying again later may succeed) or permanent.

use std::time::Duration;

use csi_gateway_sdk::DeliveryError;

use crate::attestazione::DecodeError;
use crate::soap::EsitoInps;
use crate::values::looks_like_codice_fiscale;

/// A failed consultation. Reasons name fields, elements and hosts; they never hold a codice
/// fiscale, an ISEE value or the voucher. Texts that come from INPS (`DescrizioneErrore`,
/// `faultstring`) are folded on one line, cut at 200 characters, and anything shaped like a
/// codice fiscale in them is replaced by `[codice fiscale]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IseeError {
    /// The request breaks a rule before anything is sent; `field` names it.
    #[error("invalid ISEE request: `{field}` {rule}")]
    InvalidRequest {
        /// The [`RicercaCf`](crate::RicercaCf) field.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// INPS refused the request (`RICHIESTA_INVALIDA`, `RISCONTRO_NON_VALIDO`). Permanent.
    #[error("INPS refused the request ({esito}): {descrizione}")]
    Refused {
        /// The `Esito`.
        esito: EsitoInps,
        /// INPS's `DescrizioneErrore`.
        descrizione: String,
    },
    /// INPS could not answer (`DATABASE_OFFLINE`, `ERRORE_INTERNO`). Transient.
    #[error("INPS ISEE service unavailable ({esito}): {descrizione}")]
    Unavailable {
        /// The `Esito`.
        esito: EsitoInps,
        /// INPS's `DescrizioneErrore`.
        descrizione: String,
    },
    /// An `Esito` this adapter does not know. Permanent: it needs a look at the service.
    #[error("INPS answered an unknown Esito `{esito}`")]
    UnknownEsito {
        /// The `Esito` as written (at most 40 characters kept).
        esito: String,
    },
    /// A SOAP fault: transient for `Server`, permanent for `Client`.
    #[error("SOAP fault `{code}` from INPS: {string}")]
    SoapFault {
        /// `faultcode`.
        code: String,
        /// `faultstring`.
        string: String,
        /// Whether trying again may help.
        transient: bool,
    },
    /// An HTTP answer without a readable SOAP body: transient for 5xx, 401 (the voucher is
    /// dropped and a new one is asked next time), 408, 425 and 429; permanent otherwise.
    #[error("INPS answered HTTP {status}{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Http {
        /// The status code.
        status: u16,
        /// The start of the body, on one line.
        reason: String,
        /// `Retry-After` (delay-seconds form) on 429 and 503.
        retry_after: Option<Duration>,
    },
    /// No HTTP answer: connection refused, DNS, timeout, reset. Transient.
    #[error("{reason}")]
    Transport {
        /// What happened, naming `host:port`.
        reason: String,
    },
    /// The PDND voucher could not be obtained.
    #[error("PDND voucher: {reason}")]
    Voucher {
        /// What happened.
        reason: String,
        /// Whether trying again may help (token endpoint unreachable or 5xx).
        transient: bool,
    },
    /// The answer could not be read: the SOAP envelope, or the attestation in
    /// `XmlEsitoAttestazione` (bad base64, bad XML, a value that breaks its rule). `element`
    /// names where. Permanent: the same answer would come again.
    #[error("unreadable answer from INPS at `{element}`: {problem}")]
    Malformed {
        /// The element or attribute, as a path.
        element: String,
        /// What is wrong (never the value).
        problem: String,
    },
}

impl IseeError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Transport { .. } => true,
            Self::SoapFault { transient, .. } | Self::Voucher { transient, .. } => *transient,
            Self::Http { status, .. } => *status >= 500 || matches!(status, 401 | 408 | 425 | 429),
            Self::InvalidRequest { .. }
            | Self::Refused { .. }
            | Self::UnknownEsito { .. }
            | Self::Malformed { .. } => false,
        }
    }

    /// The same classification as the SDK's [`DeliveryError`], for a hub that schedules
    /// consultations like deliveries.
    pub fn to_delivery_error(&self) -> DeliveryError {
        let reason = self.to_string();
        match self {
            Self::Http { retry_after, .. } if self.is_transient() => {
                DeliveryError::Transient { reason, retry_after: *retry_after }
            }
            _ if self.is_transient() => DeliveryError::transient(reason),
            _ => DeliveryError::permanent(reason),
        }
    }
}

impl From<IseeError> for DeliveryError {
    fn from(e: IseeError) -> Self {
        e.to_delivery_error()
    }
}

impl From<DecodeError> for IseeError {
    fn from(e: DecodeError) -> Self {
        Self::Malformed { element: e.path, problem: e.problem }
    }
}

/// `text` on one line (control characters and runs of whitespace folded into one space),
/// trimmed, cut at `max_chars` with `…`.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let folded = text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty());
    let mut out = String::new();
    for word in folded {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > max_chars {
        let cut: String = out.chars().take(max_chars).collect();
        return format!("{cut}…");
    }
    out
}

/// A text from INPS (or PDND) made fit for an error: on one line, at most 200 characters, with anything
/// shaped like a codice fiscale replaced.
pub(crate) fn from_inps(text: &str) -> String {
    fn flush(out: &mut String, run: &mut String) {
        if looks_like_codice_fiscale(run) {
            out.push_str("[codice fiscale]");
        } else {
            out.push_str(run);
        }
        run.clear();
    }
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            run.push(c);
        } else {
            flush(&mut out, &mut run);
            out.push(c);
        }
    }
    flush(&mut out, &mut run);
    one_line(&out, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_from_inps_lose_codici_fiscali_and_line_breaks() {
        assert_eq!(
            from_inps("Codice fiscale\n RSSMRA85T10A562S non valido (cf:rssmra85t10a562s)."),
            "Codice fiscale [codice fiscale] non valido (cf:[codice fiscale])."
        );
        assert_eq!(from_inps(&"x".repeat(300)).chars().count(), 201);
    }

    #[test]
    fn classification_matches_the_sdk() {
        let unavailable =
            IseeError::Unavailable { esito: EsitoInps::DatabaseOffline, descrizione: String::new() };
        assert!(unavailable.to_delivery_error().is_transient());
        let refused =
            IseeError::Refused { esito: EsitoInps::RichiestaInvalida, descrizione: "CF errato".into() };
        assert!(!DeliveryError::from(refused).is_transient());
        let busy =
            IseeError::Http { status: 503, reason: String::new(), retry_after: Some(Duration::from_secs(7)) };
        assert_eq!(
            busy.to_delivery_error(),
            DeliveryError::Transient {
                reason: "INPS answered HTTP 503".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(!IseeError::Http { status: 403, reason: String::new(), retry_after: None }.is_transient());
        assert!(IseeError::Http { status: 401, reason: String::new(), retry_after: None }.is_transient());
    }
}
