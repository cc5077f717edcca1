// What the two live streams (stream.js, changes.js) share: where a socket connects, how its
// messages are read, and how long it waits before reconnecting (exponential backoff with jitter,
// so that many tabs do not all knock at a restarted server at the same moment).

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;
const BACKOFF = 1.6; // 0.5 s, 0.8 s, 1.3 s, 2 s, 3.3 s ... 10 s

/** The delay before reconnect attempt number `attempt` (0 for the first). */
export function reconnectDelay(attempt) {
  const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * BACKOFF ** attempt);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** ws: or wss: URL of `path` on this server. */
export function socketUrl(path) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}

/** A message's JSON, or null for a text that is not (not ours to interpret). */
export function parseMessage(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
