// One flow run: summary, states, task timeline, logs (live), artifacts, lineage; replay and
// cancel. Every change in the run's stream arrives over the feed (filtered to this run); logs
// are appended as they come, anything else re-reads the run (debounced). The feed reads the log
// itself, so a re-read names the newest event seen (`wait_for_cursor`): the server answers once
// its projections have folded it, never with the run as it was before.
import { ApiError, api, follow } from "./api.js";
import { debounce, frameBatcher, start } from "./common.js";
import { $, el } from "./dom.js";
import { TERMINAL, badge, clock, duration, timeEl } from "./format.js";
import { renderLineage } from "./lineage.js";
import { artifactBody } from "./markdown.js";
import { renderTimeline } from "./timeline.js";

const data = start();
const runId = data.run_id;
const path = `/api/flow-runs/${encodeURIComponent(runId)}`;
let detail = data.detail;
let tasks = new Map();
let seen = null; // the cursor of the newest event the feed delivered
const MAX_LOG_LINES = 5000;

// -- summary, states, tasks ---------------------------------------------------------------

function item(term, ...value) {
  return el("div", {}, el("dt", {}, term), el("dd", {}, ...value));
}

function renderSummary(run) {
  const runLink = (id) => el("a", { href: `/runs/${encodeURIComponent(id)}` }, id);
  const items = [
    item("Flow", run.flow_name || ""),
    item("Created", timeEl(run.created)),
    item("Started", timeEl(run.start)),
    item("Ended", timeEl(run.end)),
    item("Duration", duration(run.duration)),
    item("Attempts", String(run.attempts)),
  ];
  if (run.tags.length) items.push(item("Tags", ...run.tags.map((tag) => el("span", { class: "tag" }, tag))));
  if (run.deployment_id) items.push(item("Deployment", run.deployment_id));
  if (run.replay_of) items.push(item("Replay of", runLink(run.replay_of)));
  if (run.parent_flow_run_id) items.push(item("Parent run", runLink(run.parent_flow_run_id)));
  const replays = (detail && detail.replays) || [];
  if (replays.length) items.push(item("Replayed by", ...replays.flatMap((id, n) => (n ? [", ", runLink(id)] : [runLink(id)]))));
  if (run.entrypoint) items.push(item("Entrypoint", el("code", {}, run.entrypoint)));
  if (Object.keys(run.parameters).length) {
    const node = item("Parameters", el("pre", { class: "mono" }, JSON.stringify(run.parameters, null, 2)));
    node.classList.add("wide");
    items.push(node);
  }
  if (run.error) {
    const node = item("Error", run.error);
    node.classList.add("wide");
    node.querySelector("dd").classList.add("error-text");
    items.push(node);
  }
  $("#run-summary").replaceChildren(...items);
}

function renderStates(states) {
  const flowStates = states.filter((s) => !s.task_run_id);
  const first = flowStates.length ? Date.parse(flowStates[0].occurred) : 0;
  $("#states-body").replaceChildren(...flowStates.map((state, index) => {
    const at = Date.parse(state.occurred);
    const next = flowStates[index + 1];
    return el("tr", {},
      el("td", {}, badge(state.state_type, state.state_name)),
      el("td", {}, timeEl(state.occurred)),
      el("td", { class: "num" }, duration((at - first) / 1000)),
      el("td", { class: "num" }, next ? duration((Date.parse(next.occurred) - at) / 1000) : ""),
      el("td", { class: "opt" }, state.error || state.message || ""));
  }));
}

function renderTasks(taskRuns) {
  $("#tasks-body").replaceChildren(...taskRuns.map((task) => el("tr", { id: `task-${task.id}` },
    el("td", {}, task.child_flow_run_id
      ? el("a", { href: `/runs/${encodeURIComponent(task.child_flow_run_id)}` }, task.run_name || task.task_name)
      : (task.run_name || task.task_name || task.id)),
    el("td", {}, badge(task.state_type, task.state_name)),
    el("td", { class: "num" }, String(task.attempts)),
    el("td", { class: "num" }, duration(task.duration)),
    el("td", { class: "opt mono" }, task.cached_from || ""))));
}

function renderHeader(run) {
  $("#run-title").textContent = run.run_name || run.id;
  $("#run-flow").textContent = run.flow_name || "";
  $("#run-badge").replaceChildren(badge(run.state_type, run.state_name));
  document.title = `${run.run_name || run.id} · ledgerflow`;
  const finished = TERMINAL.has(run.state_type) || run.state_type === "PAUSED";
  const replay = $("#replay-button");
  replay.disabled = !finished;
  replay.title = finished ? "" : "A run can be replayed once it has finished";
  const cancel = $("#cancel-button");
  cancel.disabled = TERMINAL.has(run.state_type) || run.state_type === "CANCELLING";
  cancel.title = cancel.disabled ? "The run has finished" : "";
}

