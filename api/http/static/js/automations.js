// Automations: the list (trigger and actions in words, enabled state, recent firings and what
// their actions did), enable / disable, and the editor. The editor sends the rule to the API's
// backtest first (which validates it exactly as saving does) and shows when it would have
// fired; saving is offered only for the rule as backtested. Refusals land next to their field.
import { ApiError, api, follow } from "./api.js";
import { start, throttle } from "./common.js";
import { $, el } from "./dom.js";
import { timeEl } from "./format.js";
import { clearErrors, showErrors } from "./form_errors.js";
import { FieldError, addAction, fieldPath, fill, readRule, sentence, showPosture, triggerSentence } from "./rule_form.js";

start();

const SHOWN_FIRINGS = 5;
const SHOWN_BACKTEST = 100;

const form = $("#rule-form");
const editor = $("#editor");
const saveButton = $("#save-button");
const list = $("#automation-list");
let editing = null;
let tested = null;
const known = new Map();

// -- editing: backtest, then save ---------------------------------------------------------

function openEditor(automation) {
  editing = automation;
  fill(automation, ruleChanged);
  clearErrors(form);
  tested = null;
  saveButton.disabled = true;
  $("#backtest").hidden = true;
  $("#editor-title").textContent = automation ? `Edit ${automation.name}` : "New automation";
  editor.hidden = false;
  form.elements.name.focus();
}

function closeEditor() {
  editor.hidden = true;
  editing = null;
  tested = null;
}

function ruleChanged() {
  let current = null;
  try { current = JSON.stringify(readRule()); } catch { /* unreadable: not what was tested */ }
  const stale = tested !== null && current !== tested;
  saveButton.disabled = tested === null || stale;
  $("#save-help").textContent = stale
    ? "The rule changed since its backtest: backtest it again to save it."
    : "Saving is possible once the rule as it stands has been backtested.";
}

function refuse(error) {
  const detail = error instanceof FieldError ? `${error.loc}: ${error.message}` : error.detail || error.message;
  const first = showErrors(form, detail, fieldPath);
  if (first) first.focus();
}

function message(action) {
  if (action.error) return `template error: ${action.error}`;
  const sent = action.message || {};
  if (action.type === "slack") return sent.text;
  if (action.type === "email") return `to ${(sent.to || []).join(", ")}: ${sent.subject}`;
  if (action.type === "webhook") return sent.body;
  return sentence(action);
}

function renderBacktest(firings, days) {
  const period = days ? `in the last ${days === "1" ? "24 hours" : `${days} days`}` : "over all stored events";
  $("#backtest-summary").textContent = firings.length
    ? `Would have fired ${firings.length} time${firings.length === 1 ? "" : "s"} ${period}.`
      + (firings.length > SHOWN_BACKTEST ? ` The newest ${SHOWN_BACKTEST} are listed.` : "")
    : `Would not have fired ${period}.`;
  $("#backtest-table").hidden = !firings.length;
  $("#backtest-body").replaceChildren(...firings.slice(-SHOWN_BACKTEST).reverse().map((firing) => el("tr", {},
    el("td", {}, timeEl(firing.at)),
    el("td", {}, firing.triggering_event.type),
    el("td", {}, firing.flow_run_id ? el("a", { href: `/runs/${firing.flow_run_id}` }, firing.flow_run_id.slice(0, 8)) : ""),
    el("td", { class: "messages" }, firing.actions.map((action) => el("div", { class: action.error ? "error" : "" },
      el("strong", {}, `${action.type}: `), message(action) || ""))),
  )));
  $("#backtest").hidden = false;
}

async function backtest() {
  clearErrors(form);
  let rule;
  try {
    rule = readRule();
  } catch (error) {
    refuse(error);
    return;
  }
  const days = form.elements.window.value;
  const body = { rule };
  if (days) body.since = new Date(Date.now() - Number(days) * 86400 * 1000).toISOString();
  const button = $("#backtest-button");
  button.disabled = true;
  try {
    const result = await api("/api/automations/test", { method: "POST", body });
    renderBacktest(result.firings, days);
    tested = JSON.stringify(rule);
  } catch (error) {
    tested = null;
    $("#backtest").hidden = true;
    refuse(error);
  } finally {
    button.disabled = false;
    ruleChanged();
  }
}

async function save() {
  let rule;
  try {
    rule = readRule();
  } catch (error) {
    refuse(error);
    return;
  }
  if (JSON.stringify(rule) !== tested) return ruleChanged();
  saveButton.disabled = true;
  try {
    const saved = editing
      ? await api(`/api/automations/${editing.id}`, { method: "PUT", body: rule })
      : await api("/api/automations", { method: "POST", body: rule });
    closeEditor();
    known.set(saved.id, saved);
    say(`Saved ${saved.name}.`);
    await load();
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) refuse(new FieldError("name", error.detail));
    else refuse(error);
    saveButton.disabled = false;
  }
}

function say(text) {
  const node = $("#page-message");
  node.textContent = text;
  node.hidden = false;
}

// -- the list -----------------------------------------------------------------------------

