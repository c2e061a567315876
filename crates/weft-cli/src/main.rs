//! The `weft` command: parses arguments, calls the library crates, formats their answers.
//!
//! Exit codes: 0 the plan succeeded (or the command did its job); 1 the plan ended in error;
//! 2 invalid input (flow file, arguments, a plan another process executes); 3 the store cannot
//! be reached or used; 4 the plan paused for an operator; 130 and 143 interrupted by SIGINT
//! and SIGTERM; 141 stdout was a closed pipe.

/// `println!` that ends the command quietly when stdout is a closed pipe (`weft plans list |
/// head`), as any Unix tool ends: exit code 141, as if killed by SIGPIPE.
macro_rules! outln {
    ($($t:tt)*) => { $crate::shared::write_stdout(format_args!($($t)*), true) };
}

/// `print!`, likewise.
macro_rules! out {
    ($($t:tt)*) => { $crate::shared::write_stdout(format_args!($($t)*), false) };
}

mod cli;
mod commands;
mod shared;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    args.init_logging();
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
                let error = serde_json::json!({
                    "error": { "kind": fail.kind(), "message": fail.to_string(), "exit_code": fail.code() }
                });
                eprintln!("{error}");
            } else {
                eprintln!("error: {fail}");
            }
            ExitCode::from(fail.code())
        }
    }
}
