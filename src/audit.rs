//! The audit trail: append-only records chained by SHA-256, so that any modified, deleted or
//! reordered record is found by [`verify`].
//!
//! Invariant: a record never holds a payload, only its digest, and never a codice fiscale: actors
//! are client names, subjects are event ids and pseudonyms.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The transitions and accesses that are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Received,
    Rejected,
    Accepted,
    Duplicate,
    Delivered,
    Retried,
    DeadLettered,
    Replayed,
    Read,
    Denied,
    Corrected,
    /// A SIUSS flusso was put in the WaaS feed (new, or a cancellation).
    SiussOffered,
    /// INPS reported the outcome of a flusso (`POST /esiti`).
    SiussEsito,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Received => "received",
            Action::Rejected => "rejected",
            Action::Accepted => "accepted",
            Action::Duplicate => "duplicate",
            Action::Delivered => "delivered",
            Action::Retried => "retried",
            Action::DeadLettered => "dead_lettered",
            Action::Replayed => "replayed",
            Action::Read => "read",
            Action::Denied => "denied",
            Action::Corrected => "corrected",
            Action::SiussOffered => "siuss_offered",
            Action::SiussEsito => "siuss_esito",
        }
    }
}

/// A record to append; the store assigns `seq`, `ts`, `prev_hash` and `hash`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub action: Action,
    /// The client name, `gateway` for the gateway's own transitions.
    pub actor: String,
    pub tenant: Option<String>,
    pub event_id: Option<String>,
    pub destination: Option<String>,
    /// Lower-case hex SHA-256 of the payload concerned.
    pub digest: Option<String>,
    /// Short description without personal data (error summary, HTTP status...).
    pub detail: Option<String>,
}

impl Entry {
    pub fn new(action: Action, actor: impl Into<String>) -> Self {
        Self {
            action,
            actor: actor.into(),
            tenant: None,
            event_id: None,
            destination: None,
            digest: None,
            detail: None,
        }
    }
    pub fn tenant(mut self, t: impl Into<String>) -> Self {
        self.tenant = Some(t.into());
        self
    }
    pub fn event(mut self, id: impl Into<String>) -> Self {
        self.event_id = Some(id.into());
        self
    }
    pub fn destination(mut self, d: impl Into<String>) -> Self {
        self.destination = Some(d.into());
        self
    }
    pub fn digest(mut self, d: impl Into<String>) -> Self {
        self.digest = Some(d.into());
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Record {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    pub action: String,
    pub actor: String,
    pub tenant: Option<String>,
    pub event_id: Option<String>,
    pub destination: Option<String>,
    pub digest: Option<String>,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of the record before the first one.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a record: SHA-256 over the previous hash and every field, unit-separated.
pub fn hash_of(prev_hash: &str, seq: i64, ts: i64, e: &Entry) -> String {
    hash_fields(
        prev_hash,
        seq,
        ts,
        e.action.as_str(),
        &e.actor,
        [&e.tenant, &e.event_id, &e.destination, &e.digest, &e.detail],
    )
}

fn hash_fields(
    prev_hash: &str,
    seq: i64,
    ts: i64,
    action: &str,
    actor: &str,
    optional: [&Option<String>; 5],
) -> String {
    let mut h = Sha256::new();
    for part in [prev_hash, &seq.to_string(), &ts.to_string(), action, actor] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    for part in optional {
        match part {
            Some(s) => {
                h.update([0x01]);
                h.update(s.as_bytes());
            }
            None => h.update([0x00]),
        }
        h.update([0x1f]);
    }
    hex_of(h.finalize().into())
}

/// Lower-case hex of a SHA-256 digest. `hex::encode` collects a `char` iterator; writing the 64
/// bytes into a buffer is several times faster, and every audit record and event is hashed.
pub fn hex_of(digest: [u8; 32]) -> String {
    let mut out = [0u8; 64];
    // The output buffer has exactly twice the input's length: this cannot fail.
    let _ = hex::encode_to_slice(digest, &mut out);
    std::str::from_utf8(&out).map(str::to_owned).unwrap_or_default()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    hex_of(Sha256::digest(bytes).into())
}

/// Lower-case hex SHA-256 of `value` as compact JSON: the same as [`digest`] of
/// `serde_json::to_vec(value)`, without building the text.
pub fn digest_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(Sha256::new());
    // Serializing a value to a sink that never fails cannot fail except on a non-string map key,
    // which none of the gateway's types has; such a value hashes as what was written of it.
    let _ = serde_json::to_writer(&mut h, value);
    hex_of(h.0.finalize().into())
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// True when every record is intact and in place.
    pub ok: bool,
    /// Records checked.
    pub records: i64,
    /// The first problem found, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Position (sequence number) of the first record that does not verify.
    pub position: i64,
    /// `modified`, `missing` (deleted or reordered records leave a gap or a broken link) or `truncated`.
    pub kind: String,
    pub detail: String,
}

/// Incremental verifier: feed records in `seq` order, then call [`Verifier::finish`] with the
/// head (last seq and hash) the store keeps apart from the records.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev_hash: String,
    count: i64,
    problem: Option<Problem>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self { expected_seq: 1, prev_hash: GENESIS.to_string(), count: 0, problem: None }
    }
}

