// The event feed: the newest events (matching the filters), then live ones as they are
// appended, with a histogram of what is shown.
import { api, follow } from "./api.js";
import { cssVar, stackedBars } from "./charts.js";
import { frameBatcher, start, throttle } from "./common.js";
import { $, el } from "./dom.js";
import { clock, when } from "./format.js";

const data = start();
const filters = data.filters;
const types = filters.type.split(",").map((t) => t.trim()).filter(Boolean);
const body = $("#events-body");
const MAX_ROWS = 1000;
const BACKLOG = 500;
const shown = []; // occurred (ms) of the events in the table, oldest first
let paused = false;
let held = [];
const names = new Map(); // flow run id -> flow name, from flow-run.created events seen

function resource(event) {
  if (event.stream.startsWith("flow-run-")) {
    const id = event.stream.slice("flow-run-".length);
    return el("a", { href: `/runs/${encodeURIComponent(id)}` }, event.data.task_run_id ? `${id.slice(0, 8)}… task` : `${id.slice(0, 8)}…`);
  }
  return event.stream;
}

function summary(event) {
  const d = event.data || {};
  if (event.type === "log.emitted") return `${d.level_name || ""} ${d.message || ""}`;
  if (d.state_name) return [d.state_name, d.flow_name, d.message].filter(Boolean).join(" · ");
  if (event.type.endsWith(".created")) return [d.flow_name || d.task_name, d.run_name].filter(Boolean).join(" · ");
  return JSON.stringify(d);
}

function row(event) {
  return el("tr", { "data-type": event.type, "data-cursor": event.cursor },
    el("td", { class: "num" }, el("time", { datetime: event.occurred, title: when(event.occurred) }, clock(event.occurred))),
    el("td", { class: "type" }, event.type),
    el("td", {}, resource(event)),
    el("td", { class: "data opt", title: JSON.stringify(event.data) }, summary(event)));
}

function wanted(event) {
  if (filters.flow_run_id && event.stream !== `flow-run-${filters.flow_run_id}`) return false;
  if (filters.flow_name) {
    const id = event.data.flow_run_id;
    if (event.type === "flow-run.created") names.set(id, event.data.flow_name);
    if (names.get(id) !== filters.flow_name) return false;
  }
  return true;
}

function show(events) {
  if (!events.length) return;
  body.prepend(...events.map(row).reverse());
  for (const event of events) shown.push(Date.parse(event.occurred));
  while (body.rows.length > MAX_ROWS) body.rows[body.rows.length - 1].remove();
  shown.splice(0, Math.max(0, shown.length - MAX_ROWS));
  $("#events-empty").hidden = body.rows.length > 0;
  $("#feed-count").textContent = `${body.rows.length.toLocaleString()} shown${paused ? `, ${held.length} held while paused` : ""}`;
  drawHistogram();
}

// The server filters the live feed (types, flow run, flow name): everything it sends is shown.
const onEvents = frameBatcher((fresh) => {
  if (paused) {
    held.push(...fresh);
    if (held.length > MAX_ROWS) held = held.slice(-MAX_ROWS);
    $("#feed-count").textContent = `${body.rows.length.toLocaleString()} shown, ${held.length} held while paused`;
    return;
  }
  show(fresh);
});

// -- histogram ----------------------------------------------------------------------------

const histogram = stackedBars($("#histogram"), { height: 140 });
const BINS = [1, 5, 10, 30, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400];

const drawHistogram = throttle(() => {
  if (!shown.length) return;
  const now = Date.now() / 1000;
  const oldest = Math.min(...shown) / 1000;
  const span = Math.max(now - oldest, 1);
  const step = BINS.find((bin) => span / bin <= 60) || BINS[BINS.length - 1];
  const first = Math.floor(oldest / step);
  const last = Math.floor(now / step);
  const counts = new Array(last - first + 1).fill(0);
  for (const at of shown) {
    const index = Math.floor(at / 1000 / step) - first;
    if (index >= 0 && index < counts.length) counts[index]++;
  }
  const xs = counts.map((_, i) => (first + i) * step + step / 2);
  histogram.show(xs, [{ label: "Events", color: cssVar("--accent"), values: counts }], { step });
  $("#histogram-caption").textContent = `${shown.length.toLocaleString()} events shown, per ${step < 60 ? `${step} s` : step < 3600 ? `${step / 60} min` : step < 86400 ? `${step / 3600} h` : `${step / 86400} d`}`;
}, 1000);

// -- pause --------------------------------------------------------------------------------

$("#pause-button").addEventListener("click", (event) => {
  paused = !paused;
  event.currentTarget.setAttribute("aria-pressed", String(paused));
  event.currentTarget.textContent = paused ? "Resume" : "Pause";
  if (!paused) {
    const release = held;
    held = [];
    show(release);
  }
});

// -- start --------------------------------------------------------------------------------

async function main() {
  let after = null;
  try {
    const page = filters.flow_run_id
      ? await api("/api/events", { params: { type: types, resource: filters.flow_run_id, limit: BACKLOG } })
      : await api("/api/events", { params: { type: types, last: BACKLOG } });
    if (page.events.length) after = page.next_after;
    show(page.events.filter(wanted));
  } catch (error) {
    $("#events-error").textContent = `Could not read events: ${error.message}`;
    $("#events-error").hidden = false;
    return;
  }
  $("#events-empty").hidden = body.rows.length > 0;
  const params = { type: types, flow_run_id: filters.flow_run_id || null, flow_name: filters.flow_name || null };
  follow(params, onEvents, { after });
}

main();
