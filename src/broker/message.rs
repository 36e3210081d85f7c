//! A delivery as an AMQP message: the CloudEvent as the body, the delivery's state in headers.
//!
//! | property / header | value |
//! |---|---|
//! | `message_id`, `type` | event id, event type |
//! | `content_type` | `application/cloudevents+json` |
//! | `delivery_mode` | 2 (persistent) |
//! | `csi-delivery-id` | the delivery's id in the store |
//! | `csi-destination`, `csi-tenant`, `csi-digest`, `csi-idempotency-key` | as in the store |
//! | `csi-attempts` | attempts already made |
//! | `csi-since` | start of the delivery cycle (ms), for `max_age_secs` |
//! | `csi-not-before` | a retry's due time (ms) |
//! | `csi-last-error` | on a parked message: why it was dead-lettered |
//!
//! The relay puts the deliveries it publishes together for one destination and event type into
//! one message, up to [`BATCH_MAX`] ([`Message::of_tasks`]): the broker's work is per message,
//! and it was a third of the machine's CPU with one message a delivery (`BENCHMARKS.md`). Such a
//! message has `content_type` [`BATCH_CONTENT_TYPE`], the headers `csi-batch` (how many
//! deliveries) and `csi-destination`, `type` the event type, and a body of one record a delivery,
//! one after the other:
//!
//! | bytes | value |
//! |---|---|
//! | 4 | length of the state, big-endian |
//! | that many | the delivery's state, a JSON array: `[delivery id, event id, tenant, digest, idempotency key or null, attempts, since]` |
//! | 4 | length of the event, big-endian |
//! | that many | the CloudEvent, as stored |
//!
//! Only first publications are put together: a retry or a parked delivery is a message of its own,
//! with the headers above, so that what waits in a retry tier or in the parking queue is always
//! one delivery.

use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;

use crate::store::{now_ms, Task};

pub const DELIVERY_ID: &str = "csi-delivery-id";
pub const DESTINATION: &str = "csi-destination";
pub const TENANT: &str = "csi-tenant";
pub const DIGEST: &str = "csi-digest";
pub const IDEMPOTENCY_KEY: &str = "csi-idempotency-key";
pub const ATTEMPTS: &str = "csi-attempts";
pub const SINCE: &str = "csi-since";
pub const NOT_BEFORE: &str = "csi-not-before";
pub const LAST_ERROR: &str = "csi-last-error";
/// On a message carrying several deliveries: how many.
pub const BATCH: &str = "csi-batch";
/// The content type of a message carrying several deliveries.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.csi-gateway.deliveries";
/// Deliveries in one message at most.
pub const BATCH_MAX: usize = 32;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub headers: FieldTable,
    pub message_id: String,
    pub event_type: String,
}

impl Message {
    /// The first publication of a delivery, to the events exchange.
    pub fn of_task(exchange: &str, task: &Task) -> Self {
        let mut h = FieldTable::default();
        h.insert(DELIVERY_ID.into(), AMQPValue::LongLongInt(task.delivery_id));
        h.insert(DESTINATION.into(), text(&task.destination));
        h.insert(TENANT.into(), text(&task.tenant));
        h.insert(DIGEST.into(), text(&task.digest));
        if let Some(k) = &task.idempotency_key {
            h.insert(IDEMPOTENCY_KEY.into(), text(k));
        }
        h.insert(ATTEMPTS.into(), AMQPValue::LongLongInt(i64::from(task.attempts)));
        h.insert(SINCE.into(), AMQPValue::LongLongInt(task.since));
        Message {
            exchange: exchange.to_string(),
            routing_key: super::Topology::routing_key(&task.destination, &task.event_type),
            body: task.body.clone(),
            headers: h,
            message_id: task.event_id.clone(),
            event_type: task.event_type.clone(),
        }
    }

