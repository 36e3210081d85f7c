//! Values with an exact lexical form: codice fiscale, protocollo DSU, amounts, the scala di
//! equivalenza, `xs:date`, and the calendar day in Italy.
//!
//! `Debug` of the personal values ([`CodiceFiscale`], [`ProtocolloDsu`], [`Importo`]) prints a
//! placeholder, so that a `{:?}` in a log line or a panic message never shows them.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{Date, Month};

/// A value that does not have the form its field requires; says which rule it breaks, never the
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub &'static str);

/// A personal codice fiscale: 16 characters, upper case, omocodia substitutions accepted, with
/// the right check character.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodiceFiscale(String);

impl CodiceFiscale {
    /// The rule a codice fiscale must follow, as reported in errors.
    pub const RULE: &'static str =
        "must be a 16-character personal codice fiscale, upper case, with a valid check character";

    /// Checks shape and check character.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        if codice_fiscale_is_valid(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValueError(Self::RULE))
        }
    }

    /// The 16 characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CodiceFiscale {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for CodiceFiscale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodiceFiscale(<redacted>)")
    }
}

/// Whether `cf` is a well-formed 16-character personal codice fiscale with the right check
/// character (omocodia substitutions accepted). Same algorithm as the hub's `codice-fiscale`
/// format.
pub fn codice_fiscale_is_valid(cf: &str) -> bool {
    const ODD: [u32; 26] =
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];
    const OMOCODIA: &[u8] = b"LMNPQRSTUV";
    let b = cf.as_bytes();
    if b.len() != 16 {
        return false;
    }
    let letter = |i: usize| b[i].is_ascii_uppercase();
    let digitish = |i: usize| b[i].is_ascii_digit() || OMOCODIA.contains(&b[i]);
    let shape = (0..6).all(letter)
        && [6, 7, 9, 10, 12, 13, 14].into_iter().all(digitish)
        && b"ABCDEHLMPRST".contains(&b[8])
        && letter(11)
        && letter(15);
    if !shape {
        return false;
    }
    let value = |c: u8| -> usize {
        if c.is_ascii_digit() {
            usize::from(c - b'0')
        } else {
            usize::from(c - b'A')
        }
    };
    let sum: u32 = b[..15]
        .iter()
        .enumerate()
        .map(|(i, &c)| if i % 2 == 0 { ODD[value(c)] } else { value(c) as u32 })
        .sum();
    b[15] == b'A' + (sum % 26) as u8
}

/// Whether `s` contains something shaped like a codice fiscale (16 characters, in either case),
/// used to keep texts from INPS out of errors when they echo one.
pub(crate) fn looks_like_codice_fiscale(s: &str) -> bool {
    s.len() == 16
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
        && s.bytes().take(6).all(|b| b.is_ascii_alphabetic())
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// The protocollo of a DSU, `INPS-ISEE-AAAA-NNNNNNNNX-PP` (`INPS-ISEE-\d{4}-\d{8}[A-Z]-\d{2}`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProtocolloDsu(String);

impl ProtocolloDsu {
    /// The rule, as reported in errors.
    pub const RULE: &'static str = r"must match INPS-ISEE-\d{4}-\d{8}[A-Z]-\d{2}";

    /// Checks the pattern.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let ok = b.len() == 27
            && s.starts_with("INPS-ISEE-")
            && digits(10..14)
            && b[14] == b'-'
            && digits(15..23)
            && b[23].is_ascii_uppercase()
            && b[24] == b'-'
            && digits(25..27);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValueError(Self::RULE))
        }
    }

    /// The protocollo as INPS writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The year in the protocollo (`AAAA`).
    pub fn anno(&self) -> i32 {
        self.0[10..14].parse().unwrap_or_default()
    }
}

impl fmt::Debug for ProtocolloDsu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProtocolloDsu(<redacted>)")
    }
}

/// Reads a non-negative decimal with at most `max_decimals` decimals and a `.` separator into an
/// integer scaled by `10^scale` (`scale >= max_decimals`). Never rounds.
fn parse_scaled(s: &str, max_decimals: usize, scale: u32) -> Result<u64, ()> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || int.len() > 12
        || frac.len() > max_decimals
        || (s.contains('.') && frac.is_empty())
        || !all_digits(int)
        || !all_digits(frac)
    {
        return Err(());
    }
    let int: u64 = int.parse().map_err(|_| ())?;
    let mut frac_value: u64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| ())? };
    for _ in frac.len()..scale as usize {
        frac_value *= 10;
    }
    Ok(int * 10u64.pow(scale) + frac_value)
}

/// An amount in euro (ISE, ISEE, ISR, ISP), held exactly as integer cents. INPS writes
/// `17443.80`; written back with two decimals and a `.`, the contracts' `importo` form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Importo(u64);

