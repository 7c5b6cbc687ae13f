//! The source, read-only: reachable with its credentials, binlog settings, privileges, and every
//! selected table replicable — every problem, not only the first ([`polyrepl_mysql::checks::review_source`]).

use super::report::Findings;
use polyrepl_core::redact::redact_url;
use polyrepl_core::TableFilter;
use polyrepl_engine::RunConfig;
use polyrepl_mysql::checks::{review_source, CheckError};
use polyrepl_mysql::source_url::SourceUrl;

pub async fn check(run: &RunConfig, findings: &mut Findings) {
    let subject = format!("source {}", redact_url(&run.source));
    let url = match SourceUrl::parse(&run.source) {
        Ok(url) => url,
        Err(e) => {
            let fix = "write it as mysql://USER:PASSWORD@HOST:PORT (--source, POLYREPL_SOURCE or `source` in --config)";
            findings.problem(subject, e.to_string(), fix);
            return;
        }
    };
    let filter = match TableFilter::new(&run.tables, &run.exclude) {
        Ok(filter) => filter,
        Err(e) => {
            findings.problem("tables", e, "write each pattern as db.table or db.* (--tables / --exclude)");
            return;
        }
    };
    let review = review_source(&url, &filter).await;
    if let Some(s) = &review.settings {
        let binlog = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        findings.ok(
            &subject,
            format!(
                "reachable, server {}, log_bin {}, binlog_format {}, binlog_row_image {}, binlog_row_metadata {}",
                s.version,
                binlog(&s.log_bin),
                binlog(&s.binlog_format),
                binlog(&s.binlog_row_image),
                binlog(&s.binlog_row_metadata)
            ),
        );
        let names: Vec<String> = review.tables.iter().map(|t| t.id.to_string()).collect();
        findings.ok("tables", format!("{} selected: {}", names.len(), names.join(", ")));
    }
    for problem in &review.problems {
        let (message, fix) = split_fix(problem);
        findings.problem(&subject, message, fix);
    }
}

/// A start-up check's message and its fix. Most messages end with `Fix: …`; the others get theirs here.
fn split_fix(problem: &CheckError) -> (String, String) {
    let text = problem.to_string();
    if let Some((message, fix)) = text.split_once(" Fix: ") {
        return (message.trim_end_matches('.').to_string(), fix.to_string());
    }
    let fix = match problem {
        CheckError::Unreachable { .. } => {
            "start the server, or correct HOST:PORT in the source URL (`polyrepl stack up` starts the local one)"
        }
        CheckError::AccessDenied { .. } => "correct the user and password in the source URL, or create that user",
        _ => "check the server's error log and this user's privileges, then run `polyrepl check` again",
    };
    (text, fix.to_string())
}
