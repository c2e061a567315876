//! A plan's step graph as SVG: steps placed in columns by depth (a step stands one column right
//! of the deepest step it waits for), edges from what a step waits for, boxes coloured by
//! state (CSS classes `s-<state>`), each box a link to its step's page.

use crate::api::types::StepView;
use maud::{html, Markup};

const W: u32 = 150;
const H: u32 = 34;
const COL: u32 = 190;
const ROW: u32 = 48;
const PAD: u32 = 8;

/// Where each step goes: (column, row).
pub fn layout(steps: &[StepView]) -> Vec<(u32, u32)> {
    let mut depth: Vec<Option<u32>> = vec![None; steps.len()];
    // Steps come in an order where what a step waits for usually precedes it; a few sweeps
    // settle any that do not.
    for _ in 0..steps.len().max(1) {
        let mut changed = false;
        for (i, s) in steps.iter().enumerate() {
            let d = s
                .deps
                .iter()
                .filter_map(|&d| depth.get(d as usize).copied().flatten().map(|x| x + 1))
                .max()
                .unwrap_or(0);
            if depth[i] != Some(d) {
                depth[i] = Some(d);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows: Vec<u32> = Vec::new();
    depth
        .into_iter()
        .map(|d| {
            let col = d.unwrap_or(0);
            if rows.len() <= col as usize {
                rows.resize(col as usize + 1, 0);
            }
            let row = rows[col as usize];
            rows[col as usize] += 1;
            (col, row)
        })
        .collect()
}

fn short(name: &str) -> String {
    const MAX: usize = 20;
    if name.chars().count() <= MAX {
        name.to_string()
    } else {
        let head: String = name.chars().take(MAX - 1).collect();
        format!("{head}…")
    }
}

/// The SVG, with links to `base/steps/<name>`.
pub fn svg(steps: &[StepView], base: &str) -> Markup {
    let at = layout(steps);
    let cols = at.iter().map(|(c, _)| c + 1).max().unwrap_or(1);
    let rows = at.iter().map(|(_, r)| r + 1).max().unwrap_or(1);
    let width = cols * COL - (COL - W) + 2 * PAD;
    let height = rows * ROW - (ROW - H) + 2 * PAD;
    let x = |c: u32| PAD + c * COL;
    let y = |r: u32| PAD + r * ROW;
    html! {
        svg.graph xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
            viewBox=(format!("0 0 {width} {height}")) role="img" aria-label="the plan's steps" {
            @for (i, s) in steps.iter().enumerate() {
                @for d in &s.deps {
                    @if let Some(&(dc, dr)) = at.get(*d as usize) {
                        @let (x1, y1) = (x(dc) + W, y(dr) + H / 2);
                        @let (x2, y2) = (x(at[i].0), y(at[i].1) + H / 2);
                        @let mid = (x1 + x2) / 2;
                        path.edge d=(format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")) {}
                    }
                }
            }
            @for (i, s) in steps.iter().enumerate() {
                @let (px, py) = (x(at[i].0), y(at[i].1));
                a href=(format!("{base}/steps/{}", encode(&s.name))) {
                    g class=(format!("step s-{}", s.state)) data-step=(s.name) {
                        title { (s.name) " — " (s.state) @if s.attempt > 1 { " (attempt " (s.attempt) ")" } }
                        rect x=(px) y=(py) width=(W) height=(H) rx="6" {}
                        text x=(px + 8) y=(py + 15) { (short(&s.name)) }
                        text.state x=(px + 8) y=(py + 28) { (s.state) @if s.attempt > 1 { " · #" (s.attempt) } }
                    }
                }
            }
        }
    }
}

/// A path segment, percent-encoded (step names may hold `/` and spaces).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, deps: &[u32]) -> StepView {
        StepView {
            index: 0,
            name: name.into(),
            state: "pending".into(),
            attempt: 0,
            started_at: None,
            ended_at: None,
            output: None,
            failure: None,
            deadline: None,
            warning: None,
            deps: deps.to_vec(),
            requires: Vec::new(),
            kind: "command".into(),
            group: None,
        }
    }

    #[test]
    fn a_step_stands_right_of_what_it_waits_for() {
        // a → b → d, a → c → d, e alone.
        let steps = [
            step("a", &[]),
            step("b", &[0]),
            step("c", &[0]),
            step("d", &[1, 2]),
            step("e", &[]),
        ];
        assert_eq!(layout(&steps), vec![(0, 0), (1, 0), (1, 1), (2, 0), (0, 1)]);
    }

    #[test]
    fn the_svg_has_a_box_per_step_and_a_path_per_edge() {
        let steps = [step("a", &[]), step("b c/d", &[0])];
        let svg = svg(&steps, "/plans/x").into_string();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert_eq!(svg.matches("class=\"edge\"").count(), 1);
        assert!(svg.contains("href=\"/plans/x/steps/b%20c%2Fd\""));
        assert!(svg.contains("class=\"step s-pending\""));
    }

    #[test]
    fn names_are_escaped() {
        let steps = [step("<script>", &[])];
        let svg = svg(&steps, "/p").into_string();
        assert!(!svg.contains("<script>"));
    }
}
