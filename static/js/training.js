// The training card: which run is watched and its status, the progress bar with an honest ETA,
// and the three live charts (loss per iteration, smoothed over a light band of the raw values;
// loss and accuracy per epoch) on a shared x axis and zoom, with any runs picked for comparison
// overlaid in their own colours.

import { LineChart } from './chart.js';
import { runLabel, runName } from './configs.js';
import { autoSmoothing, epochBoundaries, epochXs, smoothedLosses, stepXs, timeTicks, X_AXES } from './curves.js';
import { estimateRemaining } from './eta.js';
import { configSummary, formatDuration, formatInteger, formatLoss, formatPercent, formatRelativeTime } from './format.js';
import { emit, isActive, lastStep, on, state } from './state.js';

const $ = (id) => document.getElementById(id);
export const charts = {};

/** The watched run first (palette slot 0), then the compared runs in their own slots. */
export function plottedRuns() {
  const runs = [];
  if (state.watched) runs.push({ data: state.watched, colorIndex: 0 });
  for (const entry of state.compared.values()) {
    if (entry.data.id !== state.watched?.id) runs.push(entry);
  }
  return runs;
}

/** The smoothing in force: the user's, or the one chosen for the watched run's point count. */
export function smoothingWeight() {
  if (state.chart.smoothing !== null) return state.chart.smoothing;
  const points = Math.max(0, ...plottedRuns().map(({ data }) => data.losses.length));
  return autoSmoothing(points);
}

/** A failed run's diverging step, when the server recorded it (`run.diverged`: {step, loss}). */
function divergence(data) {
  const diverged = data.run?.diverged;
  if (!diverged || !Number.isInteger(diverged.step)) return null;
  return diverged;
}

function divergenceX(data, axis, step) {
  const xs = stepXs(data, axis);
  if (axis === 'step' || !xs.length) return step;
  // One step past the last stored one, on the same axis.
  const n = xs.length;
  const perStep = n > 1 ? (xs[n - 1] - xs[0]) / (data.steps[n - 1] - data.steps[0] || 1) : 1;
  return xs[n - 1] + (step - data.steps[n - 1]) * perStep;
}

