// The run history: every run the server knows (also from before a restart) with its status,
// config, best validation accuracy and duration. Open one to watch it, tick Compare to overlay
// it on the charts, make it the model that serves predictions, download or delete it.

import { api } from './api.js';
import { configSummary, formatDuration, formatPercent, formatRelativeTime } from './format.js';
import { seriesColor } from './chart.js';
import { appendPoints, emit, isActive, lastStep, newRunData, on, putEpoch, state } from './state.js';
import { notify, notifyError } from './toast.js';

const $ = (id) => document.getElementById(id);
const COMPARE_SLOTS = 5; // palette slots 1..5; slot 0 is the watched run
const COLLAPSED_ROWS = 8;
let showAll = false;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, action, runId, { ariaLabel, disabled = false, kind = 'btn-quiet' } = {}) {
  const node = element('button', `btn btn-small ${kind}`, label);
  node.type = 'button';
  node.dataset.action = action;
  node.dataset.runId = String(runId);
  node.disabled = disabled;
  if (ariaLabel) node.setAttribute('aria-label', ariaLabel);
  return node;
}

function durationOf(run) {
  if (Number.isFinite(run.duration_s)) return run.duration_s;
  if (run.started_at && isActive(run)) return (Date.now() - new Date(run.started_at).getTime()) / 1000;
  return null;
}

function renderRun(run) {
  const watched = state.watched?.id === run.id;
  const compared = state.compared.get(run.id);
  const item = element('li', 'run');
  item.dataset.runId = String(run.id);
  item.dataset.watched = String(watched);
  item.dataset.status = run.status;

  const main = element('div', 'run-main');
  const line = element('div', 'run-line');
  line.append(element('span', 'run-id', `#${run.id}`));
  const status = element('span', 'status-badge', run.status);
  status.dataset.status = run.status;
  line.append(status);
  if (run.is_active_model || state.activeModel.run_id === run.id) line.append(element('span', 'run-badge', 'Serving predictions'));
  if (watched) line.append(element('span', 'run-badge watching', 'Watching'));
  line.append(element('span', 'muted small', formatRelativeTime(run.created_at)));
  main.append(line);
  const preset = run.config?.preset ? `${run.config.preset} · ` : '';
  main.append(element('div', 'run-config', preset + configSummary(run.config)));
  const metrics = element('div', 'run-metrics');
  const metric = (label, value) => {
    const span = element('span', 'muted', `${label} `);
    span.append(element('strong', '', value));
    return span;
  };
  metrics.append(metric('Best val', formatPercent(run.best_val_accuracy, 2)));
  if (Number.isFinite(run.test_accuracy)) metrics.append(metric('Test', formatPercent(run.test_accuracy, 2)));
  metrics.append(metric('Duration', formatDuration(durationOf(run))));
  if (run.status === 'failed' && run.reason) metrics.append(element('span', 'field-error', run.reason));
  main.append(metrics);

  const actions = element('div', 'run-actions-list');
  actions.append(button('Open', 'open', run.id, { ariaLabel: `Open run ${run.id}`, disabled: watched }));
  const toggle = element('label', 'compare-toggle');
  const checkbox = element('input');
  checkbox.type = 'checkbox';
  checkbox.dataset.action = 'compare';
  checkbox.dataset.runId = String(run.id);
  checkbox.checked = Boolean(compared) || watched;
  checkbox.disabled = watched || (!compared && state.compared.size >= COMPARE_SLOTS);
  checkbox.setAttribute('aria-label', `Compare run ${run.id} on the charts`);
  const swatch = element('span', 'compare-swatch');
  swatch.setAttribute('aria-hidden', 'true');
  if (compared || watched) {
    swatch.style.background = seriesColor(watched ? 0 : compared.colorIndex);
    swatch.style.borderColor = 'transparent';
  }
  toggle.append(checkbox, swatch, document.createTextNode('Compare'));
  actions.append(toggle);
  actions.append(button('Reuse settings', 'reuse', run.id, { ariaLabel: `Copy the settings of run ${run.id} into the form` }));
  const serving = state.activeModel.run_id === run.id && state.activeModel.chosen_by === 'user';
  actions.append(button('Use for predictions', 'activate', run.id, {
    ariaLabel: `Use the model of run ${run.id} for predictions`,
    disabled: !run.has_model || serving,
  }));
  if (run.has_model) {
    const link = element('a', 'btn btn-small btn-quiet', 'Download');
    link.href = api.modelUrl(run.id);
    link.download = `mnist-lab-run-${run.id}.npz`;
    link.dataset.action = 'download';
    link.dataset.runId = String(run.id);
    link.setAttribute('aria-label', `Download the model of run ${run.id}`);
    actions.append(link);
  }
  actions.append(button('Delete', 'delete', run.id, { ariaLabel: `Delete run ${run.id}`, kind: 'btn-quiet btn-danger-text' }));

  item.append(main, actions);
  return item;
}

// Rows are rebuilt only when what they show changed, so the refresh every few seconds does not
// replace a button under a pointer that is about to click it.
const rows = new Map(); // run id -> { key, node }

function rowKey(run) {
  return JSON.stringify([
    run, state.watched?.id === run.id, state.compared.get(run.id)?.colorIndex ?? null,
    state.compared.size >= COMPARE_SLOTS, state.activeModel,
    formatRelativeTime(run.created_at), formatDuration(durationOf(run)),
  ]);
}