    /// The first publication of deliveries of one destination and event type, in one message:
    /// [`Message::of_task`] for one, several as the module's documentation says; `None` for none.
    pub fn of_tasks(exchange: &str, tasks: &[&Task]) -> Option<Self> {
        let first = match tasks {
            [] => return None,
            [one] => return Some(Message::of_task(exchange, one)),
            [first, ..] => *first,
        };
        let mut body = Vec::with_capacity(tasks.iter().map(|t| t.body.len() + 256).sum());
        for t in tasks {
            let state =
                (t.delivery_id, &t.event_id, &t.tenant, &t.digest, &t.idempotency_key, t.attempts, t.since);
            // A tuple of numbers and strings always serializes.
            let state = serde_json::to_vec(&state).unwrap_or_default();
            for part in [&state, &t.body] {
                // An event is at most the upload limit, far below 4 GiB.
                body.extend_from_slice(&(part.len() as u32).to_be_bytes());
                body.extend_from_slice(part);
            }
        }
        let mut h = FieldTable::default();
        h.insert(BATCH.into(), AMQPValue::LongLongInt(tasks.len() as i64));
        h.insert(DESTINATION.into(), text(&first.destination));
        Some(Message {
            exchange: exchange.to_string(),
            routing_key: super::Topology::routing_key(&first.destination, &first.event_type),
            body,
            headers: h,
            message_id: first.event_id.clone(),
            event_type: first.event_type.clone(),
        })
    }

    /// The same message with a header set.
    pub fn with(mut self, key: &str, value: AMQPValue) -> Self {
        self.headers.insert(key.into(), value);
        self
    }

    pub fn properties(&self) -> BasicProperties {
        let content_type = if self.headers.inner().contains_key(BATCH) {
            BATCH_CONTENT_TYPE
        } else {
            "application/cloudevents+json"
        };
        BasicProperties::default()
            .with_content_type(content_type.into())
            .with_delivery_mode(2)
            .with_message_id(self.message_id.as_str().into())
            .with_type(self.event_type.as_str().into())
            .with_app_id("csi-gateway".into())
            .with_timestamp((now_ms() / 1000) as u64)
            .with_headers(self.headers.clone())
    }

    /// The message a consumer received, to publish again (retry or parking).
    pub fn of_delivery(delivery: &lapin::message::Delivery, exchange: &str) -> Self {
        let p = &delivery.properties;
        let short = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_string()).unwrap_or_default();
        Message {
            exchange: exchange.to_string(),
            routing_key: delivery.routing_key.as_str().to_string(),
            body: delivery.data.clone(),
            headers: p.headers().clone().unwrap_or_default(),
            message_id: short(p.message_id()),
            event_type: short(p.kind()),
        }
    }
}

/// Text header value.
pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// The delivery a received message carries, or what is missing from it.
pub fn task_of(delivery: &lapin::message::Delivery) -> Result<Task, String> {
    let p = &delivery.properties;
    let empty = FieldTable::default();
    let h = p.headers().as_ref().unwrap_or(&empty);
    let event_id =
        p.message_id().as_ref().map(|s| s.as_str().to_string()).ok_or("no message_id (event id)")?;
    let event_type = p.kind().as_ref().map(|s| s.as_str().to_string()).ok_or("no type (event type)")?;
    Ok(Task {
        delivery_id: int(h, DELIVERY_ID).ok_or_else(|| format!("no {DELIVERY_ID} header"))?,
        event_id,
        destination: string(h, DESTINATION).ok_or_else(|| format!("no {DESTINATION} header"))?,
        event_type,
        tenant: string(h, TENANT).ok_or_else(|| format!("no {TENANT} header"))?,
        idempotency_key: string(h, IDEMPOTENCY_KEY),
        body: delivery.data.clone(),
        digest: string(h, DIGEST).unwrap_or_default(),
        attempts: int(h, ATTEMPTS).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
        since: since(h)?,
    })
}

/// The deliveries of a message carrying several ([`Message::of_tasks`]): `None` for a message of
/// one delivery ([`task_of`]), an error naming what is wrong with a damaged one.
pub fn tasks_of(delivery: &lapin::message::Delivery) -> Option<Result<Vec<Task>, String>> {
    let p = &delivery.properties;
    let h = p.headers().as_ref()?;
    let count = int(h, BATCH)?;
    Some(read_batch(delivery, h, count))
}

