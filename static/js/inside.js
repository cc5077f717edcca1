// The card "Inside the network": the watched run's layer statistics, live. They come from the
// worker (engine/inside.py) through the run's stream as `layers` messages, and from
// GET /api/runs/{id}/layers for what happened before the page looked (a page opened mid-run
// draws everything so far). Drawn here: distributions over time per layer (percentile bands),
// the gradient norm and the update ratio (log scale), the dead ReLU fraction, the learning rate,
// the first layer's weights as images with an epoch slider and how strongly each of those units
// answers each digit class, and which hidden units fire for the digit drawn on the canvas.

import { api } from './api.js';
import { BandChart } from './bands.js';
import { LineChart } from './chart.js';
import { formatInteger } from './format.js';
import { on, state } from './state.js';

const $ = (id) => document.getElementById(id);
const KINDS = { weights: 'Weights', gradients: 'Gradients', activations: 'Activations' };
const TILE = 28;

const view = {
  runId: null,
  bySteps: new Map(), // step -> snapshot (the `layers` message without its envelope)
  snapshots: [], // sorted by step
  lr: new Map(), // step -> learning rate (snapshots and live iterations)
  kind: 'weights',
  epochIndex: null, // the slider's position among epoch snapshots; null: follow the newest
  loading: 0, // a token: history fetched for an older run is dropped
  frame: 0,
};
let bandCharts = [];
let gradChart;
let ratioChart;
let deadChart;
let lrChart;
let hiddenRequest = 0;

// ---- data -----------------------------------------------------------------------------------
function reset(runId) {
  view.runId = runId;
  view.bySteps = new Map();
  view.snapshots = [];
  view.lr = new Map();
  view.epochIndex = null;
  view.loading += 1;
}

function add(snapshot) {
  const { type: _type, run_id: _runId, seq: _seq, ...record } = snapshot;
  view.bySteps.set(record.step, record);
  view.lr.set(record.step, record.learning_rate);
}

function sortSnapshots() {
  view.snapshots = [...view.bySteps.values()].sort((a, b) => a.step - b.step);
}

/** Every stored snapshot after the newest one the page has, a page at a time. */
async function loadHistory() {
  const runId = view.runId;
  if (runId === null) return;
  const token = view.loading;
  let after = view.snapshots.length ? view.snapshots[view.snapshots.length - 1].step : -1;
  try {
    for (;;) {
      const page = await api.layers(runId, after);
      if (token !== view.loading) return;
      for (const snapshot of page.snapshots) add(snapshot);
      sortSnapshots();
      schedule();
      if (!page.more || !page.snapshots.length) return;
      after = page.snapshots[page.snapshots.length - 1].step;
    }
  } catch (error) {
    $('inside-summary').textContent = `Could not load the layer statistics: ${error.message}`;
  }
}

function onWatched() {
  const runId = state.watched?.id ?? null;
  if (runId === view.runId) return;
  reset(runId);
  schedule();
  if (runId !== null) loadHistory();
}

function onLayers(message) {
  if (message.run_id !== view.runId) return;
  add(message);
  sortSnapshots();
  schedule();
}

/** The live learning rate of the newest step, between snapshots. */
function onMetrics() {
  const data = state.watched;
  if (!data || data.id !== view.runId || !data.steps.length) return;
  const rate = data.live?.learning_rate;
  if (Number.isFinite(rate)) {
    view.lr.set(data.steps[data.steps.length - 1], rate);
    schedule();
  }
}

// ---- drawing --------------------------------------------------------------------------------
function schedule() {
  if (view.frame) return;
  view.frame = requestAnimationFrame(() => {
    view.frame = 0;
    render();
  });
}

function layerNames() {
  const last = view.snapshots[view.snapshots.length - 1];
  return last ? last.layers.map((layer) => ({ name: layer.name, shape: layer.shape })) : [];
}

