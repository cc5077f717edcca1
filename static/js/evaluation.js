// Evaluation of the watched run's model on the test set: confusion matrix as a heat map with
// counts, accuracy per digit, the misclassified digits, and the first layer's weights as 28x28
// images in a diverging colour map (blue negative, white zero, vermillion positive: safe for the
// common colour-vision deficiencies).

import { api } from './api.js';
import { formatInteger, formatPercent } from './format.js';
import { isActive, on, state } from './state.js';
import { notifyError } from './toast.js';

const $ = (id) => document.getElementById(id);
const GALLERY_LIMIT = 48;
let loading = false;

function cssTriple(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** Paint grey levels (0..255, white ink on black) or any RGB function into a 28x28 canvas. */
function imageCanvas(values, toRgb) {
  const canvas = document.createElement('canvas');
  canvas.width = 28;
  canvas.height = 28;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i += 1) {
    const [r, g, b] = toRgb(values[i]);
    image.data[i * 4] = r;
    image.data[i * 4 + 1] = g;
    image.data[i * 4 + 2] = b;
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

const grey = (value) => [value, value, value];

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
function renderConfusion(matrix) {
  const table = $('confusion-matrix');
  const caption = table.querySelector('caption');
  table.replaceChildren(caption);
  const diagonal = cssTriple('--heat-diagonal');
  const error = cssTriple('--heat-error');
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
      td.textContent = formatInteger(count);
      td.title = `true ${t}, predicted ${p}: ${formatInteger(count)} (${formatPercent(count / total)} of the ${t}s)`;
      const alpha = t === p ? 0.15 + 0.85 * (count / total) : count ? 0.12 + 0.78 * Math.sqrt(count / maxOff) : 0;
      if (count === 0) td.classList.add('zero');
      else td.style.background = `rgba(${t === p ? diagonal : error}, ${alpha.toFixed(3)})`;
      if (alpha > 0.55) td.classList.add('light-text');
      tr.append(td);
    });
    body.append(tr);
  });
  table.append(head, body);
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

function renderMisclassified(items) {
  const gallery = $('misclassified');
  if (!items.length) {
    gallery.replaceChildren(placeholder('No test digit was misclassified.'));
    return;
  }
  gallery.replaceChildren(
    ...items.slice(0, GALLERY_LIMIT).map((item) => {
      const figure = document.createElement('figure');
      const canvas = imageCanvas(item.pixels, grey);
      canvas.setAttribute('role', 'img');
      const description = `test digit ${item.index}: a ${item.true} read as ${item.predicted}` +
        (Number.isFinite(item.confidence) ? ` with ${formatPercent(item.confidence, 0)} confidence` : '');
      canvas.setAttribute('aria-label', description);
      figure.title = description;
      const caption = document.createElement('figcaption');
      const truth = document.createElement('strong');
      truth.textContent = String(item.true);
      caption.append(truth, document.createTextNode(` → ${item.predicted}`));
      figure.append(canvas, caption);
      return figure;
    }),
  );
}

function renderWeights(weights) {
  const gallery = $('weights');
  if (!weights?.images?.length) {
    gallery.replaceChildren(placeholder('This model has no hidden layer to show.'));
    return;
  }
  gallery.replaceChildren(
    ...weights.images.map((image, unit) => {
      const canvas = imageCanvas(image, diverging);
      canvas.setAttribute('role', 'img');
      canvas.setAttribute('aria-label', `weights of hidden unit ${unit + 1}`);
      canvas.title = `hidden unit ${unit + 1}`;
      return canvas;
    }),
  );
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
    renderMisclassified(evaluation.misclassified ?? []);
    renderWeights(weights);
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
  on('watched', onWatched);
  onWatched();
}
