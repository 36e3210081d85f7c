//! A mapping file (`mappings/coop/<name>.toml`): settings, code tables and the jq program, loaded
//! and compiled once. Nothing here reads a cooperative's file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, Compiler, Ctx, Vars};
use jaq_json::Val;
use regex::Regex;
use serde::Deserialize;

use crate::decode::TextEncoding;
use crate::parse::DateFormat;
use crate::template::Template;

/// The value type programs run on and the data they see: only the lookup table.
type Data = data::JustLut<Val>;
type Filter = jaq_core::Filter<Data>;

/// Field names a program may return (the [`crate::Delivery`] fields, plus `durata_ore`).
pub const FIELDS: &[&str] = &[
    "cooperativa",
    "id_progetto",
    "operatore",
    "beneficiario_pseudonimo",
    "beneficiario_codice_fiscale",
    "tipo_servizio",
    "data",
    "ora_inizio",
    "ora_fine",
    "durata_minuti",
    "durata_ore",
    "km",
    "note",
    "checkin",
    "checkout",
    "id_record",
];

/// Built-in filters a mapping may not use: the environment (secrets), the clock (mappings must be
/// deterministic), stopping the process, writing to the terminal.
const BANNED: &[&str] =
    &["env", "now", "halt", "halt_error", "stderr_empty", "debug_empty", "input", "inputs"];

/// Why a mapping could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    #[error("{}: setting '{field}': {message}", path.display())]
    Setting { path: PathBuf, field: String, message: String },
    #[error("{} line {line}: program: {message}", path.display())]
    Program { path: PathBuf, line: usize, message: String },
    #[error("{}: code table '{table}': {message}", path.display())]
    Table { path: PathBuf, table: String, message: String },
}

/// What the cooperative sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Json,
}

/// The field separator of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    /// The most frequent of `;`, `,` and tab in the header line.
    Auto,
    Byte(u8),
}

