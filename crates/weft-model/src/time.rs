//! Wall-clock timestamps as milliseconds since the Unix epoch, and their display.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

/// The current wall-clock time.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `at` plus `d`, saturating at the end of time instead of overflowing.
pub fn after(at: Millis, d: std::time::Duration) -> Millis {
    at.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Formats a timestamp as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_millis(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Formats a timestamp as RFC 3339 in UTC with milliseconds: `2026-11-18T11:06:40.123Z`.
pub fn format_rfc3339(ms: Millis) -> String {
    let mut s = format_millis(ms);
    s.replace_range(10..11, "T");
    format!("{s}.{:03}Z", ms.rem_euclid(1000))
}

/// Parses a UTC time: `YYYY-MM-DD HH:MM[:SS]` or RFC 3339's `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
pub fn parse_utc(text: &str) -> Result<Millis, String> {
    let bad = || {
        format!("`{text}` is not a UTC time; write it like 2026-11-23T18:30:00Z or \"2026-11-23 18:30\"")
    };
    let t = text.trim().trim_end_matches('Z');
    // Fractional seconds: milliseconds kept, the rest dropped.
    let (t, millis) = match t.split_once('.') {
        Some((whole, frac)) if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            (whole, digits.parse::<i64>().map_err(|_| bad())?)
        }
        Some(_) => return Err(bad()),
        None => (t, 0),
    };
    let (date, clock) = t.split_once(['T', ' ']).ok_or_else(bad)?;
    let num = |s: &str, lo: i64, hi: i64| -> Result<i64, String> {
        let v: i64 = s.parse().map_err(|_| bad())?;
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(bad())
        }
    };
    let d: Vec<&str> = date.split('-').collect();
    let c: Vec<&str> = clock.split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&c.len()) || d[0].len() != 4 {
        return Err(bad());
    }
    let (y, m, day) = (num(d[0], 1970, 9999)?, num(d[1], 1, 12)?, num(d[2], 1, 31)?);
    let (h, min) = (num(c[0], 0, 23)?, num(c[1], 0, 59)?);
    let sec = if c.len() == 3 { num(c[2], 0, 60)? } else { 0 };
    // Howard Hinnant's days-from-civil.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400) + h * 3600 + min * 60 + sec) * 1000;
    if format_millis(ms).get(..10) != Some(date) {
        return Err(bad()); // e.g. February 30th
    }
    Ok(ms + millis)
}

/// Serde for a timestamp as an RFC 3339 string; reads an RFC 3339 string or (as older
/// versions wrote) milliseconds since the epoch.
pub mod rfc3339 {
    use super::{format_rfc3339, parse_utc, Millis};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `ms` as RFC 3339.
    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*ms))
    }

    /// Reads RFC 3339 or milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Millis(Millis),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Millis(ms) => Ok(ms),
            Either::Text(t) => parse_utc(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// [`rfc3339`] for an optional timestamp.
pub mod opt_rfc3339 {
    use super::Millis;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `ms` as RFC 3339, or null.
    pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => super::rfc3339::serialize(ms, s),
            None => s.serialize_none(),
        }
    }

    /// Reads RFC 3339, milliseconds, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::rfc3339")] Millis);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_formats() {
        for ms in [0, 951_782_400_000, 1_795_000_000_000] {
            assert_eq!(parse_utc(&format_millis(ms)), Ok(ms));
        }
        assert_eq!(parse_utc("2026-11-18T11:06:40Z"), Ok(1_795_000_000_000));
        assert_eq!(
            parse_utc("2026-11-18 11:06"),
            Ok(1_795_000_000_000 - 40_000)
        );
        for bad in [
            "tomorrow",
            "2026-02-30 10:00",
            "2026-11-18",
            "2026-13-01 00:00",
            "18:00",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_round_trips_with_milliseconds() {
        for ms in [0, 1_795_000_000_123, 951_782_400_999] {
            assert_eq!(parse_utc(&format_rfc3339(ms)), Ok(ms));
        }
        assert_eq!(
            format_rfc3339(1_795_000_000_123),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(parse_utc("2026-11-18T11:06:40.5Z"), Ok(1_795_000_000_500));
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_millis(0), "1970-01-01 00:00:00");
        assert_eq!(format_millis(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(format_millis(951_782_400_000), "2000-02-29 00:00:00");
    }
}
