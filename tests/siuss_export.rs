//! `csi-gateway siuss export` end to end: persona and prestazione events published to the real
//! gateway, the real binary's export run beside it on the same store (data directory, or
//! PostgreSQL in cluster mode), the file validated with xmllint against the official XSD, and the
//! summary of what was left out.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

const PERSONA: &str = "it.lombardia.csi.persona.registrata.v1";
const VALUTAZIONE: &str = "it.lombardia.csi.valutazione.registrata.v1";

/// `[inps]` with two enti; B157's prestazioni also go to WaaS (a `siuss` destination).
fn inps_toml() -> String {
    format!(
        r#"
[[destinations]]
name = "inps-siuss"
adapter = "siuss"
max_attempts = 3
backoff_min_ms = 20
backoff_max_ms = 100

[[routes]]
types = ["{PRESTAZIONE}"]
tenants = ["B157"]
to = ["inps-siuss"]

[inps]
codici_prestazione = "{table}"

[[inps.enti]]
belfiore = "F205"
denominazione = "Comune di Milano"
tenant = "F205"
cf_operatore = "RSSMRA80A01F205X"
presenza_prova_mezzi = "1"

[[inps.enti]]
belfiore = "B157"
denominazione = "Comune di Brescia"
tenant = "B157"
cf_operatore = "RSSMRA80A01B157Y"
presenza_prova_mezzi = "4"

[inps.auth]
mode = "pdnd"
issuer = "https://auth.uat.interop.pagopa.it"
audience = "https://comune.test/waas/v1"
purpose_ids = ["purpose-inps-siuss-1"]
jwks_path = "{jwks}"
"#,
        table = repo().join("mappings/inps/codici-prestazione.csv").display(),
        jwks = repo().join("tests/fixtures/waas/jwks.json").display(),
    )
}

/// A codice fiscale with its check character: `RSSMRA8<n>A01F205` + check.
fn codice_fiscale(n: u8) -> String {
    const ODD: [u32; 26] =
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];
    let base = format!("RSSMRA8{n}A01F205");
    let sum: u32 = base
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let v = if b.is_ascii_digit() { u32::from(b - b'0') } else { u32::from(b - b'A') };
            if i % 2 == 0 {
                ODD[v as usize]
            } else {
                v
            }
        })
        .sum();
    format!("{base}{}", char::from(b'A' + (sum % 26) as u8))
}

fn event(event_type: &str, tenant: &str, id: &str, pseudonimo: &str) -> Value {
    let mut ev = example(event_type);
    ev["tenant"] = json!(tenant);
    ev["id"] = json!(id);
    ev["idempotencykey"] = json!(format!("{id}-{}", std::process::id()));
    ev["subject"] = json!(pseudonimo);
    ev
}

fn persona(tenant: &str, pseudonimo: &str, cf: &str) -> Value {
    let mut ev = event(PERSONA, tenant, &format!("persona-{tenant}-{pseudonimo}"), pseudonimo);
    ev["data"]["pseudonimo"] = json!(pseudonimo);
    ev["data"]["codiceFiscale"] = json!(cf);
    ev
}

/// A monthly record (carattere 1) of February 2026, beneficiary `pseudonimo`.
fn prestazione(tenant: &str, id: &str, id_prestazione: &str, pseudonimo: &str) -> Value {
    let mut ev = event(PRESTAZIONE, tenant, id, pseudonimo);
    let d = &mut ev["data"];
    d["idPrestazione"] = json!(id_prestazione);
    d["beneficiario"] = json!({ "pseudonimo": pseudonimo });
    d["dataInizio"] = json!("2026-02-01");
    d["dataFine"] = json!("2026-12-31");
    d["mese"] = json!("2026-02");
    ev
}

/// A one-off prestazione (carattere 2) of 10 March 2026.
fn one_off(tenant: &str, id: &str, id_prestazione: &str, pseudonimo: &str) -> Value {
    let mut ev = prestazione(tenant, id, id_prestazione, pseudonimo);
    let d = ev["data"].as_object_mut().unwrap();
    for k in ["dataInizio", "dataFine", "mese", "ore", "oreServizioMensile", "tipoServizio"] {
        d.remove(k);
    }
    d.insert("carattere".into(), json!("2"));
    d.insert("dataErogazione".into(), json!("2026-03-10"));
    ev
}

