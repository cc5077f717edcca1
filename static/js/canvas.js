// Draw a digit (or take one from the misclassified gallery) and see what the model reads, with
// every digit's probability and an "unsure" answer when the best one is low. Pointer events cover mouse, touch and pen; strokes
// are smoothed with quadratic curves through the midpoints of the sampled positions and kept as
// resolution-independent points so that a resize redraws them crisply. While drawing, at most
// one prediction request is in flight and a new one goes out ~150 ms after the last, so the
// answer follows the pen without flooding the server; stale answers are dropped.

import { api, ApiError } from './api.js';
import { grey, imageCanvas } from './digits.js';
import { formatPercent } from './format.js';
import { emit, isActive, on, state } from './state.js';
import { notifyError } from './toast.js';

const PREDICT_DELAY_MS = 150;
const STROKE_WIDTH = 0.075; // of the canvas side: close to MNIST's stroke once scaled to 20 px
const EXPORT_SIZE = 280;
const UNSURE = 0.6; // a top probability below this is shown as a guess, not an answer

const $ = (id) => document.getElementById(id);
let canvas;
let ctx;
let strokes = []; // [[{x, y}]] in 0..1 canvas coordinates
let picture = null; // a 28x28 digit sent here ("Draw this" in the evaluation), under the strokes
let current = null;
let activePointer = null;
let timer = 0;
let inFlight = false;
let dirty = false;
let sequence = 0;
let noModel = false;

// ---- drawing ----------------------------------------------------------------------------------
function resize() {
  const rect = canvas.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  const side = Math.max(1, Math.round(rect.width * ratio));
  if (canvas.width !== side || canvas.height !== side) {
    canvas.width = side;
    canvas.height = side;
    redraw();
  }
}

function setupPen() {
  ctx.strokeStyle = '#fff';
  ctx.fillStyle = '#fff';
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.lineWidth = canvas.width * STROKE_WIDTH;
}

const toPx = (p) => ({ x: p.x * canvas.width, y: p.y * canvas.height });
const mid = (a, b) => ({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });

function dot(p) {
  const q = toPx(p);
  ctx.beginPath();
  ctx.arc(q.x, q.y, ctx.lineWidth / 2, 0, Math.PI * 2);
  ctx.fill();
}

/** The piece of a smoothed stroke that point `i` completes: from the previous midpoint, curving
 * through point i - 1, to the midpoint of (i - 1, i). */
function segment(points, i) {
  const a = toPx(points[i - 1]);
  const b = toPx(points[i]);
  const start = i >= 2 ? mid(toPx(points[i - 2]), a) : a;
  const end = mid(a, b);
  ctx.beginPath();
  ctx.moveTo(start.x, start.y);
  ctx.quadraticCurveTo(a.x, a.y, end.x, end.y);
  ctx.stroke();
}

function finishStroke(points) {
  if (points.length === 1) {
    dot(points[0]);
    return;
  }
  const a = toPx(points[points.length - 2]);
  const b = toPx(points[points.length - 1]);
  const start = mid(a, b);
  ctx.beginPath();
  ctx.moveTo(start.x, start.y);
  ctx.lineTo(b.x, b.y);
  ctx.stroke();
}

function redraw() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (picture) {
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(picture, 0, 0, canvas.width, canvas.height);
  }
  setupPen();
  for (const points of [...strokes, ...(current ? [current] : [])]) {
    dot(points[0]);
    for (let i = 1; i < points.length; i += 1) segment(points, i);
    finishStroke(points);
  }
}

function positionOf(event) {
  const rect = canvas.getBoundingClientRect();
  return {
    x: Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)),
    y: Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height)),
  };
}

function onPointerDown(event) {
  if (event.pointerType === 'mouse' && event.button !== 0) return;
  if (activePointer !== null) return; // one finger draws; a second one is ignored
  event.preventDefault();
  activePointer = event.pointerId;
  canvas.setPointerCapture(event.pointerId);
  canvas.focus({ preventScroll: true });
  setupPen();
  current = [positionOf(event)];
  dot(current[0]);
  $('draw-canvas').parentElement.dataset.drawn = 'true';
}

