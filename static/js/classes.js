// The four defect classes and their TRUE mask colours (RGB, as the model's
// mask.png draws them; the reference UI listed them in BGR by mistake).
import { fmtInt, h } from "./dom.js";

export const CLASSES = [
  { id: 1, name: "PI_Particle", rgb: [255, 0, 0] },
  { id: 2, name: "PR_Peeling", rgb: [0, 255, 0] },
  { id: 3, name: "Copper_Nodule", rgb: [0, 0, 255] },
  { id: 4, name: "Env_Particle", rgb: [255, 255, 0] },
];

/** Accepts "PI_Particle" or the model's key "1_PI_Particle". */
export function classInfo(name) {
  const bare = String(name || "").replace(/^\d+_/, "");
  return CLASSES.find((c) => c.name === bare) || { id: 0, name: bare, rgb: [128, 128, 128] };
}

export const rgbCss = ([r, g, b]) => `rgb(${r}, ${g}, ${b})`;

/** The class whose mask colour is exactly this pixel, if any. */
export function classOfColour(r, g, b) {
  return CLASSES.find((c) => c.rgb[0] === r && c.rgb[1] === g && c.rgb[2] === b) || null;
}

export function swatch(name) {
  const info = classInfo(name);
  return h("span", {
    class: "swatch",
    title: `${info.name}: ${rgbCss(info.rgb)}`,
    dataset: { className: info.name },
    style: { backgroundColor: rgbCss(info.rgb) },
  });
}

/**
 * Legend rows for every class: swatch, name, region count, area.
 * rows: [{class_name, total_regions, total_area_pixels}] (missing classes count 0).
 */
export function legend(rows) {
  const byName = new Map((rows || []).map((row) => [classInfo(row.class_name).name, row]));
  const list = h("ul", { class: "legend-list" });
  for (const info of CLASSES) {
    const row = byName.get(info.name) || {};
    const count = Number(row.total_regions || 0);
    list.append(
      h(
        "li",
        { class: count ? "legend-row" : "legend-row is-empty", dataset: { className: info.name } },
        swatch(info.name),
        h("span", { class: "legend-name", text: info.name }),
        h("span", { class: "legend-count", text: `${fmtInt(count)} ${count === 1 ? "region" : "regions"}` }),
        h("span", { class: "legend-area", text: `${fmtInt(row.total_area_pixels || 0)} px²` }),
      ),
    );
  }
  return list;
}

/** Class rows from the model's analysis_results.classes ({"1_PI_Particle": {...}}). */
export function rowsFromAnalysis(analysis) {
  const classes = (analysis && analysis.classes) || {};
  return Object.entries(classes).map(([key, item]) => ({
    class_name: classInfo(key).name,
    total_regions: item.total_regions,
    total_area_pixels: item.total_area_pixels,
  }));
}

/** Small coloured chips "PI_Particle 5" for galleries and tables. */
export function classChips(defectClasses) {
  const wrap = h("span", { class: "chips" });
  for (const info of CLASSES) {
    const count = defectClasses ? defectClasses[info.name] : 0;
    if (!count) continue;
    wrap.append(
      h("span", { class: "chip", title: info.name }, swatch(info.name), ` ${info.name} ${fmtInt(count)}`),
    );
  }
  return wrap;
}
