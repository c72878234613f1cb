"""The dashboard's only stylesheet and script, served from ``/static`` (no CDN, no inline code).

Kept as Python strings so they ship inside the package whatever the build backend copies;
the content hash versions the URLs so a browser never mixes an old script with new pages.
"""

from __future__ import annotations

import hashlib

CSS = """
:root { --bg:#f6f7f9; --fg:#1d2330; --muted:#5c6477; --line:#dde1e8; --card:#fff;
  --ok:#1f8a4c; --bad:#c0392b; --warn:#b7791f; --accent:#2f5bd3; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  background:var(--bg); color:var(--fg); }
header { display:flex; align-items:center; gap:24px; padding:10px 24px; background:#1d2330;
  color:#fff; }
header .brand { font-weight:700; letter-spacing:.02em; }
header nav a { color:#c9d3ea; margin-right:16px; text-decoration:none; }
header nav a.active, header nav a:hover { color:#fff; }
.live-status { margin-left:auto; font-size:12px; color:#c9d3ea; }
.live-status.live::before { content:"\\25CF "; color:#4cd38a; }
.live-status.offline::before { content:"\\25CF "; color:#ff7b6b; }
main { padding:16px 24px 48px; max-width:1400px; margin:0 auto; }
h1 { font-size:22px; margin:8px 0 16px; }
h2 { font-size:15px; margin:20px 0 8px; color:#3a4254; text-transform:uppercase;
  letter-spacing:.04em; }
section { margin-bottom:8px; }
.banner { padding:10px 14px; border-radius:6px; margin:8px 0; border:1px solid var(--line); }
.banner ul { margin:4px 0 0 18px; padding:0; }
.banner.ok { background:#eaf7ef; border-color:#bfe5cc; }
.banner.paused { background:#fff6e0; border-color:#f0d38a; }
.banner.down { background:#fdecea; border-color:#f3b8b0; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:10px;
  margin:12px 0; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px;
  padding:10px 12px; }
.card .label { color:var(--muted); font-size:12px; }
.card .value { font-size:18px; font-weight:600; margin-top:2px; }
table { width:100%; border-collapse:collapse; background:var(--card);
  border:1px solid var(--line); border-radius:6px; overflow:hidden; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line);
  vertical-align:top; }
th { background:#eef1f6; font-weight:600; font-size:12px; color:#3a4254; }
td.n { text-align:right; font-variant-numeric:tabular-nums; }
td code { font-size:12px; word-break:break-all; }
.msg { color:var(--muted); font-size:12px; max-width:420px; overflow:hidden;
  text-overflow:ellipsis; white-space:nowrap; }
.muted, .empty { color:var(--muted); }
.bad { color:var(--bad); }
.dot { display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:6px; }
.dot.up { background:var(--ok); } .dot.down { background:var(--bad); }
.controls { display:flex; flex-wrap:wrap; gap:8px; align-items:center; margin:8px 0; }
form.inline { display:flex; gap:8px; }
input, select { padding:6px 8px; border:1px solid var(--line); border-radius:4px;
  font:inherit; }
button { padding:6px 12px; border:1px solid var(--accent); background:var(--accent);
  color:#fff; border-radius:4px; font:inherit; cursor:pointer; }
button.danger { background:#fff; color:var(--bad); border-color:var(--bad); }
button:disabled { opacity:.5; cursor:default; }
.split { display:grid; grid-template-columns:2fr 1fr; gap:16px; }
pre { background:var(--card); border:1px solid var(--line); padding:8px; font-size:12px;
  overflow:auto; max-height:240px; }
dl.facts { display:grid; grid-template-columns:160px 1fr; gap:4px 12px; background:var(--card);
  border:1px solid var(--line); border-radius:6px; padding:12px; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; }
.skip { position:absolute; left:8px; top:-40px; background:#fff; color:#1d2330; padding:6px 10px;
  border-radius:4px; z-index:10; }
.skip:focus { top:8px; }
a { color:var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible,
summary:focus-visible, main:focus-visible { outline:3px solid #f5a623; outline-offset:2px; }
main:focus:not(:focus-visible) { outline:none; }
.title { color:var(--fg); }
td .title { display:block; max-width:420px; }
.dot.unknown { background:#fff; border:2px solid var(--muted); }
.banner.neutral { background:#eef1f6; border-color:var(--line); }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px;
  font-weight:600; vertical-align:middle; border:1px solid var(--line); }
.badge.good { background:#eaf7ef; color:#17663a; border-color:#bfe5cc; }
.badge.bad { background:#fdecea; color:#a1271b; border-color:#f3b8b0; }
.badge.neutral { background:#eef1f6; color:#3a4254; }
section.run { background:var(--card); border:1px solid var(--line); border-radius:6px;
  padding:4px 12px 12px; margin:12px 0; }
section.run h3 { font-size:15px; margin:10px 0 8px; }
section.run table { border-radius:0; }
dl.run-facts { display:flex; flex-wrap:wrap; gap:4px 0; border:0; padding:4px 0 10px; }
dl.run-facts dt { margin-right:6px; } dl.run-facts dd { margin-right:28px; white-space:nowrap; }
.charts { display:grid; grid-template-columns:repeat(auto-fit, minmax(560px, 1fr)); gap:16px;
  align-items:start; }
figure.chart { margin:0; background:var(--card); border:1px solid var(--line);
  border-radius:6px; padding:12px; }
figure.chart svg { width:100%; height:auto; display:block; }
figure.chart figcaption { font-weight:600; margin:0 0 8px; }
details.chart-data summary { cursor:pointer; color:var(--accent); }
"""

