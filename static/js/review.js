// Review mode of the result page: walk the regions one at a time (each outlined on
// the overlay), set a disposition with one key, see "12 / 31 reviewed", and go on
// to the next unreviewed image of the same lot / wafer / tool / batch / history filter.
import { get, request } from "./api.js";
import { banner, errorText } from "./common.js";
import { $, $$, resultUrl, setText } from "./dom.js";
import { DISPOSITIONS, TRACE_FIELDS, TRACE_NAMES } from "./trace.js";

const KEYS = { t: "true_defect", f: "false_call", n: "nuisance", u: "unreviewed" };
// The filters a walk can keep (the History page passes its filters in the URL).
const WALK_FIELDS = ["start_date", "end_date", "class_name", "batch_id", ...TRACE_NAMES];

function walkFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const filters = {};
  for (const name of WALK_FIELDS) if (params.get(name)) filters[name] = params.get(name);
  return filters;
}

function describe(filters) {
  const labels = Object.fromEntries([...TRACE_FIELDS, ["batch_id", "Batch"], ["class_name", "Class"], ["start_date", "From"], ["end_date", "To"]]);
  return Object.entries(filters)
    .map(([name, value]) => `${labels[name] || name} ${value}`)
    .join(", ");
}

const typing = (target) => target && (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName));

export class ReviewMode {
  /**
   * hooks.rows(): the table's rows in display order; hooks.allRows(): every row;
   * hooks.select(row): outline and select it; hooks.redraw(): redraw the table.
   */
  constructor({ imgId, rows, allRows, select, redraw, showOverlay }) {
    Object.assign(this, { imgId, rows, allRows, selectRow: select, redraw, showOverlay });
    this.active = false;
    this.current = null;
    this.saving = Promise.resolve();
    this.image = null;
    this.bar = $("#review-bar");
    this.scope = $("#review-scope");
    $("#review-toggle").addEventListener("click", () => (this.active ? this.stop() : this.begin()));
    $("#review-prev").addEventListener("click", () => this.step(-1));
    $("#review-next").addEventListener("click", () => this.step(1));
    $("#review-mark").addEventListener("click", () => this.mark(!this.image.reviewed_at));
    $("#review-next-image").addEventListener("click", () => this.nextImage());
    for (const button of $$("[data-disposition]", this.bar)) {
      button.addEventListener("click", () => this.decide(button.dataset.disposition));
    }
    document.addEventListener("keydown", (event) => this.onKey(event));
  }

  /** The result is loaded: show progress and the walk scopes; ?review=1 starts review. */
  start(image) {
    this.image = image;
    this.buildScopes();
    this.updateProgress();
    this.updateMark();
    if (new URLSearchParams(window.location.search).get("review") === "1") this.begin();
  }

  buildScopes() {
    const options = [];
    const fromUrl = walkFromUrl();
    if (Object.keys(fromUrl).length) options.push(["url", `History filter (${describe(fromUrl)})`, fromUrl]);
    for (const [name, label] of [["lot_id", "lot"], ["wafer_id", "wafer"], ["tool_id", "tool"], ["batch_id", "batch"]]) {
      if (this.image[name]) options.push([name, `This ${label} (${this.image[name]})`, { [name]: this.image[name] }]);
    }
    options.push(["all", "All images", {}]);
    this.scopes = new Map(options.map(([key, , filters]) => [key, filters]));
    this.scope.replaceChildren(...options.map(([key, label]) => new Option(label, key)));
  }

  begin() {
    this.active = true;
    this.bar.dataset.active = "true";
    $("#review-body").hidden = false;
    $("#review-toggle span").textContent = "Leave review";
    this.showOverlay();
    const rows = this.rows();
    const first = rows.find((row) => row.review.disposition === "unreviewed") || rows[0];
    if (first) this.go(first);
    else setText("review-current", "This image has no regions. Mark it reviewed, or go on to the next image.");
  }

  stop() {
    this.active = false;
    this.bar.dataset.active = "false";
    $("#review-body").hidden = true;
    $("#review-toggle span").textContent = "Start review";
  }

  go(row) {
    this.selectRow(row); // calls follow(row) through the table
  }

  /** The table selected a row (by click or by review): make it the current one. */
  follow(row) {
    this.current = row;
    const rows = this.rows();
    const index = rows.indexOf(row);
    const verdict = DISPOSITIONS[row.review.disposition] || DISPOSITIONS.unreviewed;
    const corrected = row.review.reviewer_class_name ? ` → ${row.review.reviewer_class_name}` : "";
    setText("review-current", `Region ${index + 1} of ${rows.length}: ${row.class_name} #${row.region_id} · ${verdict.label}${corrected}`);
    this.bar.dataset.region = row.id;
    $("#review-class").value = row.review.reviewer_class_name || "";
    $("#review-comment").value = row.review.comment || "";
  }

