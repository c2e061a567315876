//! Text for people: plan lists, plan details, and end-of-run summaries.

use std::fmt::Write;
use std::time::Duration;
use weft_model::group::{Group, Progress};
use weft_model::{duration, format_millis, Millis};
use weft_store::{HistoryEntry, PlanSnapshot, PlanSummary};

/// Left-aligned columns, two spaces apart.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
    out
}

fn span(from: Option<Millis>, to: Option<Millis>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if b >= a => duration::format(Duration::from_millis((b - a) as u64)),
        _ => "-".into(),
    }
}

/// `plans list`.
pub(crate) fn plan_list(plans: &[PlanSummary]) -> String {
    if plans.is_empty() {
        return "no plans\n".into();
    }
    let rows: Vec<Vec<String>> = plans
        .iter()
        .map(|p| {
            // Who executes it (a node, or a `weft run`), or when it is due.
            let by = match (&p.owner, p.start_at) {
                (Some(owner), _) => owner.clone(),
                (None, Some(at)) if p.state == weft_model::plan::State::Scheduled => {
                    format!("due {} UTC", format_millis(at))
                }
                _ => String::new(),
            };
            vec![
                p.id.to_string(),
                p.flow.clone(),
                p.state.to_string(),
                p.result.to_string(),
                p.steps.to_string(),
                format_millis(p.created_at),
                by,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "FLOW",
            "STATE",
            "RESULT",
            "STEPS",
            "CREATED (UTC)",
            "EXECUTED BY",
        ],
        &rows,
    )
}

/// A group's tasks, under its step: each with its hook and state.
fn group_rows(group: &Group, progress: Option<&Progress>) -> Vec<Vec<String>> {
    group
        .tasks
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let run = progress.and_then(|p| p.tasks.get(i));
            let restarts = match progress.map(|p| p.restarts) {
                Some(n) if n > 0 && i == 0 => format!("(group restarted {n}×) "),
                _ => String::new(),
            };
            let (state, time, note) = match run {
                Some(t) => (
                    t.state.to_string(),
                    span(t.started_at, t.ended_at),
                    match &t.failure {
                        Some(f) => f.message.clone(),
                        None => output_text(&t.output),
                    },
                ),
                None => ("pending".into(), "-".into(), String::new()),
            };
            vec![
                format!("  {} ({})", def.name, def.role()),
                state,
                String::new(),
                time,
                format!("{restarts}{note}"),
            ]
        })
        .collect()
}

fn output_text(output: &Option<serde_json::Value>) -> String {
    match output {
        Some(serde_json::Value::Object(o)) if o.is_empty() => String::new(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(59).collect::<String>())
            } else {
                s
            }
        }
        None => String::new(),
    }
}

/// `plans show`.
pub(crate) fn plan_detail(snap: &PlanSnapshot, history: Option<&[HistoryEntry]>) -> String {
    let p = &snap.plan;
    let mut out = String::new();
    let _ = writeln!(out, "plan     {}", p.id);
    let version = if p.flow.version.is_empty() {
        String::new()
    } else {
        format!(" {}", p.flow.version)
    };
    let _ = writeln!(out, "flow     {}{version}", p.flow.name);
    let _ = writeln!(out, "state    {}", p.state);
    let _ = writeln!(out, "result   {}", snap.outcome());
    let _ = writeln!(out, "created  {} UTC", format_millis(p.created_at));
    if p.started_at.is_some() {
        let _ = writeln!(
            out,
            "ran      {}",
            span(p.started_at, p.ended_at.or(Some(weft_model::now_millis())))
        );
    }
    if !p.inputs.is_empty() {
        let inputs = serde_json::Value::Object(p.inputs.clone().into_iter().collect());
        let _ = writeln!(out, "inputs   {inputs}");
    }
    out.push('\n');
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, s) in snap.steps.iter().enumerate() {
        // A running task's last progress event (a remote worker's `EVENT`).
        let event = s
            .group
            .as_ref()
            .and_then(|g| g.event.as_ref())
            .filter(|_| s.state == weft_model::step::State::Running);
        let note = match (&s.failure, &s.warning, event) {
            (Some(f), _, _) => f.message.clone(),
            (None, Some(w), _) => format!("warning: {w}"),
            (None, None, Some(e)) => format!(
                "{} {}",
                e.event_type,
                serde_json::Value::Object(e.details.clone())
            ),
            (None, None, None) => output_text(&s.output),
        };
        rows.push(vec![
            s.name.clone(),
            s.state.to_string(),
            s.attempt.to_string(),
            span(s.started_at, s.ended_at),
            note,
        ]);
        if let Some(weft_model::flow::Action::Group(group)) = p.flow.steps.get(i).map(|d| &d.action)
        {
            rows.extend(group_rows(group, s.group.as_ref()));
        }
    }
    out.push_str(&table(
        &["STEP", "STATE", "ATTEMPT", "TIME", "OUTPUT / FAILURE"],
        &rows,
    ));
    for s in &snap.steps {
        if let Some(f) = &s.failure {
            if let Some(tail) = f.stderr_tail.as_deref().filter(|t| !t.trim().is_empty()) {
                let _ = writeln!(out, "\n{} stderr (last {} bytes):", s.name, tail.len());
                for line in tail.trim_end().lines() {
                    let _ = writeln!(out, "  | {line}");
                }
            }
        }
    }
    if let Some(entries) = history {
        out.push_str("\nhistory:\n");
        out.push_str(&self::history(snap, entries));
    }
    out
}

