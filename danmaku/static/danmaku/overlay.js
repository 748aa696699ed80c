// The danmaku layer over the video: lanes, timing, local echo, viewer filters.
// Every comment is rendered with textContent; nothing from the server is
// ever parsed as HTML.

// All scroll comments move at one speed (the stage's width in SCROLL_MS), so
// a comment never catches up with the one ahead of it in its row: a row is
// free once the previous comment's tail has left the right edge by LANE_GAP_PX.
const SCROLL_MS = 8000;
const FIXED_MS = 4500; // top and bottom comments stay this long
const LANE_GAP_PX = 24;
// A comment that finds no free lane waits for one this long, then is dropped
// (counted): a late comment is worse than a missing one on a live stream.
const MAX_WAIT_MS = 2000;
const RETRY_MS = 150;
const MODES = ["scroll", "top", "bottom"];
// Embedding, override and isolate controls: the API refuses them, and any
// that reach the page anyway (older rows) are dropped, so no comment can
// reverse or reorder what is shown around it.
const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/g;

export function displayText(text) { return text.replace(BIDI_CONTROLS, ""); }

// A merged item ("233333" sent 40 times) shows its count in a span of its
// own after the text, so the text stays a plain text node and the badge
// can change in place while the comment is on screen.
function showCount(el, count) {
  let badge = el.lastElementChild;
  if (count > 1) {
    if (!badge) { badge = document.createElement("span"); badge.className = "count"; el.appendChild(badge); }
    badge.textContent = " ×" + count;
  } else if (badge) badge.remove();
}

export class Overlay {
  constructor(stage) {
    this.stage = stage;
    this.byId = new Map(); // comment id -> element on screen
    this.queued = new Map(); // comment id -> comment waiting to be shown (its count may still change)
    this.retracted = new Set();
    this.rows = []; // per row: {enter, tail, fixed} times (performance.now() ms)
    this.paused = false;
    this.maxOnScreen = 0; // 0: no limit
    this.blocked = [];
    this.dropped = 0;
    this.echoes = new Set(); // our own comments on screen the server has not numbered yet
    this.generation = 0; // bumped by clear(): comments scheduled before it are not shown
  }

  // -- viewer settings --------------------------------------------------

  setPaused(paused) {
    this.paused = paused;
    for (const el of this.stage.children)
      for (const animation of el.getAnimations()) paused ? animation.pause() : animation.play();
  }

  setOpacity(percent) { this.stage.style.opacity = String(percent / 100); }

  setDensity(limit) { this.maxOnScreen = limit; }

  setBlocked(words) { this.blocked = words.map((w) => w.toLocaleLowerCase()); }

  isBlocked(text) {
    const lower = text.toLocaleLowerCase();
    return this.blocked.some((word) => lower.includes(word));
  }

  // -- comments ---------------------------------------------------------

  // A comment from the server, shown after delayMs (its place in the replay).
  schedule(comment, delayMs) {
    const due = performance.now() + delayMs, generation = this.generation;
    if (comment.id != null) this.queued.set(comment.id, comment);
    const attempt = () => {
      if (generation !== this.generation) return;
      if (!this.tryPlace(comment, due)) { setTimeout(attempt, RETRY_MS); return; }
      if (this.queued.get(comment.id) === comment) this.queued.delete(comment.id);
    };
    setTimeout(attempt, delayMs);
  }

  // False: wait for a lane and try again; true: shown or given up.
  tryPlace(comment, due) {
    if (this.retracted.has(comment.id) || this.byId.has(comment.id)) return true;
    if (this.paused || this.isBlocked(comment.text)) return true;
    if (this.maxOnScreen && this.stage.childElementCount >= this.maxOnScreen) { this.dropped++; return true; }
    const lastChance = performance.now() - due >= MAX_WAIT_MS;
    if (this.place(comment, false, lastChance)) return true;
    if (lastChance) this.dropped++;
    return lastChance;
  }

  // A merged item's new total (`counts` in a pull): the badge of the one on
  // screen, or the one still waiting; 0 takes it off. Unknown ids are left.
  setCount(id, count) {
    if (count <= 0) { this.retract(id); return; }
    const el = this.byId.get(id);
    if (el) showCount(el, count);
    else if (this.queued.has(id)) this.queued.get(id).count = count;
  }

  // The viewer's own comment, shown at once and outlined. Returns its
  // element (null when every lane is taken), so the send box can confirm
  // or withdraw it.
  echo(comment) {
    const el = this.place(comment, true, true);
    if (el) this.echoes.add(el);
    return el;
  }

  adopt(el, id) {
    this.echoes.delete(el);
    el.dataset.id = String(id);
    if (el.isConnected) this.byId.set(id, el);
  }

  // Our comment came back in a pull before its send was answered: the echo
  // with the same text is that comment.
  claimEcho(text, id) {
    for (const el of this.echoes) {
      if (el.firstChild && el.firstChild.data === displayText(text)) { this.adopt(el, id); return true; }
    }
    return false;
  }

  withdraw(el) {
    if (el) { this.echoes.delete(el); this.drop(el); }
  }

