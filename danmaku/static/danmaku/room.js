// The viewer page: the video (or an animated backdrop), the danmaku overlay
// fed by the pull loop, the viewer's controls and the send box. The room's
// slug and the viewer's user id come from data- attributes on #stage.
import {startBackdrop} from "./backdrop.js";
import {wireControls} from "./controls.js";
import {Overlay} from "./overlay.js";
import {Poller} from "./poller.js";
import {SendBox} from "./sendbox.js";

// An answer covers up to a poll interval of comments. They are replayed with
// their spacing squeezed into at most this long, so the newest of them is on
// screen soon after it arrives, while a burst still does not land at once.
const REPLAY_SPREAD_MS = 1000;

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
  const items = body.items, count = items.id.length;
  const first = count ? Math.min(...items.offset_ms) : 0, span = count ? Math.max(...items.offset_ms) - first : 0;
  const squeeze = span > REPLAY_SPREAD_MS ? REPLAY_SPREAD_MS / span : 1;
  for (let i = 0; i < count; i++) {
    const id = items.id[i];
    if (mine.has(id)) continue;
    if (me !== null && items.user[i] === me && overlay.claimEcho(items.text[i], id)) { mine.add(id); continue; }
    overlay.schedule({id, text: items.text[i], color: items.color[i], mode: items.mode[i], nick: items.nick[i]},
                     (items.offset_ms[i] - first) * squeeze);
  }
  for (const id of body.deleted) overlay.retract(id);
  const notes = [body.reason === "normal" ? "live" : body.reason];
  if (body.gap) notes.push("some comments were skipped while you were away");
  if (body.missed) notes.push(`${body.missed} not shown (busy room)`);
  if (overlay.dropped) notes.push(`${overlay.dropped} left out to keep the screen readable`);
  status.textContent = notes.join(" · ");
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
