//! One record's program output → a checked [`Delivery`] or every reason it is not one.

use jaq_json::Val;
use time::Date;

use crate::checks::hhmm;
use crate::mapping::{Decimal, FIELDS};
use crate::{cf, parse, Checks, Delivery, Mapping, RowError, RowOutcome, SERVICES};

/// Where a delivery field came from in the file, to name it in errors.
pub(crate) trait Locate {
    /// The file's column (CSV header or JSON pointer) for `field`; `value` is what the program
    /// returned for it, used to find the column when the mapping does not say.
    fn column(&self, field: &str, value: Option<&str>) -> Option<String>;
    /// The file's own value in the column the mapping names for `field`.
    fn raw(&self, field: &str) -> Option<String>;
}

/// Text of a scalar value; `None` for null or blank. Arrays and objects are `Err`.
fn text(v: &Val) -> Result<Option<String>, ()> {
    let s = match v {
        Val::Null => return Ok(None),
        Val::Bool(b) => b.to_string(),
        Val::Num(n) => n.to_string(),
        Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
        Val::Arr(_) | Val::Obj(_) => return Err(()),
    };
    let s = s.trim();
    Ok((!s.is_empty()).then(|| s.to_string()))
}

fn number(v: &Val) -> Option<f64> {
    match v {
        Val::Num(n) => n.to_string().parse().ok(),
        Val::TStr(b) => String::from_utf8_lossy(b).trim().replace(',', ".").parse().ok(),
        _ => None,
    }
}

/// `[lat, lon]`, `{lat, lon}` / `{latitude, longitude}`, or `"lat,lon"`.
fn coordinates(v: &Val) -> Result<Option<(f64, f64)>, ()> {
    match v {
        Val::Null => Ok(None),
        Val::Arr(a) if a.len() == 2 => {
            parse::coordinates(number(&a[0]).ok_or(())?, number(&a[1]).ok_or(())?).map(Some).ok_or(())
        }
        Val::Obj(o) => {
            let get = |names: &[&str]| {
                names.iter().find_map(|n| o.get(&Val::utf8_str(n.to_string())).and_then(number))
            };
            match (get(&["lat", "latitude", "latitudine"]), get(&["lon", "lng", "longitude", "longitudine"]))
            {
                (Some(lat), Some(lon)) => parse::coordinates(lat, lon).map(Some).ok_or(()),
                (None, None) => Ok(None),
                _ => Err(()),
            }
        }
        other => match text(other)? {
            None => Ok(None),
            Some(s) => parse::coordinates_text(&s).map(Some).ok_or(()),
        },
    }
}

fn minutes(t: time::Time) -> u32 {
    u32::from(t.hour()) * 60 + u32::from(t.minute()) + u32::from(t.second() >= 30)
}

/// Position of a delivery field in [`FIELDS`].
fn slot(field: &str) -> Option<usize> {
    FIELDS.iter().position(|f| *f == field)
}

