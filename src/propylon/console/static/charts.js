// Charts of the console: SVG drawn by hand, with axes, units and legends. Time series are
// lines over time; values are printed in their unit (ms, s, $, requests), never as 1.94e+4.

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2f6fde", "#d9822b", "#1f8a4c", "#8e44ad"];
const W = 600, H = 180, LEFT = 62, RIGHT = 10, TOP = 18, BOTTOM = 26;

export function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A value in its unit: "ms" (ms or s), "usd", "count", "ratio" (percent).
export function formatValue(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (unit === "ms") return value >= 1000 ? `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)} s` : `${value.toFixed(value >= 100 ? 0 : 1)} ms`;
  if (unit === "usd" && value === 0) return "$0";
  if (unit === "usd") return `$${value >= 1 ? value.toFixed(2) : value.toFixed(value >= 0.01 ? 4 : 6)}`;
  if (unit === "ratio") return `${(value * 100).toFixed(1)} %`;
  if (unit === "score") return value.toFixed(3);
  return Math.abs(value) >= 1000 ? value.toLocaleString("en", { maximumFractionDigits: 0 }) : String(Math.round(value * 100) / 100);
}

// A "nice" top of the y axis and its tick step.
function niceScale(max) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return { top: step * Math.ceil(max / step), step };
}

function empty(target) {
  target.replaceChildren(svg("text", { x: 10, y: 24 }, "no data in this window"));
}

function yAxis(target, top, step, unit) {
  const plot = H - TOP - BOTTOM;
  for (let v = 0; v <= top + step / 2; v += step) {
    const y = TOP + plot - (v / top) * plot;
    target.append(svg("line", { x1: LEFT, x2: W - RIGHT, y1: y, y2: y, class: "grid" }));
    target.append(svg("text", { x: LEFT - 6, y: y + 3, "text-anchor": "end" }, formatValue(v, unit)));
  }
}

// Lines over time: ``times`` are ISO strings, ``series`` [{name, values}] (null: no point).
export function timeSeries(target, times, series, unit) {
  target.replaceChildren();
  if (!times.length) return empty(target);
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const { top, step } = niceScale(Math.max(...all, 0));
  yAxis(target, top, step, unit);
  const plot = H - TOP - BOTTOM;
  const xs = times.map((t) => new Date(t).getTime());
  const [first, last] = [Math.min(...xs), Math.max(...xs)];
  const x = (t) => LEFT + (last > first ? ((t - first) / (last - first)) * (W - LEFT - RIGHT) : (W - LEFT - RIGHT) / 2);
  const y = (v) => TOP + plot - (v / top) * plot;
  target.append(svg("line", { x1: LEFT, x2: W - RIGHT, y1: TOP + plot, y2: TOP + plot, class: "axis" }));
  const ticks = Math.min(times.length, 5);
  for (let i = 0; i < ticks; i++) {
    const t = ticks > 1 ? first + ((last - first) * i) / (ticks - 1) : first;
    const label = new Date(t).toISOString().slice(last - first > 86_400_000 ? 5 : 11, 16).replace("T", " ");
    target.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, label));
  }
  target.append(svg("text", { x: W - RIGHT, y: H - 8, "text-anchor": "end", class: "unit" }, "UTC"));
  series.forEach((s, index) => {
    const color = COLORS[index % COLORS.length];
    const points = s.values.map((v, i) => [xs[i], v]).filter(([, v]) => v !== null && v !== undefined);
    target.append(svg("rect", { x: LEFT + 8 + index * 110, y: 4, width: 10, height: 4, fill: color }));
    target.append(svg("text", { x: LEFT + 22 + index * 110, y: 10, class: "legend" }, points.length ? s.name : `${s.name}: none`));
    if (!points.length) return;
    const d = points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    target.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    for (const [t, v] of points) {
      const dot = svg("circle", { cx: x(t), cy: y(v), r: 2.5, fill: color });
      dot.append(svg("title", {}, `${s.name} ${formatValue(v, unit)}`));
      target.append(dot);
    }
  });
}

// Horizontal bars: one per [label, value], the value printed in its unit.
export function barChart(target, points, unit) {
  target.replaceChildren();
  if (!points.length) return empty(target);
  const shown = points.slice(0, 6);
  const max = Math.max(...shown.map((p) => p[1]), 0);
  const { top } = niceScale(max);
  const row = (H - TOP - 6) / shown.length;
  const width = W - LEFT - RIGHT - 70;
  shown.forEach(([label, value], i) => {
    const y = TOP + i * row;
    const length = top > 0 ? (value / top) * width : 0;
    target.append(svg("text", { x: LEFT - 6, y: y + row / 2 + 3, "text-anchor": "end" }, String(label).slice(0, 12)));
    target.append(svg("rect", { x: LEFT, y: y + row * 0.15, width: Math.max(length, 1), height: row * 0.7, fill: COLORS[0] }));
    target.append(svg("text", { x: LEFT + length + 6, y: y + row / 2 + 3 }, formatValue(value, unit)));
  });
  target.append(svg("line", { x1: LEFT, x2: LEFT, y1: TOP, y2: H - 6, class: "axis" }));
}

// A waterfall: one bar per span [{name, start_ms, duration_ms, depth}] on a shared ms axis.
export function waterfall(target, spans) {
  target.replaceChildren();
  if (!spans.length) return empty(target);
  const total = Math.max(...spans.map((s) => s.start_ms + s.duration_ms), 1);
  const { top, step } = niceScale(total);
  const row = 22;
  const height = TOP + spans.length * row + BOTTOM;
  target.setAttribute("viewBox", `0 0 ${W} ${height}`);
  const left = 150, width = W - left - RIGHT;
  const x = (v) => left + (v / top) * width;
  for (let v = 0; v <= top + step / 2; v += step) {
    target.append(svg("line", { x1: x(v), x2: x(v), y1: TOP, y2: height - BOTTOM, class: "grid" }));
    const anchor = v === 0 ? "start" : v + step > top + step / 2 ? "end" : "middle";
    target.append(svg("text", { x: x(v), y: height - 8, "text-anchor": anchor }, formatValue(v, "ms")));
  }
  spans.forEach((s, i) => {
    const y = TOP + i * row;
    const bar = svg("rect", { x: x(s.start_ms), y: y + 4, width: Math.max(x(s.start_ms + s.duration_ms) - x(s.start_ms), 2), height: row - 8, fill: COLORS[(s.depth || 0) % COLORS.length], class: "span" });
    bar.append(svg("title", {}, `${s.name}: ${formatValue(s.duration_ms, "ms")} from ${formatValue(s.start_ms, "ms")}${s.title ? ` (${s.title})` : ""}`));
    target.append(svg("text", { x: 4 + (s.depth || 0) * 10, y: y + row / 2 + 3 }, s.name.slice(0, 22)));
    target.append(bar);
  });
}
