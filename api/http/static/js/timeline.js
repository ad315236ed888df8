// The task timeline: one row per task run, one bar per attempt (from its Running state to
// the state that ended it), a dashed line while it waited (queued, or between retries), and a
// diamond for a result taken without running (Cached, Reused).
import { svg } from "./dom.js";
import { duration } from "./format.js";

const ROW = 26;
const AXIS = 26;

function segmentsOf(states, now) {
  const segments = [];
  let open = null;
  for (const state of states) {
    const at = Date.parse(state.occurred);
    if (state.state_type === "RUNNING") {
      if (open) segments.push({ ...open, end: at, state: "RUNNING", name: "Running" });
      open = { start: at, attempt: state.attempt };
    } else if (open) {
      // An attempt that ended waiting for a retry failed: draw it as failed.
      const retried = state.state_name === "AwaitingRetry";
      segments.push({ ...open, end: at, state: retried ? "FAILED" : state.state_type,
        name: retried ? "failed, retried" : state.state_name });
      open = null;
    }
  }
  if (open) segments.push({ ...open, end: now, state: "RUNNING", name: "Running", live: true });
  return segments;
}

function ticks(span) {
  const steps = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
  const target = span / 6;
  return steps.find((step) => step >= target) || steps[steps.length - 1];
}

function label(seconds) {
  if (seconds === 0) return "0";
  return `+${duration(seconds)}`;
}

/** Draw `detail` (GET /api/flow-runs/{id}) into `container`. */
export function renderTimeline(container, detail, now = Date.now()) {
  const tasks = detail.task_runs;
  if (!tasks.length) {
    container.replaceChildren(Object.assign(document.createElement("p"), { className: "empty", textContent: "No task runs yet." }));
    return;
  }
  const byTask = new Map(tasks.map((t) => [t.id, []]));
  for (const state of detail.states) {
    if (state.task_run_id && byTask.has(state.task_run_id)) byTask.get(state.task_run_id).push(state);
  }
  const run = detail.flow_run;
  const finished = run.end ? Date.parse(run.end) : null;
  const limit = finished ?? now;
  let start = Date.parse(run.start || run.created);
  let end = finished ?? now;
  const rows = tasks.map((task) => {
    const states = byTask.get(task.id);
    const segments = segmentsOf(states, task.end ? Date.parse(task.end) : limit);
    const created = Date.parse(task.created);
    const last = states.length ? Date.parse(states[states.length - 1].occurred) : created;
    const waitEnd = task.end ? Date.parse(task.end) : segments.length ? segments[segments.length - 1].end : limit;
    start = Math.min(start, created);
    end = Math.max(end, last, waitEnd);
    return { task, segments, created, waitEnd, reused: !segments.length && ["Cached", "Reused"].includes(task.state_name) };
  });
  const span = Math.max((end - start) / 1000, 0.001);
  const width = Math.max(320, container.clientWidth || 800);
  const labelWidth = width < 560 ? 110 : 200;
  const plot = width - labelWidth - 16;
  const x = (ms) => labelWidth + ((ms - start) / 1000 / span) * plot;
  const height = AXIS + rows.length * ROW + 6;
  const chart = svg("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "list",
    "aria-label": `Task timeline: ${rows.length} task runs over ${duration(span)}`,
  });
  const axis = svg("g", { class: "axis", "aria-hidden": "true" });
  const step = ticks(span);
  for (let t = 0; t <= span + 1e-9; t += step) {
    const px = labelWidth + (t / span) * plot;
    axis.append(svg("line", { x1: px, x2: px, y1: AXIS - 6, y2: height }), svg("text", { x: px + 3, y: AXIS - 10 }, label(t)));
  }
  chart.append(axis);
  rows.forEach(({ task, segments, created, waitEnd, reused }, index) => {
    const y = AXIS + index * ROW;
    const stateText = task.state_name || "no state";
    const attempts = task.attempts > 1 ? `, ${task.attempts} attempts` : "";
    const took = task.duration !== null && task.duration !== undefined ? `, ${duration(task.duration)}` : "";
    const name = task.run_name || task.task_name || task.id;
    const row = svg("g", {
      class: "task-row", role: "listitem", tabindex: 0, "data-task": task.id, "data-state": task.state_name || "",
      "aria-label": `${name}: ${stateText}${took}${attempts}`,
    });
    row.append(svg("title", {}, `${name}\n${stateText}${took}${attempts}${task.error ? `\n${task.error}` : ""}`));
    row.append(svg("rect", { class: "row-bg", x: 0, y, width, height: ROW }));
    const shown = name.length > (labelWidth < 150 ? 14 : 26) ? `${name.slice(0, labelWidth < 150 ? 13 : 25)}…` : name;
    row.append(svg("text", { class: "row-label", x: 4, y: y + 17 }, shown + (task.attempts > 1 ? ` ↻${task.attempts}` : "")));
    row.append(svg("line", { class: "wait", x1: x(created), x2: x(waitEnd), y1: y + ROW / 2, y2: y + ROW / 2 }));
    for (const segment of segments) {
      const left = x(segment.start);
      const barWidth = Math.max(2, x(segment.end) - left);
      const bar = svg("rect", {
        class: `bar fill-${segment.state.toLowerCase()}`, x: left, y: y + 5, width: barWidth, height: ROW - 10,
        "data-attempt": segment.attempt,
      });
      bar.append(svg("title", {}, `attempt ${segment.attempt}: ${segment.name}, ${duration((segment.end - segment.start) / 1000)}`));
      row.append(bar);
    }
    if (reused || (!segments.length && task.state_name)) {
      const at = task.end ? Date.parse(task.end) : created;
      const cx = x(at);
      const cy = y + ROW / 2;
      const cls = reused ? "fill-reused" : `fill-${String(task.state_type || "none").toLowerCase()}`;
      row.append(svg("path", { class: `marker ${cls}`, d: `M${cx} ${cy - 7} L${cx + 7} ${cy} L${cx} ${cy + 7} L${cx - 7} ${cy} Z` }));
      if (reused) row.append(svg("text", { x: cx + 10, y: y + 17, class: "reused-label" }, task.state_name));
    }
    chart.append(row);
  });
  container.replaceChildren(chart);
}