/// `plans history`: every transition — when, what, who did it, and why.
pub(crate) fn history(snap: &PlanSnapshot, entries: &[HistoryEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|h| {
            let what = match h.step {
                Some(i) => snap
                    .steps
                    .get(i as usize)
                    .map(|s| s.name.clone())
                    .unwrap_or_else(|| format!("step {i}")),
                None => "(plan)".into(),
            };
            let attempt = h
                .data
                .as_ref()
                .and_then(|d| d.get("attempt"))
                .map(|a| a.to_string())
                .unwrap_or_default();
            let why = h
                .data
                .as_ref()
                .and_then(|d| d.get("why"))
                .and_then(|f| f.as_str())
                .unwrap_or("");
            let by = h.by.clone().unwrap_or_default();
            vec![
                format_millis(h.at),
                what,
                format!("{} -> {}", h.from, h.to),
                attempt,
                by,
                why.to_string(),
            ]
        })
        .collect();
    table(
        &["AT (UTC)", "WHAT", "TRANSITION", "ATTEMPT", "BY", "WHY"],
        &rows,
    )
}

/// The lines printed when `weft run` ends.
pub(crate) fn summary(snap: &PlanSnapshot) -> String {
    let p = &snap.plan;
    let mut out = String::new();
    let done = snap
        .steps
        .iter()
        .filter(|s| s.state == weft_model::step::State::Success)
        .count();
    let _ = writeln!(
        out,
        "plan {} {}: {} ({done}/{} steps succeeded, {})",
        p.id,
        p.state,
        snap.outcome(),
        snap.steps.len(),
        span(p.started_at, p.ended_at.or(Some(weft_model::now_millis())))
    );
    for s in &snap.steps {
        if let Some(f) = &s.failure {
            let _ = writeln!(out, "  {} {}: {}", s.name, s.state, f.message);
            if let Some(tail) = f.stderr_tail.as_deref().filter(|t| !t.trim().is_empty()) {
                for line in tail
                    .trim_end()
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    let _ = writeln!(out, "    | {line}");
                }
            }
        }
    }
    if p.state == weft_model::plan::State::Paused {
        let _ = writeln!(
            out,
            "the plan is paused; after fixing the cause, continue with: weft plans resume {}",
            p.id
        );
    }
    out
}

/// How long ago `at` was, at `now`.
fn age(at: Millis, now: Millis) -> String {
    duration::format(Duration::from_millis(now.saturating_sub(at).max(0) as u64))
}

/// `jobs list` and `jobs trashed`: claim order, with state, owner, priority, attempts, age.
pub(crate) fn job_list(jobs: &[weft_store::JobRecord], now: Millis, empty: &str) -> String {
    if jobs.is_empty() {
        return format!("{empty}\n");
    }
    let trash = jobs
        .iter()
        .all(|j| j.state == weft_model::job::State::Trashed);
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let mut row = vec![
                j.id.to_string(),
                j.name.clone(),
                j.priority.to_string(),
                j.state.to_string(),
                j.owner.clone().unwrap_or_default(),
                format!("{}/{}", j.attempts, j.max_attempts),
                age(j.created_at, now),
            ];
            if trash {
                row.push(j.note.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    let mut header = vec![
        "ID", "NAME", "PRIORITY", "STATE", "OWNER", "ATTEMPTS", "AGE",
    ];
    if trash {
        header.push("WHY");
    }
    table(&header, &rows)
}

/// `jobs show`.
pub(crate) fn job_detail(
    job: &weft_store::JobRecord,
    plan: Option<(weft_model::plan::State, weft_model::plan::Outcome)>,
    history: &[weft_store::JobTransition],
    now: Millis,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "job       {}", job.id);
    let _ = writeln!(out, "name      {}", job.name);
    let _ = writeln!(out, "flow      {}", job.flow.name);
    let _ = writeln!(out, "priority  {}", job.priority);
    let _ = writeln!(out, "state     {}", job.state);
    if let Some(owner) = &job.owner {
        let _ = writeln!(out, "owner     {owner}");
    }
    let _ = writeln!(out, "attempts  {} of {}", job.attempts, job.max_attempts);
    let _ = writeln!(
        out,
        "posted    {} UTC ({} ago)",
        format_millis(job.created_at),
        age(job.created_at, now)
    );
    match plan {
        Some((state, outcome)) => {
            let _ = writeln!(out, "plan      {} ({state}, {outcome})", job.plan);
        }
        None => {
            let _ = writeln!(out, "plan      {} (not started)", job.plan);
        }
    }
    if !job.needs.is_empty() {
        let _ = writeln!(out, "needs     {}", job.needs.join(", "));
    }
    if let Some(note) = &job.note {
        let _ = writeln!(out, "note      {note}");
    }
    if !job.inputs.is_empty() {
        let _ = writeln!(out, "inputs");
        for (k, v) in &job.inputs {
            let _ = writeln!(out, "  {k} = {v}");
        }
    }
    let _ = writeln!(out, "history");
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|t| {
            vec![
                format!("  {}", format_millis(t.at)),
                t.from.map_or_else(|| "-".into(), |s| s.to_string()),
                t.to.to_string(),
                t.attempt.to_string(),
                t.by.clone(),
                t.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["  AT (UTC)", "FROM", "TO", "ATTEMPT", "BY", "WHY"],
        &rows,
    ));
    out
}