fn read_batch(delivery: &lapin::message::Delivery, h: &FieldTable, count: i64) -> Result<Vec<Task>, String> {
    let destination = string(h, DESTINATION).ok_or_else(|| format!("no {DESTINATION} header"))?;
    let event_type =
        delivery.properties.kind().as_ref().map(|s| s.as_str().to_string()).ok_or("no type (event type)")?;
    type State = (i64, String, String, String, Option<String>, u32, i64);
    let mut tasks = Vec::new();
    let mut rest: &[u8] = &delivery.data;
    while !rest.is_empty() {
        let n = tasks.len() + 1;
        let mut part = || -> Result<&[u8], String> {
            let len = rest.get(..4).ok_or_else(|| format!("record {n} cut short"))?;
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let bytes = rest.get(4..4 + len).ok_or_else(|| format!("record {n} cut short"))?;
            rest = &rest[4 + len..];
            Ok(bytes)
        };
        let state: State = serde_json::from_slice(part()?).map_err(|e| format!("record {n}: state: {e}"))?;
        let body = part()?.to_vec();
        let (delivery_id, event_id, tenant, digest, idempotency_key, attempts, since) = state;
        tasks.push(Task {
            delivery_id,
            event_id,
            destination: destination.clone(),
            event_type: event_type.clone(),
            tenant,
            idempotency_key,
            body,
            digest,
            attempts,
            since: plausible_since(since)?,
        });
    }
    if tasks.len() as i64 != count {
        return Err(format!("{BATCH} header says {count} deliveries, the body holds {}", tasks.len()));
    }
    Ok(tasks)
}

/// How far ahead of this instance's clock a `csi-since` may be: instances' clocks differ by
/// seconds, not days.
const SINCE_AHEAD_MAX_MS: i64 = 24 * 3600 * 1000;

/// The start of the delivery cycle (`csi-since`), now when the header is absent. A time before
/// 1970 or more than a day ahead is a damaged header: `max_age_secs` cannot be counted from it.
fn since(h: &FieldTable) -> Result<i64, String> {
    match int(h, SINCE) {
        None => Ok(now_ms()),
        Some(ms) => plausible_since(ms),
    }
}

fn plausible_since(ms: i64) -> Result<i64, String> {
    if (0..=now_ms().saturating_add(SINCE_AHEAD_MAX_MS)).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!(
            "{SINCE} header {ms} is not a plausible time (milliseconds since 1970, at most a day ahead)"
        ))
    }
}

