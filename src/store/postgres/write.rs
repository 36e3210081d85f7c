//! The write transactions. The audit chain's head (`audit_head`) is locked last in each one
//! (`SELECT ... FOR UPDATE` once every other row is written, [`Chain::flush`]): appends from every
//! instance are serialized and the chain stays linear, while the rest of two instances'
//! transactions run side by side. A transaction that waited on another's row appends after it.
//! Writes that read a read model before writing it (a cooperative's deliveries, SIUSS, replay)
//! first take a [`Serial`] lock of their own, so that they see each other's results. Two
//! transactions that still deadlock on rows are told so by PostgreSQL (`StoreError::conflict`)
//! and run again ([`Conflicts`]); multi-row writes go in key order, which keeps that rare.

use deadpool_postgres::{GenericClient, Object, Transaction};

use super::{execute, query, query_opt, read, CHANNEL};
use crate::audit::{self, Action, Entry};
use crate::store::*;

/// Writes that must see each other's results, serialized among themselves by a transaction-level
/// advisory lock (`pg_advisory_xact_lock`) taken before anything else.
#[derive(Clone, Copy)]
pub(super) enum Serial {
    /// Upserts of cooperative deliveries, which audit the delivery each one replaces.
    CoopDeliveries = 0x6373_6901,
    /// SIUSS flussi, progressives and esiti (`siuss.rs`): `ts_flusso` committed in one order.
    Siuss = 0x6373_6902,
    /// Replays of dead letters: a second one sees the first's result.
    Replay = 0x6373_6903,
}

impl Serial {
    pub(super) async fn lock(self, tx: &Transaction<'_>) -> StoreResult<()> {
        execute(tx, "SELECT pg_advisory_xact_lock($1)", &[&(self as i64)]).await?;
        Ok(())
    }
}

/// Runs of a write transaction that PostgreSQL may roll back for a deadlock or a serialization
/// failure with a concurrent one: [`Conflicts::again`] says whether to run it again, after a
/// jittered pause that lets the other finish first (run again at once, two transactions writing
/// the same rows in opposite orders would meet again).
pub(super) struct Conflicts {
    what: &'static str,
    pauses: backon::ExponentialBackoff,
}

impl Conflicts {
    pub(super) fn new(what: &'static str) -> Self {
        use backon::BackoffBuilder;
        let pauses = backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(5))
            .with_max_delay(std::time::Duration::from_millis(200))
            .with_max_times(6)
            .with_jitter()
            .build();
        Self { what, pauses }
    }

    /// Whether the run that ended with `result` is to be run again (after the pause, taken here).
    pub(super) async fn again<T>(&mut self, result: &StoreResult<T>) -> bool {
        let Err(e) = result else { return false };
        if !e.conflict {
            return false;
        }
        let Some(pause) = self.pauses.next() else { return false };
        tracing::warn!(error = %e, what = self.what, "store transaction lost to a concurrent one; running it again");
        tokio::time::sleep(pause).await;
        true
    }
}

/// The audit chain during one transaction: the records appended so far, hashed and inserted
/// together at the end, under the head's lock.
#[derive(Default)]
pub(super) struct Chain {
    entries: Vec<(Entry, i64)>,
}

impl Chain {
    /// Appends one record (same hashing as embedded mode: [`audit::hash_of`], at [`Chain::flush`]).
    pub(super) fn append(&mut self, e: &Entry, ts: i64) {
        self.entries.push((e.clone(), ts));
    }

