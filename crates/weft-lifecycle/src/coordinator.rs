//! The coordinator: which stage's tasks may start, given every task's state.

use crate::Gate;
use std::collections::BTreeMap;
use tokio::sync::watch;

/// A task's lifecycle hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// Before main: ephemeral (must finish successfully first) or a sidecar (keeps running).
    Prestart,
    /// Once main is running: ephemeral or a sidecar.
    Poststart,
    /// After every other task is dead, failed or not: cleanup.
    Poststop,
}

/// The stage a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// A prestart task that runs to completion.
    PrestartEphemeral,
    /// A prestart task that keeps running beside main.
    PrestartSidecar,
    /// A task without a hook.
    Main,
    /// A poststart task that runs to completion.
    PoststartEphemeral,
    /// A poststart task that keeps running.
    PoststartSidecar,
    /// A poststop task.
    Poststop,
}

impl Stage {
    /// The stage of a task with this hook (`None`: main).
    pub fn of(hook: Option<Hook>, sidecar: bool) -> Stage {
        match (hook, sidecar) {
            (None, _) => Stage::Main,
            (Some(Hook::Prestart), false) => Stage::PrestartEphemeral,
            (Some(Hook::Prestart), true) => Stage::PrestartSidecar,
            (Some(Hook::Poststart), false) => Stage::PoststartEphemeral,
            (Some(Hook::Poststart), true) => Stage::PoststartSidecar,
            // A sidecar is meaningless after everything stopped.
            (Some(Hook::Poststop), _) => Stage::Poststop,
        }
    }

    const ALL: [Stage; 6] = [
        Stage::PrestartEphemeral,
        Stage::PrestartSidecar,
        Stage::Main,
        Stage::PoststartEphemeral,
        Stage::PoststartSidecar,
        Stage::Poststop,
    ];
}

/// A task of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// Its name.
    pub name: String,
    /// Its stage.
    pub stage: Stage,
}

/// A task's state, as the task runner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Not started.
    Pending,
    /// Running; `ready` once its readiness probe passed (tasks without a probe are ready).
    Running {
        /// Whether its probe passed.
        ready: bool,
    },
    /// Ended.
    Dead {
        /// Whether it failed.
        failed: bool,
    },
}

impl TaskState {
    fn is_dead(self) -> bool {
        matches!(self, TaskState::Dead { .. })
    }
    fn succeeded(self) -> bool {
        self == TaskState::Dead { failed: false }
    }
}

/// The coordinator's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing may start.
    Init,
    /// Prestart tasks may start.
    Prestart,
    /// Main tasks may start (prestart sidecars keep running).
    Main,
    /// Poststart tasks may start.
    Poststart,
    /// Waiting for main to end (poststart sidecars keep running).
    WaitAlloc,
    /// Only poststop tasks may start.
    Poststop,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Nomad prints "poststart" for poststop; this does not.
        f.pad(match self {
            State::Init => "init",
            State::Prestart => "prestart",
            State::Main => "main",
            State::Poststart => "poststart",
            State::WaitAlloc => "wait_alloc",
            State::Poststop => "poststop",
        })
    }
}

/// Opens and closes each stage's gate as the group's tasks change state.
pub struct Coordinator {
    tasks: BTreeMap<String, Stage>,
    state: State,
    gates: BTreeMap<Stage, Gate>,
}

