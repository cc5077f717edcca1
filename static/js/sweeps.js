// The Sweeps card: every sweep with its progress and best trial, and the open sweep's view
// (data-testid="sweep-view"): its trials sorted by the metric, parallel coordinates of the swept
// fields against the metric, the metric against each field, pruned trials greyed, and "use the
// best trial for predictions". A trial is a run: opening it shows it in the Training card.
// While a sweep runs, its answer is fetched again every few seconds.

import { ApiError, request } from './api.js';
import { formatDuration, formatInteger } from './format.js';
import { emit, on, state } from './state.js';
import { buildSweepForm, initSweepForm } from './sweepform.js';
import { drawParallelCoordinates, drawScatter, formatValue } from './sweepplots.js';
import { notify, notifyError } from './toast.js';

const $ = (id) => document.getElementById(id);
const POLL_MS = 2500;
let actions = { refreshRuns: async () => {}, refreshActiveModel: async () => {} };
let openId = null;
let timer = null;
let highlighted = null; // the trial under the pointer, in every plot
const hitTests = new Map(); // canvas -> (x, y) -> trial
let resizes = null; // redraws the open sweep's plots when their width changes

function element(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

const direction = (sweep) => state.options?.sweeps?.metrics?.[sweep.spec.metric] ?? 'maximize';
const shownValue = (value) => (Number.isFinite(value) ? value.toFixed(4) : '–');

function badge(status) {
  const node = element('span', { className: 'status-badge', textContent: status });
  node.dataset.status = status;
  return node;
}

// ---- the list ----------------------------------------------------------------------------------------
function progressText(sweep) {
  const { progress } = sweep;
  const parts = [`${progress.finished}/${progress.planned} trials`];
  if (progress.running) parts.push(`${progress.running} training`);
  if (progress.pruned) parts.push(`${progress.pruned} pruned (${formatInteger(progress.epochs_pruned)} epochs saved)`);
  if (progress.failed) parts.push(`${progress.failed} failed`);
  return parts.join(' · ');
}

function renderList() {
  const list = $('sweep-list');
  if (!state.sweeps.length) {
    list.replaceChildren(element('p', { className: 'empty', textContent: 'No sweeps yet. Start one from the Sweep tab of the New run card.' }));
    return;
  }
  const rows = state.sweeps.map((sweep) => {
    const open = element('button', { type: 'button', className: 'link-button', textContent: `#${sweep.id} ${sweep.name}` });
    open.addEventListener('click', () => openSweep(sweep.id, { reveal: true }));
    const best = sweep.best_trial;
    const row = element('tr', {}, [
      element('th', { scope: 'row' }, [open]),
      element('td', {}, [badge(sweep.status)]),
      element('td', { textContent: `${sweep.spec.method}, ${sweep.spec.pruner === 'none' ? 'no pruner' : `${sweep.spec.pruner} pruner`}` }),
      element('td', { textContent: progressText(sweep) }),
      element('td', { className: 'num', textContent: best ? `${shownValue(best.value)} (trial ${best.trial})` : '–' }),
    ]);
    if (sweep.id === openId) row.dataset.open = 'true';
    return row;
  });
  const table = element('table', { className: 'run-table sweep-table' }, [
    element('caption', { className: 'sr-only', textContent: 'Sweeps, newest first' }),
    element('thead', {}, [element('tr', {}, ['Sweep', 'Status', 'Search', 'Progress', 'Best'].map(
      (title, i) => element('th', { scope: 'col', className: i === 4 ? 'num' : '', textContent: title })))]),
    element('tbody', {}, rows),
  ]);
  list.replaceChildren(element('div', { className: 'table-scroll' }, [table]));
}

async function refreshList() {
  try {
    state.sweeps = (await request('GET', '/api/sweeps')).sweeps ?? [];
  } catch (error) {
    return; // the run list reports an unreachable server
  }
  renderList();
  schedule();
}

// ---- the open sweep -------------------------------------------------------------------------------
async function openSweep(id, { reveal = false } = {}) {
  openId = id;
  try {
    state.sweep = await request('GET', `/api/sweeps/${id}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) closeSweep();
    else notifyError(error, `Could not open sweep #${id}`);
    return;
  }
  renderView();
  renderList();
  schedule();
  if (reveal) {
    const still = window.matchMedia?.('(prefers-reduced-motion: reduce)').matches;
    $('sweep-view').scrollIntoView({ behavior: still ? 'auto' : 'smooth', block: 'start' });
  }
}

function closeSweep() {
  openId = null;
  state.sweep = null;
  $('sweep-view').hidden = true;
  $('sweep-view').replaceChildren();
  renderList();
}

/** The trials, best first: completed by their metric, then pruned and the others by theirs. */
function sortedTrials(sweep) {
  const sign = direction(sweep) === 'minimize' ? 1 : -1;
  const rank = (trial) => (trial.status === 'completed' ? 0 : trial.pruned ? 1 : 2);
  const value = (trial) => (Number.isFinite(trial.value) ? sign * trial.value : Infinity);
  return [...sweep.trials].sort((a, b) => rank(a) - rank(b) || value(a) - value(b) || a.trial - b.trial);
}

function trialsTable(sweep) {
  const names = Object.keys(sweep.spec.space);
  const head = ['Trial', 'Status', ...names, sweep.spec.metric, 'Epochs', 'Run'];
  const rows = sortedTrials(sweep).map((trial) => {
    const open = element('button', { type: 'button', className: 'btn btn-small btn-quiet', textContent: 'Open run' });
    open.setAttribute('aria-label', `Open run #${trial.run_id} (trial ${trial.trial})`);
    open.dataset.key = `open-${trial.trial}`;
    open.addEventListener('click', () => openRun(trial));
    const status = badge(trial.status);
    if (trial.reason) status.title = trial.reason;
    const row = element('tr', {}, [
      element('th', { scope: 'row', textContent: `${trial.trial}` }),
      element('td', {}, [status]),
      ...names.map((name) => element('td', { className: 'num', textContent: formatValue(trial.params[name]) })),
      element('td', { className: 'num', textContent: shownValue(trial.value) }),
      element('td', { className: 'num', textContent: `${trial.epochs}/${trial.config.epochs}` }),
      element('td', {}, [open]),
    ]);
    row.dataset.trial = String(trial.trial);
    if (trial.pruned) row.dataset.pruned = 'true';
    if (trial.trial === sweep.best_trial?.trial) row.dataset.best = 'true';
    return row;
  });
  return element('div', { className: 'table-scroll' }, [element('table', { className: 'run-table sweep-trials' }, [
    element('caption', { className: 'sr-only', textContent: `Trials of sweep #${sweep.id}, best ${sweep.spec.metric} first` }),
    element('thead', {}, [element('tr', {}, head.map((title, i) => element('th', {
      scope: 'col', className: i >= 2 && i < head.length - 1 ? 'num' : '', textContent: title }))) ]),
    element('tbody', {}, rows),
  ])]);
}

function openRun(trial) {
  emit('watch-request', trial.run_id);
  $('training')?.scrollIntoView({ behavior: 'smooth', block: 'start' });
}

async function useBest(sweep) {
  const best = sweep.best_trial;
  try {
    await request('PUT', '/api/active-model', { run_id: best.run_id });
    notify(`Predictions now use trial ${best.trial} of sweep #${sweep.id} (run #${best.run_id}).`, { kind: 'success' });
    await actions.refreshActiveModel();
  } catch (error) {
    notifyError(error, 'Could not use the best trial for predictions');
  }
}

async function stopSweep(sweep) {
  try {
    state.sweep = await request('POST', `/api/sweeps/${sweep.id}/stop`);
    notify(`Sweep #${sweep.id} stopped.`, { kind: 'info' });
  } catch (error) {
    notifyError(error, `Could not stop sweep #${sweep.id}`);
  }
  await refreshAll();
}

function confirmDelete(sweep) {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = `Delete sweep #${sweep.id}?`;
  $('confirm-text').textContent = `Sweep #${sweep.id} (${sweep.name}) and its ${sweep.trials.length} trials' runs, `
    + `with their curves and models, are deleted${sweep.status === 'running' ? ' (it is stopped first)' : ''}. This cannot be undone.`;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

async function deleteSweep(sweep) {
  if (!(await confirmDelete(sweep))) return;
  try {
    await request('DELETE', `/api/sweeps/${sweep.id}`);
    notify(`Sweep #${sweep.id} deleted.`, { kind: 'info' });
    closeSweep();
  } catch (error) {
    notifyError(error, `Could not delete sweep #${sweep.id}`);
  }
  await refreshAll();
}

function summaryText(sweep) {
  const { spec } = sweep;
  const way = direction(sweep) === 'minimize' ? 'lowest' : 'highest';
  const pruner = spec.pruner === 'none' ? 'no pruner' : `the ${spec.pruner === 'asha' ? 'ASHA' : spec.pruner} pruner`;
  const elapsed = sweep.finished_at ? (Date.parse(sweep.finished_at) - Date.parse(sweep.created_at)) / 1000 : null;
  return `${spec.method === 'tpe' ? 'TPE' : spec.method} search, ${pruner}, ${way} ${spec.metric} wins; `
    + `${spec.max_concurrent} at once; ${progressText(sweep)}${elapsed ? `; took ${formatDuration(elapsed)}` : ''}.`;
}

function renderView() {
  const sweep = state.sweep;
  const view = $('sweep-view');
  if (!sweep) return;
  // Redrawn whole on every update: the control that had the focus gets it back.
  const focused = view.contains(document.activeElement) ? document.activeElement.dataset.key : null;
  view.hidden = false;
  view.dataset.status = sweep.status;
  view.dataset.sweep = String(sweep.id);
  const best = sweep.best_trial;
  const tools = [];
  if (sweep.status === 'running') {
    const stop = element('button', { type: 'button', className: 'btn btn-small btn-quiet btn-danger-text', textContent: 'Stop sweep' });
    stop.dataset.key = 'stop';
    stop.addEventListener('click', () => stopSweep(sweep));
    tools.push(stop);
  }
  const use = element('button', { type: 'button', className: 'btn btn-small btn-primary', textContent: 'Use best trial for predictions', disabled: !best });
  use.dataset.testid = 'use-best-trial';
  use.dataset.key = 'use-best';
  if (best) use.title = `Trial ${best.trial} (run #${best.run_id}): ${sweep.spec.metric} ${shownValue(best.value)}`;
  use.addEventListener('click', () => useBest(sweep));
  const remove = element('button', { type: 'button', className: 'btn btn-small btn-quiet', textContent: 'Delete' });
  remove.dataset.key = 'delete';
  remove.addEventListener('click', () => deleteSweep(sweep));
  const close = element('button', { type: 'button', className: 'btn btn-small btn-quiet', textContent: 'Close' });
  close.dataset.key = 'close';
  close.addEventListener('click', closeSweep);
  tools.push(use, remove, close);

  const heading = element('div', { className: 'sweep-view-head' }, [
    element('div', {}, [
      element('h3', {}, [`Sweep #${sweep.id}: ${sweep.name} `, badge(sweep.status)]),
      element('p', { className: 'muted small', textContent: summaryText(sweep) }),
      ...(sweep.reason ? [element('p', { className: 'small sweep-reason', textContent: sweep.reason })] : []),
      element('p', { className: 'small', textContent: best
        ? `Best: trial ${best.trial} (run #${best.run_id}), ${sweep.spec.metric} ${shownValue(best.value)}, with ${Object.entries(best.params).map(([k, v]) => `${k} ${formatValue(v)}`).join(', ')}.`
        : 'No trial has completed yet.' }),
    ]),
    element('div', { className: 'sweep-tools', role: 'group' }, tools),
  ]);
  heading.querySelector('.sweep-tools').setAttribute('aria-label', 'Sweep actions');
  const plotted = { ...sweep, direction: direction(sweep) };
  const parallel = element('canvas', { className: 'sweep-plot', role: 'img', tabIndex: 0 });
  parallel.dataset.testid = 'parallel-coordinates';
  parallel.dataset.key = 'parallel';
  parallel.setAttribute('aria-label', `Parallel coordinates: each of the ${sweep.trials.length} trials is a line through its `
    + `${Object.keys(sweep.spec.space).join(', ')} and its ${sweep.spec.metric}; the trials table below has the same numbers.`);
  const scatters = Object.keys(sweep.spec.space).map((name) => {
    const canvas = element('canvas', { className: 'sweep-plot', role: 'img' });
    canvas.dataset.testid = 'sweep-scatter';
    canvas.dataset.field = name;
    canvas.setAttribute('aria-label', `${sweep.spec.metric} of each trial against its ${name}`);
    return canvas;
  });
  const tooltip = element('div', { className: 'sweep-tooltip', hidden: true });
  view.replaceChildren(
    heading,
    element('div', { className: 'sweep-plots' }, [
      element('h4', { textContent: 'Fields → metric' }),
      element('div', { className: 'sweep-legend muted small', textContent: `Colour: worst to best ${sweep.spec.metric}; grey: pruned; thick: best; dashed: training.` }),
      element('div', { className: 'sweep-canvas-wrap' }, [parallel, tooltip]),
      element('h4', { textContent: `${sweep.spec.metric} against each field` }),
      element('div', { className: 'sweep-scatters' }, scatters),
    ]),
    element('h4', { textContent: 'Trials' }),
    trialsTable(sweep),
  );
  const draw = () => {
    hitTests.set(parallel, drawParallelCoordinates(parallel, plotted, highlighted));
    scatters.forEach((canvas) => hitTests.set(canvas, drawScatter(canvas, plotted, canvas.dataset.field, highlighted)));
  };
  draw();
  for (const canvas of [parallel, ...scatters]) {
    canvas.addEventListener('pointermove', (event) => {
      const rect = canvas.getBoundingClientRect();
      const trial = hitTests.get(canvas)?.(event.clientX - rect.left, event.clientY - rect.top) ?? null;
      canvas.style.cursor = trial ? 'pointer' : '';
      if (trial?.trial !== highlighted?.trial) {
        highlighted = trial;
        draw();
      }
      showTooltip(tooltip, trial, sweep, canvas, event);
    });
    canvas.addEventListener('pointerleave', () => {
      highlighted = null;
      tooltip.hidden = true;
      draw();
    });
    canvas.addEventListener('click', () => {
      if (highlighted) openRun(highlighted);
    });
  }
  resizes?.disconnect();
  resizes = new ResizeObserver(() => draw());
  resizes.observe(parallel);
  if (focused) view.querySelector(`[data-key="${focused}"]`)?.focus({ preventScroll: true });
}

function showTooltip(tooltip, trial, sweep, canvas, event) {
  if (!trial) {
    tooltip.hidden = true;
    return;
  }
  const lines = [`Trial ${trial.trial} (run #${trial.run_id}), ${trial.status}`,
    ...Object.entries(trial.params).map(([name, value]) => `${name}: ${formatValue(value)}`),
    `${sweep.spec.metric}: ${shownValue(trial.value)} after ${trial.epochs} epoch${trial.epochs === 1 ? '' : 's'}`];
  tooltip.replaceChildren(...lines.map((line) => element('div', { textContent: line })));
  const wrap = tooltip.parentElement.getBoundingClientRect();
  const rect = canvas.getBoundingClientRect();
  tooltip.style.left = `${Math.min(event.clientX - wrap.left + 12, rect.width - 200)}px`;
  tooltip.style.top = `${event.clientY - wrap.top + 12}px`;
  tooltip.hidden = false;
}

// ---- keeping up to date ----------------------------------------------------------------------------
function running() {
  return state.sweeps.some((sweep) => sweep.status === 'running') || state.sweep?.status === 'running';
}

function schedule() {
  clearTimeout(timer);
  if (!running()) return;
  timer = setTimeout(async () => {
    if (document.visibilityState === 'visible') await refreshAll();
    else schedule();
  }, POLL_MS);
}

async function refreshAll() {
  if (openId !== null) await openSweep(openId);
  await refreshList();
}

export function initSweeps(callbacks) {
  actions = { ...actions, ...callbacks };
  initSweepForm(async (sweep) => {
    state.sweep = sweep;
    await openSweep(sweep.id, { reveal: true });
    await refreshList();
    actions.refreshRuns();
  });
  // A sweep started elsewhere (another tab, the API) shows up with its trials in the run list.
  let listedAt = 0;
  on('runs', () => {
    if (Date.now() - listedAt < POLL_MS) return;
    listedAt = Date.now();
    refreshList();
  });
  on('options', buildSweepForm);
  on('options', () => (state.sweep ? renderView() : null));
  refreshList();
}
