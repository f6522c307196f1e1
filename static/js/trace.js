// Traceability metadata (lot, wafer, tool, recipe, layer, operator) and review
// dispositions: shared by the Analyse, History, Result, Batch and Statistics pages.
import { h } from "./dom.js";

export const TRACE_FIELDS = [
  ["lot_id", "Lot"],
  ["wafer_id", "Wafer"],
  ["tool_id", "Tool"],
  ["recipe", "Recipe"],
  ["layer", "Layer"],
  ["operator", "Operator"],
];
export const TRACE_NAMES = TRACE_FIELDS.map(([name]) => name);

export const DISPOSITIONS = {
  unreviewed: { label: "Unreviewed", key: "U" },
  true_defect: { label: "True defect", key: "T" },
  false_call: { label: "False call", key: "F" },
  nuisance: { label: "Nuisance", key: "N" },
};

/** A small chip for a region's disposition. */
export function dispositionChip(disposition) {
  const info = DISPOSITIONS[disposition] || DISPOSITIONS.unreviewed;
  return h("span", { class: `disposition disposition-${disposition || "unreviewed"}`, text: info.label });
}

/** "Lot L1 · Wafer W07 · Tool AOI-3" for the values present, or "". */
export function traceText(item) {
  return TRACE_FIELDS.filter(([name]) => item && item[name])
    .map(([name, label]) => `${label} ${item[name]}`)
    .join(" · ");
}

/** A definition list of the values present (null when none is). */
export function traceList(item) {
  const rows = TRACE_FIELDS.filter(([name]) => item && item[name]);
  if (!rows.length) return null;
  return h(
    "dl",
    { class: "trace-list" },
    ...rows.map(([name, label]) => h("div", { dataset: { field: name } }, h("dt", { text: label }), h("dd", { text: item[name] }))),
  );
}

/** The values of a form's traceability inputs that are filled in. */
export function traceValues(form) {
  const values = {};
  for (const name of TRACE_NAMES) {
    const field = form.elements[name];
    const value = field ? field.value.trim() : "";
    if (value) values[name] = value;
  }
  return values;
}

export const pct = (rate) => (rate === null || rate === undefined ? "–" : `${(100 * rate).toFixed(1)}%`);
