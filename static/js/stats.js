// Statistics page: totals, defect Pareto by class and the daily trend for a
// chosen window (GET /stats?start_date&end_date); charts are plain SVG.
import { get } from "./api.js";
import { paretoChart, trendChart } from "./charts.js";
import { CLASSES, classInfo, rgbCss, swatch } from "./classes.js";
import { banner, errorText, initPage } from "./common.js";
import { $, $$, fmtBytes, fmtDateTime, fmtInt, fmtSeconds, h, isoDate, setText, show } from "./dom.js";

const form = $("#stats-filters");
const DAY = 86400000;

function windowOf(days) {
  if (!days) return { start_date: "", end_date: "" };
  const end = new Date();
  return { start_date: isoDate(new Date(end.getTime() - (days - 1) * DAY)), end_date: isoDate(end) };
}

function currentWindow() {
  return { start_date: form.elements.start_date.value, end_date: form.elements.end_date.value };
}

function setWindow({ start_date, end_date }) {
  form.elements.start_date.value = start_date;
  form.elements.end_date.value = end_date;
}

function remember(window_) {
  const params = new URLSearchParams();
  if (window_.start_date) params.set("start_date", window_.start_date);
  if (window_.end_date) params.set("end_date", window_.end_date);
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
}

function init() {
  initPage();
  const params = new URLSearchParams(window.location.search);
  if (params.has("start_date") || params.has("end_date") || params.has("all")) {
    setWindow({ start_date: params.get("start_date") || "", end_date: params.get("end_date") || "" });
  } else {
    setWindow(windowOf(30));
  }
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
