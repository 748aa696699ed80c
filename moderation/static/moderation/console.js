// The live moderation console. Polls the moderation API (the room's recent
// comments, its held queue and its summary) and shows them in the feed and
// the summary panel; the poller backs off while requests fail and the
// connection line says so; the action form acts on one comment or user at a
// time. The room's slug and the feed size come from data-* on #feed, the
// CSRF token from the action form's template (no template-built JS).
import {ActionForm} from "./actionform.js";
import {Api, problem} from "./api.js";
import {Feed} from "./feed.js";
import {clock} from "./format.js";
import {Poller} from "./poller.js";
import {showSummary} from "./summary.js";

const $ = (id) => document.getElementById(id);
const table = $("feed");
const room = table.dataset.room, limit = table.dataset.limit;
const roomPath = "/rooms/" + encodeURIComponent(room);
const template = $("action-form");
const api = new Api(template.content.querySelector("input[name=csrfmiddlewaretoken]").value);
const conn = $("conn");

// Bumped by every successful action: a poll that started before it may
// carry the old state and must not paint over the action's answer.
let actionSeq = 0;

async function round() {
  const seq = actionSeq;
  const list = "?limit=" + encodeURIComponent(limit);
  const answers = await Promise.all([
    api.get(roomPath + "/recent" + list), api.get(roomPath + "/held" + list), api.get(roomPath + "/summary"),
  ]);
  const failed = answers.find((a) => !a.ok);
  if (failed) throw new Error(problem(failed));
  const [recent, held, summary] = answers.map((a) => a.data);
  // Held after recent: a comment in both is shown as the held queue has it.
  if (seq === actionSeq) feed.replace([...recent, ...held]);
  showSummary(summary);
}

function showState(state, detail) {
  conn.textContent = state === "live"
    ? `live · updated ${clock(Date.now())}`
    : `reconnecting… (${detail.why}; retry in ${Math.round(detail.wait / 1000)} s)`;
  conn.dataset.state = state;
}

const feed = new Feed(table, {
  filter: $("filter"), shown: $("shown"), empty: $("empty"), onAct: (id, act) => form.open(id, act),
});
const poller = new Poller(round, showState);
const form = new ActionForm(template, {
  feed, api, room, outcome: $("outcome"), onDone: () => { actionSeq++; poller.soon(); },
});
poller.start();
