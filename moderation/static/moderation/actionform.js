// The inline action form, one at a time, under the row it acts on: it asks
// for the reason the audit log keeps (and a duration or scope where the
// action has them), sends the action, and says what was done in #outcome, or
// keeps the form open with the API's words for why not. The form itself is
// the page's <template id="action-form">, so no markup is built here.
import {ACTIONS} from "./actions.js";
import {problem} from "./api.js";

export class ActionForm {
  // feed: the Feed it opens under; api: the Api; room: the room's slug (an
  // action scoped to "this room"); outcome: where the result is said;
  // onDone() after every action the API accepted.
  constructor(template, {feed, api, room, outcome, onDone}) {
    this.template = template;
    this.feed = feed;
    this.api = api;
    this.room = room;
    this.outcome = outcome;
    this.onDone = onDone;
  }

  open(id, act) {
    const feed = this.feed;
    feed.detach();
    const c = feed.comment(id), spec = ACTIONS[act];
    const row = this.template.content.firstElementChild.cloneNode(true);
    row.dataset.id = id;
    row.dataset.act = act;
    const form = row.querySelector("form"), error = row.querySelector(".error"), confirm = row.querySelector(".confirm");
    row.querySelector(".what").textContent = spec.what(c);
    row.querySelector(".duration").hidden = !spec.duration;
    row.querySelector(".scope").hidden = !spec.scope;
    confirm.textContent = spec.label;
    if (spec.danger) confirm.classList.add("danger");
    const cancel = () => { feed.detach(); feed.render(); };
    row.querySelector(".cancel").addEventListener("click", cancel);
    form.addEventListener("keydown", (ev) => { if (ev.key === "Escape") cancel(); });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const reason = form.elements.reason.value.trim();
      if (!reason) { error.textContent = "a reason is required"; return; }
      const body = {reason};
      if (spec.duration) body.seconds = Number(form.elements.seconds.value);
      if (spec.scope) body.room = form.elements.scope.value === "room" ? this.room : null;
      confirm.disabled = true;
      error.textContent = "";
      let answer;
      try {
        answer = await this.api.post(spec.path(c), body);
      } catch (e) {
        error.textContent = "network error: nothing was done; try again";
        confirm.disabled = false;
        return;
      }
      if (!answer.ok) {
        error.textContent = problem(answer);
        confirm.disabled = false;
        return;
      }
      if (spec.comment) feed.put(answer.data);
      this.outcome.textContent = spec.done(c, answer.data);
      feed.detach(row); // unless another form has replaced it meanwhile
      feed.render();
      this.onDone();
    });
    feed.attach(id, row);
    form.elements.reason.focus();
  }
}
