// Building the page's elements. Everything that came over the wire is put in with
// textContent (or as a text node), never as HTML: a message is shown, never run.

const GROUP_WITHIN_MS = 5 * 60 * 1000; // same sender within this: one group, one header
// A long message is folded to a few lines (app.css: .text.folded) with "Show more".
// At most this long and with at most this many lines, a text fits: it is not measured.
const FOLD_FROM_CHARS = 160;
const FOLD_FROM_LINES = 4;
const unfolded = new WeakSet(); // the entries (or outbox items) the user unfolded
let textIds = 0;
const HUES = 8;
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
// What message text may not hold (gateway/controls.py): control characters but newline
// and tab, C1 ones included, and the line and paragraph separators. Only a message stored
// before they were refused can hold one; it is shown as U+FFFD, as text mode shows it.
const NOT_IN_TEXT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/g;

/** A new element with classes and (optional) text. */
export function el(tag, className = "", text = undefined) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** One of HUES colour classes, the same for a name everywhere. */
export function hueClass(name) {
  let hash = 0;
  for (const ch of name.normalize("NFC").toLowerCase()) {
    hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  }
  return `hue-${hash % HUES}`;
}

/** A round avatar with the name's first letter. */
export function avatar(name, extra = "") {
  const node = el("span", `avatar ${hueClass(name)} ${extra}`.trim(), initial(name));
  node.setAttribute("aria-hidden", "true");
  return node;
}

function initial(name) {
  const first = Array.from(name.trim())[0] ?? "?";
  return first.toLocaleUpperCase();
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });
const dayFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  month: "long",
  day: "numeric",
});

function timeElement(ts, label = undefined) {
  const date = new Date(ts);
  const node = el("time", "time", label ?? timeFormat.format(date));
  node.dateTime = date.toISOString();
  node.title = fullFormat.format(date);
  return node;
}

function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function dayLabel(ts) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(ts) === dayKey(today.getTime())) return "Today";
  if (dayKey(ts) === dayKey(yesterday.getTime())) return "Yesterday";
  return dayFormat.format(new Date(ts));
}

/** The text of a message as text nodes, with http(s) links made clickable. */
function messageText(raw) {
  const node = el("div", "text");
  const text = raw.replace(NOT_IN_TEXT, "\uFFFD");
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    node.append(document.createTextNode(text.slice(last, match.index)));
    const link = el("a", "", match[0]);
    link.href = match[0];
    link.rel = "noopener noreferrer nofollow";
    link.target = "_blank";
    node.append(link);
    last = match.index + match[0].length;
  }
  node.append(document.createTextNode(text.slice(last)));
  return node;
}

/**
 * The list items for `entry` after `previous` (a day divider first when the day
 * changed). `me` is the name key of this page's user; `nameKey` compares names;
 * `tools(entry)`, if given, makes a message's controls (or null: none).
 */
export function entryItems(entry, previous, me, nameKey, tools = undefined) {
  const items = [];
  if (!previous || dayKey(previous.ts) !== dayKey(entry.ts)) {
    const divider = el("li", "divider");
    divider.append(el("span", "", dayLabel(entry.ts)));
    items.push(divider);
  }
  if (entry.kind === "notice") {
    const notice = el("li", "notice");
    notice.append(el("span", "", entry.text));
    items.push(notice);
    return items;
  }
  const own = nameKey(entry.from) === me;
  const continued =
    previous?.kind === "message" &&
    nameKey(previous.from) === nameKey(entry.from) &&
    entry.ts - previous.ts < GROUP_WITHIN_MS &&
    dayKey(previous.ts) === dayKey(entry.ts);
  items.push(messageItem(entry, { own, continued, tools: tools?.(entry) }));
  return items;
}

/** True when `text` may take more lines than a folded message shows. */
function foldable(text) {
  return text.length > FOLD_FROM_CHARS || text.split("\n").length > FOLD_FROM_LINES;
}

/**
 * The text of a long message folded, and its "Show more" button (a real button: Tab
 * reaches it, Enter or Space opens it). The button stays hidden until `settleFolds`
 * has seen that the folded text is cut. `key` keeps it open across redraws.
 */
