// moat's dashboard. Everything shown comes from the admin API with the
// operator's token in a header; every string is put on the page as text
// (textContent, SVG text nodes), never as markup: HELO names, senders and
// the reasons that quote them are written by whoever connects.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 5000;
let token = sessionStorage.getItem("moat-token") || "";
let timer = null;
let shownHost = "";

// A link may carry the token in its fragment (moat demo prints one): the
// fragment never reaches a server. It is moved to sessionStorage and
// taken off the address bar at once.
(function tokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem("moat-token", token);
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

class Unauthorized extends Error {}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + token }, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) throw new Unauthorized("the token was refused");
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error(data.error || r.status + " " + r.statusText);
    e.status = r.status;
    throw e;
  }
  return data;
}

function showLogin(msg) {
  clearInterval(timer);
  timer = null;
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("state").textContent = "not connected";
  $("token").focus();
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  $("token").value = "";
  sessionStorage.setItem("moat-token", token);
  start();
});

function start() {
  if (!token) return showLogin("");
  refresh().then((ok) => {
    if (ok && !timer) timer = setInterval(refresh, REFRESH_MS);
  });
}

async function refresh() {
  let d;
  try {
    d = await api("GET", "/v1/dashboard");
  } catch (e) {
    if (e instanceof Unauthorized) {
      showLogin("The token was refused.");
      return false;
    }
    $("state").textContent = "error: " + e.message;
    $("state").className = "state down";
    return true;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  render(d);
  return true;
}

function hours(seconds) {
  const h = seconds / 3600;
  return h >= 10 ? h.toFixed(0) + " h" : h >= 1 ? h.toFixed(1) + " h" : (seconds / 60).toFixed(1) + " min";
}

function duration(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function clock(t) {
  return new Date(t).toLocaleTimeString();
}

function render(d) {
  const state = $("state");
  if (d.store_down_since) {
    state.textContent = "store unreachable since " + clock(d.store_down_since) + ": unknown hosts get 4xx";
    state.className = "state down";
  } else {
    state.textContent = !d.running ? "not running" : d.mode === "observe" ? "running in observe mode" : "running";
    state.className = "state";
  }
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  for (const c of ["white", "grey", "black"]) {
    $("hosts-" + c).textContent = (d.hosts && d.hosts[c]) || 0;
    $("open-" + c).textContent = (d.open && d.open[c]) || 0;
  }
  $("tarpit-held").textContent = d.tarpit.held;
  $("tarpit-max").textContent = d.tarpit.max;
  $("tarpit-today").textContent = hours(d.tarpit.seconds_today);
  $("tarpit-total").textContent = hours(d.tarpit.seconds_total);
  const msgs = d.tarpit_messages || {};
  for (const o of ["dropped", "deferred", "refused"]) $("msg-" + o).textContent = msgs[o] || 0;
  $("observe").hidden = d.mode !== "observe";
  if (d.mode === "observe") {
    const would = Object.entries(d.would || {}).sort((a, b) => b[1] - a[1]);
    fillRows("would", would.map(([w, n]) => ({w, n})), (r) => [r.w, r.n]);
  }
  drawChart(d.chart);
  fillRows("top-hosts", d.top_hosts, (h) => [h.target, duration(h.seconds)]);
  fillRows("top-nets", d.top_nets, (h) => [h.target, h.hosts, duration(h.seconds)]);
  fillRows("trap-hits", d.trap_hits, (h) => [clock(h.at), h.client, h.helo, h.sender,
    h.reason + (h.refused ? " (vouched for: refused)" : "")]);
  drawDelays(d.pass_delays);
}

function fillRows(id, rows, cells) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const r of rows || []) {
    const tr = el("tr");
    for (const c of cells(r)) tr.append(el("td", c));
    body.append(tr);
  }
  if (!rows || rows.length === 0) {
    const tr = el("tr");
    const td = el("td", "none yet", "muted");
    td.colSpan = $(id).tHead.rows[0].cells.length;
    tr.append(td);
    body.append(tr);
  }
}

