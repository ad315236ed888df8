// The automation editor's form (templates/automations.html) and a rule: a rule read from the
// form as the API takes it, a rule put into the form, an API location as the form's field
// path; and a rule in words, for the list.
import { $, $$ } from "./dom.js";
import { duration } from "./format.js";

const form = $("#rule-form");

const ACTION_FIELDS = {
  slack: ["block", "text"],
  email: ["block", "to", "subject", "body"],
  webhook: ["block", "body", "method"],
  "replay-flow-run": ["max_replays"],
  "cancel-flow-run": ["message"],
  "run-deployment": ["deployment", "parameters"],
};
const UNION_TAGS = new Set(["reactive", "proactive", ...Object.keys(ACTION_FIELDS)]);

export class FieldError extends Error {
  constructor(loc, message) {
    super(message);
    this.loc = loc;
  }
}

/** The form's field path of an API location: no `rule.` (backtest body), no union tags. */
export function fieldPath(loc) {
  return loc.replace(/^rule\./, "").split(".").filter((part) => !UNION_TAGS.has(part)).join(".");
}

const csv = (text) => text.split(",").map((part) => part.trim()).filter(Boolean);

function putText(target, key, value) {
  if (value.trim() !== "") target[key] = value.trim();
}

function putList(target, key, value) {
  const items = csv(value);
  if (items.length) target[key] = items;
}

// -- the form <-> a rule ------------------------------------------------------------------

function readAction(item, index) {
  const type = item.querySelector('[data-key="type"]').value;
  const original = item.original && item.original.type === type ? item.original : {};
  const action = { ...original, type };
  for (const key of ACTION_FIELDS[type]) {
    const raw = item.querySelector(`[data-key="${key}"]`).value;
    delete action[key];
    if (key === "to") putList(action, key, raw);
    else if (key === "parameters") {
      if (!raw.trim()) continue;
      try {
        action.parameters = JSON.parse(raw);
      } catch (error) {
        throw new FieldError(`actions.${index}.parameters`, `not JSON: ${error.message}`);
      }
    } else if (key === "block" || key === "method" || key === "max_replays" || key === "deployment") putText(action, key, raw);
    else if (raw.trim() !== "") action[key] = raw; // a template, spaces and all
  }
  return action;
}

export function readRule() {
  const fields = form.elements;
  const posture = fields.posture.value;
  const match = { events: csv(fields.events.value) };
  putList(match, "flow_name", fields.flow_name.value);
  putList(match, "tags", fields.tags.value);
  putList(match, "deployment", fields.deployment.value);
  const trigger = { posture, match };
  if (posture === "proactive") trigger.after = csv(fields.after.value);
  putText(trigger, "threshold", fields.threshold.value);
  putText(trigger, "within", fields.within.value);
  putText(trigger, "cooldown", fields.cooldown.value);
  putText(trigger, "for_each", fields.for_each.value);
  return {
    name: fields.name.value,
    description: fields.description.value,
    enabled: fields.enabled.checked,
    trigger,
    actions: $$("#actions > li").map(readAction),
  };
}

function showActionFields(item) {
  const type = item.querySelector('[data-key="type"]').value;
  for (const field of item.querySelectorAll("[data-for]")) field.hidden = !field.dataset.for.split(" ").includes(type);
}

function numberActions() {
  $$("#actions > li").forEach((item, index) => {
    item.dataset.field = `actions.${index}`;
    item.setAttribute("aria-label", `Action ${index + 1}`);
    for (const field of item.querySelectorAll(".field")) {
      const key = field.querySelector("[data-key]").dataset.key;
      const id = `action-${index}-${key}`;
      field.dataset.field = `actions.${index}.${key}`;
      field.querySelector("[data-key]").id = id;
      field.querySelector("label").htmlFor = id;
    }
    item.querySelector(".remove-action").setAttribute("aria-label", `Remove action ${index + 1}`);
  });
}

export function addAction(action = { type: "slack" }, onChange = () => {}) {
  const item = $("#action-template").content.firstElementChild.cloneNode(true);
  item.original = action;
  for (const input of item.querySelectorAll("[data-key]")) {
    const value = action[input.dataset.key];
    if (value === undefined || value === null) continue;
    if (input.dataset.key === "parameters") input.value = JSON.stringify(value);
    else input.value = Array.isArray(value) ? value.join(", ") : String(value);
  }
  item.querySelector('[data-key="type"]').addEventListener("change", () => showActionFields(item));
  item.querySelector(".remove-action").addEventListener("click", () => {
    item.remove();
    numberActions();
    onChange();
  });
  $("#actions").append(item);
  showActionFields(item);
  numberActions();
}

export function showPosture() {
  $("#after-field").hidden = form.elements.posture.value !== "proactive";
}

export function fill(automation, onChange) {
  const fields = form.elements;
  const trigger = automation ? automation.trigger : { posture: "reactive", match: { events: [] } };
  const joined = (values) => (values || []).join(", ");
  fields.name.value = automation ? automation.name : "";
  fields.description.value = automation ? automation.description : "";
  fields.enabled.checked = automation ? automation.enabled : true;
  fields.posture.value = trigger.posture;
  fields.events.value = joined(trigger.match.events);
  fields.after.value = joined(trigger.after);
  fields.flow_name.value = joined(trigger.match.flow_name);
  fields.tags.value = joined(trigger.match.tags);
  fields.deployment.value = joined(trigger.match.deployment);
  fields.threshold.value = automation ? String(trigger.threshold) : "";
  fields.within.value = automation ? String(trigger.within) : "";
  fields.cooldown.value = automation ? String(trigger.cooldown) : "";
  fields.for_each.value = (automation && trigger.for_each) || "";
  $("#actions").replaceChildren();
  for (const action of automation ? automation.actions : [{ type: "slack" }]) addAction(action, onChange);
  showPosture();
}

// -- a rule in words ---------------------------------------------------------------------

function filters(match) {
  const parts = [];
  if (match.flow_name) parts.push(`flow ${match.flow_name.join(" or ")}`);
  if (match.tags) parts.push(`tags ${match.tags.join(" and ")}`);
  if (match.deployment) parts.push(`deployment ${match.deployment.join(" or ")}`);
  if (match.work_pool) parts.push(`work pool ${match.work_pool.join(" or ")}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

export function triggerSentence(trigger) {
  const events = trigger.match.events.join(" or ") + filters(trigger.match);
  let text;
  if (trigger.posture === "proactive") {
    text = `fewer than ${trigger.threshold} × ${events} within ${duration(trigger.within)} after ${trigger.after.join(" or ")}`;
  } else if (trigger.threshold > 1 || trigger.within > 0) {
    text = `at least ${trigger.threshold} × ${events}${trigger.within > 0 ? ` within ${duration(trigger.within)}` : ""}`;
  } else {
    text = `every ${events}`;
  }
  if (trigger.for_each) text += `, per ${trigger.for_each === "run" ? "flow run" : "flow"}`;
  if (trigger.cooldown > 0) text += `; quiet for ${duration(trigger.cooldown)} after firing`;
  return text;
}

export function sentence(action) {
  switch (action.type) {
    case "slack": return `Slack message through ${action.block}`;
    case "email": return `email to ${(action.to || []).join(", ")} through ${action.block}`;
    case "webhook": return `webhook${action.method ? ` (${action.method})` : ""} through ${action.block}`;
    case "replay-flow-run": return `replay the run from failure (at most ${action.max_replays ?? 1})`;
    case "cancel-flow-run": return "cancel the run";
    case "run-deployment": return `run deployment ${action.deployment}`;
    default: return action.type;
  }
}

