// The work pools section (templates/_workers.html): pools, and each worker's last heartbeat.
// Shown when the server has /api/work-pools and /api/workers and they answer; otherwise "No work pools".
// Shapes as on branch `workers` (WorkPoolInfo, WorkerInfo); a few names are read leniently.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { badge, timeEl } from "./format.js";

const items = (reply) => (Array.isArray(reply) ? reply : reply?.items || []);
const pick = (object, ...names) => names.map((name) => object[name]).find((value) => value !== undefined && value !== null);

function ago(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (Number.isNaN(seconds)) return "";
  return seconds < 120 ? `${seconds} s ago` : seconds < 7200 ? `${Math.round(seconds / 60)} min ago` : `${Math.round(seconds / 3600)} h ago`;
}

/** A table; headings ending in "?" (the "?" dropped) are columns a phone does without. */
function table(caption, headings, rows) {
  return el("div", { class: "table-wrap" }, el("table", {},
    el("caption", { class: "sr-only" }, caption),
    el("thead", {}, el("tr", {}, headings.map((heading) => heading.endsWith("?")
      ? el("th", { scope: "col", class: "opt" }, heading.slice(0, -1))
      : el("th", { scope: "col" }, heading)))),
    el("tbody", {}, rows)));
}

/** Fill the section; `available`: the server has the work pools API (page data `work_pools`). */
export async function loadWorkers(available) {
  const body = $("#workers-body");
  let pools = [];
  let workers = [];
  if (available) {
    try {
      [pools, workers] = await Promise.all([api("/api/work-pools"), api("/api/workers")]);
    } catch { /* not answering: shown as no work pools */ }
  }
  pools = items(pools);
  workers = items(workers);
  $("#workers").setAttribute("aria-busy", "false");
  $("#workers-empty").hidden = pools.length > 0;
  if (!pools.length) {
    body.replaceChildren();
    return;
  }
  const poolOf = (worker) => pick(worker, "pool", "work_pool");
  const count = (value) => (Array.isArray(value) ? value.length : value ?? "–");
  body.replaceChildren(
    el("h3", {}, "Work pools"),
    table("Work pools", ["Pool", "Status", "Concurrency?", "Due", "Running", "Workers?"], pools.map((pool) => el("tr", { "data-pool": pool.name },
      el("td", {}, pool.name),
      el("td", {}, pool.paused ? badge("PAUSED", "Paused") : badge("COMPLETED", "Ready")),
      el("td", { class: "num opt" }, pool.concurrency_limit ?? "–"),
      el("td", { class: "num" }, count(pool.due)),
      el("td", { class: "num" }, count(pool.running)),
      el("td", { class: "num opt" }, String(workers.filter((worker) => poolOf(worker) === pool.name).length))))),
    el("h3", {}, "Workers"),
    workers.length
      ? table("Workers", ["Worker", "Pool?", "Host?", "Last heartbeat", "Status", "Running?"], workers.map((worker) => {
        const beat = pick(worker, "last_heartbeat", "heartbeat");
        const online = worker.status === "online";
        return el("tr", { "data-worker": worker.name, "data-status": worker.status || "" },
          el("td", {}, worker.name),
          el("td", { class: "opt" }, poolOf(worker) || ""),
          el("td", { class: "opt" }, worker.host || ""),
          el("td", { class: "heartbeat" }, beat ? [timeEl(beat), el("span", { class: "muted" }, ` (${ago(beat)})`)] : "never"),
          el("td", {}, worker.status ? badge(online ? "COMPLETED" : "CANCELLED", online ? "Online" : "Offline") : ""),
          el("td", { class: "num opt" }, count(worker.running)));
      }))
      : el("p", { class: "empty" }, "No workers have checked in."));
}
