//! The dashboard's HTML, rendered on the server (maud): the layout, and each page and the
//! fragments that live updates fetch again — plans, a plan (graph, steps, history, actions), a
//! step (attempts, output, failure, logs), the job board, workers, nodes.

use super::graph;
use crate::api::types::{HistoryItem, JobView, NodeView, PlanItem, PlanView, StepView, WorkerView};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

/// A whole page: head, navigation, the toast actions answer in, and `body`.
pub fn layout(title: &str, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles": false}"#;
                title { (title) " · weft" }
                link rel="stylesheet" href="/assets/weft.css";
                link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
                script src="/assets/htmx.min.js" defer {}
                script src="/assets/weft.js" defer {}
            }
            body {
                nav {
                    a.brand href="/" { "weft" }
                    @for (href, label) in [("/", "Plans"), ("/jobs", "Jobs"), ("/workers", "Workers"), ("/nodes", "Nodes")] {
                        a href=(href) class=[(label == active).then_some("active")] { (label) }
                    }
                }
                main { (body) }
                div #toast hidden role="status" {}
            }
        }
    }
}

fn badge(kind: &str, value: &str) -> Markup {
    html! { span class=(format!("badge {kind}-{value}")) { (value) } }
}

fn short_id(id: &str) -> &str {
    id.get(..13).unwrap_or(id)
}

/// `2026-12-01T05:03:14.600Z` as `2026-12-01 05:03:14`.
fn when(t: &str) -> String {
    t.get(..19).unwrap_or(t).replace('T', " ")
}

fn millis(t: &str) -> Option<i64> {
    weft_model::parse_time(t).ok()
}

/// How long from `start` to `end` (or now).
fn took(start: Option<&str>, end: Option<&str>) -> String {
    let Some(s) = start.and_then(millis) else {
        return String::new();
    };
    let e = end.and_then(millis).unwrap_or_else(weft_model::now_millis);
    weft_model::duration::format(std::time::Duration::from_millis((e - s).max(0) as u64))
}

/// The plans page: filters, and the list that refreshes live.
pub fn plans_page(states: &[&str], query: &str, state: &str, search: &str) -> Markup {
    html! {
        h1 { "Plans" }
        form #filters.filters hx-get="/ui/plans" hx-target="#plans" hx-trigger="change, input delay:300ms from:input" {
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for s in states {
                        option value=(s) selected[*s == state] { (s) }
                    }
                }
            }
            label { "Search " input type="search" name="search" value=(search) placeholder="flow name or id"; }
        }
        div #plans data-live="/ui/changes" hx-get=(format!("/ui/plans?{query}")) hx-trigger="load, refresh" {
            "loading…"
        }
    }
}