/** Firings, newest first, each with its actions' outcomes, from the automation's history. */
function firingsOf(events) {
  const firings = new Map();
  const actions = new Map();
  for (const event of events) {
    const data = event.data;
    if (event.type === "automation.triggered") {
      firings.set(event.id, { at: data.fired_at || event.occurred, on: data.triggering_event?.type, run: data.flow_run_id, actions: [] });
    } else if (event.type === "action.triggered") {
      const action = { type: data.action_type, outcome: data.render_error ? "failed" : "pending", error: data.render_error };
      actions.set(event.id, action);
      firings.get(data.firing_id)?.actions.push(action);
    } else {
      const action = actions.get(data.action_id);
      if (action) {
        action.outcome = event.type === "action.succeeded" ? "sent" : "failed";
        action.error = data.error;
        action.at = event.occurred;
      }
    }
  }
  return [...firings.values()].reverse();
}

function firingItem(firing) {
  return el("li", { class: "firing" },
    timeEl(firing.at), " on ", el("code", {}, firing.on || "?"),
    firing.run ? [" of run ", el("a", { href: `/runs/${firing.run}` }, firing.run.slice(0, 8))] : "",
    el("span", { class: "outcomes" }, firing.actions.map((action) => el("span", {
      class: `badge outcome ${action.outcome === "sent" ? "state-completed" : action.outcome === "failed" ? "state-failed" : "state-pending"}`,
      title: action.error || (action.at ? `at ${action.at}` : ""), "data-outcome": action.outcome,
    }, `${action.type}: ${action.outcome}`))));
}

function card(automation, history) {
  const firings = firingsOf(history);
  const name = automation.name;
  const toggle = el("button", {
    type: "button", class: "toggle", "aria-label": `${automation.enabled ? "Disable" : "Enable"} ${name}`,
    onclick: () => setEnabled(automation, !automation.enabled),
  }, automation.enabled ? "Disable" : "Enable");
  const edit = el("button", { type: "button", "aria-label": `Edit ${name}`, onclick: () => openEditor(automation) }, "Edit");
  return el("li", { class: "card panel", "data-automation": name, "data-enabled": String(automation.enabled) },
    el("div", { class: "card-head" },
      el("h3", {}, name),
      el("span", { class: `badge ${automation.enabled ? "state-completed" : "state-cancelled"}` }, automation.enabled ? "Enabled" : "Disabled"),
      el("div", { class: "actions" }, edit, toggle)),
    automation.description ? el("p", { class: "muted" }, automation.description) : "",
    el("dl", { class: "summary" },
      el("div", { class: "wide" }, el("dt", {}, "When"), el("dd", { class: "trigger" }, triggerSentence(automation.trigger))),
      el("div", { class: "wide" }, el("dt", {}, "Then"), el("dd", { class: "then" }, automation.actions.map(sentence).join("; ")))),
    el("h4", {}, firings.length ? `Recent firings (${firings.length})` : "Has not fired yet"),
    firings.length ? el("ul", { class: "firings" }, firings.slice(0, SHOWN_FIRINGS).map(firingItem)) : "");
}

async function setEnabled(automation, enabled) {
  try {
    const changed = await api(`/api/automations/${automation.id}/${enabled ? "enable" : "disable"}`, { method: "POST" });
    known.set(changed.id, changed);
    say(`${changed.name} is ${changed.enabled ? "enabled" : "disabled"}.`);
    await load();
  } catch (error) {
    say(`Could not change ${automation.name}: ${error.message}`);
  }
}

let loads = 0;

async function load() {
  const mine = ++loads; // a slower earlier load must not overwrite a newer one
  const errorNode = $("#list-error");
  let automations;
  try {
    automations = await api("/api/automations");
    errorNode.hidden = true;
  } catch (error) {
    errorNode.textContent = `Could not load automations: ${error.message}`;
    errorNode.hidden = false;
    return;
  }
  // What this page just wrote wins over a list that may lag a moment behind the log.
  const byId = new Map(automations.map((automation) => [automation.id, automation]));
  for (const [id, mine] of known) {
    const listed = byId.get(id);
    if (!listed || listed.updated < mine.updated) byId.set(id, mine);
    else known.delete(id);
  }
  const shown = [...byId.values()].sort((a, b) => a.name.localeCompare(b.name));
  const histories = await Promise.all(shown.map((automation) =>
    api(`/api/automations/${automation.id}/firings`, { params: { limit: 100 } }).catch(() => [])));
  if (mine !== loads) return;
  list.replaceChildren(...shown.map((automation, index) => card(automation, histories[index])));
  $("#list-loading").hidden = true;
  $("#list-empty").hidden = shown.length > 0;
}

$("#new-automation").addEventListener("click", () => openEditor(null));
$("#cancel-edit").addEventListener("click", closeEditor);
$("#add-action").addEventListener("click", () => { addAction(undefined, ruleChanged); ruleChanged(); });
form.elements.posture.addEventListener("change", showPosture);
form.addEventListener("input", ruleChanged);
form.addEventListener("change", ruleChanged);
form.addEventListener("submit", (event) => { event.preventDefault(); backtest(); });
saveButton.addEventListener("click", save);

await load();
follow({ type: ["automation.*", "action.*"] }, throttle(load, 1000));
