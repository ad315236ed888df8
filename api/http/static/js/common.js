// What every page does: read its data, the theme toggle, the API-key button, local times.
import { askKey, forgetKey, storedKey } from "./api.js";
import { localizeTimes } from "./format.js";

export function pageData() {
  const node = document.getElementById("page-data");
  return node ? JSON.parse(node.textContent) : {};
}

function currentTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen) return chosen;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function labelToggle(button) {
  const dark = currentTheme() === "dark";
  button.setAttribute("aria-label", dark ? "Switch to light theme" : "Switch to dark theme");
  button.setAttribute("aria-pressed", String(dark));
  button.title = button.getAttribute("aria-label");
}

function setUpTheme() {
  const button = document.getElementById("theme-toggle");
  if (!button) return;
  labelToggle(button);
  button.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem("ledgerflow.theme", next); } catch { /* not kept */ }
    labelToggle(button);
    window.dispatchEvent(new CustomEvent("ledgerflow:theme"));
  });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    labelToggle(button);
    window.dispatchEvent(new CustomEvent("ledgerflow:theme"));
  });
}

function setUpKey() {
  const button = document.getElementById("key-button");
  if (!button) return;
  const label = () => { button.textContent = storedKey() ? "API key ✓" : "API key"; };
  label();
  button.addEventListener("click", () => {
    askKey("").then(() => window.location.reload(), () => {});
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    forgetKey();
    label();
    document.getElementById("key-dialog").close();
  });
  window.addEventListener("ledgerflow:key", label);
}

/** Shared start-up; returns the page's data. */
export function start() {
  setUpTheme();
  setUpKey();
  localizeTimes();
  return pageData();
}

/** Calls `fn` at most once per animation frame with everything queued since the last call. */
export function frameBatcher(fn) {
  let queue = [];
  let scheduled = false;
  return (items) => {
    for (const item of items) queue.push(item);
    if (scheduled) return;
    scheduled = true;
    const run = () => {
      scheduled = false;
      const batch = queue;
      queue = [];
      fn(batch);
    };
    // A hidden tab gets no animation frames: apply on a timer there, or the queue would grow.
    if (document.hidden) setTimeout(run, 250);
    else requestAnimationFrame(run);
  };
}

/** Calls `fn` once `ms` after the last call (a trailing debounce), at most every `ms`. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
}

/** Calls `fn` at most once every `ms` (leading and trailing). */
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      last = Date.now();
      fn();
    } else if (!timer) {
      timer = setTimeout(() => { timer = null; last = Date.now(); fn(); }, wait);
    }
  };
}
