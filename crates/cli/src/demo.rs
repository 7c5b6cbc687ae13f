//! `polyrepl demo`: the seed project's scheduler, done properly. Brings the stack up (when it is not
//! already answering), creates the demo schema, runs one pipeline into MongoDB, Redis and Cassandra, and
//! every interval inserts a timestamp + UUID row into MySQL, then prints the latest rows of each side and
//! whether each sink holds exactly what MySQL holds for them (read back through that sink's own mapping).

use crate::stack_cmd::StackOpts;
use anyhow::{Context, Result};
use clap::Args;
use mysql_async::prelude::Queryable;
use polyrepl_core::{Row, TableId, TableSchema, Value};
use polyrepl_engine::control::Inbox;
use polyrepl_engine::{Metrics, RunConfig};
use polyrepl_stack::init::{DEMO_DATABASE, DEMO_TABLE};
use polyrepl_stack::local::LocalBackend;
use polyrepl_stack::{probe, Service};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct DemoArgs {
    /// Seconds between two writes.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// Stop after this many loops [default: run until Ctrl-C].
    #[arg(long)]
    loops: Option<u64>,
    /// How many of the latest rows to print and verify on each side.
    #[arg(long, default_value_t = 5)]
    rows: usize,
    /// Longest wait for a sink to show a write before the loop is reported as not verified.
    #[arg(long, default_value_t = 10.0)]
    verify_timeout: f64,
    /// Sinks to replicate into (comma-separated): mongo, redis, cassandra.
    #[arg(long, value_delimiter = ',', default_value = "mongo,redis,cassandra", value_parser = ["mongo", "redis", "cassandra"])]
    sinks: Vec<String>,
    /// Print the log lines on stderr, between the loops, instead of into <state dir>/demo.log.
    #[arg(long, short)]
    verbose: bool,
    /// Serve the live web view (and /status, /metrics) on this address; `off` serves nothing
    /// [default: 127.0.0.1:8080, or a free port when that one is taken].
    #[arg(long = "http-addr", value_name = "HOST:PORT")]
    http_addr: Option<String>,
    #[command(flatten)]
    stack: StackOpts,
}

impl DemoArgs {
    /// Where the demo's log lines go: a file in the state directory, so that the terminal shows the
    /// loops alone; `None` with --verbose (stderr, as every other command).
    pub fn log_file(&self) -> Option<PathBuf> {
        (!self.verbose).then(|| self.stack.config().state_dir.join("demo.log"))
    }
}

/// One sink of the demo: its short name, URL and service.
fn demo_sinks(args: &DemoArgs, stack: &polyrepl_stack::StackConfig) -> Vec<(&'static str, String, Service)> {
    let all = [
        ("mongo", format!("mongodb://127.0.0.1:{}", stack.mongo_port), Service::Mongo),
        ("redis", format!("redis://127.0.0.1:{}", stack.redis_port), Service::Redis),
        ("cassandra", format!("cassandra://127.0.0.1:{}", stack.cassandra_port), Service::Cassandra),
    ];
    all.into_iter().filter(|(n, _, _)| args.sinks.iter().any(|s| s == n)).collect()
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let log_file = args.log_file();
    if let Some(path) = &log_file {
        eprintln!("demo: logs go to {} (--verbose prints them here)", path.display());
    }
    // The error itself always reaches the terminal (main prints it); the log has what led to it.
    demo(args).await.map_err(|e| match &log_file {
        Some(path) => e.context(format!("the demo stopped (its log: {})", path.display())),
        None => e,
    })
}

/// Progress of the set-up: on stderr with --verbose, else into the log with the rest.
fn progress(verbose: bool, line: &str) {
    if verbose {
        eprintln!("{line}");
    } else {
        tracing::info!("{line}");
    }
}

