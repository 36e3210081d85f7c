//! End-to-end: cooperatives push delivered hours through `/v1/adapters/coop/...` of the real
//! binary; progetti come from `progetto.approvato` events; `prestazione` events reach a loopback
//! receiver.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const PROGETTO: &str = "it.lombardia.csi.progetto.approvato.v1";
const KEY_AURORA: &str = "key-coop-aurora";
const KEY_SERENA: &str = "key-coop-serena";
const CSV: &str = "text/csv";
const JSON: &str = "application/json";
const HEADER: &str = "ID;Data;Dalle;Alle;Operatore;CF Utente;Ore;Servizio;Km;Note";
/// `coop.max_upload_bytes` of the test gateways.
const MAX_UPLOAD: usize = 256 * 1024;

/// Two cooperatives' clients (publisher only, like the README says) and the adapter's policy:
/// flag in F205 (the default), reject in B157.
fn coop_config() -> String {
    format!(
        r#"
[[clients]]
name = "coop-aurora"
api_key_sha256 = "{aurora}"
tenants = ["F205", "B157"]
roles = ["publisher"]
cooperativa = "AURORA"

[[clients]]
name = "coop-serena"
api_key_sha256 = "{serena}"
tenants = ["F205"]
roles = ["publisher"]
cooperativa = "SERENA"

[coop]
mappings_dir = "{mappings}"
on_violation = "flag"
max_upload_bytes = {MAX_UPLOAD}

[coop.tenants.B157]
on_violation = "reject"
"#,
        aurora = key_sha256(KEY_AURORA),
        serena = key_sha256(KEY_SERENA),
        mappings = repo().join("mappings/coop").display(),
    )
}

async fn start() -> (Receiver, Gateway) {
    start_on("").await
}

/// A gateway with the adapter, and `store` appended to its configuration (cluster mode's sections).
async fn start_on(store: &str) -> (Receiver, Gateway) {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_with(&rx.url, "", &format!("{}{store}", coop_config())).await;
    (rx, gw)
}

/// One authorized service of a progetto.
struct Intervento {
    servizio: &'static str,
    cooperativa: &'static str,
    ore_mensili: &'static str,
    tariffa: &'static str,
    quota_ente: &'static str,
    quota_utente: &'static str,
}

fn intervento(servizio: &'static str, cooperativa: &'static str, ore_mensili: &'static str) -> Intervento {
    // SAD at the example's tariff and co-payment (20 %), the other services at 24.00 (25 %).
    let (tariffa, quota_ente, quota_utente) =
        if servizio == "SAD" { ("22.10", "424.32", "106.08") } else { ("24.00", "720.00", "240.00") };
    Intervento { servizio, cooperativa, ore_mensili, tariffa, quota_ente, quota_utente }
}

/// A progetto of the sample beneficiaries.
struct Progetto {
    id: &'static str,
    pseudonimo: &'static str,
    cf: Option<&'static str>,
    interventi: Vec<Intervento>,
}

/// Progetti of the sample CSV's beneficiaries (cooperative AURORA, March 2026, found by codice
/// fiscale) and of the sample JSON's (cooperative SERENA, April 2026, named by id). Two
/// beneficiaries have one progetto with each cooperative.
fn sample_progetti() -> Vec<Progetto> {
    let p = |id, pseudonimo, cf, interventi| Progetto { id, pseudonimo, cf, interventi };
    vec![
        p("PRG-AUR-01", "ben-rssm", Some("RSSMRA85T10A562S"), vec![intervento("SADH", "AURORA", "40")]),
        p("PRG-AUR-02", "ben-frrn", Some("FRRNNA41C52F205P"), vec![intervento("SAD", "AURORA", "40")]),
        p("PRG-AUR-03", "ben-vrdl", Some("VRDLCU45D55F205C"), vec![intervento("SAD", "AURORA", "40")]),
        p("PRG-AUR-04", "ben-rmnl", Some("RMNLSS90P01F205Y"), vec![intervento("ADH", "AURORA", "40")]),
        p("PRG-AUR-05", "ben-mrng", Some("MRNGLI40E48F704P"), vec![intervento("SAD", "AURORA", "40")]),
        p("PRG-AUR-06", "ben-cstl", Some("CSTLRA12S49F205O"), vec![intervento("AES", "AURORA", "40")]),
        p("PRG-AUR-07", "ben-pllf", Some("PLLFNC10B18B157K"), vec![intervento("ADM", "AURORA", "40")]),
        p("PRG-AUR-08", "ben-bncg", Some("BNCGPP38A01F205D"), vec![intervento("SAD", "AURORA", "40")]),
        p("PRG-2026-0012", "ben-glln", Some("GLLNTN36M20D969Z"), vec![intervento("SAD", "SERENA", "40")]),
        p(
            "PRG-2026-0063",
            "BEN-8F3A21",
            None,
            vec![intervento("SAD", "SERENA", "40"), intervento("SADH", "SERENA", "20")],
        ),
        p("PRG-2026-0031", "ben-dlcm", Some("DLCMTT08R22F704T"), vec![intervento("ADM", "SERENA", "40")]),
        p("PRG-2026-0044", "ben-pllf", Some("PLLFNC10B18B157K"), vec![intervento("AES", "SERENA", "40")]),
        p("PRG-2026-0057", "ben-rmnl", Some("RMNLSS90P01F205Y"), vec![intervento("ADH", "SERENA", "40")]),
    ]
}

/// The `progetto.approvato` event of `p` in `tenant`, valid until the end of 2026.
fn progetto_event(tenant: &str, p: &Progetto) -> Value {
    let mut ev = example(PROGETTO);
    ev["id"] = json!(format!("approvazione-{}", p.id));
    ev["idempotencykey"] = json!(format!("progetto-{tenant}-{}", p.id));
    ev["tenant"] = json!(tenant);
    ev["subject"] = json!(p.pseudonimo);
    let data = &mut ev["data"];
    data["idProgetto"] = json!(p.id);
    data["beneficiario"] = json!({ "pseudonimo": p.pseudonimo });
    if let Some(cf) = p.cf {
        data["beneficiario"]["codiceFiscale"] = json!(cf);
    }
    // SERENA's progetti started later: for a beneficiary of both, they are the most recent.
    let dal =
        if p.interventi.iter().any(|i| i.cooperativa == "SERENA") { "2026-02-01" } else { "2026-01-01" };
    data["periodo"] = json!({ "dal": dal, "al": "2026-12-31" });
    data["interventi"] = p
        .interventi
        .iter()
        .enumerate()
        .map(|(n, i)| {
            json!({
                "idIntervento": format!("{}-{}", p.id, n + 1),
                "codicePrestazione": "A1.16",
                "tipoServizio": i.servizio,
                "denominazione": format!("Assistenza domiciliare {}", i.servizio),
                "oreAutorizzateMensili": i.ore_mensili,
                "tariffaOraria": i.tariffa,
                "quotaEnte": i.quota_ente,
                "quotaUtente": i.quota_utente,
                "cooperativa": i.cooperativa,
            })
        })
        .collect();
    ev
}

/// Publishes progetti as the comune's vendor of `tenant`.
async fn publish(gw: &Gateway, key: &str, tenant: &str, progetti: &[Progetto]) {
    for p in progetti {
        let (status, v) = gw.send(key, &progetto_event(tenant, p)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "progetto {}: {v}", p.id);
    }
}

/// Uploads a file through the adapter's endpoint.
async fn upload(
    gw: &Gateway,
    key: &str,
    mapping: &str,
    tenant: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let path = format!("/v1/adapters/coop/erogazioni?mapping={mapping}&tenant={tenant}");
    gw.post_body(key, &path, content_type, body).await
}

