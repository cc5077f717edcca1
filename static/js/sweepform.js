// The Sweep tab of the New run card: which config fields to vary and over what, how to search
// them, how many trials. Trials start from the Run tab's settings (its preset and changes); the
// fields offered and their bounds are GET /api/options `fields` (what the server checks), and
// what the server still refuses (422) is shown under the form, in its words.

import { ApiError, request } from './api.js';
import { readForm } from './controls.js';
import { formatValue } from './sweepplots.js';
import { state } from './state.js';
import { notify, notifyError } from './toast.js';

const $ = (id) => document.getElementById(id);
// Where a newly added field starts: ranges a person would try first.
const STARTS = {
  learning_rate: { kind: 'log', min: 0.001, max: 0.3 },
  weight_decay: { kind: 'log', min: 0.00001, max: 0.01 },
  dropout: { kind: 'range', min: 0, max: 0.5 },
  momentum: { kind: 'range', min: 0.8, max: 0.99 },
  lr_decay: { kind: 'range', min: 0.3, max: 0.9 },
  warmup_epochs: { kind: 'range', min: 0, max: 2 },
  batch_size: { kind: 'values', values: '64; 128; 256' },
  epochs: { kind: 'values', values: '2; 4; 8' },
  seed: { kind: 'values', values: '0; 1; 2' },
  hidden_layers: { kind: 'values', values: '128; 256; 512, 256' },
};
const FIRST_FIELDS = ['learning_rate', 'hidden_layers', 'batch_size'];
let rowCount = 0;
let onStarted = () => {};
let pending = false;

