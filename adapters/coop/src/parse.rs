//! Text to typed values, the way spreadsheets and cooperatives' software write them.

use time::{Date, Month, Time};

use crate::mapping::Decimal;

/// A date layout such as `dd/mm/yyyy`: `dd`, `mm`, `yyyy` (or `yy`) and literal separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    parts: Vec<Part>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Day,
    Month,
    Year4,
    Year2,
    Lit(char),
}

impl DateFormat {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let lower = spec.to_ascii_lowercase();
        let mut parts = Vec::new();
        let mut rest = lower.as_str();
        while !rest.is_empty() {
            let (part, n) = if rest.starts_with("yyyy") {
                (Part::Year4, 4)
            } else if rest.starts_with("yy") {
                (Part::Year2, 2)
            } else if rest.starts_with("dd") {
                (Part::Day, 2)
            } else if rest.starts_with("mm") {
                (Part::Month, 2)
            } else {
                let c = rest.chars().next().unwrap_or(' ');
                if c.is_ascii_alphanumeric() {
                    return Err(format!("date format '{spec}': use dd, mm, yyyy (or yy) and separators"));
                }
                (Part::Lit(c), c.len_utf8())
            };
            parts.push(part);
            rest = &rest[n..];
        }
        let has = |p: Part| parts.contains(&p);
        if !(has(Part::Day) && has(Part::Month) && (has(Part::Year4) || has(Part::Year2))) {
            return Err(format!("date format '{spec}' needs dd, mm and yyyy"));
        }
        Ok(Self { parts, text: spec.to_string() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Day and month may have one digit (`5/3/2026`), as Excel often writes them.
    fn apply(&self, s: &str) -> Option<Date> {
        let b = s.as_bytes();
        let mut i = 0;
        let (mut d, mut m, mut y) = (None, None, None);
        let digits = |i: &mut usize, min: usize, max: usize| -> Option<u32> {
            let start = *i;
            while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
                *i += 1;
            }
            if *i - start < min {
                return None;
            }
            s[start..*i].parse().ok()
        };
        for part in &self.parts {
            match part {
                Part::Day => d = Some(digits(&mut i, 1, 2)?),
                Part::Month => m = Some(digits(&mut i, 1, 2)?),
                Part::Year4 => y = Some(digits(&mut i, 4, 4)? as i32),
                Part::Year2 => y = Some(2000 + digits(&mut i, 2, 2)? as i32),
                Part::Lit(c) => {
                    let mut buf = [0u8; 4];
                    let lit = c.encode_utf8(&mut buf).as_bytes();
                    if !b[i..].starts_with(lit) {
                        return None;
                    }
                    i += lit.len();
                }
            }
        }
        if i != b.len() {
            return None;
        }
        let month = Month::try_from(u8::try_from(m?).ok()?).ok()?;
        Date::from_calendar_date(y?, month, u8::try_from(d?).ok()?).ok()
    }
}

/// A date in one of the formats; a trailing time of day (`05/03/2026 00:00`, ISO `T…`) is ignored.
pub fn date(s: &str, formats: &[DateFormat]) -> Option<Date> {
    let s = s.trim();
    let candidates = [Some(s), s.split_once(' ').map(|(d, _)| d), s.split_once('T').map(|(d, _)| d)];
    candidates.into_iter().flatten().find_map(|c| formats.iter().find_map(|f| f.apply(c)))
}

/// `9:05`, `09:05`, `09.05`, `09:05:30`, `09,05`, or the time part of an ISO date-time.
pub fn time(s: &str) -> Option<Time> {
    let mut s = s.trim();
    if let Some((_, t)) = s.split_once('T') {
        // 2026-03-05T09:00:00+01:00: the local time as written.
        s = t.split(['+', 'Z', 'z']).next().unwrap_or(t);
        if let Some(pos) = s.rfind('-') {
            s = &s[..pos];
        }
    }
    let mut fields = s.split([':', '.', ',']);
    let h: u8 = num(fields.next()?, 1, 2)?;
    let m: u8 = num(fields.next()?, 2, 2)?;
    let sec: u8 = match fields.next() {
        Some(f) => num(f.get(..2.min(f.len()))?, 2, 2)?,
        None => 0,
    };
    if fields.next().is_some() {
        return None;
    }
    Time::from_hms(h, m, sec).ok()
}

fn num<T: std::str::FromStr>(s: &str, min: usize, max: usize) -> Option<T> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A non-negative decimal as hundredths (rounded half up past the second decimal).
/// The one separator present is the decimal one; with both, `decimal` says which groups thousands.
pub fn hundredths(s: &str, decimal: Decimal) -> Option<u64> {
    let s: String = s.trim().chars().filter(|c| !c.is_whitespace() && *c != '\'').collect();
    let (dec, group) = match (s.contains(','), s.contains('.'), decimal) {
        (true, true, Decimal::Comma) => (',', '.'),
        (true, true, Decimal::Point) => ('.', ','),
        (true, false, _) => (',', '.'),
        _ => ('.', ','),
    };
    let s: String = s.chars().filter(|&c| c != group).collect();
    let (int, frac) = s.split_once(dec).unwrap_or((&s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let fb = frac.as_bytes();
    let digit = |i: usize| fb.get(i).map(|b| u64::from(b - b'0')).unwrap_or(0);
    let cents = digit(0) * 10 + digit(1) + u64::from(digit(2) >= 5);
    int.checked_mul(100)?.checked_add(cents)
}

/// Hundredths as `"12.50"`.
pub fn decimal_string(h: u64) -> String {
    format!("{}.{:02}", h / 100, h % 100)
}

/// A coordinate pair from `"45.46,9.19"` / `"45.46;9.19"` / `"45.46 9.19"`; ranges checked.
pub fn coordinates_text(s: &str) -> Option<(f64, f64)> {
    // With `;` between them, the numbers may use decimal commas.
    let parts: Vec<String> = if s.contains(';') {
        s.split(';').map(|p| p.trim().replace(',', ".")).collect()
    } else {
        s.split([',', ' ']).map(|p| p.trim().to_string()).collect()
    };
    let mut it = parts.iter().filter(|p| !p.is_empty());
    let (lat, lon) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    if it.next().is_some() {
        return None;
    }
    coordinates(lat, lon)
}

pub fn coordinates(lat: f64, lon: f64) -> Option<(f64, f64)> {
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, time};

    fn formats() -> Vec<DateFormat> {
        ["dd/mm/yyyy", "yyyy-mm-dd"].iter().map(|f| DateFormat::parse(f).expect("valid")).collect()
    }

    #[test]
    fn dates_as_spreadsheets_write_them() {
        let f = formats();
        assert_eq!(date("05/03/2026", &f), Some(date!(2026 - 03 - 05)));
        assert_eq!(date("5/3/2026", &f), Some(date!(2026 - 03 - 05)));
        assert_eq!(date("2026-03-05", &f), Some(date!(2026 - 03 - 05)));
        assert_eq!(date("05/03/2026 00:00:00", &f), Some(date!(2026 - 03 - 05)));
        assert_eq!(date("2026-03-05T09:00:00+01:00", &f), Some(date!(2026 - 03 - 05)));
        assert_eq!(date("31/02/2026", &f), None);
        assert_eq!(date("05.03.2026", &f), None);
        assert!(DateFormat::parse("qq/mm").is_err());
    }

    #[test]
    fn times_with_colon_or_dot() {
        assert_eq!(super::time("09:30"), Some(time!(09:30)));
        assert_eq!(super::time("9.30"), Some(time!(09:30)));
        assert_eq!(super::time("09:30:15"), Some(time!(09:30:15)));
        assert_eq!(super::time("2026-03-05T09:30:00+01:00"), Some(time!(09:30)));
        assert_eq!(super::time("2026-03-05T09:30:00-05:00"), Some(time!(09:30)));
        assert_eq!(super::time("9:3"), None);
        assert_eq!(super::time("25:00"), None);
        assert_eq!(super::time("nove"), None);
    }

    #[test]
    fn decimals_with_comma_or_point() {
        assert_eq!(hundredths("12,5", Decimal::Comma), Some(1250));
        assert_eq!(hundredths("12.5", Decimal::Comma), Some(1250));
        assert_eq!(hundredths("1.234,56", Decimal::Comma), Some(123456));
        assert_eq!(hundredths("1,234.56", Decimal::Point), Some(123456));
        assert_eq!(hundredths("0,125", Decimal::Comma), Some(13));
        assert_eq!(hundredths("7", Decimal::Point), Some(700));
        assert_eq!(hundredths("-3", Decimal::Point), None);
        assert_eq!(hundredths("dodici", Decimal::Point), None);
        assert_eq!(decimal_string(1250), "12.50");
    }

    #[test]
    fn coordinates_in_range() {
        assert_eq!(coordinates_text("45.4642, 9.19"), Some((45.4642, 9.19)));
        assert_eq!(coordinates_text("45,4642; 9,19"), Some((45.4642, 9.19)));
        assert_eq!(coordinates_text("95,9"), None);
    }
}
