//! `run` settings: flags beat `POLYREPL_*` environment variables, which beat the `--config` TOML file,
//! which beats the defaults.

use anyhow::{bail, Context, Result};
use clap::Args;
use polyrepl_engine::{settings, RunConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What to replicate and where: the flags `run` and `verify` share (same environment variables, and
/// the same `--config` file).
#[derive(Args, Debug, Clone, Default)]
pub struct PipelineArgs {
    /// Source URL: mysql://USER:PASS@HOST:PORT[/DB]. The password never appears in logs or errors.
    #[arg(long, env = "POLYREPL_SOURCE", hide_env_values = true)]
    pub source: Option<String>,
    /// Tables: db.table or db.* (repeatable or comma-separated).
    #[arg(long = "tables", env = "POLYREPL_TABLES", value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Tables to leave out, same patterns (repeatable or comma-separated).
    #[arg(long = "exclude", env = "POLYREPL_EXCLUDE", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// A sink: mongodb://HOST:PORT, redis://HOST:PORT, cassandra://HOST:PORT (repeatable or comma-separated).
    #[arg(long = "sink", env = "POLYREPL_SINKS", value_delimiter = ',', hide_env_values = true)]
    pub sinks: Vec<String>,
    /// A TOML file with the same settings (keys: source, tables, exclude, sinks, name, server_id,
    /// http_addr (or metrics_addr), batch_changes, batch_delay_ms, chunk_rows, snapshot_parallelism,
    /// transaction_part_changes, queue_changes, queue_mib, spill_mib, spill_dir, keep_dropped_tables,
    /// take_over, lease_seconds, on_unmappable), and `[[sink]]` sections, each with a
    /// `url` and an `[sink.options]` table of the options its URL query string takes.
    #[arg(long, env = "POLYREPL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Name of the pipeline: the key of its checkpoints in every sink [default: polyrepl].
    #[arg(long, env = "POLYREPL_NAME")]
    pub name: Option<String>,
}

/// Flags of `polyrepl run` (also used by `demo`).
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Server id the binlog reader presents to the source; unique per reader [default: derived from --name].
    #[arg(long, env = "POLYREPL_SERVER_ID")]
    pub server_id: Option<u32>,
    /// Serve HTTP on this address, e.g. 127.0.0.1:9187: Prometheus /metrics, /status JSON (what
    /// `polyrepl status` shows), and the requests of `polyrepl snapshot` and `verify --repair --through`.
    /// `--metrics-addr` (and POLYREPL_METRICS_ADDR) is the older name.
    #[arg(long = "http-addr", visible_alias = "metrics-addr", value_name = "HOST:PORT", env = "POLYREPL_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// A batch closes at this many changes [default: 5000].
    #[arg(long, env = "POLYREPL_BATCH_CHANGES")]
    pub batch_changes: Option<usize>,
    /// …or this many milliseconds after it opened [default: 50]; at once when every sink is idle.
    #[arg(long, env = "POLYREPL_BATCH_DELAY_MS")]
    pub batch_delay_ms: Option<u64>,
    /// Rows per snapshot chunk (primary-key range) [default: 5000].
    #[arg(long, env = "POLYREPL_CHUNK_ROWS")]
    pub chunk_rows: Option<usize>,
    /// Connections that read the initial snapshot at once: each reads key ranges (of about
    /// --chunk-rows rows) in a consistent snapshot of its own, and the ranges are applied in key
    /// order, with the same checkpoints; 1 reads every chunk in one transaction [default: 1].
    #[arg(long, env = "POLYREPL_SNAPSHOT_PARALLELISM")]
    pub snapshot_parallelism: Option<usize>,
    /// Stop once the end of the binlog is reached (for tests and one-off copies) instead of following it.
    #[arg(long)]
    pub stop_at_end: bool,
    /// Copy every table into every sink again, ignoring the checkpoints the sinks hold, and remove the
    /// rows the source no longer has; then stream from the new snapshot. For when the binlog a
    /// pipeline needs was purged, or to rebuild a sink. A flag only (never from env or file), since
    /// it must not repeat by accident; a crash during it resumes the new snapshot on the next start.
    #[arg(long)]
    pub resnapshot: bool,
    /// When a replicated table is dropped (or renamed away) on the source, keep its rows in the sinks
    /// instead of removing them. TRUNCATE still empties it, and a table created again under the same
    /// name is copied anew.
    #[arg(long, env = "POLYREPL_KEEP_DROPPED_TABLES")]
    pub keep_dropped_tables: bool,
    /// A source transaction with more changes than this is applied in parts as it is read, so memory
    /// stays bounded whatever its size; until its commit is applied, a reader of a sink can see part of
    /// it, and a restart reads it again from its start [default: 20000].
    #[arg(long, env = "POLYREPL_TRANSACTION_PART_CHANGES")]
    pub transaction_part_changes: Option<usize>,
    /// Changes queued in memory for each sink [default: 100000]. A sink further behind than this gets
    /// its batches through its spill file on disk instead, so a slow sink never holds the others back.
    #[arg(long, env = "POLYREPL_QUEUE_CHANGES")]
    pub queue_changes: Option<usize>,
    /// MiB of changes (estimated, in memory) queued for each sink, the other bound of its queue
    /// [default: 16].
    #[arg(long, env = "POLYREPL_QUEUE_MIB")]
    pub queue_mib: Option<usize>,
    /// MiB of batches a lagging sink may keep in its spill file before the source waits for it (0: no
    /// spill file: a sink a full queue behind holds every sink back) [default: 1024].
    #[arg(long, env = "POLYREPL_SPILL_MIB")]
    pub spill_mib: Option<u64>,
    /// Directory of the spill files (created and unlinked at once, so nothing is left after a crash)
    /// [default: the system's temporary directory].
    #[arg(long, env = "POLYREPL_SPILL_DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Take the sink tables over from another pipeline (another --name) holding their leases; that
    /// pipeline stops at its next lease renewal. Without it, a run whose tables another live pipeline
    /// writes is refused at start-up, naming the table and the owner. A flag (or `take_over = true` in
    /// --config), never an environment variable.
    #[arg(long)]
    pub take_over: bool,
    /// How long this run's lease on each sink table lasts unless renewed (every third of it): how long
    /// a crashed run keeps another pipeline out of its tables. A clean stop gives them back at once;
    /// the same --name always gets its own leases back [default: 30].
    #[arg(long, env = "POLYREPL_LEASE_SECONDS")]
    pub lease_seconds: Option<u64>,
    /// What a sink does with a row it cannot hold (a MongoDB document over 16 MiB, a Redis value over
    /// proto-max-bulk-len, a Cassandra key over 64 KiB or row over its write size…): `stop` the sink
    /// with an error naming the row and this flag; `skip` it in that sink (a WARN line, counted in
    /// polyrepl_rows_skipped_total); or `dead-letter` it (also recorded in the sink: MongoDB
    /// polyrepl._polyrepl_dead_letters, Redis polyrepl:dead_letters:<name>, Cassandra
    /// polyrepl.polyrepl_dead_letters; counted in polyrepl_dead_letters_total). Either way the other
    /// rows and the other sinks keep flowing, and the sink holds no row for that key [default: stop].
    #[arg(long, env = "POLYREPL_ON_UNMAPPABLE", value_parser = ["stop", "skip", "dead-letter"])]
    pub on_unmappable: Option<String>,
}

/// The TOML file's shape. Unknown keys are found before it is read ([`ConfigText::parse`]), so that
/// all of them are reported with the key meant; `deny_unknown_fields` stays as the backstop.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    source: Option<String>,
    #[serde(default)]
    keep_dropped_tables: bool,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    /// Sinks as plain URLs…
    #[serde(default)]
    sinks: Vec<String>,
    /// …and/or as `[[sink]]` sections with their options.
    #[serde(default)]
    sink: Vec<SinkSection>,
    name: Option<String>,
    server_id: Option<u32>,
    #[serde(alias = "metrics_addr")]
    http_addr: Option<String>,
    batch_changes: Option<usize>,
    batch_delay_ms: Option<u64>,
    chunk_rows: Option<usize>,
    snapshot_parallelism: Option<usize>,
    transaction_part_changes: Option<usize>,
    queue_changes: Option<usize>,
    queue_mib: Option<usize>,
    spill_mib: Option<u64>,
    spill_dir: Option<PathBuf>,
    #[serde(default)]
    take_over: bool,
    lease_seconds: Option<u64>,
    on_unmappable: Option<String>,
}

