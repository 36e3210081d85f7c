//! Shared fixtures and the xmllint validator.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use csi_gateway_inps::*;
use time::macros::date;

/// `$CSI_GATEWAY_REFERENCE/inps-waas`, default `<manifest>/../../../shared/reference/inps-waas`.
pub fn xsd_dir() -> PathBuf {
    let base = std::env::var_os("CSI_GATEWAY_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference"));
    base.join("inps-waas")
}

pub const PS_XSD: &str = "PS_PSA_SINA201812.xsd";
pub const SINBA_XSD: &str = "SINBA.xsd";

static N: AtomicUsize = AtomicUsize::new(0);

/// Validates `xml` with `xmllint --noout --schema`; panics with xmllint's output when invalid,
/// and asks to install libxml2-utils when xmllint is missing. Returns xmllint's stderr.
pub fn xmllint(xsd: &str, name: &str, xml: &[u8]) -> String {
    let schema = xsd_dir().join(xsd);
    assert!(schema.is_file(), "XSD not found at {} (set CSI_GATEWAY_REFERENCE)", schema.display());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("inps-xml");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}-{}-{name}.xml", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&file, xml).unwrap();
    let out = match Command::new("xmllint").arg("--noout").arg("--schema").arg(&schema).arg(&file).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("xmllint is not installed: install libxml2-utils (apt-get install -y libxml2-utils) to run the XSD tests")
        }
        Err(e) => panic!("running xmllint failed: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{name} does not validate against {xsd}:\n{stderr}\n---\n{}",
        String::from_utf8_lossy(xml)
    );
    stderr
}

pub fn ente() -> EnteInfo {
    EnteInfo {
        codice: "F205".into(),
        denominazione: Some("Comune di Milano".into()),
        belfiore: "F205".into(),
        cf_operatore: "RSSMRA80A01F205X".into(),
        presenza_prova_mezzi: PresenzaProvaMezzi::Isee,
    }
}

pub fn header(tipo: Tipo, n: u32) -> IdentificazioneFlusso {
    ente().header(id_flusso("F205", tipo, date!(2025 - 03 - 05), n).unwrap())
}

pub fn beneficiario(cf: &str, p: PrestazioniSociali) -> Beneficiario {
    Beneficiario {
        codice_fiscale: cf.into(),
        anagrafica: Anagrafica {
            cognome: "Ferrari".into(),
            nome: "Anna".into(),
            anno_nascita: 1941,
            luogo_nascita: "F205".into(),
            genere: Genere::Femmina,
            codice_cittadinanza: "380".into(),
            codice_seconda_cittadinanza: None,
        },
        indirizzi: vec![Indirizzo {
            codice_regione: Some("03".into()),
            codice_comune: Some("015146".into()),
            codice_nazione: "380".into(),
        }],
        prestazioni: vec![p],
    }
}

pub fn imp(s: &str) -> Importo {
    s.parse().unwrap()
}

/// Carattere 1, SAD, with a SINA block.
pub fn periodica() -> PrestazioniSociali {
    let mut p = PrestazioniSociali::new(
        PresenzaProvaMezzi::Isee,
        "A1.16",
        "Assistenza domiciliare anziani - igiene personale",
        "PRG-2025-000087",
        PresaCarico::Si,
    );
    p.tipo_operazione = Some(TipoOperazione::I);
    p.carattere_prestazione = Some(CaratterePrestazione::Periodico);
    p.numero_protocollo_dsu = Some("INPS-ISEE-2025-00001234567-00".into());
    p.anno_protocollo_dsu = Some(2025);
    p.data_dsu = Some(date!(2025 - 01 - 15));
    p.data_inizio_prestazione = Some(date!(2025 - 02 - 01));
    p.data_fine_prestazione = Some(date!(2025 - 12 - 31));
    p.periodo_erogazione = Some(11);
    p.importo_mensile = Some(imp("497.25"));
    p.importo_quota_ente = Some(imp("397.80"));
    p.importo_quota_utente = Some(imp("99.45"));
    p.importo_soglia_isee = Some(imp("17000.00"));
    p.ore_servizio_mensile = Some("22.5".parse().unwrap());
    p.area_utenza = Some(AreaUtenza::DisabilitaNonAutosufficienza);
    p.sina = Some(Sina {
        necessita_interventi_sociali: vec!["A1.16".into(), "A2.17".into()],
        invalidita_civile: vec![InvCiv::Parziale75, InvCiv::L104Art3Comma3],
        mobilita: Mobilita::SiSpostaAssistito,
        attivita_vita_quotidiana: AttivitaVitaQuotidiana::ParzialmenteDipendente,
        disturbi_area_cognitiva: Some(DisturbiAreaCognitiva::Lievi),
        disturbi_comportamentali: DisturbiComportamentali::Assenti,
        necessita_cure_sanitarie: Some(NecessitaCureSanitarie::Media),
        area_reddituale: AreaReddituale::RiceveAiutoParentiAltre,
        area_supporto: AreaSupporto::PresenzaParzialeTemporaneaRete,
        fonte_derivazione_valutazione: FonteDerivazioneValutazione::CartellaSociale,
        strumento_valutazione: StrumentoValutazione::Svama,
        fonte_derivazione_invalidita: Some(FonteDerivazioneInvalidita::CertificazioneVerificata),
    });
    p
}

