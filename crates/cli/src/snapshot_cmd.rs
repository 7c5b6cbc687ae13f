//! `polyrepl snapshot --table db.t`: asks a running `polyrepl run` to copy tables again while it keeps
//! streaming (`POST /snapshot` on the run's `--metrics-addr`).

use crate::http::client::post;
use anyhow::{Context, Result};
use clap::Args;
use std::process::ExitCode;

/// Flags of `polyrepl snapshot`.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// The HTTP address of the running `polyrepl run` (its --metrics-addr), e.g. 127.0.0.1:9100.
    #[arg(long = "metrics-addr", env = "POLYREPL_METRICS_ADDR")]
    pub metrics_addr: String,
    /// A table to copy again, `db.table` (repeat the flag, or separate with commas). It must be one the
    /// running pipeline replicates.
    #[arg(long = "table", value_delimiter = ',', required = true)]
    pub tables: Vec<String>,
}

pub async fn run(args: SnapshotArgs) -> Result<ExitCode> {
    let body = serde_json::json!({ "tables": args.tables }).to_string();
    let (status, answer) = post(&args.metrics_addr, "/snapshot", &body).await?;
    let answer: serde_json::Value = serde_json::from_str(&answer).with_context(|| {
        format!("{} answered {status} with something that is not JSON: {answer}", args.metrics_addr)
    })?;
    match status {
        200 => {
            for table in answer["copying"].as_array().into_iter().flatten() {
                println!("copying {} again (online: the pipeline keeps streaming)", table.as_str().unwrap_or("?"));
            }
            println!("progress: polyrepl_online_copy_rows on http://{}/metrics, or /status", args.metrics_addr);
            Ok(ExitCode::SUCCESS)
        }
        202 => {
            println!("{}", answer["note"].as_str().unwrap_or("queued"));
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("refused ({status}): {}", answer["error"].as_str().unwrap_or("no reason given"));
            Ok(ExitCode::from(1))
        }
    }
}
