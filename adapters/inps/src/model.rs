//! Typed model of the `PS_PSA_SINA` flow (`PS_PSA_SINA201812.xsd`).
//!
//! Field order follows the XSD; `Option` is an optional attribute or element, `Vec` a repeated one.
//! Coded values are enums ([`crate::codes`]); facets the types cannot hold (lengths, patterns,
//! ranges) are checked by [`crate::check`].

use time::Date;

use crate::codes::*;
use crate::values::{Importo, Ore};

/// Namespace of both SIUSS flows.
pub const NAMESPACE: &str = "http://inps.it/Casellario";

/// `IdentificazioneFlussoType`: the flow header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentificazioneFlusso {
    /// `@Nome`, up to 50 characters. Use the WaaS `id_flusso` ([`crate::id_flusso`]).
    pub nome: String,
    /// `Ente`.
    pub ente: Ente,
}

/// `EnteType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ente {
    /// `@Codice`, 1–32 characters: the ente's code at INPS.
    pub codice: String,
    /// `@Denominazione`, 1–100 characters.
    pub denominazione: Option<String>,
    /// `@Indirizzo`: Belfiore code (4 characters) of the comune of the ente's seat.
    pub indirizzo: String,
    /// `@CFOperatore`: codice fiscale of the operator (or 11-digit partita IVA).
    pub cf_operatore: String,
}

/// A `PS_PSA_SINA` flow: root `Flusso`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsPsaSina {
    /// `IdentificazioneFlusso`.
    pub identificazione: IdentificazioneFlusso,
    /// `Beneficiario`, 1..n (exactly 1 over WaaS).
    pub beneficiari: Vec<Beneficiario>,
}

/// `BeneficiarioType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beneficiario {
    /// `@CodiceFiscale`.
    pub codice_fiscale: String,
    /// `Anagrafica`.
    pub anagrafica: Anagrafica,
    /// `Indirizzo`, 1..5.
    pub indirizzi: Vec<Indirizzo>,
    /// `PrestazioniSociali`, 1..n (exactly 1 over WaaS).
    pub prestazioni: Vec<PrestazioniSociali>,
}

/// `AnagraficaType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anagrafica {
    /// `@Cognome`, 1–36 characters.
    pub cognome: String,
    /// `@Nome`, 1–36 characters.
    pub nome: String,
    /// `@AnnoNascita`, 4 digits.
    pub anno_nascita: u16,
    /// `@LuogoNascita`: Belfiore code (4 characters) of the comune or foreign state of birth.
    pub luogo_nascita: String,
    /// `@Genere`.
    pub genere: Genere,
    /// `@CodiceCittadinanza`, 3 digits, SIUSS coding (380 = Italy).
    pub codice_cittadinanza: String,
    /// `@CodiceSecondaCittadinanza`, 3 digits.
    pub codice_seconda_cittadinanza: Option<String>,
}

/// `IndirizzoType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indirizzo {
    /// `@CodiceRegione`, 2 digits; required when `codice_nazione` is 380.
    pub codice_regione: Option<String>,
    /// `@CodiceComune`, 6-digit ISTAT code; required when `codice_nazione` is 380.
    pub codice_comune: Option<String>,
    /// `@CodiceNazione`, 3 digits, SIUSS coding (380 = Italy).
    pub codice_nazione: String,
}

