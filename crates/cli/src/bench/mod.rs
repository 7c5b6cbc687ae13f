//! `polyrepl bench`: how close the pipeline runs to each sink's own ingest limit, measured on the stack
//! that `polyrepl stack up` starts.
//!
//! Phases, in this order (each in its own randomly named database `polyrepl_bench_…`, dropped at the
//! end together with everything written into the sinks, unless `--keep`):
//! 1. data: a `snap` table of `--rows` rows and a pre-generated binlog of `--cdc-changes` inserts,
//!    updates and deletes on a `cdc` table, both from a fixed seed ([`data`]);
//! 2. decode: the binlog reader alone over the `cdc` range, end to end, then the same range's raw
//!    events decoded from memory by the same code, CPU only ([`phases::decode`]); `--decode-only` stops here;
//! 3. raw: the `snap` rows, converted up front with each sink's own mapping, written with the sink's best
//!    bulk path by a few concurrent writers, no pipeline in between ([`raw`]);
//!    and the `cdc` range's own changes (same inserts, updates, deletes, same order) written the same
//!    way, the raw rate cdc is compared with ([`raw_cdc`]);
//! 4. snapshot: `run`'s own code (prepare + run, in this process, `--stop-at-end`) copying `snap` into
//!    one sink; timed from after start-up checks and connections to the end ([`phases::snapshot`]);
//! 5. cdc: `run` streaming the `cdc` range into one sink, then into all at once, each sink starting from
//!    a pre-stored streaming checkpoint ([`phases::cdc`]);
//! 6. rss: the real binary as a child, snapshotting `snap` into every selected sink at once; its peak
//!    RSS is its own `VmHWM`, read while it runs; then a child streaming the lag writer's `--lag-rate`
//!    changes/s into them, its `VmRSS` sampled meanwhile ([`rss`]);
//! 7. lag: a writer at a steady `--lag-rate` while `run` streams into one sink, whose applies are
//!    timed against the commit time each row carries ([`lag`]).
//!
//! `--snapshot-parallelism 1,2,4` runs only the data phase and the snapshot phase once per
//! parallelism ([`parallel`]).
//!
//! Every timed phase runs `--rounds` times (fresh pipeline names, sinks reset where the state would
//! change the work) after an untimed warm-up, and the median is reported ([`report`]). Phases 3 to 5
//! alternate per sink: raw round 1, snapshot round 1, raw round 2, … then raw cdc round 1, cdc round
//! 1, …; each ratio is the median of the ratios of rounds of the same number, which a slower spell of
//! the machine (shared, noisy) affects on both sides. Before, all raw rounds ran before all snapshot
//! rounds, and the same binary's Redis snapshot/raw read 0.54 to 0.89 in four runs of one afternoon.

mod data;
mod kafka;
mod lag;
mod parallel;
mod phases;
mod raw;
mod raw_cdc;
mod report;
mod rss;

use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use polyrepl_mysql::source_url::SourceUrl;
use std::process::ExitCode;
use std::time::Instant;

/// A sink that can be benchmarked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// MongoDB (or FerretDB): unordered bulk inserts as the raw path.
    Mongodb,
    /// A second MongoDB-wire server, at --mongo-java (the stack's mongo-java-server, which has a real
    /// `_id` index, unlike FerretDB): the same paths as `mongodb`.
    #[serde(rename = "mongo-java")]
    #[value(name = "mongo-java")]
    MongoJava,
    /// Redis: pipelined HSET as the raw path.
    Redis,
    /// Cassandra: concurrent prepared unlogged batches as the raw path.
    Cassandra,
}

impl SinkKind {
    /// The name used in tables, JSON and pipeline names.
    pub fn label(self) -> &'static str {
        match self {
            SinkKind::Mongodb => "mongodb",
            SinkKind::MongoJava => "mongo-java",
            SinkKind::Redis => "redis",
            SinkKind::Cassandra => "cassandra",
        }
    }
}

