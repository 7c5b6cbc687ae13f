//! The last minutes of a run, sampled once a second on the server, for the web view's charts
//! (`/history`). Rates are measured here between two samples, on the server's clock, so that a page
//! opened late (or rendered by a headless browser on virtual time) still sees the right numbers.

use polyrepl_engine::metrics::{now_millis, Metrics};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One sample a second, five minutes of them.
pub const INTERVAL: Duration = Duration::from_secs(1);
pub const CAPACITY: usize = 300;

/// One sink at one instant.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct SinkSample {
    pub name: String,
    pub changes_applied: u64,
    pub changes_per_second: f64,
    pub lag_seconds: f64,
    /// Changes per second per source table.
    pub tables: BTreeMap<String, f64>,
}

/// Every sink at one instant (epoch milliseconds).
#[derive(Serialize, Clone, Debug)]
pub struct Sample {
    pub t: u64,
    pub source_changes_per_second: f64,
    pub sinks: Vec<SinkSample>,
}

/// The counters of the previous sample, to measure rates against.
#[derive(Default)]
struct Previous {
    at: Option<Instant>,
    source: u64,
    sinks: BTreeMap<String, (u64, BTreeMap<String, u64>)>,
}

/// A ring of the newest [`CAPACITY`] samples.
#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    previous: Mutex<Previous>,
}

impl History {
    /// A history sampled from `metrics` every [`INTERVAL`] while the process runs.
    pub fn spawn(metrics: Arc<Metrics>) -> Arc<History> {
        let history = Arc::new(History::default());
        let sampler = history.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                sampler.sample(&metrics, Instant::now());
            }
        });
        history
    }

    /// Takes one sample of `metrics` at `now`; rates are over the time since the previous one (0 for the
    /// first, which has nothing to compare with).
    pub fn sample(&self, metrics: &Metrics, now: Instant) {
        let mut prev = self.previous.lock().unwrap();
        let seconds = prev.at.map(|at| now.duration_since(at).as_secs_f64());
        let rate = |new: u64, old: Option<u64>| match (seconds, old) {
            (Some(s), Some(old)) if s > 0.0 => new.saturating_sub(old) as f64 / s,
            _ => 0.0,
        };
        let source = metrics.source.changes_read.load(Relaxed);
        let source_rate = rate(source, prev.at.map(|_| prev.source));
        let mut sinks = Vec::new();
        let mut counts = BTreeMap::new();
        for (name, st) in metrics.sinks.lock().unwrap().iter() {
            let applied = st.changes_applied.load(Relaxed);
            let per_table = st.per_table.lock().unwrap().clone();
            let old = prev.sinks.get(name);
            let tables = per_table
                .iter()
                .map(|(t, n)| (t.clone(), rate(*n, old.map(|o| o.1.get(t).copied().unwrap_or(0)))))
                .collect();
            sinks.push(SinkSample {
                name: name.clone(),
                changes_applied: applied,
                changes_per_second: rate(applied, old.map(|o| o.0)),
                lag_seconds: metrics.lag_seconds(st),
                tables,
            });
            counts.insert(name.clone(), (applied, per_table));
        }
        *prev = Previous { at: Some(now), source, sinks: counts };
        let mut samples = self.samples.lock().unwrap();
        if samples.len() == CAPACITY {
            samples.pop_front();
        }
        samples.push_back(Sample { t: now_millis(), source_changes_per_second: source_rate, sinks });
    }

    /// The `/history` document: the samples, oldest first.
    pub fn json(&self) -> serde_json::Value {
        let samples: Vec<Sample> = self.samples.lock().unwrap().iter().cloned().collect();
        serde_json::json!({
            "interval_seconds": INTERVAL.as_secs_f64(),
            "capacity": CAPACITY,
            "samples": samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_measured_between_samples_and_the_ring_keeps_the_newest() {
        let metrics = Metrics::default();
        let sink = metrics.sink("redis://h:1");
        let history = History::default();
        let start = Instant::now();
        history.sample(&metrics, start);
        sink.changes_applied.store(50, Relaxed);
        sink.per_table.lock().unwrap().insert("d.t".into(), 50);
        metrics.source.changes_read.store(60, Relaxed);
        history.sample(&metrics, start + Duration::from_secs(2));
        let json = history.json();
        let second = &json["samples"][1];
        assert_eq!(second["source_changes_per_second"], 30.0);
        assert_eq!(second["sinks"][0]["name"], "redis://h:1");
        assert_eq!(second["sinks"][0]["changes_applied"], 50);
        assert_eq!(second["sinks"][0]["changes_per_second"], 25.0);
        assert_eq!(second["sinks"][0]["tables"]["d.t"], 25.0);
        assert_eq!(json["samples"][0]["sinks"][0]["changes_per_second"], 0.0);
        for i in 0..CAPACITY as u64 {
            history.sample(&metrics, start + Duration::from_secs(3 + i));
        }
        let samples = history.json()["samples"].as_array().unwrap().len();
        assert_eq!(samples, CAPACITY);
    }
}
