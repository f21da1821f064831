// Messages typed but not yet confirmed. Each waits here, shown as "Sending…", until
// the server acks it; a room message keeps its `id` for every try, so a retry after a
// lost ack is answered with the first ack and never lands twice.
//
// States: queued (waiting for a connection, a room, or a retry time) -> sending (asked,
// no answer yet) -> acked (a room message whose own `message` has not come yet; it
// shows as sent) -> gone. Or failed (refused, or a direct message whose fate is
// unknown after a drop; the user may retry or discard it).

const MAX_IN_FLIGHT = 10; // sends awaiting an answer at once (stays under the rate burst)
const RETRY_FIRST_MS = 1000; // first retry of a send answered `unavailable`/`rate_limited`
const RETRY_MAX_MS = 15000;

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12)); // works without HTTPS too
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Outbox {
  /**
   * @param {object} hooks
   * @param {(frame: object, onAnswer: (answer: object) => void) => void} hooks.request
   * @param {(item: object) => boolean} hooks.canSend   connected, and in the item's room
   * @param {(room: string, offset: string) => boolean} hooks.shown  the message is on screen
   * @param {(item: object) => void} hooks.directSent   a direct message was accepted
   * @param {() => void} hooks.changed
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.items = [];
    this.timer = null;
  }

  sendToRoom(room, text) {
    this.#add({ kind: "send", id: randomId(), room, text });
  }

  sendDirect(to, text) {
    this.#add({ kind: "dm", to, text });
  }

  /** Forget everything (a new name starts afresh). */
  clear() {
    clearTimeout(this.timer);
    this.timer = null;
    this.items = [];
    this.hooks.changed();
  }

  retry(item) {
    Object.assign(item, { state: "queued", error: null, tries: 0, retryAt: 0 });
    this.flush();
  }

  discard(item) {
    this.items = this.items.filter((other) => other !== item);
    this.hooks.changed();
  }

  /** The room message at `offset` arrived: its acked placeholder gives way to it. */
  delivered(offset) {
    const mine = this.items.find((item) => item.state === "acked" && item.offset === offset);
    if (mine) this.discard(mine);
  }

  /** The user left `room` (or was taken out: `why`): what was waiting for it will not
   * go, and what was sent will not come back to be shown. */
  roomLeft(room, why = `you left #${room}`) {
    this.items = this.items.filter((item) => item.room !== room || item.state !== "acked");
    for (const item of this.items) {
      if (item.room === room) this.#fail(item, why);
    }
    this.hooks.changed();
  }

  /** The connection closed: answers to what was sent will never come. */
  connectionLost(code) {
    for (const item of this.items) {
      if (item.state !== "sending") continue;
      if (code === 1009) this.#fail(item, "too big for the server");
      else if (item.kind === "send") item.state = "queued"; // again, with the same id
      else this.#fail(item, "the connection dropped: it may not have arrived");
    }
    this.hooks.changed();
  }

  /** Send what can go now, oldest first. */
  flush() {
    clearTimeout(this.timer);
    this.timer = null;
    let inFlight = this.items.filter((item) => item.state === "sending").length;
    const now = Date.now();
    for (const item of this.items) {
      if (inFlight >= MAX_IN_FLIGHT) break;
      if (item.state !== "queued" || !this.hooks.canSend(item)) continue;
      if (item.retryAt > now) {
        this.#flushLater(item.retryAt - now);
        continue;
      }
      const frame =
        item.kind === "send"
          ? { type: "send", room: item.room, text: item.text, id: item.id }
          : { type: "dm", to: item.to, text: item.text };
      item.state = "sending";
      inFlight += 1;
      this.hooks.request(frame, (answer) => this.#answered(item, answer));
    }
    this.hooks.changed();
  }

  #add(item) {
    this.items.push({ ...item, ts: Date.now(), state: "queued", tries: 0, retryAt: 0 });
    this.flush();
  }

  #flushLater(ms) {
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), ms);
  }

  #answered(item, answer) {
    if (item.state !== "sending") return; // an answer from before a reconnect
    if (answer.type === "ack" && item.kind === "dm") {
      this.discard(item);
      this.hooks.directSent(item);
    } else if (answer.type === "ack") {
      if (this.hooks.shown(item.room, answer.offset)) this.discard(item);
      else Object.assign(item, { state: "acked", offset: answer.offset });
    } else if (answer.code === "unavailable" || answer.code === "rate_limited") {
      // Not stored: the same id goes again later, so it can never land twice.
      item.tries += 1;
      item.state = "queued";
      item.retryAt = Date.now() + Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (item.tries - 1));
    } else {
      this.#fail(item, answer.message);
    }
    this.flush();
  }

  #fail(item, message) {
    item.state = "failed";
    item.error = message;
  }
}
