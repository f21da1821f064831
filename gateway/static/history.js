// A room's earlier messages, read with `history` requests: the page up to the offset a
// join started at (newer ones come live), and earlier pages when the user asks. What is
// held already (by offset) is not added twice; a message deleted meanwhile is shown so.

const HISTORY_PAGE = 50;

/** The history side of a Chat. */
export class RoomHistory {
  /**
   * @param {import("./chat.js").Chat} chat
   * @param {(frame: object, onAnswer: (answer: object) => void) => string|null} request
   *        sends a frame with a ref; null when there is no connection to send it on
   */
  constructor(chat, request) {
    this.chat = chat;
    this.request = request;
  }

  /** The messages of `room` up to `upTo` (the join's offset; null: an empty room). */
  load(room, upTo) {
    if (upTo === null) {
      room.historyLoaded = true; // an empty room
      return;
    }
    this.request({ type: "history", room: room.name, limit: HISTORY_PAGE }, (answer) => {
      if (answer.type !== "history") return;
      // Only what came up to the join's offset: newer ones arrive live (or already did).
      const end = answer.messages.findIndex((m) => m.offset === upTo);
      const older = end === -1 ? [] : answer.messages.slice(0, end + 1);
      room.historyLoaded = true;
      room.moreHistory = answer.messages.length === HISTORY_PAGE;
      this.#prepend(room, older);
    });
  }

  /** The page of messages before the oldest one of `room` shown. */
  older(room) {
    const oldest = room.messages.find((m) => m.offset);
    if (!oldest || !this.chat.conn.ready) return;
    this.request(
      { type: "history", room: room.name, before: oldest.offset, limit: HISTORY_PAGE },
      (answer) => {
        if (answer.type !== "history") return;
        room.moreHistory = answer.messages.length === HISTORY_PAGE;
        this.#prepend(room, answer.messages);
      },
    );
  }

  #prepend(room, messages) {
    for (const m of messages) {
      if (m.deleted && room.seen.has(m.offset)) room.delete(m.offset, m.by); // shown, then deleted
    }
    const fresh = messages.filter((m) => !room.seen.has(m.offset));
    for (const m of fresh) room.seen.add(m.offset);
    room.messages.unshift(...fresh.map((m) => room.entry(m)));
    this.chat.onChange("history", { room: room.name });
  }
}
