// fanwire console: one EventSource (the chosen topic's live feed) and one /stats poll a
// second, which feeds the charts (drawn on canvases by hand), the topics table and the
// lagging subscribers. No build step, no CDN.
"use strict";

const MAX_FEED = 200;
const HISTORY = 300; // samples kept: the last five minutes
const COLORS = ["#4fb3ff", "#f0a04b"];
const feed = document.getElementById("feed");
const status = document.getElementById("status");
const topicInput = document.getElementById("topic");
const ticker = new Map(); // symbol -> {price, change, volume}
let source = null;
let received = 0;
let previous = null; // last /stats sample, for rates
const samples = []; // {at, published, delivered, sse, ws, dropped, conflated, slow}
const charts = {
  rates: { canvas: "chart-rates", series: ["published", "delivered"], drawn: 0 },
  connections: { canvas: "chart-connections", series: ["sse", "ws"], drawn: 0 },
  losses: { canvas: "chart-losses", series: ["dropped", "conflated"], drawn: 0 },
  slow: { canvas: "chart-slow", series: ["slow"], drawn: 0 },
};
// For tests and the curious: what the page holds.
window.fanwireConsole = { charts, samples, ticker };

function setStatus(text, cls) {
  status.textContent = text;
  status.className = "status " + cls;
}

function addLine(id, text, notice) {
  const li = document.createElement("li");
  if (notice) li.className = "notice";
  const span = document.createElement("span");
  span.className = "id";
  span.textContent = id;
  li.append(span, document.createTextNode(text));
  feed.prepend(li);
  while (feed.children.length > MAX_FEED) feed.lastChild.remove();
}

function cells(tr, values, classes) {
  values.forEach((value, i) => {
    const td = document.createElement("td");
    td.textContent = value;
    if (classes && classes[i]) td.className = classes[i];
    tr.append(td);
  });
}

// A message shaped like the demo ticker ({symbol, price, ...}) updates the price board.
function tick(data) {
  if (!data || typeof data.symbol !== "string" || typeof data.price !== "number") return;
  ticker.set(data.symbol, data);
  const table = document.getElementById("ticker");
  table.hidden = false;
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const [symbol, q] of [...ticker.entries()].sort()) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = symbol;
    const change = q.change || 0;
    const cls = change > 0 ? "up" : change < 0 ? "down" : "";
    cells(tr, [symbol, q.price.toFixed(2), (change > 0 ? "▲ " : change < 0 ? "▼ " : "") +
      Math.abs(change).toFixed(2), q.volume ?? ""], ["", cls, cls, ""]);
    body.append(tr);
  }
}

function connect(topic) {
  if (source) source.close();
  received = 0;
  ticker.clear();
  document.getElementById("ticker").hidden = true;
  const url = "/stream?last_n=20&topic=" + encodeURIComponent(topic);
  source = new EventSource(url);
  source.onopen = () => setStatus("live", "live");
  source.onerror = () => setStatus("reconnecting…", "down");
  source.onmessage = (e) => {
    received += 1;
    document.getElementById("received").textContent = received + " received";
    const msg = JSON.parse(e.data);
    tick(msg.data);
    addLine(e.lastEventId, JSON.stringify(msg.data), false);
  };
  for (const name of ["gap", "topic_deleted", "shutdown", "error", "conflated"]) {
    source.addEventListener(name, (e) => addLine(name, e.data, true));
  }
}

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function record(stats, now) {
  const conns = stats.connections || {};
  const sample = {
    at: now,
    sse: conns.sse || 0,
    ws: conns.ws || 0,
    total: {
      published: stats.published_count,
      delivered: stats.delivered_count,
      dropped: stats.dropped_count,
      conflated: stats.conflated_count,
      slow: stats.slow_consumer_count || 0,
    },
  };
  const last = samples[samples.length - 1];
  for (const key of Object.keys(sample.total)) {
    // A rate per second from two counter readings (a restart resets: never negative).
    sample[key] = last ? Math.max(0, (sample.total[key] - last.total[key]) / ((now - last.at) / 1000)) : 0;
  }
  samples.push(sample);
  while (samples.length > HISTORY) samples.shift();
}

