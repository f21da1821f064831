// Entering and leaving rooms: the Room kept for each, the `join` sent for it (with its
// `since`, so the server replays what was missed) and what a refusal means (banned: out
// of it; unavailable: tried again; otherwise dropped, with why), and the `leave`. The
// first room is entered through the handshake's URL (lifecycle.js) instead.

import { Room } from "./rooms.js";

/** The join/leave side of a Chat. */
export class Joins {
  /**
   * @param {import("./chat.js").Chat} chat
   * @param {(frame: object, onAnswer: (answer: object) => void) => string|null} request
   *        sends a frame with a ref; null when there is no connection to send it on
   */
  constructor(chat, request) {
    this.chat = chat;
    this.request = request;
  }

  /** Join `room` (or just show it, when already in it). */
  join(room) {
    const chat = this.chat;
    if (!chat.rooms.has(room)) {
      chat.rooms.set(room, new Room(room));
      if (chat.conn.ready) this.enter(chat.rooms.get(room));
    }
    chat.show({ kind: "room", id: room });
  }

  /** Join again a room this user was removed or banned from (the user asked). */
  rejoin(roomName) {
    const chat = this.chat;
    const room = chat.rooms.get(roomName);
    if (!room?.out) return;
    room.out = null;
    if (chat.conn.ready) this.enter(room);
    chat.onChange("out", { room });
  }

  leave(room) {
    const chat = this.chat;
    if (!chat.rooms.has(room) || chat.rooms.size === 1) return; // always in one room
    const wasSubscribed = chat.rooms.get(room).subscribed;
    chat.rooms.delete(room);
    chat.outbox.roomLeft(room);
    if (wasSubscribed) this.request({ type: "leave", room }, () => {});
    if (chat.active.kind === "room" && chat.active.id === room) {
      chat.show({ kind: "room", id: chat.rooms.keys().next().value });
    }
    chat.onChange("rooms");
  }

  /** Send the `join` of `room` (a Room), unless it is on its way or done. */
  enter(room) {
    if (room.joining || room.subscribed) return;
    room.joining = true;
    room.joinedWith = room.cursor;
    const frame = { type: "join", room: room.name };
    if (room.cursor !== null) frame.since = room.cursor;
    this.request(frame, (answer) => {
      room.joining = false;
      if (answer.type === "error") this.#refused(room, answer);
      else this.chat.events.subscribed(answer);
    });
  }

  #refused(room, error) {
    const chat = this.chat;
    if (chat.rooms.get(room.name) !== room) return;
    if (error.code === "banned") {
      chat.moderation.out(room, { until: error.until }); // shown as banned, until when
      return;
    }
    if (error.code === "unavailable") {
      // The backend could not take us in right now: the room stays, the join is tried again.
      const again = () => chat.conn.ready && chat.rooms.get(room.name) === room && this.enter(room);
      setTimeout(again, 2000);
      return;
    }
    chat.rooms.delete(room.name);
    if (chat.active.kind === "room" && chat.active.id === room.name) {
      chat.show({ kind: "room", id: chat.rooms.keys().next().value });
    }
    chat.onChange("rooms");
    chat.onChange("room-error", { message: error.message });
  }
}
