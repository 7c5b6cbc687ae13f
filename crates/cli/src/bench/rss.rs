//! Peak memory: the real binary as a child process snapshotting `snap` into every selected sink at
//! once, its peak RSS read from its own `/proc/PID/status` `VmHWM` while it runs (so the bench's own
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
    for &kind in &bench.args.sinks {
        phases::reset_sink(bench, kind, "snap").await?;
    }
    let exe = std::env::current_exe().context("locating the polyrepl binary")?;
    let name = bench.pipeline("rss");
    let log_path = std::env::temp_dir().join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = Command::new(exe);
    command.args(["run", "--log", "warn", "--stop-at-end", "--name", &name, "--tables", &format!("{}.snap", bench.db)]);
    for &kind in &bench.args.sinks {
        command.args(["--sink", bench.sink_url(kind)]);
    }
    // The source URL may hold a password: pass it through the environment, never the command line.
    command.env("POLYREPL_SOURCE", &bench.args.source).env_remove("POLYREPL_SINKS").env_remove("POLYREPL_CONFIG");
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    bench.note(format!(
        "rss: a `polyrepl run` child snapshots {} rows into {} sink(s)",
        bench.args.rows,
        bench.args.sinks.len()
    ));
    let started = Instant::now();
    let child = command.spawn().context("starting polyrepl run")?;
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        // VmHWM only grows, so the last reading before the exit holds the peak (up to the last 20 ms).
        tokio::spawn(async move {
            let mut peak_kib = 0u64;
            while !done.load(Relaxed) {
                if let Some(kib) = vm_hwm_kib(&format!("/proc/{pid}/status")) {
                    peak_kib = peak_kib.max(kib);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            peak_kib
        })
    };
    let waited = tokio::task::spawn_blocking(move || wait4(pid)).await.context("waiting for the child");
    done.store(true, Relaxed);
    let peak_kib = watcher.await.context("the RSS watcher")?;
    let status = waited??;
    let seconds = started.elapsed().as_secs_f64();
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    drop(child); // reaped by wait4 already
    if status != 0 {
        let tail: Vec<&str> = output.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("polyrepl run exited with status {status}:\n{}", tail.join("\n"));
    }
    let rows = bench.args.rows as u64;
    Ok(ChildRun { peak_rss_bytes: peak_kib * 1024, rows, rows_per_s: rows as f64 / seconds, seconds })
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

/// `VmHWM` of a `/proc/…/status` file, KiB (`None` once the process has released its memory).
fn vm_hwm_kib(path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// This process's own peak resident set (`VmHWM`), bytes.
pub fn own_peak_rss() -> u64 {
    vm_hwm_kib("/proc/self/status").map_or(0, |kib| kib * 1024)
}