// Colours by verdict: what moat let through in blues and greens, what it
// deferred in greys, what it caught in warm colours.
const COLOURS = {
  "white spliced": "#2563eb", "white backend-unavailable": "#93c5fd",
  "grey passed": "#16a34a", "grey greylisted": "#9ca3af", "grey tempfail": "#d1d5db",
  "grey quit": "#cbd5e1", "grey closed": "#e5e7eb", "grey timeout": "#e2e8f0",
  "grey backend-unavailable": "#a5b4fc", "grey backend-lost": "#c4b5fd",
  "grey trap": "#dc2626", "grey early-talker": "#f97316", "grey dnsbl": "#a16207",
  "grey black": "#7f1d1d", "grey smuggling": "#be185d", "grey refused": "#f472b6",
  "black tarpit": "#111827",
};
const SPARE = ["#0891b2", "#65a30d", "#ca8a04", "#7c3aed", "#db2777", "#0d9488"];

function colour(name, i) {
  return COLOURS[name] || SPARE[i % SPARE.length];
}

function drawChart(c) {
  const box = $("chart");
  const series = (c && c.series) || [];
  const bars = series.length ? series[0].counts.length : 0;
  const W = 900, H = 220, L = 40, B = 20, T = 8;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "sessions by verdict" });
  let peak = 1;
  for (let i = 0; i < bars; i++) {
    let sum = 0;
    for (const s of series) sum += s.counts[i];
    peak = Math.max(peak, sum);
  }
  const plotW = W - L - 4, plotH = H - B - T;
  const bw = bars ? plotW / bars : plotW;
  for (const frac of [0, 0.5, 1]) {
    const y = T + plotH * (1 - frac);
    root.append(svg("line", { x1: L, x2: W - 4, y1: y, y2: y, stroke: "#e3e6eb" }));
    root.append(svg("text", { x: L - 4, y: y + 4, "text-anchor": "end" }, Math.round(peak * frac)));
  }
  for (let i = 0; i < bars; i++) {
    let y = T + plotH;
    series.forEach((s, k) => {
      const n = s.counts[i];
      if (!n) return;
      const h = (n / peak) * plotH;
      y -= h;
      const r = svg("rect", { x: L + i * bw + 0.5, y, width: Math.max(bw - 1, 1), height: h, fill: colour(s.name, k),
        "data-series": s.name, "data-count": n });
      r.append(svg("title", {}, `${s.name}: ${n}`));
      root.append(r);
    });
  }
  if (bars) {
    const t0 = c.start * 1000, step = c.step * 1000;
    // Times at the start of the first bar, the middle and the end of
    // the last, kept inside the drawing.
    root.append(svg("text", { x: L, y: H - 5, "text-anchor": "start" }, clock(t0)));
    if (bars > 2) root.append(svg("text", { x: L + plotW / 2, y: H - 5, "text-anchor": "middle" }, clock(t0 + (bars * step) / 2)));
    root.append(svg("text", { x: W - 4, y: H - 5, "text-anchor": "end" }, clock(t0 + bars * step)));
    $("chart-range").textContent = `— the last ${duration(bars * c.step)}, one bar per ${duration(c.step)}`;
  }
  box.replaceChildren(root);
  const legend = $("legend");
  legend.replaceChildren();
  series.forEach((s, k) => {
    const total = s.counts.reduce((a, b) => a + b, 0);
    const li = el("li", `${s.name} ${total}`);
    li.style.setProperty("--swatch", colour(s.name, k));
    li.dataset.series = s.name;
    li.dataset.total = total;
    legend.append(li);
  });
  if (!series.length) legend.append(el("li", "no session yet"));
}

