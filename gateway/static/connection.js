// One JSON-mode WebSocket at a time, and the mechanics of getting it back: backoff,
// a heartbeat that notices a dead network, the browser's online/offline events.
// What a frame or a close *means* is decided by the caller (chat.js).

export const PROTOCOL = "chat.v1.json";
// Bearer secrets travel as further subprotocols, never in the URL: proxies log URLs
// (nginx's error log keeps the request line, query included). The node answers with
// PROTOCOL alone.
const TOKEN_PREFIX = "chat.token.";
const SESSION_PREFIX = "chat.session.";

/** What a subprotocol can carry (an HTTP token): a JWT or a session secret is one. */
export const SUBPROTOCOL_SAFE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The subprotocols to offer: the mode first, then the token and the session secret. */
export function offer({ token = "", session = "" }) {
  const protocols = [PROTOCOL];
  if (token) protocols.push(TOKEN_PREFIX + token);
  if (session) protocols.push(SESSION_PREFIX + session);
  return protocols;
}

const RETRY_FIRST_MS = 250; // the first retry comes quickly (a node restarting)...
const RETRY_MAX_MS = 8000; // ...then doubling up to this
const HEARTBEAT_MS = 10000; // this often: a ping, unless one is out; still no frame by the
// next beat after a ping: the network is gone, even if the browser has not noticed

export class Connection {
  /**
   * @param {object} options
   * @param {() => {url: string, protocols: string[]}} options.handshake  for the next
   *        attempt: the URL (its query: never a secret) and the subprotocols to offer
   * @param {(frame: object) => void} options.onFrame
   * @param {(close: {code, reason, welcomed, error}) => boolean} options.onClose
   *        the socket closed (`error`: the error frame before welcome, if any); true to reconnect
   * @param {(state: string) => void} options.onStatus  connecting, connected, reconnecting, offline
   */
  constructor({ handshake, onFrame, onClose, onStatus }) {
    this.handshake = handshake;
    this.onFrame = onFrame;
    this.onClose = onClose;
    this.onStatus = onStatus;
    this.state = "offline";
    this.wanted = false; // true while we want a connection: from start until a final close
    this.ws = null;
    this.welcomed = false;
    this.handshakeError = null;
    this.attempts = 0;
    this.retryTimer = null;
    this.heartbeat = null;
    this.pingSentAt = null;
    window.addEventListener("online", () => this.retryNow());
    window.addEventListener("offline", () => this.ws === null && this.#status("offline"));
  }

  /** True once `welcome` came on the open socket. */
  get ready() {
    return this.ws !== null && this.welcomed && this.ws.readyState === WebSocket.OPEN;
  }

  /** Connect (dropping a socket still open); `state` is what the status shows meanwhile. */
  start(state = "connecting") {
    const old = this.ws;
    this.#detach();
    if (old) old.close(1000, "bye");
    this.wanted = true;
    this.attempts = 0;
    this.#connect(state);
  }

  /** Try at once (the network came back), if we are waiting to retry. */
  retryNow() {
    if (this.wanted && this.ws === null) this.#connect("reconnecting");
  }

  /** Send one frame; false when there is no open, welcomed socket. */
  send(frame) {
    if (!this.ready) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  #connect(state) {
    clearTimeout(this.retryTimer);
    this.#status(state);
    let ws;
    try {
      const { url, protocols } = this.handshake();
      ws = new WebSocket(url, protocols);
    } catch (error) {
      console.error("cannot open the WebSocket", error);
      this.#closed(null, 1006, String(error));
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    this.handshakeError = null;
    ws.onmessage = (event) => this.#message(ws, event);
    ws.onclose = (event) => this.#closed(ws, event.code, event.reason);
  }

  #message(ws, event) {
    if (ws !== this.ws) return;
    this.pingSentAt = null;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      console.warn("a frame that is not JSON", event.data);
      return;
    }
    if (frame.type === "welcome") {
      this.welcomed = true;
      this.attempts = 0;
      this.#status("connected");
      this.#startHeartbeat();
    } else if (!this.welcomed && frame.type === "error") {
      this.handshakeError = frame; // the reason for the close that follows
    }
    this.onFrame(frame);
  }

  #closed(ws, code, reason) {
    if (ws !== this.ws) return;
    const info = { code, reason, welcomed: this.welcomed, error: this.handshakeError };
    this.#detach();
    this.wanted = this.onClose(info);
    if (this.wanted) this.#retryLater();
    else this.#status("offline");
  }

  #detach() {
    clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.pingSentAt = null;
    if (this.ws) {
      this.ws.onmessage = null;
      this.ws.onclose = null;
    }
    this.ws = null;
    this.welcomed = false;
  }

  #retryLater() {
    this.#status(navigator.onLine === false ? "offline" : "reconnecting");
    const base = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** this.attempts);
    this.attempts += 1;
    const delay = base * (0.75 + Math.random() / 2); // jitter: a restarted node is not stampeded
    this.retryTimer = setTimeout(() => {
      if (navigator.onLine === false) this.#status("offline"); // "online" brings us back
      else this.#connect("reconnecting");
    }, delay);
  }

  #startHeartbeat() {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      if (this.pingSentAt !== null) this.#dropDeadSocket();
      else if (this.send({ type: "ping" })) this.pingSentAt = Date.now();
    }, HEARTBEAT_MS);
  }

  /** No answer to a ping: the socket is dead even if the browser has not noticed. */
  #dropDeadSocket() {
    const ws = this.ws;
    try {
      ws.close(1000, "no answer to ping"); // not 4001: that is the server's, an operator's
    } catch {
      /* closing a dead socket may throw; it is dropped anyway */
    }
    this.#closed(ws, 1006, "no answer to ping");
  }

  #status(state) {
    this.state = state;
    this.onStatus(state);
  }
}
