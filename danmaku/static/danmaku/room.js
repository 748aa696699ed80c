// The viewer page: the video (or an animated backdrop), the danmaku overlay
// fed by the pull loop, the viewer's controls and the send box. The room's
// slug and the viewer's user id come from data- attributes on #stage.
import {startBackdrop} from "./backdrop.js";
import {wireControls} from "./controls.js";
import {Overlay, displayText} from "./overlay.js";
import {Poller} from "./poller.js";
import {SendBox} from "./sendbox.js";

// An answer covers up to a poll interval of comments. They are replayed with
// their spacing squeezed into at most this long, so the newest of them is on
// screen soon after it arrives, while a burst still does not land at once.
const REPLAY_SPREAD_MS = 1000;
// A pin that comes back in an answer this soon after its local expiry was
// the same pin (clocks differ by a poll's round trip), not a new one.
const PIN_REPEAT_MS = 1000;

const stage = document.getElementById("stage");
const conn = document.getElementById("conn");
const status = document.getElementById("status");
const url = "/api/v1/rooms/" + encodeURIComponent(stage.dataset.slug) + "/danmaku";
const me = Number(stage.dataset.user) || null;
const overlay = new Overlay(stage);
const mine = new Set(); // ids of our own comments, already shown as local echo
const paused = document.getElementById("paused");

const backdrop = document.getElementById("backdrop");
if (backdrop) startBackdrop(backdrop);

function showAnswer(body) {
  const items = body.items, count = items.id.length, counts = items.count; // count: absent from older servers
  const first = count ? Math.min(...items.offset_ms) : 0, span = count ? Math.max(...items.offset_ms) - first : 0;
  const squeeze = span > REPLAY_SPREAD_MS ? REPLAY_SPREAD_MS / span : 1;
  for (const id of body.deleted) overlay.retract(id);
  // Unhidden by a moderator: shown again from this answer's items, even
  // where this page had taken it off (or sent it, and its echo is gone).
  for (const id of body.restored || []) { overlay.restore(id); mine.delete(id); }
  for (let i = 0; i < count; i++) {
    const id = items.id[i], n = counts ? counts[i] : 1;
    if (mine.has(id) || (me !== null && items.user[i] === me && overlay.claimEcho(items.text[i], id))) {
      mine.add(id);
      if (n > 1) overlay.setCount(id, n); // others sent the same right after ours
      continue;
    }
    overlay.schedule({id, text: items.text[i], color: items.color[i], mode: items.mode[i], nick: items.nick[i],
                      user: items.user[i], count: n},
                     (items.offset_ms[i] - first) * squeeze);
  }
  for (const [id, n] of Object.entries(body.counts || {})) overlay.setCount(Number(id), n);
  if (body.pinned !== undefined) showPin(body.pinned);
  const notes = [body.reason === "normal" ? "live" : body.reason];
  if (body.gap) notes.push("some comments were skipped while you were away");
  if (body.missed) notes.push(`${body.missed} not shown (busy room)`);
  if (overlay.dropped) notes.push(`${overlay.dropped} left out to keep the screen readable`);
  status.textContent = notes.join(" · ");
}

// The room's pinned notice, above the stream until it expires (timed here
// from the answer that carried it), is unpinned, or its comment is hidden.
const pin = document.getElementById("pin");
let pinKey = null, pinUntil = 0, pinTimer = 0, pinExpired = false;

function showPin(pinned) {
  clearTimeout(pinTimer);
  if (!pinned || pinned.expires_in_ms <= 0 || (pinned.id != null && overlay.retracted.has(pinned.id))) {
    hidePin();
    pinKey = null;
    return;
  }
  const key = JSON.stringify([pinned.id, pinned.nick, pinned.text]), until = performance.now() + pinned.expires_in_ms;
  // The same pin again right after it expired here is the server's clock
  // a little behind ours, not a new pin: it stays off.
  if (key === pinKey && pinExpired && until < pinUntil + PIN_REPEAT_MS) return;
  if (key !== pinKey || pinExpired) {
    pin.querySelector(".who").textContent = pinned.nick ? displayText(pinned.nick) : "Notice";
    pin.querySelector(".what").textContent = displayText(pinned.text);
    pin.classList.toggle("notice", !pinned.nick);
    pin.hidden = false;
  }
  pinKey = key;
  pinUntil = until;
  pinExpired = false;
  pinTimer = setTimeout(() => { pinExpired = true; hidePin(); }, pinned.expires_in_ms);
}

function hidePin() {
  pin.hidden = true;
}

function showState(state, detail) {
  conn.dataset.state = state;
  if (state === "live") conn.textContent = "live";
  else if (state === "gone") conn.textContent = detail;
  else conn.textContent = `reconnecting in ${Math.ceil(detail.wait / 1000)} s…`;
  if (state !== "live") status.textContent = "Lost the connection; comments resume when it is back.";
}

const poller = new Poller(url, {onAnswer: showAnswer, onState: showState, paused: () => paused.checked});
wireControls(overlay, poller);
const form = document.getElementById("send");
if (form) new SendBox(form, document.getElementById("sendstatus"), {url, overlay, mine});
poller.start();
