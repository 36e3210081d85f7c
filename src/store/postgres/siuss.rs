//! Cluster mode of [`SiussStore`]: the flussi offered to INPS, the per-ente daily progressives,
//! the per-prestazione state and the export's projection, in the shared PostgreSQL database.
//!
//! A publish or a batch of esiti is one transaction that first takes SIUSS's own lock
//! (`Serial::Siuss`, `write.rs`): SIUSS writes of all instances are serialized, so a flusso, its
//! progressive, its `ts_flusso` and its audit record commit together, and `ts_flusso` is assigned
//! and committed in one order across the cluster — a poller reading the feed after `ts_flusso = t`
//! never finds later a flusso with a smaller one. Its audit records are appended last, as every
//! writer's are. The SIUSS tables are written by these transactions only, one at a time, which
//! then wait for no row but the chain's head: they never deadlock (and are not run again).
//!
//! The export reads `prestazioni_export`, one row per `(tenant, idPrestazione)` naming its latest
//! event, kept at acceptance (the embedded store keeps a table of the same name).
//! The tables are migration 3 (`schema.rs`).

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Object, Transaction};
use serde_json::Value;
use tokio_postgres::Row;

use super::write::{Chain, Serial};
use super::{execute, pooled, query, query_opt, PgStore};
use crate::store::siuss::*;
use crate::store::{now_ms, StoreError, StoreResult};
use csi_gateway_sdk::BoxFuture;

