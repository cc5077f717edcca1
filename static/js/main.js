// Wires the dashboard: loads options, runs and the active model, follows one run's live stream,
// and keeps the history fresh. Widgets live in their own modules and draw from `state`.

import { api } from './api.js';
import { initAuth } from './auth.js';
import { initDrawing } from './canvas.js';
import { ChangeStream } from './changes.js';
import { initComparison } from './comparison.js';
import { initControls } from './controls.js';
import { initEvaluation } from './evaluation.js';
import { initExport } from './export.js';
import { initInside } from './inside.js';
import { initRuns } from './runs.js';
import { appendPoints, emit, isActive, lastStep, newRunData, on, putEpoch, state } from './state.js';
import { RunStream } from './stream.js';
import { initSweeps } from './sweeps.js';
import { notify, notifyError } from './toast.js';
import { initTraining } from './training.js';
import { initUrl } from './url.js';

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 4000; // polling the run list while WS /ws/runs is down
const REFRESH_LIVE_MS = 30000; // while it is up: a safety net, and fresh "5 min ago" labels
const PACE_WINDOW_MS = 20000;
let stream = null;
let serverReachable = true;
let refreshing = null;
let listRevision = null; // the revision of state.runs (GET /api/runs)
let announcedRevision = null; // the newest revision WS /ws/runs announced
let changesLive = false;
let refreshedAt = 0;
let openingShared = false;

// ---- the watched run ------------------------------------------------------------------------
/** Merge a Run the server sent into the state; announce a run that just ended. */
function applyRun(run) {
  if (!run) return;
  const index = state.runs.findIndex((r) => r.id === run.id);
  if (index >= 0) {
    const { epochs: _epochs, ...summary } = run;
    state.runs[index] = { ...state.runs[index], ...summary };
  }
  const data = state.watched;
  if (data?.id === run.id) {
    const wasActive = isActive(data.run);
    if (data.live && data.run.status !== run.status) data.live.pace = []; // a pause is no pace
    data.run = { ...data.run, ...run };
    emit('watched');
    if (wasActive && !isActive(data.run)) onRunEnded(data.run);
  }
  emit('runs');
}

function onRunEnded(run) {
  const key = `run-${run.id}`; // replaces this run's "started" message
  if (run.status === 'failed') {
    notify(run.reason || 'The run failed without a reason; the server log has details.', {
      kind: 'error',
      title: `Run #${run.id} failed`,
      key,
    });
  } else if (run.status === 'interrupted') {
    notify(run.reason || 'The server stopped while this run was training.', {
      kind: 'error',
      title: `Run #${run.id} was interrupted`,
      key,
    });
  } else if (run.status === 'completed') {
    const accuracy = Number.isFinite(run.best_val_accuracy)
      ? ` Best validation accuracy ${(run.best_val_accuracy * 100).toFixed(2)}%.` : '';
    notify(`Run #${run.id} completed.${accuracy}`, { kind: 'success', key });
  } else if (run.status === 'stopped') {
    notify(`Run #${run.id} stopped.`, { kind: 'info', key });
  }
  refreshActiveModel();
  refreshRuns();
}

