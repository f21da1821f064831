// Drawing the chat: the header, the sidebar (its lists of rooms and direct conversations
// come from sidebar.js; the members, with a moderator's controls, are drawn here), the
// conversation's log and its pending messages. Reads the Chat; changes nothing in it.

import { deleteControl, kickButton, kickForm } from "./controls.js";
import { outText } from "./moderation.js";
import { nameKey } from "./rooms.js";
import { directItems, moreRoomItems, roomItems } from "./sidebar.js";
import {
  avatar,
  el,
  entryItems,
  fill,
  messageItem,
  navButton,
  refold,
  settleFolds,
} from "./view.js";

const $ = (id) => document.getElementById(id);
const NEAR_BOTTOM_PX = 80; // this close to the end, a new message scrolls into view

export class ChatView {
  /**
   * @param {import("./chat.js").Chat} chat
   * @param {object} actions  what a click does: `open(target, join)`, `openDirect(name)`
   */
  constructor(chat, actions) {
    this.chat = chat;
    this.actions = actions;
    this.rendered = []; // the entries of the open conversation shown in #log, in order
    this.kicking = null; // the member whose remove form is open: {room, key, seconds}
    let resizing = false; // a new width may cut a folded message, or no longer
    window.addEventListener("resize", () => {
      if (resizing) return;
      resizing = true;
      requestAnimationFrame(() => {
        resizing = false;
        refold($("messages"));
      });
    });
  }

  activeRoom() {
    return this.chat.active?.kind === "room" ? this.chat.active.id : null;
  }

  all() {
    this.header();
    this.sidebar();
    this.members();
    this.log();
    this.pending();
    this.title();
  }

  header() {
    const me = $("me-avatar");
    me.replaceWith(Object.assign(avatar(this.chat.name), { id: "me-avatar" }));
    $("me-name").textContent = this.chat.name;
    $("me-node").textContent = this.chat.node ? `on node ${this.chat.node}` : "";
    const conversation = this.chat.conversation();
    if (!conversation) return;
    const input = $("message-input");
    if (this.chat.active.kind === "room") {
      $("conversation-title").textContent = `# ${conversation.name}`;
      const count = conversation.members.length;
      const moderator = this.chat.moderation.can(conversation.name) ? " · you moderate it" : "";
      $("conversation-info").textContent = conversation.out
        ? "You are not in this room"
        : `${count} ${count === 1 ? "member" : "members"} online${moderator}`;
      input.placeholder = `Message #${conversation.name}`;
    } else {
      $("conversation-title").textContent = `@ ${conversation.peer}`;
      $("conversation-info").textContent =
        "Direct messages reach them while they are online; they are not kept.";
      input.placeholder = `Message ${conversation.peer}`;
    }
    this.roomState(conversation);
  }

  /** Out of the open room: why (instead of the composer), and a way back in. */
  roomState(conversation) {
    const out = this.chat.active.kind === "room" ? conversation.out : null;
    $("room-state").hidden = !out;
    $("composer").hidden = Boolean(out);
    if (out) $("room-state-text").textContent = outText(conversation.name, out);
  }

  sidebar() {
    fill($("rooms"), roomItems(this.chat, this.actions));
    const more = moreRoomItems(this.chat, this.actions);
    fill($("more-rooms"), more);
    $("more-rooms-section").hidden = more.length === 0;
    const dms = directItems(this.chat, this.actions);
    fill($("dms"), dms);
    $("dms-section").hidden = dms.length === 0;
    this.title();
  }

  /** The members of the open room (of the first room while a direct conversation is open). */
  members() {
    const rooms = this.chat.rooms;
    const room = rooms.get(this.activeRoom() ?? "") ?? rooms.values().next().value;
    if (!room) return;
    $("members-heading").textContent = `In #${room.name} · ${room.members.length}`;
    const me = nameKey(this.chat.name);
    const moderator = this.chat.moderation.can(room.name);
    const members = room.members.map((name) => {
      const item = el("li", "nav-item");
      const self = nameKey(name) === me;
      const button = navButton({ label: self ? `${name} (you)` : name });
      button.prepend(avatar(name, "small"));
      button.dataset.name = name;
      if (self) {
        button.disabled = true;
      } else {
        button.title = `Send ${name} a direct message`;
        button.addEventListener("click", () => this.actions.openDirect(name));
      }
      item.append(button);
      if (moderator && !self) this.#kickControls(item, name, room.name);
      return item;
    });
    fill($("members"), members);
    if (this.chat.active.kind === "room") this.header();
  }

