//! Attestations kept per (codice fiscale, prestazione) until their validity ends.
//!
//! The rule: an entry expires at the end of the attestation's last day of validity in Italy
//! (midnight Europe/Rome after `DataValidita`, or after 31 December of the year of presentation
//! when INPS gives no `DataValidita`), or earlier when `cache_max_age_secs` is configured. It is
//! served only for a request whose day (its `DataValidita`, else today in Italy) falls within
//! the attestation's validity. Only `OK` answers are kept: a `DATI_NON_TROVATI` may change as
//! soon as the person presents a DSU.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use time::Date;

use crate::attestazione::Attestazione;
use crate::request::PrestazioneDaErogare;
use crate::values::{rome_end_of_day, CodiceFiscale};

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    /// Who asked (an ente, a tenant): an attestation INPS gave one ente is not served to another,
    /// which would learn that the person was asked about elsewhere.
    scope: String,
    codice_fiscale: CodiceFiscale,
    prestazione: PrestazioneDaErogare,
}

struct Entry {
    attestazione: Arc<Attestazione>,
    expires_at: SystemTime,
}

/// The cache. Bounded: when full, expired entries go first, then the ones expiring soonest.
pub struct AttestazioneCache {
    entries: Mutex<HashMap<Key, Entry>>,
    max_entries: usize,
    max_age: Option<Duration>,
}

