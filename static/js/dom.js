// DOM helpers. Every piece of user or API text goes in through textContent or
// setAttribute, never parsed as markup, so a file named "<img src=x onerror=...>"
// is shown as text.

const SVG_NS = "http://www.w3.org/2000/svg";

function applyAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.setAttribute("class", value);
    else if (name === "text") el.textContent = String(value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") Object.assign(el.style, value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "href" || name === "src") el.setAttribute(name, safeUrl(value));
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Create an HTML element: h("a", {href, class, text}, ...children). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Create an SVG element (charts, viewer marks, icons). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === "text") el.textContent = String(value);
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

/** An icon from the page's inline sprite (templates/_icons.html). */
export function icon(name, cls = "") {
  const el = s("svg", { class: `icon ${cls}`.trim(), "aria-hidden": "true", focusable: "false" });
  el.append(s("use", { href: `#i-${name}` }));
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Scroll an element into view, smoothly unless the user asked for reduced motion. */
export function reveal(el, block = "start") {
  if (!el) return;
  const reduce = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  el.scrollIntoView({ behavior: reduce ? "auto" : "smooth", block });
}

export function setText(target, text) {
  const el = typeof target === "string" ? document.getElementById(target) : target;
  if (el) el.textContent = text === undefined || text === null ? "–" : String(text);
  return el;
}

export function show(el, visible = true) {
  const node = typeof el === "string" ? document.getElementById(el) : el;
  if (node) node.hidden = !visible;
}

/** Only http(s), same-page fragments and relative URLs; anything else becomes "#". */
export function safeUrl(value) {
  const text = String(value ?? "");
  if (text.startsWith("#")) return text;
  try {
    const url = new URL(text, window.location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? text : "#";
  } catch {
    return "#";
  }
}

/** A URL inside this app (honours a script root such as /aoi). */
export function appUrl(path) {
  return (document.body.dataset.root || "") + path;
}

export function resultUrl(imgId) {
  return appUrl(`/results/${encodeURIComponent(imgId)}`);
}

export function batchUrl(batchId) {
  return appUrl(`/batch/${encodeURIComponent(batchId)}`);
}

// ---- formatting ------------------------------------------------------------

const intFormat = new Intl.NumberFormat("en-US");

export function fmtInt(value) {
  return value === null || value === undefined || Number.isNaN(Number(value))
    ? "–"
    : intFormat.format(Math.round(Number(value)));
}

/** A list total: "10,000+" when the API counted only up to it (total_is_lower_bound). */
export function fmtTotal(answer) {
  return answer.total_is_lower_bound ? `${fmtInt(answer.total)}+` : fmtInt(answer.total);
}

export function fmtNum(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "–";
  return Number(value).toFixed(digits);
}

export function fmtSeconds(value) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "–";
  const seconds = Number(value);
  if (seconds >= 120) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
}

export function fmtBytes(value) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "–";
  let size = Number(value);
  const units = ["B", "KB", "MB", "GB", "TB"];
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size.toFixed(unit === 0 || size >= 100 ? 0 : 1)} ${units[unit]}`;
}

const pad = (n) => String(n).padStart(2, "0");

/** ISO 8601 (UTC, "Z") -> "YYYY-MM-DD HH:MM:SS" in local time. */
export function fmtDateTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** A Date -> "YYYY-MM-DD" (UTC), the form the API's date filters take. */
export function isoDate(date) {
  return `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`;
}

export function plural(count, word, many = `${word}s`) {
  return `${fmtInt(count)} ${Number(count) === 1 ? word : many}`;
}
