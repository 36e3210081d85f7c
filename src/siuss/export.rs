//! The web-upload channel: one `PS_PSA_SINA` file with many beneficiaries, built from the stored
//! prestazione events of an ente's tenant, for an operator to upload on INPS's SIUSS site.
//!
//! What goes in: the `prestazione.erogata` events a `siuss` destination would take from that
//! tenant, only the latest event of each `idPrestazione`, dated inside the window — by
//! `dataErogazione` for a one-off prestazione (carattere 2), by `dataInizio` for a periodic one
//! (carattere 1, including the monthly records, whose `dataInizio` is in their month). One date per
//! prestazione, so consecutive windows never put the same prestazione in two files.
//!
//! What is left out, and reported by reason with the event ids: an annulled prestazione
//! (`annullata`: nothing to insert), a single cooperative delivery (`single_delivery`: SIUSS gets
//! the month from the monthly close), a beneficiary with no `persona.registrata`
//! (`persona_non_registrata`), an event the flusso cannot be built from (`build_error`) and a
//! prestazione that breaks a SIUSS rule (the rule's name). A rule broken by one prestazione leaves
//! out that prestazione only; the beneficiary's others still go.
//!
//! Streamed: the store is read a page at a time in beneficiary order (an index keeps it; the next
//! page is read while this one is written), one beneficiary is held at a time, and the XML goes
//! out through [`FlussoWriter`]. Memory stays flat whatever the number of prestazioni.
//!
//! Invariant: every `Beneficiario` written passes [`check_beneficiario`]; the summary carries rule
//! names, event ids and messages without personal values, never a codice fiscale.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};
use csi_gateway_inps::{
    check, check_beneficiario, from_events_with, Beneficiario, FlussoWriter, PsPsaSina, Tables,
    TipoOperazione, WriteError,
};
use serde::Serialize;
use serde_json::Value;
use time::Date;

use super::outbound::{single_delivery, Ente};
use crate::store::siuss::{ExportPage, ExportPersona, ExportRow, SiussStore};

/// Rows per store page.
pub const PAGE: usize = 1_000;

/// Event ids listed per reason in the summary; beyond, only counted.
pub const MAX_IDS: usize = 1_000;

/// What to export.
#[derive(Debug, Clone)]
pub struct Export {
    pub ente: Ente,
    pub tables: Tables,
    /// First day of the window, inclusive.
    pub from: Date,
    /// Last day of the window, inclusive.
    pub to: Date,
    /// `IdentificazioneFlusso@Nome`.
    pub id_flusso: String,
}

/// Prestazioni left out for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct LeftOut {
    /// A SIUSS rule name (`quote_sum_to_importo`...), or `annullata`, `single_delivery`,
    /// `persona_non_registrata`, `build_error`.
    pub rule: String,
    /// True when the source needs a correction; false for what is left out by design (an annulled
    /// prestazione, a single cooperative delivery).
    pub to_correct: bool,
    pub count: u64,
    /// The prestazione events left out (at most [`MAX_IDS`]).
    pub event_ids: Vec<String>,
    /// Event ids beyond [`MAX_IDS`], counted but not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub event_ids_not_listed: u64,
    /// What is wrong with the first one (path and message, no personal values).
    pub example: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an export wrote and what it left out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub ente: String,
    pub id_flusso: String,
    pub from: String,
    pub to: String,
    /// `Beneficiario` elements written.
    pub beneficiari: u64,
    /// `PrestazioniSociali` elements written.
    pub prestazioni: u64,
    /// Prestazioni considered: the latest event of each `idPrestazione` of the tenant.
    pub read: u64,
    /// Of those, dated outside the window (not counted as left out).
    pub outside_window: u64,
    /// By reason, most frequent first.
    pub left_out: Vec<LeftOut>,
}

impl Summary {
    /// Prestazioni left out that need a correction at the source.
    pub fn to_correct(&self) -> u64 {
        self.left_out.iter().filter(|l| l.to_correct).map(|l| l.count).sum()
    }

    /// Prestazioni left out, for any reason.
    pub fn left_out_total(&self) -> u64 {
        self.left_out.iter().map(|l| l.count).sum()
    }

