// The sweep view's two canvas plots, written for this page: parallel coordinates (one vertical
// axis per swept field and one for the metric; each trial a line through its values) and the
// metric against each field (a small scatter plot per field). A trial's colour says how good its
// metric is (vermillion: the sweep's worst, blue: its best); pruned trials are grey and drawn
// underneath, the best trial is drawn last and thicker. Hovering a line or a point names the trial;
// clicking opens its run. The trials table next to the plots says the same in text.

import { formatTick, linearTicks, logTicks } from './chart.js';

const WORST = [213, 94, 0]; // Okabe-Ito vermillion
const BEST = [0, 114, 178]; // Okabe-Ito blue
const GREY = 'rgba(140, 150, 162, 0.55)';

function theme() {
  const style = getComputedStyle(document.documentElement);
  const value = (name) => style.getPropertyValue(name).trim();
  return { grid: value('--chart-grid'), axis: value('--chart-axis'), text: value('--chart-text'),
    surface: value('--surface'), font: value('--font') || 'sans-serif' };
}

/** A trial's colour from how good its value is: 0 the sweep's worst, 1 its best. */
export function goodnessColour(goodness, alpha = 0.9) {
  const t = Math.min(1, Math.max(0, goodness));
  const [r, g, b] = WORST.map((worst, i) => Math.round(worst + (BEST[i] - worst) * t));
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

/** How a value reads on an axis: lists of layer sizes as 512-256, numbers short. */
export function formatValue(value) {
  if (Array.isArray(value)) return value.join('-') || 'none';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : String(+value.toPrecision(4));
  return String(value);
}

const key = (value) => JSON.stringify(value);

/**
 * An axis for one swept field: where a value sits (0 bottom .. 1 top) and the ticks to label.
 * A range is continuous (log if the sweep samples it so); a list of values is one evenly spaced
 * step per value, in the order given (numbers ascending).
 */
export function fieldAxis(name, param) {
  if (param.values) {
    const values = [...param.values];
    if (values.every((v) => typeof v === 'number')) values.sort((a, b) => a - b);
    const index = new Map(values.map((value, i) => [key(value), i]));
    const at = (value) => (values.length === 1 ? 0.5 : (index.get(key(value)) ?? 0) / (values.length - 1));
    return { name, at, ticks: values.map((value) => ({ at: at(value), label: formatValue(value) })) };
  }
  return continuousAxis(name, param.min, param.max, Boolean(param.log));
}

export function continuousAxis(name, min, max, log = false) {
  if (!(max > min)) [min, max] = [min - 0.5, max + 0.5];
  if (log) {
    const low = Math.log10(min);
    const span = Math.log10(max) - low;
    const at = (value) => (Math.log10(value) - low) / span;
    const ticks = logTicks(min, max, 5).ticks.map((tick) => ({ at: at(tick), label: formatTick(tick, tick) }));
    return { name, at, ticks };
  }
  const at = (value) => (value - min) / (max - min);
  const { ticks, step } = linearTicks(min, max, 5);
  return { name, at, ticks: ticks.map((tick) => ({ at: at(tick), label: formatTick(tick, step) })) };
}

/** The metric's axis over the values the trials reached, and each trial's goodness on it. */
export function metricAxis(metric, direction, trials) {
  const values = trials.map((trial) => trial.value).filter(Number.isFinite);
  const low = values.length ? Math.min(...values) : 0;
  const high = values.length ? Math.max(...values) : 1;
  const pad = (high - low) * 0.05 || 0.01;
  const axis = continuousAxis(metric, low - pad, high + pad);
  const goodness = (value) => {
    if (!Number.isFinite(value) || high === low) return 1;
    const t = (value - low) / (high - low);
    return direction === 'minimize' ? 1 - t : t;
  };
  return { ...axis, goodness };
}

function sizeCanvas(canvas, height) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(200, canvas.clientWidth);
  canvas.style.height = `${height}px`;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const context = canvas.getContext('2d');
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  return { context, width, height };
}

