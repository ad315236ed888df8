// The runs page: the first 50 runs come rendered by the server (or fetched with the API key),
// then state changes arrive over the feed and are applied once per animation frame, so a
// burst of updates costs one layout, not one per event.
import { api, follow } from "./api.js";
import { STATE_ORDER, legend, stackedBars, stateColor } from "./charts.js";
import { frameBatcher, start, throttle } from "./common.js";
import { $, el } from "./dom.js";
import { TERMINAL, badge, duration, stateClass, timeEl, when } from "./format.js";

const data = start();
const filters = data.filters;
const body = $("#runs-body");
const rows = new Map(); // run id -> <tr>
const MAX_ROWS = 200;
const live = !data.cursor && filters.window.until === null;
const since = filters.window.since ? Date.parse(filters.window.since) : null;
const known = new Map(); // run id -> its flow-run.created data, for runs not (yet) shown
const KNOWN_LIMIT = 5000;

for (const row of body.rows) rows.set(row.dataset.run, row);

function apiFilters() {
  return {
    flow_name: filters.flow, state: filters.state, tag: filters.tags, deployment_id: filters.deployment,
  };
}

function rowFor(run) {
  const tags = el("td", { class: "opt tags" }, (run.tags || []).map((tag) => el("span", { class: "tag" }, tag)));
  const row = el("tr", {
    "data-run": run.id, "data-created": run.created, "data-start": run.start || "", "data-state": run.state_type || "",
  },
  el("td", { class: "name" }, el("a", { href: `/runs/${encodeURIComponent(run.id)}` }, run.run_name || run.id)),
  el("td", {}, run.flow_name || ""),
  el("td", { class: "state" }, badge(run.state_type, run.state_name)),
  el("td", {}, timeEl(run.created)),
  el("td", { class: "num duration" }, duration(run.duration)),
  tags,
  el("td", { class: "opt" }, run.deployment_id || ""));
  return row;
}

function showEmpty() {
  $("#runs-empty").hidden = rows.size > 0;
}

// -- the first page when the server could not render it (API keys on) ----------------------

async function loadPage() {
  const window_ = filters.window;
  try {
    const page = await api("/api/flow-runs", {
      params: { ...apiFilters(), since: window_.since, until: window_.until, limit: data.page_size, cursor: data.cursor },
    });
    body.replaceChildren(...page.items.map(rowFor));
    rows.clear();
    for (const row of body.rows) rows.set(row.dataset.run, row);
    const pager = $("#pager");
    if (page.next_cursor) {
      const query = new URLSearchParams(window.location.search);
      query.set("cursor", page.next_cursor);
      pager.append(el("a", { id: "older-link", href: `/?${query}` }, "Older runs"));
    }
  } catch (error) {
    $("#runs-empty").textContent = `Could not load runs: ${error.message}`;
  } finally {
    $("#runs-loading").hidden = true;
    showEmpty();
  }
}

// -- run history chart --------------------------------------------------------------------

const runHistory = (() => {
  const chart = stackedBars($("#history-chart"));
  const caption = $("#history-caption");
  const spec = filters.chart;
  const step = { minute: 60, hour: 3600, day: 86400 }[spec.grain];
  const words = { minute: "minute", hour: "hour", day: "day (UTC)" }[spec.grain];
  let last = null;

  function describe(index) {
    if (index === null || !last) {
      caption.textContent = `Runs created per ${words}, by current state`;
      return;
    }
    const parts = last.series.filter((s) => s.values[index]).map((s) => `${s.label} ${s.values[index]}`);
    caption.textContent = `${when(new Date(last.xs[index] * 1000 - step * 500).toISOString())}: ${parts.join(", ") || "no runs"}`;
  }

  async function load() {
    const until = spec.live ? new Date().toISOString() : spec.until;
    let history;
    try {
      history = await api("/api/flow-runs/history", {
        params: { ...apiFilters(), since: spec.since, until, grain: spec.grain },
      });
    } catch (error) {
      caption.textContent = `Could not load the run history: ${error.message}`;
      return;
    }
    const first = Math.floor(Date.parse(history.since) / 1000 / step);
    const lastPeriod = Math.floor((Date.parse(history.until) / 1000 - 1) / step);
    const xs = [];
    for (let p = first; p <= lastPeriod; p++) xs.push(p * step + step / 2);
    const counts = new Map(history.periods.map((p) => [Math.floor(Date.parse(p.start) / 1000 / step), p.counts]));
    const present = STATE_ORDER.filter((s) => history.periods.some((p) => p.counts[s]));
    const series = present.map((state) => ({
      label: state === "NONE" ? "No state" : state.charAt(0) + state.slice(1).toLowerCase(),
      color: stateColor(state),
      values: xs.map((x) => (counts.get(Math.floor(x / step)) || {})[state] || 0),
    }));
    last = { xs, series };
    chart.show(xs, series, { step, onHover: describe });
    legend($("#history-legend"), series);
    const total = history.periods.reduce((sum, p) => sum + Object.values(p.counts).reduce((a, b) => a + b, 0), 0);
    $("#history-chart").setAttribute("aria-label",
      `Bar chart: ${total} flow runs created per ${words} from ${when(history.since)} to ${when(history.until)}, stacked by state`);
    describe(null);
  }

  window.addEventListener("ledgerflow:theme", () => { if (last) load(); });
  return { load, refresh: spec.live ? throttle(load, 5000) : () => {} };
})();

