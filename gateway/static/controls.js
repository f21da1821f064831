// A moderator's controls, built as elements (view.js builds the rest): a delete button
// on a message, asking once more before it goes, and a remove button on a member, with
// how long a ban lasts. Real buttons with labels: Tab reaches them, Escape backs out.

import { BAN_CHOICES } from "./moderation.js";
import { el } from "./view.js";

const SVG = "http://www.w3.org/2000/svg";
const TRASH = "M9 3h6l1 2h4v2H4V5h4zM6 9h12l-1 12H7zm4 2v8h1.5v-8zm2.5 0v8H14v-8z";
const REMOVE = "M10 4a4 4 0 1 1 0 8 4 4 0 0 1 0-8zM2 20c0-3.3 3.6-6 8-6s8 2.7 8 6zm14-11h6v2h-6z";

/** A button showing only an icon (`path`), named by `label` for screen readers. */
function iconButton(className, label, path) {
  const button = el("button", `icon-control ${className}`);
  button.type = "button";
  button.title = label;
  button.setAttribute("aria-label", label);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const shape = document.createElementNS(SVG, "path");
  shape.setAttribute("d", path);
  svg.append(shape);
  button.append(svg);
  return button;
}

function textButton(className, text) {
  const button = el("button", className, text);
  button.type = "button";
  return button;
}

/**
 * The delete control of a message (`entry`): a button, then "Delete for everyone?" with
 * Delete and Cancel. `confirmed(entry)` asks the server; false when it could not go (the
 * control comes back). Once asked it waits ("Deleting…") for the page to be redrawn.
 */
export function deleteControl(entry, confirmed) {
  const tools = el("div", "message-tools");
  const start = iconButton("delete-button", `Delete message from ${entry.from}`, TRASH);
  const back = () => {
    tools.replaceChildren(start);
    start.focus();
  };
  start.addEventListener("click", () => {
    const ask = el("div", "confirm");
    ask.setAttribute("role", "group");
    ask.setAttribute("aria-label", `Delete the message from ${entry.from}`);
    const yes = textButton("confirm-delete", "Delete");
    const no = textButton("link-button", "Cancel");
    ask.append(el("span", "", "Delete for everyone?"), yes, no);
    no.addEventListener("click", back);
    ask.addEventListener("keydown", (event) => {
      if (event.key === "Escape") back();
    });
    yes.addEventListener("click", () => {
      yes.disabled = true;
      no.disabled = true;
      yes.textContent = "Deleting…";
      if (!confirmed(entry)) back();
    });
    tools.replaceChildren(ask);
    yes.focus();
  });
  tools.append(start);
  return tools;
}

/** The remove button of `name`, a member of `room`; `open()` shows its form. */
export function kickButton(name, room, open) {
  const button = iconButton("kick-button", `Remove ${name} from #${room}`, REMOVE);
  button.addEventListener("click", open);
  return button;
}

/**
 * The form to remove `name` from `room`: how long a ban lasts (`seconds`, kept across
 * redraws through `choose(seconds)`), Remove and Cancel (or Escape).
 */
export function kickForm(name, room, { seconds, choose, remove, cancel }) {
  const form = el("form", "kick-form");
  form.setAttribute("aria-label", `Remove ${name} from #${room}`);
  const select = el("select", "ban-select");
  select.setAttribute("aria-label", `Ban ${name} from #${room}`);
  for (const [label, value] of BAN_CHOICES) {
    const option = el("option", "", label);
    option.value = String(value);
    option.selected = value === seconds;
    select.append(option);
  }
  select.addEventListener("change", () => choose(Number(select.value)));
  const submit = el("button", "confirm-delete", "Remove");
  submit.type = "submit";
  const no = textButton("link-button", "Cancel");
  no.addEventListener("click", cancel);
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") cancel();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    remove(Number(select.value));
  });
  form.append(select, submit, no);
  return form;
}
