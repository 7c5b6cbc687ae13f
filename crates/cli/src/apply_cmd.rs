//! `polyrepl apply`: one worker of a consumer group applying change events from Kafka to the sinks
//! (see `polyrepl_engine::apply`).

use anyhow::{bail, Result};
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `polyrepl apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The Kafka brokers the change events are in: kafka://HOST:PORT[,HOST:PORT…].
    #[arg(long = "source", env = "POLYREPL_APPLY_SOURCE")]
    pub source: String,
    /// The topics to read, a glob: `<topic prefix>.<db>.<table>` as `polyrepl run --sink kafka://…`
    /// (or Debezium's MySQL connector with the JSON converter) writes them.
    #[arg(long = "topics", env = "POLYREPL_TOPICS", default_value = "polyrepl.*")]
    pub topics: String,
    /// The consumer group. Start several workers with the same group (on several machines): Kafka
    /// spreads the partitions over them and moves a stopped worker's partitions to the others.
    #[arg(long = "group", env = "POLYREPL_GROUP", default_value = "polyrepl-apply")]
    pub group: String,
    /// The MySQL/MariaDB source the events came from, read for the tables' schemas only:
    /// mysql://USER:PASS@HOST:PORT.
    #[arg(long = "schema-source", env = "POLYREPL_SCHEMA_SOURCE")]
    pub schema_source: String,
    /// Tables to apply, `db.table` or `db.*` (comma-separated or repeated); events of other tables are
    /// skipped.
    #[arg(long = "tables", env = "POLYREPL_TABLES", value_delimiter = ',', required = true)]
    pub tables: Vec<String>,
    /// Tables to leave out, same forms as --tables.
    #[arg(long = "exclude", env = "POLYREPL_EXCLUDE", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// A sink to apply to (repeat for several): mongodb://…, redis://…, cassandra://…, kafka://….
    #[arg(long = "sink", env = "POLYREPL_SINKS", value_delimiter = ',', required = true)]
    pub sinks: Vec<String>,
    /// Events of one partition applied together at most.
    #[arg(long = "batch-events", default_value_t = 1000)]
    pub batch_events: usize,
    /// How long (milliseconds) an event may wait for more before its batch is applied.
    #[arg(long = "batch-delay-ms", default_value_t = 50)]
    pub batch_delay_ms: u64,
    /// What to do with a row a sink cannot hold: stop, skip or dead-letter (as `polyrepl run`).
    #[arg(long = "on-unmappable", default_value = "stop")]
    pub on_unmappable: String,
    /// Serve /metrics (Prometheus) and /status (JSON) here, as `polyrepl run` does; read them with
    /// `polyrepl status --http-addr HOST:PORT`.
    #[arg(
        long = "http-addr",
        visible_alias = "metrics-addr",
        value_name = "HOST:PORT",
        env = "POLYREPL_APPLY_HTTP_ADDR"
    )]
    pub http_addr: Option<String>,
}

pub async fn run(args: ApplyArgs, shutdown: tokio::sync::watch::Receiver<bool>) -> Result<ExitCode> {
    if args.batch_events == 0 {
        bail!("--batch-events must be 1 or more");
    }
    let args_http_addr = args.http_addr.clone();
    let cfg = polyrepl_engine::apply::ApplyConfig {
        source: args.source,
        topics: args.topics,
        group: args.group,
        schema_source: args.schema_source,
        tables: args.tables,
        exclude: args.exclude,
        sinks: args.sinks,
        batch_events: args.batch_events,
        batch_delay: Duration::from_millis(args.batch_delay_ms),
        on_unmappable: args.on_unmappable.parse().map_err(|e: String| anyhow::anyhow!(e))?,
    };
    let metrics = std::sync::Arc::new(polyrepl_engine::Metrics::default());
    if let Some(addr) = &args_http_addr {
        crate::http::serve(addr, metrics.clone(), None).await?;
    }
    polyrepl_engine::apply::apply(cfg, metrics, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
