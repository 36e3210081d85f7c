//! Embedded mode of [`SiussStore`]: the persona and valutazione read models, the flussi, the
//! daily progressives and the per-prestazione state, on the same SQLite file and through the same
//! writer as the events (so a flusso, its number and its audit record commit together).

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::Value;
use tokio::sync::Notify;

use super::{append, Op, SqliteStore};
use crate::store::siuss::*;
use crate::store::{StoreError, StoreResult};
use csi_gateway_sdk::BoxFuture;

/// The prestazione events the web-upload export reads.
macro_rules! prestazione_type {
    () => {
        "'it.lombardia.csi.prestazione.erogata.v1'"
    };
}

/// Migration 4 of the embedded store: the index that kept the export's order (beneficiary, then
/// `idPrestazione`) goes; the export sorts its rows when it reads them ([`EXPORT_ORDER`]).
pub(super) const MIGRATION_EXPORT_UNORDERED: &str = "DROP INDEX IF EXISTS prestazioni_export_order;";

/// Migration 1 of the embedded store (see `MIGRATIONS` in `sqlite.rs`): the export reads
/// `prestazioni_export`, kept by the writer from each event's [`ExportKey`], instead of two
/// partial indexes on the events' JSON body (which made SQLite parse every prestazione's body at
/// insert, twice). The table is filled from the events already stored (the latest event of each
/// `idPrestazione`, in insertion order) and the old indexes go.
pub(super) const MIGRATION_EXPORT_TABLE: &str = concat!(
    "DROP INDEX IF EXISTS events_prestazione_beneficiario;
DROP INDEX IF EXISTS events_prestazione_id;
INSERT INTO prestazioni_export (tenant, id_prestazione, pseudonimo, event_id)
SELECT tenant, id_prestazione, pseudonimo, id FROM (
    SELECT tenant, id, max(rowid),
           json_extract(CAST(body AS TEXT), '$.data.idPrestazione') AS id_prestazione,
           json_extract(CAST(body AS TEXT), '$.data.beneficiario.pseudonimo') AS pseudonimo
    FROM events WHERE type = ",
    prestazione_type!(),
    "
    GROUP BY tenant, id_prestazione
) WHERE id_prestazione IS NOT NULL AND pseudonimo IS NOT NULL;
"
);

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS persone (
    tenant         TEXT NOT NULL,
    pseudonimo     TEXT NOT NULL,
    codice_fiscale TEXT,
    event_id       TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant, pseudonimo)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS persone_cf ON persone (tenant, codice_fiscale);
