// Analyse page: system status, single/batch upload with client-side checks,
// inline single result (stats, legend in true mask colours, viewer) and a live
// batch monitor driven by the async batch API.
import { get, upload } from "./api.js";
import { BatchMonitor, statusFromSubmit } from "./batchview.js";
import { legend } from "./classes.js";
import { banner, errorText, health, initPage, modelState } from "./common.js";
import { $, $$, clear, fmtBytes, fmtDateTime, fmtInt, fmtSeconds, h, icon, plural, resultUrl, reveal, setText, show } from "./dom.js";
import { classRows, downloadLinks } from "./resultview.js";
import { traceText, traceValues } from "./trace.js";
import { Viewer } from "./viewer.js";

const EXTENSIONS = {
  jpeg: [".jpg", ".jpeg", ".jpe"],
  png: [".png"],
  tiff: [".tif", ".tiff"],
  bmp: [".bmp", ".dib"],
};
const MIME_TYPES = {
  jpeg: ["image/jpeg", "image/pjpeg"],
  png: ["image/png"],
  tiff: ["image/tiff"],
  bmp: ["image/bmp", "image/x-ms-bmp", "image/x-bmp"],
};
const MB = 1024 * 1024;

const state = {
  mode: "single",
  files: [],
  busy: false,
  limits: { maxMb: 50, maxFiles: 500, formats: ["jpeg", "png", "tiff", "bmp"] },
};

let viewer = null;
let monitor = null;

// ---- system status ----------------------------------------------------------

async function loadStatus(refresh = false) {
  const dot = $("#st-dot");
  dot.className = "dot dot-unknown";
  setText("st-state", "checking…");
  try {
    const body = await health(refresh);
    const model = body.model_service || {};
    const limits = body.limits || {};
    const ok = modelState(body);
    dot.className = `dot ${ok.ok ? "dot-up" : "dot-down"}`;
    setText("st-state", ok.text);
    $("#st-sim").hidden = !model.simulator;
    setText("st-model", model.model_name || model.current_model || "unknown");
    setText("st-device", model.device ? String(model.device).toUpperCase() : "unknown");
    if (limits.max_upload_mb) state.limits.maxMb = Number(limits.max_upload_mb);
    if (limits.max_batch_files) state.limits.maxFiles = Number(limits.max_batch_files);
    if (Array.isArray(limits.supported_formats) && limits.supported_formats.length) {
      state.limits.formats = limits.supported_formats.map((f) => String(f).toLowerCase());
    }
    setText("st-formats", state.limits.formats.map((f) => f.toUpperCase()).join(", "));
    setText("st-size", `${state.limits.maxMb} MB per file`);
    setText("st-batch", fmtInt(state.limits.maxFiles));
    updateHint();
    if (!ok.ok) banner("warning", `${ok.text}: analysis is unavailable until it is back; history still works.`);
  } catch (error) {
    dot.className = "dot dot-down";
    setText("st-state", `Status unavailable: ${errorText(error)}`);
  }
}

function updateHint() {
  const formats = state.limits.formats.map((f) => f.toUpperCase()).join(", ");
  const batch = state.mode === "batch" ? ` · up to ${fmtInt(state.limits.maxFiles)} files` : "";
  setText("drop-hint", `${formats} · up to ${state.limits.maxMb} MB per file${batch}`);
  setText(
    "drop-title",
    state.mode === "batch"
      ? "Drop AOI images here or click to choose several"
      : "Drop an AOI image here or click to choose",
  );
  const accept = state.limits.formats.flatMap((f) => [...(EXTENSIONS[f] || []), ...(MIME_TYPES[f] || [])]);
  $("#file-input").setAttribute("accept", accept.join(","));
}

// ---- choosing files ---------------------------------------------------------

/** Why a file cannot be sent, or null. Type by extension or MIME type; the server checks content. */
function problemWith(file) {
  const name = file.name.toLowerCase();
  const dot = name.lastIndexOf(".");
  const extension = dot >= 0 ? name.slice(dot) : "";
  const extOk = state.limits.formats.some((f) => (EXTENSIONS[f] || []).includes(extension));
  const mimeOk = state.limits.formats.some((f) => (MIME_TYPES[f] || []).includes(file.type));
  if (!extOk && !mimeOk) return "not a JPEG, PNG, TIFF or BMP image";
  if (file.size === 0) return "the file is empty";
  if (file.size > state.limits.maxMb * MB) return `larger than ${state.limits.maxMb} MB (${fmtBytes(file.size)})`;
  return null;
}

