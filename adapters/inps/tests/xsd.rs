//! Generated flows validate against the official XSDs (xmllint).

mod common;

use common::*;
use csi_gateway_inps::*;
use time::macros::date;

#[test]
fn periodic_prestazione_with_sina_validates() {
    let f = flusso(periodica());
    assert!(check_waas(&f).is_empty(), "{:?}", check_waas(&f));
    let xml = to_xml(&Flusso::from(f));
    let out = xmllint(PS_XSD, "periodica", &xml);
    assert!(out.contains("validates"), "{out}");
    let s = String::from_utf8(xml).unwrap();
    assert!(s.contains(r#"<Flusso xmlns="http://inps.it/Casellario">"#));
    assert!(s.contains(r#"ImportoMensile="497.25""#));
    assert!(s.contains(r#"OreServizioMensile="22.50""#));
    assert!(s.contains("<InvCiv>6</InvCiv>"));
}

#[test]
fn one_off_prestazione_validates() {
    let f = flusso(occasionale());
    assert!(check_waas(&f).is_empty(), "{:?}", check_waas(&f));
    let xml = to_xml(&f.into());
    xmllint(PS_XSD, "occasionale", &xml);
    let s = String::from_utf8(xml).unwrap();
    assert!(s.contains(r#"ImportoPrestazione="1200.00""#));
    assert!(s.contains(r#"ImportoQuotaUtente="0.00""#));
    assert!(s.contains("morosità"));
}

#[test]
fn cancellation_validates_and_carries_c() {
    let published = flusso(periodica());
    let c =
        cancellation(&published).with_nome(id_flusso("F205", Tipo::Ps, date!(2025 - 03 - 06), 1).unwrap());
    assert!(check_waas(&c).is_empty());
    let xml = to_xml(&c.into());
    xmllint(PS_XSD, "cancellazione", &xml);
    assert!(String::from_utf8(xml).unwrap().contains(r#"TipoOperazione="C""#));
}

#[test]
fn correction_is_cancellation_then_insertion() {
    let published = flusso(periodica());
    let mut p = periodica();
    p.importo_mensile = Some(imp("500.00"));
    p.importo_quota_ente = Some(imp("400.55"));
    let [c, i] = correction(&published, flusso(p));
    assert_eq!(c.beneficiari[0].prestazioni[0].tipo_operazione, Some(TipoOperazione::C));
    assert_eq!(c.beneficiari[0].prestazioni[0].importo_mensile, Some(imp("497.25")));
    assert_eq!(i.beneficiari[0].prestazioni[0].tipo_operazione, Some(TipoOperazione::I));
    assert_eq!(i.beneficiari[0].prestazioni[0].importo_mensile, Some(imp("500.00")));
    for (n, f) in [c, i].into_iter().enumerate() {
        assert!(check_waas(&f).is_empty(), "{:?}", check_waas(&f));
        xmllint(PS_XSD, &format!("correzione-{n}"), &to_xml(&f.into()));
    }
}

#[test]
fn sinba_flusso_validates_and_holds_no_codice_fiscale() {
    let f = Sinba { identificazione: header(Tipo::Sinba, 1), records: vec![sinba_record()] };
    assert!(check_sinba(&f).is_empty(), "{:?}", check_sinba(&f));
    let xml = to_xml(&f.into());
    xmllint(SINBA_XSD, "sinba", &xml);
    let s = String::from_utf8(xml).unwrap();
    assert!(!s.contains("CLMMTT12B15F205O"));
    assert!(s.contains(r#"DataPrimaSegnalazione="01/2025""#));
    assert!(s.contains("F205.SINBA.20250305.0000001"));
}

#[test]
fn streaming_writer_with_three_beneficiaries_validates() {
    let mut w = FlussoWriter::new(Vec::new(), &header(Tipo::Ps, 2)).unwrap();
    let cfs = ["FRRNNA41C52F205P", "LMRYSF90L08Z330P", "RSSMRA80A01F205X"];
    for (k, cf) in cfs.iter().enumerate() {
        let mut b = beneficiario(cf, if k % 2 == 0 { periodica() } else { occasionale() });
        if k == 2 {
            b.prestazioni.push(occasionale());
            b.indirizzi.push(Indirizzo {
                codice_regione: None,
                codice_comune: None,
                codice_nazione: "504".into(),
            });
        }
        assert!(check_beneficiario(&b, k + 1).is_empty(), "{:?}", check_beneficiario(&b, k + 1));
        w.write_beneficiario(&b).unwrap();
    }
    assert_eq!(w.written(), 3);
    let xml = w.finish().unwrap();
    xmllint(PS_XSD, "stream-3", &xml);
    assert_eq!(String::from_utf8(xml).unwrap().matches("<Beneficiario ").count(), 3);
}

#[test]
fn streaming_writer_refuses_an_empty_flusso() {
    let w = FlussoWriter::new(Vec::new(), &header(Tipo::Ps, 3)).unwrap();
    assert!(matches!(w.finish(), Err(WriteError::Empty("Beneficiario"))));
}

#[test]
fn sinba_streaming_writer_validates() {
    let mut w = SinbaWriter::new(Vec::new(), &header(Tipo::Sinba, 2)).unwrap();
    for k in 0..3 {
        let mut r = sinba_record();
        r.id_beneficiario = sinba_id(b"test-secret-F205", &format!("CLMMTT12B15F205{k}"));
        w.write_record(&r).unwrap();
    }
    xmllint(SINBA_XSD, "sinba-stream-3", &w.finish().unwrap());
}

#[test]
fn base64_is_the_xml() {
    use base64::Engine as _;
    let f: Flusso = flusso(occasionale()).into();
    let decoded = base64::engine::general_purpose::STANDARD.decode(to_base64(&f)).unwrap();
    assert_eq!(decoded, to_xml(&f));
}

#[test]
fn from_events_with_contract_examples_validates_and_passes_check() {
    let persona = contract_data("persona.registrata");
    let prestazione = contract_data("prestazione.erogata");
    let valutazione = contract_data("valutazione.registrata");
    let f = from_events(&ente(), &persona, &prestazione, Some(&valutazione), TipoOperazione::I)
        .unwrap()
        .with_nome(id_flusso("F205", Tipo::Ps, date!(2025 - 03 - 05), 7).unwrap());
    assert_eq!(check_waas(&f), vec![]);
    let b = &f.beneficiari[0];
    assert_eq!(b.codice_fiscale, "FRRNNA41C52F205P");
    assert_eq!(b.anagrafica.codice_cittadinanza, "380");
    assert_eq!(b.indirizzi[0].codice_regione.as_deref(), Some("03"));
    let p = &b.prestazioni[0];
    assert_eq!(p.importo_mensile, Some(imp("497.25")));
    assert_eq!(p.periodo_erogazione, Some(1));
    assert_eq!(p.presa_carico, PresaCarico::Si);
    assert!(p.sina.is_some());
    let xml = to_xml(&f.into());
    xmllint(PS_XSD, "from-events", &xml);

    // Without the valutazione: no SINA block, still valid.
    let f = from_events(&ente(), &persona, &prestazione, None, TipoOperazione::C).unwrap();
    assert!(check_waas(&f).is_empty());
    xmllint(PS_XSD, "from-events-c", &to_xml(&f.into()));
}

#[test]
fn from_events_one_off_schema_example_validates() {
    // The second examples of the event schemas: a foreign national, one-off contribution.
    let read = |ty: &str| -> serde_json::Value {
        let p = format!(
            "{}/../../contracts/events/it.lombardia.csi.{ty}.v1.schema.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(p).unwrap()).unwrap()["examples"]
            [1]
        .clone()
    };
    let f = from_events(
        &ente(),
        &read("persona.registrata"),
        &read("prestazione.erogata"),
        None,
        TipoOperazione::I,
    )
    .unwrap();
    assert!(check_waas(&f).is_empty(), "{:?}", check_waas(&f));
    assert_eq!(f.beneficiari[0].anagrafica.codice_cittadinanza, "504");
    xmllint(PS_XSD, "from-events-occasionale", &to_xml(&f.into()));
}

#[test]
fn sinba_from_events_validates() {
    let nucleo = contract_data("nucleo.aggiornato");
    let persona = serde_json::json!({
        "pseudonimo": "ass-5d7a1b68", "codiceFiscale": "CLMMTT12B15F205O", "cognome": "Colombo",
        "nome": "Matteo", "dataNascita": "2012-02-15", "luogoNascita": "F205", "genere": "1",
        "cittadinanza": "100", "residenza": {"comune": "015146", "nazione": "100"}
    });
    let prest =
        serde_json::json!({"beneficiario": {"pseudonimo": "ass-5d7a1b68"}, "codicePrestazione": "A1.02.01"});
    let prestazioni = [&prest, &prest];
    let ev = SinbaEvents {
        persona: &persona,
        prestazioni: &prestazioni,
        nucleo: Some(&nucleo),
        famiglia: vec![],
        riferimento: date!(2025 - 03 - 05),
    };
    let mut f = sinba_from_events(&ente(), b"test-secret-F205", &ev, sinba_record().dati).unwrap();
    f.identificazione.nome = id_flusso("F205", Tipo::Sinba, date!(2025 - 03 - 05), 1).unwrap();
    let r = &f.records[0];
    assert_eq!(r.id_beneficiario, sinba_id(b"test-secret-F205", "CLMMTT12B15F205O"));
    assert_eq!(r.fascia_eta_beneficiario, FasciaEtaBeneficiario::Da12a15);
    assert_eq!(r.prestazioni, vec!["A1.02.01".to_string()]);
    assert_eq!(r.famiglia, vec![ComposizioneFamiglia::Padre, ComposizioneFamiglia::Madre]);
    assert!(check_sinba(&f).is_empty(), "{:?}", check_sinba(&f));
    let xml = to_xml(&f.into());
    xmllint(SINBA_XSD, "sinba-from-events", &xml);
    let s = String::from_utf8(xml).unwrap();
    for cf in ["CLMMTT12B15F205O", "CLMLCU80H04B157I", "SPSCHR83S63A794B"] {
        assert!(!s.contains(cf));
    }
}

/// The OpenAPI gives the structure `EEEEE.TIPO.AAAAMMGG.NNNNNNN` in words, not as a `pattern`;
/// this is that structure with the Belfiore `codice_ente` pattern `^[A-Z][0-9]{3}$`.
fn matches_id_flusso(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    parts.len() == 4
        && parts[0].len() == 4
        && parts[0].as_bytes()[0].is_ascii_uppercase()
        && digits(&parts[0][1..], 3)
        && (parts[1] == "PS" || parts[1] == "SINBA")
        && digits(parts[2], 8)
        && digits(parts[3], 7)
        && s.len() <= 64
}

#[test]
fn id_flusso_follows_the_openapi_format() {
    let yaml = std::fs::read_to_string(xsd_dir().join("api-comuni.yaml")).unwrap();
    assert!(yaml.contains("'EEEEE.TIPO.AAAAMMGG.NNNNNNN'"));
    assert!(yaml.contains("pattern: '^[A-Z][0-9]{3}$'"));
    assert!(yaml.contains(r#"example: "H501.PS.20160423.0000001""#));
    assert!(yaml.contains("maxLength: 64"));
    assert!(matches_id_flusso("H501.PS.20160423.0000001"));
    let id = id_flusso("H501", Tipo::Ps, date!(2016 - 04 - 23), 1).unwrap();
    assert_eq!(id, "H501.PS.20160423.0000001");
    for (tipo, n) in [(Tipo::Ps, 42), (Tipo::Sinba, 9_999_999)] {
        let id = id_flusso("F205", tipo, date!(2025 - 03 - 05), n).unwrap();
        assert!(matches_id_flusso(&id), "{id}");
    }
    assert!(id_flusso("F2055", Tipo::Ps, date!(2025 - 03 - 05), 1).is_err());
}
