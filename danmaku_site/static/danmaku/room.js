// The viewer page: polls the pull API (following cursor and next_ms) and
// flies each comment over #stage. Comments are rendered with textContent only.
// The room's slug comes from data-slug on #stage (no template-built JS).
(() => {
  const stage = document.getElementById("stage"), status = document.getElementById("status");
  const api = "/api/v1/rooms/" + encodeURIComponent(stage.dataset.slug) + "/danmaku";
  const seen = new Set(), shown = new Map(), modes = ["scroll", "top", "bottom"];
  let cursor = null, lane = 0;

  function show(id, text, color, mode, nick) {
    const el = document.createElement("div");
    el.className = "dm " + modes[mode];
    el.textContent = text;
    el.title = nick;
    el.style.color = "#" + color.toString(16).padStart(6, "0");
    const lanes = Math.max(1, Math.floor(stage.clientHeight / 28));
    lane = (lane + 1) % lanes;
    if (mode === 1) el.style.top = (lane % 3) * 28 + "px";
    else if (mode === 2) el.style.bottom = (lane % 3) * 28 + "px";
    else {
      el.style.top = lane * 28 + "px";
      el.style.left = stage.clientWidth + "px";
      el.animate([{transform: "translateX(0)"}, {transform: `translateX(-${stage.clientWidth + 600}px)`}],
                 {duration: 8000, easing: "linear"});
    }
    stage.appendChild(el);
    shown.set(id, el);
    setTimeout(() => { el.remove(); shown.delete(id); }, mode === 0 ? 8000 : 4000);
  }

  async function poll() {
    let wait = 3000;
    try {
      const r = await fetch(api + (cursor ? "?after=" + encodeURIComponent(cursor) : ""));
      if (r.ok) {
        const b = await r.json();
        cursor = b.cursor; wait = b.next_ms;
        const it = b.items;
        for (let i = 0; i < it.id.length; i++) {
          if (seen.has(it.id[i])) continue;
          seen.add(it.id[i]);
          setTimeout(show, Math.min(it.offset_ms[i], 3000), it.id[i], it.text[i], it.color[i], it.mode[i], it.nick[i]);
        }
        for (const id of b.deleted) { const el = shown.get(id); if (el) el.remove(); }
        status.textContent = `${b.reason} · next poll in ${b.next_ms} ms` + (b.gap ? " · caught up after a gap" : "")
          + (b.missed ? ` · ${b.missed} not shown (busy)` : "");
      } else status.textContent = "pull failed: " + r.status;
    } catch (e) { status.textContent = "offline, retrying"; }
    setTimeout(poll, wait);
  }
  poll();

  const form = document.getElementById("send");
  if (form) form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form), out = document.getElementById("sendstatus");
    const r = await fetch(api, {method: "POST", headers: {"Content-Type": "application/json",
      "X-CSRFToken": f.get("csrfmiddlewaretoken")}, body: JSON.stringify({text: f.get("text"),
      color: f.get("color"), mode: f.get("mode"), client_id: crypto.randomUUID ? crypto.randomUUID() : String(Date.now())})});
    const b = await r.json().catch(() => ({}));
    out.textContent = r.status === 201 ? "sent" : (b.detail || b.reason || r.status);
    if (r.status === 201) form.elements.text.value = "";
  });
})();
