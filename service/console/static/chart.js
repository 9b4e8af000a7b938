"use strict";
// Line charts on a canvas: one chart per metric (train and val_ series of one metric share it).
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

class LineChart {
  constructor(title) {
    this.title = title;
    this.series = new Map();  // name -> [[x, y], ...]
    this.canvas = h("canvas", { role: "img", "aria-label": `${title} by step`, "data-metric": title, "data-points": "0" });
    this.legend = h("div", { class: "legend" });
    this.el = h("div", { class: "chart" }, h("strong", { text: title }), this.legend, this.canvas);
    this.pending = false;
  }
  add(name, x, y) {
    if (!this.series.has(name)) {
      this.series.set(name, []);
      const color = COLORS[(this.series.size - 1) % COLORS.length];
      this.legend.append(h("span", {}, h("i", { style: `background:${color}` }), name));
    }
    this.series.get(name).push([x, y]);
    this.canvas.dataset.points = String([...this.series.values()].reduce((n, s) => n + s.length, 0));
    if (!this.pending) { this.pending = true; requestAnimationFrame(() => { this.pending = false; this.draw(); }); }
  }
  draw() {
    const c = this.canvas, ratio = window.devicePixelRatio || 1;
    const width = c.clientWidth || 360, height = c.clientHeight || 220;
    c.width = width * ratio; c.height = height * ratio;
    const g = c.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const points = [...this.series.values()].flat();
    if (!points.length) return;
    let [x0, x1] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
    if (x0 === x1) x1 = x0 + 1;
    if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
    const pad = { l: 52, r: 10, t: 8, b: 22 };
    const sx = (x) => pad.l + (x - x0) / (x1 - x0) * (width - pad.l - pad.r);
    const sy = (y) => height - pad.b - (y - y0) / (y1 - y0) * (height - pad.t - pad.b);
    g.font = "11px system-ui, sans-serif"; g.fillStyle = "#6b7280"; g.strokeStyle = "#e5e7eb"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = y0 + (y1 - y0) * i / 4;
      g.beginPath(); g.moveTo(pad.l, sy(y)); g.lineTo(width - pad.r, sy(y)); g.stroke();
      g.fillText(fmt(y), 4, sy(y) + 4);
    }
    g.fillText(`step ${fmt(x0)}`, pad.l, height - 6);
    const last = `step ${fmt(x1)}`;
    g.fillText(last, width - pad.r - g.measureText(last).width, height - 6);
    let i = 0;
    for (const data of this.series.values()) {
      g.strokeStyle = COLORS[i++ % COLORS.length]; g.lineWidth = 1.5; g.beginPath();
      data.forEach(([x, y], k) => (k ? g.lineTo(sx(x), sy(y)) : g.moveTo(sx(x), sy(y))));
      g.stroke();
      if (data.length === 1) { g.fillStyle = g.strokeStyle; g.fillRect(sx(data[0][0]) - 2, sy(data[0][1]) - 2, 4, 4); }
    }
  }
}

// Charts for every numeric metric of progress events, made as new metric names appear.
class ChartBoard {
  constructor() { this.charts = new Map(); this.el = h("div", { class: "grid", id: "charts" }); }
  add(step, metrics) {
    for (const [name, value] of Object.entries(metrics || {})) {
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      const base = name.replace(/^val_/, "");
      if (!this.charts.has(base)) {
        const chart = new LineChart(base);
        this.charts.set(base, chart);
        this.el.append(chart.el);
      }
      this.charts.get(base).add(name, step, value);
    }
  }
  redraw() { for (const chart of this.charts.values()) chart.draw(); }
}
