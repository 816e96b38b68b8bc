// The connection to the server: one WebSocket to /ws of the page's own host, one JSON frame per text
// message (docs/PROTOCOL.md), reconnecting by itself with backoff.
//
// Requests carry a `seq` of our own and are answered by the reply that echoes it (an ack, or ERROR_MSG
// 15); everything else the server sends (pushes, forwarded chat frames) goes to `onFrame`.

/** A refusal from the server: ERROR_MSG, or a login/register ack with a non-zero errno. */
export class Refused extends Error {
  constructor(frame) {
    super(typeof frame.errmsg === 'string' ? frame.errmsg : `errno ${frame.errno}`);
    this.errno = frame.errno;
    this.frame = frame;
  }
}

/** The connection dropped (or a reply did not come in time) before the request was answered. */
export class Unanswered extends Error {}

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const CONNECT_TIMEOUT_MS = 6000;
/** A socket that stayed open this long counts as healthy: the next drop retries at once. */
const HEALTHY_MS = 3000;

export class Connection {
  /**
   * @param {string} url ws:// or wss:// URL
   * @param {{onFrame(frame: object): void, onOpen(): void, onStatus(status: object): void}} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.open = false;
    this.attempt = 0;
    this.seq = 0;
    this.waiting = new Map(); // seq -> {resolve, reject, timer}
    this.retryTimer = null;
    this.retryAt = 0;
    this.healthyTimer = null;
  }

  /** Connects now (cancelling a scheduled retry). */
  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws) return;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    this.status('connecting');
    const timeout = setTimeout(() => ws.close(), CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(timeout);
      this.open = true;
      this.healthyTimer = setTimeout(() => { this.attempt = 0; }, HEALTHY_MS);
      this.status('open');
      this.handlers.onOpen();
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== 'string') return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        console.warn('not JSON from the server', event.data);
        return;
      }
      this.dispatch(frame);
    };
    ws.onclose = () => {
      clearTimeout(timeout);
      clearTimeout(this.healthyTimer);
      this.ws = null;
      this.open = false;
      for (const [, w] of this.waiting) {
        clearTimeout(w.timer);
        w.reject(new Unanswered('the connection closed'));
      }
      this.waiting.clear();
      this.scheduleRetry();
    };
  }

  scheduleRetry() {
    const delay = this.attempt === 0 ? 0
      : Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (this.attempt - 1)) * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.status('down');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  status(state) {
    this.handlers.onStatus({ state, attempt: this.attempt, retryAt: this.retryAt });
  }

  dispatch(frame) {
    const key = frame.seq === undefined ? undefined : String(frame.seq);
    const w = key === undefined ? undefined : this.waiting.get(key);
    if (w) {
      this.waiting.delete(key);
      clearTimeout(w.timer);
      if (frame.msgid === 15 || (typeof frame.errno === 'number' && frame.errno !== 0)) {
        w.reject(new Refused(frame));
      } else {
        w.resolve(frame);
      }
      return;
    }
    this.handlers.onFrame(frame);
  }

  /** Sends a frame that gets no answer (TYPING). Returns whether it went out. */
  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a request and resolves with its answer; rejects with Refused or Unanswered. */
  request(frame, timeoutMs = 15000) {
    if (!this.open) return Promise.reject(new Unanswered('not connected'));
    const seq = `w${++this.seq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        reject(new Unanswered('no answer in time'));
      }, timeoutMs);
      this.waiting.set(seq, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, seq }));
    });
  }

  /** Drops the socket (the server logs the device out); reconnects as usual. */
  drop() {
    if (this.ws) this.ws.close();
  }
}
