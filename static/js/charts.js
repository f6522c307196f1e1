// Plain SVG charts: a defect Pareto (bars sorted descending + cumulative %
// line) and a daily trend (images as bars, defects as a line, two axes).
import { fmtInt, s } from "./dom.js";

const COLORS = { bar: "#3498db", line: "#e74c3c", cumulative: "#2c3e50", grid: "#e3e7ea" };

/** A round axis maximum and step for values up to max (five-ish ticks). */
export function niceScale(max, ticks = 5) {
  if (!(max > 0)) return { max: 1, step: 1 };
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= raw);
  const whole = Math.max(1, Math.round(step));
  const useStep = max < ticks ? 1 : whole;
  return { max: Math.ceil(max / useStep) * useStep, step: useStep };
}

function frame(width, height, label) {
  return s("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart-svg",
    role: "img",
    "aria-label": label,
    preserveAspectRatio: "xMidYMid meet",
  });
}

function emptyChart(width, height, text) {
  const svg = frame(width, height, text);
  svg.append(s("text", { x: width / 2, y: height / 2, class: "chart-empty", "text-anchor": "middle", text }));
  return svg;
}

/**
 * rows: [{name, value, color}] (any order; sorted here, largest first).
 * Returns an <svg>.
 */
export function paretoChart(rows) {
  const width = 760;
  const height = 360;
  const m = { left: 64, right: 64, top: 36, bottom: 64 };
  const data = rows.filter((r) => r.value > 0).sort((a, b) => b.value - a.value);
  const total = data.reduce((sum, r) => sum + r.value, 0);
  if (!total) return emptyChart(width, height, "No defects in this time window");
  const svg = frame(width, height, "Defect Pareto by class");
  svg.dataset.bars = String(data.length);
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const { max, step } = niceScale(data[0].value);
  const y = (v) => m.top + plotH - (v / max) * plotH;
  const yPct = (p) => m.top + plotH - (p / 100) * plotH;
  const band = plotW / data.length;

  const grid = s("g", { class: "chart-grid" });
  for (let v = 0; v <= max + 1e-9; v += step) {
    grid.append(
      s("line", { x1: m.left, x2: m.left + plotW, y1: y(v), y2: y(v), stroke: COLORS.grid }),
      s("text", { x: m.left - 8, y: y(v) + 4, "text-anchor": "end", class: "axis-label", text: fmtInt(v) }),
    );
  }
  for (let p = 0; p <= 100; p += 20) {
    grid.append(s("text", { x: m.left + plotW + 8, y: yPct(p) + 4, class: "axis-label", text: `${p}%` }));
  }
  svg.append(grid);
  svg.append(
    s("line", { x1: m.left, x2: m.left + plotW, y1: yPct(80), y2: yPct(80), class: "ref-line" }),
    s("text", { x: m.left + plotW - 4, y: yPct(80) - 6, "text-anchor": "end", class: "axis-label ref-label", text: "80%" }),
  );

  const bars = s("g", { class: "bars" });
  let cumulative = 0;
  const points = [];
  data.forEach((row, i) => {
    const barW = band * 0.56;
    const x = m.left + i * band + (band - barW) / 2;
    cumulative += row.value;
    const pct = (100 * cumulative) / total;
    points.push([m.left + i * band + band / 2, yPct(pct), pct]);
    const rect = s("rect", {
      x,
      y: y(row.value),
      width: barW,
      height: Math.max(0, m.top + plotH - y(row.value)),
      fill: row.color || COLORS.bar,
      class: "bar",
      "data-class": row.name,
      "data-value": row.value,
    });
    rect.append(s("title", { text: `${row.name}: ${fmtInt(row.value)} regions (${((100 * row.value) / total).toFixed(1)}%)` }));
    bars.append(
      rect,
      s("text", { x: x + barW / 2, y: y(row.value) - 6, "text-anchor": "middle", class: "bar-label", text: fmtInt(row.value) }),
      s("text", { x: m.left + i * band + band / 2, y: m.top + plotH + 20, "text-anchor": "middle", class: "axis-label", text: row.name }),
    );
  });
  svg.append(bars);

  const line = s("g", { class: "cumulative" });
  line.append(
    s("polyline", {
      points: points.map(([px, py]) => `${px},${py}`).join(" "),
      fill: "none",
      stroke: COLORS.cumulative,
      "stroke-width": 2.5,
    }),
  );
  for (const [px, py, pct] of points) {
    const dot = s("circle", { cx: px, cy: py, r: 4.5, fill: "#fff", stroke: COLORS.cumulative, "stroke-width": 2.5 });
    dot.append(s("title", { text: `cumulative ${pct.toFixed(1)}%` }));
    line.append(dot, s("text", { x: px + 8, y: py - 8, class: "point-label", text: `${pct.toFixed(0)}%` }));
  }
  svg.append(line);

  svg.append(
    s("line", { x1: m.left, x2: m.left + plotW, y1: m.top + plotH, y2: m.top + plotH, class: "axis" }),
    s("text", { x: 14, y: m.top + plotH / 2, class: "axis-title", transform: `rotate(-90 14 ${m.top + plotH / 2})`, "text-anchor": "middle", text: "Regions" }),
    s("text", { x: width - 12, y: m.top + plotH / 2, class: "axis-title", transform: `rotate(90 ${width - 12} ${m.top + plotH / 2})`, "text-anchor": "middle", text: "Cumulative %" }),
  );
  return svg;
}