impl Importo {
    /// The rule, as reported in errors.
    pub const RULE: &'static str =
        "must be a non-negative decimal below 10000000000 with at most two decimals and a '.'";

    /// From integer cents.
    pub const fn from_cents(cents: u64) -> Self {
        Self(cents)
    }

    /// The amount in cents.
    pub const fn cents(self) -> u64 {
        self.0
    }
}

impl FromStr for Importo {
    type Err = ValueError;
    /// Reads `"17443.80"`, `"0"`, `"12.5"`; a sign or more than two decimals is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_scaled(s, 2, 2) {
            // The contracts' `importo` holds at most ten integer digits.
            Ok(cents) if cents < 1_000_000_000_000 => Ok(Self(cents)),
            _ => Err(ValueError(Self::RULE)),
        }
    }
}

impl fmt::Display for Importo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl fmt::Debug for Importo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Importo(<redacted>)")
    }
}

/// The scala di equivalenza (`2.46`), held exactly as ten-thousandths; written with at least two
/// decimals (`1.00`, `2.46`, `2.8125`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScalaEquivalenza(u32);

impl ScalaEquivalenza {
    /// The rule, as reported in errors.
    pub const RULE: &'static str =
        "must be a decimal from 1 to below 100 with at most four decimals and a '.'";

    /// The value in ten-thousandths (`2.46` → 24600).
    pub const fn ten_thousandths(self) -> u32 {
        self.0
    }
}

impl FromStr for ScalaEquivalenza {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_scaled(s, 4, 4) {
            Ok(v) if (10_000..1_000_000).contains(&v) => Ok(Self(v as u32)),
            _ => Err(ValueError(Self::RULE)),
        }
    }
}

impl fmt::Display for ScalaEquivalenza {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frac = format!("{:04}", self.0 % 10_000);
        let frac = frac.trim_end_matches('0');
        let frac = if frac.len() < 2 { &format!("{frac:0<2}") } else { frac };
        write!(f, "{}.{frac}", self.0 / 10_000)
    }
}

/// Reads an `xs:date` (`2025-03-04`), tolerating a time-zone suffix (`2025-03-04+01:00`, `Z`) or a
/// time part (`2025-03-04T00:00:00`), which are dropped.
pub fn parse_date(s: &str) -> Result<Date, ValueError> {
    const RULE: &str = "must be a date YYYY-MM-DD";
    let s = s.trim();
    let Some(day) = s.get(..10) else { return Err(ValueError(RULE)) };
    let rest = &s[10..];
    if !(rest.is_empty() || rest.starts_with(['T', '+', '-', 'Z'])) {
        return Err(ValueError(RULE));
    }
    let b = day.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(ValueError(RULE));
    }
    let num = |r: std::ops::Range<usize>| -> Result<u16, ValueError> {
        let part = &day[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| ValueError(RULE))
        } else {
            Err(ValueError(RULE))
        }
    };
    let year = num(0..4)?;
    let month = Month::try_from(num(5..7)? as u8).map_err(|_| ValueError(RULE))?;
    Date::from_calendar_date(i32::from(year), month, num(8..10)? as u8).map_err(|_| ValueError(RULE))
}

/// Writes `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn date_of_days(days: i64) -> Date {
    let julian = i32::try_from(days + UNIX_EPOCH_JULIAN_DAY).unwrap_or(i32::MAX);
    Date::from_julian_day(julian).unwrap_or(Date::MAX)
}

