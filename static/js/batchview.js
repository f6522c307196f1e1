// Live view of one batch (used by the Analyse page in batch mode and by the
// batch page): polls GET /batches/{id} and fills in a real per-file progress
// bar "n / N", per-file rows, retry of failed files and the ZIP link.
import { get, post } from "./api.js";
import { banner, errorText } from "./common.js";
import { appUrl, batchUrl, clear, fmtDateTime, fmtInt, fmtSeconds, h, icon, resultUrl } from "./dom.js";
import { traceText } from "./trace.js";

const TERMINAL = new Set(["done", "partial", "failed"]);
const STATE_LABELS = {
  queued: "Queued",
  processing: "Processing",
  running: "Running",
  done: "Done",
  partial: "Partly failed",
  failed: "Failed",
};

function statCard(label, iconName, tone) {
  const value = h("div", { class: "stat-value", text: "–" });
  const card = h(
    "div",
    { class: `stat-card tone-${tone}` },
    h("div", { class: "stat-icon" }, icon(iconName)),
    h("div", { class: "stat-body" }, value, h("div", { class: "stat-label", text: label })),
  );
  return { card, value };
}

export function stateBadge(state) {
  return h("span", {
    class: `state state-${state || "unknown"}`,
    text: STATE_LABELS[state] || state || "unknown",
  });
}

/** A 202 answer of POST /upload/batch (or a synchronous 200 answer) as a batch status. */
export function statusFromSubmit(body) {
  const files = (body.results || []).map((item, index) => {
    const failed = item.success === false || item.state === "failed";
    const done = !failed && (item.state === "done" || Boolean(item.img_unique_id));
    return {
      file_index: item.file_index ?? index,
      filename: item.filename,
      state: item.state || (failed ? "failed" : done ? "done" : "queued"),
      img_unique_id: item.img_unique_id || null,
      total_defects: item.total_defects ?? null,
      processing_time_seconds: item.processing_time_seconds ?? null,
      error: item.error || null,
      code: item.code || null,
      retryable: Boolean(item.retryable),
    };
  });
  const count = (state) => files.filter((f) => f.state === state).length;
  const finished = count("done") + count("failed");
  const total = body.total_images ?? files.length;
  return {
    batch_id: body.batch_id,
    status: body.status || (finished === total ? (count("failed") ? "partial" : "done") : "queued"),
    created_at: body.created_at || null,
    finished_at: null,
    total_images: total,
    processed: body.processed ?? count("done"),
    failed: body.failed ?? count("failed"),
    percent_done: total ? (100 * finished) / total : 100,
    total_processing_time: body.total_processing_time ?? null,
    download_url: body.download_url || null,
    files,
  };
}

export class BatchMonitor {
  /** container: an empty element; options.showPageLink adds a link to the batch page. */
  constructor(container, { showPageLink = false, onFinish = null } = {}) {
    this.container = container;
    this.showPageLink = showPageLink;
    this.onFinish = onFinish;
    this.timer = null;
    this.rows = new Map();
    this.delay = 700;
    this.build();
  }