/// `PrestazioniSocialiType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrestazioniSociali {
    /// `@TipoOperazione`: `I` insert, `C` cancel.
    pub tipo_operazione: Option<TipoOperazione>,
    /// `@PresenzaProvaMezzi`.
    pub presenza_prova_mezzi: PresenzaProvaMezzi,
    /// `@CaratterePrestazione`.
    pub carattere_prestazione: Option<CaratterePrestazione>,
    /// `@NumeroProtocolloDSU`, up to 30 characters.
    pub numero_protocollo_dsu: Option<String>,
    /// `@AnnoProtocolloDSU`, 4 digits.
    pub anno_protocollo_dsu: Option<u16>,
    /// `@DataDSU`.
    pub data_dsu: Option<Date>,
    /// `@CodicePrestazione`, 5–10 characters.
    pub codice_prestazione: String,
    /// `@DenominazionePrestazione`, 10–200 characters.
    pub denominazione_prestazione: String,
    /// `@ProtocolloDomanda`, 1–32 characters.
    pub protocollo_domanda: String,
    /// `@DataEvento`.
    pub data_evento: Option<Date>,
    /// `@DataInizioPrestazione`.
    pub data_inizio_prestazione: Option<Date>,
    /// `@DataFinePrestazione`.
    pub data_fine_prestazione: Option<Date>,
    /// `@DataErogazionePrestazione`.
    pub data_erogazione_prestazione: Option<Date>,
    /// `@ImportoPrestazione`.
    pub importo_prestazione: Option<Importo>,
    /// `@PeriodoErogazione`, 1–12.
    pub periodo_erogazione: Option<u8>,
    /// `@ImportoMensile`.
    pub importo_mensile: Option<Importo>,
    /// `@ImportoQuotaEnte`.
    pub importo_quota_ente: Option<Importo>,
    /// `@ImportoQuotaUtente`.
    pub importo_quota_utente: Option<Importo>,
    /// `@ImportoQuotaSSN`.
    pub importo_quota_ssn: Option<Importo>,
    /// `@ImportoQuotaRichiesta`.
    pub importo_quota_richiesta: Option<Importo>,
    /// `@ImportoSogliaISEE`.
    pub importo_soglia_isee: Option<Importo>,
    /// `@OreServizioMensile`.
    pub ore_servizio_mensile: Option<Ore>,
    /// `@PresaCarico`.
    pub presa_carico: PresaCarico,
    /// `@AreaUtenza`.
    pub area_utenza: Option<AreaUtenza>,
    /// `SINA`.
    pub sina: Option<Sina>,
}

impl PrestazioniSociali {
    /// A prestazione with the required attributes and nothing else.
    pub fn new(
        presenza_prova_mezzi: PresenzaProvaMezzi,
        codice_prestazione: impl Into<String>,
        denominazione_prestazione: impl Into<String>,
        protocollo_domanda: impl Into<String>,
        presa_carico: PresaCarico,
    ) -> Self {
        PrestazioniSociali {
            tipo_operazione: None,
            presenza_prova_mezzi,
            carattere_prestazione: None,
            numero_protocollo_dsu: None,
            anno_protocollo_dsu: None,
            data_dsu: None,
            codice_prestazione: codice_prestazione.into(),
            denominazione_prestazione: denominazione_prestazione.into(),
            protocollo_domanda: protocollo_domanda.into(),
            data_evento: None,
            data_inizio_prestazione: None,
            data_fine_prestazione: None,
            data_erogazione_prestazione: None,
            importo_prestazione: None,
            periodo_erogazione: None,
            importo_mensile: None,
            importo_quota_ente: None,
            importo_quota_utente: None,
            importo_quota_ssn: None,
            importo_quota_richiesta: None,
            importo_soglia_isee: None,
            ore_servizio_mensile: None,
            presa_carico,
            area_utenza: None,
            sina: None,
        }
    }
}

/// `SINAType`: the SINA assessment of a non-self-sufficient beneficiary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sina {
    /// `NecessitaInterventiSociali/CodicePrestazione`, each 5–10 characters; empty = element absent.
    pub necessita_interventi_sociali: Vec<String>,
    /// `InvaliditaCivile/InvCiv`; empty = element absent.
    pub invalidita_civile: Vec<InvCiv>,
    /// `@Mobilita`.
    pub mobilita: Mobilita,
    /// `@AttivitaVitaQuotidiana`.
    pub attivita_vita_quotidiana: AttivitaVitaQuotidiana,
    /// `@DisturbiAreaCognitiva`.
    pub disturbi_area_cognitiva: Option<DisturbiAreaCognitiva>,
    /// `@DisturbiComportamentali`.
    pub disturbi_comportamentali: DisturbiComportamentali,
    /// `@NecessitaCureSanitarie`.
    pub necessita_cure_sanitarie: Option<NecessitaCureSanitarie>,
    /// `@AreaReddituale`.
    pub area_reddituale: AreaReddituale,
    /// `@AreaSupporto`.
    pub area_supporto: AreaSupporto,
    /// `@FonteDerivazioneValutazione`.
    pub fonte_derivazione_valutazione: FonteDerivazioneValutazione,
    /// `@StrumentoValutazione`.
    pub strumento_valutazione: StrumentoValutazione,
    /// `@FonteDerivazioneInvalidita`.
    pub fonte_derivazione_invalidita: Option<FonteDerivazioneInvalidita>,
}