/// How decimals are written when a number has both `.` and `,`: the other one groups thousands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decimal {
    Comma,
    Point,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    cooperativa: Option<String>,
    format: Format,
    #[serde(default)]
    extra_services: Vec<String>,
    #[serde(default)]
    csv: Option<RawCsv>,
    #[serde(default)]
    json: Option<RawJson>,
    #[serde(default)]
    code_tables: BTreeMap<String, toml::Spanned<String>>,
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    program: Option<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCsv {
    #[serde(default)]
    delimiter: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    decimal: Option<Decimal>,
    #[serde(default)]
    date_formats: Option<Vec<String>>,
    #[serde(default)]
    skip_rows: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJson {
    #[serde(default)]
    decimal: Option<Decimal>,
    #[serde(default)]
    date_formats: Option<Vec<String>>,
}

/// CSV reading settings.
#[derive(Debug, Clone)]
pub(crate) struct CsvSettings {
    pub delimiter: Delimiter,
    pub encoding: TextEncoding,
    pub skip_rows: Vec<Regex>,
}

/// A loaded, compiled mapping. Cheap to share (`Send + Sync`); compiled once, run per record.
pub struct Mapping {
    pub name: String,
    pub format: Format,
    pub description: Option<String>,
    /// Default cooperative code when the program gives none.
    pub cooperativa: Option<String>,
    pub(crate) path: PathBuf,
    pub(crate) csv: CsvSettings,
    pub(crate) decimal: Decimal,
    pub(crate) date_formats: Vec<DateFormat>,
    pub(crate) extra_services: Vec<String>,
    /// Delivery field → the file's own column (CSV header or JSON pointer), for error locations.
    pub(crate) columns: HashMap<String, String>,
    filter: Filter,
    tables: Val,
    /// The program run without the interpreter, when it is a plain record template.
    template: Option<Template>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Mapping {
    /// `dir/<name>.toml`.
    pub fn load_named(dir: &Path, name: &str) -> Result<Mapping, MappingError> {
        Self::load(&dir.join(format!("{name}.toml")))
    }

    /// Loads a mapping file and the code tables it names (paths relative to the file).
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| MappingError::Io { path: path.into(), source })?;
        Self::from_toml(&text, path)
    }

    /// Parses a mapping from TOML text; `path` names it in errors and locates its code tables.
    pub fn from_toml(text: &str, path: &Path) -> Result<Mapping, MappingError> {
        let mut raw: RawMapping = toml::from_str(text)
            .map_err(|e| MappingError::Toml { path: path.into(), message: e.to_string() })?;
        let setting = |field: &str, message: String| MappingError::Setting {
            path: path.into(),
            field: field.into(),
            message,
        };

        let (csv_raw, json_raw) = (raw.csv.as_ref(), raw.json.as_ref());
        let delimiter = match csv_raw.and_then(|c| c.delimiter.as_deref()).unwrap_or("auto") {
            "auto" => Delimiter::Auto,
            "\\t" | "\t" | "tab" => Delimiter::Byte(b'\t'),
            d if d.len() == 1 && d.is_ascii() => Delimiter::Byte(d.as_bytes()[0]),
            d => {
                return Err(setting("csv.delimiter", format!("'{d}' is not \"auto\" or one ASCII character")))
            }
        };
        let encoding =
            match csv_raw.and_then(|c| c.encoding.as_deref()).unwrap_or("auto").to_ascii_lowercase().as_str()
            {
                "auto" => TextEncoding::Auto,
                "utf-8" | "utf8" => TextEncoding::Utf8,
                "windows-1252" | "cp1252" | "latin1" | "iso-8859-1" => TextEncoding::Windows1252,
                e => {
                    return Err(setting("csv.encoding", format!("'{e}' is not auto, utf-8 or windows-1252")))
                }
            };
        let mut skip_rows = Vec::new();
        for pattern in csv_raw.map(|c| c.skip_rows.as_slice()).unwrap_or_default() {
            skip_rows.push(Regex::new(pattern).map_err(|e| setting("csv.skip_rows", e.to_string()))?);
        }
        let (decimal, formats, section) = match raw.format {
            Format::Csv => (
                csv_raw.and_then(|c| c.decimal).unwrap_or(Decimal::Comma),
                csv_raw.and_then(|c| c.date_formats.clone()),
                "csv.date_formats",
            ),
            Format::Json => (
                json_raw.and_then(|c| c.decimal).unwrap_or(Decimal::Point),
                json_raw.and_then(|c| c.date_formats.clone()),
                "json.date_formats",
            ),
        };
        let formats = formats.unwrap_or_else(|| vec!["dd/mm/yyyy".into(), "yyyy-mm-dd".into()]);
        if formats.is_empty() {
            return Err(setting(section, "give at least one date format".into()));
        }
        let date_formats = formats
            .iter()
            .map(|f| DateFormat::parse(f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| setting(section, m))?;
        for field in raw.columns.keys() {
            if !FIELDS.contains(&field.as_str()) {
                return Err(setting(
                    "columns",
                    format!("'{field}' is not a delivery field ({})", FIELDS.join(", ")),
                ));
            }
        }
        for code in &raw.extra_services {
            if code.trim().is_empty() {
                return Err(setting("extra_services", "an empty service code".into()));
            }
        }

        // `program = '''...'''` written after `[code_tables]` lands inside that table: accept it.
        let program = match raw.program.take() {
            Some(p) => p,
            None => raw.code_tables.remove("program").ok_or_else(|| setting("program", "missing".into()))?,
        };
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let mut tables = jaq_json::Map::default();
        for (name, file) in &raw.code_tables {
            let file = file.get_ref();
            let table = load_table(&dir.join(file)).map_err(|message| MappingError::Table {
                path: path.into(),
                table: name.clone(),
                message: format!("{file}: {message}"),
            })?;
            tables.insert(Val::utf8_str(name.clone()), table);
        }

        let tables = Val::obj(tables);
        let program_line = program_first_line(text, program.span());
        let filter = compile(program.get_ref()).map_err(|(line, message)| MappingError::Program {
            path: path.into(),
            line: program_line + line,
            message,
        })?;

        Ok(Mapping {
            name: raw.name,
            format: raw.format,
            description: raw.description,
            cooperativa: raw.cooperativa.filter(|c| !c.trim().is_empty()),
            path: path.into(),
            csv: CsvSettings { delimiter, encoding, skip_rows },
            decimal,
            date_formats,
            extra_services: raw.extra_services.into_iter().map(|s| s.trim().to_string()).collect(),
            columns: raw.columns.into_iter().chain(guess_columns(program.get_ref())).fold(
                HashMap::new(),
                |mut m, (k, v)| {
                    m.entry(k).or_insert(v);
                    m
                },
            ),
            filter,
            template: Template::parse(program.get_ref(), &tables),
            tables,
        })
    }

    /// Runs the program on one record; the first output, or the program's error in words.
    pub(crate) fn run(&self, input: Val) -> Result<Val, String> {
        if let Some(out) = self.template.as_ref().and_then(|t| t.run(&input)) {
            return Ok(out);
        }
        self.interpret(input)
    }

    /// Runs the program with the jq interpreter.
    fn interpret(&self, input: Val) -> Result<Val, String> {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([self.tables.clone()]));
        let mut out = self.filter.id.run((ctx, input));
        match out.next() {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(match e.get_err() {
                Ok(err) => format!("the mapping program failed: {err}"),
                Err(_) => "the mapping program stopped".to_string(),
            }),
            None => Err("the mapping program gave no output for this record".into()),
        }
    }
}