/// Checks one record's program output and, when nothing is wrong, records it in `checks`.
pub(crate) fn build(
    mapping: &Mapping,
    checks: &Checks,
    output: Result<Val, String>,
    at: &dyn Locate,
    row: u64,
) -> RowOutcome {
    let obj = match output {
        Ok(Val::Obj(o)) => o,
        Ok(_) => {
            return RowOutcome::Rejected(vec![RowError::new(
                None,
                "mapping",
                "the mapping program did not return an object of delivery fields",
            )])
        }
        Err(message) => return RowOutcome::Rejected(vec![RowError::new(None, "mapping", message)]),
    };
    let mut errors = Vec::new();
    // By position in FIELDS: a row looks its fields up a few dozen times.
    let mut fields: Vec<Option<&Val>> = vec![None; FIELDS.len()];
    for (k, v) in obj.iter() {
        let key = match text(k) {
            Ok(Some(k)) => k,
            _ => continue,
        };
        if let Some(i) = slot(&key) {
            fields[i] = Some(v);
        } else {
            errors.push(RowError::new(
                None,
                "mapping",
                format!("the mapping program returned '{key}', which is not a delivery field"),
            ));
        }
    }
    let get = |f: &str| slot(f).and_then(|i| fields[i]).unwrap_or(&Val::Null);
    let col = |f: &str, v: Option<&str>| at.column(f, v);

    // Scalars as text; an array or object where text is expected is the mapping's mistake.
    let mut texts: Vec<Option<String>> = vec![None; FIELDS.len()];
    for (i, f) in FIELDS.iter().enumerate().filter(|(_, f)| !matches!(**f, "checkin" | "checkout")) {
        match text(fields[i].unwrap_or(&Val::Null)) {
            // A NUL or another control character but tab and line breaks cannot be carried (see
            // `text::Unfit`), and no cell means one: the row is refused, not its whole group.
            Ok(Some(t)) => match csi_gateway_sdk::text::unfit(&t) {
                None => texts[i] = Some(t),
                Some(u) => {
                    let what = match u {
                        csi_gateway_sdk::text::Unfit::Nul => "a NUL character (U+0000)",
                        csi_gateway_sdk::text::Unfit::Control => {
                            "a control character (U+0001–U+001F other than tab and line breaks)"
                        }
                    };
                    errors.push(RowError::new(col(f, None), u.rule(), format!("{f}: the text holds {what}")))
                }
            },
            Ok(None) => {}
            Err(()) => {
                errors.push(RowError::new(col(f, None), "mapping", format!("{f}: expected a single value")))
            }
        }
    }
    let t = |f: &str| slot(f).and_then(|i| texts[i].clone());
    let required = |errors: &mut Vec<RowError>, f: &str, what: &str| {
        errors.push(RowError::new(col(f, None), "required", format!("{what} is missing")));
    };

    let cooperativa = t("cooperativa").or_else(|| mapping.cooperativa.clone());
    if cooperativa.is_none() {
        required(&mut errors, "cooperativa", "the cooperative code");
    }
    let operatore = t("operatore");
    if operatore.is_none() {
        required(&mut errors, "operatore", "the operator");
    }

    let pseudonimo = t("beneficiario_pseudonimo");
    let mut codice_fiscale = None;
    if let Some(raw) = t("beneficiario_codice_fiscale") {
        match cf::check(&raw) {
            Ok(cf) => codice_fiscale = Some(cf),
            Err(why) => errors.push(RowError::new(
                col("beneficiario_codice_fiscale", Some(&raw)),
                "codice_fiscale",
                // Not the value: a codice fiscale with a typo is still someone's, and the report
                // is kept and read by others; the row and column say where it is.
                format!("not a valid codice fiscale: {why}"),
            )),
        }
    } else if pseudonimo.is_none() {
        let c = col("beneficiario_codice_fiscale", None).or_else(|| col("beneficiario_pseudonimo", None));
        errors.push(RowError::new(c, "required", "the beneficiary (codice fiscale or pseudonym) is missing"));
    }

    let tipo_servizio = match t("tipo_servizio") {
        Some(code) => {
            let upper = code.to_ascii_uppercase();
            if SERVICES.contains(&upper.as_str()) {
                Some(upper)
            } else if mapping.extra_services.contains(&code) {
                Some(code)
            } else {
                errors.push(RowError::new(
                    col("tipo_servizio", Some(&code)),
                    "unknown_service",
                    format!(
                        "service '{code}' is not one of {} nor in the mapping's extra_services",
                        SERVICES.join(" ")
                    ),
                ));
                None
            }
        }
        None => {
            match at.raw("tipo_servizio") {
                // The code table had no entry for the file's code.
                Some(code) => errors.push(RowError::new(
                    col("tipo_servizio", None),
                    "unknown_service",
                    format!("service code '{code}' is not in the mapping's code table"),
                )),
                None => required(&mut errors, "tipo_servizio", "the service type"),
            }
            None
        }
    };

    let data = match t("data") {
        Some(s) => match parse::date(&s, &mapping.date_formats) {
            Some(d) => Some(d),
            None => {
                let expected: Vec<&str> = mapping.date_formats.iter().map(|f| f.as_str()).collect();
                errors.push(RowError::new(
                    col("data", Some(&s)),
                    "date_format",
                    format!("'{s}' is not a date ({})", expected.join(" or ")),
                ));
                None
            }
        },
        None => {
            required(&mut errors, "data", "the date");
            None
        }
    };
    if let Some(d) = data {
        if d > checks.today {
            errors.push(RowError::new(
                col("data", None),
                "future_date",
                format!("{} is in the future (today is {})", iso(d), iso(checks.today)),
            ));
        }
    }

    let time_field = |errors: &mut Vec<RowError>, f: &str| -> (Option<time::Time>, bool) {
        match t(f) {
            Some(s) => match parse::time(&s) {
                Some(x) => (Some(x), true),
                None => {
                    errors.push(RowError::new(
                        col(f, Some(&s)),
                        "time_format",
                        format!("'{s}' is not a time of day (hh:mm or hh.mm)"),
                    ));
                    (None, false)
                }
            },
            None => (None, true),
        }
    };
    let (ora_inizio, start_ok) = time_field(&mut errors, "ora_inizio");
    let (ora_fine, end_ok) = time_field(&mut errors, "ora_fine");

    let number_field = |errors: &mut Vec<RowError>, f: &str, decimal: Decimal| -> Option<u64> {
        let s = t(f)?;
        let h = parse::hundredths(&s, decimal);
        if h.is_none() {
            errors.push(RowError::new(col(f, Some(&s)), "number_format", format!("'{s}' is not a number")));
        }
        h
    };
    // JSON numbers print with a point whatever the mapping says about text.
    let decimal_of = |f: &str| if matches!(get(f), Val::Num(_)) { Decimal::Point } else { mapping.decimal };
    // Minutes in u128: a cell's hundredths fill a u64, so in u64 a crafted duration could wrap
    // round into the 1 minute – 24 hours range checked below; here it is rejected at its true size.
    let durata_minuti = number_field(&mut errors, "durata_minuti", decimal_of("durata_minuti"))
        .map(|h| (u128::from(h) + 50) / 100);
    let durata_ore = number_field(&mut errors, "durata_ore", decimal_of("durata_ore"))
        .map(|h| (u128::from(h) * 60 + 50) / 100);
    let km = number_field(&mut errors, "km", decimal_of("km")).map(parse::decimal_string);

    let mut interval = None;
    let durata: Option<u128> = match (ora_inizio, ora_fine) {
        (Some(a), Some(b)) => {
            let (a, b) = (minutes(a), minutes(b));
            if b <= a {
                errors.push(RowError::new(
                    col("ora_fine", None),
                    "end_before_start",
                    format!("the end {} is not after the start {}", hhmm(b), hhmm(a)),
                ));
                None
            } else {
                interval = Some((a, b));
                Some(u128::from(b - a))
            }
        }
        _ => {
            let d = durata_minuti.or(durata_ore);
            if d.is_none() && start_ok && end_ok {
                let f = if ora_inizio.is_none() { "ora_inizio" } else { "ora_fine" };
                errors.push(RowError::new(
                    col(f, None),
                    "required",
                    "start and end times, or a duration, are missing",
                ));
            }
            if let (Some(a), Some(d)) = (ora_inizio, d) {
                let a = minutes(a);
                interval = Some((a, (u128::from(a) + d).min(24 * 60) as u32));
            }
            d
        }
    };
    if let Some(d) = durata {
        if !(1..=24 * 60).contains(&d) {
            // Name the cell the duration came from: the end time, or whichever duration column.
            let f = match (ora_inizio, ora_fine, durata_minuti) {
                (Some(_), Some(_), _) => "ora_fine",
                (_, _, Some(_)) => "durata_minuti",
                _ => "durata_ore",
            };
            errors.push(RowError::new(
                col(f, t(f).as_deref()),
                "duration_range",
                format!("a duration of {d} minutes is outside 1 minute – 24 hours"),
            ));
        }
    }

    let gps = |errors: &mut Vec<RowError>, f: &str| match coordinates(get(f)) {
        Ok(c) => c,
        Err(()) => {
            errors.push(RowError::new(
                col(f, None),
                "coordinates",
                format!("{f}: expected latitude and longitude (e.g. \"45.4642,9.1900\")"),
            ));
            None
        }
    };
    let checkin = gps(&mut errors, "checkin");
    let checkout = gps(&mut errors, "checkout");

    // Overlaps are looked for even on a row with other problems, so all of them are listed.
    let (Some(cooperativa), Some(operatore), Some(tipo_servizio), Some(data), Some(durata)) =
        (cooperativa, operatore, tipo_servizio, data, durata)
    else {
        return RowOutcome::Rejected(errors);
    };
    let delivery = Delivery {
        cooperativa,
        id_progetto: t("id_progetto"),
        operatore,
        beneficiario_pseudonimo: pseudonimo,
        beneficiario_codice_fiscale: codice_fiscale,
        tipo_servizio,
        data,
        ora_inizio,
        ora_fine,
        durata_minuti: u32::try_from(durata).unwrap_or(u32::MAX),
        km,
        note: t("note"),
        checkin,
        checkout,
        id_record: t("id_record"),
    };
    let key = delivery.idempotency_key();
    if let Some(span) = interval {
        if let Some(o) = checks.overlap(&delivery.cooperativa, &delivery.operatore, data, span, &key) {
            errors.push(RowError::new(
                col("ora_inizio", None),
                "overlap",
                format!(
                    "operator {} already has a delivery on {} from {} to {} (row {})",
                    delivery.operatore,
                    iso(data),
                    hhmm(o.start),
                    hhmm(o.end),
                    o.row
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return RowOutcome::Rejected(errors);
    }
    if let Some(span) = interval {
        checks.record(&delivery.cooperativa, &delivery.operatore, data, span, row, &key);
    }
    RowOutcome::Delivery(delivery)
}

fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