    /// Locks the head until the transaction ends, links and inserts the appended records and moves
    /// the head, in the caller's transaction: the last of its writes.
    pub(super) async fn flush(self, tx: &Transaction<'_>) -> StoreResult<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let row = query_opt(tx, "SELECT seq, hash FROM audit_head WHERE one = 1 FOR UPDATE", &[])
            .await?
            .ok_or_else(|| StoreError::new("audit_head is missing: the schema was not migrated"))?;
        let (mut head_seq, mut head_hash): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        let n = self.entries.len();
        let (mut seq, mut ts, mut prev, mut hash) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (e, at) in &self.entries {
            head_seq += 1;
            let h = audit::hash_of(&head_hash, head_seq, *at, e);
            seq.push(head_seq);
            ts.push(*at);
            prev.push(std::mem::replace(&mut head_hash, h.clone()));
            hash.push(h);
        }
        let e = self.entries.iter().map(|(e, _)| e);
        let action: Vec<&str> = e.clone().map(|e| e.action.as_str()).collect();
        let actor: Vec<&str> = e.clone().map(|e| e.actor.as_str()).collect();
        let tenant: Vec<Option<&str>> = e.clone().map(|e| e.tenant.as_deref()).collect();
        let event_id: Vec<Option<&str>> = e.clone().map(|e| e.event_id.as_deref()).collect();
        let destination: Vec<Option<&str>> = e.clone().map(|e| e.destination.as_deref()).collect();
        let digest: Vec<Option<&str>> = e.clone().map(|e| e.digest.as_deref()).collect();
        let detail: Vec<Option<&str>> = e.map(|e| e.detail.as_deref()).collect();
        // Pipelined: sent together, answered in order.
        futures_util::future::try_join(
            execute(
                tx,
                "INSERT INTO audit (seq, ts, action, actor, tenant, event_id, destination, digest, detail, prev_hash, hash)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])",
                &[&seq, &ts, &action, &actor, &tenant, &event_id, &destination, &digest, &detail, &prev, &hash],
            ),
            execute(tx, "UPDATE audit_head SET seq = $1, hash = $2 WHERE one = 1", &[&head_seq, &head_hash]),
        )
        .await?;
        Ok(())
    }
}

/// A write that takes part in a group commit.
pub(super) enum Write {
    Accept(Vec<NewEvent>, Vec<Entry>),
    Audit(Vec<Entry>),
    Complete(Vec<Completion>),
}

/// What one [`Write`] of a group yields.
pub(super) enum Written {
    Accepted(Vec<Acceptance>),
    Done,
}

