// DPlayer's live mode fed by our pull API, its comment box sending through our
// send API. A site loads this next to DPlayer (1.27.x) and writes:
//
//   const live = DanmakuDPlayerLive.backend({origin: "https://danmaku.example", room: "demo", token});
//   const dp = new DPlayer({container, live: true, danmaku: true, apiBackend: live, video: {...}});
//   live.attach(dp);
//
// DPlayer never polls by itself: in live mode it calls apiBackend.read once,
// while the player is being built (so before `dp` exists, hence attach), and
// expects the page to push comments with dp.danmaku.draw(). This is that loop,
// kept to the pull contract: wait next_ms, carry the cursor, back off on errors.
(function (root) {
  "use strict";

  const REQUEST_TIMEOUT_MS = 10000;
  const BACKOFF_FIRST_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  // A room that does not exist (404) is asked again rarely: it may be created.
  const GONE_RETRY_MS = 30000;
  // As on our own viewer page: an answer's comments keep their spacing, squeezed
  // into at most this long, so the newest is on screen soon after it arrives.
  const REPLAY_SPREAD_MS = 1000;
  const MODES = ["scroll", "top", "bottom"];

  // DPlayer's draw() puts the text in with innerHTML (its own send escapes it
  // first; its read path does not): ours is plain text.
  function escapeHtml(text) {
    return text.replace(/[&<>"'/]/g, (c) => "&#" + c.charCodeAt(0) + ";");
  }

  function hexColor(number) {
    return "#" + (number & 0xffffff).toString(16).padStart(6, "0");
  }

  function backend({origin, room, token}) {
    const base = origin.replace(/\/+$/, "") + "/api/v1/rooms/" + encodeURIComponent(room) + "/danmaku";
    const sent = new Set(); // ids of our own comments: DPlayer drew them already, at send
    const pending = new Map(); // id -> timer of a comment not drawn yet
    const onScreen = new Map(); // id -> its element, to take it off when retracted
    let dp = null;
    let cursor = null;
    let failures = 0;
    let timer = null;

    function draw(id, text, color, mode) {
      pending.delete(id);
      if (!dp) return; // stopped meanwhile
      const layer = dp.danmaku.container;
      const before = layer.lastElementChild;
      // type and color as DPlayer 1.27 reads them: 0/1/2 (a string such as
      // "top" falls back to scrolling) and an integer.
      dp.danmaku.draw({text: escapeHtml(text), color, type: mode});
      const element = layer.lastElementChild;
      if (element && element !== before) {
        onScreen.set(id, element);
        element.addEventListener("animationend", () => onScreen.delete(id));
      }
    }

    function show(body) {
      const items = body.items;
      const count = items.id.length;
      const first = count ? Math.min(...items.offset_ms) : 0;
      const span = count ? Math.max(...items.offset_ms) - first : 0;
      const squeeze = span > REPLAY_SPREAD_MS ? REPLAY_SPREAD_MS / span : 1;
      for (let i = 0; i < count; i++) {
        const id = items.id[i];
        if (sent.delete(id) || pending.has(id) || onScreen.has(id)) continue;
        const args = [id, items.text[i], items.color[i], items.mode[i]];
        pending.set(id, setTimeout(() => draw(...args), (items.offset_ms[i] - first) * squeeze));
      }
      for (const id of body.deleted) {
        clearTimeout(pending.get(id));
        pending.delete(id);
        // Hidden, not removed: DPlayer removes it itself when its animation ends.
        const element = onScreen.get(id);
        if (element) element.style.visibility = "hidden";
      }
    }

    function backoff() {
      failures++;
      const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (failures - 1));
      return Math.round(ceiling * (0.5 + Math.random() / 2));
    }

    async function pull() {
      const controller = new AbortController();
      const abort = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      let wait;
      try {
        const query = cursor ? "?after=" + encodeURIComponent(cursor) : "";
        const response = await fetch(base + query, {signal: controller.signal, credentials: "omit"});
        if (response.ok) {
          const body = await response.json();
          cursor = body.cursor;
          failures = 0;
          show(body);
          wait = body.next_ms;
        } else if (response.status === 404) {
          wait = GONE_RETRY_MS;
        } else if (response.status === 400) {
          // A cursor this server cannot read (say, from an older release): join afresh.
          cursor = null;
          wait = BACKOFF_FIRST_MS;
        } else {
          wait = backoff();
        }
      } catch (error) {
        wait = backoff();
      } finally {
        clearTimeout(abort);
      }
      if (dp) timer = setTimeout(pull, wait);
    }

    return {
      // options: {url, success(list), error(message)}. Live has no history to load.
      read(options) {
        options.success([]);
      },

      // options.data is DPlayer's {token, id, author, time, text, color, type}:
      // color an integer, type 0/1/2. The author is whoever the token names.
      async send(options) {
        const data = options.data;
        try {
          const response = await fetch(base, {
            method: "POST",
            headers: {"Content-Type": "application/json", Authorization: "Bearer " + (token || data.token)},
            body: JSON.stringify({text: data.text, color: hexColor(data.color), mode: MODES[data.type] || "scroll"}),
            credentials: "omit",
          });
          const body = await response.json().catch(() => ({}));
          if (!response.ok) {
            options.error(body.detail || "sending failed (" + response.status + ")");
            return;
          }
          if (body.id !== undefined) sent.add(body.id);
          options.success(body);
        } catch (error) {
          options.error("sending failed: the danmaku server cannot be reached");
        }
      },

      attach(player) {
        dp = player;
        clearTimeout(timer);
        pull();
      },

      stop() {
        dp = null;
        clearTimeout(timer);
        for (const pendingTimer of pending.values()) clearTimeout(pendingTimer);
        pending.clear();
      },
    };
  }

  root.DanmakuDPlayerLive = {backend};
})(typeof window !== "undefined" ? window : globalThis);
