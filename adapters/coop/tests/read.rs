//! The reader end to end: the shipped mappings and samples, and the files cooperatives really send.

use std::io::Read;
use std::path::{Path, PathBuf};

use csi_gateway_coop::{read_csv, read_json, Checks, Delivery, Mapping, RowError, RowOutcome, RowResult};
use time::macros::{date, time};

fn mappings_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/coop")
}

fn today() -> Checks {
    Checks::new(date!(2026 - 11 - 01))
}

fn deliveries(rows: &[RowResult]) -> Vec<&Delivery> {
    rows.iter()
        .filter_map(|r| match &r.outcome {
            RowOutcome::Delivery(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn rejections(rows: &[RowResult]) -> Vec<(u64, &Vec<RowError>)> {
    rows.iter()
        .filter_map(|r| match &r.outcome {
            RowOutcome::Rejected(e) => Some((r.row, e)),
            _ => None,
        })
        .collect()
}

fn skipped(rows: &[RowResult]) -> Vec<u64> {
    rows.iter().filter(|r| matches!(r.outcome, RowOutcome::Skipped { .. })).map(|r| r.row).collect()
}

/// A CSV mapping like the Excel one, in a temporary folder with its code table.
struct Temp {
    _dir: tempfile::TempDir,
    mapping: Mapping,
}

fn excel_like(csv_settings: &str) -> Temp {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("servizi.csv"), "codice_coop;tipo_servizio\nASS.DOM;SAD\nEDU.MIN;ADM\n")
        .expect("table");
    let toml = format!(
        r#"name = "t"
cooperativa = "AURORA"
format = "csv"
program = '''
{{ id_record: .["ID"], operatore: .["Operatore"], beneficiario_codice_fiscale: .["CF Utente"],
  tipo_servizio: $tables.servizio[.["Servizio"]], data: .["Data"], ora_inizio: .["Dalle"],
  ora_fine: .["Alle"], km: .["Km"], note: .["Note"] }}
'''
[csv]
{csv_settings}
skip_rows = ["^\\s*TOTALE"]
[code_tables]
servizio = "servizi.csv"
[columns]
tipo_servizio = "Servizio"
"#
    );
    let path = dir.path().join("t.toml");
    std::fs::write(&path, toml).expect("mapping");
    let mapping = Mapping::load(&path).expect("loads");
    Temp { _dir: dir, mapping }
}

fn read(mapping: &Mapping, bytes: &[u8]) -> Vec<RowResult> {
    let checks = today();
    read_csv(bytes, mapping, &checks).collect()
}

const HEADER: &str = "ID;Data;Operatore;CF Utente;Servizio;Dalle;Alle;Km;Note\n";

#[test]
fn excel_sample_maps_every_row() {
    let mapping = Mapping::load_named(&mappings_dir(), "coop-excel-csv").expect("loads");
    let bytes = std::fs::read(mappings_dir().join("samples/coop-excel-csv.csv")).expect("sample");
    assert!(std::str::from_utf8(&bytes).is_err(), "the sample is Windows-1252 bytes");
    let rows = read(&mapping, &bytes);
    assert_eq!(rejections(&rows), vec![], "no rejections");
    let ds = deliveries(&rows);
    assert_eq!(ds.len(), 20);
    // Header row 1, data rows 2..=11, a blank line (12), rows 13..=22, TOTALE (23).
    assert_eq!(skipped(&rows), vec![12, 23]);
    assert_eq!(rows.last().map(|r| r.row), Some(23));
    let minutes: u32 = ds.iter().map(|d| d.durata_minuti).sum();
    assert_eq!(minutes, 42 * 60 + 30, "the TOTALE row says 42,5 hours");
    let embedded =
        ds.iter().find(|d| d.note.as_deref().is_some_and(|n| n.contains('\n'))).expect("multi-line note");
    assert_eq!(embedded.note.as_deref(), Some("Compiti; poi uscita al parco\ncon la madre"));
    assert!(ds.iter().any(|d| d.note.as_deref() == Some("visita più lunga per medicazione")));
    let first = ds[0];
    assert_eq!(first.cooperativa, "AURORA");
    assert_eq!(first.tipo_servizio, "SADH");
    assert_eq!(first.data, date!(2026 - 03 - 02));
    assert_eq!((first.ora_inizio, first.ora_fine), (Some(time!(08:00)), Some(time!(10:00))));
    assert_eq!(first.km.as_deref(), Some("12.50"));
    assert_eq!(first.ore(), "2.00");
    assert_eq!(first.idempotency_key(), "coop:AURORA:AUR-26-0101");
    // The record after the multi-line one keeps its spreadsheet row number.
    let after = rows.iter().find(
        |r| matches!(&r.outcome, RowOutcome::Delivery(d) if d.id_record.as_deref() == Some("AUR-26-0106")),
    );
    assert_eq!(after.map(|r| r.row), Some(7));
}

#[test]
fn json_sample_maps_every_item() {
    let mapping = Mapping::load_named(&mappings_dir(), "coop-json-api").expect("loads");
    let bytes = std::fs::read(mappings_dir().join("samples/coop-json-api.json")).expect("sample");
    let rows = read_json(&bytes, &mapping, &today()).expect("reads");
    assert_eq!(rejections(&rows), vec![]);
    let ds = deliveries(&rows);
    assert!(ds.len() >= 10);
    assert_eq!(rows.iter().map(|r| r.row).collect::<Vec<_>>(), (1..=rows.len() as u64).collect::<Vec<_>>());
    let d = ds[0];
    assert_eq!(d.cooperativa, "SERENA");
    assert_eq!(d.id_progetto.as_deref(), Some("PRG-2026-0012"));
    assert_eq!(d.checkin, Some((45.4773, 9.1815)));
    assert_eq!(d.km.as_deref(), Some("7.40"));
    assert_eq!(d.ore(), "1.50");
    assert!(ds
        .iter()
        .any(|d| d.beneficiario_codice_fiscale.is_none() && d.beneficiario_pseudonimo.is_some()));
}

#[test]
fn json_errors_point_into_the_document() {
    let mapping = Mapping::load_named(&mappings_dir(), "coop-json-api").expect("loads");
    let body = br#"[{"id":"1","operatore":{"id":"OP"},"utente":{"codiceFiscale":"RSSMRA85T10A562X"},
        "servizio":"SAD","data":"2026-04-01","inizio":"09:00","fine":"10:00"}]"#;
    let rows = read_json(body, &mapping, &today()).expect("reads");
    let (_, errors) = rejections(&rows)[0];
    assert_eq!(errors[0].rule, "codice_fiscale");
    assert_eq!(errors[0].column.as_deref(), Some("/0/utente/codiceFiscale"));
    assert!(read_json(b"{\"x\": 1}", &mapping, &today()).is_err());
    assert!(read_json(b"[1,", &mapping, &today()).is_err());
}

#[test]
fn bom_utf8_comma_delimiter_and_colon_times() {
    let t = excel_like("decimal = \"point\"");
    let csv = "\u{feff}ID,Data,Operatore,CF Utente,Servizio,Dalle,Alle,Km,Note\n\
               1,2026-03-02,OP1,RSSMRA85T10A562S,ASS.DOM,09:00,10:30,3.5,\"già fatto, più tardi\"\n";
    let rows = read(&t.mapping, csv.as_bytes());
    let ds = deliveries(&rows);
    assert_eq!(ds.len(), 1, "{rows:?}");
    assert_eq!(ds[0].id_record.as_deref(), Some("1"), "BOM stripped from the first header");
    assert_eq!(ds[0].note.as_deref(), Some("già fatto, più tardi"));
    assert_eq!(ds[0].km.as_deref(), Some("3.50"));
    assert_eq!(ds[0].durata_minuti, 90);
}

#[test]
fn windows_1252_and_utf8_accents_decode_the_same() {
    let t = excel_like("encoding = \"auto\"");
    let text = format!("{HEADER}1;02/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;9.00;10.00;1,5;visita più lunga\n");
    let cp = latin1(&text);
    let a = read(&t.mapping, text.as_bytes());
    let b = read(&t.mapping, &cp);
    assert_eq!(deliveries(&a)[0].note.as_deref(), Some("visita più lunga"));
    assert_eq!(deliveries(&a), deliveries(&b));
}

/// Windows-1252 bytes of a Latin-1 text (enough for Italian accents).
fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| u8::try_from(u32::from(c)).expect("latin-1")).collect()
}

