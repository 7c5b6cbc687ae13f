//! Where log lines go and what they look like: `--log-level` (or RUST_LOG) picks which, `--log-format`
//! picks text or JSON lines, and the destination is stderr or a file (the quiet `demo`).

use anyhow::{Context, Result};
use clap::ValueEnum;
use std::path::Path;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

/// The filter when neither --log-level nor RUST_LOG says otherwise: the drivers' own INFO chatter
/// (Cassandra's especially) says nothing an operator needs.
pub const DEFAULT_FILTER: &str = "info,scylla=off,mongodb=warn";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, message and the event's fields).
    Json,
}

/// Checks a --log-level value when the command line is parsed, so a typo is refused by name rather
/// than silently logging at some other level.
pub fn parse_filter(value: &str) -> Result<String, String> {
    EnvFilter::try_new(value).map(|_| value.to_string()).map_err(|e| format!("not a log filter: {e}"))
}

/// The filter in force: the flag (or POLYREPL_LOG), else RUST_LOG, else [`DEFAULT_FILTER`]. An invalid
/// RUST_LOG is reported and ignored: it may be set for some other program.
fn choose_filter(flag: Option<&str>, rust_log: Option<&str>) -> (String, Option<String>) {
    if let Some(flag) = flag {
        return (flag.to_string(), None);
    }
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        Some(env) => match EnvFilter::try_new(env) {
            Ok(_) => (env.to_string(), None),
            Err(e) => (DEFAULT_FILTER.to_string(), Some(format!("ignoring RUST_LOG={env:?}: {e}"))),
        },
        None => (DEFAULT_FILTER.to_string(), None),
    }
}

/// Installs the global subscriber; with `file`, logs go there (truncated first) instead of stderr.
pub fn init(level: Option<&str>, format: LogFormat, file: Option<&Path>) -> Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, warning) = choose_filter(level, rust_log.as_deref());
    let (writer, to_file) = match file {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}, the log file's directory", dir.display()))?;
            }
            let f =
                std::fs::File::create(path).with_context(|| format!("cannot write the log file {}", path.display()))?;
            (BoxMakeWriter::new(std::sync::Mutex::new(f)), true)
        }
        None => (BoxMakeWriter::new(std::io::stderr), false),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(EnvFilter::new(filter)).with_writer(writer);
    // No colour codes in a file; on stderr the default (colour unless NO_COLOR is set).
    let builder = if to_file { builder.with_ansi(false) } else { builder };
    match format {
        LogFormat::Text => builder.init(),
        // Event fields at the top level, next to "level" and "message": what log shippers expect.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_beats_rust_log_which_beats_the_default() {
        assert_eq!(choose_filter(Some("warn"), Some("debug")).0, "warn");
        assert_eq!(choose_filter(None, Some("debug")).0, "debug");
        assert_eq!(choose_filter(None, None).0, DEFAULT_FILTER);
        assert_eq!(choose_filter(None, Some(" ")).0, DEFAULT_FILTER);
        let (filter, warning) = choose_filter(None, Some("polyrepl=lots"));
        assert_eq!(filter, DEFAULT_FILTER);
        assert!(warning.unwrap().contains("RUST_LOG"));
        assert!(parse_filter("info,polyrepl_engine=debug").is_ok());
        assert!(parse_filter("polyrepl=lots").is_err());
    }
}
