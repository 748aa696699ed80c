// The console's polling loop: one round of requests every POLL_MS while they
// succeed, and after each failure twice the previous wait, up to
// MAX_BACKOFF_MS, so an outage is not hammered; an action can ask for the
// next round at once.

// As lively as the viewer's screen; a handful of moderators cost nothing.
const POLL_MS = 2000;
// A long outage still gets a retry twice a minute.
const MAX_BACKOFF_MS = 30000;

export class Poller {
  // round(): fetch and show one round, throwing when it failed.
  // onState("live") after every round that worked, onState("reconnecting",
  // {why, wait}) after every one that did not.
  constructor(round, onState) {
    this.round = round;
    this.onState = onState;
    this.failures = 0;
    this.timer = null;
    this.inFlight = false;
  }

  start() { this.poll(); }

  async poll() {
    this.timer = null;
    this.inFlight = true;
    try {
      await this.round();
      this.failures = 0;
      this.onState("live");
    } catch (error) {
      this.failures++;
      const wait = this.nextWait();
      const why = error instanceof TypeError ? "network error" : error.message;
      this.onState("reconnecting", {why, wait});
    } finally {
      this.inFlight = false;
    }
    this.timer = setTimeout(() => this.poll(), this.nextWait());
  }

  nextWait() {
    return this.failures ? Math.min(MAX_BACKOFF_MS, POLL_MS * 2 ** this.failures) : POLL_MS;
  }

  // After an action: fetch now rather than at the next tick (unless one is on its way).
  soon() {
    if (this.inFlight || this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.poll(), 0);
  }
}