/// An integer header, whatever integer width the broker or a tool gave it.
pub fn int(h: &FieldTable, key: &str) -> Option<i64> {
    match h.inner().get(key)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// A text header.
pub fn string(h: &FieldTable, key: &str) -> Option<String> {
    match h.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(since: Option<i64>, attempts: i64) -> lapin::message::Delivery {
        let mut d = lapin::message::Delivery::mock(1, "".into(), "".into(), false, b"{}".to_vec());
        let mut h = FieldTable::default();
        h.insert(DELIVERY_ID.into(), AMQPValue::LongLongInt(7));
        h.insert(DESTINATION.into(), text("d"));
        h.insert(TENANT.into(), text("F205"));
        h.insert(ATTEMPTS.into(), AMQPValue::LongLongInt(attempts));
        if let Some(ms) = since {
            h.insert(SINCE.into(), AMQPValue::LongLongInt(ms));
        }
        d.properties =
            BasicProperties::default().with_message_id("e-1".into()).with_type("t".into()).with_headers(h);
        d
    }

    #[test]
    fn a_since_before_1970_or_days_ahead_makes_the_message_unreadable() {
        let now = now_ms();
        for ms in [i64::MIN, -1, now + 2 * SINCE_AHEAD_MAX_MS, i64::MAX] {
            let why = task_of(&received(Some(ms), 0)).expect_err("unreadable");
            assert_eq!(
                why,
                format!("csi-since header {ms} is not a plausible time (milliseconds since 1970, at most a day ahead)")
            );
        }
        assert_eq!(task_of(&received(Some(now - 1_000), 0)).map(|t| t.since), Ok(now - 1_000));
        let absent = task_of(&received(None, 0)).expect("readable").since;
        assert!(absent >= now, "no header: the cycle starts now");
    }

    fn task(n: i64, key: Option<&str>) -> Task {
        Task {
            idempotency_key: key.map(str::to_string),
            body: format!(r#"{{"id":"e-{n}","data":{{"note":"a\u0000b"}}}}"#).into_bytes(),
            digest: format!("digest-{n}"),
            since: now_ms() - n,
            ..Task::example(n, &format!("e-{n}"), "cartella", "it.lombardia.csi.prestazione.erogata.v1")
        }
    }

    /// A message as a consumer receives it.
    fn as_received(m: &Message) -> lapin::message::Delivery {
        let mut d = lapin::message::Delivery::mock(
            1,
            "".into(),
            m.routing_key.as_str().into(),
            false,
            m.body.clone(),
        );
        d.properties = m.properties();
        d
    }

    #[test]
    fn several_deliveries_travel_in_one_message_and_come_out_whole() {
        let tasks = [task(1, Some("k-1")), task(2, None), task(3, Some("k-3"))];
        let refs: Vec<&Task> = tasks.iter().collect();
        let m = Message::of_tasks("x", &refs).expect("a message");
        assert_eq!(m.properties().content_type().as_ref().map(|c| c.as_str()), Some(BATCH_CONTENT_TYPE));
        let got = tasks_of(&as_received(&m)).expect("a batch").expect("readable");
        assert_eq!(got.len(), 3);
        for (a, b) in got.iter().zip(&tasks) {
            assert_eq!(
                (a.delivery_id, &a.event_id, &a.destination, &a.event_type, &a.tenant),
                (b.delivery_id, &b.event_id, &b.destination, &b.event_type, &b.tenant)
            );
            assert_eq!(
                (&a.idempotency_key, &a.body, &a.digest, a.attempts, a.since),
                (&b.idempotency_key, &b.body, &b.digest, b.attempts, b.since)
            );
        }
        // One delivery goes alone, with its state in headers.
        let alone = as_received(&Message::of_tasks("x", &[&tasks[0]]).expect("a message"));
        assert!(tasks_of(&alone).is_none());
        assert_eq!(task_of(&alone).map(|t| t.delivery_id), Ok(1));
        assert!(Message::of_tasks("x", &[]).is_none());
    }

    #[test]
    fn a_damaged_batch_says_what_is_wrong() {
        let tasks = [task(1, None), task(2, None)];
        let m = Message::of_tasks("x", &tasks.iter().collect::<Vec<_>>()).expect("a message");
        let mut cut = as_received(&m);
        cut.data.truncate(m.body.len() - 5);
        assert_eq!(tasks_of(&cut).expect("a batch").expect_err("damaged"), "record 2 cut short");
        let mut miscounted = as_received(&m);
        let mut h = m.headers.clone();
        h.insert(BATCH.into(), AMQPValue::LongLongInt(3));
        miscounted.properties = m.properties().with_headers(h);
        assert_eq!(
            tasks_of(&miscounted).expect("a batch").expect_err("damaged"),
            "csi-batch header says 3 deliveries, the body holds 2"
        );
        let mut garbled = as_received(&m);
        garbled.data[4] = b'{';
        let why = tasks_of(&garbled).expect("a batch").expect_err("damaged");
        assert!(why.starts_with("record 1: state: "), "{why}");
    }

    #[test]
    fn attempts_past_u32_are_clamped() {
        let now = now_ms();
        assert_eq!(task_of(&received(Some(now), i64::MAX)).map(|t| t.attempts), Ok(u32::MAX));
        assert_eq!(task_of(&received(Some(now), -5)).map(|t| t.attempts), Ok(0));
    }
}