function niceMax(value) {
  if (value <= 1) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

function draw(chart) {
  const canvas = document.getElementById(chart.canvas);
  const ctx = canvas.getContext("2d");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  if (canvas.width !== w * ratio) {
    canvas.width = w * ratio;
    canvas.height = h * ratio;
  }
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const left = 44, bottom = h - 16, top = 6, right = w - 4;
  const max = niceMax(Math.max(0, ...samples.flatMap((s) => chart.series.map((k) => s[k]))));
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillStyle = "#7d8895";
  ctx.strokeStyle = "#26303b";
  ctx.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const y = bottom - f * (bottom - top);
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(right, y);
    ctx.stroke();
    const label = max * f;
    ctx.fillText(label >= 1000 ? (label / 1000).toFixed(1) + "k" : String(+label.toFixed(1)), 4, y + 3);
  }
  // The time axis grows with the history, from one minute up to HISTORY seconds.
  const span = Math.min(HISTORY, Math.max(60, samples.length));
  ctx.fillText(span >= 120 ? "-" + Math.round(span / 60) + " min" : "-" + span + " s", left, h - 3);
  ctx.fillText("now", right - 18, h - 3);
  const x = (i) => right - (samples.length - 1 - i) * ((right - left) / (span - 1));
  let drawn = 0;
  chart.series.forEach((key, n) => {
    ctx.strokeStyle = COLORS[n];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    samples.forEach((s, i) => {
      const y = bottom - (s[key] / max) * (bottom - top);
      if (i === 0) ctx.moveTo(x(i), y);
      else ctx.lineTo(x(i), y);
      drawn += 1;
    });
    ctx.stroke();
  });
  chart.drawn = drawn;
  const latest = samples[samples.length - 1];
  canvas.title = latest ? chart.series.map((k) => k + " " + latest[k].toFixed(1)).join(", ") : "";
}

function renderStats(stats, now) {
  record(stats, now);
  for (const chart of Object.values(charts)) draw(chart);
  text("topic-count", stats.topic_count);
  text("subscriber-count", stats.subscriber_count);
  const conns = stats.connections || {};
  text("connection-count", (conns.sse || 0) + " SSE · " + (conns.ws || 0) + " WS");
  text("published-count", stats.published_count);
  text("delivered-count", stats.delivered_count);
  text("dropped-count", stats.dropped_count);
  text("conflated-count", stats.conflated_count ?? "–");
  text("slow-count", stats.slow_consumer_count ?? "–");
  text("uptime", "up " + Math.round(stats.uptime_seconds) + " s");
  const nodes = stats.nodes || [];
  text("nodes", nodes.length > 1
    ? nodes.length + " nodes: " + nodes.map((n) => (n === stats.node ? n + " (this)" : n)).join(", ")
    : "1 node");
  const occupancy = stats.occupancy || {};
  const presence = stats.presence || {};
  const body = document.querySelector("#topics tbody");
  body.replaceChildren();
  for (const [name, row] of Object.entries(stats.topics).sort()) {
    let rate = "–";
    if (previous && previous.stats.topics[name]) {
      const dt = (now - previous.at) / 1000;
      rate = ((row.message_count - previous.stats.topics[name].message_count) / dt).toFixed(1);
    }
    const tr = document.createElement("tr");
    tr.dataset.topic = name;
    cells(tr, [name, rate, row.message_count, occupancy[name] ?? row.subscriber_count,
      presence[name] ?? 0, row.dropped_count]);
    body.append(tr);
  }
  const lag = document.querySelector("#lagging tbody");
  lag.replaceChildren();
  for (const row of stats.worst_subscribers || []) {
    const tr = document.createElement("tr");
    cells(tr, [row.client_id || "–", row.transport, row.topic, row.pending, ""]);
    const bar = document.createElement("span");
    bar.className = "fill";
    bar.style.setProperty("--fill", Math.min(1, row.fill));
    bar.title = Math.round(row.fill * 100) + "% of " + row.queue_size;
    tr.lastChild.append(bar);
    lag.append(tr);
  }
  previous = { stats, at: now };
}

async function poll() {
  try {
    const response = await fetch("/stats", { cache: "no-store" });
    if (response.ok) renderStats(await response.json(), performance.now());
  } catch (err) {
    setStatus("server unreachable", "down");
  }
}

topicInput.addEventListener("change", () => connect(topicInput.value.trim() || "events"));
connect(topicInput.value);
poll();
setInterval(poll, 1000);