/// A `[[sink]]` section: the sink's URL and, under `[sink.options]`, the options its URL query string
/// takes (e.g. Redis `ttl`, `stream`, `prefix`; Cassandra `replication`): the same names, so the README's
/// per-sink option tables apply to both.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    url: String,
    #[serde(default)]
    options: BTreeMap<String, toml::Value>,
}

impl SinkSection {
    /// The URL with the section's options appended to its query string.
    fn to_url(&self) -> Result<String> {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.options {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => value.to_string(),
                other => bail!(
                    "sink {}: option {key} must be a string, number or boolean, not {}",
                    polyrepl_core::redact::redact_url(&self.url),
                    other.type_str()
                ),
            };
            query.append_pair(key, &text);
        }
        let query = query.finish();
        if query.is_empty() {
            return Ok(self.url.clone());
        }
        let (base, fragment) = match self.url.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (self.url.as_str(), None),
        };
        let joiner = if base.contains('?') { '&' } else { '?' };
        Ok(format!("{base}{joiner}{query}{}", fragment.map(|f| format!("#{f}")).unwrap_or_default()))
    }
}

/// A `--config` file as read, before parsing (empty when no file is given).
#[derive(Debug, Default)]
pub struct ConfigText {
    pub path: PathBuf,
    text: Option<String>,
}