function drawOrder(trials, best) {
  // Grey first (pruned, no value), then by goodness, the best on top.
  const rank = (trial) => (trial.pruned || !Number.isFinite(trial.value) ? 0 : trial === best ? 2 : 1);
  return [...trials].sort((a, b) => rank(a) - rank(b) || (a.value ?? 0) - (b.value ?? 0));
}

function styleFor(trial, best, metric) {
  if (trial.pruned || !Number.isFinite(trial.value)) return { colour: GREY, width: 1.2 };
  return { colour: goodnessColour(metric.goodness(trial.value)), width: trial === best ? 3.2 : 1.8 };
}

/**
 * Parallel coordinates of `sweep` on `canvas`. Returns the hit test for pointer events:
 * (x, y) -> the trial whose line passes within a few pixels, or null.
 */
export function drawParallelCoordinates(canvas, sweep, highlighted = null) {
  const colours = theme();
  const { context: ctx, width, height } = sizeCanvas(canvas, 300);
  const names = Object.keys(sweep.spec.space);
  const trials = sweep.trials.filter((trial) => trial.params);
  const best = trials.find((trial) => trial.trial === sweep.best_trial?.trial) ?? null;
  const metric = metricAxis(sweep.spec.metric, sweep.direction, trials);
  const axes = [...names.map((name) => fieldAxis(name, sweep.spec.space[name])), metric];
  const left = 56;
  const right = 56;
  const top = 34;
  const bottom = 22;
  const xOf = (index) => left + (index * (width - left - right)) / Math.max(1, axes.length - 1);
  const yOf = (position) => top + (1 - position) * (height - top - bottom);
  ctx.font = `11px ${colours.font}`;
  ctx.lineJoin = 'round';

  const lines = [];
  for (const trial of drawOrder(trials, best)) {
    const points = names.map((name, i) => [xOf(i), yOf(axes[i].at(trial.params[name]))]);
    if (Number.isFinite(trial.value)) points.push([xOf(axes.length - 1), yOf(metric.at(trial.value))]);
    const style = styleFor(trial, best, metric);
    ctx.strokeStyle = style.colour;
    ctx.lineWidth = trial === highlighted ? style.width + 2 : style.width;
    ctx.setLineDash(trial.status === 'running' || trial.status === 'queued' ? [4, 3] : []);
    ctx.beginPath();
    points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
    lines.push({ trial, points });
  }
  ctx.setLineDash([]);

  axes.forEach((axis, index) => {
    const x = xOf(index);
    ctx.strokeStyle = colours.axis;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, yOf(0));
    ctx.lineTo(x, yOf(1));
    ctx.stroke();
    ctx.fillStyle = colours.text;
    ctx.textAlign = index === 0 ? 'left' : index === axes.length - 1 ? 'right' : 'center';
    ctx.textBaseline = 'bottom';
    ctx.font = `600 11px ${colours.font}`;
    ctx.fillText(axis.name, x + (index === 0 ? -left + 4 : index === axes.length - 1 ? right - 4 : 0), top - 16);
    ctx.font = `10px ${colours.font}`;
    ctx.textBaseline = 'middle';
    ctx.textAlign = index === axes.length - 1 ? 'left' : 'right';
    for (const tick of axis.ticks) {
      if (tick.at < -1e-9 || tick.at > 1 + 1e-9) continue;
      const y = yOf(tick.at);
      ctx.beginPath();
      ctx.moveTo(x - 3, y);
      ctx.lineTo(x + 3, y);
      ctx.stroke();
      const label = tick.label.length > 10 ? `${tick.label.slice(0, 9)}…` : tick.label;
      ctx.fillText(label, index === axes.length - 1 ? x + 6 : x - 6, y);
    }
  });
  canvas.dataset.trials = String(lines.length);
  canvas.dataset.pruned = String(trials.filter((trial) => trial.pruned).length);
  canvas.dataset.axes = String(axes.length);

  return (x, y) => {
    let nearest = null;
    for (const { trial, points } of lines) {
      for (let i = 1; i < points.length; i += 1) {
        const distance = segmentDistance(x, y, points[i - 1], points[i]);
        if (distance < 6 && (!nearest || distance <= nearest.distance)) nearest = { trial, distance };
      }
    }
    return nearest?.trial ?? null;
  };
}