function updateCharts() {
  const runs = plottedRuns();
  const comparing = runs.length > 1;
  const weight = smoothingWeight();
  const axis = state.chart.xAxis;

  const loss = [];
  const lossLegend = [];
  const annotations = [];
  for (const { data, colorIndex } of runs) {
    const xs = stepXs(data, axis);
    const name = comparing ? runLabel(data.run) : 'Loss';
    if (weight > 0) {
      loss.push({ label: comparing ? `${name} (raw)` : 'Raw', xs, ys: data.losses, colorIndex, band: true, alpha: comparing ? 0.14 : 0.22, scale: false, hover: false });
      loss.push({ label: comparing ? name : `Smoothed (${weight})`, xs, ys: smoothedLosses(data, weight), colorIndex, width: 2 });
    } else {
      // A handful of steps (a run that failed early): each one marked.
      loss.push({ label: name, xs, ys: data.losses, colorIndex, width: 1.5, markers: data.losses.length <= 30 });
    }
    if (comparing) lossLegend.push({ label: name, colorIndex, title: runLabel(data.run) });
    const diverged = divergence(data);
    if (diverged) {
      const lossText = Number.isFinite(diverged.loss) ? formatLoss(diverged.loss) : 'not a number';
      annotations.push({ x: divergenceX(data, axis, diverged.step), label: `diverged at step ${formatInteger(diverged.step)} (loss ${lossText})` });
    }
  }
  if (!comparing && weight > 0) {
    lossLegend.push({ label: `Smoothed (${weight})`, colorIndex: 0 }, { label: 'Raw: lowest to highest', colorIndex: 0, faint: true });
  }
  const watched = state.watched;
  const verticals = watched ? epochBoundaries(watched, axis) : [];
  charts.loss.setSeries(loss, { verticals, annotations, legend: lossLegend.length ? lossLegend : null });

  const epochLoss = [];
  const accuracy = [];
  const epochLegend = [];
  for (const { data, colorIndex } of runs) {
    const epochs = data.epochs.filter(Boolean);
    const xs = epochXs(data, axis);
    const trainColor = comparing ? colorIndex : 0;
    const valColor = comparing ? colorIndex : 1;
    const prefix = comparing ? `#${data.id} ` : '';
    const pick = (field) => epochs.map((e) => e[field]);
    // train: the epoch's model on training digits as they are; running: the mean over the
    // epoch's (distorted, dropped-out) batches while it learned; validation: held-out digits.
    epochLoss.push(
      { label: `${prefix}train`, xs, ys: pick('train_loss'), colorIndex: trainColor, dash: [5, 4], width: 1.75, markers: true },
      { label: `${prefix}validation`, xs, ys: pick('val_loss'), colorIndex: valColor, width: 2.25, markers: true },
      { label: `${prefix}running mean of batches`, xs, ys: pick('running_loss'), colorIndex: trainColor, dash: [1, 3], width: 1.25, alpha: 0.55 },
    );
    accuracy.push(
      { label: `${prefix}train`, xs, ys: pick('train_accuracy'), colorIndex: trainColor, dash: [5, 4], width: 1.75, markers: true },
      { label: `${prefix}validation`, xs, ys: pick('val_accuracy'), colorIndex: valColor, width: 2.25, markers: true },
      { label: `${prefix}running mean of batches`, xs, ys: pick('running_accuracy'), colorIndex: trainColor, dash: [1, 3], width: 1.25, alpha: 0.55 },
    );
    if (comparing) epochLegend.push({ label: runLabel(data.run), colorIndex });
  }
  // Comparing: one entry per run (its colour), and the line styles once.
  if (comparing) epochLegend.push({ label: 'validation', neutral: true }, { label: 'train', neutral: true, dash: true });
  charts.epochLoss.setSeries(epochLoss, { legend: comparing ? epochLegend : null });
  charts.accuracy.setSeries(accuracy, { legend: comparing ? epochLegend : null });

  const points = watched?.losses.length ?? 0;
  const epochs = watched?.epochs.filter(Boolean).length ?? 0;
  $('loss-chart').dataset.points = String(points);
  $('loss-chart').dataset.smoothing = String(weight);
  $('epoch-loss-chart').dataset.epochs = String(epochs);
  $('accuracy-chart').dataset.epochs = String(epochs);
  const latest = watched?.smoothed?.values?.at(-1) ?? watched?.losses.at(-1);
  $('loss-chart').setAttribute('aria-label', points
    ? `Training loss per iteration: ${formatInteger(points)} points, latest ${formatLoss(latest)}. Use the arrow keys to read values, plus and minus to zoom.`
    : 'Training loss per iteration: no points yet.');
  const lastEpoch = watched?.epochs.filter(Boolean).at(-1);
  $('accuracy-chart').setAttribute('aria-label', lastEpoch
    ? `Accuracy per epoch: ${epochs} epochs, latest validation accuracy ${formatPercent(lastEpoch.val_accuracy, 2)}. Use the arrow keys to read values.`
    : 'Accuracy per epoch: no epoch finished yet.');
  $('epoch-loss-chart').setAttribute('aria-label', lastEpoch
    ? `Loss per epoch: ${epochs} epochs, latest validation loss ${formatLoss(lastEpoch.val_loss)}.`
    : 'Loss per epoch: no epoch finished yet.');

  const failed = watched?.run?.status === 'failed' && !points;
  charts.loss.options.emptyText = watched
    ? (failed ? 'This run failed before its first step was stored' : 'Waiting for the first iterations…')
    : 'Start a run to watch it learn';
  const emptyEpochs = watched ? (isActive(watched.run) ? 'Appears when the first epoch ends' : 'No epoch finished') : 'No run yet';
  charts.epochLoss.options.emptyText = emptyEpochs;
  charts.accuracy.options.emptyText = emptyEpochs;
  renderSmoothing();
  renderProgress();
}

// ---- chart view: smoothing, scale, x axis, zoom ----------------------------------------------
function renderSmoothing() {
  const weight = smoothingWeight();
  const auto = state.chart.smoothing === null;
  const slider = $('smoothing');
  if (document.activeElement !== slider) slider.value = String(weight);
  $('smoothing-value').textContent = auto ? `auto ${weight}` : String(weight);
  slider.setAttribute('aria-valuetext', auto ? `${weight}, chosen for the number of points` : String(weight));
  $('smoothing-auto').hidden = auto;
}

function applyAxis() {
  const axis = X_AXES[state.chart.xAxis] ?? X_AXES.step;
  const time = state.chart.xAxis === 'time';
  const integer = state.chart.xAxis === 'epoch' || state.chart.xAxis === 'step' || state.chart.xAxis === 'samples';
  for (const chart of Object.values(charts)) {
    Object.assign(chart.options, {
      xTitle: axis.title,
      xLabel: axis.label,
      xFormat: axis.format,
      xTicks: time ? timeTicks : null,
      xInteger: integer,
      // The epoch charts' few points need air at the ends (half an epoch on the epoch axis).
      xPadding: chart !== charts.loss && state.chart.xAxis === 'epoch' ? 0.4 : 0,
      xPadFraction: chart !== charts.loss && state.chart.xAxis !== 'epoch' ? 0.05 : 0,
    });
  }
}

