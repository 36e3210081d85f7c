//! Checks to pass before a flusso is published: the SIUSS rules written outside the XSD
//! (specification v2.0.1, tables 9–11, see DOMAIN §2) and the XSD facets that the Rust types do not
//! hold (lengths, patterns, ranges, cardinalities). Coded values need no check: the enums can only
//! hold codes the XSD allows.
//!
//! Every violation has a stable `rule` name (listed in the crate README) and an XPath-like `path`
//! (`Beneficiario[1]/PrestazioniSociali[1]/@ImportoMensile`, 1-based). Messages never contain a
//! codice fiscale, a name or an amount.

use crate::codes::*;
use crate::model::*;
use crate::sinba::*;
use crate::values::Importo;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// Stable rule name, e.g. `carattere1_requires_data_inizio`.
    pub rule: &'static str,
    /// Where: XPath-like, 1-based indexes, attributes with `@`.
    pub path: String,
    /// What is wrong, in plain words.
    pub message: String,
}

/// Rule names, for documentation and for callers that match on them.
pub mod rule {
    /// Carattere 1 (periodic) needs `DataInizioPrestazione`.
    pub const CARATTERE1_REQUIRES_DATA_INIZIO: &str = "carattere1_requires_data_inizio";
    /// Carattere 1 (periodic) needs `ImportoMensile`.
    pub const CARATTERE1_REQUIRES_IMPORTO_MENSILE: &str = "carattere1_requires_importo_mensile";
    /// Carattere 2 (one-off) needs `DataErogazionePrestazione`.
    pub const CARATTERE2_REQUIRES_DATA_EROGAZIONE: &str = "carattere2_requires_data_erogazione";
    /// Carattere 2 (one-off) needs `ImportoPrestazione`.
    pub const CARATTERE2_REQUIRES_IMPORTO_PRESTAZIONE: &str = "carattere2_requires_importo_prestazione";
    /// `PresaCarico` 1 needs `AreaUtenza`.
    pub const PRESA_CARICO1_REQUIRES_AREA_UTENZA: &str = "presa_carico1_requires_area_utenza";
    /// `NumeroProtocolloDSU`, `AnnoProtocolloDSU`, `DataDSU`: all or none.
    pub const DSU_ALL_OR_NONE: &str = "dsu_all_or_none";
    /// Quota ente + quota utente + quota SSN, when any is given, equal the amount.
    pub const QUOTE_SUM_TO_IMPORTO: &str = "quote_sum_to_importo";
    /// `DataFinePrestazione` in the same year as `DataInizioPrestazione`.
    pub const DATA_FINE_SAME_YEAR: &str = "data_fine_same_year_as_data_inizio";
    /// `DataFinePrestazione` not before `DataInizioPrestazione`.
    pub const DATA_FINE_NOT_BEFORE_INIZIO: &str = "data_fine_not_before_data_inizio";
    /// `ImportoPrestazione` and `ImportoMensile` > 0.
    pub const IMPORTO_POSITIVE: &str = "importo_positive";
    /// Quotas, `ImportoSogliaISEE`, `OreServizioMensile` ≥ 0.
    pub const QUOTA_NON_NEGATIVE: &str = "quota_non_negative";
    /// `CodiceRegione` and `CodiceComune` required when `CodiceNazione` is 380 (Italy).
    pub const INDIRIZZO_ITALIA_REQUIRES_REGIONE_COMUNE: &str = "indirizzo_italia_requires_regione_comune";
    /// `PeriodoErogazione` 1–12.
    pub const PERIODO_EROGAZIONE_RANGE: &str = "periodo_erogazione_range";
    /// An XSD length facet (`minLength`/`maxLength`/`length`).
    pub const XSD_LENGTH: &str = "xsd_length";
    /// An XSD pattern facet (digits, codice fiscale).
    pub const XSD_PATTERN: &str = "xsd_pattern";
    /// An XSD cardinality (`minOccurs`/`maxOccurs`).
    pub const XSD_CARDINALITY: &str = "xsd_cardinality";
    /// WaaS: exactly one Beneficiario with exactly one PrestazioniSociali.
    pub const WAAS_ONE_BENEFICIARIO_ONE_PRESTAZIONE: &str = "waas_one_beneficiario_one_prestazione";
    /// SINBA: `IDBeneficiario` must not be a codice fiscale.
    pub const SINBA_ID_NOT_CODICE_FISCALE: &str = "sinba_id_not_codice_fiscale";
    /// SINBA: `SegnalazioneAutoritaGiudiziaria` 1 needs `DataSegnalazione`.
    pub const SINBA_SEGNALAZIONE_REQUIRES_DATA: &str = "sinba_segnalazione_requires_data";
    /// SINBA: `ProvvedimentoGiudiziario` 1 needs `DataProvvedimentoGiudiziario` and `AutoritaProvvedimento`.
    pub const SINBA_PROVVEDIMENTO_REQUIRES_DATA_AUTORITA: &str = "sinba_provvedimento_requires_data_autorita";
    /// SINBA: `Disabilita` 1 needs `TipoDisabilita`.
    pub const SINBA_DISABILITA_REQUIRES_TIPO: &str = "sinba_disabilita_requires_tipo";
    /// SINBA: `CodiceRegioneResidenza` required when `CodiceNazioneResidenza` is 380.
    pub const SINBA_ITALIA_REQUIRES_REGIONE: &str = "sinba_italia_requires_regione";
    /// SINBA: `NumeroComponentiISEE` 1–9.
    pub const SINBA_NUMERO_COMPONENTI_ISEE_RANGE: &str = "sinba_numero_componenti_isee_range";
}

