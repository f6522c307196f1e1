// Image viewer: tabs (original / combined / overlay / mask), zoom (buttons,
// wheel, keys, double-click), pan by drag, fit/1:1, greyscale, a live readout
// of pixel coordinates and grey value (the image is drawn into a canvas so its
// pixels can be read), and region outlines drawn in an SVG layer on top.
import { $, $$, clear, s } from "./dom.js";
import { classOfColour } from "./classes.js";

const MIN_SCALE = 0.02;
const MAX_SCALE = 32;
const STEP = 1.25;

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.decoding = "async";
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`Could not load ${url}`));
    image.src = url;
  });
}

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

export class Viewer {
  /** root: the element made by the viewer() template macro. */
  constructor(root) {
    this.root = root;
    this.stage = $("[data-role=stage]", root);
    this.content = $("[data-role=content]", root);
    this.canvas = $("[data-role=canvas]", root);
    this.marks = $("[data-role=marks]", root);
    this.zoomLabel = $("[data-role=zoom]", root);
    this.readout = $("[data-role=readout]", root);
    this.message = $("[data-role=message]", root);
    this.note = $("[data-role=note]", root);
    this.tabs = $$(".tab[data-kind]", root);
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.sources = {};
    this.cache = new Map();
    this.size = { width: 0, height: 0 };
    this.kind = null;
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.fitted = true;
    this.readable = true;
    this.box = null;
    this.loadToken = 0;
    this.bind();
  }

