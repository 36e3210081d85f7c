//! The regional interchange specification: loads `contracts/`, compiles one validator per event
//! type once, and validates CloudEvents against the envelope and the type's `data` schema.
//!
//! This module does no I/O after [`Contracts::load`] and knows nothing of HTTP.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use jsonschema::{Retrieve, Uri, Validator};
use serde::Serialize;
use serde_json::Value;

/// Where every contract's `$id` starts. A stable identifier, not a location.
pub const ID_BASE: &str = "https://csi-gateway.invalid/contracts/";

/// One violated rule, located by JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer of the offending value in the submitted event (e.g. `/data/beneficiario/codiceFiscale`).
    pub pointer: String,
    /// The rule, by JSON Schema keyword or gateway rule name (e.g. `format`, `required`, `max_depth`).
    pub rule: String,
    /// What is wrong, in plain words.
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, rule: impl Into<String>, message: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), rule: rule.into(), message: message.into() }
    }
}

/// A contract file as served under `/contracts/`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContractInfo {
    /// Path under `contracts/`, e.g. `events/it.lombardia.csi.prestazione.erogata.v1.schema.json`.
    pub path: String,
    /// The schema's `$id`.
    pub id: String,
    /// The event type, for event schemas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The schema's title.
    pub title: String,
}

/// Errors loading the contracts folder.
#[derive(Debug, thiserror::Error)]
pub enum ContractsError {
    #[error("cannot read contracts folder {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: not a usable JSON Schema 2020-12: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("contracts folder {0} has no envelope.schema.json")]
    NoEnvelope(PathBuf),
}

/// All contracts, compiled.
pub struct Contracts {
    root: PathBuf,
    envelope: Validator,
    types: HashMap<String, Validator>,
    files: BTreeMap<String, (ContractInfo, Value)>,
}

impl std::fmt::Debug for Contracts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contracts").field("root", &self.root).field("types", &self.types.len()).finish()
    }
}

struct InMemory(HashMap<String, Value>);

impl Retrieve for InMemory {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0.get(uri.as_str()).cloned().ok_or_else(|| format!("no contract with $id {uri}").into())
    }
}

impl Contracts {
    /// The first contracts folder that exists among the configured one, `./contracts`, and the
    /// one in the source tree this binary was built from.
    pub fn locate(configured: Option<&Path>) -> PathBuf {
        if let Some(p) = configured {
            return p.to_path_buf();
        }
        let local = PathBuf::from("contracts");
        if local.join("envelope.schema.json").exists() {
            return local;
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts")
    }

    /// Reads every `*.schema.json` under `root` and compiles the validators.
    pub fn load(root: &Path) -> Result<Self, ContractsError> {
        let mut files = BTreeMap::new();
        let mut by_id = HashMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).map_err(|source| ContractsError::Io { path: dir.clone(), source })?;
            for entry in entries {
                let path = entry.map_err(|source| ContractsError::Io { path: dir.clone(), source })?.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if !name.ends_with(".schema.json") {
                    continue;
                }
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ContractsError::Io { path: path.clone(), source })?;
                let value: Value = serde_json::from_str(&text)
                    .map_err(|source| ContractsError::Json { path: path.clone(), source })?;
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                let id = value.get("$id").and_then(Value::as_str).unwrap_or_default().to_string();
                if !id.starts_with(ID_BASE) {
                    return Err(ContractsError::Schema {
                        path,
                        message: format!("$id must start with {ID_BASE}"),
                    });
                }
                let event_type = rel
                    .strip_prefix("events/")
                    .and_then(|n| n.strip_suffix(".schema.json"))
                    .map(str::to_string);
                let title = value.get("title").and_then(Value::as_str).unwrap_or_default().to_string();
                by_id.insert(id.clone(), value.clone());
                files.insert(rel.clone(), (ContractInfo { path: rel, id, event_type, title }, value));
            }
        }
        let compile = |rel: &str, schema: &Value| {
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .with_format("codice-fiscale", codice_fiscale_is_valid)
                .with_retriever(InMemory(by_id.clone()))
                .build(schema)
                .map_err(|e| ContractsError::Schema { path: root.join(rel), message: e.to_string() })
        };
        let (_, envelope_schema) = files
            .get("envelope.schema.json")
            .ok_or_else(|| ContractsError::NoEnvelope(root.to_path_buf()))?;
        let envelope = compile("envelope.schema.json", envelope_schema)?;
        let mut types = HashMap::new();
        for (rel, (info, schema)) in &files {
            if let Some(t) = &info.event_type {
                types.insert(t.clone(), compile(rel, schema)?);
            }
        }
        Ok(Self { root: root.to_path_buf(), envelope, types, files })
    }

    /// Every contract file, sorted by path.
    pub fn list(&self) -> impl Iterator<Item = &ContractInfo> {
        self.files.values().map(|(info, _)| info)
    }

    /// A contract by path under `contracts/`.
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.files.get(path).map(|(_, v)| v)
    }

    /// The event types known.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// The `$id` of the data schema of `event_type`.
    pub fn schema_id(&self, event_type: &str) -> Option<&str> {
        self.files.get(&format!("events/{event_type}.schema.json")).map(|(i, _)| i.id.as_str())
    }

    /// Validates one CloudEvent: envelope first, then `data` against its type. Every error is
    /// reported, not just the first.
    pub fn validate(&self, event: &Value) -> Vec<FieldError> {
        // Most events are valid: the yes/no check is cheaper than collecting errors.
        let event_type = event.get("type").and_then(Value::as_str);
        let data_valid = match (event_type.and_then(|t| self.types.get(t)), event.get("data")) {
            (Some(v), Some(data)) => v.is_valid(data),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if data_valid && self.envelope.is_valid(event) {
            return Vec::new();
        }
        let mut errors: Vec<FieldError> = self.envelope.iter_errors(event).map(to_field_error("")).collect();
        let Some(event_type) = event.get("type").and_then(Value::as_str) else { return errors };
        match self.types.get(event_type) {
            None if errors.iter().all(|e| e.pointer != "/type") => errors.push(FieldError::new(
                "/type",
                "known_type",
                format!("no contract for event type '{event_type}' (see GET /contracts)"),
            )),
            None => {}
            Some(v) => {
                if let Some(data) = event.get("data") {
                    errors.extend(v.iter_errors(data).map(to_field_error("/data")));
                }
            }
        }
        errors
    }
}