function renderBands() {
  const container = $('layer-histograms');
  const layers = layerNames();
  if (bandCharts.length !== layers.length || bandCharts.some((c, i) => c.name !== layers[i].name)) {
    container.replaceChildren();
    bandCharts = layers.map((layer, index) => {
      const figure = document.createElement('figure');
      figure.className = 'band-figure';
      const caption = document.createElement('figcaption');
      caption.className = 'band-caption';
      const frame = document.createElement('div');
      frame.className = 'inside-frame';
      const canvas = document.createElement('canvas');
      canvas.className = 'band-chart';
      canvas.setAttribute('role', 'img');
      frame.append(canvas);
      figure.append(caption, frame);
      container.append(figure);
      return { name: layer.name, caption, canvas, chart: new BandChart(canvas, { colorIndex: index }) };
    });
  }
  const steps = view.snapshots.map((s) => s.step);
  bandCharts.forEach((entry, index) => {
    const histograms = view.snapshots.map((s) => s.layers[index]?.[view.kind]);
    entry.chart.setData(steps, histograms);
    const [inputs, units] = layers[index].shape;
    entry.caption.textContent = `${entry.name} (${formatInteger(inputs)} → ${formatInteger(units)})`;
    const latest = entry.chart.latest();
    // (No form field's words in these labels: the form's fields are found by their labels.)
    entry.canvas.setAttribute('aria-label', latest
      ? `Percentile bands of ${entry.name} over ${steps.length} steps; at step ${latest.step} the median is ${latest.values[4].toPrecision(3)}, the middle 68% lies between ${latest.values[2].toPrecision(3)} and ${latest.values[6].toPrecision(3)}.`
      : `Nothing recorded for ${entry.name}.`);
  });
  if (!layers.length) {
    container.replaceChildren(emptyNote());
    bandCharts = [];
  }
}

function emptyNote() {
  const note = document.createElement('p');
  note.className = 'empty';
  const run = state.watched?.run;
  const every = run?.config?.stats_every;
  if (!run) note.textContent = 'Open or start a run to see its layers.';
  else if (every === 0) note.textContent = 'This run records no layer statistics (stats_every is 0).';
  else if (every === undefined) note.textContent = 'This run is older than the layer statistics: start a new run to see them.';
  else note.textContent = `The statistics appear after the first step, then every ${every} steps and after every epoch.`;
  return note;
}

function lineSeries(pick, { positive = false } = {}) {
  const layers = layerNames();
  return layers.map((layer, index) => {
    const xs = [];
    const ys = [];
    for (const snapshot of view.snapshots) {
      const value = pick(snapshot.layers[index]);
      if (value === null || value === undefined || !Number.isFinite(value) || (positive && value <= 0)) continue;
      xs.push(snapshot.step);
      ys.push(value);
    }
    return { label: layer.name, xs, ys, colorIndex: index, width: 1.75 };
  }).filter((series) => series.xs.length);
}

function setSeries(chart, id, series) {
  chart.setSeries(series);
  $(id).dataset.points = String(series.reduce((sum, s) => sum + s.xs.length, 0)); // for tests
}

function renderLines() {
  setSeries(gradChart, 'grad-norm-chart', lineSeries((layer) => layer.grad_norm, { positive: true }));
  setSeries(ratioChart, 'update-ratio-chart', lineSeries((layer) => layer.update_ratio, { positive: true }));
  setSeries(deadChart, 'dead-units-chart', lineSeries((layer) => layer.dead_fraction));
  const steps = [...view.lr.keys()].sort((a, b) => a - b);
  setSeries(lrChart, 'lr-chart', steps.length ? [{ label: 'learning rate', xs: steps, ys: steps.map((s) => view.lr.get(s)), colorIndex: 4, width: 1.75 }] : []);
}