function addFiles(list) {
  const incoming = Array.from(list || []);
  if (!incoming.length) return;
  const rejected = [];
  const accepted = [];
  for (const file of incoming) {
    const problem = problemWith(file);
    if (problem) rejected.push(`${file.name}: ${problem}`);
    else accepted.push(file);
  }
  if (state.mode === "single") {
    if (accepted.length) state.files = [accepted[0]];
    if (accepted.length > 1) rejected.push(`${accepted.length - 1} more file(s) ignored: single mode takes one image (switch to Batch)`);
  } else {
    const known = new Set(state.files.map((f) => `${f.name}|${f.size}|${f.lastModified}`));
    for (const file of accepted) {
      const key = `${file.name}|${file.size}|${file.lastModified}`;
      if (known.has(key)) continue;
      if (state.files.length >= state.limits.maxFiles) {
        rejected.push(`${file.name}: a batch holds at most ${state.limits.maxFiles} files`);
        continue;
      }
      known.add(key);
      state.files.push(file);
    }
  }
  if (rejected.length) {
    banner("error", `Not added — ${rejected.slice(0, 5).join("; ")}${rejected.length > 5 ? ` (and ${rejected.length - 5} more)` : ""}`);
  }
  renderFiles();
}

function renderFiles() {
  const list = $("#file-items");
  clear(list);
  state.files.forEach((file, index) => {
    const remove = h("button", { type: "button", class: "icon-button", title: "Remove this file" }, icon("close"), h("span", { class: "sr-only", text: "Remove" }));
    remove.addEventListener("click", () => {
      state.files.splice(index, 1);
      renderFiles();
    });
    list.append(
      h("li", {}, icon("file"), h("span", { class: "filename", text: file.name, title: file.name }), h("span", { class: "muted", text: fmtBytes(file.size) }), remove),
    );
  });
  const total = state.files.reduce((sum, f) => sum + f.size, 0);
  setText("file-count", plural(state.files.length, "file"));
  setText("file-total", state.files.length ? `total ${fmtBytes(total)}` : "");
  show("file-list", state.files.length > 0);
  $("#analyse-button").disabled = state.busy || state.files.length === 0;
}

function setMode(mode) {
  state.mode = mode;
  for (const button of $$(".mode[data-mode]")) {
    button.setAttribute("aria-checked", String(button.dataset.mode === mode));
  }
  $("#file-input").multiple = mode === "batch";
  if (mode === "single" && state.files.length > 1) state.files = state.files.slice(0, 1);
  updateHint();
  renderFiles();
}

function clearAll() {
  if (state.busy) return;
  state.files = [];
  $("#file-input").value = "";
  renderFiles();
  show("single-result", false);
  show("batch-result", false);
  if (monitor) monitor.stop();
  banner("info", "Cleared.");
}

// ---- loading panel ----------------------------------------------------------

function loading(title, detail = "") {
  show("loading", true);
  setText("loading-title", title);
  setText("loading-detail", detail);
}

function uploadProgress(loaded, total) {
  show("upload-meter", true);
  const percent = total ? Math.round((100 * loaded) / total) : 0;
  $("#upload-meter-fill").style.width = `${percent}%`;
  setText("loading-detail", `Uploading… ${percent}% of ${fmtBytes(total)}`);
}

function doneLoading() {
  show("loading", false);
  show("upload-meter", false);
  $("#upload-meter-fill").style.width = "0%";
}

/** The traceability values filled in on the page go with the upload. */
function appendTrace(form) {
  for (const [name, value] of Object.entries(traceValues($("#upload-trace")))) form.append(name, value);
}

// ---- single image -----------------------------------------------------------

async function runSingle(file) {
  const form = new FormData();
  form.append("image", file, file.name);
  appendTrace(form);
  loading(`Analysing ${file.name}`, "Uploading…");
  show("batch-result", false);
  const { data } = await upload("/upload", form, {
    onProgress: uploadProgress,
    onSent: () => setText("loading-detail", "Uploaded; the model service is analysing the image…"),
  });
  setText("loading-detail", "Done, rendering…");
  renderSingle(data);
  banner("success", `${data.filename}: ${plural(data.total_defects, "defect")} found in ${fmtSeconds(data.processing_time_seconds)}.`);
}

