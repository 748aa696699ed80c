// Viewers' reports on the live page. The overlay says which comments it put
// on screen (a "danmaku:shown" event on document, detail {id, text, nick,
// user}); the "Report a comment" button opens a dialog listing the latest
// of them (not the viewer's own), each with a Report button that files it
// with the reason picked above (POST .../danmaku/{id}/report). A native
// <dialog>: Esc closes it and focus goes back to the button. On load the
// page also shows what came of the viewer's earlier reports
// (GET /api/v1/reports/mine, each outcome told once).
// Everything from the server is written with textContent.

// Enough to find the comment that just flew past; older ones are gone from
// the viewer's mind as well as from the screen.
const RECENT_MAX = 20;
const OUTCOMES = {hidden: "taken down", dismissed: "left up (nothing wrong found)", sanctioned: "taken down, and its sender sanctioned"};

const root = document.getElementById("report");
if (root) {
  const slug = root.dataset.slug, me = Number(root.dataset.user) || null;
  const opener = document.getElementById("report-open");
  const dialog = document.getElementById("report-dialog");
  const form = document.getElementById("report-form");
  const reason = document.getElementById("report-reason");
  const textLabel = document.getElementById("report-text-label"), text = document.getElementById("report-text");
  const list = document.getElementById("report-list"), empty = document.getElementById("report-empty");
  const status = document.getElementById("report-status");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const recent = []; // newest first: {id, text, nick, user}
  const reported = new Set();

  document.addEventListener("danmaku:shown", (event) => {
    const comment = event.detail;
    if (!comment || comment.id == null || (me !== null && comment.user === me)) return;
    const at = recent.findIndex((c) => c.id === comment.id);
    if (at >= 0) recent.splice(at, 1);
    recent.unshift(comment);
    if (recent.length > RECENT_MAX) recent.length = RECENT_MAX;
  });

  const render = () => {
    list.replaceChildren();
    for (const comment of recent) {
      const item = document.createElement("li");
      if (comment.nick) {
        const nick = document.createElement("span");
        nick.className = "nick";
        nick.textContent = comment.nick;
        item.appendChild(nick);
      }
      item.appendChild(document.createTextNode(comment.text));
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.id = String(comment.id);
      button.textContent = reported.has(comment.id) ? "Reported" : "Report";
      button.disabled = reported.has(comment.id);
      // The accessible name says which comment; the visible label stays short.
      button.setAttribute("aria-label", `Report “${comment.text}”`);
      button.addEventListener("click", () => send(comment, button));
      item.appendChild(button);
      list.appendChild(item);
    }
    empty.hidden = recent.length > 0;
  };

  const send = async (comment, button) => {
    if (reason.value === "other" && !text.value.trim()) {
      status.textContent = "Say what is wrong (reason: something else).";
      text.focus();
      return;
    }
    button.disabled = true;
    status.textContent = "Sending…";
    try {
      const response = await fetch(`/api/v1/rooms/${encodeURIComponent(slug)}/danmaku/${comment.id}/report`, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf},
        body: JSON.stringify({reason: reason.value, text: reason.value === "other" ? text.value.trim() : ""}),
      });
      const body = await response.json().catch(() => null);
      if (response.ok) {
        reported.add(comment.id);
        button.textContent = "Reported";
        status.textContent = "Thank you: the moderators have your report.";
        return;
      }
      button.disabled = false;
      status.textContent = (body && body.detail) || `The report was not sent (${response.status}).`;
    } catch (error) {
      button.disabled = false;
      status.textContent = "The report was not sent: no connection.";
    }
  };

  reason.addEventListener("change", () => {
    textLabel.hidden = reason.value !== "other";
    if (!textLabel.hidden) text.focus();
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  opener.addEventListener("click", () => {
    render();
    status.textContent = "";
    dialog.showModal();
    reason.focus();
  });
  document.getElementById("report-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => opener.focus());

  // What came of earlier reports, once per outcome.
  const outcomes = document.getElementById("report-outcomes");
  document.getElementById("report-outcomes-close").addEventListener("click", () => { outcomes.hidden = true; });
  fetch("/api/v1/reports/mine", {credentials: "same-origin", headers: {Accept: "application/json"}})
    .then((response) => (response.ok ? response.json() : []))
    .then((told) => {
      if (!told.length) return;
      const items = outcomes.querySelector("ul");
      for (const outcome of told) {
        const item = document.createElement("li");
        item.textContent = `Your report of “${outcome.comment}”: ${OUTCOMES[outcome.outcome] || outcome.outcome}.`;
        items.appendChild(item);
      }
      outcomes.hidden = false;
    })
    .catch(() => {});
}