JS = """
"use strict";
(function () {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const status = document.getElementById("live-status");
  const result = () => document.getElementById("action-result");

  function age(seconds) {
    const s = Math.floor(Math.abs(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " +
      String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  }
  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll("time[data-rel]")) {
      const delta = (now - Date.parse(el.getAttribute("datetime"))) / 1000;
      if (!isNaN(delta)) el.textContent = delta >= 0 ? age(delta) + " ago" : "in " + age(delta);
    }
  }
  setInterval(tick, 1000);

  function say(text, bad) {
    const el = result();
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "bad" : "muted";
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify(body || {}),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const message = data && data.error ? data.error.message : response.statusText;
      throw new Error(message);
    }
    return data;
  }

  const actions = {
    pause: () => {
      const input = document.querySelector('#pause-form input[name="reason"]');
      return post("/api/v1/pause", { reason: input.value || "paused from the dashboard" });
    },
    resume: () => post("/api/v1/resume"),
    refresh: () => post("/api/v1/refresh"),
    stop: (el) => post("/api/v1/stop", { identifier: el.dataset.identifier }),
    release: (el) => post("/api/v1/release", { identifier: el.dataset.identifier }),
    verify: () => post("/api/v1/audit/verify").then((r) => ({
      message: r.ok ? "chain ok: " + r.records + " records" :
        "BROKEN at " + r.broken_at + ": " + r.reason, bad: !r.ok })),
  };

  document.addEventListener("click", async (event) => {
    const el = event.target.closest("button[data-action]");
    if (!el || !actions[el.dataset.action]) return;
    event.preventDefault();
    if (el.dataset.action === "stop" &&
        !window.confirm("Stop " + el.dataset.identifier + "?")) return;
    el.disabled = true;
    say("working…");
    try {
      const r = await actions[el.dataset.action](el);
      say((r && r.message) || (r && r.queued ? "poll queued" : "done"), r && r.bad);
    } catch (e) {
      say(e.message, true);
    } finally {
      el.disabled = false;
    }
  });
  document.addEventListener("submit", (event) => {
    if (event.target.id === "pause-form") {
      event.preventDefault();
      event.target.querySelector('button[data-action="pause"]').click();
    }
  });

  const live = document.getElementById("live");
  if (live && window.EventSource) {
    let source = null;
    const connect = () => {
      source = new EventSource("/events");
      source.addEventListener("overview", (event) => {
        // Rendered and escaped by the server, like the first page load.
        live.innerHTML = JSON.parse(event.data).html;
        live.dataset.updates = String(Number(live.dataset.updates || "0") + 1);
        status.textContent = "live";
        status.className = "live-status live";
      });
      source.onerror = () => {
        status.textContent = "reconnecting…";
        status.className = "live-status offline";
      };
    };
    connect();
  } else if (status) {
    status.textContent = "";
  }
})();
"""

FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#1d2330"/>'
    '<path d="M4 11V5l4 3 4-3v6" stroke="#4cd38a" stroke-width="1.6" fill="none"/></svg>'
)

ASSET_VERSION = hashlib.sha256((CSS + JS).encode()).hexdigest()[:12]