function onPointerMove(event) {
  if (event.pointerId !== activePointer || !current) return;
  event.preventDefault();
  const samples = event.getCoalescedEvents?.() ?? [];
  for (const sample of samples.length ? samples : [event]) {
    const p = positionOf(sample);
    const last = current[current.length - 1];
    // Skip sub-pixel jitter: it only adds vertices.
    if (Math.hypot((p.x - last.x) * canvas.width, (p.y - last.y) * canvas.height) < 1.5) continue;
    current.push(p);
    segment(current, current.length - 1);
  }
  schedulePrediction();
}

function onPointerUp(event) {
  if (event.pointerId !== activePointer) return;
  activePointer = null;
  if (current) {
    finishStroke(current);
    strokes.push(current);
    current = null;
  }
  schedulePrediction(0);
}

export function clearDrawing() {
  strokes = [];
  picture = null;
  current = null;
  activePointer = null;
  sequence += 1; // answers still on their way are for the old drawing
  dirty = false;
  clearTimeout(timer);
  timer = 0;
  redraw();
  $('draw-canvas').parentElement.dataset.drawn = 'false';
  renderPrediction(null);
}

const hasInk = () => strokes.length > 0 || Boolean(current) || Boolean(picture);

/** Put a 28x28 digit (784 grey levels 0..255) on the canvas, to be read and drawn over. */
function showDigit({ pixels, label }) {
  clearDrawing();
  picture = imageCanvas(pixels, grey);
  redraw();
  canvas.parentElement.dataset.drawn = 'true';
  canvas.dataset.source = label;
  const still = window.matchMedia?.('(prefers-reduced-motion: reduce)').matches;
  document.querySelector('.area-draw').scrollIntoView({ behavior: still ? 'auto' : 'smooth', block: 'nearest' });
  canvas.focus({ preventScroll: true });
  schedulePrediction(0);
}

// ---- prediction -------------------------------------------------------------------------------
function exportImage() {
  if (canvas.width <= EXPORT_SIZE) return canvas.toDataURL('image/png');
  const small = document.createElement('canvas');
  small.width = EXPORT_SIZE;
  small.height = EXPORT_SIZE;
  const smallCtx = small.getContext('2d');
  smallCtx.imageSmoothingQuality = 'high';
  smallCtx.drawImage(canvas, 0, 0, EXPORT_SIZE, EXPORT_SIZE);
  return small.toDataURL('image/png');
}

function schedulePrediction(delay = PREDICT_DELAY_MS) {
  dirty = true;
  if (inFlight) return; // the answer's arrival schedules the next request
  if (timer && delay > 0) return; // throttled: one request per interval while the pen moves
  clearTimeout(timer);
  timer = setTimeout(predict, delay);
}

async function predict() {
  timer = 0;
  if (!dirty || !hasInk()) return;
  dirty = false;
  inFlight = true;
  const mine = ++sequence;
  try {
    const answer = await api.predict(exportImage());
    if (mine === sequence && hasInk()) {
      setNoModel(false);
      renderPrediction(answer);
      emit('prediction', answer); // what the model saw: inside.js shows which units fire
    }
  } catch (error) {
    if (mine !== sequence) return;
    if (error instanceof ApiError && error.status === 409) {
      setNoModel(true);
      renderPrediction(null);
    } else {
      notifyError(error, 'Could not read the drawing');
    }
  } finally {
    inFlight = false;
    if (dirty && hasInk()) timer = setTimeout(predict, PREDICT_DELAY_MS);
  }
}

/** "97%", "<1%", ">99%": a probability in the few characters above its bar. */
function shortPercent(p) {
  if (p < 0.005) return '<1%';
  if (p > 0.995 && p < 1) return '>99%';
  return `${Math.round(p * 100)}%`;
}

/**
 * What the panel says of an answer: "97% sure", or below UNSURE, the model's two best guesses
 * ("Unsure: 4 (46%) or 9 (38%)?"); state 'ready' or 'unsure'.
 */
export function describePrediction(probabilities, digit) {
  const top = probabilities[digit];
  if (top >= UNSURE) return { state: 'ready', text: `${formatPercent(top, 0)} sure` };
  const second = probabilities
    .map((p, d) => ({ p, d }))
    .filter(({ d }) => d !== digit)
    .sort((a, b) => b.p - a.p)[0];
  return { state: 'unsure', text: `Unsure: ${digit} (${formatPercent(top, 0)}) or ${second.d} (${formatPercent(second.p, 0)})?` };
}

