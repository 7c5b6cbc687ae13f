//! What `polyrepl check` prints: the effective configuration (passwords hidden), one line per thing
//! checked, then every problem with its fix.

use crate::config::Resolved;
use polyrepl_core::redact::redact_url;
use std::fmt::Write as _;

/// Something wrong, where, and what to do about it.
#[derive(Debug, Clone)]
pub struct Problem {
    /// What it is about: `config file x.toml`, `source mysql://u:***@h:1`, `sink redis://h:1`.
    pub subject: String,
    pub message: String,
    pub fix: String,
}

/// Everything one check run found.
#[derive(Debug, Default)]
pub struct Findings {
    /// `(subject, what was found)` for the checks that passed.
    pub passed: Vec<(String, String)>,
    pub problems: Vec<Problem>,
}

impl Findings {
    pub fn ok(&mut self, subject: impl Into<String>, what: impl Into<String>) {
        self.passed.push((subject.into(), what.into()));
    }

    pub fn problem(&mut self, subject: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem { subject: subject.into(), message: message.into(), fix: fix.into() });
    }

    /// The checks that passed, then every problem, numbered, each with its fix.
    pub fn render(&self) -> String {
        let mut out = String::from("\nchecks:\n");
        for (subject, what) in &self.passed {
            let _ = writeln!(out, "  ok  {subject}: {what}");
        }
        if self.problems.is_empty() {
            out.push_str("\nno problems found: `polyrepl run` with this configuration passes its start-up checks\n");
            return out;
        }
        let _ = writeln!(out, "\n{} problem(s) found:", self.problems.len());
        for (i, p) in self.problems.iter().enumerate() {
            let _ = writeln!(out, "{}. {}: {}\n   fix: {}", i + 1, p.subject, p.message, p.fix);
        }
        out
    }
}

/// The merged settings, as `run` would use them; URLs with their passwords hidden.
pub fn effective_config(resolved: &Resolved, config_file: Option<&std::path::Path>) -> String {
    let r = &resolved.run;
    let list = |items: &[String]| if items.is_empty() { "(none)".to_string() } else { items.join(", ") };
    let mut out = String::from(
        "effective configuration (flags beat POLYREPL_* environment variables, which beat the --config \
         file, which beats the defaults; passwords hidden):\n",
    );
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "  {key:<26}{value}");
    };
    if let Some(path) = config_file {
        line("config file", path.display().to_string());
    }
    line("source", redact_url(&r.source));
    line("tables", list(&r.tables));
    line("exclude", list(&r.exclude));
    let sinks: Vec<String> = r.sinks.iter().map(|s| redact_url(s)).collect();
    line("sinks", list(&sinks));
    line("name", r.name.clone());
    line("server_id", r.server_id.to_string());
    line("http_addr", resolved.http_addr.clone().unwrap_or_else(|| "(none)".into()));
    line("batch_changes", r.batch_changes.to_string());
    line("batch_delay_ms", r.batch_delay_ms.to_string());
    line("chunk_rows", r.chunk_rows.to_string());
    line("snapshot_parallelism", r.snapshot_parallelism.to_string());
    line("transaction_part_changes", r.transaction_part_changes.to_string());
    line("queue_changes", r.queue_changes.to_string());
    line("queue_mib", r.queue_mib.to_string());
    line("spill_mib", r.spill_mib.to_string());
    line(
        "spill_dir",
        r.spill_dir.as_ref().map_or_else(|| "(the system's temporary directory)".into(), |d| d.display().to_string()),
    );
    line("keep_dropped_tables", r.keep_dropped_tables.to_string());
    line("take_over", r.take_over.to_string());
    line("lease_seconds", r.lease_ttl.as_secs().to_string());
    line("on_unmappable", r.on_unmappable.to_string());
    out
}
