// Pagination bar: « Prev 1 … 4 5 [6] 7 8 … 20 Next ».
import { h, icon } from "./dom.js";

function pageList(page, pages) {
  const wanted = new Set([1, pages, page - 2, page - 1, page, page + 1, page + 2]);
  const list = [...wanted].filter((p) => p >= 1 && p <= pages).sort((a, b) => a - b);
  const out = [];
  list.forEach((p, i) => {
    if (i && p - list[i - 1] > 1) out.push(null);
    out.push(p);
  });
  return out;
}

/** Fill nav with page buttons; onPage(n) is called when one is chosen. */
export function renderPager(nav, { page, pages, total, total_is_lower_bound }, onPage) {
  const current = Number(page) || 1;
  const count = Math.max(1, Number(pages) || 1);
  const more = total_is_lower_bound ? "+" : ""; // the API counted only up to a bound
  nav.hidden = !total || count <= 1;
  const button = (label, target, attrs = {}) => {
    const el = h("button", { type: "button", class: "page-button", dataset: { page: String(target) }, ...attrs }, ...[label].flat());
    el.addEventListener("click", () => onPage(target));
    return el;
  };
  const items = [button([icon("left"), " Prev"], current - 1, { disabled: current <= 1, "aria-label": "Previous page", dataset: { page: String(current - 1), role: "prev" } })];
  for (const p of pageList(current, count)) {
    if (p === null) items.push(h("span", { class: "page-gap", text: "…" }));
    else items.push(button(String(p), p, p === current ? { "aria-current": "page", class: "page-button is-current" } : {}));
  }
  items.push(button(["Next ", icon("right")], current + 1, { disabled: current >= count && !more, "aria-label": "Next page", dataset: { page: String(current + 1), role: "next" } }));
  items.push(h("span", { class: "page-info", text: `Page ${current} of ${count}${more}` }));
  nav.replaceChildren(...items);
}
