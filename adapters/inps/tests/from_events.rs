//! from_events reports what is missing by JSON pointer.

mod common;

use common::*;
use csi_gateway_inps::*;

#[test]
fn missing_field_names_its_pointer() {
    let persona = contract_data("persona.registrata");
    let mut prestazione = contract_data("prestazione.erogata");
    prestazione.as_object_mut().unwrap().remove("dataInizio");
    let e = from_events(&ente(), &persona, &prestazione, None, TipoOperazione::I).unwrap_err();
    assert_eq!(
        e,
        BuildError::Missing {
            event: "prestazione.erogata",
            pointer: "/data/dataInizio".into(),
            what: "DataInizioPrestazione (carattere 1)"
        }
    );
    assert!(e.to_string().contains("/data/dataInizio"));
}

#[test]
fn unknown_country_is_unmapped_not_guessed() {
    let mut persona = contract_data("persona.registrata");
    persona["cittadinanza"] = "999".into();
    let e = from_events(&ente(), &persona, &contract_data("prestazione.erogata"), None, TipoOperazione::I)
        .unwrap_err();
    assert!(
        matches!(e, BuildError::Unmapped { table: "nazioni-istat-siuss", ref pointer, .. } if pointer == "/data/cittadinanza")
    );
}

#[test]
fn events_of_different_persons_are_refused() {
    let mut persona = contract_data("persona.registrata");
    persona["pseudonimo"] = "ass-00000000".into();
    let e = from_events(&ente(), &persona, &contract_data("prestazione.erogata"), None, TipoOperazione::I)
        .unwrap_err();
    assert_eq!(
        e,
        BuildError::Mismatch {
            event: "prestazione.erogata",
            pointer: "/data/beneficiario/pseudonimo".into()
        }
    );
    // The message carries no personal data.
    assert!(!e.to_string().contains("FRRNNA"));
}

#[test]
fn a_replacement_prestazioni_table_wins() {
    let mut tables = Tables::builtin();
    tables.prestazioni =
        CodiciPrestazione::from_csv("codice;denominazione\nA1.16;Servizio di assistenza domiciliare;4\n")
            .unwrap();
    let f = from_events_with(
        &tables,
        &ente(),
        &contract_data("persona.registrata"),
        &contract_data("prestazione.erogata"),
        None,
        TipoOperazione::I,
    )
    .unwrap();
    let p = &f.beneficiari[0].prestazioni[0];
    assert_eq!(p.denominazione_prestazione, "Servizio di assistenza domiciliare");
    assert_eq!(p.presenza_prova_mezzi, PresenzaProvaMezzi::NessunaProvaMezzi);
}

#[test]
fn fascia_eta_bands() {
    use time::macros::date;
    let at = date!(2025 - 03 - 05);
    assert_eq!(fascia_eta(date!(2025 - 01 - 01), at), Some(FasciaEtaBeneficiario::Da0a3));
    assert_eq!(fascia_eta(date!(2022 - 03 - 05), at), Some(FasciaEtaBeneficiario::Da3a6));
    assert_eq!(fascia_eta(date!(2022 - 03 - 06), at), Some(FasciaEtaBeneficiario::Da0a3));
    assert_eq!(fascia_eta(date!(2007 - 03 - 06), at), Some(FasciaEtaBeneficiario::Da15a18));
    assert_eq!(fascia_eta(date!(2007 - 03 - 05), at), None);
}