/** A unit's weights (784 signed bytes) as a diverging image: blue negative, red positive. */
function paintTile(image, x, y, pixels, scale) {
  for (let row = 0; row < TILE; row += 1) {
    for (let column = 0; column < TILE; column += 1) {
      const t = pixels[row * TILE + column] / 127;
      const [r, g, b] = t >= 0
        ? [247 - (247 - 178) * t, 247 - (247 - 24) * t, 247 - (247 - 43) * t]
        : [247 + (247 - 33) * t, 247 + (247 - 102) * t, 247 + (247 - 172) * t];
      for (let dy = 0; dy < scale; dy += 1) {
        for (let dx = 0; dx < scale; dx += 1) {
          const offset = ((y + row * scale + dy) * image.width + (x + column * scale + dx)) * 4;
          image.data[offset] = r;
          image.data[offset + 1] = g;
          image.data[offset + 2] = b;
          image.data[offset + 3] = 255;
        }
      }
    }
  }
}

const decodeTile = (text) => new Int8Array(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)).buffer);

function drawTiles(canvas, tiles, perRow, scale = 2, gap = 2) {
  const rows = Math.ceil(tiles.length / perRow);
  const size = TILE * scale;
  canvas.width = Math.max(1, perRow * (size + gap) - gap);
  canvas.height = Math.max(1, rows * (size + gap) - gap);
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(canvas.width, canvas.height);
  tiles.forEach((tile, index) => {
    paintTile(image, (index % perRow) * (size + gap), Math.floor(index / perRow) * (size + gap), decodeTile(tile), scale);
  });
  ctx.putImageData(image, 0, 0);
}

function drawClassActivations(canvas, rows) {
  const units = rows.find((row) => row)?.length ?? 0;
  const cell = 7;
  const label = 16;
  canvas.width = label + units * cell;
  canvas.height = 10 * cell * 2;
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const max = Math.max(1e-9, ...rows.flatMap((row) => row ?? []));
  const style = getComputedStyle(document.documentElement);
  ctx.fillStyle = style.getPropertyValue('--chart-text').trim();
  ctx.font = '11px sans-serif';
  ctx.textBaseline = 'middle';
  rows.forEach((row, digit) => {
    ctx.fillStyle = style.getPropertyValue('--chart-text').trim();
    ctx.fillText(String(digit), 2, digit * cell * 2 + cell);
    (row ?? []).forEach((value, unit) => {
      const t = Math.max(0, value) / max;
      ctx.fillStyle = `rgba(213, 94, 0, ${t.toFixed(3)})`;
      ctx.fillRect(label + unit * cell, digit * cell * 2, cell - 1, cell * 2 - 1);
    });
  });
}

function epochSnapshots() {
  return view.snapshots.filter((s) => s.epoch_end && s.first_layer);
}

function renderEpochView() {
  const epochs = epochSnapshots();
  const slider = $('weight-epoch-slider');
  slider.max = String(Math.max(1, epochs.length));
  slider.disabled = epochs.length < 2;
  if (!epochs.length) {
    $('weight-epoch-label').textContent = 'The first layer appears at the end of the first epoch.';
    $('weight-tiles').hidden = true;
    $('class-activations').hidden = true;
    return;
  }
  const index = view.epochIndex === null ? epochs.length - 1 : Math.min(view.epochIndex, epochs.length - 1);
  slider.value = String(index + 1);
  const snapshot = epochs[index];
  const first = snapshot.first_layer;
  $('weight-tiles').hidden = false;
  $('class-activations').hidden = false;
  drawTiles($('weight-tiles'), first.images, 8);
  drawClassActivations($('class-activations'), first.class_activations);
  const shown = first.images.length;
  $('weight-epoch-label').textContent = `Epoch ${snapshot.epoch} (step ${formatInteger(snapshot.step)}): `
    + `${shown} of ${formatInteger(first.units)} units of ${snapshot.layers[0].name}`;
  slider.setAttribute('aria-valuetext', `epoch ${snapshot.epoch}`);
}

function renderSummary() {
  const run = state.watched?.run;
  const last = view.snapshots[view.snapshots.length - 1];
  $('inside-summary').textContent = !run ? 'No run open.'
    : !last ? 'No statistics yet.'
      : `${formatInteger(view.snapshots.length)} measurements, the latest at step ${formatInteger(last.step)} (epoch ${last.epoch}); activations on 256 held-out validation digits.`;
  $('inside-network').dataset.snapshots = String(view.snapshots.length);
  $('inside-network').dataset.lastStep = last ? String(last.step) : '';
}

