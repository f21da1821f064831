// The name form: a name, or a token (pasted, or handed over in the address), and what
// the server said when it would not let us in.

import { SUBPROTOCOL_SAFE } from "./connection.js";
import { ROOM_PATTERN, nameKey } from "./rooms.js";

const $ = (id) => document.getElementById(id);
const NAME_STORE = "chat-gateway.name";

/**
 * Wire the name form for `chat`: a name or a token logs in (or a new token for the same
 * name goes on where the page was); a token in the address logs in at once.
 * `starting()` runs before each attempt.
 */
export function setUpLogin(chat, starting) {
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
    starting();
    $("login-button").disabled = true;
    $("login-button").textContent = "Joining…";
    if (canRenew(chat, name, token)) chat.renew(token);
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
}

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
export function storedName(name = undefined) {
  try {
    if (name === undefined) return localStorage.getItem(NAME_STORE) ?? "";
    localStorage.setItem(NAME_STORE, name);
  } catch {
    /* private mode or storage disabled: the name is simply not remembered */
  }
  return name ?? "";
}

/** A new token for the name we had (the old one expired): go on where we were. */
function canRenew(chat, name, token) {
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

/** Back to the form, showing `message` about `field`. */
export function backToLogin(message, field = "name-input") {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-button").disabled = false;
  $("login-button").textContent = "Join the chat";
  showLoginError(message, field);
  $(field).focus();
  $(field).select();
}

/** The server would not let us in (`token`: the one tried, if any). */
export function loginFailed({ message, code }, token) {
  if (code !== "unauthorized") {
    backToLogin(capitalize(message));
    return;
  }
  showTokenField(); // the server wants a token, or a better one
  const refused = token ? `The token was refused: ${message}` : capitalize(message);
  backToLogin(refused, "token-input");
}

/** `text` with its first letter upper-case (the server's messages start lower-case). */
export function capitalize(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}