function drawDelays(p) {
  const box = $("delays");
  const buckets = (p && p.buckets) || [];
  const W = 440, H = 160, B = 30, T = 8;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "greylist pass delays" });
  // Cumulative counts to counts per bucket, the last open-ended.
  const counts = buckets.map((b, i) => b.count - (i ? buckets[i - 1].count : 0));
  counts.push(p ? p.count - (buckets.length ? buckets[buckets.length - 1].count : 0) : 0);
  const labels = buckets.map((b) => "≤" + duration(b.le)).concat([">" + (buckets.length ? duration(buckets[buckets.length - 1].le) : "")]);
  const peak = Math.max(1, ...counts);
  const bw = W / counts.length;
  counts.forEach((n, i) => {
    const h = (n / peak) * (H - B - T);
    const r = svg("rect", { x: i * bw + 1, y: H - B - h, width: bw - 2, height: h, fill: "#16a34a", "data-count": n });
    r.append(svg("title", {}, `${labels[i]}: ${n}`));
    root.append(r);
    if (i % 2 === 0) root.append(svg("text", { x: i * bw + bw / 2, y: H - 16, "text-anchor": "middle" }, labels[i]));
  });
  box.replaceChildren(root);
  $("delay-summary").textContent = p && p.count ? `— ${p.count} passed, ${duration(p.sum / p.count)} on average` : "— none passed yet";
}

$("lookup").addEventListener("submit", (ev) => {
  ev.preventDefault();
  lookup($("lookup-ip").value.trim());
});

async function lookup(ip) {
  $("lookup-error").textContent = "";
  $("host-msg").textContent = "";
  if (!ip) return;
  try {
    const h = await api("GET", "/v1/hosts/" + encodeURIComponent(ip));
    showHost(h);
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("The token was refused.");
    if (e.status === 404) {
      // Nothing stored, listed or remembered: a host moat would greylist.
      return showHost({ ip, class: "grey", reason: e.message, history: [] });
    }
    $("host").hidden = true;
    $("lookup-error").textContent = e.message;
  }
}

function showHost(h) {
  shownHost = h.ip;
  $("host").hidden = false;
  $("host-ip").textContent = h.ip;
  const cls = $("host-class");
  cls.textContent = h.class;
  cls.className = "class " + h.class;
  $("host-reason").textContent = h.reason;
  let entry = "";
  if (h.entry) {
    entry = `stored: ${h.entry.class} since ${new Date(h.entry.first_seen).toLocaleString()}, last seen ${new Date(h.entry.last_seen).toLocaleString()}`;
    entry += h.entry.expires ? `, expires ${new Date(h.entry.expires).toLocaleString()}` : ", no expiry";
  }
  if (h.karma !== undefined && h.karma !== null) entry += (entry ? "; " : "") + "karma " + h.karma.toFixed(2);
  $("host-entry").textContent = entry;
  fillRows("host-history", (h.history || []).slice().reverse(), (e) => [new Date(e.at).toLocaleString(), e.class || "", e.reason]);
  // What the ledger kept of its sessions in the tarpit, newest first:
  // dropped (told 250), deferred (451) or refused (554), with the envelope
  // as the client sent it (shown as text).
  const told = h.told;
  $("host-told").hidden = !told;
  if (told) {
    $("host-told-counts").textContent = `dropped ${told.dropped}, deferred ${told.deferred}, refused ${told.refused}`;
    const rows = [];
    for (const s of (told.sessions || []).slice().reverse()) {
      for (const m of s.messages || []) {
        const more = m.more ? ` and ${m.more} more` : "";
        rows.push([new Date(s.start).toLocaleString(), m.told, m.sender || "<>", (m.rcpts || []).join(", ") + more]);
      }
    }
    fillRows("host-messages", rows, (r) => r);
  }
}

async function setClass(cls) {
  if (!shownHost) return;
  try {
    if (cls === "forget") {
      await api("DELETE", "/v1/hosts/" + encodeURIComponent(shownHost));
    } else {
      await api("POST", "/v1/hosts", { ip: shownHost, class: cls });
    }
    await lookup(shownHost);
    $("host-msg").textContent = cls === "forget" ? "forgotten" : "now " + cls;
    refresh();
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("The token was refused.");
    $("host-msg").textContent = e.message;
  }
}

$("make-white").addEventListener("click", () => setClass("white"));
$("make-black").addEventListener("click", () => setClass("black"));
$("forget").addEventListener("click", () => setClass("forget"));

start();