/// Where the demo serves its web view unless told otherwise.
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// Serves the web view of the demo's run: on `addr` when given, else on [`DEFAULT_HTTP_ADDR`] or, when
/// that is taken (another demo, another program), on any free port. Returns the page's URL.
async fn web_view(addr: Option<&str>, metrics: Arc<Metrics>) -> Result<Option<String>> {
    let listener = match addr {
        Some("off") => return Ok(None),
        Some(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on --http-addr {addr}: is the address free and local?"))?,
        None => match tokio::net::TcpListener::bind(DEFAULT_HTTP_ADDR).await {
            Ok(listener) => listener,
            Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot listen on any local port for the web view (--http-addr off serves none)")?,
        },
    };
    let local = crate::http::serve_on(listener, metrics, None)?;
    Ok(Some(format!("http://{local}/")))
}

async fn demo(args: DemoArgs) -> Result<ExitCode> {
    // The page is up first: it shows the run as soon as the stack is, and stdout keeps the loops alone.
    let metrics = Arc::new(Metrics::default());
    if let Some(url) = web_view(args.http_addr.as_deref(), metrics.clone()).await? {
        eprintln!("demo: live view at {url}");
    }
    let mut stack = args.stack.config();
    let sinks = demo_sinks(&args, &stack);
    stack.services = std::iter::once(Service::Mysql).chain(sinks.iter().map(|s| s.2)).collect();
    let mut missing = Vec::new();
    for &s in &stack.services {
        if probe::version(&stack, s).await.is_err() {
            missing.push(s);
        }
    }
    if !missing.is_empty() {
        eprintln!("starting the stack ({})", missing.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "));
        let mut up = stack.clone();
        up.services = missing;
        LocalBackend::new(up).up(&|l| progress(args.verbose, &format!("  {l}"))).await?;
    }
    for line in polyrepl_stack::init::init(&stack).await? {
        progress(args.verbose, &format!("init: {line}"));
    }

    let source = stack.mysql_connect_url().replacen("?", &format!("/{DEMO_DATABASE}?"), 1);
    let cfg = RunConfig {
        name: "demo".into(),
        server_id: 4_200_001,
        // The demo writes one row per loop: apply it at once rather than waiting for company.
        batch_delay_ms: 10,
        ..RunConfig::new(
            source.clone(),
            vec![format!("{DEMO_DATABASE}.{DEMO_TABLE}")],
            sinks.iter().map(|s| s.1.clone()).collect(),
        )
    };
    let prepared = polyrepl_engine::prepare(&cfg).await?;
    let table = prepared
        .tables
        .iter()
        .find(|t| t.id == TableId::new(DEMO_DATABASE, DEMO_TABLE))
        .cloned()
        .context("the demo table")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut pipeline = tokio::spawn(polyrepl_engine::run(cfg, prepared, metrics, stop_rx, Inbox::none()));

    let mut readers = Vec::new();
    for (name, url, _) in &sinks {
        readers.push((*name, polyrepl_engine::open_sink(url, "demo-verify").await?));
    }
    let mut mysql = mysql_async::Conn::from_url(&source).await.context("connecting to MySQL for the demo writer")?;
    mysql.query_drop("SET time_zone = '+00:00'").await?;

    let interval = Duration::from_secs_f64(args.interval.max(0.01));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u64;
    let mut loop_no = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut ctrl_c => { eprintln!("stopping…"); break; }
            r = &mut pipeline => { r??; anyhow::bail!("the pipeline stopped"); }
        }
        loop_no += 1;
        let now = chrono::Utc::now();
        let ts = now.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
        let uuid = uuid::Uuid::new_v4().to_string();
        mysql
            .exec_drop(format!("INSERT INTO {DEMO_TABLE} (ts, uuid) VALUES (?, ?)"), (ts.as_str(), uuid.as_str()))
            .await?;
        let written = Instant::now();

        let source_rows = latest_rows(&mut mysql, &table, args.rows).await?;
        let keys: Vec<Vec<Value>> = source_rows.iter().map(|r| polyrepl_core::Change::key_of(&table, r)).collect();
        let deadline = written + Duration::from_secs_f64(args.verify_timeout);
        let mut sides = Vec::new();
        for (name, reader) in readers.iter_mut() {
            let (rows, lag) = loop {
                let rows = reader.read_rows(&table, &keys).await?;
                let same = rows.iter().zip(&source_rows).all(|(s, m)| s.as_ref() == Some(m));
                if same || Instant::now() > deadline {
                    break (rows, same.then(|| written.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            sides.push((*name, rows, lag));
        }

        println!("--- LOOP: {} ---", now.format("%a %b %e %H:%M:%S %Y"));
        println!("Data in mysql:");
        for r in source_rows.iter().rev() {
            println!("{}", show(r));
        }
        for (name, rows, _) in &sides {
            println!("Data in {name}:");
            for r in rows.iter().rev() {
                println!("{}", r.as_ref().map(show).unwrap_or_else(|| "(missing)".into()));
            }
        }
        for (name, _, lag) in &sides {
            match lag {
                Some(l) => println!("verified: {name} ✔ (lag {:.2} s)", l.as_secs_f64()),
                None => {
                    failures += 1;
                    println!("verified: {name} ✘ (not equal after {:.0} s)", args.verify_timeout);
                }
            }
        }
        if args.loops.is_some_and(|n| loop_no >= n) {
            break;
        }
    }
    let _ = stop_tx.send(true);
    if !pipeline.is_finished() {
        pipeline.await??;
    }
    eprintln!("demo stopped after {loop_no} loop(s), {failures} sink check(s) not verified; checkpoints written");
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The latest `n` rows of the demo table, newest first, decoded like the snapshot decodes them.
async fn latest_rows(conn: &mut mysql_async::Conn, table: &TableSchema, n: usize) -> Result<Vec<Row>> {
    let rows: Vec<mysql_async::Row> =
        conn.exec(format!("SELECT id, ts, uuid FROM {DEMO_TABLE} ORDER BY id DESC LIMIT {n}"), ()).await?;
    rows.into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .zip(&table.columns)
                .map(|(v, c)| {
                    polyrepl_mysql::decode::from_protocol(c, v).map_err(|e| anyhow::anyhow!("{}: {e}", c.name))
                })
                .collect::<Result<Row>>()
        })
        .collect()
}

/// `2025-11-29 12:00:00.123456  6f1c…` (every column but the key, as MySQL prints it).
fn show(row: &Row) -> String {
    row.iter().skip(1).map(|v| v.mysql_text().unwrap_or_else(|| "NULL".into())).collect::<Vec<_>>().join("  ")
}
