//! Durations as flow files write them: `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1m30s"`.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing was written.
    #[error("empty duration; write it like \"500ms\", \"10s\" or \"5m\"")]
    Empty,
    /// Longer than [`MAX`].
    #[error("duration `{0}` is longer than the longest weft takes, 365d")]
    TooLong(String),
    /// A number without a unit, or an unknown unit.
    #[error(
        "bad duration `{0}`: use a number and a unit (ms, s, m, h, d), like \"500ms\" or \"1m30s\""
    )]
    Malformed(String),
}

/// The longest duration a flow may give (a timeout, a retry delay, a wait): 365 days. Longer
/// ones are refused, so that no plan waits practically forever by a typo.
pub const MAX: Duration = Duration::from_secs(365 * 86_400);

/// Parses `"500ms"`, `"10s"`, `"5m"`, `"2h"`, `"1d"` and concatenations such as `"1m30s"`, up to
/// [`MAX`].
pub fn parse(text: &str) -> Result<Duration, Error> {
    let s = text.trim();
    if s.is_empty() {
        return Err(Error::Empty);
    }
    let bad = || Error::Malformed(text.to_string());
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_secs = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * unit_secs)
            .map_err(|_| Error::TooLong(text.to_string()))?;
        if total > MAX {
            return Err(Error::TooLong(text.to_string()));
        }
    }
    Ok(total)
}

/// Formats a duration compactly for people: `250ms`, `1.5s`, `2m05s`, `1h02m`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// Serde adapter that stores a duration as whole milliseconds.
pub mod as_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Serializes as milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Deserializes from milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Serde adapter for an optional duration stored as milliseconds.
pub mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Serializes as milliseconds or null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes from milliseconds or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_past_a_year_are_refused() {
        assert_eq!(parse("365d"), Ok(MAX));
        for long in ["366d", "9999999999999h", "1e300s"] {
            assert!(
                matches!(
                    parse(long),
                    Err(Error::TooLong(_)) | Err(Error::Malformed(_))
                ),
                "{long}"
            );
        }
        assert!(matches!(parse("9999999999999h"), Err(Error::TooLong(_))));
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        assert_eq!(parse(""), Err(Error::Empty));
        for bad in ["10", "10x", "s", "ten seconds", "-1s", "1..2s"] {
            assert!(matches!(parse(bad), Err(Error::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_secs(125)), "2m05s");
    }
}