// -- live updates -------------------------------------------------------------------------

function matches(created) {
  if (!live) return false;
  if (filters.flow && created.flow_name !== filters.flow) return false;
  if (filters.deployment && created.deployment_id !== filters.deployment) return false;
  const tags = created.tags || [];
  if (filters.tags.some((tag) => !tags.includes(tag))) return false;
  if (since !== null && Date.parse(created.occurred) < since) return false;
  return true;
}

function stateMatches(stateType, stateName) {
  if (!filters.state) return true;
  const wanted = filters.state.toUpperCase();
  return wanted === stateType || filters.state === stateName;
}

function insert(created, state) {
  const run = {
    id: created.flow_run_id, run_name: created.run_name, flow_name: created.flow_name, created: created.occurred,
    start: null, duration: null, tags: created.tags || [], deployment_id: created.deployment_id,
    state_type: state ? state.state_type : null, state_name: state ? state.state_name : null,
  };
  const row = rowFor(run);
  row.classList.add("flash");
  body.prepend(row);
  rows.set(run.id, row);
  known.delete(run.id);
  while (body.rows.length > MAX_ROWS) {
    const last = body.rows[body.rows.length - 1];
    rows.delete(last.dataset.run);
    last.remove();
  }
  showEmpty();
}

function applyState(row, event) {
  const { state_type: stateType, state_name: stateName } = event.data;
  row.dataset.state = stateType;
  const cell = row.querySelector("td.state");
  const current = cell.firstElementChild;
  if (!current || current.textContent !== stateName || !current.classList.contains(stateClass(stateType))) {
    cell.replaceChildren(badge(stateType, stateName));
  }
  if (stateType === "RUNNING" && !row.dataset.start) row.dataset.start = event.occurred;
  const durationCell = row.querySelector("td.duration");
  if (TERMINAL.has(stateType)) {
    const started = row.dataset.start ? Date.parse(row.dataset.start) : null;
    durationCell.textContent = started !== null ? duration((Date.parse(event.occurred) - started) / 1000) : "";
  } else if (stateType !== "RUNNING") {
    durationCell.textContent = "";
  }
}

function remember(id, created) {
  known.set(id, created);
  if (known.size > KNOWN_LIMIT) known.delete(known.keys().next().value);
}

const apply = frameBatcher((events) => {
  for (const event of events) {
    const id = event.data.flow_run_id;
    if (!id) continue;
    const row = rows.get(id);
    if (event.type === "flow-run.created") {
      if (row) continue;
      const created = { ...event.data, occurred: event.occurred };
      if (matches(created) && !filters.state) insert(created, null);
      else if (matches(created)) remember(id, created);
      continue;
    }
    if (row) {
      applyState(row, event);
    } else if (known.has(id) && stateMatches(event.data.state_type, event.data.state_name)) {
      insert(known.get(id), event.data);
      applyState(rows.get(id), event);
    }
  }
  runHistory.refresh();
});

// Running runs show how long they have been running, once a second.
setInterval(() => {
  const now = Date.now();
  for (const row of rows.values()) {
    if (row.dataset.state === "RUNNING" && row.dataset.start) {
      row.querySelector("td.duration").textContent = duration((now - Date.parse(row.dataset.start)) / 1000);
    }
  }
}, 1000);

// -- the flow names the filter offers -----------------------------------------------------

async function flowNames() {
  try {
    const since = new Date(Date.now() - 30 * 86400 * 1000).toISOString();
    const report = await api("/api/analytics/flows", { params: { since } });
    $("#flow-names").replaceChildren(...report.groups.map((g) => el("option", { value: g.value })));
  } catch { /* only a convenience */ }
}

// -- start --------------------------------------------------------------------------------

async function main() {
  if (!data.rendered) await loadPage();
  runHistory.load();
  follow({ type: ["flow-run.*"] }, apply, { after: data.after });
  (window.requestIdleCallback || setTimeout)(flowNames);
}

main();