use rule::*;

struct Out(Vec<RuleViolation>);

impl Out {
    fn push(&mut self, rule: &'static str, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(RuleViolation { rule, path: path.into(), message: message.into() });
    }
    fn len(&mut self, path: &str, name: &str, v: &str, min: usize, max: usize) {
        let n = v.chars().count();
        if n < min || n > max {
            self.push(
                XSD_LENGTH,
                format!("{path}/@{name}"),
                format!("{name} must be {min}-{max} characters, is {n}"),
            );
        }
    }
    fn digits(&mut self, path: &str, name: &str, v: &str, n: usize) {
        if !is_digits(v, n) {
            self.push(XSD_PATTERN, format!("{path}/@{name}"), format!("{name} must be exactly {n} digits"));
        }
    }
    fn year(&mut self, path: &str, name: &str, y: u16) {
        if !(1000..=9999).contains(&y) {
            self.push(XSD_PATTERN, format!("{path}/@{name}"), format!("{name} must be a 4-digit year"));
        }
    }
}

fn is_digits(v: &str, n: usize) -> bool {
    v.len() == n && v.bytes().all(|b| b.is_ascii_digit())
}

/// The XSD pattern of `CodiceFiscale`/`CFOperatore`:
/// `([A-Za-z]{6}\d{2}[A-Za-z]\d{2}[A-Za-z][A-Za-z0-9]{3}[A-Za-z])|(\d{11} {0,5})`.
pub fn is_xsd_codice_fiscale(v: &str) -> bool {
    let b = v.as_bytes();
    let a = |i: usize| b[i].is_ascii_alphabetic();
    let d = |i: usize| b[i].is_ascii_digit();
    let person = b.len() == 16
        && (0..6).all(a)
        && (6..8).all(d)
        && a(8)
        && (9..11).all(d)
        && a(11)
        && (12..15).all(|i| b[i].is_ascii_alphanumeric())
        && a(15);
    let company = (11..=16).contains(&b.len()) && (0..11).all(d) && b[11..].iter().all(|c| *c == b' ');
    person || company
}