  step(delta) {
    const rows = this.rows();
    if (!rows.length) return;
    const index = rows.indexOf(this.current);
    const next = rows[Math.min(rows.length - 1, Math.max(0, index + delta))];
    if (next) this.go(next);
  }

  /** Set the current region's disposition and move on at once; the saves run one
   * after another in the background (keys can come faster than answers). */
  decide(disposition) {
    const row = this.current;
    if (!row) return;
    const corrected = $("#review-class").value || null;
    const body = {
      disposition,
      reviewer_class_name: ["true_defect", "nuisance"].includes(disposition) ? corrected : null,
      comment: $("#review-comment").value.trim() || null,
    };
    const before = row.review;
    row.review = { ...before, ...body };
    this.refresh(row);
    const rows = this.rows();
    const index = rows.indexOf(row);
    this.go(index >= 0 && index < rows.length - 1 ? rows[index + 1] : row);
    this.saving = this.saving.then(() => this.save(row, body, before));
  }

  async save(row, body, before) {
    const path = `/images/${encodeURIComponent(this.imgId)}/regions/${encodeURIComponent(row.id)}`;
    try {
      const answer = await request(path, { method: "PATCH", json: body });
      row.review = answer.review;
    } catch (error) {
      row.review = before;
      banner("error", `The disposition of ${row.class_name} #${row.region_id} was not saved: ${errorText(error)}`);
    }
    this.refresh(row);
  }

  refresh(row) {
    this.redraw();
    this.updateProgress();
    if (this.current === row) this.follow(row);
  }

  updateProgress() {
    const rows = this.allRows();
    const done = rows.filter((row) => row.review.disposition !== "unreviewed").length;
    setText("review-progress", `${done} / ${rows.length} reviewed`);
    $("#review-meter").style.width = `${rows.length ? (100 * done) / rows.length : 100}%`;
    this.bar.dataset.reviewed = String(done);
    this.bar.dataset.total = String(rows.length);
  }

  updateMark() {
    const marked = Boolean(this.image.reviewed_at);
    $("#review-mark span").textContent = marked ? "Clear reviewed mark" : "Mark image reviewed";
    const note = $("#r-reviewed");
    note.hidden = !marked;
    note.textContent = marked ? `Reviewed by ${this.image.reviewed_by} at ${this.image.reviewed_at}` : "";
    this.bar.dataset.marked = String(marked);
  }

  async mark(reviewed) {
    try {
      const answer = await request(`/images/${encodeURIComponent(this.imgId)}/review`, { method: "POST", json: { reviewed } });
      this.image.reviewed_at = answer.reviewed_at;
      this.image.reviewed_by = answer.reviewed_by;
    } catch (error) {
      banner("error", `The image could not be marked: ${errorText(error)}`);
      return false;
    }
    this.updateMark();
    return true;
  }

  /** Mark this image reviewed when every region has a disposition, then open the
   * oldest image of the chosen scope that is not marked reviewed. */
  async nextImage() {
    await this.saving;
    const rows = this.allRows();
    const allDone = rows.every((row) => row.review.disposition !== "unreviewed");
    if (allDone && !this.image.reviewed_at && !(await this.mark(true))) return;
    const filters = this.scopes.get(this.scope.value) || {};
    let answer;
    try {
      answer = await get("/images", { ...filters, reviewed: "false", sort: "oldest", limit: 2 });
    } catch (error) {
      banner("error", `Could not find the next image: ${errorText(error)}`);
      return;
    }
    const next = (answer.images || []).find((item) => item.img_unique_id !== this.imgId);
    if (!next) {
      banner("success", `No unreviewed images left in: ${this.scope.selectedOptions[0].textContent}.`, { sticky: true });
      return;
    }
    const params = new URLSearchParams({ review: "1", ...filters });
    window.location.assign(`${resultUrl(next.img_unique_id)}?${params}`);
  }

  onKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key.toLowerCase();
    if (!this.active) {
      if (key === "r" && this.image) {
        event.preventDefault();
        this.begin();
      }
      return;
    }
    if (key === "escape") this.stop();
    else if (key === "j" && event.shiftKey) this.nextImage();
    else if (key === "j") this.step(1);
    else if (key === "k") this.step(-1);
    else if (KEYS[key]) this.decide(KEYS[key]);
    else return;
    event.preventDefault();
  }
}
