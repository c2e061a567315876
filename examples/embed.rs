//! weft inside an application: typed Rust tasks and a command in one flow, on a SQLite file,
//! surviving `kill -9`. The README's embedding example; an integration test runs it.
//!
//! ```sh
//! cargo run -p weft --example embed -- app.db submit https://example.com   # prints the plan id
//! cargo run -p weft --example embed -- app.db await PLAN_ID                 # its result, anywhere
//! ```
//!
//! Kill the first mid-plan and start either again: the plan is taken up where it stopped —
//! `fetch` (done) is not run again, `count` (idempotent) is.

use serde::{Deserialize, Serialize};
use weft::prelude::*;

/// `fetch`'s input: the flow's input `url`.
#[derive(Serialize, Deserialize)]
struct Page {
    url: String,
}

/// `fetch`'s output, `count`'s input.
#[derive(Serialize, Deserialize)]
struct Fetched {
    body: String,
    bytes: u64,
}

/// `count`'s output.
#[derive(Serialize, Deserialize)]
struct Counted {
    words: u64,
}

/// What the application reads back: values provided by the steps, by name.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// From `fetch`.
    pub(crate) bytes: u64,
    /// From `count`.
    pub(crate) words: u64,
    /// From the `archive` command.
    pub(crate) archived: bool,
}

/// Appends a line to `$EMBED_LOG`, if set: the tests count what ran.
fn log(line: &str) {
    if let Ok(path) = std::env::var("EMBED_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The tasks and the flow.
fn flow() -> Result<(Registry, Flow), weft::Error> {
    let mut tasks = Registry::new();
    let fetch = tasks.add(
        "fetch",
        "1",
        typed_fn(|page: Page, _ctx| async move {
            log("fetch");
            let body = format!("the page at {} has five words", page.url);
            Ok(Fetched {
                bytes: body.len() as u64,
                body,
            })
        }),
    );
    let count = tasks.add(
        "count",
        "1",
        typed_fn(|page: Fetched, ctx: Context| async move {
            log("count");
            // Held while `$EMBED_HOLD` exists, so that a test can kill the process here; a
            // halt or shutdown cancels the wait.
            while std::env::var("EMBED_HOLD").is_ok_and(|p| std::path::Path::new(&p).exists()) {
                tokio::select! {
                    () = ctx.cancelled() => return Err(Failure::new("stopped", "asked to stop")),
                    () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                }
            }
            Ok(Counted {
                words: page.body.split_whitespace().count() as u64,
            })
        }),
    );
    let flow = FlowBuilder::linear("wordcount")
        .input("url", None)
        .step("fetch", &fetch, |t| t)
        .step("count", &count, |t| t.idempotent(true))
        .command(
            "archive",
            Command::new(["sh", "-c", r#"echo '{"archived": true}'"#]),
            |t| t.provides(["archived"]),
        )
        .build()?;
    Ok((tasks, flow))
}

/// `DB submit URL` or `DB await PLAN_ID`; prints `plan ID`, then `result JSON`.
pub(crate) async fn run(args: &[String]) -> Result<(), weft::Error> {
    let [db, what, arg] = args else {
        return Err(weft::Error::Input(
            "usage: embed DB submit URL | embed DB await PLAN_ID".into(),
        ));
    };
    let (tasks, flow) = flow()?;
    let engine = Engine::builder(db.as_str())
        .name("embed-example")
        .registry(tasks)
        .start()
        .await?;
    let plan = match what.as_str() {
        "submit" => engine.submit(&flow, Page { url: arg.clone() }).await?,
        "await" => engine.handle(
            arg.parse()
                .map_err(|e| weft::Error::Input(format!("`{arg}` is no plan id: {e}")))?,
        ),
        other => return Err(weft::Error::Input(format!("unknown command `{other}`"))),
    };
    println!("plan {}", plan.id());
    let summary: Summary = plan.result().await?;
    println!(
        "result {}",
        serde_json::to_string(&summary).map_err(|e| weft::Error::Output(e.to_string()))?
    );
    engine.shutdown().await
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
