//! The two renderings of a run's metrics: Prometheus text for `/metrics`, JSON for `/status`.

use polyrepl_engine::metrics::{Metrics, SinkStats};
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;

/// One series per sink: name, help, type, and the sample's value.
type SinkSeries = (&'static str, &'static str, &'static str, fn(&Metrics, &SinkStats) -> f64);

const SINK_SERIES: &[SinkSeries] = &[
    ("polyrepl_sink_changes_applied_total", "Row changes applied to the sink.", "counter", |_, st| {
        st.changes_applied.load(Relaxed) as f64
    }),
    ("polyrepl_sink_batches_applied_total", "Batches applied to the sink.", "counter", |_, st| {
        st.batches_applied.load(Relaxed) as f64
    }),
    (
        "polyrepl_sink_batches_skipped_total",
        "Batches the sink already held (skipped on resume).",
        "counter",
        |_, st| st.batches_skipped.load(Relaxed) as f64,
    ),
    ("polyrepl_sink_last_batch_size", "Changes in the last applied batch.", "gauge", |_, st| {
        st.last_batch_size.load(Relaxed) as f64
    }),
    (
        "polyrepl_sink_batches_spilled_total",
        "Batches written to the sink's spill file on disk because its queue in memory was full.",
        "counter",
        |_, st| st.batches_spilled.load(Relaxed) as f64,
    ),
    ("polyrepl_sink_spilled_bytes", "Bytes in the sink's spill file not yet applied.", "gauge", |_, st| {
        st.spilled_bytes.load(Relaxed) as f64
    }),
    ("polyrepl_sink_errors_total", "Failed apply attempts.", "counter", |_, st| st.errors.load(Relaxed) as f64),
    (
        "polyrepl_sink_lag_seconds",
        "Source commit time of the newest change read minus that of the newest change applied.",
        "gauge",
        |m, st| m.lag_seconds(st),
    ),
];

/// Prometheus text exposition.
pub fn prometheus(metrics: &Metrics) -> String {
    let mut out = String::new();
    let mut line = |name: &str, help: &str, kind: &str, samples: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let s = &metrics.source;
    let by_table = |counts: &std::collections::BTreeMap<String, u64>| -> Vec<(String, f64)> {
        counts.iter().map(|(t, n)| (format!("{{table=\"{t}\"}}"), *n as f64)).collect()
    };
    line(
        "polyrepl_source_changes_read_total",
        "Row changes read from the source.",
        "counter",
        vec![(String::new(), s.changes_read.load(Relaxed) as f64)],
    );
    line(
        "polyrepl_source_table_changes_read_total",
        "Row changes read from the source, per table.",
        "counter",
        by_table(&s.per_table.lock().unwrap()),
    );
    line(
        "polyrepl_source_transactions_read_total",
        "Transactions read from the binlog.",
        "counter",
        vec![(String::new(), s.transactions_read.load(Relaxed) as f64)],
    );
    line(
        "polyrepl_snapshot_rows_total",
        "Rows read by the initial snapshot and by online copies.",
        "counter",
        vec![(String::new(), s.snapshot_rows.load(Relaxed) as f64)],
    );
    line(
        "polyrepl_online_copy_rows",
        "Rows handed over so far by each online copy in progress (a table leaves the series when done).",
        "gauge",
        by_table(&s.copies.lock().unwrap()),
    );
    line(
        "polyrepl_online_copies_completed_total",
        "Online copies completed since the run started.",
        "counter",
        vec![(String::new(), s.copies_completed.load(Relaxed) as f64)],
    );
    line(
        "polyrepl_source_heartbeats_total",
        "Heartbeats received from the source.",
        "counter",
        vec![(String::new(), s.heartbeats.load(Relaxed) as f64)],
    );
    let position_labels = s.position.lock().unwrap().clone().map(|p| format!("{{position=\"{p}\"}}"));
    line(
        "polyrepl_source_position_info",
        "The source position last read.",
        "gauge",
        position_labels.into_iter().map(|l| (l, 1.0)).collect(),
    );
    let sinks = metrics.sinks.lock().unwrap();
    for (name, help, kind, value) in SINK_SERIES {
        line(name, help, kind, sinks.iter().map(|(n, st)| (format!("{{sink=\"{n}\"}}"), value(metrics, st))).collect());
    }
    let mut table_samples = Vec::new();
    for (n, st) in sinks.iter() {
        for (t, c) in st.per_table.lock().unwrap().iter() {
            table_samples.push((format!("{{sink=\"{n}\",table=\"{t}\"}}"), *c as f64));
        }
    }
    line(
        "polyrepl_sink_table_changes_applied_total",
        "Row changes applied, per sink and table.",
        "counter",
        table_samples,
    );
    let (mut skipped, mut dead) = (Vec::new(), Vec::new());
    for (n, st) in sinks.iter() {
        for (t, c) in st.unmappable.skipped() {
            skipped.push((format!("{{sink=\"{n}\",table=\"{t}\"}}"), c as f64));
        }
        for (t, c) in st.unmappable.dead_lettered() {
            dead.push((format!("{{sink=\"{n}\",table=\"{t}\"}}"), c as f64));
        }
    }
    line(
        "polyrepl_rows_skipped_total",
        "Rows a sink could not hold and left out (--on-unmappable skip), per sink and table.",
        "counter",
        skipped,
    );
    line(
        "polyrepl_dead_letters_total",
        "Rows a sink could not hold, left out and recorded in its dead-letter place (--on-unmappable dead-letter), per sink and table.",
        "counter",
        dead,
    );
    out
}

/// The `/status` document.
pub fn status(metrics: &Metrics) -> serde_json::Value {
    #[derive(Serialize)]
    struct SinkStatus {
        name: String,
        state: String,
        /// Why the sink is retrying or failed.
        error: Option<String>,
        position: Option<String>,
        changes_applied: u64,
        batches_applied: u64,
        errors: u64,
        lag_seconds: f64,
        rows_skipped: u64,
        dead_letters: u64,
        /// Batches that went to the sink's spill file because its queue was full, and the bytes there now.
        batches_spilled: u64,
        spilled_bytes: u64,
        /// Changes applied per source table.
        tables: std::collections::BTreeMap<String, u64>,
    }
    let sinks: Vec<SinkStatus> = metrics
        .sinks
        .lock()
        .unwrap()
        .iter()
        .map(|(n, st)| SinkStatus {
            name: n.clone(),
            state: st.state.lock().unwrap().clone(),
            error: st.last_error.lock().unwrap().clone(),
            position: st.position.lock().unwrap().clone(),
            changes_applied: st.changes_applied.load(Relaxed),
            batches_applied: st.batches_applied.load(Relaxed),
            errors: st.errors.load(Relaxed),
            lag_seconds: metrics.lag_seconds(st),
            rows_skipped: st.unmappable.skipped().values().sum(),
            dead_letters: st.unmappable.dead_lettered().values().sum(),
            batches_spilled: st.batches_spilled.load(Relaxed),
            spilled_bytes: st.spilled_bytes.load(Relaxed),
            tables: st.per_table.lock().unwrap().clone(),
        })
        .collect();
    serde_json::json!({
        "source": {
            "position": metrics.source.position.lock().unwrap().clone(),
            "changes_read": metrics.source.changes_read.load(Relaxed),
            "snapshot_rows": metrics.source.snapshot_rows.load(Relaxed),
            "online_copies": metrics.source.copies.lock().unwrap().iter()
                .map(|(t, rows)| serde_json::json!({"table": t, "rows_copied": rows}))
                .collect::<Vec<_>>(),
            "online_copies_completed": metrics.source.copies_completed.load(Relaxed),
            "snapshot": metrics.source.snapshot_tables.lock().unwrap().iter()
                .map(|(t, p)| serde_json::json!({
                    "table": t, "rows_read": p.rows_read, "rows_estimated": p.rows_estimated, "done": p.done,
                }))
                .collect::<Vec<_>>(),
        },
        "sinks": sinks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sink_series_has_a_sample_per_sink_and_status_names_the_sinks() {
        let metrics = Metrics::default();
        let a = metrics.sink("redis://h:1");
        metrics.sink("mongodb://h:2");
        a.changes_applied.store(7, Relaxed);
        let text = prometheus(&metrics);
        for (name, _, kind, _) in SINK_SERIES {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
            assert!(text.contains(&format!("{name}{{sink=\"mongodb://h:2\"}} ")), "{name}");
        }
        assert!(text.contains("polyrepl_sink_changes_applied_total{sink=\"redis://h:1\"} 7\n"), "{text}");
        let status = status(&metrics);
        assert_eq!(status["sinks"][0]["name"], "redis://h:1");
        assert_eq!(status["sinks"][0]["changes_applied"], 7);
        a.per_table.lock().unwrap().insert("d.t".into(), 7);
        assert_eq!(super::status(&metrics)["sinks"][0]["tables"]["d.t"], 7);
        assert_eq!(status["sinks"][1]["state"], "starting");
        metrics.copy_progress("d.t", 5000);
        assert!(prometheus(&metrics).contains("polyrepl_online_copy_rows{table=\"d.t\"} 5000\n"));
        assert_eq!(super::status(&metrics)["source"]["online_copies"][0]["rows_copied"], 5000);
        metrics.copy_done("d.t");
        assert!(prometheus(&metrics).contains("polyrepl_online_copies_completed_total 1\n"));
        a.unmappable.add_dead_lettered(&polyrepl_core::TableId::new("d", "big"));
        a.unmappable.add_dead_lettered(&polyrepl_core::TableId::new("d", "big"));
        a.unmappable.add_skipped(&polyrepl_core::TableId::new("d", "t"));
        let text = prometheus(&metrics);
        assert!(text.contains("polyrepl_dead_letters_total{sink=\"redis://h:1\",table=\"d.big\"} 2\n"), "{text}");
        assert!(text.contains("polyrepl_rows_skipped_total{sink=\"redis://h:1\",table=\"d.t\"} 1\n"), "{text}");
        assert_eq!(super::status(&metrics)["sinks"][0]["dead_letters"], 2);
        *a.last_error.lock().unwrap() = Some("connection refused".into());
        metrics.snapshot_progress("d.t", 10, 40);
        let status = super::status(&metrics);
        assert_eq!(status["sinks"][0]["error"], "connection refused");
        assert_eq!(
            status["source"]["snapshot"][0],
            serde_json::json!({"table": "d.t", "rows_read": 10, "rows_estimated": 40, "done": false})
        );
    }
}
