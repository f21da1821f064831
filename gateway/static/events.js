// What the server's frames (other than the answers to our own requests) do to the chat:
// `welcome`, a room entered (`subscribed`), messages, presence, members, the room list,
// direct messages, deletions and removals, errors. Each changes the Chat's rooms and
// conversations and tells the page through `chat.onChange`. A message seen already (by
// its offset) is dropped: a replay may race a live message.

import { DirectConversation, nameKey } from "./rooms.js";

const KEEP_MESSAGES = 1000; // per conversation; older ones are dropped from memory

/** The server-event side of a Chat. */
export class Events {
  /**
   * @param {import("./chat.js").Chat} chat
   * @param {(frame: object, onAnswer: (answer: object) => void) => string|null} request
   *        sends a frame with a ref; null when there is no connection to send it on
   */
  constructor(chat, request) {
    this.chat = chat;
    this.request = request;
  }

  /** One frame that answers no request of ours. */
  frame(frame) {
    const chat = this.chat;
    const handlers = {
      welcome: (f) => this.#welcome(f),
      subscribed: (f) => this.subscribed(f),
      message: (f) => this.#message(f),
      presence: (f) => this.#presence(f),
      dm: (f) => this.direct(f),
      rooms: (f) => this.roomList(f),
      members: (f) => this.#members(f.room, f.members),
      deleted: (f) => chat.moderation.deleted(f.room, f.offset, f.by),
      removed: (f) => chat.rooms.has(f.room) && chat.moderation.out(chat.rooms.get(f.room), f),
      error: (f) => this.#error(f),
    };
    handlers[frame.type]?.(frame);
  }

  /** A room was entered (a `subscribed` frame, or the answer to a `join`). */
  subscribed(frame) {
    const chat = this.chat;
    const room = chat.rooms.get(frame.room);
    if (!room || room.out) {
      // Left while joining; or one this user is out of, entered only as the URL's room
      // (every room was one): it stays out.
      this.request({ type: "leave", room: frame.room }, () => {});
      return;
    }
    room.subscribed = true;
    room.joining = false;
    if (room.joinedWith !== null && !frame.recovered) {
      this.#notice(room, "Some messages from while you were away could not be recovered.");
    }
    if (room.cursor === null) room.cursor = frame.offset; // live messages follow it
    // Without a `since` the server replays nothing: what came before is read as history.
    if (!room.historyLoaded || room.joinedWith === null) chat.history.load(room, frame.offset);
    this.#members(room.name, frame.members);
    chat.onChange("rooms");
    chat.refreshRooms();
    chat.outbox.flush();
  }

  /** The answer to a `rooms` request (or a `rooms` frame): the rooms there are. */
  roomList(frame) {
    if (frame.type !== "rooms") return;
    this.chat.otherRooms = frame.rooms;
    this.chat.onChange("rooms");
  }

  /** A direct message, to or from this user (one sent is shown once it is accepted). */
  direct(frame) {
    const chat = this.chat;
    const fromMe = nameKey(frame.from) === nameKey(chat.name);
    const peer = fromMe ? frame.to : frame.from;
    const key = nameKey(peer);
    if (!chat.dms.has(key)) chat.dms.set(key, new DirectConversation(peer));
    const conversation = chat.dms.get(key);
    const { from, text, ts } = frame;
    this.#append(conversation, { kind: "message", from, text, ts });
    if (!fromMe && !this.#isVisible({ kind: "dm", id: key })) conversation.unread += 1;
    chat.onChange("dms");
  }

  #welcome(frame) {
    const chat = this.chat;
    const first = !chat.welcomed;
    chat.welcomed = true;
    chat.name = frame.name; // as the server spells it (trimmed, normalised)
    chat.session = frame.session;
    chat.node = frame.node;
    const moderated = String(chat.moderation.patterns);
    chat.moderation.patterns = frame.moderates ?? [];
    for (const room of chat.rooms.values()) {
      // The URL's room is being entered already; one this user is out of stays out.
      if (room !== chat.urlRoom && !room.out) chat.joins.enter(room);
    }
    chat.onChange(first ? "welcome" : "rewelcome");
    if (!first && moderated !== String(chat.moderation.patterns)) chat.onChange("moderation");
    chat.refreshRooms();
    chat.outbox.flush();
  }

  #message(frame) {
    const chat = this.chat;
    const room = chat.rooms.get(frame.room);
    if (!room || room.out) return; // not ours (any more)
    if (room.seen.has(frame.offset)) {
      if (frame.deleted) chat.moderation.deleted(room.name, frame.offset, frame.by); // tombstone
      return; // shown already
    }
    room.seen.add(frame.offset);
    room.cursor = frame.offset;
    const entry = room.entry(frame);
    this.#append(room, entry);
    const own = nameKey(frame.from) === nameKey(chat.name);
    if (own) chat.outbox.delivered(frame.offset);
    if (!own && !entry.deletedBy && !this.#isVisible({ kind: "room", id: room.name })) {
      room.unread += 1;
      chat.onChange("unread");
    }
  }

  #append(conversation, entry) {
    conversation.messages.push(entry);
    if (conversation.messages.length > KEEP_MESSAGES) {
      const dropped = conversation.messages.shift();
      if (conversation.seen && dropped.offset) conversation.seen.delete(dropped.offset);
      if (conversation.moreHistory !== undefined) conversation.moreHistory = true;
    }
    this.chat.onChange("message", { conversation, entry });
  }

  #notice(room, text) {
    this.#append(room, { kind: "notice", text, ts: Date.now() });
  }

  #error(frame) {
    const chat = this.chat;
    if (chat.moderation.bannedFrom(chat.urlRoom, frame)) return; // the close follows
    if (chat.welcomed) chat.onChange("error", { message: frame.message });
  }

  #presence(frame) {
    const chat = this.chat;
    const room = chat.rooms.get(frame.room);
    if (!room || room.out) return;
    const others = room.members.filter((n) => nameKey(n) !== nameKey(frame.name));
    this.#members(room.name, frame.event === "join" ? [...others, frame.name] : others);
    if (nameKey(frame.name) !== nameKey(chat.name)) {
      this.#notice(room, `${frame.name} ${frame.event === "join" ? "joined" : "left"}`);
    }
  }

  #members(roomName, members) {
    const room = this.chat.rooms.get(roomName);
    if (!room) return;
    room.members = [...members].sort((a, b) => a.localeCompare(b));
    this.chat.onChange("members", { room: roomName });
  }

  #isVisible(target) {
    const a = this.chat.active;
    return !document.hidden && a && a.kind === target.kind && a.id === target.id;
  }
}
