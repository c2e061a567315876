//! Schedules as the stores keep them: a flow and its inputs started on a cron's ticks in a
//! time zone. Each store fires due schedules inside one transaction that also creates their
//! plans and moves their next tick on, so that of any number of nodes looking at once, one
//! fires each tick. What a look fires is `weft_model::schedule`'s rule; `plans_for` applies it.

use crate::{Error, NewPlan, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use weft_model::cron::Cron;
use weft_model::flow::Flow;
use weft_model::schedule::{look, CatchUp, Overlap};
use weft_model::{Millis, PlanId};

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// Its name, unique in the store.
    pub name: String,
    /// The flow it starts.
    pub flow: Flow,
    /// The inputs each plan gets.
    pub inputs: BTreeMap<String, Value>,
    /// When: a cron expression ([`weft_model::cron`]).
    pub cron: String,
    /// In which zone of the timezone database its ticks are read (`UTC`, `Europe/Berlin`).
    pub timezone: String,
    /// What a tick does while the previous plan runs.
    pub overlap: Overlap,
    /// Which ticks missed while no node looked are fired.
    pub catch_up: CatchUp,
    /// Paused: no tick fires.
    pub paused: bool,
    /// Its first unfired tick.
    #[serde(with = "weft_model::time::opt_rfc3339", default)]
    pub next_at: Option<Millis>,
    /// The plan it started last.
    pub last_plan: Option<PlanId>,
}

impl ScheduleRecord {
    /// The cron and zone, checked; the error names what is wrong.
    pub fn parsed(&self) -> std::result::Result<(Cron, jiff::tz::TimeZone), String> {
        let cron: Cron = self.cron.parse()?;
        let zone = jiff::tz::TimeZone::get(&self.timezone).map_err(|e| {
            format!(
                "time zone `{}` is not in the timezone database: {e}",
                self.timezone
            )
        })?;
        Ok((cron, zone))
    }

    /// Its first tick after `now` (none for a cron that never fires again).
    pub fn first_after(&self, now: Millis) -> std::result::Result<Option<Millis>, String> {
        let (cron, zone) = self.parsed()?;
        Ok(cron.next_after(now, &zone))
    }
}

/// What a look at one schedule does: the plans to create, then the schedule's next tick and
/// last plan to store ([`Firing::last`]).
pub(crate) struct Firing {
    pub(crate) name: String,
    pub(crate) plans: Vec<NewPlan>,
    pub(crate) next_at: Option<Millis>,
    pub(crate) previous: Option<PlanId>,
}

impl Firing {
    /// The plan the schedule started last, once these plans are created.
    pub(crate) fn last(&self) -> Option<PlanId> {
        self.plans.last().map(|p| p.id).or(self.previous)
    }

    /// What it fired, by schedule.
    pub(crate) fn fired(&self) -> impl Iterator<Item = (String, PlanId)> + '_ {
        self.plans.iter().map(|p| (self.name.clone(), p.id))
    }
}

/// The plans one look at `s` starts at `now` (all of them `planned`, unlocked, for nodes) and
/// its next tick afterwards. `trigger`: one plan now, whatever the cron says, ticks unmoved.
pub(crate) fn plans_for(
    s: &ScheduleRecord,
    now: Millis,
    trigger: bool,
    previous_runs: bool,
) -> Result<(Vec<NewPlan>, Option<Millis>)> {
    let plan = || NewPlan::new(s.flow.clone(), s.inputs.clone());
    if trigger {
        return Ok((vec![plan()], s.next_at));
    }
    let Some(next_at) = s.next_at else {
        return Ok((Vec::new(), None));
    };
    let (cron, zone) = s
        .parsed()
        .map_err(|e| Error::Corrupt(format!("schedule {}: {e}", s.name)))?;
    let l = look(
        &cron,
        &zone,
        next_at,
        now,
        s.overlap,
        s.catch_up,
        previous_runs,
    );
    Ok(((0..l.start).map(|_| plan()).collect(), l.next_at))
}
