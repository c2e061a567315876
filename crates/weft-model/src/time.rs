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

/// Parses a moment: RFC 3339 with `Z` or an offset (`2026-11-23T20:30:00+02:00`), a civil time
/// in a zone of the timezone database (`2026-11-23T20:30[Europe/Berlin]` or `"2026-11-23 20:30
/// Europe/Berlin"`), or a civil time with no zone, taken as UTC (`"2026-11-23 18:30"`). A civil
/// time that a daylight-saving change skips or repeats is read as the zone's rules say (the
/// later of a gap, the earlier of a fold).
pub fn parse_time(text: &str) -> Result<Millis, String> {
    use jiff::{civil::DateTime, tz::TimeZone, Timestamp, Zoned};
    let t = text.trim();
    let bad = |why: &dyn std::fmt::Display| {
        format!(
            "`{text}` is not a time ({why}); write it like 2026-11-23T18:30:00Z, 2026-11-23T20:30:00+02:00, \"2026-11-23 20:30 Europe/Berlin\" or \"2026-11-23 18:30\" (UTC)"
        )
    };
    let millis = |ts: Timestamp| ts.as_millisecond();
    if t.ends_with(']') {
        let z: Zoned = t.parse().map_err(|e| bad(&e))?;
        return Ok(millis(z.timestamp()));
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(millis(ts));
    }
    let (civil, zone) = match t.rsplit_once(' ') {
        Some((civil, zone)) if zone.contains('/') || zone == "UTC" => (civil.trim(), Some(zone)),
        _ => (t, None),
    };
    if !civil.contains(':') {
        return Err(bad(&"it has no time of day"));
    }
    let dt: DateTime = civil.parse().map_err(|e| bad(&e))?;
    let tz = match zone {
        Some(name) => TimeZone::get(name).map_err(|e| bad(&e))?,
        None => TimeZone::UTC,
    };
    let z = dt.to_zoned(tz).map_err(|e| bad(&e))?;
    Ok(millis(z.timestamp()))
}

/// Serde for a timestamp as an RFC 3339 string; reads an RFC 3339 string or (as older
/// versions wrote) milliseconds since the epoch.
pub mod rfc3339 {
    use super::{format_rfc3339, parse_time, Millis};
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
            Either::Text(t) => parse_time(&t).map_err(serde::de::Error::custom),
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
            assert_eq!(parse_time(&format_millis(ms)), Ok(ms));
        }
        assert_eq!(parse_time("2026-11-18T11:06:40Z"), Ok(1_795_000_000_000));
        assert_eq!(
            parse_time("2026-11-18 11:06"),
            Ok(1_795_000_000_000 - 40_000)
        );
        for bad in [
            "tomorrow",
            "2026-02-30 10:00",
            "2026-11-18",
            "2026-13-01 00:00",
            "18:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets_and_zones_are_read_as_the_timezone_database_says() {
        let utc = parse_time("2030-01-01T08:00:00Z").expect("utc");
        assert_eq!(parse_time("2030-01-01T10:00:00+02:00"), Ok(utc));
        assert_eq!(parse_time("2030-01-01T09:00[Europe/Berlin]"), Ok(utc));
        assert_eq!(parse_time("2030-01-01 09:00 Europe/Berlin"), Ok(utc));
        assert_eq!(parse_time("2030-01-01 08:00 UTC"), Ok(utc));
        // Summer time: Berlin is two hours ahead.
        assert_eq!(
            parse_time("2030-07-01 10:00 Europe/Berlin"),
            parse_time("2030-07-01T08:00:00Z")
        );
        // 02:30 on the day clocks go forward does not exist: read as after the gap (03:30).
        assert_eq!(
            parse_time("2030-03-31 02:30 Europe/Berlin"),
            parse_time("2030-03-31T01:30:00Z")
        );
        // 02:30 on the day clocks go back happens twice: the first.
        assert_eq!(
            parse_time("2030-10-27 02:30 Europe/Berlin"),
            parse_time("2030-10-27T00:30:00Z")
        );
        let e = parse_time("2030-01-01 09:00 Mars/Olympus").unwrap_err();
        assert!(e.contains("Mars/Olympus"), "{e}");
    }

    #[test]
    fn rfc3339_round_trips_with_milliseconds() {
        for ms in [0, 1_795_000_000_123, 951_782_400_999] {
            assert_eq!(parse_time(&format_rfc3339(ms)), Ok(ms));
        }
        assert_eq!(
            format_rfc3339(1_795_000_000_123),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(parse_time("2026-11-18T11:06:40.5Z"), Ok(1_795_000_000_500));
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_millis(0), "1970-01-01 00:00:00");
        assert_eq!(format_millis(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(format_millis(951_782_400_000), "2000-02-29 00:00:00");
    }
}