function segmentDistance(x, y, [x1, y1], [x2, y2]) {
  const dx = x2 - x1;
  const dy = y2 - y1;
  const t = dx || dy ? Math.max(0, Math.min(1, ((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy))) : 0;
  return Math.hypot(x - (x1 + t * dx), y - (y1 + t * dy));
}

/** The metric against one swept field, on `canvas`; returns its hit test like the one above. */
export function drawScatter(canvas, sweep, name, highlighted = null) {
  const colours = theme();
  const { context: ctx, width, height } = sizeCanvas(canvas, 170);
  const trials = sweep.trials.filter((trial) => trial.params && Number.isFinite(trial.value));
  const best = trials.find((trial) => trial.trial === sweep.best_trial?.trial) ?? null;
  const field = fieldAxis(name, sweep.spec.space[name]);
  const metric = metricAxis(sweep.spec.metric, sweep.direction, sweep.trials);
  const left = 46;
  const right = 12;
  const top = 10;
  const bottom = 34;
  const xOf = (position) => left + (0.04 + 0.92 * position) * (width - left - right);
  const yOf = (position) => top + (1 - position) * (height - top - bottom);
  ctx.font = `10px ${colours.font}`;
  ctx.strokeStyle = colours.grid;
  ctx.fillStyle = colours.text;
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const tick of metric.ticks) {
    if (tick.at < 0 || tick.at > 1) continue;
    ctx.beginPath();
    ctx.moveTo(left, yOf(tick.at));
    ctx.lineTo(width - right, yOf(tick.at));
    ctx.stroke();
    ctx.fillText(tick.label, left - 5, yOf(tick.at));
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const every = Math.ceil(field.ticks.length / Math.max(1, Math.floor((width - left - right) / 56)));
  field.ticks.forEach((tick, i) => {
    if (tick.at < -1e-9 || tick.at > 1 + 1e-9 || i % every) return;
    ctx.fillText(tick.label, xOf(tick.at), height - bottom + 5);
  });
  ctx.font = `600 11px ${colours.font}`;
  ctx.fillText(name, (left + width - right) / 2, height - 14);
  ctx.strokeStyle = colours.axis;
  ctx.beginPath();
  ctx.moveTo(left, top);
  ctx.lineTo(left, height - bottom);
  ctx.lineTo(width - right, height - bottom);
  ctx.stroke();

  const points = [];
  for (const trial of drawOrder(trials, best)) {
    const x = xOf(field.at(trial.params[name]));
    const y = yOf(metric.at(trial.value));
    const style = styleFor(trial, best, metric);
    const radius = trial === highlighted ? 6 : trial === best ? 5 : 4;
    ctx.beginPath();
    ctx.arc(x, y, radius, 0, 2 * Math.PI);
    if (trial.pruned) {
      ctx.strokeStyle = style.colour;
      ctx.lineWidth = 1.5;
      ctx.stroke();
    } else {
      ctx.fillStyle = style.colour;
      ctx.fill();
      if (trial === best || trial === highlighted) {
        ctx.strokeStyle = colours.text;
        ctx.lineWidth = 1.5;
        ctx.stroke();
      }
    }
    points.push({ trial, x, y });
  }
  canvas.dataset.points = String(points.length);
  return (x, y) => {
    let nearest = null;
    for (const point of points) {
      const distance = Math.hypot(point.x - x, point.y - y);
      if (distance < 8 && (!nearest || distance < nearest.distance)) nearest = { trial: point.trial, distance };
    }
    return nearest?.trial ?? null;
  };
}
