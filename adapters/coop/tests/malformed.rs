//! Damaged files: whatever bytes a cooperative sends, the reader answers row by row — a delivery,
//! a rejection naming its rule, or a skipped line — and never panics, and one bad line costs only
//! itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use csi_gateway_coop::{read_csv, read_json, Checks, Mapping, RowOutcome, RowResult};
use proptest::prelude::*;
use time::macros::date;

fn mappings_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/coop")
}

fn checks() -> Checks {
    Checks::new(date!(2026 - 11 - 01))
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(mappings_dir().join("samples").join(name)).expect("sample")
}

fn mapping(name: &str) -> Mapping {
    Mapping::load_named(&mappings_dir(), name).expect("mapping loads")
}

/// One damage to a file: a byte replaced, inserted or removed at a position (taken modulo the
/// length). The bytes favour what breaks CSV and JSON: separators, quotes, line ends, NUL,
/// brackets and Windows-1252 / invalid UTF-8 bytes.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn nasty_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(vec![
            b';', b',', b'"', b'\n', b'\r', 0, b'{', b'}', b'[', b']', b':', b'.', b'/'
        ]),
        0x80u8..=0xFF,
        any::<u8>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), nasty_byte()).prop_map(|(p, b)| Edit::Replace(p, b)),
        (any::<usize>(), nasty_byte()).prop_map(|(p, b)| Edit::Insert(p, b)),
        any::<usize>().prop_map(Edit::Remove),
    ]
}

fn damage(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len().max(1);
        match *e {
            Edit::Replace(p, b) if !bytes.is_empty() => bytes[p % len] = b,
            Edit::Insert(p, b) => bytes.insert(p % (bytes.len() + 1), b),
            Edit::Remove(p) if !bytes.is_empty() => {
                bytes.remove(p % len);
            }
            _ => {}
        }
    }
    bytes
}

/// What every answer must be, whatever the input: rows in file order, each rejection naming a
/// rule and saying why, each delivery complete enough to be checked against its progetto and
/// attributed to a cooperative (the mapping's own, when it sets one).
fn assert_well_formed(rows: &[RowResult], cooperativa: Option<&str>) -> Result<(), TestCaseError> {
    for pair in rows.windows(2) {
        prop_assert!(
            pair[0].row < pair[1].row,
            "row numbers go forward: {} then {}",
            pair[0].row,
            pair[1].row
        );
    }
    for r in rows {
        prop_assert!(r.row >= 1);
        match &r.outcome {
            RowOutcome::Rejected(errors) => {
                prop_assert!(!errors.is_empty(), "row {} rejected without a reason", r.row);
                for e in errors {
                    prop_assert!(!e.rule.is_empty() && !e.message.is_empty(), "row {}: {e:?}", r.row);
                }
            }
            RowOutcome::Delivery(d) => {
                match cooperativa {
                    Some(c) => prop_assert_eq!(d.cooperativa.as_str(), c),
                    None => prop_assert!(!d.cooperativa.is_empty()),
                }
                prop_assert!(!d.tipo_servizio.is_empty());
                prop_assert!(d.durata_minuti > 0, "row {}: a delivery of no time", r.row);
            }
            RowOutcome::Skipped { reason } => prop_assert!(!reason.is_empty()),
        }
    }
    Ok(())
}

fn delivered_records(rows: &[RowResult]) -> BTreeSet<String> {
    rows.iter()
        .filter_map(|r| match &r.outcome {
            RowOutcome::Delivery(d) => d.id_record.clone(),
            _ => None,
        })
        .collect()
}

