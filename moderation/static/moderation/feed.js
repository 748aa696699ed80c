// The feed: one row per comment of the last poll (newest first) with the
// buttons its status offers, the open action form under the row it acts on,
// and the moderator's filter over text and username. Comments and usernames
// go in with textContent only, never as HTML.
import {ACTIONS, actionsFor} from "./actions.js";
import {clock} from "./format.js";

const COLUMNS = ["time", "user", "text", "status", "actions"];

export class Feed {
  // table: #feed; filter, shown, empty: the filter box, its count and the
  // "no comments" line; onAct(id, act) when an action button is clicked.
  constructor(table, {filter, shown, empty, onAct}) {
    this.tbody = table.tBodies[0];
    this.filterBox = filter;
    this.shownEl = shown;
    this.emptyEl = empty;
    this.comments = new Map(); // id -> the API's CommentOut
    this.rows = new Map(); // id -> its <tr>
    this.pending = null; // the open action form: {id, row}
    this.tbody.addEventListener("click", (ev) => {
      const button = ev.target.closest("tr.comment button[data-act]");
      if (!button) return;
      const id = Number(button.closest("tr").dataset.id), act = button.dataset.act, event = ACTIONS[act].event;
      if (event) table.dispatchEvent(new CustomEvent(event, {detail: {comment: this.comment(id), opener: button}}));
      else onAct(id, act);
    });
    filter.addEventListener("input", () => this.applyFilter());
  }

  comment(id) { return this.comments.get(id); }

  // A poll's comments replace the feed's; the comment being acted on stays
  // even if it just left the window.
  replace(list) {
    const fresh = new Map();
    for (const c of list) fresh.set(c.id, c);
    if (this.pending && !fresh.has(this.pending.id)) fresh.set(this.pending.id, this.comments.get(this.pending.id));
    this.comments.clear();
    for (const [id, c] of fresh) this.comments.set(id, c);
    this.render();
  }

  // An action's answer: the comment's new state, shown at the next render().
  put(c) { this.comments.set(c.id, c); }

  // Show `row` (the action form) under comment `id`'s row.
  attach(id, row) {
    this.pending = {id, row};
    this.render();
  }

  // Take the action form away (only if it is `row`, when given); render() after.
  detach(row) {
    if (!this.pending || (row && this.pending.row !== row)) return;
    this.pending.row.remove();
    this.pending = null;
  }

  render() {
    const pending = this.pending;
    const order = [...this.comments.values()].sort((a, b) => b.ts_ms - a.ts_ms || b.id - a.id);
    const wanted = [];
    for (const c of order) {
      let tr = this.rows.get(c.id);
      if (!tr) this.rows.set(c.id, (tr = makeRow(c)));
      updateRow(tr, c);
      wanted.push(tr);
      if (pending && pending.id === c.id) wanted.push(pending.row);
    }
    for (const [id, tr] of this.rows) if (!this.comments.has(id)) { tr.remove(); this.rows.delete(id); }
    // Move only what is out of place: rows (and a focused reason field) that
    // stay where they are keep their focus and selection.
    let at = this.tbody.firstChild;
    for (const node of wanted) {
      if (node === at) at = at.nextSibling;
      else this.tbody.insertBefore(node, at);
    }
    while (at) { const next = at.nextSibling; at.remove(); at = next; }
    this.emptyEl.hidden = this.comments.size > 0;
    this.applyFilter();
  }

  applyFilter() {
    const pending = this.pending;
    const needle = this.filterBox.value.trim().toLowerCase();
    let shown = 0;
    for (const [id, tr] of this.rows) {
      const c = this.comments.get(id);
      const match = !needle || c.text.toLowerCase().includes(needle) || c.username.toLowerCase().includes(needle);
      tr.hidden = !match;
      if (pending && pending.id === id) pending.row.hidden = !match;
      if (match) shown++;
    }
    this.shownEl.textContent = needle ? `${shown} of ${this.rows.size} shown` : `${this.rows.size} comments`;
  }
}

function makeRow(c) {
  const tr = document.createElement("tr");
  tr.className = "comment";
  tr.dataset.id = c.id;
  for (const name of COLUMNS) {
    const td = document.createElement("td");
    td.className = name;
    tr.appendChild(td);
  }
  tr.cells[0].textContent = clock(c.ts_ms);
  tr.cells[1].textContent = c.username;
  tr.cells[1].title = `user id ${c.user_id}`;
  tr.cells[2].textContent = c.text;
  return tr;
}

// Touched only when the status or time changed: a poll that brings nothing
// new leaves the row and its buttons alone.
function updateRow(tr, c) {
  if (tr.dataset.status === c.status && tr.dataset.ts === String(c.ts_ms)) return;
  tr.dataset.status = c.status;
  tr.dataset.ts = c.ts_ms;
  tr.cells[0].textContent = clock(c.ts_ms);
  const status = tr.cells[3];
  status.textContent = c.status.replace("_", " ");
  status.className = "status " + c.status;
  const actions = tr.cells[4];
  actions.replaceChildren();
  for (const act of actionsFor(c.status)) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.act = act;
    button.textContent = ACTIONS[act].label;
    if (ACTIONS[act].danger) button.className = "danger";
    actions.appendChild(button);
  }
}
