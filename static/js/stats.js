// Statistics page: totals, defect Pareto by class and the daily trend for a
// chosen window (GET /stats?start_date&end_date); charts are plain SVG.
import { get } from "./api.js";
import { paretoChart, trendChart } from "./charts.js";
import { CLASSES, classInfo, rgbCss, swatch } from "./classes.js";
import { banner, errorText, initPage } from "./common.js";
import { $, $$, fmtBytes, fmtDateTime, fmtInt, fmtSeconds, h, isoDate, setText, show } from "./dom.js";
import { TRACE_FIELDS, TRACE_NAMES, pct, traceValues } from "./trace.js";

const form = $("#stats-filters");
const DAY = 86400000;

function windowOf(days) {
  if (!days) return { start_date: "", end_date: "" };
  const end = new Date();
  return { start_date: isoDate(new Date(end.getTime() - (days - 1) * DAY)), end_date: isoDate(end) };
}

function currentWindow() {
  return {
    start_date: form.elements.start_date.value,
    end_date: form.elements.end_date.value,
    ...traceValues(form),
    group_by: form.elements.group_by.value,
  };
}

function setWindow({ start_date, end_date }) {
  form.elements.start_date.value = start_date;
  form.elements.end_date.value = end_date;
}

function remember(window_) {
  const params = new URLSearchParams();
  if (window_.start_date) params.set("start_date", window_.start_date);
  if (window_.end_date) params.set("end_date", window_.end_date);
  for (const name of [...TRACE_NAMES, "group_by"]) if (window_[name]) params.set(name, window_[name]);
  if (!window_.start_date && !window_.end_date) params.set("all", "1");
  window.history.replaceState(null, "", `${window.location.pathname}?${params}`);
}

async function load() {
  const window_ = currentWindow();
  remember(window_);
  show("stats-loading", true);
  let stats;
  try {
    stats = await get("/stats", window_);
  } catch (error) {
    show("stats-loading", false);
    banner("error", `Could not load statistics: ${errorText(error)}`, { sticky: true });
    return;
  }
  show("stats-loading", false);
  show("stats-body", true);
  render(stats, window_);
}

function render(stats, window_) {
  const totals = stats.totals || {};
  setText("s-images", fmtInt(totals.images));
  setText("s-regions", fmtInt(totals.regions));
  setText("s-batches", fmtInt(totals.batches));
  setText("s-time", fmtSeconds(stats.processing_time && stats.processing_time.mean));
  setText("s-storage", fmtBytes(stats.storage && stats.storage.bytes_used));
  const range = stats.date_range || {};
  const time = stats.processing_time || {};
  setText(
    "s-range",
    `${range.first ? `Results from ${fmtDateTime(range.first)} to ${fmtDateTime(range.last)}` : "No results in this window"}` +
      (time.min !== undefined && time.min !== null ? ` · processing time min ${fmtSeconds(time.min)}, max ${fmtSeconds(time.max)}` : ""),
  );

  const byName = new Map((stats.classes || []).map((c) => [classInfo(c.class_name).name, c]));
  const rows = CLASSES.map((info) => {
    const item = byName.get(info.name) || {};
    return { name: info.name, value: Number(item.regions || 0), images: Number(item.images || 0), area: Number(item.area_pixels || 0), color: rgbCss(info.rgb) };
  }).sort((a, b) => b.value - a.value);
  $("#pareto-chart").replaceChildren(paretoChart(rows));
  const total = rows.reduce((sum, r) => sum + r.value, 0);
  let cumulative = 0;
  $("#pareto-body").replaceChildren(
    ...rows.map((row) => {
      cumulative += row.value;
      const pct = (n) => (total ? `${((100 * n) / total).toFixed(1)}%` : "–");
      return h(
        "tr",
        { dataset: { className: row.name } },
        h("td", {}, swatch(row.name), ` ${row.name}`),
        h("td", { class: "num", text: fmtInt(row.value) }),
        h("td", { class: "num", text: pct(row.value) }),
        h("td", { class: "num", text: pct(cumulative) }),
        h("td", { class: "num", text: fmtInt(row.images) }),
        h("td", { class: "num", text: fmtInt(row.area) }),
      );
    }),
  );
  $("#trend-chart").replaceChildren(trendChart(stats.daily || [], window_.start_date, window_.end_date));
  renderGroups(stats);
  renderQuality(stats.review || {});
}

// ---- traceability groups and review quality (issue #16) --------------------------------

