// A fetch wrapper for the JSON API (docs/API.md). Every failure becomes an ApiError whose message a
// person can read: the server's `detail`, FastAPI's validation list flattened into sentences, or
// what went wrong with the connection itself.

export class ApiError extends Error {
  constructor(message, status = 0, detail = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status; // 0 = the server could not be reached
    this.detail = detail;
  }
}

/** Turn an error body's `detail` (a string, or FastAPI's list of {loc, msg}) into one sentence. */
export function describeDetail(detail) {
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        if (typeof item === 'string') return item;
        const where = (item.loc ?? []).filter((part) => part !== 'body').join('.');
        return where ? `${where}: ${item.msg}` : item.msg;
      })
      .join('; ');
  }
  if (detail && typeof detail === 'object') return JSON.stringify(detail);
  return '';
}

const STATUS_TEXT = {
  400: 'The server could not understand the request',
  401: 'You need to sign in for that',
  403: 'That is not allowed',
  404: 'Not found',
  409: 'That conflicts with the current state',
  413: 'That is too large for the server',
  422: 'The server rejected the input',
  429: 'Too many requests; wait a moment and try again',
  500: 'The server hit an internal error; its log has the details',
  503: 'The server is busy or starting up; try again in a moment',
};

// The server's token (MNIST_LAB_TOKEN) when it asks for one; kept in this browser only.
const TOKEN_KEY = 'mnist-lab-token';
let token = null;
try {
  token = localStorage.getItem(TOKEN_KEY);
} catch {
  token = null; // storage disabled: the token lives as long as the page
}
let onAuthNeeded = () => {};

export const hasToken = () => Boolean(token);

export function setToken(value) {
  token = value || null;
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* kept in memory only */
  }
}

/** Called with the server's message when a change is refused for want of the right token. */
export function whenAuthNeeded(handler) {
  onAuthNeeded = handler;
}

/**
 * Send a request and return the parsed JSON answer (or null for 204).
 * `body` is sent as JSON unless it is FormData.
 */
export async function request(method, path, body = undefined, { signal } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, signal };
  if (token && method !== 'GET') init.headers.Authorization = `Bearer ${token}`;
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError('Cannot reach the MNIST Lab server. Check that it is still running, then try again.');
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const fromServer = data ? describeDetail(data.detail) : '';
    const fallback = STATUS_TEXT[response.status] ?? `The server answered ${response.status}`;
    const error = new ApiError(fromServer || `${fallback}.`, response.status, data?.detail ?? null);
    if (response.status === 401 || (response.status === 403 && response.headers.has('WWW-Authenticate'))) {
      onAuthNeeded(error.message);
    }
    throw error;
  }
  return data;
}

export const api = {
  options: () => request('GET', '/api/options'),
  runs: () => request('GET', '/api/runs'),
  run: (id) => request('GET', `/api/runs/${id}`),
  startRun: (config) => request('POST', '/api/runs', config),
  deleteRun: (id) => request('DELETE', `/api/runs/${id}`),
  control: (id, action) => request('POST', `/api/runs/${id}/${action}`),
  step: (id, steps) => request('POST', `/api/runs/${id}/step`, { steps }),
  layers: (id, after = -1) => request('GET', `/api/runs/${id}/layers?after=${after}`),
  hidden: (id, pixels) => request('GET', `/api/runs/${id}/hidden?pixels=${pixels}`),
  /** Every stored step after `after` and every epoch, following `next_after` page by page. */
  metrics: async (id, after = null) => {
    const iterations = [];
    let page;
    do {
      page = await request('GET', `/api/runs/${id}/metrics${after === null ? '' : `?after=${after}`}`);
      iterations.push(...page.iterations);
      after = page.next_after;
    } while (after !== null && after !== undefined);
    return { ...page, iterations };
  },
  metricsUrl: (id, format) => `/api/runs/${id}/metrics?format=${format}`,
  evaluation: (id) => request('GET', `/api/runs/${id}/evaluation`),
  misclassified: (id, { offset = 0, limit = 32, trueDigit = null, predicted = null } = {}) => {
    const query = new URLSearchParams({ offset, limit });
    if (trueDigit !== null) query.set('true', trueDigit);
    if (predicted !== null) query.set('predicted', predicted);
    return request('GET', `/api/runs/${id}/misclassified?${query}`);
  },
  weights: (id, { offset = 0, limit = 64 } = {}) => request('GET', `/api/runs/${id}/weights?offset=${offset}&limit=${limit}`),
  // Name, tags and notes of a run, on servers that store them (GET /api/options `run_fields`).
  updateRun: (id, fields) => request('PATCH', `/api/runs/${id}`, fields),
  activeModel: () => request('GET', '/api/active-model'),
  setActiveModel: (runId) => request('PUT', '/api/active-model', { run_id: runId }),
  predict: (image, options) => request('POST', '/predict', { image }, options),
  modelUrl: (id) => `/api/runs/${id}/model`,
};
