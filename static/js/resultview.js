// Pieces shared by the inline result (Analyse page) and the result page.
import { classInfo, rowsFromAnalysis } from "./classes.js";
import { h, icon } from "./dom.js";

const DOWNLOADS = [
  ["input", "Original image"],
  ["combined", "Combined PNG"],
  ["overlay", "Overlay PNG"],
  ["mask", "Mask PNG"],
];

/** Download buttons; the URLs are the API's own (they may carry a signature). */
export function downloadLinks(images, jsonUrl) {
  const links = DOWNLOADS.filter(([kind]) => images && images[kind]).map(([kind, label]) =>
    h("a", { class: "btn btn-small btn-light", href: images[kind], download: "", dataset: { kind } }, icon("download"), ` ${label}`),
  );
  if (jsonUrl) {
    links.push(h("a", { class: "btn btn-small btn-light", href: jsonUrl, download: "", dataset: { kind: "json" } }, icon("download"), " Analysis JSON"));
  }
  return links;
}

/** Legend rows of an upload answer: from analysis_results, else from defect_classes. */
export function classRows(result) {
  const rows = rowsFromAnalysis(result.analysis_results);
  if (rows.length) return rows;
  return Object.entries(result.defect_classes || {}).map(([name, count]) => ({
    class_name: classInfo(name).name,
    total_regions: count,
    total_area_pixels: null,
  }));
}