function render() {
  if (!detail) return;
  tasks = new Map(detail.task_runs.map((task) => [task.id, task]));
  renderHeader(detail.flow_run);
  renderSummary(detail.flow_run);
  renderStates(detail.states);
  renderTasks(detail.task_runs);
  renderTimeline($("#timeline"), detail);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let detailReads = 0;

/** Read the run; a run just written to the log may take a moment to reach the projections. */
async function loadDetail({ wait = 0 } = {}) {
  const until = Date.now() + wait;
  const read = ++detailReads;
  for (;;) {
    try {
      const fresh = await api(path, { params: { wait_for_cursor: seen } });
      if (read !== detailReads) return; // a newer read is under way: this answer may be older
      detail = fresh;
      $("#action-message").hidden = true;
      render();
      return;
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      const waiting = Date.now() < until;
      $("#action-message").hidden = false;
      $("#action-message").textContent = waiting ? "Waiting for this run to appear…" : `There is no flow run with id ${runId}.`;
      if (!waiting) {
        $("#run-title").textContent = "Run not found";
        throw error;
      }
      await sleep(300);
    }
  }
}

/** Try a failed re-read again unless the server said the run is gone or the request was bad. */
const retried = (again) => (error) => {
  if (!(error instanceof ApiError) || error.status >= 500) setTimeout(again, 1000);
};

const refreshDetail = debounce(() => loadDetail().catch(retried(() => refreshDetail())), 250);

// While the run is going, its bars grow.
setInterval(() => {
  if (detail && !TERMINAL.has(detail.flow_run.state_type)) renderTimeline($("#timeline"), detail);
}, 1000);
new ResizeObserver(debounce(() => { if (detail) renderTimeline($("#timeline"), detail); }, 100)).observe($("#timeline"));

// -- logs ---------------------------------------------------------------------------------

const logsBody = $("#logs-body");
const logsWrap = $(".logs-wrap");
let minLevel = Number($("#log-level").value);
let logPosition = 0;
let logsLoaded = false;
const pendingLogs = [];

function logRow(line) {
  const task = line.task_run_id ? tasks.get(line.task_run_id) : null;
  return el("tr", { class: `level-${Math.floor(line.level / 10) * 10}`, "data-position": line.position },
    el("td", { class: "when" }, el("time", { datetime: line.occurred }, clock(line.occurred))),
    el("td", { class: "level" }, line.level_name),
    el("td", { class: "task" }, task ? (task.run_name || task.task_name) : (line.task_run_id ? "task" : "flow")),
    el("td", { class: "message" }, line.message));
}

function appendLogs(lines) {
  if (!lines.length) return;
  const atBottom = logsWrap.scrollHeight - logsWrap.scrollTop - logsWrap.clientHeight < 30;
  logsBody.append(...lines.map(logRow));
  while (logsBody.rows.length > MAX_LOG_LINES) logsBody.rows[0].remove();
  $("#logs-empty").hidden = true;
  if (atBottom) logsWrap.scrollTop = logsWrap.scrollHeight;
}

let logLoads = 0;

async function loadLogs() {
  const load = ++logLoads;
  logsLoaded = false;
  logsBody.replaceChildren();
  logPosition = 0;
  let after = 0;
  let read = 0;
  for (;;) {
    const page = await api(`${path}/logs`, { params: { min_level: minLevel, after, limit: 1000 } });
    if (load !== logLoads) return; // another level was chosen meanwhile: its read fills the table
    appendLogs(page.items);
    read += page.items.length;
    if (page.next_after !== null && page.next_after !== undefined) after = page.next_after;
    if (page.items.length < 1000 || read >= MAX_LOG_LINES) break;
  }
  logPosition = after;
  logsLoaded = true;
  appendLogs(pendingLogs.splice(0).filter((line) => line.position > logPosition && line.level >= minLevel));
  $("#logs-empty").hidden = logsBody.rows.length > 0;
}

$("#log-level").addEventListener("change", (event) => {
  minLevel = Number(event.target.value);
  loadLogs().catch(() => {});
});

function logOf(event) {
  return { position: event.stream_position, occurred: event.occurred, ...event.data };
}

// -- artifacts ----------------------------------------------------------------------------

async function loadArtifacts() {
  const artifacts = await api(`${path}/artifacts`, { params: { wait_for_cursor: seen } });
  $("#artifacts").replaceChildren(...artifacts.map((artifact) => el("article", { class: "artifact", "data-type": artifact.artifact_type },
    el("header", {},
      el("h3", {}, artifact.key || artifact.artifact_type),
      el("span", { class: "muted" }, artifact.artifact_type),
      artifact.description ? el("span", { class: "muted" }, artifact.description) : null),
    artifactBody(artifact))));
  $("#artifacts-empty").hidden = artifacts.length > 0;
}

const refreshArtifacts = debounce(() => loadArtifacts().catch(retried(() => refreshArtifacts())), 300);

// -- lineage ------------------------------------------------------------------------------

async function loadLineage() {
  const graph = await api(`${path}/lineage`, { params: { depth: 3, wait_for_cursor: seen } });
  renderLineage($("#lineage"), $("#lineage-list"), graph, runId, tasks);
}

const refreshLineage = debounce(() => loadLineage().catch(retried(() => refreshLineage())), 1500);

// -- live ---------------------------------------------------------------------------------

const onEvents = frameBatcher((events) => {
  const lines = [];
  let changed = false;
  let artifacts = false;
  let lineage = false;
  for (const event of events) {
    seen = event.cursor;
    if (event.type === "log.emitted") {
      const line = logOf(event);
      if (!logsLoaded) pendingLogs.push(line);
      else if (line.position > logPosition && line.level >= minLevel) lines.push(line);
      if (logsLoaded) logPosition = Math.max(logPosition, line.position);
    } else if (event.type.startsWith("artifact.")) {
      artifacts = true;
    } else {
      changed = true;
      if (event.type === "task-run.created" || event.type === "flow-run.created" || event.data.cached_from) lineage = true;
    }
  }
  appendLogs(lines);
  if (changed) refreshDetail();
  if (artifacts) refreshArtifacts();
  if (lineage) refreshLineage();
});

// -- replay and cancel --------------------------------------------------------------------

function say(message, ...nodes) {
  const node = $("#action-message");
  node.replaceChildren(message, ...nodes);
  node.hidden = false;
}

const replayDialog = $("#replay-dialog");

$("#replay-button").addEventListener("click", async () => {
  const confirm = $("#replay-confirm");
  const error = $("#replay-error");
  confirm.disabled = true;
  error.hidden = true;
  $("#replay-plan").replaceChildren();
  $("#replay-summary").textContent = "Working out what a replay would reuse…";
  replayDialog.showModal();
  try {
    const plan = await api(`${path}/replay`, { method: "POST", body: { dry_run: true } });
    const reused = plan.plan.filter((verdict) => verdict.reuse).length;
    $("#replay-summary").textContent = `A new run of this flow: ${reused} of ${plan.plan.length} task runs would be reused ` +
      "(if their inputs are unchanged); the others run again.";
    $("#replay-plan").replaceChildren(...plan.plan.map((verdict) => el("tr", { "data-reuse": String(verdict.reuse) },
      el("td", {}, `${verdict.task_name} #${verdict.occurrence}`),
      el("td", {}, verdict.state_name || "never finished"),
      el("td", { class: verdict.reuse ? "reuse" : "rerun" }, verdict.reuse ? "reuse" : "run again"),
      el("td", { class: "opt" }, verdict.reason))));
    confirm.disabled = false;
    confirm.focus();
  } catch (failure) {
    error.textContent = failure.message;
    error.hidden = false;
  }
});

$("#replay-close").addEventListener("click", () => replayDialog.close());

$("#replay-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const confirm = $("#replay-confirm");
  confirm.disabled = true;
  try {
    const accepted = await api(`${path}/replay`, { method: "POST", body: {} });
    replayDialog.close();
    say("Replay requested: ", el("a", { href: `/runs/${encodeURIComponent(accepted.flow_run_id)}`, id: "replay-link" }, accepted.flow_run_id));
  } catch (failure) {
    $("#replay-error").textContent = failure.message;
    $("#replay-error").hidden = false;
    confirm.disabled = false;
  }
});

const cancelDialog = $("#cancel-dialog");
$("#cancel-button").addEventListener("click", () => {
  $("#cancel-error").hidden = true;
  cancelDialog.showModal();
});
$("#cancel-close").addEventListener("click", () => cancelDialog.close());
$("#cancel-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const stored = await api(`${path}/cancel`, { method: "POST", body: {} });
    cancelDialog.close();
    say(`Cancel requested: the run is now ${stored.data.state_name}.`);
    refreshDetail();
  } catch (failure) {
    $("#cancel-error").textContent = failure.message;
    $("#cancel-error").hidden = false;
  }
});

// -- start --------------------------------------------------------------------------------

async function main() {
  if (detail) render();
  const feed = follow({ flow_run_id: [runId] }, onEvents, { after: data.after });
  if (!detail) await loadDetail({ wait: 30000 });
  await feed.opened;
  await Promise.allSettled([loadLogs(), loadArtifacts(), loadLineage()]);
}

main().catch(() => {});
