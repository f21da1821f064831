// What the admin console shows: nodes, rooms, a user, recent moderation. Everything is
// built with DOM calls and textContent: nothing read from the API becomes markup.

const $ = (id) => document.getElementById(id);

/** `tag` with `className` and `text`. */
function el(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== "") node.textContent = text;
  return node;
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** "3 h 12 min", "45 s": how long ago epoch ms `since` was. */
export function age(since, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - since) / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function stat(list, label, value, meaning, testid = "") {
  const item = el("div", "stat");
  item.title = meaning;
  const shown = el("dd", "", value);
  if (testid) shown.dataset.testid = testid;
  item.append(el("dt", "", label), shown);
  list.append(item);
}

function rate(node, previous, now) {
  const before = previous.get(node.id);
  previous.set(node.id, { at: now, numbers: node.numbers });
  if (!before || now <= before.at) return "—";
  const per = (node.numbers.messages - before.numbers.messages) / ((now - before.at) / 1000);
  return per >= 0 ? per.toFixed(per < 10 ? 1 : 0) : "—";
}

/** The node cards, one per live node; `previous` keeps numbers for the rates. */
export function showNodes(nodes, previous) {
  const now = Date.now();
  const list = $("nodes");
  list.replaceChildren();
  for (const node of nodes) {
    const card = el("li", "node-card");
    card.dataset.node = node.id;
    const head = el("div", "node-head");
    const state = node.ready ? (node.why ? "degraded" : "ready") : "down";
    const pill = el("span", `pill ${state}`, node.ready ? (node.why ? "degraded" : "ready") : "not ready");
    pill.dataset.testid = "node-state";
    head.append(el("strong", "node-id", node.id), pill);
    card.append(head, el("div", "muted small address", node.address));
    if (node.why) card.append(el("p", "why small", node.why));
    const stats = el("dl", "stats");
    stat(stats, "Connected", String(node.connections), "open WebSocket connections",
      "node-connections");
    const rtt = node.probe_rtt === null ? "—" : `${(node.probe_rtt * 1000).toFixed(1)} ms`;
    stat(stats, "Probe RTT", rtt, "round trip of the last probe through its Redis subscription");
    stat(stats, "Up", age(node.started, now), "since the node started");
    stat(stats, "Messages/s", rate(node, previous, now),
      "messages its clients sent per second, since the last refresh");
    const numbers = node.numbers;
    stat(stats, "Errors", String(numbers.errors), "error answers sent to clients");
    stat(stats, "Slow cut", String(numbers.slow_consumers),
      "connections closed because their send queue overflowed");
    stat(stats, "Refused", String(numbers.handshakes_refused), "WebSocket handshakes refused");
    stat(stats, "Limited", String(numbers.rate_limited), "requests refused for a rate limit");
    card.append(stats);
    list.append(card);
  }
  const ready = nodes.filter((n) => n.ready).length;
  const connections = nodes.reduce((sum, n) => sum + n.connections, 0);
  $("nodes-summary").textContent =
    `${plural(nodes.length, "node")}, ${ready} ready · ${plural(connections, "connection")}`;
  for (const id of previous.keys()) {
    if (!nodes.some((n) => n.id === id)) previous.delete(id);
  }
}

/** The rooms table; a click on a room fills the room of every action. */
export function showRooms(answer) {
  const body = $("rooms");
  body.replaceChildren();
  for (const room of answer.rooms) {
    const row = el("tr");
    row.dataset.room = room.room;
    const name = el("button", "link-button room-link", `# ${room.room}`);
    name.type = "button";
    name.title = "Use this room in the actions";
    name.addEventListener("click", () => {
      for (const input of document.querySelectorAll(".action-form input[name=room]")) {
        input.value = room.room;
      }
    });
    const cell = el("td");
    cell.append(name);
    // The first sample has nothing to count from yet; under a minute, say how long.
    const messages = el("td", "num", room.seconds < 1 ? "—" : String(room.messages));
    messages.dataset.testid = "room-messages";
    if (room.seconds < 1) {
      messages.title = "counting from now";
    } else if (room.seconds < 55) {
      messages.append(el("span", "muted small", ` in ${Math.round(room.seconds)} s`));
    }
    row.append(cell, el("td", "num", String(room.members)), messages);
    body.append(row);
  }
  $("rooms-empty").hidden = answer.rooms.length > 0;
  const more = answer.total > answer.rooms.length ? ` (of ${answer.total})` : "";
  $("rooms-summary").textContent = `${plural(answer.rooms.length, "room")}${more}`;
}

/** What one audit entry says, in words. */
function said(entry) {
  const who = entry.actor === "operator" ? "operator" : entry.by;
  const minutes = entry.seconds ? Math.round(entry.seconds / 60) : 0;
  const span = minutes >= 60 ? `${Math.round(minutes / 60)} h` : `${minutes} min`;
  switch (entry.action) {
    case "ban": return `${who} banned ${entry.name} from ${entry.room} for ${span}`;
    case "kick": return `${who} removed ${entry.name} from ${entry.room}`;
    case "unban": return `${who} lifted ${entry.name}'s ban from ${entry.room}`;
    case "delete": return `${who} deleted message ${entry.offset} in ${entry.room}`;
    case "disconnect": return `${who} disconnected ${entry.name}`;
    default: return `${who}: ${entry.action}`;
  }
}

/** The recent moderation actions, newest first. */
export function showAudit(actions) {
  const list = $("audit");
  list.replaceChildren();
  for (const entry of actions) {
    const item = el("li", "audit-item");
    const time = el("time", "muted small", new Date(entry.ts).toLocaleTimeString([], { hour12: false }));
    time.dateTime = new Date(entry.ts).toISOString();
    const badge = el("span", `action ${entry.action}`, entry.action);
    const where = [entry.actor, `node ${entry.node}`];
    if (entry.peer) where.push(`from ${entry.peer}`);
    const text = el("div", "audit-text");
    text.append(el("span", "", said(entry)), el("span", "muted small", where.join(" · ")));
    item.append(time, badge, text);
    list.append(item);
  }
  $("audit-empty").hidden = actions.length > 0;
}

/** A user's whereabouts, from GET /api/users/{name}. */
export function showUser(found) {
  $("user-result").hidden = false;
  $("user-result").dataset.name = found.name;
  $("user-name").textContent = found.name;
  const state = $("user-state");
  state.textContent = found.online ? `online on ${plural(found.nodes.length, "node")}` : "offline";
  state.className = `pill ${found.online ? "ready" : "idle"}`;
  $("user-disconnect").disabled = !found.online;
  const connections = $("user-connections");
  connections.replaceChildren();
  for (const { connection, node } of found.connections) {
    const item = el("li");
    item.append(el("code", "", connection), el("span", "muted small", ` on ${node}`));
    connections.append(item);
  }
  if (!found.connections.length) connections.append(el("li", "muted small", "none"));
  const rooms = $("user-rooms");
  rooms.replaceChildren();
  for (const room of found.rooms) {
    const item = el("li", "", `# ${room}`);
    item.dataset.room = room;
    const ban = el("button", "link-button small", "ban…");
    ban.type = "button";
    ban.addEventListener("click", () => {
      const form = $("ban-form");
      form.elements.room.value = room;
      form.elements.name.value = found.name;
      form.elements.room.scrollIntoView({ block: "center" });
      form.elements.seconds.focus();
    });
    item.append(" ", ban);
    rooms.append(item);
  }
  if (!found.rooms.length) rooms.append(el("li", "muted small", "none"));
}
