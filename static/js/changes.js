// WS /ws/runs: the server says when the run list changed (docs/API.md), so the history, the
// "serving predictions" badge and a run started in another tab show up at once, without polling.
// While the socket is down the page falls back to polling; every (re)connect counts as a change,
// since the list may have changed meanwhile (or the server restarted and counts from 0 again).

import { parseMessage, reconnectDelay, socketUrl } from './sockets.js';

export class ChangeStream {
  /**
   * @param {object} handlers
   *   onChange(revision, reconnected): the list is at `revision` now; `reconnected` for the first
   *     message of a connection
   *   onLive(live): the socket opened (true) or closed (false)
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.socket = null;
    this.attempts = 0;
    this.timer = null;
    this.onOnline = () => {
      if (!this.socket) this.connect();
    };
  }

  start() {
    window.addEventListener('online', this.onOnline);
    this.connect();
    return this;
  }

  connect() {
    clearTimeout(this.timer);
    let socket;
    try {
      socket = new WebSocket(socketUrl('/ws/runs'));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    let first = true;
    socket.onmessage = (event) => {
      const message = parseMessage(event.data);
      if (message?.type !== 'changed' || !Number.isInteger(message.revision)) return;
      if (first) {
        this.attempts = 0;
        this.handlers.onLive(true);
      }
      this.handlers.onChange(message.revision, first);
      first = false;
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.handlers.onLive(false);
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    const delay = reconnectDelay(this.attempts);
    this.attempts += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