impl Verifier {
    /// Checks one record. Returns false once a problem is found (further records are ignored).
    pub fn feed(&mut self, r: &Record) -> bool {
        if self.problem.is_some() {
            return false;
        }
        self.count += 1;
        let fail = |kind: &str, detail: String| Problem { position: r.seq, kind: kind.into(), detail };
        if r.seq != self.expected_seq {
            self.problem = Some(fail(
                "missing",
                format!(
                    "expected record {} but found {}: records were deleted or reordered",
                    self.expected_seq, r.seq
                ),
            ));
            return false;
        }
        if r.prev_hash != self.prev_hash {
            self.problem = Some(fail(
                "missing",
                format!("record {} does not follow the previous record (broken link)", r.seq),
            ));
            return false;
        }
        let recomputed = hash_fields(
            &r.prev_hash,
            r.seq,
            r.ts,
            &r.action,
            &r.actor,
            [&r.tenant, &r.event_id, &r.destination, &r.digest, &r.detail],
        );
        if recomputed != r.hash {
            self.problem =
                Some(fail("modified", format!("record {} was modified after it was written", r.seq)));
            return false;
        }
        self.prev_hash = r.hash.clone();
        self.expected_seq += 1;
        true
    }

    /// Completes the check against the head kept by the store.
    pub fn finish(mut self, head: Option<(i64, String)>) -> Verification {
        if self.problem.is_none() {
            let last = self.expected_seq - 1;
            if let Some((seq, hash)) = head {
                if seq != last || (last > 0 && hash != self.prev_hash) {
                    self.problem = Some(Problem {
                        position: last + 1,
                        kind: "truncated".into(),
                        detail: format!("the log ends at record {last} but its head says {seq}"),
                    });
                }
            }
        }
        Verification { ok: self.problem.is_none(), records: self.count, problem: self.problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Record> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let e = Entry::new(Action::Accepted, "vendor-a").tenant("F205").event(format!("ev-{seq}"));
                let hash = hash_of(&prev, seq, 1000 + seq, &e);
                let r = Record {
                    seq,
                    ts: 1000 + seq,
                    action: e.action.as_str().into(),
                    actor: e.actor,
                    tenant: e.tenant,
                    event_id: e.event_id,
                    destination: None,
                    digest: None,
                    detail: None,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                r
            })
            .collect()
    }

    fn verify(records: &[Record], head: Option<(i64, String)>) -> Verification {
        let mut v = Verifier::default();
        for r in records {
            v.feed(r);
        }
        v.finish(head)
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let head = Some((5, c[4].hash.clone()));
        assert!(verify(&c, head).ok);
    }

    #[test]
    fn modified_record_is_reported_at_its_position() {
        let mut c = chain(5);
        c[2].tenant = Some("B157".into());
        let v = verify(&c, None);
        assert_eq!(v.problem.as_ref().map(|p| (p.position, p.kind.as_str())), Some((3, "modified")));
    }

    #[test]
    fn deleted_and_reordered_records_are_reported() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c, None).problem.map(|p| p.position), Some(3));
        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(verify(&c, None).problem.map(|p| p.position), Some(3));
    }

    #[test]
    fn deleted_tail_is_caught_by_the_head() {
        let c = chain(5);
        let head = Some((5, c[4].hash.clone()));
        let v = verify(&c[..4], head);
        assert_eq!(v.problem.map(|p| p.kind), Some("truncated".to_string()));
    }
}