/// Keeps the export's projection of a group's new prestazione events, with one upsert: the
/// latest event of each prestazione wins, in acceptance order (`received_at`, then id).
pub(super) async fn project_prestazioni(
    tx: &Transaction<'_>,
    new: &[&crate::store::NewEvent],
    received_at: i64,
) -> StoreResult<()> {
    // (tenant, idPrestazione) → (event id, pseudonimo): the greatest id of the group.
    let mut latest: HashMap<(&str, &str), (&str, &str)> = HashMap::new();
    for ev in new {
        for p in &ev.projections {
            if let crate::store::Projection::PrestazioneExport(k) = p {
                let slot = latest
                    .entry((k.tenant.as_str(), k.id_prestazione.as_str()))
                    .or_insert((ev.id.as_str(), k.pseudonimo.as_str()));
                if ev.id.as_str() > slot.0 {
                    *slot = (ev.id.as_str(), k.pseudonimo.as_str());
                }
            }
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut tenant = Vec::with_capacity(latest.len());
    let mut id_prestazione = Vec::with_capacity(latest.len());
    let mut pseudonimo = Vec::with_capacity(latest.len());
    let mut event_id = Vec::with_capacity(latest.len());
    // In key order, as every instance writes them (two upserts never wait for each other in turn).
    let mut latest: Vec<_> = latest.into_iter().collect();
    latest.sort_unstable_by_key(|(k, _)| *k);
    for ((t, p), (e, who)) in latest {
        tenant.push(t);
        id_prestazione.push(p);
        event_id.push(e);
        pseudonimo.push(who);
    }
    execute(
        tx,
        "INSERT INTO prestazioni_export (tenant, id_prestazione, pseudonimo, event_id, received_at)
         SELECT t, p, w, e, $5 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS x (t, p, w, e)
         ON CONFLICT (tenant, id_prestazione) DO UPDATE SET pseudonimo = excluded.pseudonimo,
            event_id = excluded.event_id, received_at = excluded.received_at
         WHERE (excluded.received_at, excluded.event_id COLLATE \"C\")
             > (prestazioni_export.received_at, prestazioni_export.event_id COLLATE \"C\")",
        &[&tenant, &id_prestazione, &pseudonimo, &event_id, &received_at],
    )
    .await?;
    Ok(())
}

const FLUSSO_COLUMNS: &str =
    "id_flusso, ente, denominazione, tenant, tipo, operazione, event_id, id_prestazione,
    built_from_event_id, persona_event_id, valutazione_event_id, content_digest, ts_flusso, created_at, stato,
    esito, esito_messaggio, id_acquisizione_siuss, codice_siuss, cancels";

fn flusso_from_row(r: &Row) -> StoreResult<FlussoRow> {
    Ok(FlussoRow {
        id_flusso: r.try_get(0)?,
        ente: r.try_get(1)?,
        denominazione: r.try_get(2)?,
        tenant: r.try_get(3)?,
        tipo: r.try_get(4)?,
        operazione: r.try_get(5)?,
        event_id: r.try_get(6)?,
        id_prestazione: r.try_get(7)?,
        built_from_event_id: r.try_get(8)?,
        persona_event_id: r.try_get(9)?,
        valutazione_event_id: r.try_get(10)?,
        content_digest: r.try_get(11)?,
        ts_flusso: r.try_get(12)?,
        created_at: r.try_get(13)?,
        stato: r.try_get(14)?,
        esito: r.try_get(15)?,
        esito_messaggio: r.try_get(16)?,
        id_acquisizione_siuss: r.try_get(17)?,
        codice_siuss: r.try_get(18)?,
        cancels: r.try_get(19)?,
    })
}

async fn flussi_of<C: GenericClient>(c: &C, event_id: &str) -> StoreResult<Vec<FlussoRow>> {
    let sql = format!("SELECT {FLUSSO_COLUMNS} FROM siuss_flussi WHERE event_id = $1 ORDER BY seq");
    query(c, &sql, &[&event_id]).await?.iter().map(flusso_from_row).collect()
}

async fn flusso<C: GenericClient>(c: &C, id_flusso: &str) -> StoreResult<Option<FlussoRow>> {
    let sql = format!("SELECT {FLUSSO_COLUMNS} FROM siuss_flussi WHERE id_flusso = $1");
    query_opt(c, &sql, &[&id_flusso]).await?.as_ref().map(flusso_from_row).transpose()
}

/// The SIUSS block of `GET /v1/events/{id}`, when the event produced flussi.
pub(super) async fn view<C: GenericClient>(c: &C, event_id: &str) -> StoreResult<Option<SiussView>> {
    Ok(SiussView::of(flussi_of(c, event_id).await?))
}

/// The next `ts_flusso`: now, or one millisecond after the latest, whichever is later (the
/// caller holds the chain's lock, so no other instance assigns one meanwhile).
async fn next_ts(tx: &Transaction<'_>, now: i64) -> StoreResult<i64> {
    let row = query_opt(tx, "SELECT COALESCE(MAX(ts_flusso), 0) FROM siuss_flussi", &[]).await?;
    let max: i64 = match row {
        Some(r) => r.try_get(0)?,
        None => 0,
    };
    Ok(now.max(max + 1))
}

/// Whether event `a` was accepted after event `b` (same order as embedded mode).
async fn accepted_after(tx: &Transaction<'_>, a: &str, b: &str) -> StoreResult<bool> {
    let at = |id: &str| {
        let id = id.to_string();
        async move {
            let row = query_opt(tx, "SELECT received_at FROM events WHERE id = $1", &[&id]).await?;
            row.map(|r| r.try_get::<_, i64>(0)).transpose().map_err(StoreError::from)
        }
    };
    Ok(match (at(a).await?, at(b).await?) {
        (Some(ta), Some(tb)) => (ta, a) > (tb, b),
        _ => false,
    })
}

/// Takes the next number of an ente's daily progressive.
async fn take_progressivo(tx: &Transaction<'_>, ente: &str, day: &str) -> StoreResult<i64> {
    let row = query_opt(
        tx,
        "INSERT INTO siuss_progressivi (ente, day, last) VALUES ($1, $2, 1)
         ON CONFLICT (ente, day) DO UPDATE SET last = siuss_progressivi.last + 1 RETURNING last",
        &[&ente, &day],
    )
    .await?
    .ok_or_else(|| StoreError::new("internal: no progressive returned"))?;
    Ok(row.try_get(0)?)
}

async fn publish(client: &mut Object, p: &mut Publish) -> StoreResult<Published> {
    let tx = client.transaction().await?;
    Serial::Siuss.lock(&tx).await?;
    let mut chain = Chain::default();
    let now = now_ms();
    let done: Vec<String> =
        query(&tx, "SELECT id_flusso FROM siuss_flussi WHERE event_id = $1 ORDER BY seq", &[&p.event_id])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
    if !done.is_empty() {
        return Ok(Published::AlreadyDone(done));
    }
    let state = query_opt(
        &tx,
        "SELECT event_id, current_flusso FROM siuss_prestazioni WHERE ente = $1 AND id_prestazione = $2",
        &[&p.ente, &p.id_prestazione],
    )
    .await?
    .map(|r| Ok::<_, tokio_postgres::Error>((r.try_get::<_, String>(0)?, r.try_get::<_, Option<String>>(1)?)))
    .transpose()?;
    match &state {
        Some((last, _)) if *last == p.event_id => return Ok(Published::AlreadyDone(Vec::new())),
        Some((last, _)) if accepted_after(&tx, last, &p.event_id).await? => {
            return Ok(Published::Superseded { by: last.clone() })
        }
        Some((_, current)) if *current != p.expect_current => return Ok(Published::Conflict),
        None if p.expect_current.is_some() => return Ok(Published::Conflict),
        _ => {}
    }
    // A flusso that cannot be numbered or rendered leaves nothing: the transaction is dropped.
    let mut offered = Vec::new();
    let mut current: Option<String> = None;
    for f in std::mem::take(&mut p.flussi) {
        let n = match progressivo(take_progressivo(&tx, &p.ente, &p.day).await?, &p.ente, &p.day) {
            Ok(n) => n,
            Err(reason) => return Ok(Published::Failed(reason)),
        };
        let (id_flusso, b64) = match (f.render)(n) {
            Ok(r) => r,
            Err(reason) => return Ok(Published::Failed(reason)),
        };
        let ts = next_ts(&tx, now).await?;
        execute(
            &tx,
            "INSERT INTO siuss_flussi (id_flusso, ente, denominazione, tenant, tipo, operazione, event_id,
                id_prestazione, built_from_event_id, persona_event_id, valutazione_event_id, content_digest,
                flusso, ts_flusso, created_at, stato, cancels)
             VALUES ($1, $2, $3, $4, 'PS_PSA_SINA', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                &id_flusso,
                &p.ente,
                &p.denominazione,
                &p.tenant,
                &f.operazione.as_str(),
                &p.event_id,
                &p.id_prestazione,
                &f.built_from_event_id,
                &f.persona_event_id,
                &f.valutazione_event_id,
                &f.content_digest,
                &b64,
                &ts,
                &now,
                &stato::OFFERED,
                &f.cancels,
            ],
        )
        .await?;
        let e = p.offered_entry(f.operazione, f.cancels.as_deref(), &id_flusso, &b64);
        chain.append(&e, now);
        if f.operazione == Operazione::I {
            current = Some(id_flusso.clone());
        }
        offered.push((id_flusso, f.operazione));
    }
    execute(
        &tx,
        "INSERT INTO siuss_prestazioni (ente, id_prestazione, event_id, current_flusso, annullata)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (ente, id_prestazione) DO UPDATE SET event_id = excluded.event_id,
            current_flusso = excluded.current_flusso, annullata = excluded.annullata",
        &[&p.ente, &p.id_prestazione, &p.event_id, &current, &p.annullata],
    )
    .await?;
    chain.flush(&tx).await?;
    tx.commit().await?;
    Ok(Published::Offered(offered))
}

async fn record_esiti(client: &mut Object, esiti: &[EsitoIn], actor: &str) -> StoreResult<EsitiOutcome> {
    let tx = client.transaction().await?;
    Serial::Siuss.lock(&tx).await?;
    let mut chain = Chain::default();
    let now = now_ms();
    let mut out = EsitiOutcome::default();
    for e in esiti {
        let Some(row) = flusso(&tx, &e.id_flusso).await? else {
            if !out.unknown.contains(&e.id_flusso) {
                out.unknown.push(e.id_flusso.clone());
            }
            continue;
        };
        let key = esito_key(e);
        let recorded: Option<String> =
            query_opt(&tx, "SELECT esito_key FROM siuss_flussi WHERE id_flusso = $1", &[&e.id_flusso])
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
                .flatten();
        let changed = recorded.as_deref() != Some(key.as_str()) && !esito_outdated(e, &row);
        let effect = if changed {
            // Re-offering a flusso after a later one of the same prestazione would reverse their
            // order at INPS: such a flusso is left for an operator instead.
            let overtaken = e.codice == "ERRORE_GENERICO"
                && query_opt(
                    &tx,
                    "SELECT 1 FROM siuss_flussi WHERE ente = $1 AND id_prestazione = $2
                       AND seq > (SELECT seq FROM siuss_flussi WHERE id_flusso = $3) LIMIT 1",
                    &[&row.ente, &row.id_prestazione, &row.id_flusso],
                )
                .await?
                .is_some();
            let fx = esito_effect(e, overtaken);
            let new_ts = if fx.reoffer { next_ts(&tx, now).await? } else { row.ts_flusso };
            execute(
                &tx,
                "UPDATE siuss_flussi SET stato = $2, esito = $3, esito_messaggio = $4, esito_key = $5,
                    esito_at = $6, id_acquisizione_siuss = COALESCE($7, id_acquisizione_siuss),
                    codice_siuss = COALESCE($8, codice_siuss), ts_flusso = $9
                 WHERE id_flusso = $1",
                &[
                    &e.id_flusso,
                    &fx.stato,
                    &e.codice,
                    &fx.messaggio,
                    &key,
                    &now,
                    &e.id_acquisizione_siuss,
                    &e.codice_siuss,
                    &new_ts,
                ],
            )
            .await?;
            match fx.holding(&row) {
                Holding::Refused => {
                    execute(
                        &tx,
                        "UPDATE siuss_prestazioni SET current_flusso = NULL
                         WHERE ente = $1 AND id_prestazione = $2 AND current_flusso = $3",
                        &[&row.ente, &row.id_prestazione, &row.id_flusso],
                    )
                    .await?;
                }
                Holding::Acquired => {
                    execute(
                        &tx,
                        "UPDATE siuss_prestazioni SET current_flusso = $3
                         WHERE ente = $1 AND id_prestazione = $2 AND current_flusso IS NULL
                           AND event_id = $4 AND NOT annullata",
                        &[&row.ente, &row.id_prestazione, &row.id_flusso, &row.event_id],
                    )
                    .await?;
                }
                Holding::Unchanged => {}
            }
            Some(fx)
        } else {
            None
        };
        chain.append(&esito_entry(e, effect.as_ref(), &row, actor), now);
        out.applied.push(EsitoApplied { id_flusso: e.id_flusso.clone(), codice: e.codice.clone(), changed });
    }
    chain.flush(&tx).await?;
    tx.commit().await?;
    Ok(out)
}

fn stored_event_from_row(r: &Row) -> StoreResult<StoredEvent> {
    let body: Vec<u8> = r.try_get(4)?;
    Ok(StoredEvent {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        event_type: r.try_get(2)?,
        received_at: r.try_get(3)?,
        event: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

fn persona_from_row(r: &Row) -> StoreResult<(PersonaRow, Value)> {
    let body: Vec<u8> = r.try_get(4)?;
    Ok((
        PersonaRow {
            tenant: r.try_get(0)?,
            pseudonimo: r.try_get(1)?,
            codice_fiscale: r.try_get(2)?,
            event_id: r.try_get(3)?,
        },
        data_of(&body),
    ))
}

fn valutazione_from_row(r: &Row) -> StoreResult<(ValutazioneRow, Value)> {
    let body: Vec<u8> = r.try_get(4)?;
    Ok((
        ValutazioneRow {
            tenant: r.try_get(0)?,
            pseudonimo: r.try_get(1)?,
            data_valutazione: r.try_get(2)?,
            event_id: r.try_get(3)?,
        },
        data_of(&body),
    ))
}

const PERSONE: &str = "SELECT p.tenant, p.pseudonimo, p.codice_fiscale, p.event_id, e.body
     FROM persone p JOIN events e ON e.id = p.event_id WHERE p.tenant = $1 AND p.pseudonimo = ANY($2)";
const VALUTAZIONI: &str = "SELECT v.tenant, v.pseudonimo, v.data_valutazione, v.event_id, e.body
     FROM valutazioni_sina v JOIN events e ON e.id = v.event_id WHERE v.tenant = $1 AND v.pseudonimo = ANY($2)";

/// The export's page: the latest event of each `idPrestazione`, by pseudonym then `idPrestazione`
/// (bytewise, as embedded mode), after the cursor; the page's personas and valutazioni with one
/// query each.
async fn export_page<C: GenericClient>(
    c: &C,
    tenant: &str,
    after: &(String, String),
    limit: usize,
) -> StoreResult<ExportPage> {
    let rows = query(
        c,
        "SELECT x.event_id, e.body, x.pseudonimo, x.id_prestazione
         FROM prestazioni_export x JOIN events e ON e.id = x.event_id
         WHERE x.tenant = $1 AND (x.pseudonimo, x.id_prestazione) > ($2, $3)
         ORDER BY x.pseudonimo, x.id_prestazione LIMIT $4",
        &[&tenant, &after.0, &after.1, &(limit as i64)],
    )
    .await?;
    let rows: Vec<ExportRow> = rows
        .iter()
        .map(|r| {
            let body: Vec<u8> = r.try_get(1)?;
            Ok(ExportRow {
                event_id: r.try_get(0)?,
                pseudonimo: r.try_get(2)?,
                id_prestazione: r.try_get(3)?,
                data: data_of(&body),
            })
        })
        .collect::<StoreResult<_>>()?;
    let mut who: Vec<&str> = rows.iter().map(|r| r.pseudonimo.as_str()).collect();
    who.dedup();
    let mut persone: HashMap<String, (PersonaRow, Value)> = HashMap::new();
    let mut valutazioni: HashMap<String, (ValutazioneRow, Value)> = HashMap::new();
    if !who.is_empty() {
        for r in query(c, PERSONE, &[&tenant, &who]).await? {
            let p = persona_from_row(&r)?;
            persone.insert(p.0.pseudonimo.clone(), p);
        }
        for r in query(c, VALUTAZIONI, &[&tenant, &who]).await? {
            let v = valutazione_from_row(&r)?;
            valutazioni.insert(v.0.pseudonimo.clone(), v);
        }
    }
    let mut page = ExportPage { rows: Vec::with_capacity(rows.len()), persone: Vec::new() };
    for row in rows {
        if page.persone.last().map(|(p, _)| p.as_str()) != Some(row.pseudonimo.as_str()) {
            let persona = ExportPersona {
                persona: persone.remove(&row.pseudonimo),
                valutazione: valutazioni.remove(&row.pseudonimo),
            };
            page.persone.push((row.pseudonimo.clone(), persona));
        }
        page.rows.push(row);
    }
    Ok(page)
}

impl PgStore {
    /// Takes the next number of an ente's daily progressive of `id_flusso` outside a publish (the
    /// command line's export), in its own transaction: no number is handed out twice.
    pub async fn take_progressivo(&self, ente: &str, day: &str) -> StoreResult<u32> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = take_progressivo(&tx, ente, day).await?;
        let n = progressivo(n, ente, day).map_err(StoreError::new)?;
        tx.commit().await?;
        Ok(n)
    }
}

impl SiussStore for PgStore {
    fn persona(
        &self,
        tenant: String,
        pseudonimo: String,
    ) -> BoxFuture<'_, StoreResult<Option<(PersonaRow, Value)>>> {
        Box::pin(async move {
            let c = self.client().await?;
            query_opt(&c, PERSONE, &[&tenant, &vec![pseudonimo]])
                .await?
                .as_ref()
                .map(persona_from_row)
                .transpose()
        })
    }

    fn valutazione_sina(
        &self,
        tenant: String,
        pseudonimo: String,
    ) -> BoxFuture<'_, StoreResult<Option<(ValutazioneRow, Value)>>> {
        Box::pin(async move {
            let c = self.client().await?;
            query_opt(&c, VALUTAZIONI, &[&tenant, &vec![pseudonimo]])
                .await?
                .as_ref()
                .map(valutazione_from_row)
                .transpose()
        })
    }

    fn stored_event(&self, id: String) -> BoxFuture<'_, StoreResult<Option<StoredEvent>>> {
        Box::pin(async move {
            let c = self.client().await?;
            query_opt(&c, "SELECT id, tenant, type, received_at, body FROM events WHERE id = $1", &[&id])
                .await?
                .as_ref()
                .map(stored_event_from_row)
                .transpose()
        })
    }

    fn events_of_type(
        &self,
        tenant: String,
        event_type: String,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredEvent>>> {
        Box::pin(async move {
            let c = self.client().await?;
            // Acceptance order: (received_at, id); an unknown cursor starts from the beginning.
            let cursor = match &after {
                Some(id) => query_opt(&c, "SELECT received_at, id FROM events WHERE id = $1", &[id])
                    .await?
                    .map(|r| {
                        Ok::<_, tokio_postgres::Error>((r.try_get::<_, i64>(0)?, r.try_get::<_, String>(1)?))
                    })
                    .transpose()?,
                None => None,
            };
            let (at, id) = cursor.unwrap_or((i64::MIN, String::new()));
            query(
                &c,
                "SELECT id, tenant, type, received_at, body FROM events
                 WHERE tenant = $1 AND type = $2 AND (received_at, id COLLATE \"C\") > ($3, $4)
                 ORDER BY received_at, id COLLATE \"C\" LIMIT $5",
                &[&tenant, &event_type, &at, &id, &(limit as i64)],
            )
            .await?
            .iter()
            .map(stored_event_from_row)
            .collect()
        })
    }

    /// Pages by keyset over `prestazioni_export_order`, each page its own query on one connection.
    fn export_pages(&self, tenant: String, limit: usize) -> ExportPages {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (pool, target) = (self.pool.clone(), self.target.clone());
        tokio::spawn(async move {
            let read = async {
                let c = pooled(&pool, &target).await?;
                // Where the next page starts: after the last (pseudonimo, idPrestazione) sent.
                let mut after = (String::new(), String::new());
                loop {
                    let page = export_page(&c, &tenant, &after, limit).await?;
                    let Some(last) = page.rows.last() else { return Ok(()) };
                    after = (last.pseudonimo.clone(), last.id_prestazione.clone());
                    if tx.send(Ok(page)).await.is_err() {
                        return Ok(());
                    }
                }
            };
            if let Err(e) = read.await {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    fn export_count(&self, tenant: String) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = query_opt(&c, "SELECT count(*) FROM prestazioni_export WHERE tenant = $1", &[&tenant])
                .await?;
            let n: i64 = match row {
                Some(r) => r.try_get(0)?,
                None => 0,
            };
            Ok(n.max(0) as u64)
        })
    }

    fn prestazione_state(
        &self,
        ente: String,
        id_prestazione: String,
    ) -> BoxFuture<'_, StoreResult<Option<PrestazioneState>>> {
        Box::pin(async move {
            let c = self.client().await?;
            let Some(row) = query_opt(
                &c,
                "SELECT event_id, current_flusso, annullata FROM siuss_prestazioni
                 WHERE ente = $1 AND id_prestazione = $2",
                &[&ente, &id_prestazione],
            )
            .await?
            else {
                return Ok(None);
            };
            let current: Option<String> = row.try_get(1)?;
            let current = match current {
                Some(id) => flusso(&c, &id).await?,
                None => None,
            };
            Ok(Some(PrestazioneState { event_id: row.try_get(0)?, current, annullata: row.try_get(2)? }))
        })
    }

    fn flussi_of_event(&self, event_id: String) -> BoxFuture<'_, StoreResult<Vec<FlussoRow>>> {
        Box::pin(async move { flussi_of(&self.client().await?, &event_id).await })
    }

    fn siuss_publish(&self, mut publish: Publish) -> BoxFuture<'_, StoreResult<Published>> {
        Box::pin(async move { self::publish(&mut self.client().await?, &mut publish).await })
    }

    fn siuss_feed(&self, since: i64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<FeedEntry>>> {
        Box::pin(async move {
            let c = self.client().await?;
            query(
                &c,
                "SELECT id_flusso, ente, denominazione, tipo, ts_flusso, flusso FROM siuss_flussi
                 WHERE ts_flusso > $1 ORDER BY ts_flusso LIMIT $2",
                &[&since, &(limit as i64)],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(FeedEntry {
                    id_flusso: r.try_get(0)?,
                    ente: r.try_get(1)?,
                    denominazione: r.try_get(2)?,
                    tipo: r.try_get(3)?,
                    ts_flusso: r.try_get(4)?,
                    flusso: r.try_get(5)?,
                })
            })
            .collect()
        })
    }

    fn siuss_esiti(&self, esiti: Vec<EsitoIn>, actor: String) -> BoxFuture<'_, StoreResult<EsitiOutcome>> {
        Box::pin(async move { record_esiti(&mut self.client().await?, &esiti, &actor).await })
    }
}
