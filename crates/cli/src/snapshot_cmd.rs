//! `polyrepl snapshot --table db.t`: asks a running `polyrepl run` to copy tables again while it keeps
//! streaming (`POST /snapshot` on the run's `--http-addr`).

use crate::http::client::post;
use anyhow::{Context, Result};
use clap::Args;
use std::process::ExitCode;

/// Flags of `polyrepl snapshot`.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// The HTTP address of the running `polyrepl run` (its --http-addr), e.g. 127.0.0.1:9100.
    /// `--metrics-addr` (and POLYREPL_METRICS_ADDR) is the older name.
    #[arg(long = "http-addr", visible_alias = "metrics-addr", value_name = "HOST:PORT", env = "POLYREPL_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// A table to copy again, `db.table` (repeat the flag, or separate with commas). It must be one the
    /// running pipeline replicates.
    #[arg(long = "table", value_delimiter = ',', required = true)]
    pub tables: Vec<String>,
}

pub async fn run(args: SnapshotArgs) -> Result<ExitCode> {
    let addr = crate::http::client::pipeline_addr(args.http_addr)?;
    let body = serde_json::json!({ "tables": args.tables }).to_string();
    let (status, answer) = post(&addr, "/snapshot", &body).await?;
    let answer: serde_json::Value = serde_json::from_str(&answer)
        .with_context(|| format!("{} answered {status} with something that is not JSON: {answer}", addr))?;
    match status {
        200 => {
            for table in answer["copying"].as_array().into_iter().flatten() {
                println!("copying {} again (online: the pipeline keeps streaming)", table.as_str().unwrap_or("?"));
            }
            println!("progress: polyrepl_online_copy_rows on http://{}/metrics, or /status", addr);
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
