// Room moderation as the page sees it (docs/protocol.md, section 10): which rooms this
// user moderates and what a moderator asks (`kick`, `delete`); what the chat does when
// a message is deleted or this user is removed or banned; the `/kick` command and the
// words for being out of a room. The server decides; the page only shows moderator
// controls where they would be allowed.

/** The moderation side of a Chat: it changes the chat's rooms and tells its page. */
export class Moderation {
  /**
   * @param {import("./chat.js").Chat} chat
   * @param {(frame: object, onAnswer: (answer: object) => void) => string|null} request
   *        sends a frame with a ref; null when there is no connection to send it on
   */
  constructor(chat, request) {
    this.chat = chat;
    this.request = request;
    this.patterns = []; // from `welcome.moderates`
    this.bannedFirst = null; // the `banned` error of the URL's room, until its close
  }

  /** True when this user moderates `room` (by its token: the server checks again). */
  can(room) {
    return moderatesRoom(this.patterns, room);
  }

  /** Take `name` out of `room`, banned for `seconds` (0: no ban). */
  kick(room, name, seconds = 0) {
    const frame = { type: "kick", room, name };
    if (seconds > 0) frame.seconds = seconds;
    const sent = this.request(frame, (answer) => {
      if (answer.type === "error") this.chat.onChange("error", { message: answer.message });
      else this.chat.onChange("kicked", { room, name, seconds });
    });
    if (!sent) this.chat.onChange("error", { message: "not connected: try again once it is back" });
  }

  /** Delete the message at `offset` of `room`, for everyone; false when it could not go. */
  deleteMessage(room, offset) {
    const sent = this.request({ type: "delete", room, offset }, (answer) => {
      if (answer.type !== "error") return; // `deleted` follows, to every member
      this.chat.onChange("error", { message: answer.message });
      this.#redraw(room, offset); // its controls come back
    });
    if (!sent) this.#redraw(room, offset);
    return Boolean(sent);
  }

  /** A moderator (`by`) deleted the message at `offset` of `room` (live, or a tombstone
   * where the page showed the text): shown as deleted, in its place. */
  deleted(room, offset, by) {
    const entry = this.chat.rooms.get(room)?.delete(offset, by ?? "a moderator");
    if (entry) this.chat.onChange("entry", { conversation: this.chat.rooms.get(room), entry });
  }

  /** This user is out of `room` (a Room): removed by a moderator (`by`, banned until
   * `until` if given), or banned (`until` alone). It is not joined again by itself. */
  out(room, { by, until }) {
    room.out = { by, until };
    room.subscribed = false;
    room.joining = false;
    room.members = [];
    const why = by ? `you were removed from #${room.name}` : `you are banned from #${room.name}`;
    this.chat.outbox.roomLeft(room.name, why);
    this.chat.onChange("out", { room });
    this.chat.onChange("members", { room: room.name });
    this.chat.onChange("rooms");
  }

  /** True when `error` is the ban of `urlRoom` (the first room, in the handshake's URL):
   * it is refused after `welcome`, and a close (1008) follows. */
  bannedFrom(urlRoom, error) {
    if (error.code !== "banned" || !urlRoom || urlRoom.subscribed) return false;
    this.bannedFirst = { ...error, room: urlRoom.name };
    this.out(urlRoom, { until: error.until });
    return true;
  }

  /** The ban that explains the close now coming, if any (once). */
  takeBannedFirst() {
    const banned = this.bannedFirst;
    this.bannedFirst = null;
    return banned;
  }

  #redraw(room, offset) {
    const conversation = this.chat.rooms.get(room);
    const entry = conversation?.messages.find((m) => m.offset === offset);
    if (entry) this.chat.onChange("entry", { conversation, entry });
  }
}

/** Ban lengths offered when removing someone from the member list: [label, seconds]. */
export const BAN_CHOICES = [
  ["No ban", 0],
  ["Ban for 5 minutes", 300],
  ["Ban for 1 hour", 3600],
  ["Ban for 1 day", 86400],
];

/** True when one of `patterns` (from `welcome.moderates`) names `room`: the room itself,
 * or a prefix ending in `*` (`"*"` alone: every room). Room names compare exactly. */
export function moderatesRoom(patterns, room) {
  return patterns.some((p) => (p.endsWith("*") ? room.startsWith(p.slice(0, -1)) : p === room));
}

const KICK = /^\/kick(?:\s+([\s\S]*))?$/;

/**
 * `/kick NAME [SECONDS]` typed in the composer: null when `text` is not a kick, else
 * `{name, seconds}`, or `{error}` when it is one that cannot go. A name may hold spaces:
 * a last word of digits is the ban length.
 */
export function parseKick(text) {
  const match = KICK.exec(text.trim());
  if (!match) return null;
  const words = (match[1] ?? "").trim().split(/\s+/).filter(Boolean);
  let seconds = 0;
  if (words.length > 1 && /^\d+$/.test(words.at(-1))) seconds = Number(words.pop());
  const name = words.join(" ");
  if (!name) return { error: "Usage: /kick NAME [SECONDS]" };
  return { name, seconds };
}

const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
const dateAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** When a ban ends (`until`, epoch ms), as the reader would say it: the time alone today. */
export function untilText(until) {
  const end = new Date(until);
  const today = new Date().toDateString() === end.toDateString();
  return (today ? timeOnly : dateAndTime).format(end);
}

/** What keeps this user out of `room`: `out` is `{by, until}` (removed by a moderator,
 * banned until `until` if given) or `{until}` alone (banned: a join was refused). */
export function outText(room, out) {
  const until = out.until ? ` until ${untilText(out.until)}` : "";
  if (out.by) {
    const ban = until ? `, banned${until}` : "";
    return `You were removed from #${room} by ${out.by}${ban}.`;
  }
  return `You are banned from #${room}${until}.`;
}

/** How long a ban of `seconds` lasts, in words, for the moderator's own notice. */
export function banText(seconds) {
  if (!seconds) return "";
  const choice = BAN_CHOICES.find(([, s]) => s === seconds);
  if (choice) return choice[0].replace("Ban for", ", banned for");
  return `, banned for ${seconds} ${seconds === 1 ? "second" : "seconds"}`;
}