/// Commits several writes in one transaction (one append to the audit chain, one commit): the
/// answers in order, and whether new work became due. With `handoffs`, the new events'
/// deliveries are added to it, by event, as the relay publishes them (kept only if the commit
/// succeeds).
pub(super) async fn group(
    client: &mut Object,
    writes: &[Write],
    handoffs: Option<&mut Vec<(String, Vec<Task>)>>,
) -> StoreResult<(Vec<Written>, bool)> {
    let tx = client.transaction().await?;
    let mut chain = Chain::default();
    let now = now_ms();
    // Every event of the group is decided and stored first, in bulk; then each write is walked in
    // order, so that audit records and read models follow the order of the requests.
    let all: Vec<&NewEvent> = writes
        .iter()
        .flat_map(|w| match w {
            Write::Accept(events, _) => events.iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    if all.iter().any(|ev| ev.projections.iter().any(|p| matches!(p, Projection::CoopDelivery(_)))) {
        Serial::CoopDeliveries.lock(&tx).await?;
    }
    let fates = store_events(&tx, &all, now, handoffs).await?;
    let new: Vec<&NewEvent> =
        all.iter().zip(&fates).filter(|(_, a)| matches!(a, Acceptance::New(_))).map(|(ev, _)| *ev).collect();
    // The read models written by many events at once (a cooperative's upload), set-based; the
    // corrections they imply are audited in the walk below, in order.
    let mut coop = store_coop_deliveries(&tx, &new).await?;
    super::siuss::project_prestazioni(&tx, &new, now).await?;
    project(&tx, &new, now).await?;
    let mut fates = fates.into_iter();
    let completions: Vec<&Completion> = writes
        .iter()
        .flat_map(|w| match w {
            Write::Complete(done) => done.iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut answers = Vec::with_capacity(writes.len());
    let mut wake = false;
    for w in writes {
        answers.push(match w {
            Write::Accept(events, entries) => {
                for e in entries {
                    chain.append(e, now);
                }
                let mut out = Vec::with_capacity(events.len());
                for ev in events {
                    let a =
                        fates.next().ok_or_else(|| StoreError::new("internal: an event was not decided"))?;
                    after_accept(&mut chain, &mut coop, ev, &a, now);
                    wake |= matches!(a, Acceptance::New(_)) && !ev.destinations.is_empty();
                    out.push(a);
                }
                Written::Accepted(out)
            }
            Write::Audit(entries) => {
                for e in entries {
                    chain.append(e, now);
                }
                Written::Done
            }
            Write::Complete(done) => {
                for c in done {
                    chain.append(&completion_entry(c), now);
                }
                Written::Done
            }
        });
    }
    // The statements whose results nothing waits for go out together, pipelined on the
    // connection: one round trip to the server instead of one each, executed in the order sent
    // (the chain's head locked last, once the statements are prepared on the connection; before,
    // a prepare's round trip may let the head's lock go first, which at worst costs a re-run).
    // The first to fail aborts the transaction (the others then fail too) and is the error returned.
    let notify = async {
        if wake {
            tx.batch_execute(&format!("NOTIFY {CHANNEL}")).await?;
        }
        Ok(())
    };
    futures_util::future::try_join3(store_completions(&tx, &completions, now), chain.flush(&tx), notify)
        .await?;
    tx.commit().await?;
    Ok((answers, wake))
}

/// Decides which events of a group are new, with one statement for the idempotency keys and one
/// more for those already held, and writes the new events and their deliveries with one statement
/// each. The first event of a `(source, key)` in the group claims it; the unique key decides
/// against what is committed, also by other instances.
async fn store_events(
    tx: &Transaction<'_>,
    events: &[&NewEvent],
    now: i64,
    handoffs: Option<&mut Vec<(String, Vec<Task>)>>,
) -> StoreResult<Vec<Acceptance>> {
    use std::collections::HashMap;
    // A key is unique within its tenant and source (`NewEvent::idempotency_scope`).
    let scopes: Vec<String> = events.iter().map(|e| e.idempotency_scope()).collect();
    let mut first: HashMap<(&str, &str), usize> = HashMap::new();
    let mut claims = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        if let Some(key) = &ev.idempotency_key {
            first.entry((scopes[i].as_str(), key.as_str())).or_insert_with(|| {
                claims.push(i);
                i
            });
        }
    }
    // In key order, as every instance inserts them (two inserts never wait for each other in turn).
    claims.sort_unstable_by(|&a, &b| {
        (scopes[a].as_str(), events[a].idempotency_key.as_deref())
            .cmp(&(scopes[b].as_str(), events[b].idempotency_key.as_deref()))
    });
    let mut held: HashMap<(String, String), String> = HashMap::new();
    if !claims.is_empty() {
        let source: Vec<&str> = claims.iter().map(|&i| scopes[i].as_str()).collect();
        let key: Vec<&str> =
            claims.iter().map(|&i| events[i].idempotency_key.as_deref().unwrap_or("")).collect();
        let id: Vec<&str> = claims.iter().map(|&i| events[i].id.as_str()).collect();
        let won = query(
            tx,
            "INSERT INTO idempotency (source, key, event_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
             ON CONFLICT (source, key) DO NOTHING RETURNING source, key",
            &[&source, &key, &id],
        )
        .await?;
        if won.len() < claims.len() {
            let rows = query(
                tx,
                "SELECT i.source, i.key, i.event_id FROM idempotency i
                 JOIN UNNEST($1::text[], $2::text[]) AS c (source, key) ON i.source = c.source AND i.key = c.key
                 WHERE i.event_id <> ALL ($3::text[])",
                &[&source, &key, &id],
            )
            .await?;
            for r in &rows {
                held.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
            }
        }
    }
    let mut out = Vec::with_capacity(events.len());
    for (i, ev) in events.iter().enumerate() {
        let Some(key) = &ev.idempotency_key else {
            out.push(Acceptance::New(ev.id.clone()));
            continue;
        };
        let claimer = first[&(scopes[i].as_str(), key.as_str())];
        let a = match held.get(&(scopes[i].clone(), key.clone())) {
            Some(original) => Acceptance::Duplicate(original.clone()),
            None if claimer == i => Acceptance::New(ev.id.clone()),
            None => Acceptance::Duplicate(events[claimer].id.clone()),
        };
        out.push(a);
    }
    let new: Vec<&NewEvent> =
        events.iter().zip(&out).filter(|(_, a)| matches!(a, Acceptance::New(_))).map(|(ev, _)| *ev).collect();
    if new.is_empty() {
        return Ok(out);
    }
    let col = |f: fn(&NewEvent) -> &str| new.iter().map(|e| f(e)).collect::<Vec<&str>>();
    let opt = |f: fn(&NewEvent) -> Option<&str>| new.iter().map(|e| f(e)).collect::<Vec<Option<&str>>>();
    let bodies: Vec<&[u8]> = new.iter().map(|e| e.body.as_slice()).collect();
    execute(
        tx,
        "INSERT INTO events (id, source, type, tenant, subject, idempotency_key, correlation_id, received_at, digest, body)
         SELECT id, source, type, tenant, subject, key, correlation, $8, digest, body
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $9::text[], $10::bytea[])
              AS e (id, source, type, tenant, subject, key, correlation, digest, body)",
        &[
            &col(|e| &e.id),
            &col(|e| &e.source),
            &col(|e| &e.event_type),
            &col(|e| &e.tenant),
            &opt(|e| e.subject.as_deref()),
            &opt(|e| e.idempotency_key.as_deref()),
            &opt(|e| e.correlation_id.as_deref()),
            &now,
            &col(|e| &e.digest),
            &bodies,
        ],
    )
    .await?;
    let (event_ids, destinations): (Vec<&str>, Vec<&str>) =
        new.iter().flat_map(|e| e.destinations.iter().map(|d| (e.id.as_str(), d.as_str()))).unzip();
    // Delivery ids by event, then destination (an event has one or a few).
    let mut ids: FastMap<String, Vec<(String, i64)>> = FastMap::new();
    if !event_ids.is_empty() {
        let insert = "INSERT INTO deliveries (event_id, destination, status, attempts, since, next_attempt_at, updated_at)
             SELECT e, d, 'pending', 0, $3, $3, $3 FROM UNNEST($1::text[], $2::text[]) AS x (e, d)";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&event_ids, &destinations, &now];
        if handoffs.is_some() {
            for r in query(tx, &format!("{insert} RETURNING id, event_id, destination"), &params).await? {
                ids.entry(r.try_get(1)?).or_default().push((r.try_get(2)?, r.try_get(0)?));
            }
        } else {
            execute(tx, insert, &params).await?;
        }
    }
    // The deliveries as the relay publishes them, from what is at hand: no need to read them back.
    if let Some(handoffs) = handoffs {
        for ev in &new {
            let written = ids.get(ev.id.as_str()).map(Vec::as_slice).unwrap_or_default();
            let mut tasks = Vec::with_capacity(ev.destinations.len());
            for destination in &ev.destinations {
                let Some(&(_, delivery_id)) = written.iter().find(|(d, _)| d == destination) else {
                    return Err(StoreError::new(format!(
                        "internal: no delivery written for event {} to {destination}",
                        ev.id
                    )));
                };
                tasks.push(Task {
                    delivery_id,
                    event_id: ev.id.clone(),
                    destination: destination.clone(),
                    event_type: ev.event_type.clone(),
                    tenant: ev.tenant.clone(),
                    idempotency_key: ev.idempotency_key.clone(),
                    body: ev.body.clone(),
                    digest: ev.digest.clone(),
                    attempts: 0,
                    since: now,
                });
            }
            handoffs.push((ev.id.clone(), tasks));
        }
    }
    Ok(out)
}

/// What follows an event's acceptance, in order: the corrections its cooperative deliveries make
/// and its audit record (a duplicate gets only its audit record). Its read models are written
/// with the whole group's.
fn after_accept(chain: &mut Chain, coop: &mut CoopStored, ev: &NewEvent, a: &Acceptance, now: i64) {
    if let Acceptance::Duplicate(original) = a {
        chain.append(&ev.duplicate_entry(original), now);
        return;
    }
    // A cooperative delivery stored before under the same key, by an earlier group or an earlier
    // event of this one, is corrected (the rows themselves are written by
    // `store_coop_deliveries`, the other read models by `project`, for the whole group).
    for p in &ev.projections {
        if let Projection::CoopDelivery(r) = p {
            if let Some(old) = coop.insert((r.tenant.clone(), r.key.clone()), ev.id.clone()) {
                let e = Entry::new(Action::Corrected, ev.actor.as_str())
                    .tenant(&r.tenant)
                    .event(&ev.id)
                    .digest(&r.digest)
                    .detail(format!("delivery {} corrected: replaces event {old}", r.key));
                chain.append(&e, now);
            }
        }
    }
    chain.append(&ev.accepted_entry(), now);
}

/// `(tenant, key)` of cooperative deliveries → the event stored under it.
type CoopStored = std::collections::HashMap<(String, String), String>;

/// Writes the cooperative deliveries of a group's new events with one upsert (of two rows with
/// one key, the later one stays); answers the events stored under those keys before the group.
async fn store_coop_deliveries(tx: &Transaction<'_>, new: &[&NewEvent]) -> StoreResult<CoopStored> {
    let rows: Vec<(&CoopDeliveryRow, &str)> = new
        .iter()
        .flat_map(|ev| {
            ev.projections.iter().filter_map(move |p| match p {
                Projection::CoopDelivery(r) => Some((&**r, ev.id.as_str())),
                _ => None,
            })
        })
        .collect();
    let mut before = CoopStored::new();
    if rows.is_empty() {
        return Ok(before);
    }
    let mut last: std::collections::HashMap<(&str, &str), usize> = std::collections::HashMap::new();
    for (i, (r, _)) in rows.iter().enumerate() {
        last.insert((r.tenant.as_str(), r.key.as_str()), i);
    }
    let mut kept: Vec<usize> = last.into_values().collect();
    kept.sort_unstable();
    let rows: Vec<(&CoopDeliveryRow, &str)> = kept.into_iter().map(|i| rows[i]).collect();
    let text = |f: fn(&CoopDeliveryRow) -> &str| rows.iter().map(|(r, _)| f(r)).collect::<Vec<&str>>();
    let int = |f: fn(&CoopDeliveryRow) -> i64| rows.iter().map(|(r, _)| f(r)).collect::<Vec<i64>>();
    let (tenant, key) = (text(|r| &r.tenant), text(|r| &r.key));
    for r in query(
        tx,
        "SELECT d.tenant, d.key, d.event_id FROM coop_deliveries d
         JOIN UNNEST($1::text[], $2::text[]) AS k (tenant, key) ON d.tenant = k.tenant AND d.key = k.key",
        &[&tenant, &key],
    )
    .await?
    {
        before.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
    }
    let flag: Vec<Option<&str>> = rows.iter().map(|(r, _)| r.flag.as_deref()).collect();
    let upload: Vec<Option<&str>> = rows.iter().map(|(r, _)| r.upload_id.as_deref()).collect();
    // The row names the event it came with.
    let event: Vec<&str> = rows.iter().map(|(_, id)| *id).collect();
    execute(
        tx,
        &format!(
            "INSERT INTO coop_deliveries ({COOP_COLUMNS})
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[],
             $14::bigint[], $15::text[], $16::text[], $17::text[], $18::text[])
         ON CONFLICT (tenant, key) DO UPDATE SET cooperativa = excluded.cooperativa,
            id_progetto = excluded.id_progetto, pseudonimo = excluded.pseudonimo,
            tipo_servizio = excluded.tipo_servizio, codice_prestazione = excluded.codice_prestazione,
            denominazione = excluded.denominazione, area_utenza = excluded.area_utenza,
            data = excluded.data, mese = excluded.mese, minuti = excluded.minuti,
            importo_cents = excluded.importo_cents, quota_utente_cents = excluded.quota_utente_cents,
            flag = excluded.flag, event_id = excluded.event_id, upload_id = excluded.upload_id,
            digest = excluded.digest"
        ),
        &[
            &tenant,
            &key,
            &text(|r| &r.cooperativa),
            &text(|r| &r.id_progetto),
            &text(|r| &r.pseudonimo),
            &text(|r| &r.tipo_servizio),
            &text(|r| &r.codice_prestazione),
            &text(|r| &r.denominazione),
            &text(|r| &r.area_utenza),
            &text(|r| &r.data),
            &text(|r| &r.mese),
            &int(|r| r.minuti),
            &int(|r| r.importo_cents),
            &int(|r| r.quota_utente_cents),
            &flag,
            &event,
            &upload,
            &text(|r| &r.digest),
        ],
    )
    .await?;
    Ok(before)
}

/// One text column of `rows`, as an `UNNEST` parameter.
fn texts<'a, T>(rows: &[&'a T], f: fn(&T) -> &str) -> Vec<&'a str> {
    rows.iter().map(|r| f(r)).collect()
}