/// 1-based line in the TOML file where the program text starts.
fn program_first_line(text: &str, span: std::ops::Range<usize>) -> usize {
    let mut start = span.start.min(text.len());
    let value = text.get(start..span.end.min(text.len())).unwrap_or_default();
    if value.starts_with("'''") || value.starts_with("\"\"\"") {
        start += 3;
        // A newline right after the opening delimiter is not part of the string.
        if text[start..].starts_with("\r\n") {
            start += 2;
        } else if text[start..].starts_with('\n') {
            start += 1;
        }
    }
    text.get(..start).unwrap_or_default().matches('\n').count() + 1
}

/// 0-based line of `part` inside `whole`, when `part` points into it.
fn line_in(whole: &str, part: &str) -> usize {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    if p >= w && p <= w + whole.len() {
        whole[..p - w].matches('\n').count()
    } else {
        0
    }
}

/// Parses and compiles a program; errors as (0-based line in the program, message).
fn compile(code: &str) -> Result<Filter, (usize, String)> {
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    // Banned filters stay defined (the standard definitions refer to them) but only fail.
    let funs = jaq_core::funs::<Data>().chain(jaq_std::funs::<Data>()).chain(jaq_json::funs::<Data>()).map(
        |(name, args, native)| {
            if BANNED.contains(&name) {
                (name, args, jaq_core::Native::<Data>::new(banned))
            } else if name == "range" && args.len() == 3 {
                (name, args, jaq_core::Native::<Data>::new(bounded_range))
            } else {
                (name, args, native)
            }
        },
    );
    let arena = Arena::default();
    let loader = Loader::new(defs);
    let modules = loader.load(&arena, File { code, path: () }).map_err(|errs| {
        use jaq_core::load::Error;
        let first = errs.into_iter().next().map(|(_, e)| e);
        match first {
            Some(Error::Lex(es)) => match es.first() {
                Some((expect, at)) => (line_in(code, at), format!("expected {}", expect.as_str())),
                None => (0, "cannot read the program".into()),
            },
            Some(Error::Parse(es)) => match es.first() {
                Some((expect, found)) => {
                    let found = if found.is_empty() { "the end".to_string() } else { format!("'{found}'") };
                    (
                        line_in(code, found_ptr(code, es.first().map(|e| e.1))),
                        format!("expected {}, found {found}", expect.as_str()),
                    )
                }
                None => (0, "cannot parse the program".into()),
            },
            Some(Error::Io(es)) => (0, es.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; ")),
            None => (0, "cannot load the program".into()),
        }
    })?;
    let filter = Compiler::default().with_funs(funs).with_global_vars(["$tables"]).compile(modules).map_err(
        |errs| {
            let first = errs.into_iter().flat_map(|(_, es)| es).next();
            match first {
                Some((name, undefined)) => {
                    let what = match undefined {
                        jaq_core::compile::Undefined::Filter(arity) => format!("filter {name}/{arity}"),
                        other => format!("{} {name}", other.as_str()),
                    };
                    (line_in(code, name), format!("undefined {what}"))
                }
                None => (0, "cannot compile the program".into()),
            }
        },
    )?;
    // See `recursion`: a recursive definition can abort the process, a loop hold an upload.
    if let Some(found) = crate::recursion::unbounded(code) {
        return Err((line_in(code, found.name()), found.to_string()));
    }
    Ok(filter)
}

fn banned<'a>(_: jaq_core::Cv<'a, Data>) -> jaq_core::ValXs<'a, <Data as jaq_core::DataT>::V<'a>> {
    let e =
        jaq_core::Error::str("this filter is not available in mappings (no environment, clock or output)");
    jaq_core::box_iter::box_once(Err(jaq_core::Exn::from(e)))
}