  bind() {
    for (const tab of this.tabs) {
      tab.addEventListener("click", () => this.show(tab.dataset.kind));
    }
    $$("[data-act]", this.root).forEach((button) =>
      button.addEventListener("click", () => this.act(button.dataset.act)),
    );
    const stage = this.stage;
    stage.addEventListener(
      "wheel",
      (event) => {
        if (!this.kind) return;
        event.preventDefault();
        const { x, y } = this.stagePoint(event);
        this.zoomAt(Math.exp(-event.deltaY * 0.0015), x, y);
      },
      { passive: false },
    );
    stage.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      this.drag = { x: event.clientX, y: event.clientY };
      stage.setPointerCapture(event.pointerId);
      stage.classList.add("is-dragging");
    });
    stage.addEventListener("pointermove", (event) => {
      if (this.drag) {
        this.tx += event.clientX - this.drag.x;
        this.ty += event.clientY - this.drag.y;
        this.drag = { x: event.clientX, y: event.clientY };
        this.fitted = false;
        this.apply();
      }
      this.updateReadout(event);
    });
    const endDrag = () => {
      this.drag = null;
      stage.classList.remove("is-dragging");
    };
    stage.addEventListener("pointerup", endDrag);
    stage.addEventListener("pointercancel", endDrag);
    stage.addEventListener("pointerleave", () => {
      if (!this.drag) this.readout.textContent = "Move the pointer over the image";
    });
    stage.addEventListener("dblclick", (event) => {
      const { x, y } = this.stagePoint(event);
      this.zoomAt(event.shiftKey ? 1 / 2 : 2, x, y);
    });
    stage.addEventListener("keydown", (event) => this.onKey(event));
    if (window.ResizeObserver) {
      new ResizeObserver(() => {
        if (this.fitted) this.fit();
      }).observe(stage);
    }
  }

  onKey(event) {
    const pan = 60;
    const keys = {
      "+": () => this.act("zoom-in"),
      "=": () => this.act("zoom-in"),
      "-": () => this.act("zoom-out"),
      0: () => this.act("reset"),
      1: () => this.act("actual"),
      g: () => this.act("grey"),
      ArrowLeft: () => this.panBy(pan, 0),
      ArrowRight: () => this.panBy(-pan, 0),
      ArrowUp: () => this.panBy(0, pan),
      ArrowDown: () => this.panBy(0, -pan),
    };
    const handler = keys[event.key];
    if (handler && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      handler();
    }
  }

  /**
   * sources: {input, combined, overlay, mask} URLs from the API;
   * size: {width, height} of the original image.
   */
  setSources(sources, size, { refresh = null } = {}) {
    this.refresh = refresh;
    this.sources = { ...sources };
    this.size = { width: Number(size.width) || 0, height: Number(size.height) || 0 };
    this.cache.clear();
    this.kind = null;
    this.box = null;
    this.fitted = true;
  }

  act(action) {
    const { width, height } = this.stageSize();
    if (action === "zoom-in") this.zoomAt(STEP, width / 2, height / 2);
    else if (action === "zoom-out") this.zoomAt(1 / STEP, width / 2, height / 2);
    else if (action === "reset") this.fit();
    else if (action === "actual") this.zoomAt(1 / this.scale, width / 2, height / 2);
    else if (action === "grey") {
      const on = this.canvas.classList.toggle("greyscale");
      $("[data-act=grey]", this.root).setAttribute("aria-pressed", String(on));
    }
  }

  async show(kind) {
    if (!this.sources[kind] && kind !== "input") return;
    const token = ++this.loadToken;
    this.kind = kind;
    this.root.dataset.kind = kind;
    this.root.dataset.state = "loading";
    for (const tab of this.tabs) tab.setAttribute("aria-selected", String(tab.dataset.kind === kind));
    this.showMessage("Loading image…");
    let entry;
    try {
      entry = await this.source(kind);
    } catch (error) {
      if (token !== this.loadToken) return;
      this.root.dataset.state = "error";
      this.showMessage(error.message);
      return;
    }
    if (token !== this.loadToken) return;
    this.draw(entry);
    this.showMessage(null);
    this.note.hidden = !entry.note;
    this.note.textContent = entry.note || "";
    this.root.dataset.state = "ready";
  }

  /** The image for one tab; the original falls back to the left half of the combined image. */
  async source(kind) {
    if (this.cache.has(kind)) return this.cache.get(kind);
    let entry;
    try {
      const image = await this.loadFresh(kind);
      entry = { image, crop: null, note: "" };
    } catch (error) {
      if (kind !== "input" || !this.sources.combined || !this.size.width) throw error;
      // Browsers cannot show TIFF; the combined image's left half is the same input.
      const image = await this.loadFresh("combined");
      entry = {
        image,
        crop: { x: 0, y: 0, width: this.size.width, height: this.size.height },
        note: "This browser cannot display the original file's format; showing the input half of the combined image.",
      };
    }
    this.cache.set(kind, entry);
    return entry;
  }

  /**
   * Load one source; if it fails and a refresh callback was given (signed
   * URLs expire while a page stays open all shift), get fresh URLs once and retry.
   */
  async loadFresh(kind) {
    try {
      return await loadImage(this.sources[kind]);
    } catch (error) {
      if (!this.refresh) throw error;
      const fresh = await this.refresh().catch(() => null);
      if (!fresh || !fresh[kind] || fresh[kind] === this.sources[kind]) throw error;
      this.sources = { ...this.sources, ...fresh };
      return loadImage(this.sources[kind]);
    }
  }

  draw({ image, crop }) {
    const width = crop ? crop.width : image.naturalWidth;
    const height = crop ? crop.height : image.naturalHeight;
    this.canvas.width = width;
    this.canvas.height = height;
    if (crop) this.ctx.drawImage(image, crop.x, crop.y, width, height, 0, 0, width, height);
    else this.ctx.drawImage(image, 0, 0);
    try {
      this.ctx.getImageData(0, 0, 1, 1);
      this.readable = true;
    } catch {
      this.readable = false; // a cross-origin image taints the canvas
    }
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    if (this.fitted) this.fit();
    else this.apply();
  }

  showMessage(text) {
    this.message.hidden = !text;
    this.message.textContent = text || "";
  }

  stageSize() {
    return { width: this.stage.clientWidth || 1, height: this.stage.clientHeight || 1 };
  }

  stagePoint(event) {
    const rect = this.stage.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  }

  fitScale() {
    const { width, height } = this.stageSize();
    if (!this.canvas.width || !this.canvas.height) return 1;
    return Math.min(width / this.canvas.width, height / this.canvas.height);
  }

  fit() {
    const { width, height } = this.stageSize();
    this.scale = clamp(this.fitScale(), MIN_SCALE, MAX_SCALE);
    this.tx = (width - this.canvas.width * this.scale) / 2;
    this.ty = (height - this.canvas.height * this.scale) / 2;
    this.fitted = true;
    this.apply();
  }

  zoomAt(factor, x, y) {
    const scale = clamp(this.scale * factor, MIN_SCALE, MAX_SCALE);
    const ratio = scale / this.scale;
    this.tx = x - (x - this.tx) * ratio;
    this.ty = y - (y - this.ty) * ratio;
    this.scale = scale;
    this.fitted = false;
    this.apply();
  }

  panBy(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.fitted = false;
    this.apply();
  }

  apply() {
    this.content.style.transform = `translate(${this.tx}px, ${this.ty}px) scale(${this.scale})`;
    this.canvas.classList.toggle("pixelated", this.scale >= 2);
    const percent = Math.round(this.scale * 1000) / 10;
    this.zoomLabel.textContent = `${percent >= 10 ? Math.round(percent) : percent}%`;
    this.root.dataset.scale = this.scale.toFixed(4);
    this.drawMarks();
  }

  /** Image pixel under a pointer event, or null outside the image. */
  pixelAt(event) {
    const { x, y } = this.stagePoint(event);
    const ix = Math.floor((x - this.tx) / this.scale);
    const iy = Math.floor((y - this.ty) / this.scale);
    if (ix < 0 || iy < 0 || ix >= this.canvas.width || iy >= this.canvas.height) return null;
    return { x: ix, y: iy };
  }

  updateReadout(event) {
    if (!this.kind || this.root.dataset.state !== "ready") return;
    const pixel = this.pixelAt(event);
    if (!pixel) {
      this.readout.textContent = "Outside the image";
      return;
    }
    let text = `x ${pixel.x} · y ${pixel.y}`;
    if (this.kind === "combined" && this.size.width) {
      text += pixel.x >= this.size.width ? " (overlay half)" : " (input half)";
    }
    if (this.readable) {
      const [r, g, b] = this.ctx.getImageData(pixel.x, pixel.y, 1, 1).data;
      const grey = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
      text += ` · grey ${grey}`;
      if (r !== g || g !== b) {
        text += ` · RGB ${r}, ${g}, ${b}`;
        const cls = this.kind === "mask" || this.kind === "overlay" ? classOfColour(r, g, b) : null;
        if (cls) text += ` · ${cls.name}`;
      }
    } else {
      text += " · grey n/a";
    }
    this.readout.textContent = text;
  }

  /** Outline a region's bounding box ({x, y, width, height}) and centre it. */
  highlight(box, label = "") {
    this.box = box ? { ...box, label } : null;
    this.drawMarks();
    if (box) this.centreOn(box);
  }

  /** The outline lives in an untransformed layer, so its line width stays 2 px at any zoom. */
  drawMarks() {
    clear(this.marks);
    if (!this.box || !this.kind) return;
    const offsets = this.kind === "combined" && this.size.width ? [0, this.size.width] : [0];
    const pad = 3;
    for (const offset of offsets) {
      const rect = {
        x: (this.box.x + offset) * this.scale + this.tx - pad,
        y: this.box.y * this.scale + this.ty - pad,
        width: this.box.width * this.scale + 2 * pad,
        height: this.box.height * this.scale + 2 * pad,
      };
      const group = s("g", {
        class: "mark",
        "data-region": this.box.label,
        "data-box": `${this.box.x},${this.box.y},${this.box.width},${this.box.height}`,
      });
      group.append(s("rect", { ...rect, class: "mark-halo" }), s("rect", { ...rect, class: "mark-box" }));
      if (this.box.label) group.append(s("title", { text: this.box.label }));
      this.marks.append(group);
    }
  }

  centreOn(box) {
    const { width, height } = this.stageSize();
    const longest = Math.max(box.width, box.height, 1);
    const onScreen = longest * this.scale;
    const small = Math.min(width, height) * 0.08;
    const large = Math.min(width, height) * 0.8;
    let scale = this.scale;
    if (onScreen < small) scale = Math.max(scale, Math.min((Math.min(width, height) * 0.25) / longest, 8));
    else if (onScreen > large) scale = large / longest;
    this.scale = clamp(scale, MIN_SCALE, MAX_SCALE);
    this.tx = width / 2 - (box.x + box.width / 2) * this.scale;
    this.ty = height / 2 - (box.y + box.height / 2) * this.scale;
    this.fitted = false;
    this.apply();
  }
}
