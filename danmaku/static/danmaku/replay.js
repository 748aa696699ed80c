// The replay page: a broadcast's recording with its comments flying over it
// at their playback times (or, without a recording, the animated backdrop
// and a simulated clock over the broadcast's length). Comments are loaded a
// segment at a time; comments sent here go on the recording at the current
// playback time. The broadcast's id and the viewer's user id come from
// data- attributes on #stage.
import {startBackdrop} from "./backdrop.js";
import {wireControls} from "./controls.js";
import {Overlay} from "./overlay.js";
import {SendBox} from "./sendbox.js";

// The next segment is loaded this long before playback reaches it.
const PREFETCH_MS = 20000;
// A comment whose time passed while its segment was still loading is still
// shown if it is at most this late; older ones are skipped (no flood).
const CATCH_UP_MS = 1000;
// Playback time moving on by more than this between two frames is a jump (a
// seek, a tab back from the background): the screen starts over from there
// instead of showing everything in between.
const MAX_STEP_MS = 1500;
// A failed load is tried again after this, doubling up to RETRY_MAX_MS.
const RETRY_MS = 1000;
const RETRY_MAX_MS = 30000;

const stage = document.getElementById("stage");
const conn = document.getElementById("conn");
const status = document.getElementById("status");
const base = "/api/v1/broadcasts/" + encodeURIComponent(stage.dataset.broadcast);
const me = Number(stage.dataset.user) || null;
const overlay = new Overlay(stage);
const mine = new Set(); // our own comments on screen as local echo, this pass
const pauseBox = document.getElementById("paused");
const video = document.getElementById("video");

// -- clocks: the playback time, in ms -------------------------------------------

// The recording's own time.
class VideoClock {
  constructor(element) { this.video = element; }
  now() { return this.video.currentTime * 1000; }
  get paused() { return this.video.paused || this.video.ended; }
  get seeking() { return this.video.seeking; }
  listen({onSeek, onState}) {
    for (const type of ["seeking", "seeked"]) this.video.addEventListener(type, onSeek);
    for (const type of ["play", "pause", "ended"]) this.video.addEventListener(type, onState);
  }
}

// Without a recording: a clock over the broadcast's length, played, paused
// and moved by the page's own button and scrubber.
class SimulatedClock {
  constructor(lengthMs) {
    this.length = lengthMs;
    this.at = 0; // the time when paused, or when `since` was
    this.since = null; // performance.now() when it last started playing; null: paused
    this.seeking = false;
    this.listeners = {onSeek: () => {}, onState: () => {}};
  }
  now() {
    if (this.since === null) return this.at;
    const time = this.at + performance.now() - this.since;
    if (time < this.length) return time;
    this.at = this.length;
    this.since = null;
    this.listeners.onState();
    return this.at;
  }
  get paused() { return this.since === null; }
  listen(listeners) { this.listeners = listeners; }
  play() {
    if (this.at >= this.length) this.seek(0);
    this.since = performance.now();
    this.listeners.onState();
  }
  pause() {
    this.at = this.now();
    this.since = null;
    this.listeners.onState();
  }
  seek(ms) {
    this.at = Math.min(Math.max(0, ms), this.length);
    if (this.since !== null) this.since = performance.now();
    this.listeners.onSeek();
  }
}

// -- segments -----------------------------------------------------------------

// The index of the first row at `ms` or later (rows are ordered by playback time).
function firstAt(rows, ms) {
  let low = 0, high = rows.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (rows[middle].progress_ms < ms) low = middle + 1; else high = middle;
  }
  return low;
}

// The broadcast's segments: loaded when asked for, kept once loaded.
class Segments {
  constructor(info, onProblem) {
    this.info = info;
    this.size = info.segment_ms;
    this.loaded = new Map(); // number -> rows ordered by progress_ms
    this.loading = new Set();
    this.retryAt = new Map(); // number -> {at, wait}: after a failed load
    this.onProblem = onProblem;
  }

  // The segment's rows, or null while it is not loaded (which starts it).
  rows(n) {
    if (n < 0 || n >= this.info.segments.length) return []; // past the broadcast: nothing to load
    const rows = this.loaded.get(n);
    if (rows) return rows;
    this.load(n);
    return null;
  }

  async load(n) {
    const retry = this.retryAt.get(n);
    if (this.loading.has(n) || (retry && performance.now() < retry.at)) return;
    this.loading.add(n);
    try {
      const response = await fetch(`${base}/danmaku?segment=${n}&v=${this.info.segments[n]}`, {credentials: "same-origin"});
      if (!response.ok) throw new Error(`segment ${n}: HTTP ${response.status}`);
      const items = (await response.json()).items, rows = [];
      for (let i = 0; i < items.id.length; i++)
        rows.push({id: items.id[i], progress_ms: items.progress_ms[i], color: items.color[i], mode: items.mode[i],
                   user: items.user[i], nick: items.nick[i], text: items.text[i]});
      this.loaded.set(n, rows);
      this.retryAt.delete(n);
      this.onProblem(null);
    } catch (error) {
      const wait = Math.min(RETRY_MAX_MS, retry ? retry.wait * 2 : RETRY_MS);
      this.retryAt.set(n, {at: performance.now() + wait, wait});
      this.onProblem(`Could not load comments; trying again in ${Math.ceil(wait / 1000)} s.`);
    } finally {
      this.loading.delete(n);
    }
  }

  // Our own comment, taken by the server: in later passes it plays like the others.
  add(row) {
    const rows = this.loaded.get(Math.floor(row.progress_ms / this.size));
    if (rows && !rows.some((r) => r.id === row.id)) rows.splice(firstAt(rows, row.progress_ms + 1), 0, row);
  }
}

