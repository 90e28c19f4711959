"use strict";
// The live dashboard: one WebSocket, plain SVG charts, no library and no download.
const METRICS = ["cpu_usage", "memory_usage", "network_latency", "error_rate", "request_count"];
const LABELS = { cpu_usage: "CPU %", memory_usage: "memory %", network_latency: "latency ms",
                 error_rate: "errors %", request_count: "requests/min" };
const WINDOW_S = 3600;
const series = new Map();  // service -> {t: [], cpu_usage: [], ...}

const $ = (id) => document.getElementById(id);
const text = (value) => document.createTextNode(value == null ? "–" : String(value));
const fmt = (v) => v == null ? "–" : Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(2);

function listItems(list, items, empty) {
  list.replaceChildren();
  if (!items.length) { const li = document.createElement("li"); li.className = "muted"; li.append(text(empty)); list.append(li); }
  for (const item of items) list.append(item);
}

function item(content, href) {
  const li = document.createElement("li");
  li.append(text(content));
  if (href) { const a = document.createElement("a"); a.href = href; a.target = "_blank"; a.append(text(" Prefect ↗")); li.append(a); }
  return li;
}

function showModel(model) {
  $("champion-version").textContent = model.version ?? "–";
  $("champion-detail").textContent = model.version
    ? `${model.name}@${model.alias}, loaded ${new Date(model.loaded_at * 1000).toLocaleTimeString()}`
    : (model.problem || "no model");
}

function showTraining(runs) {
  listItems($("training-runs"), (runs || []).map((r) => item(
    `${r.state} · trial ${r.trial}/${r.n_trials} · epoch ${r.epoch} · best loss ${r.best_loss == null ? "–" : r.best_loss.toFixed(5)}` +
    (r.model_version ? ` · v${r.model_version}` : ""), r.prefect_ui_url)), "no training yet");
}

function showStore(store, predictions) {
  $("store-detail").textContent = store.status === "up"
    ? `${store.services} services · latest sample ${store.latest_sample ?? "–"}` : store.problem;
  if (predictions) $("prediction-detail").textContent = `${predictions.rows} rows scored in ${predictions.requests} requests`;
}

function showEvents(listId, events, empty, describe) {
  listItems($(listId), events.slice(0, 50).map((e) => item(describe(e))), empty);
}

function describeEvent(e) {
  const when = new Date(e.at * 1000).toLocaleTimeString();
  const rest = Object.entries(e).filter(([k]) => k !== "at" && k !== "padding").map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
  return `${when} ${rest.join(" ")}`;
}

function serviceCard(name) {
  let card = document.querySelector(`.service[data-service="${CSS.escape(name)}"]`);
  if (card) return card;
  $("no-services")?.remove();
  card = document.createElement("article");
  card.className = "service";
  card.dataset.service = name;
  const title = document.createElement("h3"); title.append(text(name)); card.append(title);
  for (const metric of METRICS) {
    const row = document.createElement("div"); row.className = "chart";
    const label = document.createElement("span"); label.append(text(LABELS[metric]));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 300 32"); svg.setAttribute("preserveAspectRatio", "none");
    svg.dataset.metric = metric; svg.dataset.points = "0";
    svg.append(document.createElementNS("http://www.w3.org/2000/svg", "polyline"));
    const value = document.createElement("span"); value.className = "value"; value.dataset.metric = metric;
    row.append(label, svg, value); card.append(row);
  }
  $("services").append(card);
  return card;
}

function draw(name) {
  const data = series.get(name);
  const card = serviceCard(name);
  const end = data.t.length ? data.t[data.t.length - 1] : 0;
  for (const metric of METRICS) {
    const values = data[metric];
    const low = Math.min(...values), high = Math.max(...values), span = high - low || 1;
    const points = data.t.map((t, i) => `${(300 * (1 - (end - t) / WINDOW_S)).toFixed(1)},${(30 - 28 * (values[i] - low) / span).toFixed(1)}`);
    const svg = card.querySelector(`svg[data-metric="${metric}"]`);
    svg.firstChild.setAttribute("points", points.join(" "));
    svg.dataset.points = String(points.length);
    card.querySelector(`.value[data-metric="${metric}"]`).textContent = fmt(values[values.length - 1]);
  }
}

function addSamples(samples) {
  const touched = new Set();
  for (const s of samples) {
    const data = series.get(s.service) || Object.fromEntries([["t", []], ...METRICS.map((m) => [m, []])]);
    series.set(s.service, data);
    let i = data.t.length;
    while (i > 0 && data.t[i - 1] > s.t) i--;
    if (i > 0 && data.t[i - 1] === s.t) { for (const m of METRICS) data[m][i - 1] = s[m]; }
    else { data.t.splice(i, 0, s.t); for (const m of METRICS) data[m].splice(i, 0, s[m]); }
    touched.add(s.service);
  }
  for (const name of touched) { trim(series.get(name)); draw(name); }
}

function trim(data) {
  const end = data.t[data.t.length - 1];
  const cut = data.t.findIndex((t) => t >= end - WINDOW_S);
  if (cut > 0) for (const key of ["t", ...METRICS]) data[key].splice(0, cut);
}

function onSnapshot(s) {
  const model = s.components.model;
  showModel(model);
  showTraining(s.components.training.runs);
  showStore(s.components.store, s.predictions);
  for (const [name, data] of Object.entries(s.series || {})) {
    const samples = data.t.map((t, i) => Object.fromEntries([["service", name], ["t", t], ...METRICS.map((m) => [m, data[m][i]])]));
    addSamples(samples);
  }
  showEvents("anomalies", s.anomalies || [], "none detected", describeEvent);
  showEvents("routing", s.routing || [], "RelayCore is not reporting", describeEvent);
}

const handlers = {
  snapshot: onSnapshot,
  champion: (p) => showModel({ ...p, problem: null }),
  training: (p) => showTraining(p.runs),
  metrics: (p) => addSamples(p.samples),
  anomaly: (p, at) => prepend("anomalies", { at, ...p }),
  breaker: (p, at) => prepend("routing", { at, ...p }),
  routing: (p, at) => prepend("routing", { at, ...p }),
};

function prepend(listId, event) {
  const list = $(listId);
  if (list.firstChild?.classList?.contains("muted")) list.replaceChildren();
  list.prepend(item(describeEvent(event)));
  while (list.children.length > 50) list.lastChild.remove();
}

let retry = 500;
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/v2/ws/ecosystem`);
  socket.onopen = () => { retry = 500; $("connection").textContent = "live"; $("connection").className = "pill up"; };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    handlers[event.type]?.(event.payload, event.at);
  };
  socket.onclose = () => {
    $("connection").textContent = "reconnecting…"; $("connection").className = "pill down";
    setTimeout(connect, retry); retry = Math.min(retry * 2, 10000);
  };
}
connect();