function renderSingle(result) {
  show("single-result", true);
  const panel = $("#single-result");
  panel.dataset.imgId = result.img_unique_id;
  setText("single-name", result.filename);
  setText("single-total", fmtInt(result.total_defects));
  setText("single-time", fmtSeconds(result.processing_time_seconds));
  setText("single-size", `${fmtInt(result.image_width)} × ${fmtInt(result.image_height)}`);
  setText("single-when", fmtDateTime(result.timestamp));
  const trace = traceText(result);
  setText("single-model", `Model: ${result.model || "unknown"} · id ${result.img_unique_id}${trace ? ` · ${trace}` : ""}`);
  $("#single-detail-link").setAttribute("href", resultUrl(result.img_unique_id));
  $("#single-legend").replaceChildren(legend(classRows(result)));
  $("#single-downloads").replaceChildren(...downloadLinks(result.images, result.json_url));
  viewer.setSources(
    result.images || {},
    { width: result.image_width, height: result.image_height },
    { refresh: async () => (await get(`/images/${encodeURIComponent(result.img_unique_id)}`)).images },
  );
  viewer.show("overlay");
  reveal(panel, "start");
}

// ---- batch ------------------------------------------------------------------

async function runBatch(files) {
  const form = new FormData();
  for (const file of files) form.append("images", file, file.name);
  form.append("async", "true");
  appendTrace(form);
  loading(`Sending ${plural(files.length, "file")}`, "Uploading…");
  show("single-result", false);
  const { status, data } = await upload("/upload/batch", form, {
    query: { async: "true" },
    onProgress: uploadProgress,
    onSent: () => setText("loading-detail", "Uploaded; the agent is storing the files…"),
  });
  show("batch-result", true);
  const initial = statusFromSubmit(data);
  // The batch is on the server now; an empty selection prevents sending it twice.
  state.files = [];
  if (status === 202 || data.status_url) {
    monitor.start(data.batch_id, initial);
    banner("info", `Batch ${data.batch_id} accepted: ${plural(initial.total_images, "file")} queued.`);
  } else {
    // An agent without async batches answers once everything is done.
    monitor.stop();
    monitor.render(initial);
    finishedBanner(initial);
  }
  reveal($("#batch-result"), "start");
}

function finishedBanner(status) {
  const failed = Number(status.failed || 0);
  const text = `Batch finished: ${plural(status.processed, "image")} analysed, ${fmtInt(failed)} failed.`;
  banner(failed ? "warning" : "success", text);
}

// ---- wiring -----------------------------------------------------------------

async function analyse() {
  if (state.busy || !state.files.length) return;
  state.busy = true;
  renderFiles();
  try {
    if (state.mode === "single") await runSingle(state.files[0]);
    else await runBatch(state.files.slice());
  } catch (error) {
    banner("error", `Analysis failed: ${errorText(error)}`);
  } finally {
    state.busy = false;
    doneLoading();
    renderFiles();
  }
}

function bindDropZone() {
  const zone = $("#drop-zone");
  const input = $("#file-input");
  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = "";
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("is-over");
    });
  }
  for (const type of ["dragleave", "dragend"]) zone.addEventListener(type, () => zone.classList.remove("is-over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("is-over");
    addFiles(event.dataTransfer && event.dataTransfer.files);
  });
}

function init() {
  initPage();
  viewer = new Viewer($("#single-viewer"));
  monitor = new BatchMonitor($("#batch-monitor"), { showPageLink: true, onFinish: finishedBanner });
  bindDropZone();
  for (const button of $$(".mode[data-mode]")) button.addEventListener("click", () => setMode(button.dataset.mode));
  $("#analyse-button").addEventListener("click", analyse);
  $("#clear-button").addEventListener("click", clearAll);
  $("#status-refresh").addEventListener("click", () => loadStatus(true));
  document.addEventListener("keydown", (event) => {
    if (document.querySelector("dialog[open]")) return;
    if (event.ctrlKey && event.key === "Enter") {
      event.preventDefault();
      analyse();
    } else if (event.ctrlKey && event.key === "Delete") {
      event.preventDefault();
      clearAll();
    }
  });
  setMode("single");
  loadStatus();
}

init();