function element(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

function labelled(text, input, hint = '') {
  const field = element('div', { className: 'field' });
  field.append(element('label', { htmlFor: input.id, textContent: text }), input);
  if (hint) field.append(element('p', { className: 'hint', textContent: hint }));
  return field;
}

function select(id, values, selected, labels = {}) {
  const node = element('select', { id });
  for (const value of values) node.append(element('option', { value, textContent: labels[value] ?? value }));
  node.value = selected;
  return node;
}

const fieldLabel = (name) => name.replace('augmentation.', 'augmentation: ').replaceAll('_', ' ');

/** Every field a sweep may vary: the config's numbers, names and lists, and batch_norm. */
function sweepable() {
  return [...Object.keys(state.options?.fields ?? {}), 'batch_norm'];
}

function boundsOf(name) {
  return name === 'batch_norm' ? { choices: [true, false] } : state.options?.fields?.[name] ?? {};
}

function kindsOf(name) {
  const bounds = boundsOf(name);
  return name === 'hidden_layers' || bounds.choices ? ['values'] : ['range', 'log', 'values'];
}

// ---- one row per swept field ----------------------------------------------------------------------
function addRow(name) {
  rowCount += 1;
  const id = `sweep-field-${rowCount}`;
  const row = element('fieldset', { className: 'sweep-param' });
  row.dataset.row = id;
  row.append(element('legend', { className: 'sr-only', textContent: `Swept field ${rowCount}` }));
  const fieldSelect = select(`${id}-name`, sweepable(), name, Object.fromEntries(sweepable().map((f) => [f, fieldLabel(f)])));
  fieldSelect.setAttribute('aria-label', 'Field to vary');
  fieldSelect.dataset.part = 'name';
  const kindSelect = select(`${id}-kind`, [], '');
  kindSelect.dataset.part = 'kind';
  // Labels here never repeat the Run tab's ("Learning rate"): both forms are in the page at once.
  kindSelect.setAttribute('aria-label', 'Varies as');
  const remove = element('button', { type: 'button', className: 'btn btn-small btn-quiet btn-icon', textContent: '×' });
  remove.setAttribute('aria-label', 'Stop varying this field');
  remove.addEventListener('click', () => row.remove());
  const body = element('div', { className: 'sweep-param-body' });
  row.append(element('div', { className: 'sweep-param-head' }, [fieldSelect, kindSelect, remove]), body);

  const fillKinds = () => {
    const kinds = kindsOf(fieldSelect.value);
    const labels = { range: 'range', log: 'log range', values: 'values' };
    kindSelect.replaceChildren(...kinds.map((kind) => element('option', { value: kind, textContent: labels[kind] })));
    kindSelect.value = STARTS[fieldSelect.value]?.kind ?? kinds[0];
    kindSelect.disabled = kinds.length === 1;
  };
  const fillBody = () => {
    const fieldName = fieldSelect.value;
    const bounds = boundsOf(fieldName);
    const start = STARTS[fieldName] ?? {};
    body.replaceChildren();
    if (bounds.choices) {
      const group = element('div', { className: 'sweep-choices', role: 'group' });
      group.setAttribute('aria-label', 'Values to try');
      for (const choice of bounds.choices) {
        const box = element('input', { type: 'checkbox', checked: true, value: JSON.stringify(choice) });
        box.dataset.part = 'choice';
        group.append(element('label', { className: 'sweep-choice' }, [box, ` ${formatValue(choice)}`]));
      }
      body.append(group);
    } else if (kindSelect.value === 'values') {
      const input = element('input', { id: `${id}-values`, type: 'text', value: start.values ?? '', autocomplete: 'off' });
      input.dataset.part = 'values';
      const hint = fieldName === 'hidden_layers'
        ? 'Architectures separated by ; and layer sizes by commas: 128; 512, 256'
        : `Values separated by ; (${bounds.min ?? ''} to ${bounds.max ?? ''})`;
      body.append(labelled('Values', input, hint));
    } else {
      const low = start.kind && start.kind !== 'values' ? start.min : bounds.min;
      const high = start.kind && start.kind !== 'values' ? start.max : Math.min(bounds.max, (bounds.min ?? 0) + 10);
      for (const [part, value] of [['min', low], ['max', high]]) {
        const input = element('input', { id: `${id}-${part}`, type: 'number', step: bounds.integer ? '1' : 'any', value: String(value ?? '') });
        if (Number.isFinite(bounds.min)) input.min = String(bounds.min);
        if (Number.isFinite(bounds.max)) input.max = String(bounds.max);
        input.dataset.part = part;
        body.append(labelled(part === 'min' ? 'From' : 'To', input));
      }
      body.classList.add('field-row');
      return;
    }
    body.classList.remove('field-row');
  };
  fieldSelect.addEventListener('change', () => {
    fillKinds();
    fillBody();
  });
  kindSelect.addEventListener('change', fillBody);
  fillKinds();
  fillBody();
  $('sweep-params').append(row);
  return row;
}

function parseValues(name, text) {
  const items = text.split(';').map((item) => item.trim()).filter(Boolean);
  if (name === 'hidden_layers') {
    return items.map((item) => item.split(/[\s,]+/).filter(Boolean).map(Number));
  }
  return items.map((item) => (Number.isFinite(Number(item)) ? Number(item) : item));
}

/** The space as the API takes it; {error} names what is missing. */
function readSpace() {
  const space = {};
  for (const row of $('sweep-params').querySelectorAll('.sweep-param')) {
    const name = row.querySelector('[data-part="name"]').value;
    const kind = row.querySelector('[data-part="kind"]').value;
    if (space[name]) return { error: `${fieldLabel(name)} is chosen twice; vary each field once.` };
    const boxes = [...row.querySelectorAll('[data-part="choice"]')];
    if (boxes.length) {
      space[name] = { values: boxes.filter((box) => box.checked).map((box) => JSON.parse(box.value)) };
    } else if (kind === 'values') {
      space[name] = { values: parseValues(name, row.querySelector('[data-part="values"]').value) };
    } else {
      const min = row.querySelector('[data-part="min"]').value;
      const max = row.querySelector('[data-part="max"]').value;
      if (min === '' || max === '') return { error: `Give ${fieldLabel(name)} a range: from and to.` };
      space[name] = { min: Number(min), max: Number(max), ...(kind === 'log' ? { log: true } : {}) };
    }
  }
  if (!Object.keys(space).length) return { error: 'Add a field to vary.' };
  return { space };
}

// ---- the form --------------------------------------------------------------------------------------
function build(options) {
  const form = $('sweep-form');
  const sweeps = options.sweeps ?? { methods: ['tpe'], pruners: ['none'], metrics: { val_accuracy: 'maximize' } };
  const limits = options.limits ?? {};
  const concurrent = Math.max(1, Math.min(limits.max_concurrent_runs ?? 1, limits.max_sweep_concurrent ?? 1));
  const number = (id, value, min, max) => element('input', { id, type: 'number', inputMode: 'numeric', step: '1', value: String(value), min: String(min), ...(max ? { max: String(max) } : {}) });
  form.replaceChildren(
    element('p', { className: 'hint', id: 'sweep-base', textContent: 'Each trial starts from the settings on the Run tab; the fields below vary.' }),
    labelled('Name', element('input', { id: 'sweep-name', type: 'text', maxLength: 120, autocomplete: 'off', placeholder: 'e.g. learning rate and width' })),
    element('fieldset', { className: 'field sweep-params-field' }, [
      element('legend', { textContent: 'Fields to vary' }),
      element('div', { id: 'sweep-params', className: 'sweep-params' }),
      element('button', { type: 'button', id: 'sweep-add-field', className: 'btn btn-small btn-quiet', textContent: '+ Add field' }),
    ]),
    element('div', { className: 'field-row' }, [
      labelled('Search', select('sweep-method', sweeps.methods, sweeps.methods.includes('tpe') ? 'tpe' : sweeps.methods[0], { tpe: 'TPE', grid: 'grid', random: 'random' })),
      labelled('Trials', number('sweep-trials', 12, 1, limits.max_sweep_trials), 'Grid: blank for all points'),
    ]),
    element('div', { className: 'field-row' }, [
      labelled('Pruner', select('sweep-pruner', sweeps.pruners, sweeps.pruners.includes('median') ? 'median' : sweeps.pruners[0], { none: 'none', median: 'median', asha: 'ASHA' })),
      labelled('Metric', select('sweep-metric', Object.keys(sweeps.metrics), 'val_accuracy')),
    ]),
    element('div', { className: 'field-row' }, [
      labelled('Trials at once', number('sweep-concurrent', concurrent, 1, limits.max_sweep_concurrent)),
      labelled('Epochs per trial', number('sweep-epochs', '', 1, options.fields?.epochs?.max), 'Blank: the Run tab\'s'),
    ]),
    labelled('Sampler seed', number('sweep-seed', 0, 0)),
    element('div', { className: 'form-footer' }, [
      element('p', { className: 'form-error', id: 'sweep-error', role: 'alert' }),
      element('button', { type: 'submit', className: 'btn btn-primary btn-block', id: 'start-sweep', textContent: 'Start sweep' }),
    ]),
  );
  $('start-sweep').dataset.testid = 'start-sweep';
  $('sweep-add-field').addEventListener('click', () => {
    const used = new Set([...$('sweep-params').querySelectorAll('[data-part="name"]')].map((s) => s.value));
    const next = sweepable().find((name) => !used.has(name)) ?? sweepable()[0];
    addRow(next).querySelector('select').focus();
  });
  for (const name of FIRST_FIELDS.slice(0, 1)) addRow(name);
}

async function submit(event) {
  event.preventDefault();
  if (pending) return;
  const error = $('sweep-error');
  error.textContent = '';
  const { config, errors } = readForm();
  if (errors) {
    error.textContent = `The Run tab's settings need fixing first: ${errors[0].message}`;
    return;
  }
  const { space, error: spaceError } = readSpace();
  if (spaceError) {
    error.textContent = spaceError;
    return;
  }
  const epochs = $('sweep-epochs').value;
  const trials = $('sweep-trials').value;
  const body = {
    name: $('sweep-name').value.trim() || null,
    base: { ...config, ...(epochs ? { epochs: Number(epochs) } : {}) },
    space,
    method: $('sweep-method').value,
    trials: trials === '' ? null : Number(trials),
    metric: $('sweep-metric').value,
    pruner: $('sweep-pruner').value,
    max_concurrent: Number($('sweep-concurrent').value),
    seed: Number($('sweep-seed').value || 0),
  };
  pending = true;
  $('start-sweep').disabled = true;
  try {
    const sweep = await request('POST', '/api/sweeps', body);
    notify(`Sweep #${sweep.id} started: ${sweep.spec.trials} trials, ${sweep.spec.max_concurrent} at once.`, { kind: 'success' });
    onStarted(sweep);
  } catch (failure) {
    if (failure instanceof ApiError && [409, 422, 429].includes(failure.status)) {
      error.textContent = `The server refused this sweep: ${failure.message}`;
    } else {
      error.textContent = failure.message;
      notifyError(failure, 'Could not start the sweep');
    }
  } finally {
    pending = false;
    $('start-sweep').disabled = false;
  }
}

function selectTab(which) {
  const sweep = which === 'sweep';
  $('tab-run').setAttribute('aria-pressed', String(!sweep));
  $('tab-sweep').setAttribute('aria-pressed', String(sweep));
  $('run-form').hidden = sweep;
  $('sweep-form').hidden = !sweep;
  $('config-title').textContent = sweep ? 'New sweep' : 'New run';
}

/** `started(sweep)`: called with the sweep the server started. */
export function initSweepForm(started) {
  onStarted = started;
  $('sweep-form').addEventListener('submit', submit);
  $('tab-run').addEventListener('click', () => selectTab('run'));
  $('tab-sweep').addEventListener('click', () => selectTab('sweep'));
}

export function buildSweepForm(options) {
  build(options);
}
