// The page: the login form (a name, or a token), the sidebar, the conversation, the keyboard.

import { Chat, ROOM_PATTERN, nameKey } from "./chat.js";
import { setUpComposer } from "./composer.js";
import { SUBPROTOCOL_SAFE } from "./connection.js";
import { ChatView } from "./render.js";

const $ = (id) => document.getElementById(id);
const ROOMS_REFRESH_MS = 15000;
const NAME_STORE = "chat-gateway.name";
const STATUS_TEXT = {
  connecting: "Connecting",
  connected: "Connected",
  reconnecting: "Reconnecting",
  offline: "Offline",
};

const wsUrl = new URL("ws", window.location.href);
wsUrl.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
const chat = new Chat(wsUrl.href, changed);
const view = new ChatView(chat, {
  open: (target, join) => openConversation(target, join),
  openDirect: (name) => {
    chat.openDirect(name);
    afterNavigation();
  },
});
let lastStop = null; // the close code that stopped reconnecting, until the user reconnects

// ------------------------------------------------------------------------- name form

/** The room in the address (`/#dev`, or `/#room=dev` as in `/#room=dev&token=...`), else lobby. */
function startRoom() {
  const hash = window.location.hash.slice(1);
  const wanted = hash.includes("=") ? (new URLSearchParams(hash).get("room") ?? "") : hash;
  return ROOM_PATTERN.test(wanted) ? wanted : "lobby";
}

/**
 * A token handed over in the address (`/#token=...`, or `/#room=dev&token=...`), taken
 * once and at once removed from the address bar (replacing the history entry), so that
 * copying the address or a screenshot does not pass it on. A fragment never goes to a
 * server: the token is sent only to /ws (as a subprotocol, never in its URL), and kept
 * only in memory.
 */
function takeUrlToken() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get("token");
  if (token === null) return "";
  const room = params.get("room") ?? "";
  const keep = ROOM_PATTERN.test(room) ? `#${room}` : "";
  const { pathname, search } = window.location;
  history.replaceState(history.state, "", `${pathname}${search}${keep}`);
  return token.trim();
}

/** The name a token is for (its `sub`), read without checking it: the server does. */
function tokenName(token) {
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const { sub } = JSON.parse(new TextDecoder().decode(bytes));
    return typeof sub === "string" ? sub : null;
  } catch {
    return null; // not a JWT: the server will say so
  }
}

/** The token field, shown once the server wants a token or the address brought one. */
function showTokenField() {
  $("token-label").hidden = false;
  $("token-input").hidden = false;
  $("login-intro").textContent = "This chat needs a token: paste yours. Your name comes with it.";
  $("name-input").placeholder = "Your name (optional with a token)";
}

/** Log in with `token` from the address: nothing to type. */
function loginWithToken(token) {
  showTokenField();
  $("token-input").value = token;
  $("login-form").requestSubmit();
}

/** The last name used here, to fill in (storage may be off: then nothing). */
function storedName(name = undefined) {
  try {
    if (name === undefined) return localStorage.getItem(NAME_STORE) ?? "";
    localStorage.setItem(NAME_STORE, name);
  } catch {
    /* private mode or storage disabled: the name is simply not remembered */
  }
  return name ?? "";
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name-input").value.trim();
  const token = $("token-input").hidden ? "" : $("token-input").value.trim();
  if (!name && !token) {
    showLoginError($("token-input").hidden ? "Type a name first." : "Paste your token first.");
    return;
  }
  if (token && !SUBPROTOCOL_SAFE.test(token)) {
    // It travels as a WebSocket subprotocol, which cannot hold such characters.
    const message = "That is not a token: a token has only letters, digits, . _ and -.";
    showLoginError(message, "token-input");
    $("token-input").focus();
    return;
  }
  showLoginError("");
  lastStop = null;
  $("login-button").disabled = true;
  $("login-button").textContent = "Joining…";
  if (canRenew(name, token)) chat.renew(token);
  else chat.login(name, startRoom(), token);
});

// After the submit handler: a submit without it would load /?token=... from the server.
const addressToken = takeUrlToken();
if (addressToken) {
  loginWithToken(addressToken); // the token names us: the stored name is not filled in
} else {
  $("name-input").value = storedName();
  $("name-input").focus();
}

window.addEventListener("hashchange", () => {
  const token = takeUrlToken();
  if (token && !$("login").hidden && !$("login-button").disabled) loginWithToken(token);
});

/** A new token for the name we had (the old one expired): go on where we were. */
function canRenew(name, token) {
  const renewed = token && chat.welcomed ? tokenName(token) : null;
  const same = (other) => nameKey(other) === nameKey(chat.name);
  return renewed !== null && same(renewed) && (!name || same(name));
}

/** Show `message` under the form, marking `field` (the name or the token) as the culprit. */
function showLoginError(message, field = "name-input") {
  $("name-error").textContent = message;
  $("name-error").hidden = !message;
  for (const id of ["name-input", "token-input"]) {
    $(id).setAttribute("aria-invalid", message && id === field ? "true" : "false");
  }
}

function backToLogin(message, field = "name-input") {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-button").disabled = false;
  $("login-button").textContent = "Join the chat";
  showLoginError(message, field);
  $(field).focus();
  $(field).select();
}

function loginFailed({ message, code }) {
  if (code !== "unauthorized") {
    backToLogin(capitalize(message));
    return;
  }
  showTokenField(); // the server wants a token, or a better one
  const refused = chat.token ? `The token was refused: ${message}` : capitalize(message);
  backToLogin(refused, "token-input");
}

// ------------------------------------------------------------------------- what changed

