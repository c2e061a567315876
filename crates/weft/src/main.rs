//! The `weft` command: parses arguments, calls the library crates, formats their answers.
//!
//! Exit codes: 0 the plan succeeded (or the command did its job); 1 the plan ended in error;
//! 2 invalid input (flow file, arguments, a plan another process executes); 3 the store cannot
//! be reached or used; 4 the plan paused for an operator; 130 and 143 interrupted by SIGINT
//! and SIGTERM; 141 stdout was a closed pipe.

/// `println!` that ends the command quietly when stdout is a closed pipe (`weft plans list |
/// head`), as any Unix tool ends: exit code 141, as if killed by SIGPIPE.
macro_rules! outln {
    ($($t:tt)*) => { $crate::write_stdout(format_args!($($t)*), true) };
}

/// `print!`, likewise.
macro_rules! out {
    ($($t:tt)*) => { $crate::write_stdout(format_args!($($t)*), false) };
}

mod bench;
mod cli;
mod event;
mod owner;
mod plans;
mod progress;
mod run;
mod serve;
mod status;
mod view;

use clap::Parser;
use std::process::ExitCode;

/// A failure of a command, with the exit code it maps to.
#[derive(Debug)]
pub enum Fail {
    /// Bad input: exit code 2.
    Input(String),
    /// The store cannot be used: exit code 3.
    Store(String),
    /// Anything else: exit code 1.
    Other(String),
}

impl Fail {
    fn code(&self) -> u8 {
        match self {
            Fail::Input(_) => 2,
            Fail::Store(_) => 3,
            Fail::Other(_) => 1,
        }
    }
}

impl From<weft_store::Error> for Fail {
    fn from(e: weft_store::Error) -> Self {
        match e {
            e if e.is_unavailable() => Fail::Store(e.to_string()),
            e @ (weft_store::Error::NotFound(_)
            | weft_store::Error::Ambiguous(_)
            | weft_store::Error::BadUrl(_)
            | weft_store::Error::NoStore(_)
            | weft_store::Error::Locked { .. }
            | weft_store::Error::Unsupported(_)) => Fail::Input(e.to_string()),
            e => Fail::Other(e.to_string()),
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Input(m) | Fail::Store(m) | Fail::Other(m) => f.write_str(m),
        }
    }
}

/// Writes to stdout (and a newline); a closed pipe ends the process quietly.
pub fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
    }
}

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let json = args.json();
    match runtime.block_on(cli::dispatch(args)) {
        Ok(code) => ExitCode::from(code),
        Err(fail) => {
            if json {
                // Scripts asked for JSON: the error is JSON too, on stderr.
                let kind = match fail {
                    Fail::Input(_) => "input",
                    Fail::Store(_) => "store",
                    Fail::Other(_) => "failed",
                };
                let error = serde_json::json!({
                    "error": { "kind": kind, "message": fail.to_string(), "exit_code": fail.code() }
                });
                eprintln!("{error}");
            } else {
                eprintln!("error: {fail}");
            }
            ExitCode::from(fail.code())
        }
    }
}