/// Most numbers one `range` yields in a mapping.
const RANGE_MAX: usize = 10_000;

/// jq's `range($from; $to; $by)`, failing after [`RANGE_MAX`] numbers: a bound taken from a cell
/// (`range(.ore | tonumber)` on "1e15"), an infinite one or a step of 0 would otherwise hold the
/// upload for ever. `range/1` and `range/2` are defined through this one.
fn bounded_range<'a>(
    mut cv: jaq_core::Cv<'a, Data>,
) -> jaq_core::ValXs<'a, <Data as jaq_core::DataT>::V<'a>> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let mut next = Some(cv.0.pop_var());
    let direction = by.partial_cmp(&0isize.into()).unwrap_or(Equal);
    let mut yielded = 0;
    Box::new(std::iter::from_fn(move || {
        let x = next.take()?;
        let more = match direction {
            Greater => x < to,
            Less => x > to,
            Equal => x != to,
        };
        if !more {
            return None;
        }
        if yielded == RANGE_MAX {
            let e = format!(
                "range yields more than {RANGE_MAX} numbers here (to {to}, by {by}): a row needs no more"
            );
            return Some(Err(jaq_core::Exn::from(jaq_core::Error::str(e))));
        }
        yielded += 1;
        match x.clone() + by.clone() {
            Ok(n) => next = Some(n),
            Err(e) => return Some(Err(jaq_core::Exn::from(e))),
        }
        Some(Ok(x))
    }))
}

fn found_ptr<'a>(code: &'a str, found: Option<&'a str>) -> &'a str {
    found.unwrap_or(code)
}

/// A code table: a header line, then `code;value` (or `code,value`) lines.
fn load_table(path: &Path) -> Result<Val, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut map = jaq_json::Map::default();
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l).unwrap_or_default();
    let sep = if header.contains(';') { ';' } else { ',' };
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(2, sep);
        let (Some(code), Some(value)) = (parts.next(), parts.next()) else {
            return Err(format!("line {}: expected 'code{sep}value'", i + 1));
        };
        let (code, value) = (code.trim(), value.trim());
        if code.is_empty() || value.is_empty() {
            return Err(format!("line {}: empty code or value", i + 1));
        }
        if map.insert(Val::utf8_str(code.to_string()), Val::utf8_str(value.to_string())).is_some() {
            return Err(format!("line {}: code '{code}' appears twice", i + 1));
        }
    }
    Ok(Val::obj(map))
}