fn check_header(h: &IdentificazioneFlusso, out: &mut Out) {
    let p = "IdentificazioneFlusso";
    out.len(p, "Nome", &h.nome, 0, 50);
    let p = "IdentificazioneFlusso/Ente";
    let e = &h.ente;
    out.len(p, "Codice", &e.codice, 1, 32);
    if let Some(d) = &e.denominazione {
        out.len(p, "Denominazione", d, 1, 100);
    }
    out.len(p, "Indirizzo", &e.indirizzo, 4, 4);
    if !is_xsd_codice_fiscale(&e.cf_operatore) {
        out.push(
            XSD_PATTERN,
            format!("{p}/@CFOperatore"),
            "CFOperatore is not a codice fiscale or partita IVA",
        );
    }
}

/// All rules for a whole `PS_PSA_SINA` flow (any number of beneficiaries).
pub fn check(f: &PsPsaSina) -> Vec<RuleViolation> {
    let mut out = Out(Vec::new());
    check_header(&f.identificazione, &mut out);
    if f.beneficiari.is_empty() {
        out.push(XSD_CARDINALITY, "Beneficiario", "at least one Beneficiario is required");
    }
    let mut v = out.0;
    for (i, b) in f.beneficiari.iter().enumerate() {
        v.extend(check_beneficiario(b, i + 1));
    }
    v
}

/// [`check`] plus the WaaS rule: exactly one Beneficiario with exactly one PrestazioniSociali.
pub fn check_waas(f: &PsPsaSina) -> Vec<RuleViolation> {
    let mut v = check(f);
    let ok = f.beneficiari.len() == 1 && f.beneficiari[0].prestazioni.len() == 1;
    if !ok {
        v.push(RuleViolation {
            rule: WAAS_ONE_BENEFICIARIO_ONE_PRESTAZIONE,
            path: "Beneficiario".into(),
            message: "over WaaS a flusso holds exactly one Beneficiario with one PrestazioniSociali".into(),
        });
    }
    v
}

/// The rules for one beneficiary, `index` 1-based (for the streaming writer: check each record
/// before writing it).
pub fn check_beneficiario(b: &Beneficiario, index: usize) -> Vec<RuleViolation> {
    let mut out = Out(Vec::new());
    let bp = format!("Beneficiario[{index}]");
    if !is_xsd_codice_fiscale(&b.codice_fiscale) {
        out.push(
            XSD_PATTERN,
            format!("{bp}/@CodiceFiscale"),
            "CodiceFiscale is not a codice fiscale or partita IVA",
        );
    }
    let ap = format!("{bp}/Anagrafica");
    let a = &b.anagrafica;
    out.len(&ap, "Cognome", &a.cognome, 1, 36);
    out.len(&ap, "Nome", &a.nome, 1, 36);
    out.year(&ap, "AnnoNascita", a.anno_nascita);
    out.len(&ap, "LuogoNascita", &a.luogo_nascita, 4, 4);
    out.digits(&ap, "CodiceCittadinanza", &a.codice_cittadinanza, 3);
    if let Some(c) = &a.codice_seconda_cittadinanza {
        out.digits(&ap, "CodiceSecondaCittadinanza", c, 3);
    }

    if b.indirizzi.is_empty() || b.indirizzi.len() > 5 {
        out.push(XSD_CARDINALITY, format!("{bp}/Indirizzo"), "1 to 5 Indirizzo are required");
    }
    for (j, i) in b.indirizzi.iter().enumerate() {
        let ip = format!("{bp}/Indirizzo[{}]", j + 1);
        out.digits(&ip, "CodiceNazione", &i.codice_nazione, 3);
        if let Some(r) = &i.codice_regione {
            out.digits(&ip, "CodiceRegione", r, 2);
        }
        if let Some(c) = &i.codice_comune {
            out.digits(&ip, "CodiceComune", c, 6);
        }
        if i.codice_nazione == "380" && (i.codice_regione.is_none() || i.codice_comune.is_none()) {
            out.push(
                INDIRIZZO_ITALIA_REQUIRES_REGIONE_COMUNE,
                ip,
                "an Italian address (CodiceNazione 380) needs CodiceRegione and CodiceComune",
            );
        }
    }

    if b.prestazioni.is_empty() {
        out.push(
            XSD_CARDINALITY,
            format!("{bp}/PrestazioniSociali"),
            "at least one PrestazioniSociali is required",
        );
    }
    for (j, p) in b.prestazioni.iter().enumerate() {
        check_prestazione(p, &format!("{bp}/PrestazioniSociali[{}]", j + 1), &mut out);
    }
    out.0
}