/// Writes the other read models of a group's new events (progetti, persone, SINA valutazioni),
/// one upsert per table, pipelined, each in key order (so two instances' groups never wait for
/// each other in turn): of the events of one key, the later in request order stays; of SINA
/// valutazioni, the later of those with the latest `data_valutazione`, which the upsert also keeps
/// against what is stored.
async fn project(tx: &Transaction<'_>, new: &[&NewEvent], now: i64) -> StoreResult<()> {
    use std::collections::BTreeMap;
    let mut progetti: BTreeMap<(&str, &str), &ProgettoRow> = BTreeMap::new();
    let mut persone: BTreeMap<(&str, &str), &siuss::PersonaRow> = BTreeMap::new();
    let mut valutazioni: BTreeMap<(&str, &str), &siuss::ValutazioneRow> = BTreeMap::new();
    for p in new.iter().flat_map(|ev| &ev.projections) {
        match p {
            Projection::Progetto(r) => {
                progetti.insert((&r.tenant, &r.id_progetto), r);
            }
            Projection::Persona(r) => {
                persone.insert((&r.tenant, &r.pseudonimo), r);
            }
            Projection::ValutazioneSina(r) => {
                let kept = valutazioni.entry((&r.tenant, &r.pseudonimo)).or_insert(r);
                if r.data_valutazione >= kept.data_valutazione {
                    *kept = r;
                }
            }
            // Written by `store_coop_deliveries` and `siuss::project_prestazioni`.
            Projection::CoopDelivery(_) | Projection::PrestazioneExport(_) => {}
        }
    }
    let progetti = async {
        if progetti.is_empty() {
            return Ok(0);
        }
        let r: Vec<&ProgettoRow> = progetti.into_values().collect();
        let codice_fiscale: Vec<Option<&str>> = r.iter().map(|r| r.codice_fiscale.as_deref()).collect();
        let interventi: Vec<String> = r.iter().map(|r| r.interventi.to_string()).collect();
        execute(
            tx,
            "INSERT INTO progetti (tenant, id_progetto, pseudonimo, codice_fiscale, dal, al, interventi, event_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::text[])
             ON CONFLICT (tenant, id_progetto) DO UPDATE SET pseudonimo = excluded.pseudonimo,
                codice_fiscale = excluded.codice_fiscale, dal = excluded.dal, al = excluded.al,
                interventi = excluded.interventi, event_id = excluded.event_id",
            &[
                &texts(&r, |r| &r.tenant),
                &texts(&r, |r| &r.id_progetto),
                &texts(&r, |r| &r.pseudonimo),
                &codice_fiscale,
                &texts(&r, |r| &r.dal),
                &texts(&r, |r| &r.al),
                &interventi,
                &texts(&r, |r| &r.event_id),
            ],
        )
        .await
    };
    let persone = async {
        if persone.is_empty() {
            return Ok(0);
        }
        let r: Vec<&siuss::PersonaRow> = persone.into_values().collect();
        let codice_fiscale: Vec<Option<&str>> = r.iter().map(|r| r.codice_fiscale.as_deref()).collect();
        execute(
            tx,
            "INSERT INTO persone (tenant, pseudonimo, codice_fiscale, event_id, updated_at)
             SELECT t, p, c, e, $5 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS x (t, p, c, e)
             ON CONFLICT (tenant, pseudonimo) DO UPDATE SET codice_fiscale = excluded.codice_fiscale,
                event_id = excluded.event_id, updated_at = excluded.updated_at",
            &[&texts(&r, |r| &r.tenant), &texts(&r, |r| &r.pseudonimo), &codice_fiscale, &texts(&r, |r| &r.event_id), &now],
        )
        .await
    };
    let valutazioni = async {
        if valutazioni.is_empty() {
            return Ok(0);
        }
        let r: Vec<&siuss::ValutazioneRow> = valutazioni.into_values().collect();
        execute(
            tx,
            "INSERT INTO valutazioni_sina (tenant, pseudonimo, data_valutazione, event_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
             ON CONFLICT (tenant, pseudonimo) DO UPDATE SET data_valutazione = excluded.data_valutazione,
                event_id = excluded.event_id
             WHERE excluded.data_valutazione >= valutazioni_sina.data_valutazione",
            &[
                &texts(&r, |r| &r.tenant),
                &texts(&r, |r| &r.pseudonimo),
                &texts(&r, |r| &r.data_valutazione),
                &texts(&r, |r| &r.event_id),
            ],
        )
        .await
    };
    // Pipelined, sent (and so executed) in this order.
    futures_util::future::try_join3(progetti, persone, valutazioni).await?;
    Ok(())
}

