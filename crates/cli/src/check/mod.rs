//! `polyrepl check`: validates a configuration and everything it reaches, writing nothing to the
//! source or the sinks, and reports every problem with its fix.
//!
//! Steps: the config file (syntax, types, unknown keys with the key meant) → the effective settings
//! (flags, environment, file, defaults merged as `run` merges them), printed with passwords hidden →
//! the source ([`source`]) → each sink and the pipeline's checkpoint in it ([`sinks`]) → the report.
//!
//! Invariants:
//! - Read-only: the source gets SELECT and SHOW statements only; no sink is prepared, no lease is taken,
//!   no checkpoint written (see [`sinks`] for what opening a sink does).
//! - Exit code: 0 when nothing is wrong, 1 when problems were found (all of them printed), 2 when the
//!   check itself could not run (the config file cannot be read).

mod report;
mod sinks;
mod source;

use crate::config::{ParsedFile, RunArgs};
use anyhow::Result;
use report::Findings;
use std::process::ExitCode;

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let mut findings = Findings::default();
    let file_subject = args.pipeline.config.as_ref().map(|p| format!("config file {}", p.display()));
    let text = args.read_file()?;
    let parsed = match text.parse() {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            let message = format!("{e:#}");
            let fix = "correct the line and column the message names (TOML syntax: key = \"text\", key = 5, \
                       key = [\"a\", \"b\"])";
            findings.problem(file_subject.clone().unwrap_or_default(), message, fix);
            None
        }
    };
    let ParsedFile { config, unknown, .. } = parsed.unwrap_or_default();
    for key in &unknown {
        findings.problem(file_subject.clone().unwrap_or_default(), key.to_string(), key.fix());
    }
    let resolved = match args.resolve_from(config) {
        Ok(resolved) => resolved,
        Err(e) => {
            let message = format!("{e:#}");
            let fix = match message.split_once(": pass ") {
                Some((_, how)) => format!("pass {how}"),
                None => "correct that setting in the flags, the POLYREPL_* environment or the --config file".into(),
            };
            findings.problem("settings", message, fix);
            // Without a source, tables and sinks there is nothing further to reach.
            print!("{}", findings.render());
            return Ok(ExitCode::from(1));
        }
    };
    print!("{}", report::effective_config(&resolved, args.pipeline.config.as_deref()));
    if let Some(subject) = &file_subject {
        if findings.problems.is_empty() {
            findings.ok(subject, "valid, every key known");
        }
    }
    source::check(&resolved.run, &mut findings).await;
    sinks::check(&resolved.run, &mut findings).await;
    print!("{}", findings.render());
    Ok(if findings.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
