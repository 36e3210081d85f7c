//! Figures, their targets and the two outputs: a table on stdout and an optional JSON file.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// Which side of its target a figure must stay on.
#[derive(Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

/// One measured figure.
pub struct Figure {
    pub scenario: &'static str,
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Option<Target>,
    /// Ratio to the raw SQLite ceiling (throughput figures only).
    pub vs_sqlite: Option<f64>,
}

impl Figure {
    /// `Some(true)` when the target is met, `None` without target.
    pub fn pass(&self) -> Option<bool> {
        self.target.map(|t| match t {
            Target::AtLeast(x) => self.value >= x,
            Target::AtMost(x) => self.value <= x,
        })
    }

    /// value / target.
    pub fn ratio(&self) -> Option<f64> {
        self.target.map(|t| match t {
            Target::AtLeast(x) | Target::AtMost(x) => self.value / x,
        })
    }

    fn target_text(&self) -> String {
        match self.target {
            Some(Target::AtLeast(x)) => format!(">= {}", number(x)),
            Some(Target::AtMost(x)) => format!("<= {}", number(x)),
            None => "-".into(),
        }
    }
}

/// The whole report: context lines, figures, failures.
#[derive(Default)]
pub struct Report {
    pub context: Vec<(String, String)>,
    pub figures: Vec<Figure>,
    pub failures: Vec<(String, String)>,
    pub notes: Vec<String>,
}

impl Report {
    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.context {
            let _ = writeln!(out, "{k:<14} {v}");
        }
        out.push('\n');
        let rows: Vec<[String; 7]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.scenario.to_string(),
                    f.name.clone(),
                    format!("{} {}", number(f.value), f.unit),
                    f.target_text(),
                    match f.pass() {
                        Some(true) => "PASS".into(),
                        Some(false) => "MISS".into(),
                        None => "-".into(),
                    },
                    f.ratio().map_or("-".into(), |r| format!("{r:.2}x")),
                    f.vs_sqlite.map_or("-".into(), |r| format!("{r:.2}x")),
                ]
            })
            .collect();
        let header = ["", "figure", "value", "target", "result", "of target", "of SQLite"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                // Numbers right-aligned, words left-aligned.
                if i >= 2 {
                    let _ = write!(l, "{cell:>w$}  ");
                } else {
                    let _ = write!(l, "{cell:<w$}  ");
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&header.map(String::from)));
        let _ = writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row));
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for (scenario, error) in &self.failures {
            let _ = writeln!(out, "FAILED {scenario}: {error}");
        }
        out
    }

    /// The JSON document written by `--json`.
    pub fn json(&self) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|f| {
                let (cmp, target) = match f.target {
                    Some(Target::AtLeast(x)) => (Some(">="), Some(x)),
                    Some(Target::AtMost(x)) => (Some("<="), Some(x)),
                    None => (None, None),
                };
                json!({
                    "scenario": f.scenario, "name": f.name, "value": f.value, "unit": f.unit,
                    "cmp": cmp, "target": target, "pass": f.pass(), "ratio_to_target": f.ratio(),
                    "ratio_to_sqlite": f.vs_sqlite,
                })
            })
            .collect();
        let context: serde_json::Map<String, Value> =
            self.context.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let failures: Vec<Value> =
            self.failures.iter().map(|(s, e)| json!({"scenario": s, "error": e})).collect();
        json!({ "context": context, "figures": figures, "failures": failures, "notes": self.notes })
    }

    /// Writes [`Report::json`] to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.json()).context("serializing the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// A number with a sensible precision for the table.
fn number(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
