// Result page: one stored result with stats, legend, viewer, sortable region
// table (a row outlines its region on the image) and downloads / delete.
import { del, get } from "./api.js";
import { CLASSES, classInfo, legend, swatch } from "./classes.js";
import { banner, confirmDialog, errorText, initPage } from "./common.js";
import { $, $$, appUrl, batchUrl, fmtDateTime, fmtInt, fmtNum, fmtSeconds, h, reveal, setText, show } from "./dom.js";
import { downloadLinks } from "./resultview.js";
import { ReviewMode } from "./review.js";
import { dispositionChip, traceList } from "./trace.js";
import { Viewer } from "./viewer.js";

const page = $("#result-page");
const imgId = page.dataset.imgId;
const viewer = new Viewer($("#result-viewer"));

const table = {
  rows: [],
  sortKey: "class_name",
  sortDir: 1,
  filter: "",
  selected: null,
};

const SORTERS = {
  class_name: (row) => classInfo(row.class_name).id * 1e7 + row.region_id,
  region_id: (row) => row.region_id,
  cx: (row) => row.cx,
  bx: (row) => row.box.x,
  area_pixels: (row) => row.area_pixels,
  perimeter: (row) => row.perimeter,
  circularity: (row) => row.circularity,
  aspect_ratio: (row) => row.aspect_ratio,
  disposition: (row) => ["unreviewed", "true_defect", "nuisance", "false_call"].indexOf(row.review.disposition),
};

async function load() {
  let image;
  let regions;
  try {
    [image, regions] = await Promise.all([
      get(`/images/${encodeURIComponent(imgId)}`),
      get(`/images/${encodeURIComponent(imgId)}/regions`),
    ]);
  } catch (error) {
    show("result-loading", false);
    show("result-missing", true);
    page.dataset.state = error.status === 404 ? "missing" : "error";
    setText(
      "result-missing-text",
      error.status === 404
        ? `There is no stored result with id ${imgId}. It may have been deleted.`
        : `The result could not be loaded: ${errorText(error)}`,
    );
    return;
  }
  show("result-loading", false);
  show("result-body", true);
  renderImage(image);
  renderRegions(regions);
  review.start(image);
  page.dataset.state = "ready";
}

function renderImage(image) {
  const name = image.filename || imgId;
  setText("result-name", name);
  document.title = `${name} · AOI Inference Agent`;
  setText("r-total", fmtInt(image.total_defects));
  setText("r-time", fmtSeconds(image.processing_time_seconds));
  setText("r-size", `${fmtInt(image.image_width)} × ${fmtInt(image.image_height)}`);
  setText("r-when", fmtDateTime(image.timestamp));
  setText("r-model", image.model || "unknown");
  const batchLine = $("#r-batch");
  if (image.batch_id) {
    batchLine.replaceChildren("Part of batch ", h("a", { href: batchUrl(image.batch_id), text: image.batch_id }));
    batchLine.hidden = false;
  }
  $("#r-legend").replaceChildren(legend(image.classes || []));
  const trace = traceList(image);
  if (trace) $("#r-trace").replaceChildren(trace);
  $("#r-downloads").replaceChildren(...downloadLinks(image.images, image.json_url));
  viewer.setSources(
    image.images || {},
    { width: image.image_width, height: image.image_height },
    { refresh: async () => (await get(`/images/${encodeURIComponent(imgId)}`)).images },
  );
  viewer.show("overlay");
}

// ---- region table -------------------------------------------------------------

