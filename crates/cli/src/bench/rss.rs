//! Memory: the real binary as a child process snapshotting `snap` into every selected sink at once, and
//! streaming the lag writer's changes into them; its peak RSS read from its own `/proc/PID/status` `VmHWM` while it runs (so the bench's own
//! memory, which holds pre-converted rows, never counts), and the bench's own peak for comparison.
//!
//! Not `wait4`'s `ru_maxrss`: Linux folds the high-water mark of the address space a process had before
//! `exec` into it, and a child forked from the bench starts with the bench's resident pages — the
//! child of a 500 MiB bench reported 500 MiB whatever it used itself.

use super::{phases, Bench};
use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// What the child run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChildRun {
    /// Peak resident set of the `polyrepl run` child, bytes.
    pub peak_rss_bytes: u64,
    /// Rows of `snap` copied.
    pub rows: u64,
    /// Rows/s from process start to exit (start-up checks and connections included).
    pub rows_per_s: f64,
    /// Seconds from process start to exit.
    pub seconds: f64,
}

/// Runs `polyrepl run --stop-at-end` on `snap` into every selected sink, as a child.
pub async fn snapshot_child(bench: &Bench) -> Result<ChildRun> {
    for kind in bench.memory_sinks() {
        phases::reset_sink(bench, kind, "snap").await?;
    }
    let name = bench.pipeline("rss");
    bench.note(format!(
        "rss: a `polyrepl run` child snapshots {} rows into {} sink(s)",
        bench.args.rows,
        bench.memory_sinks().len()
    ));
    let started = Instant::now();
    let child = RunChild::spawn(bench, &name, "snap", true)?;
    let pid = child.pid;
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        // VmHWM only grows, so the last reading before the exit holds the peak (up to the last 20 ms).
        tokio::spawn(async move {
            let mut peak_kib = 0u64;
            while !done.load(Relaxed) {
                if let Some(kib) = status_kib(&format!("/proc/{pid}/status"), "VmHWM:") {
                    peak_kib = peak_kib.max(kib);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            peak_kib
        })
    };
    let waited = child.wait().await;
    done.store(true, Relaxed);
    let peak_kib = watcher.await.context("the RSS watcher")?;
    waited?;
    let seconds = started.elapsed().as_secs_f64();
    let rows = bench.args.rows as u64;
    Ok(ChildRun { peak_rss_bytes: peak_kib * 1024, rows, rows_per_s: rows as f64 / seconds, seconds })
}

/// What the streaming child measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamingRss {
    /// Highest resident set (`VmRSS`, sampled every 100 ms) of the `polyrepl run` child while the writer
    /// committed `--lag-rate` changes/s, bytes.
    pub max_rss_bytes: u64,
    /// Its `VmHWM` at the end (start-up included), bytes.
    pub peak_rss_bytes: u64,
    /// Row changes the writer committed, and over how many seconds.
    pub changes: u64,
    pub seconds: f64,
}

/// A `polyrepl run` child streams the `lag` table into every selected sink while the lag writer commits
/// `--lag-rate` changes/s for `--lag-seconds`; its resident set is sampled meanwhile.
pub async fn streaming_child(bench: &Bench) -> Result<StreamingRss> {
    let name = bench.pipeline("rss_stream");
    bench.note(format!(
        "rss: a `polyrepl run` child streams {} changes/s into {} sink(s) for {} s",
        bench.args.lag_rate,
        bench.memory_sinks().len(),
        bench.args.lag_seconds
    ));
    let child = RunChild::spawn(bench, &name, "lag", false)?;
    let pid = child.pid;
    // Start-up (checks, connections, the empty snapshot of `lag`) is over well within this.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let writing = Arc::new(AtomicBool::new(true));
    let sampler = {
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut max_kib = 0u64;
            while writing.load(Relaxed) {
                if let Some(kib) = status_kib(&format!("/proc/{pid}/status"), "VmRSS:") {
                    max_kib = max_kib.max(kib);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            max_kib
        })
    };
    let written = super::lag::write_steadily(bench, || false).await;
    // The child drains what is queued, then the sampling stops.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    writing.store(false, Relaxed);
    let max_kib = sampler.await.context("the RSS sampler")?;
    // Linux updates the high-water mark lazily (on unmapping, at exit): memory returned to the system
    // otherwise can leave VmHWM below an RSS sampled earlier, so the peak is the larger of the two.
    let peak_kib = status_kib(&format!("/proc/{pid}/status"), "VmHWM:").unwrap_or(0).max(max_kib);
    // SAFETY: plain libc call; `pid` is our own child, still running (not reaped).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    child.wait().await?;
    let (changes, seconds, _) = written?;
    if max_kib == 0 {
        bail!("the streaming child's memory could not be read from /proc/{pid}/status");
    }
    Ok(StreamingRss { max_rss_bytes: max_kib * 1024, peak_rss_bytes: peak_kib * 1024, changes, seconds })
}

/// A `polyrepl run` child of the bench, its stderr in a log file.
struct RunChild {
    child: std::process::Child,
    pid: libc::pid_t,
    log_path: std::path::PathBuf,
}

impl RunChild {
    /// Starts `polyrepl run` on `table` of the bench database into every selected sink.
    fn spawn(bench: &Bench, name: &str, table: &str, stop_at_end: bool) -> Result<RunChild> {
        let exe = std::env::current_exe().context("locating the polyrepl binary")?;
        let log_path = std::env::temp_dir().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(exe);
        command.args(["run", "--log", "warn", "--name", name, "--tables", &format!("{}.{table}", bench.db)]);
        if stop_at_end {
            command.arg("--stop-at-end");
        }
        for kind in bench.memory_sinks() {
            command.args(["--sink", bench.sink_url(kind)]);
        }
        // The source URL may hold a password: pass it through the environment, never the command line.
        command.env("POLYREPL_SOURCE", &bench.args.source).env_remove("POLYREPL_SINKS").env_remove("POLYREPL_CONFIG");
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = command.spawn().context("starting polyrepl run")?;
        let pid = child.id() as libc::pid_t;
        Ok(RunChild { child, pid, log_path })
    }

    /// Waits for the child's exit; an error with the end of its log unless it exited with 0.
    async fn wait(self) -> Result<()> {
        let pid = self.pid;
        let status = tokio::task::spawn_blocking(move || wait4(pid)).await.context("waiting for the child")??;
        let output = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log_path);
        drop(self.child); // reaped by wait4 already
        if status != 0 {
            let tail: Vec<&str> = output.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("polyrepl run exited with status {status}:\n{}", tail.join("\n"));
        }
        Ok(())
    }
}

/// Waits for `pid`; returns its exit code (128 + signal when killed).
fn wait4(pid: libc::pid_t) -> Result<i32> {
    let mut status: libc::c_int = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain libc call with valid out-pointers; `pid` is our own child, not reaped elsewhere.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
    }
    Ok(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) })
}

/// A `field` (`VmHWM:`, `VmRSS:`) of a `/proc/…/status` file, KiB (`None` once the process has
/// released its memory).
fn status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// This process's own peak resident set (`VmHWM`), bytes.
pub fn own_peak_rss() -> u64 {
    status_kib("/proc/self/status", "VmHWM:").map_or(0, |kib| kib * 1024)
}