/// Claims due deliveries of a destination. Rows another instance is claiming are skipped, not
/// waited for; an expired lease (its holder died or stalled) makes a delivery due again.
pub(super) async fn claim<C: GenericClient>(
    c: &C,
    destination: &str,
    limit: usize,
    lease_ms: i64,
) -> StoreResult<Vec<Task>> {
    let now = now_ms();
    let rows = query(
        c,
        "WITH due AS (
             SELECT id FROM deliveries
             WHERE destination = $1
               AND ((status = 'pending' AND next_attempt_at <= $2)
                    OR (status = 'in_flight' AND lease_until <= $2))
             ORDER BY next_attempt_at, id
             LIMIT $4
             FOR UPDATE SKIP LOCKED)
         UPDATE deliveries d SET status = 'in_flight', lease_until = $3, updated_at = $2
         FROM due, events e
         WHERE d.id = due.id AND e.id = d.event_id
         RETURNING d.id, d.event_id, d.destination, e.type, e.tenant, e.idempotency_key, e.body, e.digest,
                   d.attempts, d.since",
        &[&destination, &now, &(now + lease_ms), &(limit as i64)],
    )
    .await?;
    let mut tasks = rows.iter().map(read::task_from_row).collect::<StoreResult<Vec<_>>>()?;
    tasks.sort_by_key(|t| t.delivery_id);
    Ok(tasks)
}