impl Coordinator {
    /// A coordinator in `init`, every gate closed; gates go inert when `shutdown` turns true.
    pub fn new(tasks: &[TaskSpec], shutdown: watch::Receiver<bool>) -> Coordinator {
        let gates = Stage::ALL
            .into_iter()
            .map(|s| (s, Gate::new(shutdown.clone())))
            .collect();
        Coordinator {
            tasks: tasks.iter().map(|t| (t.name.clone(), t.stage)).collect(),
            state: State::Init,
            gates,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What the runner of `task` waits on before starting it.
    pub fn start_condition_for_task(
        &self,
        task: &str,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let stage = self.tasks.get(task)?;
        self.gates.get(stage).map(Gate::wait)
    }

    /// Whether `task` may start now.
    pub fn may_start(&self, task: &str) -> bool {
        self.tasks
            .get(task)
            .and_then(|s| self.gates.get(s))
            .is_some_and(Gate::is_open)
    }

    /// Takes the tasks' new states, moving on as far as they allow (empty stages pass
    /// through at once).
    pub fn task_state_updated(&mut self, states: &BTreeMap<String, TaskState>) {
        loop {
            let next = self.next_state(states);
            if next == self.state {
                break;
            }
            self.enter(next);
        }
    }

    /// Back to `init`: a full restart of the group, every task again in lifecycle order.
    pub fn restart(&mut self) {
        self.enter(State::Init);
    }

    /// Rebuilds the right state from persisted task states (after a crash): enters prestart
    /// and replays the states.
    pub fn restore(&mut self, states: &BTreeMap<String, TaskState>) {
        self.enter(State::Prestart);
        self.task_state_updated(states);
    }

    fn of<'a>(
        &'a self,
        states: &'a BTreeMap<String, TaskState>,
        stage: Stage,
    ) -> impl Iterator<Item = TaskState> + 'a {
        self.tasks
            .iter()
            .filter(move |(_, s)| **s == stage)
            .map(move |(name, _)| states.get(name).copied().unwrap_or(TaskState::Pending))
    }

    fn has(&self, stage: Stage) -> bool {
        self.tasks.values().any(|s| *s == stage)
    }

    fn next_state(&self, states: &BTreeMap<String, TaskState>) -> State {
        use Stage::*;
        let non_poststop_dead = self
            .tasks
            .iter()
            .filter(|(_, s)| **s != Poststop)
            .all(|(n, _)| {
                states
                    .get(n)
                    .copied()
                    .unwrap_or(TaskState::Pending)
                    .is_dead()
            });
        if self.state != State::Init && non_poststop_dead {
            return State::Poststop;
        }
        match self.state {
            State::Init => {
                if self.tasks.keys().all(|n| {
                    states.get(n).copied().unwrap_or(TaskState::Pending) == TaskState::Pending
                }) {
                    State::Prestart
                } else {
                    State::Init
                }
            }
            State::Prestart => {
                let ephemeral_done = self.of(states, PrestartEphemeral).all(TaskState::succeeded);
                let sidecars_up = self
                    .of(states, PrestartSidecar)
                    .all(|s| s == TaskState::Running { ready: true });
                if (!self.has(PrestartEphemeral) && !self.has(PrestartSidecar))
                    || (ephemeral_done && sidecars_up)
                {
                    State::Main
                } else {
                    State::Prestart
                }
            }
            State::Main => {
                if !self.has(Main) || self.of(states, Main).all(|s| s != TaskState::Pending) {
                    State::Poststart
                } else {
                    State::Main
                }
            }
            State::Poststart => {
                if !self.has(PoststartEphemeral)
                    || self.of(states, PoststartEphemeral).all(TaskState::is_dead)
                {
                    State::WaitAlloc
                } else {
                    State::Poststart
                }
            }
            State::WaitAlloc | State::Poststop => self.state,
        }
    }

