// The live view: polls /status (states, positions, lag, snapshot progress) and /history (rates and the
// last minutes, sampled on the server) every second and redraws. Everything is built with DOM calls
// and textContent, never from HTML strings: sink names and errors come from outside.
"use strict";

const POLL_MS = 1000;
const WINDOW_MS = 5 * 60 * 1000;
const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285"];
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

const fmtRate = (v) => (v === undefined ? "–" : v.toFixed(1));
const fmtLag = (v) => (v === undefined ? "–" : `${v.toFixed(1)} s`);
const fmtCount = (v) => Number(v || 0).toLocaleString("en-US");

// What a sink is doing, in the words of the page: the engine's state, refined by the snapshot.
function sinkPhase(sink, status) {
  if (sink.state === "failed") return "stopped";
  if (sink.state === "retrying" || sink.state === "starting") return sink.state;
  const snapshotting = (status.source.snapshot || []).some((t) => !t.done);
  return snapshotting ? "snapshotting" : "streaming";
}

// What one table of a sink is doing, and its snapshot progress when it is being copied.
function tablePhase(table, sink, status) {
  const phase = sinkPhase(sink, status);
  if (phase === "stopped" || phase === "retrying" || phase === "starting") return { phase };
  const snap = (status.source.snapshot || []).find((s) => s.table === table);
  if (snap && !snap.done) {
    const applied = sink.tables[table] || 0;
    const total = Math.max(snap.rows_estimated, snap.rows_read);
    return { phase: "snapshotting", applied, total };
  }
  const copy = (status.source.online_copies || []).find((c) => c.table === table);
  if (copy) return { phase: "copying", applied: copy.rows_copied, total: 0 };
  if (phase === "snapshotting") return { phase: "copied" };
  return { phase: "streaming" };
}

function stateBadge(phase, progress) {
  let text = phase;
  if (progress && progress.total > 0) {
    const pct = Math.min(100, Math.floor((100 * progress.applied) / progress.total));
    text += ` ${fmtCount(progress.applied)}/${fmtCount(progress.total)} (${pct}%)`;
  } else if (progress && progress.applied !== undefined) {
    text += ` ${fmtCount(progress.applied)} rows`;
  }
  return el("span", { class: `state state-${phase}` }, text);
}

function colorOf(names, name) {
  return COLORS[Math.max(0, names.indexOf(name)) % COLORS.length];
}

function renderSource(status, latest) {
  const s = status.source;
  $("source-position").textContent = s.position || "–";
  $("source-changes").textContent = fmtCount(s.changes_read);
  $("source-changes").dataset.value = s.changes_read;
  $("source-rate").textContent = latest ? fmtRate(latest.source_changes_per_second) : "–";
  $("snapshot-rows").textContent = fmtCount(s.snapshot_rows);
  $("snapshot-rows").dataset.value = s.snapshot_rows;
}

function renderSinks(status, latest, names) {
  const rows = [];
  for (const sink of status.sinks) {
    const phase = sinkPhase(sink, status);
    const rate = latest && latest.sinks.find((x) => x.name === sink.name);
    const row = el("tr", {
      class: "sink",
      "data-sink": sink.name,
      "data-state": phase,
      "data-lag-seconds": sink.lag_seconds,
      "data-changes": sink.changes_applied,
      "data-changes-per-second": rate ? rate.changes_per_second : undefined,
    },
      el("td", {}, el("span", { class: "swatch", style: `background:${colorOf(names, sink.name)}` }), sink.name),
      el("td", { class: "state-cell" }, stateBadge(phase)),
      el("td", { class: "num lag" }, fmtLag(sink.lag_seconds)),
      el("td", { class: "num rate" }, rate ? fmtRate(rate.changes_per_second) : "–"),
      el("td", { class: "num changes" }, fmtCount(sink.changes_applied)),
      el("td", { class: "num errors" }, fmtCount(sink.errors)),
      el("td", { class: "position", title: sink.position || "" }, sink.position || "–"));
    rows.push(row);
    if (sink.error && (phase === "stopped" || phase === "retrying")) {
      rows.push(el("tr", { class: "sink-error", "data-sink": sink.name },
        el("td", { class: "error", colspan: 7 }, `${phase === "stopped" ? "stopped" : "retrying"}: ${sink.error}`)));
    }
  }
  $("sinks").tBodies[0].replaceChildren(...rows);
}