function renderRegions(answer) {
  table.rows = (answer.classes || []).flatMap((cls) =>
    (cls.regions || []).map((region) => ({
      key: `${cls.class_name}-${region.region_id}`,
      id: region.region_unique_id,
      review: region.review || { disposition: "unreviewed" },
      class_name: cls.class_name,
      region_id: region.region_id,
      cx: region.centroid.x,
      cy: region.centroid.y,
      box: region.bounding_box,
      area_pixels: region.area_pixels,
      perimeter: region.perimeter,
      circularity: region.circularity,
      aspect_ratio: region.aspect_ratio,
    })),
  );
  const select = $("#regions-class");
  for (const info of CLASSES) {
    const count = table.rows.filter((row) => row.class_name === info.name).length;
    if (count) select.append(h("option", { value: info.name, text: `${info.name} (${fmtInt(count)})` }));
  }
  select.addEventListener("change", () => {
    table.filter = select.value;
    drawRows();
  });
  for (const th of $$("#regions-table th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => sortBy(th.dataset.sort));
  }
  table.sortKey = "class_name";
  drawRows();
}

function sortBy(key) {
  table.sortDir = table.sortKey === key ? -table.sortDir : 1;
  table.sortKey = key;
  drawRows();
}

function drawRows() {
  const key = SORTERS[table.sortKey] || SORTERS.class_name;
  const rows = table.rows
    .filter((row) => !table.filter || row.class_name === table.filter)
    .sort((a, b) => (key(a) - key(b)) * table.sortDir);
  for (const th of $$("#regions-table th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === table.sortKey ? (table.sortDir > 0 ? "ascending" : "descending") : "none");
  }
  table.visible = rows;
  const body = $("#regions-body");
  const fragment = document.createDocumentFragment();
  for (const row of rows) fragment.append(rowElement(row));
  body.replaceChildren(fragment);
  setText("regions-count", fmtInt(rows.length));
  show("regions-empty", table.rows.length === 0);
}

function rowElement(row) {
  const { box } = row;
  const tr = h(
    "tr",
    {
      tabindex: "0",
      class: table.selected === row.key ? "is-selected" : "",
      "aria-selected": String(table.selected === row.key),
      dataset: {
        region: row.key,
        className: row.class_name,
        regionId: String(row.region_id),
        regionUniqueId: row.id,
        disposition: row.review.disposition,
      },
    },
    h("td", {}, swatch(row.class_name), ` ${row.class_name}`),
    h("td", { class: "num", text: String(row.region_id) }),
    h("td", { class: "num", text: `${fmtNum(row.cx, 1)}, ${fmtNum(row.cy, 1)}` }),
    h("td", { class: "num", text: `${box.x}, ${box.y}, ${box.width} × ${box.height}` }),
    h("td", { class: "num", text: fmtInt(row.area_pixels) }),
    h("td", { class: "num", text: fmtNum(row.perimeter, 2) }),
    h("td", { class: "num", text: fmtNum(row.circularity, 3) }),
    h("td", { class: "num", text: fmtNum(row.aspect_ratio, 2) }),
    h("td", {}, dispositionChip(row.review.disposition), row.review.reviewer_class_name ? ` → ${row.review.reviewer_class_name}` : ""),
  );
  tr.addEventListener("click", () => select(row, tr));
  tr.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(row, tr);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = event.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) {
        next.focus();
        next.click();
      }
    }
  });
  return tr;
}

function select(row, tr) {
  table.selected = row.key;
  review.follow(row);
  for (const other of $$("#regions-body tr.is-selected")) {
    other.classList.remove("is-selected");
    other.setAttribute("aria-selected", "false");
  }
  tr.classList.add("is-selected");
  tr.setAttribute("aria-selected", "true");
  viewer.highlight(row.box, `${row.class_name} #${row.region_id}`);
  const stage = $("#result-viewer [data-role=stage]");
  const rect = stage.getBoundingClientRect();
  if (rect.bottom < 80 || rect.top > window.innerHeight - 80) {
    reveal(stage, "center");
  }
}

/** Select a row by its data, finding its table row (review mode walks the rows). */
function selectRow(row) {
  const tr = $(`#regions-body tr[data-region-unique-id="${CSS.escape(row.id)}"]`);
  if (tr) {
    select(row, tr);
    tr.scrollIntoView({ block: "nearest" });
  }
}

const review = new ReviewMode({
  imgId,
  rows: () => table.visible || [],
  allRows: () => table.rows,
  select: selectRow,
  redraw: drawRows,
  showOverlay: () => viewer.show("overlay"),
});

// ---- delete ---------------------------------------------------------------------

async function deleteResult() {
  const ok = await confirmDialog({
    title: "Delete this result?",
    text: `Result ${imgId} (${$("#result-name").textContent}) — its database rows, the input and all result images will be removed. This cannot be undone.`,
    confirm: "Delete",
  });
  if (!ok) return;
  try {
    await del(`/images/${encodeURIComponent(imgId)}`);
  } catch (error) {
    banner("error", `Delete failed: ${errorText(error)}`);
    return;
  }
  window.location.assign(`${appUrl("/history")}?deleted=${encodeURIComponent(imgId)}`);
}

initPage();
$("#r-delete").addEventListener("click", deleteResult);
load();
