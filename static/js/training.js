// The training card: which run is watched and its status, the progress bar, and the three live
// charts (loss per iteration with smoothing and log scale; loss and accuracy per epoch), with any
// runs picked for comparison overlaid in their own colours.

import { LineChart } from './chart.js';
import { configSummary, formatDuration, formatInteger, formatLoss, formatPercent, formatRelativeTime } from './format.js';
import { emit, isActive, lastStep, on, state } from './state.js';

const $ = (id) => document.getElementById(id);
let lossChart;
let epochLossChart;
let accuracyChart;

/**
 * The loss smoothed by a debiased exponential moving average (as TensorBoard does), computed
 * incrementally: only points added since the last call are processed.
 */
function smoothedLosses(data, weight) {
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

function epochSeries(data) {
  const epochs = data.epochs.filter(Boolean);
  return {
    xs: epochs.map((e) => e.epoch),
    trainLoss: epochs.map((e) => e.train_loss),
    valLoss: epochs.map((e) => e.val_loss),
    trainAccuracy: epochs.map((e) => e.train_accuracy),
    valAccuracy: epochs.map((e) => e.val_accuracy),
    runningLoss: epochs.map((e) => e.running_loss),
    runningAccuracy: epochs.map((e) => e.running_accuracy),
  };
}

/** The watched run first (palette slot 0), then the compared runs in their own slots. */
function plottedRuns() {
  const runs = [];
  if (state.watched) runs.push({ data: state.watched, colorIndex: 0 });
  for (const entry of state.compared.values()) {
    if (entry.data.id !== state.watched?.id) runs.push(entry);
  }
  return runs;
}

function updateCharts() {
  const runs = plottedRuns();
  const comparing = runs.length > 1;
  const weight = state.chart.smoothing;

  const loss = [];
  for (const { data, colorIndex } of runs) {
    const name = comparing ? `#${data.id}` : 'Loss';
    if (weight > 0) {
      loss.push({ label: comparing ? `${name} raw` : 'Raw', xs: data.steps, ys: data.losses, colorIndex, width: 1, alpha: comparing ? 0.18 : 0.28, hover: !comparing, legend: !comparing });
      loss.push({ label: comparing ? name : 'Smoothed', xs: data.steps, ys: smoothedLosses(data, weight), colorIndex, width: 2 });
    } else {
      loss.push({ label: name, xs: data.steps, ys: data.losses, colorIndex, width: 1.5 });
    }
  }
  lossChart.setSeries(loss);

  const epochLoss = [];
  const accuracy = [];
  for (const { data, colorIndex } of runs) {
    const e = epochSeries(data);
    const trainColor = comparing ? colorIndex : 0;
    const valColor = comparing ? colorIndex : 1;
    const prefix = comparing ? `#${data.id} ` : '';
    // train: the epoch's model on training digits as they are; running: the mean over the
    // epoch's (distorted, dropped-out) batches while it learned; validation: held-out digits.
    epochLoss.push(
      { label: `${prefix}train`, xs: e.xs, ys: e.trainLoss, colorIndex: trainColor, dash: [5, 4], width: 1.75, markers: true },
      { label: `${prefix}validation`, xs: e.xs, ys: e.valLoss, colorIndex: valColor, width: 2.25, markers: true },
      { label: `${prefix}running mean of batches`, xs: e.xs, ys: e.runningLoss, colorIndex: trainColor, dash: [1, 3], width: 1.25, alpha: 0.55 },
    );
    accuracy.push(
      { label: `${prefix}train`, xs: e.xs, ys: e.trainAccuracy, colorIndex: trainColor, dash: [5, 4], width: 1.75, markers: true },
      { label: `${prefix}validation`, xs: e.xs, ys: e.valAccuracy, colorIndex: valColor, width: 2.25, markers: true },
      { label: `${prefix}running mean of batches`, xs: e.xs, ys: e.runningAccuracy, colorIndex: trainColor, dash: [1, 3], width: 1.25, alpha: 0.55 },
    );
  }
  epochLossChart.setSeries(epochLoss);
  accuracyChart.setSeries(accuracy);

  const watched = state.watched;
  const points = watched?.losses.length ?? 0;
  const epochs = watched?.epochs.filter(Boolean).length ?? 0;
  $('loss-chart').dataset.points = String(points);
  $('epoch-loss-chart').dataset.epochs = String(epochs);
  $('accuracy-chart').dataset.epochs = String(epochs);
  const latest = watched?.smoothed?.values?.at(-1) ?? watched?.losses.at(-1);
  $('loss-chart').setAttribute('aria-label', points
    ? `Training loss per iteration: ${formatInteger(points)} points, latest ${formatLoss(latest)}. Use the arrow keys to read values.`
    : 'Training loss per iteration: no points yet.');
  const lastEpoch = watched?.epochs.filter(Boolean).at(-1);
  $('accuracy-chart').setAttribute('aria-label', lastEpoch
    ? `Accuracy per epoch: ${epochs} epochs, latest validation accuracy ${lastEpoch.val_accuracy === null ? 'none (no digits held out)' : formatPercent(lastEpoch.val_accuracy, 2)}. Use the arrow keys to read values.`
    : 'Accuracy per epoch: no epoch finished yet.');
  $('epoch-loss-chart').setAttribute('aria-label', lastEpoch
    ? `Loss per epoch: ${epochs} epochs, latest validation loss ${lastEpoch.val_loss === null ? 'none (no digits held out)' : formatLoss(lastEpoch.val_loss)}.`
    : 'Loss per epoch: no epoch finished yet.');

  const empty = watched ? 'Waiting for the first iterations…' : 'Start a run to watch it learn';
  lossChart.options.emptyText = empty;
  const emptyEpochs = watched ? 'Appears when the first epoch ends' : 'No run yet';
  epochLossChart.options.emptyText = emptyEpochs;
  accuracyChart.options.emptyText = emptyEpochs;
  renderProgress();
}

// ---- header and progress -------------------------------------------------------------------
/** Watching an older run while another trains: offer the way back to the live one. */
function renderWatchLive() {
  const live = state.runs.find((r) => r.status === 'running') ?? state.runs.find(isActive);
  const button = $('watch-live');
  button.hidden = !live || live.id === state.watched?.id;
  if (live) {
    button.textContent = `Run #${live.id} is ${live.status}: watch it`;
    button.dataset.runId = String(live.id);
  }
}

function renderHeader() {
  renderWatchLive();
  const run = state.watched?.run;
  const badge = $('run-status');
  const status = run?.status ?? 'idle';
  badge.textContent = status;
  badge.dataset.status = run ? status : 'none';
  badge.dataset.runId = run ? String(run.id) : '';
  $('watched-label').textContent = run ? `· run #${run.id}` : '';
  if (!run) {
    $('run-summary').textContent = 'No run yet. Pick a preset and press Start.';
    return;
  }
  const parts = [configSummary(run.config)];
  if (run.status === 'failed' && run.reason) parts.push(`failed: ${run.reason}`);
  else if (run.reason && run.status !== 'completed') parts.push(run.reason);
  else if (run.created_at) parts.push(`created ${formatRelativeTime(run.created_at)}`);
  $('run-summary').textContent = parts.filter(Boolean).join(' · ');
}

/** Steps a second over the recent window of [time ms, steps done] samples (null if too short). */
function stepsPerSecond(pace) {
  if (!pace || pace.length < 2) return null;
  const [t0, s0] = pace[0];
  const [t1, s1] = pace[pace.length - 1];
  if (t1 - t0 < 2000 || s1 <= s0) return null;
  return (s1 - s0) / ((t1 - t0) / 1000);
}

function renderProgress() {
  const data = state.watched;
  const run = data?.run;
  const bar = $('progress');
  if (!run) {
    bar.dataset.status = 'none';
    $('progress-fill').style.width = '0%';
    for (const id of ['progress-epoch', 'progress-step', 'progress-speed', 'progress-eta']) $(id).textContent = '–';
    bar.setAttribute('aria-valuenow', '0');
    bar.setAttribute('aria-valuetext', 'No run');
    return;
  }
  const progress = run.progress ?? {};
  const epochs = progress.epochs ?? run.config?.epochs ?? 0;
  const stepsTotal = progress.steps_total ?? 0;
  const stepsDone = Math.max(lastStep(data) + 1, progress.step ?? 0);
  const epoch = Math.min(epochs, Math.max(data.live?.epoch ?? 0, progress.epoch ?? 0, data.epochs.filter(Boolean).length));
  const finished = run.status === 'completed';
  const fraction = finished ? 1 : stepsTotal ? Math.min(1, stepsDone / stepsTotal) : 0;
  const percent = Math.round(fraction * 1000) / 10;
  bar.dataset.status = run.status;
  $('progress-fill').style.width = `${percent}%`;
  $('progress-epoch').textContent = epochs ? `${epoch} / ${epochs}` : '–';
  $('progress-step').textContent = stepsTotal
    ? `${formatInteger(stepsDone)} / ${formatInteger(stepsTotal)}`
    : formatInteger(stepsDone);
  const speed = data.live?.samples_per_second ?? progress.samples_per_second;
  const running = run.status === 'running';
  $('progress-speed').textContent = running && Number.isFinite(speed) ? formatInteger(speed) : '–';
  let eta = '–';
  if (running) {
    const remaining = Math.max(0, stepsTotal - stepsDone);
    const pace = stepsPerSecond(data.live?.pace);
    const batch = run.config?.batch_size ?? 0;
    if (pace) eta = formatDuration(remaining / pace);
    else if (Number.isFinite(progress.eta_s)) eta = formatDuration(progress.eta_s);
    else if (Number.isFinite(speed) && speed > 0 && batch) eta = formatDuration((remaining * batch) / speed);
  } else if (run.status === 'paused') eta = 'paused';
  else if (run.status === 'queued') eta = 'waiting';
  else if (Number.isFinite(run.duration_s)) eta = `took ${formatDuration(run.duration_s)}`;
  $('progress-eta').textContent = eta;
  bar.setAttribute('aria-valuenow', String(percent));
  bar.setAttribute('aria-valuetext', `${run.status}: epoch ${epoch} of ${epochs}, ${percent}% of iterations`);
}

export function initTraining() {
  lossChart = new LineChart($('loss-chart'), {
    legend: $('loss-legend'),
    readout: $('loss-readout'),
    xLabel: 'Step',
    yFormat: formatLoss,
    logY: state.chart.logScale,
  });
  epochLossChart = new LineChart($('epoch-loss-chart'), {
    legend: $('epoch-loss-legend'),
    readout: $('epoch-loss-readout'),
    xLabel: 'Epoch',
    xInteger: true,
    xPadding: 0.4,
    yFormat: formatLoss,
  });
  const percentTick = (value, step) => `${(value * 100).toFixed(Math.max(0, -Math.floor(Math.log10(step * 100) + 1e-9)))}%`;
  accuracyChart = new LineChart($('accuracy-chart'), {
    legend: $('accuracy-legend'),
    readout: $('accuracy-readout'),
    xLabel: 'Epoch',
    xInteger: true,
    xPadding: 0.4,
    yMax: 1,
    yFormat: (value) => formatPercent(value, 2),
    yTickFormat: percentTick,
  });

  const smoothing = $('smoothing');
  smoothing.value = String(state.chart.smoothing);
  smoothing.addEventListener('input', () => {
    state.chart.smoothing = Number(smoothing.value);
    $('smoothing-value').textContent = state.chart.smoothing.toFixed(2);
    updateCharts();
  });
  $('smoothing-value').textContent = state.chart.smoothing.toFixed(2);
  const logScale = $('log-scale');
  logScale.checked = state.chart.logScale;
  logScale.addEventListener('change', () => {
    state.chart.logScale = logScale.checked;
    lossChart.setLogScale(logScale.checked);
    epochLossChart.setLogScale(logScale.checked);
  });

  on('watched', () => {
    renderHeader();
    updateCharts();
  });
  on('metrics', updateCharts);
  on('runs', renderWatchLive);
  $('watch-live').addEventListener('click', () => emit('watch-request', Number($('watch-live').dataset.runId)));
  on('compare', updateCharts);
  renderHeader();
  updateCharts();
}
