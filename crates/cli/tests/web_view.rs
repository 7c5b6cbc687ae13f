//! End-to-end: the live web view of a `polyrepl run` (the real binary, into MongoDB, Redis and Cassandra,
//! under a writer), rendered by a real browser — Debian's headless `chromium`, which
//! `scripts/install-deps` installs. The DOM is read after the page's script ran: every sink and the table
//! with a state and a lag; a second load a few seconds later shows more changes and more chart samples.
//! A screenshot lands in `<target dir>/test-artifacts/web-view.png`.
//!
//! Servers: MariaDB 127.0.0.1:5600, FerretDB 127.0.0.1:1800, Redis 127.0.0.1:6379, Cassandra 127.0.0.1:9042.

mod common;

use common::three_sinks::*;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Virtual milliseconds the page runs before the browser dumps it: a few of its 1 s polls.
const BUDGET_MS: &str = "4000";

/// The browser: `POLYREPL_CHROMIUM`, else `chromium` on PATH. Missing is a failure, not a skip: the
/// installer provides it.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("POLYREPL_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("chromium")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "chromium is not installed: run scripts/install-deps (or `make deps`), which installs Debian's \
             `chromium` package (or point POLYREPL_CHROMIUM at a Chromium binary)"
        )
    })
}

/// Runs headless Chromium on `url` with `args` (its own profile in `profile`); returns its stdout.
fn browse(browser: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    let mut child = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={BUDGET_MS}"))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish rendering {url} within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "chromium failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The page after its script ran, as the browser serialises it.
async fn rendered(browser: &Path, profile: &Path, url: &str) -> Dom {
    let (browser, profile, url) = (browser.to_path_buf(), profile.to_path_buf(), url.to_string());
    let html = tokio::task::spawn_blocking(move || browse(&browser, &profile, &url, &["--dump-dom"])).await.unwrap();
    Dom(html)
}

/// A serialised DOM, read by its start tags' attributes (Chromium writes them all in double quotes).
struct Dom(String);

impl Dom {
    /// The attributes of every `<tag …>` whose `class` is `class`.
    fn elements(&self, tag: &str, class: &str) -> Vec<BTreeMap<String, String>> {
        let open = format!("<{tag} ");
        self.0
            .match_indices(&open)
            .filter_map(|(at, _)| {
                let rest = &self.0[at + open.len()..];
                let attrs = attributes(&rest[..rest.find('>')?]);
                (attrs.get("class").map(String::as_str) == Some(class)).then_some(attrs)
            })
            .collect()
    }

    /// The attributes of the element with id `id`.
    fn by_id(&self, id: &str) -> BTreeMap<String, String> {
        let at = self.0.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page:\n{}", self.0));
        let start = self.0[..at].rfind('<').unwrap();
        let tag = &self.0[start..];
        attributes(&tag[tag.find(' ').unwrap()..tag.find('>').unwrap()])
    }

    fn number(&self, id: &str, attr: &str) -> f64 {
        let value = self.by_id(id).get(attr).cloned().unwrap_or_default();
        value.parse().unwrap_or_else(|_| panic!("#{id} has no numeric {attr} ({value:?}):\n{}", self.0))
    }
}

/// `a="1" b="x &amp; y"` as a map.
fn attributes(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim().to_string();
        let value_end = rest[eq + 2..].find('"').map(|e| eq + 2 + e).unwrap_or(rest.len());
        let value = rest[eq + 2..value_end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        out.insert(name, value);
        rest = &rest[(value_end + 1).min(rest.len())..];
    }
    out
}

fn num(attrs: &BTreeMap<String, String>, name: &str) -> f64 {
    attrs.get(name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no numeric {name} in {attrs:?}"))
}

/// The sink names the run reports on `/status`.
fn sink_names(port: u16) -> Vec<String> {
    let (code, body) = http_get(port, "/status").expect("/status answers");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["sinks"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_shows_every_sink_and_table_and_moves_in_a_real_browser() {
    let browser = chromium();
    let profile = tempfile::tempdir().unwrap();
    let h = Harness::create("web").await;
    let (_pipeline, addr, mut p) = h.flow_run_with_http(200).await;
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let writer = Writer::start(&h.db, flow_writer_step, 200).await;
    let names = sink_names(port);
    for scheme in ["mongodb://", "redis://", "cassandra://"] {
        assert!(names.iter().any(|n| n.starts_with(scheme)), "no {scheme} sink on /status: {names:?}");
    }
    // A few seconds of history with the writer's changes in it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let url = format!("http://{addr}/");
    let table = format!("{}.flow", h.db.name);

    let first = rendered(&browser, profile.path(), &url).await;
    assert_eq!(first.by_id("connection").get("data-connected").map(String::as_str), Some("true"), "{}", first.0);
    assert!(first.number("chart-throughput", "data-samples") >= 3.0, "{}", first.0);
    let sinks = first.elements("tr", "sink");
    let tables = first.elements("tr", "table");
    for name in &names {
        let sink = sinks.iter().find(|s| s.get("data-sink") == Some(name));
        let sink = sink.unwrap_or_else(|| panic!("no row for sink {name}:\n{}", first.0));
        assert_eq!(sink["data-state"], "streaming", "{sink:?}");
        assert!(num(sink, "data-lag-seconds") >= 0.0, "{sink:?}");
        let row = tables.iter().find(|t| t.get("data-sink") == Some(name) && t.get("data-table") == Some(&table));
        let row = row.unwrap_or_else(|| panic!("no row for {table} in {name}:\n{}", first.0));
        assert_eq!(row["data-state"], "streaming", "{row:?}");
        assert!(num(row, "data-lag-seconds") >= 0.0, "{row:?}");
        assert!(num(row, "data-changes") >= 200.0, "the copied rows count: {row:?}");
    }
    assert!(first.0.contains("<polyline data-sink="), "the charts draw a line per sink:\n{}", first.0);
    assert!(first.0.contains(" s</td>"), "a lag is shown in seconds:\n{}", first.0);

    // Live: a later load shows more changes applied and more samples in the charts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = rendered(&browser, profile.path(), &url).await;
    let changes = |dom: &Dom| -> f64 { dom.elements("tr", "sink").iter().map(|s| num(s, "data-changes")).sum() };
    assert!(changes(&second) > changes(&first), "no more changes applied between two loads:\n{}", second.0);
    let samples = |dom: &Dom| dom.number("chart-throughput", "data-samples");
    assert!(samples(&second) > samples(&first), "the chart did not grow:\n{}", second.0);
    let moving = second.elements("tr", "sink").iter().any(|s| num(s, "data-changes-per-second") > 0.0);
    assert!(moving, "no sink shows changes per second under a writer:\n{}", second.0);

    // The picture, for people (and the README).
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("web-view.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    let (b, prof, u) = (browser.clone(), profile.path().to_path_buf(), url.clone());
    tokio::task::spawn_blocking(move || browse(&b, &prof, &u, &[&shot, "--window-size=1280,900", "--hide-scrollbars"]))
        .await
        .unwrap();
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "the screenshot {} is missing or blank ({size} bytes)", png.display());
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"), "{} is not a PNG", png.display());
    eprintln!("web view screenshot: {}", png.display());

    writer.finish().await;
    p.assert_running();
    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "the run did not stop cleanly ({status}):\n{}", p.log());
}
