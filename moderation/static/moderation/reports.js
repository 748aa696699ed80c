// The console's report queue: the room's reported comments with open
// reports, heaviest first (GET /rooms/{room}/reports), polled every few
// seconds; Hide, Dismiss and Sanction (a 10 min timeout in this room)
// resolve all of a comment's open reports with the reason typed above the
// table. Everything from the server is written with textContent.
import {Api, problem} from "./api.js";

const POLL_MS = 3000;
const FAILED_POLL_MS = 6000;
const ACTIONS = [
  ["Hide", "hide", {}],
  ["Dismiss", "dismiss", {}],
  ["Sanction", "sanction", {sanction: "timeout", seconds: 600}],
];

const $ = (id) => document.getElementById(id);
const section = $("reports");
const room = section.dataset.room;
const table = $("reports-table"), body = table.querySelector("tbody");
const empty = $("reports-empty"), count = $("reports-count"), outcome = $("reports-outcome");
const reasonBox = $("reports-reason");
const csrf = document.querySelector("input[name=csrfmiddlewaretoken]")
  || $("action-form").content.querySelector("input[name=csrfmiddlewaretoken]");
const api = new Api(csrf.value);
let timer = null;

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function show(entries) {
  body.replaceChildren();
  for (const entry of entries) {
    const row = body.insertRow();
    row.className = "report";
    row.dataset.id = String(entry.danmaku_id);
    cell(row, entry.weight.toFixed(2));
    cell(row, `${entry.reporters} (${entry.good_standing} in good standing)`);
    const text = cell(row, entry.text);
    if (entry.notes.length) {
      const notes = document.createElement("div");
      notes.className = "notes";
      notes.textContent = entry.notes.map((note) => `“${note}”`).join(" ");
      text.appendChild(notes);
    }
    cell(row, entry.username);
    cell(row, Object.entries(entry.reasons).map(([reason, n]) => `${reason} ×${n}`).join(", "));
    cell(row, entry.status);
    const actions = row.insertCell();
    for (const [label, action, extra] of ACTIONS) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      if (action !== "dismiss") button.className = "danger";
      button.addEventListener("click", () => resolve(entry, action, extra, row));
      actions.appendChild(button);
    }
  }
  table.hidden = entries.length === 0;
  empty.hidden = entries.length !== 0;
  count.textContent = entries.length ? `(${entries.length})` : "";
}

async function resolve(entry, action, extra, row) {
  const reason = reasonBox.value.trim();
  if (!reason) { outcome.textContent = "Give a reason first."; reasonBox.focus(); return; }
  for (const button of row.querySelectorAll("button")) button.disabled = true;
  try {
    const answer = await api.post(`/reports/${entry.danmaku_id}/resolve`, {action, reason, ...extra});
    outcome.textContent = answer.ok
      ? `${answer.data.resolved} report(s) of #${entry.danmaku_id}: ${action}`
      : problem(answer);
  } catch (error) {
    outcome.textContent = "could not reach the server";
  }
  poll();
}

async function poll() {
  clearTimeout(timer);
  let wait = POLL_MS;
  try {
    const answer = await api.get(`/rooms/${encodeURIComponent(room)}/reports?limit=50`);
    if (answer.ok) show(answer.data);
    else { outcome.textContent = problem(answer); wait = FAILED_POLL_MS; }
  } catch (error) {
    wait = FAILED_POLL_MS;
  }
  timer = setTimeout(poll, wait);
}

poll();
