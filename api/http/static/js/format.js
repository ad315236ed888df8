// Formatting shared by the pages; `duration` matches the server's (api/http/templating.py).
import { el } from "./dom.js";

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) {
    const whole = Math.floor(seconds);
    return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
  }
  const whole = Math.floor(seconds);
  return `${Math.floor(whole / 3600)} h ${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")} min`;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** A local date and time for an ISO string (empty for none). */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : dateTime.format(date);
}

export function clock(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const base = timeOnly.format(date);
  const ms = String(date.getMilliseconds()).padStart(3, "0");
  return `${base}.${ms}`;
}

/** A <time> element showing `iso` in local time. */
export function timeEl(iso) {
  return el("time", { datetime: iso || "" }, when(iso));
}

/** Replace the UTC text the server rendered in <time datetime> elements by local time. */
export function localizeTimes(root = document) {
  for (const node of root.querySelectorAll("time[datetime]")) {
    const iso = node.getAttribute("datetime");
    if (iso) {
      node.title = iso;
      node.textContent = when(iso);
    }
  }
}

export function percent(value) {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`;
}

export function stateClass(stateType) {
  return `state-${String(stateType || "none").toLowerCase()}`;
}

export function badge(stateType, stateName) {
  const node = el("span", { class: `badge ${stateClass(stateType)}` }, stateName || "No state");
  if (stateName === "Reused" || stateName === "Cached") node.classList.add("reused");
  return node;
}

export const TERMINAL = new Set(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]);
