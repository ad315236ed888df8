// The JSON API and the live feed, with the API key when the server needs one.
//
// The key is asked for once (a dialog) and kept in sessionStorage: it lives as long as the tab
// and is sent as `Authorization: Bearer` on every request. The live feed is read with fetch()
// streaming rather than EventSource, because EventSource cannot send headers: the key never has
// to travel in a URL (where proxies and server logs would keep it).

const KEY = "ledgerflow.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

export function storedKey() {
  try { return sessionStorage.getItem(KEY); } catch { return null; }
}

function storeKey(value) {
  try {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  } catch { /* storage disabled: the key lasts until the page goes */ }
}

let asking = null;

/** Show the key dialog; resolves once a key is entered, rejects when the user cancels. */
export function askKey(reason) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const error = document.getElementById("key-error");
  asking = new Promise((resolve, reject) => {
    error.hidden = !reason;
    error.textContent = reason || "";
    input.value = "";
    const done = (ok) => {
      form.removeEventListener("submit", submit);
      document.getElementById("key-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancel);
      if (dialog.open) dialog.close();
      asking = null;
      if (ok) resolve(); else reject(new ApiError(401, "an API key is required"));
    };
    const submit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) {
        error.hidden = false;
        error.textContent = "Enter a key.";
        return;
      }
      storeKey(value);
      done(true);
    };
    const cancel = (event) => { event.preventDefault(); done(false); };
    form.addEventListener("submit", submit);
    document.getElementById("key-cancel").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancel);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

export function forgetKey() {
  storeKey(null);
}

function headers(extra = {}) {
  const result = { Accept: "application/json", ...extra };
  const key = storedKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

/** "/api/x" plus query parameters; arrays repeat the name, empty values are left out. */
export function withParams(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== null && item !== undefined && item !== "") query.append(name, item);
    }
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function refusal(response) {
  try {
    const body = await response.json();
    return body.detail || response.statusText;
  } catch {
    return response.statusText;
  }
}

/**
 * Call the API: `api("/api/flow-runs", {params: {limit: 50}})`, or a write with `method` and
 * `body` (sent as application/json, which the server's CSRF guard requires of every write).
 */
export async function api(path, { method = "GET", params, body, signal } = {}) {
  const url = withParams(path, params);
  for (;;) {
    const init = { method, signal, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      init.headers = headers({ "Content-Type": "application/json" });
      init.body = JSON.stringify(body);
    } else {
      init.headers = headers();
    }
    const response = await fetch(url, init);
    if (response.status === 401) {
      const detail = await refusal(response);
      const had = storedKey();
      forgetKey();
      await askKey(had ? detail : "");
      window.dispatchEvent(new CustomEvent("ledgerflow:key"));
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await refusal(response));
    return response.status === 204 ? null : response.json();
  }
}

function setStatus(status) {
  const node = document.getElementById("live-status");
  if (!node) return;
  node.dataset.status = status;
  node.textContent = { live: "Live", reconnecting: "Reconnecting…", paused: "Paused", idle: "" }[status] ?? "";
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follow `/api/events/feed` (SSE) with `params` (type, flow_run_id, flow_name) from cursor
 * `after` (the server's head when none). `onEvents(batch)` gets each chunk's events in log
 * order; after a dropped connection the feed resumes after the last event received
 * (Last-Event-ID), so nothing is missed or repeated. Returns {close(), opened}: `opened`
 * resolves once the server has fixed where the feed starts.
 */
export function follow(params, onEvents, { after = null } = {}) {
  let cursor = after;
  let stopped = false;
  let controller = null;
  let markOpen;
  const opened = new Promise((resolve) => { markOpen = resolve; });

  async function run() {
    let delay = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        const extra = { Accept: "text/event-stream" };
        if (cursor) extra["Last-Event-ID"] = cursor;
        const response = await fetch(withParams("/api/events/feed", params), {
          headers: headers(extra), signal: controller.signal, cache: "no-store", credentials: "same-origin",
        });
        if (response.status === 401) {
          const detail = await refusal(response);
          const had = storedKey();
          forgetKey();
          await askKey(had ? detail : "");
          window.dispatchEvent(new CustomEvent("ledgerflow:key"));
          continue;
        }
        if (!response.ok) throw new ApiError(response.status, await refusal(response));
        setStatus("live");
        markOpen();
        delay = 500;
        await read(response.body);
      } catch (error) {
        if (stopped) return;
        if (error instanceof ApiError && error.status === 401) { setStatus("idle"); markOpen(); return; }
      }
      if (stopped) return;
      setStatus("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end = buffer.indexOf("\n\n");
      if (end < 0) continue;
      const batch = [];
      while (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let id = null;
        let data = null;
        for (const line of block.split("\n")) {
          if (line.startsWith("id: ")) id = line.slice(4);
          else if (line.startsWith("data: ")) data = data === null ? line.slice(6) : `${data}\n${line.slice(6)}`;
        }
        if (data !== null) {
          batch.push(JSON.parse(data));
          if (id) cursor = id;
        }
        end = buffer.indexOf("\n\n");
      }
      if (batch.length && !stopped) onEvents(batch);
    }
  }

  run();
  return {
    opened,
    get cursor() { return cursor; },
    close() {
      stopped = true;
      if (controller) controller.abort();
      setStatus("idle");
    },
  };
}