/// Uploads and expects a report.
async fn report(
    gw: &Gateway,
    key: &str,
    mapping: &str,
    tenant: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> Value {
    let (status, v) = upload(gw, key, mapping, tenant, content_type, body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

fn sample(name: &str) -> Vec<u8> {
    let path = repo().join("mappings/coop/samples").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The report rows of one status.
fn rows_with<'a>(report: &'a Value, status: &str) -> Vec<&'a Value> {
    report["rows"].as_array().expect("rows").iter().filter(|r| r["status"] == status).collect()
}

/// The report row of file row `n`.
fn row(report: &Value, n: u64) -> &Value {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["row"] == n)
        .unwrap_or_else(|| panic!("no row {n} in {report}"))
}

/// Asserts that row `n` was rejected for `rule`, naming `column`.
fn assert_rejected(report: &Value, n: u64, column: Option<&str>, rule: &str) {
    let r = row(report, n);
    assert_eq!(r["status"], "rejected", "row {n}: {r}");
    let errors = r["errors"].as_array().expect("errors");
    let e = errors
        .iter()
        .find(|e| e["rule"] == rule)
        .unwrap_or_else(|| panic!("row {n} is not rejected for {rule}: {r}"));
    assert_eq!(e["column"].as_str(), column, "row {n}, rule {rule}: {e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "row {n} says why: {e}");
    assert!(r.get("id").is_none(), "a rejected row has no event: {r}");
}

/// One line of an Excel-style sheet (mapping `coop-excel-csv`).
struct Line {
    id: &'static str,
    data: String,
    dalle: &'static str,
    alle: &'static str,
    op: &'static str,
    cf: &'static str,
    servizio: &'static str,
}

fn line(
    id: &'static str,
    data: &str,
    dalle: &'static str,
    alle: &'static str,
    op: &'static str,
    cf: &'static str,
    servizio: &'static str,
) -> Line {
    Line { id, data: data.to_string(), dalle, alle, op, cf, servizio }
}

/// An Excel-style sheet (`;`, decimal commas, `hh.mm`, CRLF) of `lines`.
fn sheet(lines: &[Line]) -> String {
    let mut out = format!("{HEADER}\r\n");
    for l in lines {
        out.push_str(&format!(
            "{};{};{};{};{};{};;{};3,5;\r\n",
            l.id, l.data, l.dalle, l.alle, l.op, l.cf, l.servizio
        ));
    }
    out
}

/// Minutes from `hh.mm` to `hh.mm`.
fn minutes(from: &str, to: &str) -> i64 {
    let m = |t: &str| {
        let (h, m) = t.split_once('.').expect("hh.mm");
        h.parse::<i64>().expect("hours") * 60 + m.parse::<i64>().expect("minutes")
    };
    m(to) - m(from)
}

/// A decimal string with 2 decimals as hundredths.
fn cents(s: &str) -> i64 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    int.parse::<i64>().expect("integer part") * 100 + format!("{frac:0<2}").parse::<i64>().expect("decimals")
}

/// `n / d` rounded half up (non-negative).
fn round_div(n: i64, d: i64) -> i64 {
    (2 * n + d) / (2 * d)
}

/// Hundredths as `12,34` (the liquidazione CSV's decimal comma).
fn comma(h: i64) -> String {
    format!("{},{:02}", h / 100, h % 100)
}

/// Records of the audit log with `action`, read by the auditor.
async fn audit(gw: &Gateway, action: &str) -> Vec<Value> {
    let (status, v) = gw.get(KEY_AUDITOR, &format!("/v1/audit?action={action}&limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v.as_array().expect("audit records").clone()
}

/// Publishes one unrelated event and waits until the receiver has it: anything committed before
/// it has been handed to the delivery workers by then.
async fn barrier(gw: &Gateway, rx: &Receiver, n: usize) {
    let (status, v) = gw.send(KEY_A, &prestazione(n, "F205")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["ids"][0].as_str().expect("id").to_string();
    gw.wait_status(&id, "delivered", WAIT).await;
    assert!(rx.delivered().contains_key(&id));
}

/// Delivered prestazione bodies that came from the adapter (not the barrier events).
fn coop_bodies(rx: &Receiver) -> Vec<Value> {
    rx.bodies()
        .into_iter()
        .filter(|b| b["source"].as_str().is_some_and(|s| s.starts_with("/coop/")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_files_are_accepted_row_by_row_and_delivered_as_prestazioni() {
    sample_files_are_accepted_row_by_row_and_delivered_as_prestazioni_on("").await;
}

/// The same on the PostgreSQL store (cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_files_are_accepted_row_by_row_and_delivered_as_prestazioni_on_postgres() {
    let db = PgDb::create().await;
    sample_files_are_accepted_row_by_row_and_delivered_as_prestazioni_on(&db.store_config()).await;
}

async fn sample_files_are_accepted_row_by_row_and_delivered_as_prestazioni_on(store: &str) {
    let (rx, gw) = start_on(store).await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;

    let csv = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, sample("coop-excel-csv.csv")).await;
    assert_eq!(csv["client"], "coop-aurora");
    assert_eq!(csv["mapping"], "coop-excel-csv");
    let s = &csv["summary"];
    assert_eq!(
        (s["accepted"].as_u64(), s["rejected"].as_u64(), s["skipped"].as_u64(), s["flagged"].as_u64()),
        (Some(20), Some(0), Some(2), Some(0)),
        "{csv}"
    );
    assert_eq!(s["rows"].as_u64(), Some(22), "every record and blank line has a row: {csv}");
    // The blank line and the TOTALE row are skipped, not errors.
    let skipped: Vec<u64> = rows_with(&csv, "skipped").iter().filter_map(|r| r["row"].as_u64()).collect();
    assert_eq!(skipped, vec![12, 23], "{csv}");

    let json_file = sample("coop-json-api.json");
    let js = report(&gw, KEY_SERENA, "coop-json-api", "F205", JSON, json_file).await;
    let s = &js["summary"];
    assert_eq!((s["accepted"].as_u64(), s["rejected"].as_u64()), (Some(12), Some(0)), "{js}");

    // The report is kept: its client reads it again.
    let id = csv["id"].as_str().expect("upload id");
    let (status, again) = gw.get(KEY_AURORA, &format!("/v1/adapters/coop/erogazioni/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["summary"], csv["summary"]);

    // Every accepted row became one prestazione event, delivered.
    let ids: HashSet<String> = rows_with(&csv, "accepted")
        .into_iter()
        .chain(rows_with(&js, "accepted"))
        .map(|r| r["id"].as_str().expect("event id").to_string())
        .collect();
    assert_eq!(ids.len(), 32);
    rx.wait_distinct(32, WAIT).await;
    let delivered: HashSet<String> = rx.delivered().keys().cloned().collect();
    assert_eq!(delivered, ids);
    assert_eq!(rx.bad_signatures(), 0);

    let bodies = rx.bodies();
    // Row 3 of the sheet: 10.30–12.00 SAD for FRRNNA41C52F205P, progetto PRG-AUR-02 at 22.10/h.
    let row3 = row(&csv, 3)["id"].as_str().expect("id").to_string();
    let ev = bodies.iter().find(|b| b["id"] == row3.as_str()).expect("row 3 delivered");
    assert_eq!(ev["type"], PRESTAZIONE);
    assert_eq!(ev["tenant"], "F205");
    assert_eq!(ev["source"], "/coop/AURORA");
    let d = &ev["data"];
    assert_eq!(d["idProgetto"], "PRG-AUR-02");
    assert_eq!(d["beneficiario"]["pseudonimo"], "ben-frrn");
    assert_eq!(d["tipoServizio"], "SAD");
    assert_eq!(d["dataInizio"], "2026-03-02");
    assert_eq!(d["ore"], "1.50");
    assert_eq!(d["importo"], "33.15");
    assert_eq!((d["quotaEnte"].as_str(), d["quotaUtente"].as_str()), (Some("26.52"), Some("6.63")));
    assert_eq!(d["erogatore"], json!({"tipo": "cooperativa", "codice": "AURORA"}));
    // Beneficiaries with a progetto at each cooperative: each delivery lands on its own one.
    let progetto_of = |report: &Value, n: u64| {
        let id = row(report, n)["id"].as_str().expect("id").to_string();
        bodies.iter().find(|b| b["id"] == id.as_str()).expect("delivered")["data"]["idProgetto"].clone()
    };
    assert_eq!(progetto_of(&csv, 6), "PRG-AUR-04", "ADH of RMNLSS90P01F205Y by AURORA");
    assert_eq!(progetto_of(&csv, 11), "PRG-AUR-07", "ADM of PLLFNC10B18B157K by AURORA");
    assert_eq!(progetto_of(&js, 4), "PRG-2026-0044", "AES of PLLFNC10B18B157K by SERENA");
    let by_pseudonym = row(&js, 2)["id"].as_str().expect("id").to_string();
    let ev = bodies.iter().find(|b| b["id"] == by_pseudonym.as_str()).expect("delivered");
    assert_eq!(ev["data"]["beneficiario"], json!({"pseudonimo": "BEN-8F3A21"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_rejected_by_row_column_and_rule_and_good_rows_go_through() {
    let (rx, gw) = start().await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    let future = time::OffsetDateTime::now_utc().date() + time::Duration::days(30);
    let future = format!("{:02}/{:02}/{}", future.day(), u8::from(future.month()), future.year());
    let csv = sheet(&[
        line("BAD-01", "02/03/2026", "08.00", "10.00", "OP-B1", "FRRNNA41C52F205P", "ASS.DOM"),
        // The check character of RSSMRA85T10A562S is S.
        line("BAD-02", "02/03/2026", "08.00", "10.00", "OP-B2", "RSSMRA85T10A562T", "ASS.DOM.H"),
        line("BAD-03", "02/03/2026", "11.00", "12.00", "OP-B1", "VRDLCU45D55F205C", "ASS.DOM"),
        line("BAD-04", "02/03/2026", "13.00", "14.00", "OP-B1", "VRDLCU45D55F205C", "GIARDINAGGIO"),
        line("BAD-05", "03/03/2026", "10.00", "09.00", "OP-B1", "BNCGPP38A01F205D", "ASS.DOM"),
        line("BAD-06", &future, "08.00", "09.00", "OP-B1", "BNCGPP38A01F205D", "ASS.DOM"),
        line("BAD-07", "04/03/2026", "14.00", "16.00", "OP-B3", "MRNGLI40E48F704P", "ASS.DOM"),
        line("BAD-08", "04/03/2026", "15.00", "17.00", "OP-B3", "BNCGPP38A01F205D", "ASS.DOM"),
        line("BAD-09", "05/03/2026", "09.00", "10.30", "OP-B3", "BNCGPP38A01F205D", "ASS.DOM"),
    ]);
    let r = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, csv).await;
    let s = &r["summary"];
    assert_eq!((s["accepted"].as_u64(), s["rejected"].as_u64()), (Some(4), Some(5)), "{r}");
    for good in [2, 4, 8, 10] {
        assert_eq!(row(&r, good)["status"], "accepted", "row {good}: {r}");
    }
    assert_rejected(&r, 3, Some("CF Utente"), "codice_fiscale");
    assert!(!r.to_string().contains("RSSMRA85T10A562T"), "the wrong codice fiscale is not echoed: {r}");
    assert_rejected(&r, 5, Some("Servizio"), "unknown_service");
    assert!(row(&r, 5)["errors"][0]["message"].as_str().expect("message").contains("GIARDINAGGIO"));
    assert_rejected(&r, 6, Some("Alle"), "end_before_start");
    assert_rejected(&r, 7, Some("Data"), "future_date");
    assert_rejected(&r, 9, Some("Dalle"), "overlap");
    assert!(
        row(&r, 9)["errors"][0]["message"].as_str().expect("message").contains("row 8"),
        "the overlap names the other row: {r}"
    );
    // The upload and its rejected rows are in the audit log, by rule, without their content.
    let id = r["id"].as_str().expect("upload id");
    let received = audit(&gw, "received").await;
    let file = received
        .iter()
        .find(|a| a["detail"].as_str().is_some_and(|d| d.starts_with(&format!("cooperative upload {id} "))))
        .unwrap_or_else(|| panic!("no record of upload {id}"));
    assert_eq!((&file["tenant"], &file["actor"]), (&json!("F205"), &json!("coop-aurora")), "{file}");
    assert!(file["detail"].as_str().unwrap().contains("9 rows, 4 accepted"), "{file}");
    let refused = audit(&gw, "rejected").await;
    let rows = refused
        .iter()
        .find_map(|a| a["detail"].as_str().filter(|d| d.starts_with(&format!("cooperative upload {id}:"))))
        .unwrap_or_else(|| panic!("no record of the rejected rows of {id}"));
    assert!(
        rows.contains("rows 3 (codice_fiscale), 5 (unknown_service), 6 (end_before_start), 7 (future_date), 9 (overlap);"),
        "{rows}"
    );
    assert!(!rows.contains("RSSMRA85T10A562T") && !rows.contains("GIARDINAGGIO"), "no content: {rows}");

    // Exactly the good rows were delivered.
    let good: HashSet<String> =
        rows_with(&r, "accepted").iter().map(|r| r["id"].as_str().expect("id").to_string()).collect();
    rx.wait_distinct(4, WAIT).await;
    barrier(&gw, &rx, 900).await;
    let delivered: HashSet<String> =
        coop_bodies(&rx).iter().map(|b| b["id"].as_str().expect("id").to_string()).collect();
    assert_eq!(delivered, good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amount_past_the_largest_importo_rejects_the_row_and_the_others_go_through() {
    let (rx, gw) = start().await;
    // The largest tariff and shares the contract allows: an hour makes the largest importo.
    let progetto = Progetto {
        id: "PRG-IMP-01",
        pseudonimo: "ben-imp",
        cf: Some("FRRNNA41C52F205P"),
        interventi: vec![Intervento {
            servizio: "SAD",
            cooperativa: "AURORA",
            ore_mensili: "99999",
            tariffa: "9999999999.99",
            quota_ente: "1.00",
            quota_utente: "9999999.99",
        }],
    };
    publish(&gw, KEY_A, "F205", &[progetto]).await;
    let csv = sheet(&[
        line("IMP-01", "02/03/2026", "08.00", "09.00", "OP-I1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("IMP-02", "03/03/2026", "08.00", "10.00", "OP-I1", "FRRNNA41C52F205P", "ASS.DOM"),
    ]);
    let r = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, csv).await;
    let s = &r["summary"];
    assert_eq!((s["accepted"].as_u64(), s["rejected"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_eq!(row(&r, 2)["status"], "accepted", "{r}");
    assert_rejected(&r, 3, None, "amount_out_of_range");
    assert_eq!(
        row(&r, 3)["errors"][0]["message"],
        "2.00 h of SAD at the tariffaOraria 9999999999.99 of progetto PRG-IMP-01 come to more than \
         9999999999.99, the most an importo may be",
        "{r}"
    );

    // The hour is priced exactly: the user's share is 9999999.99 of 10000000.99 of the importo.
    rx.wait_distinct(1, WAIT).await;
    barrier(&gw, &rx, 904).await;
    let bodies = coop_bodies(&rx);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let data = &bodies[0]["data"];
    assert_eq!(data["importo"], "9999999999.99", "{data}");
    assert_eq!(data["quotaUtente"], "9999998999.99", "{data}");
    assert_eq!(data["quotaEnte"], "1000.00", "{data}");
}

/// Windows-1252 bytes of `text` (Latin-1 range plus the euro sign).
fn windows_1252(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            '€' => 0x80,
            c if (c as u32) < 0x100 => c as u8,
            c => panic!("{c} is not in Windows-1252"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excel_dialects_read_the_same_deliveries() {
    let (rx, gw) = start().await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;

    // Excel on an Italian Windows: Windows-1252, `;`, CRLF between rows and LF inside a cell,
    // decimal commas (one with a thousands point), one-digit hours as `h.mm`, ISO and dd/mm/yyyy
    // dates, blank lines, a TOTALE row.
    let excel = "ID;Data;Dalle;Alle;Operatore;CF Utente;Ore;Servizio;Km;Note\r\n\
        NV-01;02/03/2026;8.00;10.00;OP-N1;FRRNNA41C52F205P;2;ASS.DOM;12,5;Igiene: più lunga del solito\r\n\
        \r\n\
        NV-02;02/03/2026;10.30;12.00;OP-N1;VRDLCU45D55F205C;1,5;ASS.DOM;4,25;\"Spesa; farmacia\ne caffè\"\r\n\
        \r\n\
        ;;;;;;;;;\r\n\
        NV-03;2026-03-03;09.00;11.30;OP-N2;BNCGPP38A01F205D;2,5;ASS.DOM;\"1.234,5\";Città alta\r\n\
        NV-04;03/03/2026;14.00;15.00;OP-N2;BNCGPP38A01F205D;1;ASS.PIÙ;0;\r\n\
        TOTALE;;;;;;7,0;;;\r\n";
    let first = report(
        &gw,
        KEY_AURORA,
        "coop-excel-csv",
        "F205",
        "text/csv; charset=windows-1252",
        windows_1252(excel),
    )
    .await;
    let s = &first["summary"];
    assert_eq!(
        (s["accepted"].as_u64(), s["rejected"].as_u64(), s["skipped"].as_u64()),
        (Some(3), Some(1), Some(4)),
        "{first}"
    );
    // Row numbers are the spreadsheet's: a cell with a line break is still one row.
    for n in [2, 4, 7] {
        assert_eq!(row(&first, n)["status"], "accepted", "row {n}: {first}");
    }
    for n in [3, 5, 6, 9] {
        assert_eq!(row(&first, n)["status"], "skipped", "row {n}: {first}");
    }
    assert_rejected(&first, 8, Some("Servizio"), "unknown_service");
    let message = row(&first, 8)["errors"][0]["message"].as_str().expect("message").to_string();
    assert!(message.contains("'ASS.PIÙ'"), "Windows-1252 is decoded: {message}");
    // hh.mm with one-digit hours: 8.00–10.00 is two hours.
    rx.wait_distinct(3, WAIT).await;
    let row2 = row(&first, 2)["id"].clone();
    let ev = coop_bodies(&rx).into_iter().find(|b| b["id"] == row2).expect("row 2 delivered");
    assert_eq!(ev["data"]["ore"], "2.00");

    // The same deliveries as another program saves them: UTF-8 with BOM, `,` separator (so the
    // decimal commas and the notes are quoted), LF, `hh:mm`, only ISO dates. Same content: nothing
    // new, whatever the dialect.
    let utf8 = "\u{feff}ID,Data,Dalle,Alle,Operatore,CF Utente,Ore,Servizio,Km,Note\n\
        NV-01,2026-03-02,08:00,10:00,OP-N1,FRRNNA41C52F205P,2,ASS.DOM,\"12,50\",Igiene: più lunga del solito\n\
        \n\
        NV-02,2026-03-02,10:30,12:00,OP-N1,VRDLCU45D55F205C,\"1,5\",ASS.DOM,\"4,25\",\"Spesa; farmacia\ne caffè\"\n\
        NV-03,2026-03-03,09:00,11:30,OP-N2,BNCGPP38A01F205D,\"2,5\",ASS.DOM,\"1234,50\",Città alta\n\
        \"TOTALE\",,,,,,\"6,0\",,,\n";
    let second = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, utf8.as_bytes().to_vec()).await;
    let s = &second["summary"];
    assert_eq!(
        (s["duplicates"].as_u64(), s["accepted"].as_u64(), s["corrected"].as_u64(), s["skipped"].as_u64()),
        (Some(3), Some(0), Some(0), Some(2)),
        "{second}"
    );
    assert_eq!(row(&second, 5)["status"], "duplicate", "NV-03 is row 5: {second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_the_same_file_again_creates_nothing_new() {
    uploading_the_same_file_again_creates_nothing_new_on("").await;
}

/// The same on the PostgreSQL store (cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_the_same_file_again_creates_nothing_new_on_postgres() {
    let db = PgDb::create().await;
    uploading_the_same_file_again_creates_nothing_new_on(&db.store_config()).await;
}

async fn uploading_the_same_file_again_creates_nothing_new_on(store: &str) {
    let (rx, gw) = start_on(store).await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    let first = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, sample("coop-excel-csv.csv")).await;
    assert_eq!(first["summary"]["accepted"].as_u64(), Some(20), "{first}");
    rx.wait_distinct(20, WAIT).await;
    let accepted_before = audit(&gw, "accepted").await.len();

    let again = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, sample("coop-excel-csv.csv")).await;
    let s = &again["summary"];
    assert_eq!(
        (s["duplicates"].as_u64(), s["accepted"].as_u64(), s["corrected"].as_u64(), s["rejected"].as_u64()),
        (Some(20), Some(0), Some(0), Some(0)),
        "{again}"
    );
    assert_ne!(again["id"], first["id"], "each upload has its own report");
    // Row by row; a duplicate never points at an event other than the one the first upload made.
    for r in rows_with(&first, "accepted") {
        let n = r["row"].as_u64().expect("row");
        let dup = row(&again, n);
        assert_eq!(dup["status"], "duplicate", "row {n}: {again}");
        assert!(dup.get("id").is_none() || dup["id"] == r["id"], "row {n}: {dup}");
    }
    assert_eq!(audit(&gw, "accepted").await.len(), accepted_before, "no event was created");
    barrier(&gw, &rx, 901).await;
    assert_eq!(coop_bodies(&rx).len(), 20, "nothing new was delivered");
    assert!(rx.delivered().values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_row_replaces_the_earlier_one_and_the_change_is_audited() {
    a_corrected_row_replaces_the_earlier_one_and_the_change_is_audited_on("").await;
}

/// The same on the PostgreSQL store (cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_row_replaces_the_earlier_one_and_the_change_is_audited_on_postgres() {
    let db = PgDb::create().await;
    a_corrected_row_replaces_the_earlier_one_and_the_change_is_audited_on(&db.store_config()).await;
}

async fn a_corrected_row_replaces_the_earlier_one_and_the_change_is_audited_on(store: &str) {
    let (rx, gw) = start_on(store).await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    let original = sheet(&[
        line("COR-01", "02/03/2026", "08.00", "10.00", "OP-C1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("COR-02", "02/03/2026", "10.30", "11.30", "OP-C1", "VRDLCU45D55F205C", "ASS.DOM"),
    ]);
    let first = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, original).await;
    assert_eq!(first["summary"]["accepted"].as_u64(), Some(2), "{first}");
    let old_id = row(&first, 2)["id"].as_str().expect("id").to_string();

    // COR-01 again, ending at 09.30 instead of 10.00; COR-02 unchanged.
    let fixed = sheet(&[
        line("COR-01", "02/03/2026", "08.00", "09.30", "OP-C1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("COR-02", "02/03/2026", "10.30", "11.30", "OP-C1", "VRDLCU45D55F205C", "ASS.DOM"),
    ]);
    let second = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, fixed).await;
    let s = &second["summary"];
    assert_eq!((s["corrected"].as_u64(), s["duplicates"].as_u64()), (Some(1), Some(1)), "{second}");
    let corrected = row(&second, 2);
    assert_eq!(corrected["status"], "corrected", "{second}");
    let new_id = corrected["id"].as_str().expect("id").to_string();
    assert_ne!(new_id, old_id, "a correction is a new event");

    // The correction is in the audit log, naming the record and the event it replaces.
    let records = audit(&gw, "corrected").await;
    let rec = records
        .iter()
        .find(|r| r["detail"].as_str().is_some_and(|d| d.contains("coop:AURORA:COR-01")))
        .unwrap_or_else(|| panic!("no correction of COR-01 in {records:?}"));
    assert_eq!(rec["actor"], "coop-aurora");
    assert_eq!(rec["tenant"], "F205");
    assert_eq!(rec["event_id"], new_id.as_str(), "{rec}");
    assert!(rec["detail"].as_str().is_some_and(|d| d.contains(&old_id)), "names the replaced event: {rec}");
    assert_eq!(records.len(), 1, "COR-02 was not corrected: {records:?}");
    let text = serde_json::to_string(&records).expect("json");
    assert!(!text.contains("FRRNNA41C52F205P"), "no codice fiscale in the audit: {text}");

    // Both versions were delivered, with one correlation id; the month counts the latest only.
    rx.wait_distinct(3, WAIT).await;
    let bodies = coop_bodies(&rx);
    let old = bodies.iter().find(|b| b["id"] == old_id.as_str()).expect("original delivered");
    let new = bodies.iter().find(|b| b["id"] == new_id.as_str()).expect("correction delivered");
    assert_eq!(new["correlationid"], old["correlationid"]);
    assert_eq!((old["data"]["ore"].as_str(), new["data"]["ore"].as_str()), (Some("2.00"), Some("1.50")));
    let (status, list) = gw.get(KEY_A, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-03").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list[0]["ore"], "2.50", "1.50 h (corrected) + 1.00 h: {list}");

    // Back and forth: a record corrected back to content it had before is a correction again
    // (not a duplicate of its first version, which would leave the other one counted), and so is
    // each month's close over it.
    let close1 = close_march(&gw).await;
    let back = sheet(&[
        line("COR-01", "02/03/2026", "08.00", "10.00", "OP-C1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("COR-02", "02/03/2026", "10.30", "11.30", "OP-C1", "VRDLCU45D55F205C", "ASS.DOM"),
    ]);
    let again = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, back).await;
    assert_eq!(row(&again, 2)["status"], "corrected", "{again}");
    let third_id = row(&again, 2)["id"].as_str().expect("id").to_string();
    assert!(third_id != old_id && third_id != new_id, "{again}");
    let (_, list) = gw.get(KEY_A, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-03").await;
    assert_eq!(list[0]["ore"], "3.00", "2.00 h (back to the first version) + 1.00 h: {list}");
    let close2 = close_march(&gw).await;
    let fixed_again = sheet(&[
        line("COR-01", "02/03/2026", "08.00", "09.30", "OP-C1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("COR-02", "02/03/2026", "10.30", "11.30", "OP-C1", "VRDLCU45D55F205C", "ASS.DOM"),
    ]);
    let last = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, fixed_again).await;
    assert_eq!(row(&last, 2)["status"], "corrected", "{last}");
    let (_, list) = gw.get(KEY_A, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-03").await;
    assert_eq!(list[0]["ore"], "2.50", "{list}");
    let close3 = close_march(&gw).await;
    assert_eq!(close1.len(), 2, "one monthly event per progetto: {close1:?}");
    // COR-02's month never changed: the same event each time; COR-01's is new each time.
    assert_eq!(close1.intersection(&close2).count(), 1, "{close1:?} {close2:?}");
    assert_eq!(close1.intersection(&close3).count(), 1, "{close1:?} {close3:?}");
    assert_eq!(close2.intersection(&close3).count(), 1, "{close2:?} {close3:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_without_a_tariff_is_named_in_the_close_and_not_sent() {
    let (rx, gw) = start().await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    // PRG-AUR-02 authorizes SAD only: the ADH row is accepted flagged, with no tariff.
    let csv = sheet(&[
        line("TAR-01", "09/03/2026", "08.00", "10.00", "OP-T1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("TAR-02", "10/03/2026", "08.00", "11.00", "OP-T1", "FRRNNA41C52F205P", "EDU.DIS"),
    ]);
    let r = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, csv).await;
    assert_eq!(r["summary"]["flagged"].as_u64(), Some(1), "{r}");
    let (status, c) =
        gw.post_json(KEY_A, "/v1/adapters/coop/chiusure", json!({"tenant": "F205", "mese": "2026-03"})).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["events"].as_array().map(Vec::len), Some(1), "only SAD is sent: {c}");
    let errors = c["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{c}");
    let e = errors[0].as_str().expect("text");
    assert!(e.starts_with("ADH of progetto PRG-AUR-02 (AURORA): 3.00 h in 2026-03 with no amount"), "{e}");
    rx.wait_distinct(3, WAIT).await;
    let monthly: Vec<Value> =
        rx.bodies().into_iter().filter(|b| b["source"] == "/coop/chiusura-mensile").collect();
    assert_eq!(monthly.len(), 1, "{monthly:?}");
    assert_eq!(monthly[0]["data"]["tipoServizio"], "SAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_a_correction_empties_is_annulled_at_the_next_close() {
    a_month_a_correction_empties_is_annulled_at_the_next_close_on("").await;
}

/// The same on the PostgreSQL store (cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_a_correction_empties_is_annulled_at_the_next_close_on_postgres() {
    let db = PgDb::create().await;
    a_month_a_correction_empties_is_annulled_at_the_next_close_on(&db.store_config()).await;
}

async fn a_month_a_correction_empties_is_annulled_at_the_next_close_on(store: &str) {
    let (rx, gw) = start_on(store).await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    let march =
        sheet(&[line("MOV-01", "16/03/2026", "08.00", "10.00", "OP-M1", "FRRNNA41C52F205P", "ASS.DOM")]);
    report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, march).await;
    let first = close_march(&gw).await;
    assert_eq!(first.len(), 1, "{first:?}");
    // The delivery was in fact on 16 April: March has nothing left for that progetto and service.
    let april =
        sheet(&[line("MOV-01", "16/04/2026", "08.00", "10.00", "OP-M1", "FRRNNA41C52F205P", "ASS.DOM")]);
    let r = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, april).await;
    assert_eq!(row(&r, 2)["status"], "corrected", "{r}");
    let second = close_march(&gw).await;
    assert_eq!(second.len(), 1, "the annulment: {second:?}");
    assert!(second.is_disjoint(&first), "a new event: {second:?}");
    // The receiver has the monthly record, then its annulment with the same idPrestazione.
    rx.wait_distinct(4, WAIT).await;
    let monthly: Vec<Value> =
        rx.bodies().into_iter().filter(|b| b["source"] == "/coop/chiusura-mensile").collect();
    assert_eq!(monthly.len(), 2, "{monthly:?}");
    let (sent, annulled) = (&monthly[0]["data"], &monthly[1]["data"]);
    assert_eq!(sent["idPrestazione"], annulled["idPrestazione"]);
    assert_eq!((sent.get("annullata"), &annulled["annullata"]), (None, &json!(true)), "{monthly:?}");
    assert_eq!(annulled["oreServizioMensile"], sent["oreServizioMensile"], "the other fields repeat it");
    // Closing again annuls nothing more.
    assert!(close_march(&gw).await.is_empty());
}

/// Closes March 2026 for F205; the ids of the monthly events.
async fn close_march(gw: &Gateway) -> HashSet<String> {
    let (status, c) =
        gw.post_json(KEY_A, "/v1/adapters/coop/chiusure", json!({"tenant": "F205", "mese": "2026-03"})).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert!(c.get("errors").is_none(), "{c}");
    c["events"].as_array().expect("events").iter().map(|e| e.as_str().expect("id").to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_keeps_the_id_prestazione_of_the_event_it_corrects() {
    a_correction_keeps_the_id_prestazione_of_the_event_it_corrects_on(None).await;
}

/// The same on the PostgreSQL store (cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_keeps_the_id_prestazione_of_the_event_it_corrects_on_postgres() {
    let db = PgDb::create().await;
    a_correction_keeps_the_id_prestazione_of_the_event_it_corrects_on(Some(&db)).await;
}

/// A delivery's idPrestazione is `<cooperativa>/<record id>` when that is a valid identifier, a
/// hash otherwise; a correction keeps whatever its event carried, including an idPrestazione an
/// earlier version of the gateway gave it (simulated by rewriting the stored event).
async fn a_correction_keeps_the_id_prestazione_of_the_event_it_corrects_on(db: Option<&PgDb>) {
    let (rx, gw) = start_on(&db.map(PgDb::store_config).unwrap_or_default()).await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    // Two records of one operator; what changes between uploads is when each ends.
    let records = |end_1: &'static str, end_2: &'static str| {
        sheet(&[
            line("IDP-01", "02/03/2026", "08.00", end_1, "OP-I1", "FRRNNA41C52F205P", "ASS.DOM"),
            line("IDP#02", "02/03/2026", "10.30", end_2, "OP-I1", "VRDLCU45D55F205C", "ASS.DOM"),
        ])
    };
    let first = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, records("10.00", "11.30")).await;
    assert_eq!(first["summary"]["accepted"].as_u64(), Some(2), "{first}");
    rx.wait_distinct(2, WAIT).await;
    let id_prestazione = |report: &Value, n: u64| {
        let id = row(report, n)["id"].as_str().expect("id").to_string();
        let body = coop_bodies(&rx).into_iter().find(|b| b["id"] == id.as_str()).expect("delivered");
        body["data"]["idPrestazione"].as_str().expect("idPrestazione").to_string()
    };
    assert_eq!(id_prestazione(&first, 2), "AURORA/IDP-01", "readable from the record id");
    // '#' is not allowed in an identificativo: a hash of the record's key instead.
    let hashed = id_prestazione(&first, 3);
    assert!(
        hashed.len() == 21
            && hashed.starts_with("COOP-")
            && hashed[5..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{hashed}"
    );

    // As an earlier version would have stored it: another idPrestazione for IDP-01.
    let (from, to) = ("\"AURORA/IDP-01\"", "\"EROG-LEGACY-0001\"");
    match db {
        Some(db) => {
            let n = db
                .client()
                .await
                .execute(
                    "UPDATE events SET body = convert_to(replace(convert_from(body, 'UTF8'), $1, $2), 'UTF8')
                     WHERE position(convert_to($1, 'UTF8') in body) > 0",
                    &[&from, &to],
                )
                .await
                .expect("rewriting the stored event");
            assert_eq!(n, 1);
        }
        None => {
            let conn = rusqlite::Connection::open(gw.data_dir().join("gateway.db")).expect("open the store");
            conn.busy_timeout(WAIT).expect("busy timeout");
            let n = conn
                .execute(
                    "UPDATE events SET body = CAST(replace(CAST(body AS TEXT), ?1, ?2) AS BLOB)
                     WHERE instr(CAST(body AS TEXT), ?1) > 0",
                    [from, to],
                )
                .expect("rewriting the stored event");
            assert_eq!(n, 1);
        }
    }

    // Both rows corrected (other end times): each keeps its event's idPrestazione.
    let second = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, records("09.30", "11.00")).await;
    assert_eq!(second["summary"]["corrected"].as_u64(), Some(2), "{second}");
    rx.wait_distinct(4, WAIT).await;
    assert_eq!(id_prestazione(&second, 2), "EROG-LEGACY-0001");
    assert_eq!(id_prestazione(&second, 3), hashed);
}

/// A gateway killed (-9) in the middle of a cooperative's upload, then restarted: the cooperative
/// sends the same file again, and every row is there exactly once — those committed before the
/// crash as duplicates naming their events, the others accepted — and the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_a_crash_is_completed_by_sending_the_file_again() {
    an_upload_cut_by_a_crash_is_completed_by_sending_the_file_again_on("").await;
}

/// The same on the PostgreSQL store (cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_a_crash_is_completed_by_sending_the_file_again_on_postgres() {
    let db = PgDb::create().await;
    an_upload_cut_by_a_crash_is_completed_by_sending_the_file_again_on(&db.store_config()).await;
}

async fn an_upload_cut_by_a_crash_is_completed_by_sending_the_file_again_on(store: &str) {
    const ROWS: usize = 12_000;
    // A file of 0.9 MB: above the other tests' upload limit.
    let rx = Receiver::start(Mode::Ok).await;
    let config =
        coop_config().replace(&format!("max_upload_bytes = {MAX_UPLOAD}"), "max_upload_bytes = 8388608");
    let mut gw = Gateway::start_with(&rx.url, "", &format!("{config}{store}")).await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    // One operator a row (no overlaps), SAD in March 2026 for a beneficiary with a progetto.
    let mut csv = format!("{HEADER}\r\n");
    for i in 0..ROWS {
        csv.push_str(&format!(
            "CUT-{i:05};{:02}/03/2026;08.00;08.30;OP-K{i};FRRNNA41C52F205P;;ASS.DOM;1,0;\r\n",
            1 + i % 28
        ));
    }
    const ACCEPTED: &str = "csi_gateway_events_accepted_total";
    let before = gw.metric(ACCEPTED).await;

    let (http, url) = (
        gw.http.clone(),
        format!("{}/v1/adapters/coop/erogazioni?mapping=coop-excel-csv&tenant=F205", gw.base),
    );
    let body = csv.clone();
    let first = tokio::spawn(async move {
        let resp =
            http.post(url).bearer_auth(KEY_AURORA).header("content-type", CSV).body(body).send().await?;
        resp.text().await
    });
    // Killed once some chunks are committed and long before the last.
    let deadline = std::time::Instant::now() + WAIT;
    while gw.metric(ACCEPTED).await < before + 2_000.0 {
        assert!(std::time::Instant::now() < deadline, "the upload did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.kill9_and_restart().await;
    let cut = first.await.expect("upload task");
    assert!(cut.is_err(), "the upload was answered before the crash: {:?}", cut.map(|t| t.len()));

    let again = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, csv).await;
    let s = &again["summary"];
    let (new, duplicates) = (s["accepted"].as_u64().unwrap_or(0), s["duplicates"].as_u64().unwrap_or(0));
    assert!(duplicates >= 2_000 && new >= 1, "some rows were stored before the crash, some not: {s}");
    assert_eq!(new + duplicates, ROWS as u64, "every row accepted or a duplicate: {s}");
    let ids: HashSet<&str> =
        again["rows"].as_array().expect("rows").iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids.len(), ROWS, "each row names its own event");

    // Each row became one prestazione, delivered; none twice.
    rx.wait_distinct(ROWS, WAIT).await;
    let bodies = coop_bodies(&rx);
    let events: HashSet<&str> = bodies.iter().filter_map(|b| b["id"].as_str()).collect();
    let prestazioni: HashSet<&str> =
        bodies.iter().filter_map(|b| b["data"]["idPrestazione"].as_str()).collect();
    assert_eq!((events.len(), prestazioni.len()), (ROWS, ROWS));
    assert_eq!(events, ids, "the events delivered are those the report names");
    let (_, v) = gw.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_cannot_submit_on_another_cooperatives_contract() {
    let (rx, gw) = start().await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    let mut nobody = "BNCGNN45A01F205".to_string();
    nobody.push(char::from(csi_gateway_coop::codice_fiscale_check_char(nobody.as_bytes())));

    // SERENA names AURORA's progetti: the service AURORA holds, and a service the progetto
    // does not list at all; and one good row of its own.
    let items = json!([
        {"id": "SER-X1", "cooperativa": "SERENA", "progetto": "PRG-AUR-02", "operatore": {"id": "OP-S1"},
         "utente": {"codiceFiscale": "FRRNNA41C52F205P"}, "servizio": "SAD", "data": "2026-04-01",
         "inizio": "08:00", "fine": "09:00"},
        {"id": "SER-X2", "cooperativa": "SERENA", "progetto": "PRG-AUR-02", "operatore": {"id": "OP-S1"},
         "utente": {"codiceFiscale": "FRRNNA41C52F205P"}, "servizio": "ADM", "data": "2026-04-01",
         "inizio": "10:00", "fine": "11:00"},
        {"id": "SER-X3", "cooperativa": "SERENA", "progetto": "PRG-2026-0012", "operatore": {"id": "OP-S1"},
         "utente": {"codiceFiscale": "GLLNTN36M20D969Z"}, "servizio": "SAD", "data": "2026-04-01",
         "inizio": "12:00", "fine": "13:00"},
        // AURORA's beneficiary, found by codice fiscale: only AURORA's progetto exists.
        {"id": "SER-X4", "cooperativa": "SERENA", "operatore": {"id": "OP-S2"},
         "utente": {"codiceFiscale": "MRNGLI40E48F704P"}, "servizio": "SAD", "data": "2026-04-02",
         "inizio": "08:00", "fine": "09:00"},
        // Its own progetto id, with another beneficiary's codice fiscale.
        {"id": "SER-X5", "cooperativa": "SERENA", "progetto": "PRG-2026-0012", "operatore": {"id": "OP-S2"},
         "utente": {"codiceFiscale": "FRRNNA41C52F205P"}, "servizio": "SAD", "data": "2026-04-02",
         "inizio": "10:00", "fine": "11:00"},
        // Someone with no progetto at all.
        {"id": "SER-X6", "cooperativa": "SERENA", "operatore": {"id": "OP-S2"},
         "utente": {"codiceFiscale": nobody}, "servizio": "SAD", "data": "2026-04-02",
         "inizio": "12:00", "fine": "13:00"}
    ]);
    let r = report(&gw, KEY_SERENA, "coop-json-api", "F205", JSON, items.to_string()).await;
    let s = &r["summary"];
    assert_eq!((s["accepted"].as_u64(), s["rejected"].as_u64()), (Some(1), Some(5)), "{r}");
    assert_eq!(row(&r, 3)["status"], "accepted", "{r}");
    // The cooperative learns only that it has no such progetto: the same rule, and a message
    // made of what its row said, whether the person has a progetto with AURORA or none at all.
    for n in [1, 2, 4, 5, 6] {
        assert_rejected(&r, n, None, "no_progetto");
        let message = row(&r, n)["errors"][0]["message"].as_str().unwrap_or_default().to_string();
        assert!(!message.contains("AURORA") && !message.contains("another"), "row {n}: {message}");
    }
    let message = |n: u64| row(&r, n)["errors"].to_string();
    assert_eq!(message(4), message(6), "a beneficiary of AURORA looks like nobody's");

    let rows = items;

    // SERENA's client sending rows that name AURORA as the cooperative.
    let items = json!([
        {"id": "AUR-Y1", "cooperativa": "AURORA", "operatore": {"id": "OP-A1"},
         "utente": {"codiceFiscale": "FRRNNA41C52F205P"}, "servizio": "SAD", "data": "2026-04-01",
         "inizio": "08:00", "fine": "09:00"}
    ]);
    let r = report(&gw, KEY_SERENA, "coop-json-api", "F205", JSON, items.to_string()).await;
    assert_eq!(r["summary"]["accepted"].as_u64(), Some(0), "{r}");
    assert_rejected(&r, 1, None, "not_your_cooperative");

    // A tenant the cooperative is not bound to: the whole upload is refused.
    let (status, v) = upload(&gw, KEY_SERENA, "coop-json-api", "B157", JSON, "[]").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["type"], "https://csi-gateway.invalid/problems/forbidden", "{v}");

    // Only SER-X3 became an event.
    barrier(&gw, &rx, 902).await;
    let bodies = coop_bodies(&rx);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["data"]["idProgetto"], "PRG-2026-0012");

    // The comune's own client, sending the same rows, is told the reason.
    let r = report(&gw, KEY_A, "coop-json-api", "F205", JSON, rows.to_string()).await;
    assert_rejected(&r, 1, None, "not_your_contract");
    assert_rejected(&r, 4, None, "not_your_contract");
    assert_rejected(&r, 6, None, "no_progetto");
}

/// The comune's and the cooperative's commands: `map` shows what a file becomes, row by row,
/// without sending anything; `coop upload` sends it and prints the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_shows_a_file_without_sending_it_and_coop_upload_sends_it() {
    let (rx, gw) = start().await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    const ACCEPTED: &str = "csi_gateway_events_accepted_total";
    let before = gw.metric(ACCEPTED).await;
    let samples = repo().join("mappings/coop/samples");
    let csv = samples.join("coop-excel-csv.csv");
    let csv = csv.to_str().expect("path");
    let lines = |out: &str| -> Vec<Value> {
        out.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect()
    };

    let (code, out, err) = gw.cli(&["map", "--mapping", "coop-excel-csv", csv]);
    assert_eq!(code, Some(0), "{err}");
    let rows = lines(&out);
    assert_eq!(rows.len(), 22, "{out}");
    assert_eq!(rows.iter().filter(|r| r["status"] == "ok").count(), 20, "{out}");
    let first = &rows[0];
    assert_eq!((first["row"].as_u64(), first["delivery"]["cooperativa"].as_str()), (Some(2), Some("AURORA")));
    assert!(err.contains("20 rows mapped, 0 rejected, 2 skipped"), "{err}");
    let json_sample = samples.join("coop-json-api.json");
    let (code, out, err) =
        gw.cli(&["map", "--mapping", "coop-json-api", json_sample.to_str().expect("path")]);
    assert_eq!((code, lines(&out).len()), (Some(0), 12), "{err}");

    // A wrong check character: the row says where and why, and the command fails.
    let dir = tempfile::tempdir().expect("temporary folder");
    let bad = dir.path().join("bad.csv");
    let text = format!("{HEADER}\r\nX-1;02/03/2026;08.00;09.00;OP-9;RSSMRA80A01H501X;1,00;ASS.DOM;0;\r\n");
    std::fs::write(&bad, text).expect("write");
    let (code, out, _) = gw.cli(&["map", "--mapping", "coop-excel-csv", bad.to_str().expect("path")]);
    assert_eq!(code, Some(1), "{out}");
    let row = &lines(&out)[0];
    assert_eq!(row["status"], "rejected", "{row}");
    assert_eq!(
        (row["errors"][0]["column"].as_str(), row["errors"][0]["rule"].as_str()),
        (Some("CF Utente"), Some("codice_fiscale")),
        "{row}"
    );
    assert_eq!(gw.metric(ACCEPTED).await, before, "map sends nothing");

    let (code, out, err) = gw.cli(&[
        "coop",
        "upload",
        csv,
        "--mapping",
        "coop-excel-csv",
        "--tenant",
        "F205",
        "--url",
        &gw.base,
        "--api-key",
        KEY_AURORA,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("the report as JSON");
    assert_eq!(report["summary"]["accepted"].as_u64(), Some(20), "{report}");
    assert!(err.contains("22 rows: 20 accepted, 0 corrected, 0 duplicates"), "{err}");
    rx.wait_distinct(20, WAIT).await;
    assert_eq!(gw.metric(ACCEPTED).await, before + 20.0);
}

/// A cooperative that can only copy files: what lands in the watched folder is uploaded once its
/// copy is complete, then moved to `processed/` with its report beside it, or to `failed/` with
/// the reason when the file as a whole cannot be taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_copied_into_the_drop_folder_are_uploaded_and_moved_with_their_report() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let drop = format!(
        r#"
[coop.drop]
dir = {:?}
client = "coop-aurora"
mapping = "coop-excel-csv"
tenant = "F205"
interval_secs = 1
"#,
        dir.path().display().to_string()
    );
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_with(&rx.url, "", &format!("{}{drop}", coop_config())).await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;

    let at = |p: &str| dir.path().join(p);
    // A copy still in progress is left alone.
    std::fs::write(at("novembre.csv.part"), b"ID;Data;Dalle").expect("write");
    std::fs::write(at("ottobre.csv"), sample("coop-excel-csv.csv")).expect("write");
    // JSON is read whole: a document over the upload limit is refused without being read...
    std::fs::write(at("grande.json"), format!("[{}]", " ".repeat(MAX_UPLOAD))).expect("write");
    // ...and one that cannot be read as a whole fails with the reason.
    std::fs::write(at("rotto.json"), "[".repeat(100)).expect("write");

    let report_file = at("processed/ottobre.csv.report.json");
    let deadline = std::time::Instant::now() + WAIT;
    while !(report_file.exists()
        && at("failed/rotto.json.error.txt").exists()
        && at("failed/grande.json").exists())
    {
        assert!(std::time::Instant::now() < deadline, "the drop folder was not processed in {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report_file).expect("report")).expect("JSON report");
    let s = &report["summary"];
    assert_eq!((s["accepted"].as_u64(), s["skipped"].as_u64()), (Some(20), Some(2)), "{report}");
    assert_eq!(report["client"], "coop-aurora");
    assert_eq!(report["rows"].as_array().map(Vec::len), Some(22), "{report}");
    assert!(at("processed/ottobre.csv").exists() && !at("ottobre.csv").exists());
    assert!(at("novembre.csv.part").exists(), "a partial copy is not taken");

    let too_large = std::fs::read_to_string(at("failed/grande.json.error.txt")).expect("reason");
    assert!(too_large.contains("over coop.max_upload_bytes = 262144"), "{too_large}");
    let unreadable = std::fs::read_to_string(at("failed/rotto.json.error.txt")).expect("reason");
    assert!(unreadable.contains("more than 64 levels deep"), "{unreadable}");

    // The rows went through like an upload's: each delivered once.
    rx.wait_distinct(20, WAIT).await;
    let ids: HashSet<String> =
        rows_with(&report, "accepted").iter().filter_map(|r| r["id"].as_str().map(str::to_string)).collect();
    let delivered: HashSet<String> = rx.delivered().keys().cloned().collect();
    assert!(ids.is_subset(&delivered) && ids.len() == 20, "{ids:?}");

    // The same name copied again (next month's export, or this one resent): a new file, taken on
    // its own, whose report does not replace the first one's.
    std::fs::write(at("ottobre.csv"), sample("coop-excel-csv.csv")).expect("write");
    let deadline = std::time::Instant::now() + WAIT;
    let second = loop {
        let reports: Vec<PathBuf> = std::fs::read_dir(at("processed"))
            .expect("processed/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("-ottobre.csv.report.json"))
            .collect();
        if let [one] = reports.as_slice() {
            break one.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the second copy was not processed in {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let again: Value = serde_json::from_slice(&std::fs::read(&second).expect("report")).expect("JSON report");
    assert_eq!(again["summary"]["duplicates"].as_u64(), Some(20), "{again}");
    let first: Value = serde_json::from_slice(&std::fs::read(&report_file).expect("report")).expect("JSON");
    assert_eq!(first["id"], report["id"], "the first report is kept");
    let data_file = second.to_string_lossy().trim_end_matches(".report.json").to_string();
    assert!(Path::new(&data_file).exists(), "{data_file}");
    assert_eq!(std::fs::read_dir(at("processing")).expect("processing/").count(), 0);
}

/// A body of nested brackets would exhaust the stack of the thread that parses it, and that
/// aborts the whole gateway: it is refused before parsing, and the gateway goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_built_to_be_deep_is_refused_and_the_gateway_stays_up() {
    let (_rx, gw) = start().await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
    let (status, v) = upload(&gw, KEY_SERENA, "coop-json-api", "F205", JSON, deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["type"], "https://csi-gateway.invalid/problems/unreadable-file", "{v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("more than 64 levels deep (at byte 64)"), "{v}");

    let r = report(&gw, KEY_SERENA, "coop-json-api", "F205", JSON, sample("coop-json-api.json")).await;
    assert!(r["summary"]["accepted"].as_u64() > Some(0), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_client_reads_only_its_own_uploads() {
    let (_rx, gw) = start().await;
    publish(&gw, KEY_A, "F205", &sample_progetti()).await;
    let aurora = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, sample("coop-excel-csv.csv")).await;
    let serena = report(&gw, KEY_SERENA, "coop-json-api", "F205", JSON, sample("coop-json-api.json")).await;
    let aurora_upload = aurora["id"].as_str().expect("id");
    let serena_upload = serena["id"].as_str().expect("id");
    let event = row(&aurora, 2)["id"].as_str().expect("event id");

    // Its own report, yes.
    let (status, _) = gw.get(KEY_AURORA, &format!("/v1/adapters/coop/erogazioni/{aurora_upload}")).await;
    assert_eq!(status, StatusCode::OK);
    // Not another cooperative's report, not even its own events, not the liquidazione.
    let (status, v) = gw.get(KEY_AURORA, &format!("/v1/adapters/coop/erogazioni/{serena_upload}")).await;
    // Answered as if there were no such upload or event: nothing tells that they exist.
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(v.get("rows").is_none(), "nothing of the report leaks: {v}");
    let (_, unknown) =
        gw.get(KEY_AURORA, "/v1/adapters/coop/erogazioni/0190c0de-0000-7000-8000-000000000000").await;
    assert_eq!((&v["type"], &v["title"]), (&unknown["type"], &unknown["title"]), "{unknown}");
    assert_eq!(v["detail"], format!("no upload with id {serena_upload}"), "{v}");
    // Events are not for its role at all.
    let (status, v) = gw.get(KEY_AURORA, &format!("/v1/events/{event}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = gw.get(KEY_AURORA, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-03").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) =
        gw.get(KEY_AURORA, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-03&format=csv").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    // Nor can it close the month.
    let (status, v) = gw
        .post_json(KEY_AURORA, "/v1/adapters/coop/chiusure", json!({"tenant": "F205", "mese": "2026-03"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    // The comune's operator of the tenant reads any report of it; another tenant's does not.
    let (status, _) = gw.get(KEY_A, &format!("/v1/adapters/coop/erogazioni/{serena_upload}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = gw.get(KEY_B, &format!("/v1/adapters/coop/erogazioni/{serena_upload}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Every refusal is in the audit log.
    let denied = audit(&gw, "denied").await;
    assert!(denied.iter().filter(|r| r["actor"] == "coop-aurora").count() >= 5, "{denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_hours_beyond_the_progetto_are_flagged_or_rejected_per_tenant() {
    let (_rx, gw) = start().await;
    // The same beneficiary in two comuni, 4 hours a month each: F205 flags, B157 rejects.
    let progetto = || Progetto {
        id: "PRG-ORE-01",
        pseudonimo: "ben-ore",
        cf: Some("FRRNNA41C52F205P"),
        interventi: vec![intervento("SAD", "AURORA", "4")],
    };
    publish(&gw, KEY_A, "F205", &[progetto()]).await;
    publish(&gw, KEY_B, "B157", &[progetto()]).await;
    let csv = sheet(&[
        line("ORE-01", "02/03/2026", "08.00", "10.00", "OP-H1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("ORE-02", "09/03/2026", "08.00", "10.00", "OP-H1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("ORE-03", "16/03/2026", "08.00", "09.00", "OP-H1", "FRRNNA41C52F205P", "ASS.DOM"),
        // Another month starts from zero.
        line("ORE-04", "01/04/2026", "08.00", "10.00", "OP-H1", "FRRNNA41C52F205P", "ASS.DOM"),
    ]);

    let flagged = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, csv.clone()).await;
    let s = &flagged["summary"];
    assert_eq!((s["accepted"].as_u64(), s["flagged"].as_u64()), (Some(4), Some(1)), "{flagged}");
    let r = row(&flagged, 4);
    assert_eq!(r["status"], "accepted", "{flagged}");
    assert_eq!(r["flags"][0]["rule"], "monthly_hours_exceeded", "{r}");
    assert!(r["flags"][0]["message"].as_str().expect("message").contains("5.00 h"), "{r}");
    for n in [2, 3, 5] {
        assert!(row(&flagged, n).get("flags").is_none(), "row {n}: {flagged}");
    }
    // The liquidazione marks the line for review.
    let (status, list) = gw.get(KEY_A, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-03").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list[0]["righe"][0]["da_verificare"], true, "{list}");

    let rejected = report(&gw, KEY_AURORA, "coop-excel-csv", "B157", CSV, csv).await;
    let s = &rejected["summary"];
    assert_eq!((s["accepted"].as_u64(), s["rejected"].as_u64()), (Some(3), Some(1)), "{rejected}");
    assert_rejected(&rejected, 4, None, "monthly_hours_exceeded");
    // A later upload in the same month counts what is already there.
    let more =
        sheet(&[line("ORE-05", "20/03/2026", "08.00", "08.30", "OP-H1", "FRRNNA41C52F205P", "ASS.DOM")]);
    let later = report(&gw, KEY_AURORA, "coop-excel-csv", "B157", CSV, more.clone()).await;
    assert_eq!(later["summary"]["accepted"].as_u64(), Some(0), "{later}");
    assert_rejected(&later, 2, None, "monthly_hours_exceeded");
    let later = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, more).await;
    assert_eq!(row(&later, 2)["flags"][0]["rule"], "monthly_hours_exceeded", "{later}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_close_emits_monthly_prestazioni_and_a_liquidazione_that_adds_up() {
    monthly_close_emits_monthly_prestazioni_and_a_liquidazione_that_adds_up_on("").await;
}

/// The same on the PostgreSQL store (cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_close_emits_monthly_prestazioni_and_a_liquidazione_that_adds_up_on_postgres() {
    let db = PgDb::create().await;
    monthly_close_emits_monthly_prestazioni_and_a_liquidazione_that_adds_up_on(&db.store_config()).await;
}

async fn monthly_close_emits_monthly_prestazioni_and_a_liquidazione_that_adds_up_on(store: &str) {
    let (rx, gw) = start_on(store).await;
    let progetti = sample_progetti();
    publish(&gw, KEY_A, "F205", &progetti).await;
    // October 2026's deliveries of AURORA, one row rejected (it must not count).
    let month = [
        line("MON-01", "01/10/2026", "08.00", "10.00", "OP-M1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("MON-02", "01/10/2026", "10.30", "11.15", "OP-M1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("MON-03", "02/10/2026", "08.00", "09.30", "OP-M1", "VRDLCU45D55F205C", "ASS.DOM"),
        line("MON-04", "02/10/2026", "14.00", "16.20", "OP-M2", "RSSMRA85T10A562S", "ASS.DOM.H"),
        line("MON-05", "05/10/2026", "09.00", "11.00", "OP-M2", "RMNLSS90P01F205Y", "EDU.DIS"),
        line("MON-06", "06/10/2026", "08.10", "08.55", "OP-M1", "FRRNNA41C52F205P", "ASS.DOM"),
        line("MON-07", "06/10/2026", "10.00", "09.00", "OP-M1", "VRDLCU45D55F205C", "ASS.DOM"),
        line("MON-08", "07/10/2026", "15.00", "17.05", "OP-M3", "PLLFNC10B18B157K", "EDU.MIN"),
    ];
    let r = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, sheet(&month)).await;
    assert_eq!(
        (r["summary"]["accepted"].as_u64(), r["summary"]["rejected"].as_u64()),
        (Some(7), Some(1)),
        "{r}"
    );

    // What the comune owes, from the rows themselves: per row hours × tariff of the progetto's
    // intervento (rounded to the cent), split in the progetto's proportion.
    let service = |code: &str| match code {
        "ASS.DOM" => "SAD",
        "ASS.DOM.H" => "SADH",
        "EDU.DIS" => "ADH",
        "EDU.MIN" => "ADM",
        other => panic!("{other}"),
    };
    let mut per_group: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    let (mut importo_total, mut utente_total) = (0, 0);
    for l in month.iter().filter(|l| minutes(l.dalle, l.alle) > 0) {
        let servizio = service(l.servizio);
        let p = progetti
            .iter()
            .find(|p| {
                p.cf == Some(l.cf)
                    && p.interventi.iter().any(|i| i.servizio == servizio && i.cooperativa == "AURORA")
            })
            .expect("progetto");
        let i = p.interventi.iter().find(|i| i.servizio == servizio).expect("intervento");
        let m = minutes(l.dalle, l.alle);
        let importo = round_div(m * cents(i.tariffa), 60);
        let utente = round_div(importo * cents(i.quota_utente), cents(i.quota_ente) + cents(i.quota_utente));
        let g = per_group.entry((p.id.to_string(), servizio.to_string())).or_default();
        *g = (g.0 + m, g.1 + importo, g.2 + utente);
        importo_total += importo;
        utente_total += utente;
    }

    let (status, closing) =
        gw.post_json(KEY_A, "/v1/adapters/coop/chiusure", json!({"tenant": "F205", "mese": "2026-10"})).await;
    assert_eq!(status, StatusCode::OK, "{closing}");
    let events: Vec<String> = closing["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e.as_str().expect("id").to_string())
        .collect();
    assert_eq!(events.len(), per_group.len(), "one per progetto and service: {closing}");
    assert!(closing.get("errors").is_none(), "{closing}");

    // The monthly events reach the receiver with the SIUSS monthly hours.
    rx.wait_distinct(7 + per_group.len(), WAIT).await;
    let bodies = rx.bodies();
    for ((progetto, servizio), (m, importo, utente)) in &per_group {
        let ev = bodies
            .iter()
            .find(|b| {
                b["source"] == "/coop/chiusura-mensile"
                    && b["data"]["idProgetto"] == progetto.as_str()
                    && b["data"]["tipoServizio"] == servizio.as_str()
            })
            .unwrap_or_else(|| panic!("no monthly event for {progetto} {servizio}"));
        assert!(events.contains(&ev["id"].as_str().expect("id").to_string()));
        let d = &ev["data"];
        let ore = round_div(m * 100, 60);
        let ore = format!("{}.{:02}", ore / 100, ore % 100);
        assert_eq!(d["mese"], "2026-10");
        assert_eq!(d["oreServizioMensile"], ore.as_str(), "{progetto} {servizio}");
        assert_eq!(
            (d["dataInizio"].as_str(), d["dataFine"].as_str()),
            (Some("2026-10-01"), Some("2026-10-31"))
        );
        assert_eq!(cents(d["importo"].as_str().expect("importo")), *importo, "{progetto} {servizio}");
        assert_eq!(cents(d["quotaUtente"].as_str().expect("quota")), *utente);
        assert_eq!(cents(d["quotaEnte"].as_str().expect("quota")), importo - utente);
    }

    // The liquidazione as the bilancio office opens it.
    let (status, ctype, text) =
        gw.get_text(KEY_A, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-10&format=csv").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(';').collect()).collect();
    assert_eq!(lines[0][..4], ["cooperativa", "tenant", "mese", "id_progetto"]);
    let total = lines.iter().find(|l| l[0] == "AURORA" && l[3] == "TOTALE").expect("TOTALE line");
    // Each line's hours come from its minutes; the TOTALE adds up the lines, as the office's
    // spreadsheet would.
    for ((progetto, servizio), (m, importo, utente)) in &per_group {
        let l = lines.iter().find(|l| l[3] == progetto.as_str() && l[5] == servizio.as_str()).expect("line");
        assert_eq!(l[7], comma(round_div(m * 100, 60)), "{progetto} {servizio}: {text}");
        assert_eq!((l[8].to_string(), l[10].to_string()), (comma(*importo), comma(*utente)));
    }
    let ore_total: i64 = per_group.values().map(|(m, _, _)| round_div(m * 100, 60)).sum();
    assert_eq!(total[7], comma(ore_total), "hours: {text}");
    assert_eq!(total[8], comma(importo_total), "importo: {text}");
    assert_eq!(total[9], comma(importo_total - utente_total), "quota ente: {text}");
    assert_eq!(total[10], comma(utente_total), "quota utente: {text}");
    let detail: Vec<&Vec<&str>> = lines.iter().skip(1).filter(|l| l[3] != "TOTALE").collect();
    assert_eq!(detail.len(), per_group.len(), "{text}");
    let interventi: u32 = detail.iter().map(|l| l[6].parse::<u32>().expect("interventi")).sum();
    assert_eq!(interventi, 7);
    let to_review = detail.iter().filter(|l| l[11] == "si").count();
    assert_eq!(
        (total[6], total[11]),
        ("7", to_review.to_string().as_str()),
        "TOTALE sums the columns: {text}"
    );
    let (status, json_list) = gw.get(KEY_A, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cents(json_list[0]["importo"].as_str().expect("importo")), importo_total);
    assert_eq!(closing["liquidazioni"], json_list, "the close answers with the same liquidazione");

    // Closing again with nothing changed creates nothing.
    let accepted_before = audit(&gw, "accepted").await.len();
    let (status, again) =
        gw.post_json(KEY_A, "/v1/adapters/coop/chiusure", json!({"tenant": "F205", "mese": "2026-10"})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["events"], closing["events"], "the earlier monthly events");
    assert_eq!(audit(&gw, "accepted").await.len(), accepted_before, "no new event");
    barrier(&gw, &rx, 903).await;
    let monthly = rx.bodies().iter().filter(|b| b["source"] == "/coop/chiusura-mensile").count();
    assert_eq!(monthly, per_group.len(), "nothing new delivered");
}

/// `n` deliveries of one beneficiary in February 2026, 8 visits of 45 minutes per operator and day.
fn big_sheet(n: usize) -> (String, Vec<String>) {
    let mut lines = Vec::new();
    for i in 0..n {
        let (op, slot) = (i / 8, i % 8);
        lines.push(format!(
            "BIG-{i:05};{:02}/02/2026;{:02}.00;{:02}.45;OP-{op:04};FRRNNA41C52F205P;0,75;ASS.DOM;3,5;",
            2 + op % 25,
            8 + slot,
            8 + slot
        ));
    }
    (format!("{HEADER}\r\n{}\r\n", lines.join("\r\n")), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_sent_in_pieces_is_read_as_it_arrives() {
    let (_rx, gw) = start().await;
    let p = Progetto {
        id: "PRG-BIG-01",
        pseudonimo: "ben-big",
        cf: Some("FRRNNA41C52F205P"),
        interventi: vec![intervento("SAD", "AURORA", "9999")],
    };
    publish(&gw, KEY_A, "F205", &[p]).await;
    // 2,500 rows (several chunks of the pipeline), then, far from them, a correction of row 7
    // (BIG-00005: 13.00–13.30 instead of 13.45) and a copy of row 9; then, near them (in the
    // chunk before, which may still be in flight), a copy of row 1,502 and a correction of row
    // 1,802 (BIG-01800: 08.00–08.30 instead of 08.45).
    let (mut text, lines) = big_sheet(2_500);
    for line in [
        lines[5].replace(";13.45;", ";13.30;"),
        lines[7].clone(),
        lines[1_500].clone(),
        lines[1_800].replace(";08.45;", ";08.30;"),
    ] {
        text.push_str(&line);
        text.push_str("\r\n");
    }
    assert!(text.len() < MAX_UPLOAD);
    // No Content-Length: the body arrives in 16 KiB pieces.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        text.as_bytes().chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    let r = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, body).await;
    let s = &r["summary"];
    assert_eq!(
        (s["rows"].as_u64(), s["accepted"].as_u64(), s["corrected"].as_u64(), s["duplicates"].as_u64()),
        (Some(2_504), Some(2_500), Some(2), Some(2)),
        "{s}"
    );
    let numbers: Vec<u64> =
        r["rows"].as_array().expect("rows").iter().filter_map(|r| r["row"].as_u64()).collect();
    assert_eq!(numbers, (2..=2_505).collect::<Vec<u64>>(), "one entry per row, in file order");
    assert_eq!(row(&r, 2_502)["status"], "corrected");
    assert_eq!(row(&r, 2_503)["status"], "duplicate");
    assert_eq!(row(&r, 2_503)["id"], row(&r, 9)["id"], "the copy names the event of row 9: {r}");
    assert_eq!(row(&r, 2_504)["status"], "duplicate");
    assert_eq!(row(&r, 2_504)["id"], row(&r, 1_502)["id"], "the copy names the event of row 1,502");
    assert_eq!(row(&r, 2_505)["status"], "corrected");
    // The report, kept in the store row by row, reads back the same.
    let path = format!("/v1/adapters/coop/erogazioni/{}", r["id"].as_str().expect("id"));
    let (status, stored) = gw.get(KEY_AURORA, &path).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored, r);
    let digest = r["digest"].as_str().expect("digest");
    assert_eq!(digest, hex_sha256(text.as_bytes()), "the digest is the whole file's");
    // The liquidazione counts each corrected visit once, with its new length: 2,498 × 45 + 2 × 30 min.
    let (_, list) = gw.get(KEY_A, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-02").await;
    let minutes = 2_498 * 45 + 2 * 30;
    assert_eq!(
        list[0]["ore"],
        format!("{}.{:02}", minutes / 60, (minutes % 60) * 100 / 60),
        "{}",
        list[0]["ore"]
    );

    // Beyond coop.max_upload_bytes: refused at once when the size is declared...
    let (more, _) = big_sheet(3_500);
    assert!(more.len() > MAX_UPLOAD);
    let (status, v) = upload(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, more.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["detail"].as_str().expect("detail").contains("max_upload_bytes"), "{v}");
    // ...and read up to the limit when it is not: the report says where reading stopped.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        more.as_bytes().chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    let r = report(&gw, KEY_AURORA, "coop-excel-csv", "F205", CSV, body).await;
    let last = r["rows"].as_array().expect("rows").last().expect("a row").clone();
    assert_eq!(last["status"], "rejected", "{last}");
    assert_eq!(last["errors"][0]["rule"], "read_error", "{last}");
    assert!(last["errors"][0]["message"].as_str().expect("message").contains("max_upload_bytes"), "{last}");
    assert!(
        r["summary"]["duplicates"].as_u64() > Some(2_000),
        "rows already sent are duplicates: {}",
        r["summary"]
    );
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
