// The run configuration form and the Start / Pause / Resume / Step / Stop buttons. The form checks every
// field before anything is sent; what the server still rejects (422) is shown beside the form.
// The run buttons follow the watched run's real status only: a click disables them until the
// server answers with the run's new state, they are never switched ahead of the server.

import { api, ApiError } from './api.js';
import { architecture, formatInteger } from './format.js';
import { emit, isActive, network, on, state } from './state.js';
import { notify, notifyError } from './toast.js';

// Labels and steps are the page's own; min, max and integer come from GET /api/options `fields`
// (the engine's bounds, tightened by the server's limits): the form checks what the server checks.
const FIELDS = {
  learning_rate: { label: 'Learning rate' },
  batch_size: { label: 'Batch size' },
  epochs: { label: 'Epochs' },
  dropout: { label: 'Dropout' },
  weight_decay: { label: 'Weight decay' },
  momentum: { label: 'Momentum' },
  seed: { label: 'Seed' },
  lr_decay: { label: 'LR decay' },
  warmup_epochs: { label: 'Warm-up epochs' },
};
const LAYER = { label: 'Layer size' };
let maxLayers = Infinity;
let maxParameters = Infinity;
const AUGMENTATION = {
  shift: { label: 'Shift (px)', step: 0.5 },
  rotation: { label: 'Rotation (°)', step: 1 },
  scale: { label: 'Scale', step: 0.05 },
  shear: { label: 'Shear (°)', step: 1 },
  elastic_alpha: { label: 'Elastic α', step: 1 },
  elastic_sigma: { label: 'Elastic σ', step: 0.5 },
  thickness: { label: 'Thickness', step: 0.05 },
};
const CHOICES = ['activation', 'optimizer', 'lr_schedule', 'init'];
const MOMENTUM_OPTIMIZERS = new Set(['momentum', 'nesterov']);

const $ = (id) => document.getElementById(id);
let pendingControl = false;
// Fields are checked as they change only after a first Start: messages that appear on blur
// would move the Start button away from under the pointer that is about to press it.
let attempted = false;
let pendingStart = false;

/** Give an input the spec's range, so that the browser's spinner stays inside it. */
function setRange(input, spec) {
  for (const key of ['min', 'max']) {
    if (Number.isFinite(spec[key])) input[key] = String(spec[key]);
    else input.removeAttribute(key);
  }
}

/** Take each field's bounds from the server (GET /api/options `fields`, `limits.max_parameters`). */
function applyBounds(fields, limits) {
  const take = (spec, bounds) => Object.assign(spec, { min: bounds?.min, max: bounds?.max, integer: Boolean(bounds?.integer) });
  for (const [name, spec] of Object.entries(FIELDS)) setRange($(name), take(spec, fields?.[name]));
  for (const [name, spec] of Object.entries(AUGMENTATION)) setRange($(`aug-${name}`), take(spec, fields?.[`augmentation.${name}`]));
  take(LAYER, fields?.hidden_layers);
  for (const input of layerInputs()) setRange(input, LAYER);
  maxLayers = Number.isFinite(fields?.hidden_layers?.max_items) ? fields.hidden_layers.max_items : Infinity;
  maxParameters = Number.isFinite(limits?.max_parameters) ? limits.max_parameters : Infinity;
  renumberLayers();
}

/** Weights and biases of the network inputs -> hidden... -> classes, and its batch norms' parameters. */
function parameterCount(hidden) {
  const { inputs, classes, batch_norm_parameters_per_unit: perUnit } = network();
  const sizes = [inputs, ...hidden, classes];
  let count = 0;
  for (let i = 1; i < sizes.length; i += 1) count += sizes[i - 1] * sizes[i] + sizes[i];
  if ($('batch_norm').checked) count += perUnit * hidden.reduce((sum, units) => sum + units, 0);
  return count;
}

// ---- hidden layers ---------------------------------------------------------------------------
function layerInputs() {
  return [...$('layers').querySelectorAll('input')];
}

function renumberLayers() {
  const items = [...$('layers').children];
  items.forEach((item, i) => {
    item.querySelector('.layer-index').textContent = `Layer ${i + 1}`;
    item.querySelector('input').setAttribute('aria-label', `Units in hidden layer ${i + 1}`);
    item.querySelector('button').setAttribute('aria-label', `Remove hidden layer ${i + 1}`);
  });
  $('add-layer').disabled = items.length >= maxLayers;
  updateArchitecture();
}

