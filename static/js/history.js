// History page: gallery of stored results (thumbnails only), filters by date,
// class and batch, sorting and pagination; the state lives in the URL.
import { get } from "./api.js";
import { classChips } from "./classes.js";
import { banner, errorText, initPage } from "./common.js";
import { $, fmtDateTime, fmtInt, h, icon, resultUrl, reveal, setText, show } from "./dom.js";
import { renderPager } from "./pager.js";
import { TRACE_NAMES, traceText } from "./trace.js";

const FIELDS = ["start_date", "end_date", "class_name", "batch_id", ...TRACE_NAMES, "reviewed", "sort", "limit"];
// The filters a result page's "next unreviewed image" walks (the history it came from).
const WALK_FIELDS = ["start_date", "end_date", "class_name", "batch_id", ...TRACE_NAMES];
const DEFAULTS = { sort: "newest", limit: "24" };
const form = $("#history-filters");
let loadToken = 0;

function queryFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const query = { page: Math.max(1, Number(params.get("page")) || 1) };
  for (const name of FIELDS) query[name] = params.get(name) || DEFAULTS[name] || "";
  return query;
}

function fillForm(query) {
  for (const name of FIELDS) {
    const field = form.elements[name];
    if (!field) continue;
    if (field.tagName === "SELECT" && ![...field.options].some((o) => o.value === query[name])) {
      field.append(h("option", { value: query[name], text: query[name] }));
    }
    field.value = query[name];
  }
}

function queryFromForm(page = 1) {
  const query = { page };
  for (const name of FIELDS) query[name] = (form.elements[name].value || "").trim();
  return query;
}

function pushQuery(query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === "" || value === undefined || (DEFAULTS[name] && DEFAULTS[name] === value)) continue;
    if (name === "page" && Number(value) === 1) continue;
    params.set(name, String(value));
  }
  const search = params.toString();
  window.history.pushState(null, "", `${window.location.pathname}${search ? `?${search}` : ""}`);
}

async function load(query) {
  const token = ++loadToken;
  show("gallery-loading", true);
  let answer;
  try {
    answer = await get("/images", query);
  } catch (error) {
    if (token !== loadToken) return;
    show("gallery-loading", false);
    banner("error", `Could not load results: ${errorText(error)}`, { sticky: true });
    $("#gallery").replaceChildren();
    show("gallery-empty", false);
    return;
  }
  if (token !== loadToken) return;
  show("gallery-loading", false);
  render(answer);
}

function card(item) {
  const defects = Number(item.total_defects || 0);
  const thumb = h("div", { class: "thumb" });
  if (item.thumbnail_url) {
    thumb.append(h("img", { src: item.thumbnail_url, alt: item.filename || item.img_unique_id, loading: "lazy", decoding: "async" }));
  } else {
    thumb.append(icon("image", "thumb-placeholder"));
  }
  thumb.append(h("span", { class: `defect-badge ${defects ? "has-defects" : "no-defects"}`, title: "Total defects", text: fmtInt(defects) }));
  const meta = [h("span", { text: fmtDateTime(item.timestamp) })];
  if (item.image_width) meta.push(h("span", { text: `${item.image_width} × ${item.image_height}` }));
  const body = h(
    "div",
    { class: "card-body" },
    h("div", { class: "filename", title: item.filename || "", text: item.filename || item.img_unique_id }),
    h("div", { class: "card-meta muted small" }, ...meta),
    classChips(item.defect_classes),
  );
  if (item.batch_id) body.append(h("div", { class: "muted small batch-ref", text: `batch ${item.batch_id}` }));
  const trace = traceText(item);
  if (trace) body.append(h("div", { class: "muted small trace-ref", text: trace }));
  if (item.reviewed_at) thumb.append(h("span", { class: "reviewed-badge", title: `Reviewed by ${item.reviewed_by || "?"}`, text: "Reviewed" }));
  return h(
    "li",
    { class: "gallery-item", dataset: { imgId: item.img_unique_id, defects: String(defects), reviewed: String(Boolean(item.reviewed_at)) } },
    h("a", { class: "result-card", href: resultUrl(item.img_unique_id) + walkQuery(), title: `Open ${item.filename || item.img_unique_id}` }, thumb, body),
  );
}

function walkQuery() {
  const current = queryFromUrl();
  const params = new URLSearchParams();
  for (const name of WALK_FIELDS) if (current[name]) params.set(name, current[name]);
  const search = params.toString();
  return search ? `?${search}` : "";
}

function render(answer) {
  const items = answer.images || [];
  $("#gallery").replaceChildren(...items.map(card));
  setText("gallery-total", fmtInt(answer.total));
  const start = items.length ? (answer.page - 1) * answer.limit + 1 : 0;
  setText("gallery-range", items.length ? `Showing ${fmtInt(start)}–${fmtInt(start + items.length - 1)} of ${fmtInt(answer.total)}` : "");
  show("gallery-empty", items.length === 0);
  renderPager($("#pagination"), answer, (page) => {
    const query = { ...queryFromUrl(), page };
    pushQuery(query);
    load(query);
    reveal($("#gallery-heading"), "start");
  });
}

function init() {
  initPage();
  const params = new URLSearchParams(window.location.search);
  const deleted = params.get("deleted");
  if (deleted) {
    banner("success", `Result ${deleted} deleted.`);
    params.delete("deleted");
    const search = params.toString();
    window.history.replaceState(null, "", `${window.location.pathname}${search ? `?${search}` : ""}`);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = queryFromForm(1);
    pushQuery(query);
    load(query);
  });
  $("#f-reset").addEventListener("click", () => {
    form.reset();
    const query = queryFromForm(1);
    pushQuery(query);
    load(query);
  });
  for (const name of ["class_name", "reviewed", "sort", "limit"]) {
    form.elements[name].addEventListener("change", () => form.requestSubmit());
  }
  window.addEventListener("popstate", () => {
    const query = queryFromUrl();
    fillForm(query);
    load(query);
  });
  const query = queryFromUrl();
  fillForm(query);
  load(query);
}

init();