/// What a finished attempt makes of its delivery: status, next attempt, error, outcome label and
/// detail.
fn completion_state(c: &Completion, now: i64) -> (&'static str, i64, Option<&str>, &'static str, &str) {
    match &c.outcome {
        Outcome::Delivered { detail } => ("delivered", now, None, "delivered", detail),
        Outcome::Retry { at, error } => ("pending", *at, Some(error), "retry", error),
        Outcome::Dead { error } => ("dead", now, Some(error), "dead_lettered", error),
    }
}

/// The audit record of a finished attempt.
fn completion_entry(c: &Completion) -> Entry {
    let t = &c.task;
    let (action, detail) = match &c.outcome {
        Outcome::Delivered { detail } => (Action::Delivered, detail),
        Outcome::Retry { error, .. } => (Action::Retried, error),
        Outcome::Dead { error } => (Action::DeadLettered, error),
    };
    Entry::new(action, "gateway")
        .tenant(&t.tenant)
        .event(&t.event_id)
        .destination(&t.destination)
        .digest(&t.digest)
        .detail(format!("attempt {}: {}", i64::from(t.attempts) + 1, audit_summary(detail)))
}

/// Records finished attempts — delivery state and the attempt of each — with one statement per
/// table for the whole group (their audit records are appended by the caller, in order).
async fn store_completions(tx: &Transaction<'_>, done: &[&Completion], now: i64) -> StoreResult<()> {
    if done.is_empty() {
        return Ok(());
    }
    let states: Vec<_> = done.iter().map(|c| completion_state(c, now)).collect();
    let ids: Vec<i64> = done.iter().map(|c| c.task.delivery_id).collect();
    let attempts: Vec<i64> = done.iter().map(|c| i64::from(c.task.attempts) + 1).collect();
    let status: Vec<&str> = states.iter().map(|s| s.0).collect();
    let next: Vec<i64> = states.iter().map(|s| s.1).collect();
    let errors: Vec<Option<&str>> = states.iter().map(|s| s.2).collect();
    let labels: Vec<&str> = states.iter().map(|s| s.3).collect();
    let details: Vec<&str> = states.iter().map(|s| s.4).collect();
    let started: Vec<i64> = done.iter().map(|c| c.started_at).collect();
    // Pipelined: sent together, answered in order.
    futures_util::future::try_join(
        execute(
            tx,
            "UPDATE deliveries d SET status = u.status, attempts = u.attempts, next_attempt_at = u.next,
                    lease_until = NULL, last_error = COALESCE(u.error, d.last_error), updated_at = $6
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])
                  AS u (id, status, attempts, next, error)
             WHERE d.id = u.id AND d.status NOT IN ('delivered', 'dead')",
            &[&ids, &status, &attempts, &next, &errors, &now],
        ),
        execute(
            tx,
            "INSERT INTO attempts (delivery_id, attempt, started_at, finished_at, outcome, detail)
             SELECT id, attempt, started, $4, outcome, detail
             FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $5::text[], $6::text[])
                  AS a (id, attempt, started, outcome, detail)",
            &[&ids, &attempts, &started, &now, &labels, &details],
        ),
    )
    .await?;
    Ok(())
}