proptest! {
    // Failing inputs are printed (shrunk), not written into the source tree.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_csv_is_answered_row_by_row(edits in prop::collection::vec(edit(), 1..16)) {
        let mapping = mapping("coop-excel-csv");
        let bytes = damage(sample("coop-excel-csv.csv"), &edits);
        let rows: Vec<RowResult> = read_csv(bytes.as_slice(), &mapping, &checks()).collect();
        assert_well_formed(&rows, Some("AURORA"))?;
    }

    #[test]
    fn a_garbage_line_costs_only_itself(
        after in 1usize..22,
        line in "[ -!#-~àèéìòù]{0,120}",
    ) {
        let mapping = mapping("coop-excel-csv");
        let original = sample("coop-excel-csv.csv");
        let expected = delivered_records(&read_csv(original.as_slice(), &mapping, &checks()).collect::<Vec<_>>());
        // After the `after`-th line end, in the file's own encoding.
        let (encoded, _, _) = encoding_rs::WINDOWS_1252.encode(&line);
        let at = original
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(after - 1)
            .map(|(i, _)| i + 1)
            .unwrap_or(original.len());
        let mut bytes = original[..at].to_vec();
        bytes.extend_from_slice(&encoded);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&original[at..]);

        let rows: Vec<RowResult> = read_csv(bytes.as_slice(), &mapping, &checks()).collect();
        assert_well_formed(&rows, Some("AURORA"))?;
        prop_assert_eq!(delivered_records(&rows), expected, "every good row still goes through");
        let rejected = rows.iter().filter(|r| matches!(r.outcome, RowOutcome::Rejected(_))).count();
        prop_assert!(rejected <= 1, "{rejected} rows rejected for one bad line");
    }

    #[test]
    fn a_damaged_json_document_is_answered_not_a_panic(edits in prop::collection::vec(edit(), 1..8)) {
        let mapping = mapping("coop-json-api");
        let bytes = damage(sample("coop-json-api.json"), &edits);
        match read_json(&bytes, &mapping, &checks()) {
            // Items name their cooperative themselves (the damage may change it; the upload then
            // refuses the row as not the client's): only that it is there.
            Ok(rows) => assert_well_formed(&rows, None)?,
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

/// Runs `f` on a thread with the stack of the gateway's blocking threads (tokio's 2 MiB), where
/// uploads are read: a stack overflow there aborts the whole gateway.
fn on_upload_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("thread")
        .join()
        .expect("the reading thread ended normally")
}

#[test]
fn a_json_body_nested_too_deep_is_refused_with_where() {
    let deep = format!(r#"[{{"a": {}{}}}]"#, "[".repeat(100_000), "]".repeat(100_000));
    let err = on_upload_thread(move || read_json(deep.as_bytes(), &mapping("coop-json-api"), &checks()))
        .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("more than 64 levels deep (at byte 69)"), "{text}");

    // As deep as the limit allows is still read: an item made of nested arrays is one rejected row.
    let at_limit = format!("[{}{}]", "[".repeat(63), "]".repeat(63));
    let rows = on_upload_thread(move || read_json(at_limit.as_bytes(), &mapping("coop-json-api"), &checks()))
        .expect("read");
    assert_eq!(rows.len(), 1);
    assert!(matches!(rows[0].outcome, RowOutcome::Rejected(_)), "{:?}", rows[0].outcome);
}

#[test]
fn brackets_in_a_csv_cell_are_only_text() {
    // The same bytes that are refused in a JSON body are a note like any other in a CSV cell.
    let note = "[".repeat(50_000);
    let mut csv = sample("coop-excel-csv.csv");
    csv.extend_from_slice(
        format!("X-1;02/03/2026;08.00;09.00;OP-9;FRRNNA41C52F205P;1,00;ASS.DOM;0;{note}\r\n").as_bytes(),
    );
    let rows: Vec<RowResult> =
        on_upload_thread(move || read_csv(csv.as_slice(), &mapping("coop-excel-csv"), &checks()).collect());
    let last = rows.iter().find_map(|r| match &r.outcome {
        RowOutcome::Delivery(d) if d.id_record.as_deref() == Some("X-1") => Some(d),
        _ => None,
    });
    let last = last.unwrap_or_else(|| panic!("row X-1 goes through: {:?}", rows.last()));
    assert_eq!(last.note.as_ref().map(String::len), Some(50_000));
}
