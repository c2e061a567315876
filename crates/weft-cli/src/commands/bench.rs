//! `weft bench`: runs the scenarios of `weft-bench` and prints their figures.

use crate::shared::{pretty, Fail};
use clap::Args;
use weft_bench::{Figure, Options, Scenario};

/// `weft bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Runs per scenario; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// A PostgreSQL server for the pg-* scenarios (a URL whose user may create databases;
    /// each run gets a fresh one).
    #[arg(long, env = "WEFT_BENCH_PG")]
    pg: Option<String>,
    /// Measure memory in this process instead of a fresh child (used by the child itself).
    #[arg(long, hide = true)]
    in_process: bool,
}

/// Measures the chosen scenarios; exit code 1 if a median misses its target.
pub(crate) async fn bench(args: BenchArgs) -> Result<u8, Fail> {
    let options = Options {
        repeat: args.repeat,
        pg: args.pg,
        in_process: args.in_process,
        weft: std::env::current_exe()
            .map_err(|e| Fail::Other(format!("cannot find the weft binary: {e}")))?,
    };
    let mut figures = Vec::new();
    let mut measured = Ok(());
    for scenario in args.scenario.expand() {
        match weft_bench::measure(scenario, &options).await {
            Ok(figure) => {
                if !args.json {
                    print_figure(&figure);
                }
                figures.push(figure);
            }
            Err(e) => {
                measured = Err(e);
                break;
            }
        }
    }
    // The pg-* scenarios' databases go, whether or not every scenario could be measured.
    let dropped = weft_bench::drop_databases(&options).await;
    if let (Err(_), Err(e)) = (&measured, &dropped) {
        eprintln!("the benchmark's databases could not all be dropped: {e}");
    }
    measured.and(dropped).map_err(|e| match e {
        weft_bench::Error::Input(m) => Fail::Input(m),
        weft_bench::Error::Store(e) => e.into(),
        weft_bench::Error::Failed(m) => Fail::Other(m),
    })?;
    if args.json {
        let rows: Vec<serde_json::Value> = figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "scenario": f.name, "unit": f.unit, "median": f.median(), "samples": f.samples,
                    "target": f.target, "meets_target": f.meets(),
                })
            })
            .collect();
        outln!("{}", pretty(&rows)?);
    }
    Ok(if figures.iter().all(Figure::meets) {
        0
    } else {
        1
    })
}

fn print_figure(f: &Figure) {
    let min = f.samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = f.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let cmp = if f.higher_is_better { "≥" } else { "≤" };
    outln!(
        "{:<18} median {:>12.1} {:<8} (range {:.1}–{:.1}, n={})  target {cmp} {}  {}",
        f.name,
        f.median(),
        f.unit,
        min,
        max,
        f.samples.len(),
        f.target,
        if f.meets() { "ok" } else { "MISSED" }
    );
}
