//! `weft bench`: placeholder replaced below.
use crate::Fail;
use clap::Args;

/// `weft bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs a benchmark.
pub async fn run(_args: BenchArgs) -> Result<u8, Fail> {
    Ok(0)
}
