// The live stream of one run (WS /ws/runs/{id}, docs/API.md). Reconnects by itself with
// exponential backoff and resumes with `?after=<last step>`, so a dropped connection or a server
// restart leaves no gap and no duplicate in the curves. Messages are handled strictly in order;
// if a gap shows up anyway (a missed `seq`, or points that do not continue the last step) the
// missing steps are fetched from /api/runs/{id}/metrics before anything later is applied.

import { api } from './api.js';
import { parseMessage, reconnectDelay, socketUrl } from './sockets.js';

export class RunStream {
  /**
   * @param {number} runId
   * @param {object} handlers
   *   lastStep(): the last step the page has (-1 for none)
   *   runFinished(): true when the run can no longer change (then a closed socket stays closed)
   *   onSnapshot(message), onPoints(points, message), onEpoch(epoch), onStatus(message),
   *   onLayers(message): a watched step's layer statistics
   *   onConnection(state, retryAt): 'connecting' | 'live' | 'reconnecting' | 'idle'
   *   onError(message): a problem the user should read
   */
  constructor(runId, handlers) {
    this.runId = runId;
    this.handlers = handlers;
    this.socket = null;
    this.closed = false;
    this.attempts = 0;
    this.timer = null;
    this.expectedSeq = null;
    this.backlog = 0; // points the server still has to send (a finished run's curve comes in pages)
    this.queue = Promise.resolve();
    this.onOnline = () => this.reconnectNow();
  }

  start() {
    window.addEventListener('online', this.onOnline);
    this.connect();
    return this;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    window.removeEventListener('online', this.onOnline);
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close(1000, 'client closed');
      this.socket = null;
    }
  }

  url() {
    const after = this.handlers.lastStep();
    const query = after >= 0 ? `?after=${after}` : '';
    return socketUrl(`/ws/runs/${this.runId}${query}`);
  }

  connect() {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.expectedSeq = null;
    this.handlers.onConnection(this.attempts ? 'reconnecting' : 'connecting', null);
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch (error) {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onmessage = (event) => {
      const message = parseMessage(event.data);
      if (message === null) return;
      if (this.expectedSeq !== null && message.seq !== this.expectedSeq) {
        // A message went missing: start over from the last step we really have.
        socket.onclose = null;
        socket.close(4000, 'sequence gap');
        this.queue = this.queue.then(() => this.connect());
        return;
      }
      this.expectedSeq = message.seq + 1;
      this.queue = this.queue.then(() => this.handle(message)).catch((error) => {
        this.handlers.onError(error.message);
      });
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closed) return;
      if (event.code >= 4400 && event.code < 4500) {
        // The server says this run cannot be streamed (for instance it was deleted).
        this.handlers.onConnection('idle', null);
        this.handlers.onError(event.reason || `Run ${this.runId} can no longer be streamed.`);
        return;
      }
      this.queue = this.queue.then(() => {
        if (this.closed) return;
        if (this.handlers.runFinished() && !this.backlog) {
          this.handlers.onConnection('idle', null);
          return;
        }
        this.scheduleReconnect();
      });
    };
  }

  scheduleReconnect() {
    if (this.closed) return;
    const delay = reconnectDelay(this.attempts);
    this.attempts += 1;
    const retryAt = Date.now() + delay;
    this.handlers.onConnection('reconnecting', retryAt);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.closed || this.socket) return;
    this.connect();
  }

  /** Fetch the steps between what the page has and `firstStep`, when they are not contiguous. */
  async fillGap(firstStep) {
    const last = this.handlers.lastStep();
    if (last < 0 || firstStep <= last + 1) return;
    const metrics = await api.metrics(this.runId, last);
    const missing = metrics.iterations.filter((point) => point.step < firstStep);
    if (missing.length) this.handlers.onPoints(missing, null);
  }

  async handle(message) {
    if (this.closed) return;
    switch (message.type) {
      case 'snapshot':
        this.attempts = 0;
        this.backlog = message.backlog ?? 0; // points still to come, a page at a time
        if (message.iterations?.length) await this.fillGap(message.iterations[0].step);
        this.handlers.onSnapshot(message);
        if (this.handlers.runFinished() && !this.backlog) {
          // For a run that has ended the snapshot is the last message: free the server's slot.
          this.close();
          this.handlers.onConnection('idle', null);
        } else {
          this.handlers.onConnection('live', null);
        }
        break;
      case 'iterations':
        this.backlog = message.backlog ?? 0;
        if (message.points?.length) {
          await this.fillGap(message.points[0].step);
          this.handlers.onPoints(message.points, message);
        }
        if (this.handlers.runFinished() && !this.backlog) {
          this.close(); // a finished run's last page
          this.handlers.onConnection('idle', null);
        }
        break;
      case 'epoch':
        this.handlers.onEpoch(message);
        break;
      case 'layers':
        this.handlers.onLayers?.(message);
        break;
      case 'status':
        this.handlers.onStatus(message);
        if (this.handlers.runFinished() && !this.backlog) {
          this.close(); // nothing more will come for this run
          this.handlers.onConnection('idle', null);
        }
        break;
      default:
        break; // a newer server may send more types; ignoring them is safe
    }
  }
}