    /// The summary in a few lines, for a terminal.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{}: {} beneficiari, {} prestazioni written (ente {}, {} to {}); {} prestazioni read, {} outside the window, {} left out",
            self.id_flusso,
            self.beneficiari,
            self.prestazioni,
            self.ente,
            self.from,
            self.to,
            self.read,
            self.outside_window,
            self.left_out_total()
        );
        for l in &self.left_out {
            let what = if l.to_correct { "to correct" } else { "by design" };
            let more = if l.event_ids_not_listed > 0 {
                format!(" (and {} more)", l.event_ids_not_listed)
            } else {
                String::new()
            };
            s.push_str(&format!(
                "\n  {} ({what}): {} — {}\n    events: {}{more}",
                l.rule,
                l.count,
                l.example,
                l.event_ids.join(", ")
            ));
        }
        s
    }
}

/// Accumulates the left-out prestazioni by reason.
#[derive(Default)]
struct LeftOuts(BTreeMap<String, LeftOut>);

impl LeftOuts {
    fn add(&mut self, rule: &str, to_correct: bool, event_id: &str, example: impl FnOnce() -> String) {
        let l = self.0.entry(rule.to_string()).or_insert_with(|| LeftOut {
            rule: rule.to_string(),
            to_correct,
            count: 0,
            event_ids: Vec::new(),
            event_ids_not_listed: 0,
            example: example(),
        });
        l.count += 1;
        if l.event_ids.len() < MAX_IDS {
            l.event_ids.push(event_id.to_string());
        } else {
            l.event_ids_not_listed += 1;
        }
    }

    fn into_sorted(self) -> Vec<LeftOut> {
        let mut v: Vec<LeftOut> = self.0.into_values().collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));
        v
    }
}

/// `Beneficiario[1]/PrestazioniSociali[1]/@X` → `Beneficiario/PrestazioniSociali/@X`: the indexes
/// of a one-prestazione check mean nothing in the file.
fn unindexed(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut skip = false;
    for c in path.chars() {
        match c {
            '[' => skip = true,
            ']' => skip = false,
            c if !skip => out.push(c),
            _ => {}
        }
    }
    out
}

/// `YYYY-MM-DD`.
fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The date a prestazione is placed in a window by: `dataErogazione` for carattere 2, else
/// `dataInizio`.
fn window_date(data: &Value) -> Option<&str> {
    if data["carattere"] == "2" {
        data["dataErogazione"].as_str()
    } else {
        data["dataInizio"].as_str()
    }
}

/// What one stored prestazione becomes, decided off the writing task.
enum Prepared {
    OutsideWindow,
    LeftOut {
        rule: &'static str,
        to_correct: bool,
        event_id: String,
        example: String,
    },
    /// One Beneficiario with one PrestazioniSociali, passing the rules.
    Built {
        pseudonimo: String,
        event_id: String,
        beneficiario: Beneficiario,
    },
}

/// Reasons that are not SIUSS rules.
const ANNULLATA: &str = "annullata";
const SINGLE_DELIVERY: &str = "single_delivery";
const PERSONA_NON_REGISTRATA: &str = "persona_non_registrata";
const BUILD_ERROR: &str = "build_error";

/// Window, annulment, persona, build and rules for one row.
fn prepare(spec: &Export, from: &str, to: &str, row: ExportRow, persona: &ExportPersona) -> Prepared {
    let data = &row.data;
    if let Some(d) = window_date(data) {
        if d < from || d > to {
            return Prepared::OutsideWindow;
        }
    }
    let left_out = |rule, to_correct, example: String| Prepared::LeftOut {
        rule,
        to_correct,
        event_id: row.event_id.clone(),
        example,
    };
    if data["annullata"] == true {
        return left_out(
            ANNULLATA,
            false,
            "the latest event of the idPrestazione annuls it: nothing to insert (if an earlier upload \
             inserted it, cancel it at INPS)"
                .into(),
        );
    }
    if single_delivery(data) {
        return left_out(
            SINGLE_DELIVERY,
            false,
            "a single cooperative delivery (carattere 1, one day, no mese): SIUSS receives the month \
             from the monthly close"
                .into(),
        );
    }
    let Some((_, persona_data)) = &persona.persona else {
        return left_out(
            PERSONA_NON_REGISTRATA,
            true,
            "no persona.registrata for /data/beneficiario/pseudonimo: SIUSS needs the beneficiary's \
             anagrafica"
                .into(),
        );
    };
    let valutazione = persona.valutazione.as_ref().map(|(_, v)| v);
    let built =
        from_events_with(&spec.tables, &spec.ente.info, persona_data, data, valutazione, TipoOperazione::I);
    let b = match built.map(|f| f.beneficiari.into_iter().next()) {
        Ok(Some(b)) => b,
        Ok(None) => return left_out(BUILD_ERROR, true, "no Beneficiario was built".into()),
        Err(e) => return left_out(BUILD_ERROR, true, e.to_string()),
    };
    if let Some(v) = check_beneficiario(&b, 1).first() {
        return left_out(v.rule, true, format!("at {}: {}", unindexed(&v.path), v.message));
    }
    Prepared::Built { pseudonimo: row.pseudonimo, event_id: row.event_id, beneficiario: b }
}

