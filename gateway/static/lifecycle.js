// What a connection means to the chat (connection.js does the mechanics): the handshake
// that opens it (the first room, with its `since`, in the URL; the token and the session
// secret as subprotocols, out of the URL) and what its close code means: back to the
// name form, stopped until the user reconnects, or back again by itself.

import { offer } from "./connection.js";

/** The URL and the subprotocols of the next connection of `chat` (a Chat). */
export function handshake(chat) {
  // The first room rides in the URL (with its `since`); the others are joined after.
  // The token and the session secret are offered as subprotocols, out of the URL.
  const first = firstRoom(chat);
  const query = new URLSearchParams({ room: first.name });
  if (chat.name) query.set("name", chat.name); // with a token it may be left to the token
  if (first.cursor !== null) query.set("since", first.cursor);
  first.joinedWith = first.cursor;
  first.joining = true;
  chat.urlRoom = first;
  const protocols = offer({ token: chat.token, session: chat.session ?? "" });
  return { url: `${chat.wsUrl}?${query}`, protocols };
}

function firstRoom(chat) {
  // Not one this user is out of: being banned from it would close the connection.
  const active = chat.active?.kind === "room" ? chat.rooms.get(chat.active.id) : undefined;
  const rooms = [active, ...chat.rooms.values()].filter(Boolean);
  return rooms.find((room) => !room.out) ?? rooms[0];
}

/**
 * The connection of `chat` closed (`error`: the error frame before welcome, if any): its
 * rooms are no longer entered, and the page is told why. True to connect again.
 */
export function closed(chat, { code, reason, error }) {
  for (const room of chat.rooms.values()) {
    room.subscribed = false;
    room.joining = false;
  }
  chat.outbox.connectionLost(code);
  const banned = chat.moderation.takeBannedFirst();
  if (!chat.welcomed || error?.code === "unauthorized") {
    // Never in (the name, the token or the server said no), or the token no longer
    // lets us back in (it expired): back to the form; retrying would not help.
    const message = error?.message ?? `could not connect (${code || "no answer"})`;
    chat.onChange("login-failed", { message, code: error?.code });
    return false;
  }
  if (code === 1008 && banned) {
    // Banned from the URL's room: back at once through another room, if there is one.
    if ([...chat.rooms.values()].some((room) => !room.out)) return true;
    chat.onChange("stopped", { code, reason, error: banned });
    return false;
  }
  const detail = { code, reason, error };
  if (code === 1008 || code === 4000 || code === 4001 || code === 1000) {
    // policy, taken over, disconnected by an operator, or a deliberate close
    chat.onChange("stopped", detail);
    return false;
  }
  chat.onChange("dropped", detail); // 1001 going away, 1006 network, 1011 try again
  return true;
}
