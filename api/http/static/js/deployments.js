// Deployments: each with its schedules, paused state, next scheduled runs, runs waiting to
// start and recent runs; Run (parameters checked by the API, refusals shown in the dialog),
// Pause / Resume; and the work pools section. Refreshed from the live feed.
import { api, follow } from "./api.js";
import { debounce, start, throttle } from "./common.js";
import { $, el } from "./dom.js";
import { badge, timeEl } from "./format.js";
import { clearErrors, showErrors } from "./form_errors.js";
import { loadWorkers } from "./workers.js";

const data = start();
const RECENT = 5;
const FOLD_WAIT_MS = 30000;
const list = $("#deployment-list");
const dialog = $("#run-dialog");
const runForm = $("#run-form");
let running = null;

function say(...content) {
  const node = $("#page-message");
  node.replaceChildren(...content);
  node.hidden = false;
}

function runLink(run) {
  return el("li", { "data-run": run.id },
    el("a", { href: `/runs/${run.id}` }, run.run_name || run.id.slice(0, 8)), " ",
    badge(run.state_type, run.state_name), " ", timeEl(run.expected_start || run.created));
}

function schedules(deployment) {
  if (!deployment.schedules.length) return "none (runs on request)";
  return el("ul", { class: "plain" }, deployment.schedules.map((schedule) =>
    el("li", {}, schedule.description, schedule.active ? "" : el("span", { class: "muted" }, " (inactive)"))));
}

function nextRuns(detail) {
  if (detail.paused) return el("p", { class: "muted" }, "Paused: nothing is scheduled.");
  const waiting = detail.scheduled_runs || [];
  const slots = detail.next_slots || [];
  if (!waiting.length && !slots.length) return el("p", { class: "muted" }, "None scheduled.");
  return el("div", {},
    waiting.length ? el("ul", { class: "plain runs-waiting", "aria-label": "Runs waiting to start" }, waiting.map(runLink)) : "",
    slots.length ? el("ol", { class: "plain next-slots", "aria-label": "Next due times" },
      slots.map((slot) => el("li", {}, timeEl(slot.time)))) : "");
}

function card(deployment, detail, recent) {
  const name = deployment.name;
  const paused = detail.paused;
  return el("li", { class: "card panel", "data-deployment": name, "data-paused": String(paused) },
    el("div", { class: "card-head" },
      el("h3", {}, name),
      el("span", { class: `badge ${paused ? "state-paused" : "state-completed"}` }, paused ? "Paused" : "Active"),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "primary run-button", "aria-label": `Run ${name}`, onclick: () => openRun(detail) }, "Run"),
        el("button", {
          type: "button", class: "pause-button", "aria-label": `${paused ? "Resume" : "Pause"} ${name}`,
          onclick: () => setPaused(detail, !paused),
        }, paused ? "Resume" : "Pause"))),
    detail.description ? el("p", { class: "muted" }, detail.description) : "",
    el("dl", { class: "summary" },
      el("div", {}, el("dt", {}, "Entrypoint"), el("dd", {}, el("code", {}, detail.entrypoint))),
      el("div", {}, el("dt", {}, "Work pool"), el("dd", {}, detail.work_pool || "–")),
      el("div", {}, el("dt", {}, "Schedules"), el("dd", {}, schedules(detail))),
      el("div", {}, el("dt", {}, "Parameters"), el("dd", {}, el("code", {}, JSON.stringify(detail.parameters)))),
      detail.tags.length ? el("div", {}, el("dt", {}, "Tags"), el("dd", {}, detail.tags.map((tag) => el("span", { class: "tag" }, tag)))) : ""),
    el("div", { class: "grid two" },
      el("section", { class: "next" }, el("h4", {}, "Next runs"), nextRuns(detail)),
      el("section", { class: "recent" }, el("h4", {}, "Recent runs"),
        recent.length ? el("ul", { class: "plain recent-runs" }, recent.map(runLink)) : el("p", { class: "muted" }, "No runs yet."))));
}

let loads = 0;

