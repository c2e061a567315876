//! Cron expressions and their fire times in a time zone. Five fields (minute, hour, day of
//! month, month, day of week) as in Vixie cron, or six with seconds first; `*`, lists, ranges,
//! steps (`*/15`, `1-30/5`), month and day names (`jan`, `mon`), `7` for Sunday, and the
//! aliases `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`. When both day fields are
//! restricted a day matches either (Vixie's rule).
//!
//! Fire times are civil times in the schedule's zone, read with the timezone database's rules:
//! a time that a daylight-saving change skips fires at the same civil time shifted past the
//! gap (02:30 → 03:30), and one it repeats fires once, at its first occurrence.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl std::str::FromStr for Cron {
    type Err = String;

    fn from_str(text: &str) -> Result<Cron, String> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "cron `{text}` has {n} fields; it needs 5 (minute hour day month weekday) or 6 (seconds first)"
                ))
            }
        };
        let field = |what: &str, s: &str, lo: u32, hi: u32, names: &[&str]| {
            parse_field(s, lo, hi, names)
                .map_err(|why| format!("cron `{text}`: the {what} field `{s}` {why}"))
        };
        let mut weekdays = field("weekday", rest[4], 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7); // 7 is Sunday too
        }
        Ok(Cron {
            text: text.trim().to_string(),
            seconds: field("seconds", sec, 0, 59, &[])?,
            minutes: field("minute", rest[0], 0, 59, &[])?,
            hours: field("hour", rest[1], 0, 23, &[])?,
            days: field("day", rest[2], 1, 31, &[])?,
            months: field("month", rest[3], 1, 12, &MONTHS)?,
            weekdays,
            any_day: rest[2] == "*" || rest[2] == "?",
            any_weekday: rest[4] == "*" || rest[4] == "?",
        })
    }
}