/// Flags of `polyrepl bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Source URL (MySQL/MariaDB with binlog ROW/FULL/FULL). The password never appears in output.
    #[arg(long, env = "POLYREPL_SOURCE", hide_env_values = true, default_value = "mysql://root@127.0.0.1:5600")]
    pub source: String,
    /// MongoDB URL.
    #[arg(long, env = "POLYREPL_MONGODB", hide_env_values = true, default_value = "mongodb://127.0.0.1:1800")]
    pub mongodb: String,
    /// URL of the second MongoDB-wire server (`--sinks mongo-java`; `polyrepl stack up --service
    /// mongo-java` starts one).
    #[arg(long, env = "POLYREPL_MONGO_JAVA", hide_env_values = true, default_value = "mongodb://127.0.0.1:1801")]
    pub mongo_java: String,
    /// Redis URL.
    #[arg(long, env = "POLYREPL_REDIS", hide_env_values = true, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Cassandra URL.
    #[arg(long, env = "POLYREPL_CASSANDRA", hide_env_values = true, default_value = "cassandra://127.0.0.1:9042")]
    pub cassandra: String,
    /// Which sinks to bench (comma-separated): mongodb, mongo-java, redis, cassandra. On FerretDB the
    /// cdc ratio is over the raw insert rate: replaying the cdc changes one by one there takes minutes. The memory
    /// phases run one child into all of them, except mongo-java when mongodb is also chosen.
    #[arg(
        long,
        env = "POLYREPL_BENCH_SINKS",
        value_enum,
        value_delimiter = ',',
        default_value = "mongodb,redis,cassandra"
    )]
    pub sinks: Vec<SinkKind>,
    /// Rows of the snapshot table (raw and snapshot phases).
    #[arg(long, env = "POLYREPL_BENCH_ROWS", default_value_t = 200_000)]
    pub rows: usize,
    /// Row changes in the pre-generated binlog (decode and cdc phases).
    #[arg(long, env = "POLYREPL_BENCH_CDC_CHANGES", default_value_t = 50_000)]
    pub cdc_changes: usize,
    /// Timed rounds per phase; the median is reported. A sink's raw and snapshot (raw cdc and cdc) rounds
    /// alternate, and each ratio is the median of the ratios of rounds of the same number.
    #[arg(long, env = "POLYREPL_BENCH_ROUNDS", default_value_t = 3)]
    pub rounds: usize,
    /// Concurrent writers of the raw phase.
    #[arg(long, env = "POLYREPL_BENCH_WRITERS", default_value_t = 4)]
    pub writers: usize,
    /// Changes per second the lag phase's writer commits.
    #[arg(long, env = "POLYREPL_BENCH_LAG_RATE", default_value_t = 5_000)]
    pub lag_rate: u32,
    /// Seconds the lag phase's writer runs per sink.
    #[arg(long, env = "POLYREPL_BENCH_LAG_SECONDS", default_value_t = 10.0)]
    pub lag_seconds: f64,
    /// Also measure the lag of the other --sinks while this one is slowed on purpose (each of its batch
    /// sends waits 100 ms while the writer runs, so it falls behind and spills): one `run` into all of
    /// them. A slow sink must not hold back the others.
    #[arg(long, value_enum)]
    pub slow_sink: Option<SinkKind>,
    /// Seed of the generated data (same seed, same rows and changes).
    #[arg(long, env = "POLYREPL_BENCH_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Keep the bench database (source and sinks) instead of dropping it at the end.
    #[arg(long)]
    pub keep: bool,
    /// Run only the data and decode phases (binlog reader end to end, and the same range decoded
    /// from memory on one core); no sink is used or touched.
    #[arg(long)]
    pub decode_only: bool,
    /// Run only an online copy: the `snap` table (--rows rows) copied into each sink while the pipeline
    /// streams the lag writer's changes (--lag-rate, for at least --lag-seconds and until the copy is
    /// done); reports the copy's duration and rows/s, the stream's lag meanwhile and the peak RSS.
    #[arg(long)]
    pub online_copy: bool,
    /// Run only the Kafka path: capture (the cdc range into the Kafka sink), the broker's raw produce
    /// and consume rates on the very same messages, `apply` into every --sinks sink with 1 and 2
    /// workers, and `run` straight into the same sinks for comparison. Needs Kafka
    /// (polyrepl stack up --service kafka).
    #[arg(long, conflicts_with_all = ["decode_only", "online_copy"])]
    pub kafka: bool,
    /// Run only the snapshot phase, once per parallelism of this list (e.g. 1,2,4: `run
    /// --snapshot-parallelism` readers), into each --sinks sink; reports rows/s and the speed-up over
    /// the list's first.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["decode_only", "online_copy", "kafka"])]
    pub snapshot_parallelism: Vec<usize>,
    /// Kafka URL for --kafka.
    #[arg(long, env = "POLYREPL_KAFKA", hide_env_values = true, default_value = "kafka://127.0.0.1:9092")]
    pub kafka_url: String,
}

