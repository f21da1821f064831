// The page: the sidebar, the conversation, the banner, moderation, the keyboard (the name
// form is login.js).

import { Chat } from "./chat.js";
import { setUpComposer } from "./composer.js";
import { backToLogin, capitalize, loginFailed, setUpLogin, storedName } from "./login.js";
import { banText, outText, parseKick } from "./moderation.js";
import { ChatView } from "./render.js";
import { ROOM_PATTERN } from "./rooms.js";

const $ = (id) => document.getElementById(id);
const ROOMS_REFRESH_MS = 15000;
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

setUpLogin(chat, () => {
  lastStop = null;
});

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
      return loginFailed(detail, chat.token);
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
    case "entry":
      return view.replace(detail.conversation, detail.entry);
    case "out":
      return roomOut(detail.room);
    case "kicked":
      return kicked(detail);
    case "moderation":
      return view.all(); // a renewed token moderates other rooms
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
  } else if (code === 4001) {
    const why = "An operator disconnected you; the chat does not reconnect by itself.";
    showBanner(why, ["Reconnect", reconnect]);
  } else if (error?.code === "banned" && error.room) {
    showBanner(outText(error.room, { until: error.until }), ["Reconnect", reconnect]);
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

// ------------------------------------------------------------------------- moderation

/** This user is out of `room` (removed, or banned): said where it is not in view. */
function roomOut(room) {
  view.header();
  view.sidebar();
  if (room.out?.by && view.activeRoom() !== room.name) showBanner(outText(room.name, room.out));
}

$("rejoin-button").addEventListener("click", () => {
  const room = view.activeRoom();
  if (room !== null) chat.rejoin(room);
  $("message-input").focus();
});

function kicked({ room, name, seconds }) {
  showBanner(`You removed ${name} from #${room}${banText(seconds)}.`, null, 6000);
}

/** `/kick NAME [SECONDS]` in a room: true when `text` was that command (sent, or not). */
function kickCommand(text) {
  const kick = parseKick(text);
  if (kick === null) return false;
  const room = view.activeRoom();
  if (kick.error || room === null) {
    showBanner(kick.error ?? "/kick works in a room, not in direct messages.", null, 6000);
  } else {
    chat.moderation.kick(room, kick.name, kick.seconds); // the server says if it may not
  }
  return true;
}

// ------------------------------------------------------------------------- small things

function showRoomError(message) {
  $("room-error").textContent = message;
  $("room-error").hidden = !message;
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

setUpComposer({
  send: (text) => kickCommand(text) || chat.send(text),
  sent: () => view.scrollToBottom(),
});

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