#[test]
fn spreadsheet_oddities() {
    let t = excel_like("");
    let csv = format!(
        "{HEADER}\
         1;05/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;9.00;10.00;12,50;\"nota su\ndue righe; con separatore\"\n\
         \n\
         ;;;;;;;;\n\
         2;5/3/2026;OP1;FRRNNA41C52F205P;EDU.MIN;10:00;11:15;0,5;\n\
         TOTALE;;;;;;;13;\n"
    );
    let rows = read(&t.mapping, csv.as_bytes());
    assert_eq!(rejections(&rows), vec![]);
    let ds = deliveries(&rows);
    assert_eq!(ds.len(), 2);
    assert_eq!(ds[0].note.as_deref(), Some("nota su\ndue righe; con separatore"));
    assert_eq!(ds[1].ora_inizio, Some(time!(10:00)));
    assert_eq!(ds[1].km.as_deref(), Some("0.50"));
    assert_eq!(ds[1].tipo_servizio, "ADM");
    assert_eq!(rows.iter().map(|r| r.row).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6]);
    assert_eq!(skipped(&rows), vec![3, 4, 6]);
}

#[test]
fn three_bad_rows_among_good_ones() {
    let t = excel_like("");
    let csv = format!(
        "{HEADER}\
         1;02/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;8.00;9.00;;\n\
         2;02/03/2026;OP2;RSSMRA85T10A562X;ASS.DOM;8.00;9.00;;\n\
         3;02/03/2026;OP3;FRRNNA41C52F205P;PULIZIE;8.00;9.00;;\n\
         4;02/03/2026;OP4;FRRNNA41C52F205P;ASS.DOM;11.00;10.00;;\n\
         5;03/03/2026;OP1;FRRNNA41C52F205P;EDU.MIN;8.00;9.00;;\n"
    );
    let rows = read(&t.mapping, csv.as_bytes());
    let bad = rejections(&rows);
    assert_eq!(bad.len(), 3);
    assert_eq!(deliveries(&rows).len(), 2);
    let rule = |row: u64| bad.iter().find(|(r, _)| *r == row).map(|(_, e)| e[0].clone()).expect("rejected");
    let cf = rule(3);
    assert_eq!((cf.rule.as_str(), cf.column.as_deref()), ("codice_fiscale", Some("CF Utente")));
    let svc = rule(4);
    assert_eq!((svc.rule.as_str(), svc.column.as_deref()), ("unknown_service", Some("Servizio")));
    assert!(svc.message.contains("PULIZIE"));
    let time = rule(5);
    assert_eq!((time.rule.as_str(), time.column.as_deref()), ("end_before_start", Some("Alle")));
}

