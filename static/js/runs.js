// The run table: every run the server knows (also from before a restart), sortable by each
// column and filtered by what you type (name, preset, status, tag, setting). A row's name opens
// the run; its checkbox overlays it on the charts; everything else is in the row's Actions menu
// (use for predictions, download, export, copy the CLI command, reuse settings, rename, delete).

import { api } from './api.js';
import { seriesColor } from './chart.js';
import { configSummary, formatDuration, formatPercent, formatRelativeTime } from './format.js';
import { runName } from './configs.js';
import { copyCli } from './export.js';
import { closeMenu, initMenu, openMenu } from './menu.js';
import { appendPoints, emit, isActive, lastStep, newRunData, on, putEpoch, state } from './state.js';
import { notify, notifyError } from './toast.js';

const $ = (id) => document.getElementById(id);
const COMPARE_SLOTS = 5; // palette slots 1..5; slot 0 is the watched run
const COLLAPSED_ROWS = 8;
let showAll = false;
let sort = { key: 'id', descending: true };
let filter = '';

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function durationOf(run) {
  if (Number.isFinite(run.duration_s)) return run.duration_s;
  if (run.started_at && isActive(run)) return (Date.now() - new Date(run.started_at).getTime()) / 1000;
  return null;
}

/** Tags as the server stores them (a list of strings), on servers that store them. */
const tagsOf = (run) => (Array.isArray(run.tags) ? run.tags.filter((tag) => typeof tag === 'string' && tag) : []);

const canEdit = () => Array.isArray(state.options?.run_fields) && state.options.run_fields.includes('name');

function renderRun(run) {
  const watched = state.watched?.id === run.id;
  const compared = state.compared.get(run.id);
  const row = element('tr', 'run');
  row.dataset.runId = String(run.id);
  row.dataset.watched = String(watched);
  row.dataset.status = run.status;

  const compareCell = element('td', 'col-compare');
  const toggle = element('label', 'compare-toggle');
  const checkbox = element('input');
  checkbox.type = 'checkbox';
  checkbox.dataset.action = 'compare';
  checkbox.dataset.runId = String(run.id);
  checkbox.checked = Boolean(compared) || watched;
  checkbox.disabled = watched || (!compared && state.compared.size >= COMPARE_SLOTS);
  checkbox.setAttribute('aria-label', `Compare run ${run.id} on the charts`);
  toggle.append(checkbox);
  if (compared || watched) {
    // The run's colour on the charts, only once it is on them.
    const swatch = element('span', 'compare-swatch');
    swatch.setAttribute('aria-hidden', 'true');
    swatch.style.background = seriesColor(watched ? 0 : compared.colorIndex);
    toggle.append(swatch);
  }
  compareCell.append(toggle);

  const nameCell = element('th', 'run-name-cell');
  nameCell.scope = 'row';
  const open = element('button', 'run-open');
  open.type = 'button';
  open.dataset.action = 'open';
  open.dataset.runId = String(run.id);
  open.append(element('span', 'run-id', `#${run.id}`), document.createTextNode(' '), element('span', 'run-name', runName(run)));
  if (watched) open.setAttribute('aria-current', 'true');
  nameCell.append(open);
  const badges = element('span', 'run-badges');
  if (run.is_active_model || state.activeModel.run_id === run.id) badges.append(element('span', 'run-badge', 'Serving predictions'));
  if (watched) badges.append(element('span', 'run-badge watching', 'Watching'));
  for (const tag of tagsOf(run)) badges.append(element('span', 'run-tag', tag));
  if (badges.childElementCount) nameCell.append(badges);
  nameCell.append(element('span', 'run-config', configSummary(run.config)));
  if (typeof run.notes === 'string' && run.notes.trim()) nameCell.append(element('span', 'run-notes', run.notes.trim()));
  if (run.status === 'failed' && run.reason) nameCell.append(element('span', 'field-error', run.reason));

  const status = element('span', 'status-badge', run.status);
  status.dataset.status = run.status;
  const statusCell = element('td');
  statusCell.append(status);

  const actionsCell = element('td', 'col-actions');
  const menuButton = element('button', 'btn btn-small btn-quiet menu-button');
  menuButton.type = 'button';
  menuButton.dataset.action = 'menu';
  menuButton.dataset.runId = String(run.id);
  menuButton.setAttribute('aria-haspopup', 'menu');
  menuButton.setAttribute('aria-expanded', 'false');
  menuButton.setAttribute('aria-label', `Actions for run ${run.id}`);
  menuButton.innerHTML = '<svg class="icon" viewBox="0 0 16 16" aria-hidden="true"><circle cx="3" cy="8" r="1.5"/><circle cx="8" cy="8" r="1.5"/><circle cx="13" cy="8" r="1.5"/></svg>';
  actionsCell.append(menuButton);

  const number = (text) => element('td', 'num', text);
  row.append(
    compareCell, nameCell, statusCell,
    number(formatPercent(run.best_val_accuracy, 2)),
    number(formatPercent(run.test_accuracy, 2)),
    number(formatDuration(durationOf(run))),
    element('td', 'run-created', formatRelativeTime(run.created_at)),
    actionsCell,
  );
  return row;
}

