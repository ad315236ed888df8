// Analytics: success rate and p50/p95 duration per flow or per task over time, the groups as
// a table, and the slowest and most failing tasks. Everything comes from /api/analytics.
import { api } from "./api.js";
import { legend, lineChart, paletteColor } from "./charts.js";
import { start } from "./common.js";
import { $, el } from "./dom.js";
import { duration, percent } from "./format.js";

start();
const RANGES = { "24h": [1, "hour"], "7d": [7, "day"], "30d": [30, "day"], "90d": [90, "day"] };
const TOP = 6;
const rateChart = lineChart($("#rate-chart"), { yFormat: (v) => `${Math.round(v * 100)}%`, yRange: [0, 1] });
const durationChart = lineChart($("#duration-chart"), { yFormat: (v) => duration(v) });
const form = $("#analytics-form");
let lastKey = "";

function periodsOf(since, until, grain) {
  const step = grain === "hour" ? 3600 : 86400;
  const xs = [];
  for (let p = Math.floor(since / 1000 / step); p * step < until / 1000; p++) xs.push(p * step);
  return { xs, step };
}

function seriesOf(group, xs, step, field) {
  const byPeriod = new Map(group.periods.map((p) => [Math.floor(Date.parse(p.start) / 1000 / step) * step, p]));
  return xs.map((x) => {
    const period = byPeriod.get(x);
    return period && period[field] !== null && period[field] !== undefined ? period[field] : null;
  });
}

function failures(group) {
  return group.failed + group.crashed;
}

function rank(list, items, figure) {
  list.replaceChildren(...items.map((group) => el("li", {}, group.value, el("span", { class: "figure" }, figure(group)))));
  if (!items.length) list.replaceChildren(el("li", { class: "muted" }, "None in this period."));
}

async function load() {
  const dimension = form.elements.dimension.value;
  const [days, grain] = RANGES[form.elements.range.value];
  const until = Date.now();
  const since = until - days * 86400 * 1000;
  const params = { since: new Date(since).toISOString(), until: new Date(until).toISOString(), grain };
  const errorNode = $("#analytics-error");
  let report;
  let taskReport;
  try {
    [report, taskReport] = await Promise.all([
      api(`/api/analytics/${dimension === "flow" ? "flows" : "tasks"}`, { params }),
      dimension === "task" ? null : api("/api/analytics/tasks", { params }),
    ]);
    errorNode.hidden = true;
  } catch (error) {
    errorNode.textContent = `Could not load analytics: ${error.message}`;
    errorNode.hidden = false;
    return;
  }
  taskReport = taskReport || report;
  const groups = report.groups;

  const select = form.elements.name;
  const key = `${dimension}:${groups.map((g) => g.value).join("|")}`;
  if (key !== lastKey) {
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, `Top ${TOP} by runs`), ...groups.map((g) => el("option", { value: g.value }, g.value)));
    select.value = groups.some((g) => g.value === chosen) ? chosen : "";
    lastKey = key;
  }
  const shown = select.value ? groups.filter((g) => g.value === select.value) : groups.slice(0, TOP);

  const { xs, step } = periodsOf(since, until, grain);
  const rates = shown.map((group, index) => ({ label: group.value, color: paletteColor(index), values: seriesOf(group, xs, step, "success_rate") }));
  rateChart.show(xs, rates);
  legend($("#rate-legend"), rates);
  const timed = shown.slice(0, select.value ? 1 : 3);
  const durations = timed.flatMap((group, index) => [
    { label: `${group.value} p95`, color: paletteColor(index), values: seriesOf(group, xs, step, "p95") },
    { label: `${group.value} p50`, color: paletteColor(index), dash: [5, 4], values: seriesOf(group, xs, step, "p50") },
  ]);
  durationChart.show(xs, durations);
  legend($("#duration-legend"), durations);

  $("#groups-kind").textContent = dimension;
  $("#groups-body").replaceChildren(...groups.map((group) => el("tr", {},
    el("td", { class: "name" }, dimension === "flow"
      ? el("a", { href: `/?${new URLSearchParams({ flow: group.value })}` }, group.value) : group.value),
    el("td", { class: "num" }, group.runs.toLocaleString()),
    el("td", { class: "num" }, percent(group.success_rate)),
    el("td", { class: "num" }, failures(group).toLocaleString()),
    el("td", { class: "num" }, duration(group.p50)),
    el("td", { class: "num" }, duration(group.p95)),
    el("td", { class: "num opt" }, duration(group.max)))));
  $("#groups-empty").hidden = groups.length > 0;

  const tasksWithTimes = taskReport.groups.filter((g) => g.p95 !== null);
  rank($("#slowest"), [...tasksWithTimes].sort((a, b) => b.p95 - a.p95).slice(0, 10), (g) => `p95 ${duration(g.p95)}, p50 ${duration(g.p50)}`);
  const failing = taskReport.groups.filter((g) => failures(g) > 0).sort((a, b) => failures(b) - failures(a) || (a.success_rate ?? 1) - (b.success_rate ?? 1));
  rank($("#failing"), failing.slice(0, 10), (g) => `${failures(g)} failed of ${g.runs}, ${percent(g.success_rate)} success`);
}

form.addEventListener("change", () => load());
form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
load();
setInterval(() => { if (!document.hidden) load(); }, 60000);