CREATE TABLE IF NOT EXISTS valutazioni_sina (
    tenant           TEXT NOT NULL,
    pseudonimo       TEXT NOT NULL,
    data_valutazione TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    PRIMARY KEY (tenant, pseudonimo)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_tenant_type ON events (tenant, type);
CREATE TABLE IF NOT EXISTS siuss_flussi (
    id_flusso            TEXT PRIMARY KEY,
    ente                 TEXT NOT NULL,
    denominazione        TEXT NOT NULL,
    tenant               TEXT NOT NULL,
    tipo                 TEXT NOT NULL,
    operazione           TEXT NOT NULL,
    event_id             TEXT NOT NULL,
    id_prestazione       TEXT NOT NULL,
    built_from_event_id  TEXT NOT NULL,
    persona_event_id     TEXT NOT NULL,
    valutazione_event_id TEXT,
    content_digest       TEXT NOT NULL,
    flusso               TEXT NOT NULL,
    ts_flusso            INTEGER NOT NULL UNIQUE,
    created_at           INTEGER NOT NULL,
    stato                TEXT NOT NULL,
    esito                TEXT,
    esito_messaggio      TEXT,
    esito_key            TEXT,
    esito_at             INTEGER,
    id_acquisizione_siuss TEXT,
    codice_siuss         TEXT,
    cancels              TEXT
);
CREATE INDEX IF NOT EXISTS siuss_flussi_event ON siuss_flussi (event_id);
CREATE INDEX IF NOT EXISTS siuss_flussi_prestazione ON siuss_flussi (ente, id_prestazione);
CREATE TABLE IF NOT EXISTS siuss_progressivi (
    ente TEXT NOT NULL,
    day  TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (ente, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS prestazioni_export (
    tenant         TEXT NOT NULL,
    id_prestazione TEXT NOT NULL,
    pseudonimo     TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    PRIMARY KEY (tenant, id_prestazione)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS siuss_prestazioni (
    ente           TEXT NOT NULL,
    id_prestazione TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    current_flusso TEXT,
    annullata      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ente, id_prestazione)
) WITHOUT ROWID;
"#;

/// A write of the SIUSS adapter, run by the store's writer thread.
pub(crate) enum WriteOp {
    Publish(Box<Publish>),
    Esiti(Vec<EsitoIn>, String),
}

pub(crate) enum WriteAnswer {
    Published(Published),
    Esiti(EsitiOutcome),
}

const FLUSSO_COLUMNS: &str =
    "id_flusso, ente, denominazione, tenant, tipo, operazione, event_id, id_prestazione,
    built_from_event_id, persona_event_id, valutazione_event_id, content_digest, ts_flusso, created_at, stato,
    esito, esito_messaggio, id_acquisizione_siuss, codice_siuss, cancels";

fn flusso_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlussoRow> {
    Ok(FlussoRow {
        id_flusso: r.get(0)?,
        ente: r.get(1)?,
        denominazione: r.get(2)?,
        tenant: r.get(3)?,
        tipo: r.get(4)?,
        operazione: r.get(5)?,
        event_id: r.get(6)?,
        id_prestazione: r.get(7)?,
        built_from_event_id: r.get(8)?,
        persona_event_id: r.get(9)?,
        valutazione_event_id: r.get(10)?,
        content_digest: r.get(11)?,
        ts_flusso: r.get(12)?,
        created_at: r.get(13)?,
        stato: r.get(14)?,
        esito: r.get(15)?,
        esito_messaggio: r.get(16)?,
        id_acquisizione_siuss: r.get(17)?,
        codice_siuss: r.get(18)?,
        cancels: r.get(19)?,
    })
}

pub(super) fn project_persona(tx: &Transaction<'_>, r: &PersonaRow, now: i64) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO persone (tenant, pseudonimo, codice_fiscale, event_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, pseudonimo) DO UPDATE SET codice_fiscale = excluded.codice_fiscale,
            event_id = excluded.event_id, updated_at = excluded.updated_at",
    )?
    .execute(params![r.tenant, r.pseudonimo, r.codice_fiscale, r.event_id, now])?;
    Ok(())
}

pub(super) fn project_valutazione(tx: &Transaction<'_>, r: &ValutazioneRow) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO valutazioni_sina (tenant, pseudonimo, data_valutazione, event_id) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, pseudonimo) DO UPDATE SET data_valutazione = excluded.data_valutazione,
            event_id = excluded.event_id
         WHERE excluded.data_valutazione >= valutazioni_sina.data_valutazione",
    )?
    .execute(params![r.tenant, r.pseudonimo, r.data_valutazione, r.event_id])?;
    Ok(())
}

/// The SIUSS block of `GET /v1/events/{id}`, when the event produced flussi.
pub(super) fn view(conn: &Connection, event_id: &str) -> StoreResult<Option<SiussView>> {
    Ok(SiussView::of(flussi_of(conn, event_id)?))
}

fn flussi_of(conn: &Connection, event_id: &str) -> StoreResult<Vec<FlussoRow>> {
    let sql = format!("SELECT {FLUSSO_COLUMNS} FROM siuss_flussi WHERE event_id = ?1 ORDER BY rowid");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([event_id], flusso_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn flusso(conn: &Connection, id_flusso: &str) -> StoreResult<Option<FlussoRow>> {
    let sql = format!("SELECT {FLUSSO_COLUMNS} FROM siuss_flussi WHERE id_flusso = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id_flusso], flusso_from_row).optional()?)
}

/// The next `ts_flusso`: now, or one millisecond after the latest, whichever is later.
fn next_ts(tx: &Transaction<'_>, now: i64) -> StoreResult<i64> {
    let max: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(ts_flusso), 0) FROM siuss_flussi")?
        .query_row([], |r| r.get(0))?;
    Ok(now.max(max + 1))
}

/// Whether a later flusso of the same prestazione exists.
fn later_flusso(tx: &Transaction<'_>, row: &FlussoRow) -> StoreResult<bool> {
    Ok(tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM siuss_flussi WHERE ente = ?1 AND id_prestazione = ?2
                AND rowid > (SELECT rowid FROM siuss_flussi WHERE id_flusso = ?3))",
        )?
        .query_row(params![row.ente, row.id_prestazione, row.id_flusso], |r| r.get(0))?)
}

/// Whether event `a` was accepted after event `b`.
fn accepted_after(tx: &Transaction<'_>, a: &str, b: &str) -> StoreResult<bool> {
    let mut stmt = tx.prepare_cached("SELECT received_at FROM events WHERE id = ?1")?;
    let mut at =
        |id: &str| -> StoreResult<Option<i64>> { Ok(stmt.query_row([id], |r| r.get(0)).optional()?) };
    Ok(match (at(a)?, at(b)?) {
        (Some(ta), Some(tb)) => (ta, a) > (tb, b),
        _ => false,
    })
}

pub(super) fn apply(
    tx: &Transaction<'_>,
    head: &mut (i64, String),
    op: &mut WriteOp,
    now: i64,
) -> StoreResult<WriteAnswer> {
    match op {
        WriteOp::Publish(p) => Ok(WriteAnswer::Published(publish(tx, head, p, now)?)),
        WriteOp::Esiti(esiti, actor) => Ok(WriteAnswer::Esiti(record_esiti(tx, head, esiti, actor, now)?)),
    }
}

fn publish(
    tx: &Transaction<'_>,
    head: &mut (i64, String),
    p: &mut Publish,
    now: i64,
) -> StoreResult<Published> {
    let done: Vec<String> = tx
        .prepare_cached("SELECT id_flusso FROM siuss_flussi WHERE event_id = ?1 ORDER BY rowid")?
        .query_map([&p.event_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !done.is_empty() {
        return Ok(Published::AlreadyDone(done));
    }
    let state: Option<(String, Option<String>)> = tx
        .prepare_cached(
            "SELECT event_id, current_flusso FROM siuss_prestazioni WHERE ente = ?1 AND id_prestazione = ?2",
        )?
        .query_row(params![p.ente, p.id_prestazione], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match &state {
        Some((last, _)) if *last == p.event_id => return Ok(Published::AlreadyDone(Vec::new())),
        Some((last, _)) if accepted_after(tx, last, &p.event_id)? => {
            return Ok(Published::Superseded { by: last.clone() })
        }
        Some((_, current)) if *current != p.expect_current => return Ok(Published::Conflict),
        None if p.expect_current.is_some() => return Ok(Published::Conflict),
        _ => {}
    }
    // One flusso that cannot be numbered or rendered must not take the others of this commit down:
    // everything of this publish happens inside a savepoint.
    tx.execute_batch("SAVEPOINT siuss_publish")?;
    let head_before = head.clone();
    match write_flussi(tx, head, p, now) {
        Ok(Ok(offered)) => {
            tx.execute_batch("RELEASE siuss_publish")?;
            Ok(Published::Offered(offered))
        }
        Ok(Err(reason)) => {
            tx.execute_batch("ROLLBACK TO siuss_publish; RELEASE siuss_publish")?;
            *head = head_before;
            Ok(Published::Failed(reason))
        }
        Err(e) => {
            *head = head_before;
            Err(e)
        }
    }
}

fn write_flussi(
    tx: &Transaction<'_>,
    head: &mut (i64, String),
    p: &mut Publish,
    now: i64,
) -> StoreResult<Result<Vec<(String, Operazione)>, String>> {
    let mut offered = Vec::new();
    let mut current: Option<String> = None;
    for f in std::mem::take(&mut p.flussi) {
        let progressivo: i64 = tx
            .prepare_cached(
                "INSERT INTO siuss_progressivi (ente, day, last) VALUES (?1, ?2, 1)
                 ON CONFLICT (ente, day) DO UPDATE SET last = last + 1 RETURNING last",
            )?
            .query_row(params![p.ente, p.day], |r| r.get(0))?;
        let n = match crate::store::siuss::progressivo(progressivo, &p.ente, &p.day) {
            Ok(n) => n,
            Err(reason) => return Ok(Err(reason)),
        };
        let (id_flusso, b64) = match (f.render)(n) {
            Ok(r) => r,
            Err(reason) => return Ok(Err(reason)),
        };
        let ts = next_ts(tx, now)?;
        tx.prepare_cached(
            "INSERT INTO siuss_flussi (id_flusso, ente, denominazione, tenant, tipo, operazione, event_id,
                id_prestazione, built_from_event_id, persona_event_id, valutazione_event_id, content_digest,
                flusso, ts_flusso, created_at, stato, cancels)
             VALUES (?1, ?2, ?3, ?4, 'PS_PSA_SINA', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            id_flusso,
            p.ente,
            p.denominazione,
            p.tenant,
            f.operazione.as_str(),
            p.event_id,
            p.id_prestazione,
            f.built_from_event_id,
            f.persona_event_id,
            f.valutazione_event_id,
            f.content_digest,
            b64,
            ts,
            now,
            stato::OFFERED,
            f.cancels
        ])?;
        let e = p.offered_entry(f.operazione, f.cancels.as_deref(), &id_flusso, &b64);
        append(tx, head, &e, now)?;
        if f.operazione == Operazione::I {
            current = Some(id_flusso.clone());
        }
        offered.push((id_flusso, f.operazione));
    }
    tx.prepare_cached(
        "INSERT INTO siuss_prestazioni (ente, id_prestazione, event_id, current_flusso, annullata)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (ente, id_prestazione) DO UPDATE SET event_id = excluded.event_id,
            current_flusso = excluded.current_flusso, annullata = excluded.annullata",
    )?
    .execute(params![p.ente, p.id_prestazione, p.event_id, current, p.annullata])?;
    Ok(Ok(offered))
}

fn record_esiti(
    tx: &Transaction<'_>,
    head: &mut (i64, String),
    esiti: &[EsitoIn],
    actor: &str,
    now: i64,
) -> StoreResult<EsitiOutcome> {
    let mut out = EsitiOutcome::default();
    for e in esiti {
        let Some(row) = flusso(tx, &e.id_flusso)? else {
            if !out.unknown.contains(&e.id_flusso) {
                out.unknown.push(e.id_flusso.clone());
            }
            continue;
        };
        let key = esito_key(e);
        let recorded: Option<String> = tx
            .prepare_cached("SELECT esito_key FROM siuss_flussi WHERE id_flusso = ?1")?
            .query_row([&e.id_flusso], |r| r.get(0))?;
        let changed = recorded.as_deref() != Some(key.as_str()) && !esito_outdated(e, &row);
        let effect = if changed {
            // Re-offering a flusso after a later one of the same prestazione would reverse their
            // order at INPS (an old insertion after its cancellation, a cancellation after the
            // correction): such a flusso is left for an operator instead.
            let overtaken = e.codice == "ERRORE_GENERICO" && later_flusso(tx, &row)?;
            let fx = esito_effect(e, overtaken);
            let new_ts = if fx.reoffer { next_ts(tx, now)? } else { row.ts_flusso };
            tx.prepare_cached(
                "UPDATE siuss_flussi SET stato = ?2, esito = ?3, esito_messaggio = ?4, esito_key = ?5, esito_at = ?6,
                    id_acquisizione_siuss = COALESCE(?7, id_acquisizione_siuss),
                    codice_siuss = COALESCE(?8, codice_siuss), ts_flusso = ?9
                 WHERE id_flusso = ?1",
            )?
            .execute(params![
                e.id_flusso,
                fx.stato,
                e.codice,
                fx.messaggio,
                key,
                now,
                e.id_acquisizione_siuss,
                e.codice_siuss,
                new_ts
            ])?;
            match fx.holding(&row) {
                Holding::Refused => {
                    tx.prepare_cached(
                        "UPDATE siuss_prestazioni SET current_flusso = NULL
                         WHERE ente = ?1 AND id_prestazione = ?2 AND current_flusso = ?3",
                    )?
                    .execute(params![row.ente, row.id_prestazione, row.id_flusso])?;
                }
                Holding::Acquired => {
                    tx.prepare_cached(
                        "UPDATE siuss_prestazioni SET current_flusso = ?3
                         WHERE ente = ?1 AND id_prestazione = ?2 AND current_flusso IS NULL
                           AND event_id = ?4 AND annullata = 0",
                    )?
                    .execute(params![
                        row.ente,
                        row.id_prestazione,
                        row.id_flusso,
                        row.event_id
                    ])?;
                }
                Holding::Unchanged => {}
            }
            Some(fx)
        } else {
            None
        };
        append(tx, head, &esito_entry(e, effect.as_ref(), &row, actor), now)?;
        out.applied.push(EsitoApplied { id_flusso: e.id_flusso.clone(), codice: e.codice.clone(), changed });
    }
    Ok(out)
}

fn stored_event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let body: Vec<u8> = r.get(4)?;
    Ok(StoredEvent {
        id: r.get(0)?,
        tenant: r.get(1)?,
        event_type: r.get(2)?,
        received_at: r.get(3)?,
        event: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

/// A persona and its event's `data`, from `tenant, pseudonimo, codice_fiscale, event_id, body`.
fn persona_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(PersonaRow, Value)> {
    let body: Vec<u8> = r.get(4)?;
    Ok((
        PersonaRow {
            tenant: r.get(0)?,
            pseudonimo: r.get(1)?,
            codice_fiscale: r.get(2)?,
            event_id: r.get(3)?,
        },
        data_of(&body),
    ))
}

/// A SINA valutazione and its event's `data`, from `tenant, pseudonimo, data_valutazione,
/// event_id, body`.
fn valutazione_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ValutazioneRow, Value)> {
    let body: Vec<u8> = r.get(4)?;
    Ok((
        ValutazioneRow {
            tenant: r.get(0)?,
            pseudonimo: r.get(1)?,
            data_valutazione: r.get(2)?,
            event_id: r.get(3)?,
        },
        data_of(&body),
    ))
}

fn persona_of(conn: &Connection, tenant: &str, pseudonimo: &str) -> StoreResult<Option<(PersonaRow, Value)>> {
    Ok(conn
        .prepare_cached(
            "SELECT p.tenant, p.pseudonimo, p.codice_fiscale, p.event_id, e.body
             FROM persone p JOIN events e ON e.id = p.event_id
             WHERE p.tenant = ?1 AND p.pseudonimo = ?2",
        )?
        .query_row(params![tenant, pseudonimo], persona_from_row)
        .optional()?)
}

fn valutazione_of(
    conn: &Connection,
    tenant: &str,
    pseudonimo: &str,
) -> StoreResult<Option<(ValutazioneRow, Value)>> {
    Ok(conn
        .prepare_cached(
            "SELECT v.tenant, v.pseudonimo, v.data_valutazione, v.event_id, e.body
             FROM valutazioni_sina v JOIN events e ON e.id = v.event_id
             WHERE v.tenant = ?1 AND v.pseudonimo = ?2",
        )?
        .query_row(params![tenant, pseudonimo], valutazione_from_row)
        .optional()?)
}

/// The export's order: the latest event of each `idPrestazione`, by pseudonym then
/// `idPrestazione`, sorted when the export reads it. No index keeps this order: an upload's
/// prestazioni name beneficiaries all over it, and such an index took each row at a random place
/// (some 500 pages rewritten a commit of 1,000 rows, the largest part of an upload's writes).
const EXPORT_ORDER: &str = "SELECT x.pseudonimo, x.id_prestazione, x.event_id
    FROM prestazioni_export x WHERE x.tenant = ?1 ORDER BY x.pseudonimo, x.id_prestazione";

/// Reads the whole export of `tenant` in one read transaction (one snapshot), sorted once, and
/// hands it to `send` in pages of at most `limit` rows; stops early when `send` says the reader
/// has gone.
fn export_all(
    conn: &Connection,
    tenant: &str,
    limit: usize,
    mut send: impl FnMut(ExportPage) -> bool,
) -> StoreResult<()> {
    let _snapshot = conn.unchecked_transaction()?;
    let mut order = conn.prepare(EXPORT_ORDER)?;
    let mut body_of = conn.prepare("SELECT body FROM events WHERE id = ?1")?;
    let mut keys = order.query([tenant])?;
    let mut rows = Vec::with_capacity(limit);
    while let Some(key) = keys.next()? {
        let event_id: String = key.get(2)?;
        // Always there (the writer keeps both in one commit); skipped like the join it replaces.
        let Some(body) = body_of.query_row([&event_id], |r| r.get::<_, Vec<u8>>(0)).optional()? else {
            continue;
        };
        rows.push(ExportRow {
            pseudonimo: key.get(0)?,
            id_prestazione: key.get(1)?,
            event_id,
            data: data_of(&body),
        });
        if rows.len() >= limit && !send(with_persone(conn, tenant, std::mem::take(&mut rows))?) {
            return Ok(());
        }
    }
    if !rows.is_empty() {
        send(with_persone(conn, tenant, rows)?);
    }
    Ok(())
}

/// A page of rows in pseudonym order, with their beneficiaries' personas and valutazioni.
fn with_persone(conn: &Connection, tenant: &str, rows: Vec<ExportRow>) -> StoreResult<ExportPage> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(ExportPage::default()) };
    // The rows are in pseudonym order: the page's personas and valutazioni are read with one range
    // query each (same BINARY order as Rust's byte order of strings) and merged.
    let (lo, hi) = (first.pseudonimo.clone(), last.pseudonimo.clone());
    let mut persone = conn
        .prepare_cached(
            "SELECT p.tenant, p.pseudonimo, p.codice_fiscale, p.event_id, e.body
             FROM persone p JOIN events e ON e.id = p.event_id
             WHERE p.tenant = ?1 AND p.pseudonimo BETWEEN ?2 AND ?3 ORDER BY p.pseudonimo",
        )?
        .query_map(params![tenant, lo, hi], persona_from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .peekable();
    let mut valutazioni = conn
        .prepare_cached(
            "SELECT v.tenant, v.pseudonimo, v.data_valutazione, v.event_id, e.body
             FROM valutazioni_sina v JOIN events e ON e.id = v.event_id
             WHERE v.tenant = ?1 AND v.pseudonimo BETWEEN ?2 AND ?3 ORDER BY v.pseudonimo",
        )?
        .query_map(params![tenant, lo, hi], valutazione_from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .peekable();
    let mut page = ExportPage { rows: Vec::with_capacity(rows.len()), persone: Vec::new() };
    for row in rows {
        if page.persone.last().map(|(p, _)| p.as_str()) != Some(row.pseudonimo.as_str()) {
            while persone.next_if(|(p, _)| p.pseudonimo < row.pseudonimo).is_some() {}
            while valutazioni.next_if(|(v, _)| v.pseudonimo < row.pseudonimo).is_some() {}
            let persona = ExportPersona {
                persona: persone.next_if(|(p, _)| p.pseudonimo == row.pseudonimo),
                valutazione: valutazioni.next_if(|(v, _)| v.pseudonimo == row.pseudonimo),
            };
            page.persone.push((row.pseudonimo.clone(), persona));
        }
        page.rows.push(row);
    }
    Ok(page)
}

impl SqliteStore {
    /// The store in `data_dir` opened for reading only, beside a gateway that may be running on it
    /// (the command line's SIUSS export): read connections only (WAL readers never block the
    /// gateway's writer), no writer thread (every write answers an error), and nothing handed back
    /// to the queue. A store left by an earlier release is first brought up to date (a write, once).
    pub fn open_reader(data_dir: &Path) -> StoreResult<Arc<Self>> {
        let path = data_dir.join("gateway.db");
        if !path.is_file() {
            return Err(StoreError::new(format!(
                "no store at {} (is data_dir right? has the gateway run on it?)",
                path.display()
            )));
        }
        let mut conn = super::open(&path)?;
        if super::pending_migrations(&conn)? {
            tracing::warn!("bringing this store up to date (once; the gateway does it at start)");
            super::create_and_migrate(&mut conn)?;
        }
        let readers = Arc::new(vec![Mutex::new(conn)]);
        // No receiver: a write submitted here fails at once.
        let (writer, _) = mpsc::sync_channel(1);
        Ok(Arc::new(SqliteStore {
            _lock: None,
            writer,
            readers,
            next_reader: Default::default(),
            notify: Arc::new(Notify::new()),
            path,
        }))
    }

    /// Takes the next number of an ente's daily progressive of `id_flusso` (the one the WaaS
    /// flussi take theirs from, so no number is handed out twice) from outside a gateway that may be
    /// running on `data_dir`: one short `BEGIN IMMEDIATE` transaction. No audit record: only the
    /// gateway's writer appends to the audit chain.
    pub fn take_progressivo_offline(data_dir: &Path, ente: &str, day: &str) -> StoreResult<u32> {
        let path = data_dir.join("gateway.db");
        if !path.is_file() {
            return Err(StoreError::new(format!("no store at {}", path.display())));
        }
        let mut conn = super::open(&path)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n: i64 = tx.query_row(
            "INSERT INTO siuss_progressivi (ente, day, last) VALUES (?1, ?2, 1)
             ON CONFLICT (ente, day) DO UPDATE SET last = last + 1 RETURNING last",
            params![ente, day],
            |r| r.get(0),
        )?;
        let n = crate::store::siuss::progressivo(n, ente, day).map_err(StoreError::new)?;
        tx.commit()?;
        Ok(n)
    }
}

fn unexpected(what: &str) -> StoreError {
    StoreError::new(format!("internal: unexpected answer to {what}"))
}

impl SiussStore for SqliteStore {
    fn persona(
        &self,
        tenant: String,
        pseudonimo: String,
    ) -> BoxFuture<'_, StoreResult<Option<(PersonaRow, Value)>>> {
        self.read(move |conn| persona_of(conn, &tenant, &pseudonimo))
    }

    fn valutazione_sina(
        &self,
        tenant: String,
        pseudonimo: String,
    ) -> BoxFuture<'_, StoreResult<Option<(ValutazioneRow, Value)>>> {
        self.read(move |conn| valutazione_of(conn, &tenant, &pseudonimo))
    }

    fn stored_event(&self, id: String) -> BoxFuture<'_, StoreResult<Option<StoredEvent>>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id, tenant, type, received_at, body FROM events WHERE id = ?1")?
                .query_row([id], stored_event_from_row)
                .optional()?)
        })
    }

    fn events_of_type(
        &self,
        tenant: String,
        event_type: String,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredEvent>>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, tenant, type, received_at, body FROM events
                 WHERE tenant = ?1 AND type = ?2
                   AND rowid > COALESCE((SELECT rowid FROM events WHERE id = ?3), 0)
                 ORDER BY rowid LIMIT ?4",
            )?;
            let rows =
                stmt.query_map(params![tenant, event_type, after, limit as i64], stored_event_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// On a connection of its own (the readers stay free for everything else) and a blocking
    /// thread, in one read transaction: the export is one snapshot of the store.
    fn export_pages(&self, tenant: String, limit: usize) -> ExportPages {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let read = super::open(&path).and_then(|conn| {
                export_all(&conn, &tenant, limit, |page| tx.blocking_send(Ok(page)).is_ok())
            });
            if let Err(e) = read {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }

    fn export_count(&self, tenant: String) -> BoxFuture<'_, StoreResult<u64>> {
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached("SELECT count(*) FROM prestazioni_export WHERE tenant = ?1")?
                .query_row([tenant], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
    }

    fn prestazione_state(
        &self,
        ente: String,
        id_prestazione: String,
    ) -> BoxFuture<'_, StoreResult<Option<PrestazioneState>>> {
        self.read(move |conn| {
            let row: Option<(String, Option<String>, bool)> = conn
                .prepare_cached(
                    "SELECT event_id, current_flusso, annullata FROM siuss_prestazioni
                     WHERE ente = ?1 AND id_prestazione = ?2",
                )?
                .query_row(params![ente, id_prestazione], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((event_id, current, annullata)) = row else { return Ok(None) };
            let current = match current {
                Some(id) => flusso(conn, &id)?,
                None => None,
            };
            Ok(Some(PrestazioneState { event_id, current, annullata }))
        })
    }

    fn flussi_of_event(&self, event_id: String) -> BoxFuture<'_, StoreResult<Vec<FlussoRow>>> {
        self.read(move |conn| flussi_of(conn, &event_id))
    }

    fn siuss_publish(&self, publish: Publish) -> BoxFuture<'_, StoreResult<Published>> {
        let fut = self.submit(|r| Op::Siuss(WriteOp::Publish(Box::new(publish)), r));
        Box::pin(async move {
            match fut.await? {
                WriteAnswer::Published(p) => Ok(p),
                WriteAnswer::Esiti(_) => Err(unexpected("publish")),
            }
        })
    }

    fn siuss_feed(&self, since: i64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<FeedEntry>>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id_flusso, ente, denominazione, tipo, ts_flusso, flusso FROM siuss_flussi
                 WHERE ts_flusso > ?1 ORDER BY ts_flusso LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since, limit as i64], |r| {
                Ok(FeedEntry {
                    id_flusso: r.get(0)?,
                    ente: r.get(1)?,
                    denominazione: r.get(2)?,
                    tipo: r.get(3)?,
                    ts_flusso: r.get(4)?,
                    flusso: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn siuss_esiti(&self, esiti: Vec<EsitoIn>, actor: String) -> BoxFuture<'_, StoreResult<EsitiOutcome>> {
        let fut = self.submit(|r| Op::Siuss(WriteOp::Esiti(esiti, actor), r));
        Box::pin(async move {
            match fut.await? {
                WriteAnswer::Esiti(o) => Ok(o),
                WriteAnswer::Published(_) => Err(unexpected("esiti")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn publish(id_prestazione: &str, event_id: &str, fail: bool) -> Publish {
        let render: Render = Box::new(move |n| {
            if fail {
                Err("cannot render".into())
            } else {
                Ok((format!("F205.PS.20261123.{n:07}"), format!("flusso-{n}")))
            }
        });
        Publish {
            tenant: "F205".into(),
            ente: "F205".into(),
            denominazione: "Comune di Milano".into(),
            day: "20261123".into(),
            id_prestazione: id_prestazione.into(),
            event_id: event_id.into(),
            expect_current: None,
            annullata: false,
            flussi: vec![NewFlusso {
                operazione: Operazione::I,
                built_from_event_id: event_id.into(),
                persona_event_id: "persona".into(),
                valutazione_event_id: None,
                content_digest: "d".into(),
                cancels: None,
                render,
            }],
            actor: "gateway".into(),
        }
    }

    /// A prestazione event `id` of beneficiary `who` for prestazione `idp`, with the export key
    /// that ingestion gives it.
    fn prestazione(id: &str, who: &str, idp: &str) -> crate::store::NewEvent {
        let body = serde_json::json!({"id": id, "data": {"idPrestazione": idp, "beneficiario": {"pseudonimo": who}}});
        crate::store::NewEvent {
            id: id.into(),
            source: "/test".into(),
            event_type: "it.lombardia.csi.prestazione.erogata.v1".into(),
            tenant: "F205".into(),
            subject: None,
            idempotency_key: None,
            correlation_id: None,
            body: body.to_string().into_bytes(),
            digest: crate::audit::digest(b"x"),
            destinations: Vec::new(),
            actor: "tester".into(),
            projections: vec![crate::store::Projection::PrestazioneExport(ExportKey {
                tenant: "F205".into(),
                id_prestazione: idp.into(),
                pseudonimo: who.into(),
            })],
        }
    }

    /// Whether the schema holds a table or index of that name.
    fn exists(conn: &Connection, name: &str) -> bool {
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = ?1", [name], |r| r.get::<_, i64>(0))
            .unwrap()
            > 0
    }

    /// The export's rows, page by page.
    async fn pages(store: &SqliteStore, limit: usize) -> Vec<Vec<(String, String, String)>> {
        let mut pages = store.export_pages("F205".into(), limit);
        let mut out = Vec::new();
        while let Some(page) = pages.recv().await {
            out.push(
                page.unwrap()
                    .rows
                    .into_iter()
                    .map(|r| (r.pseudonimo, r.id_prestazione, r.event_id))
                    .collect(),
            );
        }
        out
    }

    async fn exported(store: &SqliteStore) -> Vec<(String, String, String)> {
        pages(store, 100).await.concat()
    }

    #[tokio::test]
    async fn the_export_reads_the_latest_event_of_each_prestazione_also_from_a_store_of_an_earlier_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .accept(vec![prestazione("ev-1", "ben-b", "P-1"), prestazione("ev-2", "ben-a", "P-2")], vec![])
            .await
            .unwrap();
        // P-1 corrected; P-3 sent twice in one request: the later one counts.
        let again = vec![
            prestazione("ev-3", "ben-b", "P-1"),
            prestazione("ev-4", "ben-a", "P-3"),
            prestazione("ev-5", "ben-a", "P-3"),
        ];
        store.accept(again, vec![]).await.unwrap();
        let row = |who: &str, idp: &str, id: &str| (who.to_string(), idp.to_string(), id.to_string());
        let expected =
            vec![row("ben-a", "P-2", "ev-2"), row("ben-a", "P-3", "ev-5"), row("ben-b", "P-1", "ev-3")];
        assert_eq!(exported(&store).await, expected);
        assert_eq!(store.export_count("F205".into()).await.unwrap(), 3);
        let one_by_one = pages(&store, 1).await;
        assert_eq!(
            one_by_one,
            expected.iter().map(|r| vec![r.clone()]).collect::<Vec<_>>(),
            "pages of one row"
        );
        drop(store);

        // The same events as an earlier release left them: no export table, the export read
        // indexes on the events' JSON, schema version 0.
        let path = dir.path().join("gateway.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE prestazioni_export;
             CREATE INDEX events_prestazione_beneficiario ON events (tenant,
                json_extract(CAST(body AS TEXT), '$.data.beneficiario.pseudonimo'))
                WHERE type = 'it.lombardia.csi.prestazione.erogata.v1';
             PRAGMA user_version = 0;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(exported(&store).await, expected, "the table is filled from the stored events");
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, crate::store::sqlite::schema_version(), "every migration applied");
        assert!(!exists(&conn, "events_prestazione_beneficiario"), "the index on the JSON is gone");

        // A store written by a newer release is refused with a reason, not misread.
        conn.execute_batch("PRAGMA user_version = 7").unwrap();
        drop(conn);
        let err = SqliteStore::open(dir.path()).err().expect("a newer store is refused");
        assert!(err.to_string().contains("newer release"), "{err}");
    }

    #[tokio::test]
    async fn a_store_of_an_earlier_release_loses_the_export_order_index_and_exports_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let events = vec![
            prestazione("ev-1", "ben-c", "P-1"),
            prestazione("ev-2", "ben-a", "P-9"),
            prestazione("ev-3", "ben-b", "P-2"),
            prestazione("ev-4", "ben-a", "P-3"),
        ];
        store.accept(events, vec![]).await.unwrap();
        let expected = exported(&store).await;
        drop(store);
        // As release 3 left it: the index that kept the export's order, schema version 3.
        let path = dir.path().join("gateway.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE INDEX prestazioni_export_order ON prestazioni_export (tenant, pseudonimo, id_prestazione);
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(exported(&store).await, expected);
        let ids: Vec<&str> = expected.iter().map(|(_, _, id)| id.as_str()).collect();
        assert_eq!(ids, ["ev-4", "ev-2", "ev-3", "ev-1"], "by beneficiary, then idPrestazione");
        drop(store);
        let conn = Connection::open(&path).unwrap();
        assert!(!exists(&conn, "prestazioni_export_order"), "the index is gone");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, crate::store::sqlite::schema_version());
    }

    #[tokio::test]
    async fn a_failed_flusso_takes_nothing_and_numbers_stay_dense_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let failed = store.siuss_publish(publish("P0", "e0", true)).await.unwrap();
        assert_eq!(failed, Published::Failed("cannot render".into()));
        let a = store.siuss_publish(publish("P1", "e1", false)).await.unwrap();
        let b = store.siuss_publish(publish("P2", "e2", false)).await.unwrap();
        assert_eq!(a, Published::Offered(vec![("F205.PS.20261123.0000001".into(), Operazione::I)]));
        assert_eq!(b, Published::Offered(vec![("F205.PS.20261123.0000002".into(), Operazione::I)]));
        let again = store.siuss_publish(publish("P1", "e1", false)).await.unwrap();
        assert_eq!(again, Published::AlreadyDone(vec!["F205.PS.20261123.0000001".into()]));
        let feed = store.siuss_feed(0, 10).await.unwrap();
        assert_eq!(feed.len(), 2);
        assert!(feed[0].ts_flusso < feed[1].ts_flusso, "ts_flusso strictly increases");
        let state = store.prestazione_state("F205".into(), "P1".into()).await.unwrap().unwrap();
        assert_eq!(state.current.map(|c| c.id_flusso).as_deref(), Some("F205.PS.20261123.0000001"));

        let esito = |codice: &str, ts: i64| EsitoIn {
            id_flusso: "F205.PS.20261123.0000001".into(),
            codice: codice.into(),
            descrizione: Some("testo INPS".into()),
            id_acquisizione_siuss: None,
            codice_siuss: None,
            ts_flusso: ts.to_string(),
        };
        let ts = feed[0].ts_flusso;
        let first = store.siuss_esiti(vec![esito("RICHIESTA_INVALIDA", ts)], "inps".into()).await.unwrap();
        let repeat = store.siuss_esiti(vec![esito("RICHIESTA_INVALIDA", ts)], "inps".into()).await.unwrap();
        assert!(first.applied[0].changed && !repeat.applied[0].changed);
        let state = store.prestazione_state("F205".into(), "P1".into()).await.unwrap().unwrap();
        assert!(state.current.is_none(), "INPS refused it: nothing to cancel later");
        let unknown = EsitoIn { id_flusso: "nope".into(), ..esito("OK", ts) };
        let out = store.siuss_esiti(vec![unknown], "inps".into()).await.unwrap();
        assert_eq!(out.unknown, vec!["nope".to_string()]);
        let v = store.audit_verify().await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.records, 4, "two offered, two esiti");
    }
}