fn key(tenant: &str) -> &'static str {
    if tenant == "B157" {
        KEY_B
    } else {
        KEY_A
    }
}

/// Publishes an event; the id the gateway gave it.
async fn publish(gw: &Gateway, ev: &Value) -> String {
    let (status, v) = gw.send(key(ev["tenant"].as_str().unwrap()), ev).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    v["ids"][0].as_str().expect("the event's id").to_string()
}

fn export(gw: &Gateway, ente: &str, from: &str, to: &str, out: &Path) -> Output {
    Command::new(bin())
        .args(["--config", &gw.config_path.display().to_string(), "siuss", "export", "--ente", ente])
        .args(["--from", from, "--to", to, "--out", &out.display().to_string(), "--json"])
        .env("CSI_GATEWAY_LOG", "warn")
        .output()
        .expect("run csi-gateway siuss export")
}

fn summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "summary is not JSON ({e}): stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Validates a file with `xmllint --noout --schema` against the official XSD.
fn xmllint(file: &Path) {
    let base = std::env::var_os("CSI_GATEWAY_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/reference"));
    let xsd = base.join("inps-waas/PS_PSA_SINA201812.xsd");
    assert!(xsd.is_file(), "XSD not found at {} (set CSI_GATEWAY_REFERENCE)", xsd.display());
    let out = match Command::new("xmllint").arg("--noout").arg("--schema").arg(&xsd).arg(file).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("xmllint is not installed: run scripts/test.sh (it installs libxml2-utils)")
        }
        Err(e) => panic!("running xmllint: {e}"),
    };
    assert!(
        out.status.success(),
        "{} breaks the XSD:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn count(xml: &str, pat: &str) -> usize {
    xml.matches(pat).count()
}

/// The `PrestazioniSociali` element whose `ProtocolloDomanda` is `protocollo`.
fn prestazione_el<'a>(xml: &'a str, protocollo: &str) -> &'a str {
    let at = xml.find(&format!("ProtocolloDomanda=\"{protocollo}\"")).expect("prestazione in the file");
    let start = xml[..at].rfind("<PrestazioniSociali").unwrap();
    let end = at + xml[at..].find('>').unwrap();
    &xml[start..=end]
}

fn left_out<'a>(s: &'a Value, rule: &str) -> &'a Value {
    s["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rule"] == rule)
        .unwrap_or_else(|| panic!("no left_out {rule} in {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_groups_beneficiaries_and_reports_what_was_left_out() {
    groups_beneficiaries_and_reports_what_was_left_out("").await;
}

/// The same export in cluster mode: the command line reads the PostgreSQL store of the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_reads_the_postgres_store_in_cluster_mode() {
    let db = PgDb::create().await;
    groups_beneficiaries_and_reports_what_was_left_out(&db.store_config()).await;
}

