// The sidebar's lists, built as elements (render.js puts them in): the rooms this user
// is in (unread counts, removed or banned marks, a leave button), more rooms to join
// (the busiest first) and the direct conversations. Reads the Chat; a click goes to
// `chat.leave` or to the page's `actions.open`.

import { avatar, el, navButton } from "./view.js";

/** The rooms of `chat`, in the order joined. */
export function roomItems(chat, actions) {
  return [...chat.rooms.values()].map((room) => {
    const item = el("li", "nav-item");
    const current = chat.active.kind === "room" && chat.active.id === room.name;
    const extra = room.out ? "muted-button" : "";
    const badge = room.unread;
    const button = navButton({ label: room.name, prefix: "#", badge, current, extra });
    button.dataset.room = room.name;
    if (room.out) button.append(el("span", "count", room.out.by ? "removed" : "banned"));
    button.addEventListener("click", () => actions.open({ kind: "room", id: room.name }));
    item.append(button);
    if (chat.rooms.size > 1) {
      const leave = el("button", "leave-button", "×");
      leave.type = "button";
      leave.title = `Leave #${room.name}`;
      leave.setAttribute("aria-label", `Leave #${room.name}`);
      leave.addEventListener("click", () => chat.leave(room.name));
      item.append(leave);
    }
    return item;
  });
}

/** Rooms with people in them that `chat` is not in: at most 12, the busiest first. */
export function moreRoomItems(chat, actions) {
  return chat.otherRooms
    .filter((r) => !chat.rooms.has(r.room) && r.members > 0)
    .sort((a, b) => b.members - a.members || a.room.localeCompare(b.room))
    .slice(0, 12)
    .map((r) => {
      const item = el("li", "nav-item");
      const button = navButton({ label: r.room, prefix: "#", extra: "muted-button" });
      button.append(el("span", "count", `${r.members}`));
      button.title = `Join #${r.room} (${r.members} online)`;
      const target = { kind: "room", id: r.room };
      button.addEventListener("click", () => actions.open(target, true));
      item.append(button);
      return item;
    });
}

/** The direct conversations of `chat`, in the order opened. */
export function directItems(chat, actions) {
  return [...chat.dms.entries()].map(([key, conversation]) => {
    const item = el("li", "nav-item");
    const current = chat.active.kind === "dm" && chat.active.id === key;
    const button = navButton({ label: conversation.peer, badge: conversation.unread, current });
    button.dataset.peer = conversation.peer;
    button.prepend(avatar(conversation.peer, "small"));
    button.addEventListener("click", () => actions.open({ kind: "dm", id: key }));
    item.append(button);
    return item;
  });
}