#[test]
fn a_nul_or_control_character_in_a_cell_costs_its_row_only() {
    let t = excel_like("");
    let csv = format!(
        "{HEADER}\
         1;02/03/2026;OP1;FRRNNA41C52F205P;ASS.DOM;8.00;9.00;;\n\
         2;02/03/2026;OP\u{0}2;FRRNNA41C52F205P;ASS.DOM;10.00;11.00;;\n\
         3;03/03/2026;OP1;FRRNNA41C52F205P;ASS.DOM;8.00;9.00;;visita\u{0}\n\
         4\u{1}B;04/03/2026;OP1;FRRNNA41C52F205P;ASS.DOM;8.00;9.00;;a\tcapo\n"
    );
    let rows = read(&t.mapping, csv.as_bytes());
    assert_eq!(deliveries(&rows).len(), 1);
    let bad = rejections(&rows);
    let found: Vec<(u64, &str, Option<&str>)> =
        bad.iter().map(|(r, e)| (*r, e[0].rule.as_str(), e[0].column.as_deref())).collect();
    assert_eq!(
        found,
        [
            (3, "nul_character", Some("Operatore")),
            (4, "nul_character", Some("Note")),
            (5, "control_character", Some("ID"))
        ]
    );
}

/// A CSV mapping that takes the duration from hours or minutes columns instead of times.
fn durations_only() -> Temp {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = r#"name = "t"
cooperativa = "AURORA"
format = "csv"
program = '''
{ id_record: .["ID"], operatore: .["Operatore"], beneficiario_codice_fiscale: .["CF Utente"],
  tipo_servizio: .["Servizio"], data: .["Data"], durata_ore: .["Ore"], durata_minuti: .["Minuti"] }
'''
[columns]
durata_ore = "Ore"
durata_minuti = "Minuti"
"#;
    let path = dir.path().join("t.toml");
    std::fs::write(&path, toml).expect("mapping");
    let mapping = Mapping::load(&path).expect("loads");
    Temp { _dir: dir, mapping }
}

