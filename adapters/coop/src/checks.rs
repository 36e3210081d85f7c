//! Checks that look beyond one row: today's date, and each operator's day across the whole upload.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use time::Date;

/// Upload-wide check state. One per upload; shared by reference with the reader.
#[derive(Debug)]
pub struct Checks {
    /// Deliveries dated after this day are refused ("date not in the future").
    pub today: Date,
    /// (cooperativa, operatore, date) → the intervals already accepted that day.
    days: Mutex<HashMap<(String, String, Date), Vec<Slot>>>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Minutes from midnight, start inclusive, end exclusive.
    start: u32,
    end: u32,
    row: u64,
    /// Hash of the delivery's idempotency key: the same delivery again is not an overlap.
    key: u64,
}

/// An accepted delivery that a new one overlaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overlap {
    pub row: u64,
    pub start: u32,
    pub end: u32,
}

fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl Checks {
    pub fn new(today: Date) -> Self {
        Self { today, days: Mutex::new(HashMap::new()) }
    }

    fn days(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, Date), Vec<Slot>>> {
        // A panic elsewhere cannot leave the map half-updated: recover it.
        self.days.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first accepted delivery of the same operator and day whose interval intersects.
    pub(crate) fn overlap(
        &self,
        coop: &str,
        operator: &str,
        date: Date,
        (start, end): (u32, u32),
        key: &str,
    ) -> Option<Overlap> {
        let days = self.days();
        let slots = days.get(&(coop.to_string(), operator.to_string(), date))?;
        let key = key_hash(key);
        slots.iter().find(|s| s.key != key && s.start < end && start < s.end).map(|s| Overlap {
            row: s.row,
            start: s.start,
            end: s.end,
        })
    }

    /// Remembers an accepted delivery; a later row with the same key (a correction) replaces it.
    pub(crate) fn record(
        &self,
        coop: &str,
        operator: &str,
        date: Date,
        (start, end): (u32, u32),
        row: u64,
        key: &str,
    ) {
        let key = key_hash(key);
        let mut days = self.days();
        let slots = days.entry((coop.to_string(), operator.to_string(), date)).or_default();
        slots.retain(|s| s.key != key);
        slots.push(Slot { start, end, row, key });
    }
}

/// `HH:MM` of minutes from midnight.
pub(crate) fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn intervals_that_touch_do_not_overlap() {
        let c = Checks::new(date!(2026 - 12 - 31));
        let d = date!(2026 - 03 - 02);
        c.record("A", "OP1", d, (540, 600), 2, "k1");
        assert_eq!(c.overlap("A", "OP1", d, (600, 660), "k2"), None);
        assert_eq!(
            c.overlap("A", "OP1", d, (570, 630), "k2"),
            Some(Overlap { row: 2, start: 540, end: 600 })
        );
        // Another operator, another cooperative, another day, or the same delivery again: no overlap.
        assert_eq!(c.overlap("A", "OP2", d, (570, 630), "k2"), None);
        assert_eq!(c.overlap("B", "OP1", d, (570, 630), "k2"), None);
        assert_eq!(c.overlap("A", "OP1", date!(2026 - 03 - 03), (570, 630), "k2"), None);
        assert_eq!(c.overlap("A", "OP1", d, (570, 630), "k1"), None);
    }
}
