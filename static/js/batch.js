// Batch page: the live BatchMonitor for one batch id.
import { BatchMonitor } from "./batchview.js";
import { banner, initPage } from "./common.js";
import { $, fmtInt } from "./dom.js";

initPage();
const batchId = $("#batch-page").dataset.batchId;
const monitor = new BatchMonitor($("#batch-monitor"), {
  onFinish: (status) => {
    const failed = Number(status.failed || 0);
    banner(failed ? "warning" : "success", `Batch finished: ${fmtInt(status.processed)} analysed, ${fmtInt(failed)} failed.`);
  },
});
monitor.start(batchId);
