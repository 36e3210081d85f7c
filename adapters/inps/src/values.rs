//! Simple values with an exact lexical form: amounts, hours, `xs:date`, SINBA `MM/AAAA`.

use std::fmt;
use std::str::FromStr;

use time::{Date, Month};

/// A decimal string that could not be read as an exact value with at most two decimals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a decimal with at most two decimals and a '.' separator")]
pub struct DecimalError;

fn parse_hundredths(s: &str) -> Result<i64, DecimalError> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || int.len() > 15 || frac.len() > 2 || !all_digits(int) || !all_digits(frac) {
        return Err(DecimalError);
    }
    if digits.contains('.') && frac.is_empty() {
        return Err(DecimalError);
    }
    let int: i64 = int.parse().map_err(|_| DecimalError)?;
    let frac: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().map_err(|_| DecimalError)? * 10,
        _ => frac.parse().map_err(|_| DecimalError)?,
    };
    let v = int * 100 + frac;
    Ok(if neg { -v } else { v })
}

fn fmt_hundredths(v: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    write!(f, "{sign}{}.{:02}", a / 100, a % 100)
}

/// An amount in euro, held exactly as integer cents; written as `xs:decimal` with two decimals and
/// a `.` (`497.25`, `0.00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Importo(pub i64);

impl Importo {
    /// From integer cents.
    pub const fn from_cents(cents: i64) -> Self {
        Importo(cents)
    }
    /// The amount in cents.
    pub const fn cents(self) -> i64 {
        self.0
    }
}

impl FromStr for Importo {
    type Err = DecimalError;
    /// Reads `"497.25"`, `"12"`, `"3.5"`, `"-1.00"`; more than two decimals is refused, never rounded.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hundredths(s).map(Importo)
    }
}

impl fmt::Display for Importo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hundredths(self.0, f)
    }
}

/// Hours (`OreServizioMensile`), held exactly as hundredths of an hour; written with two decimals
/// (`22.50` = 22 h 30 min).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ore(pub i64);

impl Ore {
    /// From hundredths of an hour.
    pub const fn from_hundredths(h: i64) -> Self {
        Ore(h)
    }
}

impl FromStr for Ore {
    type Err = DecimalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hundredths(s).map(Ore)
    }
}

impl fmt::Display for Ore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hundredths(self.0, f)
    }
}

/// `xs:date` lexical form without time zone: `YYYY-MM-DD`.
pub fn xs_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parses an RFC 3339 full-date `YYYY-MM-DD` (the contracts' `data`).
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s.get(0..4)?.parse().ok()?;
    let m: u8 = s.get(5..7)?.parse().ok()?;
    let d: u8 = s.get(8..10)?.parse().ok()?;
    Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
}

/// SINBA month (`DataMeseAnnoType`, `MM/AAAA`, years 1900–2099 per the XSD pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeseAnno {
    year: u16,
    month: u8,
}

/// A month outside what `DataMeseAnnoType` allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("month {month}/{year} is outside MM/AAAA with year 1900-2099")]
pub struct MeseAnnoError {
    /// Year given.
    pub year: i32,
    /// Month given.
    pub month: u8,
}

impl MeseAnno {
    /// A month; the year must be 1900–2099 and the month 1–12.
    pub fn new(year: i32, month: u8) -> Result<Self, MeseAnnoError> {
        if (1900..=2099).contains(&year) && (1..=12).contains(&month) {
            Ok(MeseAnno { year: year as u16, month })
        } else {
            Err(MeseAnnoError { year, month })
        }
    }
    /// The month of a date.
    pub fn of(d: Date) -> Result<Self, MeseAnnoError> {
        Self::new(d.year(), u8::from(d.month()))
    }
    /// Year.
    pub fn year(self) -> u16 {
        self.year
    }
    /// Month, 1–12.
    pub fn month(self) -> u8 {
        self.month
    }
}

impl fmt::Display for MeseAnno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}/{:04}", self.month, self.year)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importo_round_trips_exactly() {
        for (s, c, out) in [
            ("497.25", 49725, "497.25"),
            ("0.00", 0, "0.00"),
            ("12", 1200, "12.00"),
            ("3.5", 350, "3.50"),
            ("-1.05", -105, "-1.05"),
        ] {
            let i: Importo = s.parse().unwrap();
            assert_eq!(i.cents(), c);
            assert_eq!(i.to_string(), out);
        }
    }

    #[test]
    fn importo_refuses_rounding_and_commas() {
        for s in ["1.234", "1,50", "", ".5", "1.", "1e3", "--1", "+1"] {
            assert!(s.parse::<Importo>().is_err(), "{s}");
        }
    }

    #[test]
    fn mese_anno_is_mm_slash_yyyy() {
        assert_eq!(MeseAnno::new(2025, 3).unwrap().to_string(), "03/2025");
        assert!(MeseAnno::new(1899, 3).is_err());
        assert!(MeseAnno::new(2025, 13).is_err());
    }

    #[test]
    fn dates_parse_and_format() {
        let d = parse_date("2025-02-01").unwrap();
        assert_eq!(xs_date(d), "2025-02-01");
        assert!(parse_date("2025-02-30").is_none());
        assert!(parse_date("2025-2-01").is_none());
    }
}
