// The API's 4xx messages shown where they belong in a form.
//
// A refusal's detail is one line, `loc: message; loc: message` for a validation error (see
// api/http/errors.py) or a plain sentence. Each part goes next to the element whose
// `data-field` is its location (or the nearest enclosing one: `actions.0.to.1` lands on
// `actions.0.to`); what matches no field is shown at the form's own error line.
import { el } from "./dom.js";

const PART = /;\s(?=[\w.\-[\]]+: )/;
const LOCATED = /^([\w.\-[\]]+): (.+)$/s;

/** [{loc, message}] from a refusal's detail; loc is null for a plain sentence. */
export function parseDetail(detail) {
  return String(detail || "").split(PART).map((part) => {
    const found = LOCATED.exec(part.trim());
    return found ? { loc: found[1], message: found[2] } : { loc: null, message: part.trim() };
  });
}

export function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error")) node.remove();
  for (const node of form.querySelectorAll("[aria-invalid]")) {
    node.removeAttribute("aria-invalid");
    const ids = (node.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && !id.startsWith("err-"));
    if (ids.length) node.setAttribute("aria-describedby", ids.join(" "));
    else node.removeAttribute("aria-describedby");
  }
  const general = form.querySelector(".form-error");
  if (general) { general.hidden = true; general.textContent = ""; }
}

function fieldFor(form, segments) {
  for (let end = segments.length; end > 0; end--) {
    const node = form.querySelector(`[data-field="${CSS.escape(segments.slice(0, end).join("."))}"]`);
    if (node && !node.hidden) return node;
  }
  return null;
}

let serial = 0;

function mark(field, message) {
  const id = `err-${++serial}`;
  const note = el("p", { class: "field-error error", id }, message);
  const control = field.matches("input, select, textarea") ? field
    : field.querySelector(":scope > input, :scope > select, :scope > textarea");
  if (control) {
    control.setAttribute("aria-invalid", "true");
    const described = control.getAttribute("aria-describedby");
    control.setAttribute("aria-describedby", described ? `${described} ${id}` : id);
    control.after(note);
  } else {
    field.prepend(note);
  }
  return control || field;
}

/**
 * Show `detail` in `form`. `normalize(loc)` turns an API location into the form's field path
 * (dropping a body prefix or union tags). Returns the first element marked, to focus.
 */
export function showErrors(form, detail, normalize = (loc) => loc) {
  clearErrors(form);
  const general = form.querySelector(".form-error");
  const loose = [];
  let first = null;
  for (const { loc, message } of parseDetail(detail)) {
    const field = loc === null ? null : fieldFor(form, normalize(loc).split(".").filter(Boolean));
    if (field) {
      const marked = mark(field, message);
      first = first || marked;
    } else {
      loose.push(loc ? `${loc}: ${message}` : message);
    }
  }
  if (loose.length && general) {
    general.textContent = loose.join("; ");
    general.hidden = false;
    first = first || general;
  }
  return first;
}