#[test]
fn a_duration_too_big_to_count_is_out_of_range_not_wrapped_round() {
    let t = durations_only();
    // In u64 hundredths, row 3's hours times 60 wrap round to 1 minute and row 4's minutes to 0.
    let csv = "ID;Data;Operatore;CF Utente;Servizio;Ore;Minuti\n\
               1;02/03/2026;OP1;RSSMRA85T10A562S;SAD;1,5;\n\
               2;02/03/2026;OP2;RSSMRA85T10A562S;SAD;15372286728091293,03;\n\
               3;02/03/2026;OP3;RSSMRA85T10A562S;SAD;;184467440737095516,15\n\
               4;02/03/2026;OP4;RSSMRA85T10A562S;SAD;;45\n";
    let rows = read(&t.mapping, csv.as_bytes());
    let minutes: Vec<u32> = deliveries(&rows).iter().map(|d| d.durata_minuti).collect();
    assert_eq!(minutes, vec![90, 45], "the rows around the bad ones go through");
    let bad = rejections(&rows);
    let found: Vec<(u64, &str, Option<&str>)> =
        bad.iter().map(|(row, e)| (*row, e[0].rule.as_str(), e[0].column.as_deref())).collect();
    assert_eq!(found, vec![(3, "duration_range", Some("Ore")), (4, "duration_range", Some("Minuti"))]);
    assert_eq!(
        bad[0].1[0].message,
        "a duration of 922337203685477582 minutes is outside 1 minute – 24 hours"
    );
    assert_eq!(
        bad[1].1[0].message,
        "a duration of 184467440737095516 minutes is outside 1 minute – 24 hours"
    );
}

