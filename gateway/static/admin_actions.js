// The console's actions, each through the operator API after a confirmation: ban or
// unban in a room, disconnect a user, delete a message, publish as the operator.

const $ = (id) => document.getElementById(id);
const seg = encodeURIComponent;

/** Ask in the page's own dialog (never window.confirm); true when confirmed. */
export function confirmed(text, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-ok").removeEventListener("click", ok);
      $("confirm-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancel);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const ok = () => done(true);
    const cancel = () => done(false);
    $("confirm-ok").addEventListener("click", ok);
    $("confirm-cancel").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancel); // Escape
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

function report(text, failed = false) {
  const line = $("action-result");
  line.textContent = text;
  line.classList.toggle("failed", failed);
  line.hidden = false;
}

function duration(seconds) {
  const option = [...$("ban-form").elements.seconds.options].find((o) => o.value === String(seconds));
  return option ? option.textContent : `${seconds} s`;
}

/** Wire each action form to `admin` (its `api`, and `refresh` after an action). */
export function setUpActions(admin) {
  async function act(question, button, method, path, body, expected, done) {
    if (!(await confirmed(question, button))) return;
    try {
      const { status, body: answer } = await admin.api.call(method, path, body);
      if (status === expected) {
        report(done(answer));
      } else if (status !== 401 && status !== 403) {
        report(answer && answer.error ? answer.error.message : `HTTP ${status}`, true);
      }
    } catch (error) {
      report(`Not done: ${error.message}`, true);
    }
    admin.refresh();
  }

  function fields(form) {
    const values = {};
    for (const input of form.querySelectorAll("input, select")) values[input.name] = input.value.trim();
    const missing = [...form.querySelectorAll("input[required]")].find((i) => !i.value.trim());
    if (missing) {
      report(`Fill in ${missing.closest("label").firstChild.textContent.trim().toLowerCase()} first.`, true);
      missing.focus();
      return null;
    }
    return values;
  }

  function disconnect(name) {
    return act(`Disconnect ${name}? Every connection of ${name}, on every node, closes.`,
      "Disconnect", "POST", `/api/users/${seg(name)}/disconnect`, undefined, 202,
      () => `Disconnected ${name} on every node.`);
  }

  $("ban-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const v = fields(event.target);
    if (!v) return;
    const path = `/api/rooms/${seg(v.room)}/bans/${seg(v.name)}`;
    if (event.submitter && event.submitter.value === "unban") {
      act(`Lift ${v.name}'s ban from ${v.room}?`, "Unban", "DELETE", path, undefined, 204,
        () => `${v.name} may join ${v.room} again.`);
    } else {
      const seconds = Number(v.seconds);
      act(`Ban ${v.name} from ${v.room} for ${duration(seconds)}? They leave it at once.`, "Ban",
        "PUT", path, { seconds }, 204, () => `Banned ${v.name} from ${v.room} for ${duration(seconds)}.`);
    }
  });
  $("disconnect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const v = fields(event.target);
    if (v) disconnect(v.name);
  });
  $("user-disconnect").addEventListener("click", () => {
    disconnect($("user-result").dataset.name);
  });
  $("delete-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const v = fields(event.target);
    if (!v) return;
    act(`Delete message ${v.offset} in ${v.room}? Its text is gone for good.`, "Delete", "DELETE",
      `/api/rooms/${seg(v.room)}/messages/${seg(v.offset)}`, undefined, 204,
      () => `Deleted ${v.offset} in ${v.room}.`);
  });
  $("publish-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const v = fields(event.target);
    if (!v) return;
    act(`Publish into ${v.room} as ${v.from}: “${v.text}”?`, "Publish", "POST",
      `/api/rooms/${seg(v.room)}/messages`, { from: v.from, text: v.text }, 201, (answer) => {
        event.target.elements.text.value = "";
        return `Published into ${v.room} at ${answer.offset}.`;
      });
  });
}