/// Carattere 2, one-off contribution, no SINA, no presa in carico.
pub fn occasionale() -> PrestazioniSociali {
    let mut p = PrestazioniSociali::new(
        PresenzaProvaMezzi::NessunaProvaMezzi,
        "A1.05.01",
        "Contributo economico una tantum per morosità incolpevole",
        "EROG-2025-01-000142",
        PresaCarico::No,
    );
    p.tipo_operazione = Some(TipoOperazione::I);
    p.carattere_prestazione = Some(CaratterePrestazione::Occasionale);
    p.data_erogazione_prestazione = Some(date!(2025 - 02 - 10));
    p.importo_prestazione = Some(imp("1200.00"));
    p.importo_quota_ente = Some(imp("1200.00"));
    p.importo_quota_utente = Some(imp("0.00"));
    p
}

pub fn flusso(p: PrestazioniSociali) -> PsPsaSina {
    PsPsaSina { identificazione: header(Tipo::Ps, 1), beneficiari: vec![beneficiario("FRRNNA41C52F205P", p)] }
}

pub fn sinba_record() -> SinbaRecord {
    let mut dati = DatiSinba::new(
        MinoreStranieroNoAcc::No,
        CondizioneMinore::NonOrfano,
        LuogoVita::NellaSuaFamiglia,
        ScuolaFrequentata::ScuolaSecondariaIGrado,
        CondizioneLavoro::Inattivo,
        Disabilita::No,
        MeseAnno::new(2025, 1).unwrap(),
        FonteSegnalazione::AutoritaGiudiziarieMinorili,
        ValutazioneMinore::ProblemiRelazionaliComportamentali,
        ValutazioneFamigliaMinore::GraveConflittualitaFamiliare,
        SegnalazioneAutoritaGiudiziaria::Si,
        ProvvedimentoGiudiziario::Si,
    );
    dati.data_segnalazione = Some(MeseAnno::new(2025, 1).unwrap());
    dati.data_provvedimento_giudiziario = Some(MeseAnno::new(2025, 1).unwrap());
    dati.autorita_provvedimento = Some(AutoritaProvvedimento::TribunaleMinori);
    dati.tipo_provvedimento_giudiziario = Some(TipoProvvedimentoGiudiziario::AffidoServizioSociale);
    dati.codice_cittadinanza_padre = Some("380".into());
    dati.numero_componenti_isee = Some(3);
    dati.fascia_isee_beneficiario = Some(FasciaISEEBeneficiario::Fino12000);
    SinbaRecord {
        prestazioni: vec!["A1.02.01".into()],
        famiglia: vec![ComposizioneFamiglia::Madre, ComposizioneFamiglia::Padre],
        id_beneficiario: sinba_id(b"test-secret-F205", "CLMMTT12B15F205O"),
        fascia_eta_beneficiario: FasciaEtaBeneficiario::Da12a15,
        anno_nascita: 2012,
        codice_regione_residenza: Some("03".into()),
        codice_nazione_residenza: "380".into(),
        dati,
    }
}

pub fn contract_data(ty: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../contracts/examples/it.lombardia.csi.{ty}.v1.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["data"].clone()
}