/// A config file parsed: its settings, and the keys polyrepl does not know (left out of `config`).
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub path: PathBuf,
    pub config: FileConfig,
    pub unknown: Vec<crate::config_keys::UnknownKey>,
}

impl ConfigText {
    /// Parses the file: a syntax error or a value of the wrong type is an error; unknown keys are
    /// collected, each with the known key it is most likely a typo of.
    pub fn parse(&self) -> Result<ParsedFile> {
        let Some(text) = &self.text else { return Ok(ParsedFile::default()) };
        let invalid = || format!("the config file {} is not valid", self.path.display());
        let mut table: toml::Table = toml::from_str(text).with_context(invalid)?;
        let unknown = crate::config_keys::take_unknown(&mut table);
        // Read from the text when it is clean: toml's errors then carry the line and column.
        let config = if unknown.is_empty() {
            toml::from_str::<FileConfig>(text)
        } else {
            toml::Value::Table(table).try_into::<FileConfig>()
        }
        .with_context(invalid)?;
        Ok(ParsedFile { path: self.path.clone(), config, unknown })
    }
}

/// Resolved settings of a run: the engine's, and where the binary serves its HTTP endpoints.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub run: RunConfig,
    pub http_addr: Option<String>,
}

/// POLYREPL_METRICS_ADDR: the older name of POLYREPL_HTTP_ADDR, still read after it.
pub fn legacy_http_addr_env() -> Option<String> {
    std::env::var("POLYREPL_METRICS_ADDR").ok().filter(|v| !v.is_empty())
}

impl RunArgs {
    /// Merges flags/env with the file and defaults; errors say which setting is missing or wrong.
    pub fn resolve(&self) -> Result<Resolved> {
        let file = self.read_file()?.parse()?;
        if !file.unknown.is_empty() {
            let keys: Vec<String> = file.unknown.iter().map(|k| k.to_string()).collect();
            bail!("the config file {} is not valid: {}", file.path.display(), keys.join("; "));
        }
        self.resolve_from(file.config)
    }

    /// The `--config` file's text, if one is given.
    pub fn read_file(&self) -> Result<ConfigText> {
        let Some(path) = &self.pipeline.config else { return Ok(ConfigText::default()) };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the config file {}", path.display()))?;
        Ok(ConfigText { path: path.clone(), text: Some(text) })
    }