const streamHandlers = {
  lastStep: () => (state.watched ? lastStep(state.watched) : -1),
  // Ended, and all it reported stored (steps a full disk held back are streamed once stored).
  runFinished: () => !isActive(state.watched?.run) && !state.watched?.run?.unstored,
  onSnapshot(message) {
    const data = state.watched;
    if (!data) return;
    appendPoints(data, message.iterations ?? []);
    data.epochs = [];
    for (const epoch of message.epochs ?? []) putEpoch(data, epoch);
    emit('metrics');
    if (message.run) applyRun(message.run);
    emit('snapshot', message);
  },
  onLayers(message) {
    emit('layers', message);
  },
  onPoints(points, message) {
    const data = state.watched;
    if (!data) return;
    appendPoints(data, points);
    const last = points[points.length - 1];
    // Steps done over the last PACE_WINDOW_MS, validation pauses included: the ETA's pace.
    const now = performance.now();
    const pace = (data.live?.pace ?? []).filter(([time]) => now - time <= PACE_WINDOW_MS);
    pace.push([now, last.step + 1]);
    data.live = {
      epoch: last.epoch,
      samples_per_second: message?.samples_per_second ?? data.live?.samples_per_second,
      learning_rate: message?.learning_rate ?? data.live?.learning_rate,
      pace,
    };
    emit('metrics');
  },
  onEpoch(epoch) {
    const data = state.watched;
    if (!data) return;
    putEpoch(data, epoch);
    const best = Number.isFinite(epoch.val_accuracy) // null: the run holds no digits out
      ? Math.max(data.run.best_val_accuracy ?? 0, epoch.val_accuracy) : data.run.best_val_accuracy;
    data.run = { ...data.run, has_model: true, best_val_accuracy: best };
    emit('metrics');
    emit('watched');
    refreshActiveModel();
  },
  onStatus(message) {
    const data = state.watched;
    if (!data) return;
    applyRun(message.run ?? { ...data.run, status: message.status, reason: message.reason });
    refreshRuns();
  },
  onConnection(connection, retryAt) {
    state.connection = { state: connection, retryAt };
    renderConnection();
  },
  onError(message) {
    notify(message, { kind: 'error' });
  },
};

/** Follow a run: its curves come from the snapshot, then live messages. */
async function watchRun(id, { follow = true, run = null } = {}) {
  state.followLatest = follow;
  if (state.watched?.id === id && stream) {
    if (run) applyRun(run);
    return;
  }
  stream?.close();
  stream = null;
  let initial = run ?? state.runs.find((r) => r.id === id);
  if (!initial) {
    try {
      initial = await api.run(id);
    } catch (error) {
      notifyError(error, `Could not open run #${id}`);
      return;
    }
  }
  state.watched = newRunData(initial);
  emit('watched');
  emit('metrics');
  stream = new RunStream(id, streamHandlers).start();
}

function unwatch() {
  stream?.close();
  stream = null;
  state.watched = null;
  state.connection = { state: 'idle', retryAt: null };
  emit('watched');
  emit('metrics');
  renderConnection();
}

/** With nothing live on screen, follow the run that is training (also one started elsewhere). */
function followLatest() {
  if (openingShared) return; // the run the URL names is on its way
  let watched = state.watched?.run;
  if (watched && !state.runs.some((r) => r.id === watched.id)) {
    unwatch(); // deleted (perhaps in another tab)
    state.followLatest = true;
    watched = null;
  }
  if (!state.followLatest && watched) return;
  if (watched && isActive(watched)) return;
  const next = state.runs.find((r) => r.status === 'running')
    ?? state.runs.find(isActive)
    ?? (watched ? null : state.runs[0]);
  if (next && next.id !== state.watched?.id) watchRun(next.id, { follow: true, run: next });
}

// ---- server state ---------------------------------------------------------------------------
/** What the list may change about a finished run: its status, name, tags and notes. */
const shownFields = (run) => JSON.stringify([run.status, run.name ?? null, run.tags ?? [], run.notes ?? null]);

async function refreshRuns() {
  if (!state.options) return undefined; // which runs are active is the server's word: wait for it
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const answer = await api.runs();
      state.runs = answer.runs ?? [];
      listRevision = answer.revision ?? null;
      refreshedAt = Date.now();
      if (!serverReachable) {
        serverReachable = true;
        notify('The server is reachable again.', { kind: 'success' });
      }
      if ((answer.active_model_run_id ?? null) !== state.activeModel.run_id) refreshActiveModel();
      // A finished run's summary in the list is fresher than ours (e.g. test accuracy, or a
      // name given in another tab).
      const listed = state.runs.find((r) => r.id === state.watched?.id);
      if (listed && state.watched && !isActive(listed) && shownFields(listed) !== shownFields(state.watched.run)) {
        applyRun(listed);
      }
      emit('runs');
      followLatest();
    } catch (error) {
      if (serverReachable) {
        serverReachable = false;
        notifyError(error, 'Lost contact with the server');
      }
    } finally {
      refreshing = null;
      renderConnection();
    }
    // A change announced while this request was on its way may not be in its answer.
    if (listRevision !== null && announcedRevision > listRevision) refreshRuns();
  })();
  return refreshing;
}