const LABELS = Object.fromEntries(TRACE_FIELDS);

function head(...names) {
  return h("thead", {}, h("tr", {}, ...names.map(([text, num]) => h("th", { scope: "col", class: num ? "num" : "", text }))));
}

function rateCells(row) {
  return [
    h("td", { class: "num", text: fmtInt(row.reviewed_regions) }),
    h("td", { class: "num", text: fmtInt(row.false_call) }),
    h("td", { class: "num", text: fmtInt(row.nuisance) }),
    h("td", { class: "num", dataset: { role: "false-call-rate" }, text: pct(row.false_call_rate) }),
    h("td", { class: "num", text: pct(row.nuisance_rate) }),
  ];
}

function rateTable(id, keyLabel, key, rows) {
  const table = $(`#${id}`);
  table.replaceChildren(
    head([keyLabel], ["Reviewed", true], ["False calls", true], ["Nuisance", true], ["False-call rate", true], ["Nuisance rate", true]),
    h("tbody", {}, ...rows.map((row) => h("tr", { dataset: { key: String(row[key] ?? "") } }, h("td", { text: row[key] ?? "(none)" }), ...rateCells(row)))),
  );
}

function renderGroups(stats) {
  const field = stats.group_by;
  show("groups-panel", Boolean(field));
  if (!field) return;
  setText("groups-field", (LABELS[field] || field).toLowerCase());
  setText("groups-key", LABELS[field] || field);
  $("#groups-body").replaceChildren(
    ...(stats.groups || []).map((row) =>
      h(
        "tr",
        { dataset: { key: String(row[field] ?? "") } },
        h("td", { text: row[field] ?? "(none)" }),
        h("td", { class: "num", text: fmtInt(row.images) }),
        h("td", { class: "num", text: fmtInt(row.regions) }),
        h("td", { class: "num", text: fmtInt(row.reviewed_regions) }),
        h("td", { class: "num", dataset: { role: "false-call-rate" }, text: pct(row.false_call_rate) }),
        h("td", { class: "num", text: pct(row.nuisance_rate) }),
      ),
    ),
  );
}

function renderQuality(review) {
  const totals = review.totals || {};
  setText("q-reviewed", fmtInt(totals.reviewed_regions));
  setText("q-false", pct(totals.false_call_rate));
  setText("q-nuisance", pct(totals.nuisance_rate));
  setText("q-true", fmtInt(totals.true_defect));
  show("q-empty", !totals.reviewed_regions);
  rateTable("q-class", "Class", "class_name", review.by_class || []);
  rateTable("q-tool", "Tool", "tool_id", review.by_tool || []);
  rateTable("q-model", "Model", "model", review.by_model || []);
  rateTable("q-daily", "Day", "date", review.daily || []);
  const confusion = review.confusion || [];
  const columns = [...CLASSES.map((info) => info.name), "false_call"];
  const models = CLASSES.map((info) => info.name).filter((name) => confusion.some((c) => c.model_class === name));
  const count = (model, reviewer) => (confusion.find((c) => c.model_class === model && c.reviewer_class === reviewer) || {}).regions || 0;
  $("#q-confusion").replaceChildren(
    head(["Model class ↓ · reviewer →"], ...columns.map((name) => [name === "false_call" ? "False call" : name, true])),
    h(
      "tbody",
      {},
      ...models.map((model) =>
        h(
          "tr",
          { dataset: { model } },
          h("th", { scope: "row" }, swatch(model), ` ${model}`),
          ...columns.map((reviewer) => h("td", { class: `num${model === reviewer ? " is-diagonal" : ""}`, dataset: { reviewer }, text: fmtInt(count(model, reviewer)) })),
        ),
      ),
    ),
  );
}

function init() {
  initPage();
  const params = new URLSearchParams(window.location.search);
  if (params.has("start_date") || params.has("end_date") || params.has("all")) {
    setWindow({ start_date: params.get("start_date") || "", end_date: params.get("end_date") || "" });
  } else {
    setWindow(windowOf(30));
  }
  for (const name of [...TRACE_NAMES, "group_by"]) form.elements[name].value = params.get(name) || "";
  form.elements.group_by.addEventListener("change", () => form.requestSubmit());
  for (const button of $$("[data-days]", form)) {
    button.addEventListener("click", () => {
      setWindow(windowOf(Number(button.dataset.days)));
      load();
    });
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  load();
}

init();
