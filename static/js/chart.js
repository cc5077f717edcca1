// A small canvas line chart, written for this page: several series, linear or log y axis, axes
// with "nice" ticks, a hover (and keyboard) readout, and min/max decimation per pixel column so
// that tens of thousands of points draw in well under a frame. Redraws are coalesced into one
// requestAnimationFrame, so feeding it 20 updates a second costs at most one draw per frame.

const charts = new Set();
let theme = null;

function readTheme() {
  const style = getComputedStyle(document.documentElement);
  const value = (name) => style.getPropertyValue(name).trim();
  return {
    grid: value('--chart-grid'),
    axis: value('--chart-axis'),
    text: value('--chart-text'),
    surface: value('--surface'),
    tooltipBg: value('--chart-tooltip-bg'),
    tooltipText: value('--chart-tooltip-text'),
    font: value('--font'),
    series: [1, 2, 3, 4, 5, 6].map((i) => value(`--series-${i}`)),
  };
}

const darkQuery = window.matchMedia?.('(prefers-color-scheme: dark)');
darkQuery?.addEventListener?.('change', () => {
  theme = null;
  for (const chart of charts) chart.invalidate();
});

/** The colour of palette slot `index` (Okabe-Ito, from the CSS custom properties). */
export function seriesColor(index) {
  theme ??= readTheme();
  return theme.series[((index % theme.series.length) + theme.series.length) % theme.series.length];
}

// ---- ticks ------------------------------------------------------------------------------------
function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  const nice = normalized < 1.5 ? 1 : normalized < 3 ? 2 : normalized < 7 ? 5 : 10;
  return nice * magnitude;
}

/** Ticks at multiples of a 1-2-5 step between min and max, and the step. */
export function linearTicks(min, max, count, integer = false) {
  let step = niceStep(max - min, count);
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  const first = Math.ceil(min / step - 1e-9) * step;
  for (let tick = first; tick <= max + step * 1e-9; tick += step) ticks.push(+tick.toPrecision(12));
  return { ticks, step };
}

/** Ticks for a log10 axis: decades, plus 2 and 5 when the range is narrow. */
export function logTicks(min, max, count) {
  const low = Math.floor(Math.log10(min));
  const high = Math.ceil(Math.log10(max));
  const decades = high - low;
  const multipliers = decades <= 1 ? [1, 2, 5] : decades <= 3 ? [1, 3] : [1];
  const ticks = [];
  for (let exponent = low; exponent <= high; exponent += 1) {
    for (const m of multipliers) {
      const tick = m * 10 ** exponent;
      if (tick >= min * (1 - 1e-9) && tick <= max * (1 + 1e-9)) ticks.push(+tick.toPrecision(12));
    }
  }
  if (ticks.length >= 3) {
    const stride = Math.ceil(ticks.length / Math.max(2, count));
    return ticks.filter((_, i) => i % stride === 0);
  }
  // About a decade or less in view: evenly spaced ticks say more.
  return linearTicks(min, max, count).ticks.filter((tick) => tick > 0);
}

function decimalsFor(step) {
  return Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
}

export function formatTick(value, step) {
  const magnitude = Math.abs(value);
  if (magnitude >= 10000) return `${+(value / 1000).toFixed(Math.max(0, decimalsFor(step / 1000)))}k`;
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(0);
  return value.toFixed(decimalsFor(step));
}

function formatLogTick(value) {
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5)) return value.toExponential(0);
  return String(+value.toPrecision(3));
}

// Extents of value arrays, remembered per array and extended as the array grows: series arrays
// only ever grow by appending (the stream adds points), so a redraw scans only the new values.
const extents = new WeakMap();

function valueExtent(values, n) {
  let e = extents.get(values);
  if (!e || e.n > n) {
    e = { n: 0, min: Infinity, max: -Infinity, minPositive: Infinity, maxPositive: -Infinity };
    extents.set(values, e);
  }
  for (let i = e.n; i < n; i += 1) {
    const y = values[i];
    if (!Number.isFinite(y)) continue;
    if (y < e.min) e.min = y;
    if (y > e.max) e.max = y;
    if (y > 0) {
      if (y < e.minPositive) e.minPositive = y;
      if (y > e.maxPositive) e.maxPositive = y;
    }
  }
  e.n = n;
  return e;
}