/** WS /ws/runs announced `revision`; a new connection may follow a server restart. */
function onListChanged(revision, reconnected) {
  announcedRevision = revision;
  if (reconnected || listRevision === null || revision > listRevision) refreshRuns();
}

function onChangesLive(live) {
  changesLive = live;
  if (!live) announcedRevision = null; // the next server may count from 0
  $('run-list').dataset.updates = live ? 'push' : 'polling';
}

async function refreshActiveModel() {
  try {
    state.activeModel = await api.activeModel();
    emit('active-model');
  } catch (error) {
    if (serverReachable) notifyError(error, 'Could not ask which model serves predictions');
  }
}

/** GET /api/options, retried every 5 s until it answers: the page reads the server's facts
 * (statuses, sizes, bounds) from it, so the runs are loaded after it. */
async function loadOptions() {
  for (;;) {
    try {
      state.options = await api.options();
      emit('options', state.options);
      return;
    } catch (error) {
      notifyError(error, 'Could not load the run options');
      await new Promise((resolve) => { setTimeout(resolve, 5000); });
    }
  }
}

// ---- header pills ---------------------------------------------------------------------------
function renderConnection() {
  const pill = $('connection');
  const text = $('connection-text');
  const { state: connection, retryAt } = state.connection;
  let shown = connection;
  let label;
  let countdown = '';
  if (!serverReachable && connection !== 'reconnecting') {
    shown = 'reconnecting';
    label = 'Server unreachable — retrying';
  } else if (connection === 'reconnecting') {
    const seconds = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
    label = 'Disconnected — reconnecting';
    countdown = seconds > 0 ? ` in ${seconds}s` : '…'; // not announced: it changes every second
  } else if (connection === 'connecting') {
    label = 'Connecting…';
  } else if (connection === 'live') {
    label = isActive(state.watched?.run) ? 'Live' : 'Connected';
  } else {
    label = state.watched ? 'Up to date' : 'Ready';
  }
  pill.dataset.state = shown;
  if (text.textContent !== label) text.textContent = label;
  $('connection-countdown').textContent = countdown;
}

function renderModelPill() {
  const runId = state.activeModel.run_id;
  $('model-pill').dataset.state = runId == null ? 'none' : 'ready';
  $('model-pill-text').textContent = runId == null ? 'No model yet' : `Model: run #${runId}`;
}

// ---- start ----------------------------------------------------------------------------------
function start() {
  const view = initUrl();
  state.pendingCompare = view.compare;
  initTraining();
  initControls({ watchRun, applyRun });
  initDrawing();
  initRuns({ watchRun, refreshRuns, refreshActiveModel });
  initEvaluation();
  initExport();
  initComparison();
  initSweeps({ refreshRuns, refreshActiveModel });
  initInside();
  initAuth();

  on('active-model', renderModelPill);
  on('watched', renderConnection);
  on('runs-changed', refreshRuns);
  on('watch-request', (runId) => watchRun(runId, { follow: true }));
  on('run-deleted', (runId) => {
    if (state.watched?.id === runId) {
      unwatch();
      state.followLatest = true;
    }
  });

  refreshActiveModel();
  loadOptions().then(() => {
    if (view.run !== null) {
      // A shared view: that run, whatever trains now (a run that no longer exists: the newest).
      state.followLatest = false;
      openingShared = true;
      watchRun(view.run, { follow: false }).finally(() => {
        openingShared = false;
        if (!state.watched) state.followLatest = true;
        refreshRuns();
      });
    } else refreshRuns();
  });
  new ChangeStream({ onChange: onListChanged, onLive: onChangesLive }).start();
  setInterval(() => {
    const due = !changesLive || Date.now() - refreshedAt >= REFRESH_LIVE_MS;
    if (document.visibilityState === 'visible' && due) refreshRuns();
  }, REFRESH_MS);
  setInterval(() => {
    if (state.connection.state === 'reconnecting') renderConnection();
  }, 1000);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') refreshRuns();
  });
}

start();
