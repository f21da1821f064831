// The chat as this page knows it: rooms with their messages and members, direct
// conversations, and the outbox of messages not yet confirmed. It speaks the JSON
// protocol (docs/protocol.md) through a Connection and tells the page what changed
// through `onChange(what, detail)`; it touches no element itself.
//
// No gap, no duplicate: every room keeps the offsets it has shown (`seen`) and the
// newest offset it holds everything up to (`cursor`). A reconnect joins each room with
// `since=cursor`, so the server replays exactly what was missed; anything seen twice
// (a replay racing a live message, history overlapping live) is dropped by offset.

import { Connection, offer } from "./connection.js";
import { Moderation } from "./moderation.js";
import { Outbox } from "./outbox.js";
import { DirectConversation, Room } from "./rooms.js";

export const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const HISTORY_PAGE = 50;
const KEEP_MESSAGES = 1000; // per conversation; older ones are dropped from memory

/** Names compare NFC-normalised and case-folded, as on the server. */
export const nameKey = (name) => name.normalize("NFC").toLowerCase();

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
    this.dms = new Map(); // name key -> DirectConversation
    this.otherRooms = []; // from `rooms`: [{room, members}]
    this.outbox = this.#newOutbox();
    this.active = null; // {kind: "room"|"dm", id}
    this.answers = new Map(); // ref -> handler of the answer
    this.refs = 0;
    this.moderation = new Moderation(this, (frame, onAnswer) => this.#request(frame, onAnswer));
    this.conn = new Connection({
      handshake: () => this.#handshake(),
      onFrame: (frame) => this.#frame(frame),
      onClose: (close) => this.#closed(close),
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
    if (!this.rooms.has(room)) {
      this.rooms.set(room, new Room(room));
      if (this.conn.ready) this.#join(this.rooms.get(room));
    }
    this.show({ kind: "room", id: room });
  }

  /** Join again a room this user was removed or banned from (the user asked). */
  rejoin(roomName) {
    const room = this.rooms.get(roomName);
    if (!room?.out) return;
    room.out = null;
    if (this.conn.ready) this.#join(room);
    this.onChange("out", { room });
  }

  leave(room) {
    if (!this.rooms.has(room) || this.rooms.size === 1) return; // always in one room
    const wasSubscribed = this.rooms.get(room).subscribed;
    this.rooms.delete(room);
    this.outbox.roomLeft(room);
    if (wasSubscribed) this.#request({ type: "leave", room }, () => {});
    if (this.active.kind === "room" && this.active.id === room) {
      this.show({ kind: "room", id: this.rooms.keys().next().value });
    }
    this.onChange("rooms");
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
    const oldest = room.messages.find((m) => m.offset);
    if (!oldest || !this.conn.ready) return;
    this.#request(
      { type: "history", room: room.name, before: oldest.offset, limit: HISTORY_PAGE },
      (answer) => {
        if (answer.type !== "history") return;
        room.moreHistory = answer.messages.length === HISTORY_PAGE;
        this.#prepend(room, answer.messages);
      },
    );
  }

  refreshRooms() {
    if (this.conn.ready) this.#request({ type: "rooms" }, (answer) => this.#roomList(answer));
  }

  // ---------------------------------------------------------------- the connection

  #handshake() {
    // The first room rides in the URL (with its `since`); the others are joined after.
    // The token and the session secret are offered as subprotocols, out of the URL.
    const first = this.#firstRoom();
    const query = new URLSearchParams({ room: first.name });
    if (this.name) query.set("name", this.name); // with a token it may be left to the token
    if (first.cursor !== null) query.set("since", first.cursor);
    first.joinedWith = first.cursor;
    first.joining = true;
    this.urlRoom = first;
    const protocols = offer({ token: this.token, session: this.session ?? "" });
    return { url: `${this.wsUrl}?${query}`, protocols };
  }

  #firstRoom() {
    // Not one this user is out of: being banned from it would close the connection.
    const active = this.active?.kind === "room" ? this.rooms.get(this.active.id) : undefined;
    const rooms = [active, ...this.rooms.values()].filter(Boolean);
    return rooms.find((room) => !room.out) ?? rooms[0];
  }

  #closed({ code, reason, welcomed, error }) {
    this.answers.clear(); // answers on a closed socket never come
    for (const room of this.rooms.values()) {
      room.subscribed = false;
      room.joining = false;
    }
    this.outbox.connectionLost(code);
    const banned = this.moderation.takeBannedFirst();
    if (!this.welcomed || error?.code === "unauthorized") {
      // Never in (the name, the token or the server said no), or the token no longer
      // lets us back in (it expired): back to the form; retrying would not help.
      const message = error?.message ?? `could not connect (${code || "no answer"})`;
      this.onChange("login-failed", { message, code: error?.code });
      return false;
    }
    if (code === 1008 && banned) {
      // Banned from the URL's room: back at once through another room, if there is one.
      if ([...this.rooms.values()].some((room) => !room.out)) return true;
      this.onChange("stopped", { code, reason, error: banned });
      return false;
    }
    const detail = { code, reason, error };
    if (code === 1008 || code === 4000 || code === 4001 || code === 1000) {
      // policy, taken over, disconnected by an operator, or a deliberate close
      this.onChange("stopped", detail);
      return false;
    }
    this.onChange("dropped", detail); // 1001 going away, 1006 network, 1011 try again
    return true;
  }

  #newOutbox() {
    return new Outbox({
      request: (frame, onAnswer) => this.#request(frame, onAnswer),
      canSend: (item) =>
        this.conn.ready && (item.kind === "dm" || Boolean(this.rooms.get(item.room)?.subscribed)),
      shown: (room, offset) => Boolean(this.rooms.get(room)?.seen.has(offset)),
      directSent: ({ to, text }) => this.#direct({ from: this.name, to, text, ts: Date.now() }),
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

  #join(room) {
    if (room.joining || room.subscribed) return;
    room.joining = true;
    room.joinedWith = room.cursor;
    const frame = { type: "join", room: room.name };
    if (room.cursor !== null) frame.since = room.cursor;
    this.#request(frame, (answer) => {
      room.joining = false;
      if (answer.type === "error") this.#joinRefused(room, answer);
      else this.#subscribed(answer);
    });
  }

  #joinRefused(room, error) {
    if (this.rooms.get(room.name) !== room) return;
    if (error.code === "banned") {
      this.moderation.out(room, { until: error.until }); // shown as banned, until when
      return;
    }
    if (error.code === "unavailable") {
      // The backend could not take us in right now: the room stays, the join is tried again.
      const again = () => this.conn.ready && this.rooms.get(room.name) === room && this.#join(room);
      setTimeout(again, 2000);
      return;
    }
    this.rooms.delete(room.name);
    if (this.active.kind === "room" && this.active.id === room.name) {
      this.show({ kind: "room", id: this.rooms.keys().next().value });
    }
    this.onChange("rooms");
    this.onChange("room-error", { message: error.message });
  }

  #frame(frame) {
    const handler = frame.ref !== undefined ? this.answers.get(frame.ref) : undefined;
    if (handler) {
      this.answers.delete(frame.ref);
      handler(frame);
      return;
    }
    const handlers = {
      welcome: (f) => this.#welcome(f),
      subscribed: (f) => this.#subscribed(f),
      message: (f) => this.#message(f),
      presence: (f) => this.#presence(f),
      dm: (f) => this.#direct(f),
      rooms: (f) => this.#roomList(f),
      members: (f) => this.#members(f.room, f.members),
      deleted: (f) => this.moderation.deleted(f.room, f.offset, f.by),
      removed: (f) => this.rooms.has(f.room) && this.moderation.out(this.rooms.get(f.room), f),
      error: (f) => this.#error(f),
    };
    handlers[frame.type]?.(frame);
  }

  #welcome(frame) {
    const first = !this.welcomed;
    this.welcomed = true;
    this.name = frame.name; // as the server spells it (trimmed, normalised)
    this.session = frame.session;
    this.node = frame.node;
    const moderated = String(this.moderation.patterns);
    this.moderation.patterns = frame.moderates ?? [];
    for (const room of this.rooms.values()) {
      // The URL's room is being entered already; one this user is out of stays out.
      if (room !== this.urlRoom && !room.out) this.#join(room);
    }
    this.onChange(first ? "welcome" : "rewelcome");
    if (!first && moderated !== String(this.moderation.patterns)) this.onChange("moderation");
    this.refreshRooms();
    this.outbox.flush();
  }

  #subscribed(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || room.out) {
      // Left while joining; or one this user is out of, entered only as the URL's room
      // (every room was one): it stays out.
      this.#request({ type: "leave", room: frame.room }, () => {});
      return;
    }
    room.subscribed = true;
    room.joining = false;
    if (room.joinedWith !== null && !frame.recovered) {
      this.#notice(room, "Some messages from while you were away could not be recovered.");
    }
    if (room.cursor === null) room.cursor = frame.offset; // live messages follow it
    // Without a `since` the server replays nothing: what came before is read as history.
    if (!room.historyLoaded || room.joinedWith === null) this.#loadHistory(room, frame.offset);
    this.#members(room.name, frame.members);
    this.onChange("rooms");
    this.refreshRooms();
    this.outbox.flush();
  }

  #loadHistory(room, upTo) {
    if (upTo === null) {
      room.historyLoaded = true; // an empty room
      return;
    }
    this.#request({ type: "history", room: room.name, limit: HISTORY_PAGE }, (answer) => {
      if (answer.type !== "history") return;
      // Only what came up to the join's offset: newer ones arrive live (or already did).
      const end = answer.messages.findIndex((m) => m.offset === upTo);
      const older = end === -1 ? [] : answer.messages.slice(0, end + 1);
      room.historyLoaded = true;
      room.moreHistory = answer.messages.length === HISTORY_PAGE;
      this.#prepend(room, older);
    });
  }

  #prepend(room, messages) {
    for (const m of messages) {
      if (m.deleted && room.seen.has(m.offset)) room.delete(m.offset, m.by); // shown, then deleted
    }
    const fresh = messages.filter((m) => !room.seen.has(m.offset));
    for (const m of fresh) room.seen.add(m.offset);
    room.messages.unshift(...fresh.map((m) => room.entry(m)));
    this.onChange("history", { room: room.name });
  }

  #message(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || room.out) return; // not ours (any more)
    if (room.seen.has(frame.offset)) {
      if (frame.deleted) this.moderation.deleted(room.name, frame.offset, frame.by); // tombstone
      return; // shown already
    }
    room.seen.add(frame.offset);
    room.cursor = frame.offset;
    const entry = room.entry(frame);
    this.#append(room, entry);
    const own = nameKey(frame.from) === nameKey(this.name);
    if (own) this.outbox.delivered(frame.offset);
    if (!own && !entry.deletedBy && !this.#isVisible({ kind: "room", id: room.name })) {
      room.unread += 1;
      this.onChange("unread");
    }
  }

  #append(conversation, entry) {
    conversation.messages.push(entry);
    if (conversation.messages.length > KEEP_MESSAGES) {
      const dropped = conversation.messages.shift();
      if (conversation.seen && dropped.offset) conversation.seen.delete(dropped.offset);
      if (conversation.moreHistory !== undefined) conversation.moreHistory = true;
    }
    this.onChange("message", { conversation, entry });
  }

  #notice(room, text) {
    this.#append(room, { kind: "notice", text, ts: Date.now() });
  }

  #error(frame) {
    if (this.moderation.bannedFrom(this.urlRoom, frame)) return; // the close follows
    if (this.welcomed) this.onChange("error", { message: frame.message });
  }

  #presence(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || room.out) return;
    const others = room.members.filter((n) => nameKey(n) !== nameKey(frame.name));
    this.#members(room.name, frame.event === "join" ? [...others, frame.name] : others);
    if (nameKey(frame.name) !== nameKey(this.name)) {
      this.#notice(room, `${frame.name} ${frame.event === "join" ? "joined" : "left"}`);
    }
  }

  #members(roomName, members) {
    const room = this.rooms.get(roomName);
    if (!room) return;
    room.members = [...members].sort((a, b) => a.localeCompare(b));
    this.onChange("members", { room: roomName });
  }

  #roomList(frame) {
    if (frame.type !== "rooms") return;
    this.otherRooms = frame.rooms;
    this.onChange("rooms");
  }

  #direct(frame) {
    const fromMe = nameKey(frame.from) === nameKey(this.name);
    const peer = fromMe ? frame.to : frame.from;
    const key = nameKey(peer);
    if (!this.dms.has(key)) this.dms.set(key, new DirectConversation(peer));
    const conversation = this.dms.get(key);
    const { from, text, ts } = frame;
    this.#append(conversation, { kind: "message", from, text, ts });
    if (!fromMe && !this.#isVisible({ kind: "dm", id: key })) conversation.unread += 1;
    this.onChange("dms");
  }

  #isVisible(target) {
    const a = this.active;
    return !document.hidden && a && a.kind === target.kind && a.id === target.id;
  }
}