function menuEntries(run) {
  const serving = state.activeModel.run_id === run.id && state.activeModel.chosen_by === 'user';
  const entries = [
    { label: 'Open', action: 'open', disabled: state.watched?.id === run.id },
    { label: 'Use for predictions', action: 'activate', disabled: !run.has_model || serving,
      title: run.has_model ? '' : 'A model is saved when the first epoch ends' },
  ];
  if (run.has_model) entries.push({ label: 'Download model (.npz)', action: 'download', href: api.modelUrl(run.id), download: `mnist-lab-run-${run.id}.npz` });
  entries.push(
    { label: 'Export metrics as CSV', action: 'export-csv', href: api.metricsUrl(run.id, 'csv'), download: `run-${run.id}-metrics.csv` },
    { label: 'Export metrics as JSON', action: 'export-json', href: api.metricsUrl(run.id, 'json'), download: `run-${run.id}-metrics.json` },
    { label: 'Copy CLI command', action: 'copy-cli' },
    { label: 'Reuse settings in the form', action: 'reuse' },
  );
  if (canEdit()) entries.push({ label: 'Name, tags and notes…', action: 'edit' });
  entries.push({ label: 'Delete…', action: 'delete', danger: true });
  return entries;
}

// ---- sorting and filtering -----------------------------------------------------------------------
const SORT_VALUE = {
  id: (run) => run.id,
  status: (run) => run.status,
  best_val_accuracy: (run) => run.best_val_accuracy,
  test_accuracy: (run) => run.test_accuracy,
  duration: (run) => durationOf(run),
  created_at: (run) => Date.parse(run.created_at ?? '') || 0,
};

function sorted(runs) {
  const value = SORT_VALUE[sort.key] ?? SORT_VALUE.id;
  const direction = sort.descending ? -1 : 1;
  return [...runs].sort((a, b) => {
    const x = value(a);
    const y = value(b);
    // Runs without the value (no accuracy yet) go last, whichever the direction.
    const missingX = x === null || x === undefined || Number.isNaN(x);
    const missingY = y === null || y === undefined || Number.isNaN(y);
    if (missingX || missingY) return missingX === missingY ? b.id - a.id : missingX ? 1 : -1;
    if (x < y) return -direction;
    if (x > y) return direction;
    return b.id - a.id;
  });
}

/** Every word typed must appear in the run's id, name, preset, status, tags, notes or config. */
function matches(run, words) {
  if (!words.length) return true;
  const text = [`#${run.id}`, runName(run), run.config?.preset, run.status, ...tagsOf(run), run.notes,
    configSummary(run.config)].filter(Boolean).join(' ').toLowerCase();
  return words.every((word) => text.includes(word));
}

function renderSortHeaders() {
  for (const th of $('run-table').querySelectorAll('th[data-sort]')) {
    const active = th.dataset.sort === sort.key;
    if (active) th.setAttribute('aria-sort', sort.descending ? 'descending' : 'ascending');
    else th.removeAttribute('aria-sort');
  }
}

// Rows are rebuilt only when what they show changed, so the refresh every few seconds does not
// replace a control under a pointer that is about to click it.
const rows = new Map(); // run id -> { key, node }

function rowKey(run) {
  return JSON.stringify([
    run, state.watched?.id === run.id, state.compared.get(run.id)?.colorIndex ?? null,
    state.compared.size >= COMPARE_SLOTS, state.activeModel, state.options?.presets?.length ?? 0,
    formatRelativeTime(run.created_at), formatDuration(durationOf(run)),
  ]);
}