function render() {
  const list = $('run-list');
  const focused = document.activeElement;
  const focusKey = list.contains(focused) && focused.dataset.action
    ? `[data-run-id="${focused.dataset.runId}"][data-action="${focused.dataset.action}"]`
    : null;
  // The newest runs, the watched one and the compared ones; all of them on request.
  const shown = showAll ? state.runs : state.runs.filter((run, i) => i < COLLAPSED_ROWS
    || run.id === state.watched?.id || state.compared.has(run.id) || isActive(run));
  const more = $('show-all-runs');
  more.hidden = state.runs.length <= COLLAPSED_ROWS;
  more.textContent = showAll ? 'Show fewer runs' : `Show all ${state.runs.length} runs`;
  more.setAttribute('aria-expanded', String(showAll));
  const nodes = shown.map((run) => {
    const key = rowKey(run);
    const row = rows.get(run.id);
    if (row?.key === key) return row.node;
    const node = renderRun(run);
    rows.set(run.id, { key, node });
    return node;
  });
  for (const id of rows.keys()) if (!state.runs.some((run) => run.id === id)) rows.delete(id);
  const current = [...list.children];
  if (current.length !== nodes.length || current.some((node, i) => node !== nodes[i])) {
    list.replaceChildren(...nodes);
  }
  $('run-list-empty').hidden = state.runs.length > 0;
  $('clear-compare').hidden = state.compared.size === 0;
  if (focusKey && !list.contains(document.activeElement)) list.querySelector(focusKey)?.focus();
}

// ---- comparison ---------------------------------------------------------------------------------
function freeSlot() {
  const used = new Set([...state.compared.values()].map((entry) => entry.colorIndex));
  for (let slot = 1; slot <= COMPARE_SLOTS; slot += 1) if (!used.has(slot)) return slot;
  return null;
}

async function loadMetrics(data) {
  const metrics = await api.metrics(data.id, lastStep(data) >= 0 ? lastStep(data) : null);
  appendPoints(data, metrics.iterations ?? []);
  for (const epoch of metrics.epochs ?? []) putEpoch(data, epoch);
}

async function compare(runId, checked) {
  if (!checked) {
    state.compared.delete(runId);
    emit('compare');
    render();
    return;
  }
  const run = state.runs.find((r) => r.id === runId);
  const slot = freeSlot();
  if (!run || slot === null) return;
  const data = newRunData(run);
  state.compared.set(runId, { data, colorIndex: slot });
  render();
  try {
    await loadMetrics(data);
    emit('compare');
  } catch (error) {
    state.compared.delete(runId);
    render();
    notifyError(error, `Could not load the curves of run #${runId}`);
  }
}

/** Compared runs that are still training get their new points on every history refresh. */
async function refreshCompared() {
  let changed = false;
  for (const { data } of state.compared.values()) {
    const run = state.runs.find((r) => r.id === data.id);
    if (!run) continue;
    const wasActive = isActive(data.run);
    data.run = run;
    if (!wasActive) continue;
    try {
      await loadMetrics(data);
      changed = true;
    } catch {
      /* the next refresh tries again */
    }
  }
  for (const id of [...state.compared.keys()]) {
    if (!state.runs.some((r) => r.id === id)) {
      state.compared.delete(id);
      changed = true;
    }
  }
  if (changed) emit('compare');
}

// ---- actions ------------------------------------------------------------------------------------
function confirmDelete(run) {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = `Delete run #${run.id}?`;
  $('confirm-text').textContent = isActive(run)
    ? `Run #${run.id} is ${run.status}; it will be stopped, and its curves and model deleted. This cannot be undone.`
    : `Its curves and its model are deleted. This cannot be undone.`;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

async function onAction(target, { watchRun, refreshRuns, refreshActiveModel }) {
  const runId = Number(target.dataset.runId);
  const run = state.runs.find((r) => r.id === runId);
  if (!run) return;
  switch (target.dataset.action) {
    case 'open':
      await watchRun(runId, { follow: isActive(run) });
      document.querySelector('.area-training').scrollIntoView({ behavior: 'smooth', block: 'start' });
      break;
    case 'reuse':
      emit('reuse-config', run);
      break;
    case 'activate':
      try {
        state.activeModel = await api.setActiveModel(runId);
        emit('active-model');
        notify(`Predictions now come from run #${runId}.`, { kind: 'success' });
        await refreshRuns();
      } catch (error) {
        notifyError(error, `Could not use run #${runId} for predictions`);
      }
      break;
    case 'delete':
      if (!(await confirmDelete(run))) return;
      try {
        await api.deleteRun(runId);
        notify(`Run #${runId} deleted.`, { kind: 'success' });
        state.compared.delete(runId);
        emit('compare');
        emit('run-deleted', runId);
        await refreshRuns();
        await refreshActiveModel();
      } catch (error) {
        notifyError(error, `Could not delete run #${runId}`);
      }
      break;
    default:
      break;
  }
}

export function initRuns(actions) {
  const list = $('run-list');
  list.addEventListener('click', (event) => {
    const target = event.target.closest('button[data-action]');
    if (target && !target.disabled) onAction(target, actions);
  });
  list.addEventListener('change', (event) => {
    const target = event.target;
    if (target.dataset.action === 'compare') compare(Number(target.dataset.runId), target.checked);
  });
  $('show-all-runs').addEventListener('click', () => {
    showAll = !showAll;
    render();
  });
  $('clear-compare').addEventListener('click', () => {
    state.compared.clear();
    emit('compare');
    render();
  });
  on('runs', () => {
    render();
    refreshCompared();
  });
  on('watched', render);
  on('active-model', render);
  render();
}