  /** A moderator's remove button on the member `name` of `room`, and its form if open. */
  #kickControls(item, name, room) {
    const key = nameKey(name);
    const open = this.kicking?.room === room && this.kicking.key === key;
    const redraw = (kicking) => {
      this.kicking = kicking;
      this.members();
      const again = [...$("members").querySelectorAll(".nav-button")].find(
        (b) => b.dataset.name === name,
      )?.parentElement;
      again?.querySelector(kicking ? ".ban-select" : ".kick-button")?.focus();
    };
    item.append(kickButton(name, room, () => redraw(open ? null : { room, key, seconds: 0 })));
    if (!open) return;
    item.classList.add("kicking");
    const form = kickForm(name, room, {
      seconds: this.kicking.seconds,
      choose: (seconds) => Object.assign(this.kicking, { seconds }),
      remove: (seconds) => {
        redraw(null);
        this.chat.moderation.kick(room, name, seconds);
      },
      cancel: () => redraw(null),
    });
    item.append(form);
  }

  /** The controls of a message in the open room: a moderator may delete it. */
  #tools() {
    const room = this.activeRoom();
    if (room === null || !this.chat.moderation.can(room)) return undefined;
    const confirmed = (entry) => this.chat.moderation.deleteMessage(room, entry.offset);
    return (entry) => (entry.offset && !entry.deletedBy ? deleteControl(entry, confirmed) : null);
  }

  /** `entry` of `conversation` changed (it was deleted): drawn again in its place. */
  replace(conversation, entry) {
    if (conversation !== this.chat.conversation() || !entry.offset) return;
    const selector = `.message[data-offset="${CSS.escape(entry.offset)}"]`;
    const old = $("log").querySelector(selector);
    if (!old) return;
    const own = old.classList.contains("own");
    const continued = old.classList.contains("continued");
    const item = messageItem(entry, { own, continued, tools: this.#tools()?.(entry) });
    old.replaceWith(item);
    settleFolds(item);
  }

  /** The open conversation's log, redrawn; `keepPosition` keeps the view (older added above). */
  log({ keepPosition = false } = {}) {
    const box = $("messages");
    const fromBottom = box.scrollHeight - box.scrollTop;
    const conversation = this.chat.conversation();
    const entries = conversation ? conversation.messages : [];
    const me = nameKey(this.chat.name);
    const items = [];
    const tools = this.#tools();
    entries.forEach((entry, i) => {
      items.push(...entryItems(entry, entries[i - 1], me, nameKey, tools));
    });
    fill($("log"), items);
    settleFolds($("log"));
    this.rendered = [...entries];
    $("load-older").hidden = !(this.chat.active.kind === "room" && conversation?.moreHistory);
    if (keepPosition) box.scrollTop = box.scrollHeight - fromBottom;
    else this.scrollToBottom();
  }

  /** A new entry of `conversation`: added to the log if open, else counted in the sidebar. */
  append(conversation, entry) {
    if (conversation !== this.chat.conversation()) return this.sidebar();
    const nearBottom = this.nearBottom();
    const previous = this.rendered.at(-1);
    const items = entryItems(entry, previous, nameKey(this.chat.name), nameKey, this.#tools());
    $("log").append(...items);
    settleFolds(...items);
    this.rendered.push(entry);
    if (this.rendered.length > 2 * conversation.messages.length) this.log(); // drop the oldest
    const own = entry.kind === "message" && nameKey(entry.from) === nameKey(this.chat.name);
    if (nearBottom || own) this.scrollToBottom();
    else $("jump").hidden = false;
    return undefined;
  }

  /** The outbox's messages for the open conversation, below the log. */
  pending() {
    const target = this.chat.active;
    if (!target) return;
    const peer = target.kind === "dm" ? this.chat.dms.get(target.id)?.peer : null;
    const items = this.chat.outbox.items
      .filter((item) => (target.kind === "room" ? item.room === target.id : item.to === peer))
      .map((item) => {
        const entry = { from: this.chat.name, text: item.text, ts: item.ts };
        const { state, error } = item;
        const li = messageItem(entry, { own: true, continued: false, state, error, key: item });
        if (state === "failed") {
          const actions = el("div", "send-actions");
          const outbox = this.chat.outbox;
          const choices = [
            ["Retry", () => outbox.retry(item)],
            ["Discard", () => outbox.discard(item)],
          ];
          for (const [label, act] of choices) {
            const button = el("button", "link-button", label);
            button.type = "button";
            button.addEventListener("click", act);
            actions.append(button);
          }
          li.append(actions);
        }
        return li;
      });
    const nearBottom = this.nearBottom();
    fill($("pending"), items);
    settleFolds($("pending"));
    if (nearBottom) this.scrollToBottom();
  }

  /** True when the log is scrolled to (nearly) its end. */
  nearBottom() {
    const box = $("messages");
    return box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
    $("jump").hidden = true;
  }

  title() {
    let unread = 0;
    for (const c of [...this.chat.rooms.values(), ...this.chat.dms.values()]) unread += c.unread;
    const where = $("conversation-title").textContent;
    document.title = `${unread ? `(${unread}) ` : ""}${where ? `${where} · ` : ""}chat-gateway`;
  }
}