fn check_prestazione(p: &PrestazioniSociali, pp: &str, out: &mut Out) {
    let at = |name: &str| format!("{pp}/@{name}");
    out.len(pp, "CodicePrestazione", &p.codice_prestazione, 5, 10);
    out.len(pp, "DenominazionePrestazione", &p.denominazione_prestazione, 10, 200);
    out.len(pp, "ProtocolloDomanda", &p.protocollo_domanda, 1, 32);
    if let Some(n) = &p.numero_protocollo_dsu {
        out.len(pp, "NumeroProtocolloDSU", n, 0, 30);
    }
    if let Some(y) = p.anno_protocollo_dsu {
        out.year(pp, "AnnoProtocolloDSU", y);
    }

    match p.carattere_prestazione {
        Some(CaratterePrestazione::Periodico) => {
            if p.data_inizio_prestazione.is_none() {
                out.push(
                    CARATTERE1_REQUIRES_DATA_INIZIO,
                    at("DataInizioPrestazione"),
                    "a periodic prestazione (CaratterePrestazione 1) needs DataInizioPrestazione",
                );
            }
            if p.importo_mensile.is_none() {
                out.push(
                    CARATTERE1_REQUIRES_IMPORTO_MENSILE,
                    at("ImportoMensile"),
                    "a periodic prestazione (CaratterePrestazione 1) needs ImportoMensile",
                );
            }
        }
        Some(CaratterePrestazione::Occasionale) => {
            if p.data_erogazione_prestazione.is_none() {
                out.push(
                    CARATTERE2_REQUIRES_DATA_EROGAZIONE,
                    at("DataErogazionePrestazione"),
                    "a one-off prestazione (CaratterePrestazione 2) needs DataErogazionePrestazione",
                );
            }
            if p.importo_prestazione.is_none() {
                out.push(
                    CARATTERE2_REQUIRES_IMPORTO_PRESTAZIONE,
                    at("ImportoPrestazione"),
                    "a one-off prestazione (CaratterePrestazione 2) needs ImportoPrestazione",
                );
            }
        }
        None => {}
    }

    if p.presa_carico == PresaCarico::Si && p.area_utenza.is_none() {
        out.push(PRESA_CARICO1_REQUIRES_AREA_UTENZA, at("AreaUtenza"), "PresaCarico 1 needs AreaUtenza");
    }

    let dsu = [p.numero_protocollo_dsu.is_some(), p.anno_protocollo_dsu.is_some(), p.data_dsu.is_some()];
    if dsu.iter().any(|x| *x) && !dsu.iter().all(|x| *x) {
        out.push(
            DSU_ALL_OR_NONE,
            pp,
            "NumeroProtocolloDSU, AnnoProtocolloDSU and DataDSU must be given all together or not at all",
        );
    }

    let quote = [p.importo_quota_ente, p.importo_quota_utente, p.importo_quota_ssn];
    if quote.iter().any(Option::is_some) {
        let sum: i64 = quote.iter().flatten().map(|q| q.cents()).sum();
        let target = match p.carattere_prestazione {
            Some(CaratterePrestazione::Periodico) => p.importo_mensile.map(|i| ("ImportoMensile", i)),
            Some(CaratterePrestazione::Occasionale) => {
                p.importo_prestazione.map(|i| ("ImportoPrestazione", i))
            }
            None => p
                .importo_prestazione
                .map(|i| ("ImportoPrestazione", i))
                .or(p.importo_mensile.map(|i| ("ImportoMensile", i))),
        };
        if let Some((name, importo)) = target {
            if sum != importo.cents() {
                out.push(
                    QUOTE_SUM_TO_IMPORTO,
                    pp,
                    format!("ImportoQuotaEnte + ImportoQuotaUtente + ImportoQuotaSSN must equal {name}"),
                );
            }
        }
    }

    if let (Some(i), Some(f)) = (p.data_inizio_prestazione, p.data_fine_prestazione) {
        if i.year() != f.year() {
            out.push(
                DATA_FINE_SAME_YEAR,
                at("DataFinePrestazione"),
                "DataFinePrestazione must fall in the same year as DataInizioPrestazione",
            );
        }
        if f < i {
            out.push(
                DATA_FINE_NOT_BEFORE_INIZIO,
                at("DataFinePrestazione"),
                "DataFinePrestazione is before DataInizioPrestazione",
            );
        }
    }

    let positive: [(&str, Option<Importo>); 2] =
        [("ImportoPrestazione", p.importo_prestazione), ("ImportoMensile", p.importo_mensile)];
    for (name, v) in positive {
        if matches!(v, Some(v) if v.cents() <= 0) {
            out.push(IMPORTO_POSITIVE, at(name), format!("{name} must be greater than 0"));
        }
    }
    let non_negative: [(&str, Option<i64>); 6] = [
        ("ImportoQuotaEnte", p.importo_quota_ente.map(Importo::cents)),
        ("ImportoQuotaUtente", p.importo_quota_utente.map(Importo::cents)),
        ("ImportoQuotaSSN", p.importo_quota_ssn.map(Importo::cents)),
        ("ImportoQuotaRichiesta", p.importo_quota_richiesta.map(Importo::cents)),
        ("ImportoSogliaISEE", p.importo_soglia_isee.map(Importo::cents)),
        ("OreServizioMensile", p.ore_servizio_mensile.map(|o| o.0)),
    ];
    for (name, v) in non_negative {
        if matches!(v, Some(v) if v < 0) {
            out.push(QUOTA_NON_NEGATIVE, at(name), format!("{name} must not be negative"));
        }
    }

    if let Some(n) = p.periodo_erogazione {
        if !(1..=12).contains(&n) {
            out.push(PERIODO_EROGAZIONE_RANGE, at("PeriodoErogazione"), "PeriodoErogazione must be 1-12");
        }
    }

    if let Some(s) = &p.sina {
        for (k, c) in s.necessita_interventi_sociali.iter().enumerate() {
            let n = c.chars().count();
            if !(5..=10).contains(&n) {
                out.push(
                    XSD_LENGTH,
                    format!("{pp}/SINA/NecessitaInterventiSociali/CodicePrestazione[{}]", k + 1),
                    "CodicePrestazione must be 5-10 characters",
                );
            }
        }
    }
}