/// Field → source column read off simple programs (`field: .["Col"]`, `field: .col.sub`,
/// `field: $tables.t[.["Col"]]`), used only to say where an error is.
fn guess_columns(program: &str) -> Vec<(String, String)> {
    let re = Regex::new(
        r#"(?m)\b([a-z_]+)\s*:\s*(?:\(?\s*\$tables\.[A-Za-z_]\w*\[\s*)?\.(?:\[\s*"([^"]+)"\s*\]|([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*))"#,
    );
    let Ok(re) = re else { return Vec::new() };
    re.captures_iter(program)
        .filter_map(|c| {
            let field = c.get(1)?.as_str();
            if !FIELDS.contains(&field) {
                return None;
            }
            let column = match (c.get(2), c.get(3)) {
                (Some(q), _) => q.as_str().to_string(),
                (None, Some(p)) => p.as_str().to_string(),
                _ => return None,
            };
            Some((field.to_string(), column))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<Mapping>();
    }

    #[test]
    fn columns_are_read_off_simple_programs() {
        let g = guess_columns(
            r#"{ operatore: .["Operatore"], tipo_servizio: ($tables.servizio[.["Servizio"]] // .["Servizio"]),
                 data: .giorno, checkin: .gps.in, bogus: .x }"#,
        );
        let g: HashMap<_, _> = g.into_iter().collect();
        assert_eq!(g["operatore"], "Operatore");
        assert_eq!(g["tipo_servizio"], "Servizio");
        assert_eq!(g["data"], "giorno");
        assert_eq!(g["checkin"], "gps.in");
        assert!(!g.contains_key("bogus"));
    }

    fn compile_err(program: &str) -> MappingError {
        let toml = format!("name = \"t\"\nformat = \"csv\"\nprogram = '''\n{program}\n'''\n");
        Mapping::from_toml(&toml, Path::new("t.toml")).expect_err("should fail")
    }

    #[test]
    fn program_errors_name_file_and_line() {
        let e = compile_err("{ a: .x,\n  b: foo(1) }").to_string();
        assert!(e.starts_with("t.toml line 5: program: undefined filter foo/1"), "{e}");
        let e = compile_err("{ a: \n (.x | }").to_string();
        assert!(e.contains("program: expected"), "{e}");
    }

    #[test]
    fn a_recursive_definition_is_refused_at_load_naming_its_line() {
        let e = compile_err("def clean: .x | clean;\n{ a: clean }").to_string();
        assert!(e.starts_with("t.toml line 4: program: filter clean/0 calls itself"), "{e}");
    }

    #[test]
    fn a_loop_is_refused_at_load_naming_its_line() {
        let e = compile_err("{ a: .x,\n  b: (.y | until(. > 3; . + 1)) }").to_string();
        assert!(e.starts_with("t.toml line 5: program: filter until/2 loops until a condition holds"), "{e}");
    }

    #[test]
    fn a_range_is_bounded_by_the_mapping_not_by_the_row() {
        let toml = "name = 't'\nformat = 'json'\nprogram = '{ n: ([range(.n | tonumber)] | length) }'\n";
        let m = Mapping::from_toml(toml, Path::new("t.toml")).expect("compiles");
        let run = |n: &str| {
            let input = jaq_json::read::parse_single(format!(r#"{{"n": "{n}"}}"#).as_bytes()).expect("json");
            m.run(input)
        };
        assert_eq!(run("3").expect("runs").to_string(), r#"{"n":3}"#);
        assert_eq!(run("10000").expect("runs").to_string(), r#"{"n":10000}"#);
        for huge in ["10001", "1e15", "Infinity"] {
            let e = run(huge).expect_err("refused");
            assert!(e.contains("range yields more than 10000 numbers"), "{huge}: {e}");
        }
        // A step of 0 never reaches its end.
        let toml = "name = 't'\nformat = 'json'\nprogram = '{ n: ([range(0; 1; 0)] | length) }'\n";
        let m = Mapping::from_toml(toml, Path::new("t.toml")).expect("compiles");
        assert!(m.run(Val::Null).expect_err("refused").contains("range yields more than"));
    }

    #[test]
    fn environment_and_clock_are_not_available() {
        let toml = "name = 't'\nformat = 'json'\nprogram = '{ a: env, b: now }'\n";
        let m = Mapping::from_toml(toml, Path::new("t.toml")).expect("compiles");
        let e = m.run(Val::Null).expect_err("refused at run time");
        assert!(e.contains("not available in mappings"), "{e}");
    }

    #[test]
    fn the_usual_jq_is_there() {
        let toml = r#"name = 't'
format = 'json'
program = '''{ a: (.x | sub(" +"; " ") | ascii_upcase), b: (.y // "d"), c: (.n | tonumber * 60),
  d: (.x | test("^a")), e: ("x;y" | split(";") | length) }'''
"#;
        let m = Mapping::from_toml(toml, Path::new("t.toml")).expect("compiles");
        let input = jaq_json::read::parse_single(br#"{"x": "a   b", "n": "1.5"}"#).expect("json");
        let out = m.run(input).expect("runs").to_string();
        assert_eq!(out, r#"{"a":"A B","b":"d","c":90.0,"d":true,"e":2}"#);
    }

    #[test]
    fn missing_code_table_is_a_mapping_error() {
        // `program` after `[code_tables]`, as people write it, is accepted.
        let toml = "name = \"t\"\nformat = \"csv\"\n[code_tables]\nservizio = \"nope.csv\"\nprogram = '.'\n";
        let e = Mapping::from_toml(toml, Path::new("/nonexistent/t.toml")).expect_err("fails");
        assert!(matches!(e, MappingError::Table { .. }), "{e}");
        assert!(e.to_string().contains("code table 'servizio': nope.csv"), "{e}");
    }

    #[test]
    fn unknown_settings_are_refused() {
        let e =
            Mapping::from_toml("name='t'\nformat='csv'\nprogram='.'\ncolour='red'\n", Path::new("t.toml"))
                .expect_err("fails");
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn shipped_mappings_take_the_fast_path_with_the_interpreters_results() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/coop");
        let csv = Mapping::load_named(&dir, "coop-excel-csv").expect("excel mapping");
        let json = Mapping::load_named(&dir, "coop-json-api").expect("json mapping");
        assert!(csv.template.is_some() && json.template.is_some());
        let record = |cells: &[(&str, &str)]| {
            let mut m = jaq_json::Map::default();
            for (k, v) in cells {
                m.insert(Val::utf8_str(k.to_string()), Val::utf8_str(v.to_string()));
            }
            Val::obj(m)
        };
        let mut records = vec![
            record(&[("ID", "A-1"), ("Data", "02/03/2026"), ("Servizio", "ASS.DOM"), ("CF Utente", "X")]),
            record(&[("ID", ""), ("Servizio", "NOPE"), ("Note", "più")]),
            record(&[]),
        ];
        let sample = std::fs::read(dir.join("samples/coop-json-api.json")).expect("sample");
        let Ok(Val::Obj(o)) = jaq_json::read::parse_single(&sample) else { panic!("sample object") };
        let Some(Val::Arr(items)) = o.get(&Val::utf8_str("erogazioni".to_string())) else { panic!("items") };
        records.extend(items.iter().cloned());
        for r in &records {
            for m in [&csv, &json] {
                let fast = m.template.as_ref().and_then(|t| t.run(r));
                let slow = m.interpret(r.clone());
                match (fast, slow) {
                    (Some(f), Ok(s)) => assert_eq!(f, s, "{} on {r}", m.name),
                    (None, _) => {}
                    (Some(f), Err(e)) => panic!("{}: fast path gave {f}, jq failed with {e}", m.name),
                }
            }
        }
        // Where jq fails the fast path steps aside, and the error is jq's.
        let odd = jaq_json::read::parse_single(br#"{"operatore": "x", "utente": 5}"#).expect("json");
        assert!(json.template.as_ref().and_then(|t| t.run(&odd)).is_none());
        assert!(json.run(odd).is_err());
    }
}