  retract(id) {
    this.retracted.add(id);
    this.queued.delete(id);
    const el = this.byId.get(id);
    if (el) this.drop(el);
  }

  // A moderator unhid it: it may be shown again (the pull that says so
  // carries it among its items).
  restore(id) { this.retracted.delete(id); }

  // Take every comment off the screen, and forget those still waiting to be
  // shown (a replay that jumps to another time starts over from there).
  clear() {
    this.generation++;
    this.queued.clear();
    for (const el of [...this.stage.children]) this.drop(el);
    this.rows = [];
  }

  // -- layout -----------------------------------------------------------

  // crowd: a top/bottom comment may cover scroll comments rather than wait
  // (the viewer's own comment at once; others after MAX_WAIT_MS).
  place(comment, mine, crowd) {
    const mode = MODES[comment.mode] || "scroll";
    const el = document.createElement("div");
    el.className = "dm " + mode + (mine ? " mine" : "");
    el.textContent = displayText(comment.text);
    if (comment.count > 1) showCount(el, comment.count);
    if (comment.nick) el.title = comment.nick;
    el.style.color = "#" + (comment.color >>> 0).toString(16).padStart(6, "0").slice(-6);
    el.style.visibility = "hidden";
    if (comment.id != null) el.dataset.id = String(comment.id);
    this.stage.appendChild(el); // measured before it is placed
    const width = el.offsetWidth, height = el.offsetHeight;
    const placed = mode === "scroll" ? this.placeScroll(el, width, height) : this.placeFixed(el, mode, width, height, crowd);
    if (!placed) { el.remove(); return null; }
    el.style.visibility = "";
    if (this.paused) for (const animation of el.getAnimations()) animation.pause();
    if (comment.id != null) {
      this.byId.set(comment.id, el);
      // For the page's other parts (the report dialog offers what is on screen).
      const {id, text, nick, user} = comment;
      document.dispatchEvent(new CustomEvent("danmaku:shown", {detail: {id, text, nick, user}}));
    }
    return el;
  }

  // One grid of rows for every mode. A scroll comment takes a row whose last
  // scroll comment has fully entered and that no top/bottom comment covers;
  // a top (bottom) comment takes the highest (lowest) row no other comment
  // is in, or when crowding is allowed, one with only scroll comments.
  rowCount(height) {
    const rows = Math.max(1, Math.floor(this.stage.clientHeight / height));
    // tail -Infinity: a new row is clear (performance.now() starts at the
    // page's load, so 0 would read as a scroll comment that just entered).
    if (this.rows.length !== rows) this.rows = Array.from({length: rows}, () => ({enter: 0, tail: -Infinity, fixed: 0}));
    return rows;
  }

  placeScroll(el, width, height) {
    const stageWidth = this.stage.clientWidth;
    const rows = this.rowCount(height);
    const speed = stageWidth / SCROLL_MS; // px per ms
    const now = performance.now();
    let row = -1;
    for (let r = 0; r < rows && row < 0; r++) if (this.rows[r].enter <= now && this.rows[r].fixed <= now) row = r;
    if (row < 0) return false;
    const duration = (stageWidth + width) / speed;
    this.rows[row].enter = now + (width + LANE_GAP_PX) / speed;
    this.rows[row].tail = now + width / speed; // when its tail is at the right edge
    el.style.top = row * height + "px";
    const animation = el.animate(
      // -100%: its own width then, so a count that grew still leaves the screen.
      [{transform: `translateX(${stageWidth}px)`}, {transform: "translateX(-100%)"}],
      {duration, easing: "linear"});
    animation.onfinish = () => this.drop(el);
    return true;
  }

  placeFixed(el, mode, width, height, crowd) {
    const rows = this.rowCount(height), now = performance.now();
    // Top comments use the upper half of the rows, bottom ones the lower half.
    const half = Math.max(1, Math.ceil(rows / 2));
    const order = Array.from({length: half}, (_, i) => (mode === "top" ? i : rows - 1 - i));
    const free = order.filter((r) => this.rows[r].fixed <= now);
    // Clear: the row's last scroll comment is already left of where this one
    // goes (scroll comments only move left; new ones wait for the row).
    const stageWidth = this.stage.clientWidth, left = Math.max(0, (stageWidth - width) / 2);
    const speed = stageWidth / SCROLL_MS;
    const clear = (r) => stageWidth - speed * (now - this.rows[r].tail) < left;
    const row = free.find(clear) ?? (crowd ? free[0] : undefined);
    if (row === undefined) return false;
    this.rows[row].fixed = now + FIXED_MS;
    el.style.top = row * height + "px";
    el.style.left = left + "px";
    const animation = el.animate([{opacity: 1}, {opacity: 1}], {duration: FIXED_MS});
    animation.onfinish = () => this.drop(el);
    return true;
  }

  drop(el) {
    el.remove();
    this.echoes.delete(el);
    const id = Number(el.dataset.id);
    if (this.byId.get(id) === el) this.byId.delete(id);
  }
}