/// A field as a bit set of the values it allows.
fn parse_field(text: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Names count from the field's first value (months from 1, weekdays from 0).
            return Ok(i as u32 + lo);
        }
        let v: u32 = s.parse().map_err(|_| format!("has `{s}`, not a number"))?;
        if v < lo || v > hi {
            return Err(format!("has {v}, outside {lo}-{hi}"));
        }
        Ok(v)
    };
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("has step `{s}`"))?;
                if step == 0 {
                    return Err("has a step of 0".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" | "?" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(format!("has the range {from}-{to}, which runs backwards"));
        }
        let mut v = from;
        while v <= to {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn has(set: u64, v: i8) -> bool {
    v >= 0 && set & (1 << v) != 0
}

impl Cron {
    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = has(self.days, d.day());
        let dow = has(self.weekdays, d.weekday().to_sunday_zero_offset());
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first fire time strictly after `after` (milliseconds since the epoch), in `zone`;
    /// none within the next eight years (an expression like `0 0 30 2 *`).
    pub fn next_after(&self, after: i64, zone: &TimeZone) -> Option<i64> {
        let start = Timestamp::from_millisecond(after).ok()?;
        let local = start.to_zoned(zone.clone()).datetime();
        // The next whole second after `after`, in civil time.
        let mut day = local.date();
        let mut from = Some(local.time().with().subsec_nanosecond(0).build().ok()?);
        let last = day.checked_add(8.years()).ok()?;
        while day <= last {
            if has(self.months, day.month()) && self.day_matches(day) {
                for t in self.times_of_day(from) {
                    let civil = DateTime::from_parts(day, t);
                    let at = zone
                        .to_ambiguous_zoned(civil)
                        .compatible()
                        .ok()?
                        .timestamp();
                    if at.as_millisecond() > after {
                        return Some(at.as_millisecond());
                    }
                }
            }
            day = day.tomorrow().ok()?;
            from = None;
        }
        None
    }

    /// The times of a day the expression allows, in order, after `from` (all when none).
    fn times_of_day(&self, from: Option<Time>) -> impl Iterator<Item = Time> + '_ {
        (0..24i8)
            .filter(move |h| has(self.hours, *h))
            .flat_map(move |h| {
                (0..60i8)
                    .filter(move |m| has(self.minutes, *m))
                    .flat_map(move |m| {
                        (0..60i8)
                            .filter(move |s| has(self.seconds, *s))
                            .map(move |s| Time::constant(h, m, s, 0))
                    })
            })
            .filter(move |t| from.is_none_or(|f| *t > f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> i64 {
        crate::time::parse_time(text).expect("a time")
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("the timezone database has Berlin")
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let c: Cron = "*/15 9-17 * * mon-fri".parse().expect("parses");
        let at = utc("2030-01-04T16:50:00Z"); // a Friday
        assert_eq!(
            c.next_after(at, &TimeZone::UTC),
            Some(utc("2030-01-04T17:00:00Z"))
        );
        let at = utc("2030-01-04T17:45:00Z");
        assert_eq!(
            c.next_after(at, &TimeZone::UTC),
            Some(utc("2030-01-07T09:00:00Z")),
            "Monday"
        );
        let c: Cron = "0 12 1,15 feb *".parse().expect("parses");
        assert_eq!(
            c.next_after(utc("2030-01-20T00:00:00Z"), &TimeZone::UTC),
            Some(utc("2030-02-01T12:00:00Z"))
        );
        let sunday: Cron = "0 0 * * 7".parse().expect("7 is Sunday");
        assert_eq!(
            sunday.next_after(utc("2030-01-01T00:00:00Z"), &TimeZone::UTC),
            Some(utc("2030-01-06T00:00:00Z"))
        );
        let every_second: Cron = "* * * * * *".parse().expect("six fields");
        assert_eq!(
            every_second.next_after(utc("2030-01-01T00:00:00.500Z"), &TimeZone::UTC),
            Some(utc("2030-01-01T00:00:01Z"))
        );
        let daily: Cron = "@daily".parse().expect("alias");
        assert_eq!(
            daily.next_after(utc("2030-01-01T00:00:00Z"), &TimeZone::UTC),
            Some(utc("2030-01-02T00:00:00Z"))
        );
        // Either day field matches when both are given (Vixie).
        let c: Cron = "0 0 13 * fri".parse().expect("parses");
        assert_eq!(
            c.next_after(utc("2030-01-01T00:00:00Z"), &TimeZone::UTC),
            Some(utc("2030-01-04T00:00:00Z"))
        );
        let never: Cron = "0 0 30 2 *".parse().expect("parses");
        assert_eq!(
            never.next_after(utc("2030-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn bad_expressions_say_which_field() {
        for (text, says) in [
            ("* * *", "has 3 fields"),
            ("61 * * * *", "minute field `61` has 61, outside 0-59"),
            ("* 5-2 * * *", "runs backwards"),
            ("*/0 * * * *", "step of 0"),
            ("* * * foo *", "month field `foo`"),
        ] {
            let e = text.parse::<Cron>().unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    /// A year of a daily 02:30 in Berlin: 365 fires, one each day; on the day clocks go
    /// forward (no 02:30) it fires at 03:30, on the day they go back (02:30 twice) once.
    #[test]
    fn a_year_of_daily_ticks_across_two_dst_changes() {
        let c: Cron = "30 2 * * *".parse().expect("parses");
        let tz = berlin();
        let mut at = utc("2029-12-31T23:00:00Z");
        let mut fires = Vec::new();
        while let Some(next) = c.next_after(at, &tz) {
            if next >= utc("2030-12-31T23:00:00Z") {
                break;
            }
            fires.push(next);
            at = next;
        }
        assert_eq!(fires.len(), 365);
        let offset = |ms: i64| {
            let z = Timestamp::from_millisecond(ms)
                .expect("ts")
                .to_zoned(tz.clone());
            (z.date(), z.time().hour(), z.time().minute())
        };
        assert!(
            fires.contains(&utc("2030-03-31T01:30:00Z")),
            "03:30 CEST, past the gap"
        );
        assert!(
            fires.contains(&utc("2030-10-27T00:30:00Z")),
            "the first 02:30"
        );
        assert!(
            !fires.contains(&utc("2030-10-27T01:30:00Z")),
            "not the second"
        );
        let days: std::collections::BTreeSet<_> = fires.iter().map(|&f| offset(f).0).collect();
        assert_eq!(days.len(), 365, "one a day");
    }

    /// Hourly across the autumn change: the repeated hour fires once per civil time.
    #[test]
    fn hourly_across_the_autumn_change() {
        let c: Cron = "0 * * * *".parse().expect("parses");
        let tz = berlin();
        let mut at = utc("2030-10-26T22:00:00Z"); // 00:00 CEST on the 27th
        let mut fires = Vec::new();
        for _ in 0..4 {
            let next = c.next_after(at, &tz).expect("a fire");
            fires.push(next);
            at = next;
        }
        // 01:00 CEST, 02:00 CEST, 03:00 CET (02:00 CET is the same civil time: once).
        assert_eq!(
            fires,
            vec![
                utc("2030-10-26T23:00:00Z"),
                utc("2030-10-27T00:00:00Z"),
                utc("2030-10-27T02:00:00Z"),
                utc("2030-10-27T03:00:00Z"),
            ]
        );
    }
}