async fn groups_beneficiaries_and_reports_what_was_left_out(store: &str) {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_with(&rx.url, "", &format!("{}{store}", inps_toml())).await;
    let (cf_a, cf_c, cf_d) = (codice_fiscale(1), codice_fiscale(2), codice_fiscale(3));
    let cf_b = "FRRNNA41C52F205P"; // the example persona's, whose valutazione carries SINA
    let cf_brescia = codice_fiscale(4);

    publish(&gw, &persona("F205", "ben-a", &cf_a)).await;
    publish(&gw, &persona("F205", "ass-3f9c2a71", cf_b)).await;
    publish(&gw, &event(VALUTAZIONE, "F205", "valutazione-b", "ass-3f9c2a71")).await;
    publish(&gw, &persona("F205", "ben-c", &cf_c)).await;
    publish(&gw, &persona("F205", "ben-d", &cf_d)).await;
    publish(&gw, &persona("F205", "ben-f", &cf_a)).await;
    publish(&gw, &persona("B157", "ben-brescia", &cf_brescia)).await;

    // A: three prestazioni, the third corrected (only its latest version goes).
    publish(&gw, &prestazione("F205", "a1", "EXP-A1", "ben-a")).await;
    publish(&gw, &one_off("F205", "a2", "EXP-A2", "ben-a")).await;
    let mut a3 = prestazione("F205", "a3-v1", "EXP-A3", "ben-a");
    a3["data"].as_object_mut().unwrap().remove("idProgetto");
    publish(&gw, &a3).await;
    let mut a3v2 = a3.clone();
    a3v2["id"] = json!("a3-v2");
    a3v2["idempotencykey"] = json!(format!("a3-v2-{}", std::process::id()));
    a3v2["data"]["importo"] = json!("500.00");
    a3v2["data"]["quotaEnte"] = json!("400.55");
    publish(&gw, &a3v2).await;
    // B: one prestazione, with the SINA block of its valutazione.
    publish(&gw, &prestazione("F205", "b1", "EXP-B1", "ass-3f9c2a71")).await;
    // C: one good prestazione, one whose quotas do not add up to the amount.
    publish(&gw, &prestazione("F205", "c1", "EXP-C1", "ben-c")).await;
    let mut bad = one_off("F205", "c2-bad", "EXP-C2", "ben-c");
    bad["data"]["quotaEnte"] = json!("100.00");
    let bad_id = publish(&gw, &bad).await;
    // D: outside the window.
    let mut old = prestazione("F205", "d1", "EXP-D1", "ben-d");
    old["data"]["dataInizio"] = json!("2025-06-01");
    old["data"]["dataFine"] = json!("2025-12-31");
    old["data"]["mese"] = json!("2025-06");
    publish(&gw, &old).await;
    // E: no persona.
    let e1 = publish(&gw, &prestazione("F205", "e1", "EXP-E1", "ben-e")).await;
    // F: annulled after it was sent.
    publish(&gw, &prestazione("F205", "f1", "EXP-F1", "ben-f")).await;
    let mut annul = prestazione("F205", "f1-annul", "EXP-F1", "ben-f");
    annul["data"]["annullata"] = json!(true);
    let annul_id = publish(&gw, &annul).await;
    // Another ente's.
    publish(&gw, &prestazione("B157", "brescia-1", "EXP-BS1", "ben-brescia")).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("F205.xml");
    let out = export(&gw, "F205", "2026-01-01", "2026-12-31", &file);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "written, some left out to correct: {stderr}");
    let s = summary(&out);
    assert!(file.is_file(), "{stderr}");
    assert!(!dir.path().join("F205.xml.partial").exists());
    xmllint(&file);
    let xml = std::fs::read_to_string(&file).unwrap();

    assert_eq!(s["beneficiari"], 3, "{s}");
    assert_eq!(s["prestazioni"], 5, "{s}");
    assert_eq!(count(&xml, "<Beneficiario "), 3);
    assert_eq!(count(&xml, "<PrestazioniSociali "), 5);
    assert_eq!(s["read"], 9, "latest versions of the ente's nine idPrestazione: {s}");
    assert_eq!(s["outside_window"], 1, "{s}");
    for cf in [&cf_a, &cf_c] {
        assert_eq!(count(&xml, &format!("CodiceFiscale=\"{cf}\"")), 1, "one Beneficiario per person");
    }
    assert_eq!(count(&xml, &format!("CodiceFiscale=\"{cf_b}\"")), 1);
    assert_eq!(count(&xml, &format!("CodiceFiscale=\"{cf_d}\"")), 0, "outside the window");
    assert_eq!(count(&xml, &format!("CodiceFiscale=\"{cf_brescia}\"")), 0, "another ente's");
    // Every prestazione of A sits in A's Beneficiario.
    let a_start = xml.find(&format!("CodiceFiscale=\"{cf_a}\"")).unwrap();
    let a_end = a_start + xml[a_start..].find("</Beneficiario>").unwrap();
    assert_eq!(count(&xml[a_start..a_end], "<PrestazioniSociali "), 3);
    // The correction, not the first version; insertions; the SINA block of B.
    let a3 = prestazione_el(&xml, "EXP-A3");
    assert!(a3.contains("ImportoMensile=\"500.00\""), "{a3}");
    assert_eq!(count(&xml, "TipoOperazione=\"I\""), 5);
    assert_eq!(count(&xml, "<SINA "), 1);
    assert_eq!(count(&xml, "DataErogazionePrestazione=\"2026-03-10\""), 1, "A's one-off");

    // The header: the ente and the id_flusso of the per-ente daily progressive.
    let id = s["id_flusso"].as_str().unwrap();
    assert!(xml.contains(&format!("Nome=\"{id}\"")), "{id}");
    let parts: Vec<&str> = id.split('.').collect();
    assert_eq!((parts[0], parts[1], parts[2].len(), parts[3].len()), ("F205", "PS", 8, 7), "{id}");
    assert!(xml.contains("Codice=\"F205\"") && xml.contains("CFOperatore=\"RSSMRA80A01F205X\""));

    // What was left out, and why: rule, count, event ids.
    let quote = left_out(&s, "quote_sum_to_importo");
    assert_eq!((quote["count"].clone(), quote["to_correct"].clone()), (json!(1), json!(true)));
    assert_eq!(quote["event_ids"], json!([bad_id]));
    assert!(quote["example"].as_str().unwrap().contains("PrestazioniSociali"), "{quote}");
    let no_persona = left_out(&s, "persona_non_registrata");
    assert_eq!(no_persona["event_ids"], json!([e1]));
    let annulled = left_out(&s, "annullata");
    assert_eq!(
        (annulled["event_ids"].clone(), annulled["to_correct"].clone()),
        (json!([annul_id]), json!(false))
    );
    assert_eq!(s["left_out"].as_array().unwrap().len(), 3, "{s}");
    assert!(stderr.contains("quote_sum_to_importo") && stderr.contains(&bad_id), "{stderr}");
    // Never a codice fiscale in the summary.
    let printed = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    for cf in [cf_a.as_str(), cf_b, &cf_c, &cf_d, &cf_brescia] {
        assert!(!printed.contains(cf), "a codice fiscale in the summary: {printed}");
    }

    // Another export: the next number of the same progressive.
    let again = export(&gw, "F205", "2026-01-01", "2026-12-31", &dir.path().join("again.xml"));
    let id2 = summary(&again)["id_flusso"].as_str().unwrap().to_string();
    assert_ne!(id2, id);
    let n = |id: &str| id.rsplit('.').next().unwrap().parse::<u32>().unwrap();
    assert_eq!(n(&id2), n(id) + 1, "{id} then {id2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_numbers_after_waas_flussi_and_fails_clearly() {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_with(&rx.url, "", &inps_toml()).await;
    publish(&gw, &persona("B157", "ben-brescia", &codice_fiscale(4))).await;
    let bs1 = publish(&gw, &prestazione("B157", "bs1", "EXP-BS1", "ben-brescia")).await;
    // WaaS offers it first, with progressive 1.
    let deadline = Instant::now() + Duration::from_secs(30);
    let waas_id = loop {
        let (_, v) = gw.get(KEY_B, &format!("/v1/events/{bs1}")).await;
        if let Some(id) = v["siuss"]["flussi"][0]["id_flusso"].as_str() {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "no WaaS flusso in time: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(waas_id.ends_with(".0000001"), "{waas_id}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("B157.xml");
    let out = export(&gw, "B157", "2026-01-01", "2026-12-31", &file);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&out);
    let id = s["id_flusso"].as_str().unwrap();
    assert_eq!(id, waas_id.replace(".0000001", ".0000002"), "the WaaS progressive, never repeated");
    assert_eq!((s["beneficiari"].clone(), s["prestazioni"].clone()), (json!(1), json!(1)));
    assert_eq!(s["left_out"], json!([]));
    xmllint(&file);

    // Nothing in the window: an error, no file.
    let empty = dir.path().join("empty.xml");
    let out = export(&gw, "B157", "2020-01-01", "2020-12-31", &empty);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing to export"), "{stderr}");
    assert!(!empty.exists() && !dir.path().join("empty.xml.partial").exists());
    // An ente that is not configured, a bad date.
    let out = export(&gw, "X999", "2026-01-01", "2026-12-31", &empty);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("X999 is not in [[inps.enti]]"));
    let out = export(&gw, "B157", "2026-13-01", "2026-12-31", &empty);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from"));
}