function foldedText(text, key) {
  const button = el("button", "link-button fold-button");
  button.type = "button";
  text.id = `text-${++textIds}`;
  text.classList.add("foldable");
  button.setAttribute("aria-controls", text.id);
  const show = (open) => {
    text.classList.toggle("folded", !open);
    button.textContent = open ? "Show less" : "Show more";
    button.setAttribute("aria-expanded", String(open));
  };
  show(unfolded.has(key));
  button.hidden = !unfolded.has(key);
  button.addEventListener("click", () => {
    const open = !unfolded.has(key);
    if (open) unfolded.add(key);
    else unfolded.delete(key);
    show(open);
  });
  return button;
}

/**
 * Show the "Show more" button of each folded text in `roots` (elements) that the fold
 * cuts; call it once they are in the page: it measures them. A text that is not laid
 * out (the page hidden) keeps its button: better one too many than none.
 */
export function settleFolds(...roots) {
  const all = roots.flatMap((root) => [...root.querySelectorAll(".fold-button")]);
  const buttons = all.filter((button) => button.hidden);
  const cut = buttons.map((button) => {
    const text = document.getElementById(button.getAttribute("aria-controls"));
    return text.clientHeight === 0 || text.scrollHeight > text.clientHeight + 1;
  }); // every measure first, then every change: one layout, not one per message
  buttons.forEach((button, i) => {
    button.hidden = !cut[i];
  });
}

/** Fold again what no longer overflows or now does (the width changed). */
export function refold(root) {
  for (const button of root.querySelectorAll(".fold-button[aria-expanded=false]")) {
    button.hidden = true;
  }
  settleFolds(root);
}

/** A message bubble: avatar, sender, text, time, then its `tools` (an element) if any.
 * `key` names it for folding (the entry by default; an outbox item for a pending one).
 * A deleted message shows who deleted it, never its text. */
export function messageItem(entry, options) {
  const { own, continued, state = "", error = "", key = entry, tools = null } = options;
  const item = el("li", "message");
  item.classList.toggle("own", own);
  item.classList.toggle("continued", continued);
  if (state) item.classList.add(state);
  item.dataset.from = entry.from;
  if (entry.offset) item.dataset.offset = entry.offset;
  if (!own) item.append(avatar(entry.from, continued ? "hidden-avatar" : ""));
  const bubble = el("div", "bubble");
  const sender = el("span", `sender ${hueClass(entry.from)}`, own ? "You" : entry.from);
  if (own || continued) sender.classList.add("sr-only"); // still read out, not shown
  if (entry.deletedBy !== undefined) {
    item.classList.add("deleted");
    bubble.append(sender, el("span", "tombstone", `Message deleted by ${entry.deletedBy}`));
  } else {
    const text = messageText(entry.text);
    bubble.append(sender, text);
    if (foldable(entry.text)) bubble.append(foldedText(text, key));
  }
  const label = state === "queued" || state === "sending" ? "Sending…" : undefined;
  bubble.append(timeElement(entry.ts, label));
  item.append(bubble);
  if (tools) item.append(tools);
  if (error) {
    const problem = el("div", "send-error");
    problem.append(el("span", "", `Not sent: ${error}`));
    item.append(problem);
  }
  return item;
}

/** A sidebar button with a label, an optional count badge and an optional prefix. */
export function navButton({ label, prefix = "", badge = 0, current = false, extra = "" }) {
  const button = el("button", `nav-button ${extra}`.trim());
  button.type = "button";
  if (current) button.setAttribute("aria-current", "true");
  if (prefix) {
    const mark = el("span", "prefix", prefix);
    mark.setAttribute("aria-hidden", "true");
    button.append(mark);
  }
  button.append(el("span", "label", label));
  if (badge) {
    const count = el("span", "badge", badge > 99 ? "99+" : String(badge));
    count.setAttribute("aria-label", `${badge} unread`);
    button.append(count);
  }
  return button;
}

/** Replace the children of `list` with `items`. */
export function fill(list, items) {
  list.replaceChildren(...items);
}
