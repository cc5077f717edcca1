// A small canvas line chart, written for this page: several series, linear or log y axis (with a
// labelled tick at every decade), axes with "nice" ticks and titles, raw values as a light min/max
// band behind a smoothed line, faint vertical markers (epoch boundaries), drag to zoom and
// double-click to reset, a hover (and keyboard) readout, PNG export, and min/max decimation per
// pixel column so that tens of thousands of points draw in well under a frame. Redraws are
// coalesced into one requestAnimationFrame: 20 updates a second cost at most one draw a frame.

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
    danger: value('--danger'),
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

/**
 * Ticks for a log10 axis: `ticks` to label and `minor` grid lines. Every decade in view gets a
 * labelled tick (every n-th one when there are too many to label); across two decades or less,
 * 2 and 5 are labelled too, and the other multiples are minor lines. Inside one decade, plain
 * 1-2-5 ticks say more.
 */
export function logTicks(min, max, count) {
  const low = Math.floor(Math.log10(min));
  const high = Math.ceil(Math.log10(max));
  const inRange = (tick) => tick >= min * (1 - 1e-9) && tick <= max * (1 + 1e-9);
  const decades = [];
  const minor = [];
  const between = [];
  for (let exponent = low; exponent <= high; exponent += 1) {
    const decade = +(10 ** exponent).toPrecision(12);
    if (inRange(decade)) decades.push(decade);
    for (let m = 2; m <= 9; m += 1) {
      const tick = +(m * 10 ** exponent).toPrecision(12);
      if (!inRange(tick)) continue;
      if (m === 2 || m === 5) between.push(tick);
      else minor.push(tick);
    }
  }
  const span = Math.log10(max / min);
  if (decades.length === 0 || (decades.length === 1 && span < 1)) {
    // Less than a decade: evenly spaced ticks, still on the log axis.
    const ticks = linearTicks(min, max, count).ticks.filter((tick) => tick > 0);
    return { ticks, minor: [] };
  }
  if (span <= 2.2 && decades.length + between.length <= Math.max(count, 3) * 1.5) {
    const ticks = [...decades, ...between].sort((a, b) => a - b);
    return { ticks, minor };
  }
  const stride = Math.max(1, Math.ceil(decades.length / Math.max(2, count)));
  const ticks = decades.filter((_, i) => i % stride === 0);
  return { ticks, minor: [...minor, ...between, ...decades.filter((_, i) => i % stride !== 0)] };
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

/** Lowest and highest finite y (and positive y) of `ys[i0..i1)`. */
function valueExtent(ys, i0, i1) {
  const e = { min: Infinity, max: -Infinity, minPositive: Infinity, maxPositive: -Infinity };
  for (let i = i0; i < i1; i += 1) {
    const y = ys[i];
    if (!Number.isFinite(y)) continue;
    if (y < e.min) e.min = y;
    if (y > e.max) e.max = y;
    if (y > 0) {
      if (y < e.minPositive) e.minPositive = y;
      if (y > e.maxPositive) e.maxPositive = y;
    }
  }
  return e;
}

// Whole-array extents, remembered per array and extended as it grows: series arrays only ever
// grow by appending (the stream adds points), so an unzoomed redraw scans only the new values.
const extents = new WeakMap();

function wholeExtent(ys, n) {
  let cached = extents.get(ys);
  if (!cached || cached.n > n) {
    cached = { n: 0, e: valueExtent(ys, 0, 0) };
    extents.set(ys, cached);
  }
  if (cached.n < n) {
    const more = valueExtent(ys, cached.n, n);
    const e = cached.e;
    e.min = Math.min(e.min, more.min);
    e.max = Math.max(e.max, more.max);
    e.minPositive = Math.min(e.minPositive, more.minPositive);
    e.maxPositive = Math.max(e.maxPositive, more.maxPositive);
    cached.n = n;
  }
  return cached.e;
}

/** First index of sorted `xs[0..n)` with xs[i] >= x. */
function lowerBound(xs, n, x) {
  let low = 0;
  let high = n;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (xs[mid] < x) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Index of the element of sorted `xs[0..n)` nearest to `x`. */
function nearestIndex(xs, n, x) {
  const i = Math.min(n - 1, lowerBound(xs, n, x));
  if (i > 0 && Math.abs(xs[i - 1] - x) <= Math.abs(xs[i] - x)) return i - 1;
  return i;
}

const DRAG_MIN_PX = 6;

// ---- the chart --------------------------------------------------------------------------------
export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {object} options
   *   legend: element to render the legend into; readout: a live region for keyboard readouts
   *   title: what the chart shows (for its PNG); xLabel: word for the x value in the readout
   *   xTitle, yTitle: axis titles; xInteger: ticks only at whole numbers
   *   xTicks(x0, x1, count): {ticks, format(value)} instead of 1-2-5 ticks (e.g. wall time)
   *   xFormat(value): readout text for an x value; xPadding: data units of air left and right,
   *   xPadFraction: air as a fraction of the x range
   *   yFormat(value): readout text for a y value; yTickFormat(value, step): axis label
   *   logY: start with a log axis; emptyText: shown until there is data
   *   onZoom({x0, x1} | null): the user dragged out an x range, or asked for the whole run
   */
  constructor(canvas, options = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.options = { xLabel: 'x', xPadding: 0, emptyText: 'No data yet', ...options };
    this.series = [];
    this.verticals = []; // faint vertical lines (epoch boundaries): x values
    this.annotations = []; // [{x, label}] marked on the plot (a diverging step)
    this.legendEntries = null; // explicit legend, else one entry per series
    this.logY = Boolean(options.logY);
    this.xRange = null; // {x0, x1} while zoomed
    this.hover = null; // { x: data x } while the pointer or keyboard points somewhere
    this.drag = null; // {start, end} in px while a zoom range is being dragged
    this.frame = 0;
    this.width = 0;
    this.height = 0;
    this.layout = null;
    this.legendKey = '';
    charts.add(this);

    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(canvas);
    this.resize();

    canvas.addEventListener('pointerdown', (event) => this.onPointerDown(event));
    canvas.addEventListener('pointermove', (event) => this.onPointerMove(event));
    canvas.addEventListener('pointerup', (event) => this.onPointerUp(event));
    canvas.addEventListener('pointercancel', () => {
      this.drag = null;
      this.invalidate();
    });
    canvas.addEventListener('pointerleave', () => {
      if (this.drag) return;
      this.hover = null;
      this.invalidate();
    });
    canvas.addEventListener('dblclick', () => this.options.onZoom?.(null));
    // Note: annotations widen the x range (extent) so that a marked step is always in view.
    canvas.addEventListener('keydown', (event) => this.onKey(event));
    canvas.addEventListener('blur', () => {
      this.hover = null;
      this.invalidate();
    });
  }

  /**
   * series: [{label, xs, ys, color | colorIndex, width, dash, alpha, markers, band, legend,
   * hover, scale}]. xs ascending; `band`: drawn as a light min/max band (the raw values behind
   * a smoothed line), `scale: false`: left out of the y range. The arrays may grow between
   * draws, but values already there must not change (give a new array instead).
   */
  setSeries(series, { verticals = [], annotations = [], legend = null } = {}) {
    this.series = series;
    this.verticals = verticals;
    this.annotations = annotations;
    this.legendEntries = legend;
    this.renderLegend();
    this.invalidate();
  }

  setLogScale(logY) {
    this.logY = logY;
    this.invalidate();
  }

  /** Show only x0..x1 (null: everything). */
  setXRange(range) {
    this.xRange = range ? { x0: Math.min(range.x0, range.x1), x1: Math.max(range.x0, range.x1) } : null;
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

  /** Legend entries: given ones ({label, color | colorIndex, dash, faint}) or one per series. */
  legendItems() {
    if (this.legendEntries) return this.legendEntries;
    return this.series.filter((s) => s.legend !== false)
      .map((s) => ({ label: s.label, color: this.colorOf(s), dash: s.dash, faint: Boolean(s.band), light: !s.band && (s.alpha ?? 1) < 0.6 }));
  }

  renderLegend() {
    const legend = this.options.legend;
    if (!legend) return;
    const items = this.legendItems().map((item) => ({ ...item, color: item.color ?? seriesColor(item.colorIndex ?? 0) }));
    const key = JSON.stringify(items);
    if (key === this.legendKey) return;
    this.legendKey = key;
    legend.replaceChildren(
      ...items.map((entry) => {
        const item = document.createElement('span');
        item.className = 'legend-item';
        const swatch = document.createElement('span');
        swatch.className = 'legend-swatch';
        if (entry.dash) swatch.classList.add(entry.dash[0] <= 1 ? 'dotted' : 'dashed');
        if (entry.faint) swatch.classList.add('faint');
        if (entry.light) swatch.classList.add('light');
        if (entry.neutral) swatch.classList.add('neutral');
        else swatch.style.color = entry.color;
        item.append(swatch, document.createTextNode(entry.label));
        if (entry.title) item.title = entry.title;
        return item;
      }),
    );
  }

  // ---- interaction ----------------------------------------------------------------------------
  xAt(clientX) {
    const rect = this.canvas.getBoundingClientRect();
    const { left, plotWidth, x0, x1 } = this.layout;
    const px = Math.min(left + plotWidth, Math.max(left, clientX - rect.left));
    return { px, x: x0 + ((px - left) / plotWidth) * (x1 - x0) };
  }

  onPointerDown(event) {
    if (!this.layout) return;
    if (event.pointerType === 'mouse' && event.button !== 0) return;
    const { px } = this.xAt(event.clientX);
    this.drag = { start: px, end: px, pointer: event.pointerId };
    this.canvas.setPointerCapture?.(event.pointerId);
    this.pointAt(event);
  }

  onPointerMove(event) {
    if (!this.layout) return;
    if (this.drag && event.pointerId === this.drag.pointer) this.drag.end = this.xAt(event.clientX).px;
    this.pointAt(event);
  }

  onPointerUp(event) {
    const drag = this.drag;
    this.drag = null;
    if (!drag || !this.layout || event.pointerId !== drag.pointer) return;
    const end = this.xAt(event.clientX).px;
    if (Math.abs(end - drag.start) >= DRAG_MIN_PX && this.options.onZoom) {
      const { left, plotWidth, x0, x1 } = this.layout;
      const toX = (px) => x0 + ((px - left) / plotWidth) * (x1 - x0);
      this.options.onZoom({ x0: toX(Math.min(drag.start, end)), x1: toX(Math.max(drag.start, end)) });
    }
    this.invalidate();
  }

  pointAt(event) {
    if (!this.layout) return;
    this.hover = { x: this.xAt(event.clientX).x };
    this.invalidate();
  }

  primarySeries() {
    return this.series.find((s) => s.hover !== false && !s.band && Math.min(s.xs.length, s.ys.length) > 0);
  }

  zoomBy(factor) {
    if (!this.layout || !this.options.onZoom) return;
    const { x0, x1 } = this.layout;
    const full = this.fullXRange();
    const centre = this.hover?.x ?? (x0 + x1) / 2;
    const half = ((x1 - x0) * factor) / 2;
    if (full && half * 2 >= full.x1 - full.x0) {
      this.options.onZoom(null);
      return;
    }
    this.options.onZoom({ x0: centre - half, x1: centre + half });
  }

  onKey(event) {
    if (event.key === '+' || event.key === '=') {
      event.preventDefault();
      this.zoomBy(0.5);
      return;
    }
    if (event.key === '-' || event.key === '_') {
      event.preventDefault();
      this.zoomBy(2);
      return;
    }
    if (event.key === '0') {
      event.preventDefault();
      this.options.onZoom?.(null);
      return;
    }
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
      if (s.hover === false || s.band || n === 0) continue;
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

  formatX(x) {
    return this.options.xFormat ? this.options.xFormat(x) : x.toLocaleString();
  }

  readoutText(values) {
    if (!values) return '';
    const yFormat = this.options.yFormat ?? ((v) => String(v));
    const parts = values.rows.map((row) => `${row.series.label} ${yFormat(row.y)}`);
    return `${this.options.xLabel} ${this.formatX(values.x)}: ${parts.join(', ')}`;
  }

  // ---- export ---------------------------------------------------------------------------------
  /** The chart as a PNG data URL, on the page's background with its title and legend. */
  toPng() {
    theme ??= readTheme();
    const ratio = this.canvas.width / Math.max(1, this.width);
    const font = theme.font || 'sans-serif';
    const items = this.legendItems();
    const head = 30 + (items.length ? 20 : 0);
    const out = document.createElement('canvas');
    out.width = this.canvas.width;
    out.height = Math.round(this.canvas.height + head * ratio);
    const ctx = out.getContext('2d');
    ctx.scale(ratio, ratio);
    ctx.fillStyle = theme.surface || '#fff';
    ctx.fillRect(0, 0, this.width, this.height + head);
    ctx.fillStyle = theme.text;
    ctx.font = `600 13px ${font}`;
    ctx.textBaseline = 'middle';
    ctx.fillText(this.options.title ?? this.canvas.getAttribute('aria-label') ?? '', 10, 16);
    ctx.font = `11px ${font}`;
    let x = 10;
    for (const item of items) {
      ctx.strokeStyle = item.color ?? seriesColor(item.colorIndex ?? 0);
      ctx.globalAlpha = item.faint ? 0.4 : 1;
      ctx.lineWidth = 2.5;
      ctx.setLineDash(item.dash ? [4, 3] : []);
      ctx.beginPath();
      ctx.moveTo(x, 38);
      ctx.lineTo(x + 16, 38);
      ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.setLineDash([]);
      ctx.fillText(item.label, x + 21, 38);
      x += 34 + ctx.measureText(item.label).width;
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(this.canvas, 0, Math.round(head * ratio));
    return out.toDataURL('image/png');
  }

  // ---- drawing --------------------------------------------------------------------------------
  fullXRange() {
    let xMin = Infinity;
    let xMax = -Infinity;
    for (const s of this.series) {
      const n = Math.min(s.xs.length, s.ys.length);
      if (n === 0) continue;
      xMin = Math.min(xMin, s.xs[0]);
      xMax = Math.max(xMax, s.xs[n - 1]);
    }
    return Number.isFinite(xMin) ? { x0: xMin, x1: xMax } : null;
  }

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
    let { xMin: x0, xMax: x1 } = extent;
    if (!this.xRange) {
      const pad = this.options.xPadding + (this.options.xPadFraction ?? 0) * (x1 - x0);
      [x0, x1] = [x0 - pad, x1 + pad];
    }
    if (x1 - x0 < 1e-12) [x0, x1] = [x0 - 0.5, x1 + 0.5];
    const top = 10;
    const xTitle = this.options.xTitle;
    const yTitle = this.options.yTitle;
    const bottom = 22 + (xTitle ? 16 : 0);
    const plotHeightGuess = height - top - bottom;
    const yCount = Math.max(2, Math.floor(plotHeightGuess / 42));
    let y0;
    let y1;
    let yTicks;
    let yMinor = [];
    let yLabel;
    if (this.logY) {
      const lo = Math.log10(extent.yMinPositive);
      const hi = Math.log10(extent.yMaxPositive);
      const pad = Math.max(0.02, (hi - lo) * 0.06);
      y0 = 10 ** (lo - pad);
      y1 = 10 ** (hi + pad);
      ({ ticks: yTicks, minor: yMinor } = logTicks(y0, y1, yCount));
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
    const left = Math.ceil(labelWidth + 12 + (yTitle ? 16 : 0));
    const right = 12;
    const plotWidth = Math.max(10, width - left - right);
    const plotHeight = Math.max(10, height - top - bottom);
    const toPx = (x) => left + ((x - x0) / (x1 - x0)) * plotWidth;
    const ly0 = this.logY ? Math.log10(y0) : y0;
    const ly1 = this.logY ? Math.log10(y1) : y1;
    const toPy = this.logY
      ? (y) => top + (1 - (Math.log10(y) - ly0) / (ly1 - ly0)) * plotHeight
      : (y) => top + (1 - (y - ly0) / (ly1 - ly0)) * plotHeight;
    // Kept for the hover and for tests: what was drawn where.
    this.layout = { left, top, plotWidth, plotHeight, x0, x1, y0, y1, toPx, toPy, yTicks, yMinor, labels };

    // Grid and y labels.
    ctx.lineWidth = 1;
    ctx.strokeStyle = theme.grid;
    ctx.globalAlpha = 0.55;
    for (const tick of yMinor) {
      const py = Math.round(toPy(tick)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, py);
      ctx.lineTo(left + plotWidth, py);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
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

    // Faint vertical markers (epoch boundaries), where they are not too dense to read.
    const visible = this.verticals.filter((x) => x > x0 && x < x1);
    if (visible.length && plotWidth / visible.length >= 6) {
      ctx.strokeStyle = theme.axis;
      ctx.globalAlpha = 0.45;
      ctx.setLineDash([2, 3]);
      for (const x of visible) {
        const px = Math.round(toPx(x)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(px, top);
        ctx.lineTo(px, top + plotHeight);
        ctx.stroke();
      }
      ctx.setLineDash([]);
      ctx.globalAlpha = 1;
    }

    // x labels, as many as fit side by side.
    const xTickFor = (count) => {
      if (this.options.xTicks) return this.options.xTicks(x0, x1, count);
      const result = linearTicks(x0, x1, count, this.options.xInteger);
      return { ticks: result.ticks, format: (value) => formatTick(value, result.step) };
    };
    let count = Math.max(2, Math.floor(plotWidth / 50));
    let xTicks = xTickFor(count);
    for (let tries = 0; tries < 6; tries += 1) {
      const widest = Math.max(...xTicks.ticks.map((t) => ctx.measureText(xTicks.format(t)).width), 10);
      if (xTicks.ticks.length <= 1 || (plotWidth / xTicks.ticks.length) >= widest + 14) break;
      count = Math.max(2, Math.floor(count * 0.6));
      xTicks = xTickFor(count);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    this.layout.xTicks = [];
    for (const tick of xTicks.ticks) {
      const px = toPx(tick);
      if (px < left - 1 || px > left + plotWidth + 1) continue;
      ctx.fillText(xTicks.format(tick), px, top + plotHeight + 6);
      this.layout.xTicks.push(tick);
    }
    ctx.strokeStyle = theme.axis;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(top + plotHeight) + 0.5);
    ctx.lineTo(left + plotWidth, Math.round(top + plotHeight) + 0.5);
    ctx.stroke();

    // Axis titles.
    ctx.fillStyle = theme.text;
    if (xTitle) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'bottom';
      ctx.fillText(xTitle, left + plotWidth / 2, height - 1);
    }
    if (yTitle) {
      ctx.save();
      ctx.translate(11, top + plotHeight / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(yTitle, 0, 0);
      ctx.restore();
    }

    // Series, clipped to the plot area: bands first, lines on top.
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top - 2, plotWidth, plotHeight + 4);
    ctx.clip();
    for (const s of this.series) if (s.band) this.drawBand(s, toPx, toPy);
    for (const s of this.series) if (!s.band) this.drawSeries(s, toPx, toPy);
    ctx.restore();

    this.drawAnnotations(font);
    if (this.drag && Math.abs(this.drag.end - this.drag.start) >= 1) {
      ctx.fillStyle = theme.axis;
      ctx.globalAlpha = 0.25;
      ctx.fillRect(Math.min(this.drag.start, this.drag.end), top, Math.abs(this.drag.end - this.drag.start), plotHeight);
      ctx.globalAlpha = 1;
    }
    this.drawHover(font);
  }

  /** The index range of `s` inside the current x range (all of it when not zoomed). */
  visibleRange(s, n) {
    if (!this.xRange) return [0, n];
    const i0 = Math.max(0, lowerBound(s.xs, n, this.xRange.x0) - 1);
    const i1 = Math.min(n, lowerBound(s.xs, n, this.xRange.x1) + 1);
    return [i0, i1];
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
      if (n === 0) continue;
      xMin = Math.min(xMin, s.xs[0]);
      xMax = Math.max(xMax, s.xs[n - 1]);
      if (s.scale === false) continue;
      const [i0, i1] = this.visibleRange(s, n);
      const e = this.xRange ? valueExtent(s.ys, i0, i1) : wholeExtent(s.ys, n);
      yMin = Math.min(yMin, e.min);
      yMax = Math.max(yMax, e.max);
      yMinPositive = Math.min(yMinPositive, e.minPositive);
      yMaxPositive = Math.max(yMaxPositive, e.maxPositive);
    }
    if (!Number.isFinite(xMin) || !Number.isFinite(yMin)) return null;
    if (this.logY && !Number.isFinite(yMinPositive)) return null;
    for (const note of this.annotations) {
      // A marked step past the last point (the step that diverged) stays in view.
      xMin = Math.min(xMin, note.x);
      xMax = Math.max(xMax, note.x);
    }
    if (this.logY && yMaxPositive / yMinPositive < 1.0001) {
      yMinPositive /= 1.5;
      yMaxPositive *= 1.5;
    }
    if (this.xRange) [xMin, xMax] = [this.xRange.x0, this.xRange.x1];
    return { xMin, xMax, yMin, yMax, yMinPositive, yMaxPositive };
  }

  /**
   * One polyline per series. Points that fall into the same pixel column collapse to the first,
   * lowest, highest and last value of that column, which keeps every spike visible while the
   * path never has more than four vertices per column. The per-point work stays in data units
   * (the y mapping is monotonic, also on a log axis), so only those vertices are transformed.
   * A lone point (a run that failed at its second step) is drawn as a dot.
   */
  drawSeries(s, toPx, toPy) {
    const { ctx } = this;
    const n = Math.min(s.xs.length, s.ys.length);
    if (n === 0) return;
    const { xs, ys } = s;
    const logY = this.logY;
    const { left, plotWidth, x0, x1 } = this.layout;
    const [i0, i1] = this.visibleRange(s, n);
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
    let drawn = 0;
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
    for (let i = i0; i < i1; i += 1) {
      const y = ys[i];
      if (!(y === y && y !== Infinity && y !== -Infinity && y !== null) || (logY && y <= 0)) continue;
      drawn += 1;
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

    if ((s.markers && i1 - i0 <= 80) || drawn === 1) {
      ctx.fillStyle = color;
      ctx.strokeStyle = theme.surface;
      ctx.lineWidth = 1.5;
      for (let i = i0; i < i1; i += 1) {
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

  /**
   * The raw values behind a smoothed line as a light band: per group of pixel columns the
   * lowest and highest value, filled between. Sparse data (fewer points than columns) has no
   * band to speak of and is drawn as a thin line instead.
   */
  drawBand(s, toPx, toPy) {
    const n = Math.min(s.xs.length, s.ys.length);
    if (n === 0) return;
    const { ctx } = this;
    const { left, plotWidth, x0, x1 } = this.layout;
    const [i0, i1] = this.visibleRange(s, n);
    if (i1 - i0 < plotWidth / 2) {
      this.drawSeries({ ...s, band: false, width: 1, alpha: s.alpha ?? 0.35 }, toPx, toPy);
      return;
    }
    const bucketPx = 2;
    const xScale = plotWidth / (x1 - x0);
    const logY = this.logY;
    const upper = [];
    const lower = [];
    let bucket = NaN;
    let low = 0;
    let high = 0;
    let centre = 0;
    const flush = () => {
      if (Number.isNaN(bucket)) return;
      upper.push([centre, toPy(high)]);
      lower.push([centre, toPy(low)]);
    };
    for (let i = i0; i < i1; i += 1) {
      const y = s.ys[i];
      if (!Number.isFinite(y) || (logY && y <= 0)) continue;
      const px = left + (s.xs[i] - x0) * xScale;
      const b = Math.floor(px / bucketPx);
      if (b !== bucket) {
        flush();
        bucket = b;
        low = high = y;
        centre = (b + 0.5) * bucketPx;
      } else if (y < low) low = y;
      else if (y > high) high = y;
    }
    flush();
    if (!upper.length) return;
    ctx.fillStyle = this.colorOf(s);
    ctx.globalAlpha = s.alpha ?? 0.2;
    ctx.beginPath();
    ctx.moveTo(upper[0][0], upper[0][1]);
    for (const [x, y] of upper) ctx.lineTo(x, y);
    for (let i = lower.length - 1; i >= 0; i -= 1) ctx.lineTo(lower[i][0], lower[i][1] + 0.75);
    ctx.closePath();
    ctx.fill();
    ctx.globalAlpha = 1;
  }

  /** Marks like "diverged at step 812": a vertical line with its label at the top. */
  drawAnnotations(font) {
    if (!this.annotations.length || !this.layout) return;
    const { ctx } = this;
    const { left, top, plotWidth, plotHeight, toPx, x0, x1 } = this.layout;
    for (const note of this.annotations) {
      if (note.x < x0 || note.x > x1) continue;
      const px = Math.round(toPx(note.x)) + 0.5;
      ctx.strokeStyle = note.color ?? theme.danger ?? theme.text;
      ctx.fillStyle = note.color ?? theme.danger ?? theme.text;
      ctx.lineWidth = 1.5;
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(px, top);
      ctx.lineTo(px, top + plotHeight);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.font = `600 11px ${font}`;
      const width = ctx.measureText(note.label).width;
      ctx.textBaseline = 'top';
      ctx.textAlign = px + 6 + width > left + plotWidth ? 'right' : 'left';
      ctx.fillText(note.label, ctx.textAlign === 'right' ? px - 6 : px + 6, top + 4);
      ctx.font = `11px ${font}`;
    }
  }

  drawHover(font) {
    const values = this.hoverValues();
    if (!values || !this.layout) return;
    const { ctx } = this;
    const { left, top, plotWidth, plotHeight, toPx, toPy } = this.layout;
    const px = toPx(values.x);
    if (px < left - 1 || px > left + plotWidth + 1) return;
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

    const title = `${this.options.xLabel} ${this.formatX(values.x)}`;
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