fn to_field_error(prefix: &'static str) -> impl Fn(jsonschema::ValidationError<'_>) -> FieldError {
    move |e| {
        let rule = e
            .schema_path()
            .as_str()
            .rsplit('/')
            .find(|s| !s.chars().all(|c| c.is_ascii_digit()))
            .unwrap_or("schema")
            .to_string();
        let message = match e.kind() {
            jsonschema::error::ValidationErrorKind::Format { format } if format == "codice-fiscale" => {
                "not a valid codice fiscale (shape or check character)".to_string()
            }
            _ => e.masked().to_string(),
        };
        FieldError { pointer: format!("{prefix}{}", e.instance_path().as_str()), rule, message }
    }
}

/// Whether `cf` is a well-formed 16-character personal codice fiscale with the right check
/// character (omocodia substitutions accepted).
pub fn codice_fiscale_is_valid(cf: &str) -> bool {
    const ODD: [u32; 26] =
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];
    const OMOCODIA: &[u8] = b"LMNPQRSTUV";
    let b = cf.as_bytes();
    if b.len() != 16 {
        return false;
    }
    let letter = |i: usize| b[i].is_ascii_uppercase();
    let digitish = |i: usize| b[i].is_ascii_digit() || OMOCODIA.contains(&b[i]);
    let shape = (0..6).all(letter)
        && [6, 7, 9, 10, 12, 13, 14].into_iter().all(digitish)
        && b"ABCDEHLMPRST".contains(&b[8])
        && letter(11)
        && letter(15);
    if !shape {
        return false;
    }
    let value = |c: u8| -> usize {
        if c.is_ascii_digit() {
            (c - b'0') as usize
        } else {
            (c - b'A') as usize
        }
    };
    let sum: u32 = b[..15]
        .iter()
        .enumerate()
        .map(|(i, &c)| if i % 2 == 0 { ODD[value(c)] } else { value(c) as u32 })
        .sum();
    b[15] == b'A' + (sum % 26) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codice_fiscale_check_character() {
        assert!(codice_fiscale_is_valid("RSSMRA85T10A562S"));
        assert!(!codice_fiscale_is_valid("RSSMRA85T10A562T"), "wrong check character");
        assert!(!codice_fiscale_is_valid("RSSMRA85T10A562"), "too short");
        assert!(!codice_fiscale_is_valid("rssmra85t10a562s"), "lower case");
        // Omocodia: digits replaced by letters keep the person identifiable; check recomputed.
        assert!(codice_fiscale_is_valid("RSSMRA85T10A56NH"));
    }
}