/** Index of the element of sorted `xs[0..n)` nearest to `x`. */
function nearestIndex(xs, n, x) {
  let low = 0;
  let high = n - 1;
  while (high - low > 1) {
    const mid = (low + high) >> 1;
    if (xs[mid] < x) low = mid;
    else high = mid;
  }
  return Math.abs(xs[low] - x) <= Math.abs(xs[high] - x) ? low : high;
}

// ---- the chart --------------------------------------------------------------------------------
export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {object} options
   *   legend: element to render the legend into; readout: a live region for keyboard readouts
   *   xLabel: word for the x value in the readout ("Step", "Epoch")
   *   xInteger: ticks only at whole numbers; xPadding: data units of air left and right
   *   yFormat(value): readout text for a y value; yTickFormat(value, step): axis label
   *   logY: start with a log axis; emptyText: shown until there is data
   */
  constructor(canvas, options = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.options = { xLabel: 'x', xPadding: 0, emptyText: 'No data yet', ...options };
    this.series = [];
    this.logY = Boolean(options.logY);
    this.hover = null; // { x: data x } while the pointer or keyboard points somewhere
    this.frame = 0;
    this.width = 0;
    this.height = 0;
    this.layout = null;
    this.legendKey = '';
    charts.add(this);

    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(canvas);
    this.resize();

    canvas.addEventListener('pointermove', (event) => this.pointAt(event));
    canvas.addEventListener('pointerdown', (event) => this.pointAt(event));
    canvas.addEventListener('pointerleave', () => {
      this.hover = null;
      this.invalidate();
    });
    canvas.addEventListener('keydown', (event) => this.onKey(event));
    canvas.addEventListener('blur', () => {
      this.hover = null;
      this.invalidate();
    });
  }

  /**
   * series: [{label, xs, ys, color | colorIndex, width, dash, alpha, markers, legend, hover}].
   * xs ascending. The arrays may grow between draws, but values already there must not change
   * (give a new array instead): their extents are cached.
   */
  setSeries(series) {
    this.series = series;
    this.renderLegend();
    this.invalidate();
  }

  setLogScale(logY) {
    this.logY = logY;
    this.invalidate();
  }

  invalidate() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  resize() {
    const rect = this.canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    this.width = rect.width;
    this.height = rect.height;
    const w = Math.max(1, Math.round(rect.width * ratio));
    const h = Math.max(1, Math.round(rect.height * ratio));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.invalidate();
  }

  colorOf(series) {
    return series.color ?? seriesColor(series.colorIndex ?? 0);
  }

  renderLegend() {
    const legend = this.options.legend;
    if (!legend) return;
    const shown = this.series.filter((s) => s.legend !== false);
    const key = shown.map((s) => `${s.label}|${this.colorOf(s)}|${s.dash ? 1 : 0}|${s.alpha ?? 1}`).join(';');
    if (key === this.legendKey) return;
    this.legendKey = key;
    legend.replaceChildren(
      ...shown.map((s) => {
        const item = document.createElement('span');
        item.className = 'legend-item';
        const swatch = document.createElement('span');
        swatch.className = 'legend-swatch';
        if (s.dash) swatch.classList.add('dashed');
        if ((s.alpha ?? 1) < 0.6) swatch.classList.add('faint');
        swatch.style.color = this.colorOf(s);
        item.append(swatch, document.createTextNode(s.label));
        return item;
      }),
    );
  }

  // ---- interaction ----------------------------------------------------------------------------
  pointAt(event) {
    if (!this.layout) return;
    const rect = this.canvas.getBoundingClientRect();
    const px = event.clientX - rect.left;
    const { left, plotWidth, x0, x1 } = this.layout;
    const fraction = Math.min(1, Math.max(0, (px - left) / plotWidth));
    this.hover = { x: x0 + fraction * (x1 - x0) };
    this.invalidate();
  }

  primarySeries() {
    return this.series.find((s) => s.hover !== false && Math.min(s.xs.length, s.ys.length) > 0);
  }

  onKey(event) {
    const primary = this.primarySeries();
    if (!primary) return;
    const n = Math.min(primary.xs.length, primary.ys.length);
    let index = this.hover ? nearestIndex(primary.xs, n, this.hover.x) : n - 1;
    const jump = event.shiftKey ? Math.max(1, Math.round(n / 10)) : 1;
    if (event.key === 'ArrowLeft') index = Math.max(0, index - jump);
    else if (event.key === 'ArrowRight') index = Math.min(n - 1, index + jump);
    else if (event.key === 'Home') index = 0;
    else if (event.key === 'End') index = n - 1;
    else if (event.key === 'Escape') {
      this.hover = null;
      this.invalidate();
      return;
    } else return;
    event.preventDefault();
    this.hover = { x: primary.xs[index] };
    this.invalidate();
    if (this.options.readout) this.options.readout.textContent = this.readoutText(this.hoverValues());
  }

  hoverValues() {
    if (!this.hover) return null;
    const primary = this.primarySeries();
    if (!primary) return null;
    const x = primary.xs[nearestIndex(primary.xs, Math.min(primary.xs.length, primary.ys.length), this.hover.x)];
    const rows = [];
    for (const s of this.series) {
      const n = Math.min(s.xs.length, s.ys.length);
      if (s.hover === false || n === 0) continue;
      const i = nearestIndex(s.xs, n, x);
      if (s.xs[i] !== x && s !== primary) {
        // Only report another series when it has a point close to this x.
        const span = (this.layout?.x1 ?? 1) - (this.layout?.x0 ?? 0);
        if (Math.abs(s.xs[i] - x) > span / 100) continue;
      }
      rows.push({ series: s, x: s.xs[i], y: s.ys[i] });
    }
    return { x, rows };
  }

  readoutText(values) {
    if (!values) return '';
    const yFormat = this.options.yFormat ?? ((v) => String(v));
    const parts = values.rows.map((row) => `${row.series.label} ${yFormat(row.y)}`);
    return `${this.options.xLabel} ${values.x.toLocaleString()}: ${parts.join(', ')}`;
  }

  // ---- drawing --------------------------------------------------------------------------------
  draw() {
    theme ??= readTheme();
    const { ctx, width, height } = this;
    const ratio = this.canvas.width / Math.max(1, width);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    if (width < 20 || height < 20) return;
    const font = theme.font || 'sans-serif';
    ctx.font = `11px ${font}`;

    const extent = this.extent();
    if (!extent) {
      this.layout = null;
      ctx.fillStyle = theme.text;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.font = `13px ${font}`;
      ctx.fillText(this.options.emptyText, width / 2, height / 2);
      ctx.strokeStyle = theme.axis;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(8, height - 20.5);
      ctx.lineTo(width - 8, height - 20.5);
      ctx.stroke();
      return;
    }

    // Domains and ticks.
    let [x0, x1] = [extent.xMin - this.options.xPadding, extent.xMax + this.options.xPadding];
    if (x1 - x0 < 1e-12) [x0, x1] = [x0 - 0.5, x1 + 0.5];
    const top = 10;
    const bottom = 22;
    const plotHeightGuess = height - top - bottom;
    const yCount = Math.max(2, Math.floor(plotHeightGuess / 42));
    let y0;
    let y1;
    let yTicks;
    let yLabel;
    if (this.logY) {
      const lo = Math.log10(extent.yMinPositive);
      const hi = Math.log10(extent.yMaxPositive);
      const pad = Math.max(0.02, (hi - lo) * 0.06);
      y0 = 10 ** (lo - pad);
      y1 = 10 ** (hi + pad);
      yTicks = logTicks(y0, y1, yCount);
      yLabel = formatLogTick;
    } else {
      let lo = extent.yMin;
      let hi = extent.yMax;
      if (hi - lo < 1e-12) {
        const spread = Math.abs(hi) * 0.1 || 1;
        lo -= spread;
        hi += spread;
      }
      const { step } = linearTicks(lo, hi, yCount);
      y0 = Math.floor(lo / step - 1e-9) * step;
      y1 = Math.ceil(hi / step + 1e-9) * step;
      if (extent.yMin >= 0 && y0 < 0) y0 = 0;
      if (this.options.yMax !== undefined && y1 > this.options.yMax && extent.yMax <= this.options.yMax) {
        y1 = this.options.yMax;
      }
      const result = linearTicks(y0, y1, yCount);
      yTicks = result.ticks;
      const tickFormat = this.options.yTickFormat ?? formatTick;
      yLabel = (value) => tickFormat(value, result.step);
    }

    const labels = yTicks.map(yLabel);
    const labelWidth = Math.max(18, ...labels.map((label) => ctx.measureText(label).width));
    const left = Math.ceil(labelWidth + 12);
    const right = 12;
    const plotWidth = Math.max(10, width - left - right);
    const plotHeight = Math.max(10, height - top - bottom);
    const toPx = (x) => left + ((x - x0) / (x1 - x0)) * plotWidth;
    const ly0 = this.logY ? Math.log10(y0) : y0;
    const ly1 = this.logY ? Math.log10(y1) : y1;
    const toPy = this.logY
      ? (y) => top + (1 - (Math.log10(y) - ly0) / (ly1 - ly0)) * plotHeight
      : (y) => top + (1 - (y - ly0) / (ly1 - ly0)) * plotHeight;
    this.layout = { left, top, plotWidth, plotHeight, x0, x1, toPx, toPy };

    // Grid and y labels.
    ctx.lineWidth = 1;
    ctx.strokeStyle = theme.grid;
    ctx.fillStyle = theme.text;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    yTicks.forEach((tick, i) => {
      const py = Math.round(toPy(tick)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, py);
      ctx.lineTo(left + plotWidth, py);
      ctx.stroke();
      ctx.fillText(labels[i], left - 8, py);
    });

    // x labels.
    const xCount = Math.max(2, Math.floor(plotWidth / 90));
    const xTicks = linearTicks(x0, x1, xCount, this.options.xInteger);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const tick of xTicks.ticks) {
      const px = toPx(tick);
      if (px < left - 1 || px > left + plotWidth + 1) continue;
      ctx.fillText(formatTick(tick, xTicks.step), px, top + plotHeight + 6);
    }
    ctx.strokeStyle = theme.axis;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(top + plotHeight) + 0.5);
    ctx.lineTo(left + plotWidth, Math.round(top + plotHeight) + 0.5);
    ctx.stroke();

    // Series, clipped to the plot area.
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top - 2, plotWidth, plotHeight + 4);
    ctx.clip();
    for (const s of this.series) this.drawSeries(s, toPx, toPy);
    ctx.restore();

    this.drawHover(font);
  }

  extent() {
    let xMin = Infinity;
    let xMax = -Infinity;
    let yMin = Infinity;
    let yMax = -Infinity;
    let yMinPositive = Infinity;
    let yMaxPositive = -Infinity;
    for (const s of this.series) {
      const n = Math.min(s.xs.length, s.ys.length);
      if (n === 0 || s.scale === false) continue;
      xMin = Math.min(xMin, s.xs[0]);
      xMax = Math.max(xMax, s.xs[n - 1]);
      const e = valueExtent(s.ys, n);
      yMin = Math.min(yMin, e.min);
      yMax = Math.max(yMax, e.max);
      yMinPositive = Math.min(yMinPositive, e.minPositive);
      yMaxPositive = Math.max(yMaxPositive, e.maxPositive);
    }
    if (!Number.isFinite(xMin) || !Number.isFinite(yMin)) return null;
    if (this.logY && !Number.isFinite(yMinPositive)) return null;
    if (this.logY && yMaxPositive / yMinPositive < 1.0001) {
      yMinPositive /= 1.5;
      yMaxPositive *= 1.5;
    }
    return { xMin, xMax, yMin, yMax, yMinPositive, yMaxPositive };
  }

  /**
   * One polyline per series. Points that fall into the same pixel column collapse to the first,
   * lowest, highest and last value of that column, which keeps every spike visible while the
   * path never has more than four vertices per column. The per-point work stays in data units
   * (the y mapping is monotonic, also on a log axis), so only those vertices are transformed.
   */
  drawSeries(s, toPx, toPy) {
    const { ctx } = this;
    const n = Math.min(s.xs.length, s.ys.length);
    if (n === 0) return;
    const { xs, ys } = s;
    const logY = this.logY;
    const { left, plotWidth, x0, x1 } = this.layout;
    const xScale = plotWidth / (x1 - x0);
    const color = this.colorOf(s);
    ctx.strokeStyle = color;
    ctx.globalAlpha = s.alpha ?? 1;
    ctx.lineWidth = s.width ?? 2;
    ctx.lineJoin = 'round';
    ctx.lineCap = 'round';
    ctx.setLineDash(s.dash ?? []);
    ctx.beginPath();
    let started = false;
    let column = NaN;
    let columnX = 0;
    let first = 0;
    let low = 0;
    let high = 0;
    let last = 0;
    let count = 0;
    const flush = () => {
      if (count === 0) return;
      const firstY = toPy(first);
      if (!started) {
        ctx.moveTo(columnX, firstY);
        started = true;
      } else ctx.lineTo(columnX, firstY);
      if (count > 1) {
        ctx.lineTo(columnX, toPy(low));
        ctx.lineTo(columnX, toPy(high));
        ctx.lineTo(columnX, toPy(last));
      }
    };
    for (let i = 0; i < n; i += 1) {
      const y = ys[i];
      if (!(y === y && y !== Infinity && y !== -Infinity) || (logY && y <= 0)) continue;
      const px = left + (xs[i] - x0) * xScale;
      const c = Math.floor(px);
      if (c !== column) {
        flush();
        column = c;
        columnX = px;
        first = low = high = last = y;
        count = 1;
      } else {
        if (y < low) low = y;
        else if (y > high) high = y;
        last = y;
        count += 1;
        columnX = c + 0.5;
      }
    }
    flush();
    ctx.stroke();
    ctx.setLineDash([]);

    if (s.markers && n <= 80) {
      ctx.fillStyle = color;
      ctx.strokeStyle = theme.surface;
      ctx.lineWidth = 1.5;
      for (let i = 0; i < n; i += 1) {
        const y = ys[i];
        if (!Number.isFinite(y) || (logY && y <= 0)) continue;
        ctx.beginPath();
        ctx.arc(toPx(xs[i]), toPy(y), 3.2, 0, Math.PI * 2);
        ctx.fill();
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
  }

  drawHover(font) {
    const values = this.hoverValues();
    if (!values || !this.layout) return;
    const { ctx } = this;
    const { left, top, plotWidth, plotHeight, toPx, toPy } = this.layout;
    const px = toPx(values.x);
    ctx.strokeStyle = theme.axis;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(Math.round(px) + 0.5, top);
    ctx.lineTo(Math.round(px) + 0.5, top + plotHeight);
    ctx.stroke();

    const yFormat = this.options.yFormat ?? ((v) => String(v));
    const lines = [];
    for (const row of values.rows) {
      if (!Number.isFinite(row.y) || (this.logY && row.y <= 0)) continue;
      const color = this.colorOf(row.series);
      ctx.fillStyle = color;
      ctx.strokeStyle = theme.surface;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(toPx(row.x), toPy(row.y), 3.5, 0, Math.PI * 2);
      ctx.fill();
      ctx.stroke();
      lines.push({ color, text: `${row.series.label}  ${yFormat(row.y)}` });
    }
    if (!lines.length) return;

    const title = `${this.options.xLabel} ${values.x.toLocaleString()}`;
    ctx.font = `600 11px ${font}`;
    let boxWidth = ctx.measureText(title).width;
    ctx.font = `11px ${font}`;
    for (const line of lines) boxWidth = Math.max(boxWidth, ctx.measureText(line.text).width + 14);
    boxWidth += 16;
    const lineHeight = 16;
    const boxHeight = 10 + lineHeight * (lines.length + 1);
    let bx = px + 12;
    if (bx + boxWidth > left + plotWidth) bx = px - 12 - boxWidth;
    bx = Math.max(left, bx);
    const by = top + 4;
    ctx.fillStyle = theme.tooltipBg;
    ctx.beginPath();
    if (ctx.roundRect) ctx.roundRect(bx, by, boxWidth, boxHeight, 6);
    else ctx.rect(bx, by, boxWidth, boxHeight);
    ctx.fill();
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = theme.tooltipText;
    ctx.font = `600 11px ${font}`;
    ctx.fillText(title, bx + 8, by + 5 + lineHeight / 2);
    ctx.font = `11px ${font}`;
    lines.forEach((line, i) => {
      const y = by + 5 + lineHeight * (i + 1.5);
      ctx.fillStyle = line.color;
      ctx.fillRect(bx + 8, y - 4, 8, 8);
      ctx.fillStyle = theme.tooltipText;
      ctx.fillText(line.text, bx + 22, y);
    });
  }
}