function addLayer(size, { focus = false } = {}) {
  const item = document.createElement('li');
  item.className = 'layer';
  const index = document.createElement('span');
  index.className = 'layer-index';
  const input = document.createElement('input');
  input.type = 'number';
  input.inputMode = 'numeric';
  setRange(input, LAYER);
  input.step = '1';
  input.value = String(size);
  input.setAttribute('aria-describedby', 'hidden_layers-error');
  input.addEventListener('input', () => {
    updateArchitecture();
    if (attempted) validateLayers();
  });
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'btn btn-icon';
  remove.innerHTML = '<svg class="icon" viewBox="0 0 16 16" aria-hidden="true"><path d="M4.2 3.1 8 6.9l3.8-3.8 1.1 1.1L9.1 8l3.8 3.8-1.1 1.1L8 9.1l-3.8 3.8-1.1-1.1L6.9 8 3.1 4.2z"/></svg>';
  remove.addEventListener('click', () => {
    const next = item.nextElementSibling?.querySelector('input') ?? item.previousElementSibling?.querySelector('input');
    item.remove();
    renumberLayers();
    validateLayers();
    (next ?? $('add-layer')).focus();
  });
  item.append(index, input, remove);
  $('layers').append(item);
  renumberLayers();
  if (focus) input.focus();
}

function setLayers(sizes) {
  $('layers').replaceChildren();
  for (const size of sizes) addLayer(size);
  renumberLayers();
}

function updateArchitecture() {
  const sizes = layerInputs().map((input) => input.value.trim() || '?');
  $('architecture').textContent = `(${architecture(sizes)})`;
}

// ---- validation ------------------------------------------------------------------------------
function formatBound(value) {
  return Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3) ? value.toExponential(0) : String(value);
}

/** The number in `raw`, or an error sentence that says what is wrong and what is allowed. */
function checkNumber(raw, spec) {
  const text = String(raw).trim();
  // Without bounds from the server (never expected), only the server's answer can say more.
  const bounded = Number.isFinite(spec.min) && Number.isFinite(spec.max);
  const range = bounded ? ` between ${formatBound(spec.min)} and ${formatBound(spec.max)}` : '';
  if (text === '') return { error: `${spec.label} is required: enter a number${range}.` };
  const value = Number(text);
  if (!Number.isFinite(value)) return { error: `${spec.label} must be a number${range}; “${text}” is not.` };
  if (spec.integer && !Number.isInteger(value)) return { error: `${spec.label} must be a whole number${range}; got ${text}.` };
  if (bounded && (value < spec.min || value > spec.max)) return { error: `${spec.label} must be${range}; got ${text}.` };
  return { value };
}

function showFieldError(input, errorElement, message) {
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  if (errorElement) errorElement.textContent = message ?? '';
}

function validateField(name) {
  const input = $(name);
  const result = checkNumber(input.value, FIELDS[name]);
  showFieldError(input, $(`${name}-error`), result.error);
  return result;
}

function validateLayers() {
  const inputs = layerInputs();
  const sizes = [];
  let message = null;
  inputs.forEach((input, i) => {
    const result = checkNumber(input.value, { ...LAYER, label: `Hidden layer ${i + 1}` });
    showFieldError(input, null, result.error);
    if (result.error) message ??= result.error;
    else sizes.push(result.value);
  });
  if (!message && inputs.length > maxLayers) {
    message = `At most ${maxLayers} hidden layers are allowed on this server; remove ${inputs.length - maxLayers}.`;
  }
  if (!message && network() && parameterCount(sizes) > maxParameters) {
    message = `This network has ${formatInteger(parameterCount(sizes))} parameters; the server allows at most ` +
      `${formatInteger(maxParameters)}. Use fewer or smaller layers.`;
  }
  $('hidden_layers-error').textContent = message ?? '';
  return message ? { error: message } : { value: sizes };
}

function validateAugmentation() {
  const values = {};
  let firstError = null;
  for (const [name, spec] of Object.entries(AUGMENTATION)) {
    const input = $(`aug-${name}`);
    const result = checkNumber(input.value, spec);
    showFieldError(input, $(`aug-${name}-error`), result.error);
    if (result.error) firstError ??= { input, error: result.error };
    else values[name] = result.value;
  }
  return { values, firstError };
}