#[test]
fn overlap_future_date_and_all_problems_of_a_row() {
    let t = excel_like("");
    let csv = format!(
        "{HEADER}\
         1;02/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;8.00;10.00;;\n\
         2;02/03/2026;OP1;FRRNNA41C52F205P;ASS.DOM;9.30;11.00;;\n\
         3;02/03/2026;OP1;FRRNNA41C52F205P;ASS.DOM;10.00;11.00;;\n\
         4;15/12/2026;OP2;FRRNNA41C52F205P;ASS.DOM;10.00;11.00;;\n\
         5;31/02/2026;OP2;BADCF;NOPE;25.00;11.00;dodici;\n"
    );
    let rows = read(&t.mapping, csv.as_bytes());
    let bad = rejections(&rows);
    let rules = |row: u64| -> Vec<String> {
        bad.iter()
            .find(|(r, _)| *r == row)
            .map(|(_, e)| e.iter().map(|e| e.rule.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(rules(3), vec!["overlap"]);
    assert!(bad.iter().find(|(r, _)| *r == 3).is_some_and(|(_, e)| e[0].message.contains("row 2")));
    assert_eq!(rules(4), Vec::<String>::new(), "touching intervals do not overlap");
    assert_eq!(rules(5), vec!["future_date"]);
    let mut all = rules(6);
    all.sort();
    assert_eq!(all, vec!["codice_fiscale", "date_format", "number_format", "time_format", "unknown_service"]);
}

#[test]
fn idempotency_keys_are_stable_and_follow_the_record_id() {
    let t = excel_like("");
    let csv = format!(
        "{HEADER}\
         A1;02/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;8.00;10.00;;\n\
         ;03/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;8.00;10.00;;prima\n"
    );
    let keys = |csv: &str| -> Vec<String> {
        deliveries(&read(&t.mapping, csv.as_bytes())).iter().map(|d| d.idempotency_key()).collect()
    };
    let first = keys(&csv);
    assert_eq!(first, keys(&csv), "same file, same keys");
    assert_eq!(first[0], "coop:AURORA:A1");
    assert!(first[1].starts_with("content:") && first[1].len() == "content:".len() + 64);
    // A corrected row keeps its record id and so its key; without an id, the identifying fields count.
    let corrected = csv.replace(
        "A1;02/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;8.00;10.00",
        "A1;02/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;8.00;11.00",
    );
    assert_eq!(keys(&corrected)[0], first[0]);
    assert_eq!(keys(&csv.replace(";prima", ";seconda"))[1], first[1], "a note does not identify");
    let later = csv.replace(
        "\n;03/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;8.00",
        "\n;03/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;8.30",
    );
    assert_ne!(later, csv);
    assert_ne!(keys(&later)[1], first[1], "another start time is another delivery");
}

#[test]
fn delivery_serializes_plainly() {
    let t = excel_like("");
    let csv = format!("{HEADER}A1;02/03/2026;OP1;RSSMRA85T10A562S;ASS.DOM;8.00;10.00;3,2;\n");
    let rows = read(&t.mapping, csv.as_bytes());
    let d = deliveries(&rows)[0].clone();
    let json = serde_json::to_value(&d).expect("serializes");
    assert_eq!(json["data"], "2026-03-02");
    assert_eq!(json["ora_inizio"], "08:00");
    assert_eq!(json["km"], "3.20");
    let back: Delivery = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, d);
}

/// Generates a CSV of `n` valid rows on the fly, never holding more than one line.
struct Generated {
    n: u64,
    i: u64,
    line: Vec<u8>,
    pos: usize,
}

impl Generated {
    fn new(n: u64) -> Self {
        Self { n, i: 0, line: HEADER.as_bytes().to_vec(), pos: 0 }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.line.len() {
            if self.i == self.n {
                return Ok(0);
            }
            let i = self.i;
            // 8 non-overlapping slots per operator-day, 500 operators, 50 days.
            let slot = i % 8;
            let op = (i / 8) % 500;
            let day = i / 4000;
            let d = date!(2026 - 01 - 01) + time::Duration::days(day as i64);
            self.line = format!(
                "R{i};{:02}/{:02}/{};OP{op};RSSMRA85T10A562S;ASS.DOM;{:02}.00;{:02}.45;1,5;nota {i}\n",
                d.day(),
                u8::from(d.month()),
                d.year(),
                8 + slot,
                8 + slot
            )
            .into_bytes();
            self.pos = 0;
            self.i += 1;
        }
        let n = buf.len().min(self.line.len() - self.pos);
        buf[..n].copy_from_slice(&self.line[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn streams_200k_rows_without_holding_them() {
    let t = excel_like("");
    let checks = today();
    let (mut good, mut last) = (0u64, 0u64);
    for r in read_csv(Generated::new(200_000), &t.mapping, &checks) {
        match r.outcome {
            RowOutcome::Delivery(_) => good += 1,
            RowOutcome::Rejected(e) => panic!("row {} rejected: {e:?}", r.row),
            RowOutcome::Skipped { .. } => {}
        }
        last = r.row;
    }
    assert_eq!((good, last), (200_000, 200_001));
}

#[test]
fn mapping_errors_name_the_file() {
    let e = Mapping::load_named(&mappings_dir(), "does-not-exist").expect_err("missing");
    assert!(e.to_string().contains("does-not-exist.toml"), "{e}");
}
