// The pinned-notice panel: what the room has pinned and for how much longer,
// and the one form that pins a comment (the feed's "Pin" buttons announce a
// "pin-comment" event on #feed), writes a notice, or unpins. The API checks
// everything (bounds, filters, roles); its words are shown when it refuses.
// Texts go in with textContent only, never as HTML.
import {Api, problem} from "./api.js";

const $ = (id) => document.getElementById(id);
const panel = $("pin");
const path = "/rooms/" + encodeURIComponent(panel.dataset.room) + "/pin";
const api = new Api($("action-form").content.querySelector("input[name=csrfmiddlewaretoken]").value);
const now = $("pin-now"), clearButton = $("pin-clear"), writeButton = $("pin-write");
const form = $("pin-form"), what = form.querySelector(".what"), error = form.querySelector(".error");
const confirm = form.querySelector(".confirm"), outcome = $("pin-outcome");

// Pins change rarely and the countdown runs locally: a slow poll is enough
// to notice another moderator's pin or a hide that unpinned.
const POLL_MS = 5000;

let pin = null; // the API's pin, or null
let deadline = 0; // performance.now() at which it expires here
let mode = null; // the open form's: {kind: "comment"|"notice"|"unpin", comment?, opener}

function left(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m}:${String(s % 60).padStart(2, "0")}`;
}

function show() {
  const remaining = pin ? deadline - performance.now() : 0;
  if (!pin || remaining <= 0) {
    now.textContent = "Nothing pinned.";
    clearButton.hidden = true;
    panel.classList.remove("active");
    return;
  }
  const who = pin.id === null ? "notice" : `comment #${pin.id} by ${pin.nick}`;
  now.textContent = `“${pin.text}” (${who}) · ${left(remaining)} left`;
  clearButton.hidden = false;
  panel.classList.add("active");
}

function take(answer) {
  pin = answer;
  deadline = answer ? performance.now() + answer.expires_in_ms : 0;
  show();
}

async function refresh() {
  try {
    const answer = await api.get(path);
    if (answer.ok) take(answer.data);
  } catch (e) {
    // The feed's connection line already says the API is unreachable.
  }
}

function open(kind, opener, comment) {
  mode = {kind, opener, comment};
  form.hidden = false;
  form.dataset.kind = kind;
  error.textContent = "";
  form.elements.text.value = "";
  form.elements.reason.value = "";
  form.querySelector(".text").hidden = kind !== "notice";
  form.querySelector(".duration").hidden = kind === "unpin";
  form.elements.reason.required = kind === "unpin";
  confirm.textContent = kind === "unpin" ? "Unpin" : "Pin";
  confirm.classList.toggle("danger", kind === "unpin");
  confirm.disabled = false;
  what.textContent = {
    comment: comment && `Pin comment #${comment.id} by ${comment.username}: “${comment.text}”`,
    notice: "Pin a notice (checked by the filters like any comment)",
    unpin: "Take the pinned notice down",
  }[kind];
  (kind === "notice" ? form.elements.text : kind === "unpin" ? form.elements.reason : form.elements.duration_s).focus();
}

function close() {
  const opener = mode && mode.opener;
  mode = null;
  form.hidden = true;
  if (opener && opener.isConnected) opener.focus();
}

async function submit() {
  const reason = form.elements.reason.value.trim();
  let answer;
  if (mode.kind === "unpin") {
    if (!reason) { error.textContent = "a reason is required"; return; }
    answer = () => api.call("DELETE", path + "?reason=" + encodeURIComponent(reason));
  } else {
    const body = {duration_s: Number(form.elements.duration_s.value), reason};
    if (mode.kind === "comment") body.danmaku_id = mode.comment.id;
    else body.text = form.elements.text.value;
    answer = () => api.call("PUT", path, body);
  }
  confirm.disabled = true;
  error.textContent = "";
  let result;
  try {
    result = await answer();
  } catch (e) {
    error.textContent = "network error: nothing was done; try again";
    confirm.disabled = false;
    return;
  }
  if (!result.ok) {
    error.textContent = problem(result);
    confirm.disabled = false;
    return;
  }
  const kind = mode.kind;
  take(kind === "unpin" ? null : result.data);
  outcome.textContent = kind === "unpin" ? "Unpinned." : `Pinned for ${left(result.data.expires_in_ms)}.`;
  close();
}

form.addEventListener("submit", (ev) => { ev.preventDefault(); if (mode) submit(); });
form.querySelector(".cancel").addEventListener("click", close);
form.addEventListener("keydown", (ev) => { if (ev.key === "Escape") close(); });
writeButton.addEventListener("click", () => open("notice", writeButton));
clearButton.addEventListener("click", () => open("unpin", clearButton));
$("feed").addEventListener("pin-comment", (ev) => open("comment", ev.detail.opener, ev.detail.comment));

setInterval(show, 1000);
setInterval(refresh, POLL_MS);
refresh();
