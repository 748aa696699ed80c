// The pull loop, as the API contract asks: wait next_ms, send the cursor
// back, and back off (with jitter) when the server cannot be reached, so a
// million viewers do not come back in the same second after an outage.

const REQUEST_TIMEOUT_MS = 10000;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30000;
// A room that does not exist (404) is asked again rarely: it may be created.
const GONE_RETRY_MS = 30000;

export class Poller {
  // onAnswer(body) for every 200; onState(state, detail) on every change of
  // "live" / "reconnecting" / "gone"; paused() is asked before each pull.
  constructor(url, {onAnswer, onState, paused}) {
    this.url = url;
    this.onAnswer = onAnswer;
    this.onState = onState;
    this.paused = paused;
    this.cursor = null;
    this.failures = 0;
    this.timer = null;
    this.idle = false; // waiting for resume() because the viewer paused
  }

  start() { this.schedule(0); }

  // The viewer resumed: pull at once with the cursor kept (the server answers
  // with gap=true if it has gone too old meanwhile).
  resume() {
    if (!this.idle) return;
    this.idle = false;
    this.schedule(0);
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.pull(), ms);
  }

  async pull() {
    if (this.paused()) { this.idle = true; return; }
    const controller = new AbortController();
    const abort = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let wait;
    try {
      const query = this.cursor ? "?after=" + encodeURIComponent(this.cursor) : "";
      const response = await fetch(this.url + query, {signal: controller.signal, credentials: "same-origin"});
      if (response.ok) {
        const body = await response.json();
        this.cursor = body.cursor;
        this.failures = 0;
        this.onState("live", body);
        this.onAnswer(body);
        wait = body.next_ms;
      } else if (response.status === 404) {
        this.onState("gone", "This room does not exist.");
        wait = GONE_RETRY_MS;
      } else if (response.status === 400) {
        // A cursor this server cannot read (say, from an older release): join afresh.
        this.cursor = null;
        wait = BACKOFF_FIRST_MS;
      } else {
        wait = this.backoff(Number(response.headers.get("Retry-After")) * 1000 || 0);
      }
    } catch (error) {
      wait = this.backoff(0);
    } finally {
      clearTimeout(abort);
    }
    this.schedule(wait);
  }

  backoff(atLeastMs) {
    this.failures++;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (this.failures - 1));
    const wait = Math.max(atLeastMs, Math.round(ceiling * (0.5 + Math.random() / 2)));
    this.onState("reconnecting", {wait, failures: this.failures});
    return wait;
  }
}
