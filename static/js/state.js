// The one place the page keeps what it knows. Modules read `state`, change it through the
// functions below or directly, and call `emit(topic)`; widgets redraw from `state` on the topics
// they listen to. Nothing else holds data about runs.

export const state = {
  options: null, // GET /api/options
  runs: [], // GET /api/runs, newest first, without epochs
  activeModel: { run_id: null, chosen_by: null },
  watched: null, // RunData of the run whose live stream the page follows
  compared: new Map(), // run id -> RunData overlaid on the charts
  pendingCompare: [], // run ids the URL asks to compare, added once the run list is known
  sweeps: [], // GET /api/sweeps, newest first, without their trials
  sweep: null, // GET /api/sweeps/{id} of the sweep the page shows
  followLatest: true, // switch to a newly started run (also one started in another tab)
  connection: { state: 'idle', retryAt: null }, // idle | connecting | live | reconnecting
  // The charts' view, also in the URL (url.js): smoothing null = chosen from the point count;
  // xAxis: step | epoch | samples | time; zoom: {x0, x1} on that axis, or null for everything.
  chart: { smoothing: null, logScale: false, xAxis: 'step', zoom: null },
};

/** Whether a worker may still change the run: the server's list (GET /api/options `active_statuses`). */
export const isActive = (run) => Boolean(run) && Boolean(state.options?.active_statuses.includes(run.status));

/** The network's fixed sizes from the server (GET /api/options `network`): inputs, classes, ... */
export const network = () => state.options?.network;

/**
 * Everything the charts need about one run. `steps` and `losses` are parallel arrays in step
 * order without gaps or repeats; `epochs` is indexed by epoch - 1.
 */
export function newRunData(run) {
  return { id: run.id, run, steps: [], losses: [], epochs: [], live: null, smoothed: null, xCache: null };
}

export const lastStep = (data) => (data.steps.length ? data.steps[data.steps.length - 1] : -1);

/** Append iteration points, ignoring any step the run data already has. */
export function appendPoints(data, points) {
  let last = lastStep(data);
  for (const point of points) {
    if (point.step <= last) continue;
    data.steps.push(point.step);
    data.losses.push(point.loss);
    last = point.step;
  }
}

/**
 * Replace or add one epoch record (epochs count from 1): the server's Epoch as it came, from the
 * metrics API, a snapshot or an `epoch` message (less that message's envelope). Its fields are
 * the engine's EpochEvent; the page never lists them.
 */
export function putEpoch(data, epoch) {
  const { type, run_id: runId, seq, ...record } = epoch; // eslint-disable-line no-unused-vars
  data.epochs[epoch.epoch - 1] = record;
}

const listeners = new Map();

/** Call `handler(detail)` whenever `topic` is emitted. Returns a function that unsubscribes. */
export function on(topic, handler) {
  if (!listeners.has(topic)) listeners.set(topic, new Set());
  listeners.get(topic).add(handler);
  return () => listeners.get(topic).delete(handler);
}

export function emit(topic, detail) {
  for (const handler of listeners.get(topic) ?? []) {
    try {
      handler(detail);
    } catch (error) {
      console.error(`listener for "${topic}" failed`, error);
    }
  }
}