fn days_of_date(d: Date) -> i64 {
    i64::from(d.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY
}

/// Unix seconds of 01:00 UTC on the last Sunday of `month` in `year` (EU summer-time switch).
fn last_sunday_0100_utc(year: i32, month: Month) -> i64 {
    let last = match Date::from_calendar_date(year, month, 31) {
        Ok(d) => d,
        Err(_) => return 0,
    };
    let sunday = days_of_date(last) - i64::from(last.weekday().number_days_from_sunday());
    sunday * 86_400 + 3_600
}

/// Offset of Italian civil time from UTC at `unix` seconds: +2 h from 01:00 UTC of the last
/// Sunday of March to 01:00 UTC of the last Sunday of October, +1 h otherwise (EU rule in force
/// since 1996).
fn rome_offset_seconds(unix: i64) -> i64 {
    let year = date_of_days(unix.div_euclid(86_400)).year();
    let summer =
        last_sunday_0100_utc(year, Month::March) <= unix && unix < last_sunday_0100_utc(year, Month::October);
    if summer {
        7_200
    } else {
        3_600
    }
}

/// The calendar day in Italy at `now`.
pub fn rome_date(now: SystemTime) -> Date {
    let unix = unix_seconds(now);
    date_of_days((unix + rome_offset_seconds(unix)).div_euclid(86_400))
}

/// The instant the day after `date` begins in Italy: the first instant at which `date` is over.
pub fn rome_end_of_day(date: Date) -> SystemTime {
    let next_midnight_local = (days_of_date(date) + 1) * 86_400;
    // Midnight is never inside a switch hour (they happen at 01:00 UTC), so the offset one hour
    // before local midnight, read as UTC, is the offset in force at that midnight.
    let unix = next_midnight_local - rome_offset_seconds(next_midnight_local - 3_600);
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        UNIX_EPOCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn codice_fiscale_needs_its_check_character_and_hides_in_debug() {
        assert!(CodiceFiscale::parse("RSSMRA85T10A562S").is_ok());
        assert!(CodiceFiscale::parse("RSSMRA85T10A562T").is_err());
        assert!(CodiceFiscale::parse("rssmra85t10a562s").is_err());
        let shown = format!("{:?}", CodiceFiscale::parse("RSSMRA85T10A562S").unwrap());
        assert!(!shown.contains("RSSMRA"), "{shown}");
    }

    #[test]
    fn protocollo_dsu_follows_the_inps_pattern() {
        let p = ProtocolloDsu::parse("INPS-ISEE-2025-00123456A-00").unwrap();
        assert_eq!(p.anno(), 2025);
        for bad in [
            "INPS-ISEE-2025-0012345A-00",
            "INPS-ISEE-2025-00123456a-00",
            "INPS-ISEE-25-00123456A-00",
            "INPS-ISEE-2025-00123456A-0",
            "INPS-ISEE-2025-00123456A-000",
            "inps-isee-2025-00123456A-00",
            "",
        ] {
            assert!(ProtocolloDsu::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_are_exact_cents_and_never_rounded() {
        assert_eq!("17443.80".parse::<Importo>().unwrap().cents(), 1_744_380);
        assert_eq!("0".parse::<Importo>().unwrap().to_string(), "0.00");
        assert_eq!("12.5".parse::<Importo>().unwrap().to_string(), "12.50");
        for bad in ["-1.00", "1.005", "1,50", "", ".5", "5.", "1e3", " 1"] {
            assert!(bad.parse::<Importo>().is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", Importo::from_cents(123)), "Importo(<redacted>)");
    }

    #[test]
    fn scala_keeps_up_to_four_decimals() {
        assert_eq!("2.46".parse::<ScalaEquivalenza>().unwrap().to_string(), "2.46");
        assert_eq!("1".parse::<ScalaEquivalenza>().unwrap().to_string(), "1.00");
        assert_eq!("2.8125".parse::<ScalaEquivalenza>().unwrap().to_string(), "2.8125");
        assert_eq!("3.150".parse::<ScalaEquivalenza>().unwrap().to_string(), "3.15");
        assert!("0".parse::<ScalaEquivalenza>().is_err());
        assert!("0.99".parse::<ScalaEquivalenza>().is_err());
        assert!("100".parse::<ScalaEquivalenza>().is_err());
        assert!("2.12345".parse::<ScalaEquivalenza>().is_err());
    }

    #[test]
    fn dates_tolerate_zone_and_time_suffixes() {
        assert_eq!(parse_date("2025-03-04").unwrap(), date!(2025 - 03 - 04));
        assert_eq!(parse_date("2025-03-04+01:00").unwrap(), date!(2025 - 03 - 04));
        assert_eq!(parse_date("2025-03-04T00:00:00").unwrap(), date!(2025 - 03 - 04));
        assert!(parse_date("2025-02-30").is_err());
        assert!(parse_date("04/03/2025").is_err());
        assert!(parse_date("2025-03-041").is_err());
        assert_eq!(format_date(date!(2025 - 03 - 04)), "2025-03-04");
    }

    #[test]
    fn italian_day_follows_summer_time() {
        // 2025-01-15T23:30:00Z is 00:30 on the 16th in Rome (CET, +1).
        assert_eq!(rome_date(at(1_736_983_800)), date!(2025 - 01 - 16));
        // 2025-07-15T21:30:00Z is 23:30 on the 15th (CEST, +2); 22:30Z is the 16th.
        assert_eq!(rome_date(at(1_752_615_000)), date!(2025 - 07 - 15));
        assert_eq!(rome_date(at(1_752_618_600)), date!(2025 - 07 - 16));
        // 31 December ends at 23:00 UTC; 30 June at 22:00 UTC.
        assert_eq!(rome_end_of_day(date!(2025 - 12 - 31)), at(1_767_222_000));
        assert_eq!(rome_end_of_day(date!(2025 - 06 - 30)), at(1_751_320_800));
        // The Saturday before the switch to summer time (2025-03-30) ends at 23:00 UTC.
        assert_eq!(rome_end_of_day(date!(2025 - 03 - 29)), at(1_743_289_200));
        // The Saturday before the switch back (2025-10-26) ends at 22:00 UTC.
        assert_eq!(rome_end_of_day(date!(2025 - 10 - 25)), at(1_761_429_600));
    }
}