    /// [`RunArgs::resolve`] with the file already parsed (its unknown keys left out).
    pub fn resolve_from(&self, file: FileConfig) -> Result<Resolved> {
        let pick = |flag: &Vec<String>, file: Vec<String>| if flag.is_empty() { file } else { flag.clone() };
        let Some(source) = self.pipeline.source.clone().or(file.source) else {
            bail!("no source given: pass --source mysql://USER:PASS@HOST:PORT (or set POLYREPL_SOURCE, or `source` in --config)");
        };
        let tables = pick(&self.pipeline.tables, file.tables);
        if tables.is_empty() {
            bail!("no tables given: pass --tables 'db.*' or --tables db.table (or POLYREPL_TABLES, or `tables` in --config)");
        }
        let mut file_sinks = file.sinks;
        for section in &file.sink {
            file_sinks.push(section.to_url()?);
        }
        let sinks = pick(&self.pipeline.sinks, file_sinks);
        if sinks.is_empty() {
            bail!(
                "no sink given: pass --sink mongodb://HOST:PORT (or POLYREPL_SINKS, or `sinks` / [[sink]] in --config)"
            );
        }
        let name = self.pipeline.name.clone().or(file.name).unwrap_or_else(|| settings::DEFAULT_NAME.into());
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            bail!("--name '{name}' must be letters, digits, '_' or '-'");
        }
        let server_id = self.server_id.or(file.server_id).unwrap_or_else(|| settings::default_server_id(&name));
        let run = RunConfig {
            exclude: pick(&self.pipeline.exclude, file.exclude),
            server_id,
            name,
            batch_changes: self.batch_changes.or(file.batch_changes).unwrap_or(settings::DEFAULT_BATCH_CHANGES).max(1),
            batch_delay_ms: self.batch_delay_ms.or(file.batch_delay_ms).unwrap_or(settings::DEFAULT_BATCH_DELAY_MS),
            chunk_rows: self.chunk_rows.or(file.chunk_rows).unwrap_or(settings::DEFAULT_CHUNK_ROWS).max(1),
            snapshot_parallelism: self
                .snapshot_parallelism
                .or(file.snapshot_parallelism)
                .unwrap_or(settings::DEFAULT_SNAPSHOT_PARALLELISM)
                .max(1),
            transaction_part_changes: self
                .transaction_part_changes
                .or(file.transaction_part_changes)
                .unwrap_or(settings::DEFAULT_TRANSACTION_PART_CHANGES)
                .max(1),
            queue_changes: self.queue_changes.or(file.queue_changes).unwrap_or(settings::DEFAULT_QUEUE_CHANGES).max(1),
            queue_mib: self.queue_mib.or(file.queue_mib).unwrap_or(settings::DEFAULT_QUEUE_MIB).max(1),
            spill_mib: self.spill_mib.or(file.spill_mib).unwrap_or(settings::DEFAULT_SPILL_MIB),
            spill_dir: self.spill_dir.clone().or(file.spill_dir),
            stop_at_end: self.stop_at_end,
            resnapshot: self.resnapshot,
            keep_dropped_tables: self.keep_dropped_tables || file.keep_dropped_tables,
            take_over: self.take_over || file.take_over,
            on_unmappable: match self.on_unmappable.clone().or(file.on_unmappable) {
                Some(text) => text.parse().map_err(|e: String| {
                    anyhow::anyhow!("{e} (from --on-unmappable or `on_unmappable` in --config)")
                })?,
                None => polyrepl_core::OnUnmappable::Stop,
            },
            lease_ttl: std::time::Duration::from_secs(
                self.lease_seconds.or(file.lease_seconds).unwrap_or(settings::DEFAULT_LEASE_SECONDS).max(1),
            ),
            ..RunConfig::new(source, tables, sinks)
        };
        let http_addr = self.http_addr.clone().or_else(legacy_http_addr_env).or(file.http_addr);
        Ok(Resolved { run, http_addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("polyrepl-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("run.toml");
        std::fs::write(
            &f,
            "source = \"mysql://a@h:1\"\ntables = [\"x.*\"]\nsinks = [\"mongodb://h:2\"]\nname = \"fromfile\"\n",
        )
        .unwrap();
        let args = RunArgs {
            pipeline: PipelineArgs { config: Some(f.clone()), name: Some("fromflag".into()), ..Default::default() },
            ..Default::default()
        };
        let c = args.resolve().unwrap().run;
        assert_eq!(
            (c.name.as_str(), c.source.as_str(), c.tables.clone()),
            ("fromflag", "mysql://a@h:1", vec!["x.*".to_string()])
        );
        std::fs::write(&f, "source = \"mysql://a@h:1\"\ntabels = [\"x.*\"]\n").unwrap();
        let err = format!(
            "{:#}",
            RunArgs { pipeline: PipelineArgs { config: Some(f), ..Default::default() }, ..Default::default() }
                .resolve()
                .unwrap_err()
        );
        assert!(err.contains("unknown key `tabels` (did you mean `tables`?)"), "{err}");
        let err = format!("{:#}", RunArgs::default().resolve().unwrap_err());
        assert!(err.contains("--source"), "{err}");
    }

    /// `--help` quotes the defaults as text; they must be the engine's.
    #[test]
    fn help_quotes_the_engine_defaults() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            run: RunArgs,
        }
        let help = Probe::command().render_long_help().to_string();
        for (flag, default) in [
            ("--batch-changes", settings::DEFAULT_BATCH_CHANGES.to_string()),
            ("--batch-delay-ms", settings::DEFAULT_BATCH_DELAY_MS.to_string()),
            ("--chunk-rows", settings::DEFAULT_CHUNK_ROWS.to_string()),
            ("--snapshot-parallelism", settings::DEFAULT_SNAPSHOT_PARALLELISM.to_string()),
            ("--transaction-part-changes", settings::DEFAULT_TRANSACTION_PART_CHANGES.to_string()),
            ("--name", settings::DEFAULT_NAME.to_string()),
            ("--lease-seconds", settings::DEFAULT_LEASE_SECONDS.to_string()),
        ] {
            let section = help.split(flag).nth(1).expect(flag);
            let section = section.split("\n\n").next().unwrap_or(section);
            assert!(section.contains(&format!("[default: {default}]")), "{flag}: {section}");
        }
    }

