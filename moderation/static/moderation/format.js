// Times and durations in the moderator's words: a wall clock for comment
// times and outcomes, short durations for the throttle settings and for the
// summary's counting windows. Shared by the feed, the summary and the actions.

export function clock(ms) {
  const d = new Date(ms), pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function duration(ms) {
  if (ms === 0) return "off";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${ms / 1000} s`;
  if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
  return `${Math.round(ms / 3600000)} h`;
}

// "the last minute", "the last hour", else "the last 90 s".
export function span(seconds) {
  return {60: "minute", 3600: "hour", 86400: "day"}[seconds] || duration(seconds * 1000);
}
