// Markdown to DOM, safely: the text is never parsed as HTML (an artifact's `<script>` shows as
// text), and a link is followed only to http(s), mailto or this server.
import { el } from "./dom.js";

const SAFE_SCHEME = /^(https?:|mailto:)/i;

/** The href for `url`, or null when it is not safe to follow (javascript:, data:, ...). */
export function safeHref(url) {
  const value = String(url || "").trim();
  if (!value) return null;
  if (SAFE_SCHEME.test(value)) return value;
  if (/^[a-z][a-z0-9+.-]*:/i.test(value) || value.startsWith("//")) return null;
  return value; // relative: this server
}

export function link(url, text) {
  const href = safeHref(url);
  if (!href) return document.createTextNode(text || String(url));
  const external = /^https?:/i.test(href);
  return el("a", { href, rel: external ? "noopener noreferrer nofollow" : null, target: external ? "_blank" : null }, text || href);
}

const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|!?\[([^\]]*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)|<(https?:\/\/[^>\s]+)>|(https?:\/\/[^\s<]+[^\s<.,;:!?)\]'"])/g;

export function inline(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) nodes.push(text.slice(last, match.index));
    const [whole, , code, bold1, bold2, em1, em2, linkText, url, auto, bare] = match;
    if (code !== undefined) nodes.push(el("code", {}, code));
    else if (bold1 !== undefined || bold2 !== undefined) nodes.push(el("strong", {}, inline(bold1 ?? bold2)));
    else if (em1 !== undefined || em2 !== undefined) nodes.push(el("em", {}, inline(em1 ?? em2)));
    else if (url !== undefined) nodes.push(link(url, whole.startsWith("!") ? `image: ${linkText || url}` : linkText));
    else nodes.push(link(auto ?? bare));
    last = match.index + whole.length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

const TABLE_RULE = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;
const LIST_ITEM = /^\s*([-*+]|\d+[.)])\s+(.*)$/;

function cells(line) {
  let text = line.trim();
  if (text.startsWith("|")) text = text.slice(1);
  if (text.endsWith("|") && !text.endsWith("\\|")) text = text.slice(0, -1);
  return text.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

/** A <div class="markdown"> for `source`. */
export function markdown(source) {
  const root = el("div", { class: "markdown" });
  const lines = String(source ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) root.append(el("p", {}, inline(paragraph.join(" "))));
    paragraph = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)(.*)$/);
    if (fence) {
      flush();
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      root.append(el("pre", {}, el("code", { "data-language": fence[2].trim() || null }, body.join("\n"))));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      flush();
      root.append(el(`h${Math.min(6, heading[1].length + 2)}`, {}, inline(heading[2])));
      i++;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      root.append(el("hr"));
      i++;
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      flush();
      const head = cells(line);
      i += 2;
      const body = [];
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) body.push(cells(lines[i++]));
      root.append(el("div", { class: "table-wrap" }, el("table", {},
        el("thead", {}, el("tr", {}, head.map((cell) => el("th", { scope: "col" }, inline(cell))))),
        el("tbody", {}, body.map((row) => el("tr", {}, head.map((_, n) => el("td", {}, inline(row[n] ?? "")))))))));
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
      const block = markdown(quoted.join("\n"));
      root.append(el("blockquote", {}, ...block.childNodes));
      continue;
    }
    const item = line.match(LIST_ITEM);
    if (item) {
      flush();
      const ordered = /\d/.test(item[1]);
      const listNode = el(ordered ? "ol" : "ul");
      while (i < lines.length) {
        const next = lines[i].match(LIST_ITEM);
        if (next) {
          listNode.append(el("li", {}, inline(next[2])));
        } else if (lines[i].trim() && /^\s{2,}/.test(lines[i]) && listNode.lastChild) {
          listNode.lastChild.append(" ", ...inline(lines[i].trim()));
        } else {
          break;
        }
        i++;
      }
      root.append(listNode);
      continue;
    }
    if (!line.trim()) {
      flush();
      i++;
      continue;
    }
    paragraph.push(line.trim());
    i++;
  }
  flush();
  return root;
}

function text(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** A table artifact's data: a list of rows (objects), a dict of columns, or a list of lists. */
export function tableOf(data) {
  let head = null;
  let rows = [];
  if (Array.isArray(data) && data.every((row) => row && typeof row === "object" && !Array.isArray(row))) {
    head = [...new Set(data.flatMap((row) => Object.keys(row)))];
    rows = data.map((row) => head.map((key) => row[key]));
  } else if (data && typeof data === "object" && !Array.isArray(data)) {
    head = Object.keys(data);
    const length = Math.max(0, ...head.map((key) => (Array.isArray(data[key]) ? data[key].length : 1)));
    rows = Array.from({ length }, (_, n) => head.map((key) => (Array.isArray(data[key]) ? data[key][n] : n === 0 ? data[key] : "")));
  } else if (Array.isArray(data)) {
    rows = data.map((row) => (Array.isArray(row) ? row : [row]));
  } else {
    return el("pre", {}, text(data));
  }
  return el("div", { class: "table-wrap" }, el("table", {},
    head ? el("thead", {}, el("tr", {}, head.map((name) => el("th", { scope: "col" }, name)))) : null,
    el("tbody", {}, rows.map((row) => el("tr", {}, row.map((value) => el("td", {}, text(value))))))));
}

/** The body of one artifact (GET /api/flow-runs/{id}/artifacts item). */
export function artifactBody(artifact) {
  const data = artifact.data;
  switch (artifact.artifact_type) {
    case "markdown":
      return markdown(typeof data === "string" ? data : text(data));
    case "table":
      return tableOf(data);
    case "link": {
      const target = data && typeof data === "object" ? data.link : data;
      const label = data && typeof data === "object" ? data.link_text : null;
      return el("p", {}, link(target, label || target));
    }
    case "progress": {
      const value = Number(data) || 0;
      return el("p", {}, el("progress", { max: 100, value, "aria-label": artifact.key || "progress" }), ` ${value.toFixed(0)}%`);
    }
    default:
      return el("pre", {}, text(data));
  }
}
