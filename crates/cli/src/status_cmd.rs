//! `polyrepl status --http-addr HOST:PORT`: a running pipeline's `/status`, as tables for people or as
//! it is (`--json`), with an exit code for scripts and health checks.

use crate::http::client;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Flags of `polyrepl status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The HTTP address of the running `polyrepl run` (its --http-addr), e.g. 127.0.0.1:9187.
    /// `--metrics-addr` (and POLYREPL_METRICS_ADDR) is the older name.
    #[arg(long = "http-addr", visible_alias = "metrics-addr", value_name = "HOST:PORT", env = "POLYREPL_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Print the pipeline's /status JSON as it answered (one reading, no rates); the exit code is the same.
    #[arg(long)]
    json: bool,
    /// Seconds between the two readings changes/s is measured over; 0 reads once and shows no rates.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    interval: f64,
}

/// A sink state that means "applying as it should"; anything else (starting, retrying, failed) is not.
fn healthy_state(state: &str) -> bool {
    matches!(state, "ok" | "streaming")
}

pub async fn run(args: StatusArgs) -> Result<ExitCode> {
    let addr = client::pipeline_addr(args.http_addr)?;
    let (first_body, first) = read(&addr).await?;
    let first_at = Instant::now();
    if args.json {
        println!("{}", first_body.trim_end());
        return Ok(exit_code(&first));
    }
    let (status, rates) = if args.interval > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.interval)).await;
        let (_, second) = read(&addr).await?;
        let rates = rates(&first, &second, first_at.elapsed().as_secs_f64());
        (second, Some(rates))
    } else {
        (first, None)
    };
    print!("{}", render(&status, rates.as_ref()));
    Ok(exit_code(&status))
}

/// One reading of `/status`: the body as it came, and parsed.
async fn read(addr: &str) -> Result<(String, Value)> {
    let (code, body) = client::get(addr, "/status", Duration::from_secs(10)).await?;
    if code != 200 {
        bail!("{addr} answered {code} to GET /status (is it a polyrepl run's --http-addr?): {body}");
    }
    let value: Value = serde_json::from_str(&body)
        .with_context(|| format!("{addr} answered GET /status with something that is not JSON: {body}"))?;
    if !value["sinks"].is_array() {
        bail!("{addr} answered GET /status without a list of sinks (is it a polyrepl run's --http-addr?): {body}");
    }
    Ok((body, value))
}

/// The sinks that are not healthy, with their state.
fn unhealthy(status: &Value) -> Vec<(String, String)> {
    sinks(status)
        .filter(|(_, s)| !healthy_state(str_of(&s["state"])))
        .map(|(name, s)| (name.to_string(), str_of(&s["state"]).to_string()))
        .collect()
}

/// 0 when there are sinks and every one is healthy, 1 otherwise.
fn exit_code(status: &Value) -> ExitCode {
    let none = sinks(status).next().is_none();
    if none || !unhealthy(status).is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn sinks(status: &Value) -> impl Iterator<Item = (&str, &Value)> {
    status["sinks"].as_array().into_iter().flatten().map(|s| (str_of(&s["name"]), s))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// Changes per second between two readings, per sink (table `None`) and per sink and table.
type Rates = BTreeMap<(String, Option<String>), f64>;

fn rates(before: &Value, after: &Value, seconds: f64) -> Rates {
    let mut out = Rates::new();
    let seconds = seconds.max(0.001);
    for (name, sink) in sinks(after) {
        let Some((_, old)) = sinks(before).find(|(n, _)| *n == name) else { continue };
        let delta = |new: &Value, old: &Value| new.as_u64().unwrap_or(0).saturating_sub(old.as_u64().unwrap_or(0));
        out.insert((name.to_string(), None), delta(&sink["changes_applied"], &old["changes_applied"]) as f64 / seconds);
        for (table, count) in sink["tables"].as_object().into_iter().flatten() {
            let rate = delta(count, &old["tables"][table]) as f64 / seconds;
            out.insert((name.to_string(), Some(table.clone())), rate);
        }
    }
    out
}

/// The human rendering: the source line, one row per sink, one row per table and sink, and a verdict.
fn render(status: &Value, rates: Option<&Rates>) -> String {
    let rate = |sink: &str, table: Option<&str>| match rates {
        Some(r) => r.get(&(sink.to_string(), table.map(String::from))).map_or("-".into(), |v| format!("{v:.1}")),
        None => "-".into(),
    };
    let source = &status["source"];
    let mut out = format!(
        "source: position {}, {} changes read, {} snapshot rows\n",
        str_of(&source["position"]),
        source["changes_read"].as_u64().unwrap_or(0),
        source["snapshot_rows"].as_u64().unwrap_or(0),
    );
    for copy in source["online_copies"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "online copy: {} ({} rows so far)\n",
            str_of(&copy["table"]),
            copy["rows_copied"].as_u64().unwrap_or(0)
        ));
    }
    out.push('\n');
    let mut rows = Vec::new();
    for (name, s) in sinks(status) {
        rows.push(vec![
            name.to_string(),
            str_of(&s["state"]).to_string(),
            s["lag_seconds"].as_f64().map_or("-".into(), |l| format!("{l:.1} s")),
            rate(name, None),
            s["changes_applied"].as_u64().unwrap_or(0).to_string(),
            s["errors"].as_u64().unwrap_or(0).to_string(),
            str_of(&s["position"]).to_string(),
        ]);
    }
    out.push_str(&table(&["SINK", "STATE", "LAG", "CHANGES/S", "CHANGES", "ERRORS", "POSITION"], rows));
    let mut rows = Vec::new();
    for (name, s) in sinks(status) {
        for (t, count) in s["tables"].as_object().into_iter().flatten() {
            rows.push(vec![t.clone(), name.to_string(), rate(name, Some(t)), count.as_u64().unwrap_or(0).to_string()]);
        }
    }
    if !rows.is_empty() {
        rows.sort();
        out.push('\n');
        out.push_str(&table(&["TABLE", "SINK", "CHANGES/S", "CHANGES"], rows));
    }
    out.push('\n');
    let bad = unhealthy(status);
    if sinks(status).next().is_none() {
        out.push_str("not healthy: the pipeline reports no sink yet\n");
    } else if bad.is_empty() {
        out.push_str("healthy: every sink is ok\n");
    } else {
        let list: Vec<String> = bad.iter().map(|(n, s)| format!("{n} is {s}")).collect();
        out.push_str(&format!("not healthy: {}\n", list.join(", ")));
    }
    out
}

/// Left-aligned columns, two spaces apart.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(redis_state: &str, mongo_changes: u64) -> Value {
        serde_json::json!({
            "source": {"position": "0-1-42", "changes_read": 40, "snapshot_rows": 10, "online_copies": []},
            "sinks": [
                {"name": "mongodb://h:1", "state": "ok", "position": "0-1-42", "changes_applied": mongo_changes,
                 "errors": 0, "lag_seconds": 1.5, "tables": {"d.t": mongo_changes}},
                {"name": "redis://h:2", "state": redis_state, "position": null, "changes_applied": 0,
                 "errors": 3, "lag_seconds": 9.0, "tables": {}},
            ]
        })
    }

    #[test]
    fn every_sink_and_table_is_shown_with_its_rate_and_the_verdict() {
        let (before, after) = (sample("ok", 10), sample("retrying", 30));
        let rates = rates(&before, &after, 2.0);
        let text = render(&after, Some(&rates));
        assert!(text.contains("source: position 0-1-42, 40 changes read, 10 snapshot rows"), "{text}");
        let mongo = text.lines().find(|l| l.starts_with("mongodb://h:1")).unwrap();
        assert_eq!(
            mongo.split_whitespace().collect::<Vec<_>>(),
            ["mongodb://h:1", "ok", "1.5", "s", "10.0", "30", "0", "0-1-42"]
        );
        let redis = text.lines().find(|l| l.starts_with("redis://h:2")).unwrap();
        assert!(redis.contains("retrying") && redis.ends_with('-'), "{redis}");
        let table = text.lines().find(|l| l.starts_with("d.t")).unwrap();
        assert_eq!(table.split_whitespace().collect::<Vec<_>>(), ["d.t", "mongodb://h:1", "10.0", "30"]);
        assert!(text.ends_with("not healthy: redis://h:2 is retrying\n"), "{text}");
        assert_eq!(exit_code(&after), ExitCode::from(1));
        assert_eq!(exit_code(&sample("ok", 1)), ExitCode::SUCCESS);
        assert!(render(&sample("ok", 1), None).ends_with("healthy: every sink is ok\n"));
        assert_eq!(exit_code(&serde_json::json!({"sinks": []})), ExitCode::from(1));
    }
}