/// Everything the phases share: URLs, names, sizes.
pub struct Bench {
    pub args: BenchArgs,
    pub url: SourceUrl,
    /// `polyrepl_bench_<10 hex>`: the source database, and the sinks' database/keyspace/key prefix.
    pub db: String,
    /// Pipeline names used, so their checkpoints can be removed at the end.
    pub pipelines: std::sync::Mutex<Vec<String>>,
    pub started: Instant,
}

impl Bench {
    /// The URL of a sink.
    pub fn sink_url(&self, kind: SinkKind) -> &str {
        match kind {
            SinkKind::Mongodb => &self.args.mongodb,
            SinkKind::MongoJava => &self.args.mongo_java,
            SinkKind::Redis => &self.args.redis,
            SinkKind::Cassandra => &self.args.cassandra,
        }
    }

    /// The sinks of the memory phases: every selected one, but one MongoDB-wire server (mongodb's when
    /// both mongodb and mongo-java are chosen), so the figures are for one sink of each kind.
    pub fn memory_sinks(&self) -> Vec<SinkKind> {
        let both = self.args.sinks.contains(&SinkKind::Mongodb);
        self.args.sinks.iter().copied().filter(|&k| !(both && k == SinkKind::MongoJava)).collect()
    }

    /// A fresh pipeline name for a phase, remembered for clean-up.
    pub fn pipeline(&self, phase: &str) -> String {
        let mut names = self.pipelines.lock().unwrap();
        let name = format!("{}_{phase}_{}", self.db, names.len());
        names.push(name.clone());
        name
    }

    /// A progress line on stderr, with the time since the start.
    pub fn note(&self, line: impl AsRef<str>) {
        eprintln!("[bench {:>6.1} s] {}", self.started.elapsed().as_secs_f64(), line.as_ref());
    }
}

