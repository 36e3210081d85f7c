//! Every rule: a flusso that breaks it is reported with the rule's name; the valid ones are not.

mod common;

use common::*;
use csi_gateway_inps::*;
use time::macros::date;

fn rules_of(v: &[RuleViolation]) -> Vec<&'static str> {
    v.iter().map(|v| v.rule).collect()
}

/// Applies `edit` to a valid flusso built from `base()`, and expects exactly `rule` to be reported.
macro_rules! violation {
    ($name:ident, $base:expr, $rule:literal, $path:literal, |$p:ident| $edit:expr) => {
        #[test]
        fn $name() {
            let mut f = flusso($base);
            assert!(check(&f).is_empty(), "the base is valid: {:?}", check(&f));
            {
                let $p = &mut f.beneficiari[0].prestazioni[0];
                $edit;
            }
            let v = check(&f);
            assert_eq!(rules_of(&v), vec![$rule], "{v:?}");
            assert_eq!(v[0].path, $path);
            assert!(!v[0].message.is_empty());
        }
    };
}

violation!(
    carattere1_without_data_inizio,
    periodica(),
    "carattere1_requires_data_inizio",
    "Beneficiario[1]/PrestazioniSociali[1]/@DataInizioPrestazione",
    |p| p.data_inizio_prestazione = None
);
violation!(
    carattere1_without_importo_mensile,
    periodica(),
    "carattere1_requires_importo_mensile",
    "Beneficiario[1]/PrestazioniSociali[1]/@ImportoMensile",
    |p| {
        p.importo_mensile = None;
        p.importo_quota_ente = None;
        p.importo_quota_utente = None;
    }
);
violation!(
    carattere2_without_data_erogazione,
    occasionale(),
    "carattere2_requires_data_erogazione",
    "Beneficiario[1]/PrestazioniSociali[1]/@DataErogazionePrestazione",
    |p| p.data_erogazione_prestazione = None
);
violation!(
    carattere2_without_importo_prestazione,
    occasionale(),
    "carattere2_requires_importo_prestazione",
    "Beneficiario[1]/PrestazioniSociali[1]/@ImportoPrestazione",
    |p| {
        p.importo_prestazione = None;
        p.importo_quota_ente = None;
        p.importo_quota_utente = None;
    }
);
violation!(
    presa_carico_without_area_utenza,
    periodica(),
    "presa_carico1_requires_area_utenza",
    "Beneficiario[1]/PrestazioniSociali[1]/@AreaUtenza",
    |p| p.area_utenza = None
);
violation!(dsu_partial, periodica(), "dsu_all_or_none", "Beneficiario[1]/PrestazioniSociali[1]", |p| p
    .data_dsu =
    None);
violation!(
    quote_not_adding_up,
    periodica(),
    "quote_sum_to_importo",
    "Beneficiario[1]/PrestazioniSociali[1]",
    |p| p.importo_quota_ssn = Some(imp("0.01"))
);
violation!(
    quote_not_adding_up_one_off,
    occasionale(),
    "quote_sum_to_importo",
    "Beneficiario[1]/PrestazioniSociali[1]",
    |p| p.importo_quota_ente = Some(imp("1199.99"))
);
violation!(
    data_fine_other_year,
    periodica(),
    "data_fine_same_year_as_data_inizio",
    "Beneficiario[1]/PrestazioniSociali[1]/@DataFinePrestazione",
    |p| p.data_fine_prestazione = Some(date!(2026 - 01 - 31))
);
violation!(
    data_fine_before_inizio,
    periodica(),
    "data_fine_not_before_data_inizio",
    "Beneficiario[1]/PrestazioniSociali[1]/@DataFinePrestazione",
    |p| p.data_fine_prestazione = Some(date!(2025 - 01 - 31))
);
violation!(
    importo_zero,
    occasionale(),
    "importo_positive",
    "Beneficiario[1]/PrestazioniSociali[1]/@ImportoPrestazione",
    |p| {
        p.importo_prestazione = Some(imp("0.00"));
        p.importo_quota_ente = Some(imp("0.00"));
    }
);
violation!(
    importo_mensile_negative,
    periodica(),
    "importo_positive",
    "Beneficiario[1]/PrestazioniSociali[1]/@ImportoMensile",
    |p| {
        p.importo_mensile = Some(imp("-1.00"));
        p.importo_quota_ente = None;
        p.importo_quota_utente = None;
    }
);
violation!(
    quota_utente_negative,
    occasionale(),
    "quota_non_negative",
    "Beneficiario[1]/PrestazioniSociali[1]/@ImportoQuotaUtente",
    |p| {
        p.importo_quota_utente = Some(imp("-10.00"));
        p.importo_quota_ente = Some(imp("1210.00"));
    }
);
violation!(
    periodo_erogazione_zero,
    periodica(),
    "periodo_erogazione_range",
    "Beneficiario[1]/PrestazioniSociali[1]/@PeriodoErogazione",
    |p| p.periodo_erogazione = Some(0)
);
violation!(
    periodo_erogazione_thirteen,
    periodica(),
    "periodo_erogazione_range",
    "Beneficiario[1]/PrestazioniSociali[1]/@PeriodoErogazione",
    |p| p.periodo_erogazione = Some(13)
);
violation!(
    denominazione_too_short,
    occasionale(),
    "xsd_length",
    "Beneficiario[1]/PrestazioniSociali[1]/@DenominazionePrestazione",
    |p| p.denominazione_prestazione = "Contributo".chars().take(9).collect()
);
violation!(
    codice_prestazione_too_short,
    occasionale(),
    "xsd_length",
    "Beneficiario[1]/PrestazioniSociali[1]/@CodicePrestazione",
    |p| p.codice_prestazione = "A1.5".into()
);
violation!(
    protocollo_domanda_too_long,
    occasionale(),
    "xsd_length",
    "Beneficiario[1]/PrestazioniSociali[1]/@ProtocolloDomanda",
    |p| p.protocollo_domanda = "X".repeat(33)
);

