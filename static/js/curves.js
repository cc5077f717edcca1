// What the charts plot of a run, as plain functions of its RunData (state.js): the smoothed loss,
// the smoothing chosen from how many points there are, each step's and each epoch's position on
// the chosen x axis (step, epoch, samples seen, wall time), and where epochs begin.

import { formatDuration, formatInteger } from './format.js';
import { linearTicks } from './chart.js';

/** The x axes the charts offer; `title` is the axis title, `label` the readout's word. */
export const X_AXES = {
  step: { title: 'Step', label: 'Step', format: (x) => formatInteger(x) },
  epoch: { title: 'Epoch', label: 'Epoch', format: (x) => (Number.isInteger(x) ? String(x) : x.toFixed(2)) },
  samples: { title: 'Training samples seen', label: 'Samples', format: (x) => formatInteger(x) },
  time: { title: 'Wall time (within an epoch: interpolated)', label: 'Time', format: (x) => formatDuration(x) },
};

/**
 * The smoothing a curve of `points` points reads best with: an exponential moving average over
 * about 1/70 of the run (TensorBoard's weight w averages over about 1 / (1 - w) points), none for
 * short curves. 1 - w is rounded to one significant digit, so that the weight changes only now
 * and then while a run grows (0.5, 0.7, 0.8, 0.9, 0.95 ... 0.99 ... 0.999).
 */
export function autoSmoothing(points) {
  const window = points / 70;
  if (window <= 1.5) return 0;
  const rest = Number((1 / window).toPrecision(1));
  return Math.min(0.999, +(1 - rest).toFixed(4));
}

/**
 * The loss smoothed by a debiased exponential moving average (as TensorBoard does), computed
 * incrementally: only points added since the last call are processed. Non-finite values keep
 * the previous smoothed value.
 */
export function smoothedLosses(data, weight) {
  let cache = data.smoothed;
  if (!cache || cache.weight !== weight || cache.values.length > data.losses.length) {
    cache = data.smoothed = { weight, values: [], accumulator: 0, count: 0 };
  }
  for (let i = cache.values.length; i < data.losses.length; i += 1) {
    const loss = data.losses[i];
    if (!Number.isFinite(loss)) {
      cache.values.push(cache.values.length ? cache.values[cache.values.length - 1] : loss);
      continue;
    }
    cache.accumulator = cache.accumulator * weight + (1 - weight) * loss;
    cache.count += 1;
    cache.values.push(cache.accumulator / (1 - weight ** cache.count));
  }
  return cache.values;
}

const stepsPerEpochOf = (data) => data.run?.progress?.steps_per_epoch || null;
const batchOf = (data) => data.run?.config?.batch_size || 1;
const finishedEpochs = (data) => data.epochs.filter(Boolean);

/** Seconds since the run started at the end of each finished epoch (their durations added). */
function epochEndTimes(data) {
  let total = 0;
  return finishedEpochs(data).map((epoch) => (total += epoch.duration_s ?? 0));
}

/** Seconds one step takes in the epoch at `index` (0-based): measured, or the latest measured. */
function secondsPerStep(data, index, spe) {
  const epochs = finishedEpochs(data);
  const epoch = epochs[index] ?? epochs[epochs.length - 1];
  if (epoch && spe) return epoch.duration_s / spe;
  // Nothing finished yet: the time since the start spread over the steps done so far.
  const started = Date.parse(data.run?.started_at ?? '');
  const steps = data.steps.length;
  if (Number.isFinite(started) && steps) return Math.max(0, (Date.now() - started) / 1000) / steps;
  return 0;
}

/** x of step `step` on `axis` (the end of that step: epoch 1 ends at x = 1). */
function stepX(data, axis, step, ends) {
  const spe = stepsPerEpochOf(data);
  switch (axis) {
    case 'epoch':
      return spe ? (step + 1) / spe : step;
    case 'samples':
      return (step + 1) * batchOf(data);
    case 'time': {
      if (!spe) return step * secondsPerStep(data, 0, null);
      const index = Math.floor(step / spe); // 0-based epoch of this step
      const perStep = secondsPerStep(data, index, spe);
      // The epoch starts when the one before ended (measured, or extrapolated past the last).
      const start = index === 0 ? 0
        : ends[index - 1] ?? (ends.at(-1) ?? 0) + (index - ends.length) * spe * perStep;
      return start + (step - index * spe + 1) * perStep;
    }
    default:
      return step;
  }
}

/**
 * The x of every step of the run on `axis`, in step order. Cached per run and axis and extended
 * as points arrive; rebuilt when an epoch ends (wall time is interpolated within epochs).
 */
export function stepXs(data, axis) {
  if (axis === 'step') return data.steps;
  const epochs = finishedEpochs(data).length;
  const key = `${axis}:${epochs}:${stepsPerEpochOf(data)}`;
  let cache = data.xCache;
  if (!cache || cache.key !== key || cache.xs.length > data.steps.length) {
    cache = data.xCache = { key, xs: [] };
  }
  if (axis === 'time' && cache.xs.length < data.steps.length && !finishedEpochs(data).length) {
    cache.xs = []; // the first epoch's pace is re-estimated as it goes
  }
  const ends = axis === 'time' ? epochEndTimes(data) : [];
  for (let i = cache.xs.length; i < data.steps.length; i += 1) cache.xs.push(stepX(data, axis, data.steps[i], ends));
  return cache.xs;
}

/** The x of each finished epoch's end on `axis`, for the per-epoch charts. */
export function epochXs(data, axis) {
  const spe = stepsPerEpochOf(data);
  const ends = epochEndTimes(data);
  return finishedEpochs(data).map((epoch, i) => {
    switch (axis) {
      case 'step':
        return spe ? epoch.epoch * spe - 1 : epoch.epoch;
      case 'samples':
        return spe ? epoch.epoch * spe * batchOf(data) : epoch.epoch;
      case 'time':
        return ends[i];
      default:
        return epoch.epoch;
    }
  });
}

/** Where each epoch after the first begins, on `axis`: faint markers on the loss chart. */
export function epochBoundaries(data, axis) {
  const spe = stepsPerEpochOf(data);
  if (!spe || !data.steps.length) return [];
  const last = data.steps[data.steps.length - 1];
  const xs = stepXs(data, axis);
  const boundaries = [];
  for (let epoch = 1; epoch * spe <= last; epoch += 1) {
    const index = epoch * spe - 1 - data.steps[0];
    if (index >= 0 && index < xs.length) boundaries.push(xs[index]);
  }
  return boundaries;
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400];

/** Ticks for a wall-time axis at round durations (10 s, 1 min, 5 min ...), labelled as such. */
export function timeTicks(x0, x1, count) {
  const raw = (x1 - x0) / Math.max(1, count);
  const step = TIME_STEPS.find((s) => s >= raw) ?? linearTicks(x0, x1, count).step;
  const ticks = [];
  for (let tick = Math.ceil(x0 / step) * step; tick <= x1 + 1e-9; tick += step) ticks.push(tick);
  const format = (value) => {
    if (value >= 3600) return `${Math.floor(value / 3600)}h${String(Math.round((value % 3600) / 60)).padStart(2, '0')}`;
    if (value >= 60) return `${Math.floor(value / 60)}:${String(Math.round(value % 60)).padStart(2, '0')}`;
    return `${Math.round(value)}s`;
  };
  return { ticks, format };
}
