//! The calendar day in Italy (Europe/Rome: CET, CEST from the last Sunday of March to the last
//! Sunday of October, switching at 01:00 UTC), which dates the `id_flusso` and its daily
//! progressive. Computed here rather than from the host's time zone, which a server may not set.

use time::{Date, Duration, Month, OffsetDateTime, Time};

fn last_sunday(year: i32, month: Month) -> Option<Date> {
    let last = Date::from_calendar_date(year, month, month.length(year)).ok()?;
    Some(last - Duration::days(last.weekday().number_days_from_sunday() as i64))
}

/// The date in Italy at `ms` milliseconds since the Unix epoch.
pub fn rome_date(ms: i64) -> Date {
    let utc = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let year = utc.year();
    let switch = |m| {
        last_sunday(year, m)
            .map(|d| d.with_time(Time::from_hms(1, 0, 0).unwrap_or(Time::MIDNIGHT)).assume_utc())
    };
    let summer = match (switch(Month::March), switch(Month::October)) {
        (Some(start), Some(end)) => utc >= start && utc < end,
        _ => false,
    };
    (utc + Duration::hours(if summer { 2 } else { 1 })).date()
}

/// `YYYYMMDD`.
pub fn yyyymmdd(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ms(t: OffsetDateTime) -> i64 {
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    }

    #[test]
    fn italian_midnight_in_winter_and_summer() {
        // 23:30 UTC is 00:30 the next day in winter (CET) and 01:30 in summer (CEST).
        assert_eq!(yyyymmdd(rome_date(ms(datetime!(2026-01-15 23:30 UTC)))), "20260116");
        assert_eq!(yyyymmdd(rome_date(ms(datetime!(2026-07-15 22:30 UTC)))), "20260716");
        assert_eq!(yyyymmdd(rome_date(ms(datetime!(2026-07-15 21:30 UTC)))), "20260715");
        // 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(yyyymmdd(rome_date(ms(datetime!(2026-03-28 22:59 UTC)))), "20260328");
        assert_eq!(yyyymmdd(rome_date(ms(datetime!(2026-03-29 22:30 UTC)))), "20260330");
        assert_eq!(yyyymmdd(rome_date(ms(datetime!(2026-10-25 22:30 UTC)))), "20261025");
    }
}