function renderTables(status, latest) {
  const entries = [];
  for (const sink of status.sinks) {
    const names = new Set(Object.keys(sink.tables || {}));
    for (const s of status.source.snapshot || []) names.add(s.table);
    for (const c of status.source.online_copies || []) names.add(c.table);
    const rates = latest && latest.sinks.find((x) => x.name === sink.name);
    for (const table of names) entries.push({ table, sink, rate: rates ? rates.tables[table] : undefined });
  }
  entries.sort((a, b) => a.table.localeCompare(b.table) || a.sink.name.localeCompare(b.sink.name));
  const rows = entries.map(({ table, sink, rate }) => {
    const progress = tablePhase(table, sink, status);
    return el("tr", {
      class: "table",
      "data-table": table,
      "data-sink": sink.name,
      "data-state": progress.phase,
      "data-lag-seconds": sink.lag_seconds,
      "data-changes": sink.tables[table] || 0,
      "data-changes-per-second": rate,
      "data-progress": progress.total ? progress.applied / progress.total : undefined,
    },
      el("td", {}, table),
      el("td", {}, sink.name),
      el("td", { class: "state-cell" }, stateBadge(progress.phase, progress)),
      el("td", { class: "num lag" }, fmtLag(sink.lag_seconds)),
      el("td", { class: "num rate" }, fmtRate(rate)),
      el("td", { class: "num changes" }, fmtCount(sink.tables[table])),
      el("td", { class: "position", title: sink.position || "" }, sink.position || "–"));
  });
  $("tables").tBodies[0].replaceChildren(...rows);
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A round upper bound for the y axis: 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

// One line per sink over the last five minutes; x is time before the newest sample.
function renderChart(id, samples, names, value) {
  const chart = $(id);
  const [w, h, left, right, top, bottom] = [600, 200, 44, 8, 8, 22];
  const newest = samples.length ? samples[samples.length - 1].t : 0;
  let max = 0;
  for (const s of samples) for (const x of s.sinks) max = Math.max(max, value(x));
  max = niceMax(max);
  const X = (t) => left + (w - left - right) * (1 - (newest - t) / WINDOW_MS);
  const Y = (v) => top + (h - top - bottom) * (1 - v / max);
  const nodes = [];
  for (const f of [0, 0.5, 1]) {
    nodes.push(svg("line", { class: "grid", x1: left, x2: w - right, y1: Y(max * f), y2: Y(max * f) }));
    nodes.push(svg("text", { class: "axis", x: left - 6, y: Y(max * f) + 4, "text-anchor": "end" }, String(+(max * f).toPrecision(3))));
  }
  for (const [label, ago] of [["−5 min", WINDOW_MS], ["−2.5 min", WINDOW_MS / 2], ["now", 0]]) {
    const anchor = ago === WINDOW_MS ? "start" : ago === 0 ? "end" : "middle";
    nodes.push(svg("text", { class: "axis", x: X(newest - ago), y: h - 6, "text-anchor": anchor }, label));
  }
  for (const name of names) {
    const points = samples
      .filter((s) => newest - s.t <= WINDOW_MS)
      .map((s) => [s.t, s.sinks.find((x) => x.name === name)])
      .filter(([, x]) => x)
      .map(([t, x]) => `${X(t).toFixed(1)},${Y(value(x)).toFixed(1)}`);
    nodes.push(svg("polyline", { "data-sink": name, stroke: colorOf(names, name), points: points.join(" ") }));
  }
  chart.replaceChildren(...nodes);
  chart.dataset.samples = samples.length;
  chart.dataset.max = max;
}

function renderLegend(names) {
  $("legend").replaceChildren(...names.map((n) =>
    el("li", { "data-sink": n }, el("span", { class: "swatch", style: `background:${colorOf(names, n)}` }), n)));
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function refresh() {
  const connection = $("connection");
  try {
    const [status, history] = await Promise.all([getJson("status"), getJson("history")]);
    const samples = history.samples || [];
    const latest = samples[samples.length - 1];
    const names = status.sinks.map((s) => s.name);
    renderSource(status, latest);
    renderSinks(status, latest, names);
    renderTables(status, latest);
    renderChart("chart-throughput", samples, names, (x) => x.changes_per_second);
    renderChart("chart-lag", samples, names, (x) => x.lag_seconds);
    renderLegend(names);
    connection.dataset.connected = "true";
    connection.textContent = "live";
    $("updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
    document.body.dataset.updates = Number(document.body.dataset.updates) + 1;
  } catch (e) {
    // Keep the last picture: it shows where the run was when it stopped answering.
    connection.dataset.connected = "false";
    connection.textContent = `not answering (${e.message}) — has the run stopped?`;
  }
}

async function loop() {
  await refresh();
  setTimeout(loop, POLL_MS);
}

loop();