function applyZoom() {
  for (const chart of Object.values(charts)) chart.setXRange(state.chart.zoom);
  // The button takes the hint's place, so the charts do not move when it appears.
  $('zoom-reset').hidden = !state.chart.zoom;
  $('zoom-hint').hidden = Boolean(state.chart.zoom);
}

function setZoom(range) {
  state.chart.zoom = range;
  applyZoom();
  emit('view');
}

/** Apply state.chart to the controls and the charts (after a change, or a URL read at load). */
export function renderView() {
  $('log-scale').checked = state.chart.logScale;
  $('x-axis').value = state.chart.xAxis;
  charts.loss.setLogScale(state.chart.logScale);
  charts.epochLoss.setLogScale(state.chart.logScale);
  applyAxis();
  applyZoom();
  updateCharts();
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
  $('watched-label').textContent = run ? `· #${run.id} ${runName(run)}` : '';
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
  const finishedEpochs = data.epochs.filter(Boolean);
  const epoch = Math.min(epochs, Math.max(data.live?.epoch ?? 0, progress.epoch ?? 0, finishedEpochs.length));
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
  let etaTitle = '';
  if (running) {
    const estimate = estimateRemaining({
      stepsDone,
      stepsTotal,
      stepsPerEpoch: progress.steps_per_epoch,
      epochDurations: finishedEpochs.map((e) => e.duration_s),
      pace: data.live?.pace,
    });
    if (!estimate) {
      eta = 'estimating…';
      etaTitle = 'Measuring the pace of the first steps';
    } else if (estimate.basis === 'pace') {
      eta = `≈ ${formatDuration(estimate.seconds)}`;
      etaTitle = 'From the pace of the steps so far; the validation after each epoch is not in it yet';
    } else {
      eta = formatDuration(estimate.seconds);
      etaTitle = 'From the measured time of the last epochs';
    }
  } else if (run.status === 'paused') eta = 'paused';
  else if (run.status === 'queued') eta = 'waiting';
  else if (Number.isFinite(run.duration_s)) eta = `took ${formatDuration(run.duration_s)}`;
  $('progress-eta').textContent = eta;
  $('progress-eta').title = etaTitle;
  bar.setAttribute('aria-valuenow', String(percent));
  bar.setAttribute('aria-valuetext', `${run.status}: epoch ${epoch} of ${epochs}, ${percent}% of iterations`);
}

export function initTraining() {
  const percentTick = (value, step) => `${(value * 100).toFixed(Math.max(0, -Math.floor(Math.log10(step * 100) + 1e-9)))}%`;
  const onZoom = (range) => setZoom(range);
  charts.loss = new LineChart($('loss-chart'), {
    legend: $('loss-legend'),
    readout: $('loss-readout'),
    title: 'Training loss per iteration',
    yTitle: 'Loss (cross-entropy)',
    yFormat: formatLoss,
    logY: state.chart.logScale,
    onZoom,
  });
  charts.epochLoss = new LineChart($('epoch-loss-chart'), {
    legend: $('epoch-loss-legend'),
    readout: $('epoch-loss-readout'),
    title: 'Loss per epoch',
    yTitle: 'Loss',
    yFormat: formatLoss,
    onZoom,
  });
  charts.accuracy = new LineChart($('accuracy-chart'), {
    legend: $('accuracy-legend'),
    readout: $('accuracy-readout'),
    title: 'Accuracy per epoch',
    yTitle: 'Accuracy',
    yMax: 1,
    yFormat: (value) => formatPercent(value, 2),
    yTickFormat: percentTick,
    onZoom,
  });

  const smoothing = $('smoothing');
  smoothing.addEventListener('input', () => {
    state.chart.smoothing = Number(smoothing.value);
    updateCharts();
    emit('view');
  });
  $('smoothing-auto').addEventListener('click', () => {
    state.chart.smoothing = null;
    updateCharts();
    emit('view');
    smoothing.focus();
  });
  $('log-scale').addEventListener('change', () => {
    state.chart.logScale = $('log-scale').checked;
    renderView();
    emit('view');
  });
  $('x-axis').addEventListener('change', () => {
    state.chart.xAxis = $('x-axis').value;
    state.chart.zoom = null; // a range on another axis means nothing here
    renderView();
    emit('view');
  });
  $('zoom-reset').addEventListener('click', () => {
    setZoom(null);
    $('loss-chart').focus({ preventScroll: true });
  });

  on('watched', () => {
    renderHeader();
    updateCharts();
  });
  on('metrics', updateCharts);
  on('runs', renderWatchLive);
  on('options', () => {
    renderHeader();
    updateCharts();
  });
  $('watch-live').addEventListener('click', () => emit('watch-request', Number($('watch-live').dataset.runId)));
  on('compare', updateCharts);
  renderHeader();
  renderView();
}
