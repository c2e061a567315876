//! The live progress display of `weft run`: spinners for running steps on a terminal, one
//! line per state change otherwise (logs, CI), nothing with `--json`.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;
use weft_engine::Update;
use weft_model::group::{Progress, TaskState};
use weft_model::{duration, format_millis, step, PlanId};
use weft_store::StepRecord;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Spinners (stderr is a terminal).
    Live,
    /// A line per change.
    Lines,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Live on a terminal, lines otherwise, quiet for JSON.
    pub(crate) fn pick(json: bool) -> Mode {
        if json {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Lines
        }
    }
}

/// A running display; [`Display::finish`] stops it after the last update.
pub(crate) struct Display {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Display {
    /// Starts showing updates of `plan`, whose steps are named `names`.
    pub(crate) fn start(
        mut rx: broadcast::Receiver<Update>,
        plan: PlanId,
        names: Vec<String>,
        probed: HashSet<(u32, usize)>,
        mode: Mode,
    ) -> Display {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut view = View::new(names, probed, mode);
            loop {
                tokio::select! {
                    biased;
                    update = rx.recv() => match update {
                        Ok(Update::Step { plan: p, step }) if p == plan => view.step(&step),
                        Ok(Update::Group { plan: p, step, progress }) if p == plan => {
                            view.group(step, &progress)
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(n)) => view.note(&format!("(display fell behind; {n} updates not shown)")),
                        Err(RecvError::Closed) => break,
                    },
                    _ = &mut stopped => {
                        // Drain what is already there, then stop.
                        while let Ok(u) = rx.try_recv() {
                            match u {
                                Update::Step { plan: p, step } if p == plan => view.step(&step),
                                Update::Group { plan: p, step, progress } if p == plan => {
                                    view.group(step, &progress)
                                }
                                _ => {}
                            }
                        }
                        break;
                    }
                }
            }
            view.clear();
        });
        Display { stop, task }
    }

    /// Stops after showing what has arrived.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

struct View {
    names: Vec<String>,
    mode: Mode,
    multi: MultiProgress,
    bars: HashMap<u32, ProgressBar>,
    width: usize,
    /// The group tasks' states last seen, by step and task.
    tasks: HashMap<(u32, usize), TaskState>,
    /// Group tasks with a readiness probe.
    probed: HashSet<(u32, usize)>,
}

impl View {
    fn new(names: Vec<String>, probed: HashSet<(u32, usize)>, mode: Mode) -> View {
        let width = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(4)
            .min(40);
        View {
            names,
            mode,
            multi: MultiProgress::new(),
            bars: HashMap::new(),
            width,
            tasks: HashMap::new(),
            probed,
        }
    }

    fn name(&self, i: u32) -> &str {
        self.names
            .get(i as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    fn note(&self, text: &str) {
        match self.mode {
            Mode::Live => {
                let _ = self.multi.println(text);
            }
            Mode::Lines => eprintln!("{text}"),
            Mode::Quiet => {}
        }
    }

    fn line(&self, s: &StepRecord) -> String {
        let took = match (s.started_at, s.ended_at) {
            (Some(a), Some(b)) if b >= a => duration::format(Duration::from_millis((b - a) as u64)),
            _ => String::new(),
        };
        let mark = match s.state {
            step::State::Success => "✓",
            step::State::Error | step::State::RevertFailed => "✗",
            step::State::Reverted | step::State::Reverting => "↶",
            step::State::Running => "▶",
            _ => "·",
        };
        let mut text = format!(
            "{mark} {:<w$}  {:<13} attempt {:<2} {took}",
            self.name(s.index),
            s.state.as_str(),
            s.attempt,
            w = self.width
        );
        if let Some(f) = &s.failure {
            text.push_str("  ");
            text.push_str(&f.message);
        }
        text.trim_end().to_string()
    }

    fn step(&mut self, s: &StepRecord) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => {
                let at = s
                    .ended_at
                    .or(s.started_at)
                    .map(format_millis)
                    .unwrap_or_default();
                let time = at.split(' ').nth(1).unwrap_or("").to_string();
                eprintln!("{time}  {}", self.line(s));
            }
            Mode::Live => {
                let running = matches!(s.state, step::State::Running | step::State::Reverting);
                if let Some(bar) = self.bars.remove(&s.index) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if running {
                    let style = ProgressStyle::with_template(
                        "{spinner:.cyan} {prefix:.bold} {msg} {elapsed:.dim}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(style);
                    bar.set_prefix(format!("{:<w$}", self.name(s.index), w = self.width));
                    bar.set_message(format!("{} (attempt {})", s.state, s.attempt));
                    bar.enable_steady_tick(Duration::from_millis(100));
                    self.bars.insert(s.index, bar);
                } else {
                    let _ = self.multi.println(self.line(s));
                }
            }
        }
    }

    /// A line for each group task whose state changed.
    fn group(&mut self, step: u32, progress: &Progress) {
        for (i, t) in progress.tasks.iter().enumerate() {
            let before = self.tasks.insert((step, i), t.state);
            let quiet = match t.state {
                // Not started yet (shown again only when a restart resets it).
                TaskState::Pending => before.is_none_or(|b| b == TaskState::Pending),
                // Without a probe, a task is ready as soon as it runs.
                TaskState::Ready => !self.probed.contains(&(step, i)),
                _ => false,
            };
            if before == Some(t.state) || quiet {
                continue;
            }
            let name = format!("{}/{}", self.name(step), t.name);
            let mut text = format!("  ▸ {name:<w$}  {}", t.state, w = self.width);
            if let Some(f) = &t.failure {
                text.push_str("  ");
                text.push_str(&f.message);
            }
            match self.mode {
                Mode::Quiet => {}
                Mode::Lines => {
                    let at = t
                        .ended_at
                        .or(t.started_at)
                        .map(format_millis)
                        .unwrap_or_default();
                    let time = at.split(' ').nth(1).unwrap_or("").to_string();
                    eprintln!("{time}  {text}");
                }
                Mode::Live => {
                    let _ = self.multi.println(text);
                }
            }
        }
    }

    fn clear(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
    }
}