async function load() {
  const mine = ++loads; // a slower earlier load must not overwrite a newer one
  const errorNode = $("#list-error");
  let deployments;
  try {
    deployments = await api("/api/deployments");
    errorNode.hidden = true;
  } catch (error) {
    errorNode.textContent = `Could not load deployments: ${error.message}`;
    errorNode.hidden = false;
    return;
  }
  const details = await Promise.all(deployments.map((deployment) => Promise.all([
    api(`/api/deployments/${deployment.id}`).catch(() => deployment),
    api("/api/flow-runs", { params: { deployment_id: deployment.id, limit: RECENT } }).then((page) => page.items, () => []),
  ])));
  if (mine !== loads) return;
  list.replaceChildren(...deployments.map((deployment, index) => card(deployment, ...details[index])));
  $("#list-loading").hidden = true;
  $("#list-empty").hidden = deployments.length > 0;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reload until the requested run is listed: the runs list follows the log a moment behind. */
async function loadUntilListed(runId) {
  for (const until = Date.now() + FOLD_WAIT_MS; Date.now() < until; await sleep(300)) {
    await load();
    if (list.querySelector(`[data-run="${CSS.escape(runId)}"]`)) return;
  }
}

async function setPaused(deployment, paused) {
  try {
    const changed = await api(`/api/deployments/${deployment.id}/${paused ? "pause" : "resume"}`, { method: "POST" });
    say(`${changed.name} is ${changed.paused ? "paused" : "active"}.`);
  } catch (error) {
    say(`Could not change ${deployment.name}: ${error.message}`);
  }
  await load();
}

function openRun(deployment) {
  running = deployment;
  clearErrors(runForm);
  $("#run-title").textContent = `Run ${deployment.name}`;
  const required = deployment.parameter_schema?.required || [];
  $("#run-help").textContent = `Its own parameters: ${JSON.stringify(deployment.parameters)}`
    + (required.length ? `; the flow requires ${required.join(", ")}.` : ".");
  runForm.elements.parameters.value = "{}";
  runForm.elements.scheduled_time.value = "";
  dialog.showModal();
  runForm.elements.parameters.focus();
}

/** A run refusal located at its field: the API names the parameter or the time in words. */
function located(detail) {
  if (/^[\w.]+: /.test(detail)) return detail;
  if (detail.includes("scheduled_time")) return `scheduled_time: ${detail}`;
  if (/parameter/i.test(detail)) return `parameters: ${detail}`;
  return detail;
}

async function requestRun(event) {
  event.preventDefault();
  clearErrors(runForm);
  const body = {};
  const text = runForm.elements.parameters.value.trim();
  if (text) {
    try {
      body.parameters = JSON.parse(text);
    } catch (error) {
      showErrors(runForm, `parameters: not JSON: ${error.message}`)?.focus();
      return;
    }
  }
  const when = runForm.elements.scheduled_time.value.trim();
  if (when) body.scheduled_time = when;
  const button = $("#run-confirm");
  button.disabled = true;
  try {
    const requested = await api(`/api/deployments/${running.id}/run`, { method: "POST", body });
    dialog.close();
    say("Run requested: ", el("a", { id: "requested-run", href: `/runs/${requested.flow_run_id}` }, requested.flow_run_id));
    await loadUntilListed(requested.flow_run_id);
  } catch (error) {
    showErrors(runForm, located(error.detail || error.message))?.focus();
  } finally {
    button.disabled = false;
  }
}

runForm.addEventListener("submit", requestRun);
$("#run-cancel").addEventListener("click", () => dialog.close());

await Promise.all([load(), loadWorkers(data.work_pools)]);
function refresh() {
  load();
  loadWorkers(data.work_pools);
}

// Once now, and once more when the feed falls quiet: the lists follow the log a moment behind.
const settled = debounce(refresh, 2000);
follow({ type: ["deployment.*", "flow-run.*", "work-pool.*", "worker.*"] }, throttle(() => {
  refresh();
  settled();
}, 1500));
