//! Reads: the event view and its timeline, dead letters, audit pages and the chain's verification,
//! the projections, the outbox. Nothing here writes.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{query, query_opt};
use crate::audit::{Record, Verification, Verifier};
use crate::store::*;

fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

pub(super) fn task_from_row(r: &Row) -> StoreResult<Task> {
    Ok(Task {
        delivery_id: r.try_get(0)?,
        event_id: r.try_get(1)?,
        destination: r.try_get(2)?,
        event_type: r.try_get(3)?,
        tenant: r.try_get(4)?,
        idempotency_key: r.try_get(5)?,
        body: r.try_get(6)?,
        digest: r.try_get(7)?,
        attempts: u32_of(r.try_get(8)?),
        since: r.try_get(9)?,
    })
}

pub(super) async fn event<C: GenericClient>(c: &C, id: &str) -> StoreResult<Option<EventView>> {
    let Some(row) = query_opt(
        c,
        "SELECT id, tenant, type, source, received_at, digest, body FROM events WHERE id = $1",
        &[&id],
    )
    .await?
    else {
        return Ok(None);
    };
    let body: Vec<u8> = row.try_get(6)?;
    let rows = query(
        c,
        "SELECT id, destination, status, attempts, next_attempt_at, last_error
         FROM deliveries WHERE event_id = $1 ORDER BY destination",
        &[&id],
    )
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut deliveries = Vec::with_capacity(rows.len());
    for r in &rows {
        let status: String = r.try_get(2)?;
        let next: i64 = r.try_get(4)?;
        ids.push(r.try_get::<_, i64>(0)?);
        deliveries.push(DeliveryView {
            destination: r.try_get(1)?,
            next_attempt_at: (status == "pending").then(|| rfc3339(next)),
            status: if status == "dead" { "dead_lettered".into() } else { status },
            attempts: u32_of(r.try_get(3)?),
            last_error: r.try_get(5)?,
            timeline: Vec::new(),
        });
    }
    if !ids.is_empty() {
        let attempts = query(
            c,
            "SELECT delivery_id, attempt, started_at, finished_at, outcome, detail FROM attempts
             WHERE delivery_id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await?;
        for a in &attempts {
            let did: i64 = a.try_get(0)?;
            if let Some(i) = ids.iter().position(|x| *x == did) {
                deliveries[i].timeline.push(Attempt {
                    attempt: u32_of(a.try_get(1)?),
                    started_at: rfc3339(a.try_get(2)?),
                    finished_at: rfc3339(a.try_get(3)?),
                    outcome: a.try_get(4)?,
                    detail: a.try_get(5)?,
                });
            }
        }
    }
    let status = if deliveries.is_empty() {
        "accepted"
    } else if deliveries.iter().any(|d| d.status == "dead_lettered") {
        "dead_lettered"
    } else if deliveries.iter().all(|d| d.status == "delivered") {
        "delivered"
    } else {
        "pending"
    };
    Ok(Some(EventView {
        id: row.try_get(0)?,
        tenant: row.try_get(1)?,
        event_type: row.try_get(2)?,
        source: row.try_get(3)?,
        received_at: rfc3339(row.try_get(4)?),
        status: status.into(),
        digest: row.try_get(5)?,
        event: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        siuss: super::siuss::view(c, id).await?,
        deliveries,
    }))
}

pub(super) async fn dead_letters<C: GenericClient>(
    c: &C,
    f: &DeadLetterFilter,
) -> StoreResult<Vec<DeadLetter>> {
    let limit = i64::from(f.limit.unwrap_or(100).clamp(1, 1000));
    let rows = query(
        c,
        "SELECT d.id, d.event_id, d.destination, e.tenant, e.type, d.attempts, COALESCE(d.last_error, ''),
                d.updated_at, e.body
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.status = 'dead'
           AND ($1::text IS NULL OR d.destination = $1)
           AND ($2::text IS NULL OR e.tenant = $2)
           AND ($3::text IS NULL OR e.type = $3)
           AND ($4::bigint[] IS NULL OR d.id = ANY($4))
           AND ($5::text[] IS NULL OR e.tenant = ANY($5))
           AND d.id > $6
         ORDER BY d.id LIMIT $7",
        &[
            &f.destination,
            &f.tenant,
            &f.event_type,
            &f.ids,
            &f.allowed_tenants,
            &f.after.unwrap_or(0),
            &limit,
        ],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let body: Vec<u8> = r.try_get(8)?;
            Ok(DeadLetter {
                id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                destination: r.try_get(2)?,
                tenant: r.try_get(3)?,
                event_type: r.try_get(4)?,
                attempts: u32_of(r.try_get(5)?),
                last_error: r.try_get(6)?,
                dead_at: rfc3339(r.try_get(7)?),
                event: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}

const AUDIT_COLUMNS: &str =
    "seq, ts, action, actor, tenant, event_id, destination, digest, detail, prev_hash, hash";

fn record_from_row(r: &Row) -> StoreResult<Record> {
    Ok(Record {
        seq: r.try_get(0)?,
        ts: r.try_get(1)?,
        action: r.try_get(2)?,
        actor: r.try_get(3)?,
        tenant: r.try_get(4)?,
        event_id: r.try_get(5)?,
        destination: r.try_get(6)?,
        digest: r.try_get(7)?,
        detail: r.try_get(8)?,
        prev_hash: r.try_get(9)?,
        hash: r.try_get(10)?,
    })
}

pub(super) async fn audit_page<C: GenericClient>(c: &C, f: &AuditFilter) -> StoreResult<Vec<Record>> {
    let limit = i64::from(f.limit.unwrap_or(100).clamp(1, 1000));
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit
         WHERE seq > $1 AND ($2::text IS NULL OR event_id = $2) AND ($3::text IS NULL OR action = $3)
           AND ($4::text IS NULL OR actor = $4) AND ($5::text IS NULL OR tenant = $5)
           AND ($6::text[] IS NULL OR tenant = ANY($6))
         ORDER BY seq LIMIT $7"
    );
    let rows = query(
        c,
        &sql,
        &[&f.after.unwrap_or(0), &f.event_id, &f.action, &f.actor, &f.tenant, &f.allowed_tenants, &limit],
    )
    .await?;
    rows.iter().map(record_from_row).collect()
}

/// Verifies the audit chain with the shared [`Verifier`], in pages of `seq` order (as embedded
/// mode reads by rowid, which is its `seq`), against the head kept in `audit_head`.
pub(super) async fn verify_chain<C: GenericClient>(c: &C) -> StoreResult<Verification> {
    let head = query_opt(c, "SELECT seq, hash FROM audit_head WHERE one = 1", &[]).await?;
    let head = match head {
        Some(r) => Some((r.try_get::<_, i64>(0)?, r.try_get::<_, String>(1)?)),
        None => None,
    };
    let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT 10000");
    let mut v = Verifier::default();
    let mut after = i64::MIN;
    'pages: loop {
        let rows = query(c, &sql, &[&after]).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let r = record_from_row(row)?;
            after = r.seq;
            if !v.feed(&r) {
                break 'pages;
            }
        }
    }
    Ok(v.finish(head))
}

fn progetto_from_row(r: &Row) -> StoreResult<ProgettoRow> {
    let interventi: String = r.try_get(6)?;
    Ok(ProgettoRow {
        tenant: r.try_get(0)?,
        id_progetto: r.try_get(1)?,
        pseudonimo: r.try_get(2)?,
        codice_fiscale: r.try_get(3)?,
        dal: r.try_get(4)?,
        al: r.try_get(5)?,
        interventi: serde_json::from_str(&interventi).unwrap_or_default(),
        event_id: r.try_get(7)?,
    })
}

fn coop_from_row(r: &Row) -> StoreResult<CoopDeliveryRow> {
    Ok(CoopDeliveryRow {
        tenant: r.try_get(0)?,
        key: r.try_get(1)?,
        cooperativa: r.try_get(2)?,
        id_progetto: r.try_get(3)?,
        pseudonimo: r.try_get(4)?,
        tipo_servizio: r.try_get(5)?,
        codice_prestazione: r.try_get(6)?,
        denominazione: r.try_get(7)?,
        area_utenza: r.try_get(8)?,
        data: r.try_get(9)?,
        mese: r.try_get(10)?,
        minuti: r.try_get(11)?,
        importo_cents: r.try_get(12)?,
        quota_utente_cents: r.try_get(13)?,
        flag: r.try_get(14)?,
        event_id: r.try_get(15)?,
        upload_id: r.try_get(16)?,
        digest: r.try_get(17)?,
        id_prestazione: None,
    })
}

pub(super) async fn progetto<C: GenericClient>(
    c: &C,
    tenant: &str,
    id_progetto: &str,
) -> StoreResult<Option<ProgettoRow>> {
    let sql = format!("SELECT {PROGETTO_COLUMNS} FROM progetti WHERE tenant = $1 AND id_progetto = $2");
    query_opt(c, &sql, &[&tenant, &id_progetto]).await?.as_ref().map(progetto_from_row).transpose()
}

pub(super) async fn progetti_of<C: GenericClient>(
    c: &C,
    tenant: &str,
    who: &[String],
) -> StoreResult<Vec<ProgettoRow>> {
    let sql = format!(
        "SELECT {PROGETTO_COLUMNS} FROM progetti WHERE tenant = $1 AND pseudonimo = ANY($2)
         UNION
         SELECT {PROGETTO_COLUMNS} FROM progetti WHERE tenant = $1 AND codice_fiscale = ANY($2)"
    );
    query(c, &sql, &[&tenant, &who]).await?.iter().map(progetto_from_row).collect()
}

pub(super) async fn month_minutes<C: GenericClient>(
    c: &C,
    tenant: &str,
    mesi: &[String],
) -> StoreResult<Vec<(MonthGroup, i64)>> {
    let rows = query(
        c,
        "SELECT id_progetto, tipo_servizio, mese, SUM(minuti)::bigint FROM coop_deliveries
         WHERE tenant = $1 AND mese = ANY($2) GROUP BY id_progetto, tipo_servizio, mese",
        &[&tenant, &mesi],
    )
    .await?;
    rows.iter().map(|r| Ok(((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?), r.try_get(3)?))).collect()
}

pub(super) async fn coop_deliveries<C: GenericClient>(
    c: &C,
    tenant: &str,
    keys: &[String],
) -> StoreResult<Vec<CoopDeliveryRow>> {
    // With the `idPrestazione` of each row's event, which a correction keeps.
    let sql = format!(
        "SELECT {}, convert_from(e.body, 'UTF8')::jsonb #>> '{{data,idPrestazione}}'
         FROM coop_deliveries d LEFT JOIN events e ON e.id = d.event_id
         WHERE d.tenant = $1 AND d.key = ANY($2)",
        coop_columns_of("d")
    );
    query(c, &sql, &[&tenant, &keys])
        .await?
        .iter()
        .map(|r| Ok(CoopDeliveryRow { id_prestazione: r.try_get(18)?, ..coop_from_row(r)? }))
        .collect()
}

pub(super) async fn coop_month<C: GenericClient>(
    c: &C,
    tenant: &str,
    mese: &str,
    cooperativa: Option<&str>,
) -> StoreResult<Vec<CoopDeliveryRow>> {
    let sql = format!(
        "SELECT {COOP_COLUMNS} FROM coop_deliveries
         WHERE tenant = $1 AND mese = $2 AND ($3::text IS NULL OR cooperativa = $3)
         ORDER BY cooperativa, id_progetto, tipo_servizio, data"
    );
    query(c, &sql, &[&tenant, &mese, &cooperativa]).await?.iter().map(coop_from_row).collect()
}

pub(super) async fn upload<C: GenericClient>(c: &C, id: &str) -> StoreResult<Option<UploadRecord>> {
    let row = query_opt(
        c,
        "SELECT id, tenant, client, mapping, created_at, report FROM coop_uploads WHERE id = $1",
        &[&id],
    )
    .await?;
    let Some(r) = row else { return Ok(None) };
    let report: String = r.try_get(5)?;
    Ok(Some(UploadRecord {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        client: r.try_get(2)?,
        mapping: r.try_get(3)?,
        created_at: r.try_get(4)?,
        report: serde_json::from_str(&report).unwrap_or_default(),
    }))
}

pub(super) async fn upload_rows<C: GenericClient>(
    c: &C,
    upload_id: &str,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<ReportRow>> {
    let rows = query(
        c,
        "SELECT row, report FROM coop_upload_rows WHERE upload_id = $1 AND row > $2 ORDER BY row LIMIT $3",
        &[&upload_id, &after, &(limit as i64)],
    )
    .await?;
    rows.iter().map(|r| Ok(ReportRow { row: r.try_get(0)?, json: r.try_get(1)? })).collect()
}

pub(super) async fn settled<C: GenericClient>(c: &C, delivery_id: i64) -> StoreResult<bool> {
    let rows = query(c, "SELECT status FROM deliveries WHERE id = $1", &[&delivery_id]).await?;
    let status: Option<String> = rows.first().map(|r| r.try_get(0)).transpose()?;
    Ok(matches!(status.as_deref(), Some("delivered" | "dead")))
}

pub(super) async fn depth<C: GenericClient>(c: &C) -> StoreResult<Vec<(String, i64)>> {
    let rows = query(
        c,
        "SELECT destination, COUNT(*) FROM deliveries
         WHERE status IN ('pending', 'in_flight') GROUP BY destination",
        &[],
    )
    .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}
