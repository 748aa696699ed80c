// The summary panel over the feed: the room's counters (recent, held,
// hidden) and its throttle settings, as the API's summary reports them, with
// what needs the moderator's eye (a closed room, the emergency preset) flagged.
import {duration, span} from "./format.js";

const $ = (id) => document.getElementById(id);

export function showSummary(s) {
  $("count-recent").textContent = s.recent;
  $("label-recent").textContent = `comments in the last ${span(s.recent_window_seconds)}`;
  $("count-held").textContent = s.held;
  $("count-hidden").textContent = s.hidden;
  $("label-hidden").textContent = `hidden in the last ${span(s.hidden_window_seconds)}`;
  // null: no pull process serves the room now.
  $("count-viewers").textContent = s.viewers === null ? "–" : s.viewers.toLocaleString("en");
  const t = s.throttle;
  const items = [
    ["Policy", t.moderation_policy],
    ["Room", t.is_open ? "open" : "closed"],
    ["Poll", duration(t.poll_interval_ms) + (t.poll_multiplier > 1 ? ` ×${t.poll_multiplier}` : "")],
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
