// The chat as this page knows it: rooms with their messages and members, direct
// conversations, and the outbox of messages not yet confirmed; what the page asks of it,
// and each request matched to its answer (by `ref`). It speaks the JSON protocol
// (docs/protocol.md) through a Connection and tells the page what changed through
// `onChange(what, detail)`; it touches no element itself. Its parts: lifecycle.js (the
// handshake, and what a close means), events.js (the server's frames), joins.js (rooms
// entered and left), history.js (earlier messages), moderation.js.
//
// No gap, no duplicate: every room keeps the offsets it has shown (`seen`) and the
// newest offset it holds everything up to (`cursor`). A reconnect joins each room with
// `since=cursor`, so the server replays exactly what was missed; anything seen twice
// (a replay racing a live message, history overlapping live) is dropped by offset.

import { Connection } from "./connection.js";
import { Events } from "./events.js";
import { RoomHistory } from "./history.js";
import { Joins } from "./joins.js";
import { closed, handshake } from "./lifecycle.js";
import { Moderation } from "./moderation.js";
import { Outbox } from "./outbox.js";
import { DirectConversation, Room, nameKey } from "./rooms.js";

export class Chat {
  constructor(wsUrl, onChange) {
    this.wsUrl = wsUrl;
    this.onChange = onChange;
    this.name = "";
    this.token = ""; // with auth: sent on every connection; kept in memory only
    this.session = null;
    this.node = null;
    this.welcomed = false; // ever, in this page
    this.rooms = new Map(); // room name -> Room, in the order joined
    this.urlRoom = null; // the Room entered through the handshake's URL
    this.dms = new Map(); // name key -> DirectConversation
    this.otherRooms = []; // from `rooms`: [{room, members}]
    this.outbox = this.#newOutbox();
    this.active = null; // {kind: "room"|"dm", id}
    this.answers = new Map(); // ref -> handler of the answer
    this.refs = 0;
    const request = (frame, onAnswer) => this.#request(frame, onAnswer);
    this.moderation = new Moderation(this, request);
    this.events = new Events(this, request);
    this.joins = new Joins(this, request);
    this.history = new RoomHistory(this, request);
    this.conn = new Connection({
      handshake: () => handshake(this),
      onFrame: (frame) => this.#frame(frame),
      onClose: (close) => {
        this.answers.clear(); // answers on a closed socket never come
        return closed(this, close);
      },
      onStatus: (state) => this.onChange("status", { state }),
    });
  }

  // ---------------------------------------------------------------- what the page asks

  /** Connect as `name` (or, with a `token`, as the token says), first in `room`. */
  login(name, room, token = "") {
    this.name = name;
    this.token = token;
    this.session = null;
    this.welcomed = false;
    this.outbox.clear();
    this.dms = new Map();
    this.rooms = new Map([[room, new Room(room)]]);
    this.active = { kind: "room", id: room };
    this.conn.start("connecting");
  }

  /** Reconnect after the server closed for good (the user asked). */
  reconnect() {
    this.conn.start("reconnecting");
  }

  /** Go on with a new token for the same name (the last one expired): rooms, messages
   * and the outbox are kept, and resumed as after any reconnect. */
  renew(token) {
    this.token = token;
    this.conn.start("reconnecting");
  }

  /** Join `room` (or just show it, when already in it). */
  join(room) {
    this.joins.join(room);
  }

  /** Join again a room this user was removed or banned from (the user asked). */
  rejoin(roomName) {
    this.joins.rejoin(roomName);
  }

  leave(room) {
    this.joins.leave(room);
  }

  /** Open the direct conversation with `peer`. */
  openDirect(peer) {
    const key = nameKey(peer);
    if (!this.dms.has(key)) this.dms.set(key, new DirectConversation(peer));
    this.show({ kind: "dm", id: key });
  }

  show(target) {
    this.active = target;
    const conversation = this.conversation(target);
    if (conversation) conversation.unread = 0;
    this.onChange("active");
  }

  /** The Room or DirectConversation `target` names (the active one by default). */
  conversation(target = this.active) {
    if (!target) return undefined;
    return target.kind === "room" ? this.rooms.get(target.id) : this.dms.get(target.id);
  }

  /** Send `text` to the active conversation; it waits in the outbox until confirmed. */
  send(text) {
    if (this.active.kind === "room" && this.rooms.get(this.active.id).out) return;
    if (this.active.kind === "room") this.outbox.sendToRoom(this.active.id, text);
    else this.outbox.sendDirect(this.dms.get(this.active.id).peer, text);
  }

  /** Ask for the page of messages before the oldest one shown. */
  loadOlder(room) {
    this.history.older(room);
  }

  refreshRooms() {
    if (this.conn.ready) this.#request({ type: "rooms" }, (answer) => this.events.roomList(answer));
  }

  // ---------------------------------------------------------------- requests and answers

  #newOutbox() {
    return new Outbox({
      request: (frame, onAnswer) => this.#request(frame, onAnswer),
      canSend: (item) =>
        this.conn.ready && (item.kind === "dm" || Boolean(this.rooms.get(item.room)?.subscribed)),
      shown: (room, offset) => Boolean(this.rooms.get(room)?.seen.has(offset)),
      directSent: ({ to, text }) =>
        this.events.direct({ from: this.name, to, text, ts: Date.now() }),
      changed: () => this.onChange("outbox"),
    });
  }

  #request(frame, onAnswer) {
    const ref = `r${++this.refs}`;
    this.answers.set(ref, onAnswer);
    if (this.conn.send({ ...frame, ref })) return ref;
    this.answers.delete(ref);
    return null; // no connection: no answer will come
  }

  /** A frame that answers a request goes to its handler; any other is an event. */
  #frame(frame) {
    const handler = frame.ref !== undefined ? this.answers.get(frame.ref) : undefined;
    if (handler) {
      this.answers.delete(frame.ref);
      handler(frame);
      return;
    }
    this.events.frame(frame);
  }
}
