// Distributions over time, as TensorBoard draws them: for each watched step, the percentiles of a
// histogram (values of a layer's weights, gradients or activations), drawn as nested bands over
// the steps: min–max, then ±1.5σ, ±1σ, ±0.5σ equivalents (6.7–93.3%, 15.9–84.1%, 30.9–69.1%),
// and the median as a line. A plain canvas, redrawn at most once a frame.

import { formatTick, linearTicks, seriesColor } from './chart.js';

// The percentiles of a normal distribution at 0, ±0.5, ±1, ±1.5 σ, and the extremes.
export const PERCENTILES = [0, 6.68, 15.87, 30.85, 50, 69.15, 84.13, 93.32, 100];

/**
 * The value below which `p` percent of a histogram's values lie, interpolating linearly inside
 * the bin that holds it. `histogram`: {edges, counts}, edges.length === counts.length + 1.
 */
export function percentile(histogram, p) {
  const { edges, counts } = histogram;
  if (!counts?.length) return null;
  const total = counts.reduce((sum, count) => sum + count, 0);
  if (total === 0) return null;
  const target = (p / 100) * total;
  let below = 0;
  for (let i = 0; i < counts.length; i += 1) {
    const count = counts[i];
    if (count > 0 && below + count >= target) {
      const fraction = Math.min(1, Math.max(0, (target - below) / count));
      return edges[i] + fraction * (edges[i + 1] - edges[i]);
    }
    below += count;
  }
  return edges[edges.length - 1];
}

export class BandChart {
  /** @param {HTMLCanvasElement} canvas  @param {object} options  colorIndex, emptyText */
  constructor(canvas, options = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.options = { colorIndex: 0, emptyText: 'No data yet', ...options };
    this.steps = [];
    this.bands = []; // per step: the PERCENTILES values
    this.frame = 0;
    new ResizeObserver(() => this.invalidate()).observe(canvas);
  }

  /** steps ascending; histograms[i] the histogram at steps[i]. */
  setData(steps, histograms) {
    this.steps = [];
    this.bands = [];
    histograms.forEach((histogram, i) => {
      if (!histogram?.counts?.length) return;
      this.steps.push(steps[i]);
      this.bands.push(PERCENTILES.map((p) => percentile(histogram, p)));
    });
    this.invalidate();
  }

  invalidate() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** The newest step's percentiles, for a text summary. */
  latest() {
    const n = this.bands.length;
    return n ? { step: this.steps[n - 1], values: this.bands[n - 1] } : null;
  }

  draw() {
    const { canvas, ctx } = this;
    const rect = canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const width = rect.width;
    const height = rect.height;
    const w = Math.max(1, Math.round(width * ratio));
    const h = Math.max(1, Math.round(height * ratio));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    if (width < 20 || height < 20) return;
    const style = getComputedStyle(document.documentElement);
    const text = style.getPropertyValue('--chart-text').trim();
    const grid = style.getPropertyValue('--chart-grid').trim();
    const axis = style.getPropertyValue('--chart-axis').trim();
    const font = style.getPropertyValue('--font').trim() || 'sans-serif';
    ctx.font = `11px ${font}`;
    if (!this.steps.length) {
      ctx.fillStyle = text;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(this.options.emptyText, width / 2, height / 2);
      return;
    }

    let lo = Infinity;
    let hi = -Infinity;
    for (const band of this.bands) {
      lo = Math.min(lo, band[0]);
      hi = Math.max(hi, band[band.length - 1]);
    }
    if (hi - lo < 1e-12) {
      const spread = Math.abs(hi) * 0.1 || 1e-6;
      lo -= spread;
      hi += spread;
    }
    const yCount = Math.max(2, Math.floor((height - 32) / 36));
    const { step: yStep } = linearTicks(lo, hi, yCount);
    const y0 = Math.floor(lo / yStep - 1e-9) * yStep;
    const y1 = Math.ceil(hi / yStep + 1e-9) * yStep;
    const { ticks: yTicks, step: tickStep } = linearTicks(y0, y1, yCount);
    const labels = yTicks.map((tick) => formatTick(tick, tickStep));
    const left = Math.ceil(Math.max(18, ...labels.map((label) => ctx.measureText(label).width)) + 12);
    const top = 8;
    const bottom = 20;
    const plotWidth = Math.max(10, width - left - 10);
    const plotHeight = Math.max(10, height - top - bottom);
    let x0 = this.steps[0];
    let x1 = this.steps[this.steps.length - 1];
    if (x1 - x0 < 1) [x0, x1] = [x0 - 0.5, x1 + 0.5];
    const toPx = (x) => left + ((x - x0) / (x1 - x0)) * plotWidth;
    const toPy = (y) => top + (1 - (y - y0) / (y1 - y0)) * plotHeight;

    ctx.lineWidth = 1;
    ctx.strokeStyle = grid;
    ctx.fillStyle = text;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    yTicks.forEach((tick, i) => {
      const py = Math.round(toPy(tick)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, py);
      ctx.lineTo(left + plotWidth, py);
      ctx.stroke();
      ctx.fillText(labels[i], left - 6, py);
    });
    const xTicks = linearTicks(x0, x1, Math.max(2, Math.floor(plotWidth / 80)), true);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const tick of xTicks.ticks) {
      const px = toPx(tick);
      if (px >= left - 1 && px <= left + plotWidth + 1) ctx.fillText(formatTick(tick, xTicks.step), px, top + plotHeight + 5);
    }
    ctx.strokeStyle = axis;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(top + plotHeight) + 0.5);
    ctx.lineTo(left + plotWidth, Math.round(top + plotHeight) + 0.5);
    ctx.stroke();

    // Bands from the outside in, each darker; then the median.
    const color = seriesColor(this.options.colorIndex);
    const n = PERCENTILES.length;
    const single = this.steps.length === 1;
    for (let k = 0; k < (n - 1) / 2; k += 1) {
      ctx.globalAlpha = 0.16 + 0.14 * k;
      ctx.fillStyle = color;
      ctx.beginPath();
      if (single) {
        const px = toPx(this.steps[0]);
        ctx.rect(px - 3, toPy(this.bands[0][n - 1 - k]), 6, toPy(this.bands[0][k]) - toPy(this.bands[0][n - 1 - k]));
      } else {
        this.steps.forEach((step, i) => {
          const py = toPy(this.bands[i][n - 1 - k]);
          if (i === 0) ctx.moveTo(toPx(step), py);
          else ctx.lineTo(toPx(step), py);
        });
        for (let i = this.steps.length - 1; i >= 0; i -= 1) ctx.lineTo(toPx(this.steps[i]), toPy(this.bands[i][k]));
        ctx.closePath();
      }
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    this.steps.forEach((step, i) => {
      const py = toPy(this.bands[i][(n - 1) / 2]);
      if (i === 0) ctx.moveTo(toPx(step), py);
      else ctx.lineTo(toPx(step), py);
    });
    if (single) ctx.lineTo(toPx(this.steps[0]) + 0.5, toPy(this.bands[0][(n - 1) / 2]));
    ctx.stroke();
    this.canvas.dataset.drawn = String(this.steps.length); // how many steps the chart shows
  }
}