/// Runs the benchmark; the bench database is dropped at the end (also after a failure) unless `--keep`.
pub async fn run(mut args: BenchArgs) -> Result<ExitCode> {
    if args.decode_only {
        // No sink is used, so none is cleaned up either.
        args.sinks.clear();
    } else if args.sinks.is_empty() {
        return Err(anyhow!("--sinks is empty: name at least one of mongodb, redis, cassandra"));
    }
    if args.rows == 0
        || args.cdc_changes == 0
        || args.rounds == 0
        || args.writers == 0
        || args.lag_rate == 0
        || args.lag_seconds.is_nan()
        || args.lag_seconds <= 0.0
        || args.snapshot_parallelism.contains(&0)
    {
        return Err(anyhow!(
            "--rows, --cdc-changes, --rounds, --writers, --lag-rate, --lag-seconds and --snapshot-parallelism must all be greater than zero"
        ));
    }
    let url = SourceUrl::parse(&args.source).map_err(|e| anyhow!("{e}"))?;
    let db = format!("polyrepl_bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let bench = Bench { args, url, db, pipelines: Default::default(), started: Instant::now() };
    bench.note(format!(
        "database {} on {}; sinks: {}",
        bench.db,
        bench.url.redacted(),
        bench.args.sinks.iter().map(|s| s.label()).collect::<Vec<_>>().join(", ")
    ));
    if bench.args.decode_only {
        let outcome = decode_only(&bench).await;
        clean_up(&bench).await;
        let (generated, figures) = outcome?;
        return print_report(&bench, &figures, || figures.table(&generated, bench.args.rounds));
    }
    if bench.args.online_copy {
        let outcome = online_copy(&bench).await;
        clean_up(&bench).await;
        let figures = outcome?;
        return print_report(&bench, &figures, || lag::copy_table(&figures));
    }
    if !bench.args.snapshot_parallelism.is_empty() {
        let outcome = parallel::measure(&bench).await;
        clean_up(&bench).await;
        let figures = outcome?;
        return print_report(&bench, &figures, || parallel::table(&figures, bench.args.rows, bench.args.rounds));
    }
    if bench.args.kafka {
        let outcome = kafka_path(&bench).await;
        clean_up(&bench).await;
        let figures = outcome?;
        return print_report(&bench, &figures, || kafka::table(&figures));
    }
    let outcome = measure(&bench).await;
    clean_up(&bench).await;
    let report = outcome?;
    print_report(&bench, &report, || report.table())
}

/// Prints a report: one JSON document with `--json`, else its `table`.
fn print_report(bench: &Bench, report: &impl serde::Serialize, table: impl FnOnce() -> String) -> Result<ExitCode> {
    if bench.args.json {
        println!("{}", serde_json::to_string_pretty(report).context("serialising the report")?);
    } else {
        print!("{}", table());
    }
    Ok(ExitCode::SUCCESS)
}

/// Drops the bench database from the source and the sinks, unless `--keep`; a failure is a warning.
async fn clean_up(bench: &Bench) {
    if bench.args.keep {
        bench.note(format!("--keep: leaving database {} in the source and the sinks", bench.db));
        return;
    }
    bench.note("dropping the bench database from the source and the sinks");
    if let Err(e) = phases::drop_everything(bench).await {
        eprintln!("warning: clean-up of {} incomplete: {e:#}", bench.db);
    }
}

/// The data and decode phases only (`--decode-only`).
async fn decode_only(bench: &Bench) -> Result<(data::Generated, report::DecodeFigures)> {
    let generated = data::generate(bench).await.context("generating the bench data")?;
    let decode = phases::decode(bench, &generated).await.context("decode phase")?;
    Ok((generated, report::DecodeFigures::new(decode)))
}

/// The data phase, then per sink an online copy of `snap` under the lag writer (`--online-copy`).
async fn online_copy(bench: &Bench) -> Result<Vec<(&'static str, lag::LagFigures, lag::CopyFigures)>> {
    data::generate(bench).await.context("generating the bench data")?;
    let mut out = Vec::new();
    for &kind in &bench.args.sinks {
        phases::reset_sink(bench, kind, "snap").await?;
        let (lag, copy) = lag::measure_during_copy(bench, kind, Some("snap"))
            .await
            .with_context(|| format!("online copy into {}", kind.label()))?;
        out.push((kind.label(), lag, copy.context("the copy's figures")?));
    }
    Ok(out)
}

/// The data phase, then the Kafka path (`--kafka`).
async fn kafka_path(bench: &Bench) -> Result<kafka::KafkaFigures> {
    let generated = data::generate(bench).await.context("generating the bench data")?;
    kafka::measure(bench, &generated).await
}

/// All phases, in order.
async fn measure(bench: &Bench) -> Result<report::Report> {
    let args = &bench.args;
    let generated = data::generate(bench).await.context("generating the bench data")?;
    let decode = phases::decode(bench, &generated).await.context("decode phase")?;
    let mut sinks = Vec::new();
    for &kind in &args.sinks {
        // Each snapshot (cdc) round runs right after the raw round of the same number, so that each
        // ratio compares two rounds taken under the same conditions of a shared machine.
        let mut snapshot = Vec::new();
        let raw = raw::measure(bench, kind, async |round| {
            let rate = phases::snapshot_round(bench, kind, None, round).await;
            snapshot.push(rate.with_context(|| format!("snapshot phase of {}", kind.label()))?);
            Ok(())
        })
        .await
        .with_context(|| format!("raw phase of {}", kind.label()))?;
        let mut cdc = Vec::new();
        let raw_cdc = raw_cdc::measure(bench, kind, &generated, async |round| {
            let rate = phases::cdc_round(bench, &[kind], &generated, round).await;
            cdc.push(rate.with_context(|| format!("cdc phase of {}", kind.label()))?);
            Ok(())
        })
        .await
        .with_context(|| format!("raw cdc phase of {}", kind.label()))?;
        if raw_cdc.is_none() {
            cdc = phases::cdc(bench, &[kind], &generated)
                .await
                .with_context(|| format!("cdc phase of {}", kind.label()))?;
        }
        sinks.push(report::SinkFigures::new(kind, raw, snapshot, raw_cdc, cdc));
    }
    let cdc_all = if args.sinks.len() > 1 {
        Some(phases::cdc(bench, &args.sinks, &generated).await.context("cdc phase into all sinks")?)
    } else {
        None
    };
    let child = rss::snapshot_child(bench).await.context("peak-RSS phase")?;
    let streaming = rss::streaming_child(bench).await.context("streaming-RSS phase")?;
    for figures in sinks.iter_mut() {
        let lag = lag::measure(bench, figures.sink)
            .await
            .with_context(|| format!("lag phase of {}", figures.sink.label()))?;
        figures.set_lag(lag);
    }
    let mut report = report::Report::new(bench, &generated, decode, sinks, cdc_all, child, streaming);
    if let Some(slow) = args.slow_sink {
        let mut kinds = args.sinks.clone();
        if !kinds.contains(&slow) {
            kinds.push(slow);
        }
        if kinds.len() > 1 {
            let beside = lag::measure_beside_slow(bench, &kinds, slow).await.context("lag beside a slow sink")?;
            report.set_beside_slow(beside);
        } else {
            bench.note("--slow-sink: no other sink to measure beside it");
        }
    }
    Ok(report)
}
