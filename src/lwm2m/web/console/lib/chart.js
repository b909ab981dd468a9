// A small line chart of an observed number, beside its row: the server's history of it first,
// then the live values as they come.

import { api, enc } from "./api.js";
import { svg } from "./dom.js";
import { seriesOf, startSeries, valueOf } from "./values.js";

export async function startChart(ep, path) {
  const { status, data } = await api(`/clients/${enc(ep)}/history${path}`, { query: { limit: 200 } });
  const items = status === 200 ? (Array.isArray(data) ? data : data.values || data.history || data.records || []) : [];
  const series = items
    .filter((r) => typeof r.value === "number")
    .map((r) => [r.time, r.value])
    .sort((a, b) => a[0] - b[0]);
  const current = valueOf(ep, path);
  if (!series.length && current && typeof current.value === "number") series.push([Date.now() / 1000, current.value]);
  startSeries(ep, path, series);
  drawChart(ep, path);
}

// Draws the chart of `path` in its cell (data-chart), when the page shows one and it is charted.
export function drawChart(ep, path) {
  const series = seriesOf(ep, path);
  const cell = document.querySelector(`[data-chart="${CSS.escape(path)}"]`);
  if (!series || !cell) return;
  const w = 220;
  const h = 60;
  const chart = svg("svg", { class: "chart", width: w, height: h, viewBox: `0 0 ${w} ${h}`, "data-points": series.length });
  if (series.length) {
    const ts = series.map((p) => p[0]);
    const vs = series.map((p) => p[1]);
    const t0 = Math.min(...ts);
    const t1 = Math.max(...ts);
    let v0 = Math.min(...vs);
    let v1 = Math.max(...vs);
    if (v0 === v1) {
      v0 -= 1;
      v1 += 1;
    }
    const x = (t) => (t1 === t0 ? w / 2 : 4 + ((t - t0) / (t1 - t0)) * (w - 8));
    const y = (v) => h - 12 - ((v - v0) / (v1 - v0)) * (h - 20);
    const d = series.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    chart.append(svg("path", { d }));
    chart.append(svg("text", { x: 2, y: h - 1 }, `${v0.toFixed(1)}…${v1.toFixed(1)} (${series.length})`));
  }
  cell.replaceChildren(chart);
}
