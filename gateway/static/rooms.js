// What the page holds of one conversation: a room (its messages, members, where it
// resumes from, whether this user is out of it) or a direct conversation; and how room
// names look and names compare.

export const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Names compare NFC-normalised and case-folded, as on the server. */
export const nameKey = (name) => name.normalize("NFC").toLowerCase();

export class Room {
  constructor(name) {
    this.name = name;
    this.subscribed = false; // on the current connection
    this.joining = false; // a join is on its way
    this.cursor = null; // every message up to this offset is held (or was never there)
    this.joinedWith = null; // the `since` of the current join
    this.historyLoaded = false;
    this.moreHistory = false; // older messages may exist on the server
    this.seen = new Set();
    // {kind: "message", from, text, ts, offset, deletedBy?} | {kind: "notice", text, ts}
    this.messages = [];
    this.members = [];
    this.unread = 0;
    // Out of the room: removed by a moderator ({by, until?}) or banned from it
    // ({until}); not joined again by itself, not even on a reconnect.
    this.out = null;
    // offset -> moderator, for deletions of messages not held (yet): a history answer
    // on its way may still carry the text.
    this.deletions = new Map();
  }

  /** The entry for the wire message `m` (a `message` frame, or one of `history`). */
  entry(m) {
    const deletedBy = m.deleted ? (m.by ?? "a moderator") : this.deletions.get(m.offset);
    const entry = { kind: "message", from: m.from, text: m.text, ts: m.ts, offset: m.offset };
    return deletedBy === undefined ? entry : tombstone(entry, deletedBy);
  }

  /** The message at `offset` was deleted by `by`: its text is dropped, here and for good.
   * The entry when it is held (it changed), else undefined. */
  delete(offset, by) {
    this.deletions.set(offset, by);
    const entry = this.messages.find((m) => m.kind === "message" && m.offset === offset);
    if (!entry || entry.deletedBy !== undefined) return undefined;
    return tombstone(entry, by);
  }
}

export class DirectConversation {
  constructor(peer) {
    this.peer = peer;
    this.messages = []; // {kind: "message", from, to, text, ts}
    this.unread = 0;
  }
}

/** `entry` as a deleted message: no text any more, and who deleted it. */
function tombstone(entry, by) {
  entry.text = "";
  entry.deletedBy = by;
  return entry;
}
