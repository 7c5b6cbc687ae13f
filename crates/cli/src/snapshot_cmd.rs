//! `polyrepl snapshot --table db.t`: asks a running `polyrepl run` to copy tables again while it keeps
//! streaming (`POST /snapshot` on the run's `--metrics-addr`).
//!
//! The request is one small HTTP/1.1 POST on a local address: written by hand on a tokio socket rather
//! than pulling an HTTP client crate into the binary for it.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// POSTs a JSON `body` to `path` on `addr`; returns the status code and the response body.
async fn post(addr: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await.with_context(|| {
            format!("cannot reach a running polyrepl at {addr}: is `polyrepl run --metrics-addr {addr}` running?")
        })?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .with_context(|| format!("{addr} did not answer within 60 s"))??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()) else {
        bail!("{addr} did not answer with HTTP: {head}");
    };
    Ok((status, body.to_string()))
}