/// Puts matching dead letters back in the queue (pending, not yet published), keeping event id
/// and idempotency key, with one audit record each.
pub(super) async fn replay(
    client: &mut Object,
    filter: &DeadLetterFilter,
    actor: &str,
) -> StoreResult<Vec<DeadLetter>> {
    let tx = client.transaction().await?;
    Serial::Replay.lock(&tx).await?;
    let mut chain = Chain::default();
    let now = now_ms();
    let letters = read::dead_letters(&tx, filter).await?;
    for dl in &letters {
        execute(
            &tx,
            "UPDATE deliveries SET status = 'pending', attempts = 0, since = $2, next_attempt_at = $2,
                    lease_until = NULL, updated_at = $2, published = false
             WHERE id = $1 AND status = 'dead'",
            &[&dl.id, &now],
        )
        .await?;
        let e = Entry::new(Action::Replayed, actor)
            .tenant(&dl.tenant)
            .event(&dl.event_id)
            .destination(&dl.destination);
        chain.append(&e, now);
    }
    chain.flush(&tx).await?;
    if !letters.is_empty() {
        tx.batch_execute(&format!("NOTIFY {CHANNEL}")).await?;
    }
    tx.commit().await?;
    Ok(letters)
}

pub(super) async fn save_upload<C: GenericClient>(c: &C, u: &UploadRecord) -> StoreResult<()> {
    execute(
        c,
        "INSERT INTO coop_uploads (id, tenant, client, mapping, created_at, report)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, client = excluded.client,
            mapping = excluded.mapping, created_at = excluded.created_at, report = excluded.report",
        &[&u.id, &u.tenant, &u.client, &u.mapping, &u.created_at, &u.report.to_string()],
    )
    .await?;
    Ok(())
}