  build() {
    clear(this.container);
    this.idText = h("code", { class: "id-chip", text: "" });
    this.statusSlot = h("span", { class: "status-slot" });
    this.times = h("span", { class: "muted small" });
    this.pageLink = h("a", { class: "btn btn-small btn-secondary push-right", hidden: true }, icon("open"), " Batch page");
    const head = h("div", { class: "batch-head" }, h("span", { text: "Batch" }), this.idText, this.statusSlot, this.times, this.pageLink);
    this.traceLine = h("p", { class: "muted small batch-trace", "data-role": "trace", hidden: true });

    this.cards = {
      total: statCard("Images", "image", "secondary"),
      done: statCard("Succeeded", "check", "success"),
      failed: statCard("Failed", "alert", "danger"),
      time: statCard("Total processing time", "clock", "info"),
    };
    const grid = h("div", { class: "stat-grid" }, ...Object.values(this.cards).map((c) => c.card));

    this.progressText = h("span", { class: "progress-text", "data-role": "progress-text", text: "0 / 0" });
    this.progressPercent = h("span", { class: "muted", text: "" });
    this.fillDone = h("div", { class: "meter-fill meter-done" });
    this.fillFailed = h("div", { class: "meter-fill meter-failed" });
    this.meter = h(
      "div",
      { class: "meter", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "0", "aria-valuenow": "0", "aria-label": "Files finished" },
      this.fillDone,
      this.fillFailed,
    );
    const progress = h(
      "div",
      { class: "batch-progress" },
      h("div", { class: "progress-line" }, h("strong", { text: "Progress " }), this.progressText, h("span", { text: " files " }), this.progressPercent),
      this.meter,
    );
    this.pollNote = h("p", { class: "muted small poll-note", hidden: true });

    this.retryButton = h("button", { type: "button", class: "btn btn-warning", hidden: true }, icon("retry"), " Retry failed files");
    this.retryButton.addEventListener("click", () => this.retry());
    this.zipLink = h("a", { class: "btn btn-success is-disabled", "aria-disabled": "true", "data-role": "zip" }, icon("archive"), " Download all (ZIP)");
    this.historyLink = h("a", { class: "btn btn-light" }, icon("history"), " Show in history");
    this.reviewLink = h("a", { class: "btn btn-light", "data-role": "review" }, icon("check"), " Review unreviewed");
    const actions = h("div", { class: "actions" }, this.zipLink, this.retryButton, this.historyLink, this.reviewLink);

    this.body = h("tbody");
    const table = h(
      "table",
      { class: "data-table batch-files" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col", class: "num", text: "#" }),
          h("th", { scope: "col", text: "File" }),
          h("th", { scope: "col", text: "State" }),
          h("th", { scope: "col", class: "num", text: "Defects" }),
          h("th", { scope: "col", class: "num", text: "Time" }),
          h("th", { scope: "col", text: "Result" }),
        ),
      ),
      this.body,
    );
    this.container.append(head, this.traceLine, grid, progress, this.pollNote, actions, h("div", { class: "table-wrap" }, table));
  }

  /** Show what is known now (e.g. the 202 answer), then poll until the batch ends. */
  start(batchId, initial = null) {
    this.stop();
    this.batchId = batchId;
    this.finished = false;
    this.delay = 700;
    if (initial) this.render(initial);
    else this.idText.textContent = batchId;
    this.poll();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  async poll() {
    let status;
    try {
      status = await get(`/batches/${encodeURIComponent(this.batchId)}`);
      this.pollNote.hidden = true;
    } catch (error) {
      if (error.status === 404) {
        this.container.dataset.state = "missing";
        this.container.replaceChildren(
          h("p", { class: "notice notice-error", "data-role": "missing", text: `Batch ${this.batchId} was not found: ${errorText(error)}` }),
        );
        return;
      }
      this.pollNote.hidden = false;
      this.pollNote.textContent = `Could not refresh the batch status (${errorText(error)}); trying again…`;
      this.delay = Math.min(this.delay * 2, 10000);
      this.timer = setTimeout(() => this.poll(), this.delay);
      return;
    }
    this.render(status);
    if (TERMINAL.has(status.status)) {
      if (!this.finished && this.onFinish) this.onFinish(status);
      this.finished = true;
      return;
    }
    this.delay = Math.min(this.delay * 1.15, 2000);
    const wait = document.hidden ? 5000 : this.delay;
    this.timer = setTimeout(() => this.poll(), wait);
  }

  render(status) {
    this.status = status;
    const total = Number(status.total_images ?? (status.files || []).length) || 0;
    const processed = Number(status.processed || 0);
    const failed = Number(status.failed || 0);
    const finished = Math.min(processed + failed, total);
    const terminal = TERMINAL.has(status.status);
    this.container.dataset.status = status.status || "";
    this.container.dataset.finished = String(finished);
    this.container.dataset.total = String(total);

    this.idText.textContent = status.batch_id || this.batchId || "";
    this.statusSlot.replaceChildren(stateBadge(status.status));
    const times = [];
    if (status.created_at) times.push(`started ${fmtDateTime(status.created_at)}`);
    if (status.finished_at) times.push(`finished ${fmtDateTime(status.finished_at)}`);
    this.times.textContent = times.join(" · ");
    if (this.showPageLink && status.batch_id) {
      this.pageLink.hidden = false;
      this.pageLink.setAttribute("href", batchUrl(status.batch_id));
    }

    this.cards.total.value.textContent = fmtInt(total);
    this.cards.done.value.textContent = fmtInt(processed);
    this.cards.failed.value.textContent = fmtInt(failed);
    this.cards.time.value.textContent = fmtSeconds(status.total_processing_time);

    this.progressText.textContent = `${finished} / ${total}`;
    const percent = total ? (100 * finished) / total : 0;
    this.progressPercent.textContent = `(${Math.round(percent)}%)`;
    this.fillDone.style.width = `${total ? (100 * processed) / total : 0}%`;
    this.fillFailed.style.width = `${total ? (100 * failed) / total : 0}%`;
    this.meter.setAttribute("aria-valuemax", String(total));
    this.meter.setAttribute("aria-valuenow", String(finished));
    this.meter.classList.toggle("is-running", !terminal);

    const zipReady = terminal && processed > 0 && status.download_url;
    this.zipLink.classList.toggle("is-disabled", !zipReady);
    this.zipLink.setAttribute("aria-disabled", String(!zipReady));
    if (zipReady) this.zipLink.setAttribute("href", status.download_url);
    else this.zipLink.removeAttribute("href");
    this.zipLink.title = zipReady ? "ZIP of every result in this batch" : "Available when the batch has finished";

    const canRetry = terminal && (status.files || []).some((f) => f.state === "failed" && f.retryable !== false);
    this.retryButton.hidden = !canRetry;
    if (status.batch_id) {
      this.historyLink.setAttribute("href", `${appUrl("/history")}?batch_id=${encodeURIComponent(status.batch_id)}`);
      this.reviewLink.setAttribute("href", `${appUrl("/history")}?batch_id=${encodeURIComponent(status.batch_id)}&reviewed=false`);
    }
    const trace = traceText(status);
    this.traceLine.hidden = !trace;
    this.traceLine.textContent = trace;

    for (const file of status.files || []) this.renderRow(file);
  }

  renderRow(file) {
    const key = String(file.file_index);
    let row = this.rows.get(key);
    if (!row) {
      row = {
        tr: h("tr", { dataset: { fileIndex: key } }),
        index: h("td", { class: "num", text: String(Number(file.file_index) + 1) }),
        name: h("td", { class: "filename" }),
        state: h("td"),
        defects: h("td", { class: "num" }),
        time: h("td", { class: "num" }),
        result: h("td", { class: "result-cell" }),
      };
      row.tr.append(row.index, row.name, row.state, row.defects, row.time, row.result);
      this.rows.set(key, row);
      // keep rows in file order
      const after = Array.from(this.rows.values())
        .map((r) => r.tr)
        .find((tr) => Number(tr.dataset.fileIndex) > Number(key));
      this.body.insertBefore(row.tr, after || null);
    }
    row.tr.dataset.state = file.state || "";
    row.name.textContent = file.filename || "";
    row.name.title = file.filename || "";
    row.state.replaceChildren(stateBadge(file.state));
    row.defects.textContent = file.total_defects === null || file.total_defects === undefined ? "–" : fmtInt(file.total_defects);
    row.time.textContent = fmtSeconds(file.processing_time_seconds);
    const parts = [];
    if (file.img_unique_id) {
      parts.push(h("a", { href: resultUrl(file.img_unique_id), class: "link-button" }, icon("open"), " View result"));
    }
    if (file.state === "failed" || file.error) {
      const text = `${file.code ? `${file.code}: ` : ""}${file.error || "failed"}`;
      parts.push(h("span", { class: "error-text", text }));
      if (file.retryable) parts.push(h("span", { class: "badge badge-light", text: "retryable" }));
    }
    row.result.replaceChildren(h("div", { class: "result-cell-inner" }, ...parts));
  }

  async retry() {
    this.retryButton.disabled = true;
    try {
      const answer = await post(`/batches/${encodeURIComponent(this.batchId)}/retry`);
      banner("info", `Retrying ${fmtInt(answer.retried)} failed file(s)…`);
      this.finished = false;
      this.start(this.batchId);
    } catch (error) {
      banner("error", `Retry failed: ${errorText(error)}`);
    } finally {
      this.retryButton.disabled = false;
    }
  }
}
