//! Schedules' rules: which of a schedule's ticks to fire when a node looks at it, after
//! whatever downtime (`CatchUp`), and what a tick does while the schedule's previous plan still
//! runs (`Overlap`). Pure: the stores apply it inside the transaction that fires the ticks.

use crate::cron::Cron;
use crate::Millis;
use jiff::tz::TimeZone;

/// How late a tick may be fired and still count as on time (not missed).
pub const ON_TIME: Millis = 60_000;

/// The most missed ticks one look fires with [`CatchUp::All`].
pub const MAX_CATCH_UP: usize = 1000;

/// What a tick does while the previous plan of its schedule has not stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Nothing: the tick is skipped.
    #[default]
    Skip,
    /// It waits for the previous plan to stop, then fires (one tick is kept waiting, as
    /// Temporal's buffer-one).
    Queue,
    /// Its plan starts anyway.
    Allow,
}

/// Which ticks missed while no node looked (downtime) are fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// None: only a tick that is on time fires.
    #[default]
    None,
    /// The latest missed tick, once.
    One,
    /// Every missed tick (at most [`MAX_CATCH_UP`]).
    All,
}

macro_rules! names {
    ($t:ty, $what:literal, $($v:ident = $s:literal),+) => {
        impl $t {
            /// Its name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$v),)+
                    other => Err(format!(
                        concat!($what, " `{}` is not one of: {}"),
                        other,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}

names!(
    Overlap,
    "overlap",
    Skip = "skip",
    Queue = "queue",
    Allow = "allow"
);
names!(CatchUp, "catch_up", None = "none", One = "one", All = "all");

/// A flow file's `[schedule]` table, checked: when to start the flow by itself, and with what.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    /// A cron expression (5 or 6 fields).
    pub cron: String,
    /// An IANA zone name; the ticks are the cron's in that zone.
    pub timezone: String,
    /// The plans' inputs.
    #[serde(default)]
    pub inputs: serde_json::Map<String, serde_json::Value>,
    /// What a tick does while the previous plan runs.
    #[serde(default)]
    pub overlap: Overlap,
    /// Which missed ticks fire after downtime.
    #[serde(default)]
    pub catch_up: CatchUp,
}

impl Spec {
    /// Checks the expression and the zone: an error names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        self.cron
            .parse::<Cron>()
            .map_err(|e| format!("cron `{}`: {e}", self.cron))?;
        TimeZone::get(&self.timezone)
            .map_err(|_| format!("unknown timezone `{}`", self.timezone))?;
        Ok(())
    }
}

/// The ticks to fire now, oldest first, and the next fire time after `now`. `next_at` is the
/// schedule's first unfired tick.
pub fn due(
    cron: &Cron,
    zone: &TimeZone,
    next_at: Millis,
    now: Millis,
    catch_up: CatchUp,
) -> (Vec<Millis>, Option<Millis>) {
    let mut ticks = std::collections::VecDeque::new();
    let mut tick = Some(next_at);
    let mut looked = 0;
    while let Some(t) = tick.filter(|&t| t <= now) {
        looked += 1;
        if looked > 10 * MAX_CATCH_UP && t < now - ON_TIME {
            // Far behind (a per-second schedule after a long downtime): what is older than
            // the last [`MAX_CATCH_UP`] ticks is not fired anyway; skip to the recent ones.
            tick = cron.next_after(now - ON_TIME, zone);
            looked = 0;
            continue;
        }
        ticks.push_back(t);
        if ticks.len() > MAX_CATCH_UP {
            ticks.pop_front();
        }
        tick = cron.next_after(t, zone);
    }
    let ticks: Vec<Millis> = ticks.into();
    // The next tick after `now`, even when `next_at` was far behind.
    let next = tick.or_else(|| cron.next_after(now, zone));
    let on_time = |t: &Millis| now - *t < ON_TIME;
    let fire = match catch_up {
        CatchUp::All => ticks,
        CatchUp::One => ticks.last().copied().into_iter().collect(),
        CatchUp::None => ticks.last().copied().filter(on_time).into_iter().collect(),
    };
    (fire, next)
}

/// What one look at a schedule does: how many plans to start now, and the schedule's next
/// unfired tick afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    /// Plans to start now, one per fired tick.
    pub start: usize,
    /// The first tick not fired.
    pub next_at: Option<Millis>,
}

/// A look at a schedule at `now` whose first unfired tick is `next_at`, whose previous plan
/// has not stopped when `previous_runs`.
pub fn look(
    cron: &Cron,
    zone: &TimeZone,
    next_at: Millis,
    now: Millis,
    overlap: Overlap,
    catch_up: CatchUp,
    previous_runs: bool,
) -> Look {
    // A queued tick may wait past its time: it is fired late rather than dropped.
    let catch_up = match (overlap, catch_up) {
        (Overlap::Queue, CatchUp::None) => CatchUp::One,
        (_, c) => c,
    };
    let (ticks, next) = due(cron, zone, next_at, now, catch_up);
    if ticks.is_empty() {
        return Look {
            start: 0,
            next_at: next,
        };
    }
    match (overlap, previous_runs) {
        (Overlap::Allow, _) => Look {
            start: ticks.len(),
            next_at: next,
        },
        (Overlap::Skip, true) => Look {
            start: 0,
            next_at: next,
        },
        (Overlap::Queue, true) => Look {
            start: 0,
            next_at: Some(next_at),
        },
        // One plan: a second tick in the same look would overlap the first.
        (Overlap::Skip | Overlap::Queue, false) => Look {
            start: 1,
            next_at: next,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Millis {
        crate::time::parse_time(text).expect("a time")
    }

    #[test]
    fn missed_ticks_fire_as_catch_up_says() {
        let hourly: Cron = "0 * * * *".parse().expect("cron");
        let tz = TimeZone::UTC;
        let next_at = utc("2030-01-01T10:00:00Z");
        // Down from 09:59 to 13:30: the 10, 11, 12 and 13 o'clock ticks were missed.
        let now = utc("2030-01-01T13:30:00Z");
        let next = Some(utc("2030-01-01T14:00:00Z"));
        assert_eq!(
            due(&hourly, &tz, next_at, now, CatchUp::None),
            (vec![], next)
        );
        assert_eq!(
            due(&hourly, &tz, next_at, now, CatchUp::One),
            (vec![utc("2030-01-01T13:00:00Z")], next)
        );
        assert_eq!(due(&hourly, &tz, next_at, now, CatchUp::All).0.len(), 4);
        // On time: fired whatever catch_up says.
        let now = utc("2030-01-01T10:00:00.250Z");
        assert_eq!(
            due(&hourly, &tz, next_at, now, CatchUp::None),
            (vec![next_at], Some(utc("2030-01-01T11:00:00Z")))
        );
        // Not due yet.
        let now = utc("2030-01-01T09:59:59Z");
        assert_eq!(
            due(&hourly, &tz, next_at, now, CatchUp::All),
            (vec![], Some(next_at))
        );
    }

    #[test]
    fn overlap_skips_queues_or_allows() {
        let minutely: Cron = "* * * * *".parse().expect("cron");
        let tz = TimeZone::UTC;
        let next_at = utc("2030-01-01T10:00:00Z");
        let now = utc("2030-01-01T10:00:01Z");
        let after = Some(utc("2030-01-01T10:01:00Z"));
        let l = |o, runs| look(&minutely, &tz, next_at, now, o, CatchUp::None, runs);
        assert_eq!(
            l(Overlap::Skip, false),
            Look {
                start: 1,
                next_at: after
            }
        );
        assert_eq!(
            l(Overlap::Skip, true),
            Look {
                start: 0,
                next_at: after
            }
        );
        assert_eq!(
            l(Overlap::Allow, true),
            Look {
                start: 1,
                next_at: after
            }
        );
        assert_eq!(
            l(Overlap::Queue, true),
            Look {
                start: 0,
                next_at: Some(next_at)
            }
        );
        // The queued tick fires once the previous plan stopped, minutes late.
        let later = utc("2030-01-01T10:03:30Z");
        assert_eq!(
            look(
                &minutely,
                &tz,
                next_at,
                later,
                Overlap::Queue,
                CatchUp::None,
                false
            ),
            Look {
                start: 1,
                next_at: Some(utc("2030-01-01T10:04:00Z"))
            }
        );
    }

    #[test]
    fn names_round_trip_and_bad_ones_are_named() {
        for o in [Overlap::Skip, Overlap::Queue, Overlap::Allow] {
            assert_eq!(o.as_str().parse::<Overlap>(), Ok(o));
        }
        assert_eq!("all".parse::<CatchUp>(), Ok(CatchUp::All));
        let e = "sometimes".parse::<Overlap>().unwrap_err();
        assert_eq!(e, "overlap `sometimes` is not one of: skip, queue, allow");
    }
}