function render() {
  const list = $('run-list');
  const focused = document.activeElement;
  const focusKey = list.contains(focused) && focused.dataset.action
    ? `[data-run-id="${focused.dataset.runId}"][data-action="${focused.dataset.action}"]`
    : null;
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  const matching = sorted(state.runs.filter((run) => matches(run, words)));
  // The first rows, the watched one and the compared ones; all of them on request or when filtering.
  const collapsed = !showAll && !words.length;
  const shown = collapsed ? matching.filter((run, i) => i < COLLAPSED_ROWS
    || run.id === state.watched?.id || state.compared.has(run.id) || isActive(run)) : matching;
  const more = $('show-all-runs');
  more.hidden = words.length > 0 || state.runs.length <= COLLAPSED_ROWS;
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
  $('run-table').hidden = state.runs.length === 0;
  $('run-list-empty').hidden = state.runs.length > 0;
  const filtered = $('run-list-filtered');
  filtered.hidden = !words.length;
  filtered.textContent = words.length ? `${matching.length} of ${state.runs.length} runs match “${filter.trim()}”.` : '';
  $('clear-compare').hidden = state.compared.size === 0;
  renderSortHeaders();
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
  if (!run || slot === null || state.compared.has(runId)) return;
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
    if (JSON.stringify(run) !== JSON.stringify(data.run)) changed = true; // e.g. a new name
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

/** Runs the URL asked to compare, once the list says they exist. */
function comparePending() {
  if (!state.pendingCompare.length || !state.runs.length) return;
  const ids = state.pendingCompare;
  state.pendingCompare = [];
  for (const id of ids) if (id !== state.watched?.id && state.runs.some((run) => run.id === id)) compare(id, true);
}

// ---- actions ------------------------------------------------------------------------------------
function confirmDelete(run) {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = `Delete run #${run.id}?`;
  $('confirm-text').textContent = isActive(run)
    ? `Run #${run.id} (${runName(run)}) is ${run.status}; it will be stopped, and its curves and model deleted. This cannot be undone.`
    : `Run #${run.id} (${runName(run)}): its curves and its model are deleted. This cannot be undone.`;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

/** Name, tags and notes (PATCH /api/runs/{id}), on servers that store them. */
function editDetails(run, refreshRuns) {
  const dialog = $('run-details-dialog');
  $('run-details-title').textContent = `Run #${run.id}: name, tags and notes`;
  $('run-name').value = typeof run.name === 'string' ? run.name : '';
  $('run-name').placeholder = runName({ ...run, name: '' });
  $('run-name-hint').textContent = 'Empty: the preset and what differs from it.';
  $('run-tags').value = tagsOf(run).join(', ');
  $('run-notes').value = typeof run.notes === 'string' ? run.notes : '';
  dialog.returnValue = '';
  dialog.addEventListener('close', async () => {
    if (dialog.returnValue !== 'save') return;
    const fields = {
      name: $('run-name').value.trim() || null,
      tags: [...new Set($('run-tags').value.split(',').map((tag) => tag.trim()).filter(Boolean))],
      notes: $('run-notes').value.trim() || null,
    };
    try {
      await api.updateRun(run.id, fields);
      await refreshRuns();
    } catch (error) {
      notifyError(error, `Could not save the name of run #${run.id}`);
    }
  }, { once: true });
  dialog.showModal();
}

async function onAction(action, runId, { watchRun, refreshRuns, refreshActiveModel }) {
  const run = state.runs.find((r) => r.id === runId);
  if (!run) return;
  switch (action) {
    case 'open':
      await watchRun(runId, { follow: isActive(run) });
      $('training').scrollIntoView({ behavior: 'smooth', block: 'start' });
      break;
    case 'reuse':
      emit('reuse-config', run);
      break;
    case 'copy-cli':
      await copyCli(run);
      break;
    case 'edit':
      editDetails(run, refreshRuns);
      break;
    case 'activate':
      try {
        state.activeModel = await api.setActiveModel(runId);
        emit('active-model');
        notify(`Predictions now come from run #${runId}.`, { kind: 'success', key: 'active-model' });
        await refreshRuns();
      } catch (error) {
        notifyError(error, `Could not use run #${runId} for predictions`);
      }
      break;
    case 'delete':
      if (!(await confirmDelete(run))) return;
      try {
        await api.deleteRun(runId);
        notify(`Run #${runId} deleted.`, { kind: 'success', key: `run-${runId}` });
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
  initMenu();
  const list = $('run-list');
  list.addEventListener('click', (event) => {
    const target = event.target.closest('button[data-action]');
    if (!target || target.disabled) return;
    const runId = Number(target.dataset.runId);
    if (target.dataset.action === 'menu') {
      const run = state.runs.find((r) => r.id === runId);
      if (run) openMenu(target, menuEntries(run), (action) => onAction(action, runId, actions));
    } else onAction(target.dataset.action, runId, actions);
  });
  list.addEventListener('change', (event) => {
    const target = event.target;
    if (target.dataset.action === 'compare') compare(Number(target.dataset.runId), target.checked);
  });
  for (const th of $('run-table').querySelectorAll('th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => {
      const key = th.dataset.sort;
      sort = sort.key === key ? { key, descending: !sort.descending } : { key, descending: key !== 'status' };
      render();
    });
  }
  $('run-filter').addEventListener('input', () => {
    filter = $('run-filter').value;
    closeMenu();
    render();
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
    comparePending();
    refreshCompared();
  });
  on('watched', render);
  on('compare', render);
  on('options', render);
  on('active-model', render);
  render();
}