    #[test]
    fn ownership_and_unmappable_rows_come_from_flags_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("run.toml");
        let base = "source = \"mysql://a@h:1\"\ntables = [\"x.*\"]\nsinks = [\"mongodb://h:2\"]\n";
        std::fs::write(&f, format!("{base}take_over = true\nlease_seconds = 7\non_unmappable = \"dead-letter\"\n"))
            .unwrap();
        let from_file =
            RunArgs { pipeline: PipelineArgs { config: Some(f.clone()), ..Default::default() }, ..Default::default() };
        let c = from_file.resolve().unwrap().run;
        assert!(c.take_over);
        assert_eq!(c.lease_ttl, std::time::Duration::from_secs(7));
        assert_eq!(c.on_unmappable, polyrepl_core::OnUnmappable::DeadLetter);
        let flag = RunArgs { on_unmappable: Some("skip".into()), ..from_file };
        assert_eq!(flag.resolve().unwrap().run.on_unmappable, polyrepl_core::OnUnmappable::Skip);
        std::fs::write(&f, base).unwrap();
        let c =
            RunArgs { pipeline: PipelineArgs { config: Some(f.clone()), ..Default::default() }, ..Default::default() }
                .resolve()
                .unwrap()
                .run;
        assert_eq!((c.take_over, c.on_unmappable), (false, polyrepl_core::OnUnmappable::Stop));
        assert_eq!(c.lease_ttl, std::time::Duration::from_secs(settings::DEFAULT_LEASE_SECONDS));
        for key in ["http_addr", "metrics_addr"] {
            std::fs::write(&f, format!("{base}{key} = \"127.0.0.1:9\"\n")).unwrap();
            let args = RunArgs {
                pipeline: PipelineArgs { config: Some(f.clone()), ..Default::default() },
                ..Default::default()
            };
            assert_eq!(args.resolve().unwrap().http_addr.as_deref(), Some("127.0.0.1:9"), "{key}");
        }
        std::fs::write(&f, format!("{base}on_unmappable = \"later\"\n")).unwrap();
        let err = format!(
            "{:#}",
            RunArgs { pipeline: PipelineArgs { config: Some(f), ..Default::default() }, ..Default::default() }
                .resolve()
                .unwrap_err()
        );
        assert!(err.contains("--on-unmappable") && err.contains("stop, skip or dead-letter"), "{err}");
    }

    #[test]
    fn sink_sections_carry_their_options_into_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("run.toml");
        std::fs::write(
            &f,
            r#"
source = "mysql://a@h:1"
tables = ["x.*"]
sinks = ["mongodb://h:2"]

[[sink]]
url = "redis://h:3"
[sink.options]
ttl = "1h"
stream = 1000
prefix = "a b&c"

[[sink]]
url = "cassandra://h:4/ks?replication=simple:1"
"#,
        )
        .unwrap();
        let args =
            RunArgs { pipeline: PipelineArgs { config: Some(f.clone()), ..Default::default() }, ..Default::default() };
        let c = args.resolve().unwrap().run;
        assert_eq!(
            c.sinks,
            vec![
                "mongodb://h:2",
                "redis://h:3?prefix=a+b%26c&stream=1000&ttl=1h",
                "cassandra://h:4/ks?replication=simple:1"
            ]
        );
        assert_eq!(c.chunk_rows, settings::DEFAULT_CHUNK_ROWS);
        assert_eq!(c.batch_changes, settings::DEFAULT_BATCH_CHANGES);
        std::fs::write(&f, "source = \"mysql://a@h:1\"\n[[sink]]\nurl = \"redis://h\"\nttl = 5\n").unwrap();
        let err = format!(
            "{:#}",
            RunArgs { pipeline: PipelineArgs { config: Some(f), ..Default::default() }, ..Default::default() }
                .resolve()
                .unwrap_err()
        );
        assert!(err.contains("ttl"), "an option outside [sink.options] is refused by name: {err}");
    }
}