/// The plans table (a fragment).
pub fn plans_table(plans: &[PlanItem], next: Option<&str>, query_without_before: &str) -> Markup {
    html! {
        @if plans.is_empty() {
            p.empty { "No plans. Submit one: " code { "weft submit FLOW.toml" } " or " code { "POST /api/plans" } }
        } @else {
            table.plans {
                thead { tr { th { "Plan" } th { "Flow" } th { "State" } th { "Result" } th { "Created" } th { "Took" } th { "Steps" } th { "Executed by" } } }
                tbody {
                    @for p in plans {
                        tr data-plan=(p.id) {
                            td { a href=(format!("/plans/{}", p.id)) title=(p.id) { code { (short_id(&p.id)) } } }
                            td { (p.flow) }
                            td { (badge("state", &p.state)) }
                            td { (badge("result", &p.result)) }
                            td { (when(&p.created_at)) }
                            td { (took(Some(&p.created_at), p.ended_at.as_deref())) }
                            td.num { (p.steps) }
                            td { (p.executed_by.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if let Some(next) = next {
                a.more hx-get=(format!("/ui/plans?{query_without_before}&before={next}")) hx-target="#plans" href="#" { "Older plans →" }
            }
        }
    }
}

fn action(plan: &str, what: &str, label: &str, confirm: &str) -> Markup {
    html! {
        button.action hx-post=(format!("/api/plans/{plan}/{what}")) hx-ext="json" hx-swap="none"
            hx-confirm=(confirm) data-action=(what) { (label) }
    }
}

/// A plan: summary, actions, graph, steps, history (a fragment).
pub fn plan_detail(plan: &PlanView, history: &[HistoryItem]) -> Markup {
    let base = format!("/plans/{}", plan.id);
    let stopped = plan.state == "stopped";
    html! {
        h1 { (plan.flow) " " small { code { (plan.id) } } }
        dl.summary {
            dt { "State" } dd #plan-state { (badge("state", &plan.state)) }
            dt { "Result" } dd #plan-result { (badge("result", &plan.result)) }
            dt { "Created" } dd { (when(&plan.created_at)) }
            dt { "Took" } dd { (took(plan.started_at.as_deref(), plan.ended_at.as_deref())) }
            @if let Some(at) = &plan.start_at { dt { "Starts" } dd { (when(at)) } }
            @if let Some(by) = &plan.executed_by { dt { "Executed by" } dd { (by) } }
            @if !plan.inputs.is_empty() {
                dt { "Inputs" } dd { code { (serde_json::to_string(&plan.inputs).unwrap_or_default()) } }
            }
        }
        @for line in &plan.waiting { p.waiting { (line) } }
        div.actions {
            @if !stopped {
                (action(&plan.id, "halt", "Halt", &format!("Halt plan {}? Running steps are cancelled and it stops.", short_id(&plan.id))))
            }
            @if plan.state == "paused" || (plan.state == "running" && plan.executed_by.is_none()) {
                (action(&plan.id, "resume", "Resume", &format!("Resume plan {} on this node?", short_id(&plan.id))))
            }
            @if matches!(plan.state.as_str(), "paused" | "planned" | "scheduled" | "pending") {
                (action(&plan.id, "cancel", "Cancel", &format!("Cancel plan {}? What completed is reverted.", short_id(&plan.id))))
            }
            @if !stopped {
                (action(&plan.id, "inhibit", "Inhibit", &format!("Inhibit plan {}? It will not be executed again.", short_id(&plan.id))))
            }
        }
        h2 { "Steps" }
        div.graph-box { (graph::svg(&plan.steps, &base)) }
        table.steps {
            thead { tr { th { "Step" } th { "State" } th { "Attempt" } th { "Took" } th { "Output or failure" } th {} } }
            tbody {
                @for s in &plan.steps {
                    tr data-step=(s.name) {
                        td { a href=(format!("{base}/steps/{}", graph::encode(&s.name))) { (s.name) } }
                        td { (badge("state", &s.state)) }
                        td.num { (s.attempt) }
                        td { (step_took(s)) }
                        td { (step_outcome(s)) }
                        td { (step_actions(plan, s)) }
                    }
                }
            }
        }
        h2 { "History" }
        (timeline(plan, history))
    }
}

/// How long a step's attempt ran, or has been running (or waiting).
fn step_took(s: &StepView) -> String {
    match (&s.ended_at, s.state.as_str()) {
        (Some(end), _) => took(s.started_at.as_deref(), Some(end)),
        (None, "running" | "suspended") => took(s.started_at.as_deref(), None),
        (None, _) => String::new(),
    }
}

fn step_outcome(s: &StepView) -> Markup {
    html! {
        @if let Some(f) = &s.failure {
            span.failure { (f.message) }
        } @else if let Some(w) = &s.warning {
            span.warning { (w) }
        } @else if let Some(o) = s.output.as_ref().filter(|o| o.as_object().is_some_and(|m| !m.is_empty())) {
            code.output { (clip(&o.to_string(), 160)) }
        }
    }
}

fn step_actions(plan: &PlanView, s: &StepView) -> Markup {
    html! {
        @if s.state == "suspended" {
            form.event hx-post=(format!("/api/plans/{}/events", plan.id)) hx-ext="json" hx-swap="none"
                hx-confirm=(format!("Send this event to step {}?", s.name)) {
                input type="hidden" name="step" value=(s.name);
                input name="data" value="{}" aria-label="event data (a JSON object)" size="18";
                button.action data-action="event" { "Send event" }
            }
        }
        @if s.state == "error" && plan.state == "paused" {
            form hx-post=(format!("/api/plans/{}/skip", plan.id)) hx-ext="json" hx-swap="none"
                hx-confirm=(format!("Skip step {} and every step that depends on it?", s.name)) {
                input type="hidden" name="step" value=(s.name);
                button.action data-action="skip" { "Skip" }
            }
        }
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max).collect();
        format!("{head}…")
    }
}

fn timeline(plan: &PlanView, history: &[HistoryItem]) -> Markup {
    let name = |i: u32| {
        plan.steps
            .get(i as usize)
            .map_or_else(|| i.to_string(), |s| s.name.clone())
    };
    html! {
        ol.timeline {
            @for h in history {
                li class=(format!("to-{}", h.to)) {
                    time { (when(&h.at)) }
                    " "
                    @if let Some(i) = h.step { b { (name(i)) } " " } @else { b { "plan" } " " }
                    (h.from) " → " (badge("state", &h.to))
                    @if let Some(why) = h.data.as_ref().and_then(|d| d.get("why")).and_then(Value::as_str) { " " span.why { (why) } }
                    @if let Some(by) = &h.by { " " span.by { "by " (by) } }
                }
            }
        }
    }
}

/// A step's page: what it is, its attempts, output, failure and logs (a fragment refreshes
/// live; the logs follow on their own).
pub fn step_page(plan: &PlanView, step: &StepView, history: &[HistoryItem]) -> Markup {
    let attempts: Vec<&HistoryItem> = history
        .iter()
        .filter(|h| h.step == Some(step.index))
        .collect();
    html! {
        p.crumbs { a href=(format!("/plans/{}", plan.id)) { (plan.flow) " " code { (short_id(&plan.id)) } } " / " (step.name) }
        div #step data-live=(format!("/ui/changes?plan={}", plan.id))
            hx-get=(format!("/ui/plans/{}/steps/{}", plan.id, graph::encode(&step.name))) hx-trigger="refresh" {
            (step_detail(plan, step, &attempts))
        }
        h2 { "Output" }
        pre #logs.logs data-logs=(format!("/api/plans/{}/logs?step={}", plan.id, graph::encode(&step.name))) {}
    }
}

/// A step's state, attempts, output and failure (a fragment).
pub fn step_detail(plan: &PlanView, step: &StepView, attempts: &[&HistoryItem]) -> Markup {
    html! {
        h1 { (step.name) " " (badge("state", &step.state)) }
        dl.summary {
            dt { "Kind" } dd { (step.kind) }
            dt { "Attempt" } dd { (step.attempt) }
            @if let Some(s) = &step.started_at { dt { "Started" } dd { (when(s)) } }
            @if let Some(e) = &step.ended_at { dt { "Ended" } dd { (when(e)) } }
            @if let Some(d) = &step.deadline { dt { "Waits until" } dd { (when(d)) } }
            @if !step.requires.is_empty() { dt { "Takes" } dd { (step.requires.join(", ")) } }
        }
        (step_actions(plan, step))
        @if let Some(o) = &step.output {
            h2 { "Result" }
            pre.output { (serde_json::to_string_pretty(o).unwrap_or_default()) }
        }
        @if let Some(f) = &step.failure {
            h2 { "Failure" }
            p.failure { (f.message) " " small { "(" (f.kinds.join(", ")) ")" } }
            @if let Some(tail) = &f.stderr_tail { pre.stderr { (tail) } }
        }
        @if let Some(w) = &step.warning { h2 { "Warning" } p.warning { (w) } }
        @if let Some(g) = &step.group { h2 { "Group" } pre.output { (serde_json::to_string_pretty(g).unwrap_or_default()) } }
        h2 { "Attempts" }
        ol.timeline {
            @for h in attempts {
                li class=(format!("to-{}", h.to)) {
                    time { (when(&h.at)) } " " (h.from) " → " (badge("state", &h.to))
                    @if let Some(a) = h.data.as_ref().and_then(|d| d.get("attempt")) { " " span.why { "attempt " (a) } }
                    @if let Some(m) = h.data.as_ref().and_then(|d| d.get("failure")).and_then(|f| f.get("message")).and_then(Value::as_str) { " " span.failure { (m) } }
                }
            }
        }
    }
}

/// The job board (a fragment inside its page).
pub fn jobs(jobs: &[JobView], trashed: &[JobView]) -> Markup {
    let table = |jobs: &[JobView]| {
        html! {
            table.jobs {
                thead { tr { th { "Priority" } th { "Job" } th { "Flow" } th { "State" } th { "Owner" } th { "Attempts" } th { "Plan" } } }
                tbody {
                    @for j in jobs {
                        tr data-job=(j.id) {
                            td { (badge("priority", &j.priority)) }
                            td { (j.name) br; small { code { (short_id(&j.id)) } } }
                            td { (j.flow) }
                            td { (badge("job", &j.state)) }
                            td { (j.owner.as_deref().unwrap_or("")) }
                            td.num { (j.attempts) " / " (j.max_attempts) }
                            td { a href=(format!("/plans/{}", j.plan)) { code { (short_id(&j.plan)) } } }
                        }
                    }
                }
            }
        }
    };
    html! {
        h1 { "Job board" }
        @if jobs.is_empty() { p.empty { "The board is empty. Post a job: " code { "weft jobs post FLOW.toml" } } } @else { (table(jobs)) }
        @if !trashed.is_empty() { h2 { "Trash" } (table(trashed)) }
    }
}

/// Workers (a fragment inside its page).
pub fn workers(workers: &[WorkerView]) -> Markup {
    html! {
        h1 { "Workers" }
        @if workers.is_empty() {
            p.empty { "No worker has registered. Start one: " code { "weft worker --topic T --tasks FLOW.toml" } }
        } @else {
            table {
                thead { tr { th { "Topic" } th { "Process" } th { "Running" } th { "Last seen" } th { "Tasks" } } }
                tbody {
                    @for w in workers {
                        tr { td { (w.topic) } td { (w.process.as_deref().unwrap_or("")) } td.num { (w.running) } td { (when(&w.heartbeat_at)) } td { (w.tasks.join(", ")) } }
                    }
                }
            }
        }
    }
}

/// Nodes with their manifold trees (a fragment inside its page).
pub fn nodes(nodes: &[NodeView]) -> Markup {
    html! {
        h1 { "Nodes" }
        @if nodes.is_empty() { p.empty { "No node shares this store." } }
        @for n in nodes {
            section.node {
                h2 { (n.name) " " small { code { (n.id) } } }
                p { "process " (n.process.as_deref().unwrap_or("?")) ", started " (when(&n.started_at)) ", last heartbeat " (when(&n.heartbeat_at)) }
                @if let Some(r) = &n.report {
                    p { "engine " (badge("manifold", r["state"].as_str().unwrap_or("?"))) }
                    @if let Some(ms) = r["manifolds"].as_object() {
                        ul.tree {
                            @for (name, m) in ms {
                                li {
                                    b { (name) } " " (badge("manifold", m["state"].as_str().unwrap_or("?")))
                                    @if let Some(inputs) = m["inputs"].as_array().filter(|i| !i.is_empty()) {
                                        " ← " (inputs.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                                    }
                                    " " small { "started " (m["starts"]) "×" }
                                    @if let Some(e) = m["error"].as_str() {
                                        div.failure { (m["error_at"].as_str().map(when).unwrap_or_default()) " " (e) }
                                    }
                                }
                            }
                        }
                    }
                } @else {
                    p { "no report yet" }
                }
            }
        }
    }
}

/// A page for a problem (a plan that does not exist, say).
pub fn problem(status: u16, detail: &str) -> Markup {
    html! { h1 { "Error " (status) } p.failure { (detail) } p { a href="/" { "All plans" } } }
}

/// The dashboard's own script and styles.
pub const SCRIPT: &str = include_str!("../../assets/weft.js");
/// The styles.
pub const STYLE: &str = include_str!("../../assets/weft.css");
/// The icon.
pub const ICON: &str = include_str!("../../assets/favicon.svg");
/// htmx, vendored (0BSD; assets/htmx-LICENSE).
pub const HTMX: &str = include_str!("../../assets/htmx-2.0.11.min.js");