/// A page prepared row by row (on a blocking thread: parsing the events, building and checking
/// is the CPU-heavy part, and runs while the previous page is written).
fn prepare_page(spec: &Export, from: &str, to: &str, page: ExportPage) -> anyhow::Result<Vec<Prepared>> {
    let mut persone = page.persone.into_iter();
    let mut current: Option<(String, ExportPersona)> = None;
    let mut out = Vec::with_capacity(page.rows.len());
    for row in page.rows {
        if current.as_ref().map(|(p, _)| p != &row.pseudonimo).unwrap_or(true) {
            current = persone.next();
        }
        let persona = match &current {
            Some((p, persona)) if *p == row.pseudonimo => persona,
            _ => bail!("internal: the export page lists its beneficiaries out of order"),
        };
        out.push(prepare(spec, from, to, row, persona));
    }
    Ok(out)
}

/// The beneficiary being assembled.
struct Group {
    pseudonimo: String,
    beneficiario: Beneficiario,
    events: Vec<String>,
}

struct Run<W: Write> {
    writer: FlussoWriter<W>,
    group: Option<Group>,
    left_out: LeftOuts,
    summary: Summary,
}

impl<W: Write> Run<W> {
    fn take(&mut self, p: Prepared) -> Result<(), WriteError> {
        self.summary.read += 1;
        match p {
            Prepared::OutsideWindow => self.summary.outside_window += 1,
            Prepared::LeftOut { rule, to_correct, event_id, example } => {
                self.left_out.add(rule, to_correct, &event_id, || example)
            }
            Prepared::Built { pseudonimo, event_id, mut beneficiario } => {
                // Same beneficiary (same pseudonym and codice fiscale): one more PrestazioniSociali.
                if let Some(g) = &mut self.group {
                    if g.pseudonimo == pseudonimo
                        && g.beneficiario.codice_fiscale == beneficiario.codice_fiscale
                    {
                        g.beneficiario.prestazioni.append(&mut beneficiario.prestazioni);
                        g.events.push(event_id);
                        return Ok(());
                    }
                }
                self.flush()?;
                self.group = Some(Group { pseudonimo, beneficiario, events: vec![event_id] });
            }
        }
        Ok(())
    }

    /// Writes the beneficiary being assembled, if it passes the rules as a whole.
    fn flush(&mut self) -> Result<(), WriteError> {
        let Some(g) = self.group.take() else { return Ok(()) };
        let violations = check_beneficiario(&g.beneficiario, self.writer.written() + 1);
        if let Some(v) = violations.first() {
            for id in &g.events {
                self.left_out.add(v.rule, true, id, || format!("at {}: {}", unindexed(&v.path), v.message));
            }
            return Ok(());
        }
        self.writer.write_beneficiario(&g.beneficiario)?;
        self.summary.beneficiari += 1;
        self.summary.prestazioni += g.beneficiario.prestazioni.len() as u64;
        Ok(())
    }
}

type Shared = Arc<(Export, String, String)>;

/// Prepares a page on a blocking thread.
fn prepare_on_the_side(
    shared: Shared,
    page: ExportPage,
) -> tokio::task::JoinHandle<anyhow::Result<Vec<Prepared>>> {
    tokio::task::spawn_blocking(move || {
        let (spec, from, to) = &*shared;
        prepare_page(spec, from, to, page)
    })
}