function renderPrediction(answer) {
  const panel = $('prediction-panel');
  const described = answer ? describePrediction(answer.probabilities, answer.digit) : null;
  panel.dataset.state = described?.state ?? 'idle';
  $('prediction').textContent = answer ? String(answer.digit) : '–';
  $('prediction-confidence').textContent = described?.text ?? '\u00a0';
  const bars = $('probabilities').children;
  for (let digit = 0; digit < 10; digit += 1) {
    const p = answer ? answer.probabilities[digit] : 0;
    const item = bars[digit];
    item.querySelector('.prob-bar').style.height = `${(p * 100).toFixed(1)}%`;
    item.querySelector('.prob-value').textContent = answer ? shortPercent(p) : '';
    item.dataset.top = String(Boolean(answer) && digit === answer.digit);
    item.setAttribute('aria-label', `${digit}: ${answer ? formatPercent(p) : 'no prediction'}`);
    item.title = answer ? `${digit}: ${formatPercent(p, 2)}` : '';
  }
  const input = $('model-input');
  const inputCtx = input.getContext('2d');
  const side = input.width; // the model's input, a digit of GET /api/options `network.image_side`
  const image = inputCtx.createImageData(side, side);
  for (let i = 0; i < side * side; i += 1) {
    const value = answer ? Math.round(Math.min(1, Math.max(0, answer.input[i])) * 255) : 0;
    image.data[i * 4] = value;
    image.data[i * 4 + 1] = value;
    image.data[i * 4 + 2] = value;
    image.data[i * 4 + 3] = 255;
  }
  inputCtx.putImageData(image, 0, 0);
}

function setNoModel(missing) {
  noModel = missing;
  renderNoModel();
}

/** Without a model: offer to train one, or say which run will give one. */
function renderNoModel() {
  $('no-model').hidden = !noModel;
  if (!noModel) return;
  const training = state.runs.find((run) => run.status === 'running')
    ?? state.runs.find(isActive)
    ?? (isActive(state.watched?.run) ? state.watched.run : null);
  $('no-model-start').hidden = Boolean(training);
  $('no-model-text').textContent = training
    ? `Run #${training.id} is ${training.status}: its model reads your digits once its first epoch has finished.`
    : 'A run needs to finish at least one epoch before it can read your digits.';
}

function renderModel() {
  const { run_id: runId, chosen_by: chosenBy } = state.activeModel;
  if (runId == null) {
    $('model-auto').hidden = true;
    $('draw-model').textContent = 'No model can read digits yet.';
    setNoModel(true);
    return;
  }
  setNoModel(false);
  const how = chosenBy === 'user' ? 'chosen by you' : 'the best so far';
  $('draw-model').textContent = `Read by the model of run #${runId} (${how}).`;
  $('model-auto').hidden = chosenBy !== 'user';
  if (hasInk()) schedulePrediction(0); // a different model may read it differently
}

export function initDrawing() {
  canvas = $('draw-canvas');
  ctx = canvas.getContext('2d');
  const probabilities = $('probabilities');
  for (let digit = 0; digit < 10; digit += 1) {
    const item = document.createElement('div');
    item.className = 'prob';
    item.setAttribute('role', 'listitem');
    item.innerHTML = `<span class="prob-value"></span><div class="prob-bar-track"><div class="prob-bar"></div></div><span class="prob-digit">${digit}</span>`;
    probabilities.append(item);
  }
  new ResizeObserver(resize).observe(canvas);
  resize();
  redraw();
  renderPrediction(null);

  canvas.addEventListener('pointerdown', onPointerDown);
  canvas.addEventListener('pointermove', onPointerMove);
  canvas.addEventListener('pointerup', onPointerUp);
  canvas.addEventListener('pointercancel', onPointerUp);
  canvas.addEventListener('lostpointercapture', onPointerUp);
  canvas.addEventListener('keydown', (event) => {
    if (['Escape', 'Delete', 'Backspace'].includes(event.key)) {
      event.preventDefault();
      clearDrawing();
    }
  });
  $('clear-canvas').addEventListener('click', clearDrawing);
  $('model-auto').addEventListener('click', async () => {
    try {
      state.activeModel = await api.setActiveModel(null);
      emit('active-model');
      emit('runs-changed');
    } catch (error) {
      notifyError(error, 'Could not go back to the best run');
    }
  });
  on('active-model', renderModel);
  on('draw-digit', showDigit);
  on('runs', renderNoModel);
  on('watched', renderNoModel);
  renderModel();
  return { get noModel() { return noModel; } };
}