// -- the replay -----------------------------------------------------------------

// Every frame: show each comment whose playback time the clock passed since
// the last frame. `last` is the time up to which comments are shown; null
// after a jump, when the screen starts over.
class Replay {
  constructor(clock, segments) {
    this.clock = clock;
    this.segments = segments;
    this.last = null;
    this.problem = null;
    this.shownDropped = -1;
  }

  restart() {
    overlay.clear();
    mine.clear();
    this.last = null;
  }

  tick() {
    if (this.clock.seeking) return;
    const now = this.clock.now(), size = this.segments.size;
    const current = Math.floor(now / size);
    this.segments.rows(current);
    if (now % size > size - PREFETCH_MS) this.segments.rows(current + 1);
    if (this.last === null || now < this.last || now - this.last > MAX_STEP_MS) {
      if (this.last !== null) this.restart();
      this.last = now;
      return;
    }
    if (now === this.last) return;
    const from = Math.max(this.last, now - CATCH_UP_MS);
    const spans = [];
    for (let n = Math.floor(from / size); n <= current; n++) {
      const rows = this.segments.rows(n);
      if (rows === null) { this.last = from; return; } // wait for it, up to CATCH_UP_MS
      spans.push(rows);
    }
    for (const rows of spans)
      for (let i = firstAt(rows, from); i < rows.length && rows[i].progress_ms < now; i++) this.show(rows[i]);
    this.last = now;
  }

  show(row) {
    if (mine.has(row.id)) return; // on screen already as our local echo
    overlay.schedule(row, 0);
  }

  report(problem) {
    if (problem !== undefined) this.problem = problem;
    if (problem === undefined && overlay.dropped === this.shownDropped) return;
    this.shownDropped = overlay.dropped;
    const notes = [];
    if (this.problem) notes.push(this.problem);
    if (overlay.dropped) notes.push(`${overlay.dropped} left out to keep the screen readable`);
    status.textContent = notes.join(" · ");
  }
}

// -- the page -------------------------------------------------------------------

function clockText(ms) {
  const seconds = Math.floor(ms / 1000), hours = Math.floor(seconds / 3600);
  const mm = String(Math.floor(seconds / 60) % 60), ss = String(seconds % 60).padStart(2, "0");
  return hours ? `${hours}:${mm.padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

// The simulated clock's button and scrubber.
function wireSimulatedClock(clock) {
  const box = document.getElementById("clock"), play = document.getElementById("play");
  const scrubber = document.getElementById("scrubber"), text = document.getElementById("clocktext");
  let dragging = false;
  scrubber.max = String(clock.length);
  play.addEventListener("click", () => (clock.paused ? clock.play() : clock.pause()));
  scrubber.addEventListener("pointerdown", () => { dragging = true; });
  scrubber.addEventListener("pointerup", () => { dragging = false; });
  scrubber.addEventListener("input", () => clock.seek(Number(scrubber.value)));
  box.hidden = false;
  play.disabled = scrubber.disabled = false;
  return () => {
    const now = clock.now(), words = `${clockText(now)} / ${clockText(clock.length)}`;
    play.textContent = clock.paused ? "Play" : "Pause";
    if (!dragging) scrubber.value = String(Math.round(now));
    if (text.textContent !== words) {
      text.textContent = words;
      scrubber.setAttribute("aria-valuetext", words.replace(" / ", " of "));
    }
  };
}

async function loadInfo() {
  for (let wait = RETRY_MS; ; wait = Math.min(RETRY_MAX_MS, wait * 2)) {
    try {
      const response = await fetch(base, {credentials: "same-origin"});
      if (response.ok) return await response.json();
      if (response.status === 404) return null;
    } catch (error) { /* tried again below */ }
    conn.dataset.state = "reconnecting";
    conn.textContent = `could not load the broadcast; trying again in ${Math.ceil(wait / 1000)} s…`;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

async function start() {
  const backdrop = document.getElementById("backdrop");
  if (backdrop) startBackdrop(backdrop);
  const info = await loadInfo();
  if (info === null) {
    conn.dataset.state = "gone";
    conn.textContent = "This broadcast does not exist.";
    return;
  }
  const end = info.ended_at_ms ?? Date.now();
  const clock = video ? new VideoClock(video)
    : new SimulatedClock(Math.max(0, end - info.started_at_ms) + Math.max(0, info.offset_ms));
  const segments = new Segments(info, (problem) => replay.report(problem));
  const replay = new Replay(clock, segments);
  // Paused when the recording is, or when the viewer paused the danmaku.
  const syncPaused = () => overlay.setPaused(clock.paused || pauseBox.checked);
  clock.listen({onSeek: () => replay.restart(), onState: syncPaused});
  wireControls(overlay, {resume: syncPaused});
  syncPaused();
  const drawClock = video ? () => {} : wireSimulatedClock(clock);

  const form = document.getElementById("send");
  if (form) {
    new SendBox(form, document.getElementById("sendstatus"), {
      url: base + "/danmaku",
      overlay,
      mine,
      notFound: "This broadcast does not exist.",
      extra: () => ({progress_ms: Math.max(0, Math.round(clock.now()))}),
      onSent: (comment) => {
        if (comment.status === "published") segments.add({...comment, user: me, nick: ""});
      },
    });
  }
  conn.dataset.state = "ready";
  conn.textContent = "";
  const frame = () => {
    replay.tick();
    replay.report();
    drawClock();
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

start();