/** Read and check the form. Returns {config} or {errors: [{input, message}]}. */
export function readForm() {
  const errors = [];
  const config = { preset: $('preset').value || undefined };
  const layers = validateLayers();
  if (layers.error) errors.push({ input: layerInputs().find((i) => i.getAttribute('aria-invalid')), message: layers.error });
  else config.hidden_layers = layers.value;
  for (const name of CHOICES) config[name] = $(name).value;
  config.batch_norm = $('batch_norm').checked;
  for (const name of Object.keys(FIELDS)) {
    const result = validateField(name);
    if (result.error) errors.push({ input: $(name), message: result.error });
    else config[name] = result.value;
  }
  const augmentation = validateAugmentation();
  if (augmentation.firstError) {
    document.querySelector('.advanced').open = true;
    errors.push({ input: augmentation.firstError.input, message: augmentation.firstError.error });
  } else config.augmentation = augmentation.values;
  if (errors.some((e) => ['lr_decay', 'warmup_epochs'].includes(e.input?.id))) {
    document.querySelector('.advanced').open = true;
  }
  return errors.length ? { errors } : { config };
}

// ---- filling the form ---------------------------------------------------------------------------
function fillSelect(select, values, labels = {}) {
  select.replaceChildren(
    ...values.map((value) => {
      const option = document.createElement('option');
      option.value = value;
      option.textContent = labels[value] ?? value.replaceAll('_', ' ');
      return option;
    }),
  );
}

function fillFromConfig(config) {
  setLayers(config.hidden_layers ?? []);
  for (const name of CHOICES) if (config[name] !== undefined) $(name).value = config[name];
  for (const name of Object.keys(FIELDS)) if (config[name] !== undefined) $(name).value = String(config[name]);
  $('batch_norm').checked = Boolean(config.batch_norm);
  for (const name of Object.keys(AUGMENTATION)) $(`aug-${name}`).value = String(config.augmentation?.[name] ?? 0);
  clearErrors();
  attempted = false;
  updateOptimizerFields();
}