    fn enter(&mut self, state: State) {
        use Stage::*;
        self.state = state;
        let open: &[Stage] = match state {
            State::Init => &[],
            State::Prestart => &[PrestartEphemeral, PrestartSidecar],
            State::Main => &[PrestartSidecar, Main],
            State::Poststart => &[PrestartSidecar, Main, PoststartEphemeral, PoststartSidecar],
            State::WaitAlloc => &[PrestartSidecar, Main, PoststartSidecar],
            State::Poststop => &[Poststop],
        };
        for (stage, gate) in &self.gates {
            if open.contains(stage) {
                gate.open();
            } else {
                gate.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Nomad's coordinator_test.go scenarios, with readiness added.
    use super::*;
    use TaskState::*;

    fn task(name: &str, stage: Stage) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            stage,
        }
    }

    fn coordinator(tasks: &[TaskSpec]) -> (Coordinator, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        (Coordinator::new(tasks, rx), tx)
    }

    fn states(pairs: &[(&str, TaskState)]) -> BTreeMap<String, TaskState> {
        pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    const UP: TaskState = Running { ready: true };
    const OK: TaskState = Dead { failed: false };
    const FAILED: TaskState = Dead { failed: true };

    #[test]
    fn only_a_main_task_starts_at_once() {
        let (mut c, _s) = coordinator(&[task("main", Stage::Main)]);
        assert!(!c.may_start("main"), "init: nothing starts");
        c.task_state_updated(&states(&[("main", Pending)]));
        assert_eq!(c.state(), State::Main, "empty prestart passes through");
        assert!(c.may_start("main"));
    }

    #[test]
    fn prestart_runs_before_main_and_many_init_tasks_all_finish_first() {
        let tasks = [
            task("init1", Stage::PrestartEphemeral),
            task("init2", Stage::PrestartEphemeral),
            task("main", Stage::Main),
        ];
        let (mut c, _s) = coordinator(&tasks);
        c.task_state_updated(&states(&[
            ("init1", Pending),
            ("init2", Pending),
            ("main", Pending),
        ]));
        assert!(c.may_start("init1") && c.may_start("init2") && !c.may_start("main"));
        c.task_state_updated(&states(&[("init1", OK), ("init2", UP), ("main", Pending)]));
        assert!(!c.may_start("main"), "waits for every init task");
        c.task_state_updated(&states(&[("init1", OK), ("init2", OK), ("main", Pending)]));
        assert!(c.may_start("main"));
        assert!(!c.may_start("init1"), "the prestart gate closes");
    }

    #[test]
    fn a_failed_init_task_keeps_main_blocked() {
        let (mut c, _s) = coordinator(&[
            task("init", Stage::PrestartEphemeral),
            task("main", Stage::Main),
        ]);
        c.task_state_updated(&states(&[("init", Pending), ("main", Pending)]));
        c.task_state_updated(&states(&[("init", FAILED), ("main", Pending)]));
        assert!(!c.may_start("main"));
    }

    #[test]
    fn main_waits_for_the_sidecar_to_run_and_be_ready() {
        let (mut c, _s) = coordinator(&[
            task("db", Stage::PrestartSidecar),
            task("main", Stage::Main),
        ]);
        c.task_state_updated(&states(&[("db", Pending), ("main", Pending)]));
        assert!(c.may_start("db") && !c.may_start("main"));
        c.task_state_updated(&states(&[
            ("db", Running { ready: false }),
            ("main", Pending),
        ]));
        assert!(!c.may_start("main"), "running but not ready");
        c.task_state_updated(&states(&[("db", UP), ("main", Pending)]));
        assert!(
            c.may_start("main") && c.may_start("db"),
            "the sidecar gate stays open beside main"
        );
    }

    #[test]
    fn poststart_starts_once_main_runs_and_poststop_after_everything_else() {
        let tasks = [
            task("db", Stage::PrestartSidecar),
            task("main", Stage::Main),
            task("check", Stage::PoststartEphemeral),
            task("cleanup", Stage::Poststop),
        ];
        let (mut c, _s) = coordinator(&tasks);
        let mut st = states(&[
            ("db", Pending),
            ("main", Pending),
            ("check", Pending),
            ("cleanup", Pending),
        ]);
        c.task_state_updated(&st);
        st.insert("db".into(), UP);
        c.task_state_updated(&st);
        assert!(!c.may_start("check"));
        st.insert("main".into(), UP);
        c.task_state_updated(&st);
        assert_eq!(c.state(), State::Poststart);
        assert!(c.may_start("check") && !c.may_start("cleanup"));
        st.insert("check".into(), OK);
        c.task_state_updated(&st);
        assert_eq!(c.state(), State::WaitAlloc);
        st.insert("main".into(), FAILED);
        st.insert("db".into(), OK);
        c.task_state_updated(&st);
        assert_eq!(
            c.state(),
            State::Poststop,
            "poststop runs after a main failure too"
        );
        assert!(c.may_start("cleanup") && !c.may_start("db"));
        assert_eq!(
            c.state().to_string(),
            "poststop",
            "unlike Nomad, poststop prints as poststop"
        );
    }

    #[test]
    fn poststop_is_reached_from_prestart_when_everything_died() {
        let (mut c, _s) = coordinator(&[
            task("init", Stage::PrestartEphemeral),
            task("main", Stage::Main),
            task("cleanup", Stage::Poststop),
        ]);
        c.task_state_updated(&states(&[
            ("init", Pending),
            ("main", Pending),
            ("cleanup", Pending),
        ]));
        c.task_state_updated(&states(&[
            ("init", FAILED),
            ("main", Dead { failed: true }),
            ("cleanup", Pending),
        ]));
        assert_eq!(c.state(), State::Poststop);
    }

    #[test]
    fn restart_goes_back_to_init() {
        let (mut c, _s) = coordinator(&[task("main", Stage::Main)]);
        c.task_state_updated(&states(&[("main", Pending)]));
        c.restart();
        assert_eq!(c.state(), State::Init);
        assert!(!c.may_start("main"));
        c.task_state_updated(&states(&[("main", Pending)]));
        assert!(c.may_start("main"));
    }

    #[test]
    fn restore_rebuilds_each_stage_from_persisted_states() {
        let tasks = [
            task("init", Stage::PrestartEphemeral),
            task("db", Stage::PrestartSidecar),
            task("main", Stage::Main),
            task("check", Stage::PoststartEphemeral),
            task("side", Stage::PoststartSidecar),
            task("cleanup", Stage::Poststop),
        ];
        // Persisted states, the state restore must find, and a task that may start then.
        type Case<'a> = (&'a [(&'a str, TaskState)], State, &'a str);
        let cases: [Case; 5] = [
            (&[("init", UP)], State::Prestart, "init"),
            (&[("init", OK), ("db", UP)], State::Main, "main"),
            (
                &[("init", OK), ("db", UP), ("main", UP)],
                State::Poststart,
                "check",
            ),
            (
                &[
                    ("init", OK),
                    ("db", UP),
                    ("main", UP),
                    ("check", OK),
                    ("side", UP),
                ],
                State::WaitAlloc,
                "side",
            ),
            (
                &[
                    ("init", OK),
                    ("db", OK),
                    ("main", OK),
                    ("check", OK),
                    ("side", OK),
                    ("cleanup", UP),
                ],
                State::Poststop,
                "cleanup",
            ),
        ];
        for (persisted, want, may_start) in cases {
            let (mut c, _s) = coordinator(&tasks);
            c.restore(&states(persisted));
            assert_eq!(c.state(), want, "{persisted:?}");
            assert!(
                c.may_start(may_start),
                "{persisted:?}: {may_start} may start"
            );
        }
        // A sidecar that died with the node must run (and be ready) again before main goes on.
        let (mut c, _s) = coordinator(&tasks);
        c.restore(&states(&[("init", OK), ("db", Pending), ("main", UP)]));
        assert_eq!(c.state(), State::Prestart);
        assert!(c.may_start("db"));
    }

    /// Whether a runner waiting on `task`'s start condition would still be waiting after a
    /// moment (Nomad's requireTaskBlocked / requireTaskAllowed; the clock is paused, so the
    /// moment costs nothing).
    async fn blocked(c: &Coordinator, task: &str) -> bool {
        let wait = c
            .start_condition_for_task(task)
            .expect("a task of the group");
        tokio::time::timeout(std::time::Duration::from_millis(50), wait)
            .await
            .is_err()
    }

    /// A step of a scenario: the states reported, the tasks whose start condition must then be
    /// open, and the state the coordinator must be in.
    type Step = (Vec<(&'static str, TaskState)>, Vec<&'static str>, State);

    /// One scenario: the group's tasks, then its steps.
    struct Scenario {
        name: &'static str,
        tasks: Vec<TaskSpec>,
        steps: Vec<Step>,
    }

    #[tokio::test(start_paused = true)]
    async fn scenarios_open_the_start_conditions_task_runners_wait_on() {
        let scenarios = [
            Scenario {
                name: "prestart only",
                tasks: vec![
                    task("init", Stage::PrestartEphemeral),
                    task("main", Stage::Main),
                ],
                steps: vec![
                    (
                        vec![("init", Pending), ("main", Pending)],
                        vec!["init"],
                        State::Prestart,
                    ),
                    (
                        vec![("init", UP), ("main", Pending)],
                        vec!["init"],
                        State::Prestart,
                    ),
                    (
                        vec![("init", OK), ("main", Pending)],
                        vec!["main"],
                        State::Main,
                    ),
                ],
            },
            Scenario {
                name: "sidecar only",
                tasks: vec![
                    task("side", Stage::PrestartSidecar),
                    task("main", Stage::Main),
                ],
                steps: vec![
                    (
                        vec![("side", Pending), ("main", Pending)],
                        vec!["side"],
                        State::Prestart,
                    ),
                    (
                        vec![("side", Running { ready: false }), ("main", Pending)],
                        vec!["side"],
                        State::Prestart,
                    ),
                    (
                        vec![("side", UP), ("main", Pending)],
                        vec!["side", "main"],
                        State::Main,
                    ),
                ],
            },
            Scenario {
                name: "mixed prestart",
                tasks: vec![
                    task("init", Stage::PrestartEphemeral),
                    task("side", Stage::PrestartSidecar),
                    task("main", Stage::Main),
                ],
                steps: vec![
                    (
                        vec![("init", Pending), ("side", Pending), ("main", Pending)],
                        vec!["init", "side"],
                        State::Prestart,
                    ),
                    (
                        vec![
                            ("init", OK),
                            ("side", Running { ready: false }),
                            ("main", Pending),
                        ],
                        vec!["init", "side"],
                        State::Prestart,
                    ),
                    (
                        vec![("init", OK), ("side", UP), ("main", Pending)],
                        vec!["side", "main"],
                        State::Main,
                    ),
                ],
            },
            Scenario {
                name: "poststart",
                tasks: vec![
                    task("main", Stage::Main),
                    task("check", Stage::PoststartEphemeral),
                ],
                steps: vec![
                    (
                        vec![("main", Pending), ("check", Pending)],
                        vec!["main"],
                        State::Main,
                    ),
                    (
                        vec![("main", UP), ("check", Pending)],
                        vec!["main", "check"],
                        State::Poststart,
                    ),
                    (
                        vec![("main", UP), ("check", OK)],
                        vec!["main"],
                        State::WaitAlloc,
                    ),
                ],
            },
            Scenario {
                name: "poststop",
                tasks: vec![task("main", Stage::Main), task("tidy", Stage::Poststop)],
                steps: vec![
                    (
                        vec![("main", Pending), ("tidy", Pending)],
                        vec!["main"],
                        State::Main,
                    ),
                    (
                        vec![("main", UP), ("tidy", Pending)],
                        vec!["main"],
                        State::WaitAlloc,
                    ),
                    (
                        vec![("main", FAILED), ("tidy", Pending)],
                        vec!["tidy"],
                        State::Poststop,
                    ),
                ],
            },
        ];
        for sc in scenarios {
            let (mut c, _shutdown) = coordinator(&sc.tasks);
            for t in &sc.tasks {
                assert!(
                    blocked(&c, &t.name).await,
                    "{}: init blocks {}",
                    sc.name,
                    t.name
                );
            }
            for (i, (reported, open, want)) in sc.steps.iter().enumerate() {
                c.task_state_updated(&states(reported));
                assert_eq!(c.state(), *want, "{} step {i}", sc.name);
                for t in &sc.tasks {
                    let expect_open = open.contains(&t.name.as_str());
                    assert_eq!(
                        !blocked(&c, &t.name).await,
                        expect_open,
                        "{} step {i}: {} should be {}",
                        sc.name,
                        t.name,
                        if expect_open { "allowed" } else { "blocked" }
                    );
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_runner_is_released_when_its_stage_opens_and_not_after_shutdown() {
        let (mut c, shutdown) = coordinator(&[
            task("init", Stage::PrestartEphemeral),
            task("main", Stage::Main),
        ]);
        c.task_state_updated(&states(&[("init", Pending), ("main", Pending)]));
        let waiting = tokio::spawn(c.start_condition_for_task("main").expect("main"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "main waits for prestart");
        c.task_state_updated(&states(&[("init", OK), ("main", Pending)]));
        tokio::time::timeout(std::time::Duration::from_millis(50), waiting)
            .await
            .expect("released once prestart is done")
            .expect("the runner");
        // After shutdown every gate is inert: a stage that would open lets nobody start (the
        // runners stop on their own shutdown signal, as Nomad's do).
        let (mut c2, shutdown2) = coordinator(&[task("main", Stage::Main)]);
        let _ = shutdown2.send(true);
        c2.task_state_updated(&states(&[("main", Pending)]));
        assert!(
            blocked(&c2, "main").await,
            "an inert gate lets nobody through"
        );
        assert!(!c2.may_start("main"));
        drop(shutdown);
    }
}