function parseDay(text) {
  const [yy, mm, dd] = String(text).split("-").map(Number);
  return Date.UTC(yy, mm - 1, dd);
}

const DAY = 86400000;

function dayText(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

/**
 * days: [{date: "YYYY-MM-DD", images, defects}]; start/end: "YYYY-MM-DD" or "".
 * Missing days inside the window count as zero. Returns an <svg>.
 */
export function trendChart(days, start, end) {
  const width = 760;
  const height = 320;
  const m = { left: 56, right: 64, top: 40, bottom: 56 };
  const known = new Map((days || []).map((d) => [d.date, d]));
  const dates = [...known.keys()].sort();
  let first = start ? parseDay(start) : dates.length ? parseDay(dates[0]) : NaN;
  const last = end ? parseDay(end) : dates.length ? parseDay(dates[dates.length - 1]) : NaN;
  if (Number.isNaN(first) || Number.isNaN(last) || last < first) {
    return emptyChart(width, height, "No images in this time window");
  }
  if ((last - first) / DAY > 730) first = last - 730 * DAY; // keep it readable
  const series = [];
  for (let t = first; t <= last; t += DAY) {
    const item = known.get(dayText(t)) || {};
    series.push({ date: dayText(t), images: Number(item.images || 0), defects: Number(item.defects || 0) });
  }
  const svg = frame(width, height, "Daily images and defects");
  svg.dataset.days = String(series.length);
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const left = niceScale(Math.max(...series.map((d) => d.images)));
  const right = niceScale(Math.max(...series.map((d) => d.defects)));
  const yL = (v) => m.top + plotH - (v / left.max) * plotH;
  const yR = (v) => m.top + plotH - (v / right.max) * plotH;
  const band = plotW / series.length;

  const grid = s("g", { class: "chart-grid" });
  for (let v = 0; v <= left.max + 1e-9; v += left.step) {
    grid.append(
      s("line", { x1: m.left, x2: m.left + plotW, y1: yL(v), y2: yL(v), stroke: COLORS.grid }),
      s("text", { x: m.left - 8, y: yL(v) + 4, "text-anchor": "end", class: "axis-label", text: fmtInt(v) }),
    );
  }
  for (let v = 0; v <= right.max + 1e-9; v += right.step) {
    grid.append(s("text", { x: m.left + plotW + 8, y: yR(v) + 4, class: "axis-label axis-right", text: fmtInt(v) }));
  }
  svg.append(grid);

  const bars = s("g", { class: "bars" });
  const labelEvery = Math.ceil(series.length / 12);
  series.forEach((d, i) => {
    const barW = Math.max(1, band * 0.7);
    const x = m.left + i * band + (band - barW) / 2;
    const rect = s("rect", { x, y: yL(d.images), width: barW, height: m.top + plotH - yL(d.images), fill: COLORS.bar, class: "bar", "data-date": d.date });
    rect.append(s("title", { text: `${d.date}: ${fmtInt(d.images)} images, ${fmtInt(d.defects)} defects` }));
    bars.append(rect);
    if (i % labelEvery === 0) {
      bars.append(s("text", { x: m.left + i * band + band / 2, y: m.top + plotH + 18, "text-anchor": "middle", class: "axis-label", text: d.date.slice(5) }));
    }
  });
  svg.append(bars);

  const points = series.map((d, i) => [m.left + i * band + band / 2, yR(d.defects), d]);
  const line = s("g", { class: "defect-line" });
  line.append(s("polyline", { points: points.map(([x, y]) => `${x},${y}`).join(" "), fill: "none", stroke: COLORS.line, "stroke-width": 2 }));
  if (series.length <= 62) {
    for (const [x, y, d] of points) {
      const dot = s("circle", { cx: x, cy: y, r: 3, fill: COLORS.line });
      dot.append(s("title", { text: `${d.date}: ${fmtInt(d.defects)} defects` }));
      line.append(dot);
    }
  }
  svg.append(line);

  svg.append(
    s("line", { x1: m.left, x2: m.left + plotW, y1: m.top + plotH, y2: m.top + plotH, class: "axis" }),
    s("rect", { x: m.left, y: 10, width: 14, height: 10, fill: COLORS.bar }),
    s("text", { x: m.left + 20, y: 19, class: "legend-label", text: "Images (left axis)" }),
    s("line", { x1: m.left + 170, x2: m.left + 190, y1: 15, y2: 15, stroke: COLORS.line, "stroke-width": 2.5 }),
    s("text", { x: m.left + 196, y: 19, class: "legend-label", text: "Defects (right axis)" }),
  );
  return svg;
}
