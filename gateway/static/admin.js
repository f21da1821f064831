// The admin console (/admin): the API key, typed once and kept in this tab's session
// storage, opens it; every few seconds it reads the cluster's nodes, rooms and recent
// moderation from the operator API (docs/protocol.md, "The operator API").

import { setUpActions } from "./admin_actions.js";
import { showAudit, showNodes, showRooms, showUser } from "./admin_views.js";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "chat-gateway.api-key";
const REFRESH_MS = 3000;

/** The operator API, with the key; a refused key locks the console again. */
class Api {
  constructor(onRefused) {
    this.key = sessionStorage.getItem(KEY_STORE) || "";
    this.onRefused = onRefused;
  }

  /** `{status, body}` of one request (body: the JSON answer, or null). */
  async call(method, path, body) {
    const headers = { Authorization: `Bearer ${this.key}` };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let answer = null;
    if ((response.headers.get("Content-Type") || "").startsWith("application/json")) {
      answer = await response.json();
    }
    if (response.status === 401 || response.status === 403) {
      this.onRefused(refusal(response.status));
    }
    return { status: response.status, body: answer };
  }

  /** The JSON of a GET; throws on anything but 200. */
  async read(path) {
    const { status, body } = await this.call("GET", path);
    if (status !== 200) throw new Error((body && body.error && body.error.message) || `HTTP ${status}`);
    return body;
  }
}

function refusal(status) {
  if (status === 403) return "The operator API is off on this node: start it with --api-key.";
  return "That key was refused: type the key the nodes were started with (--api-key).";
}

/** The console's state: which user is looked at, the refresh timer, the last numbers. */
class Console {
  constructor() {
    this.api = new Api((message) => this.lock(message));
    this.timer = null;
    this.user = "";
    this.previous = new Map(); // node id -> {at, numbers}: rates between two refreshes
    this.generation = 0; // a lock or a new key drops the answers of the old one
  }

  /** Show the key form (with `message`, when the key was refused). */
  lock(message = "") {
    this.generation += 1;
    clearTimeout(this.timer);
    this.api.key = "";
    sessionStorage.removeItem(KEY_STORE);
    $("console").hidden = true;
    $("key-screen").hidden = false;
    $("key-error").hidden = !message;
    $("key-error").textContent = message;
    $("key-input").value = "";
    $("key-input").setAttribute("aria-invalid", message ? "true" : "false");
    $("key-input").focus();
  }

  /** Try `key`: the console opens if the node takes it. */
  async open(key) {
    this.api.key = key;
    $("key-button").disabled = true;
    try {
      const { status } = await this.api.call("GET", "/api/nodes");
      if (status !== 200) return; // locked again, with the reason, by the refusal
      sessionStorage.setItem(KEY_STORE, key);
      $("key-screen").hidden = true;
      $("console").hidden = false;
      await this.refresh();
    } catch {
      this.lock("This node cannot be reached: try again.");
    } finally {
      $("key-button").disabled = false;
    }
  }

  /** Read everything once, show it, and plan the next refresh. */
  async refresh() {
    clearTimeout(this.timer);
    const generation = this.generation;
    try {
      const user = this.user ? this.api.read(`/api/users/${encodeURIComponent(this.user)}`) : null;
      const [nodes, rooms, audit, found] = await Promise.all([
        this.api.read("/api/nodes"),
        this.api.read("/api/activity"),
        this.api.read("/api/audit?limit=25"),
        user,
      ]);
      if (generation !== this.generation) return;
      showNodes(nodes.nodes, this.previous);
      showRooms(rooms);
      showAudit(audit.actions);
      if (found) showUser(found);
      $("updated").textContent = `Updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
      $("updated").classList.remove("stale");
    } catch (error) {
      if (generation !== this.generation) return;
      $("updated").textContent = `Not updated: ${error.message}; retrying`;
      $("updated").classList.add("stale");
    }
    this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  /** Look `name` up now, and with every refresh from now on. */
  async find(name) {
    this.user = name;
    await this.refresh();
  }
}

const admin = new Console();
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) {
    $("key-error").textContent = "Type the API key first.";
    $("key-error").hidden = false;
    return;
  }
  admin.open(key);
});
$("lock-button").addEventListener("click", () => admin.lock());
$("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("user-input").value.trim();
  if (name) admin.find(name);
});
setUpActions(admin);
if (admin.api.key) {
  admin.open(admin.api.key);
} else {
  admin.lock();
}