/// Writes the export to `out` and returns the summary and the writer (flushed). `progress` is
/// called after each page with the number of prestazioni read so far. Fails when nothing is left
/// to write (the XSD wants at least one Beneficiario), naming what was left out.
pub async fn export<W: Write>(
    store: Arc<dyn SiussStore>,
    spec: &Export,
    out: W,
    progress: impl Fn(u64),
) -> anyhow::Result<(Summary, W)> {
    let header = spec.ente.info.header(spec.id_flusso.clone());
    let header_problems: Vec<String> =
        check(&PsPsaSina { identificazione: header.clone(), beneficiari: Vec::new() })
            .into_iter()
            .filter(|v| v.path != "Beneficiario")
            .map(|v| format!("{} at {}: {}", v.rule, v.path, v.message))
            .collect();
    if !header_problems.is_empty() {
        bail!("the ente's header breaks the XSD ([[inps.enti]]): {}", header_problems.join("; "));
    }
    let writer = FlussoWriter::new(out, &header).context("writing the file")?;
    let shared = Arc::new((spec.clone(), iso(spec.from), iso(spec.to)));
    let mut run = Run {
        writer,
        group: None,
        left_out: LeftOuts::default(),
        summary: Summary {
            ente: spec.ente.info.belfiore.clone(),
            id_flusso: spec.id_flusso.clone(),
            from: iso(spec.from),
            to: iso(spec.to),
            ..Summary::default()
        },
    };

    // Three stages overlap: page n+1 is read by the store while page n is prepared on a blocking
    // thread and page n-1 is written here.
    let mut pages = store.export_pages(spec.ente.tenant.clone(), PAGE);
    let mut preparing: Option<tokio::task::JoinHandle<anyhow::Result<Vec<Prepared>>>> = None;
    loop {
        let next = match pages.recv().await {
            Some(page) => Some(prepare_on_the_side(shared.clone(), page.context("reading the store")?)),
            None => None,
        };
        let previous = std::mem::replace(&mut preparing, next);
        if let Some(previous) = previous {
            for p in previous.await.context("preparing a page")?? {
                run.take(p).context("writing the file")?;
            }
            progress(run.summary.read);
        }
        if preparing.is_none() {
            break;
        }
    }
    run.flush().context("writing the file")?;
    let Run { writer, left_out, mut summary, .. } = run;
    summary.left_out = left_out.into_sorted();
    match writer.finish() {
        Ok(w) => Ok((summary, w)),
        Err(WriteError::Empty(_)) => bail!(
            "nothing to export for ente {} from {} to {}: {} prestazioni read, {} outside the window, {} left out{}",
            summary.ente,
            summary.from,
            summary.to,
            summary.read,
            summary.outside_window,
            summary.left_out_total(),
            if summary.left_out.is_empty() { String::new() } else { format!("\n{}", summary.text()) }
        ),
        Err(e) => Err(e).context("writing the file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_window_dates_a_prestazione_by_one_date() {
        let one_off = json!({"carattere": "2", "dataErogazione": "2026-03-04", "dataInizio": "2026-01-01"});
        assert_eq!(window_date(&one_off), Some("2026-03-04"));
        let monthly = json!({"carattere": "1", "dataInizio": "2026-02-01", "dataFine": "2026-12-31", "mese": "2026-02"});
        assert_eq!(window_date(&monthly), Some("2026-02-01"));
    }

    #[test]
    fn paths_lose_their_indexes() {
        assert_eq!(
            unindexed("Beneficiario[1]/PrestazioniSociali[1]/@ImportoMensile"),
            "Beneficiario/PrestazioniSociali/@ImportoMensile"
        );
    }

    #[test]
    fn left_outs_count_everything_and_list_a_bounded_number_of_ids() {
        let mut l = LeftOuts::default();
        for i in 0..(MAX_IDS + 5) {
            l.add("quote_sum_to_importo", true, &format!("e{i}"), || "x".into());
        }
        l.add("annullata", false, "a", || "y".into());
        let v = l.into_sorted();
        assert_eq!(v[0].rule, "quote_sum_to_importo");
        assert_eq!(v[0].count, (MAX_IDS + 5) as u64);
        assert_eq!(v[0].event_ids.len(), MAX_IDS);
        assert_eq!(v[0].event_ids_not_listed, 5);
        assert_eq!(v[1].rule, "annullata");
    }
}
