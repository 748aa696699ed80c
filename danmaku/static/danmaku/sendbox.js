// The send box: local echo at once, then the server's answer in words.

const MODES = {scroll: 0, top: 1, bottom: 2};
const FIELD_NAMES = {text: "Comment", color: "Colour", mode: "Position", client_id: "Request", progress_ms: "Playback time"};

export class SendBox {
  // overlay: the Overlay; mine: ids of our comments the server accepted,
  // which the pull loop must not show a second time. Optional: extra(), more
  // fields for the request's body, read at each send (the replay page's
  // playback time); onSent(comment), told of each comment the server took
  // (201) with those fields; notFound, what a 404 means.
  constructor(form, status, {url, overlay, mine, extra = null, onSent = null, notFound = "This room does not exist."}) {
    this.form = form;
    this.status = status;
    this.url = url;
    this.overlay = overlay;
    this.mine = mine;
    this.extra = extra;
    this.onSent = onSent;
    this.notFound = notFound;
    this.button = form.querySelector("button");
    this.countdown = null;
    this.pending = null; // {text, clientId}: resending the same text reuses its key
    form.addEventListener("submit", (event) => { event.preventDefault(); this.send(); });
  }

  async send() {
    const data = new FormData(this.form);
    const text = String(data.get("text") || "").trim();
    if (!text || this.button.disabled) return;
    const color = String(data.get("color") || "#ffffff");
    const mode = String(data.get("mode") || "scroll");
    if (!this.pending || this.pending.text !== text) this.pending = {text, clientId: newClientId()};
    const {clientId} = this.pending;
    const extra = this.extra ? this.extra() : {};
    const comment = {id: null, text, color: parseInt(color.slice(1), 16), mode: MODES[mode] ?? 0};
    const echo = this.overlay.echo(comment);
    this.say("", "");
    let response, body;
    try {
      response = await fetch(this.url, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": String(data.get("csrfmiddlewaretoken"))},
        body: JSON.stringify({text, color, mode, client_id: clientId, ...extra}),
      });
      body = await response.json().catch(() => ({}));
    } catch (error) {
      this.overlay.withdraw(echo);
      this.say("error", "Could not reach the server; your comment was not sent. Press Send to try again.");
      return;
    }
    if (response.status === 201) {
      this.mine.add(body.id);
      if (echo) this.overlay.adopt(echo, body.id);
      if (this.onSent) this.onSent({...comment, ...extra, id: body.id, status: body.status});
      this.pending = null;
      this.form.elements.text.value = "";
      const held = body.status === "held" || body.status === "sender_only";
      this.say(held ? "wait" : "", held ? "Sent; others will see it once it passes moderation." : "");
      return;
    }
    if (response.status === 202) {
      // Accepted but not broadcast: the room's cap for this second was full.
      this.pending = null;
      this.form.elements.text.value = "";
      this.say("wait", "The room is very busy: your comment was shown only to you.");
      return;
    }
    this.overlay.withdraw(echo);
    this.explain(response, body);
  }

  explain(response, body) {
    const detail = String(body.detail || "");
    switch (response.status) {
      case 400: {
        const errors = body.errors || [];
        const words = errors.length
          ? errors.map((e) => `${FIELD_NAMES[e.field] || e.field} ${e.reason}.`).join(" ")
          : "The comment was refused: " + detail;
        this.say("error", words.replace(/^Comment contains blocked words\./, "Your comment contains blocked words."));
        return;
      }
      case 401:
        this.say("error", "Your session has ended: log in again to send.");
        return;
      case 403:
        if (detail === "banned") this.say("error", "You are banned from this room.");
        else if (detail.startsWith("timed out until ")) this.timedOut(new Date(detail.slice("timed out until ".length)));
        else if (detail === "room is closed") this.say("error", "This room is closed to new comments.");
        else this.say("error", "You cannot send here: " + detail);
        return;
      case 404:
        this.say("error", this.notFound);
        return;
      case 409:
        this.say("error", "You cannot send here: " + detail);
        return;
      case 429:
        this.wait(body.retry_after_ms || 1000, (s) => `Slow mode: you can send again in ${s} s.`);
        return;
      default:
        this.wait(body.retry_after_ms || 2000, (s) => `The server is busy; try again in ${s} s.`);
    }
  }

  timedOut(until) {
    const when = isNaN(until) ? "later" : until.toLocaleTimeString();
    this.wait(until - Date.now(), (s) => `You are timed out until ${when} (${s} s left).`, "error");
  }

  // Say `message(seconds left)` every second and keep Send off until then.
  wait(ms, message, kind = "wait") {
    clearInterval(this.countdown);
    const end = Date.now() + Math.max(0, ms);
    const tick = () => {
      const left = Math.ceil((end - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(this.countdown);
        this.button.disabled = false;
        this.say("", "");
        return;
      }
      this.button.disabled = true;
      this.say(kind, message(left));
    };
    tick();
    this.countdown = setInterval(tick, 250);
  }

  say(kind, text) {
    this.status.dataset.kind = kind;
    this.status.textContent = text;
  }
}

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}
