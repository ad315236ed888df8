// The lineage graph as a layered SVG: each node sits one layer right of its furthest source
// (longest path), so data flows left to right; a replay's reused task runs are drawn dashed.
import { el, svg } from "./dom.js";

const NODE_W = 168;
const NODE_H = 42;
const GAP_X = 56;
const GAP_Y = 14;
const PAD = 12;
const KINDS = ["upstream", "subflow", "replay", "cached"];
const WORDS = { upstream: "fed", subflow: "called", replay: "was replayed by", cached: "result reused by" };

function layers(nodes, edges) {
  const layer = new Map(nodes.map((n) => [n.id, 0]));
  const incoming = new Map(nodes.map((n) => [n.id, 0]));
  const out = new Map(nodes.map((n) => [n.id, []]));
  // A task run sits right of its flow run (not drawn: the layout says it).
  const ids = new Set(nodes.map((n) => n.id));
  const members = nodes.filter((n) => n.kind === "task_run" && ids.has(n.flow_run_id))
    .map((n) => ({ source: n.flow_run_id, target: n.id }));
  for (const edge of [...edges, ...members]) {
    out.get(edge.source).push(edge.target);
    incoming.set(edge.target, incoming.get(edge.target) + 1);
  }
  const queue = nodes.filter((n) => incoming.get(n.id) === 0).map((n) => n.id);
  while (queue.length) {
    const id = queue.shift();
    for (const target of out.get(id)) {
      layer.set(target, Math.max(layer.get(target), layer.get(id) + 1));
      incoming.set(target, incoming.get(target) - 1);
      if (incoming.get(target) === 0) queue.push(target);
    }
  }
  return layer; // nodes on a cycle (there should be none) keep the layer they reached
}

function shorten(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * Draw `graph` (GET /api/flow-runs/{id}/lineage) around flow run `runId`; `tasks` maps the
 * run's own task run ids to their rows (for their states).
 */
export function renderLineage(container, list, graph, runId, tasks) {
  const nodes = graph.nodes;
  const ids = new Set(nodes.map((n) => n.id));
  const edges = graph.edges.filter((e) => ids.has(e.source) && ids.has(e.target) && e.source !== e.target);
  if (!nodes.length) {
    container.replaceChildren(el("p", { class: "empty" }, "No lineage recorded."));
    list.replaceChildren();
    return;
  }
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const reusedTargets = new Set(edges.filter((e) => e.kind === "cached").map((e) => e.target));
  const groupOf = (node) => (node.kind === "flow_run" ? node.id : node.flow_run_id || node.id);
  const groups = [runId];
  for (const node of nodes) if (!groups.includes(groupOf(node))) groups.push(groupOf(node));
  const layer = layers(nodes, edges);
  const taskOrder = new Map([...tasks.keys()].map((id, index) => [id, index]));
  const columns = new Map();
  nodes.forEach((node) => {
    const column = layer.get(node.id);
    if (!columns.has(column)) columns.set(column, []);
    columns.get(column).push({ node, order: [groups.indexOf(groupOf(node)), node.kind === "flow_run" ? 0 : 1, taskOrder.get(node.id) ?? Infinity] });
  });
  const byName = (a, b) => (a.node.name || a.node.id).localeCompare(b.node.name || b.node.id, undefined, { numeric: true });
  const position = new Map();
  let rowsMax = 0;
  for (const [column, members] of columns) {
    members.sort((a, b) => a.order[0] - b.order[0] || a.order[1] - b.order[1]
      || (a.order[2] === b.order[2] ? 0 : a.order[2] - b.order[2]) || byName(a, b));
    members.forEach(({ node }, row) => position.set(node.id, { x: PAD + column * (NODE_W + GAP_X), y: PAD + row * (NODE_H + GAP_Y) }));
    rowsMax = Math.max(rowsMax, members.length);
  }
  const width = PAD * 2 + (Math.max(...columns.keys()) + 1) * (NODE_W + GAP_X) - GAP_X;
  const height = PAD * 2 + rowsMax * (NODE_H + GAP_Y) - GAP_Y;
  const chart = svg("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "group",
    "aria-label": `Lineage graph: ${nodes.length} runs, ${edges.length} links`,
  });
  const defs = svg("defs");
  for (const kind of KINDS) {
    defs.append(svg("marker", {
      id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
    }, svg("path", { d: "M0 0 L10 5 L0 10 z", class: `edge-${kind}`, fill: "currentColor", stroke: "none" })));
  }
  chart.append(defs);
  const edgeLayer = svg("g", { "aria-hidden": "true" });
  for (const edge of edges) {
    const from = position.get(edge.source);
    const to = position.get(edge.target);
    const x1 = from.x + NODE_W;
    const y1 = from.y + NODE_H / 2;
    const x2 = to.x;
    const y2 = to.y + NODE_H / 2;
    const bend = Math.max(24, (x2 - x1) / 2);
    edgeLayer.append(svg("path", {
      class: `edge-${edge.kind}`, d: `M${x1} ${y1} C${x1 + bend} ${y1} ${x2 - bend} ${y2} ${x2} ${y2}`,
      "marker-end": `url(#arrow-${edge.kind})`, "data-kind": edge.kind,
    }));
  }
  chart.append(edgeLayer);
  for (const node of nodes) {
    const { x, y } = position.get(node.id);
    const task = tasks.get(node.id);
    const reused = reusedTargets.has(node.id) && (!task || ["Reused", "Cached"].includes(task.state_name));
    const classes = ["node", node.kind === "flow_run" ? "flow-run" : "task-run"];
    if (node.id === runId) classes.push("current");
    if (reused) classes.push("reused");
    const kindText = node.kind === "flow_run"
      ? (node.id === runId ? "this flow run" : "flow run")
      : (task ? task.state_name : reused ? "reused" : null) || "task run";
    const name = node.name || node.id;
    const label = `${node.kind === "flow_run" ? "Flow run" : "Task run"} ${name}${reused ? ", reused" : ""}`;
    const href = node.kind === "flow_run" ? (node.id === runId ? null : `/runs/${encodeURIComponent(node.id)}`)
      : (node.flow_run_id && node.flow_run_id !== runId ? `/runs/${encodeURIComponent(node.flow_run_id)}` : null);
    const box = svg("g", { class: classes.join(" "), "data-node": node.id, "data-reused": reused ? "true" : null });
    box.append(
      svg("title", {}, `${name}\n${node.id}`),
      svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 6 }),
      svg("text", { x: x + 8, y: y + 17 }, shorten(name, 22)),
      svg("text", { x: x + 8, y: y + 33, class: "kind" }, shorten(kindText, 26)),
    );
    if (href) chart.append(svg("a", { href, "aria-label": label }, box));
    else {
      box.setAttribute("tabindex", "0");
      box.setAttribute("aria-label", label);
      chart.append(box);
    }
  }
  container.replaceChildren(chart);
  const name = (id) => (byId.get(id)?.name || id);
  list.replaceChildren(...edges.map((edge) => el("li", { "data-kind": edge.kind },
    `${name(edge.source)} ${WORDS[edge.kind]} ${name(edge.target)}`)));
}
