// The message box: Enter sends, Shift+Enter is a new line. Nothing typed or pasted is
// ever cut: as the text nears the length limit a count shows, and past it the count
// says how much is too much and the message is not sent until it fits.

// The server's limit (docs/protocol.md, section 7: 4000 by default), counted as it
// counts: in characters (code points), so an emoji is one, not two UTF-16 units. A
// node configured with a lower limit refuses with its own `too_long`, which the
// outbox shows on the message.
export const MAX_MESSAGE_CHARS = 4000;
const COUNT_FROM = 3600; // the count shows from here on

const $ = (id) => document.getElementById(id);

/** The length of `text` as the server counts it. */
export function charCount(text) {
  let count = 0;
  for (const _ of text) count += 1; // by code point
  return count;
}

function countText(count, over) {
  const shown = `${count} / ${MAX_MESSAGE_CHARS}`;
  if (over <= 0) return shown;
  const unit = over === 1 ? "character" : "characters";
  return `${shown}: ${over} ${unit} too many. Shorten it to send.`;
}

/** Wire the composer: `send(text)` gets each message that fits; `sent()` runs after. */
export function setUpComposer({ send, sent }) {
  const input = $("message-input");
  const counter = $("char-count");
  const button = $("send-button");

  function update() {
    const count = charCount(input.value);
    const over = count - MAX_MESSAGE_CHARS;
    counter.hidden = count < COUNT_FROM;
    counter.classList.toggle("over", over > 0);
    counter.textContent = counter.hidden ? "" : countText(count, over);
    input.setAttribute("aria-invalid", over > 0 ? "true" : "false");
    button.setAttribute("aria-disabled", over > 0 ? "true" : "false");
    return over <= 0;
  }

  function sendTyped() {
    const text = input.value;
    if (!text.trim() || !update()) return; // too long: kept, and the count says why
    send(text);
    input.value = "";
    update();
    sent();
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendTyped();
    input.focus();
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault(); // Enter sends; Shift+Enter is a new line
      sendTyped();
    }
  });

  input.addEventListener("input", update);
}
