//! The interchange contracts: every example they carry is valid, and broken copies are not.

use std::path::PathBuf;

use csi_gateway::contracts::{codice_fiscale_is_valid, Contracts};
use serde_json::{json, Value};

fn contracts() -> Contracts {
    Contracts::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts")).expect("contracts load")
}

fn envelope(event_type: &str, data: &Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": "example-1",
        "source": "/tests/contracts",
        "type": event_type,
        "tenant": "F205",
        "subject": "ass-000001",
        "datacontenttype": "application/json",
        "data": data,
    })
}

#[test]
fn every_schema_example_validates() {
    let c = contracts();
    let types: Vec<String> = c.types().map(str::to_string).collect();
    assert!(types.len() >= 8, "the v1 types are all there: {types:?}");
    for t in &types {
        let schema = c.get(&format!("events/{t}.schema.json")).expect("schema");
        let examples = schema["examples"].as_array().unwrap_or_else(|| panic!("{t} has examples"));
        assert!(!examples.is_empty(), "{t} has at least one example");
        for (i, data) in examples.iter().enumerate() {
            let errors = c.validate(&envelope(t, data));
            assert!(errors.is_empty(), "{t} example {i}: {errors:?}");
        }
    }
}

#[test]
fn every_example_event_validates_and_matches_a_contract() {
    let c = contracts();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples folder") {
        let path = entry.expect("entry").path();
        let event: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
        let errors = c.validate(&event);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        seen += 1;
    }
    assert!(seen >= 8, "one example event per type");
}

#[test]
fn codici_fiscali_in_examples_have_valid_check_characters() {
    fn walk(v: &Value, found: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "codiceFiscale" {
                        if let Some(s) = v.as_str() {
                            found.push(s.to_string());
                        }
                    }
                    walk(v, found);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let c = contracts();
    let mut found = Vec::new();
    for info in c.list() {
        walk(c.get(&info.path).expect("schema"), &mut found);
    }
    assert!(!found.is_empty());
    for cf in found {
        assert!(codice_fiscale_is_valid(&cf), "{cf}");
    }
}

#[test]
fn mutated_examples_fail_with_pointer_and_rule() {
    let c = contracts();
    let t = "it.lombardia.csi.prestazione.erogata.v1";
    let schema = c.get(&format!("events/{t}.schema.json")).expect("schema");
    let good = schema["examples"][0].clone();

    let mut wrong_cf = good.clone();
    let cf = wrong_cf["beneficiario"]["codiceFiscale"].as_str().expect("cf").to_string();
    let last = cf.chars().last().expect("char");
    let other = if last == 'A' { 'B' } else { 'A' };
    wrong_cf["beneficiario"]["codiceFiscale"] = json!(format!("{}{other}", &cf[..15]));
    let errors = c.validate(&envelope(t, &wrong_cf));
    assert!(
        errors.iter().any(|e| e.pointer == "/data/beneficiario/codiceFiscale" && e.rule == "format"),
        "{errors:?}"
    );

    let mut missing = good.clone();
    missing.as_object_mut().expect("object").remove("codicePrestazione");
    let errors = c.validate(&envelope(t, &missing));
    assert!(
        errors.iter().any(|e| e.rule == "required" && e.message.contains("codicePrestazione")),
        "{errors:?}"
    );

    let mut money = good.clone();
    money["importo"] = json!(12.5);
    let errors = c.validate(&envelope(t, &money));
    assert!(errors.iter().any(|e| e.pointer == "/data/importo"), "money is a decimal string: {errors:?}");

    let mut extra = good;
    extra["typo"] = json!(true);
    assert!(!c.validate(&envelope(t, &extra)).is_empty(), "unknown fields are refused");

    let mut cf_subject = envelope(t, &schema["examples"][0]);
    cf_subject["subject"] = json!("RSSMRA85T10A562S");
    assert!(
        c.validate(&cf_subject).iter().any(|e| e.pointer == "/subject"),
        "a codice fiscale is never a subject"
    );
    let unknown = envelope("it.lombardia.csi.nonexistent.v1", &json!({}));
    assert!(c.validate(&unknown).iter().any(|e| e.rule == "known_type"));
}
