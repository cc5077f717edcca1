// Evaluation of the watched run's model on the test set: confusion matrix as a heat map with
// counts (a cell shows its digits in the gallery), accuracy per digit, the misclassified digits
// with confidence and runner-up (a page at a time; any of them can be sent to the drawing
// canvas), and the first layer's weights as 28x28 images in a diverging colour map (blue
// negative, white zero, vermillion positive: safe for the common colour-vision deficiencies).

import { api } from './api.js';
import { grey, imageCanvas } from './digits.js';
import { formatInteger, formatPercent } from './format.js';
import { emit, isActive, on, state } from './state.js';
import { notifyError } from './toast.js';

const $ = (id) => document.getElementById(id);
const PAGE = 24; // misclassified digits per request
const WEIGHT_PAGE = 256;
let loading = false;
// The gallery: which cell of the matrix it shows (null: every mistake), and what it has loaded.
const gallery = { runId: null, trueDigit: null, predicted: null, items: [], total: 0, loading: false };
let weightsShown = { runId: null, units: 0, images: [] };

function cssTriple(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

const NEGATIVE = [0, 114, 178];
const ZERO = [247, 247, 247];
const POSITIVE = [213, 94, 0];
function diverging(value) {
  const t = Math.max(-1, Math.min(1, value));
  const end = t < 0 ? NEGATIVE : POSITIVE;
  const a = Math.abs(t);
  return ZERO.map((zero, i) => Math.round(zero + (end[i] - zero) * a));
}

// ---- rendering ------------------------------------------------------------------------------
/** Relative luminance of an sRGB colour given as [r, g, b] in 0..255 (WCAG 2). */
function luminance(rgb) {
  const [r, g, b] = rgb.map((v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/**
 * Black or white text over `rgb`, whichever contrasts more: one of the two always reaches
 * 4.58:1 (they cross at luminance 0.179), so every count stays readable on any shade.
 */
function textOn(rgb) {
  return luminance(rgb) > 0.179 ? '#000000' : '#ffffff';
}

const parseTriple = (text) => text.split(',').map((v) => Number(v.trim()));

function surfaceRgb() {
  const probe = document.createElement('span');
  probe.style.color = 'var(--surface-2)';
  document.body.append(probe);
  const rgb = getComputedStyle(probe).color.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number);
  probe.remove();
  return rgb;
}

function renderConfusion(matrix) {
  const table = $('confusion-matrix');
  const caption = table.querySelector('caption');
  table.replaceChildren(caption);
  const diagonal = parseTriple(cssTriple('--heat-diagonal'));
  const error = parseTriple(cssTriple('--heat-error'));
  const surface = surfaceRgb();
  let maxOff = 1;
  matrix.forEach((row, t) => row.forEach((count, p) => {
    if (t !== p) maxOff = Math.max(maxOff, count);
  }));

  const head = document.createElement('thead');
  const headRow = document.createElement('tr');
  const corner = document.createElement('th');
  corner.className = 'corner';
  const cornerText = document.createElement('span');
  cornerText.className = 'sr-only';
  cornerText.textContent = 'true digit, by predicted digit';
  corner.append(cornerText);
  headRow.append(corner);
  for (let p = 0; p < 10; p += 1) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = String(p);
    headRow.append(th);
  }
  head.append(headRow);
  const body = document.createElement('tbody');
  matrix.forEach((row, t) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = String(t);
    tr.append(th);
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((count, p) => {
      const td = document.createElement('td');
      const cell = document.createElement('button');
      cell.type = 'button';
      cell.className = 'confusion-cell';
      cell.dataset.testid = 'confusion-cell';
      cell.setAttribute('data-testid', 'confusion-cell');
      cell.dataset.true = String(t);
      cell.dataset.predicted = String(p);
      cell.tabIndex = t === 0 && p === 0 ? 0 : -1; // one tab stop; arrow keys move (roving)
      cell.textContent = formatInteger(count);
      const what = `true ${t}, predicted ${p}: ${formatInteger(count)} (${formatPercent(count / total)} of the ${t}s)`;
      cell.title = t !== p && count ? `${what}. Show these digits.` : what;
      cell.setAttribute('aria-label', what);
      const alpha = t === p ? 0.15 + 0.85 * (count / total) : count ? 0.12 + 0.78 * Math.sqrt(count / maxOff) : 0;
      if (count === 0) td.classList.add('zero');
      else {
        const base = t === p ? diagonal : error;
        const rgb = base.map((v, i) => Math.round(v * alpha + surface[i] * (1 - alpha)));
        td.style.background = `rgb(${rgb.join(', ')})`;
        cell.style.color = textOn(rgb);
      }
      if (t === p || count === 0) cell.setAttribute('aria-disabled', 'true');
      td.append(cell);
      tr.append(td);
    });
    body.append(tr);
  });
  table.append(head, body);
  markSelectedCell();
}

function markSelectedCell() {
  for (const cell of $('confusion-matrix').querySelectorAll('.confusion-cell')) {
    const selected = String(gallery.trueDigit) === cell.dataset.true && String(gallery.predicted) === cell.dataset.predicted;
    cell.setAttribute('aria-pressed', String(selected));
  }
}

/** Arrow keys move between the cells (one tab stop for the whole matrix). */
function onMatrixKey(event) {
  const cell = event.target.closest('.confusion-cell');
  if (!cell) return;
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  let t = Number(cell.dataset.true);
  let p = Number(cell.dataset.predicted);
  if (moves[event.key]) [t, p] = [t + moves[event.key][0], p + moves[event.key][1]];
  else if (event.key === 'Home') p = 0;
  else if (event.key === 'End') p = 9;
  else return;
  event.preventDefault();
  const next = $('confusion-matrix').querySelector(`.confusion-cell[data-true="${Math.max(0, Math.min(9, t))}"][data-predicted="${Math.max(0, Math.min(9, p))}"]`);
  if (!next) return;
  cell.tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
}

function onMatrixClick(event) {
  const cell = event.target.closest('.confusion-cell');
  if (!cell || cell.getAttribute('aria-disabled') === 'true') return;
  const run = state.watched?.run;
  if (!run) return;
  const trueDigit = Number(cell.dataset.true);
  const predicted = Number(cell.dataset.predicted);
  const same = gallery.trueDigit === trueDigit && gallery.predicted === predicted;
  loadGallery(run, same ? { trueDigit: null, predicted: null } : { trueDigit, predicted });
  if (!same) $('misclassified-filter').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
}

function renderClassAccuracy(perClass) {
  const container = $('class-accuracy');
  const lowest = Math.min(...perClass.filter(Number.isFinite));
  // Start the bars where the differences show; the axis note says where that is.
  const floor = Math.max(0, Math.min(0.8, Math.floor((lowest - 0.02) * 10) / 10));
  const rows = perClass.map((accuracy, digit) => {
    const row = document.createElement('div');
    row.className = 'class-bar';
    row.setAttribute('role', 'listitem');
    row.setAttribute('aria-label', `digit ${digit}: ${formatPercent(accuracy, 2)}`);
    const label = document.createElement('span');
    label.textContent = String(digit);
    const track = document.createElement('div');
    track.className = 'class-bar-track';
    const fill = document.createElement('div');
    fill.className = 'class-bar-fill';
    fill.style.width = `${Math.max(0, ((accuracy - floor) / (1 - floor)) * 100).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement('span');
    value.className = 'class-bar-value';
    value.textContent = formatPercent(accuracy);
    row.append(label, track, value);
    return row;
  });
  const note = document.createElement('p');
  note.className = 'hint';
  note.textContent = `Bars run from ${formatPercent(floor, 0)} to 100%.`;
  container.replaceChildren(...rows, note);
}

function misclassifiedTile(item) {
  const figure = document.createElement('figure');
  figure.className = 'mistake';
  const canvas = imageCanvas(item.pixels, grey);
  canvas.setAttribute('role', 'img');
  const confidence = formatPercent(item.confidence, 0);
  const second = Number.isInteger(item.runner_up)
    ? `, then ${item.runner_up} (${formatPercent(item.runner_up_confidence, 0)})` : '';
  canvas.setAttribute('aria-label', `test digit ${item.index}: a ${item.true} read as ${item.predicted} with ${confidence}${second}`);
  const caption = document.createElement('figcaption');
  const truth = document.createElement('strong');
  truth.textContent = String(item.true);
  caption.append(truth, document.createTextNode(` → ${item.predicted}`));
  const sure = document.createElement('span');
  sure.className = 'mistake-confidence';
  sure.textContent = confidence;
  caption.append(' ', sure);
  const runnerUp = document.createElement('span');
  runnerUp.className = 'mistake-runner-up';
  runnerUp.textContent = Number.isInteger(item.runner_up) ? `2nd: ${item.runner_up} ${formatPercent(item.runner_up_confidence, 0)}` : '';
  const draw = document.createElement('button');
  draw.type = 'button';
  draw.className = 'link-button small';
  draw.textContent = 'Draw this';
  draw.setAttribute('aria-label', `Draw this: test digit ${item.index}, a ${item.true}`);
  draw.addEventListener('click', () => emit('draw-digit', { pixels: item.pixels, label: `test digit ${item.index} (a ${item.true})` }));
  figure.append(canvas, caption, runnerUp, draw);
  return figure;
}

function renderGallery() {
  const container = $('misclassified');
  const filtered = gallery.trueDigit !== null;
  $('misclassified-filter').hidden = !filtered;
  if (filtered) {
    $('misclassified-filter-text').textContent =
      `Showing the ${gallery.trueDigit}s read as ${gallery.predicted} (${formatInteger(gallery.total)}).`;
  }
  if (!gallery.items.length && !gallery.loading) {
    container.replaceChildren(placeholder(filtered ? 'No test digit in this cell.' : 'No test digit was misclassified.'));
  } else {
    // Keep the tiles already shown (and focus inside them): only add the new ones.
    const shown = container.querySelectorAll('figure.mistake').length;
    if (shown > gallery.items.length || !container.querySelector('figure.mistake')) container.replaceChildren();
    for (const item of gallery.items.slice(container.querySelectorAll('figure.mistake').length)) container.append(misclassifiedTile(item));
  }
  const count = $('misclassified-count');
  count.textContent = gallery.total ? `${formatInteger(gallery.items.length)} of ${formatInteger(gallery.total)} shown` : '';
  const more = $('misclassified-more');
  more.hidden = gallery.items.length >= gallery.total;
  more.disabled = gallery.loading;
  more.textContent = gallery.loading ? 'Loading…' : `Load ${Math.min(PAGE, gallery.total - gallery.items.length)} more`;
  markSelectedCell();
}

/** Start the gallery over for a run and a cell of the matrix (or every mistake), first page. */
async function loadGallery(run, { trueDigit, predicted }, first = null) {
  Object.assign(gallery, { runId: run.id, trueDigit, predicted, items: [], total: 0 });
  $('misclassified').replaceChildren();
  if (first) {
    gallery.items = first.items;
    gallery.total = first.total;
    renderGallery();
    return;
  }
  await loadMore(run);
}

async function loadMore(run) {
  if (gallery.loading) return;
  gallery.loading = true;
  renderGallery();
  const wanted = { runId: gallery.runId, trueDigit: gallery.trueDigit, predicted: gallery.predicted };
  try {
    const page = await api.misclassified(run.id, {
      offset: gallery.items.length, limit: PAGE, trueDigit: gallery.trueDigit, predicted: gallery.predicted,
    });
    const current = { runId: gallery.runId, trueDigit: gallery.trueDigit, predicted: gallery.predicted };
    if (JSON.stringify(current) !== JSON.stringify(wanted)) return; // the user picked another cell
    gallery.items = [...gallery.items, ...page.items];
    gallery.total = page.total;
  } catch (error) {
    notifyError(error, `Could not load the misclassified digits of run #${run.id}`);
  } finally {
    gallery.loading = false;
    renderGallery();
  }
}

function renderWeights(weights, runId) {
  const container = $('weights');
  weightsShown = { runId, units: weights?.units ?? 0, images: weights?.images ?? [] };
  if (!weights?.images?.length) {
    container.replaceChildren(placeholder('This model has no hidden layer to show.'));
    $('weights-count').textContent = '';
    $('weights-all').hidden = true;
    return;
  }
  container.replaceChildren(...weights.images.map((image, unit) => weightTile(image, unit)));
  renderWeightsCount();
}

function weightTile(image, unit) {
  const canvas = imageCanvas(image, diverging);
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `weights of hidden unit ${unit + 1}`);
  canvas.title = `hidden unit ${unit + 1}`;
  return canvas;
}

function renderWeightsCount() {
  const { units, images } = weightsShown;
  $('weights-count').textContent = `${formatInteger(images.length)} of ${formatInteger(units)} units`;
  $('weights-all').hidden = images.length >= units;
  $('weights-all').textContent = `Show all ${formatInteger(units)} units`;
}

async function showAllWeights() {
  const { runId } = weightsShown;
  const button = $('weights-all');
  button.disabled = true;
  try {
    while (weightsShown.runId === runId && weightsShown.images.length < weightsShown.units) {
      const page = await api.weights(runId, { offset: weightsShown.images.length, limit: WEIGHT_PAGE });
      if (weightsShown.runId !== runId || !page.images.length) break;
      const start = weightsShown.images.length;
      weightsShown.images.push(...page.images);
      $('weights').append(...page.images.map((image, i) => weightTile(image, start + i)));
      renderWeightsCount();
    }
  } catch (error) {
    notifyError(error, `Could not load the weights of run #${runId}`);
  } finally {
    button.disabled = false;
  }
}

function placeholder(text) {
  const p = document.createElement('p');
  p.className = 'placeholder';
  p.textContent = text;
  return p;
}

function renderEmpty(message) {
  $('eval-grid').hidden = true;
  $('eval-empty').hidden = false;
  $('eval-empty').textContent = message;
}

// ---- loading ----------------------------------------------------------------------------------
// What is on screen (or loading): "<run id>:final" for a run that has ended, "<run id>:live" for
// the model of a run still training. A run that ends is evaluated again, with its final model.
const keyOf = (run) => `${run.id}:${isActive(run) ? 'live' : 'final'}`;
let shownKey = null;
let again = false; // something asked for an evaluation while one was loading

async function evaluate(run) {
  if (!run?.has_model) return;
  if (loading) {
    again = true;
    return;
  }
  loading = true;
  shownKey = keyOf(run);
  renderControls();
  $('eval-summary').textContent = `Evaluating run #${run.id} on the test digits…`;
  try {
    const [evaluation, weights] = await Promise.all([api.evaluation(run.id), api.weights(run.id)]);
    if (state.watched?.id !== run.id) return;
    $('eval-grid').hidden = false;
    $('eval-empty').hidden = true;
    renderConfusion(evaluation.confusion_matrix);
    renderClassAccuracy(evaluation.per_class_accuracy);
    const misclassified = evaluation.misclassified ?? [];
    loadGallery(run, { trueDigit: null, predicted: null },
      { items: misclassified.slice(0, PAGE), total: evaluation.misclassified_total ?? misclassified.length });
    renderWeights(weights, run.id);
    const total = evaluation.confusion_matrix.flat().reduce((a, b) => a + b, 0);
    const wrong = total - evaluation.confusion_matrix.reduce((sum, row, i) => sum + row[i], 0);
    $('eval-summary').textContent =
      `Test accuracy ${formatPercent(evaluation.accuracy, 2)}: ${formatInteger(wrong)} of ${formatInteger(total)} test digits misread` +
      (isActive(run) ? ' (the model of the last finished epoch).' : '.');
  } catch (error) {
    shownKey = null;
    $('eval-summary').textContent = error.message;
    if (error.status !== 404 && error.status !== 409) notifyError(error, `Could not evaluate run #${run.id}`);
  } finally {
    loading = false;
    renderControls();
    if (again || state.watched?.id !== run.id) {
      again = false;
      onWatched(); // the user moved on, or the run ended, while this loaded
    }
  }
}

function renderControls() {
  const run = state.watched?.run;
  const button = $('evaluate');
  button.disabled = loading || !run?.has_model;
  button.textContent = loading ? 'Evaluating…' : isActive(run) ? 'Evaluate current model' : 'Evaluate';
  $('eval-label').textContent = run ? `· run #${run.id}` : '';
}

function onWatched() {
  const run = state.watched?.run;
  renderControls();
  if (!run) {
    shownKey = null;
    renderEmpty('Train a run to see its confusion matrix, the digits it gets wrong and what its hidden units look for.');
    $('eval-summary').textContent = 'On the test digits, once a run has a model.';
    return;
  }
  if (shownKey !== null && !shownKey.startsWith(`${run.id}:`)) shownKey = null;
  if (run.has_model && !isActive(run)) {
    if (shownKey !== keyOf(run)) evaluate(run);
    return;
  }
  if (shownKey !== null) return; // the model of a finished epoch stays on screen while it trains
  $('eval-summary').textContent = 'On the test digits, once a run has a model.';
  renderEmpty(run.has_model
    ? `Press “Evaluate current model” to test run #${run.id} as of its last finished epoch; it is evaluated by itself when it ends.`
    : `Appears once run #${run.id} has finished an epoch.`);
}

export function initEvaluation() {
  $('evaluate').addEventListener('click', () => evaluate(state.watched?.run));
  $('confusion-matrix').addEventListener('click', onMatrixClick);
  $('confusion-matrix').addEventListener('keydown', onMatrixKey);
  $('misclassified-more').addEventListener('click', () => {
    const run = state.watched?.run;
    if (run && run.id === gallery.runId) loadMore(run);
  });
  $('misclassified-clear').addEventListener('click', () => {
    const run = state.watched?.run;
    if (run) loadGallery(run, { trueDigit: null, predicted: null });
    $('confusion-matrix').querySelector('.confusion-cell[tabindex="0"]')?.focus();
  });
  $('weights-all').addEventListener('click', showAllWeights);
  on('watched', onWatched);
  onWatched();
}
