//! Progress of `verify` on stderr: an `indicatif` bar when stderr is a terminal, otherwise a plain line
//! every [`LINE_EVERY`] (logs and CI output stay readable).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Interval of the plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// Rows done out of an estimate, for one phase (checking, repairing).
#[derive(Default)]
pub struct Progress {
    phase: Option<Phase>,
}

/// The phase being drawn.
struct Phase {
    bar: Option<ProgressBar>,
    phase: String,
    done: u64,
    total: u64,
    started: Instant,
    last_line: Instant,
}

impl Phase {
    /// Starts a phase of about `total` rows (an estimate: information_schema's row counts).
    fn new(phase: &str, total: u64) -> Phase {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total.max(1));
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(phase.to_string());
            bar
        });
        let now = Instant::now();
        Phase { bar, phase: phase.to_string(), done: 0, total, started: now, last_line: now }
    }

    fn set_phase(&mut self, phase: &str) {
        self.phase = phase.to_string();
        if let Some(bar) = &self.bar {
            bar.set_message(phase.to_string());
        }
    }

    fn add(&mut self, rows: u64) {
        self.done += rows;
        if self.done > self.total {
            self.total = self.done;
            if let Some(bar) = &self.bar {
                bar.set_length(self.total);
            }
        }
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("  {}", self.line());
            }
            None => {}
        }
    }

    /// `verify shop.t: 1200/5000 rows (24%), 3000 rows/s`
    fn line(&self) -> String {
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
        format!("{}: {}/{} rows ({pct}%), {rate:.0} rows/s", self.phase, self.done, self.total)
    }

    /// Ends the phase (clears the bar).
    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

impl polyrepl_engine::verify::Progress for Progress {
    fn start(&mut self, phase: &str, total: u64) {
        if let Some(old) = self.phase.replace(Phase::new(phase, total)) {
            old.finish();
        }
    }

    fn set_phase(&mut self, phase: &str) {
        if let Some(p) = &mut self.phase {
            p.set_phase(phase);
        }
    }

    fn add(&mut self, rows: u64) {
        if let Some(p) = &mut self.phase {
            p.add(rows);
        }
    }

    fn finish(&mut self) {
        if let Some(p) = self.phase.take() {
            p.finish();
        }
    }
}