function changed(what, detail = {}) {
  switch (what) {
    case "status":
      return showStatus(detail.state);
    case "welcome":
      return enterChat();
    case "rewelcome":
      return $("app").hidden ? enterChat() : view.header(); // shown again after a renewal
    case "login-failed":
      return loginFailed(detail);
    case "stopped":
      return stopped(detail);
    case "dropped":
      return undefined; // the status turns to reconnecting, with its banner
    case "active":
      return view.all();
    case "rooms":
    case "unread":
    case "dms":
      return view.sidebar();
    case "members":
      return detail.room === view.activeRoom() && view.members();
    case "message":
      return view.append(detail.conversation, detail.entry);
    case "history":
      return detail.room === view.activeRoom() && view.log({ keepPosition: true });
    case "outbox":
      return view.pending();
    case "room-error":
      return showRoomError(capitalize(detail.message));
    case "error":
      return showBanner(capitalize(detail.message), null, 6000);
    default:
      return undefined;
  }
}

function enterChat() {
  storedName(chat.name);
  $("token-input").value = ""; // the chat keeps it (in memory) for reconnects
  $("login").hidden = true;
  $("app").hidden = false;
  view.all();
  $("message-input").focus();
}

function stopped({ code, error }) {
  lastStop = code;
  if (code === 1008 && error?.code === "name_taken") {
    const choose = ["Choose a name", () => backToLogin("")];
    showBanner(`The name ${chat.name} was taken while you were away.`, choose);
  } else if (code === 4000) {
    showBanner("This chat was opened in another window.", ["Use it here", reconnect]);
  } else {
    const why = error?.message ?? "the server closed the connection";
    showBanner(`Disconnected: ${why}.`, ["Reconnect", reconnect]);
  }
}

function reconnect() {
  lastStop = null;
  hideBanner();
  chat.reconnect();
}

// ------------------------------------------------------------------------- status and banner

function showStatus(state) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = STATUS_TEXT[state] ?? state;
  if (state === "connected") {
    hideBanner();
  } else if (state === "reconnecting" && !$("app").hidden) {
    showBanner("Connection lost. Reconnecting… Messages you send now go out once it is back.");
  } else if (state === "offline" && lastStop === null && !$("app").hidden) {
    showBanner("You are offline. The chat reconnects when the network is back.");
  }
}

let bannerTimer = null;

function showBanner(text, action = null, hideAfterMs = 0) {
  clearTimeout(bannerTimer);
  $("banner-text").textContent = text;
  const button = $("banner-action");
  button.hidden = !action;
  if (action) {
    button.textContent = action[0];
    button.onclick = action[1];
  }
  $("banner").hidden = false;
  if (hideAfterMs) bannerTimer = setTimeout(hideBanner, hideAfterMs);
}

function hideBanner() {
  $("banner").hidden = true;
}

// ------------------------------------------------------------------------- small things

function showRoomError(message) {
  $("room-error").textContent = message;
  $("room-error").hidden = !message;
}

function capitalize(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

// ------------------------------------------------------------------------- navigation

function openConversation(target, join = false) {
  if (join || target.kind === "room") chat.join(target.id);
  else chat.show(target);
  afterNavigation();
}

function afterNavigation() {
  closeDrawer();
  $("message-input").focus();
}

/** Alt+Up / Alt+Down: the previous or next conversation in the sidebar. */
function step(delta) {
  const all = [
    ...[...chat.rooms.keys()].map((id) => ({ kind: "room", id })),
    ...[...chat.dms.keys()].map((id) => ({ kind: "dm", id })),
  ];
  const at = all.findIndex((t) => t.kind === chat.active.kind && t.id === chat.active.id);
  const next = all[(at + delta + all.length) % all.length];
  if (next) openConversation(next);
}

$("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = $("room-input").value.trim().replace(/^#/, "");
  if (!ROOM_PATTERN.test(room)) {
    showRoomError("A room name is 1 to 64 letters, digits, _ or -.");
    return;
  }
  showRoomError("");
  $("room-input").value = "";
  openConversation({ kind: "room", id: room }, true);
});

$("load-older").addEventListener("click", () => {
  const room = chat.conversation();
  if (chat.active.kind === "room" && room) chat.loadOlder(room);
});

$("jump").addEventListener("click", () => {
  view.scrollToBottom();
  $("message-input").focus();
});

$("messages").addEventListener("scroll", () => {
  if (view.nearBottom()) $("jump").hidden = true;
});

// ------------------------------------------------------------------------- composer

setUpComposer({ send: (text) => chat.send(text), sent: () => view.scrollToBottom() });

document.addEventListener("keydown", (event) => {
  if ($("app").hidden) return;
  if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
    event.preventDefault();
    step(event.key === "ArrowUp" ? -1 : 1);
  } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "k") {
    event.preventDefault();
    openDrawer();
    $("room-input").focus();
  } else if (event.key === "Escape" && document.body.classList.contains("drawer-open")) {
    closeDrawer();
    $("menu-button").focus();
  }
});

// ------------------------------------------------------------------------- phone layout

function openDrawer() {
  document.body.classList.add("drawer-open");
  $("scrim").hidden = false;
  $("menu-button").setAttribute("aria-expanded", "true");
}

function closeDrawer() {
  document.body.classList.remove("drawer-open");
  $("scrim").hidden = true;
  $("menu-button").setAttribute("aria-expanded", "false");
}

$("menu-button").addEventListener("click", () => {
  if (document.body.classList.contains("drawer-open")) {
    closeDrawer();
  } else {
    openDrawer();
    $("sidebar").querySelector("button")?.focus();
  }
});
$("scrim").addEventListener("click", closeDrawer);

// ------------------------------------------------------------------------- housekeeping

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && chat.active && !$("app").hidden) {
    chat.show(chat.active); // what was unread while hidden is read now
  }
});

setInterval(() => chat.refreshRooms(), ROOMS_REFRESH_MS);
