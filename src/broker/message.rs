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

    /// The same message with a header set.
    pub fn with(mut self, key: &str, value: AMQPValue) -> Self {
        self.headers.insert(key.into(), value);
        self
    }

    pub fn properties(&self) -> BasicProperties {
        BasicProperties::default()
            .with_content_type("application/cloudevents+json".into())
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

/// How far ahead of this instance's clock a `csi-since` may be: instances' clocks differ by
/// seconds, not days.
const SINCE_AHEAD_MAX_MS: i64 = 24 * 3600 * 1000;

/// The start of the delivery cycle (`csi-since`), now when the header is absent. A time before
/// 1970 or more than a day ahead is a damaged header: `max_age_secs` cannot be counted from it.
fn since(h: &FieldTable) -> Result<i64, String> {
    let now = now_ms();
    match int(h, SINCE) {
        None => Ok(now),
        Some(ms) if (0..=now.saturating_add(SINCE_AHEAD_MAX_MS)).contains(&ms) => Ok(ms),
        Some(ms) => Err(format!(
            "{SINCE} header {ms} is not a plausible time (milliseconds since 1970, at most a day ahead)"
        )),
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

    #[test]
    fn attempts_past_u32_are_clamped() {
        let now = now_ms();
        assert_eq!(task_of(&received(Some(now), i64::MAX)).map(|t| t.attempts), Ok(u32::MAX));
        assert_eq!(task_of(&received(Some(now), -5)).map(|t| t.attempts), Ok(0));
    }
}
