//! Errors in flow definitions and in the inputs given to a flow.

use std::fmt;
use std::path::PathBuf;

/// A flow definition that cannot be used, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The flow file, when the flow came from one.
    pub file: Option<PathBuf>,
    /// The 1-based line in `file`.
    pub line: Option<usize>,
    /// The task the problem is in.
    pub task: Option<String>,
    /// The field the problem is in.
    pub field: Option<String>,
    /// What is wrong (boxed: errors are rare, and results should stay small).
    pub kind: Box<ErrorKind>,
}

/// What is wrong with a flow definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file cannot be read.
    #[error("cannot read flow file: {0}")]
    Io(String),
    /// The TOML does not parse.
    #[error("{0}")]
    Syntax(String),
    /// A key the format does not have.
    #[error("unknown key `{key}`{}", did_you_mean(.suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The closest known key.
        suggestion: Option<String>,
    },
    /// A key that must be there is not.
    #[error("missing key `{0}`")]
    MissingKey(String),
    /// A value of the wrong shape.
    #[error("{0}")]
    Invalid(String),
    /// Two tasks with one name at the same level.
    #[error("duplicate task name `{0}`")]
    DuplicateTask(String),
    /// `after` names a task that is not there.
    #[error("unknown task `{name}`{}", did_you_mean(.suggestion))]
    UnknownTask {
        /// The name as written.
        name: String,
        /// The closest task name.
        suggestion: Option<String>,
    },
    /// The ordering has a cycle.
    #[error("cycle between tasks: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A required value that nothing provides.
    #[error("requires `{0}`, which no task provides and no input supplies")]
    Unresolved(String),
    /// A value provided by two tasks.
    #[error("value `{value}` is provided by both `{first}` and `{second}`")]
    DuplicateProvider {
        /// The value name.
        value: String,
        /// The first provider.
        first: String,
        /// The second provider.
        second: String,
    },
    /// A value that is both an input and provided by a task.
    #[error("value `{value}` is both an input of the flow and provided by task `{task}`")]
    InputShadowed {
        /// The value name.
        value: String,
        /// The task providing it.
        task: String,
    },
    /// A task whose `run` is empty.
    #[error("`run` is empty; give a program and its arguments, like [\"make\", \"build\"]")]
    EmptyRun,
    /// A command given as one string.
    #[error("`{0}` must be an argument list like [\"make\", \"build\"], not a string; for a shell write [\"sh\", \"-c\", \"...\"]")]
    ShellString(String),
    /// A task that says neither what to run nor which flow to include.
    #[error("a task needs `run` (a command) or `flow` (a subflow file)")]
    NothingToRun,
    /// A task with both `run` and `flow`.
    #[error("a task takes either `run` or `flow`, not both")]
    RunAndFlow,
    /// A bad duration.
    #[error("{0}")]
    Duration(#[from] crate::duration::Error),
    /// A subflow file that is not there.
    #[error("subflow file `{0}` does not exist")]
    SubflowMissing(PathBuf),
    /// A subflow that includes itself.
    #[error("subflow includes itself: {}", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> "))]
    SubflowCycle(Vec<PathBuf>),
    /// A subflow's `provides` that none of its tasks provides.
    #[error("subflow provides `{0}`, but none of its tasks does")]
    SubflowProvides(String),
}

fn did_you_mean(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error {
            file: None,
            line: None,
            task: None,
            field: None,
            kind: Box::new(kind),
        }
    }

    pub(crate) fn task(mut self, task: &str) -> Self {
        self.task.get_or_insert_with(|| task.to_string());
        self
    }

    pub(crate) fn field(mut self, field: &str) -> Self {
        self.field.get_or_insert_with(|| field.to_string());
        self
    }

    pub(crate) fn at(mut self, file: Option<&PathBuf>, line: Option<usize>) -> Self {
        if self.file.is_none() {
            self.file = file.cloned();
        }
        if self.line.is_none() {
            self.line = line;
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(task) = &self.task {
            write!(f, "task `{task}`: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for Error {}

/// Inputs given to a flow that do not fit it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Required inputs not given.
    #[error("missing required input{}: {}; pass it with --input NAME=VALUE", if .names.len() > 1 { "s" } else { "" }, .names.join(", "))]
    Missing {
        /// Their names.
        names: Vec<String>,
    },
    /// An input value holding a NUL byte, which no process can receive.
    #[error("input `{name}` holds a NUL byte")]
    Nul {
        /// Its name.
        name: String,
    },
    /// An input the flow does not take.
    #[error("unknown input `{name}`; the flow takes: {}", if .known.is_empty() { "no inputs".to_string() } else { .known.join(", ") })]
    Unknown {
        /// The name given.
        name: String,
        /// The inputs the flow has.
        known: Vec<String>,
    },
}