function clearErrors() {
  for (const input of $('run-form').querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  for (const element of $('run-form').querySelectorAll('.field-error')) element.textContent = '';
  $('form-error').textContent = '';
}

function updateOptimizerFields() {
  $('momentum-field').hidden = !MOMENTUM_OPTIMIZERS.has($('optimizer').value);
}

function presetByName(name) {
  return state.options?.presets?.find((preset) => preset.name === name);
}

function showPreset(name) {
  const preset = presetByName(name);
  $('preset-description').textContent = preset?.description ?? '';
  if (preset) fillFromConfig(preset.config);
}

function populate(options) {
  applyBounds(options.fields, options.limits);
  const choices = options.choices ?? {};
  const labels = { lr_schedule: { constant: 'constant', step: 'step decay', cosine: 'cosine' } };
  for (const name of CHOICES) fillSelect($(name), choices[name] ?? [], labels[name]);
  const presets = options.presets ?? [];
  $('preset').replaceChildren(
    ...presets.map((preset) => {
      const option = document.createElement('option');
      option.value = preset.name;
      option.textContent = preset.name.replaceAll('_', ' ').replace(/^./, (c) => c.toUpperCase());
      return option;
    }),
  );
  const initial = presets.find((p) => p.name === 'default') ?? presets[0];
  if (initial) {
    $('preset').value = initial.name;
    showPreset(initial.name);
  }
}

function buildAugmentationFields() {
  const grid = $('augmentation-fields');
  for (const [name, spec] of Object.entries(AUGMENTATION)) {
    const field = document.createElement('div');
    field.className = 'field';
    const label = document.createElement('label');
    label.htmlFor = `aug-${name}`;
    label.textContent = spec.label;
    const input = document.createElement('input');
    Object.assign(input, { id: `aug-${name}`, type: 'number', inputMode: 'decimal', step: String(spec.step), value: '0' });
    input.setAttribute('aria-describedby', `aug-${name}-error`);
    const error = document.createElement('p');
    error.className = 'field-error';
    error.id = `aug-${name}-error`;
    input.addEventListener('input', () => {
      if (!attempted) return;
      const result = checkNumber(input.value, spec);
      showFieldError(input, error, result.error);
    });
    field.append(label, input, error);
    grid.append(field);
  }
}

// ---- run buttons -----------------------------------------------------------------------------
function renderButtons() {
  const run = state.watched?.run;
  const status = run?.status;
  $('pause-run').disabled = pendingControl || status !== 'running';
  $('resume-run').disabled = pendingControl || status !== 'paused';
  $('step-run').disabled = pendingControl || status !== 'paused';
  $('stop-run').disabled = pendingControl || !isActive(run);
  $('start-run').disabled = pendingStart || !state.options;
  const queued = state.runs.some(isActive) || isActive(run);
  $('start-label').textContent = pendingStart ? 'Starting…' : queued ? 'Queue run' : 'Start run';
  $('start-run').title = queued ? 'A run is active: this one waits in the queue until the server has a free slot.' : '';
}

async function control(action, applyRun) {
  const run = state.watched?.run;
  if (!run) return;
  pendingControl = true;
  renderButtons();
  try {
    // Step: the answer comes once the worker has taken the steps and paused again.
    const updated = action === 'step'
      ? await api.step(run.id, Math.min(1000, Math.max(1, Math.round(Number($('step-count').value) || 1))))
      : await api.control(run.id, action);
    applyRun(updated);
  } catch (error) {
    notifyError(error, `Could not ${action} run #${run.id}`);
    // Our idea of the status may be stale: ask the server for the truth.
    try {
      applyRun(await api.run(run.id));
    } catch {
      /* the first error already told the user */
    }
  } finally {
    pendingControl = false;
    renderButtons();
  }
}

async function submit(event, watchRun) {
  event?.preventDefault();
  if (pendingStart) return;
  $('form-error').textContent = '';
  attempted = true;
  const { config, errors } = readForm();
  if (errors) {
    $('form-error').textContent = errors.length === 1
      ? `Fix this before starting: ${errors[0].message}`
      : `Fix the ${errors.length} highlighted fields before starting.`;
    errors[0].input?.focus();
    return;
  }
  pendingStart = true;
  renderButtons();
  try {
    const run = await api.startRun(config);
    const message = run.status === 'queued' && state.runs.some(isActive)
      ? `Run #${run.id} is queued; it starts when the current run finishes.`
      : `Run #${run.id} started.`;
    notify(message, { kind: 'success', key: `run-${run.id}` });
    await watchRun(run.id, { follow: true, run });
    revealTraining(`${message} Its curves are in the Training card.`);
    emit('runs-changed');
  } catch (error) {
    if (error instanceof ApiError && error.status === 422) {
      $('form-error').textContent = `The server rejected this config: ${error.message}`;
    } else {
      $('form-error').textContent = error.message;
      notifyError(error, 'Could not start the run');
    }
  } finally {
    pendingStart = false;
    renderButtons();
  }
}

/** After Start: scroll the Training card into view unless it is already, and say where it is. */
function revealTraining(message) {
  const card = $('training');
  const header = document.querySelector('.topbar')?.getBoundingClientRect().bottom ?? 0;
  const top = card.getBoundingClientRect().top;
  if (top < header || top > window.innerHeight * 0.6) {
    const still = window.matchMedia?.('(prefers-reduced-motion: reduce)').matches;
    card.scrollIntoView({ behavior: still ? 'auto' : 'smooth', block: 'start' });
  }
  $('training-announce').textContent = message;
}

/**
 * watchRun(id, {follow, run}): make the page follow that run.
 * applyRun(run): merge a Run answered by the server into the state.
 */
export function initControls({ watchRun, applyRun }) {
  buildAugmentationFields();
  $('run-form').addEventListener('submit', (event) => submit(event, watchRun));
  $('preset').addEventListener('change', () => showPreset($('preset').value));
  $('optimizer').addEventListener('change', updateOptimizerFields);
  $('add-layer').addEventListener('click', () => {
    const sizes = layerInputs().map((input) => Number(input.value)).filter((n) => n > 0);
    const next = sizes.length ? Math.max(16, Math.round(sizes[sizes.length - 1] / 2)) : 128;
    addLayer(next, { focus: true });
  });
  for (const name of Object.keys(FIELDS)) {
    $(name).addEventListener('input', () => {
      if (attempted) validateField(name);
    });
  }
  $('pause-run').addEventListener('click', () => control('pause', applyRun));
  $('resume-run').addEventListener('click', () => control('resume', applyRun));
  $('step-run').addEventListener('click', () => control('step', applyRun));
  $('stop-run').addEventListener('click', () => control('stop', applyRun));
  $('no-model-start').addEventListener('click', () => {
    $('run-form').requestSubmit();
  });

  on('reuse-config', (run) => {
    const preset = presetByName(run.config?.preset);
    if (preset) $('preset').value = preset.name;
    $('preset-description').textContent = preset?.description ?? '';
    fillFromConfig(run.config);
    notify(`The settings of run #${run.id} are in the form: change what you like and start.`, { kind: 'info' });
    $('new-run').scrollIntoView({ behavior: 'smooth', block: 'start' });
    $('preset').focus({ preventScroll: true });
  });
  on('options', (options) => {
    populate(options);
    renderButtons();
  });
  on('watched', renderButtons);
  on('runs', renderButtons);
  renderButtons();
}
