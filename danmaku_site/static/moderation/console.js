// The live moderation console. Polls the moderation API (the room's recent
// comments, its held queue and its summary) every POLL_MS, backs off while
// requests fail and says so, and acts on one comment or user at a time through
// an inline form that asks for the reason the audit log keeps.
// Comments and usernames are rendered with textContent only, never as HTML.
// The room's slug and the feed size come from data-* on #feed (no template-built JS).
(() => {
  "use strict";
  // As lively as the viewer's screen; a handful of moderators cost nothing.
  const POLL_MS = 2000;
  // A long outage still gets a retry twice a minute.
  const MAX_BACKOFF_MS = 30000;
  const API = "/api/v1/moderation";

  const feed = document.getElementById("feed"), tbody = feed.tBodies[0];
  const room = feed.dataset.room, limit = feed.dataset.limit;
  const roomPath = "/rooms/" + encodeURIComponent(room);
  const template = document.getElementById("action-form");
  const csrf = template.content.querySelector("input[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  const conn = $("conn"), filterBox = $("filter"), shownEl = $("shown"), outcomeEl = $("outcome"), emptyEl = $("empty");

  const comments = new Map(); // id -> the API's CommentOut
  const rows = new Map(); // id -> its <tr>
  let pending = null; // the open action form: {id, act, row}
  let failures = 0, timer = null, inFlight = false;
  // Bumped by every successful action: a poll that started before it may
  // carry the old state and must not paint over the action's answer.
  let actionSeq = 0;

  const ACTIONS = {
    hide: {label: "Hide", what: (c) => `Hide comment #${c.id} by ${c.username}`, path: (c) => `/danmaku/${c.id}/hide`,
      done: (c) => `Hidden #${c.id} by ${c.username}.`, comment: true},
    unhide: {label: "Unhide", what: (c) => `Unhide comment #${c.id} by ${c.username}`,
      path: (c) => `/danmaku/${c.id}/unhide`, done: (c) => `Unhidden #${c.id}.`, comment: true},
    approve: {label: "Approve", what: (c) => `Approve held comment #${c.id} by ${c.username}`,
      path: (c) => `/held/${c.id}/approve`, done: (c) => `Approved #${c.id}: it is on screens now.`, comment: true},
    reject: {label: "Reject", what: (c) => `Reject held comment #${c.id} by ${c.username}`,
      path: (c) => `/held/${c.id}/reject`, done: (c) => `Rejected #${c.id}.`, comment: true},
    timeout: {label: "Time out", what: (c) => `Time out ${c.username}`, path: (c) => `/users/${c.user_id}/timeout`,
      done: (c, s) => `${c.username} timed out ${s.room ? "in this room" : "everywhere"} until ${clock(Date.parse(s.until))}.`,
      duration: true, scope: true, danger: true},
    ban: {label: "Ban", what: (c) => `Ban ${c.username}`, path: (c) => `/users/${c.user_id}/ban`,
      done: (c, s) => `${c.username} banned ${s.room ? "from this room" : "everywhere"}.`, scope: true, danger: true},
  };
  const BY_STATUS = {
    published: ["hide"], sender_only: ["hide"], held: ["approve", "reject"], hidden: ["unhide"],
  };

  function clock(ms) {
    const d = new Date(ms), pad = (n) => String(n).padStart(2, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function duration(ms) {
    if (ms === 0) return "off";
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${ms / 1000} s`;
    if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
    return `${Math.round(ms / 3600000)} h`;
  }

  // "the last minute", "the last hour", else "the last 90 s".
  function span(seconds) {
    return {60: "minute", 3600: "hour", 86400: "day"}[seconds] || duration(seconds * 1000);
  }

  async function call(method, path, body) {
    const init = {method, credentials: "same-origin", headers: {Accept: "application/json"}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRFToken"] = csrf;
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    const data = await response.json().catch(() => null);
    return {ok: response.ok, status: response.status, data};
  }

  // The API's own words for a failure (every error body has "detail").
  function problem(answer) {
    const detail = answer.data && answer.data.detail;
    return detail ? `${detail} (${answer.status})` : `request failed (${answer.status})`;
  }

  // -- the feed ----------------------------------------------------------------

  function makeRow(c) {
    const tr = document.createElement("tr");
    tr.className = "comment";
    tr.dataset.id = c.id;
    for (const name of ["time", "user", "text", "status", "actions"]) {
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
    for (const act of [...(BY_STATUS[c.status] || []), "timeout", "ban"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.act = act;
      button.textContent = ACTIONS[act].label;
      if (ACTIONS[act].danger) button.className = "danger";
      actions.appendChild(button);
    }
  }

  function render() {
    const order = [...comments.values()].sort((a, b) => b.ts_ms - a.ts_ms || b.id - a.id);
    const wanted = [];
    for (const c of order) {
      let tr = rows.get(c.id);
      if (!tr) rows.set(c.id, (tr = makeRow(c)));
      updateRow(tr, c);
      wanted.push(tr);
      if (pending && pending.id === c.id) wanted.push(pending.row);
    }
    for (const [id, tr] of rows) if (!comments.has(id)) { tr.remove(); rows.delete(id); }
    // Move only what is out of place: rows (and a focused reason field) that
    // stay where they are keep their focus and selection.
    let at = tbody.firstChild;
    for (const node of wanted) {
      if (node === at) at = at.nextSibling;
      else tbody.insertBefore(node, at);
    }
    while (at) { const next = at.nextSibling; at.remove(); at = next; }
    emptyEl.hidden = comments.size > 0;
    applyFilter();
  }

  function applyFilter() {
    const needle = filterBox.value.trim().toLowerCase();
    let shown = 0;
    for (const [id, tr] of rows) {
      const c = comments.get(id);
      const match = !needle || c.text.toLowerCase().includes(needle) || c.username.toLowerCase().includes(needle);
      tr.hidden = !match;
      if (pending && pending.id === id) pending.row.hidden = !match;
      if (match) shown++;
    }
    shownEl.textContent = needle ? `${shown} of ${rows.size} shown` : `${rows.size} comments`;
  }

  // -- the summary -------------------------------------------------------------

  function showSummary(s) {
    $("count-recent").textContent = s.recent;
    $("label-recent").textContent = `comments in the last ${span(s.recent_window_seconds)}`;
    $("count-held").textContent = s.held;
    $("count-hidden").textContent = s.hidden;
    $("label-hidden").textContent = `hidden in the last ${span(s.hidden_window_seconds)}`;
    const t = s.throttle;
    const items = [
      ["Policy", t.moderation_policy],
      ["Room", t.is_open ? "open" : "closed"],
      ["Poll", duration(t.poll_interval_ms)],
      ["Quiet poll", duration(t.quiet_interval_ms)],
      ["Slow mode", duration(t.user_send_interval_ms)],
      ["Send cap", `${t.room_send_cap_per_second}/s`],
      ["Display cap", `${t.display_cap_per_second}/s`],
      ["Emergency preset", t.emergency ? "ON" : "off"],
    ];
    const dl = $("throttle");
    dl.replaceChildren();
    for (const [name, value] of items) {
      const div = document.createElement("div"), dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value;
      div.append(dt, dd);
      if ((name === "Emergency preset" && t.emergency) || (name === "Room" && !t.is_open)) div.className = "alert";
      dl.appendChild(div);
    }
    $("summary").classList.toggle("emergency", t.emergency);
  }

  // -- polling -----------------------------------------------------------------

  function setConnection(ok, text) {
    conn.textContent = text;
    conn.dataset.state = ok ? "live" : "reconnecting";
  }

  async function poll() {
    timer = null;
    inFlight = true;
    const seq = actionSeq;
    const list = "?limit=" + encodeURIComponent(limit);
    try {
      const answers = await Promise.all([
        call("GET", roomPath + "/recent" + list), call("GET", roomPath + "/held" + list), call("GET", roomPath + "/summary"),
      ]);
      const failed = answers.find((a) => !a.ok);
      if (failed) throw new Error(problem(failed));
      const [recent, held, summary] = answers.map((a) => a.data);
      if (seq === actionSeq) {
        const fresh = new Map();
        for (const c of recent) fresh.set(c.id, c);
        for (const c of held) fresh.set(c.id, c);
        // The comment being acted on stays even if it just left the window.
        if (pending && !fresh.has(pending.id)) fresh.set(pending.id, comments.get(pending.id));
        comments.clear();
        for (const [id, c] of fresh) comments.set(id, c);
        render();
      }
      showSummary(summary);
      failures = 0;
      setConnection(true, `live · updated ${clock(Date.now())}`);
    } catch (error) {
      failures++;
      const wait = nextWait();
      const why = error instanceof TypeError ? "network error" : error.message;
      setConnection(false, `reconnecting… (${why}; retry in ${Math.round(wait / 1000)} s)`);
    } finally {
      inFlight = false;
    }
    timer = setTimeout(poll, nextWait());
  }

  function nextWait() {
    return failures ? Math.min(MAX_BACKOFF_MS, POLL_MS * 2 ** failures) : POLL_MS;
  }

  // After an action: fetch now rather than at the next tick (unless one is on its way).
  function pollSoon() {
    if (inFlight || timer === null) return;
    clearTimeout(timer);
    timer = setTimeout(poll, 0);
  }

  // -- actions -----------------------------------------------------------------

  function closeForm() {
    if (!pending) return;
    pending.row.remove();
    pending = null;
  }

  function openForm(id, act) {
    closeForm();
    const c = comments.get(id), spec = ACTIONS[act];
    const row = template.content.firstElementChild.cloneNode(true);
    row.dataset.id = id;
    row.dataset.act = act;
    const form = row.querySelector("form"), error = row.querySelector(".error"), confirm = row.querySelector(".confirm");
    row.querySelector(".what").textContent = spec.what(c);
    row.querySelector(".duration").hidden = !spec.duration;
    row.querySelector(".scope").hidden = !spec.scope;
    confirm.textContent = spec.label;
    if (spec.danger) confirm.classList.add("danger");
    row.querySelector(".cancel").addEventListener("click", () => { closeForm(); render(); });
    form.addEventListener("keydown", (ev) => { if (ev.key === "Escape") { closeForm(); render(); } });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const reason = form.elements.reason.value.trim();
      if (!reason) { error.textContent = "a reason is required"; return; }
      const body = {reason};
      if (spec.duration) body.seconds = Number(form.elements.seconds.value);
      if (spec.scope) body.room = form.elements.scope.value === "room" ? room : null;
      confirm.disabled = true;
      error.textContent = "";
      let answer;
      try {
        answer = await call("POST", spec.path(c), body);
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
      actionSeq++;
      if (spec.comment) comments.set(answer.data.id, answer.data);
      outcomeEl.textContent = spec.done(c, answer.data);
      if (pending && pending.row === row) closeForm();
      render();
      pollSoon();
    });
    pending = {id, act, row};
    render();
    form.elements.reason.focus();
  }

  tbody.addEventListener("click", (ev) => {
    const button = ev.target.closest("tr.comment button[data-act]");
    if (button) openForm(Number(button.closest("tr").dataset.id), button.dataset.act);
  });
  filterBox.addEventListener("input", applyFilter);

  poll();
})();
