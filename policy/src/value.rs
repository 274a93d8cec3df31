//! Typed readings of literals: xsd:dateTime, xsd:duration, numbers.

use chrono::{DateTime, Months, NaiveDate, NaiveDateTime, TimeDelta, Utc};

/// Parses an xsd:dateTime (or xsd:date, as its first instant). Seconds may be omitted
/// (`2023-12-31T06:00Z`, as in the DSP examples); no time zone means UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(naive, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The day of an xsd:date literal (`2024-02-12`, optionally with `Z`): a dateTime compared
/// with a date is compared by its UTC day ("eq 2024-02-12" holds all that day).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s.strip_suffix('Z').unwrap_or(s), "%Y-%m-%d").ok()
}

/// An xsd:duration: calendar months plus an exact time span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    /// Years * 12 + months.
    pub months: u32,
    /// Days, hours, minutes and seconds.
    pub exact: TimeDelta,
}

impl Duration {
    /// `start + self`, or `None` on overflow.
    pub fn after(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        start
            .checked_add_months(Months::new(self.months))?
            .checked_add_signed(self.exact)
    }
}

/// Parses a non-negative xsd:duration such as `P30D`, `PT1H30M`, `P1Y2M3DT4H5M6.5S`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let rest = s.trim().strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    if date.is_empty() && time.is_none() {
        return None;
    }
    let mut months: u64 = 0;
    let mut exact = TimeDelta::zero();
    for (n, unit) in components(date)? {
        match unit {
            'Y' => months = months.checked_add(whole(n)?.checked_mul(12)?)?,
            'M' => months = months.checked_add(whole(n)?)?,
            'D' => exact = exact.checked_add(&TimeDelta::try_days(whole(n)? as i64)?)?,
            _ => return None,
        }
    }
    for (n, unit) in time.map(components).unwrap_or(Some(Vec::new()))? {
        let secs: f64 = match unit {
            'H' => n * 3600.0,
            'M' => n * 60.0,
            'S' => n,
            _ => return None,
        };
        if !(0.0..1e12).contains(&secs) {
            return None;
        }
        exact = exact.checked_add(&TimeDelta::milliseconds((secs * 1000.0).round() as i64))?;
    }
    Some(Duration {
        months: u32::try_from(months).ok()?,
        exact,
    })
}

fn whole(n: f64) -> Option<u64> {
    (n.fract() == 0.0 && (0.0..1e9).contains(&n)).then_some(n as u64)
}

/// Splits `1Y2M` into `[(1, 'Y'), (2, 'M')]`.
fn components(s: &str) -> Option<Vec<(f64, char)>> {
    let mut out = Vec::new();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
        } else {
            if num.is_empty() {
                return None;
            }
            out.push((num.parse().ok()?, c));
            num.clear();
        }
    }
    num.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_in_the_forms_policies_use() {
        let want = parse_datetime("2023-12-31T06:00:00Z").unwrap();
        assert_eq!(parse_datetime("2023-12-31T06:00Z"), Some(want));
        assert_eq!(parse_datetime("2023-12-31T07:00+01:00"), Some(want));
        assert_eq!(parse_datetime("2023-12-31T06:00:00"), Some(want));
        assert!(parse_datetime("2023-12-31").is_some());
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn durations() {
        let d = parse_duration("P1Y2M3DT4H5M6S").unwrap();
        assert_eq!(d.months, 14);
        assert_eq!(
            d.exact,
            TimeDelta::seconds(3 * 86400 + 4 * 3600 + 5 * 60 + 6)
        );
        assert_eq!(
            parse_duration("PT1.5S").unwrap().exact,
            TimeDelta::milliseconds(1500)
        );
        for bad in ["P", "PT", "30D", "P-1D", "P1S", "PT1D", "P1.5Y"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        let start = parse_datetime("2024-01-31T00:00:00Z").unwrap();
        assert_eq!(
            parse_duration("P1M").unwrap().after(start),
            parse_datetime("2024-02-29T00:00:00Z")
        );
    }
}
