// Batch list page: every batch with its status and progress; refreshes itself
// while any batch on the page is still queued or running.
import { get } from "./api.js";
import { stateBadge } from "./batchview.js";
import { banner, errorText, initPage } from "./common.js";
import { $, batchUrl, fmtDateTime, fmtInt, h, setText, show } from "./dom.js";
import { renderPager } from "./pager.js";

const LIMIT = 20;
let page = Math.max(1, Number(new URLSearchParams(window.location.search).get("page")) || 1);
let timer = null;

async function load() {
  clearTimeout(timer);
  show("batches-loading", !$("#batches-body").children.length);
  let answer;
  try {
    answer = await get("/batches", { page, limit: LIMIT });
  } catch (error) {
    show("batches-loading", false);
    banner("error", `Could not load batches: ${errorText(error)}`, { sticky: true });
    return;
  }
  show("batches-loading", false);
  render(answer);
  const active = (answer.batches || []).some((b) => b.status === "queued" || b.status === "running");
  if (active) timer = setTimeout(load, 3000);
}

function progressCell(batch) {
  const total = Number(batch.total_images) || 0;
  const done = Number(batch.processed) || 0;
  const failed = Number(batch.failed) || 0;
  const doneFill = h("div", { class: "meter-fill meter-done" });
  const failedFill = h("div", { class: "meter-fill meter-failed" });
  doneFill.style.width = `${total ? (100 * done) / total : 0}%`;
  failedFill.style.width = `${total ? (100 * failed) / total : 0}%`;
  return h(
    "td",
    { class: "progress-col" },
    h("div", { class: "meter meter-thin", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(total), "aria-valuenow": String(done + failed) }, doneFill, failedFill),
    h("span", { class: "muted small", text: `${done + failed} / ${total}` }),
  );
}

function render(answer) {
  const batches = answer.batches || [];
  setText("batches-total", fmtInt(answer.total));
  show("batches-empty", batches.length === 0);
  show("batches-table", batches.length > 0);
  $("#batches-body").replaceChildren(
    ...batches.map((batch) =>
      h(
        "tr",
        { dataset: { batchId: batch.batch_id, status: batch.status } },
        h("td", {}, h("a", { href: batchUrl(batch.batch_id), class: "mono", text: batch.batch_id })),
        h("td", {}, stateBadge(batch.status)),
        h("td", { text: fmtDateTime(batch.created_at) }),
        h("td", { class: "num", text: fmtInt(batch.total_images) }),
        h("td", { class: "num", text: fmtInt(batch.processed) }),
        h("td", { class: "num", text: fmtInt(batch.failed) }),
        progressCell(batch),
      ),
    ),
  );
  renderPager($("#batches-pagination"), answer, (target) => {
    page = target;
    const url = new URL(window.location.href);
    url.searchParams.set("page", String(page));
    window.history.replaceState(null, "", url);
    load();
  });
}

initPage();
$("#batches-refresh").addEventListener("click", load);
load();