function render() {
  renderSummary();
  renderBands();
  renderLines();
  renderEpochView();
}

// ---- the digit on the canvas -----------------------------------------------------------------
function toBase64Url(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

async function onPrediction(answer) {
  const panel = $('hidden-activations');
  const run = state.watched?.run;
  if (!answer?.input || !run?.has_model) {
    $('hidden-summary').textContent = run?.has_model === false
      ? 'The watched run has no model yet: its first epoch saves one.'
      : 'Draw a digit to see which hidden units of the watched run fire for it.';
    $('hidden-units').replaceChildren();
    return;
  }
  const request = ++hiddenRequest;
  const pixels = Uint8Array.from(answer.input, (v) => Math.round(Math.min(1, Math.max(0, v)) * 255));
  try {
    const hidden = await api.hidden(run.id, toBase64Url(pixels));
    if (request !== hiddenRequest) return;
    const strongest = hidden.top[0]?.activation ?? 0;
    $('hidden-summary').textContent = `${formatInteger(hidden.active)} of ${formatInteger(hidden.units)} `
      + `units of the first layer fire for your drawing (run #${hidden.run_id}'s model, epoch `
      + `${hidden.model_epoch ?? '?'}). The strongest, with what each looks for:`;
    $('hidden-units').replaceChildren(...hidden.top.map((unit) => {
      const item = document.createElement('li');
      item.className = 'hidden-unit';
      const canvas = document.createElement('canvas');
      drawTiles(canvas, [unit.image], 1, 2, 0);
      canvas.setAttribute('role', 'img');
      canvas.setAttribute('aria-label', `weights of unit ${unit.unit}`);
      const bar = document.createElement('span');
      bar.className = 'hidden-bar';
      bar.style.setProperty('--fill', `${strongest > 0 ? Math.max(0, unit.activation / strongest) * 100 : 0}%`);
      const text = document.createElement('span');
      text.className = 'hidden-text';
      text.textContent = `unit ${unit.unit}: ${unit.activation.toFixed(2)}`;
      item.append(canvas, text, bar);
      return item;
    }));
    panel.dataset.units = String(hidden.top.length);
  } catch (error) {
    if (request === hiddenRequest) $('hidden-summary').textContent = `Could not ask the model: ${error.message}`;
  }
}

// ---- start ----------------------------------------------------------------------------------
const CARD = `
  <div class="card-head">
    <div class="card-title">
      <h2 id="inside-title">Inside the network</h2>
      <p class="muted small" id="inside-summary">No run open.</p>
    </div>
    <div class="segmented" role="group" aria-label="Distribution of">
      ${Object.entries(KINDS).map(([kind, label]) => `<button type="button" class="btn btn-small btn-quiet" data-kind="${kind}" aria-pressed="${kind === 'weights'}">${label}</button>`).join('')}
    </div>
  </div>
  <h3 class="inside-heading">Distributions over time <span class="muted small">(percentile bands: min–max, 7–93%, 16–84%, 31–69%, median)</span></h3>
  <div id="layer-histograms" class="band-grid" data-testid="layer-histograms"></div>
  <div class="inside-charts">
    <figure><figcaption>Gradient norm ‖∂L/∂W‖ <span class="muted small">(log)</span></figcaption>
      <div class="inside-legend" id="grad-norm-legend"></div><div class="inside-frame"><canvas id="grad-norm-chart" class="inside-chart" data-testid="grad-norm-chart" tabindex="0" role="img" aria-label="Gradient norm per layer over the steps"></canvas></div></figure>
    <figure><figcaption>Update ratio ‖ΔW‖/‖W‖ <span class="muted small">(log; ~1e-3 is healthy)</span></figcaption>
      <div class="inside-legend" id="update-ratio-legend"></div><div class="inside-frame"><canvas id="update-ratio-chart" class="inside-chart" data-testid="update-ratio-chart" tabindex="0" role="img" aria-label="Update-to-weight ratio per layer over the steps"></canvas></div></figure>
    <figure><figcaption>Dead ReLU units <span class="muted small">(never active on the probe digits)</span></figcaption>
      <div class="inside-legend" id="dead-units-legend"></div><div class="inside-frame"><canvas id="dead-units-chart" class="inside-chart" data-testid="dead-units-chart" tabindex="0" role="img" aria-label="Fraction of dead units per hidden layer over the steps"></canvas></div></figure>
    <figure><figcaption>Learning rate <span class="muted small">(per step)</span></figcaption>
      <div class="inside-legend"></div><div class="inside-frame"><canvas id="lr-chart" class="inside-chart" data-testid="lr-chart" tabindex="0" role="img" aria-label="η, the step size, at each step"></canvas></div></figure>
  </div>
  <div class="inside-features">
    <div>
      <h3 class="inside-heading">First-layer weights <span class="muted small">(blue negative, red positive)</span></h3>
      <label class="epoch-slider" for="weight-epoch-slider"><span id="weight-epoch-label"></span>
        <input type="range" id="weight-epoch-slider" data-testid="weight-epoch-slider" aria-label="Epoch of the first-layer images shown" min="1" max="1" step="1" value="1" disabled></label>
      <canvas id="weight-tiles" class="weight-tiles" role="img" aria-label="The first layer's weights of the units shown, as 28 by 28 images" hidden></canvas>
      <p class="muted small">How strongly each of these units answers each digit (mean activation over the probe digits of that class):</p>
      <canvas id="class-activations" class="class-activations" role="img" aria-label="Mean response of each unit shown to each digit class" hidden></canvas>
    </div>
    <div id="hidden-activations" class="hidden-activations" data-testid="hidden-activations">
      <h3 class="inside-heading">Your drawing, inside</h3>
      <p class="muted small" id="hidden-summary">Draw a digit to see which hidden units of the watched run fire for it.</p>
      <ol id="hidden-units" class="hidden-units"></ol>
    </div>
  </div>`;

export function initInside() {
  const card = $('inside-network');
  card.insertAdjacentHTML('beforeend', CARD);
  const logOptions = { xLabel: 'Step', xInteger: true, logY: true, yFormat: (v) => v.toExponential(2), emptyText: 'No statistics yet' };
  gradChart = new LineChart($('grad-norm-chart'), { ...logOptions, legend: $('grad-norm-legend') });
  ratioChart = new LineChart($('update-ratio-chart'), { ...logOptions, legend: $('update-ratio-legend') });
  deadChart = new LineChart($('dead-units-chart'), { xLabel: 'Step', xInteger: true, yMax: 1, legend: $('dead-units-legend'), yFormat: (v) => `${(v * 100).toFixed(1)}%`, emptyText: 'No statistics yet' });
  lrChart = new LineChart($('lr-chart'), { xLabel: 'Step', xInteger: true, yFormat: (v) => v.toPrecision(3), emptyText: 'No steps yet' });
  for (const button of card.querySelectorAll('[data-kind]')) {
    button.addEventListener('click', () => {
      view.kind = button.dataset.kind;
      for (const other of card.querySelectorAll('[data-kind]')) other.setAttribute('aria-pressed', String(other === button));
      schedule();
    });
  }
  $('weight-epoch-slider').addEventListener('input', (event) => {
    const epochs = epochSnapshots().length;
    const index = Number(event.target.value) - 1;
    view.epochIndex = index >= epochs - 1 ? null : index; // at the end: follow new epochs
    schedule();
  });
  on('watched', onWatched);
  on('layers', onLayers);
  on('snapshot', () => loadHistory()); // (re)connected: fetch what the page may have missed
  on('metrics', onMetrics);
  on('prediction', onPrediction);
  onWatched();
}