/// All rules for a whole `SINBA` flow.
pub fn check_sinba(f: &Sinba) -> Vec<RuleViolation> {
    let mut out = Out(Vec::new());
    check_header(&f.identificazione, &mut out);
    if f.records.is_empty() {
        out.push(XSD_CARDINALITY, "SINBA", "at least one SINBA record is required");
    }
    let mut v = out.0;
    for (i, r) in f.records.iter().enumerate() {
        v.extend(check_sinba_record(r, i + 1));
    }
    v
}

/// The rules for one `SINBA` record, `index` 1-based. The SINBA cross-field rules are derived by
/// analogy with PS_PSA_SINA and the XSD's optional attributes: unconfirmed by a published table.
pub fn check_sinba_record(r: &SinbaRecord, index: usize) -> Vec<RuleViolation> {
    let mut out = Out(Vec::new());
    let sp = format!("SINBA[{index}]");
    let at = |name: &str| format!("{sp}/@{name}");
    let d = &r.dati;
    out.len(&sp, "IDBeneficiario", &r.id_beneficiario, 1, 20);
    if is_xsd_codice_fiscale(r.id_beneficiario.trim())
        || r.id_beneficiario.trim().len() == 16 && {
            let u = r.id_beneficiario.trim();
            u.bytes().take(6).all(|b| b.is_ascii_alphabetic())
        }
    {
        out.push(
            SINBA_ID_NOT_CODICE_FISCALE,
            at("IDBeneficiario"),
            "IDBeneficiario looks like a codice fiscale: SINBA is pseudonymous, use sinba_id",
        );
    }
    out.year(&sp, "AnnoNascita", r.anno_nascita);
    out.digits(&sp, "CodiceNazioneResidenza", &r.codice_nazione_residenza, 3);
    if let Some(c) = &r.codice_regione_residenza {
        out.digits(&sp, "CodiceRegioneResidenza", c, 2);
    }
    if r.codice_nazione_residenza == "380" && r.codice_regione_residenza.is_none() {
        out.push(
            SINBA_ITALIA_REQUIRES_REGIONE,
            at("CodiceRegioneResidenza"),
            "residence in Italy (CodiceNazioneResidenza 380) needs CodiceRegioneResidenza",
        );
    }
    for (name, v) in [
        ("CodiceCittadinanzaPadre", &d.codice_cittadinanza_padre),
        ("CodiceCittadinanzaMadre", &d.codice_cittadinanza_madre),
    ] {
        if let Some(v) = v {
            out.digits(&sp, name, v, 3);
        }
    }
    for (name, v) in [
        ("CodiceRegioneResidenzaPadre", &d.codice_regione_residenza_padre),
        ("CodiceRegioneResidenzaMadre", &d.codice_regione_residenza_madre),
    ] {
        if let Some(v) = v {
            out.digits(&sp, name, v, 2);
        }
    }
    if r.prestazioni.is_empty() {
        out.push(XSD_CARDINALITY, format!("{sp}/Prestazioni"), "at least one CodicePrestazione is required");
    }
    for (k, c) in r.prestazioni.iter().enumerate() {
        if !(5..=10).contains(&c.chars().count()) {
            out.push(
                XSD_LENGTH,
                format!("{sp}/Prestazioni/CodicePrestazione[{}]", k + 1),
                "CodicePrestazione must be 5-10 characters",
            );
        }
    }
    if r.famiglia.is_empty() {
        out.push(XSD_CARDINALITY, format!("{sp}/Famiglia"), "at least one ComposizioneFamiglia is required");
    }
    if let Some(n) = d.numero_componenti_isee {
        if !(1..=9).contains(&n) {
            out.push(
                SINBA_NUMERO_COMPONENTI_ISEE_RANGE,
                at("NumeroComponentiISEE"),
                "NumeroComponentiISEE must be 1-9",
            );
        }
    }
    if d.segnalazione_autorita_giudiziaria == SegnalazioneAutoritaGiudiziaria::Si
        && d.data_segnalazione.is_none()
    {
        out.push(
            SINBA_SEGNALAZIONE_REQUIRES_DATA,
            at("DataSegnalazione"),
            "SegnalazioneAutoritaGiudiziaria 1 needs DataSegnalazione",
        );
    }
    if d.provvedimento_giudiziario == ProvvedimentoGiudiziario::Si
        && (d.data_provvedimento_giudiziario.is_none() || d.autorita_provvedimento.is_none())
    {
        out.push(
            SINBA_PROVVEDIMENTO_REQUIRES_DATA_AUTORITA,
            at("ProvvedimentoGiudiziario"),
            "ProvvedimentoGiudiziario 1 needs DataProvvedimentoGiudiziario and AutoritaProvvedimento",
        );
    }
    if d.disabilita == Disabilita::Si && d.tipo_disabilita.is_none() {
        out.push(SINBA_DISABILITA_REQUIRES_TIPO, at("TipoDisabilita"), "Disabilita 1 needs TipoDisabilita");
    }
    out.0
}