impl std::fmt::Debug for AttestazioneCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestazioneCache")
            .field("len", &self.len())
            .field("max_entries", &self.max_entries)
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl AttestazioneCache {
    /// A cache of at most `max_entries` attestations (0 disables it), each kept at most
    /// `max_age` when given.
    pub fn new(max_entries: usize, max_age: Option<Duration>) -> Self {
        Self { entries: Mutex::new(HashMap::new()), max_entries, max_age }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept attestation for the person and prestazione, asked by `scope`, if it has not expired at `now` and
    /// is valid on `day`.
    pub fn get(
        &self,
        scope: &str,
        codice_fiscale: &CodiceFiscale,
        prestazione: PrestazioneDaErogare,
        day: Date,
        now: SystemTime,
    ) -> Option<Arc<Attestazione>> {
        let key = Key { scope: scope.to_owned(), codice_fiscale: codice_fiscale.clone(), prestazione };
        let mut entries = self.lock();
        match entries.get(&key) {
            Some(e) if now >= e.expires_at => {
                entries.remove(&key);
                None
            }
            Some(e) if e.attestazione.valida_il(day) => Some(e.attestazione.clone()),
            _ => None,
        }
    }

    /// When an attestation stops being served: the end of its last day in Italy, or `now` plus
    /// the maximum age, whichever comes first.
    pub fn expiry(&self, attestazione: &Attestazione, now: SystemTime) -> SystemTime {
        let end = rome_end_of_day(attestazione.data_validita);
        // An age too long to add to `now` caps nothing.
        match self.max_age.and_then(|age| now.checked_add(age)) {
            Some(cap) => end.min(cap),
            None => end,
        }
    }

    /// Keeps `attestazione` for the person and prestazione (replacing what was there).
    pub fn insert(
        &self,
        scope: &str,
        codice_fiscale: &CodiceFiscale,
        prestazione: PrestazioneDaErogare,
        attestazione: Arc<Attestazione>,
        now: SystemTime,
    ) {
        if self.max_entries == 0 {
            return;
        }
        let expires_at = self.expiry(&attestazione, now);
        if expires_at <= now {
            return;
        }
        let key = Key { scope: scope.to_owned(), codice_fiscale: codice_fiscale.clone(), prestazione };
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= self.max_entries {
            entries.retain(|_, e| e.expires_at > now);
            if entries.len() >= self.max_entries {
                if let Some(soonest) =
                    entries.iter().min_by_key(|(_, e)| e.expires_at).map(|(k, _)| k.clone())
                {
                    entries.remove(&soonest);
                }
            }
        }
        entries.insert(key, Entry { attestazione, expires_at });
    }

    /// Forgets the person's attestation for the prestazione.
    pub fn remove(&self, scope: &str, codice_fiscale: &CodiceFiscale, prestazione: PrestazioneDaErogare) {
        self.lock().remove(&Key {
            scope: scope.to_owned(),
            codice_fiscale: codice_fiscale.clone(),
            prestazione,
        });
    }

    /// How many attestations are kept (expired ones included until they are next touched).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestazione::Attestazione;
    use crate::values::{rome_date, ProtocolloDsu};
    use std::time::UNIX_EPOCH;
    use time::macros::date;

    fn attestazione(validita: Date) -> Arc<Attestazione> {
        Arc::new(Attestazione {
            codice_fiscale_dichiarante: CodiceFiscale::parse("RSSMRA85T10A562S").unwrap(),
            protocollo_dsu: ProtocolloDsu::parse("INPS-ISEE-2025-00123456A-00").unwrap(),
            data_presentazione: date!(2025 - 01 - 20),
            data_validita: validita,
            ordinario: None,
            ridotti: Vec::new(),
            omissioni_difformita: Vec::new(),
        })
    }

    fn cf(s: &str) -> CodiceFiscale {
        CodiceFiscale::parse(s).unwrap()
    }

    // 2025-06-01T10:00:00Z
    fn june() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_748_772_000)
    }

    #[test]
    fn kept_until_the_end_of_the_last_valid_day_in_italy() {
        let cache = AttestazioneCache::new(10, None);
        let a = cf("RSSMRA85T10A562S");
        let p = PrestazioneDaErogare::ALTRO;
        cache.insert("", &a, p, attestazione(date!(2025 - 12 - 31)), june());
        assert!(cache.get("", &a, p, rome_date(june()), june()).is_some());
        assert!(
            cache.get("", &a, "A1.01".parse().unwrap(), rome_date(june()), june()).is_none(),
            "per prestazione"
        );
        // A day outside the validity is not served, but the entry stays.
        assert!(cache.get("", &a, p, date!(2026 - 01 - 02), june()).is_none());
        assert_eq!(cache.len(), 1);
        // 2025-12-31T22:59:59Z is still the 31st in Rome; 23:00:00Z is 1 January.
        let last = UNIX_EPOCH + Duration::from_secs(1_767_221_999);
        assert!(cache.get("", &a, p, date!(2025 - 12 - 31), last).is_some());
        assert!(cache.get("", &a, p, date!(2025 - 12 - 31), last + Duration::from_secs(1)).is_none());
        assert!(cache.is_empty(), "expired entries are dropped when touched");
    }

    #[test]
    fn max_age_caps_and_size_bounds() {
        let cache = AttestazioneCache::new(2, Some(Duration::from_secs(3600)));
        let p = PrestazioneDaErogare::ALTRO;
        let (a, b, c) = (cf("RSSMRA85T10A562S"), cf("CLMMTT12B15F205O"), cf("CLMLCU80H04B157I"));
        cache.insert("", &a, p, attestazione(date!(2025 - 12 - 31)), june());
        assert!(cache.get("", &a, p, rome_date(june()), june() + Duration::from_secs(3599)).is_some());
        assert!(cache.get("", &a, p, rome_date(june()), june() + Duration::from_secs(3600)).is_none());

        cache.insert("", &a, p, attestazione(date!(2025 - 12 - 31)), june());
        cache.insert("", &b, p, attestazione(date!(2025 - 12 - 31)), june() + Duration::from_secs(10));
        cache.insert("", &c, p, attestazione(date!(2025 - 12 - 31)), june() + Duration::from_secs(20));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get("", &a, p, rome_date(june()), june() + Duration::from_secs(30)).is_none(),
            "soonest evicted"
        );

        cache.remove("", &b, p);
        assert_eq!(cache.len(), 1);
        let off = AttestazioneCache::new(0, None);
        off.insert("", &a, p, attestazione(date!(2025 - 12 - 31)), june());
        assert!(off.is_empty());
        // An attestation already over is not kept.
        cache.insert("", &a, p, attestazione(date!(2025 - 05 - 31)), june());
        assert!(cache.get("", &a, p, date!(2025 - 05 - 31), june()).is_none());
    }

    #[test]
    fn a_max_age_too_long_to_add_keeps_the_attestation_until_its_validity_ends() {
        let cache = AttestazioneCache::new(10, Some(Duration::from_secs(u64::MAX)));
        let (a, p) = (cf("RSSMRA85T10A562S"), PrestazioneDaErogare::ALTRO);
        let end = rome_end_of_day(date!(2025 - 12 - 31));
        assert_eq!(cache.expiry(&attestazione(date!(2025 - 12 - 31)), june()), end);
        cache.insert("", &a, p, attestazione(date!(2025 - 12 - 31)), june());
        assert!(cache.get("", &a, p, date!(2025 - 12 - 31), end - Duration::from_secs(1)).is_some());
        assert!(cache.get("", &a, p, date!(2025 - 12 - 31), end).is_none());
    }
}
