// fanwire dashboard: a live feed over EventSource and /stats polled every second.
"use strict";

const MAX_FEED = 200;
const feed = document.getElementById("feed");
const status = document.getElementById("status");
const topicInput = document.getElementById("topic");
let source = null;
let received = 0;
let previous = null; // last /stats sample, for per-topic rates

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

function connect(topic) {
  if (source) source.close();
  received = 0;
  const url = "/stream?last_n=20&topic=" + encodeURIComponent(topic);
  source = new EventSource(url);
  source.onopen = () => setStatus("live", "live");
  source.onerror = () => setStatus("reconnecting…", "down");
  source.onmessage = (e) => {
    received += 1;
    document.getElementById("received").textContent = received + " received";
    const msg = JSON.parse(e.data);
    addLine(e.lastEventId, JSON.stringify(msg.data), false);
  };
  for (const name of ["gap", "topic_deleted", "shutdown", "error"]) {
    source.addEventListener(name, (e) => addLine(name, e.data, true));
  }
}

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function renderStats(stats, now) {
  text("topic-count", stats.topic_count);
  text("subscriber-count", stats.subscriber_count);
  const conns = stats.connections || {};
  text("connection-count", (conns.sse || 0) + " SSE · " + (conns.ws || 0) + " WS");
  text("published-count", stats.published_count);
  text("delivered-count", stats.delivered_count);
  text("dropped-count", stats.dropped_count);
  text("uptime", "up " + Math.round(stats.uptime_seconds) + " s");
  const body = document.querySelector("#topics tbody");
  body.replaceChildren();
  for (const [name, row] of Object.entries(stats.topics).sort()) {
    let rate = "–";
    if (previous && previous.stats.topics[name]) {
      const dt = (now - previous.at) / 1000;
      rate = ((row.message_count - previous.stats.topics[name].message_count) / dt).toFixed(1);
    }
    const tr = document.createElement("tr");
    for (const cell of [name, rate, row.message_count, row.subscriber_count, row.dropped_count]) {
      const td = document.createElement("td");
      td.textContent = cell;
      tr.append(td);
    }
    body.append(tr);
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
