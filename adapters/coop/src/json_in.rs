//! JSON in: an array of deliveries, or `{"erogazioni": [...]}`, each item through the mapping.

use jaq_json::Val;

use crate::row::{self, Locate};
use crate::{Checks, Mapping, RowResult};

/// Why a JSON body as a whole cannot be read (a bad item is a rejected row instead).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("expected a JSON array of deliveries or an object with an \"erogazioni\" array, found {0}")]
    Shape(&'static str),
    #[error("the body nests arrays and objects more than {MAX_DEPTH} levels deep (at byte {offset}): a delivery needs a few")]
    TooDeep { offset: usize },
}

/// Most levels of nested arrays and objects a body may have. A delivery is an object of scalars,
/// sometimes with an object or two inside (coordinates, the beneficiary); the body is an array of
/// them, maybe inside an object. Parsing and mapping recurse once per level, so the limit keeps a
/// body built to be deep from exhausting the reading thread's stack (and aborting the gateway).
pub const MAX_DEPTH: usize = 64;

/// Reads a JSON body through `mapping`: one [`RowResult`] per item, `row` = index + 1.
pub fn read_json(input: &[u8], mapping: &Mapping, checks: &Checks) -> Result<Vec<RowResult>, InputError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    if let Some(offset) = csi_gateway_sdk::json::nesting_exceeds(input, MAX_DEPTH) {
        return Err(InputError::TooDeep { offset });
    }
    let value = jaq_json::read::parse_single(input).map_err(|e| InputError::Json(e.to_string()))?;
    let (items, prefix) = match value {
        Val::Arr(items) => (items, ""),
        Val::Obj(o) => match o.get(&Val::utf8_str("erogazioni".to_string())) {
            Some(Val::Arr(items)) => (items.clone(), "/erogazioni"),
            _ => return Err(InputError::Shape("an object without an \"erogazioni\" array")),
        },
        Val::Null => return Err(InputError::Shape("null")),
        Val::Bool(_) => return Err(InputError::Shape("a boolean")),
        Val::Num(_) => return Err(InputError::Shape("a number")),
        Val::TStr(_) | Val::BStr(_) => return Err(InputError::Shape("a string")),
    };
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = JsonItem { mapping, item, pointer: format!("{prefix}/{i}") };
            let output = mapping.run(item.clone());
            RowResult { row: i as u64 + 1, outcome: row::build(mapping, checks, output, &at, i as u64 + 1) }
        })
        .collect())
}

struct JsonItem<'a> {
    mapping: &'a Mapping,
    item: &'a Val,
    pointer: String,
}

/// `"a.b"` or `"/a/b"` (relative to the item) → a JSON pointer segment list.
fn segments(path: &str) -> Vec<String> {
    let sep = if path.starts_with('/') { '/' } else { '.' };
    path.split(sep).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl JsonItem<'_> {
    fn at(&self, segs: &[String]) -> String {
        let mut p = self.pointer.clone();
        for s in segs {
            p.push('/');
            p.push_str(&escape(s));
        }
        p
    }

    fn get(&self, segs: &[String]) -> Option<&Val> {
        let mut v = self.item;
        for s in segs {
            v = match v {
                Val::Obj(o) => o.get(&Val::utf8_str(s.clone()))?,
                Val::Arr(a) => a.get(s.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

/// Path to the first scalar in `v` whose text equals `value`.
fn find(v: &Val, value: &str, path: &mut Vec<String>) -> bool {
    match v {
        Val::Obj(o) => o.iter().any(|(k, x)| {
            let Val::TStr(k) = k else { return false };
            path.push(String::from_utf8_lossy(k).into_owned());
            let hit = find(x, value, path);
            if !hit {
                path.pop();
            }
            hit
        }),
        Val::Arr(a) => a.iter().enumerate().any(|(i, x)| {
            path.push(i.to_string());
            let hit = find(x, value, path);
            if !hit {
                path.pop();
            }
            hit
        }),
        Val::TStr(s) => String::from_utf8_lossy(s).trim().eq_ignore_ascii_case(value),
        Val::Num(n) => n.to_string() == value,
        _ => false,
    }
}

impl Locate for JsonItem<'_> {
    fn column(&self, field: &str, value: Option<&str>) -> Option<String> {
        if let Some(c) = self.mapping.columns.get(field) {
            return Some(self.at(&segments(c)));
        }
        let mut path = Vec::new();
        find(self.item, value?, &mut path).then(|| self.at(&path))
    }

    fn raw(&self, field: &str) -> Option<String> {
        let c = self.mapping.columns.get(field)?;
        match self.get(&segments(c))? {
            Val::TStr(s) => Some(String::from_utf8_lossy(s).trim().to_string()).filter(|s| !s.is_empty()),
            Val::Num(n) => Some(n.to_string()),
            _ => None,
        }
    }
}