/// Takes unpublished deliveries for a relay (see [`crate::store::Outbox::take_unpublished`]).
/// A handoff reads the deliveries of its own events, just committed: no sweeper takes them before
/// they are stale, so they are read without a lease (one statement less, and no write).
pub(super) async fn take_unpublished<C: GenericClient>(
    c: &C,
    events: Option<&[String]>,
    stale_ms: i64,
    limit: usize,
    lease_ms: i64,
) -> StoreResult<Vec<Task>> {
    let now = now_ms();
    let columns = "d.id, d.event_id, d.destination, e.type, e.tenant, e.idempotency_key, e.body, e.digest,
                   d.attempts, d.since";
    let rows = match events {
        Some(ids) => {
            let sql = format!(
                "SELECT {columns} FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.event_id = ANY($1::text[]) AND d.status = 'pending' AND NOT d.published
                   AND (d.lease_until IS NULL OR d.lease_until <= $2)
                 ORDER BY d.id LIMIT $3"
            );
            query(c, &sql, &[&ids, &now, &(limit as i64)]).await?
        }
        None => {
            let sql = format!(
                "WITH due AS (
                     SELECT id FROM deliveries
                     WHERE status = 'pending' AND NOT published AND (lease_until IS NULL OR lease_until <= $1)
                       AND updated_at <= $4
                     ORDER BY id
                     LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 UPDATE deliveries d SET lease_until = $2
                 FROM due, events e
                 WHERE d.id = due.id AND e.id = d.event_id
                 RETURNING {columns}"
            );
            query(c, &sql, &[&now, &(now + lease_ms), &(limit as i64), &(now - stale_ms)]).await?
        }
    };
    let mut tasks = rows.iter().map(read::task_from_row).collect::<StoreResult<Vec<_>>>()?;
    tasks.sort_by_key(|t| t.delivery_id);
    Ok(tasks)
}

/// Marks deliveries confirmed by the broker (`published`), or gives them back (`!published`).
pub(super) async fn mark_published<C: GenericClient>(c: &C, deliveries: &[(i64, i64)]) -> StoreResult<()> {
    let (ids, since): (Vec<i64>, Vec<i64>) = deliveries.iter().copied().unzip();
    execute(
        c,
        "UPDATE deliveries d SET published = true, lease_until = NULL
         FROM UNNEST($1::bigint[], $2::bigint[]) AS u (id, since)
         WHERE d.id = u.id AND d.since = u.since AND NOT d.published",
        &[&ids, &since],
    )
    .await?;
    Ok(())
}

/// Gives taken deliveries back, unpublished and unleased.
pub(super) async fn release<C: GenericClient>(c: &C, ids: &[i64]) -> StoreResult<()> {
    execute(c, "UPDATE deliveries SET lease_until = NULL WHERE id = ANY($1) AND NOT published", &[&ids])
        .await?;
    Ok(())
}

/// Adds (or replaces) rows of an upload's report, with one statement.
pub(super) async fn save_upload_rows<C: GenericClient>(
    c: &C,
    upload_id: &str,
    rows: &[ReportRow],
) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let numbers: Vec<i64> = rows.iter().map(|r| r.row).collect();
    let reports: Vec<&str> = rows.iter().map(|r| r.json.as_str()).collect();
    execute(
        c,
        "INSERT INTO coop_upload_rows (upload_id, row, report)
         SELECT $1, r, j FROM UNNEST($2::bigint[], $3::text[]) AS x (r, j)
         ON CONFLICT (upload_id, row) DO UPDATE SET report = excluded.report",
        &[&upload_id, &numbers, &reports],
    )
    .await?;
    Ok(())
}