#[test]
fn quote_adding_up_with_ssn_pass() {
    let mut p = periodica();
    p.importo_quota_ente = Some(imp("300.00"));
    p.importo_quota_ssn = Some(imp("97.80"));
    assert!(check(&flusso(p)).is_empty());
}

#[test]
fn valid_flussi_have_no_violations() {
    assert_eq!(check_waas(&flusso(periodica())), vec![]);
    assert_eq!(check_waas(&flusso(occasionale())), vec![]);
    let s = Sinba { identificazione: header(Tipo::Sinba, 1), records: vec![sinba_record()] };
    assert_eq!(check_sinba(&s), vec![]);
}

#[test]
fn italian_address_without_regione_or_comune() {
    let mut f = flusso(occasionale());
    f.beneficiari[0].indirizzi[0].codice_regione = None;
    let v = check(&f);
    assert_eq!(rules_of(&v), vec!["indirizzo_italia_requires_regione_comune"]);
    assert_eq!(v[0].path, "Beneficiario[1]/Indirizzo[1]");
    f.beneficiari[0].indirizzi[0] =
        Indirizzo { codice_regione: None, codice_comune: None, codice_nazione: "504".into() };
    assert!(check(&f).is_empty());
}

#[test]
fn xsd_facets_outside_the_types() {
    let mut f = flusso(occasionale());
    f.beneficiari[0].codice_fiscale = "FRRNNA41C52F205".into();
    f.beneficiari[0].anagrafica.cognome = "X".repeat(37);
    f.beneficiari[0].anagrafica.codice_cittadinanza = "38".into();
    f.beneficiari[0].indirizzi.clear();
    f.identificazione.nome = "N".repeat(51);
    let v = check(&f);
    let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "IdentificazioneFlusso/@Nome",
            "Beneficiario[1]/@CodiceFiscale",
            "Beneficiario[1]/Anagrafica/@Cognome",
            "Beneficiario[1]/Anagrafica/@CodiceCittadinanza",
            "Beneficiario[1]/Indirizzo",
        ],
        "{v:?}"
    );
    assert_eq!(
        rules_of(&v),
        vec!["xsd_length", "xsd_pattern", "xsd_length", "xsd_pattern", "xsd_cardinality"]
    );
    // No personal value in any message.
    assert!(v.iter().all(|v| !v.message.contains("FRRNNA")));
}

#[test]
fn partita_iva_is_a_valid_cf_operatore() {
    let mut f = flusso(occasionale());
    f.identificazione.ente.cf_operatore = "01199250158".into();
    assert!(check(&f).is_empty());
}

#[test]
fn waas_needs_exactly_one_beneficiario_and_prestazione() {
    let mut f = flusso(occasionale());
    f.beneficiari[0].prestazioni.push(occasionale());
    assert!(check(&f).is_empty());
    assert_eq!(rules_of(&check_waas(&f)), vec!["waas_one_beneficiario_one_prestazione"]);
}

macro_rules! sinba_violation {
    ($name:ident, $rule:literal, |$r:ident| $edit:expr) => {
        #[test]
        fn $name() {
            let mut $r = sinba_record();
            $edit;
            assert_eq!(rules_of(&check_sinba_record(&$r, 1)), vec![$rule]);
        }
    };
}

sinba_violation!(sinba_id_is_a_codice_fiscale, "sinba_id_not_codice_fiscale", |r| r.id_beneficiario =
    "CLMMTT12B15F205O".into());
sinba_violation!(sinba_id_too_long, "xsd_length", |r| r.id_beneficiario = "A".repeat(21));
sinba_violation!(sinba_segnalazione_without_data, "sinba_segnalazione_requires_data", |r| r
    .dati
    .data_segnalazione =
    None);
sinba_violation!(sinba_provvedimento_without_autorita, "sinba_provvedimento_requires_data_autorita", |r| r
    .dati
    .autorita_provvedimento =
    None);
sinba_violation!(sinba_disabilita_without_tipo, "sinba_disabilita_requires_tipo", |r| r.dati.disabilita =
    Disabilita::Si);
sinba_violation!(sinba_italy_without_regione, "sinba_italia_requires_regione", |r| r
    .codice_regione_residenza =
    None);
sinba_violation!(sinba_numero_componenti_isee_ten, "sinba_numero_componenti_isee_range", |r| r
    .dati
    .numero_componenti_isee =
    Some(10));
sinba_violation!(sinba_without_famiglia, "xsd_cardinality", |r| r.famiglia.clear());
sinba_violation!(sinba_without_prestazioni, "xsd_cardinality", |r| r.prestazioni.clear());
